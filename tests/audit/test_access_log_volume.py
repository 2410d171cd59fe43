"""A hundred mixed requests: exactly one JSON access-log line each, under its request id, and no secret in any.

Every secret, credential and piece of personal data the traffic carries (in a
form, a header, a cookie, a query string or a path) is a canary that no line
may contain.
"""

from __future__ import annotations

import json
import re
import time

import pyotp
from django.conf import settings
from django.core import mail
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts import services
from accounts.models import ApiKey, ApiScope
from accounts.tenancy import account_scope
from tests.audit.test_access_log import ACCESS_LOGGER, configured_access_formatter
from tests.cast import PASSWORD, CastTestCase

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
REQUESTS = 100
LOGIN = reverse("accounts:login")
VERIFY = reverse("two_factor:verify")
RESET = reverse("accounts:password_reset")

CANARY_WRONG_PASSWORD = "canary wrong password 3e8a1f"
CANARY_NEW_PASSWORD = "canary brand new passphrase 7b2d"
CANARY_UNKNOWN_EMAIL = "canary.nobody.51c0@example.test"
CANARY_RESET_EMAIL = "canary.reset.9d4e@example.test"
CANARY_QUERY_TOKEN = "canaryquerytoken0c7e2a9b"
CANARY_BAD_API_KEY = "bsk_canaryprefix_canarysecretthatisnotakey6f1d"
CANARY_LIST_NAME = "Canary list 2a7c"
CANARY_LIST_DESCRIPTION = "canary description 8e3b"
CANARY_CAMPAIGN_SUBJECT = "Canary subject 4f9a"


def reset_link_in(message: mail.EmailMessage) -> str:
    match = re.search(r"https?://[^/\s]+(/accounts/password-reset/usr_\w+/[^\s/]+/)", message.body)
    assert match, message.body
    return match.group(1)


def a_wrong_code_for(secret: str) -> str:
    """Six digits that no time step around now accepts."""
    totp = pyotp.TOTP(secret)
    accepted = {totp.at(time.time() + 30 * step) for step in (-2, -1, 0, 1, 2)}
    return next(code for code in (f"{n:06d}" for n in range(1_000_000)) if code not in accepted)


