"""Role checks for dashboard views."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import HttpRequest, HttpResponse

from accounts.models import Role

View = Callable[..., HttpResponse]


def require_role(minimum: Role) -> Callable[[View], View]:
    """Let the view run only for members holding ``minimum`` or a higher role (else 403).

    The view must sit under ``/a/<account_id>/`` so the middleware has checked
    membership; the declared role is kept on the view for the role matrix test.
    """

    def decorator(view: View) -> View:
        @functools.wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            membership = getattr(request, "membership", None)
            if membership is None:
                raise ImproperlyConfigured(f"{view.__name__} needs an /a/<account_id>/ URL to check roles.")
            if not membership.has_role(minimum):
                raise PermissionDenied(f"This needs the {Role(minimum).label} role.")
            return view(request, *args, **kwargs)

        checked.required_role = Role(minimum)  # type: ignore[attr-defined]
        return checked

    return decorator
