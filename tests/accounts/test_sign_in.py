import re
from datetime import UTC, datetime, timedelta

import time_machine
from axes.models import AccessAttempt
from django.conf import settings
from django.urls import reverse

from accounts.models import user_email_index
from accounts.services import reset_password
from accounts.tokens import password_reset_tokens
from tests.cast import PASSWORD, CastTestCase

LOGIN = reverse("accounts:login")
T0 = datetime(2030, 3, 4, 10, 0, tzinfo=UTC)


def strip_csrf(html: str) -> str:
    return re.sub(r'value="[^"]{20,}"', 'value=""', re.sub(r'"X-CSRFToken": "[^"]+"', "", html))


class LoginTests(CastTestCase):
    def login(self, username: str, password: str, **extra):
        return self.client.post(LOGIN, {"username": username, "password": password}, **extra)

    def test_a_member_logs_in_and_lands_on_their_account(self):
        response = self.login("alice@acme.test", PASSWORD)
        assert response.status_code == 302
        response = self.client.get(response["Location"])
        assert response["Location"] == reverse("dashboard", kwargs={"account_id": self.acme.public_id})

    def test_the_email_is_matched_whatever_its_case_or_spacing(self):
        assert self.login("  ALICE@Acme.Test ", PASSWORD).status_code == 302

    def test_the_session_key_changes_at_login(self):
        session = self.client.session
        session["probe"] = "before"
        session.save()
        before = session.session_key
        self.login("alice@acme.test", PASSWORD)
        assert self.client.session.session_key != before
        assert self.client.session["_auth_user_id"] == str(self.alice.pk)

    def test_passwords_are_stored_with_argon2id_over_the_keyring_pepper(self):
        self.alice.refresh_from_db()
        assert re.match(r"pargon2\$pep_\w+\$argon2id\$v=19\$", self.alice.password)

    def test_unknown_email_and_wrong_password_get_the_same_answer(self):
        unknown = self.login("nobody@acme.test", PASSWORD)
        wrong = self.login("alice@acme.test", "not the password at all")
        assert unknown.status_code == wrong.status_code == 200
        assert strip_csrf(unknown.content.decode()) == strip_csrf(wrong.content.decode()).replace(
            "alice@acme.test", "nobody@acme.test"
        )

    def test_an_inactive_user_gets_the_same_answer_as_a_wrong_password(self):
        self.bob.is_active = False
        self.bob.save(update_fields=["is_active"])
        inactive = self.login("bob@acme.test", PASSWORD)
        wrong = self.login("bob@acme.test", "not the password at all")
        assert strip_csrf(inactive.content.decode()) == strip_csrf(wrong.content.decode())

    def test_logout_needs_a_post(self):
        self.client.force_login(self.alice)
        assert self.client.get(reverse("accounts:logout")).status_code == 405
        assert self.client.post(reverse("accounts:logout")).status_code == 302
        assert "_auth_user_id" not in self.client.session

    def test_an_open_redirect_after_login_is_refused(self):
        response = self.client.post(
            LOGIN + "?next=https://evil.example/", {"username": "alice@acme.test", "password": PASSWORD}
        )
        assert response.status_code == 302
        assert "evil.example" not in response["Location"]


class LockoutTests(CastTestCase):
    def fail(self, username: str, ip: str = "203.0.113.7"):
        return self.client.post(LOGIN, {"username": username, "password": "wrong wrong wrong"}, REMOTE_ADDR=ip)

    def test_the_username_is_locked_after_repeated_failures_even_with_the_right_password(self):
        for attempt in range(settings.AXES_FAILURE_LIMIT):
            self.fail("alice@acme.test", ip=f"203.0.113.{attempt + 1}")
        response = self.client.post(
            LOGIN, {"username": "alice@acme.test", "password": PASSWORD}, REMOTE_ADDR="198.51.100.9"
        )
        assert response.status_code == 429
        assert "_auth_user_id" not in self.client.session

    def test_variants_of_one_email_share_one_counter(self):
        variants = ["alice@acme.test", "ALICE@acme.test", " Alice@Acme.Test", "alice@ACME.TEST ", "aLiCe@acme.test"]
        for attempt, variant in enumerate(variants[: settings.AXES_FAILURE_LIMIT]):
            self.fail(variant, ip=f"203.0.113.{attempt + 1}")
        response = self.client.post(
            LOGIN, {"username": "alice@acme.test", "password": PASSWORD}, REMOTE_ADDR="198.51.100.9"
        )
        assert response.status_code == 429
        # Axes keeps a keyed digest of the address, never the address itself.
        assert set(AccessAttempt.objects.values_list("username", flat=True)) == {
            user_email_index("alice@acme.test").hex()
        }

    def test_one_address_guessing_many_usernames_is_locked(self):
        for attempt in range(settings.AXES_FAILURE_LIMIT):
            self.fail(f"guess{attempt}@acme.test", ip="203.0.113.50")
        response = self.client.post(
            LOGIN, {"username": "bob@acme.test", "password": PASSWORD}, REMOTE_ADDR="203.0.113.50"
        )
        assert response.status_code == 429

    def test_a_successful_login_clears_the_users_failures_from_every_address(self):
        for attempt in range(settings.AXES_FAILURE_LIMIT - 1):
            self.fail("vic@acme.test", ip=f"203.0.113.{attempt + 1}")
        ok = self.client.post(LOGIN, {"username": "vic@acme.test", "password": PASSWORD}, REMOTE_ADDR="198.51.100.9")
        assert ok.status_code == 302
        vic = user_email_index("vic@acme.test").hex()
        assert not AccessAttempt.objects.filter(username=vic, failures_since_start__gt=0).exists()

    def test_failures_below_the_limit_do_not_lock_and_success_resets_them(self):
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            self.fail("vic@acme.test")
        ok = self.client.post(LOGIN, {"username": "vic@acme.test", "password": PASSWORD}, REMOTE_ADDR="203.0.113.7")
        assert ok.status_code == 302
        assert not AccessAttempt.objects.filter(failures_since_start__gt=0).exists()


