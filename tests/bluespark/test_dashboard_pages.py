"""The dashboard's pages: what they show, to whom, and that the CSP can stay strict."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from django.conf import settings
from django.core import mail
from django.db import connection
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.views.defaults import server_error

from accounts.models import Membership, Role
from accounts.tenancy import account_scope
from campaigns.models import Campaign
from campaigns.services import create_campaign
from contacts.services import create_mailing_list
from tests.cast import PASSWORD, CastTestCase

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"

# Every template a view renders; the page walk below must render each of them.
PAGE_TEMPLATES = {
    "404.html",
    "403.html",
    "403_csrf.html",
    "accounts/login.html",
    "accounts/sign_up.html",
    "accounts/sign_up_sent.html",
    "accounts/activate.html",
    "accounts/home.html",
    "accounts/locked_out.html",
    "bluespark/dashboard.html",
    "contacts/list_index.html",
    "contacts/list_detail.html",
    "contacts/list_form.html",
    "campaigns/campaign_index.html",
    "campaigns/campaign_detail.html",
    "campaigns/campaign_form.html",
}


class PageOutline(HTMLParser):
    """What a page holds that the tests look at: inline code, links, and marked elements."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.inline_code: list[str] = []
        self.links: list[str] = []
        self.classes: set[str] = set()
        self.forms: list[dict[str, str]] = []
        self.assets: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {name.lower(): value or "" for name, value in attrs}
        if tag == "script" and "src" not in named:
            self.inline_code.append("<script> without src")
        if tag == "style":
            self.inline_code.append("<style> element")
        for name, value in named.items():
            if name == "style":
                self.inline_code.append(f"style= on <{tag}>")
            if name.startswith("on"):
                self.inline_code.append(f"{name}= on <{tag}>")
            if name in ("href", "src", "action") and value.strip().lower().startswith("javascript:"):
                self.inline_code.append(f"javascript: URL on <{tag}>")
        if tag == "a" and "href" in named:
            self.links.append(named["href"])
        if tag == "form":
            self.forms.append(named)
        if tag == "script" and "src" in named:
            self.assets.append(named["src"])
        if tag == "link" and named.get("rel") == "stylesheet":
            self.assets.append(named["href"])
        self.classes.update(named.get("class", "").split())

    handle_startendtag = handle_starttag


def outline(response: HttpResponse) -> PageOutline:
    return PageOutline(response.content.decode())


def without_csrf_tokens(response: HttpResponse) -> str:
    """The page with its CSRF tokens blanked: each render masks the token afresh."""
    return re.sub(r'("X-CSRFToken": "|name="csrfmiddlewaretoken" value=")[^"]+"', r'\1"', response.content.decode())


