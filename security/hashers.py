"""Argon2id over an HMAC pepper whose key lives in the keyring.

The stored hash names the pepper that keyed it
(``pargon2$<pepper id>$argon2id$v=19$m=…``), so a database dump without the
keyring cannot be attacked offline, and a new primary pepper upgrades each
hash at its user's next login (Django's ``must_update``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import Argon2PasswordHasher, mask_hash, must_update_salt
from django.utils.translation import gettext_noop as _

from security.keyring import KeyringError, get_keyring

logger = logging.getLogger("bluespark.security")


class PepperedArgon2PasswordHasher(Argon2PasswordHasher):
    algorithm = "pargon2"

    @property
    def time_cost(self) -> int:  # type: ignore[override]
        return settings.ARGON2_PARAMETERS["time_cost"]

    @property
    def memory_cost(self) -> int:  # type: ignore[override]
        return settings.ARGON2_PARAMETERS["memory_cost"]

    @property
    def parallelism(self) -> int:  # type: ignore[override]
        return settings.ARGON2_PARAMETERS["parallelism"]

    @staticmethod
    def _peppered(password: str, pepper: bytes) -> str:
        digest = hmac.new(pepper, password.encode("utf-8"), hashlib.sha256).digest()
        return base64.b64encode(digest).decode("ascii")

    def _split(self, encoded: str) -> tuple[str, str]:
        algorithm, pepper_id, rest = encoded.split("$", 2)
        if algorithm != self.algorithm:
            raise ValueError("Not a peppered Argon2 hash.")
        return pepper_id, f"{algorithm}${rest}"

    def encode(self, password: str, salt: str) -> str:
        keyring = get_keyring()
        inner = super().encode(self._peppered(password, keyring.primary_pepper), salt)
        return f"{self.algorithm}${keyring.primary_pepper_id}{inner[len(self.algorithm) :]}"

    def verify(self, password: str, encoded: str) -> bool:
        pepper_id, inner = self._split(encoded)
        try:
            pepper = get_keyring().pepper(pepper_id)
        except KeyringError:
            logger.error("password_pepper_missing", extra={"pepper": pepper_id})
            return False
        return super().verify(self._peppered(password, pepper), inner)

    def decode(self, encoded: str) -> dict[str, Any]:
        pepper_id, inner = self._split(encoded)
        return {**Argon2PasswordHasher.decode(self, inner), "pepper": pepper_id}

    def safe_summary(self, encoded: str) -> dict[str, Any]:
        decoded = self.decode(encoded)
        return {
            _("algorithm"): decoded["algorithm"],
            _("pepper"): decoded["pepper"],
            _("variety"): decoded["variety"],
            _("salt"): mask_hash(decoded["salt"]),
            _("hash"): mask_hash(decoded["hash"]),
        }

    def must_update(self, encoded: str) -> bool:
        """Rehash at next login under a new primary pepper, new parameters or a short salt."""
        decoded = self.decode(encoded)
        if decoded["pepper"] != get_keyring().primary_pepper_id:
            return True
        current = decoded["params"]
        wanted = self.params()
        wanted.salt_len = current.salt_len
        return current != wanted or must_update_salt(decoded["salt"], self.salt_entropy)
