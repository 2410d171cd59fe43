"""Two-factor authentication: enrolment, the login's second step, replay, throttling, requirement, re-authentication."""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pyotp
import time_machine
from django.core.signals import got_request_exception
from django.db import connection
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from django.views.debug import ExceptionReporter

from accounts import two_factor
from accounts.models import Account, Membership, RecoveryCode, Role, TOTPDevice, User
from accounts.reauth import VERIFIED_AT_KEY
from accounts.two_factor_views import PENDING_LOGIN_KEY, qr_code_svg
from security.ratelimit import RateLimitUnavailable, reset_rate_limit_client
from tests.bluespark.test_dashboard_pages import outline
from tests.cast import PASSWORD, CastTestCase

LOGIN = reverse("accounts:login")
VERIFY = reverse("two_factor:verify")
INDEX = reverse("two_factor:index")
SETUP = reverse("two_factor:setup")
CONFIRM = reverse("two_factor:confirm")
REAUTH = reverse("reauthenticate")
# A step boundary (a multiple of 30 s) plus 5 s: every code below is computed from here.
T0 = datetime(2030, 1, 7, 9, 0, 5, tzinfo=UTC)
RECOVERY_CODE = re.compile(r"\b[2-9a-hjkmnp-z]{5}-[2-9a-hjkmnp-z]{5}\b")
CANARY_SECRET = "CANARYSECRETTOTPMUSTNEVERLEAKXYZ"


def code_at(secret: str, moment: datetime) -> str:
    return pyotp.TOTP(secret).at(moment)


def enrol(user: User) -> tuple[str, list[str]]:
    """A confirmed device and ten recovery codes for ``user``: (secret, codes)."""
    secret = pyotp.random_base32()
    TOTPDevice.objects.create(user=user, secret=secret, confirmed_at=timezone.now())
    return secret, two_factor.regenerate_recovery_codes(user)


