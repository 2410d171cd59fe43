"""API plumbing shared by every endpoint: problem+json errors and cursor pages."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://docs.bluespark.example/problems/"

_TITLES = {
    400: "Invalid request",
    401: "Authentication required",
    403: "Permission denied",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
}


def _problem_type(exc: Exception, status_code: int) -> str:
    code = getattr(exc, "default_code", None) or _TITLES.get(status_code, "error")
    return PROBLEM_TYPE_BASE + str(code).replace(" ", "-").lower()


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render every API error as an RFC 9457 problem document.

    Validation errors keep DRF's field map under ``errors`` so clients can show
    each message beside its field. Unexpected exceptions still propagate (500,
    logged by Django) rather than leaking their text.
    """
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    status_code = response.status_code
    problem: dict[str, Any] = {
        "type": _problem_type(exc, status_code),
        "title": _TITLES.get(status_code, "Error"),
        "status": status_code,
    }
    request = context.get("request")
    if request is not None:
        problem["instance"] = request.path
        request_id = getattr(request, "request_id", None)
        if request_id:
            problem["request_id"] = request_id
    if isinstance(exc, exceptions.ValidationError):
        problem["detail"] = "The request has invalid fields."
        problem["errors"] = response.data if isinstance(response.data, dict) else {"non_field_errors": response.data}
    elif isinstance(response.data, dict) and "detail" in response.data:
        problem["detail"] = str(response.data["detail"])
    response.data = problem
    response.content_type = PROBLEM_CONTENT_TYPE
    if status_code == status.HTTP_401_UNAUTHORIZED and "WWW-Authenticate" not in response:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


class CreatedAtCursorPagination(CursorPagination):
    """Opaque cursors over (created_at, id): stable under inserts, O(1) per page."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200

    def paginate_queryset(self, queryset: QuerySet, request: Request, view: Any = None) -> list[Any] | None:
        try:
            return super().paginate_queryset(queryset, request, view)
        except DjangoValidationError:
            # A cursor is encoded, not signed: a forged position that is no timestamp
            # is a bad cursor (404, as DRF answers for one it cannot decode), not a 500.
            raise exceptions.NotFound(self.invalid_cursor_message) from None
