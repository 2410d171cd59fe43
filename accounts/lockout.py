"""How django-axes names the user behind a failed login."""

from __future__ import annotations

from django.http import HttpRequest

from security.identifiers import canonical_email


def canonical_login_username(request: HttpRequest, credentials: dict | None = None) -> str:
    """The canonical email, so ``Alice@X`` and ``alice@x `` share one failure counter."""
    username = (credentials or {}).get("username")
    if username is None:
        data = getattr(request, "data", None) or request.POST
        username = data.get("username", "")
    return canonical_email(str(username))
