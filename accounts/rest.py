"""The base of every tenant API view."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db.models import Model, QuerySet
from rest_framework.exceptions import NotAuthenticated
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request

from accounts.models import Account
from accounts.tenancy import enter_account_scope, leave_account_scope

BEARER_CHALLENGE = 'Bearer realm="api"'


class TenantAPIView(GenericAPIView):
    """Resolves the account from the credentials and scopes the request to it.

    The account comes only from authentication (``request.auth.account``, set
    by the API key), never from the URL or the body. Subclasses name their
    ``model`` and may narrow the scoped queryset in ``filter_queryset``; they
    may not override ``get_queryset``, so no endpoint can widen its reach.
    """

    model: ClassVar[type[Model]]
    lookup_field = "public_id"
    lookup_url_kwarg = "public_id"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__:
            raise TypeError(
                f"{cls.__name__} overrides get_queryset; tenant API views narrow results in filter_queryset."
            )
        if "queryset" in cls.__dict__:
            raise TypeError(f"{cls.__name__} sets queryset; tenant API views set model instead.")

    account: Account

    def perform_authentication(self, request: Request) -> None:
        # Checked before the permission classes: with no account the answer is 401,
        # not the 403 that IsAuthenticated gives when no authenticator ran.
        account = getattr(request.auth, "account", None)
        if not isinstance(account, Account):
            raise NotAuthenticated()
        self.account = account
        # The access log reads the Django request, not DRF's wrapper.
        request._request.account = account

    def get_authenticate_header(self, request: Request) -> str:
        # DRF turns a 401 into a 403 when no authentication class names a scheme;
        # a tenant endpoint always asks for a bearer token.
        return super().get_authenticate_header(request) or BEARER_CHALLENGE

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self._account_scope_token = enter_account_scope(self.account)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        token = getattr(self, "_account_scope_token", None)
        if token is not None:
            # The response is already rendered data; nothing after this reads tenant rows.
            leave_account_scope(token)
            self._account_scope_token = None
        return super().finalize_response(request, response, *args, **kwargs)

    def get_queryset(self) -> QuerySet:
        return self.model.objects.filter(account=self.account)
