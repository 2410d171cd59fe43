"""API plumbing shared by every endpoint: problem+json errors and cursor pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import exception_handler

from bluespark.cursors import Position, beyond, open_position, seal_position
from security.ratelimit import UNAVAILABLE_RETRY_AFTER, RateLimitUnavailable

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
    503: "Service unavailable",
}


class ServiceUnavailable(exceptions.APIException):
    """A request that cannot be checked now (the rate limits' store does not answer): 503 with Retry-After."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Bluespark cannot count this request against the key's rate limit right now. Try again shortly."
    default_code = "service_unavailable"

    def __init__(self, wait: int) -> None:
        super().__init__()
        self.wait = wait  # DRF's handler turns it into Retry-After


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
    elif isinstance(exc, RateLimitUnavailable):
        exc = ServiceUnavailable(wait=UNAVAILABLE_RETRY_AFTER)
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


#: Reads a page of rows: (position or None, backward, limit) -> rows (see paginate_rows).
PageReader = Callable[[Position | None, bool, int], list[Any]]


class KeysetCursorPagination(BasePagination):
    """Opaque cursors over a list's (time, id), newest first: every row exactly once, whatever the ties.

    DRF's ``CursorPagination`` places a cursor on the ordering's first field
    alone and steps over rows sharing that value with an offset, which it caps
    at 1,000. An import writes each chunk of thousands of contacts with one
    ``created_at``: past the cap its pages repeated for ever. Here a cursor
    holds the boundary row's (time, id) and the next page is the rows strictly
    beyond that pair (``bluespark.cursors.beyond``, as the dashboard's pages
    select them), so ties cost nothing and page 20,000 costs what page 2 does.

    A cursor is ``next`` or ``previous`` with a position, sealed
    (``bluespark.cursors``): clients can neither read the ids in it nor
    make one up; one that does not open is a 404, as DRF's is.
    The response is DRF's: ``next``, ``previous`` (absolute URLs or null) and
    ``results``.
    """

    #: The list's time field; the id breaks its ties. Lists run newest first.
    field = "created_at"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200
    cursor_query_param = "cursor"
    invalid_cursor_message = "Invalid cursor"

    _FORWARD, _BACKWARD = "n", "p"

    def paginate_queryset(self, queryset: QuerySet, request: Request, view: Any = None) -> list[Any]:
        def read(position: Position | None, backward: bool, limit: int) -> list[Any]:
            return list(self.beyond(queryset, position, backward=backward)[:limit])

        return self.paginate_rows(read, request)

    def paginate_rows(self, read: PageReader, request: Request) -> list[Any]:
        """The page ``read(position, backward, limit)`` gives: up to ``limit`` rows beyond ``position``.

        ``read`` returns the rows after the position in the list's order, or
        before it (nearest first) when ``backward``, as ``beyond`` selects
        them, or the first rows of the list when the position is None. A list
        that cannot be a queryset (one fixed statement) pages through this.
        """
        self.base_url = request.build_absolute_uri()
        # A cursor is bound to its endpoint (bluespark.cursors): one list's cursor opens for no other.
        self.cursor_purpose = f"api {request.path}"
        self.page_size = self.get_page_size(request)
        direction, position = self.decode_cursor(request)
        backward = direction == self._BACKWARD
        rows = read(position, backward, self.page_size + 1)
        more = len(rows) > self.page_size
        self.page = rows[: self.page_size]
        if backward:
            self.page.reverse()
            self.has_previous, self.has_next = more, True
        else:
            self.has_previous, self.has_next = position is not None, more
        self.position = position
        return self.page

    def beyond(self, queryset: QuerySet, position: Position | None, *, backward: bool) -> QuerySet:
        """The rows after ``position`` in the list's order (before it when ``backward``), nearest first."""
        ordered = queryset.order_by(self.field, "id") if backward else queryset.order_by(f"-{self.field}", "-id")
        return beyond(ordered, self.field, position, backward=backward)

    def get_page_size(self, request: Request) -> int:
        try:
            asked = int(request.query_params[self.page_size_query_param])
        except (KeyError, ValueError):
            return self.page_size
        return min(asked, self.max_page_size) if asked > 0 else self.page_size

    # --- cursors ---------------------------------------------------------------------

    def decode_cursor(self, request: Request) -> tuple[str, Position | None]:
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is None:
            return self._FORWARD, None
        opened = open_position(self.cursor_purpose, encoded)
        if opened is None or opened[0] not in (self._FORWARD, self._BACKWARD):
            raise exceptions.NotFound(self.invalid_cursor_message)
        return opened

    def position_of(self, row: Any) -> Position:
        if isinstance(row, dict):
            return row[self.field], row["pk"] if "pk" in row else row["id"]
        return getattr(row, self.field), row.pk

    def link(self, direction: str, position: Position | None) -> str:
        if position is None:
            # Back past the start of the list: its first page.
            return remove_query_param(self.base_url, self.cursor_query_param)
        cursor = seal_position(self.cursor_purpose, position, direction)
        return replace_query_param(self.base_url, self.cursor_query_param, cursor)

    def get_next_link(self) -> str | None:
        if not self.has_next:
            return None
        # An empty page after a backward step means nothing precedes its position: start again at the top.
        return self.link(self._FORWARD, self.position_of(self.page[-1]) if self.page else None)

    def get_previous_link(self) -> str | None:
        if not self.has_previous:
            return None
        return self.link(self._BACKWARD, self.position_of(self.page[0]) if self.page else self.position)

    # --- the answer and its schema ---------------------------------------------------------

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"next": self.get_next_link(), "previous": self.get_previous_link(), "results": data})

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        link = {"type": "string", "nullable": True, "format": "uri"}
        return {
            "type": "object",
            "required": ["results"],
            "properties": {
                "next": {**link, "description": "The next page, or null at the end of the list."},
                "previous": {**link, "description": "The previous page, or null on the first."},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "Where the page starts: the cursor of a `next` or `previous` link.",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Rows a page (default {self.page_size}, at most {self.max_page_size}).",
                "schema": {"type": "integer"},
            },
        ]
