from django.core import mail
from django.test import Client, override_settings
from django.urls import reverse

from accounts.models import UserSession
from accounts.services import PASSWORD_CHANGE_ATTEMPTS_PER_USER
from accounts.sessions import SESSION_ID_KEY
from tests.cast import PASSWORD, CastTestCase

LOGIN = reverse("accounts:login")
HOME = reverse("accounts:home")
CHANGE = reverse("accounts:password_change")
NEW_PASSWORD = "a fresh and lengthy passphrase 7"


class PasswordChangeTests(CastTestCase):
    def setUp(self) -> None:
        super().setUp()
        assert self.client.post(LOGIN, {"username": "alice@acme.test", "password": PASSWORD}).status_code == 302

    def change(self, current: str = PASSWORD, new: str = NEW_PASSWORD, confirmation: str | None = None, **extra):
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(
                CHANGE,
                {
                    "current_password": current,
                    "new_password": new,
                    "new_password_confirmation": confirmation or new,
                },
                **extra,
            )

    def can_log_in(self, password: str) -> bool:
        return Client().post(LOGIN, {"username": "alice@acme.test", "password": password}).status_code == 302

    def is_signed_in(self, client: Client) -> bool:
        return client.get(HOME)["Location"] == reverse("dashboard", kwargs={"account_id": self.acme.public_id})

    def test_it_needs_a_signed_in_user(self):
        response = Client().get(CHANGE)
        assert response["Location"] == f"{LOGIN}?next={CHANGE}"

    def test_it_changes_the_password(self):
        assert self.client.get(CHANGE).status_code == 200
        response = self.change()
        assert response["Location"] == CHANGE
        assert "Your password was changed" in self.client.get(CHANGE).content.decode()
        assert self.can_log_in(NEW_PASSWORD)
        assert not self.can_log_in(PASSWORD)

    def test_it_keeps_this_session_under_a_new_key_and_logs_out_the_others(self):
        other = Client()
        assert other.post(LOGIN, {"username": "alice@acme.test", "password": PASSWORD}).status_code == 302
        before = self.client.session.session_key
        assert self.is_signed_in(other) and self.is_signed_in(self.client)
        self.change()
        assert self.client.session.session_key != before
        assert self.is_signed_in(self.client)
        assert other.get(HOME)["Location"] == f"{LOGIN}?next={HOME}"

    def test_only_this_session_stays_in_the_session_list(self):
        Client().post(LOGIN, {"username": "alice@acme.test", "password": PASSWORD})
        assert UserSession.objects.filter(user=self.alice).count() == 2
        self.change()
        listed = UserSession.objects.filter(user=self.alice).values_list("public_id", flat=True)
        assert list(listed) == [self.client.session[SESSION_ID_KEY]]

    def test_a_wrong_current_password_is_refused(self):
        response = self.change(current="not my password at all")
        assert response.status_code == 200
        assert response.context["form"].errors["current_password"] == ["That is not your current password."]
        assert mail.outbox == []
        assert self.can_log_in(PASSWORD)

    def test_guessing_the_current_password_is_throttled(self):
        for _ in range(PASSWORD_CHANGE_ATTEMPTS_PER_USER):
            assert self.change(current="not my password at all").status_code == 200
        refused = self.change()
        assert refused.status_code == 429
        assert "Too many attempts" in refused.content.decode()
        assert self.can_log_in(PASSWORD)

    def test_a_common_password_is_refused_with_a_message(self):
        response = self.change(new="qwerty123456")
        assert "too common" in " ".join(response.context["form"].errors["new_password"])
        assert self.can_log_in(PASSWORD)

    def test_a_short_password_is_refused_with_a_message(self):
        response = self.change(new="Zq8!vw.k")
        assert "too short" in " ".join(response.context["form"].errors["new_password"])
        assert self.can_log_in(PASSWORD)

    def test_mismatched_passwords_are_refused(self):
        response = self.change(confirmation="something else entirely 5")
        assert response.context["form"].errors["new_password_confirmation"]
        assert self.can_log_in(PASSWORD)

    @override_settings(ALLOWED_HOSTS=["*"], BASE_URL="https://app.bluespark.test")
    def test_the_user_is_told_by_email_without_a_link_that_changes_anything(self):
        assert self.change(HTTP_HOST="evil.example").status_code == 302
        [notice] = mail.outbox
        assert notice.to == ["alice@acme.test"]
        assert "password of your Bluespark account was just changed" in notice.body
        assert "https://app.bluespark.test/accounts/password-reset/\n" in notice.body
        assert "evil.example" not in notice.body
        assert "/accounts/password-reset/usr_" not in notice.body
