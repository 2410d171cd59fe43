"""The access log: one JSON line per request, under a request id, with no secrets in it."""

from __future__ import annotations

import json
import logging
import re

from django.test import Client, RequestFactory, SimpleTestCase, override_settings
from pythonjsonlogger.json import JsonFormatter

from audit.request_context import client_ip
from tests.cast import CastTestCase

ACCESS_LOGGER = "bluespark.access"
GENERATED_REQUEST_ID = re.compile(r"^req_[0-9a-f]{24}$")
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def configured_access_formatter() -> logging.Formatter:
    """The formatter of the handler that LOGGING gives the access logger (the real line's format)."""
    for handler in logging.getLogger(ACCESS_LOGGER).handlers:
        if isinstance(handler.formatter, JsonFormatter):
            return handler.formatter
    raise AssertionError(f"LOGGING gives {ACCESS_LOGGER} no JSON handler")


class AccessLogTestCase(CastTestCase):
    def setUp(self) -> None:
        super().setUp()
        # Taken before assertLogs swaps the logger's handlers for its own.
        self.formatter = configured_access_formatter()

    def logged(self, client: Client, path: str, **extra: str) -> tuple[logging.LogRecord, dict, object]:
        """Make one request; return its only access record, the record as the JSON line, and the response."""
        with self.assertLogs(ACCESS_LOGGER, "INFO") as logs:
            response = client.get(path, **extra)
        self.assertEqual(len(logs.records), 1, [record.__dict__ for record in logs.records])
        record = logs.records[0]
        return record, json.loads(self.formatter.format(record)), response


class AccessLogLineTests(AccessLogTestCase):
    def test_a_request_makes_exactly_one_line_with_its_fields(self) -> None:
        record, line, response = self.logged(self.client, "/healthz")

        self.assertEqual(line["message"], "request")
        self.assertEqual(line["level"], "INFO")
        self.assertEqual(line["logger"], ACCESS_LOGGER)
        self.assertRegex(line["request_id"], GENERATED_REQUEST_ID)
        self.assertEqual(line["request_id"], response["X-Request-ID"])
        self.assertEqual(
            {key: line[key] for key in ("method", "path", "status", "ip", "user", "account", "api_key")},
            {
                "method": "GET",
                "path": "/healthz",
                "status": 200,
                "ip": "127.0.0.1",
                "user": None,
                "account": None,
                "api_key": None,
            },
        )
        self.assertIsInstance(line["duration_ms"], float)
        self.assertGreaterEqual(line["duration_ms"], 0)
        self.assertLess(line["duration_ms"], 60_000)
        self.assertEqual(record.status, 200)

    def test_each_request_gets_its_own_request_id(self) -> None:
        first, _, first_response = self.logged(self.client, "/healthz")
        second, _, second_response = self.logged(self.client, "/healthz")

        self.assertNotEqual(first.request_id, second.request_id)
        self.assertEqual(
            [first_response["X-Request-ID"], second_response["X-Request-ID"]], [first.request_id, second.request_id]
        )

    def test_the_query_string_never_reaches_the_log(self) -> None:
        record, line, response = self.logged(self.client, "/accounts/login/?next=/secret-token-xyz")

        self.assertEqual(line["path"], "/accounts/login/")
        self.assertEqual(line["status"], response.status_code)
        self.assertNotIn("secret-token-xyz", self.formatter.format(record))
        self.assertNotIn("secret-token-xyz", repr(record.__dict__))

    def test_an_activation_token_in_the_path_is_redacted(self) -> None:
        token = "cv0k2x-4f1d2e3c5b6a79880a1b2c3d4e5f6a7b"
        path = f"/accounts/activate/{self.alice.public_id}/{token}/"

        record, line, _ = self.logged(self.client, path)

        self.assertEqual(line["path"], f"/accounts/activate/{self.alice.public_id}/[redacted]/")
        self.assertNotIn(token, self.formatter.format(record))

    def test_a_signed_in_user_is_named_by_public_id_never_by_email(self) -> None:
        self.client.force_login(self.alice, backend=MODEL_BACKEND)

        record, line, _ = self.logged(self.client, "/healthz")

        self.assertEqual(line["user"], self.alice.public_id)
        formatted = self.formatter.format(record)
        self.assertNotIn(self.alice.email, formatted)
        self.assertNotIn("Alice Owner", formatted)

    def test_a_dashboard_request_names_the_account_by_public_id(self) -> None:
        self.client.force_login(self.alice, backend=MODEL_BACKEND)

        record, line, response = self.logged(self.client, f"/a/{self.acme.public_id}/")

        self.assertEqual(response.status_code, 200)
        self.assertEqual(line["account"], self.acme.public_id)
        self.assertEqual(line["user"], self.alice.public_id)
        self.assertNotIn("Acme", self.formatter.format(record).replace(self.acme.public_id, ""))

    def test_a_dashboard_request_for_an_account_one_does_not_belong_to_names_none(self) -> None:
        self.client.force_login(self.alice, backend=MODEL_BACKEND)

        _, line, response = self.logged(self.client, f"/a/{self.globex.public_id}/")

        self.assertEqual(response.status_code, 404)
        self.assertEqual((line["status"], line["account"]), (404, None))

    def test_a_404_is_logged(self) -> None:
        _, line, response = self.logged(self.client, "/no-such-page/")

        self.assertEqual(response.status_code, 404)
        self.assertEqual((line["status"], line["path"]), (404, "/no-such-page/"))
        self.assertEqual(line["request_id"], response["X-Request-ID"])

    @override_settings(ROOT_URLCONF="tests.support.urls")
    def test_a_view_that_crashes_is_logged_as_500_under_its_request_id(self) -> None:
        client = Client(raise_request_exception=False)

        with self.assertLogs("django.request", "ERROR"):
            _, line, response = self.logged(client, "/test-boom/")

        self.assertEqual(response.status_code, 500)
        self.assertEqual((line["status"], line["path"]), (500, "/test-boom/"))
        self.assertEqual(line["request_id"], response["X-Request-ID"])
        self.assertNotIn("always crashes", json.dumps(line))


