"""No request chooses what only Bluespark decides: the account, a status it finds, or the evidence of consent.

Through every contact write of the API (create, PATCH, upsert, bulk,
subscribe) and the CSV import (sniff's suggestions, ``configure``, the
wizard's page and the engine), a key naming the account, an id, a source,
a timestamp or consent evidence is refused by name and nothing is written;
what is stored is what the server found (the key's account, its own clock,
the list's consent text).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse

from accounts.models import Account, ApiScope
from accounts.services import create_api_key
from accounts.tenancy import account_scope
from bluespark.rest import PROBLEM_CONTENT_TYPE
from contacts.consent import subscribe_contact, unsubscribe_contact
from contacts.importing import (
    ImportError_,
    configure,
    run_contact_import,
    sniff,
    start_import,
    store_upload,
)
from contacts.models import Contact, ContactImport, CustomField, MailingList, Subscription, Suppression
from contacts.selectors import contact_with_email
from contacts.services import create_contact, create_mailing_list
from tests.cast import CastTestCase

#: The server's clock in every test here: anything stored at another time came from the request.
T0 = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
CLAIMED_TIME = "2001-01-01T00:00:00Z"
READ_ONLY = ["This field is read-only."]
UNKNOWN = ["Unknown field. Custom field values go under attributes."]


def snapshot(account: Account, contact: Contact) -> dict[str, Any]:
    """Everything a write could change about a contact, read afresh from the database."""
    with account_scope(account):
        row = Contact.objects.get(pk=contact.pk)
        subscriptions = sorted(
            (
                sub.mailing_list.public_id,
                sub.status,
                sub.consent_source,
                sub.consent_at,
                sub.consent_ip,
                sub.consent_text,
                sub.confirmed_at,
            )
            for sub in Subscription.objects.filter(contact=row).select_related("mailing_list")
        )
        return {
            "account_id": row.account_id,
            "public_id": row.public_id,
            "email": row.email,
            "email_index": bytes(row.email_index),
            "first_name": row.first_name,
            "last_name": row.last_name,
            "status": row.status,
            "source": row.source,
            "attributes": row.attributes,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "tags": sorted(row.tags.values_list("name", flat=True)),
            "subscriptions": subscriptions,
        }


def account_snapshot(account: Account) -> dict[str, Any]:
    """Every contact, subscription and suppression of an account."""
    with account_scope(account):
        contacts = list(Contact.objects.order_by("pk"))
        subscriptions = Subscription.objects.count()
        suppressions = sorted((bytes(s.email_index), s.reason) for s in Suppression.objects.all())
    return {
        "contacts": [snapshot(account, contact) for contact in contacts],
        "subscriptions": subscriptions,
        "suppressions": suppressions,
    }


class MassAssignmentApiTestCase(CastTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        with account_scope(cls.acme):
            cls.writer = create_api_key(cls.acme, name="crm", scopes=[ApiScope.CONTACTS_WRITE], created_by=cls.alice)
            CustomField.objects.create(account=cls.acme, key="plan", label="Plan")
            cls.ann = create_contact(cls.acme, email="ann@acme.test", first_name="Ann", tags=["vip"])
            cls.bo = create_contact(cls.acme, email="bo@acme.test", first_name="Bo", attributes={"plan": "free"})
            cls.left = create_contact(cls.acme, email="left@acme.test", first_name="Left")
            subscribe_contact(cls.acme, cls.ann, cls.acme_list, source=Contact.Source.MANUAL)
            subscribe_contact(cls.acme, cls.left, cls.acme_list, source=Contact.Source.MANUAL)
            unsubscribe_contact(cls.acme, cls.left, cls.acme_list, reason=Suppression.Reason.BOUNCED)
            cls.news = MailingList(account=cls.acme, name="News", consent_text="Yes, send me the Acme news.")
            cls.news.save()
            cls.confirmed_news = MailingList(
                account=cls.acme, name="Confirmed news", opt_in=MailingList.OptIn.DOUBLE, consent_text="Double."
            )
            cls.confirmed_news.save()
        with account_scope(cls.globex):
            cls.gus = create_contact(cls.globex, email="gus@globex.test", first_name="Gus")
            subscribe_contact(cls.globex, cls.gus, cls.globex_list, source=Contact.Source.FORM, ip="192.0.2.1")

    def setUp(self) -> None:
        super().setUp()
        traveller = time_machine.travel(T0, tick=False)
        traveller.start()
        self.addCleanup(traveller.stop)
        self.globex_before = account_snapshot(self.globex)

    def tearDown(self) -> None:
        # Whatever a test sent with Acme's key, Globex's data is as it was.
        assert account_snapshot(self.globex) == self.globex_before
        super().tearDown()

    def privileged(self) -> dict[str, Any]:
        """Keys naming what the server decides, each with a value an attacker would want stored."""
        return {
            "account": self.globex.public_id,
            "account_id": self.globex.pk,
            "consent_source": "form",
            "consent_at": CLAIMED_TIME,
            "consent_ip": "203.0.113.66",
            "consent_text": "I agreed to everything, promise.",
            "confirmed_at": CLAIMED_TIME,
            "source": "form",
            "email_index": "00" * 32,
            "created_at": CLAIMED_TIME,
            "updated_at": CLAIMED_TIME,
            "id": self.gus.public_id,
            "public_id": self.gus.public_id,
            "pk": self.gus.pk,
        }

    @staticmethod
    def expected_error(key: str) -> list[str]:
        return READ_ONLY if key in ("id", "source", "created_at", "updated_at") else UNKNOWN

    def call(self, method: str, url: str, body: Any) -> Any:
        return getattr(self.client, method)(
            url, json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {self.writer.token}"
        )

    def problem_errors(self, response: Any) -> dict[str, list[str]]:
        assert response.status_code == 400, response.content
        assert response["Content-Type"] == PROBLEM_CONTENT_TYPE
        return response.json()["errors"]

    def acme_count(self) -> int:
        with account_scope(self.acme):
            return Contact.objects.count()

    def acme_address(self, email: str) -> Contact | None:
        with account_scope(self.acme):
            return contact_with_email(self.acme, email)


class ContactWriteTests(MassAssignmentApiTestCase):
    def test_creating_with_any_privileged_key_is_refused_by_name_and_writes_nothing(self):
        before = self.acme_count()
        for key, value in self.privileged().items():
            with self.subTest(key):
                body = {"email": "mallory@acme.test", "first_name": "Mallory", key: value}

                errors = self.problem_errors(self.call("post", reverse("api-contact-list"), body))

                assert errors == {key: self.expected_error(key)}
                assert self.acme_address("mallory@acme.test") is None
        assert self.acme_count() == before

    def test_all_privileged_keys_at_once_are_each_named_in_one_problem(self):
        body = {"email": "mallory@acme.test", **self.privileged()}

        errors = self.problem_errors(self.call("post", reverse("api-contact-list"), body))

        assert errors == {key: self.expected_error(key) for key in self.privileged()}
        assert self.acme_address("mallory@acme.test") is None

    def test_a_status_bluespark_finds_is_refused_and_custom_values_cannot_name_columns(self):
        for status in ("bounced", "complained", "erased"):
            with self.subTest(status):
                body = {"email": "mallory@acme.test", "status": status}
                errors = self.problem_errors(self.call("post", reverse("api-contact-list"), body))
                assert list(errors) == ["status"]
                assert "set by Bluespark" in errors["status"][0]
        smuggled = {"email": "mallory@acme.test", "attributes": {"status": "subscribed", "account": "acc_x"}}
        errors = self.problem_errors(self.call("post", reverse("api-contact-list"), smuggled))
        assert list(errors) == ["attributes"]
        assert sorted(message.split(":")[0] for message in errors["attributes"]) == ["account", "status"]
        assert self.acme_address("mallory@acme.test") is None

    def test_what_is_stored_is_the_keys_account_the_servers_clock_and_the_api_as_source(self):
        response = self.call("post", reverse("api-contact-list"), {"email": "mallory@acme.test"})

        assert response.status_code == 201, response.content
        created = self.acme_address("mallory@acme.test")
        assert created is not None
        stored = snapshot(self.acme, created)
        assert (stored["account_id"], stored["source"], stored["status"]) == (self.acme.pk, "api", "subscribed")
        assert (stored["created_at"], stored["updated_at"], stored["subscriptions"]) == (T0, T0, [])

    def test_patching_with_any_privileged_key_is_refused_and_the_contact_is_unchanged(self):
        before = snapshot(self.acme, self.ann)
        url = reverse("api-contact-detail", args=[self.ann.public_id])
        for key, value in self.privileged().items():
            with self.subTest(key):
                errors = self.problem_errors(self.call("patch", url, {"first_name": "Changed", key: value}))

                assert errors == {key: self.expected_error(key)}
                assert snapshot(self.acme, self.ann) == before

    def test_patching_a_bounced_contact_back_to_subscribed_is_refused(self):
        before = snapshot(self.acme, self.left)
        url = reverse("api-contact-detail", args=[self.left.public_id])

        errors = self.problem_errors(self.call("patch", url, {"status": "subscribed", "first_name": "Back"}))

        assert list(errors) == ["email"]
        assert "suppression list (bounced)" in errors["email"][0]
        assert snapshot(self.acme, self.left) == before
        assert before["status"] == "bounced"

    def test_upserting_with_any_privileged_key_is_refused_for_new_and_existing_addresses(self):
        before, count = snapshot(self.acme, self.bo), self.acme_count()
        for key, value in self.privileged().items():
            for email in ("bo@acme.test", "mallory@acme.test"):
                with self.subTest(key=key, email=email):
                    body = {"email": email, "last_name": "Changed", key: value}

                    errors = self.problem_errors(self.call("post", reverse("api-contact-upsert"), body))

                    assert errors == {key: self.expected_error(key)}
        assert snapshot(self.acme, self.bo) == before
        assert self.acme_count() == count
        assert self.acme_address("mallory@acme.test") is None

    def test_a_bulk_item_with_a_privileged_key_fails_by_name_and_only_clean_items_are_written(self):
        keys = list(self.privileged().items())
        items = [{"email": f"bulk{n}@acme.test", key: value} for n, (key, value) in enumerate(keys)]
        items.append({"email": "bo@acme.test", "first_name": "Bobby", "account": self.globex.public_id})
        items.append({"email": "clean@acme.test", "first_name": "Clean"})
        bo_before, count = snapshot(self.acme, self.bo), self.acme_count()

        response = self.call("post", reverse("api-contact-bulk"), {"contacts": items})

        assert response.status_code == 200, response.content
        results = response.json()["results"]
        for (key, _value), result in zip(keys, results, strict=False):
            assert (result["status"], result["errors"]) == ("error", {key: self.expected_error(key)}), key
        assert results[len(keys)] == {"index": len(keys), "status": "error", "errors": {"account": UNKNOWN}}
        assert results[-1]["status"] == "created"
        assert response.json()["summary"] == {"created": 1, "updated": 0, "failed": len(keys) + 1}
        assert self.acme_count() == count + 1
        assert all(self.acme_address(f"bulk{n}@acme.test") is None for n in range(len(keys)))
        assert snapshot(self.acme, self.bo) == bo_before
        clean = snapshot(self.acme, self.acme_address("clean@acme.test"))
        assert (clean["account_id"], clean["source"], clean["created_at"]) == (self.acme.pk, "api", T0)

    def test_a_bulk_request_naming_an_account_beside_its_contacts_is_refused_whole(self):
        count = self.acme_count()
        for key in ("account", "account_id", "source", "consent_source"):
            with self.subTest(key):
                body = {key: self.privileged()[key], "contacts": [{"email": "bulk@acme.test"}]}

                errors = self.problem_errors(self.call("post", reverse("api-contact-bulk"), body))

                assert list(errors) == [key]
        assert self.acme_count() == count


class SubscribeTests(MassAssignmentApiTestCase):
    def url(self, contact: Contact) -> str:
        return reverse("api-contact-subscription-list", args=[contact.public_id])

    def subscriptions_of(self, contact: Contact) -> list[tuple[Any, ...]]:
        return snapshot(self.acme, contact)["subscriptions"]

    def test_a_subscribe_request_naming_what_the_server_records_is_refused_and_subscribes_nobody(self):
        claims: dict[str, Any] = {
            **{key: value for key, value in self.privileged().items() if key not in ("consent_ip", "consent_text")},
            "status": "subscribed",
            "unsubscribed_at": None,
            "contact": self.gus.public_id,
            "mailing_list": self.globex_list.pk,
        }
        for key, value in claims.items():
            for mailing_list in (self.news, self.confirmed_news):
                with self.subTest(key=key, opt_in=mailing_list.opt_in):
                    body = {"list": mailing_list.public_id, key: value}

                    errors = self.problem_errors(self.call("post", self.url(self.bo), body))

                    assert list(errors) == [key]
                    assert self.subscriptions_of(self.bo) == []

    def test_the_evidence_is_the_servers_time_the_api_and_the_lists_words(self):
        response = self.call("post", self.url(self.bo), {"list": self.news.public_id})

        assert response.status_code == 201, response.content
        assert self.subscriptions_of(self.bo) == [
            (self.news.public_id, "subscribed", "api", T0, None, "Yes, send me the Acme news.", None)
        ]
        # The integrator's server is not where the person consented: with no consent_ip, none is invented.
        answer = response.json()
        assert (answer["source"], answer["consent_at"], answer["confirmed_at"]) == ("api", "2031-05-06T07:08:09Z", None)

    def test_a_double_opt_in_list_stays_pending_until_the_person_confirms(self):
        response = self.call("post", self.url(self.bo), {"list": self.confirmed_news.public_id})

        assert response.status_code == 201, response.content
        assert self.subscriptions_of(self.bo) == [
            (self.confirmed_news.public_id, "pending", "api", T0, None, "Double.", None)
        ]
        assert snapshot(self.acme, self.bo)["status"] == "subscribed"

    def test_the_documented_evidence_fields_are_checked(self):
        for body, key in (
            ({"consent_ip": "not an address"}, "consent_ip"),
            ({"consent_text": "x" * 5001}, "consent_text"),
        ):
            with self.subTest(key):
                errors = self.problem_errors(
                    self.call("post", self.url(self.bo), {"list": self.news.public_id, **body})
                )
                assert list(errors) == [key]
        assert self.subscriptions_of(self.bo) == []

    def test_another_accounts_list_or_contact_cannot_be_named(self):
        errors = self.problem_errors(self.call("post", self.url(self.bo), {"list": self.globex_list.public_id}))
        assert errors == {"list": ["No list with this id."]}
        assert self.subscriptions_of(self.bo) == []
        response = self.call("post", self.url(self.gus), {"list": self.news.public_id})
        assert response.status_code == 404

    def test_a_suppressed_contact_is_not_subscribed_whatever_the_body_claims(self):
        before = snapshot(self.acme, self.left)

        errors = self.problem_errors(
            self.call("post", self.url(self.left), {"list": self.news.public_id, "consent_ip": "198.51.100.2"})
        )

        assert "suppression list (bounced)" in errors["non_field_errors"][0]
        assert snapshot(self.acme, self.left) == before


class ImportFilesTestCase(CastTestCase):
    """Each test gets its own private import directory and runs inside Acme's scope."""

    def setUp(self) -> None:
        super().setUp()
        self.folder = Path(tempfile.mkdtemp(prefix="bluespark-mass-"))
        self.addCleanup(shutil.rmtree, self.folder, ignore_errors=True)
        settings_override = override_settings(IMPORT_DIR=self.folder)
        settings_override.enable()
        self.addCleanup(settings_override.disable)
        traveller = time_machine.travel(T0, tick=False)
        traveller.start()
        self.addCleanup(traveller.stop)

    def upload(self, account: Account, content: str) -> ContactImport:
        return store_upload(account, SimpleUploadedFile("people.csv", content.encode(), "text/csv"))

    def run_engine(self, account: Account, contact_import: ContactImport, **options: Any) -> ContactImport:
        with self.captureOnCommitCallbacks(execute=False):
            start_import(account, contact_import, actor=self.alice)
        return run_contact_import(account, contact_import, **options)


