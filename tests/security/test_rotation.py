"""Key rotation: new KEKs re-wrap every key; new data keys re-seal every row, while reads keep working."""

from __future__ import annotations

import json
import tempfile
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from accounts import services
from accounts.models import DataKeyRotation, TOTPDevice, User
from accounts.tenancy import account_scope
from contacts.models import Contact
from contacts.selectors import contact_with_email
from contacts.services import create_contact
from security.envelope import sealed_version
from security.keyring import add_primary_key, generate_keyring_document, reset_keyring_cache, write_keyring_file
from security.keys import PLATFORM_SCOPE, clear_key_cache, data_key_versions
from security.models import WrappedKey
from tests.cast import PASSWORD, CastTestCase


def stored_versions(table: str, columns: list[str], where: str = "", params: tuple = ()) -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(columns)} FROM {table} {where}", params)  # noqa: S608 - test-owned names
        return {sealed_version(bytes(value)) for row in cursor.fetchall() for value in row if value is not None}


class DataKeyRotationTests(CastTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        with account_scope(cls.acme):
            for number in range(7):
                create_contact(cls.acme, email=f"person{number}@acme.test", first_name=f"P{number}", last_name="Acme")
        with account_scope(cls.globex):
            create_contact(cls.globex, email="person0@acme.test", first_name="Globex")

    def acme_versions(self) -> set[int]:
        return stored_versions(
            "contacts_contact", ["email", "first_name", "last_name"], "WHERE account_id = %s", (self.acme.pk,)
        )

    def run_rotation(self, rotation: DataKeyRotation, *, batch_size: int = 3) -> int:
        calls = 0
        with account_scope(self.acme):
            while (
                services.advance_data_key_rotation(self.acme, rotation, time_budget=0, batch_size=batch_size)
                is not None
            ):
                calls += 1
                assert calls < 100, "the rotation does not converge"
        return calls

    @override_settings(DATA_KEY_CACHE_SECONDS=0)
    def test_a_rotation_leaves_no_row_on_an_old_key_and_destroys_it(self):
        assert self.acme_versions() == {1}
        with account_scope(self.acme):
            rotation = services.start_data_key_rotation(self.acme)
        assert (rotation.target_version, rotation.rows_total) == (2, 7)
        self.run_rotation(rotation)
        rotation.refresh_from_db()
        assert rotation.status == DataKeyRotation.Status.DONE and rotation.progress_percent == 100
        assert self.acme_versions() == {2}
        assert data_key_versions(self.acme.public_id) == [2]
        assert data_key_versions(self.globex.public_id) == [1]
        clear_key_cache()
        with account_scope(self.acme):
            assert contact_with_email(self.acme, "PERSON3@acme.test").first_name == "P3"

    @override_settings(DATA_KEY_CACHE_SECONDS=0)
    def test_reads_and_writes_keep_working_halfway_through(self):
        with account_scope(self.acme):
            rotation = services.start_data_key_rotation(self.acme)
            for _ in range(10):  # through models with nothing to re-seal, to the first contacts batch
                services.advance_data_key_rotation(self.acme, rotation, time_budget=0, batch_size=2)
                if self.acme_versions() != {1}:
                    break
            assert self.acme_versions() == {1, 2}
            clear_key_cache()
            names = sorted(contact.first_name for contact in Contact.objects.filter(account=self.acme))
            assert names == [f"P{number}" for number in range(7)]
            late = create_contact(self.acme, email="late@acme.test", first_name="Late")
        assert stored_versions("contacts_contact", ["email"], "WHERE id = %s", (late.pk,)) == {2}
        self.run_rotation(rotation)
        assert self.acme_versions() == {2}

    def test_the_old_key_stays_until_every_process_has_learned_the_new_one(self):
        with time_machine.travel(timezone.now(), tick=False) as traveller:
            with account_scope(self.acme):
                rotation = services.start_data_key_rotation(self.acme)
                wait = services.advance_data_key_rotation(self.acme, rotation, time_budget=60)
            assert wait == 30
            assert data_key_versions(self.acme.public_id) == [1, 2]
            traveller.shift(timedelta(seconds=31))
            with account_scope(self.acme):
                assert services.advance_data_key_rotation(self.acme, rotation, time_budget=60) is None
        rotation.refresh_from_db()
        assert rotation.passes == 2
        assert data_key_versions(self.acme.public_id) == [2]

    def test_only_one_rotation_runs_per_account(self):
        with account_scope(self.acme):
            services.start_data_key_rotation(self.acme)
            with self.assertRaisesMessage(services.AccountsError, "already running"):
                services.start_data_key_rotation(self.acme)

    def test_the_command_starts_rotations_and_shows_their_progress(self):
        out = StringIO()
        with self.captureOnCommitCallbacks(execute=False):
            call_command("rotate_keys", "--data-keys", "--account", self.acme.public_id, stdout=out)
        assert "to data key v2 started (7 row(s) to re-seal)" in out.getvalue()
        out = StringIO()
        call_command("rotate_keys", "--status", "--account", self.acme.public_id, stdout=out)
        assert f"{self.acme.public_id} rot_" in out.getvalue() and "running 0% (0/7, pass 1)" in out.getvalue()


class PlatformRotationTests(CastTestCase):
    @override_settings(DATA_KEY_CACHE_SECONDS=0)
    def test_users_data_moves_to_a_new_platform_key_and_login_still_works(self):
        assert stored_versions("accounts_user", ["email", "full_name"]) == {1}
        assert stored_versions("accounts_totpdevice", ["secret"]) == {1}  # sam's
        call_command("rotate_keys", "--platform", stdout=StringIO())
        assert stored_versions("accounts_user", ["email", "full_name"]) == {2}
        assert stored_versions("accounts_totpdevice", ["secret"]) == {2}
        assert data_key_versions(PLATFORM_SCOPE) == [2]
        clear_key_cache()
        assert User.objects.with_email("alice@acme.test").get().full_name == "Alice Owner"
        assert TOTPDevice.objects.get(user=self.sam).secret == self.sam_totp_secret
        response = self.client.post("/accounts/login/", {"username": "alice@acme.test", "password": PASSWORD})
        assert response.status_code == 302


class KekRotationTests(CastTestCase):
    def test_a_new_kek_rewraps_every_key_and_the_old_one_can_leave_the_keyring(self):
        with account_scope(self.acme):
            create_contact(self.acme, email="kept@acme.test", first_name="Kept")
        document = json.loads(Path(settings.KEYRING_FILE).read_text(encoding="utf-8"))
        old_kek = document["primary_kek"]
        new_kek = add_primary_key(document, "kek")
        path = Path(self.enterContext(tempfile.TemporaryDirectory())) / "keyring.json"
        write_keyring_file(path, document)
        self.addCleanup(reset_keyring_cache)
        with override_settings(KEYRING_FILE=str(path)):
            reset_keyring_cache()
            out = StringIO()
            call_command("rotate_keys", "--kek", stdout=out)
            assert set(WrappedKey.objects.values_list("kek_id", flat=True)) == {new_kek}
            assert f"No stored key uses {old_kek} any more" in out.getvalue()
            del document["keks"][old_kek]
            write_keyring_file(path, document)
            reset_keyring_cache()
            clear_key_cache()
            with account_scope(self.acme):
                assert contact_with_email(self.acme, "kept@acme.test").first_name == "Kept"
            assert User.objects.with_email("bob@acme.test").get().full_name == "Bob Editor"


def test_the_keyring_command_never_overwrites_a_keyring(tmp_path):
    path = tmp_path / "keyring.json"
    write_keyring_file(path, generate_keyring_document("prod"))
    before = path.read_text()
    with pytest.raises(CommandError, match="never overwritten"):
        call_command("keyring", "generate", str(path), "--environment", "prod", stdout=StringIO())
    assert path.read_text() == before


def test_the_keyring_command_adds_a_primary_kek_and_prints_no_key(tmp_path):
    path = tmp_path / "keyring.json"
    call_command("keyring", "generate", str(path), "--environment", "prod", stdout=StringIO())
    out = StringIO()
    call_command("keyring", "add-kek", str(path), stdout=out)
    document = json.loads(path.read_text())
    assert len(document["keks"]) == 2 and document["primary_kek"] in out.getvalue()
    for secret in [*document["keks"].values(), *document["peppers"].values()]:
        assert secret not in out.getvalue()