class RequestIdTests(AccessLogTestCase):
    CLIENT_ID = "client-chosen-id-0001"

    @override_settings(TRUSTED_PROXIES=[])
    def test_a_request_id_sent_by_a_client_is_ignored(self) -> None:
        record, _, response = self.logged(self.client, "/healthz", HTTP_X_REQUEST_ID=self.CLIENT_ID)

        self.assertRegex(record.request_id, GENERATED_REQUEST_ID)
        self.assertEqual(response["X-Request-ID"], record.request_id)

    @override_settings(TRUSTED_PROXIES=["127.0.0.1"])
    def test_a_request_id_sent_by_a_trusted_proxy_is_kept(self) -> None:
        record, _, response = self.logged(self.client, "/healthz", HTTP_X_REQUEST_ID=self.CLIENT_ID)

        self.assertEqual(record.request_id, self.CLIENT_ID)
        self.assertEqual(response["X-Request-ID"], self.CLIENT_ID)

    @override_settings(TRUSTED_PROXIES=["127.0.0.1"])
    def test_a_malformed_request_id_from_a_trusted_proxy_is_replaced(self) -> None:
        for malformed in ("short", "has spaces in it", "x" * 65, "line\nbreak-injected"):
            with self.subTest(request_id=malformed):
                record, _, _ = self.logged(self.client, "/healthz", HTTP_X_REQUEST_ID=malformed)

                self.assertRegex(record.request_id, GENERATED_REQUEST_ID)

    @override_settings(TRUSTED_PROXIES=["10.0.0.1"])
    def test_the_logged_ip_is_the_client_behind_a_trusted_proxy(self) -> None:
        _, line, _ = self.logged(
            self.client, "/healthz", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7"
        )

        self.assertEqual(line["ip"], "203.0.113.7")


class ClientIpTests(SimpleTestCase):
    def client_ip_for(self, remote_addr: str, forwarded_for: str | None = None) -> str | None:
        headers = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for is not None else {}
        return client_ip(RequestFactory().get("/", REMOTE_ADDR=remote_addr, **headers))

    @override_settings(TRUSTED_PROXIES=["10.0.0.1"])
    def test_a_forwarded_for_header_from_an_untrusted_peer_is_ignored(self) -> None:
        self.assertEqual(self.client_ip_for("198.51.100.9", "203.0.113.7"), "198.51.100.9")

    @override_settings(TRUSTED_PROXIES=["10.0.0.1", "10.0.0.2"])
    def test_behind_trusted_proxies_the_right_most_untrusted_address_is_the_client(self) -> None:
        # The client wrote 6.6.6.6 itself; 203.0.113.7 is what our first proxy saw.
        self.assertEqual(self.client_ip_for("10.0.0.1", "6.6.6.6, 203.0.113.7, 10.0.0.2"), "203.0.113.7")
        self.assertEqual(self.client_ip_for("10.0.0.1", "2001:db8::7"), "2001:db8::7")

    @override_settings(TRUSTED_PROXIES=["10.0.0.1"])
    def test_a_garbage_entry_falls_back_to_the_peer_address(self) -> None:
        self.assertEqual(self.client_ip_for("10.0.0.1", "203.0.113.7, not-an-ip"), "10.0.0.1")
        self.assertEqual(self.client_ip_for("10.0.0.1", "203.0.113.7:4711"), "10.0.0.1")

    @override_settings(TRUSTED_PROXIES=["10.0.0.1"])
    def test_a_trusted_proxy_with_no_forwarded_for_is_the_client(self) -> None:
        self.assertEqual(self.client_ip_for("10.0.0.1"), "10.0.0.1")
        self.assertEqual(self.client_ip_for("10.0.0.1", " , "), "10.0.0.1")
