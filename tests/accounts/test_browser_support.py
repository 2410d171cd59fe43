"""A support session in a real Chromium: 2FA login, the console, the banner's countdown, the way out."""

from __future__ import annotations

import re

import pyotp
import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import Role, TOTPDevice
from accounts.support import grant_support_access
from tests.cast import PASSWORD, make_account, make_user
from tests.support.browser import chromium_page

pytestmark = [pytest.mark.browser]


@pytest.mark.django_db(transaction=True)
def test_staff_enter_an_account_as_a_member_see_the_banner_count_down_and_leave(live_server):
    staff = make_user("sam@bluespark.test", full_name="Sam Support", is_staff=True)
    secret = pyotp.random_base32()
    TOTPDevice.objects.create(user=staff, secret=secret, confirmed_at=timezone.now())
    owner = make_user("olga@florist.test", full_name="Olga Owner")
    member = make_user("mo@florist.test", full_name="Mo Member")
    account = make_account("Olga's Florist", {owner: Role.OWNER, member: Role.EDITOR})
    grant_support_access(account, access="read_only", days=1, ticket="T-42", granted_by=owner)
    base = live_server.url

    with chromium_page() as (page, problems):
        page.goto(base + reverse("accounts:login"))
        page.get_by_label("Email").fill("sam@bluespark.test")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.get_by_label("Authentication code").fill(pyotp.TOTP(secret).now())
        page.get_by_role("button", name="Verify").click()

        page.get_by_role("link", name="Staff console").click()
        page.get_by_label("Account name or id").fill("florist")
        page.get_by_role("button", name="Search").click()
        page.get_by_role("link", name="Olga's Florist").click()
        expect(page.get_by_text("Support access is granted (read only)")).to_be_visible()
        page.get_by_label("Act as").select_option(label="Mo Member")
        page.get_by_label("Reason").fill("Preview of the spring campaign is blank")
        page.get_by_role("button", name="Start support session").click()

        expect(page.get_by_role("heading", name="Olga's Florist")).to_be_visible()
        banner = page.locator(".support-banner")
        expect(banner).to_contain_text("Sam Support acting as Mo Member in Olga's Florist (read only)")
        # The countdown is our script (allowed by the CSP), ticking in minutes and seconds.
        expect(page.locator(".support-countdown")).to_have_text(re.compile(r"^(59|60) min \d\d s$"))
        first = page.locator(".support-countdown").inner_text()
        expect(page.locator(".support-countdown")).not_to_have_text(first, timeout=3000)

        page.get_by_role("link", name="Campaigns").click()
        expect(page.locator(".support-banner")).to_be_visible()
        page.get_by_role("button", name="End support session").click()
        expect(page.get_by_role("heading", name="Staff console")).to_be_visible()
        expect(page.get_by_text("Your support session in Olga's Florist has ended.")).to_be_visible()
        expect(page.locator(".support-banner")).to_have_count(0)

    assert problems == []