#: A header naming everything an import must not set; then the contact fields it may.
PRIVILEGED_COLUMNS = [
    "account",
    "account_id",
    "status",
    "source",
    "consent_source",
    "consent_at",
    "consent_ip",
    "id",
    "public_id",
    "created_at",
]
HEADER = ",".join(["email", *PRIVILEGED_COLUMNS, "first_name"])


class ImportMappingTests(ImportFilesTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        with account_scope(cls.acme):
            cls.pia = create_contact(cls.acme, email="pia@example.com", first_name="Pia")
            subscribe_contact(cls.acme, cls.pia, cls.acme_list, source=Contact.Source.MANUAL)
            # She left this list (no suppression: one list, her own click).
            unsubscribe_contact(cls.acme, cls.pia, cls.acme_list)
            cls.newsletter = create_mailing_list(cls.acme, name="Newsletter")
        with account_scope(cls.globex):
            cls.gus = create_contact(cls.globex, email="gus@globex.test", first_name="Gus")

    def setUp(self) -> None:
        super().setUp()
        scope = account_scope(self.acme)
        scope.__enter__()
        self.addCleanup(scope.__exit__, None, None, None)

    def row(self, email: str, first_name: str) -> str:
        claims = [
            self.globex.public_id,
            str(self.globex.pk),
            "subscribed",
            "form",
            "form",
            CLAIMED_TIME,
            "203.0.113.66",
            self.gus.public_id,
            self.gus.public_id,
            CLAIMED_TIME,
        ]
        return ",".join([email, *claims, first_name])

    def test_sniff_suggests_nothing_for_privileged_columns(self):
        contact_import = self.upload(self.acme, f"{HEADER}\n{self.row('new@example.com', 'New')}\n")

        preview = sniff(contact_import)

        assert preview.has_header
        assert preview.suggested_mapping == {
            "0": "email",
            **{str(position): "" for position in range(1, len(PRIVILEGED_COLUMNS) + 1)},
            str(len(PRIVILEGED_COLUMNS) + 1): "first_name",
        }

    def test_configure_refuses_a_privileged_target_by_name_and_stores_nothing(self):
        contact_import = self.upload(self.acme, f"{HEADER}\n{self.row('new@example.com', 'New')}\n")
        targets = [*PRIVILEGED_COLUMNS, "email_index", "consent_text", "confirmed_at", "updated_at", "mailing_list"]
        for target in targets:
            with self.subTest(target):
                with self.assertRaisesMessage(ImportError_, f"Unknown field {target!r}"):
                    configure(
                        contact_import, mapping={"0": "email", "1": target}, update_existing=True, mailing_list=None
                    )
                contact_import.refresh_from_db()
                assert (contact_import.mapping, contact_import.status) == ({}, ContactImport.Status.UPLOADED)
        with self.assertRaisesMessage(ImportError_, "Unknown column 'account'"):
            configure(
                contact_import, mapping={"0": "email", "account": "email"}, update_existing=True, mailing_list=None
            )
        with self.assertRaisesMessage(ImportError_, "Unknown consent source."):
            configure(
                contact_import, mapping={"0": "email"}, update_existing=True, mailing_list=None, consent_source="erased"
            )
        with self.assertRaisesMessage(ImportError_, "Unknown list."):
            configure(contact_import, mapping={"0": "email"}, update_existing=True, mailing_list=self.globex_list)
        contact_import.refresh_from_db()
        assert (contact_import.mapping, contact_import.mailing_list_id) == ({}, None)

    def test_the_privileged_columns_of_an_imported_file_are_not_stored_anywhere(self):
        content = f"{HEADER}\n{self.row('new@example.com', 'New')}\n{self.row('pia@example.com', 'Pia B')}\n"
        contact_import = self.upload(self.acme, content)
        configure(
            contact_import,
            mapping=sniff(contact_import).suggested_mapping,
            update_existing=True,
            mailing_list=self.acme_list,
        )
        globex_before = account_snapshot(self.globex)

        result = self.run_engine(self.acme, contact_import)

        assert (result.status, result.created, result.updated, result.suppressed) == ("done", 1, 1, 0)
        new = snapshot(self.acme, contact_with_email(self.acme, "new@example.com"))
        assert (new["account_id"], new["status"], new["source"]) == (self.acme.pk, "subscribed", "import")
        assert (new["created_at"], new["attributes"]) == (T0, {})
        assert new["public_id"] != self.gus.public_id
        [(list_id, status, source, consent_at, consent_ip, _text, confirmed_at)] = new["subscriptions"]
        assert (list_id, status, source, consent_at, consent_ip, confirmed_at) == (
            self.acme_list.public_id,
            "subscribed",
            "import",
            T0,
            None,
            None,
        )
        # "subscribed" in the file did not bring back the person who left the list: names change, consent does not.
        pia = snapshot(self.acme, self.pia)
        assert (pia["first_name"], pia["status"], pia["source"]) == ("Pia B", "unsubscribed", "manual")
        assert [(row[0], row[1]) for row in pia["subscriptions"]] == [(self.acme_list.public_id, "unsubscribed")]
        assert account_snapshot(self.globex) == globex_before

    def test_a_custom_field_called_status_fills_attributes_never_the_contacts_status(self):
        CustomField.objects.create(account=self.acme, key="status", label="Status")
        contact_import = self.upload(self.acme, "email,status\npia@example.com,subscribed\n")
        assert sniff(contact_import).suggested_mapping == {"0": "email", "1": "status"}
        configure(contact_import, mapping={"0": "email", "1": "status"}, update_existing=True, mailing_list=None)

        result = self.run_engine(self.acme, contact_import)

        assert (result.status, result.updated) == ("done", 1)
        pia = snapshot(self.acme, self.pia)
        assert (pia["status"], pia["attributes"]) == ("unsubscribed", {"status": "subscribed"})


class ImportWizardTests(ImportFilesTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.client.force_login(self.alice)

    def url(self, name: str, **kwargs: str) -> str:
        return reverse(f"contacts:{name}", kwargs={"account_id": self.acme.public_id, **kwargs})

    def uploaded(self) -> ContactImport:
        content = f"{HEADER}\nnew@example.com,{','.join(['x'] * len(PRIVILEGED_COLUMNS))},New\n"
        response = self.client.post(
            self.url("import_upload"), {"file": SimpleUploadedFile("people.csv", content.encode(), "text/csv")}
        )
        assert response.status_code == 302, response.content
        with account_scope(self.acme):
            return ContactImport.objects.get()

    def post_mapping(self, contact_import: ContactImport, **fields: str) -> Any:
        data = {"has_header": "on", "column-0": "email", **fields}
        with self.captureOnCommitCallbacks(execute=False):
            return self.client.post(self.url("import_mapping", import_id=contact_import.public_id), data)

    def test_the_page_offers_no_privileged_target(self):
        contact_import = self.uploaded()

        page = self.client.get(self.url("import_mapping", import_id=contact_import.public_id)).content.decode()

        for target in PRIVILEGED_COLUMNS:
            assert f'<option value="{target}"' not in page, target
        assert '<option value="email" selected>' in page and '<option value="first_name" selected>' in page

    def test_a_privileged_target_posted_anyway_is_a_form_error_and_nothing_starts(self):
        contact_import = self.uploaded()
        for position, target in enumerate(PRIVILEGED_COLUMNS, start=1):
            with self.subTest(target):
                response = self.post_mapping(contact_import, **{f"column-{position}": target})

                assert response.status_code == 400
                assert f"Unknown field &#x27;{target}&#x27;" in response.content.decode()
                contact_import.refresh_from_db()
                assert (contact_import.status, contact_import.mapping) == (ContactImport.Status.UPLOADED, {})
        response = self.post_mapping(contact_import, list=self.globex_list.public_id)
        assert response.status_code == 400 and "Choose one of your lists." in response.content.decode()
        response = self.post_mapping(contact_import, consent_source="bounced")
        assert response.status_code == 400 and "Unknown consent source." in response.content.decode()
        contact_import.refresh_from_db()
        assert contact_import.status == ContactImport.Status.UPLOADED
        with account_scope(self.acme):
            assert not Contact.objects.exists()
