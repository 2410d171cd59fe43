"""The crypto-shredding drill: delete an account, restore an older dump of the
application database, and find nothing readable for that account."""

from __future__ import annotations

import pytest
from django.db import connection

from accounts.services import delete_account
from accounts.tenancy import account_scope
from contacts.models import Contact
from contacts.selectors import contact_with_email
from contacts.services import create_contact
from security.envelope import DecryptionError
from security.fields import decryption_failed
from security.keys import clear_key_cache, data_key_versions
from security.models import WrappedKey
from tests.cast import CastTestCase

DUMPED_TABLES = ("accounts_account", "contacts_contact")


def dump(account_pk: int) -> dict[str, tuple[list[str], list[tuple]]]:
    """What pg_dump would have kept of the account: its rows, byte for byte."""
    saved = {}
    with connection.cursor() as cursor:
        for table in DUMPED_TABLES:
            column = "id" if table == "accounts_account" else "account_id"
            cursor.execute(f"SELECT * FROM {table} WHERE {column} = %s", [account_pk])  # noqa: S608
            saved[table] = ([col.name for col in cursor.description], cursor.fetchall())
    return saved


def restore(saved: dict[str, tuple[list[str], list[tuple]]]) -> None:
    with connection.cursor() as cursor:
        for table in DUMPED_TABLES:
            columns, rows = saved[table]
            placeholders = ", ".join(["%s"] * len(columns))
            for row in rows:
                cursor.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})", row)  # noqa: S608


class CryptoShreddingDrill(CastTestCase):
    def test_a_restored_dump_of_a_deleted_account_yields_nothing_readable(self):
        with account_scope(self.acme):
            create_contact(self.acme, email="shred-me@acme.test", first_name="Shred", last_name="Me")
        with account_scope(self.globex):
            create_contact(self.globex, email="keep-me@globex.test", first_name="Keep")
        backup = dump(self.acme.pk)
        acme_scope = self.acme.public_id

        delete_account(self.acme)
        assert not WrappedKey.objects.filter(scope=acme_scope).exists()

        restore(backup)
        clear_key_cache()
        failures = []
        decryption_failed.connect(lambda **details: failures.append(details), weak=False, dispatch_uid="drill")
        self.addCleanup(decryption_failed.disconnect, dispatch_uid="drill")
        restored = type(self.acme).objects.get(public_id=acme_scope)
        with account_scope(restored):
            contact = Contact.objects.get(account=restored)
            for field in ("email", "first_name", "last_name"):
                with pytest.raises(DecryptionError):
                    getattr(contact, field)
            # A blind-index lookup finds nothing either: the index secret is gone too.
            assert contact_with_email(restored, "shred-me@acme.test") is None
        assert {failure["reason"] for failure in failures} == {"KeyNotFound"}
        assert data_key_versions(acme_scope) == []

        with account_scope(self.globex):
            assert contact_with_email(self.globex, "keep-me@globex.test").first_name == "Keep"
