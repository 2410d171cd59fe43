"""Enter the tenant scope for dashboard URLs (``/a/<account_id>/…``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse

from accounts.selectors import membership_for
from accounts.tenancy import enter_account_scope, leave_account_scope

ACCOUNT_URL_KWARG = "account_id"


class AccountScopeMiddleware:
    """Resolve the account in the URL after a membership check and scope the request to it.

    A URL naming an account the user does not belong to gives the same 404 as
    one naming no account at all. The ``account_id`` URL argument is consumed
    here; views read ``request.account`` and ``request.membership``.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.account = None
        request.membership = None
        try:
            return self.get_response(request)
        finally:
            token = getattr(request, "_account_scope_token", None)
            if token is not None:
                leave_account_scope(token)
                del request._account_scope_token

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: tuple, view_kwargs: dict[str, Any]
    ) -> HttpResponse | None:
        if ACCOUNT_URL_KWARG not in view_kwargs:
            return None
        account_id = view_kwargs.pop(ACCOUNT_URL_KWARG)
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        membership = membership_for(request.user, account_id)
        if membership is None:
            raise Http404("No such account.")
        request.account = membership.account
        request.membership = membership
        request._account_scope_token = enter_account_scope(membership.account)
        return None
