"""The services record their audit events: one per change, in its transaction, named from the request.

Each test does one thing the way a person does it (through the pages, with the
test client) and reads the trail: the action, the chain, who acted, on what,
with which details, and the request id and address of the request that did
it. A refused change records no success event. After every test the whole
trail is scanned for the canary values the test used (addresses, passwords,
key tokens, TOTP secrets, recovery codes, names people typed), and
``audit_verify`` checks every chain.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from io import StringIO
from urllib.parse import urlparse

import pyotp
import time_machine
from django.conf import settings
from django.core import mail
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services, two_factor
from accounts.models import (
    Account,
    ApiKey,
    ApiScope,
    Invitation,
    Membership,
    Role,
    TOTPDevice,
    User,
)
from accounts.reauth import VERIFIED_AT_KEY
from accounts.sessions import SESSION_ID_KEY
from accounts.tenancy import account_scope
from accounts.tokens import password_reset_tokens
from audit.models import AuditEvent, platform_chain, user_chain
from tests.cast import PASSWORD, CastTestCase, make_user

# A step boundary (a multiple of 30 s) plus 5 s: every TOTP code below is computed from here.
T0 = datetime(2030, 1, 7, 9, 0, 5, tzinfo=UTC)
LOGIN = reverse("accounts:login")
LOGOUT = reverse("accounts:logout")
HOME = reverse("accounts:home")
REAUTH = reverse("reauthenticate")
VERIFY = reverse("two_factor:verify")
CAMPAIGNS_API = "/api/v1/campaigns/"
NEW_PASSWORD = "canary passphrase never in the trail 7731"
DORA = "dora.canary@example.test"
LINK = re.compile(r"https?://\S+")


def code_at(secret: str, moment: datetime) -> str:
    return pyotp.TOTP(secret).at(moment)


def wrong_code(secret: str, moment: datetime) -> str:
    return str((int(code_at(secret, moment)) + 1) % 1_000_000).zfill(6)


def one(action: str) -> AuditEvent:
    events = list(AuditEvent.objects.filter(action=action))
    assert len(events) == 1, f"expected one {action} event, found {len(events)}"
    return events[0]


def every(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("occurred_at", "id"))


def summary(event: AuditEvent) -> dict:
    """What an event says, in the shape the tests compare."""
    return {
        "account": event.account_id or None,
        "actor": (event.actor_type, event.actor_id or None),
        "target": (event.target_type, event.target_id) if event.target_type else None,
        "data": event.data,
    }


def mailed_path(address: str) -> str:
    """The path of the last link mailed to ``address``."""
    [message] = [m for m in mail.outbox if m.to == [address]][-1:]
    return urlparse(LINK.search(message.body).group(0)).path


class RecordedEventsTestCase(CastTestCase):
    """A frozen clock, canary values, and a clean, verified trail after every test."""

    def setUp(self) -> None:
        super().setUp()
        traveller = time_machine.travel(T0, tick=False)
        self.clock = traveller.start()
        self.addCleanup(traveller.stop)
        self.canaries = [PASSWORD, NEW_PASSWORD, DORA, self.sam_totp_secret]
        self.canaries += [user.email for user in (self.alice, self.bob, self.vic, self.charlie, self.sam)]

    def tearDown(self) -> None:
        self.assert_the_trail_holds_no_canary()
        # Raises SystemExit when a chain does not verify.
        call_command("audit_verify", stdout=StringIO())
        super().tearDown()

    def assert_the_trail_holds_no_canary(self) -> None:
        for event in AuditEvent.objects.all():
            data = json.dumps(event.data)
            assert "@" not in data, f"{event.action} holds something like an address: {data}"
            stored = " ".join(
                [data]
                + [
                    str(getattr(event, field))
                    for field in ("action", "actor_id", "acting_as_id", "api_key_id", "target_type", "target_id")
                ]
            ).lower()
            for canary in self.canaries:
                assert canary.lower() not in stored, f"{event.action} holds a canary value"

    def move_to(self, seconds: float) -> None:
        self.clock.move_to(T0 + timedelta(seconds=seconds))

    def log_in(self, user: User, *, verified: bool = True, client: Client | None = None) -> Client:
        """A signed-in browser (``force_login``), with or without a recent password check."""
        client = client or self.client
        client.force_login(user)
        session = client.session
        session[VERIFIED_AT_KEY] = time.time() - (0 if verified else 3600)
        session.save()
        return client

    def browser(self, user: User, *, ip: str = "127.0.0.1") -> Client:
        """A browser that logged in through the login page."""
        client = Client(REMOTE_ADDR=ip)
        assert client.post(LOGIN, {"username": user.email, "password": PASSWORD}).status_code == 302
        return client

    def assert_from(self, event: AuditEvent, response, *, ip: str = "127.0.0.1") -> None:
        """The event names the request that made it: its id (echoed in the response) and its address."""
        assert event.request_id == response["X-Request-ID"]
        assert event.ip == ip

    def settings_url(self, name: str, account: Account | None = None, **kwargs: str) -> str:
        kwargs["account_id"] = (account or self.acme).public_id
        return reverse(f"account_settings:{name}", kwargs=kwargs)

    def issue_key(self, *, name: str = "integration", scopes: tuple[str, ...] = (ApiScope.CAMPAIGNS_READ,)):
        with account_scope(self.acme):
            issued = services.create_api_key(self.acme, name=name, scopes=list(scopes), created_by=self.alice)
        self.canaries.append(issued.token)
        return issued

    def enrol(self, user: User) -> tuple[str, list[str]]:
        """A confirmed device and ten recovery codes for ``user``: (secret, codes)."""
        secret = pyotp.random_base32()
        TOTPDevice.objects.create(user=user, secret=secret, confirmed_at=timezone.now())
        codes = two_factor.regenerate_recovery_codes(user)
        self.canaries += [secret, *codes, *(code.replace("-", "") for code in codes)]
        return secret, codes

    def membership(self, user: User, account: Account | None = None) -> Membership:
        return Membership.objects.select_related("user").get(account=account or self.acme, user=user)


class AccountEventTests(RecordedEventsTestCase):
    def test_signing_up_records_the_new_account_created_by_its_first_owner(self):
        self.canaries += ["Canary Widgets Ltd", "Dora Canary"]
        form = {
            "email": DORA,
            "password": NEW_PASSWORD,
            "account_name": "Canary Widgets Ltd",
            "full_name": "Dora Canary",
        }
        response = self.client.post(reverse("accounts:sign_up"), form)
        assert response.status_code == 302
        dora = User.objects.with_email(DORA).get()
        account = Membership.objects.get(user=dora).account
        event = one("account.created")
        assert summary(event) == {
            "account": account.public_id,
            "actor": ("user", dora.public_id),
            "target": ("account", account.public_id),
            "data": {},
        }
        assert event.chain == account.public_id
        self.assert_from(event, response)
        # A known address starts nothing, and records nothing.
        self.client.post(reverse("accounts:sign_up"), {**form, "email": self.bob.email})
        assert len(every("account.created")) == 1

    def test_renaming_records_that_the_name_changed_but_neither_name(self):
        self.canaries.append("Canary Rebrand Corp")
        self.log_in(self.alice)
        response = self.client.post(self.settings_url("general"), {"name": "Canary Rebrand Corp"})
        assert response.status_code == 302
        event = one("account.renamed")
        assert summary(event) == {
            "account": self.acme.public_id,
            "actor": ("user", self.alice.public_id),
            "target": ("account", self.acme.public_id),
            "data": {},
        }
        self.assert_from(event, response)
        # The same name again changes nothing.
        self.client.post(self.settings_url("general"), {"name": "Canary Rebrand Corp"})
        assert len(every("account.renamed")) == 1

    def test_deleting_the_account_is_recorded_and_the_event_outlives_the_purge(self):
        self.log_in(self.alice)
        refused = self.client.post(self.settings_url("delete"), {"confirm_name": "Not Acme"})
        assert refused.status_code == 400 and not every("account.deleted")
        response = self.client.post(self.settings_url("delete"), {"confirm_name": "Acme"})
        assert response.status_code == 302
        event = one("account.deleted")
        assert summary(event) == {
            "account": self.acme.public_id,
            "actor": ("user", self.alice.public_id),
            "target": ("account", self.acme.public_id),
            "data": {},
        }
        self.assert_from(event, response)
        # What the background purge does: the account's rows go, its trail stays.
        services.delete_account(self.acme)
        assert not Account.objects.filter(pk=self.acme.pk).exists()
        assert one("account.deleted").pk == event.pk

    def test_the_two_factor_rule_is_an_event_of_the_account(self):
        self.log_in(self.alice)
        response = self.client.post(self.settings_url("security"), {"require_two_factor": "on"})
        assert response.status_code == 302
        event = one("account.two_factor_required")
        assert summary(event) == {
            "account": self.acme.public_id,
            "actor": ("user", self.alice.public_id),
            "target": ("account", self.acme.public_id),
            "data": {"required": True},
        }
        self.assert_from(event, response)
        # Alice must enrol before she reaches the page again; then she lifts the rule.
        self.enrol(self.alice)
        self.client.post(self.settings_url("security"), {})
        assert [e.data for e in every("account.two_factor_required")] == [{"required": True}, {"required": False}]


class ApiKeyEventTests(RecordedEventsTestCase):
    def test_a_new_key_is_recorded_with_its_scopes_and_expiry_never_its_name_or_token(self):
        self.canaries.append("Canary CRM sync")
        self.log_in(self.alice)
        form = {"name": "Canary CRM sync", "scopes": ["contacts:write", "campaigns:read"], "expires_in_days": "30"}
        response = self.client.post(self.settings_url("api_key_create"), form)
        assert response.status_code == 200
        token = response.context["token"]
        self.canaries += [token, token.rsplit("_", 1)[1]]
        with account_scope(self.acme):
            key = ApiKey.objects.get()
        event = one("api_key.created")
        assert summary(event) == {
            "account": self.acme.public_id,
            "actor": ("user", self.alice.public_id),
            "target": ("api_key", key.public_id),
            "data": {
                "scopes": ["campaigns:read", "contacts:write"],
                "expires_at": (T0 + timedelta(days=30)).isoformat(),
            },
        }
        self.assert_from(event, response)

    def test_a_key_with_no_known_scope_records_nothing(self):
        with account_scope(self.acme), self.assertRaises(services.AccountsError):
            services.create_api_key(self.acme, name="x", scopes=["everything"], created_by=self.alice)
        assert not every("api_key.created")

    def test_revoking_a_key_is_recorded_once(self):
        issued = self.issue_key()
        self.log_in(self.bob)
        Membership.objects.filter(account=self.acme, user=self.bob).update(role=Role.ADMIN)
        url = self.settings_url("api_key_revoke", key_id=issued.key.public_id)
        response = self.client.post(url)
        assert response.status_code == 302
        self.client.post(url)
        event = one("api_key.revoked")
        assert summary(event) == {
            "account": self.acme.public_id,
            "actor": ("user", self.bob.public_id),
            "target": ("api_key", issued.key.public_id),
            "data": {},
        }
        self.assert_from(event, response)

    def test_an_invalid_key_is_recorded_with_its_public_prefix_at_most(self):
        issued = self.issue_key()
        prefix = issued.key.prefix
        guessed_secret = "CanaryGuessedSecretNeverKept0123456789abcde"
        self.canaries.append(guessed_secret)
        client = APIClient()
        assert client.get(CAMPAIGNS_API, HTTP_AUTHORIZATION=f"Bearer {issued.token}").status_code == 200
        tokens = [
            f"bsk_{prefix}_{guessed_secret}",
            "not-a-key-at-all",
            f"bsk_{DORA}_{guessed_secret}",  # whatever stands where the prefix goes is kept only if it is one
            f"bsk_{guessed_secret}",
        ]
        responses = [client.get(CAMPAIGNS_API, HTTP_AUTHORIZATION=f"Bearer {token}") for token in tokens]
        assert [r.status_code for r in responses] == [401, 401, 401, 401]
        events = every("api_key.rejected")
        assert [summary(e) for e in events] == [
            {"account": None, "actor": ("anonymous", None), "target": None, "data": {"prefix": prefix}},
            {"account": None, "actor": ("anonymous", None), "target": None, "data": {}},
            {"account": None, "actor": ("anonymous", None), "target": None, "data": {}},
            {"account": None, "actor": ("anonymous", None), "target": None, "data": {}},
        ]
        assert {e.chain for e in events} == {platform_chain("127.0.0.1")}
        self.assert_from(events[0], responses[0])


class TeamEventTests(RecordedEventsTestCase):
    def invite_dora(self) -> services.SentInvitation:
        with account_scope(self.acme), self.captureOnCommitCallbacks(execute=True):
            sent = services.invite_member(
                self.acme, email=DORA, role=Role.EDITOR, invited_by=self.membership(self.alice)
            )
        self.canaries.append(sent.token)
        return sent

    def test_an_invitation_is_recorded_with_its_role_never_the_address(self):
        self.log_in(self.alice)
        response = self.client.post(self.settings_url("team_invite"), {"email": DORA, "role": "editor"})
        assert response.status_code == 302
        with account_scope(self.acme):
            invitation = Invitation.objects.get()
        event = one("member.invited")
        assert summary(event) == {
            "account": self.acme.public_id,
            "actor": ("user", self.alice.public_id),
            "target": ("invitation", invitation.public_id),
            "data": {"role": "editor"},
        }
        self.assert_from(event, response)

    def test_withdrawing_an_invitation_is_recorded_once(self):
        sent = self.invite_dora()
        self.log_in(self.alice)
        url = self.settings_url("team_withdraw", invitation_id=sent.invitation.public_id)
        response = self.client.post(url)
        self.client.post(url)
        event = one("member.invitation_withdrawn")
        assert summary(event) == {
            "account": self.acme.public_id,
            "actor": ("user", self.alice.public_id),
            "target": ("invitation", sent.invitation.public_id),
            "data": {},
        }
        self.assert_from(event, response)

    def test_joining_is_recorded_by_the_new_member_and_only_the_invited_address_joins(self):
        sent = self.invite_dora()
        url = reverse("invitations:accept", kwargs={"token": sent.token})
        self.log_in(self.charlie)
        assert self.client.post(url).status_code == 400
        assert not every("member.joined")
        dora = make_user(DORA)
        self.log_in(dora)
        response = self.client.post(url)
        assert response.status_code == 302
        event = one("member.joined")
        assert summary(event) == {
            "account": self.acme.public_id,
            "actor": ("user", dora.public_id),
            "target": ("user", dora.public_id),
            "data": {"role": "editor", "invitation": sent.invitation.public_id},
        }
        self.assert_from(event, response)

    def test_a_role_change_is_recorded_with_the_old_and_new_role_and_the_last_owner_stays(self):
        self.log_in(self.alice)
        response = self.client.post(self.settings_url("team_role", user_id=self.vic.public_id), {"role": "editor"})
        assert response.status_code == 302
        event = one("member.role_changed")
        assert summary(event) == {
            "account": self.acme.public_id,
            "actor": ("user", self.alice.public_id),
            "target": ("user", self.vic.public_id),
            "data": {"old": "viewer", "new": "editor"},
        }
        self.assert_from(event, response)
        # Refused: the account would have no owner left.
        self.client.post(self.settings_url("team_role", user_id=self.alice.public_id), {"role": "admin"})
        assert self.membership(self.alice).role == Role.OWNER
        assert len(every("member.role_changed")) == 1

    def test_a_removal_is_recorded_and_the_last_owner_cannot_go(self):
        self.log_in(self.alice)
        response = self.client.post(self.settings_url("team_remove", user_id=self.bob.public_id))
        assert response.status_code == 302
        event = one("member.removed")
        assert summary(event) == {
            "account": self.acme.public_id,
            "actor": ("user", self.alice.public_id),
            "target": ("user", self.bob.public_id),
            "data": {"role": "editor"},
        }
        self.assert_from(event, response)
        self.client.post(self.settings_url("team_remove", user_id=self.alice.public_id))
        assert Membership.objects.filter(account=self.acme, user=self.alice).exists()
        assert len(every("member.removed")) == 1


class PasswordAndAddressEventTests(RecordedEventsTestCase):
    def test_a_password_change_is_a_user_event_and_a_wrong_current_password_records_none(self):
        self.log_in(self.alice, client=Client())  # another session, which the change ends
        self.log_in(self.alice)
        url = reverse("accounts:password_change")
        form = {"new_password": NEW_PASSWORD, "new_password_confirmation": NEW_PASSWORD}
        refused = self.client.post(url, {**form, "current_password": "canary wrong current password"})
        self.canaries.append("canary wrong current password")
        assert refused.status_code == 200 and not every("auth.password_changed")
        response = self.client.post(url, {**form, "current_password": PASSWORD})
        assert response.status_code == 302
        event = one("auth.password_changed")
        assert summary(event) == {
            "account": None,
            "actor": ("user", self.alice.public_id),
            "target": None,
            "data": {"other_sessions_ended": 1},
        }
        assert event.chain == user_chain(self.alice.public_id)
        self.assert_from(event, response)

    def test_a_reset_request_is_recorded_only_for_an_address_that_is_a_users(self):
        url = reverse("accounts:password_reset")
        self.client.post(url, {"email": "nobody.canary@example.test"})
        self.canaries.append("nobody.canary@example.test")
        assert not every("auth.password_reset_requested")
        response = self.client.post(url, {"email": "VIC@acme.test"})
        assert response.status_code == 302
        event = one("auth.password_reset_requested")
        assert summary(event) == {
            "account": None,
            "actor": ("user", self.vic.public_id),
            "target": None,
            "data": {},
        }
        self.assert_from(event, response)

    def test_a_reset_is_recorded_and_a_bad_link_records_nothing(self):
        self.log_in(self.vic, client=Client())
        token = password_reset_tokens.make_token(self.vic)
        self.canaries.append(token)
        form = {"new_password": NEW_PASSWORD, "new_password_confirmation": NEW_PASSWORD}
        bad = reverse("accounts:password_reset_confirm", kwargs={"user_id": self.vic.public_id, "token": "x-y"})
        assert self.client.post(bad, form).status_code == 400
        url = reverse("accounts:password_reset_confirm", kwargs={"user_id": self.vic.public_id, "token": token})
        response = self.client.post(url, form)
        assert response.status_code == 302
        event = one("auth.password_reset")
        assert summary(event) == {
            "account": None,
            "actor": ("user", self.vic.public_id),
            "target": None,
            "data": {"sessions_ended": 1},
        }
        self.assert_from(event, response)

    def test_an_address_change_is_recorded_when_asked_and_when_confirmed_never_with_an_address(self):
        new_address = "alice.canary@example.test"
        self.canaries.append(new_address)
        self.log_in(self.alice)
        with self.captureOnCommitCallbacks(execute=True):
            asked = self.client.post(reverse("accounts:email_change"), {"new_email": new_address})
        assert asked.status_code == 302
        requested = one("auth.email_change_requested")
        assert summary(requested) == {
            "account": None,
            "actor": ("user", self.alice.public_id),
            "target": None,
            "data": {},
        }
        self.assert_from(requested, asked)
        path = mailed_path(new_address)
        self.canaries.append(path.rstrip("/").rsplit("/", 1)[1])
        assert not every("auth.email_changed")
        with self.captureOnCommitCallbacks(execute=True):
            confirmed = self.client.post(path)
        assert confirmed.status_code == 302
        changed = one("auth.email_changed")
        assert summary(changed) == {
            "account": None,
            "actor": ("user", self.alice.public_id),
            "target": None,
            "data": {"other_sessions_ended": 0},
        }
        self.assert_from(changed, confirmed)


class LoginEventTests(RecordedEventsTestCase):
    def test_a_login_and_a_logout_are_recorded_with_their_session(self):
        response = self.client.post(LOGIN, {"username": "  ALICE@Acme.Test ", "password": PASSWORD})
        assert response.status_code == 302
        session_id = self.client.session[SESSION_ID_KEY]
        login = one("auth.login")
        assert summary(login) == {
            "account": None,
            "actor": ("user", self.alice.public_id),
            "target": ("user_session", session_id),
            "data": {},
        }
        assert login.chain == user_chain(self.alice.public_id)
        self.assert_from(login, response)
        response = self.client.post(LOGOUT)
        logout = one("auth.logout")
        assert summary(logout) == {
            "account": None,
            "actor": ("user", self.alice.public_id),
            "target": ("user_session", session_id),
            "data": {"reason": "requested"},
        }
        self.assert_from(logout, response)

    def test_a_failed_login_names_the_user_it_was_for_and_never_the_typed_address(self):
        self.canaries += ["canary wrong password", "stranger.canary@example.test"]
        known = self.client.post(LOGIN, {"username": "Bob@Acme.Test", "password": "canary wrong password"})
        unknown = self.client.post(
            LOGIN, {"username": "stranger.canary@example.test", "password": "canary wrong password"}
        )
        assert known.status_code == unknown.status_code == 200
        events = every("auth.login_failed")
        assert [summary(e) for e in events] == [
            {"account": None, "actor": ("user", self.bob.public_id), "target": None, "data": {}},
            {"account": None, "actor": ("anonymous", None), "target": None, "data": {}},
        ]
        self.assert_from(events[0], known)
        self.assert_from(events[1], unknown)
        assert not every("auth.login")

    @override_settings(SESSION_IDLE_SECONDS=600)
    def test_a_session_ended_for_idleness_is_a_logout_that_says_so(self):
        client = self.browser(self.alice)
        session_id = client.session[SESSION_ID_KEY]
        self.move_to(601)
        response = client.get(HOME)
        assert response["Location"].startswith(LOGIN)
        event = one("auth.logout")
        assert summary(event) == {
            "account": None,
            "actor": ("user", self.alice.public_id),
            "target": ("user_session", session_id),
            "data": {"reason": "idle"},
        }
        self.assert_from(event, response)

    def test_a_locked_username_is_recorded_as_the_users_lockout_and_its_end(self):
        for attempt in range(settings.AXES_FAILURE_LIMIT):
            self.client.post(
                LOGIN, {"username": "alice@acme.test", "password": "nope"}, REMOTE_ADDR=f"203.0.113.{attempt}"
            )
        refused = self.client.post(
            LOGIN, {"username": "alice@acme.test", "password": PASSWORD}, REMOTE_ADDR="198.51.100.9"
        )
        assert refused.status_code == 429
        # Every attempt failed, the one refused unread during the lockout too.
        failed = every("auth.login_failed")
        assert len(failed) == settings.AXES_FAILURE_LIMIT + 1
        assert {summary(e)["actor"] for e in failed} == {("user", self.alice.public_id)}
        started = one("auth.lockout_started")
        ends_at = T0 + settings.AXES_COOLOFF_TIME
        assert summary(started) == {
            "account": None,
            "actor": ("user", self.alice.public_id),
            "target": None,
            "data": {"locked_by": "username", "locked_until": ends_at.isoformat()},
        }
        assert started.ip == f"203.0.113.{settings.AXES_FAILURE_LIMIT - 1}"
        self.clock.move_to(ends_at + timedelta(seconds=1))
        response = self.client.post(
            LOGIN, {"username": "alice@acme.test", "password": PASSWORD}, REMOTE_ADDR="198.51.100.9"
        )
        assert response.status_code == 302
        ended = one("auth.lockout_ended")
        assert summary(ended) == {
            "account": None,
            "actor": ("user", self.alice.public_id),
            "target": None,
            "data": {"locked_by": "username", "reason": "expired"},
        }
        self.assert_from(ended, response, ip="198.51.100.9")

    def test_a_locked_address_is_recorded_with_no_user_and_its_address_as_the_events(self):
        guesses = [f"guess{n}.canary@example.test" for n in range(settings.AXES_FAILURE_LIMIT)]
        self.canaries += guesses
        for guess in guesses:
            response = self.client.post(LOGIN, {"username": guess, "password": "nope"}, REMOTE_ADDR="203.0.113.50")
        started = one("auth.lockout_started")
        assert summary(started) == {
            "account": None,
            "actor": ("anonymous", None),
            "target": None,
            "data": {"locked_by": "ip", "locked_until": (T0 + settings.AXES_COOLOFF_TIME).isoformat()},
        }
        self.assert_from(started, response, ip="203.0.113.50")

    def test_a_password_reset_ends_its_users_lockout(self):
        for attempt in range(settings.AXES_FAILURE_LIMIT):
            self.client.post(
                LOGIN, {"username": "vic@acme.test", "password": "nope"}, REMOTE_ADDR=f"203.0.113.{attempt}"
            )
        one("auth.lockout_started")
        services.reset_password(
            user_id=self.vic.public_id, token=password_reset_tokens.make_token(self.vic), new_password=NEW_PASSWORD
        )
        assert summary(one("auth.lockout_ended")) == {
            "account": None,
            "actor": ("user", self.vic.public_id),
            "target": None,
            "data": {"locked_by": "username", "reason": "password_reset"},
        }


class ReauthenticationEventTests(RecordedEventsTestCase):
    def confirm(self, **form: str):
        return self.client.post(REAUTH, {"next": HOME, **form})

    def test_a_password_check_is_recorded_and_a_wrong_password_is_a_failed_login(self):
        self.canaries.append("canary not my password")
        self.log_in(self.bob, verified=False)
        assert self.confirm(password="canary not my password").status_code == 200
        assert not every("auth.reauthenticated")
        failed = one("auth.login_failed")
        assert summary(failed)["actor"] == ("user", self.bob.public_id)
        response = self.confirm(password=PASSWORD)
        assert response.status_code == 302
        event = one("auth.reauthenticated")
        assert summary(event) == {
            "account": None,
            "actor": ("user", self.bob.public_id),
            "target": None,
            "data": {"second_factor": None},
        }
        self.assert_from(event, response)

    def test_with_two_factor_the_event_names_the_kind_of_code(self):
        secret, _ = self.enrol(self.bob)
        self.log_in(self.bob, verified=False)
        response = self.confirm(password=PASSWORD, code=code_at(secret, T0))
        assert response.status_code == 302
        assert one("auth.reauthenticated").data == {"second_factor": "totp"}


class TwoFactorEventTests(RecordedEventsTestCase):
    def test_enrolment_is_recorded_once_confirmed_and_a_wrong_code_records_a_failure_only(self):
        self.log_in(self.alice)
        self.client.post(reverse("two_factor:setup"))
        device = TOTPDevice.objects.get(user=self.alice)
        self.canaries.append(device.secret)
        wrong = self.client.post(reverse("two_factor:confirm"), {"code": wrong_code(device.secret, T0)})
        assert wrong.status_code == 400
        assert not every("auth.two_factor_enabled")
        failed = one("auth.two_factor_failed")
        assert summary(failed) == {
            "account": None,
            "actor": ("user", self.alice.public_id),
            "target": None,
            "data": {"during": "enrolment"},
        }
        self.assert_from(failed, wrong)
        response = self.client.post(reverse("two_factor:confirm"), {"code": code_at(device.secret, T0)})
        assert response.status_code == 200
        self.canaries += response.context["codes"]
        event = one("auth.two_factor_enabled")
        assert summary(event) == {
            "account": None,
            "actor": ("user", self.alice.public_id),
            "target": ("totp_device", device.public_id),
            "data": {},
        }
        self.assert_from(event, response)

    def test_turning_it_off_is_recorded_and_a_refusal_records_nothing(self):
        self.enrol(self.vic)
        device = TOTPDevice.objects.get(user=self.vic)
        Account.objects.filter(pk=self.acme.pk).update(require_two_factor=True)
        self.log_in(self.vic)
        self.client.post(reverse("two_factor:disable"))
        assert TOTPDevice.objects.filter(user=self.vic).exists() and not every("auth.two_factor_disabled")
        Account.objects.filter(pk=self.acme.pk).update(require_two_factor=False)
        response = self.client.post(reverse("two_factor:disable"))
        assert response.status_code == 302
        event = one("auth.two_factor_disabled")
        assert summary(event) == {
            "account": None,
            "actor": ("user", self.vic.public_id),
            "target": ("totp_device", device.public_id),
            "data": {},
        }
        self.assert_from(event, response)

    def test_wrong_codes_at_login_a_lockout_and_its_end_are_recorded(self):
        secret, _ = self.enrol(self.alice)
        assert self.client.post(LOGIN, {"username": "alice@acme.test", "password": PASSWORD})["Location"] == VERIFY
        wrong = wrong_code(secret, T0)
        for _ in range(5):
            response = self.client.post(VERIFY, {"code": wrong})
            assert response.status_code == 400
        assert self.client.post(VERIFY, {"code": code_at(secret, T0)}).status_code == 429
        failures = every("auth.two_factor_failed")
        assert [summary(e) for e in failures] == 5 * [
            {
                "account": None,
                "actor": ("user", self.alice.public_id),
                "target": None,
                "data": {"during": "verification"},
            }
        ]
        started = one("auth.two_factor_lockout_started")
        locked_until = datetime.fromisoformat(started.data["locked_until"])
        assert summary(started)["actor"] == ("user", self.alice.public_id)
        assert T0 < locked_until <= T0 + timedelta(minutes=3)
        self.assert_from(started, response)
        assert not every("auth.login")
        # One guess is back after three minutes.
        self.move_to(181)
        response = self.client.post(VERIFY, {"code": code_at(secret, T0 + timedelta(seconds=181))})
        assert response.status_code == 302
        ended = one("auth.two_factor_lockout_ended")
        assert summary(ended) == {
            "account": None,
            "actor": ("user", self.alice.public_id),
            "target": None,
            "data": {},
        }
        self.assert_from(ended, response)
        assert summary(one("auth.login"))["actor"] == ("user", self.alice.public_id)

    def test_a_recovery_code_is_recorded_with_how_many_are_left(self):
        _, codes = self.enrol(self.alice)
        self.client.post(LOGIN, {"username": "alice@acme.test", "password": PASSWORD})
        response = self.client.post(VERIFY, {"code": codes[4]})
        assert response.status_code == 302
        event = one("auth.recovery_code_used")
        assert summary(event) == {
            "account": None,
            "actor": ("user", self.alice.public_id),
            "target": None,
            "data": {"codes_left": 9},
        }
        self.assert_from(event, response)

    def test_new_recovery_codes_are_recorded(self):
        TOTPDevice.objects.create(user=self.bob, secret=pyotp.random_base32(), confirmed_at=timezone.now())
        self.canaries.append(TOTPDevice.objects.get(user=self.bob).secret)
        self.log_in(self.bob)
        response = self.client.post(reverse("two_factor:recovery_codes"))
        assert response.status_code == 200
        self.canaries += response.context["codes"]
        event = one("auth.recovery_codes_regenerated")
        assert summary(event) == {
            "account": None,
            "actor": ("user", self.bob.public_id),
            "target": None,
            "data": {"count": 10},
        }
        self.assert_from(event, response)


class SessionEventTests(RecordedEventsTestCase):
    def test_ending_one_session_is_recorded_and_its_end_is_a_logout_at_its_next_request(self):
        laptop, phone = self.browser(self.alice), self.browser(self.alice, ip="203.0.113.8")
        phone_id = phone.session[SESSION_ID_KEY]
        response = laptop.post(reverse("sessions:revoke", kwargs={"session_id": phone_id}))
        assert response.status_code == 302
        event = one("session.revoked")
        assert summary(event) == {
            "account": None,
            "actor": ("user", self.alice.public_id),
            "target": ("user_session", phone_id),
            "data": {},
        }
        self.assert_from(event, response)
        phone.get(HOME)
        assert one("auth.logout").data == {"reason": "revoked"}

    def test_nobody_can_end_someone_elses_session_and_trying_records_nothing(self):
        alice = self.browser(self.alice)
        charlie = self.browser(self.charlie)
        charlie.post(reverse("sessions:revoke", kwargs={"session_id": alice.session[SESSION_ID_KEY]}))
        assert not every("session.revoked")

    def test_ending_every_other_session_is_recorded_with_how_many(self):
        laptop = self.browser(self.alice)
        self.browser(self.alice)
        self.browser(self.alice)
        response = laptop.post(reverse("sessions:revoke_others"))
        assert response.status_code == 302
        event = one("session.others_revoked")
        assert summary(event) == {
            "account": None,
            "actor": ("user", self.alice.public_id),
            "target": None,
            "data": {"sessions_ended": 2},
        }
        self.assert_from(event, response)
