"""The audience's storage: what is encrypted, what is indexed, and what the indexes promise."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from accounts.tenancy import account_scope
from contacts.models import Contact, CustomField, SensitiveValue, Suppression
from contacts.selectors import contact_email_index
from contacts.services import create_contact
from security.fields import blind_index_for
from tests.cast import CastTestCase


class ContactStorageTests(CastTestCase):
    def test_the_domain_index_matches_any_spelling_of_the_domain_within_an_account_only(self):
        with account_scope(self.acme):
            one = create_contact(self.acme, email="ann@Example.COM")
            two = create_contact(self.acme, email="bo@example.com")
        with account_scope(self.globex):
            other = create_contact(self.globex, email="ann@example.com")
        assert bytes(one.email_domain_index) == bytes(two.email_domain_index)
        assert bytes(one.email_domain_index) == blind_index_for(self.acme.public_id, "email_domain", "x@EXAMPLE.com")
        assert bytes(other.email_domain_index) != bytes(one.email_domain_index)
        # Unrelated to the address's own index, too.
        assert bytes(one.email_domain_index) != bytes(one.email_index)

    def test_a_read_checks_the_address_index_but_not_the_derived_domain_index(self):
        with account_scope(self.acme):
            contact = create_contact(self.acme, email="cy@example.com")
            Contact.objects.filter(pk=contact.pk).update(email_domain_index=None)
            assert Contact.objects.get(pk=contact.pk).email == "cy@example.com"
            Contact.objects.filter(pk=contact.pk).update(email_index=contact_email_index(self.acme, "x@y.test"))
            with pytest.raises(Exception, match="cannot be decrypted"):
                Contact.objects.get(pk=contact.pk).email  # noqa: B018

    def test_a_sensitive_value_is_stored_encrypted_and_matched_by_its_index(self):
        with account_scope(self.acme):
            contact = create_contact(self.acme, email="di@example.com")
            field = CustomField.objects.create(account=self.acme, key="passport", label="Passport", sensitive=True)
            SensitiveValue.objects.create(account=self.acme, contact=contact, field=field, value=" X1234567 ")
            found = SensitiveValue.objects.get(
                field=field, value_index=blind_index_for(self.acme.public_id, "text", "X1234567")
            )
            assert found.value == " X1234567 "
        with connection.cursor() as cursor:
            cursor.execute("SELECT value FROM contacts_sensitivevalue")
            (stored,) = cursor.fetchone()
        assert b"X1234567" not in bytes(stored)

    def test_one_suppression_per_address_per_account(self):
        index = contact_email_index(self.acme, "gone@example.com")
        with account_scope(self.acme):
            Suppression.objects.create(account=self.acme, email_index=index, reason=Suppression.Reason.ERASED)
            with pytest.raises(IntegrityError), transaction.atomic():
                Suppression.objects.create(account=self.acme, email_index=index, reason=Suppression.Reason.MANUAL)
