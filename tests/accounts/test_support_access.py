"""Support access: grants, the only staff door into an account, and everything it may not do."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import time_machine
from django.core import mail
from django.urls import reverse

from accounts.models import Membership, Role, SupportGrant, SupportSession
from accounts.reauth import VERIFIED_AT_KEY
from accounts.support import grant_support_access, withdraw_support_access
from accounts.support_middleware import SUPPORT_SESSION_KEY
from audit.models import AuditEvent
from campaigns.models import Campaign
from tests.accounts.test_dashboard_access import dashboard_routes
from tests.cast import CastTestCase, make_user

T0 = datetime(2030, 6, 3, 9, 0, tzinfo=UTC)
BANNER = 'class="support-banner"'


class SupportTestCase(CastTestCase):
    def setUp(self) -> None:
        traveller = time_machine.travel(T0, tick=False)
        self.clock = traveller.start()
        self.addCleanup(traveller.stop)

    def login(self, user, *, verified: bool = True) -> None:
        self.client.force_login(user)
        session = self.client.session
        session[VERIFIED_AT_KEY] = time.time() - (0 if verified else 3600)
        session.save()

    def grant(self, account=None, *, access=SupportGrant.Access.READ_WRITE, days=1) -> SupportGrant:
        account = account or self.acme
        owner = self.alice if account == self.acme else self.charlie
        return grant_support_access(account, access=access, days=days, ticket="T-1234", granted_by=owner)

    def start(self, account=None, *, acting_as=None, reason="Customer reports broken campaign preview", **extra):
        account = account or self.acme
        data = {"acting_as": (acting_as or self.bob).public_id, "reason": reason, "ticket": "T-1234", **extra}
        return self.client.post(reverse("staff:start_session", kwargs={"target_account": account.public_id}), data)

    def refusals(self, account=None) -> list[str]:
        events = AuditEvent.objects.filter(
            account_id=(account or self.acme).public_id, action="support.session_refused"
        ).order_by("sequence")
        return [event.data["reason"] for event in events]

    def events(self, action: str) -> list[AuditEvent]:
        return list(AuditEvent.objects.filter(action=action).order_by("chain", "sequence"))

    def dashboard(self, account=None) -> str:
        return reverse("dashboard", kwargs={"account_id": (account or self.acme).public_id})


class GrantTests(SupportTestCase):
    def test_an_admin_grants_and_withdraws_access_and_both_are_in_the_trail(self):
        self.login(self.alice)
        url = reverse("account_settings:support_grant", kwargs={"account_id": self.acme.public_id})
        response = self.client.post(url, {"access": "read_only", "days": "3", "ticket": "T-77"})
        assert response.status_code == 302
        grant = SupportGrant.objects_unscoped_dangerous.get(account=self.acme)
        assert (grant.access, grant.expires_at, grant.ticket) == ("read_only", T0 + timedelta(days=3), "T-77")
        withdraw = reverse(
            "account_settings:support_withdraw", kwargs={"account_id": self.acme.public_id, "grant_id": grant.public_id}
        )
        assert self.client.post(withdraw).status_code == 302
        assert [e.action for e in AuditEvent.objects.filter(account_id=self.acme.public_id).order_by("sequence")] == [
            "support.grant_created",
            "support.grant_withdrawn",
        ]

    def test_granting_needs_a_recent_password_check_and_an_admin(self):
        url = reverse("account_settings:support_grant", kwargs={"account_id": self.acme.public_id})
        self.login(self.alice, verified=False)
        assert self.client.post(url, {"access": "read_only", "days": "3"})["Location"].startswith(
            reverse("reauthenticate")
        )
        self.login(self.bob)
        assert self.client.post(url, {"access": "read_only", "days": "3"}).status_code == 403
        assert not SupportGrant.objects_unscoped_dangerous.exists()

    def test_a_duration_outside_the_offered_ones_is_refused(self):
        self.login(self.alice)
        url = reverse("account_settings:support_grant", kwargs={"account_id": self.acme.public_id})
        assert self.client.post(url, {"access": "read_write", "days": "365"}).status_code == 400


class RefusedStartTests(SupportTestCase):
    def test_no_grant_is_refused_and_recorded(self):
        self.login(self.sam)
        response = self.start()
        assert response.status_code == 403
        assert "not granted support access" in response.content.decode()
        assert self.refusals() == ["no_grant"]
        assert SUPPORT_SESSION_KEY not in self.client.session

    def test_an_expired_grant_is_refused(self):
        self.grant(days=1)
        self.clock.move_to(T0 + timedelta(days=1, seconds=1))
        self.login(self.sam)
        assert self.start().status_code == 403
        assert self.refusals() == ["no_grant"]

    def test_a_withdrawn_grant_is_refused(self):
        grant = self.grant()
        withdraw_support_access(self.acme, grant, by=self.alice)
        self.login(self.sam)
        assert self.start().status_code == 403
        assert self.refusals() == ["no_grant"]

    def test_another_accounts_grant_does_not_open_this_one(self):
        self.grant(self.globex)
        self.login(self.sam)
        assert self.start(self.acme).status_code == 403
        assert self.refusals(self.acme) == ["no_grant"]
        # And a Globex member cannot be acted as in Acme.
        self.grant(self.acme)
        assert self.start(self.acme, acting_as=self.charlie).status_code == 403
        assert self.refusals(self.acme) == ["no_grant", "not_a_member"]

    def test_support_never_acts_as_a_staff_member(self):
        other_staff = make_user("sue@bluespark.test", full_name="Sue Support", is_staff=True)
        Membership.objects.create(account=self.acme, user=other_staff, role=Role.ADMIN)
        self.grant()
        self.login(self.sam)
        assert self.start(acting_as=other_staff).status_code == 403
        assert self.refusals() == ["staff_target"]
        page = self.client.get(reverse("staff:account", kwargs={"target_account": self.acme.public_id}))
        assert other_staff.public_id not in page.content.decode()  # not even offered

    def test_a_get_never_starts_a_session(self):
        self.grant()
        self.login(self.sam)
        response = self.client.get(reverse("staff:start_session", kwargs={"target_account": self.acme.public_id}))
        assert response.status_code == 405
        assert self.refusals() == ["get_request"]
        assert not SupportSession.objects_unscoped_dangerous.exists()

    def test_a_member_who_is_not_staff_finds_no_console_and_is_recorded(self):
        self.grant()
        self.login(self.alice)
        assert self.client.get(reverse("staff:index")).status_code == 404
        assert self.start().status_code == 404
        assert self.refusals() == ["not_staff"]

    def test_staff_must_have_confirmed_their_password_and_code_recently(self):
        self.grant()
        self.login(self.sam, verified=False)
        response = self.start()
        target = reverse("staff:account", kwargs={"target_account": self.acme.public_id})
        assert response.status_code == 302 and response["Location"].startswith(reverse("reauthenticate"))
        assert target.replace("/", "%2F") in response["Location"]
        assert not SupportSession.objects_unscoped_dangerous.exists()

    def test_staff_without_a_session_reach_no_account(self):
        self.login(self.sam)
        assert self.client.get(self.dashboard()).status_code == 404


class SessionTests(SupportTestCase):
    def start_session(self, access=SupportGrant.Access.READ_WRITE) -> SupportSession:
        self.grant(access=access)
        self.login(self.sam)
        before = self.client.session.session_key
        response = self.start()
        assert response.status_code == 302 and response["Location"] == self.dashboard()
        assert self.client.session.session_key != before  # rotated at the start
        return SupportSession.objects_unscoped_dangerous.get()

    def test_the_start_is_recorded_with_both_people_and_the_owners_are_emailed(self):
        with self.captureOnCommitCallbacks(execute=True):
            session = self.start_session()
        (started,) = self.events("support.session_started")
        assert (started.actor_type, started.actor_id, started.acting_as_id) == (
            "staff",
            self.sam.public_id,
            self.bob.public_id,
        )
        assert started.support_session_id == session.public_id and started.account_id == self.acme.public_id
        (message,) = mail.outbox
        assert message.to == ["alice@acme.test"]
        assert "Sam Support" in message.body and "Customer reports broken campaign preview" in message.body
        assert session.expires_at == T0 + timedelta(minutes=60)

    def test_the_banner_is_on_every_html_page_of_the_session(self):
        self.start_session()
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
        pages = 0
        for name, _view, kwargs in dashboard_routes():
            response = self.client.get(reverse(name, kwargs={key: values[key] for key in kwargs}))
            # Pages: not redirects, nor the empty answer of a POST-only action to a GET.
            if response.get("Content-Type", "").startswith("text/html") and response.status_code not in (302, 405):
                assert BANNER in response.content.decode(), (name, response.status_code)
                assert "End support session" in response.content.decode()
                pages += 1
        assert pages >= 10
        # Refusal pages carry it too.
        refused = self.client.get(reverse("accounts:profile"))
        assert refused.status_code == 403 and BANNER in refused.content.decode()

    def test_a_write_in_a_read_write_session_names_both_people(self):
        self.start_session()
        url = reverse("campaigns:create", kwargs={"account_id": self.acme.public_id})
        response = self.client.post(url, {"name": "Fixed by support", "subject": "Hello"})
        assert response.status_code == 302
        assert Campaign.objects_unscoped_dangerous.filter(name="Fixed by support").exists()
        (write,) = self.events("support.write_made")
        assert (write.actor_id, write.acting_as_id, write.data["view"]) == (
            self.sam.public_id,
            self.bob.public_id,
            "campaigns:create",
        )

    def test_a_read_only_session_refuses_every_write_and_records_it(self):
        self.start_session(access=SupportGrant.Access.READ_ONLY)
        url = reverse("campaigns:create", kwargs={"account_id": self.acme.public_id})
        assert self.client.get(url).status_code == 200
        response = self.client.post(url, {"name": "Nope", "subject": "Hello"})
        assert response.status_code == 403 and "read-only" in response.content.decode()
        assert not Campaign.objects_unscoped_dangerous.filter(name="Nope").exists()
        (refused,) = self.events("support.write_refused")
        assert (refused.actor_id, refused.acting_as_id, refused.data) == (
            self.sam.public_id,
            self.bob.public_id,
            {"method": "POST", "view": "campaigns:create"},
        )

    def test_what_only_the_customer_may_do_is_refused_even_read_write(self):
        Membership.objects.filter(account=self.acme, user=self.bob).update(role=Role.OWNER)
        self.start_session()
        account = {"account_id": self.acme.public_id}
        for name, data in (
            ("account_settings:api_key_create", {"name": "mine", "scopes": ["contacts:read"]}),
            ("account_settings:delete", {"confirm_name": "Acme"}),
            ("account_settings:support_grant", {"access": "read_write", "days": "30"}),
            ("account_settings:team_invite", {"email": "x@example.test", "role": "owner"}),
            ("audit:export", {}),
        ):
            response = self.client.post(reverse(name, kwargs=account), data)
            assert response.status_code == 403, name
        for path in (
            reverse("accounts:password_change"),
            reverse("accounts:profile"),
            reverse("two_factor:index"),
            reverse("sessions:index"),
            reverse("reauthenticate"),
            reverse("staff:index"),
        ):
            assert self.client.get(path).status_code == 403, path
        assert len(self.events("support.action_refused")) == 5
        assert Membership.objects.filter(account=self.acme).count() == 3

    def test_the_access_log_names_both_people(self):
        session = self.start_session()
        with self.assertLogs("bluespark.access", level="INFO") as logs:
            self.client.get(self.dashboard())
        (line,) = logs.records
        assert (line.user, line.acting_as, line.support_session, line.account) == (
            self.sam.public_id,
            self.bob.public_id,
            session.public_id,
            self.acme.public_id,
        )

    def test_only_the_sessions_account_is_reachable(self):
        Membership.objects.create(account=self.globex, user=self.bob, role=Role.VIEWER)
        self.start_session()
        assert self.client.get(self.dashboard(self.globex)).status_code == 403
        page = self.client.get(self.dashboard()).content.decode()
        assert "Globex" not in page  # not in the account switcher either

    def test_ending_rotates_the_key_records_it_and_returns_to_the_console(self):
        session = self.start_session()
        before = self.client.session.session_key
        response = self.client.post(reverse("staff:end_session"))
        assert response.status_code == 302 and response["Location"] == reverse("staff:index")
        assert self.client.session.session_key != before
        assert SUPPORT_SESSION_KEY not in self.client.session
        session.refresh_from_db()
        assert session.end_reason == "ended"
        (ended,) = self.events("support.session_ended")
        assert (ended.actor_id, ended.acting_as_id, ended.data["reason"]) == (
            self.sam.public_id,
            self.bob.public_id,
            "ended",
        )
        assert self.client.get(self.dashboard()).status_code == 404  # staff again, with no membership

    def test_the_session_ends_when_its_time_is_up(self):
        self.start_session()
        self.clock.move_to(T0 + timedelta(minutes=61))
        response = self.client.get(self.dashboard())
        assert response.status_code == 302 and response["Location"] == reverse("staff:index")
        assert [e.data["reason"] for e in self.events("support.session_ended")] == ["expired"]

    def test_withdrawing_the_grant_ends_a_running_session(self):
        self.start_session()
        grant = SupportGrant.objects_unscoped_dangerous.get()
        withdraw_support_access(self.acme, grant, by=self.alice)
        assert self.client.get(self.dashboard())["Location"] == reverse("staff:index")
        assert [e.data["reason"] for e in self.events("support.session_ended")] == ["grant_withdrawn"]

    def test_logging_out_ends_the_session_first(self):
        self.start_session()
        self.client.post(reverse("accounts:logout"))
        assert [e.data["reason"] for e in self.events("support.session_ended")] == ["logout"]
        assert "_auth_user_id" not in self.client.session

    def test_owners_see_the_session_who_why_and_what_was_done(self):
        session = self.start_session()
        self.client.post(reverse("staff:end_session"))
        self.login(self.alice)
        page = self.client.get(reverse("account_settings:support", kwargs={"account_id": self.acme.public_id}))
        html = page.content.decode()
        assert "Sam Support" in html and "Customer reports broken campaign preview" in html
        trail = self.client.get(
            reverse("audit:index", kwargs={"account_id": self.acme.public_id}), {"support_session": session.public_id}
        )
        assert [row["event"].action for row in trail.context["rows"]] == [
            "support.session_ended",
            "support.session_started",
        ]


class BreakGlassTests(SupportTestCase):
    def test_without_a_grant_a_justification_opens_a_read_only_session_and_tells_the_owners(self):
        self.login(self.sam)
        with self.captureOnCommitCallbacks(execute=True):
            response = self.start(justification="Account is sending spam right now; abuse desk ticket A-9")
        assert response.status_code == 302
        session = SupportSession.objects_unscoped_dangerous.get()
        assert session.break_glass and session.is_read_only and session.grant is None
        (event,) = self.events("support.break_glass")
        assert (event.actor_id, event.acting_as_id, event.data["grant"]) == (
            self.sam.public_id,
            self.bob.public_id,
            None,
        )
        (message,) = mail.outbox
        assert "without a grant" in message.subject and "abuse desk ticket A-9" in message.body
        assert "break-glass" in self.client.get(self.dashboard()).content.decode()