class DashboardPageTests(CastTestCase):
    def setUp(self) -> None:
        self.client.force_login(self.alice, backend=MODEL_BACKEND)

    def acme_url(self, name: str, **kwargs: str) -> str:
        return reverse(name, kwargs={"account_id": self.acme.public_id, **kwargs})

    def test_the_dashboard_shows_the_accounts_recent_campaigns_and_lists(self):
        response = self.client.get(self.acme_url("dashboard"))
        assert response.status_code == 200
        page = outline(response)
        assert "Acme launch" in response.content.decode()
        assert "Acme customers" in response.content.decode()
        assert "Globex" not in response.content.decode()
        assert self.acme_url("campaigns:detail", campaign_id=self.acme_campaign.public_id) in page.links
        assert self.acme_url("contacts:list_detail", list_id=self.acme_list.public_id) in page.links

    def test_the_navigation_links_the_accounts_sections_and_marks_the_current_one(self):
        response = self.client.get(self.acme_url("campaigns:index"))
        html = response.content.decode()
        page = outline(response)
        for name in ("dashboard", "campaigns:index", "contacts:list_index"):
            assert self.acme_url(name) in page.links
        assert f'href="{self.acme_url("campaigns:index")}" aria-current="page"' in html
        assert f'href="{self.acme_url("dashboard")}" aria-current="page"' not in html

    def test_an_owner_and_an_editor_get_links_to_create_but_a_viewer_does_not(self):
        create_links = {self.acme_url("campaigns:create"), self.acme_url("contacts:list_create")}
        for user, expected in ((self.alice, True), (self.bob, True), (self.vic, False)):
            self.client.force_login(user, backend=MODEL_BACKEND)
            links = set(outline(self.client.get(self.acme_url("dashboard"))).links)
            links |= set(outline(self.client.get(self.acme_url("campaigns:index"))).links)
            links |= set(outline(self.client.get(self.acme_url("contacts:list_index"))).links)
            assert (create_links <= links) is expected, user.email
            assert (create_links & links == set()) is not expected, user.email

    def test_the_campaign_index_lists_the_accounts_campaigns_and_filters_by_status(self):
        with account_scope(self.acme):
            create_campaign(self.acme, name="Autumn digest")
            Campaign.objects.filter(name="Autumn digest").update(status=Campaign.Status.SENT)
        everything = self.client.get(self.acme_url("campaigns:index"))
        assert everything.status_code == 200
        assert "Acme launch" in everything.content.decode()
        assert "Autumn digest" in everything.content.decode()
        assert "Globex launch" not in everything.content.decode()
        links = outline(everything).links
        for status in Campaign.Status.values:
            assert f"{self.acme_url('campaigns:index')}?status={status}" in links

        sent = self.client.get(self.acme_url("campaigns:index"), {"status": "sent"})
        assert "Autumn digest" in sent.content.decode()
        assert "Acme launch" not in sent.content.decode()
        assert f'href="{self.acme_url("campaigns:index")}?status=sent" aria-current="page"' in sent.content.decode()

        scheduled = self.client.get(self.acme_url("campaigns:index"), {"status": "scheduled"})
        assert "No campaigns with this status." in scheduled.content.decode()

    def test_the_campaign_detail_offers_an_edit_link_only_while_a_draft_and_to_editors(self):
        detail = self.acme_url("campaigns:detail", campaign_id=self.acme_campaign.public_id)
        edit = self.acme_url("campaigns:edit", campaign_id=self.acme_campaign.public_id)
        response = self.client.get(detail)
        assert response.status_code == 200
        assert "Acme launch" in response.content.decode()
        assert edit in outline(response).links

        self.client.force_login(self.vic, backend=MODEL_BACKEND)
        assert edit not in outline(self.client.get(detail)).links

        self.client.force_login(self.alice, backend=MODEL_BACKEND)
        with account_scope(self.acme):
            Campaign.objects.filter(pk=self.acme_campaign.pk).update(status=Campaign.Status.SENT)
        assert edit not in outline(self.client.get(detail)).links

    def test_the_campaign_form_labels_every_field_and_shows_errors_beside_them(self):
        response = self.client.post(self.acme_url("campaigns:create"), {"name": "", "subject": "Hi"})
        assert response.status_code == 200
        html = response.content.decode()
        assert '<label for="id_name">' in html
        assert '<label for="id_subject">' in html
        assert 'id="id_name_error"' in html
        assert 'aria-invalid="true"' in html
        assert 'aria-describedby="id_name_error"' in html

    def test_editing_a_sent_campaign_shows_why_as_a_form_error(self):
        with account_scope(self.acme):
            Campaign.objects.filter(pk=self.acme_campaign.pk).update(status=Campaign.Status.SENT)
        url = self.acme_url("campaigns:edit", campaign_id=self.acme_campaign.public_id)
        response = self.client.post(url, {"name": "Renamed", "subject": ""})
        assert response.status_code == 200
        assert "form-errors" in outline(response).classes
        assert "Only a draft campaign can be edited." in response.content.decode()

    def test_the_list_pages_show_the_accounts_lists(self):
        index = self.client.get(self.acme_url("contacts:list_index"))
        assert index.status_code == 200
        assert "Acme customers" in index.content.decode()
        assert "Globex customers" not in index.content.decode()
        detail = self.client.get(self.acme_url("contacts:list_detail", list_id=self.acme_list.public_id))
        assert detail.status_code == 200
        assert "Acme customers" in detail.content.decode()
        assert self.acme_list.public_id in detail.content.decode()

    def test_creating_a_list_lands_on_it_with_a_success_message(self):
        response = self.client.post(
            self.acme_url("contacts:list_create"), {"name": "VIPs", "description": "Our best"}, follow=True
        )
        assert response.status_code == 200
        assert "message-success" in outline(response).classes
        assert "List “VIPs” created." in response.content.decode()
        assert "<h1>VIPs</h1>" in response.content.decode()

    def test_the_account_switcher_lists_every_account_of_a_member_of_two(self):
        Membership.objects.create(account=self.globex, user=self.alice, role=Role.VIEWER)
        response = self.client.get(self.acme_url("dashboard"))
        page = outline(response)
        assert "switcher" in page.classes
        acme = reverse("dashboard", kwargs={"account_id": self.acme.public_id})
        globex = reverse("dashboard", kwargs={"account_id": self.globex.public_id})
        assert acme in page.links and globex in page.links
        assert f'href="{acme}" aria-current="true"' in response.content.decode()

        home = self.client.get(reverse("accounts:home"))
        assert home.status_code == 200
        assert {acme, globex} <= set(outline(home).links)

    def test_the_switcher_of_a_member_of_one_account_lists_no_other(self):
        page = outline(self.client.get(self.acme_url("dashboard")))
        assert reverse("dashboard", kwargs={"account_id": self.globex.public_id}) not in page.links

    def test_a_user_without_an_account_is_told_so(self):
        self.client.force_login(self.sam, backend=MODEL_BACKEND)
        response = self.client.get(reverse("accounts:home"))
        assert response.status_code == 200
        assert "You do not belong to any account yet." in response.content.decode()
        assert "switcher" not in outline(response).classes

    def test_the_top_bar_names_the_user_and_logs_out_with_a_post_form(self):
        response = self.client.get(self.acme_url("dashboard"))
        html = response.content.decode()
        assert "alice@acme.test" in html and "Alice Owner" in html
        logout_forms = [form for form in outline(response).forms if form.get("action") == reverse("accounts:logout")]
        assert len(logout_forms) == 1
        assert logout_forms[0]["method"] == "post"
        assert 'name="csrfmiddlewaretoken"' in html

    def test_htmx_requests_carry_the_csrf_token_from_the_page(self):
        html = self.client.get(self.acme_url("dashboard")).content.decode()
        assert """<body hx-headers='{"X-CSRFToken": \"""" in html

    def test_the_login_page_has_no_account_navigation(self):
        self.client.logout()
        response = self.client.get(reverse("accounts:login"))
        assert response.status_code == 200
        page = outline(response)
        assert not {"sidenav", "switcher", "logout-form"} & page.classes
        assert reverse("accounts:sign_up") in page.links
        assert '<label for="id_username">Email:</label>' in response.content.decode()

    def test_pages_send_a_content_security_policy_without_unsafe_inline(self):
        for url in (reverse("accounts:login"), self.acme_url("dashboard"), self.acme_url("campaigns:index")):
            policy = self.client.get(url)["Content-Security-Policy"]
            directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
            assert directives["script-src"] == "'self'", url
            assert directives["style-src"] == "'self'", url
            assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, url

    def test_no_page_has_inline_script_inline_style_or_event_handler_attributes(self):
        pages = self.walk_every_page()
        rendered = {template.name for _, response in pages for template in response.templates}
        assert PAGE_TEMPLATES <= rendered, PAGE_TEMPLATES - rendered
        for label, response in pages:
            assert response["Content-Security-Policy"], label
            assert outline(response).inline_code == [], label
        assert outline(self.server_error_page()).inline_code == []

    def test_the_server_error_page_renders_without_the_database_or_a_request_context(self):
        with self.assertNumQueries(0):
            response = self.server_error_page()
        assert response.status_code == 500
        assert "Something went wrong" in response.content.decode()
        assert "/static/bluespark/app.css" in outline(response).assets

    def test_the_error_pages_say_what_happened(self):
        missing = self.client.get(self.acme_url("campaigns:detail", campaign_id=self.globex_campaign.public_id))
        assert missing.status_code == 404
        assert "Page not found" in missing.content.decode()

        self.client.force_login(self.vic, backend=MODEL_BACKEND)
        forbidden = self.client.get(self.acme_url("campaigns:create"))
        assert forbidden.status_code == 403
        assert "Not allowed" in forbidden.content.decode()

        strict = Client(enforce_csrf_checks=True)
        expired = strict.post(reverse("accounts:login"), {"username": "alice@acme.test", "password": PASSWORD})
        assert expired.status_code == 403
        assert "This form has expired" in expired.content.decode()
        assert "cookie not set" not in expired.content.decode()  # the reason Django gives is not echoed

    def test_the_lockout_page_names_no_counter(self):
        self.client.logout()
        for attempt in range(settings.AXES_FAILURE_LIMIT + 1):
            response = self.client.post(
                reverse("accounts:login"),
                {"username": "alice@acme.test", "password": "wrong wrong wrong"},
                REMOTE_ADDR=f"203.0.113.{attempt + 1}",
            )
        assert response.status_code == 429
        # Without its CSRF tokens: random, they hold "IP" now and then (CI failed on one).
        html = without_csrf_tokens(response)
        assert "Too many failed attempts, try again later" in html
        for detail in ("alice@acme.test", "203.0.113", "username", "IP"):
            assert detail not in html

    def test_the_sign_up_answer_is_the_same_for_a_known_address_and_its_notice_links_to_login(self):
        self.client.logout()
        form = {"full_name": "A", "account_name": "Shop", "password": "a brand new passphrase 9"}
        with self.captureOnCommitCallbacks(execute=True):
            known = self.client.post(reverse("accounts:sign_up"), {**form, "email": "alice@acme.test"}, follow=True)
            unknown = self.client.post(reverse("accounts:sign_up"), {**form, "email": "dora@shop.test"}, follow=True)
        assert known.redirect_chain == unknown.redirect_chain == [(reverse("accounts:sign_up_sent"), 302)]
        assert without_csrf_tokens(known) == without_csrf_tokens(unknown)
        assert "Check your email" in known.content.decode()
        notices = {message.to[0]: message.body for message in mail.outbox}
        assert "Someone tried to sign up" in notices["alice@acme.test"]
        assert settings.BASE_URL + reverse("accounts:login") in notices["alice@acme.test"]
        assert settings.BASE_URL + "/accounts/activate/" in notices["dora@shop.test"]

    def test_list_pages_run_a_fixed_number_of_queries(self):
        def count(url: str) -> int:
            with CaptureQueriesContext(connection) as queries:
                assert self.client.get(url).status_code == 200
            return len(queries)

        pages = [self.acme_url(name) for name in ("dashboard", "campaigns:index", "contacts:list_index")]
        before = [count(url) for url in pages]
        with account_scope(self.acme):
            for number in range(6):
                create_campaign(self.acme, name=f"Campaign {number}")
                create_mailing_list(self.acme, name=f"List {number}")
        assert [count(url) for url in pages] == before

    # --- the page walk -----------------------------------------------------------------

    def walk_every_page(self) -> list[tuple[str, HttpResponse]]:
        """(label, response) for every page a view renders, as each role and state sees it."""
        campaign_id = self.acme_campaign.public_id
        list_id = self.acme_list.public_id
        Membership.objects.create(account=self.globex, user=self.alice, role=Role.VIEWER)
        pages = [
            ("home", self.client.get(reverse("accounts:home"))),
            ("dashboard", self.client.get(self.acme_url("dashboard"))),
            ("campaigns", self.client.get(self.acme_url("campaigns:index"))),
            ("campaigns filtered", self.client.get(self.acme_url("campaigns:index"), {"status": "draft"})),
            ("campaign", self.client.get(self.acme_url("campaigns:detail", campaign_id=campaign_id))),
            ("new campaign", self.client.get(self.acme_url("campaigns:create"))),
            ("new campaign, errors", self.client.post(self.acme_url("campaigns:create"), {"name": ""})),
            ("edit campaign", self.client.get(self.acme_url("campaigns:edit", campaign_id=campaign_id))),
            ("lists", self.client.get(self.acme_url("contacts:list_index"))),
            ("list", self.client.get(self.acme_url("contacts:list_detail", list_id=list_id))),
            ("new list", self.client.get(self.acme_url("contacts:list_create"))),
            ("new list, errors", self.client.post(self.acme_url("contacts:list_create"), {"name": ""})),
            (
                "message",
                self.client.post(self.acme_url("contacts:list_create"), {"name": "VIPs"}, follow=True),
            ),
            ("404", self.client.get(self.acme_url("campaigns:detail", campaign_id="cmp_missing"))),
        ]
        self.client.force_login(self.vic, backend=MODEL_BACKEND)
        pages.append(("403", self.client.get(self.acme_url("campaigns:create"))))
        pages.append(("viewer dashboard", self.client.get(self.acme_url("dashboard"))))
        self.client.force_login(self.sam, backend=MODEL_BACKEND)
        pages.append(("home without accounts", self.client.get(reverse("accounts:home"))))

        self.client.logout()
        activate = reverse("accounts:activate", kwargs={"user_id": self.bob.public_id, "token": "a-b"})
        pages += [
            ("login", self.client.get(reverse("accounts:login"))),
            ("login, errors", self.client.post(reverse("accounts:login"), {"username": "x@y.test", "password": "x"})),
            ("sign-up", self.client.get(reverse("accounts:sign_up"))),
            ("sign-up, errors", self.client.post(reverse("accounts:sign_up"), {"email": "nope", "password": "1"})),
            ("sign-up sent", self.client.get(reverse("accounts:sign_up_sent"))),
            ("activate", self.client.get(activate)),
            ("activate, bad link", self.client.post(activate)),
            ("404 anonymous", self.client.get("/no/such/page/")),
            (
                "csrf failure",
                Client(enforce_csrf_checks=True).post(reverse("accounts:login"), {"username": "a@b.test"}),
            ),
        ]
        for _ in range(settings.AXES_FAILURE_LIMIT + 1):
            locked = self.client.post(
                reverse("accounts:login"), {"username": "vic@acme.test", "password": "wrong wrong wrong"}
            )
        pages.append(("locked out", locked))

        expected_status = {"404": 404, "404 anonymous": 404, "403": 403, "csrf failure": 403}
        expected_status |= {"activate, bad link": 400, "locked out": 429}
        for label, response in pages:
            assert response.status_code == expected_status.get(label, 200), (label, response.status_code)
        return pages

    def server_error_page(self) -> HttpResponse:
        """The 500 page exactly as Django renders it: no request context, no context processors."""
        return server_error(RequestFactory().get("/"))
