"""Beat's clean-ups of accounts: expired ``Idempotency-Key`` records and expired sessions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import time_machine
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.idempotency import IDEMPOTENCY_KEY_LIFETIME
from accounts.models import ApiScope, IdempotencyRecord, UserSession
from accounts.services import create_api_key
from accounts.sessions import SESSION_ID_KEY
from accounts.tasks import clear_expired_sessions, purge_expired_idempotency_records
from accounts.tenancy import account_scope
from audit.models import AuditEvent
from tests.cast import CastTestCase

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class PurgeExpiredIdempotencyRecordsTests(CastTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        with account_scope(cls.acme):
            cls.acme_key = create_api_key(cls.acme, name="crm", scopes=[ApiScope.CONTACTS_WRITE], created_by=cls.alice)
        with account_scope(cls.globex):
            cls.globex_key = create_api_key(
                cls.globex, name="crm", scopes=[ApiScope.CONTACTS_WRITE], created_by=cls.charlie
            )

    def post_contact(self, api_key, email: str, idempotency_key: str) -> None:
        response = self.client.post(
            reverse("api-contact-upsert"),
            json.dumps({"email": email}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {api_key.token}",
            HTTP_IDEMPOTENCY_KEY=idempotency_key,
        )
        assert response.status_code == 201, response.content

    def keys_kept(self, account) -> list[str]:
        with account_scope(account):
            return sorted(IdempotencyRecord.objects.values_list("key", flat=True))

    def test_it_deletes_every_accounts_expired_records_and_keeps_fresh_ones(self):
        with time_machine.travel(T0, tick=False) as clock:
            self.post_contact(self.acme_key, "old@acme.test", "acme-old")
            self.post_contact(self.globex_key, "old@globex.test", "globex-old")
            clock.shift(timedelta(hours=23))
            self.post_contact(self.acme_key, "new@acme.test", "acme-new")
            self.post_contact(self.globex_key, "new@globex.test", "globex-new")
            clock.shift(IDEMPOTENCY_KEY_LIFETIME - timedelta(hours=23) + timedelta(seconds=1))

            assert purge_expired_idempotency_records.apply().get() == 2

        assert self.keys_kept(self.acme) == ["acme-new"]
        assert self.keys_kept(self.globex) == ["globex-new"]

    def test_a_second_run_finds_nothing_left_to_delete(self):
        with time_machine.travel(T0, tick=False) as clock:
            self.post_contact(self.acme_key, "once@acme.test", "once")
            clock.shift(IDEMPOTENCY_KEY_LIFETIME + timedelta(seconds=1))

            assert purge_expired_idempotency_records.apply().get() == 1
            assert purge_expired_idempotency_records.apply().get() == 0


class ClearExpiredSessionsTests(CastTestCase):
    def start_session(self, seconds: int) -> str:
        session = SessionStore()
        session["seen"] = True
        session.set_expiry(seconds)
        session.create()
        return session.session_key

    def test_it_deletes_expired_sessions_and_keeps_live_ones(self):
        with time_machine.travel(T0, tick=False) as clock:
            expired = self.start_session(3600)
            clock.shift(timedelta(hours=1, seconds=1))
            live = self.start_session(3600)

            clear_expired_sessions.apply().get()

        assert list(Session.objects.values_list("session_key", flat=True)) == [live]
        assert expired != live


class EndLapsedSessionsTests(CastTestCase):
    def sign_in(self, user) -> str:
        client = Client()
        client.force_login(user)
        return client.session[SESSION_ID_KEY]

    def logouts(self) -> list[tuple[str, str, str]]:
        events = AuditEvent.objects.filter(action="auth.logout").order_by("occurred_at", "pk")
        return [(event.actor_id, event.target_id, event.data["reason"]) for event in events]

    def test_sessions_no_request_came_back_to_end_are_ended_with_their_logout(self):
        lifetime = timedelta(seconds=settings.SESSION_ABSOLUTE_SECONDS)
        idle = timedelta(seconds=settings.SESSION_IDLE_SECONDS)
        with time_machine.travel(T0, tick=False) as clock:
            went_idle = self.sign_in(self.alice)
            kept_busy = self.sign_in(self.bob)
            clock.shift(lifetime - idle)  # bob's browser is seen until the last idle stretch of its lifetime
            UserSession.objects.filter(public_id=kept_busy).update(last_seen_at=timezone.now())
            clock.shift(idle)
            young = self.sign_in(self.vic)
            clock.shift(timedelta(seconds=1))

            assert clear_expired_sessions.apply().get() == 2
            assert clear_expired_sessions.apply().get() == 0  # a second run records nothing again

        assert list(UserSession.objects.values_list("public_id", flat=True)) == [young]
        assert self.logouts() == [
            (self.alice.public_id, went_idle, "idle"),
            (self.bob.public_id, kept_busy, "expired"),
        ]