class LockoutEventTests(CastTestCase):
    """Lockouts and their end are security events that name the user by public id, never by address."""

    def setUp(self) -> None:
        traveller = time_machine.travel(T0, tick=False)
        self.clock = traveller.start()
        self.addCleanup(traveller.stop)

    def fail(self, username: str, ip: str):
        return self.client.post(LOGIN, {"username": username, "password": "wrong wrong wrong"}, REMOTE_ADDR=ip)

    def events(self, logs) -> list[tuple[str, dict]]:
        fields = ("locked_by", "user", "ip", "reason")
        return [
            (record.getMessage(), {name: getattr(record, name) for name in fields if hasattr(record, name)})
            for record in logs.records
            if record.getMessage().startswith("login_lockout")
        ]

    def test_a_locked_username_is_one_event_with_its_end_and_the_end_is_recorded_at_the_next_attempt(self):
        with self.assertLogs("bluespark.security", level="INFO") as logs:
            for attempt in range(settings.AXES_FAILURE_LIMIT):
                self.fail("alice@acme.test", ip=f"203.0.113.{attempt + 1}")
            # Refused while locked: no second "started".
            assert self.fail("alice@acme.test", ip="198.51.100.9").status_code == 429
            started = [r for r in logs.records if r.getMessage() == "login_lockout_started"]
            assert len(started) == 1
            assert started[0].locked_by == "username" and started[0].user == self.alice.public_id
            ends_at = datetime.fromisoformat(started[0].locked_until)
            assert ends_at == T0 + settings.AXES_COOLOFF_TIME
            self.clock.move_to(ends_at + timedelta(seconds=1))
            ok = self.client.post(
                LOGIN, {"username": "alice@acme.test", "password": PASSWORD}, REMOTE_ADDR="198.51.100.9"
            )
            assert ok.status_code == 302
        assert self.events(logs) == [
            ("login_lockout_started", {"locked_by": "username", "user": self.alice.public_id, "ip": None}),
            (
                "login_lockout_ended",
                {"locked_by": "username", "user": self.alice.public_id, "ip": None, "reason": "expired"},
            ),
        ]
        assert "alice@acme.test" not in " ".join(str(vars(record)) for record in logs.records)

    def test_an_address_guessing_many_usernames_is_locked_by_address(self):
        with self.assertLogs("bluespark.security", level="INFO") as logs:
            for attempt in range(settings.AXES_FAILURE_LIMIT + 2):
                self.fail(f"guess{attempt}@acme.test", ip="203.0.113.50")
            self.clock.move_to(T0 + settings.AXES_COOLOFF_TIME + timedelta(minutes=1))
            assert self.fail("bob@acme.test", ip="203.0.113.50").status_code == 200
        assert self.events(logs) == [
            ("login_lockout_started", {"locked_by": "ip", "user": None, "ip": "203.0.113.50"}),
            ("login_lockout_ended", {"locked_by": "ip", "user": None, "ip": "203.0.113.50", "reason": "expired"}),
        ]

    def test_a_password_reset_ends_the_lockout_of_its_user(self):
        with self.assertLogs("bluespark.security", level="INFO") as logs:
            for attempt in range(settings.AXES_FAILURE_LIMIT):
                self.fail("vic@acme.test", ip=f"203.0.113.{attempt + 1}")
            token = password_reset_tokens.make_token(self.vic)
            reset_password(user_id=self.vic.public_id, token=token, new_password="a fresh and long passphrase 7")
        assert self.events(logs)[-1] == (
            "login_lockout_ended",
            {"locked_by": "username", "user": self.vic.public_id, "ip": None, "reason": "password_reset"},
        )
        assert (
            self.client.post(
                LOGIN, {"username": "vic@acme.test", "password": "a fresh and long passphrase 7"}
            ).status_code
            == 302
        )
