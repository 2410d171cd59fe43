"""API keys: issued once, stored as a hash, scoped, revocable, expiring, rate limited."""

from __future__ import annotations

import io
import logging
from datetime import timedelta

import redis
import time_machine
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import key_cache, services
from accounts.models import ApiKey, ApiScope
from accounts.tenancy import account_scope
from security.ratelimit import reset_rate_limit_client
from tests.cast import CastTestCase

CAMPAIGNS = "/api/v1/campaigns/"


class ApiKeyTestCase(CastTestCase):
    def issue(self, account=None, scopes=(ApiScope.CAMPAIGNS_READ,), **options) -> str:
        account = account or self.acme
        with account_scope(account):
            return services.create_api_key(
                account, name="integration", scopes=list(scopes), created_by=self.alice, **options
            ).token

    def call(self, token: str | None, path: str = CAMPAIGNS, method: str = "get", **extra):
        client = APIClient()
        if token is not None:
            extra.setdefault("HTTP_AUTHORIZATION", f"Bearer {token}")
        return getattr(client, method)(path, format="json", **extra)


class ApiKeyAuthenticationTests(ApiKeyTestCase):
    def test_a_key_reads_its_own_accounts_campaigns_only(self):
        response = self.call(self.issue())
        assert response.status_code == 200
        assert [row["id"] for row in response.json()["results"]] == [self.acme_campaign.public_id]

    def test_another_accounts_object_is_the_same_404_as_a_missing_one(self):
        token = self.issue()
        foreign = self.call(token, f"{CAMPAIGNS}{self.globex_campaign.public_id}/")
        missing = self.call(token, f"{CAMPAIGNS}cmp_{'a' * 26}/")
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json()["detail"] == missing.json()["detail"]

    def test_the_token_is_shown_once_and_only_its_hash_is_stored(self):
        token = self.issue()
        key = ApiKey.objects_unscoped_dangerous.get()
        assert token.startswith(f"bsk_{key.prefix}_") and len(token) > 50
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM accounts_apikey")
            stored = " ".join(str(value) for value in cursor.fetchone())
        secret = token.split("_", 2)[2]  # the secret may hold "_" itself: split only the tag and the prefix off
        assert len(secret) >= 40 and secret not in stored and token not in stored

    def test_a_key_without_the_scope_gets_403(self):
        response = self.call(self.issue(scopes=[ApiScope.CONTACTS_READ]))
        assert response.status_code == 403
        assert response["Content-Type"] == "application/problem+json"

    def test_a_write_scope_includes_reading(self):
        assert self.call(self.issue(scopes=[ApiScope.CAMPAIGNS_WRITE])).status_code == 200

    def test_a_read_scope_cannot_write(self):
        response = self.call(self.issue(), method="post", data={"name": "x"})
        assert response.status_code in (403, 405)
        assert response.status_code == 403 or "Allow" in response

    def test_revoked_expired_unknown_and_wrong_keys_look_alike(self):
        revoked = self.issue()
        with account_scope(self.acme):
            services.revoke_api_key(self.acme, ApiKey.objects.get(prefix=revoked.split("_")[1]))
        expiring = self.issue(expires_at=timezone.now() + timedelta(days=1))
        good = self.issue()
        wrong_secret = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
        with time_machine.travel(timezone.now() + timedelta(days=2)):
            answers = [self.call(token) for token in (revoked, expiring, "bsk_nosuchkey_secret", wrong_secret)]
        assert {answer.status_code for answer in answers} == {401}
        bodies = [{k: v for k, v in answer.json().items() if k != "request_id"} for answer in answers]
        assert all(body == bodies[0] for body in bodies) and bodies[0]["detail"] == "Invalid API key."
        assert all(answer["WWW-Authenticate"] == 'Bearer realm="api"' for answer in answers)
        assert self.call(good).status_code == 200

    def test_no_credentials_is_401(self):
        response = self.call(None)
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer realm="api"'

    def test_a_key_in_the_query_string_is_refused_even_beside_a_good_header(self):
        token = self.issue()
        for name in ("api_key", "token", "access_token"):
            response = self.call(token, f"{CAMPAIGNS}?{name}={token}")
            assert response.status_code == 401, name
            assert "Authorization header" in response.json()["detail"]

    def test_last_use_is_recorded_at_most_once_a_minute(self):
        token = self.issue()
        start = timezone.now()
        with time_machine.travel(start, tick=False):
            self.call(token)
            first = ApiKey.objects_unscoped_dangerous.get().last_used_at
            with time_machine.travel(start + timedelta(seconds=30), tick=False):
                self.call(token)
                assert ApiKey.objects_unscoped_dangerous.get().last_used_at == first
            with time_machine.travel(start + timedelta(seconds=90), tick=False):
                self.call(token)
                assert ApiKey.objects_unscoped_dangerous.get().last_used_at > first

    def test_a_key_with_no_known_scope_cannot_be_created(self):
        with account_scope(self.acme):
            with self.assertRaisesMessage(services.AccountsError, "scope"):
                services.create_api_key(self.acme, name="x", scopes=["everything"], created_by=self.alice)


