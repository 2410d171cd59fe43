"""The REST API's plumbing: schema and docs, problem+json errors, tenancy, cursor pages.

API keys are not built yet, so authenticated calls go through the real views
mounted in ``tests.support.urls`` with ``TestAccountAuthentication``.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import time_machine
import yaml
from django.db.models import QuerySet
from django.http import HttpResponse
from django.test import override_settings
from drf_spectacular.validation import validate_schema
from rest_framework import filters

from accounts.models import Account
from accounts.rest import TenantAPIView
from accounts.tenancy import account_scope
from bluespark.cursors import open_position, seal_position
from bluespark.rest import PROBLEM_CONTENT_TYPE
from campaigns.models import Campaign
from campaigns.services import create_campaign
from tests.cast import CastTestCase
from tests.support.api_auth import ACCOUNT_HEADER

PROBLEM_KEYS = {"type", "title", "status", "detail", "instance"}
TEST_API = "/test-api/campaigns/"
MADE_UP_CAMPAIGN_ID = "cmp_" + "a" * 26


def as_account(account: Account | str) -> dict[str, str]:
    public_id = account if isinstance(account, str) else account.public_id
    return {"headers": {ACCOUNT_HEADER: public_id}}


class AssetReferences(HTMLParser):
    """Every URL a page makes the browser fetch (scripts, stylesheets, icons, images)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        for attribute in ("src", "href"):
            if named.get(attribute):
                self.urls.append(named[attribute] or "")


class ProblemAssertions(CastTestCase):
    def assert_problem(self, response: HttpResponse, status: int) -> dict[str, Any]:
        self.assertEqual(response.status_code, status, response.content)
        self.assertEqual(response["Content-Type"], PROBLEM_CONTENT_TYPE)
        problem = json.loads(response.content)
        self.assertLessEqual(PROBLEM_KEYS, set(problem), problem)
        self.assertEqual(problem["status"], status)
        self.assertTrue(problem["type"].startswith("https://"), problem["type"])
        self.assertEqual(problem["instance"], response.wsgi_request.path)
        self.assertEqual(problem["request_id"], response["X-Request-ID"])
        return problem


class SchemaTests(CastTestCase):
    def test_the_schema_is_valid_openapi_3_with_the_campaign_paths_as_json(self) -> None:
        response = self.client.get("/api/v1/schema/?format=json")

        self.assertEqual(response.status_code, 200)
        self.assertIn("json", response["Content-Type"])
        schema = json.loads(response.content)
        self.assertTrue(schema["openapi"].startswith("3."), schema["openapi"])
        validate_schema(schema)
        self.assertIn("get", schema["paths"]["/api/v1/campaigns/"])
        self.assertIn("get", schema["paths"]["/api/v1/campaigns/{public_id}/"])

    def test_the_schema_is_served_as_yaml_by_default(self) -> None:
        response = self.client.get("/api/v1/schema/")

        self.assertEqual(response.status_code, 200)
        self.assertTrue(response["Content-Type"].startswith("application/vnd.oai.openapi"), response["Content-Type"])
        schema = yaml.safe_load(response.content)
        self.assertTrue(schema["openapi"].startswith("3."))
        validate_schema(schema)
        self.assertIn("/api/v1/campaigns/", schema["paths"])


class SwaggerDocsTests(CastTestCase):
    # The suite runs without collectstatic; WhiteNoise then serves from the finders,
    # which hold exactly what collectstatic would collect.
    @override_settings(WHITENOISE_USE_FINDERS=True, WHITENOISE_AUTOREFRESH=True)
    def test_the_docs_load_only_same_origin_assets_that_exist(self) -> None:
        response = self.client.get("/api/docs/")

        self.assertEqual(response.status_code, 200)
        html = response.content.decode()
        self.assertIn('id="swagger-ui"', html)
        page = AssetReferences()
        page.feed(html)
        self.assertTrue(any("swagger-ui-bundle" in url for url in page.urls), page.urls)
        for url in page.urls:
            with self.subTest(url=url):
                parts = urlsplit(url)
                self.assertEqual((parts.scheme, parts.netloc), ("", ""), "the docs must not load from another host")
                asset = self.client.get(url)
                self.assertEqual(asset.status_code, 200)
                body = b"".join(asset.streaming_content) if asset.streaming else asset.content
                self.assertGreater(len(body), 0)
        self.assertEqual(re.findall(r"https?://[^\s\"'<>]+", html), [])
        # The CSP allows no inline style: the page's own style comes from a file.
        self.assertNotIn("<style", html)
        self.assertTrue(any(url.endswith("api-docs.css") for url in page.urls), page.urls)

    def test_the_docs_script_points_at_our_own_schema(self) -> None:
        script = self.client.get("/api/docs/?script=").content.decode()

        self.assertIn('"/api/v1/schema/"', script)
        self.assertEqual(re.findall(r"https?://[^\s\"'`<>]+", script), [])


