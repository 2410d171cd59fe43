"""Beat's clean-ups of accounts: expired ``Idempotency-Key`` records, expired sessions, spent email changes,
dead invitations."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import time_machine
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.idempotency import IDEMPOTENCY_KEY_LIFETIME
from accounts.models import ApiScope, EmailChange, IdempotencyRecord, Invitation, Membership, Role, UserSession
from accounts.services import (
    INVITATION_DAYS,
    accept_invitation,
    confirm_email_change,
    create_api_key,
    invite_member,
    request_email_change,
    withdraw_invitation,
)
from accounts.sessions import SESSION_ID_KEY
from accounts.tasks import (
    clear_expired_sessions,
    purge_dead_invitations,
    purge_expired_idempotency_records,
    purge_spent_email_changes,
)
from accounts.tenancy import account_scope
from accounts.tokens import EMAIL_CHANGE_TIMEOUT
from audit.models import AuditEvent
from tests.cast import CastTestCase, make_user

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


class PurgeSpentEmailChangesTests(CastTestCase):
    def request_change(self, user, address: str) -> str:
        """Ask for the change as the profile page does; the token of the link mailed to ``address``."""
        with self.captureOnCommitCallbacks(execute=True):
            request_email_change(user, new_email=address)
        [message] = [m for m in mail.outbox if m.to == [address]]
        return re.search(r"/accounts/profile/email/usr_\w+/([^\s/]+)/", message.body).group(1)

    def pending(self) -> list[str]:
        return sorted(change.email for change in EmailChange.objects.all())

    def test_it_deletes_used_and_expired_changes_of_every_user_and_keeps_open_ones(self):
        lifetime = timedelta(seconds=EMAIL_CHANGE_TIMEOUT)
        with time_machine.travel(T0, tick=False) as clock:
            self.request_change(self.alice, "alice.lapsed@example.test")
            self.request_change(self.charlie, "charlie.lapsed@example.test")  # Globex's owner
            token = self.request_change(self.bob, "bob.used@example.test")
            confirm_email_change(self.bob, user_id=self.bob.public_id, token=token)
            clock.shift(lifetime - timedelta(hours=1))
            self.request_change(self.vic, "vic.open@example.test")
            clock.shift(timedelta(hours=1))  # alice's and charlie's links end now; vic's has 23 hours left

            assert purge_spent_email_changes.apply().get() == 3
            assert purge_spent_email_changes.apply().get() == 0  # a second run finds nothing

        assert self.pending() == ["vic.open@example.test"]

    def test_a_used_change_goes_at_the_next_run_before_its_link_would_expire(self):
        with time_machine.travel(T0, tick=False) as clock:
            token = self.request_change(self.alice, "alice.new@example.test")
            open_one = self.request_change(self.charlie, "charlie.new@example.test")
            clock.shift(timedelta(minutes=5))
            confirm_email_change(self.alice, user_id=self.alice.public_id, token=token)

            assert purge_spent_email_changes.apply().get() == 1

            confirm_email_change(self.charlie, user_id=self.charlie.public_id, token=open_one)  # still works
        self.charlie.refresh_from_db()
        assert self.charlie.email == "charlie.new@example.test"


class PurgeDeadInvitationsTests(CastTestCase):
    def invite(self, account, owner, address: str) -> Invitation:
        with account_scope(account):
            inviter = Membership.objects.get(account=account, user=owner)
            return invite_member(account, email=address, role=Role.EDITOR, invited_by=inviter).invitation

    def invited(self, account) -> list[str]:
        with account_scope(account):
            return sorted(invitation.email for invitation in Invitation.objects.all())

    def test_it_deletes_every_accounts_expired_and_withdrawn_invitations_and_keeps_open_and_accepted_ones(self):
        with time_machine.travel(T0, tick=False) as clock:
            self.invite(self.acme, self.alice, "lapsed@example.test")
            joined = self.invite(self.acme, self.alice, "dora@example.test")
            accept_invitation(joined, user=make_user("dora@example.test"))
            self.invite(self.globex, self.charlie, "lapsed@globex.test")
            clock.shift(timedelta(days=INVITATION_DAYS - 1))
            self.invite(self.acme, self.alice, "fresh@example.test")
            withdrawn = self.invite(self.acme, self.alice, "withdrawn@example.test")
            with account_scope(self.acme):
                withdraw_invitation(self.acme, withdrawn)
            self.invite(self.globex, self.charlie, "fresh@globex.test")
            clock.shift(timedelta(days=1))  # the first day's invitations end now

            assert purge_dead_invitations.apply().get() == 3
            assert purge_dead_invitations.apply().get() == 0  # a second run finds nothing

        assert self.invited(self.acme) == ["dora@example.test", "fresh@example.test"]
        assert self.invited(self.globex) == ["fresh@globex.test"]
