"""The contacts dashboard: the list (keyset pages, search, filters), a contact, lists and segments."""

from __future__ import annotations

import base64
import re
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.reauth import VERIFIED_AT_KEY
from accounts.tenancy import account_scope
from audit.models import AuditEvent
from bluespark.cursors import open_position, seal_position
from contacts import selectors
from contacts.models import Contact, CustomField, MailingList, Segment, SensitiveValue, Subscription
from contacts.segments import count_definition_now, validate
from contacts.selectors import ActivityItem
from contacts.services import create_contact, create_mailing_list, update_contact
from delivery.services import record_engagement
from tests.cast import CastTestCase

CONTACTS = 123


def contact_ids(html: str) -> list[str]:
    """The contacts a list page shows, in order."""
    return re.findall(r"/contacts/(con_[0-9a-z]+)/\"", html)


def older_link(html: str) -> str | None:
    found = re.search(r'<a href="([^"]+)" rel="next">Older</a>', html)
    return found.group(1).replace("&amp;", "&") if found else None


class ContactPagesTestCase(CastTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        base = timezone.now() - timedelta(days=30)
        with account_scope(cls.acme):
            cls.people = []
            for number in range(CONTACTS):
                contact = create_contact(cls.acme, email=f"person{number:03d}@example.com", first_name=f"P{number}")
                cls.people.append(contact)
            # Imports write many rows with one timestamp: a page boundary falls inside a run of equal times.
            stamps = {contact.pk: base + timedelta(minutes=number // 7) for number, contact in enumerate(cls.people)}
            for pk, stamp in stamps.items():
                Contact.objects.filter(pk=pk).update(created_at=stamp)
            cls.ann = create_contact(cls.acme, email="Ann.Lee@Example.com", first_name="Ann", last_name="Lee")
            cls.vip = create_mailing_list(cls.acme, name="VIP")
            for contact, status in (
                (cls.ann, Subscription.Status.SUBSCRIBED),
                (cls.people[0], Subscription.Status.SUBSCRIBED),
                (cls.people[1], Subscription.Status.PENDING),
                (cls.people[2], Subscription.Status.UNSUBSCRIBED),
            ):
                Subscription.objects.create(
                    account=cls.acme,
                    contact=contact,
                    mailing_list=cls.vip,
                    status=status,
                    consent_source=Contact.Source.FORM,
                    consent_ip="198.51.100.7",
                    consent_text="Yes, send me the VIP letter",
                )
            update_contact(cls.acme, cls.people[5], tags=["gold"])
            update_contact(cls.acme, cls.ann, tags=["gold", "early"])
            update_contact(cls.acme, cls.people[7], status=Contact.Status.UNSUBSCRIBED)
            cls.gold_segment = Segment.objects.create(
                account=cls.acme, name="Gold", definition={"all": [{"field": "tag", "op": "has", "value": "gold"}]}
            )
        with account_scope(cls.globex):
            cls.globex_contact = create_contact(cls.globex, email="ann.lee@example.com")
            cls.globex_segment = Segment.objects.create(account=cls.globex, name="Everyone")

    def setUp(self) -> None:
        self.login(self.alice)

    def login(self, user, *, verified: bool = True) -> None:
        self.client.force_login(user)
        session = self.client.session
        session[VERIFIED_AT_KEY] = time.time() - (0 if verified else 3600)
        session.save()

    def url(self, name: str, **kwargs: str) -> str:
        return reverse(f"contacts:{name}", kwargs={"account_id": self.acme.public_id, **kwargs})

    def listed(self, **query: str) -> list[str]:
        response = self.client.get(self.url("contact_index"), query)
        assert response.status_code == 200, response.status_code
        return contact_ids(response.content.decode())


class ContactListTests(ContactPagesTestCase):
    def test_the_pages_walk_every_contact_newest_first_without_gaps_or_repeats(self):
        with account_scope(self.acme):
            expected = list(Contact.objects.order_by("-created_at", "-id").values_list("public_id", flat=True))
        seen, url, pages = [], self.url("contact_index"), 0
        while url:
            html = self.client.get(url).content.decode()
            page = contact_ids(html)
            assert len(page) == (50 if len(expected) - len(seen) > 50 else len(expected) - len(seen))
            seen += page
            url, pages = older_link(html), pages + 1
        assert seen == expected
        assert pages == 3  # 124 contacts: 50 + 50 + 24

    def test_a_page_costs_the_same_queries_whatever_its_length(self):
        def queries(**query: str) -> int:
            with CaptureQueriesContext(connection) as captured:
                assert self.client.get(self.url("contact_index"), query).status_code == 200
            return len(captured)

        full = queries()
        assert queries(status=Contact.Status.UNSUBSCRIBED) == full  # one row
        assert full <= 12

    def test_a_bad_cursor_starts_again_at_the_newest(self):
        with account_scope(self.acme):
            oldest = Contact.objects.order_by("created_at", "id").first()
        position = (oldest.created_at, oldest.pk)
        in_clear = base64.urlsafe_b64encode(f"{oldest.created_at.isoformat()}|{oldest.pk}".encode()).decode()
        for cursor in ("not-a-cursor", in_clear, seal_position("audit", position)):
            assert self.listed(after=cursor) == self.listed(), cursor
        assert self.listed(after=seal_position("contacts", position)) == []  # nothing is older than the oldest

    def test_the_older_link_does_not_show_the_row_it_starts_after(self):
        html = self.client.get(self.url("contact_index")).content.decode()
        cursor = parse_qs(urlsplit(older_link(html)).query)["after"][0]
        with account_scope(self.acme):
            fiftieth = Contact.objects.get(public_id=contact_ids(html)[-1])

        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        assert fiftieth.created_at.isoformat()[:16].encode() not in raw  # any clear form would hold the time
        assert open_position("contacts", cursor) == ("", (fiftieth.created_at, fiftieth.pk))

    def test_search_finds_the_exact_address_whatever_its_case_or_unicode_form(self):
        for spelling in (
            "ann.lee@example.com",
            "ANN.LEE@EXAMPLE.COM",
            " Ann.Lee@Example.com ",
            "ａｎｎ.ｌｅｅ@ｅｘａｍｐｌｅ.ｃｏｍ",
        ):
            assert self.listed(email=spelling) == [self.ann.public_id], spelling

    def test_search_by_part_of_an_address_finds_nothing_and_says_why(self):
        for part in ("ann", "ann.lee@", "example.com", "Ann Lee"):
            response = self.client.get(self.url("contact_index"), {"email": part})
            assert contact_ids(response.content.decode()) == [], part
            assert "full address" in response.content.decode()

    def test_the_page_says_that_search_needs_the_full_address(self):
        html = self.client.get(self.url("contact_index")).content.decode()
        assert "by their full email address" in html

    def test_the_list_filter_shows_subscribed_contacts_only(self):
        assert sorted(self.listed(list=self.vip.public_id)) == sorted([self.ann.public_id, self.people[0].public_id])

    def test_the_status_filter(self):
        assert self.listed(status=Contact.Status.UNSUBSCRIBED) == [self.people[7].public_id]
        assert self.client.get(self.url("contact_index"), {"status": "nonsense"}).status_code == 400

    def test_the_tag_filter(self):
        assert sorted(self.listed(tag="gold")) == sorted([self.ann.public_id, self.people[5].public_id])
        assert self.listed(tag="early") == [self.ann.public_id]

    def test_the_segment_filter_and_filters_combine(self):
        assert sorted(self.listed(segment=self.gold_segment.public_id)) == sorted(
            [self.ann.public_id, self.people[5].public_id]
        )
        assert self.listed(segment=self.gold_segment.public_id, list=self.vip.public_id) == [self.ann.public_id]
        assert self.listed(segment=self.gold_segment.public_id, email="person005@example.com") == [
            self.people[5].public_id
        ]

    def test_filters_survive_paging(self):
        with account_scope(self.acme):
            for contact in self.people[10:70]:
                update_contact(self.acme, contact, tags=["bulk"])
        first = self.client.get(self.url("contact_index"), {"tag": "bulk"}).content.decode()
        assert len(contact_ids(first)) == 50
        second = self.client.get(older_link(first)).content.decode()
        assert len(contact_ids(second)) == 10
        assert not set(contact_ids(first)) & set(contact_ids(second))

    def test_another_accounts_list_segment_or_unknown_tag_in_a_filter_is_a_404(self):
        globex_list = self.globex_list.public_id
        for query in ({"list": globex_list}, {"segment": self.globex_segment.public_id}, {"tag": "nope"}):
            assert self.client.get(self.url("contact_index"), query).status_code == 404, query

    def test_it_shows_only_the_accounts_own_contacts(self):
        assert self.globex_contact.public_id not in self.listed(email="ann.lee@example.com")

    def test_a_viewer_reads_the_list_but_gets_no_add_or_export_link(self):
        self.login(self.vic)
        response = self.client.get(self.url("contact_index"))
        assert response.status_code == 200
        html = response.content.decode()
        assert self.url("contact_create") not in html and self.url("contact_export") not in html


class ContactDetailTests(ContactPagesTestCase):
    def test_it_shows_fields_tags_subscriptions_with_consent_and_masks_sensitive_values(self):
        with account_scope(self.acme):
            CustomField.objects.create(account=self.acme, key="plan", label="Plan")
            passport = CustomField.objects.create(account=self.acme, key="passport", label="Passport", sensitive=True)
            update_contact(self.acme, self.ann, attributes={"plan": "Pro"})
            SensitiveValue.objects.create(account=self.acme, contact=self.ann, field=passport, value="X1234567")
        html = self.client.get(self.url("contact_detail", contact_id=self.ann.public_id)).content.decode()
        assert "ann.lee@example.com" in html and "Lee" in html
        assert "Plan" in html and "Pro" in html
        assert "Passport" in html and "X1234567" not in html and "sensitive, hidden" in html
        assert "gold" in html and "early" in html
        assert "VIP" in html and "198.51.100.7" in html and "Yes, send me the VIP letter" in html

    def test_the_timeline_lists_audit_events_and_subscription_changes_newest_first(self):
        with account_scope(self.acme):
            subscription = Subscription.objects.get(contact=self.people[2])
            Subscription.objects.filter(pk=subscription.pk).update(unsubscribed_at=timezone.now())
            from audit.services import record

            record("contact.data_exported", account=self.acme, target=self.people[2])
        html = self.client.get(self.url("contact_detail", contact_id=self.people[2].public_id)).content.decode()
        timeline = html[html.index('class="timeline"') :]
        positions = [
            timeline.index(text) for text in ("Exported everything", "Unsubscribed from VIP", "Signed up to VIP")
        ]
        assert positions == sorted(positions)

    def test_the_timeline_shows_opens_and_clicks_with_the_campaigns_name(self):
        now = timezone.now()
        with account_scope(self.acme):
            record_engagement(self.acme, self.ann, "opened", campaign=self.acme_campaign, occurred_at=now)
            record_engagement(self.acme, self.ann, "clicked", occurred_at=now - timedelta(days=400))
        self.login(self.vic)
        html = self.client.get(self.url("contact_detail", contact_id=self.ann.public_id)).content.decode()
        timeline = html[html.index('class="timeline"') :]
        positions = [timeline.index(text) for text in ("Opened Acme launch", "Clicked a link in a campaign")]
        assert positions == sorted(positions)
        other = self.client.get(self.url("contact_detail", contact_id=self.people[3].public_id)).content.decode()
        assert "Opened" not in other and "Clicked" not in other

    def test_the_timeline_merges_the_items_of_the_registered_activity_sources(self):
        now = timezone.now()
        with account_scope(self.acme):
            record_engagement(self.acme, self.ann, "opened", campaign=self.acme_campaign, occurred_at=now)

        def deliveries(account, contact):
            # An app's source (delivery registers one from its AppConfig.ready()): the contact's items only.
            return [ActivityItem(now + timedelta(minutes=1), f"Delivered to {contact.public_id} of {account.name}")]

        url = self.url("contact_detail", contact_id=self.ann.public_id)
        with selectors.using_activity_sources(deliveries):
            html = self.client.get(url).content.decode()
        timeline = html[html.index('class="timeline"') :]
        delivered = f"Delivered to {self.ann.public_id} of Acme"
        assert timeline.index(delivered) < timeline.index("Signed up to VIP")
        assert "Opened Acme launch" not in timeline  # delivery's source is out of the block's registry
        with selectors.using_activity_sources():
            assert "Opened" not in self.client.get(url).content.decode()
        html = self.client.get(url).content.decode()  # delivery's source is back after the block
        assert "Opened Acme launch" in html and delivered not in html

    def test_an_editor_edits_a_contact_through_the_service(self):
        self.login(self.bob)
        url = self.url("contact_edit", contact_id=self.ann.public_id)
        assert self.client.get(url).status_code == 200
        form = {"email": "ann.lee@example.com", "first_name": "Annie", "last_name": "Lee", "tags": "early, new"}
        response = self.client.post(url, form)
        assert response.status_code == 302
        html = self.client.get(response["Location"]).content.decode()
        assert "Annie" in html and "new" in html and "gold" not in html

    def test_an_edit_to_an_address_already_taken_is_shown_on_the_form(self):
        url = self.url("contact_edit", contact_id=self.ann.public_id)
        response = self.client.post(url, {"email": "person001@example.com", "first_name": "", "last_name": ""})
        assert response.status_code == 400
        assert "already exists" in response.content.decode()

    def test_adding_a_contact(self):
        response = self.client.post(
            self.url("contact_create"), {"email": "New@Example.com", "first_name": "Nia", "tags": "fresh"}
        )
        assert response.status_code == 302
        assert self.listed(tag="fresh") == [response["Location"].rstrip("/").rsplit("/", 1)[1]]

    def test_deleting_needs_a_fresh_password_check_and_is_recorded(self):
        url = self.url("contact_delete", contact_id=self.people[3].public_id)
        self.login(self.bob, verified=False)
        response = self.client.post(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("reauthenticate"))
        self.login(self.bob)
        assert self.client.get(url).status_code == 200
        assert self.client.post(url).status_code == 302
        assert self.client.get(self.url("contact_detail", contact_id=self.people[3].public_id)).status_code == 404
        event = AuditEvent.objects.get(action="contact.deleted")
        assert event.target_id == self.people[3].public_id

    def test_another_accounts_contact_is_a_404_on_every_contact_page(self):
        for name in ("contact_detail", "contact_edit", "contact_delete"):
            assert self.client.get(self.url(name, contact_id=self.globex_contact.public_id)).status_code == 404


class ListPageTests(ContactPagesTestCase):
    def test_the_index_counts_subscribers_in_one_query_whatever_the_number_of_lists(self):
        def queries() -> int:
            with CaptureQueriesContext(connection) as captured:
                response = self.client.get(self.url("list_index"))
            assert response.status_code == 200
            return len(captured)

        before = queries()
        with account_scope(self.acme):
            for number in range(5):
                create_mailing_list(self.acme, name=f"More {number}")
        assert queries() == before
        html = self.client.get(self.url("list_index")).content.decode()
        vip_row = html[html.index(">VIP<") :]
        assert re.search(r'<td class="numeric"><a [^>]+>1</a></td>', vip_row.split("</tr>")[0]) is None
        assert re.search(r'<td class="numeric"><a [^>]+>2</a></td>', vip_row.split("</tr>")[0])

    def test_an_editor_creates_and_edits_a_list_with_its_opt_in_form_and_consent(self):
        self.login(self.bob)
        form = {"name": "Weekly", "opt_in": "double", "form_enabled": "on", "consent_text": "Weekly news, ok"}
        response = self.client.post(self.url("list_create"), form)
        assert response.status_code == 302
        with account_scope(self.acme):
            weekly = MailingList.objects.get(name="Weekly")
        assert (weekly.opt_in, weekly.form_enabled, weekly.consent_text) == ("double", True, "Weekly news, ok")
        edit = self.url("list_edit", list_id=weekly.public_id)
        assert self.client.post(edit, {"name": "Weekly!", "opt_in": "single"}).status_code == 302
        weekly.refresh_from_db()
        assert (weekly.name, weekly.opt_in, weekly.form_enabled) == ("Weekly!", "single", False)

    def test_deleting_a_list_needs_an_admin_a_fresh_password_check_and_its_name_and_is_recorded(self):
        url = self.url("list_delete", list_id=self.vip.public_id)
        self.login(self.bob)
        assert self.client.post(url, {"confirm": "VIP"}).status_code == 403
        self.login(self.alice, verified=False)
        assert self.client.post(url, {"confirm": "VIP"})["Location"].startswith(reverse("reauthenticate"))
        self.login(self.alice)
        assert self.client.post(url, {"confirm": "vip?"}).status_code == 400
        assert self.client.post(url, {"confirm": "VIP"}).status_code == 302
        assert self.client.get(self.url("list_detail", list_id=self.vip.public_id)).status_code == 404
        event = AuditEvent.objects.get(action="list.deleted")
        assert (event.target_id, event.data) == (self.vip.public_id, {"subscribers": 2})
        with account_scope(self.acme):
            assert Contact.objects.filter(pk=self.ann.pk).exists()

    def test_another_accounts_list_is_a_404(self):
        for name in ("list_detail", "list_edit", "list_delete"):
            assert self.client.get(self.url(name, list_id=self.globex_list.public_id)).status_code == 404


class SegmentPageTests(ContactPagesTestCase):
    def builder_form(self, name: str, rows: list[tuple[str, str, str]], *, match: str = "all", **extra: str) -> dict:
        return {
            "name": name,
            "match": match,
            "field": [row[0] for row in rows],
            "op": [row[1] for row in rows],
            "value": [row[2] for row in rows],
            "value_index": ["" for _ in rows],
            **extra,
        }

    def test_the_index_shows_each_segment_with_its_count(self):
        html = self.client.get(self.url("segment_index")).content.decode()
        assert "Gold" in html and re.search(r'<td class="numeric">\s*2\s*</td>', html)
        assert "Everyone" not in html

    def test_the_builder_saves_rows_as_a_definition(self):
        self.login(self.bob)
        rows = [("tag", "has", "gold"), ("list", "subscribed", self.vip.public_id)]
        response = self.client.post(self.url("segment_create"), self.builder_form("Gold VIPs", rows))
        assert response.status_code == 302
        with account_scope(self.acme):
            saved = Segment.objects.get(name="Gold VIPs")
        assert saved.definition == {
            "all": [
                {"field": "tag", "op": "has", "value": "gold"},
                {"field": "list", "op": "subscribed", "value": self.vip.public_id},
            ]
        }
        detail = self.client.get(response["Location"]).content.decode()
        assert f"{self.url('contact_index')}?segment={saved.public_id}" in detail
        assert self.listed(segment=saved.public_id) == [self.ann.public_id]

    def test_any_of_and_typed_values(self):
        rows = [("status", "in", "unsubscribed, bounced"), ("created_at", "within_days", "7")]
        response = self.client.post(self.url("segment_create"), self.builder_form("Either", rows, match="any"))
        assert response.status_code == 302
        with account_scope(self.acme):
            saved = Segment.objects.get(name="Either")
        assert saved.definition == {
            "any": [
                {"field": "status", "op": "in", "value": ["unsubscribed", "bounced"]},
                {"field": "created_at", "op": "within_days", "value": 7},
            ]
        }

    def test_the_builder_offers_opens_and_clicks_and_counts_them(self):
        html = self.client.get(self.url("segment_create")).content.decode()
        assert '<option value="engagement">Opens and clicks</option>' in html
        assert '<option value="opened_within_days">' in html and '<option value="clicked_within_days">' in html
        with account_scope(self.acme):
            record_engagement(self.acme, self.ann, "opened", campaign=self.acme_campaign)
            record_engagement(self.acme, self.people[0], "clicked", campaign=self.acme_campaign)
        rows = [("engagement", "opened_within_days", "30")]
        counted = self.client.post(self.url("segment_count"), self.builder_form("", rows), HTTP_HX_REQUEST="true")
        assert "1 contact matches" in counted.content.decode()
        response = self.client.post(self.url("segment_create"), self.builder_form("Openers", rows))
        assert response.status_code == 302
        with account_scope(self.acme):
            saved = Segment.objects.get(name="Openers")
        assert saved.definition == {"all": [{"field": "engagement", "op": "opened_within_days", "value": 30}]}
        assert self.listed(segment=saved.public_id) == [self.ann.public_id]
        edit = self.client.get(self.url("segment_edit", segment_id=saved.public_id)).content.decode()
        assert '<option value="opened_within_days" selected>' in edit
        assert 'id="condition-0-value" value="30"' in edit

    def test_an_email_condition_is_saved_as_its_blind_index_and_edits_keep_it(self):
        rows = [("email", "eq", "ann.lee@example.com")]
        response = self.client.post(self.url("segment_create"), self.builder_form("Ann", rows))
        with account_scope(self.acme):
            saved = Segment.objects.get(name="Ann")
        assert "ann.lee" not in str(saved.definition)
        edit = self.client.get(self.url("segment_edit", segment_id=saved.public_id)).content.decode()
        index = saved.definition["all"][0]["value_index"]
        assert f'name="value_index" value="{index}"' in edit
        form = self.builder_form("Ann again", [("email", "eq", "")])
        form["value_index"] = [index]
        assert self.client.post(self.url("segment_edit", segment_id=saved.public_id), form).status_code == 302
        assert response.status_code == 302
        assert self.listed(segment=saved.public_id) == [self.ann.public_id]

    def test_a_bad_condition_is_shown_and_nothing_is_saved(self):
        rows = [("tag", "has", "no-such-tag")]
        response = self.client.post(self.url("segment_create"), self.builder_form("Broken", rows))
        assert response.status_code == 400
        assert "no tag named" in response.content.decode()
        with account_scope(self.acme):
            assert not Segment.objects.filter(name="Broken").exists()

    def test_rows_are_added_and_removed_without_saving(self):
        rows = [("tag", "has", "gold"), ("status", "eq", "subscribed")]
        added = self.client.post(self.url("segment_create"), self.builder_form("X", rows, action="add"))
        assert added.content.decode().count('name="field"') == 3
        removed = self.client.post(self.url("segment_create"), self.builder_form("X", rows, action="remove-0"))
        html = removed.content.decode()
        assert html.count('name="field"') == 1 and 'value="subscribed"' in html
        with account_scope(self.acme):
            assert not Segment.objects.filter(name="X").exists()

    def test_the_live_count_answers_the_rows_on_screen(self):
        url = self.url("segment_count")
        counted = self.client.post(url, self.builder_form("", [("tag", "has", "gold")]), HTTP_HX_REQUEST="true")
        assert counted.status_code == 200
        assert "2 contacts match" in counted.content.decode()
        bad = self.client.post(url, self.builder_form("", [("first_name", "eq", "Ann")]))
        assert "encrypted" in bad.content.decode()
        assert self.client.get(url).status_code == 405

    @override_settings(SEGMENT_LIVE_COUNT_LIMIT=0)
    def test_a_large_account_sees_a_background_count_the_fragment_asks_for_again(self):
        url = self.url("segment_count")
        form = self.builder_form("", [("tag", "has", "gold")])
        with self.captureOnCommitCallbacks() as queued:
            waiting = self.client.post(url, form, HTTP_HX_REQUEST="true").content.decode()
            again = self.client.post(url, form, HTTP_HX_REQUEST="true").content.decode()
        assert "Counting" in waiting and 'hx-trigger="load delay:1s"' in waiting and f'hx-post="{url}"' in waiting
        assert "Counting" in again
        assert len(queued) == 1  # one background count, however often the page asks

        with account_scope(self.acme):
            count_definition_now(
                self.acme, validate(self.acme, {"all": [{"field": "tag", "op": "has", "value": "gold"}]})
            )
        counted = self.client.post(url, form, HTTP_HX_REQUEST="true").content.decode()

        assert "2 contacts match" in counted and "hx-trigger" not in counted

    def test_the_builder_page_asks_for_the_live_count_without_inline_script(self):
        html = self.client.get(self.url("segment_create")).content.decode()
        assert f'hx-post="{self.url("segment_count")}"' in html
        assert "<script>" not in html

    def test_another_accounts_segment_is_a_404(self):
        for name in ("segment_detail", "segment_edit"):
            assert self.client.get(self.url(name, segment_id=self.globex_segment.public_id)).status_code == 404


class NavigationTests(ContactPagesTestCase):
    def test_the_menu_links_contacts_lists_and_segments_and_marks_the_current_one(self):
        html = self.client.get(self.url("segment_index")).content.decode()
        for name in ("contact_index", "list_index", "segment_index"):
            assert f'href="{self.url(name)}"' in html
        assert f'href="{self.url("segment_index")}" aria-current="page"' in html
        assert f'href="{self.url("contact_index")}" aria-current="page"' not in html
