"""Two-factor login, ending another device's session and using a new API key, in a real Chromium."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pyotp
import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from accounts.models import Role
from accounts.tenancy import account_scope
from campaigns.services import create_campaign
from tests.cast import PASSWORD, make_account, make_user
from tests.support.browser import chromium, watched_page

pytestmark = [pytest.mark.browser]

EMAIL = "erin@studio.test"
ACCOUNT_NAME = "Erin's Studio"
LAPTOP = "Mozilla/5.0 (X11; Linux x86_64) Laptop-7f3a"
DESK = "Mozilla/5.0 (X11; Linux x86_64) Desk-91c2"


def log_in_with_password(page: Page, base_url: str) -> None:
    page.goto(base_url + reverse("accounts:login"))
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def api_get(url: str, token: str | None) -> tuple[int, dict]:
    """A plain HTTP client: what an integrator's script does with the key."""
    assert url.startswith("http://127.0.0.1:") or url.startswith("http://localhost:"), url
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 (the live server)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (checked above)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.django_db(transaction=True)
def test_enrol_two_factor_log_in_with_a_code_end_another_session_and_use_a_new_api_key(live_server):
    base = live_server.url
    user = make_user(EMAIL, full_name="Erin Example")
    account = make_account(ACCOUNT_NAME, {user: Role.OWNER})
    with account_scope(account):
        campaign = create_campaign(account, name="Spring sale")
    dashboard = base + reverse("dashboard", kwargs={"account_id": account.public_id})
    problems: list[str] = []

    with chromium() as browser:
        # Another device, signed in with the password alone before two-factor is on.
        laptop = watched_page(browser, problems, user_agent=LAPTOP)
        log_in_with_password(laptop, base)
        expect(laptop.get_by_role("heading", name=ACCOUNT_NAME)).to_be_visible()

        # At the desk: enrol with the QR code's key (the QR code itself is server-rendered SVG).
        desk = watched_page(browser, problems, user_agent=DESK)
        log_in_with_password(desk, base)
        expect(desk.get_by_role("heading", name=ACCOUNT_NAME)).to_be_visible()
        desk.get_by_role("link", name="Two-factor").click()
        desk.get_by_role("button", name="Set up two-factor authentication").click()
        expect(desk.locator("svg.qr-code")).to_be_visible()
        totp = pyotp.TOTP(desk.locator("#totp-secret").inner_text().replace(" ", ""))
        desk.get_by_label("Code from your app").fill(totp.now())
        desk.get_by_role("button", name="Turn on").click()
        expect(desk.get_by_role("heading", name="Two-factor authentication is on")).to_be_visible()
        assert len(desk.locator(".recovery-codes code").all_inner_texts()) == 10
        desk.get_by_role("link", name="I have saved them").click()

        # Log out, then in again: the password alone is not enough any more.
        desk.get_by_role("button", name="Log out").click()
        log_in_with_password(desk, base)
        expect(desk.get_by_role("heading", name="Enter your code")).to_be_visible()
        assert desk.url == base + reverse("two_factor:verify")
        # The next step's code: the one just used to enrol cannot be replayed.
        desk.get_by_label("Authentication code").fill(totp.at(time.time() + 30))
        desk.get_by_role("button", name="Verify").click()
        expect(desk.get_by_role("heading", name=ACCOUNT_NAME)).to_be_visible()
        assert desk.url == dashboard

        # End the laptop's session from the desk.
        desk.get_by_role("link", name="Sessions").click()
        rows = desk.get_by_role("row")
        expect(rows.filter(has_text="Laptop-7f3a")).to_have_count(1)
        expect(rows.filter(has_text="Desk-91c2")).to_contain_text("(this session)")
        rows.filter(has_text="Laptop-7f3a").get_by_role("button", name="End").click()
        expect(desk.get_by_role("row").filter(has_text="Laptop-7f3a")).to_have_count(0)
        laptop.reload()
        expect(laptop.get_by_role("heading", name="Log in")).to_be_visible()

        # Create a read-only campaigns key (the two-factor login counts as a recent verification).
        desk.goto(dashboard)
        desk.get_by_role("navigation", name=ACCOUNT_NAME).get_by_role("link", name="API keys").click()
        desk.get_by_label("Name").fill("Reporting script")
        desk.get_by_label("Read campaigns and their reports").check()
        desk.get_by_role("button", name="Create key").click()
        expect(desk.get_by_role("heading", name="Your new API key")).to_be_visible()
        token = desk.locator("#api-key-token").input_value()
        desk.get_by_role("link", name="Back to API keys").click()
        expect(desk.get_by_role("cell", name="Reporting script")).to_be_visible()
        assert token not in desk.content()  # shown once

    assert token.startswith("bsk_")
    status, body = api_get(base + reverse("api-campaign-list"), token)
    assert status == 200, body
    assert [item["id"] for item in body["results"]] == [campaign.public_id]
    status, body = api_get(base + reverse("api-campaign-list"), None)
    assert status == 401 and body["status"] == 401
    assert problems == []
