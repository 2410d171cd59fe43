"""Passwords: Argon2id over a keyring pepper, upgraded to a new pepper at login, and safe when a pepper is gone."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import argon2
from django.conf import settings
from django.contrib.auth.hashers import check_password
from django.test import override_settings
from django.urls import reverse

from accounts.models import User
from security.hashers import PepperedArgon2PasswordHasher
from security.keyring import add_primary_key, get_keyring, reset_keyring_cache, write_keyring_file
from tests.cast import PASSWORD, CastTestCase

LOGIN = reverse("accounts:login")


def argon2_part(encoded: str) -> str:
    """``pargon2$<pepper>$argon2id$v=19$…`` without its two Django prefixes: a standard Argon2 hash string."""
    return "$" + encoded.split("$", 2)[2]


def peppered(password: str, pepper: bytes) -> str:
    return base64.b64encode(hmac.new(pepper, password.encode(), hashlib.sha256).digest()).decode()


class PepperedHashTests(CastTestCase):
    def setUp(self) -> None:
        self.hasher = PepperedArgon2PasswordHasher()
        self.stored = User.objects.get(pk=self.alice.pk).password

    @contextmanager
    def edited_keyring(self, edit: Callable[[dict[str, Any]], Any]) -> Iterator[Any]:
        """This process runs on a copy of the test keyring changed by ``edit``; the real one is back afterwards."""
        document = json.loads(Path(settings.KEYRING_FILE).read_text(encoding="utf-8"))
        result = edit(document)
        folder = tempfile.TemporaryDirectory()
        self.addCleanup(folder.cleanup)
        path = Path(folder.name) / "keyring.json"
        write_keyring_file(path, document)
        try:
            with override_settings(KEYRING_FILE=str(path)):
                reset_keyring_cache()
                assert get_keyring().primary_pepper_id == document["primary_pepper"]
                yield result
        finally:
            reset_keyring_cache()

    def login(self, password: str = PASSWORD):
        return self.client.post(LOGIN, {"username": "alice@acme.test", "password": password})

    def test_a_stored_hash_names_the_primary_pepper_and_argon2id(self):
        assert self.stored.startswith(f"pargon2${get_keyring().primary_pepper_id}$argon2id$v=19$")
        assert check_password(PASSWORD, self.stored)
        assert not check_password(PASSWORD + "!", self.stored)
        assert not self.hasher.must_update(self.stored)

    def test_a_dumped_hash_cannot_be_checked_without_the_pepper(self):
        with self.assertRaises(argon2.exceptions.VerifyMismatchError):
            argon2.PasswordHasher().verify(argon2_part(self.stored), PASSWORD)
        # It is a genuine Argon2id hash: with the keyring's pepper it verifies.
        assert argon2.PasswordHasher().verify(
            argon2_part(self.stored), peppered(PASSWORD, get_keyring().primary_pepper)
        )

    def test_a_new_primary_pepper_still_verifies_old_hashes_and_asks_for_an_update(self):
        old_pepper = get_keyring().primary_pepper_id
        with self.edited_keyring(lambda document: add_primary_key(document, "pep")) as new_pepper:
            assert new_pepper != old_pepper
            assert check_password(PASSWORD, self.stored)
            assert self.hasher.must_update(self.stored)
            rehashed = self.hasher.encode(PASSWORD, self.hasher.salt())
            assert rehashed.startswith(f"pargon2${new_pepper}$argon2id$")
            assert not self.hasher.must_update(rehashed)

    def test_logging_in_rehashes_the_password_under_the_new_pepper(self):
        with self.edited_keyring(lambda document: add_primary_key(document, "pep")) as new_pepper:
            assert self.login().status_code == 302
            rehashed = User.objects.get(pk=self.alice.pk).password
            assert rehashed.startswith(f"pargon2${new_pepper}$argon2id$")
            assert check_password(PASSWORD, rehashed)
            self.client.logout()
            assert self.login().status_code == 302
            assert User.objects.get(pk=self.alice.pk).password == rehashed

    def test_a_hash_whose_pepper_left_the_keyring_fails_closed_and_is_logged(self):
        def replace_pepper(document: dict[str, Any]) -> str:
            gone = document["primary_pepper"]
            add_primary_key(document, "pep")
            del document["peppers"][gone]
            return gone

        with self.edited_keyring(replace_pepper) as gone:
            with self.assertLogs("bluespark.security", level="ERROR") as logs:
                assert self.hasher.verify(PASSWORD, self.stored) is False
            [record] = logs.records
            assert (record.getMessage(), record.pepper) == ("password_pepper_missing", gone)
            assert PASSWORD not in repr(record.__dict__)

            with self.assertLogs("bluespark.security", level="ERROR"):
                response = self.login()
            assert response.status_code == 200
            assert "_auth_user_id" not in self.client.session
            assert User.objects.get(pk=self.alice.pk).password == self.stored
