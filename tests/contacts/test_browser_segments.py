"""The segment builder in a real Chromium: the live htmx count as conditions change, saving, the segments page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from accounts.tenancy import account_scope
from contacts import segments
from contacts.models import Contact
from contacts.selectors import segment_list
from contacts.services import create_contact
from tests.cast import PASSWORD, Cast, build_cast
from tests.support.browser import chromium_page
from tests.support.live import committed_data, live_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SUBSCRIBED, UNSUBSCRIBED = Contact.Status.SUBSCRIBED, Contact.Status.UNSUBSCRIBED

# Acme's audience: who is subscribed and who has the "vip" tag.
ACME_PEOPLE = {
    "ann@example.com": (SUBSCRIBED, ["vip"]),
    "ben@example.com": (SUBSCRIBED, ["vip", "early"]),
    "cat@example.com": (UNSUBSCRIBED, ["vip"]),
    "dan@example.com": (SUBSCRIBED, []),
    "eli@example.com": (UNSUBSCRIBED, ["early"]),
}
# Globex has a subscribed vip too, and a tag of its own: neither may count in Acme.
GLOBEX_PEOPLE = {"gil@example.com": (SUBSCRIBED, ["vip", "partner"])}


def log_in(page: Page, base_url: str, email: str) -> None:
    page.goto(base_url + reverse("accounts:login"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Acme", exact=True)).to_be_visible()


def open_new_segment(page: Page) -> None:
    page.get_by_role("navigation", name="Acme").get_by_role("link", name="Segments").click()
    page.get_by_role("link", name="New segment").click()
    expect(page.get_by_role("heading", name="New segment")).to_be_visible()


def set_condition(page: Page, number: int, *, field: str, comparison: str, value: str) -> None:
    page.get_by_label(f"Field of condition {number}").select_option(label=field)
    page.get_by_label(f"Comparison of condition {number}").select_option(label=comparison)
    page.get_by_label(f"Value of condition {number}").fill(value)


@pytest.fixture(scope="class")
def acme_live(request: pytest.FixtureRequest, django_db_setup: None, django_db_blocker) -> Iterator[None]:
    """The cast and both audiences, committed once for the class, and a live server."""
    cls = request.cls
    with committed_data(django_db_blocker):
        build_cast(cls)
        for account, people in ((cls.acme, ACME_PEOPLE), (cls.globex, GLOBEX_PEOPLE)):
            with account_scope(account):
                for email, (status, tags) in people.items():
                    create_contact(account, email=email, status=status, tags=tags)
        with live_server() as cls.base_url:
            yield


# Each test reads the database only outside Playwright's calls (tests/conftest.py), inside the transaction
# pytest-django gives it; the cast and what the server writes are committed.
@pytest.mark.django_db
@pytest.mark.usefixtures("acme_live")
class TestSegmentBuilder(Cast):
    base_url: str

    def test_an_editor_builds_a_segment_watching_the_live_count_and_finds_it_on_the_segments_page(self) -> None:
        with chromium_page() as (page, problems):
            log_in(page, self.base_url, self.bob.email)
            open_new_segment(page)
            count = page.locator("#segment-count")
            # Loaded with no condition, the count is everyone in Acme (Globex's contact is not).
            expect(count).to_have_text("5 contacts match now")

            page.get_by_label("Name").fill("Subscribed VIPs")
            set_condition(page, 1, field="Status", comparison="is", value="subscribed")
            expect(count).to_have_text("3 contacts match now")

            # A new row is a round trip without JavaScript; the page keeps what was typed and counts again.
            page.get_by_role("button", name="Add a condition").click()
            expect(page.get_by_label("Value of condition 1")).to_have_value("subscribed")
            expect(page.get_by_label("Name")).to_have_value("Subscribed VIPs")
            expect(count).to_have_text("3 contacts match now")
            set_condition(page, 2, field="Tag", comparison="has the tag", value="vip")
            expect(count).to_have_text("2 contacts match now")

            # Any instead of all: subscribed or vip (cat is an unsubscribed vip); then back.
            page.get_by_label("Match").select_option(label="any of these")
            expect(count).to_have_text("4 contacts match now")
            page.get_by_label("Match").select_option(label="all of these")
            expect(count).to_have_text("2 contacts match now")

            page.get_by_role("button", name="Save segment").click()
            expect(page.get_by_role("heading", name="Subscribed VIPs")).to_be_visible()
            expect(page.get_by_role("status")).to_contain_text("Segment “Subscribed VIPs” saved.")
            expect(page.locator("dl.facts dd").first).to_contain_text("2")

            page.get_by_role("navigation", name="Acme").get_by_role("link", name="Segments").click()
            row = page.get_by_role("row").filter(has=page.get_by_role("link", name="Subscribed VIPs"))
            expect(row).to_have_count(1)
            expect(row.get_by_role("cell").nth(1)).to_have_text("2")

        assert problems == []
        with account_scope(self.acme):
            [saved] = [segment for segment in segment_list(self.acme) if segment.name == "Subscribed VIPs"]
            assert saved.definition == {
                "all": [
                    {"field": "status", "op": "eq", "value": "subscribed"},
                    {"field": "tag", "op": "has", "value": "vip"},
                ]
            }
            matching = segments.contacts_matching(self.acme, saved.definition)
            assert sorted(contact.email for contact in matching) == ["ann@example.com", "ben@example.com"]

    def test_a_tag_only_another_account_has_is_not_counted_and_the_segment_is_not_saved(self) -> None:
        with chromium_page() as (page, problems):
            log_in(page, self.base_url, self.bob.email)
            open_new_segment(page)
            count = page.locator("#segment-count")
            expect(count).to_have_text("5 contacts match now")

            page.get_by_label("Name").fill("Partners")
            set_condition(page, 1, field="Tag", comparison="has the tag", value="partner")
            expect(count.locator(".field-error")).to_contain_text("no tag named 'partner' in this account.")
            page.get_by_role("button", name="Save segment").click()
            expect(page.get_by_role("heading", name="New segment")).to_be_visible()
            expect(page.get_by_role("alert")).to_contain_text("no tag named 'partner' in this account.")
            expect(page.get_by_label("Value of condition 1")).to_have_value("partner")

        assert problems == []
        with account_scope(self.acme):
            assert [segment.name for segment in segment_list(self.acme) if segment.name == "Partners"] == []
