"""Answers for requests that cannot be checked: the rate limits' store does not answer."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from security.ratelimit import UNAVAILABLE_RETRY_AFTER, RateLimitUnavailable


class RateLimitUnavailableMiddleware:
    """A page whose request cannot be counted (Redis is down) answers 503 with ``Retry-After``, not a 500.

    The request is refused, never let through uncounted: a login code or a
    subscribe form unthrottled would be the attacker's chance. The API
    answers the same as a problem document (``bluespark.rest``); the error
    is logged once, by its kind, where it happened (``security.ratelimit``).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, RateLimitUnavailable):
            return None
        # Static, like the 500 page: the request context may be what is failing.
        response = HttpResponse(render_to_string("503.html"), status=503)
        response["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
        return response
