"""The API docs render in a real Chromium under the real CSP, with nothing refused."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.support.browser import chromium_page

pytestmark = [pytest.mark.browser]


@pytest.mark.django_db(transaction=True)
def test_the_api_docs_render_without_a_csp_violation(live_server):
    with chromium_page() as (page, problems):
        page.goto(live_server.url + "/api/docs/")
        expect(page.get_by_role("heading", name="Bluespark API")).to_be_visible()
        expect(page.locator(".opblock-tag", has_text="contacts").first).to_be_visible()
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")

    assert problems == []
    assert background == "rgb(250, 250, 250)"  # the page's own style applied, from its file