class AccessLogVolumeTests(CastTestCase):
    def setUp(self) -> None:
        super().setUp()
        # Taken before assertLogs swaps the logger's handlers for its own.
        self.formatter = configured_access_formatter()
        self.responses: list[HttpResponse] = []
        self.cookie_values: set[str] = set()

    def send(self, client: Client, method: str, path: str, data: dict | None = None, **extra: str) -> HttpResponse:
        response = getattr(client, method)(path, data, **extra)
        self.responses.append(response)
        self.cookie_values |= {morsel.value for morsel in response.cookies.values() if morsel.value}
        return response

    def signed_in(self, user: object) -> Client:
        client = Client()
        client.force_login(user, backend=MODEL_BACKEND)
        return client

    def issue_key(self) -> tuple[ApiKey, str]:
        with account_scope(self.acme):
            issued = services.create_api_key(
                self.acme, name="volume", scopes=[ApiScope.CAMPAIGNS_READ], created_by=self.alice
            )
        return issued.key, issued.token

    def make_traffic(self, good_key: str, revoked_key: str) -> None:
        acme, globex = f"/a/{self.acme.public_id}", f"/a/{self.globex.public_id}"
        alice, bob, vic, charlie = (self.signed_in(user) for user in (self.alice, self.bob, self.vic, self.charlie))
        anonymous, sam, api = Client(), Client(), APIClient()
        bearer = {"HTTP_AUTHORIZATION": f"Bearer {good_key}"}

        # Dashboard pages, reads and writes, as several members; another account's page is a 404.
        self.send(alice, "get", f"{acme}/")
        self.send(alice, "get", f"{acme}/campaigns/?status=draft&token={CANARY_QUERY_TOKEN}")
        self.send(alice, "get", f"{acme}/campaigns/{self.acme_campaign.public_id}/")
        self.send(
            alice, "post", f"{acme}/lists/new/", {"name": CANARY_LIST_NAME, "description": CANARY_LIST_DESCRIPTION}
        )
        self.send(bob, "post", f"{acme}/campaigns/new/", {"name": "Canary launch", "subject": CANARY_CAMPAIGN_SUBJECT})
        self.send(bob, "post", f"{acme}/campaigns/new/", {"name": "", "subject": CANARY_CAMPAIGN_SUBJECT})
        self.send(vic, "get", f"{acme}/campaigns/new/")
        self.send(vic, "get", f"{acme}/lists/{self.acme_list.public_id}/")
        self.send(charlie, "get", f"{acme}/")
        self.send(charlie, "get", f"{globex}/campaigns/")
        self.send(anonymous, "get", f"{acme}/")

        # Logins that fail, a token in a query string, an unknown page.
        self.send(anonymous, "post", LOGIN, {"username": "alice@acme.test", "password": CANARY_WRONG_PASSWORD})
        self.send(anonymous, "post", LOGIN, {"username": CANARY_UNKNOWN_EMAIL, "password": PASSWORD})
        self.send(anonymous, "get", f"{LOGIN}?next=/a/&token={CANARY_QUERY_TOKEN}")
        self.send(anonymous, "get", f"/no-such-page/?token={CANARY_QUERY_TOKEN}")

        # Staff sign in with a password and a second factor, a wrong code first.
        self.send(sam, "post", LOGIN, {"username": "sam@bluespark.test", "password": PASSWORD})
        self.send(sam, "post", VERIFY, {"code": a_wrong_code_for(self.sam_totp_secret)})
        self.send(sam, "post", VERIFY, {"code": pyotp.TOTP(self.sam_totp_secret).now()})
        self.send(sam, "get", reverse("two_factor:index"))

        # Password resets: an unknown address, then a member's, whose link is used.
        with self.captureOnCommitCallbacks(execute=True):
            self.send(anonymous, "post", RESET, {"email": CANARY_RESET_EMAIL})
            self.send(anonymous, "post", RESET, {"email": "vic@acme.test"})
        link = reset_link_in(mail.outbox[-1])
        self.send(anonymous, "get", link)
        self.send(
            anonymous,
            "post",
            link,
            {"new_password": CANARY_NEW_PASSWORD, "new_password_confirmation": CANARY_NEW_PASSWORD},
        )

        # The API with a good key, a revoked one, a made-up one, none, and a key in the URL.
        campaigns = reverse("api-campaign-list")
        self.send(api, "get", campaigns, **bearer)
        self.send(api, "get", f"{campaigns}{self.acme_campaign.public_id}/", **bearer)
        self.send(api, "get", f"{campaigns}{self.globex_campaign.public_id}/", **bearer)
        self.send(api, "post", campaigns, {"name": "read scope only"}, **bearer)
        self.send(api, "get", campaigns, HTTP_AUTHORIZATION=f"Bearer {revoked_key}")
        self.send(api, "get", campaigns, HTTP_AUTHORIZATION=f"Bearer {CANARY_BAD_API_KEY}")
        self.send(api, "get", campaigns)
        self.send(api, "get", f"{campaigns}?api_key={good_key}")

        self.send(alice, "post", reverse("accounts:logout"))
        self.send(anonymous, "get", "/healthz")
        # Each scripted step answered as its comment says (so the traffic is what the scan claims it covers).
        assert [response.status_code for response in self.responses] == [
            *(200, 200, 200, 302, 302, 200, 403, 200, 404, 200, 302),
            *(200, 200, 200, 404),
            *(302, 400, 302, 200),
            *(302, 302, 200, 302),
            *(200, 200, 404, 403, 401, 401, 401, 401),
            *(302, 200),
        ]

        # The rest: ordinary traffic of several kinds, round robin.
        everyday = [
            lambda: self.send(bob, "get", f"{acme}/lists/"),
            lambda: self.send(charlie, "get", f"{globex}/"),
            lambda: self.send(api, "get", campaigns, **bearer),
            lambda: self.send(vic, "get", f"{acme}/campaigns/"),
            lambda: self.send(sam, "get", "/accounts/sessions/"),
            lambda: self.send(anonymous, "get", "/no-such-page/"),
            lambda: self.send(charlie, "post", f"{globex}/lists/new/", {"name": CANARY_LIST_NAME}),
        ]
        while len(self.responses) < REQUESTS:
            everyday[len(self.responses) % len(everyday)]()

        for client in (alice, bob, vic, charlie, anonymous, sam, api):
            self.cookie_values |= {morsel.value for morsel in client.cookies.values() if morsel.value}

    def test_a_hundred_mixed_requests_make_a_hundred_json_lines_with_no_secret_in_any(self) -> None:
        good, good_key = self.issue_key()
        revoked, revoked_key = self.issue_key()
        with account_scope(self.acme):
            services.revoke_api_key(self.acme, revoked)

        with self.assertLogs(ACCESS_LOGGER, "INFO") as logs:
            self.make_traffic(good_key, revoked_key)

        assert len(self.responses) == REQUESTS
        assert len(logs.records) == REQUESTS
        formatted = [self.formatter.format(record) for record in logs.records]
        lines = [json.loads(text) for text in formatted]
        assert all("\n" not in text for text in formatted)
        assert [line["request_id"] for line in lines] == [response["X-Request-ID"] for response in self.responses]
        assert [line["status"] for line in lines] == [response.status_code for response in self.responses]
        assert all("?" not in line["path"] for line in lines)
        assert all({"acting_as", "support_session", "user", "account", "api_key"} <= line.keys() for line in lines)
        # The traffic was what it claims to be, so the scan below scans something.
        statuses = {line["status"] for line in lines}
        assert {200, 302, 400, 401, 403, 404} <= statuses, statuses
        assert {line["api_key"] for line in lines} >= {None, good.public_id}
        assert {line["user"] for line in lines} >= {self.alice.public_id, self.sam.public_id, self.charlie.public_id}
        assert len(mail.outbox) == 1

        assert self.session_cookie_values(), "no session cookie was set: the scan would prove nothing about them"
        canaries = self.canaries(good_key, revoked_key, reset_link_in(mail.outbox[-1]))
        log_text = "\n".join(formatted + [repr(vars(record)) for record in logs.records])
        leaked = sorted(canary for canary in canaries if canary in log_text or canary.lower() in log_text.lower())
        assert leaked == []

    def session_cookie_values(self) -> set[str]:
        names = {settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME}
        values = set()
        for response in self.responses:
            values |= {morsel.value for name, morsel in response.cookies.items() if name in names and morsel.value}
        return values

    def canaries(self, good_key: str, revoked_key: str, reset_link: str) -> set[str]:
        reset_token = reset_link.rstrip("/").rsplit("/", 1)[1]
        key_secrets = {key.split("_", 2)[2] for key in (good_key, revoked_key, CANARY_BAD_API_KEY)}
        people = (self.alice, self.bob, self.vic, self.charlie, self.sam)
        return {
            good_key,
            revoked_key,
            CANARY_BAD_API_KEY,
            *key_secrets,
            PASSWORD,
            CANARY_WRONG_PASSWORD,
            CANARY_NEW_PASSWORD,
            CANARY_UNKNOWN_EMAIL,
            CANARY_RESET_EMAIL,
            *(person.email for person in people),
            *(person.full_name for person in people),
            self.sam_totp_secret,
            CANARY_QUERY_TOKEN,
            reset_token,
            CANARY_LIST_NAME,
            CANARY_LIST_DESCRIPTION,
            CANARY_CAMPAIGN_SUBJECT,
            *self.cookie_values,
        }
