"""The contacts CSV export: re-authentication, the audit event, formula-safe cells, streaming, tenancy."""

from __future__ import annotations

import csv
import io
import time

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import SupportGrant
from accounts.reauth import VERIFIED_AT_KEY
from accounts.support import grant_support_access
from accounts.tenancy import account_scope
from audit.models import AuditEvent
from contacts import views
from contacts.models import Contact, CustomField, Segment, SensitiveValue
from contacts.services import create_contact, update_contact
from tests.cast import CastTestCase


class ContactExportTests(CastTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        with account_scope(cls.acme):
            CustomField.objects.create(account=cls.acme, key="plan", label="Plan")
            cls.passport = CustomField.objects.create(
                account=cls.acme, key="passport", label="Passport", sensitive=True
            )
            cls.mallory = create_contact(
                cls.acme,
                email="mallory@example.com",
                first_name="=cmd|' /C calc'!A0",
                last_name="@SUM(1+1)",
                attributes={"plan": "+Pro"},
                tags=["-vip", "gold"],
            )
            SensitiveValue.objects.create(account=cls.acme, contact=cls.mallory, field=cls.passport, value="X1234567")
            cls.plain = create_contact(cls.acme, email="plain@example.com", first_name="Pat")
            update_contact(cls.acme, cls.plain, status=Contact.Status.UNSUBSCRIBED)
            cls.gold = Segment.objects.create(
                account=cls.acme, name="Gold", definition={"all": [{"field": "tag", "op": "has", "value": "gold"}]}
            )
        with account_scope(cls.globex):
            create_contact(cls.globex, email="globex-only@example.com", first_name="Gus")

    def login(self, user, *, verified: bool = True) -> None:
        self.client.force_login(user)
        session = self.client.session
        session[VERIFIED_AT_KEY] = time.time() - (0 if verified else 3600)
        session.save()

    def url(self) -> str:
        return reverse("contacts:contact_export", kwargs={"account_id": self.acme.public_id})

    def export(self, data: dict | None = None) -> list[list[str]]:
        response = self.client.post(self.url(), data or {})
        assert response.status_code == 200, response.status_code
        assert response.streaming
        assert response["Content-Type"] == "text/csv; charset=utf-8"
        assert response["Content-Disposition"].startswith('attachment; filename="contacts-')
        body = b"".join(response.streaming_content).decode()
        return list(csv.reader(io.StringIO(body)))

    def test_it_needs_a_fresh_password_check_and_exports_nothing_before(self):
        self.login(self.alice, verified=False)
        for response in (self.client.get(self.url()), self.client.post(self.url())):
            assert response.status_code == 302
            assert response["Location"].startswith(reverse("reauthenticate"))
        assert not AuditEvent.objects.filter(action="contact.exported").exists()

    def test_editors_and_viewers_cannot_export(self):
        for user in (self.bob, self.vic):
            self.login(user)
            assert self.client.get(self.url()).status_code == 403
            assert self.client.post(self.url()).status_code == 403

    def test_a_support_session_cannot_export_even_acting_as_an_owner(self):
        grant_support_access(
            self.acme, access=SupportGrant.Access.READ_WRITE, days=1, ticket="T-1", granted_by=self.alice
        )
        self.login(self.sam)
        start = reverse("staff:start_session", kwargs={"target_account": self.acme.public_id})
        started = self.client.post(
            start, {"acting_as": self.alice.public_id, "reason": "Export broken", "ticket": "T-1"}
        )
        assert started.status_code == 302
        response = self.client.post(self.url())
        assert response.status_code == 403
        assert not AuditEvent.objects.filter(action="contact.exported").exists()

    def test_the_confirm_page_names_the_filters_and_the_sensitive_fields_left_out(self):
        self.login(self.alice)
        response = self.client.get(self.url(), {"segment": self.gold.public_id, "status": "subscribed"})
        assert response.status_code == 200
        html = response.content.decode()
        assert "Gold" in html and "Passport" in html and "not exported" in html
        assert f'name="segment" value="{self.gold.public_id}"' in html
        assert not AuditEvent.objects.filter(action="contact.exported").exists()

    def test_it_streams_the_accounts_contacts_with_formula_cells_neutralised(self):
        self.login(self.alice)
        rows = self.export()
        header, body = rows[0], rows[1:]
        assert header == [*views.EXPORT_COLUMNS, "plan"]
        by_email = {row[1]: dict(zip(header, row, strict=True)) for row in body}
        assert set(by_email) == {"mallory@example.com", "plain@example.com"}
        mallory = by_email["mallory@example.com"]
        assert mallory["id"] == self.mallory.public_id
        assert mallory["first_name"] == "'=cmd|' /C calc'!A0"
        assert mallory["last_name"] == "'@SUM(1+1)"
        assert mallory["plan"] == "'+Pro"
        assert mallory["tags"] == "'-vip, gold"
        assert mallory["source"] == "manual" and mallory["status"] == "subscribed"
        assert by_email["plain@example.com"]["status"] == "unsubscribed"

    def test_sensitive_fields_are_never_exported(self):
        self.login(self.alice)
        rows = self.export()
        assert "passport" not in rows[0]
        assert "X1234567" not in str(rows)

    def test_the_export_is_recorded_before_streaming_with_its_filters_and_no_personal_data(self):
        self.login(self.alice)
        response = self.client.post(self.url(), {"segment": self.gold.public_id, "email": "mallory@example.com"})
        event = AuditEvent.objects.get(action="contact.exported")  # before a byte of the body is read
        assert event.account_id == self.acme.public_id and event.actor_id == self.alice.public_id
        assert event.data == {
            "email_search": True,
            "list": None,
            "status": None,
            "tag": None,
            "segment": self.gold.public_id,
        }
        assert "mallory" not in str(event.data)
        body = b"".join(response.streaming_content).decode()
        assert "mallory@example.com" in body and "plain@example.com" not in body

    def test_filters_narrow_the_export(self):
        self.login(self.alice)
        assert [row[1] for row in self.export({"status": "unsubscribed"})[1:]] == ["plain@example.com"]
        assert [row[1] for row in self.export({"tag": "gold"})[1:]] == ["mallory@example.com"]

    def test_another_accounts_segment_is_a_404_and_records_nothing(self):
        with account_scope(self.globex):
            foreign = Segment.objects.create(account=self.globex, name="Theirs")
        self.login(self.alice)
        assert self.client.post(self.url(), {"segment": foreign.public_id}).status_code == 404
        assert not AuditEvent.objects.filter(action="contact.exported").exists()

    def test_batches_follow_each_other_without_gaps_or_repeats(self):
        with account_scope(self.acme):
            stamp = Contact.objects.get(pk=self.plain.pk).created_at
            # More than one batch, every row with one timestamp: only the id orders them.
            Contact.objects.bulk_create(
                [
                    Contact(account=self.acme, email=f"bulk{number:04d}@example.com", created_at=stamp)
                    for number in range(views.EXPORT_BATCH + 37)
                ]
            )
            expected = set(Contact.objects.values_list("public_id", flat=True))
        self.login(self.alice)
        response = self.client.post(self.url())
        with CaptureQueriesContext(connection) as queries:
            chunks = list(response.streaming_content)
        assert len(chunks) == 1 + 2  # the header, then one chunk per batch
        # Each batch brings its contacts' tags in its own query: no second query per batch.
        assert len(queries) == 2, [query["sql"][:120] for query in queries]
        ids = [row[0] for row in csv.reader(io.StringIO(b"".join(chunks).decode()))][1:]
        assert len(ids) == len(set(ids)) == len(expected)
        assert set(ids) == expected
