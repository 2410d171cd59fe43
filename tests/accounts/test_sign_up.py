import re

from django.core import mail
from django.test import override_settings
from django.urls import reverse

from accounts.models import Account, Membership, Role, User
from tests.cast import CastTestCase

SIGN_UP = reverse("accounts:sign_up")
NEW_PASSWORD = "a brand new passphrase 9"


def activation_path(message) -> str:
    match = re.search(r"https?://[^/\s]+(/accounts/activate/[^\s]+/)", message.body)
    assert match, message.body
    return match.group(1)


class SignUpTests(CastTestCase):
    def sign_up(self, email: str, **extra):
        # The activation mail leaves once the sign-up transaction commits.
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(
                SIGN_UP,
                {"email": email, "full_name": "Dora", "account_name": "Dora's shop", "password": NEW_PASSWORD},
                **extra,
            )

    def test_sign_up_creates_an_inactive_owner_and_mails_an_activation_link(self):
        response = self.sign_up("dora@shop.test")
        assert response["Location"] == reverse("accounts:sign_up_sent")
        dora = User.objects.with_email("dora@shop.test").get()
        assert not dora.is_active
        membership = Membership.objects.get(user=dora)
        assert (membership.account.name, membership.role) == ("Dora's shop", Role.OWNER)
        assert [m.to for m in mail.outbox] == [["dora@shop.test"]]

    def test_the_activation_link_needs_a_post_then_logs_in_and_works_once(self):
        self.sign_up("dora@shop.test")
        path = activation_path(mail.outbox[0])
        assert self.client.get(path).status_code == 200
        assert not User.objects.with_email("dora@shop.test").get().is_active
        response = self.client.post(path)
        assert response.status_code == 302
        assert User.objects.with_email("dora@shop.test").get().is_active
        assert self.client.session["_auth_user_id"]
        self.client.logout()
        assert self.client.post(path).status_code == 400

    def test_a_tampered_activation_link_is_refused(self):
        self.sign_up("dora@shop.test")
        path = activation_path(mail.outbox[0])
        assert self.client.post(path[:-3] + "zz/").status_code == 400
        assert not User.objects.with_email("dora@shop.test").get().is_active

    def test_a_registered_email_gets_the_same_response_and_a_notice_instead(self):
        known = self.sign_up("ALICE@acme.test")
        unknown = self.sign_up("dora@shop.test")
        assert known.status_code == unknown.status_code == 302
        assert known["Location"] == unknown["Location"]
        assert Account.objects.filter(name="Dora's shop").count() == 1
        notice, activation = mail.outbox
        assert notice.to == ["alice@acme.test"] and "/activate/" not in notice.body
        assert "/activate/" in activation.body

    @override_settings(ALLOWED_HOSTS=["*"], BASE_URL="https://app.bluespark.test")
    def test_links_come_from_the_configured_base_url_never_the_host_header(self):
        self.sign_up("dora@shop.test", HTTP_HOST="evil.example")
        assert "https://app.bluespark.test/accounts/activate/" in mail.outbox[0].body
        assert "evil.example" not in mail.outbox[0].body

    def test_a_weak_password_is_refused_with_a_message(self):
        response = self.client.post(
            SIGN_UP, {"email": "dora@shop.test", "account_name": "Shop", "password": "password123"}
        )
        assert response.status_code == 200
        assert response.context["form"].errors["password"]
        assert not User.objects.with_email("dora@shop.test").exists()

    def test_a_signed_in_user_is_sent_home(self):
        self.client.force_login(self.alice)
        assert self.client.get(SIGN_UP)["Location"] == reverse("accounts:home")
