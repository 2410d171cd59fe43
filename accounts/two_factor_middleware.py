"""Send users who must use two-factor authentication, and have not set it up, to do so first."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from accounts.two_factor import two_factor_state


class TwoFactorRequirementMiddleware:
    """Staff, and members of an account that requires 2FA, reach nothing but enrolment until enrolled.

    Open to them meanwhile: the 2FA pages, re-authentication (enrolment asks
    for it), logout, static files and the health probes. The API is left
    alone: it authenticates API keys, never a browser session.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not self._is_open(request.path):
            enrolled, required = two_factor_state(user)
            if required and not enrolled:
                return self._send_to_enrolment(request)
        return self.get_response(request)

    def _is_open(self, path: str) -> bool:
        open_prefixes = (
            reverse("two_factor:index"),
            reverse("reauthenticate"),
            reverse("accounts:logout"),
            "/" + settings.STATIC_URL.lstrip("/"),
            "/api/",
        )
        return path.startswith(open_prefixes) or path in (reverse("healthz"), reverse("readyz"))

    def _send_to_enrolment(self, request: HttpRequest) -> HttpResponse:
        target = reverse("two_factor:index")
        # Read the header itself: django-htmx's middleware runs after this one.
        if request.headers.get("HX-Request") == "true":
            response = HttpResponse(status=204)
            response["HX-Redirect"] = target
            return response
        return HttpResponseRedirect(target)
