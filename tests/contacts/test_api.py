"""The contacts API: contacts, upsert, bulk, subscriptions, lists and segments, as an integrator calls them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import time_machine
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.utils.encoders import JSONEncoder

from accounts.models import ApiScope
from accounts.services import create_api_key
from accounts.tenancy import account_scope
from audit.models import AuditEvent
from bluespark.rest import PROBLEM_CONTENT_TYPE, KeysetCursorPagination
from contacts.consent import subscribe_contact, suppress
from contacts.models import Contact, CustomField, MailingList, Segment, SensitiveValue, Subscription, Suppression
from contacts.segment_tasks import refresh_segment_count
from contacts.selectors import (
    API_CONTACT_VALUES,
    api_contact_page,
    contact_list,
    contact_values,
    contact_with_email,
    open_contact_values,
)
from contacts.services import bulk_upsert, create_contact, create_mailing_list
from tests.cast import CastTestCase

CANARY = "canary-7f3a9c@acme.test"


class ContactApiTestCase(CastTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        with account_scope(cls.acme):
            cls.writer = create_api_key(cls.acme, name="crm", scopes=[ApiScope.CONTACTS_WRITE], created_by=cls.alice)
            cls.reader = create_api_key(cls.acme, name="bi", scopes=[ApiScope.CONTACTS_READ], created_by=cls.alice)
            cls.auditor = create_api_key(cls.acme, name="siem", scopes=[ApiScope.AUDIT_READ], created_by=cls.alice)
            for key, kind, extra in (
                ("plan", CustomField.Type.CHOICE, {"choices": ["free", "pro"]}),
                ("score", CustomField.Type.NUMBER, {}),
                ("joined", CustomField.Type.DATE, {}),
                ("vip", CustomField.Type.BOOLEAN, {}),
                ("tax_id", CustomField.Type.TEXT, {"sensitive": True}),
            ):
                CustomField.objects.create(account=cls.acme, key=key, label=key.title(), type=kind, **extra)
            cls.ann = create_contact(cls.acme, email="ann@acme.test", first_name="Ann", tags=["vip"])
            cls.bo = create_contact(cls.acme, email="bo@acme.test", first_name="Bo", attributes={"plan": "pro"})
            cls.newsletter = create_mailing_list(cls.acme, name="Newsletter")
            subscribe_contact(cls.acme, cls.ann, cls.acme_list, source=Contact.Source.MANUAL)
            cls.pro_segment = Segment.objects.create(
                account=cls.acme,
                name="Pro",
                definition={"all": [{"field": "attributes.plan", "op": "eq", "value": "pro"}]},
            )
        with account_scope(cls.globex):
            cls.globex_key = create_api_key(
                cls.globex, name="crm", scopes=[ApiScope.CONTACTS_WRITE], created_by=cls.charlie
            )
            cls.gus = create_contact(cls.globex, email="gus@globex.test")

    def call(self, method: str, url: str, key: Any, body: Any = None, **headers: str) -> Any:
        extra = {f"HTTP_{name.upper()}": value for name, value in headers.items()}
        if key is not None:
            extra["HTTP_AUTHORIZATION"] = f"Bearer {key.token}"
        if method == "get":
            return self.client.get(url, body or {}, **extra)
        payload = json.dumps(body) if body is not None else ""
        return getattr(self.client, method)(url, payload, content_type="application/json", **extra)

    def assert_problem(self, response: Any, status: int) -> dict[str, Any]:
        assert response.status_code == status, response.content
        assert response["Content-Type"] == PROBLEM_CONTENT_TYPE
        return response.json()

    @staticmethod
    def contact_url(contact: Contact | str, suffix: str = "") -> str:
        public_id = contact if isinstance(contact, str) else contact.public_id
        return reverse("api-contact-detail", args=[public_id]) + suffix


class ContactCrudTests(ContactApiTestCase):
    def test_a_writer_creates_a_contact_and_reads_it_back(self):
        body = {
            "email": " Dora@Example.COM ",
            "first_name": "Dora",
            "last_name": "Kowalska-Żółć",
            "tags": ["vip", "beta", "vip"],
            "attributes": {"plan": "free", "score": 4.5, "joined": "2025-02-01", "vip": True, "tax_id": "PL123"},
        }
        response = self.call("post", reverse("api-contact-list"), self.writer, body)

        assert response.status_code == 201, response.content
        created = response.json()
        assert created["id"].startswith("con_")
        assert {k: created[k] for k in ("email", "first_name", "last_name", "status", "source")} == {
            "email": "dora@example.com",
            "first_name": "Dora",
            "last_name": "Kowalska-Żółć",
            "status": "subscribed",
            "source": "api",
        }
        assert sorted(created["tags"]) == ["beta", "vip"]
        assert created["attributes"] == {"plan": "free", "score": 4.5, "joined": "2025-02-01", "vip": True}
        assert created["sensitive_attributes"] == {"tax_id": "***"}
        assert "PL123" not in response.content.decode()
        again = self.call("get", self.contact_url(created["id"]), self.reader)
        assert again.status_code == 200
        assert again.json() == created
        with account_scope(self.acme):
            [value] = SensitiveValue.objects.filter(contact__public_id=created["id"])
            assert value.value == "PL123"

    def test_an_address_already_in_the_account_is_a_409_problem(self):
        response = self.call("post", reverse("api-contact-list"), self.writer, {"email": "ANN@acme.test"})

        problem = self.assert_problem(response, 409)
        assert "upsert" in problem["detail"]

    def test_every_bad_value_is_named_in_one_400_problem(self):
        body = {
            "email": "not an address",
            "first_name": 7,
            "status": "bounced",
            "tags": "vip",
            "attributes": {"plan": "gold", "score": "high", "joined": "01/02/2025", "vip": "yes", "shoe_size": 9},
            "id": "con_x",
            "colour": "red",
        }
        problem = self.assert_problem(self.call("post", reverse("api-contact-list"), self.writer, body), 400)

        assert set(problem["errors"]) == {"id", "colour"}
        assert problem["errors"]["id"] == ["This field is read-only."]
        del body["id"], body["colour"]
        errors = self.assert_problem(self.call("post", reverse("api-contact-list"), self.writer, body), 400)["errors"]
        assert set(errors) == {"email", "first_name", "status", "tags", "attributes"}
        assert errors["email"] == ["Enter a valid email address."]
        assert "set by Bluespark" in errors["status"][0]
        attribute_errors = " ".join(errors["attributes"])
        for expected in ("plan: Choose one of: free, pro", "score: Enter a number", "joined: Enter a date", "vip:"):
            assert expected in attribute_errors
        assert "shoe_size: no custom field" in attribute_errors
        missing = self.assert_problem(self.call("post", reverse("api-contact-list"), self.writer, {}), 400)
        assert missing["errors"] == {"email": ["This field is required."]}
        not_an_object = self.assert_problem(self.call("post", reverse("api-contact-list"), self.writer, [1]), 400)
        assert "non_field_errors" in not_an_object["errors"]

    def test_patch_changes_only_what_is_sent(self):
        with account_scope(self.acme):
            contact = create_contact(
                self.acme,
                email="cy@acme.test",
                first_name="Cy",
                last_name="Old",
                attributes={"plan": "pro", "score": 3},
            )
        before = self.call("get", self.contact_url(contact), self.reader).json()
        body = {"last_name": "New", "attributes": {"score": None, "vip": False, "tax_id": "X-1"}, "tags": ["b", "a"]}

        response = self.call("patch", self.contact_url(contact), self.writer, body)

        assert response.status_code == 200, response.content
        after = response.json()
        assert (after["first_name"], after["last_name"], after["email"]) == ("Cy", "New", "cy@acme.test")
        assert after["attributes"] == {"plan": "pro", "vip": False}
        assert after["tags"] == ["a", "b"]
        assert after["sensitive_attributes"] == {"tax_id": "***"}
        assert after["updated_at"] > before["updated_at"]
        cleared = self.call(
            "patch", self.contact_url(contact), self.writer, {"tags": [], "attributes": {"tax_id": None}}
        )
        assert (cleared.json()["tags"], cleared.json()["sensitive_attributes"]) == ([], {})

    def test_patch_onto_another_contacts_address_is_a_409_problem(self):
        response = self.call("patch", self.contact_url(self.bo), self.writer, {"email": "Ann@Acme.test"})

        self.assert_problem(response, 409)
        with account_scope(self.acme):
            assert Contact.objects.get(pk=self.bo.pk).email == "bo@acme.test"

    def test_delete_removes_the_contact_and_records_it(self):
        response = self.call("delete", self.contact_url(self.bo), self.writer)

        assert response.status_code == 204
        self.assert_problem(self.call("get", self.contact_url(self.bo), self.writer), 404)
        event = AuditEvent.objects.get(action="contact.deleted")
        assert (event.target_type, event.target_id) == ("contact", self.bo.public_id)
        assert (event.account_id, event.actor_type, event.api_key_id) == (
            self.acme.public_id,
            "api_key",
            self.writer.key.public_id,
        )

    def test_a_contact_that_left_is_not_set_back_to_subscribed(self):
        with account_scope(self.acme):
            left = create_contact(self.acme, email="left@acme.test", status=Contact.Status.UNSUBSCRIBED)

        problem = self.assert_problem(
            self.call("patch", self.contact_url(left), self.writer, {"status": "subscribed"}), 400
        )

        assert "only the person" in problem["errors"]["status"][0].lower()
        renamed = self.call("patch", self.contact_url(left), self.writer, {"first_name": "Still here"})
        assert renamed.status_code == 200 and renamed.json()["status"] == "unsubscribed"


class ContactUpsertTests(ContactApiTestCase):
    def test_upsert_creates_then_updates_by_address(self):
        url = reverse("api-contact-upsert")
        first = self.call("post", url, self.writer, {"email": "eve@acme.test", "first_name": "Eve", "tags": ["a"]})
        assert first.status_code == 201, first.content

        second = self.call(
            "post", url, self.writer, {"email": "EVE@acme.test ", "last_name": "Smith", "attributes": {"plan": "pro"}}
        )

        assert second.status_code == 200, second.content
        contact = second.json()
        assert contact["id"] == first.json()["id"]
        assert (contact["first_name"], contact["last_name"], contact["tags"]) == ("Eve", "Smith", ["a"])
        assert contact["attributes"] == {"plan": "pro"}
        assert contact["source"] == "api"

    def test_a_suppressed_address_is_not_upserted_as_subscribed(self):
        with account_scope(self.acme):
            suppress(self.acme, "gone@acme.test", reason=Suppression.Reason.COMPLAINED)
            suppress(self.acme, "ann@acme.test", reason=Suppression.Reason.UNSUBSCRIBED)
        url = reverse("api-contact-upsert")

        for body in ({"email": "Gone@acme.test"}, {"email": "ann@acme.test", "status": "subscribed"}):
            problem = self.assert_problem(self.call("post", url, self.writer, body), 400)
            assert "suppression list" in problem["errors"]["email"][0]

        kept = self.call("post", url, self.writer, {"email": "gone@acme.test", "status": "unsubscribed"})
        assert kept.status_code == 201 and kept.json()["status"] == "unsubscribed"
        renamed = self.call("post", url, self.writer, {"email": "ann@acme.test", "first_name": "Annie"})
        assert renamed.status_code == 200 and renamed.json()["first_name"] == "Annie"


class ContactBulkTests(ContactApiTestCase):
    def test_each_item_gets_its_own_result_and_a_bad_one_fails_alone(self):
        with account_scope(self.acme):
            suppress(self.acme, "blocked@acme.test", reason=Suppression.Reason.BOUNCED)
        items = [
            {"email": "new1@acme.test", "first_name": "New", "tags": ["imported"], "attributes": {"tax_id": "T1"}},
            {"email": "ANN@acme.test", "last_name": "Updated", "attributes": {"score": 9}},
            {"email": "nope"},
            {"email": "new2@acme.test", "attributes": {"shoe_size": 44}},
            {"email": "new1@acme.test", "first_name": "Twice"},
            {"email": "blocked@acme.test"},
            "not an object",
            {"first_name": "No address"},
            {"email": "new3@acme.test", "status": "unsubscribed"},
        ]

        response = self.call("post", reverse("api-contact-bulk"), self.writer, {"contacts": items})

        assert response.status_code == 200, response.content
        body = response.json()
        results = body["results"]
        assert [(r["index"], r["status"]) for r in results] == [
            (0, "created"),
            (1, "updated"),
            (2, "error"),
            (3, "error"),
            (4, "error"),
            (5, "error"),
            (6, "error"),
            (7, "error"),
            (8, "created"),
        ]
        assert body["summary"] == {"created": 2, "updated": 1, "failed": 6}
        assert results[1]["id"] == self.ann.public_id
        assert results[2]["errors"] == {"email": ["Enter a valid email address."]}
        assert "shoe_size" in results[3]["errors"]["attributes"][0]
        assert "item 0" in results[4]["errors"]["email"][0]
        assert "suppression list (bounced)" in results[5]["errors"]["email"][0]
        assert "non_field_errors" in results[6]["errors"]
        assert results[7]["errors"] == {"email": ["This field is required."]}
        assert all("id" not in r for r in results if r["status"] == "error")
        with account_scope(self.acme):
            new = contact_with_email(self.acme, "new1@acme.test")
            assert (new.public_id, new.first_name, new.source) == (results[0]["id"], "New", "api")
            assert SensitiveValue.objects.get(contact=new).value == "T1"
            ann = Contact.objects.get(pk=self.ann.pk)
            assert (ann.first_name, ann.last_name, ann.attributes) == ("Ann", "Updated", {"score": 9})
            assert contact_with_email(self.acme, "new2@acme.test") is None
            assert contact_with_email(self.acme, "blocked@acme.test") is None
        detail = self.call("get", self.contact_url(results[0]["id"]), self.reader).json()
        assert detail["tags"] == ["imported"]

    def test_more_than_a_thousand_items_is_a_400_problem_and_writes_nothing(self):
        items = [{"email": f"p{n}@acme.test"} for n in range(1001)]

        problem = self.assert_problem(
            self.call("post", reverse("api-contact-bulk"), self.writer, {"contacts": items}), 400
        )

        assert "1,000" in problem["errors"]["contacts"][0]
        with account_scope(self.acme):
            assert contact_with_email(self.acme, "p0@acme.test") is None
        for body in ({}, {"contacts": []}, {"contacts": "x"}):
            self.assert_problem(self.call("post", reverse("api-contact-bulk"), self.writer, body), 400)

    def test_a_full_batch_of_a_thousand_is_accepted(self):
        items = [{"email": f"p{n}@acme.test", "tags": ["batch"], "attributes": {"score": n}} for n in range(1000)]
        items[500] = {"email": "ann@acme.test", "first_name": "Ann"}

        response = self.call("post", reverse("api-contact-bulk"), self.writer, {"contacts": items})

        assert response.status_code == 200
        assert response.json()["summary"] == {"created": 999, "updated": 1, "failed": 0}
        with account_scope(self.acme):
            assert Contact.objects.filter(attributes__score__gte=0).count() == 999

    def test_the_batch_costs_the_same_queries_whatever_its_size(self):
        def queries_for(count: int, start: int) -> int:
            items = [
                {"email": f"q{n}@acme.test", "tags": ["q", f"t{n % 3}"], "attributes": {"plan": "pro"}}
                for n in range(start, start + count)
            ]
            items.append({"email": "ann@acme.test"})  # found and unchanged: no write
            with CaptureQueriesContext(connection) as queries:
                response = self.call("post", reverse("api-contact-bulk"), self.writer, {"contacts": items})
            assert response.status_code == 200
            return len(queries)

        queries_for(3, 1000)  # the tags are made and the key's last use noted once, not per batch
        assert queries_for(3, 0) == queries_for(60, 100)


class ContactListTests(ContactApiTestCase):
    def get_list(self, key: Any = None, **params: Any) -> Any:
        return self.call("get", reverse("api-contact-list"), key or self.reader, params)

    def ids(self, **params: Any) -> list[str]:
        response = self.get_list(**params)
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    def test_rows_are_the_contact_representation_without_sensitive_values(self):
        with account_scope(self.acme):
            create_contact(self.acme, email="sv@acme.test", attributes={"tax_id": "SECRET-9"})

        response = self.get_list()

        rows = response.json()["results"]
        assert [row["email"] for row in rows] == ["sv@acme.test", "bo@acme.test", "ann@acme.test"]
        ann = rows[2]
        assert set(ann) == {
            "id",
            "email",
            "first_name",
            "last_name",
            "status",
            "source",
            "tags",
            "attributes",
            "created_at",
            "updated_at",
        }
        assert (ann["id"], ann["first_name"], ann["tags"], ann["source"]) == (
            self.ann.public_id,
            "Ann",
            ["vip"],
            "manual",
        )
        detail = self.call("get", self.contact_url(self.ann), self.reader).json()
        assert {key: detail[key] for key in ann} == ann
        assert b"SECRET-9" not in response.content

    def test_filters(self):
        with account_scope(self.acme):
            create_contact(self.acme, email="off@acme.test", status=Contact.Status.UNSUBSCRIBED)

        assert self.ids(email="ANN@Acme.Test") == [self.ann.public_id]
        assert self.ids(email="nobody@acme.test") == []
        assert len(self.ids(status="unsubscribed")) == 1
        assert self.ids(list=self.acme_list.public_id) == [self.ann.public_id]
        assert self.ids(list=self.newsletter.public_id) == []
        assert self.ids(tag="vip") == [self.ann.public_id]
        assert self.ids(tag="no such tag") == []
        assert self.ids(segment=self.pro_segment.public_id) == [self.bo.public_id]
        assert self.ids(segment=self.pro_segment.public_id, tag="vip") == []
        for params, field in (
            ({"status": "happy"}, "status"),
            ({"list": self.globex_list.public_id}, "list"),
            ({"segment": "seg_nope"}, "segment"),
        ):
            assert field in self.assert_problem(self.get_list(**params), 400)["errors"]

    def test_pages_follow_cursors_and_cost_the_same_queries_whatever_their_size(self):
        with account_scope(self.acme):
            for n in range(20):
                create_contact(self.acme, email=f"page{n}@acme.test", tags=["x", "y"])
        first = self.get_list(limit=15).json()
        second = self.client.get(first["next"], HTTP_AUTHORIZATION=f"Bearer {self.reader.token}").json()
        assert len(first["results"]) == 15 and len(second["results"]) == 7
        assert second["next"] is None
        assert {r["id"] for r in first["results"]}.isdisjoint(r["id"] for r in second["results"])

        def queries_for(limit: int) -> int:
            with CaptureQueriesContext(connection) as queries:
                assert len(self.get_list(limit=limit).json()["results"]) == limit
            return len(queries)

        assert queries_for(2) == queries_for(20)

    def test_an_imported_chunk_sharing_one_time_is_listed_once(self):
        # An import's chunk of contacts shares one created_at. DRF's cursor stepped over a tie with an
        # offset it caps at 1,000: past that its pages came back the same for ever.
        with account_scope(self.acme), time_machine.travel(datetime(2026, 5, 1, tzinfo=UTC), tick=False):
            for start in (0, 1000):
                items = [{"email": f"chunk{n}@acme.test"} for n in range(start, min(start + 1000, 1250))]
                bulk_upsert(self.acme, items, source="import")

        seen, url = [], reverse("api-contact-list") + "?limit=200"
        while url:
            body = self.client.get(url, HTTP_AUTHORIZATION=f"Bearer {self.reader.token}").json()
            seen += [row["id"] for row in body["results"]]
            url = body["next"]
            assert len(seen) <= 1252, "the pages never end"

        with account_scope(self.acme):
            expected = list(contact_list(self.acme).values_list("public_id", flat=True))
        assert seen == expected and len(set(seen)) == 1252

    def test_the_fixed_page_statement_reads_what_the_queryset_reads(self):
        # The unfiltered list runs api_contact_page; filtered ones page the queryset. Same rows, same order.
        with account_scope(self.acme), time_machine.travel(datetime(2026, 5, 1, tzinfo=UTC), tick=False):
            items = [
                {"email": f"tie{n}@acme.test", "first_name": f"T{n}", "tags": ["b", f"t{n % 3}"]}
                | ({"attributes": {"plan": "pro", "score": n}} if n % 2 else {})
                for n in range(9)
            ]
            bulk_upsert(self.acme, items, source="api")
        with account_scope(self.globex):
            create_contact(self.globex, email="elsewhere@globex.test", tags=["b"])
        pagination = KeysetCursorPagination()

        with account_scope(self.acme):
            scoped = contact_values(Contact.objects.filter(account=self.acme))
            everything = list(pagination.beyond(scoped, None, backward=False))
            assert len(everything) == 11
            for position in [None, *(pagination.position_of(row) for row in everything)]:
                for backward in (False, True):
                    with self.subTest(position=position, backward=backward):
                        queried = list(pagination.beyond(scoped, position, backward=backward)[:4])
                        fixed = api_contact_page(self.acme, position, backward, 4)
                        assert open_contact_values(self.acme, fixed) == open_contact_values(self.acme, queried)
                        assert [row["pk"] for row in fixed] == [row["pk"] for row in queried]

    def test_a_page_and_its_tags_are_one_query(self):
        with account_scope(self.acme):
            for n in range(5):
                create_contact(self.acme, email=f"tagged{n}@acme.test", tags=["zeta", "alpha", f"t{n}"])
        self.get_list()  # the key is looked up and kept, its last use noted: not in the count below

        with CaptureQueriesContext(connection) as queries:
            rows = self.get_list().json()["results"]

        assert len(queries) == 1, [query["sql"] for query in queries]  # the page with its tags
        by_email = {row["email"]: row["tags"] for row in rows}
        assert by_email["tagged3@acme.test"] == ["alpha", "t3", "zeta"]
        assert (by_email["ann@acme.test"], by_email["bo@acme.test"]) == (["vip"], [])

    def test_timestamps_are_written_as_drf_writes_them(self):
        with account_scope(self.acme):
            ann = Contact.objects.get(pk=self.ann.pk)
        row = next(row for row in self.get_list().json()["results"] if row["id"] == ann.public_id)

        drf = JSONEncoder().default
        assert (row["created_at"], row["updated_at"]) == (drf(ann.created_at), drf(ann.updated_at))
        assert row["created_at"].endswith("Z")

    def test_rows_read_without_their_tags_open_the_same(self):
        # The path a database without array subqueries takes (SQLite in development): tags in a second query.
        with account_scope(self.acme):
            create_contact(self.acme, email="both@acme.test", first_name="Both", tags=["b", "a"])
            contacts = contact_list(self.acme)
            plain = open_contact_values(self.acme, list(contacts.values(*API_CONTACT_VALUES)))
            with_tags = open_contact_values(self.acme, list(contact_values(contacts)))

        assert plain == with_tags
        assert [row["tags"] for row in plain] == [["a", "b"], [], ["vip"]]


class SubscriptionApiTests(ContactApiTestCase):
    def test_subscribe_list_and_unsubscribe(self):
        url = self.contact_url(self.bo, "subscriptions/")
        body = {"list": self.newsletter.public_id, "consent_ip": "198.51.100.7", "consent_text": "Yes, mail me."}

        created = self.call("post", url, self.writer, body)

        assert created.status_code == 201, created.content
        subscription = created.json()
        assert (subscription["list"], subscription["status"], subscription["source"]) == (
            self.newsletter.public_id,
            "subscribed",
            "api",
        )
        with account_scope(self.acme):
            stored = Subscription.objects.get(public_id=subscription["id"])
            assert (stored.consent_ip, stored.consent_text) == ("198.51.100.7", "Yes, mail me.")
        listed = self.call("get", url, self.reader).json()["results"]
        assert [row["id"] for row in listed] == [subscription["id"]]
        left = self.call(
            "delete", self.contact_url(self.bo, f"subscriptions/{self.newsletter.public_id}/"), self.writer
        )
        assert left.status_code == 200 and left.json()["status"] == "unsubscribed"
        # The person left: only they subscribe again (through a form), not an integrator on their behalf.
        again = self.assert_problem(self.call("post", url, self.writer, {"list": self.newsletter.public_id}), 400)
        assert again["errors"]["non_field_errors"]
        assert self.call("get", url, self.reader).json()["results"][0]["status"] == "unsubscribed"

    def test_bad_lists_are_refused(self):
        url = self.contact_url(self.bo, "subscriptions/")
        assert "list" in self.assert_problem(self.call("post", url, self.writer, {"list": "lst_nope"}), 400)["errors"]
        assert "list" in self.assert_problem(self.call("post", url, self.writer, {}), 400)["errors"]
        never_on = self.contact_url(self.bo, f"subscriptions/{self.acme_list.public_id}/")
        self.assert_problem(self.call("delete", never_on, self.writer), 404)


class ListAndSegmentApiTests(ContactApiTestCase):
    def test_lists_and_segments_are_read_and_segments_counted(self):
        lists = self.call("get", reverse("api-list-list"), self.reader).json()["results"]
        assert [row["id"] for row in lists] == [self.newsletter.public_id, self.acme_list.public_id]
        one = self.call("get", reverse("api-list-detail", args=[self.newsletter.public_id]), self.reader).json()
        assert (one["name"], one["opt_in"]) == ("Newsletter", "single")
        segments = self.call("get", reverse("api-segment-list"), self.reader).json()["results"]
        assert [row["id"] for row in segments] == [self.pro_segment.public_id]
        detail = self.call("get", reverse("api-segment-detail", args=[self.pro_segment.public_id]), self.reader)
        assert detail.json()["definition"] == self.pro_segment.definition

        counted = self.call("get", reverse("api-segment-count", args=[self.pro_segment.public_id]), self.reader)

        assert counted.status_code == 200
        assert (counted.json()["count"], counted.json()["refreshing"]) == (1, False)
        assert counted.json()["counted_at"] is not None

    def test_a_large_accounts_count_comes_from_the_background_with_its_time(self):
        url = reverse("api-segment-count", args=[self.pro_segment.public_id])
        with override_settings(SEGMENT_LIVE_COUNT_LIMIT=0):
            with self.captureOnCommitCallbacks() as queued:
                first = self.call("get", url, self.reader).json()
            assert first == {"count": None, "counted_at": None, "refreshing": True}
            assert len(queued) == 1
            refresh_segment_count.apply(args=[self.acme.public_id, self.pro_segment.public_id], throw=True)

            counted = self.call("get", url, self.reader).json()

        self.pro_segment.refresh_from_db()
        assert (counted["count"], counted["refreshing"]) == (1, False)
        assert counted["counted_at"] == self.pro_segment.counted_at.isoformat().replace("+00:00", "Z")

    def test_a_segment_that_cannot_run_is_a_400_problem(self):
        with account_scope(self.acme):
            gone = MailingList.objects.create(account=self.acme, name="Gone")
            orphan = Segment.objects.create(
                account=self.acme,
                name="On a deleted list",
                definition={"all": [{"field": "list", "op": "subscribed", "value": gone.public_id}]},
            )
            gone.delete()

        response = self.call("get", reverse("api-segment-count", args=[orphan.public_id]), self.reader)

        assert "definition" in self.assert_problem(response, 400)["errors"]


class ApiAccessTests(ContactApiTestCase):
    def write_requests(self) -> list[tuple[str, str, Any]]:
        subscriptions = self.contact_url(self.ann, "subscriptions/")
        return [
            ("post", reverse("api-contact-list"), {"email": "x@acme.test"}),
            ("patch", self.contact_url(self.ann), {"first_name": "X"}),
            ("delete", self.contact_url(self.ann), None),
            ("post", reverse("api-contact-upsert"), {"email": "x@acme.test"}),
            ("post", reverse("api-contact-bulk"), {"contacts": [{"email": "x@acme.test"}]}),
            ("post", subscriptions, {"list": self.newsletter.public_id}),
            ("delete", f"{subscriptions}{self.acme_list.public_id}/", None),
        ]

    def read_urls(self) -> list[str]:
        return [
            reverse("api-contact-list"),
            self.contact_url(self.ann),
            self.contact_url(self.ann, "subscriptions/"),
            reverse("api-list-list"),
            reverse("api-list-detail", args=[self.acme_list.public_id]),
            reverse("api-segment-list"),
            reverse("api-segment-detail", args=[self.pro_segment.public_id]),
            reverse("api-segment-count", args=[self.pro_segment.public_id]),
        ]

    def test_a_read_key_reads_but_every_write_is_refused(self):
        for url in self.read_urls():
            assert self.call("get", url, self.reader).status_code == 200, url
        for method, url, body in self.write_requests():
            self.assert_problem(self.call(method, url, self.reader, body), 403)
        with account_scope(self.acme):
            ann = Contact.objects.get(pk=self.ann.pk)
            assert ann.first_name == "Ann"
            assert contact_with_email(self.acme, "x@acme.test") is None
            assert Subscription.objects.get(contact=ann).status == Subscription.Status.SUBSCRIBED

    def test_other_scopes_and_no_key_are_refused(self):
        for url in self.read_urls():
            self.assert_problem(self.call("get", url, self.auditor), 403)
            self.assert_problem(self.call("get", url, None), 401)

    def test_globex_cannot_reach_acmes_objects(self):
        for url in self.read_urls()[1:]:
            if url not in (reverse("api-list-list"), reverse("api-segment-list")):
                self.assert_problem(self.call("get", url, self.globex_key), 404)
        for method, url, body in self.write_requests():
            if "/contacts/" in url and url.count("/") > 5:
                self.assert_problem(self.call(method, url, self.globex_key, body), 404)
        own = self.call("get", reverse("api-contact-list"), self.globex_key, {"email": "ann@acme.test"})
        assert own.json()["results"] == []
        assert [
            row["id"] for row in self.call("get", reverse("api-contact-list"), self.globex_key).json()["results"]
        ] == [self.gus.public_id]
        on_acme_list = self.call(
            "get", reverse("api-contact-list"), self.globex_key, {"list": self.acme_list.public_id}
        )
        self.assert_problem(on_acme_list, 400)
        upserted = self.call("post", reverse("api-contact-upsert"), self.globex_key, {"email": "ann@acme.test"})
        assert upserted.status_code == 201 and upserted.json()["id"] != self.ann.public_id
        with account_scope(self.acme):
            assert Contact.objects.get(pk=self.ann.pk).first_name == "Ann"

    def test_the_access_log_holds_no_address(self):
        with self.assertLogs("bluespark.access", "INFO") as logs:
            self.call("post", reverse("api-contact-upsert"), self.writer, {"email": CANARY})
            found = self.call("get", reverse("api-contact-list"), self.reader, {"email": CANARY})
            self.call("post", reverse("api-contact-bulk"), self.writer, {"contacts": [{"email": CANARY}]})

        assert [row["email"] for row in found.json()["results"]] == [CANARY]
        assert len(logs.records) == 3
        for record in logs.records:
            assert CANARY not in json.dumps(record.__dict__, default=str)
            assert "canary" not in record.getMessage()
