"""Front-end assets are our own files or packages installed from the npm registry, never a CDN."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles import finders
from django.templatetags.static import static
from django.test import SimpleTestCase
from django.urls import reverse

from tests.cast import CastTestCase

HTMX = "vendor/htmx/htmx.min.js"


class AssetReferences(HTMLParser):
    """The scripts and stylesheets a page loads."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "script" and named.get("src"):
            self.urls.append(named["src"])
        if tag == "link" and named.get("rel") == "stylesheet":
            self.urls.append(named["href"] or "")


class StaticFinderTests(SimpleTestCase):
    def test_htmx_is_found_by_the_staticfiles_finders(self):
        found = finders.find(HTMX)
        assert found, f"{HTMX} is not found: install the front-end packages (npm ci)"
        assert Path(found).stat().st_size > 10_000

    def test_htmx_comes_from_the_npm_package_pinned_in_package_json(self):
        package_dir = Path(settings.NODE_MODULES_DIR) / "htmx.org"
        assert Path(finders.find(HTMX)).resolve().is_relative_to(package_dir.resolve())
        installed = json.loads((package_dir / "package.json").read_text())
        wanted = json.loads((Path(settings.BASE_DIR) / "package.json").read_text())["dependencies"]["htmx.org"]
        assert installed["name"] == "htmx.org"
        assert installed["version"] == wanted

    def test_our_stylesheet_is_found_by_the_staticfiles_finders(self):
        assert finders.find("bluespark/app.css")


class PageAssetTests(CastTestCase):
    def test_every_asset_a_page_loads_is_served_from_our_own_static_files(self):
        self.client.force_login(self.alice, backend="django.contrib.auth.backends.ModelBackend")
        page = AssetReferences()
        page.feed(self.client.get(reverse("dashboard", kwargs={"account_id": self.acme.public_id})).content.decode())
        assert static(HTMX) in page.urls
        assert static("bluespark/app.css") in page.urls
        for url in page.urls:
            assert url.startswith(static("")), url
            assert finders.find(url.removeprefix(static(""))), url
