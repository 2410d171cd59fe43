import re
from datetime import timedelta

import redis
import time_machine
from axes.models import AccessAttempt
from django.conf import settings
from django.core import mail
from django.core.cache import cache
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from accounts.models import UserSession, user_email_index
from tests.accounts.test_sign_in import strip_csrf
from tests.cast import PASSWORD, CastTestCase

LOGIN = reverse("accounts:login")
HOME = reverse("accounts:home")
RESET = reverse("accounts:password_reset")
NEW_PASSWORD = "a fresh and lengthy passphrase 7"


def reset_path(message) -> str:
    match = re.search(r"https?://[^/\s]+(/accounts/password-reset/usr_\w+/[^\s/]+/)", message.body)
    assert match, message.body
    return match.group(1)


class PasswordResetRequestTests(CastTestCase):
    def ask(self, email: str, ip: str = "203.0.113.7", **extra):
        # The mail leaves once the request's transaction commits.
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(RESET, {"email": email}, REMOTE_ADDR=ip, **extra)

    def test_the_login_page_links_to_the_reset_form(self):
        assert RESET in self.client.get(LOGIN).content.decode()
        assert self.client.get(RESET).status_code == 200

    def test_a_known_address_gets_a_link_and_the_same_page_as_an_unknown_one(self):
        known = self.ask("Alice@Acme.test ")
        unknown = self.ask("nobody@acme.test")
        assert known.status_code == unknown.status_code == 302
        assert known["Location"] == unknown["Location"] == reverse("accounts:password_reset_sent")
        known_page = self.client.get(known["Location"]).content.decode()
        unknown_page = self.client.get(unknown["Location"]).content.decode()
        assert strip_csrf(known_page) == strip_csrf(unknown_page)
        assert [m.to for m in mail.outbox] == [["alice@acme.test"]]
        assert "/accounts/password-reset/" + self.alice.public_id + "/" in mail.outbox[0].body

    def test_an_inactive_user_gets_no_mail_and_the_same_answer(self):
        self.bob.is_active = False
        self.bob.save(update_fields=["is_active"])
        inactive = self.ask("bob@acme.test")
        unknown = self.ask("nobody@acme.test")
        assert inactive.status_code == unknown.status_code == 302
        assert inactive["Location"] == unknown["Location"]
        assert mail.outbox == []

    @override_settings(ALLOWED_HOSTS=["*"], BASE_URL="https://app.bluespark.test")
    def test_the_link_comes_from_the_configured_base_url_never_the_host_header(self):
        self.ask("alice@acme.test", HTTP_HOST="evil.example")
        assert "https://app.bluespark.test/accounts/password-reset/" in mail.outbox[0].body
        assert "evil.example" not in mail.outbox[0].body

    def test_the_sixth_request_for_one_address_in_an_hour_is_refused(self):
        for attempt in range(5):
            assert self.ask("alice@acme.test", ip=f"203.0.113.{attempt + 1}").status_code == 302
        refused = self.ask("ALICE@acme.test", ip="198.51.100.9")
        assert refused.status_code == 429
        assert "Too many password reset requests" in refused.content.decode()
        assert len(mail.outbox) == 5

    def test_an_unknown_address_is_throttled_like_a_known_one(self):
        for _ in range(5):
            self.ask("nobody@acme.test")
        assert self.ask("nobody@acme.test", ip="198.51.100.9").status_code == 429

    def test_the_twenty_first_request_from_one_address_is_refused(self):
        for attempt in range(20):
            assert self.ask(f"someone{attempt}@acme.test").status_code == 302
        assert self.ask("alice@acme.test").status_code == 429
        assert mail.outbox == []
        assert self.ask("alice@acme.test", ip="198.51.100.9").status_code == 302

    def test_the_throttle_window_is_one_hour_in_redis(self):
        self.ask("alice@acme.test")
        key = cache.make_key(f"bluespark:attempts:password-reset:email:{user_email_index('alice@acme.test').hex()}")
        assert 3590 <= redis.Redis.from_url(settings.REDIS_URL).ttl(key) <= 3600
        # The counter is keyed by the blind index: the address itself is not in Redis.
        assert not redis.Redis.from_url(settings.REDIS_URL).keys("*alice@acme.test*")


