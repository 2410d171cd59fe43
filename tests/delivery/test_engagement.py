"""Opens and clicks: recording them, the segments that filter by them, and the contact's timeline."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine

from accounts.tenancy import TenantScopeError, account_scope
from audit.models import AuditEvent
from campaigns.models import Campaign
from contacts.models import Contact
from contacts.segments import contacts_matching, count
from contacts.selectors import TIMELINE_EVENTS, contact_activity
from contacts.services import create_contact
from delivery.models import EngagementEvent
from delivery.services import EngagementError, record_engagement
from tests.cast import CastTestCase

T0 = dt.datetime(2030, 6, 1, 12, 0, tzinfo=dt.UTC)
OPENED = EngagementEvent.Kind.OPENED
CLICKED = EngagementEvent.Kind.CLICKED


def opened(days: int) -> dict[str, Any]:
    return {"field": "engagement", "op": "opened_within_days", "value": days}


def clicked(days: int) -> dict[str, Any]:
    return {"field": "engagement", "op": "clicked_within_days", "value": days}


class EngagementTestCase(CastTestCase):
    """Acme: ann opened exactly 30 days before T0 and clicked an hour before; bo opened a second before those
    30 days; cy clicked 10 days before; dee did nothing. Globex's contact opened and clicked an hour before."""

    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        with time_machine.travel(T0, tick=False):
            with account_scope(cls.acme):
                cls.people = {
                    name: create_contact(cls.acme, email=f"{name}@example.test") for name in ("ann", "bo", "cy", "dee")
                }
                for name, kind, before, campaign in (
                    ("ann", OPENED, dt.timedelta(days=30), cls.acme_campaign),
                    ("ann", CLICKED, dt.timedelta(hours=1), cls.acme_campaign),
                    ("bo", OPENED, dt.timedelta(days=30, seconds=1), None),
                    ("cy", CLICKED, dt.timedelta(days=10), cls.acme_campaign),
                ):
                    record_engagement(cls.acme, cls.people[name], kind, campaign=campaign, occurred_at=T0 - before)
            with account_scope(cls.globex):
                cls.twin = create_contact(cls.globex, email="ann@example.test")
                for kind in (OPENED, CLICKED):
                    record_engagement(
                        cls.globex, cls.twin, kind, campaign=cls.globex_campaign, occurred_at=T0 - dt.timedelta(hours=1)
                    )

    def setUp(self) -> None:
        traveller = time_machine.travel(T0, tick=False)
        self.clock = traveller.start()
        self.addCleanup(traveller.stop)

    def names(self, definition: dict[str, Any], account: Any = None) -> set[str]:
        account = account or self.acme
        with account_scope(account):
            found = set(contacts_matching(account, definition).values_list("pk", flat=True))
            assert count(account, definition) == len(found)
        return {name for name, contact in self.people.items() if contact.pk in found} | (
            {"twin"} if self.twin.pk in found else set()
        )


class EngagementSegmentTests(EngagementTestCase):
    def test_opened_within_days_counts_the_last_n_times_24_hours_boundaries_included(self):
        assert self.names(opened(29)) == set()  # ann's click is not an open
        assert self.names(opened(30)) == {"ann"}  # exactly 30 days ago is inside
        assert self.names(opened(31)) == {"ann", "bo"}  # bo: one second before the 30 days
        assert self.names(opened(3650)) == {"ann", "bo"}

    def test_clicked_within_days(self):
        assert self.names(clicked(1)) == {"ann"}
        assert self.names(clicked(9)) == {"ann"}
        assert self.names(clicked(10)) == {"ann", "cy"}
        assert self.names({"all": [clicked(30), {"not": opened(30)}]}) == {"cy"}

    def test_not_is_the_exact_complement(self):
        everyone = {"ann", "bo", "cy", "dee"}
        for condition in (opened(29), opened(30), opened(31), clicked(1), clicked(10)):
            with self.subTest(condition=condition):
                assert self.names({"not": condition}) == everyone - self.names(condition)
        assert self.names({"not": opened(31)}) == {"cy", "dee"}

    def test_the_window_moves_with_the_clock(self):
        self.clock.shift(dt.timedelta(days=1))
        assert self.names(opened(30)) == set()
        assert self.names(opened(31)) == {"ann"}
        assert self.names(clicked(1)) == set()

    def test_engagement_mixes_with_other_conditions_and_groups(self):
        dee = {"field": "email", "op": "eq", "value": "dee@example.test"}
        definition = {"any": [{"all": [opened(31), {"not": clicked(30)}]}, dee]}
        assert self.names(definition) == {"bo", "dee"}

    def test_another_accounts_opens_and_clicks_never_match(self):
        # Globex's contact engaged an hour ago: it counts for Globex, and Acme's figures do not move.
        assert self.names(clicked(1), self.globex) == {"twin"}
        assert self.names(opened(1), self.globex) == {"twin"}
        assert self.names(opened(1)) == set()
        # Even a row filed under Globex against an Acme contact (the service refuses to write one) is not
        # Acme's: the subquery reads through the scoped manager, inside the active account only.
        EngagementEvent.objects_unscoped_dangerous.create(
            account=self.globex, contact=self.people["dee"], kind=OPENED, occurred_at=T0
        )
        assert self.names(opened(1)) == set()
        assert self.names({"not": opened(1)}) == {"ann", "bo", "cy", "dee"}

    def test_a_count_with_engagement_is_one_query(self):
        with account_scope(self.acme), self.assertNumQueries(1):
            assert count(self.acme, {"all": [opened(31), {"not": clicked(1)}]}) == 1

    def test_a_deleted_campaigns_opens_still_count(self):
        with account_scope(self.acme):
            Campaign.objects.filter(pk=self.acme_campaign.pk).delete()
            assert not EngagementEvent.objects.filter(campaign__isnull=False).exists()
        assert self.names(clicked(10)) == {"ann", "cy"}


