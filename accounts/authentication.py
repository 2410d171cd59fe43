"""API-key authentication for the REST API (``Authorization: Bearer bsk_…``)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.request import Request

from accounts.models import Account, ApiKey
from accounts.services import api_key_prefix, note_api_key_use, verify_api_key
from audit.services import record
from security.ratelimit import RateLimit, hit

security_logger = logging.getLogger("bluespark.security")

# Names under which clients sometimes put a key in the URL, where logs,
# proxies and browser history would keep it.
QUERY_STRING_CREDENTIALS = frozenset({"api_key", "apikey", "key", "token", "access_token", "bearer", "auth"})


@dataclass(frozen=True)
class ApiCredentials:
    """``request.auth`` of an API request: the key, and through it the account."""

    key: ApiKey

    @property
    def account(self) -> Account:
        return self.key.account


def key_guessing_policy() -> RateLimit:
    return RateLimit("api-key-failures", settings.API_KEY_FAILURES_PER_HOUR, 3600)


class ApiKeyAuthentication(BaseAuthentication):
    """Bearer API keys; a key in the query string is refused, and so is a client that keeps guessing.

    Every failed key counts against the client's address; past
    ``API_KEY_FAILURES_PER_HOUR`` it gets 429 until its bucket refills, even
    with a valid key. A failure is logged as a security event without the token,
    and recorded as ``api_key.rejected`` with at most the key's public prefix.
    """

    keyword = "bearer"

    def authenticate(self, request: Request) -> tuple[AnonymousUser, ApiCredentials] | None:
        if QUERY_STRING_CREDENTIALS & {name.lower() for name in request.query_params}:
            raise AuthenticationFailed("Send API keys in the Authorization header, never in the URL.")
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.encode():
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("The Authorization header must be 'Bearer <API key>'.")
        address = getattr(request._request, "client_ip", None) or "unknown"
        policy = key_guessing_policy()
        guard = hit(policy, address, now=time.time(), cost=0)
        if not guard.allowed:
            raise Throttled(wait=guard.retry_after, detail="Too many invalid API keys from this address.")
        token = parts[1].decode("latin-1")
        key = verify_api_key(token)
        if key is None:
            hit(policy, address, now=time.time())
            security_logger.warning("api_key_rejected", extra={"ip": address})
            prefix = api_key_prefix(token)
            # Never the token: only its prefix, which is not secret, and only when it is well formed.
            record("api_key.rejected", data={"prefix": prefix} if prefix else {})
            raise AuthenticationFailed("Invalid API key.")
        note_api_key_use(key)
        request._request.api_key = key
        return AnonymousUser(), ApiCredentials(key)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes API keys."""

    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "An API key: `Authorization: Bearer bsk_…`."}
