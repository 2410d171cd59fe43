"""API-key authentication for the REST API (``Authorization: Bearer bsk_…``)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.request import Request

from accounts import key_cache
from accounts.models import Account, ApiKey
from accounts.services import api_key_prefix, note_api_key_use, verify_api_key
from audit.services import record
from security.ratelimit import Decision, RateLimit, gate, hit

security_logger = logging.getLogger("bluespark.security")

# Names under which clients sometimes put a key in the URL, where logs,
# proxies and browser history would keep it.
QUERY_STRING_CREDENTIALS = frozenset({"api_key", "apikey", "key", "token", "access_token", "bearer", "auth"})


@dataclass(frozen=True)
class ApiCredentials:
    """``request.auth`` of an API request: the key, and through it the account."""

    key: ApiKey
    #: The key's rate limit, taken while authenticating (``TenantAPIView`` answers 429 and sends the headers).
    rate_limit: Decision

    @property
    def account(self) -> Account:
        return self.key.account


def key_guessing_policy() -> RateLimit:
    return RateLimit("api-key-failures", settings.API_KEY_FAILURES_PER_HOUR, 3600)


def api_key_policy() -> RateLimit:
    return RateLimit("api-key", settings.API_REQUESTS_PER_MINUTE, 60)


class ApiKeyAuthentication(BaseAuthentication):
    """Bearer API keys; a key in the query string is refused, and so is a client that keeps guessing.

    Every failed key counts against the client's address; past
    ``API_KEY_FAILURES_PER_HOUR`` it gets 429 until its bucket refills, even
    with a valid key. A failure is logged as a security event without the token,
    and recorded as ``api_key.rejected`` with at most the key's public prefix.

    A good key takes one token from its own bucket (``API_REQUESTS_PER_MINUTE``)
    here, whatever the request then gets. A key this process has already
    verified (``accounts.key_cache``) costs one Redis round trip in all (the
    address's guard, the key's bucket and the key-set epoch) and no query.
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
        token = parts[1].decode("latin-1")
        prefix = api_key_prefix(token)
        kept = key_cache.kept_key(prefix, token) if prefix else None
        guard = (key_guessing_policy(), address)
        bucket = (api_key_policy(), kept.key.public_id) if kept else None
        checked = gate(guard, bucket, now=time.time(), read=key_cache.epoch_key())
        if not checked.looked.allowed:
            raise Throttled(wait=checked.looked.retry_after, detail="Too many invalid API keys from this address.")
        if kept is not None and checked.taken is not None and kept.epoch == checked.value:
            if kept.key.is_usable_at(timezone.now()):
                return self._authenticated(request, kept.key, checked.taken)
        if kept is not None:
            # The epoch moved (a key was revoked somewhere), or this key has expired: ask the database.
            key_cache.forget_all()
        key = verify_api_key(token)
        if key is None:
            hit(*guard, now=time.time())
            security_logger.warning("api_key_rejected", extra={"ip": address})
            # Never the token: only its prefix, which is not secret, and only when it is well formed.
            record("api_key.rejected", data={"prefix": prefix} if prefix else {})
            raise AuthenticationFailed("Invalid API key.")
        # With the epoch read before the lookup: a revocation since then voids what is kept now.
        key_cache.keep(key.prefix, token, key, epoch=checked.value)
        if kept is not None and kept.key.pk == key.pk and checked.taken is not None:
            rate_limit = checked.taken  # the epoch moved for another key: this one's token is already taken
        else:
            rate_limit = hit(api_key_policy(), key.public_id, now=time.time())
        return self._authenticated(request, key, rate_limit)

    def _authenticated(
        self, request: Request, key: ApiKey, rate_limit: Decision
    ) -> tuple[AnonymousUser, ApiCredentials]:
        note_api_key_use(key)
        request._request.api_key = key
        return AnonymousUser(), ApiCredentials(key, rate_limit)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes API keys."""

    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "An API key: `Authorization: Bearer bsk_…`."}