class UnauthenticatedAPITests(ProblemAssertions):
    def test_the_campaign_list_asks_for_credentials_with_a_problem_document(self) -> None:
        response = self.client.get("/api/v1/campaigns/")

        problem = self.assert_problem(response, 401)
        self.assertEqual(problem["title"], "Authentication required")
        self.assertTrue(problem["detail"])
        self.assertEqual(response["WWW-Authenticate"], 'Bearer realm="api"')

    def test_a_campaign_detail_asks_for_credentials_before_saying_whether_it_exists(self) -> None:
        real = self.client.get(f"/api/v1/campaigns/{self.acme_campaign.public_id}/")
        made_up = self.client.get(f"/api/v1/campaigns/{MADE_UP_CAMPAIGN_ID}/")

        self.assert_problem(real, 401)
        self.assert_problem(made_up, 401)

    def test_an_unknown_api_route_is_a_plain_404(self) -> None:
        self.assertEqual(self.client.get("/api/v1/no-such-thing/").status_code, 404)


@override_settings(ROOT_URLCONF="tests.support.urls")
class TenantAPITests(ProblemAssertions):
    def test_an_account_sees_only_its_own_campaigns(self) -> None:
        with account_scope(self.globex):
            create_campaign(self.globex, name="Globex second")

        response = self.client.get(TEST_API, **as_account(self.acme))

        self.assertEqual(response.status_code, 200)
        self.assertEqual([row["id"] for row in response.json()["results"]], [self.acme_campaign.public_id])
        self.assertEqual(response.json()["results"][0]["name"], "Acme launch")

    def test_an_account_reads_its_own_campaign(self) -> None:
        response = self.client.get(f"{TEST_API}{self.globex_campaign.public_id}/", **as_account(self.globex))

        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["id"], self.globex_campaign.public_id)

    def test_another_accounts_campaign_is_the_same_404_as_a_made_up_id(self) -> None:
        foreign = self.client.get(f"{TEST_API}{self.globex_campaign.public_id}/", **as_account(self.acme))
        made_up = self.client.get(f"{TEST_API}{MADE_UP_CAMPAIGN_ID}/", **as_account(self.acme))

        foreign_problem = self.assert_problem(foreign, 404)
        made_up_problem = self.assert_problem(made_up, 404)
        for problem in (foreign_problem, made_up_problem):
            del problem["instance"], problem["request_id"]
        self.assertEqual(foreign_problem, made_up_problem)
        self.assertEqual(
            {k: v for k, v in foreign.headers.items() if k != "X-Request-ID"},
            {k: v for k, v in made_up.headers.items() if k != "X-Request-ID"},
        )

    def test_credentials_that_carry_no_account_are_refused_with_401(self) -> None:
        for headers in (as_account("acc_nobody"), {}):
            with self.subTest(headers=headers):
                response = self.client.get(TEST_API, **headers)

                self.assert_problem(response, 401)
                self.assertEqual(response["WWW-Authenticate"], 'Bearer realm="api"')

    def test_the_cursor_pages_walk_every_campaign_once_newest_first(self) -> None:
        with account_scope(self.acme):
            for number in range(120):
                create_campaign(self.acme, name=f"Campaign {number}")
            expected = list(Campaign.objects.order_by("-created_at", "-id").values_list("public_id", flat=True))
        self.assertEqual(len(expected), 121)

        seen: list[str] = []
        page_sizes = []
        url: str | None = f"{TEST_API}?limit=50"
        while url:
            response = self.client.get(url, **as_account(self.acme))
            self.assertEqual(response.status_code, 200, response.content)
            page = response.json()
            seen += [row["id"] for row in page["results"]]
            page_sizes.append(len(page["results"]))
            url = page["next"]
            if url:
                self.assertEqual(set(parse_qs(urlsplit(url).query)), {"cursor", "limit"})

        self.assertEqual(page_sizes, [50, 50, 21])
        self.assertEqual(seen, expected)

    def walk(self, url: str | None, link: str) -> list[list[str]]:
        """The pages from ``url`` on, following each page's ``link`` (next or previous) to its end."""
        pages = []
        while url:
            response = self.client.get(url, **as_account(self.acme))
            self.assertEqual(response.status_code, 200, response.content)
            pages.append([row["id"] for row in response.json()["results"]])
            url = response.json()[link]
            self.assertLess(len(pages), 20, "the pages never end")
        return pages

    def test_rows_sharing_a_time_are_each_listed_once_both_ways(self) -> None:
        # An import writes a chunk of thousands of rows with one created_at. DRF's cursor
        # stepped over such ties with an offset capped at 1,000, and its pages repeated past it.
        with account_scope(self.acme), time_machine.travel(datetime(2026, 5, 1, tzinfo=UTC), tick=False):
            for number in range(119):
                create_campaign(self.acme, name=f"Campaign {number}")
        with account_scope(self.acme):
            create_campaign(self.acme, name="The newest")
            expected = list(Campaign.objects.order_by("-created_at", "-id").values_list("public_id", flat=True))

        forward = self.walk(f"{TEST_API}?limit=25", "next")
        self.assertEqual([len(page) for page in forward], [25, 25, 25, 25, 21])
        self.assertEqual(sum(forward, []), expected)

        last = self.client.get(f"{TEST_API}?limit=25", **as_account(self.acme)).json()
        while last["next"]:
            last = self.client.get(last["next"], **as_account(self.acme)).json()
        backward = self.walk(last["previous"], "previous")
        self.assertEqual(backward, forward[-2::-1])

    def test_a_step_back_past_deleted_rows_leads_to_the_first_page(self) -> None:
        with account_scope(self.acme):
            for number in range(4):
                create_campaign(self.acme, name=f"Campaign {number}")
        first = self.client.get(f"{TEST_API}?limit=2", **as_account(self.acme)).json()
        second = self.client.get(first["next"], **as_account(self.acme)).json()
        with account_scope(self.acme):
            Campaign.objects.filter(public_id__in=[row["id"] for row in first["results"]]).delete()

        back = self.client.get(second["previous"], **as_account(self.acme)).json()

        self.assertEqual((back["results"], back["previous"]), ([], None))
        self.assertEqual(parse_qs(urlsplit(back["next"]).query), {"limit": ["2"]})
        again = self.client.get(back["next"], **as_account(self.acme)).json()
        self.assertEqual([row["id"] for row in again["results"]], [row["id"] for row in second["results"]])

    def test_the_page_size_is_capped(self) -> None:
        with account_scope(self.acme):
            for number in range(205):
                create_campaign(self.acme, name=f"Campaign {number}")

        response = self.client.get(f"{TEST_API}?limit=100000", **as_account(self.acme))

        self.assertEqual(len(response.json()["results"]), 200)

    def test_a_tampered_cursor_is_a_problem_not_a_crash(self) -> None:
        with account_scope(self.acme):
            for number in range(3):
                create_campaign(self.acme, name=f"Campaign {number}")
        good = parse_qs(urlsplit(self.client.get(f"{TEST_API}?limit=2", **as_account(self.acme)).json()["next"]).query)
        cursor = good["cursor"][0]
        flipped = cursor[:10] + ("A" if cursor[10] != "A" else "B") + cursor[11:]
        moment = datetime(2026, 5, 1, tzinfo=UTC)

        for tampered in (
            "not-base64!",
            base64.b64encode(b"o=-5&p=2026-05-01").decode(),  # DRF's form, in clear
            base64.urlsafe_b64encode(f"n|{moment.isoformat()}|1".encode()).decode(),  # ours, in clear
            flipped,
            cursor[:-4],
            cursor + "AAAA",
            seal_position("contacts", (moment, 1)),  # the dashboard's contacts page
            seal_position("api /api/v1/audit-events/", (moment, 1), "n"),  # another endpoint's
            seal_position(f"api {TEST_API}", (moment, 1), "x"),  # no direction
            seal_position(f"api {TEST_API}", (moment.replace(tzinfo=None), 1), "n"),  # no time zone
            seal_position(f"api {TEST_API}", (moment, 0), "n"),
            seal_position(f"api {TEST_API}", (moment, 2**63), "p"),  # no bigint
            "é" * 20,
            "A" * 5000,
        ):
            with self.subTest(cursor=tampered[:40]):
                response = self.client.get(TEST_API, {"cursor": tampered}, **as_account(self.acme))

                problem = self.assert_problem(response, 404)
                self.assertEqual(problem["detail"], "Invalid cursor")

    def test_a_cursor_shows_neither_the_ids_nor_the_times_it_holds(self) -> None:
        with account_scope(self.acme):
            for number in range(3):
                create_campaign(self.acme, name=f"Campaign {number}")
            second = Campaign.objects.order_by("-created_at", "-id")[1]
        first = self.client.get(f"{TEST_API}?limit=2", **as_account(self.acme)).json()
        cursor = parse_qs(urlsplit(first["next"]).query)["cursor"][0]

        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        # Any clear form would hold the time: its 16 characters cannot turn up in ciphertext by chance.
        # (The id alone is too short to test so: a digit or two turn up in random bytes.)
        self.assertNotIn(second.created_at.isoformat()[:16].encode(), raw)
        self.assertNotEqual(
            cursor,
            parse_qs(urlsplit(self.client.get(f"{TEST_API}?limit=2", **as_account(self.acme)).json()["next"]).query)[
                "cursor"
            ][0],
        )
        self.assertEqual(open_position(f"api {TEST_API}", cursor), ("n", (second.created_at, second.pk)))
        with override_settings(SECRET_KEY="another secret key, after a rotation, " * 2):
            self.assertIsNone(open_position(f"api {TEST_API}", cursor))

    def test_a_full_page_costs_a_constant_number_of_queries(self) -> None:
        with account_scope(self.acme):
            for number in range(60):
                create_campaign(self.acme, name=f"Campaign {number}")

        # One to authenticate (the test scheme looks the account up), one for the page.
        with self.assertNumQueries(2):
            full = self.client.get(TEST_API, **as_account(self.acme))
        with self.assertNumQueries(2):
            single = self.client.get(TEST_API, **as_account(self.globex))

        self.assertEqual(len(full.json()["results"]), 50)
        self.assertEqual(len(single.json()["results"]), 1)

    def test_the_request_is_logged_under_the_credentials_account(self) -> None:
        with self.assertLogs("bluespark.access", "INFO") as logs:
            self.client.get(TEST_API, **as_account(self.acme))

        self.assertEqual([record.account for record in logs.records], [self.acme.public_id])


