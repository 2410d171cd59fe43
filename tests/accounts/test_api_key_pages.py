"""The API keys pages: admins only, re-authentication before a key is made, the token shown once."""

from __future__ import annotations

import re
import time

from django.urls import reverse

from accounts.models import ApiKey, ApiScope
from accounts.reauth import VERIFIED_AT_KEY
from tests.cast import PASSWORD, CastTestCase


class ApiKeyPageTests(CastTestCase):
    def url(self, name: str, account=None, **kwargs) -> str:
        return reverse(f"account_settings:{name}", kwargs={"account_id": (account or self.acme).public_id, **kwargs})

    def login(self, user, *, verified_seconds_ago: float = 0) -> None:
        self.client.force_login(user)
        session = self.client.session
        session[VERIFIED_AT_KEY] = time.time() - verified_seconds_ago
        session.save()

    def create(self, **data):
        form = {"name": "CRM sync", "scopes": [ApiScope.CONTACTS_READ, ApiScope.CAMPAIGNS_READ], **data}
        return self.client.post(self.url("api_key_create"), form)

    def test_an_admin_creates_a_key_and_sees_the_token_once(self):
        self.login(self.alice)
        response = self.create()
        assert response.status_code == 200
        assert response["Cache-Control"].startswith("max-age=0") and "no-store" in response["Cache-Control"]
        token = re.search(r'value="(bsk_[^"]+)"', response.content.decode()).group(1)
        key = ApiKey.objects_unscoped_dangerous.get()
        assert token.startswith(f"bsk_{key.prefix}_")
        listing = self.client.get(self.url("api_keys")).content.decode()
        assert key.prefix in listing and token not in listing

    def test_the_token_works_against_the_api(self):
        self.login(self.alice)
        token = re.search(r'value="(bsk_[^"]+)"', self.create().content.decode()).group(1)
        response = self.client.get("/api/v1/campaigns/", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 200

    def test_creating_a_key_needs_a_recent_password_check(self):
        self.login(self.alice, verified_seconds_ago=3600)
        response = self.create()
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("reauthenticate"))
        assert not ApiKey.objects_unscoped_dangerous.exists()
        wrong = self.client.post(reverse("reauthenticate"), {"password": "not it at all", "next": self.url("api_keys")})
        assert wrong.status_code == 200 and "That is not your password" in wrong.content.decode()
        before = self.client.session.session_key
        confirmed = self.client.post(reverse("reauthenticate"), {"password": PASSWORD, "next": self.url("api_keys")})
        assert confirmed["Location"] == self.url("api_keys")
        assert self.client.session.session_key != before
        assert self.create().status_code == 200

    def test_reauthentication_refuses_to_send_anyone_elsewhere(self):
        self.login(self.alice, verified_seconds_ago=3600)
        response = self.client.post(reverse("reauthenticate"), {"password": PASSWORD, "next": "https://evil.example/"})
        assert "evil.example" not in response["Location"]

    def test_an_admin_revokes_a_key(self):
        self.login(self.alice)
        self.create()
        key = ApiKey.objects_unscoped_dangerous.get()
        response = self.client.post(self.url("api_key_revoke", key_id=key.public_id))
        assert response.status_code == 302
        key.refresh_from_db()
        assert key.revoked_at is not None

    def test_editors_and_viewers_cannot_see_or_touch_keys(self):
        self.login(self.alice)
        self.create()
        key = ApiKey.objects_unscoped_dangerous.get()
        for user in (self.bob, self.vic):
            self.login(user)
            assert self.client.get(self.url("api_keys")).status_code == 403
            assert self.create().status_code == 403
            assert self.client.post(self.url("api_key_revoke", key_id=key.public_id)).status_code == 403
        key.refresh_from_db()
        assert key.revoked_at is None

    def test_another_accounts_owner_gets_404(self):
        self.login(self.alice)
        self.create()
        key = ApiKey.objects_unscoped_dangerous.get()
        self.login(self.charlie)
        assert self.client.get(self.url("api_keys")).status_code == 404
        assert self.client.post(self.url("api_key_revoke", key_id=key.public_id)).status_code == 404
        # Through his own account, Acme's key is as missing as a made-up one.
        assert self.client.post(self.url("api_key_revoke", self.globex, key_id=key.public_id)).status_code == 404

    def test_a_key_needs_a_name_and_a_scope(self):
        self.login(self.alice)
        response = self.create(name="", scopes=[])
        assert response.status_code == 400
        assert set(response.context["form"].errors) == {"name", "scopes"}
