"""``Idempotency-Key`` on API writes: replay, mismatch, a request still running, expiry, and what is stored."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import time_machine
from django.db import connection
from django.test import Client, override_settings
from django.urls import path, reverse
from rest_framework import status
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.idempotency import (
    ABANDONED_CLAIM_AGE,
    IDEMPOTENCY_KEY_LIFETIME,
    IdempotentMixin,
    claim_idempotency_key,
    purge_idempotency_records,
    request_fingerprint,
)
from accounts.models import ApiScope, IdempotencyRecord
from accounts.rest import TenantAPIView
from accounts.services import create_api_key
from accounts.tenancy import account_scope
from bluespark.rest import PROBLEM_CONTENT_TYPE
from contacts.models import Contact
from contacts.selectors import contact_with_email
from contacts.services import create_contact
from tests.cast import CastTestCase

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CANARY = "idem-canary-51c2@acme.test"


class CsvRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return "".join(f"{name},{value}\r\n" for name, value in (data or {}).items()).encode()


class ReceiptAPI(IdempotentMixin, TenantAPIView):
    """An idempotent POST answered in CSV, or with no body at all: what the JSON endpoints cannot show."""

    scope_resource = "contacts"
    renderer_classes = [CsvRenderer]

    def post(self, request: Request) -> Response:
        if request.data.get("empty"):
            return Response(status=status.HTTP_204_NO_CONTENT)
        # A fresh value each run, so a replay is told apart from the view running again.
        return Response({"receipt": secrets.token_hex(8)}, status=status.HTTP_201_CREATED)


# The URLs of ReplayedContentTypeTests (ROOT_URLCONF is this module there).
urlpatterns = [path("api/v1/receipts/", ReceiptAPI.as_view(), name="test-receipts")]


class IdempotencyTests(CastTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        with account_scope(cls.acme):
            cls.key = create_api_key(cls.acme, name="crm", scopes=[ApiScope.CONTACTS_WRITE], created_by=cls.alice)
            cls.other_key = create_api_key(cls.acme, name="etl", scopes=[ApiScope.CONTACTS_WRITE], created_by=cls.alice)

    def post(
        self,
        url: str,
        body: Any,
        idempotency_key: str | None = "k-1",
        *,
        key: Any = None,
        client: Client | None = None,
        **headers: str,
    ):
        headers["HTTP_AUTHORIZATION"] = f"Bearer {(key or self.key).token}"
        if idempotency_key is not None:
            headers["HTTP_IDEMPOTENCY_KEY"] = idempotency_key
        return (client or self.client).post(url, json.dumps(body), content_type="application/json", **headers)

    def contacts_named(self, email: str) -> int:
        with account_scope(self.acme):
            return int(contact_with_email(self.acme, email) is not None)

    def test_the_same_key_and_request_replay_the_first_answer(self):
        url, body = reverse("api-contact-list"), {"email": "ida@acme.test", "first_name": "Ida"}
        first = self.post(url, body)
        assert first.status_code == 201
        assert "Idempotent-Replayed" not in first

        again = self.post(url, body)

        assert again.status_code == 201
        assert again["Idempotent-Replayed"] == "true"
        assert again["Content-Type"] == "application/json"
        assert again.json() == first.json()
        assert again["RateLimit-Limit"]
        assert self.contacts_named("ida@acme.test") == 1

    def test_a_refusal_is_replayed_too_but_another_key_runs_again(self):
        url = reverse("api-contact-list")
        first = self.post(url, {"email": "not an address"})
        again = self.post(url, {"email": "not an address"})

        assert (first.status_code, again.status_code) == (400, 400)
        assert again["Idempotent-Replayed"] == "true"
        assert again["Content-Type"] == PROBLEM_CONTENT_TYPE
        assert again.json() == first.json()
        fresh = self.post(url, {"email": "not an address"}, "k-2")
        assert "Idempotent-Replayed" not in fresh

    def test_a_key_reused_for_another_request_is_a_422_problem(self):
        url = reverse("api-contact-upsert")
        assert self.post(url, {"email": "jo@acme.test"}).status_code == 201

        other_body = self.post(url, {"email": "jo@acme.test", "first_name": "Jo"})
        other_path = self.post(reverse("api-contact-list"), {"email": "jo@acme.test"})

        for response in (other_body, other_path):
            assert response.status_code == 422, response.content
            assert response["Content-Type"] == PROBLEM_CONTENT_TYPE
            assert "different request" in response.json()["detail"]
        with account_scope(self.acme):
            assert contact_with_email(self.acme, "jo@acme.test").first_name == ""

    def test_keys_belong_to_one_api_key(self):
        url = reverse("api-contact-upsert")
        assert self.post(url, {"email": "kim@acme.test"}).status_code == 201

        theirs = self.post(url, {"email": "kim@acme.test"}, key=self.other_key)

        assert theirs.status_code == 200
        assert "Idempotent-Replayed" not in theirs

    def test_a_request_still_running_is_a_409_problem(self):
        url, body = reverse("api-contact-list"), {"email": "lee@acme.test"}
        payload = json.dumps(body).encode()
        with account_scope(self.acme):
            # What the first request holds while its view runs: the claim, with no answer yet.
            claim_idempotency_key(self.acme, self.key.key, "k-1", request_fingerprint("POST", url, payload))

        response = self.post(url, body)

        assert response.status_code == 409
        assert "still being processed" in response.json()["detail"]
        assert self.contacts_named("lee@acme.test") == 0

    def test_a_claim_left_by_a_request_that_died_is_dropped_and_the_retry_runs(self):
        url, body = reverse("api-contact-list"), {"email": "mia@acme.test"}
        payload = json.dumps(body).encode()
        with time_machine.travel(T0, tick=False) as clock:
            with account_scope(self.acme):
                # A worker killed mid-request leaves its claim with no answer, and never releases it.
                claim_idempotency_key(self.acme, self.key.key, "k-1", request_fingerprint("POST", url, payload))
            clock.shift(ABANDONED_CLAIM_AGE - timedelta(seconds=1))
            assert self.post(url, body).status_code == 409
            clock.shift(timedelta(seconds=2))

            retried = self.post(url, body)
            again = self.post(url, body)

        assert retried.status_code == 201
        assert "Idempotent-Replayed" not in retried
        assert (again.status_code, again["Idempotent-Replayed"]) == (201, "true")
        assert self.contacts_named("mia@acme.test") == 1

    def test_keys_of_two_accounts_never_meet(self):
        with account_scope(self.globex):
            globex_key = create_api_key(
                self.globex, name="crm", scopes=[ApiScope.CONTACTS_WRITE], created_by=self.charlie
            )
        url = reverse("api-contact-upsert")
        ours = self.post(url, {"email": "same@both.test"}, "k-1")
        assert self.post(url, {"email": "ours@acme.test"}, "k-2").status_code == 201

        # The same key and request: not Acme's replay. The same key, another request: not Acme's 422.
        same = self.post(url, {"email": "same@both.test"}, "k-1", key=globex_key)
        other = self.post(url, {"email": "theirs@globex.test"}, "k-2", key=globex_key)

        assert (ours.status_code, same.status_code, other.status_code) == (201, 201, 201)
        assert "Idempotent-Replayed" not in same
        assert same.json()["id"] != ours.json()["id"]
        for account in (self.acme, self.globex):
            with account_scope(account):
                assert sorted(IdempotencyRecord.objects.values_list("key", flat=True)) == ["k-1", "k-2"]

    @override_settings(API_REQUESTS_PER_MINUTE=1)
    def test_a_request_refused_before_it_ran_does_not_use_up_its_key(self):
        # As in Stripe's rules: nothing is kept for a request the endpoint never started (here a 429).
        url = reverse("api-contact-list")
        with time_machine.travel(T0, tick=False) as clock:
            assert self.post(url, {"email": "nia@acme.test"}, "k-1").status_code == 201
            assert self.post(url, {"email": "oti@acme.test"}, "k-2").status_code == 429
            clock.shift(timedelta(seconds=61))

            retried = self.post(url, {"email": "oti@acme.test"}, "k-2")

        assert retried.status_code == 201
        assert "Idempotent-Replayed" not in retried
        assert self.contacts_named("oti@acme.test") == 1

    def test_keys_expire_after_a_day(self):
        url = reverse("api-contact-upsert")
        with time_machine.travel(T0, tick=False) as clock:
            assert self.post(url, {"email": "max@acme.test"}).status_code == 201
            clock.shift(IDEMPOTENCY_KEY_LIFETIME - timedelta(seconds=1))
            assert self.post(url, {"email": "max@acme.test"})["Idempotent-Replayed"] == "true"
            clock.shift(timedelta(seconds=2))

            later = self.post(url, {"email": "max@acme.test"})

        assert later.status_code == 200
        assert "Idempotent-Replayed" not in later

    def test_a_server_error_is_not_stored_so_the_retry_runs(self):
        with account_scope(self.acme):
            broken = create_contact(self.acme, email="broken@acme.test", first_name="Broken")
        with connection.cursor() as cursor:
            # A value that no longer opens (as if tampered with): reading it fails with a 500.
            cursor.execute("UPDATE contacts_contact SET first_name = %s WHERE id = %s", [b"\x01garbage", broken.pk])
        client = Client(raise_request_exception=False)
        url, body = reverse("api-contact-upsert"), {"email": "broken@acme.test", "first_name": "Fixed"}

        assert self.post(url, body, client=client).status_code == 500

        with account_scope(self.acme):
            assert not IdempotencyRecord.objects.filter(key="k-1").exists()

    def test_a_bad_key_is_a_400_problem(self):
        for bad in ("x" * 256, "tab\there"):
            response = self.post(reverse("api-contact-list"), {"email": "ned@acme.test"}, bad)
            assert response.status_code == 400
            assert "Idempotency-Key" in response.json()["errors"]
        assert self.contacts_named("ned@acme.test") == 0

    def test_without_a_key_each_post_acts(self):
        url = reverse("api-contact-list")
        assert self.post(url, {"email": "ola@acme.test"}, None).status_code == 201
        assert self.post(url, {"email": "ola@acme.test"}, None).status_code == 409
        with account_scope(self.acme):
            assert not IdempotencyRecord.objects.exists()

    def test_stored_answers_are_encrypted(self):
        response = self.post(reverse("api-contact-list"), {"email": CANARY, "first_name": "Canary"})
        assert response.status_code == 201

        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM accounts_idempotencyrecord")
            rows = cursor.fetchall()
        assert len(rows) == 1
        dumped = repr(rows).encode() + b"".join(bytes(v) for v in rows[0] if isinstance(v, memoryview | bytes))
        assert CANARY.encode() not in dumped
        assert b"Canary" not in dumped
        with account_scope(self.acme):
            assert CANARY in IdempotencyRecord.objects.get().response_body

    def test_purge_deletes_expired_records_of_every_account(self):
        with time_machine.travel(T0, tick=False) as clock:
            self.post(reverse("api-contact-upsert"), {"email": "old@acme.test"}, "old")
            clock.shift(timedelta(hours=20))
            self.post(reverse("api-contact-upsert"), {"email": "new@acme.test"}, "new")
            clock.shift(timedelta(hours=5))

            assert purge_idempotency_records() == 1

        with account_scope(self.acme):
            assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]
            assert Contact.objects.count() == 2

    def test_a_replay_sends_the_bytes_first_sent_not_a_new_rendering(self):
        # JSONRenderer indents when the client asks; the replay must not come back compact.
        url, body = reverse("api-contact-list"), {"email": "pia@acme.test"}
        first = self.post(url, body, HTTP_ACCEPT="application/json; indent=4")
        assert first.status_code == 201
        assert b'\n    "' in first.content

        again = self.post(url, body, HTTP_ACCEPT="application/json; indent=4")

        assert again["Idempotent-Replayed"] == "true"
        assert (again.status_code, again["Content-Type"], again.content) == (
            201,
            first["Content-Type"],
            first.content,
        )

    def test_an_answer_stored_before_content_types_were_kept_is_replayed_as_json(self):
        url = reverse("api-contact-list")
        assert self.post(url, {"email": "quin@acme.test"}).status_code == 201
        assert self.post(url, {"email": "not an address"}, "k-2").status_code == 400
        with account_scope(self.acme):
            assert set(IdempotencyRecord.objects.values_list("response_content_type", flat=True)) == {
                "application/json",
                PROBLEM_CONTENT_TYPE,
            }
            # What a record written before accounts.0008 looks like.
            IdempotencyRecord.objects.update(response_content_type="")

        created = self.post(url, {"email": "quin@acme.test"})
        refused = self.post(url, {"email": "not an address"}, "k-2")

        assert (created.status_code, created["Content-Type"]) == (201, "application/json")
        assert (refused.status_code, refused["Content-Type"]) == (400, PROBLEM_CONTENT_TYPE)
        assert created["Idempotent-Replayed"] == refused["Idempotent-Replayed"] == "true"


@override_settings(ROOT_URLCONF=__name__)
class ReplayedContentTypeTests(CastTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        with account_scope(cls.acme):
            cls.key = create_api_key(cls.acme, name="crm", scopes=[ApiScope.CONTACTS_WRITE], created_by=cls.alice)

    def post(self, body: Any):
        return self.client.post(
            reverse("test-receipts"),
            json.dumps(body),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {self.key.token}",
            HTTP_IDEMPOTENCY_KEY="k-1",
        )

    def test_a_replay_carries_the_content_type_first_sent(self):
        first = self.post({"n": 1})
        assert (first.status_code, first["Content-Type"]) == (201, "text/csv; charset=utf-8")
        assert first.content.startswith(b"receipt,")

        again = self.post({"n": 1})

        assert again["Idempotent-Replayed"] == "true"
        assert (again.status_code, again["Content-Type"], again.content) == (201, first["Content-Type"], first.content)

    def test_an_answer_with_no_body_is_replayed_with_no_content_type(self):
        first = self.post({"empty": True})
        assert first.status_code == 204
        assert "Content-Type" not in first

        again = self.post({"empty": True})

        assert again["Idempotent-Replayed"] == "true"
        assert again.status_code == 204
        assert "Content-Type" not in again
        assert again.content == b""
