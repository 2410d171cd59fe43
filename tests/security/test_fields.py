"""Encrypted fields on real rows: round trips, what the columns hold, and every way a moved or edited value fails."""

from __future__ import annotations

import base64
import struct

from django.core.exceptions import FieldError
from django.db import connection, models, transaction
from django.test import TestCase
from django.test.utils import isolate_apps
from hypothesis import given, settings
from hypothesis import strategies as st

from accounts.models import User, user_email_index
from accounts.tenancy import account_scope
from contacts.models import Contact
from contacts.selectors import contact_email_index, contact_with_email
from contacts.services import ContactError, create_contact
from security import keys
from security.envelope import HEADER_BYTES, NONCE_BYTES, DecryptionError
from security.fields import EncryptedTextField, Sealed, decryption_failed
from tests.cast import CastTestCase, make_user

ADDRESS = "dora.kowalska@example.com"


def raw_columns(table: str, pk: int, *columns: str) -> list[bytes | None]:
    """The stored values, read past the ORM (and so past every decryption)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE id = %s", [pk])  # noqa: S608 - test constants
        row = cursor.fetchone()
    return [None if value is None else bytes(value) for value in row]


def write_raw_column(table: str, pk: int, column: str, value: bytes) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {column} = %s WHERE id = %s", [value, pk])  # noqa: S608 - test constants


def raw_contact_column(contact: Contact, column: str) -> bytes:
    return raw_columns("contacts_contact", contact.pk, column)[0]


def fresh_contact(contact: Contact) -> Contact:
    """The contact as a new query returns it: nothing decrypted yet."""
    with account_scope(contact.account):
        return Contact.objects.get(pk=contact.pk)


def read_email(contact: Contact) -> str:
    with account_scope(contact.account):
        return fresh_contact(contact).email


class RoundTripTests(CastTestCase):
    def test_a_contacts_email_and_names_come_back_from_the_database_as_written(self):
        with account_scope(self.acme):
            created = create_contact(self.acme, email=ADDRESS, first_name="Dorota", last_name="Kowalska-Żółć")
            stored = Contact.objects.get(public_id=created.public_id)
            assert (stored.email, stored.first_name, stored.last_name) == (ADDRESS, "Dorota", "Kowalska-Żółć")

    def test_empty_names_come_back_empty(self):
        with account_scope(self.acme):
            created = create_contact(self.acme, email=ADDRESS)
            stored = Contact.objects.get(pk=created.pk)
            assert (stored.first_name, stored.last_name) == ("", "")

    def test_a_users_email_and_full_name_come_back_from_the_database_as_written(self):
        make_user("Dora@Example.com", full_name="Dora Ünal 🦉")
        stored = User.objects.with_email("dora@example.com").get()
        assert (stored.email, stored.full_name) == ("dora@example.com", "Dora Ünal 🦉")
        again = User.objects.get(pk=self.alice.pk)
        assert (again.email, again.full_name) == ("alice@acme.test", "Alice Owner")


class StoredColumnTests(CastTestCase):
    def test_contact_columns_hold_versioned_ciphertext_without_the_plaintext(self):
        with account_scope(self.acme):
            contact = create_contact(self.acme, email=ADDRESS, first_name="Dorota", last_name="Kowalska")
        for column, plaintext in (("email", ADDRESS), ("first_name", "Dorota"), ("last_name", "Kowalska")):
            with self.subTest(column=column):
                stored = raw_contact_column(contact, column)
                assert stored[0] == 1
                assert plaintext.encode() not in stored
                assert plaintext.lower().encode() not in stored.lower()

    def test_user_columns_hold_versioned_ciphertext_without_the_plaintext(self):
        email, full_name = raw_columns("accounts_user", self.alice.pk, "email", "full_name")
        for stored, plaintext in ((email, "alice@acme.test"), (full_name, "Alice Owner")):
            assert stored[0] == 1
            assert plaintext.encode() not in stored
            assert b"alice" not in stored.lower()

    def test_the_same_value_sealed_twice_gives_two_ciphertexts_with_fresh_nonces(self):
        with account_scope(self.acme):
            contact = create_contact(self.acme, email=ADDRESS, first_name="Same", last_name="Same")
            first = raw_contact_column(contact, "email")
            contact.email = "someone.else@example.com"
            contact.save()
            contact.email = ADDRESS
            contact.save()
        second = raw_contact_column(contact, "email")
        assert first != second
        assert first[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES] != second[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
        assert read_email(contact) == ADDRESS
        first_name, last_name = raw_columns("contacts_contact", contact.pk, "first_name", "last_name")
        assert first_name != last_name

    def test_saving_an_unchanged_value_keeps_its_ciphertext(self):
        with account_scope(self.acme):
            contact = create_contact(self.acme, email=ADDRESS, first_name="Dorota")
            before = raw_contact_column(contact, "first_name")
            contact.status = Contact.Status.UNSUBSCRIBED
            contact.save()
        assert raw_contact_column(contact, "first_name") == before


class MovedCiphertextTests(CastTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        with account_scope(cls.acme):
            cls.dora = create_contact(cls.acme, email=ADDRESS, first_name="Dorota", last_name="Kowalska")
            cls.eve = create_contact(cls.acme, email="eve@example.com", first_name="Eve")
        with account_scope(cls.globex):
            cls.globex_dora = create_contact(cls.globex, email=ADDRESS, first_name="Dorota")

    def assert_unreadable(self, contact: Contact, field_name: str) -> None:
        with account_scope(contact.account), self.assertRaises(DecryptionError):
            getattr(Contact.objects.get(pk=contact.pk), field_name)

    def test_values_copied_onto_another_contact_row_do_not_open(self):
        # first_name has no blind index: only the row bound into the ciphertext can refuse it.
        for column in ("email", "first_name"):
            write_raw_column("contacts_contact", self.eve.pk, column, raw_contact_column(self.dora, column))
            with self.subTest(column=column):
                self.assert_unreadable(self.eve, column)
        assert read_email(self.dora) == ADDRESS

    def test_an_email_copied_into_another_field_of_the_same_row_does_not_open(self):
        write_raw_column("contacts_contact", self.dora.pk, "first_name", raw_contact_column(self.dora, "email"))
        self.assert_unreadable(self.dora, "first_name")

    def test_an_email_and_its_index_copied_to_the_same_address_in_another_account_do_not_open(self):
        for column in ("email", "email_index"):
            write_raw_column("contacts_contact", self.globex_dora.pk, column, raw_contact_column(self.dora, column))
        self.assert_unreadable(self.globex_dora, "email")

    def test_a_failure_is_signalled_and_logged_without_the_value(self):
        stolen = raw_contact_column(self.dora, "email")
        write_raw_column("contacts_contact", self.eve.pk, "email", stolen)
        received = []

        def receiver(sender, **kwargs):
            received.append((sender, {key: value for key, value in kwargs.items() if key != "signal"}))

        decryption_failed.connect(receiver)
        self.addCleanup(decryption_failed.disconnect, receiver)
        with self.assertLogs("bluespark.security", level="ERROR") as logs:
            self.assert_unreadable(self.eve, "email")

        details = {
            "model": "contacts.Contact",
            "field": "email",
            "row": self.eve.public_id,
            "scope": self.acme.public_id,
            "reason": "DecryptionError",
        }
        assert received == [(Contact, details)]
        [record] = logs.records
        assert record.getMessage() == "decryption_failed"
        assert {key: getattr(record, key) for key in details} == details
        logged = repr(record.__dict__) + "".join(logs.output)
        for secret in (ADDRESS, "eve@example.com", stolen.hex(), repr(stolen), base64.b64encode(stolen).decode()):
            assert secret not in logged


class EditedCiphertextTests(CastTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        with account_scope(cls.acme):
            cls.dora = create_contact(cls.acme, email=ADDRESS, first_name="Dorota")

    def tamper(self, column: str, edit) -> None:
        write_raw_column("contacts_contact", self.dora.pk, column, edit(raw_contact_column(self.dora, column)))

    def assert_unreadable(self, field_name: str) -> None:
        with account_scope(self.acme), self.assertRaises(DecryptionError):
            getattr(Contact.objects.get(pk=self.dora.pk), field_name)

    def test_a_value_naming_an_unknown_key_version_does_not_open(self):
        self.tamper("first_name", lambda blob: blob[:1] + struct.pack(">I", 4242) + blob[5:])
        reasons = []

        def receiver(sender, reason, **kwargs):
            reasons.append(reason)

        decryption_failed.connect(receiver)
        self.addCleanup(decryption_failed.disconnect, receiver)
        self.assert_unreadable("first_name")
        assert reasons == ["KeyNotFound"]

    def test_a_single_flipped_byte_anywhere_in_the_value_does_not_open(self):
        original = raw_contact_column(self.dora, "first_name")
        for position in (0, 3, HEADER_BYTES, HEADER_BYTES + NONCE_BYTES, len(original) - 1):
            with self.subTest(position=position):
                flipped = bytearray(original)
                flipped[position] ^= 0x01
                write_raw_column("contacts_contact", self.dora.pk, "first_name", bytes(flipped))
                self.assert_unreadable("first_name")

    def test_a_truncated_value_does_not_open(self):
        original = raw_contact_column(self.dora, "first_name")
        for length in (0, 1, HEADER_BYTES + NONCE_BYTES, len(original) - 1):
            with self.subTest(length=length):
                write_raw_column("contacts_contact", self.dora.pk, "first_name", original[:length])
                self.assert_unreadable("first_name")

    def test_an_email_whose_blind_index_names_another_address_does_not_open(self):
        other_index = contact_email_index(self.acme, "eve@example.com")
        write_raw_column("contacts_contact", self.dora.pk, "email_index", other_index)
        self.assert_unreadable("email")
        with account_scope(self.acme):
            assert Contact.objects.get(pk=self.dora.pk).first_name == "Dorota"


class BlindIndexTests(CastTestCase):
    def test_the_same_address_in_two_accounts_has_unrelated_indexes(self):
        with account_scope(self.acme):
            in_acme = create_contact(self.acme, email=ADDRESS)
        with account_scope(self.globex):
            in_globex = create_contact(self.globex, email=ADDRESS)
        acme_index = raw_contact_column(in_acme, "email_index")
        globex_index = raw_contact_column(in_globex, "email_index")
        assert acme_index == contact_email_index(self.acme, ADDRESS)
        assert globex_index == contact_email_index(self.globex, ADDRESS)
        assert len({acme_index, globex_index, user_email_index(ADDRESS)}) == 3

    def test_spellings_of_one_address_are_one_contact_within_an_account(self):
        variants = ["Dora.Kowalska@Example.COM", f"  {ADDRESS} ", "ｄｏｒａ.ｋｏｗａｌｓｋａ@ｅｘａｍｐｌｅ.ｃｏｍ"]
        with account_scope(self.acme):
            dora = create_contact(self.acme, email=ADDRESS)
            for variant in variants:
                with self.subTest(variant=variant):
                    with self.assertRaisesMessage(ContactError, "already exists"):
                        create_contact(self.acme, email=variant)
                    assert contact_with_email(self.acme, variant) == dora
            assert Contact.objects.count() == 1
        with account_scope(self.globex):
            assert contact_with_email(self.globex, ADDRESS) is None

    def test_users_are_found_by_any_spelling_of_their_address(self):
        for variant in ("ALICE@acme.test", " alice@ACME.test ", "ａｌｉｃｅ@acme.test"):
            assert User.objects.with_email(variant).get() == self.alice


class RefusedQueryTests(CastTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        with account_scope(cls.acme):
            cls.dora = create_contact(cls.acme, email=ADDRESS, first_name="Dorota")

    def test_encrypted_fields_cannot_be_searched_ordered_or_updated(self):
        refused = {
            "filter(email=...)": lambda: Contact.objects.filter(email=ADDRESS),
            "filter(email__icontains=...)": lambda: Contact.objects.filter(email__icontains="dora"),
            "exclude(first_name=...)": lambda: Contact.objects.exclude(first_name="Dorota"),
            "filter(email__lower=...)": lambda: Contact.objects.filter(email__lower=ADDRESS),
            "order_by(email)": lambda: Contact.objects.order_by("email"),
            "order_by(-first_name)": lambda: Contact.objects.order_by("-first_name"),
            "distinct(email)": lambda: Contact.objects.distinct("email"),
            "update(email=...)": lambda: Contact.objects.update(email="x@example.com"),
            "filter(email_index__gt=...)": lambda: Contact.objects.filter(email_index__gt=b"\x00"),
            "users filter(email=...)": lambda: User.objects.filter(email="alice@acme.test"),
            "users order_by(full_name)": lambda: User.objects.order_by("full_name"),
        }
        with account_scope(self.acme):
            for name, query in refused.items():
                # update() refuses while compiling, inside its own rollback mark: keep it in a savepoint.
                with self.subTest(query=name), self.assertRaises(FieldError), transaction.atomic():
                    list(query())
            assert Contact.objects.get(pk=self.dora.pk).email == ADDRESS

    def test_null_checks_and_blind_index_equality_are_allowed(self):
        index = contact_email_index(self.acme, ADDRESS)
        with account_scope(self.acme):
            assert list(Contact.objects.filter(email__isnull=False)) == [self.dora]
            assert not Contact.objects.filter(email__isnull=True).exists()
            assert list(Contact.objects.filter(email_index=index)) == [self.dora]
            assert list(Contact.objects.filter(email_index__in=[index, b"\x00" * 32])) == [self.dora]

    def test_an_encrypted_field_cannot_be_declared_unique_or_indexed(self):
        for option in ("unique", "db_index", "primary_key"):
            with self.subTest(option=option), self.assertRaisesMessage(ValueError, f"cannot be {option}"):
                EncryptedTextField(**{option: True})


class ModelCheckTests(TestCase):
    @isolate_apps("contacts")
    def test_a_model_ordered_by_an_encrypted_field_fails_its_checks(self):
        class Shadow(models.Model):  # noqa: DJ008 - a throwaway model, built for its checks
            public_id = models.CharField(max_length=40)
            email = EncryptedTextField()

            class Meta:
                app_label = "contacts"
                ordering = ["-email"]

            def encryption_scope(self) -> str:
                return keys.PLATFORM_SCOPE

        assert [error.id for error in Shadow.check() if error.id.startswith("security.")] == ["security.E003"]

    @isolate_apps("contacts")
    def test_a_model_with_an_index_on_an_encrypted_field_fails_its_checks(self):
        class Shadow(models.Model):  # noqa: DJ008 - a throwaway model, built for its checks
            public_id = models.CharField(max_length=40)
            email = EncryptedTextField()

            class Meta:
                app_label = "contacts"
                indexes = [models.Index(fields=["public_id", "email"], name="shadow_email")]

            def encryption_scope(self) -> str:
                return keys.PLATFORM_SCOPE

        assert [error.id for error in Shadow.check() if error.id.startswith("security.")] == ["security.E004"]

    @isolate_apps("contacts")
    def test_a_model_without_public_id_or_scope_fails_its_checks(self):
        class Shadow(models.Model):  # noqa: DJ008 - a throwaway model, built for its checks
            email = EncryptedTextField()

            class Meta:
                app_label = "contacts"

        ids = [error.id for error in Shadow.check() if error.id.startswith("security.")]
        assert ids == ["security.E001", "security.E002"]

    @isolate_apps("contacts")
    def test_a_well_formed_model_passes_its_checks(self):
        class Shadow(models.Model):  # noqa: DJ008 - a throwaway model, built for its checks
            public_id = models.CharField(max_length=40)
            email = EncryptedTextField()

            class Meta:
                app_label = "contacts"
                ordering = ["public_id"]
                indexes = [models.Index(fields=["public_id"], name="shadow_public_id")]

            def encryption_scope(self) -> str:
                return keys.PLATFORM_SCOPE

        assert Shadow.check() == []


class SealAndOpenPropertyTests(CastTestCase):
    """Field-level sealing on unsaved rows: the keys come from the key store, the rows never touch the database."""

    def setUp(self) -> None:
        # Globex gets a data key of its own, so that opening there fails on the binding, not on a missing key.
        keys.primary_data_key(self.globex.public_id)

    def seal(self, account, public_id: str, field_name: str, text: str) -> bytes:
        instance = Contact(account=account, public_id=public_id)
        return Contact._meta.get_field(field_name).seal(instance, text)

    def open(self, account, public_id: str, field_name: str, blob: bytes) -> str:
        instance = Contact(account=account, public_id=public_id)
        instance.__dict__[field_name] = Sealed(blob)
        return getattr(instance, field_name)

    def test_any_text_round_trips_on_its_own_row_and_field(self):
        @settings(max_examples=30, deadline=None)
        @given(text=st.text())
        def round_trip(text):
            blob = self.seal(self.acme, "con_row", "first_name", text)
            assert self.open(self.acme, "con_row", "first_name", blob) == text

        round_trip()

    def test_a_sealed_value_opens_on_no_other_row_field_or_account(self):
        @settings(max_examples=30, deadline=None)
        @given(text=st.text(), other_row=st.from_regex(r"con_[a-z2-7]{26}", fullmatch=True))
        def opens_nowhere_else(text, other_row):
            blob = self.seal(self.acme, "con_row", "first_name", text)
            elsewhere = {
                "another row": (self.acme, other_row, "first_name"),
                "another field": (self.acme, "con_row", "last_name"),
                "another account": (self.globex, "con_row", "first_name"),
            }
            for place, (account, row, field_name) in elsewhere.items():
                try:
                    self.open(account, row, field_name, blob)
                except DecryptionError:
                    continue
                raise AssertionError(f"a value sealed for one row opened in {place}")

        opens_nowhere_else()
