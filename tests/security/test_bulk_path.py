"""The bulk path (imports, exports, lists) reads and writes exactly what the fields do."""

from __future__ import annotations

import pytest

from accounts.tenancy import account_scope
from contacts.models import Contact
from contacts.selectors import contact_with_email
from contacts.services import create_contact
from security.envelope import DecryptionError
from security.fields import Sealed, blind_index_column, decryption_failed, open_column, seal_column
from tests.cast import CastTestCase


class BulkPathTests(CastTestCase):
    def test_values_sealed_in_bulk_read_back_through_the_model(self):
        with account_scope(self.acme):
            contact = Contact(account=self.acme)
            scope = self.acme.public_id
            [email] = seal_column(Contact, "email", scope, [(contact.public_id, "bulk@acme.test")])
            [first] = seal_column(Contact, "first_name", scope, [(contact.public_id, "Bulk")])
            [index] = blind_index_column(scope, "email", ["BULK@acme.test "])
            contact.__dict__.update(email=Sealed(email), first_name=Sealed(first), email_index=index, last_name="")
            contact.save()
            found = contact_with_email(self.acme, "bulk@acme.test")
            assert (found.pk, found.email, found.first_name) == (contact.pk, "bulk@acme.test", "Bulk")

    def test_values_sealed_by_the_model_open_in_bulk_with_their_index_checked(self):
        with account_scope(self.acme):
            made = [create_contact(self.acme, email=f"m{n}@acme.test", first_name=f"M{n}") for n in range(3)]
            rows = list(Contact.objects.filter(pk__in=[c.pk for c in made]).order_by("pk"))
        emails = open_column(
            Contact,
            "email",
            self.acme.public_id,
            [(row.public_id, row.__dict__["email"]) for row in rows],
            blind_indexes=[row.email_index for row in rows],
        )
        assert emails == ["m0@acme.test", "m1@acme.test", "m2@acme.test"]

    def test_a_moved_value_or_a_wrong_index_fails_and_is_reported(self):
        with account_scope(self.acme):
            one, two = (create_contact(self.acme, email=f"x{n}@acme.test") for n in range(2))
            one, two = Contact.objects.get(pk=one.pk), Contact.objects.get(pk=two.pk)
        reports = []
        decryption_failed.connect(lambda **details: reports.append(details), weak=False, dispatch_uid="bulk")
        self.addCleanup(decryption_failed.disconnect, dispatch_uid="bulk")
        with pytest.raises(DecryptionError, match=two.public_id):
            open_column(Contact, "email", self.acme.public_id, [(two.public_id, one.__dict__["email"])])
        with pytest.raises(DecryptionError):
            open_column(
                Contact,
                "email",
                self.acme.public_id,
                [(one.public_id, one.__dict__["email"])],
                blind_indexes=[two.email_index],
            )
        with pytest.raises(DecryptionError):
            open_column(Contact, "email", self.globex.public_id, [(one.public_id, one.__dict__["email"])])
        assert [(r["row"], r["field"]) for r in reports] == [
            (two.public_id, "email"),
            (one.public_id, "email"),
            (one.public_id, "email"),
        ]

    def test_blind_indexes_in_bulk_equal_the_fields_own(self):
        with account_scope(self.acme):
            contact = create_contact(self.acme, email="Same@Acme.test")
        assert blind_index_column(self.acme.public_id, "email", ["same@acme.test"]) == [bytes(contact.email_index)]