class PasswordResetLinkTests(CastTestCase):
    def mail_link(self, email: str = "alice@acme.test") -> str:
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(RESET, {"email": email})
        return reset_path(mail.outbox[-1])

    def choose(self, path: str, password: str = NEW_PASSWORD, confirmation: str | None = None, client=None):
        client = client or self.client
        return client.post(path, {"new_password": password, "new_password_confirmation": confirmation or password})

    def can_log_in(self, password: str) -> bool:
        return Client().post(LOGIN, {"username": "alice@acme.test", "password": password}).status_code == 302

    def test_the_link_shows_a_form_and_sets_the_new_password(self):
        path = self.mail_link()
        page = self.client.get(path)
        assert page.status_code == 200
        assert page["Referrer-Policy"] == "no-referrer"
        assert "new_password_confirmation" in page.content.decode()
        response = self.choose(path)
        assert response["Location"] == reverse("accounts:password_reset_complete")
        assert "Log in" in self.client.get(response["Location"]).content.decode()
        assert self.can_log_in(NEW_PASSWORD)
        assert not self.can_log_in(PASSWORD)

    def test_the_link_works_once(self):
        path = self.mail_link()
        assert self.choose(path).status_code == 302
        assert self.client.get(path).status_code == 400
        again = self.choose(path, "yet another long passphrase 8")
        assert again.status_code == 400
        assert "invalid or has expired" in again.content.decode()
        assert self.can_log_in(NEW_PASSWORD)

    def test_a_link_checked_on_get_is_checked_again_on_post(self):
        path = self.mail_link()
        assert self.client.get(path).status_code == 200
        # The password changes elsewhere between showing the form and sending it.
        self.alice.set_password("changed in the meantime 77")
        self.alice.save(update_fields=["password"])
        assert self.choose(path).status_code == 400
        assert self.can_log_in("changed in the meantime 77")

    def test_a_tampered_token_is_refused(self):
        path = self.mail_link()
        tampered = path[:-3] + ("zz/" if not path.endswith("zz/") else "yy/")
        assert self.client.get(tampered).status_code == 400
        assert self.choose(tampered).status_code == 400
        assert self.can_log_in(PASSWORD)

    def test_a_link_for_another_user_is_refused(self):
        path = self.mail_link()
        other = path.replace(self.alice.public_id, self.bob.public_id)
        assert self.choose(other).status_code == 400

    def test_the_link_expires(self):
        path = self.mail_link()
        with time_machine.travel(timezone.now() + timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT - 60)):
            assert self.client.get(path).status_code == 200
        with time_machine.travel(timezone.now() + timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT + 60)):
            assert self.client.get(path).status_code == 400
            assert self.choose(path).status_code == 400
        assert self.can_log_in(PASSWORD)

    def test_a_common_password_is_refused_with_a_message(self):
        path = self.mail_link()
        response = self.choose(path, "qwerty123456")
        assert response.status_code == 200
        assert "too common" in " ".join(response.context["form"].errors["new_password"])
        assert self.can_log_in(PASSWORD)

    def test_a_short_password_is_refused_with_a_message(self):
        path = self.mail_link()
        response = self.choose(path, "Zq8!vw.k")
        assert response.status_code == 200
        assert "too short" in " ".join(response.context["form"].errors["new_password"])
        assert self.can_log_in(PASSWORD)

    def test_a_password_like_the_email_is_refused(self):
        response = self.choose(self.mail_link(), "alice@acme.test")
        assert "too similar" in " ".join(response.context["form"].errors["new_password"])

    def test_mismatched_passwords_are_refused(self):
        response = self.choose(self.mail_link(), NEW_PASSWORD, "something else entirely 5")
        assert response.context["form"].errors["new_password_confirmation"]
        assert self.can_log_in(PASSWORD)

    def test_a_reset_logs_out_every_other_session(self):
        other = Client()
        assert other.post(LOGIN, {"username": "alice@acme.test", "password": PASSWORD}).status_code == 302
        assert other.get(HOME)["Location"] == reverse("dashboard", kwargs={"account_id": self.acme.public_id})
        self.choose(self.mail_link())
        assert other.get(HOME)["Location"] == f"{LOGIN}?next={HOME}"
        assert "_auth_user_id" not in other.session
        assert not UserSession.objects.filter(user=self.alice).exists()

    def test_a_reset_clears_the_login_lockout(self):
        for attempt in range(settings.AXES_FAILURE_LIMIT):
            Client().post(
                LOGIN,
                {"username": "alice@acme.test", "password": "wrong wrong wrong"},
                REMOTE_ADDR=f"203.0.113.{attempt + 1}",
            )
        locked = Client().post(LOGIN, {"username": "alice@acme.test", "password": PASSWORD}, REMOTE_ADDR="198.51.100.9")
        assert locked.status_code == 429
        self.choose(self.mail_link())
        assert not AccessAttempt.objects.filter(username=user_email_index("alice@acme.test").hex()).exists()
        assert self.can_log_in(NEW_PASSWORD)

    def test_the_token_never_appears_in_a_redirect(self):
        path = self.mail_link()
        token = path.rstrip("/").rsplit("/", 1)[1]
        response = self.choose(path)
        assert token not in response["Location"]

    def test_the_access_log_never_holds_the_token(self):
        path = self.mail_link()
        token = path.rstrip("/").rsplit("/", 1)[1]
        with self.assertLogs("bluespark.access", "INFO") as logs:
            self.client.get(path)
            self.choose(path)
        paths = [record.path for record in logs.records]
        assert paths == [path.replace(token, "[redacted]")] * 2