class RateLimitTests(ApiKeyTestCase):
    @override_settings(API_REQUESTS_PER_MINUTE=3)
    def test_each_key_has_its_own_limit_shown_in_headers(self):
        token, other = self.issue(), self.issue()
        answers = [self.call(token) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert [a["RateLimit-Remaining"] for a in answers[:3]] == ["2", "1", "0"]
        assert answers[0]["RateLimit-Limit"] == "3"
        assert int(answers[3]["Retry-After"]) >= 1
        assert answers[3]["Content-Type"] == "application/problem+json"
        assert self.call(other).status_code == 200

    @override_settings(API_KEY_FAILURES_PER_HOUR=3)
    def test_an_address_that_keeps_guessing_is_refused_even_with_a_good_key(self):
        good = self.issue()
        for attempt in range(3):
            assert self.call(f"bsk_guess{attempt}_nope", REMOTE_ADDR="203.0.113.9").status_code == 401
        assert self.call(good, REMOTE_ADDR="203.0.113.9").status_code == 429
        assert self.call(good, REMOTE_ADDR="198.51.100.4").status_code == 200


class RedisDownTests(ApiKeyTestCase):
    def test_a_request_that_cannot_be_counted_is_refused_with_503_and_retry_after(self):
        token = self.issue()
        assert self.call(token).status_code == 200  # the key is verified and kept by this process
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s %(error)s"))
        logging.getLogger("security.ratelimit").addHandler(handler)
        # Nothing listens on port 1: every Redis command fails to connect.
        with override_settings(REDIS_URL="redis://:hunter2-redis-password@127.0.0.1:1/0"):
            reset_rate_limit_client()
            try:
                refused = [self.call(token), self.call("bsk_unknown_nope")]
            finally:
                reset_rate_limit_client()
                logging.getLogger("security.ratelimit").removeHandler(handler)

        for response in refused:
            assert response.status_code == 503
            assert response["Content-Type"] == "application/problem+json"
            assert response["Retry-After"] == "5"
            problem = response.json()
            assert (problem["title"], problem["type"]) == (
                "Service unavailable",
                "https://docs.bluespark.example/problems/service_unavailable",
            )
            assert "results" not in problem and "hunter2" not in response.content.decode()
        assert stream.getvalue().splitlines() == ["ERROR rate_limit_unavailable ConnectionError"] * 2
        assert self.call(token).status_code == 200  # Redis back: served again


class SecretsStayOutOfLogsTests(ApiKeyTestCase):
    def test_a_canary_key_in_failing_requests_never_reaches_a_log(self):
        canary = self.issue()
        revoked_prefix = canary.split("_")[1]
        with account_scope(self.acme):
            services.revoke_api_key(self.acme, ApiKey.objects.get(prefix=revoked_prefix))
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        root = logging.getLogger()
        watched = [root, logging.getLogger("bluespark.access"), logging.getLogger("bluespark.security")]
        for logger in watched:
            logger.addHandler(handler)
        try:
            self.call(canary)
            self.call(canary, f"{CAMPAIGNS}?api_key={canary}")
            self.call(canary, f"{CAMPAIGNS}{self.globex_campaign.public_id}/")
            self.call(f"{canary}x")
        finally:
            for logger in watched:
                logger.removeHandler(handler)
        secret = canary.split("_", 2)[2]
        assert stream.getvalue(), "nothing was logged: the scan would prove nothing"
        assert secret not in stream.getvalue()


def script_calls() -> int:
    """Lua scripts Redis has run so far (the rate limits are scripts), from its own counters."""
    stats = redis.Redis.from_url(settings.REDIS_URL).info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


class KeptKeyTests(ApiKeyTestCase):
    """A process keeps a verified key for API_KEY_CACHE_SECONDS; revocation still reaches it at once."""

    def revoke(self, token: str) -> None:
        with account_scope(self.acme):
            services.revoke_api_key(self.acme, ApiKey.objects.get(prefix=token.split("_")[1]))

    def test_a_kept_key_costs_no_query_and_one_redis_round_trip(self):
        token = self.issue()
        with time_machine.travel(timezone.now(), tick=False):  # no refill between the two: 600 a minute is 10 a second
            assert self.call(token).status_code == 200
            scripts = script_calls()
            with CaptureQueriesContext(connection) as queries:
                response = self.call(token)
        assert response.status_code == 200 and response["RateLimit-Remaining"] == "598"
        assert not [query for query in queries if "accounts_apikey" in query["sql"]]
        assert script_calls() - scripts == 1

    @override_settings(API_KEY_CACHE_SECONDS=0)
    def test_with_no_lifetime_every_request_looks_the_key_up(self):
        token = self.issue()
        for _ in range(2):
            with CaptureQueriesContext(connection) as queries:
                assert self.call(token).status_code == 200
            assert [query for query in queries if 'FROM "accounts_apikey"' in query["sql"]]

    def test_revoking_a_kept_key_refuses_it_at_once(self):
        token = self.issue()
        assert self.call(token).status_code == 200
        self.revoke(token)
        assert self.call(token).status_code == 401

    def test_a_revocation_elsewhere_reaches_this_process_through_the_epoch(self):
        token, other = self.issue(), self.issue()
        assert self.call(token).status_code == 200 and self.call(other).status_code == 200
        # Another process revokes: the row changes and the epoch moves, nothing in this process is told.
        ApiKey.objects_unscoped_dangerous.filter(prefix=token.split("_")[1]).update(revoked_at=timezone.now())
        assert self.call(token).status_code == 200  # kept: without the epoch, it would live on
        redis.Redis.from_url(settings.REDIS_URL).set(key_cache.epoch_key(), "moved by another process")
        assert self.call(token).status_code == 401
        assert self.call(other).status_code == 200

    def test_a_kept_key_is_looked_up_again_once_its_lifetime_ends(self):
        token = self.issue()
        start = timezone.now()
        with time_machine.travel(start, tick=False):
            assert self.call(token).status_code == 200
            ApiKey.objects_unscoped_dangerous.filter(prefix=token.split("_")[1]).update(revoked_at=start)
        with time_machine.travel(start + timedelta(seconds=settings.API_KEY_CACHE_SECONDS - 1), tick=False):
            assert self.call(token).status_code == 200
        with time_machine.travel(start + timedelta(seconds=settings.API_KEY_CACHE_SECONDS), tick=False):
            assert self.call(token).status_code == 401

    def test_a_clock_set_back_ends_a_kept_keys_lifetime(self):
        token = self.issue()
        start = timezone.now()
        with time_machine.travel(start, tick=False):
            assert self.call(token).status_code == 200
            ApiKey.objects_unscoped_dangerous.filter(prefix=token.split("_")[1]).update(revoked_at=start)
        with time_machine.travel(start - timedelta(minutes=5), tick=False):
            assert self.call(token).status_code == 401

    def test_a_kept_key_past_its_expiry_is_refused(self):
        token = self.issue(expires_at=timezone.now() + timedelta(seconds=30))
        assert self.call(token).status_code == 200
        with time_machine.travel(timezone.now() + timedelta(seconds=31)):
            assert self.call(token).status_code == 401

    def test_closing_the_account_refuses_its_kept_keys(self):
        token = self.issue()
        assert self.call(token).status_code == 200
        with account_scope(self.acme), self.captureOnCommitCallbacks(execute=False):
            services.close_account(self.acme, actor=self.alice)
        assert self.call(token).status_code == 401

    @override_settings(API_KEY_FAILURES_PER_HOUR=2)
    def test_a_wrong_secret_beside_a_kept_key_is_refused_and_counted(self):
        good = self.issue()
        assert self.call(good, REMOTE_ADDR="203.0.113.7").status_code == 200
        wrong = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
        assert [self.call(wrong, REMOTE_ADDR="203.0.113.7").status_code for _ in range(2)] == [401, 401]
        assert self.call(good, REMOTE_ADDR="203.0.113.7").status_code == 429
        assert self.call(good, REMOTE_ADDR="198.51.100.4").status_code == 200

    @override_settings(API_REQUESTS_PER_MINUTE=2)
    def test_a_request_refused_for_its_scope_still_counts_against_the_key(self):
        token = self.issue(scopes=[ApiScope.CONTACTS_READ])
        with time_machine.travel(timezone.now(), tick=False):
            assert self.call(token).status_code == 403  # campaigns: not this key's scope
            assert self.call(token, "/api/v1/contacts/").status_code == 200
            refused = self.call(token, "/api/v1/contacts/")
        assert refused.status_code == 429 and refused["RateLimit-Remaining"] == "0"

    def test_a_token_that_is_not_ascii_is_refused_not_an_error(self):
        token = self.issue()
        prefix = token.split("_")[1]
        response = self.call(None, HTTP_AUTHORIZATION=f"Bearer bsk_{prefix}_\u00e9t\u00e9".encode().decode("latin-1"))
        assert response.status_code == 401
