"""Customers read their own trail: the dashboard page, the CSV export and the API."""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime, timedelta

import time_machine
from django.urls import reverse

from accounts.models import ApiScope, Membership, Role
from accounts.reauth import VERIFIED_AT_KEY
from accounts.services import create_api_key
from accounts.tenancy import account_scope
from audit.context import AuditContext, bound_context
from audit.models import AuditEvent
from audit.services import record
from tests.cast import CastTestCase, make_user

T0 = datetime(2025, 5, 4, 12, 0, tzinfo=UTC)


class AuditTrailTestCase(CastTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.ada = make_user("ada@acme.test", full_name="Ada Admin")
        Membership.objects.create(account=cls.acme, user=cls.ada, role=Role.ADMIN)
        with time_machine.travel(T0, tick=False) as clock:
            with bound_context(AuditContext(user_id=cls.alice.public_id, ip="203.0.113.5")):
                record(
                    "member.role_changed",
                    account=cls.acme,
                    target=("user", cls.bob.public_id),
                    data={"old": "viewer", "new": "editor"},
                )
            clock.shift(timedelta(days=1))
            with bound_context(AuditContext(user_id=cls.ada.public_id)):
                record("api_key.created", account=cls.acme, target=("api_key", "key_aaaaaaaaaaaaaaaaaaaaaaaaaa"))
            clock.shift(timedelta(days=1))
            with bound_context(
                AuditContext(
                    user_id=cls.sam.public_id,
                    acting_as_id=cls.bob.public_id,
                    support_session_id="sup_bbbbbbbbbbbbbbbbbbbbbbbbbb",
                )
            ):
                record("support.session_started", account=cls.acme)
            with bound_context(AuditContext(user_id=cls.charlie.public_id)):
                record("api_key.created", account=cls.globex, target=("api_key", "key_globexglobexglobexglobexg"))

    def login(self, user, *, verified: bool = True) -> None:
        self.client.force_login(user)
        session = self.client.session
        session[VERIFIED_AT_KEY] = time.time() - (0 if verified else 3600)
        session.save()

    def url(self, name: str, account=None) -> str:
        return reverse(f"audit:{name}", kwargs={"account_id": (account or self.acme).public_id})


class AuditPageTests(AuditTrailTestCase):
    def test_owners_and_admins_read_their_accounts_trail_newest_first(self):
        for user in (self.alice, self.ada):
            self.login(user)
            response = self.client.get(self.url("index"))
            assert response.status_code == 200
            actions = [row["event"].action for row in response.context["rows"]]
            assert actions == ["support.session_started", "api_key.created", "member.role_changed"]
        html = response.content.decode()
        assert "key_globexglobexglobexglobexg" not in html
        # People are named at display time; staff are shown with the member they acted as.
        assert "Bluespark support" in html and "Sam Support" in html and "acting as Bob" in html
        assert "Alice Owner" in html and "203.0.113.5" in html

    def test_editors_viewers_and_other_accounts_are_refused(self):
        for user in (self.bob, self.vic):
            self.login(user)
            assert self.client.get(self.url("index")).status_code == 403
        self.login(self.charlie)
        assert self.client.get(self.url("index")).status_code == 404

    def test_filters_by_action_actor_and_dates(self):
        self.login(self.alice)
        by_action = self.client.get(self.url("index"), {"action": "api_key.created"}).context["rows"]
        assert [row["event"].target_id for row in by_action] == ["key_aaaaaaaaaaaaaaaaaaaaaaaaaa"]
        by_actor = self.client.get(self.url("index"), {"actor": self.alice.public_id}).context["rows"]
        assert [row["event"].action for row in by_actor] == ["member.role_changed"]
        day_two = (T0 + timedelta(days=1)).date().isoformat()
        by_date = self.client.get(self.url("index"), {"since": day_two, "until": day_two}).context["rows"]
        assert [row["event"].action for row in by_date] == ["api_key.created"]
        backwards = self.client.get(self.url("index"), {"since": day_two, "until": T0.date().isoformat()})
        assert backwards.status_code == 400 and "before the start date" in backwards.content.decode()
        unknown = self.client.get(self.url("index"), {"action": "no.such_action"})
        assert unknown.status_code == 400

    def test_pages_follow_each_other_without_gaps_or_repeats(self):
        for number in range(120):
            record("account.renamed", account=self.acme, data={"n": number})
        self.login(self.alice)
        seen, query, pages = [], {}, 0
        while True:
            response = self.client.get(self.url("index"), query)
            seen += [row["event"].pk for row in response.context["rows"]]
            pages += 1
            if not response.context["next_query"]:
                break
            query = dict(pair.split("=", 1) for pair in response.context["next_query"].split("&"))
        assert pages == 3
        assert seen == list(
            AuditEvent.objects.filter(account_id=self.acme.public_id)
            .order_by("-occurred_at", "-id")
            .values_list("pk", flat=True)
        )

    def test_admins_find_it_in_the_accounts_menu(self):
        self.login(self.ada)
        dashboard = self.client.get(reverse("dashboard", kwargs={"account_id": self.acme.public_id}))
        assert f'href="{self.url("index")}"' in dashboard.content.decode()


class AuditExportTests(AuditTrailTestCase):
    def test_export_needs_a_recent_password_check_and_a_post(self):
        self.login(self.alice, verified=False)
        response = self.client.post(self.url("export"))
        assert response.status_code == 302 and response["Location"].startswith(reverse("reauthenticate"))
        self.login(self.alice)
        confirm = self.client.get(self.url("export"), {"action": "api_key.created"})
        assert confirm.status_code == 200 and "Download CSV" in confirm.content.decode()
        assert not AuditEvent.objects.filter(action="audit.exported").exists()

    def test_the_csv_holds_the_filtered_trail_is_formula_safe_and_the_export_is_recorded(self):
        record("account.renamed", account=self.acme, target=("account", '=HYPERLINK("http://x")'))
        self.login(self.alice)
        with bound_context(AuditContext()):
            response = self.client.post(self.url("export"))
        assert response.status_code == 200
        assert response["Content-Type"] == "text/csv; charset=utf-8"
        assert response["Content-Disposition"].startswith(f'attachment; filename="audit-{self.acme.public_id}-')
        rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert [row["action"] for row in rows] == [
            "audit.exported",
            "account.renamed",
            "support.session_started",
            "api_key.created",
            "member.role_changed",
        ]
        assert rows[1]["target_id"] == '\'=HYPERLINK("http://x")'
        assert rows[2]["actor"].startswith("Sam Support") and rows[2]["acting_as"].startswith("Bob")
        assert not any("globex" in value for row in rows for value in row.values())
        exported = AuditEvent.objects.get(action="audit.exported")
        assert (exported.account_id, exported.actor_id) == (self.acme.public_id, self.alice.public_id)

    def test_a_filtered_export_says_which_filter_it_used(self):
        self.login(self.ada)
        response = self.client.post(self.url("export"), {"action": "member.role_changed"})
        rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert [row["action"] for row in rows] == ["member.role_changed"]
        assert AuditEvent.objects.get(action="audit.exported").data["action"] == "member.role_changed"

    def test_editors_cannot_export(self):
        self.login(self.bob)
        assert self.client.post(self.url("export")).status_code == 403
        assert not AuditEvent.objects.filter(action="audit.exported").exists()


class AuditApiTests(AuditTrailTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        with account_scope(cls.acme):
            cls.reader = create_api_key(cls.acme, name="siem", scopes=[ApiScope.AUDIT_READ], created_by=cls.alice)
            cls.other = create_api_key(cls.acme, name="crm", scopes=[ApiScope.CONTACTS_READ], created_by=cls.alice)

    def get(self, key=None, **params):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {key.token}"} if key else {}
        return self.client.get(reverse("api-audit-event-list"), params, **headers)

    def test_a_key_with_audit_read_lists_its_accounts_events_with_cursors(self):
        # Only the cast's events: creating the keys above is in the trail too, but later.
        response = self.get(self.reader, limit=2, until=(T0 + timedelta(days=3)).isoformat())
        assert response.status_code == 200
        body = response.json()
        assert [item["action"] for item in body["results"]] == ["support.session_started", "api_key.created"]
        staff = body["results"][0]["actor"]
        assert staff == {
            "type": "staff",
            "user": self.sam.public_id,
            "acting_as": self.bob.public_id,
            "support_session": "sup_bbbbbbbbbbbbbbbbbbbbbbbbbb",
            "api_key": None,
        }
        following = self.client.get(body["next"], HTTP_AUTHORIZATION=f"Bearer {self.reader.token}").json()
        assert [item["action"] for item in following["results"]] == ["member.role_changed"]
        assert following["next"] is None

    def test_filters_and_a_clear_error_for_a_bad_one(self):
        rows = self.get(self.reader, action="member.role_changed").json()["results"]
        assert [row["data"] for row in rows] == [{"old": "viewer", "new": "editor"}]
        since = (T0 + timedelta(hours=12)).isoformat()
        until = (T0 + timedelta(days=3)).isoformat()
        assert len(self.get(self.reader, since=since, until=until).json()["results"]) == 2
        bad = self.get(self.reader, action="nope")
        assert bad.status_code == 400 and "action" in bad.json()["errors"]

    def test_other_scopes_and_no_key_are_refused(self):
        assert self.get(self.other).status_code == 403
        assert self.get().status_code == 401
