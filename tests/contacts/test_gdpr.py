"""The person's rights: export everything held about them, erase them (keeping statistics and a keyed tombstone).

Also the dashboard pages for both (admins, re-authentication, never in a
support session) and the suppression list page.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from datetime import UTC, datetime, timedelta

import time_machine
from django.apps import apps
from django.core import mail
from django.db import connection
from django.urls import reverse

from accounts.models import SupportGrant
from accounts.reauth import VERIFIED_AT_KEY
from accounts.support import grant_support_access
from accounts.tenancy import TenantModel, account_scope
from audit.models import AuditEvent
from campaigns.models import Campaign
from contacts import consent, gdpr, services
from contacts.models import (
    Contact,
    ContactTag,
    CustomField,
    MailingList,
    SensitiveValue,
    Subscription,
    Suppression,
    Tag,
)
from contacts.selectors import contact_email_index
from delivery.models import EngagementEvent
from delivery.services import record_engagement
from security.fields import encrypted_fields
from tests.cast import CastTestCase

T0 = datetime(2030, 3, 4, 10, 0, tzinfo=UTC)
STAMP = re.compile(r'name="stamp" value="([^"]+)"')
CONFIRM_PATH = re.compile(r"https?://\S+?(/f/confirm/[^/\s]+/)")


def canary() -> str:
    return secrets.token_hex(6).upper()


class GdprTestCase(CastTestCase):
    def setUp(self) -> None:
        traveller = time_machine.travel(T0, tick=False)
        self.clock = traveller.start()
        self.addCleanup(traveller.stop)
        self.token = canary()
        self.email = f"Canary.{self.token}@example.test"
        self.other_token = canary()
        with account_scope(self.acme):
            self.news = MailingList(account=self.acme, name="News", form_enabled=True, consent_text="Yes to news.")
            self.news.save()
            self.plan = CustomField(account=self.acme, key="plan", label="Plan")
            self.plan.save()
            self.passport = CustomField(account=self.acme, key="passport", label="Passport", sensitive=True)
            self.passport.save()
            self.person = Contact(
                account=self.acme,
                email=self.email,
                first_name=f"First{self.token}",
                last_name=f"Last{self.token}",
                attributes={"plan": f"plan-{self.token}"},
            )
            self.person.save()
            SensitiveValue(account=self.acme, contact=self.person, field=self.passport, value=f"P{self.token}").save()
            tag = Tag(account=self.acme, name="vip")
            tag.save()
            ContactTag(account=self.acme, contact=self.person, tag=tag).save()
            consent.subscribe_contact(
                self.acme,
                self.person,
                self.news,
                source="form",
                ip="203.0.113.9",
                consent_text=f"I, {self.token}, agree.",
            )
            consent.subscribe_contact(self.acme, self.person, self.acme_list, source="import")
            consent.unsubscribe_contact(self.acme, self.person, self.acme_list, reason="bounced")
            self.neighbour = Contact(
                account=self.acme, email=f"n.{self.other_token}@example.test", first_name=self.other_token
            )
            self.neighbour.save()
            consent.subscribe_contact(self.acme, self.neighbour, self.news, source="api")
        with account_scope(self.globex):
            # The same address in another account: another person as far as Acme is concerned.
            twin = Contact(account=self.globex, email=self.email, first_name=f"Twin{self.other_token}")
            twin.save()

    def events(self, action: str) -> list[AuditEvent]:
        return list(AuditEvent.objects.filter(account_id=self.acme.public_id, action=action).order_by("sequence"))

    def login(self, user, *, verified: bool = True) -> None:
        self.client.force_login(user)
        session = self.client.session
        session[VERIFIED_AT_KEY] = time.time() - (0 if verified else 3600)
        session.save()

    def url(self, name: str, **kwargs) -> str:
        return reverse(f"contacts:{name}", kwargs={"account_id": self.acme.public_id, **kwargs})


class ExportTests(GdprTestCase):
    def test_the_export_holds_everything_about_the_person(self):
        with account_scope(self.acme):
            data = gdpr.export_person(self.acme, self.person)
        contact = data["contact"]
        assert (contact["id"], contact["email"]) == (self.person.public_id, self.email)
        assert (contact["first_name"], contact["last_name"]) == (f"First{self.token}", f"Last{self.token}")
        assert {(field["key"], field["sensitive"], field["value"]) for field in data["custom_fields"]} == {
            ("plan", False, f"plan-{self.token}"),
            ("passport", True, f"P{self.token}"),
        }
        assert data["tags"] == ["vip"]
        by_list = {item["list"]["name"]: item for item in data["subscriptions"]}
        assert set(by_list) == {"News", "Acme customers"}
        news = by_list["News"]
        assert news["status"] == "subscribed"
        assert news["consent"] == {
            "source": "form",
            "at": T0.isoformat(),
            "ip": "203.0.113.9",
            "text": f"I, {self.token}, agree.",
            "confirmed_at": None,
        }
        assert by_list["Acme customers"]["status"] == "unsubscribed"
        assert data["suppression"] == {"suppressed": True, "reason": "bounced", "since": T0.isoformat()}
        assert [(event["action"], event["details"]) for event in data["events"]] == [
            ("suppression.added", {"reason": "bounced", "previous_reason": None})
        ]

    def test_the_export_holds_the_persons_opens_and_clicks_oldest_first(self):
        with account_scope(self.acme):
            record_engagement(self.acme, self.person, "clicked", campaign=self.acme_campaign)
            record_engagement(self.acme, self.person, "opened", occurred_at=T0 - timedelta(days=2))
            record_engagement(self.acme, self.neighbour, "opened", campaign=self.acme_campaign)
            data = gdpr.export_person(self.acme, self.person)
        assert data["engagement"] == [
            {"kind": "opened", "at": (T0 - timedelta(days=2)).isoformat(), "campaign": None},
            {
                "kind": "clicked",
                "at": T0.isoformat(),
                "campaign": {"id": self.acme_campaign.public_id, "name": "Acme launch"},
            },
        ]

    def test_the_export_holds_nothing_of_another_contact_or_account(self):
        with account_scope(self.acme):
            text = json.dumps(gdpr.export_person(self.acme, self.person))
        assert self.token in text
        assert self.other_token not in text
        assert self.neighbour.public_id not in text and self.globex.public_id not in text


class ErasureTests(GdprTestCase):
    def readable_personal_data(self) -> set[str]:
        """Where the canary can still be read: every encrypted value of the account opened, and every raw column."""
        found = set()
        needle = self.token.lower()
        with account_scope(self.acme):
            for model in apps.get_models():
                fields = encrypted_fields(model)
                if not issubclass(model, TenantModel) or not fields:
                    continue
                for row in model.objects.filter(account=self.acme):
                    for field in fields:
                        if needle in str(getattr(row, field.name)).lower():
                            found.add(f"{model.__name__}.{field.name}")
        with connection.cursor() as cursor:
            for table in connection.introspection.table_names(cursor):
                cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 - introspected
                columns = [column.name for column in cursor.description]
                for row in cursor.fetchall():
                    for column, value in zip(columns, row, strict=True):
                        raw = bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
                        if needle.encode() in raw.lower():
                            found.add(f"{table}.{column}")
        return found

    def erase(self) -> None:
        with account_scope(self.acme):
            gdpr.erase_person(self.acme, self.person, actor=self.alice)

    def test_erasure_leaves_no_readable_personal_data(self):
        assert {"Contact.email", "Contact.first_name", "SensitiveValue.value", "Subscription.consent_text"} <= (
            self.readable_personal_data()
        )
        assert "contacts_contact.attributes" in self.readable_personal_data()
        self.erase()
        assert self.readable_personal_data() == set()
        with account_scope(self.acme):
            row = Contact.objects.get(pk=self.person.pk)
            assert row.status == Contact.Status.ERASED
            assert (row.first_name, row.last_name, row.attributes) == ("", "", {})
            assert row.email == f"{row.public_id}@erased.invalid"
            assert bytes(row.email_index) != contact_email_index(self.acme, self.email)
            assert not SensitiveValue.objects.filter(contact=row).exists()
            assert not ContactTag.objects.filter(contact=row).exists()
            news = Subscription.objects.get(contact=row, mailing_list=self.news)
            assert (news.status, news.consent_ip, news.consent_text) == ("unsubscribed", None, "")
            assert (news.consent_source, news.consent_at) == ("form", T0)
        # The neighbour and the other account's twin are untouched.
        with account_scope(self.acme):
            assert Contact.objects.get(pk=self.neighbour.pk).first_name == self.other_token
        with account_scope(self.globex):
            assert Contact.objects.get(account=self.globex).email == self.email

    def test_the_row_stays_for_statistics_and_the_tombstone_blocks_the_address(self):
        with account_scope(self.acme):
            before = Subscription.objects.filter(mailing_list=self.news).count()
        self.erase()
        with account_scope(self.acme):
            assert Subscription.objects.filter(mailing_list=self.news).count() == before
            assert Suppression.objects.get(email_index=contact_email_index(self.acme, self.email)).reason == "erased"
            assert consent.is_suppressed(self.acme, self.email.upper())
            index = contact_email_index(self.acme, self.email)
            assert consent.suppressed_indexes(self.acme, [index]) == {index}
            with self.assertRaisesMessage(consent.ConsentError, "only the person"):
                consent.unsuppress(self.acme, self.email)
        with account_scope(self.globex):
            assert not consent.is_suppressed(self.globex, self.email)

    def test_no_import_or_api_write_stores_an_erased_persons_address_again(self):
        self.erase()
        with account_scope(self.acme):
            before = Contact.objects.count()
            for status in ("subscribed", "unsubscribed"):
                with self.assertRaisesMessage(services.ContactError, "asked to be erased"):
                    services.upsert_contact(self.acme, email=self.email.upper(), status=status, source="api")
            (result,) = services.bulk_upsert(
                self.acme, [{"email": self.email, "status": "unsubscribed", "first_name": "Back"}], source="import"
            )
            assert result.status == "error"
            assert Contact.objects.count() == before

    def test_the_events_name_no_personal_data(self):
        self.erase()
        (erased,) = self.events("contact.erased")
        assert (erased.actor_id, erased.target_type, erased.target_id) == (
            self.alice.public_id,
            "contact",
            self.person.public_id,
        )
        assert erased.data == {"sensitive_values": 1, "tags": 1, "subscriptions": 2}
        tombstone = self.events("suppression.added")[-1]
        assert tombstone.data == {"reason": "erased", "previous_reason": "bounced"}
        assert tombstone.target_id == ""  # never links the anonymous row to the address's index
        trail = json.dumps([event.data for event in AuditEvent.objects.all()])
        assert self.token.lower() not in trail.lower()

    def test_opens_and_clicks_stay_with_the_anonymous_row_and_keep_counting(self):
        with account_scope(self.acme):
            for kind in ("opened", "clicked"):
                record_engagement(self.acme, self.person, kind, campaign=self.acme_campaign)
            before = list(EngagementEvent.objects.order_by("id").values_list("contact_id", "campaign_id", "kind"))
        self.erase()
        assert self.readable_personal_data() == set()
        with account_scope(self.acme):
            after = list(EngagementEvent.objects.order_by("id").values_list("contact_id", "campaign_id", "kind"))
            assert after == before
            assert after == [(self.person.pk, self.acme_campaign.pk, kind) for kind in ("opened", "clicked")]
            # The campaign's figures still count the erased person; nothing new is recorded about them.
            assert EngagementEvent.objects.filter(campaign=self.acme_campaign, kind="opened").count() == 1
            erased = Contact.objects.get(pk=self.person.pk)
            assert record_engagement(self.acme, erased, "opened", campaign=self.acme_campaign) is None
            assert EngagementEvent.objects.count() == 2
            # The anonymous row's export still lists them; nothing in them names the person.
            assert [item["kind"] for item in gdpr.export_person(self.acme, erased)["engagement"]] == [
                "opened",
                "clicked",
            ]
        (event,) = self.events("contact.erased")
        assert event.data == {"sensitive_values": 1, "tags": 1, "subscriptions": 2}

    def test_deleting_a_campaign_keeps_the_erased_persons_opens_without_it(self):
        with account_scope(self.acme):
            record_engagement(self.acme, self.person, "opened", campaign=self.acme_campaign)
        self.erase()
        with account_scope(self.acme):
            Campaign.objects.filter(pk=self.acme_campaign.pk).delete()
            assert list(EngagementEvent.objects.values_list("contact_id", "campaign_id")) == [(self.person.pk, None)]

    def test_registered_sections_are_exported_and_erased_with_the_person(self):
        # An app that holds more about a contact registers it (delivery does from its AppConfig.ready()).
        calls = []

        def export_loyalty(account, contact):
            calls.append(("export", account.pk, contact.pk))
            return {"points": 120}

        def erase_loyalty(account, contact):
            calls.append(("erase", account.pk, contact.pk))
            return 3

        sections = {"loyalty": gdpr.PersonData(export=export_loyalty, erase=erase_loyalty)}
        with gdpr.using_person_data(sections), account_scope(self.acme):
            data = gdpr.export_person(self.acme, self.person)
            assert data["loyalty"] == {"points": 120}
            assert "engagement" not in data  # delivery's section is out of the block's registry
            self.erase()
        assert calls == [("export", self.acme.pk, self.person.pk), ("erase", self.acme.pk, self.person.pk)]
        (event,) = self.events("contact.erased")
        assert event.data == {"loyalty": 3, "sensitive_values": 1, "tags": 1, "subscriptions": 2}
        with account_scope(self.acme):  # delivery's section is back after the block
            assert gdpr.export_person(self.acme, Contact.objects.get(pk=self.person.pk))["engagement"] == []

    def test_erasing_twice_is_refused(self):
        self.erase()
        with account_scope(self.acme), self.assertRaisesMessage(gdpr.GdprError, "erased already"):
            gdpr.erase_person(self.acme, Contact.objects.get(pk=self.person.pk))

    def test_the_person_can_subscribe_again_through_the_form(self):
        self.erase()
        form = reverse("subscribe:form", kwargs={"list_id": self.news.public_id})
        stamp = STAMP.search(self.client.get(form).content.decode())[1]
        self.clock.shift(10)
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(form, {"email": self.email, "stamp": stamp})
        assert response.status_code == 200
        (message,) = mail.outbox
        assert message.to == [self.email.lower()]
        with account_scope(self.acme):
            assert consent.is_suppressed(self.acme, self.email)  # not until the person follows the link
        self.client.post(CONFIRM_PATH.search(message.body)[1])
        with account_scope(self.acme):
            assert not consent.is_suppressed(self.acme, self.email)
            back = Contact.objects.get(email_index=contact_email_index(self.acme, self.email))
            assert back.pk != self.person.pk and back.status == "subscribed"
            assert Subscription.objects.get(contact=back).status == "subscribed"
            assert Contact.objects.get(pk=self.person.pk).status == "erased"
        (lifted,) = self.events("suppression.removed")
        assert lifted.data == {"reason": "erased", "lifted_by": "person"}


class DashboardTests(GdprTestCase):
    def test_an_admin_downloads_the_json_after_re_authenticating(self):
        url = self.url("gdpr_export", contact_id=self.person.public_id)
        self.login(self.alice, verified=False)
        response = self.client.post(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("reauthenticate"))
        assert self.events("contact.data_exported") == []
        self.login(self.alice)
        assert self.client.get(url).status_code == 200
        assert self.events("contact.data_exported") == []  # the page only asks
        response = self.client.post(url)
        assert response.status_code == 200
        assert response["Content-Disposition"] == f'attachment; filename="person-{self.person.public_id}.json"'
        assert json.loads(response.content)["contact"]["email"] == self.email
        (exported,) = self.events("contact.data_exported")
        assert (exported.actor_id, exported.target_id, exported.data) == (
            self.alice.public_id,
            self.person.public_id,
            {},
        )

    def test_an_editor_may_neither_export_nor_erase(self):
        self.login(self.bob)
        for name in ("gdpr_export", "gdpr_erase"):
            assert (
                self.client.post(self.url(name, contact_id=self.person.public_id), {"confirm": "on"}).status_code == 403
            )
        with account_scope(self.acme):
            assert Contact.objects.get(pk=self.person.pk).status != "erased"

    def test_another_accounts_owner_gets_404(self):
        self.login(self.charlie)
        url = reverse(
            "contacts:gdpr_export", kwargs={"account_id": self.globex.public_id, "contact_id": self.person.public_id}
        )
        assert self.client.post(url).status_code == 404

    def test_an_admin_erases_after_confirming(self):
        url = self.url("gdpr_erase", contact_id=self.person.public_id)
        self.login(self.alice)
        assert self.client.post(url, {}).status_code == 400
        response = self.client.post(url, {"confirm": "on"})
        assert response.status_code == 302
        with account_scope(self.acme):
            assert Contact.objects.get(pk=self.person.pk).status == "erased"
        assert len(self.events("contact.erased")) == 1

    def test_a_support_session_can_neither_export_nor_erase(self):
        grant_support_access(
            self.acme, access=SupportGrant.Access.READ_WRITE, days=1, ticket="T-1", granted_by=self.alice
        )
        self.login(self.sam)
        started = self.client.post(
            reverse("staff:start_session", kwargs={"target_account": self.acme.public_id}),
            {"acting_as": self.alice.public_id, "reason": "Customer asks about an erasure", "ticket": "T-1"},
        )
        assert started.status_code == 302
        for name, data in (("gdpr_export", {}), ("gdpr_erase", {"confirm": "on"})):
            assert self.client.post(self.url(name, contact_id=self.person.public_id), data).status_code == 403
        assert len(self.events("support.action_refused")) == 2
        assert self.events("contact.data_exported") == [] and self.events("contact.erased") == []


class SuppressionPageTests(GdprTestCase):
    def test_a_viewer_reads_the_counts_but_cannot_change_them(self):
        self.login(self.vic)
        response = self.client.get(self.url("suppression_index"))
        body = response.content.decode()
        assert response.status_code == 200
        assert re.search(r"<td>Bounced</td><td>1</td>", body)
        assert self.token.lower() not in body.lower()
        assert 'action="' + self.url("suppression_add") not in body
        assert self.client.post(self.url("suppression_add"), {"add-email": "x@example.test"}).status_code == 403
        with account_scope(self.acme):
            assert not consent.is_suppressed(self.acme, "x@example.test")

    def test_an_editor_adds_and_removes_an_address(self):
        self.login(self.bob)
        response = self.client.post(self.url("suppression_add"), {"add-email": "Block@Example.test"})
        assert response.status_code == 302
        with account_scope(self.acme):
            assert Suppression.objects.get(email_index=contact_email_index(self.acme, "block@example.test")).reason == (
                "manual"
            )
        assert (
            self.client.post(self.url("suppression_remove"), {"remove-email": "block@example.test"}).status_code == 302
        )
        with account_scope(self.acme):
            assert not consent.is_suppressed(self.acme, "block@example.test")
        assert [event.actor_id for event in self.events("suppression.removed")] == [self.bob.public_id]

    def test_an_erased_address_cannot_be_removed_from_the_page(self):
        with account_scope(self.acme):
            gdpr.erase_person(self.acme, self.person, actor=self.alice)
        self.login(self.alice)
        response = self.client.post(self.url("suppression_remove"), {"remove-email": self.email})
        assert response.status_code == 400 and "only the person" in response.content.decode()
        with account_scope(self.acme):
            assert consent.is_suppressed(self.acme, self.email)
