"""Sign up, activate, log out and log in again in a real Chromium, under the real CSP."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from accounts.models import Account, Membership, Role, user_email_index
from tests.support.browser import chromium_page

pytestmark = [pytest.mark.browser]

EMAIL = "dora@bakery.test"
PASSWORD = "flour, water, salt & patience 7"
ACCOUNT_NAME = "Dora's Bakery"


def log_in(page: Page, base_url: str) -> None:
    page.goto(base_url + reverse("accounts:login"))
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def log_out(page: Page) -> None:
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    assert not [cookie for cookie in page.context.cookies() if "sessionid" in cookie["name"]]


@pytest.mark.django_db(transaction=True)
def test_a_visitor_signs_up_activates_and_logs_in_again(live_server, settings, mailoutbox):
    # Links in email are built from BASE_URL, never from the request's Host.
    settings.BASE_URL = live_server.url

    with chromium_page() as (page, problems):
        page.goto(live_server.url + reverse("accounts:sign_up"))
        page.get_by_label("Email").fill(EMAIL)
        page.get_by_label("Your name").fill("Dora Diaz")
        page.get_by_label("Company or team name").fill(ACCOUNT_NAME)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign up").click()
        expect(page.get_by_role("heading", name="Check your email")).to_be_visible()

        (activation_mail,) = mailoutbox
        assert activation_mail.to == [EMAIL]
        match = re.search(r"^(\S+/accounts/activate/\S+/)$", activation_mail.body, re.MULTILINE)
        assert match, activation_mail.body
        activation_url = match.group(1)
        assert activation_url.startswith(live_server.url + "/")

        page.goto(activation_url)
        page.get_by_role("button", name="Activate my account").click()
        expect(page.get_by_role("heading", name=ACCOUNT_NAME)).to_be_visible()
        expect(page.get_by_text("Your account is ready.")).to_be_visible()
        dashboard_url = page.url
        assert re.fullmatch(re.escape(live_server.url) + r"/a/acc_[a-z2-7]+/", dashboard_url), dashboard_url

        # htmx loaded from our static files and read its CSP-safe configuration.
        assert page.evaluate(
            "() => typeof htmx === 'object' && htmx.config.includeIndicatorStyles === false"
            " && htmx.config.allowEval === false && htmx.config.allowScriptTags === false"
        )

        log_out(page)

        log_in(page, live_server.url)
        expect(page.get_by_role("heading", name=ACCOUNT_NAME)).to_be_visible()
        assert page.url == dashboard_url
        expect(page.get_by_role("navigation", name=ACCOUNT_NAME).get_by_role("link", name="Campaigns")).to_be_visible()

        log_out(page)

    assert problems == []
    # Django's connection is per context, and Playwright's greenlets run the block in
    # another one: the database is read here, after the browser is gone.
    membership = Membership.objects.select_related("account").get(user__email_index=user_email_index(EMAIL))
    assert membership.role == Role.OWNER
    assert membership.account.name == ACCOUNT_NAME
    assert dashboard_url == live_server.url + reverse("dashboard", kwargs={"account_id": membership.account.public_id})
    assert Account.objects.filter(name=ACCOUNT_NAME).count() == 1
