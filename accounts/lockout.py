"""How django-axes names the user behind a failed login."""

from __future__ import annotations

from django.http import HttpRequest

from accounts.models import user_email_index


def canonical_login_username(request: HttpRequest, credentials: dict | None = None) -> str:
    """A keyed digest of the canonical email: never the address itself.

    Axes stores what this returns in its tables; the blind index keeps the
    email out of them while ``Alice@X`` and ``alice@x `` still share one
    counter. After a successful login axes passes the user's USERNAME_FIELD,
    which already is that index.
    """
    username = (credentials or {}).get("username")
    if username is None:
        data = getattr(request, "data", None) or request.POST
        username = data.get("username", "")
    if isinstance(username, bytes | memoryview):
        return bytes(username).hex()
    return user_email_index(str(username)).hex()