@override_settings(ROOT_URLCONF="tests.support.urls")
class ValidationProblemTests(ProblemAssertions):
    def test_invalid_fields_come_back_as_an_errors_map(self) -> None:
        response = self.client.post(
            "/test-api/probe/", {"name": "x" * 11, "reply_to": "not an address"}, content_type="application/json"
        )

        problem = self.assert_problem(response, 400)
        self.assertEqual(problem["title"], "Invalid request")
        self.assertEqual(problem["detail"], "The request has invalid fields.")
        self.assertEqual(set(problem["errors"]), {"name", "reply_to"})
        self.assertTrue(all(isinstance(messages, list) and messages for messages in problem["errors"].values()))

    def test_a_body_that_is_not_an_object_is_a_non_field_error(self) -> None:
        response = self.client.post("/test-api/probe/", [1, 2], content_type="application/json")

        problem = self.assert_problem(response, 400)
        self.assertEqual(list(problem["errors"]), ["non_field_errors"])

    def test_an_error_that_names_no_field_is_a_non_field_error(self) -> None:
        response = self.client.post("/test-api/refuse/", {}, content_type="application/json")

        problem = self.assert_problem(response, 400)
        self.assertEqual(problem["errors"], {"non_field_errors": ["A sent campaign cannot be sent again."]})

    def test_malformed_json_is_a_problem_too(self) -> None:
        response = self.client.post("/test-api/probe/", "{not json", content_type="application/json")

        problem = self.assert_problem(response, 400)
        self.assertNotIn("errors", problem)

    def test_valid_fields_pass(self) -> None:
        response = self.client.post(
            "/test-api/probe/", {"name": "ok", "reply_to": "team@acme.test"}, content_type="application/json"
        )

        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), {"name": "ok", "reply_to": "team@acme.test"})


class TenantAPIViewContractTests(CastTestCase):
    def test_it_refuses_a_subclass_that_overrides_get_queryset(self) -> None:
        with self.assertRaisesMessage(TypeError, "WideOpenAPI overrides get_queryset"):

            class WideOpenAPI(TenantAPIView):
                model = Campaign

                def get_queryset(self) -> QuerySet:
                    return Campaign.objects_unscoped_dangerous.all()

    def test_it_refuses_a_subclass_that_sets_a_queryset(self) -> None:
        with self.assertRaisesMessage(TypeError, "PresetAPI sets queryset"):

            class PresetAPI(TenantAPIView):
                model = Campaign
                queryset = Campaign.objects_unscoped_dangerous.all()

    def test_it_accepts_a_subclass_that_narrows_in_filter_queryset(self) -> None:
        class OrderedAPI(TenantAPIView):
            model = Campaign
            scope_resource = "campaigns"
            filter_backends = [filters.OrderingFilter]

        self.assertEqual(OrderedAPI.model, Campaign)

    def test_it_refuses_a_subclass_that_names_no_scope(self) -> None:
        with self.assertRaisesMessage(TypeError, "names no scope_resource"):

            class UnguardedAPI(TenantAPIView):
                model = Campaign
