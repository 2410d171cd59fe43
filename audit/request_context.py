"""Who is asking, from where, under which request id."""

from __future__ import annotations

import ipaddress
import re
import secrets

from django.conf import settings
from django.http import HttpRequest

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def request_id_for(request: HttpRequest) -> str:
    """Reuse a well-formed id from a trusted proxy; otherwise make a new one."""
    incoming = request.META.get("HTTP_X_REQUEST_ID", "")
    if incoming and _from_trusted_proxy(request) and _VALID_REQUEST_ID.match(incoming):
        return incoming
    return new_request_id()


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _from_trusted_proxy(request: HttpRequest) -> bool:
    return request.META.get("REMOTE_ADDR", "") in settings.TRUSTED_PROXIES


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: ``X-Forwarded-For`` counts only when a trusted proxy sent it.

    Walks the forwarded chain from the right, skipping trusted proxies, so a
    client cannot spoof its address by prepending entries.
    """
    remote = request.META.get("REMOTE_ADDR") or None
    if remote is None or remote not in settings.TRUSTED_PROXIES:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    for candidate in reversed(forwarded):
        if not _is_ip(candidate):
            return remote
        if candidate not in settings.TRUSTED_PROXIES:
            return candidate
    return remote