class EveryAttributeFormatter(logging.Formatter):
    """The message, its traceback, and every attribute of the record (the ``extra`` fields included)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{super().format(record)} {vars(record)!r}"


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Everything our loggers write (access log, security events, Django's errors), as text."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EveryAttributeFormatter())
    watched = [logging.getLogger(name) for name in ("", "bluespark.access", "bluespark.security", "django.request")]
    for logger in watched:
        logger.addHandler(handler)
    try:
        yield stream
    finally:
        for logger in watched:
            logger.removeHandler(handler)


class TwoFactorTestCase(CastTestCase):
    """Every test runs on a frozen clock that it moves by hand."""

    def setUp(self) -> None:
        traveller = time_machine.travel(T0, tick=False)
        self.clock = traveller.start()
        self.addCleanup(traveller.stop)

    def at(self, seconds: float) -> datetime:
        return T0 + timedelta(seconds=seconds)

    def move_to(self, seconds: float) -> None:
        self.clock.move_to(self.at(seconds))

    def password_step(self, email: str = "alice@acme.test", *, next_url: str | None = None, **extra):
        url = LOGIN + (f"?next={quote(next_url)}" if next_url else "")
        return self.client.post(url, {"username": email, "password": PASSWORD}, **extra)

    def code_step(self, code: str):
        return self.client.post(VERIFY, {"code": code})

    def log_in_with_code(self, secret: str, moment: datetime, email: str = "alice@acme.test"):
        assert self.password_step(email)["Location"] == VERIFY
        return self.code_step(code_at(secret, moment))

    def log_in_verified(self, user: User, *, verified_seconds_ago: float = 0) -> None:
        self.client.force_login(user)
        session = self.client.session
        session[VERIFIED_AT_KEY] = timezone.now().timestamp() - verified_seconds_ago
        session.save()

    def is_logged_in_as(self, user: User) -> bool:
        return self.client.session.get("_auth_user_id") == str(user.pk)


class EnrolmentTests(TwoFactorTestCase):
    def test_a_user_enrols_with_a_qr_code_confirms_with_a_code_and_gets_ten_recovery_codes(self):
        self.log_in_verified(self.alice)
        with captured_logs() as logs:
            started = self.client.post(SETUP)
            assert started["Location"] == SETUP
            page = self.client.get(SETUP)
            assert page.status_code == 200
            assert "no-store" in page["Cache-Control"]
            device = TOTPDevice.objects.get(user=self.alice)
            assert device.confirmed_at is None
            html = page.content.decode()
            # The QR code is our server-side SVG of the otpauth URI (issuer and email included) ...
            uri = two_factor.provisioning_uri(self.alice, device)
            assert uri.startswith("otpauth://totp/Bluespark:alice%40acme.test?secret=")
            assert "issuer=Bluespark" in uri
            assert str(qr_code_svg(uri)) in html
            assert '<svg width="196" height="196" class="qr-code">' in html
            # ... the secret is there to type by hand, and nothing on the page needs an inline style or script.
            shown = re.search(r'<code class="totp-secret" id="totp-secret">([A-Z2-7 ]+)</code>', html).group(1)
            assert shown.replace(" ", "") == device.secret
            assert outline(page).inline_code == []

            session_key = self.client.session.session_key
            confirmed = self.client.post(CONFIRM, {"code": code_at(device.secret, T0)})
        assert confirmed.status_code == 200
        assert "no-store" in confirmed["Cache-Control"]
        codes = RECOVERY_CODE.findall(confirmed.content.decode())
        assert len(set(codes)) == 10
        device.refresh_from_db()
        assert device.confirmed_at == T0
        assert device.last_used_step == pyotp.TOTP(device.secret).timecode(T0)
        assert RecoveryCode.objects.filter(user=self.alice, used_at__isnull=True).count() == 10
        assert self.client.session.session_key != session_key
        assert logs.getvalue(), "nothing was logged: the scan would prove nothing"
        assert device.secret not in logs.getvalue()
        assert "two_factor_enabled" in logs.getvalue()
        # The codes are not shown again.
        again = self.client.get(INDEX).content.decode()
        assert "Recovery codes left: <strong>10</strong>" in again
        assert not RECOVERY_CODE.search(again)

    def test_a_wrong_code_does_not_confirm_the_device(self):
        self.log_in_verified(self.alice)
        self.client.post(SETUP)
        device = TOTPDevice.objects.get(user=self.alice)
        wrong = str((int(code_at(device.secret, T0)) + 1) % 1_000_000).zfill(6)
        for code in (wrong, code_at(device.secret, self.at(-90)), "abcdef", ""):
            response = self.client.post(CONFIRM, {"code": code})
            assert response.status_code == 400, code
            assert outline(response).inline_code == []
        device.refresh_from_db()
        assert device.confirmed_at is None
        assert not RecoveryCode.objects.filter(user=self.alice).exists()

    def test_recovery_codes_and_the_secret_are_not_in_the_database_in_plaintext(self):
        self.log_in_verified(self.alice)
        self.client.post(SETUP)
        secret = TOTPDevice.objects.get(user=self.alice).secret
        shown = RECOVERY_CODE.findall(self.client.post(CONFIRM, {"code": code_at(secret, T0)}).content.decode())
        assert len(shown) == 10
        plaintexts = [code.encode() for code in shown] + [code.replace("-", "").encode() for code in shown]
        plaintexts += [secret.encode(), secret.lower().encode()]
        with connection.cursor() as cursor:
            dump = b""
            for table in ("accounts_recoverycode", "accounts_totpdevice"):
                cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 (fixed names)
                rows = cursor.fetchall()
                assert rows, table
                for row in rows:
                    for value in row:
                        dump += bytes(value) if isinstance(value, memoryview | bytes) else str(value).encode()
                        dump += b"\x00"
        for plaintext in plaintexts:
            assert plaintext not in dump and plaintext.upper() not in dump
        # What is stored is a SHA-256 (32 bytes) per code.
        assert {len(bytes(h)) for h in RecoveryCode.objects.values_list("code_hash", flat=True)} == {32}

    def test_starting_enrolment_needs_a_recent_reauthentication(self):
        self.log_in_verified(self.alice, verified_seconds_ago=3600)
        response = self.client.post(SETUP)
        assert response["Location"].startswith(REAUTH)
        assert not TOTPDevice.objects.filter(user=self.alice).exists()
        assert self.client.get(SETUP)["Location"].startswith(REAUTH)

    def test_starting_again_replaces_an_unconfirmed_device_but_never_a_confirmed_one(self):
        self.log_in_verified(self.alice)
        self.client.post(SETUP)
        first = TOTPDevice.objects.get(user=self.alice).secret
        self.client.post(SETUP)
        second = TOTPDevice.objects.get(user=self.alice)
        assert second.secret != first
        assert self.client.post(CONFIRM, {"code": code_at(first, T0)}).status_code == 400
        assert self.client.post(CONFIRM, {"code": code_at(second.secret, T0)}).status_code == 200
        self.client.post(SETUP)
        assert TOTPDevice.objects.get(user=self.alice).secret == second.secret

    def test_recovery_codes_are_regenerated_after_reauthentication_and_the_old_ones_stop_working(self):
        _, old_codes = enrol(self.alice)
        self.log_in_verified(self.alice, verified_seconds_ago=3600)
        assert self.client.post(reverse("two_factor:recovery_codes"))["Location"].startswith(REAUTH)
        self.log_in_verified(self.alice)
        response = self.client.post(reverse("two_factor:recovery_codes"))
        new_codes = RECOVERY_CODE.findall(response.content.decode())
        assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
        self.client.logout()
        self.password_step()
        assert self.code_step(old_codes[0]).status_code == 400
        assert self.code_step(new_codes[0]).status_code == 302


class LoginTests(TwoFactorTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.secret, self.recovery_codes = enrol(self.alice)

    def test_after_the_password_the_user_is_not_logged_in_yet(self):
        response = self.password_step()
        assert response.status_code == 302
        assert response["Location"] == VERIFY
        assert "_auth_user_id" not in self.client.session
        dashboard = reverse("dashboard", kwargs={"account_id": self.acme.public_id})
        assert self.client.get(dashboard)["Location"].startswith(LOGIN)
        assert self.client.get(reverse("accounts:home"))["Location"].startswith(LOGIN)
        page = self.client.get(VERIFY)
        assert page.status_code == 200 and "Authentication code" in page.content.decode()

    def test_the_right_code_logs_in_and_the_session_key_changes_at_that_step(self):
        self.password_step()
        pending_key = self.client.session.session_key
        self.move_to(10)
        response = self.code_step(code_at(self.secret, self.at(10)))
        assert response.status_code == 302
        assert response["Location"] == reverse("accounts:home")
        assert self.is_logged_in_as(self.alice)
        assert self.client.session.session_key != pending_key
        assert PENDING_LOGIN_KEY not in self.client.session
        assert self.client.session[VERIFIED_AT_KEY] == self.at(10).timestamp()
        assert self.client.get(response["Location"]).status_code == 302  # home sends her on to Acme

    def test_the_password_step_rotates_the_session_key_too(self):
        self.client.get(LOGIN)
        session = self.client.session
        session["probe"] = "before"
        session.save()
        before = session.session_key
        self.password_step()
        assert self.client.session.session_key != before

    def test_next_is_kept_through_the_second_step_and_checked(self):
        campaigns = reverse("campaigns:index", kwargs={"account_id": self.acme.public_id})
        self.password_step(next_url=campaigns)
        assert self.code_step(code_at(self.secret, T0))["Location"] == campaigns
        self.client.logout()
        self.move_to(30)
        self.password_step(next_url="https://evil.example/")
        response = self.code_step(code_at(self.secret, self.at(30)))
        assert response.status_code == 302 and "evil.example" not in response["Location"]

    def test_a_code_is_accepted_one_step_either_side_and_not_further(self):
        self.move_to(300)
        self.password_step()
        for seconds in (300 - 60, 300 + 60, 300 + 90):
            assert self.code_step(code_at(self.secret, self.at(seconds))).status_code == 400, seconds
        assert self.code_step(code_at(self.secret, self.at(300 - 30))).status_code == 302
        self.client.logout()
        self.password_step()
        assert self.code_step(code_at(self.secret, self.at(300 + 30))).status_code == 302

    def test_a_code_cannot_be_replayed_within_its_window(self):
        code = code_at(self.secret, T0)
        assert self.log_in_with_code(self.secret, T0).status_code == 302
        self.client.logout()
        self.move_to(20)  # the same 30-second step
        self.password_step()
        replayed = self.code_step(code)
        assert replayed.status_code == 400
        assert "already used" in replayed.content.decode()
        assert "_auth_user_id" not in self.client.session
        # Nor an older step's code still inside the window.
        assert self.code_step(code_at(self.secret, self.at(-30))).status_code == 400
        self.move_to(35)
        assert self.code_step(code_at(self.secret, self.at(35))).status_code == 302

    def test_the_second_step_expires_five_minutes_after_the_password(self):
        self.password_step()
        self.move_to(301)
        response = self.code_step(code_at(self.secret, self.at(301)))
        assert response["Location"] == LOGIN
        assert "_auth_user_id" not in self.client.session
        assert PENDING_LOGIN_KEY not in self.client.session

    def test_the_code_page_without_a_password_first_sends_to_login(self):
        assert self.client.get(VERIFY)["Location"] == LOGIN
        assert self.code_step(code_at(self.secret, T0))["Location"] == LOGIN
        assert "_auth_user_id" not in self.client.session

    def test_the_sixth_wrong_code_gets_429_and_the_lockout_and_its_end_are_security_events(self):
        self.password_step()
        right = code_at(self.secret, T0)
        wrong = str((int(right) + 1) % 1_000_000).zfill(6)
        with self.assertLogs("bluespark.security", level="INFO") as logs:
            for _ in range(5):
                assert self.code_step(wrong).status_code == 400
            refused = self.code_step(right)
        assert refused.status_code == 429
        assert int(refused["Retry-After"]) > 0
        assert "Too many attempts, try again later" in refused.content.decode()
        assert "_auth_user_id" not in self.client.session
        events = [(record.getMessage(), getattr(record, "user", None)) for record in logs.records]
        assert events.count(("two_factor_code_rejected", self.alice.public_id)) == 5
        assert ("two_factor_lockout_started", self.alice.public_id) in events
        assert ("two_factor_attempt_refused", self.alice.public_id) in events

        # A recovery code is refused as well while locked.
        assert self.code_step(self.recovery_codes[0]).status_code == 429
        # The bucket refills (5 per 15 minutes): one guess is back after three minutes.
        self.move_to(181)
        with self.assertLogs("bluespark.security", level="INFO") as logs:
            response = self.code_step(code_at(self.secret, self.at(181)))
        assert response.status_code == 302
        assert ("two_factor_lockout_ended", self.alice.public_id) in [
            (record.getMessage(), getattr(record, "user", None)) for record in logs.records
        ]

    def test_the_throttle_is_per_user(self):
        self.password_step()
        for _ in range(5):
            self.code_step("000000")
        assert self.code_step("000000").status_code == 429
        bob_secret, _ = enrol(self.bob)
        self.client.logout()
        assert self.log_in_with_code(bob_secret, T0, email="bob@acme.test").status_code == 302

    def test_a_recovery_code_logs_in_once(self):
        code = self.recovery_codes[3]
        self.password_step()
        with self.assertLogs("bluespark.security", level="INFO") as logs:
            # Typed by hand: upper case, a space instead of the hyphen.
            response = self.code_step(code.upper().replace("-", " "))
        assert response.status_code == 302
        assert self.is_logged_in_as(self.alice)
        assert "recovery_code_used" in [record.getMessage() for record in logs.records]
        assert not any(code.replace("-", "") in str(vars(record)).replace("-", "") for record in logs.records)
        assert RecoveryCode.objects.filter(user=self.alice, used_at__isnull=True).count() == 9
        self.client.logout()
        self.password_step()
        assert self.code_step(code).status_code == 400
        assert "_auth_user_id" not in self.client.session

    def test_wrong_passwords_still_go_through_axes(self):
        for attempt in range(5):
            self.client.post(
                LOGIN, {"username": "alice@acme.test", "password": "wrong"}, REMOTE_ADDR=f"203.0.113.{attempt}"
            )
        locked = self.password_step(REMOTE_ADDR="198.51.100.1")
        assert locked.status_code == 429
        assert PENDING_LOGIN_KEY not in self.client.session

    def test_a_user_without_a_device_logs_in_with_the_password_alone(self):
        assert self.password_step("bob@acme.test")["Location"] == reverse("accounts:home")
        assert self.is_logged_in_as(self.bob)


class RequirementTests(TwoFactorTestCase):
    def test_staff_without_a_device_are_sent_to_enrolment_before_anything_else(self):
        TOTPDevice.objects.filter(user=self.sam).delete()
        self.log_in_verified(self.sam)
        for url in (reverse("accounts:home"), reverse("sessions:index"), reverse("accounts:password_change")):
            assert self.client.get(url)["Location"] == INDEX, url
        htmx = self.client.get(reverse("accounts:home"), headers={"HX-Request": "true"})
        assert htmx.status_code == 204 and htmx["HX-Redirect"] == INDEX
        index = self.client.get(INDEX)
        assert index.status_code == 200 and "You need two-factor authentication" in index.content.decode()
        for url in ("/healthz", "/static/bluespark/app.css"):
            assert self.client.get(url).status_code == 200, url
        assert self.client.get(REAUTH).status_code == 200
        # Enrolling opens the rest.
        self.client.post(SETUP)
        secret = TOTPDevice.objects.get(user=self.sam).secret
        assert self.client.post(CONFIRM, {"code": code_at(secret, T0)}).status_code == 200
        assert self.client.get(reverse("accounts:home")).status_code == 200
        # And staff cannot turn it off again.
        assert self.client.post(reverse("two_factor:disable"))["Location"] == INDEX
        assert TOTPDevice.objects.filter(user=self.sam, confirmed_at__isnull=False).exists()

    def test_staff_without_a_device_can_still_log_out(self):
        TOTPDevice.objects.filter(user=self.sam).delete()
        self.log_in_verified(self.sam)
        response = self.client.post(reverse("accounts:logout"))
        assert response["Location"] == LOGIN
        assert "_auth_user_id" not in self.client.session

    def test_an_account_requiring_two_factor_sends_its_members_to_enrolment_and_no_one_else(self):
        Account.objects.filter(pk=self.acme.pk).update(require_two_factor=True)
        acme_dashboard = reverse("dashboard", kwargs={"account_id": self.acme.public_id})
        for member in (self.alice, self.bob, self.vic):
            self.log_in_verified(member)
            assert self.client.get(acme_dashboard)["Location"] == INDEX, member
        self.log_in_verified(self.charlie)
        assert self.client.get(reverse("dashboard", kwargs={"account_id": self.globex.public_id})).status_code == 200
        # A member of both is bound by the stricter one, whichever account they open.
        Membership.objects.create(account=self.globex, user=self.bob, role=Role.VIEWER)
        self.log_in_verified(self.bob)
        assert self.client.get(reverse("dashboard", kwargs={"account_id": self.globex.public_id}))["Location"] == INDEX
        # An enrolled member goes where they asked.
        enrol(self.vic)
        self.log_in_verified(self.vic)
        assert self.client.get(acme_dashboard).status_code == 200

    def test_a_member_of_an_account_requiring_it_cannot_turn_it_off(self):
        enrol(self.bob)
        Account.objects.filter(pk=self.acme.pk).update(require_two_factor=True)
        self.log_in_verified(self.bob)
        response = self.client.post(reverse("two_factor:disable"), follow=True)
        assert "Acme requires two-factor authentication" in response.content.decode()
        assert TOTPDevice.objects.filter(user=self.bob).exists()

    def test_a_user_who_is_not_required_turns_it_off_after_reauthentication(self):
        enrol(self.charlie)
        self.log_in_verified(self.charlie, verified_seconds_ago=3600)
        assert self.client.post(reverse("two_factor:disable"))["Location"].startswith(REAUTH)
        assert TOTPDevice.objects.filter(user=self.charlie).exists()
        self.log_in_verified(self.charlie)
        assert self.client.post(reverse("two_factor:disable"))["Location"] == INDEX
        assert not TOTPDevice.objects.filter(user=self.charlie).exists()
        assert not RecoveryCode.objects.filter(user=self.charlie).exists()


class AccountSecurityPageTests(TwoFactorTestCase):
    def url(self, account: Account | None = None) -> str:
        return reverse("account_settings:security", kwargs={"account_id": (account or self.acme).public_id})

    def test_the_owner_turns_the_requirement_on_and_off(self):
        self.log_in_verified(self.alice)
        page = self.client.get(self.url())
        assert page.status_code == 200
        assert "3 members have not set it up yet" in page.content.decode()
        assert outline(page).inline_code == []
        with self.assertLogs("bluespark.security", level="INFO") as logs:
            response = self.client.post(self.url(), {"require_two_factor": "on"})
        assert response["Location"] == self.url()
        self.acme.refresh_from_db()
        assert self.acme.require_two_factor
        (record,) = [r for r in logs.records if r.getMessage() == "two_factor_requirement_changed"]
        assert (record.account, record.user, record.required) == (self.acme.public_id, self.alice.public_id, True)
        # Alice has no device herself: she is sent to enrol, and can come back once she has.
        assert self.client.get(self.url())["Location"] == INDEX
        enrol(self.alice)
        self.client.post(self.url(), {})
        self.acme.refresh_from_db()
        assert not self.acme.require_two_factor

    def test_changing_it_needs_a_recent_reauthentication(self):
        self.log_in_verified(self.alice, verified_seconds_ago=3600)
        assert self.client.get(self.url()).status_code == 200
        response = self.client.post(self.url(), {"require_two_factor": "on"})
        assert response["Location"].startswith(REAUTH)
        self.acme.refresh_from_db()
        assert not self.acme.require_two_factor

    def test_only_owners_see_and_change_it(self):
        Membership.objects.filter(account=self.acme, user=self.bob).update(role=Role.ADMIN)
        for user in (self.bob, self.vic):
            self.log_in_verified(user)
            assert self.client.get(self.url()).status_code == 403
            assert self.client.post(self.url(), {"require_two_factor": "on"}).status_code == 403
            dashboard = self.client.get(reverse("dashboard", kwargs={"account_id": self.acme.public_id}))
            assert self.url() not in outline(dashboard).links
        self.log_in_verified(self.charlie)
        assert self.client.get(self.url()).status_code == 404
        assert self.client.post(self.url(), {"require_two_factor": "on"}).status_code == 404
        self.acme.refresh_from_db()
        assert not self.acme.require_two_factor

    def test_the_owner_finds_it_in_the_navigation(self):
        self.log_in_verified(self.alice)
        page = self.client.get(self.url())
        assert f'href="{self.url()}" aria-current="page"' in page.content.decode()


class ReauthenticationTests(TwoFactorTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.secret, self.recovery_codes = enrol(self.alice)
        self.next_url = reverse("two_factor:index")

    def confirm(self, **data):
        return self.client.post(REAUTH, {"next": self.next_url, **data})

    def test_an_enrolled_user_is_asked_for_a_code_as_well_as_the_password(self):
        self.log_in_verified(self.alice, verified_seconds_ago=3600)
        page = self.client.get(REAUTH)
        assert 'name="code"' in page.content.decode()
        assert "a code from your authenticator app" in page.content.decode()
        assert self.confirm(password=PASSWORD).status_code == 200
        assert self.confirm(password=PASSWORD, code="123456").status_code == 200
        assert self.client.session[VERIFIED_AT_KEY] < T0.timestamp() - 3000
        before = self.client.session.session_key
        response = self.confirm(password=PASSWORD, code=code_at(self.secret, T0))
        assert response["Location"] == self.next_url
        assert self.client.session[VERIFIED_AT_KEY] == T0.timestamp()
        assert self.client.session.session_key != before

    def test_users_without_a_device_are_asked_for_the_password_only(self):
        self.log_in_verified(self.bob, verified_seconds_ago=3600)
        assert 'name="code"' not in self.client.get(REAUTH).content.decode()
        assert self.confirm(password=PASSWORD)["Location"] == self.next_url

    def test_the_code_is_not_checked_or_spent_after_a_wrong_password(self):
        self.log_in_verified(self.alice, verified_seconds_ago=3600)
        response = self.confirm(password="not it at all", code=code_at(self.secret, T0))
        assert response.status_code == 200 and "That is not your password" in response.content.decode()
        assert TOTPDevice.objects.get(user=self.alice).last_used_step is None
        assert self.confirm(password=PASSWORD, code=code_at(self.secret, T0)).status_code == 302

    def test_the_login_code_cannot_be_replayed_to_reauthenticate(self):
        code = code_at(self.secret, T0)
        self.log_in_with_code(self.secret, T0)
        session = self.client.session
        session[VERIFIED_AT_KEY] = 0
        session.save()
        assert self.confirm(password=PASSWORD, code=code).status_code == 200
        assert self.client.session[VERIFIED_AT_KEY] == 0

    def test_a_recovery_code_works_once_and_wrong_codes_share_the_login_throttle(self):
        self.log_in_verified(self.alice, verified_seconds_ago=3600)
        assert self.confirm(password=PASSWORD, code=self.recovery_codes[0]).status_code == 302
        for _ in range(4):
            assert self.confirm(password=PASSWORD, code=self.recovery_codes[0]).status_code == 200
        self.client.logout()
        self.password_step()
        assert self.code_step("000000").status_code == 400  # the fifth wrong code
        assert self.code_step(code_at(self.secret, T0)).status_code == 429


class SecretsStayOutOfLogsTests(TwoFactorTestCase):
    def test_a_canary_secret_and_canary_codes_never_reach_a_log_or_an_error_page(self):
        self.log_in_verified(self.alice)
        self.client.post(SETUP)
        device = TOTPDevice.objects.get(user=self.alice)
        device.secret = CANARY_SECRET
        device.save()
        TOTPDevice.objects.create(user=self.bob, secret=CANARY_SECRET, confirmed_at=timezone.now())
        grouped = " ".join(CANARY_SECRET[i : i + 4] for i in range(0, 32, 4))
        self.client.raise_request_exception = False
        with captured_logs() as logs:
            # Enrolling: the page shows the secret to its owner (by design); wrong codes, then the lockout.
            assert grouped in self.client.get(SETUP).content.decode()
            for _ in range(5):
                assert self.client.post(CONFIRM, {"code": "000000", "secret": CANARY_SECRET}).status_code == 400
            assert self.client.post(CONFIRM, {"code": "000000"}).status_code == 429
            # Logging in and re-authenticating with the canary as the code, then with a right code.
            self.client.logout()
            self.password_step("bob@acme.test")
            assert self.code_step(CANARY_SECRET).status_code == 400
            assert self.code_step(code_at(CANARY_SECRET, T0)).status_code == 302
            refused = self.client.post(REAUTH, {"password": PASSWORD, "code": CANARY_SECRET})
            assert refused.status_code == 200 and "not right" in refused.content.decode()
            # Requests that cannot count a code against the limit (Redis is gone): refused with a 503 page.
            # Had that failure been unexpected, Django's exception reporter would have described the frames
            # that hold the code (their variables included) to operators: built here from the same failure.
            reports: list[str] = []

            def report(sender, request, **kwargs):
                reports.append(ExceptionReporter(request, *sys.exc_info()).get_traceback_html())

            got_request_exception.connect(report)
            with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
                reset_rate_limit_client()
                try:
                    broken_reauth = self.client.post(REAUTH, {"password": PASSWORD, "code": CANARY_SECRET})
                    self.client.logout()
                    assert self.password_step("bob@acme.test")["Location"] == VERIFY
                    broken_login = self.code_step(CANARY_SECRET)
                    self.log_in_verified(self.alice)
                    broken_enrolment = self.client.post(CONFIRM, {"code": "000000", "secret": CANARY_SECRET})
                    for check in (two_factor.verify_second_factor, two_factor.confirm_enrolment):
                        try:
                            check(
                                self.bob if check is two_factor.verify_second_factor else self.alice, code=CANARY_SECRET
                            )
                        except RateLimitUnavailable as error:
                            # From the product's frames on: this test's own frame holds the canary.
                            frames = error.__traceback__.tb_next
                            reports.append(ExceptionReporter(None, type(error), error, frames).get_traceback_html())
                finally:
                    got_request_exception.disconnect(report)
                    reset_rate_limit_client()
        assert [page.status_code for page in (broken_reauth, broken_login, broken_enrolment)] == [503, 503, 503]
        assert len(reports) == 2  # the two built above: no request ended in an unhandled error
        for page in [broken_reauth.content.decode(), broken_login.content.decode(), broken_enrolment.content.decode()]:
            assert CANARY_SECRET not in page and grouped not in page
        for html in reports:
            assert "RateLimitUnavailable" in html and "Local vars" in html  # a full report, frames and all
            assert CANARY_SECRET not in html and grouped not in html and PASSWORD not in html
        text = logs.getvalue()
        assert "two_factor_code_rejected" in text and "rate_limit_unavailable" in text
        assert "Internal Server Error" not in text
        for leak in (CANARY_SECRET, CANARY_SECRET.lower(), grouped, "otpauth://"):
            assert leak not in text, leak
