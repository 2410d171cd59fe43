"""The team: invitations, roles, removal, and the role x action matrix of every dashboard page."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import time_machine
from django.core import mail
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, Role
from accounts.reauth import VERIFIED_AT_KEY
from tests.accounts.test_dashboard_access import dashboard_routes
from tests.cast import CastTestCase, make_user


class TeamTestCase(CastTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.ada = make_user("ada@acme.test", full_name="Ada Admin")
        Membership.objects.create(account=cls.acme, user=cls.ada, role=Role.ADMIN)
        cls.dora = make_user("dora@example.test", full_name="Dora Newcomer")

    def login(self, user, *, verified: bool = True) -> None:
        self.client.force_login(user)
        session = self.client.session
        session[VERIFIED_AT_KEY] = time.time() - (0 if verified else 3600)
        session.save()

    def url(self, name: str, **kwargs) -> str:
        return reverse(f"account_settings:{name}", kwargs={"account_id": self.acme.public_id, **kwargs})

    def invite(self, email: str = "dora@example.test", role: str = Role.EDITOR):
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(self.url("team_invite"), {"email": email, "role": role})

    def role_of(self, user) -> str | None:
        membership = Membership.objects.filter(account=self.acme, user=user).first()
        return membership.role if membership else None


class InvitationTests(TeamTestCase):
    def invitation_path(self) -> str:
        match = re.search(r"https?://[^/\s]+(/accounts/invitations/[^\s]+/)", mail.outbox[-1].body)
        assert match, mail.outbox[-1].body
        return match.group(1)

    @override_settings(BASE_URL="https://app.bluespark.test", ALLOWED_HOSTS=["*"])
    def test_an_admin_invites_and_the_invited_person_joins_with_that_role(self):
        self.login(self.ada)
        assert self.invite(role=Role.VIEWER).status_code == 302
        assert mail.outbox[-1].to == ["dora@example.test"]
        assert "https://app.bluespark.test/accounts/invitations/" in mail.outbox[-1].body
        path = self.invitation_path()
        self.login(self.dora)
        assert self.client.get(path).status_code == 200
        response = self.client.post(path)
        assert response["Location"] == reverse("dashboard", kwargs={"account_id": self.acme.public_id})
        assert self.role_of(self.dora) == Role.VIEWER
        assert self.client.post(path).status_code == 400  # used up

    def test_only_the_invited_address_can_accept(self):
        self.login(self.ada)
        self.invite()
        path = self.invitation_path()
        self.login(self.charlie)
        response = self.client.post(path)
        assert response.status_code == 400 and "another email address" in response.content.decode()
        assert self.role_of(self.charlie) is None

    def test_an_expired_or_withdrawn_invitation_is_refused(self):
        self.login(self.ada)
        self.invite()
        expired = self.invitation_path()
        with time_machine.travel(timezone.now() + timedelta(days=8)):
            self.login(self.dora)
            assert self.client.post(expired).status_code == 400
        self.login(self.ada)
        self.invite("eve@example.test")
        invitation = self.client.get(self.url("team")).context["invitations"][0]
        self.client.post(self.url("team_withdraw", invitation_id=invitation.public_id))
        eve = make_user("eve@example.test")
        self.login(eve)
        assert self.client.post(self.invitation_path()).status_code == 400
        assert self.role_of(eve) is None

    def test_a_tampered_link_is_refused(self):
        self.login(self.dora)
        assert self.client.get("/accounts/invitations/not-a-real-token/").status_code == 400

    def test_a_member_cannot_be_invited_twice_and_admins_cannot_invite_owners(self):
        self.login(self.ada)
        response = self.invite("BOB@acme.test")
        assert response.status_code == 400 and "already a member" in response.content.decode()
        response = self.invite(role=Role.OWNER)
        assert response.status_code == 400 and "Only an owner" in response.content.decode()

    def test_inviting_needs_a_recent_password_check(self):
        self.login(self.ada, verified=False)
        response = self.invite()
        assert response["Location"].startswith(reverse("reauthenticate"))
        assert not mail.outbox


class RoleAndRemovalTests(TeamTestCase):
    def test_an_admin_changes_an_editors_role(self):
        self.login(self.ada)
        self.client.post(self.url("team_role", user_id=self.bob.public_id), {"role": Role.VIEWER})
        assert self.role_of(self.bob) == Role.VIEWER

    def test_changing_roles_needs_a_recent_password_check(self):
        self.login(self.ada, verified=False)
        response = self.client.post(self.url("team_role", user_id=self.bob.public_id), {"role": Role.VIEWER})
        assert response["Location"].startswith(reverse("reauthenticate"))
        assert self.role_of(self.bob) == Role.EDITOR

    def test_the_last_owner_can_be_neither_demoted_nor_removed(self):
        self.login(self.alice)
        self.client.post(self.url("team_role", user_id=self.alice.public_id), {"role": Role.ADMIN})
        self.client.post(self.url("team_remove", user_id=self.alice.public_id))
        assert self.role_of(self.alice) == Role.OWNER
        self.client.post(self.url("team_role", user_id=self.bob.public_id), {"role": Role.OWNER})
        self.client.post(self.url("team_role", user_id=self.alice.public_id), {"role": Role.ADMIN})
        assert (self.role_of(self.alice), self.role_of(self.bob)) == (Role.ADMIN, Role.OWNER)

    def test_admins_cannot_touch_owners(self):
        self.login(self.ada)
        self.client.post(self.url("team_role", user_id=self.alice.public_id), {"role": Role.VIEWER})
        self.client.post(self.url("team_remove", user_id=self.alice.public_id))
        self.client.post(self.url("team_role", user_id=self.bob.public_id), {"role": Role.OWNER})
        assert (self.role_of(self.alice), self.role_of(self.bob)) == (Role.OWNER, Role.EDITOR)

    def test_a_removed_member_loses_access_at_once(self):
        self.login(self.ada)
        self.client.post(self.url("team_remove", user_id=self.bob.public_id))
        self.login(self.bob)
        assert self.client.get(reverse("dashboard", kwargs={"account_id": self.acme.public_id})).status_code == 404

    def test_a_change_to_your_own_role_rotates_your_session_key(self):
        self.login(self.alice)
        self.client.post(self.url("team_role", user_id=self.bob.public_id), {"role": Role.OWNER})
        before = self.client.session.session_key
        self.client.post(self.url("team_role", user_id=self.alice.public_id), {"role": Role.ADMIN})
        assert self.role_of(self.alice) == Role.ADMIN
        assert self.client.session.session_key != before


class RoleMatrixTests(TeamTestCase):
    """Every dashboard page and action, for every role: allowed exactly from the role it declares."""

    def test_each_role_reaches_exactly_what_its_rank_allows(self):
        from tests.accounts.test_dashboard_access import DashboardAccessTests

        values = {
            "account_id": self.acme.public_id,
            "list_id": self.acme_list.public_id,
            "campaign_id": self.acme_campaign.public_id,
            "user_id": self.vic.public_id,
            "key_id": "key_" + "a" * 26,
            "invitation_id": "inv_" + "a" * 26,
            "grant_id": "grt_" + "a" * 26,
            "contact_id": "con_" + "a" * 26,
            "segment_id": "seg_" + "a" * 26,
            "import_id": "imp_" + "a" * 26,
        }
        assert DashboardAccessTests  # the walker shared with the access tests
        checked = 0
        for user, role in (
            (self.alice, Role.OWNER),
            (self.ada, Role.ADMIN),
            (self.bob, Role.EDITOR),
            (self.vic, Role.VIEWER),
        ):
            self.login(user)
            for name, view, kwargs in dashboard_routes():
                url = reverse(name, kwargs={key: values[key] for key in kwargs})
                allowed = Role(role).includes(view.required_role)
                status = self.client.get(url).status_code
                if allowed:
                    assert status in (200, 404, 405), (role, name, status)
                else:
                    assert status == 403, (role, name, status)
                    assert self.client.post(url, {"role": Role.OWNER, "name": "x"}).status_code == 403, (role, name)
                checked += 1
        assert checked >= 4 * 12