class RecordEngagementTests(EngagementTestCase):
    def test_it_records_the_kind_the_time_and_the_campaign_and_nothing_else(self):
        with account_scope(self.acme):
            row = record_engagement(self.acme, self.people["dee"], CLICKED, campaign=self.acme_campaign)
            stored = EngagementEvent.objects.values().get(pk=row.pk)
        assert stored == {
            "id": row.pk,
            "account_id": self.acme.pk,
            "contact_id": self.people["dee"].pk,
            "campaign_id": self.acme_campaign.pk,
            "kind": "clicked",
            "occurred_at": T0,
        }
        assert self.names(clicked(1)) == {"ann", "dee"}

    def test_it_writes_no_audit_event(self):
        before = AuditEvent.objects.count()
        with account_scope(self.acme):
            record_engagement(self.acme, self.people["dee"], OPENED)
        assert AuditEvent.objects.count() == before

    def test_it_refuses_what_it_cannot_record(self):
        dee = self.people["dee"]
        cases = [
            ((self.acme, dee, "bounced"), {}, "Unknown kind"),
            ((self.acme, dee, "Opened"), {}, "Unknown kind"),
            ((self.acme, self.twin, OPENED), {}, "contact is not one of this account's"),
            ((self.acme, Contact(account=self.acme, email="new@example.test"), OPENED), {}, "contact is not"),
            ((self.acme, dee, OPENED), {"campaign": self.globex_campaign}, "campaign is not one of this account's"),
            ((self.acme, dee, OPENED), {"occurred_at": dt.datetime(2030, 6, 1, 11, 0)}, "time zone"),
            ((self.acme, dee, OPENED), {"occurred_at": T0 + dt.timedelta(minutes=6)}, "future"),
        ]
        with account_scope(self.acme):
            before = EngagementEvent.objects.count()
            for args, kwargs, words in cases:
                with self.subTest(args=args, kwargs=kwargs), pytest.raises(EngagementError) as caught:
                    record_engagement(*args, **kwargs)
                assert words in str(caught.value)
            # A worker's clock a little ahead is not the future.
            record_engagement(self.acme, dee, OPENED, occurred_at=T0 + dt.timedelta(minutes=4))
            assert EngagementEvent.objects.count() == before + 1

    def test_it_refuses_to_write_inside_another_accounts_scope(self):
        with account_scope(self.globex), pytest.raises(TenantScopeError):
            record_engagement(self.acme, self.people["dee"], OPENED)

    def test_an_erased_contact_gets_nothing_recorded(self):
        with account_scope(self.acme):
            dee = self.people["dee"]
            Contact.objects.filter(pk=dee.pk).update(status=Contact.Status.ERASED)
            dee.refresh_from_db()
            assert record_engagement(self.acme, dee, OPENED) is None
            assert not EngagementEvent.objects.filter(contact=dee).exists()


class TimelineTests(EngagementTestCase):
    def activity(self, name: str) -> list[tuple[dt.datetime, str]]:
        with account_scope(self.acme):
            items = contact_activity(self.acme, self.people[name])
        return [(item.occurred_at, item.description) for item in items]

    def test_opens_and_clicks_show_newest_first_with_the_campaigns_name(self):
        timeline = self.activity("ann")
        assert [entry for entry in timeline if "Acme launch" in entry[1]] == [
            (T0 - dt.timedelta(hours=1), "Clicked a link in Acme launch"),
            (T0 - dt.timedelta(days=30), "Opened Acme launch"),
        ]
        assert timeline == sorted(timeline, key=lambda entry: entry[0], reverse=True)
        assert (T0 - dt.timedelta(days=30, seconds=1), "Opened a campaign") in self.activity("bo")
        assert not [entry for entry in self.activity("dee") if "campaign" in entry[1] or "Acme" in entry[1]]

    def test_a_deleted_campaign_is_shown_as_a_campaign(self):
        with account_scope(self.acme):
            Campaign.objects.filter(pk=self.acme_campaign.pk).delete()
        assert (T0 - dt.timedelta(days=10), "Clicked a link in a campaign") in self.activity("cy")

    def test_the_timeline_shows_the_latest_opens_and_clicks_only(self):
        with account_scope(self.acme):
            EngagementEvent.objects.bulk_create(
                EngagementEvent(
                    account=self.acme,
                    contact=self.people["dee"],
                    campaign=self.acme_campaign,
                    kind=OPENED,
                    occurred_at=T0 - dt.timedelta(minutes=minutes),
                )
                for minutes in range(1, TIMELINE_EVENTS + 2)
            )
        opens = [moment for moment, text in self.activity("dee") if text == "Opened Acme launch"]
        assert len(opens) == TIMELINE_EVENTS
        assert opens[0] == T0 - dt.timedelta(minutes=1)
        assert opens[-1] == T0 - dt.timedelta(minutes=TIMELINE_EVENTS)
