"""One structured access-log line per request, under a request id."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from audit.context import bound_request, context_of
from audit.request_context import REQUEST_ID_HEADER, client_ip, request_id_for

access_logger = logging.getLogger("bluespark.access")

# URL arguments that are secrets (one-time activation and reset tokens): their
# value is replaced in the logged path, which otherwise keeps the ids it names.
SECRET_URL_KWARGS = frozenset({"token"})
REDACTED = "[redacted]"


class RequestContextMiddleware:
    """Assign a request id, bind the request as the audit context, echo the id, and log the request as JSON.

    While the rest of the request runs, ``audit.context.current_context()``
    reads this request (views, services, signal receivers, tasks it queues).
    The line holds no query string, cookie, header value or personal data: the
    path is logged without its query, and people are named by public id only.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        request.request_id = request_id_for(request)
        request.client_ip = client_ip(request)
        status = 500
        try:
            with bound_request(request):
                response = self.get_response(request)
            status = response.status_code
            response[REQUEST_ID_HEADER] = request.request_id
            return response
        finally:
            access_logger.info("request", extra=access_fields(request, status, time.perf_counter() - started))


def loggable_path(request: HttpRequest) -> str:
    """The path without its query string and without the value of any secret URL argument."""
    path = request.path
    match = getattr(request, "resolver_match", None)
    if match is not None:
        for name, value in match.captured_kwargs.items():
            if name in SECRET_URL_KWARGS and value:
                path = path.replace(str(value), REDACTED)
    return path


def access_fields(request: HttpRequest, status: int, seconds: float) -> dict[str, object]:
    """The line's fields; the actors are read as the audit trail reads them, so the two agree."""
    actor = context_of(request)
    return {
        "request_id": request.request_id,
        "method": request.method,
        "path": loggable_path(request),
        "status": status,
        "duration_ms": round(seconds * 1000, 2),
        "ip": request.client_ip,
        "user": actor.user_id,
        "acting_as": actor.acting_as_id,
        "support_session": actor.support_session_id,
        "account": actor.account_id,
        "api_key": actor.api_key_id,
    }
