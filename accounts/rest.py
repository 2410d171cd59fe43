"""The base of every tenant API view."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db.models import Model, QuerySet
from rest_framework.exceptions import NotAuthenticated, Throttled
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.models import Account
from accounts.tenancy import enter_account_scope, leave_account_scope
from security.ratelimit import Decision

BEARER_CHALLENGE = 'Bearer realm="api"'


class HasApiScope(BasePermission):
    """The request's API key holds the scope the view asks for this method (403 otherwise)."""

    message = "This API key does not have the scope this request needs."

    def has_permission(self, request: Request, view: APIView) -> bool:
        key = getattr(request.auth, "key", None)
        return key is not None and key.has_scope(view.required_scope(request))


class TenantAPIView(GenericAPIView):
    """Resolves the account from the credentials and scopes the request to it.

    The account comes only from authentication (``request.auth.account``, set
    by the API key), never from the URL or the body. Subclasses name their
    ``model`` and may narrow the scoped queryset in ``filter_queryset``; they
    may not override ``get_queryset``, so no endpoint can widen its reach.
    """

    model: ClassVar[type[Model]]
    #: The resource of the scopes this view needs: "<resource>:read" to read, "<resource>:write" to change.
    scope_resource: ClassVar[str]
    permission_classes = [HasApiScope]
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
        if "model" in cls.__dict__ and not getattr(cls, "scope_resource", None):
            raise TypeError(f"{cls.__name__} names no scope_resource, so no API key scope would guard it.")

    account: Account

    def required_scope(self, request: Request) -> str:
        return f"{self.scope_resource}:{'read' if request.method in SAFE_METHODS else 'write'}"

    def check_throttles(self, request: Request) -> None:
        """The key's limit, shared by every process (Redis) and taken while authenticating.

        The headers go out on every answer.
        """
        self._rate_limit = getattr(request.auth, "rate_limit", None)
        if self._rate_limit is not None and not self._rate_limit.allowed:
            raise Throttled(wait=self._rate_limit.retry_after)

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

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            # An exception DRF does not handle (a 500) skips finalize_response: the scope must
            # still end here, or the next request served by this thread would start inside it.
            token = getattr(self, "_account_scope_token", None)
            if token is not None:
                leave_account_scope(token)
                self._account_scope_token = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self._account_scope_token = enter_account_scope(self.account)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        decision: Decision | None = getattr(self, "_rate_limit", None)
        if decision is not None:
            response["RateLimit-Limit"] = str(decision.limit)
            response["RateLimit-Remaining"] = str(decision.remaining)
            response["RateLimit-Reset"] = str(decision.reset_seconds)
            response["RateLimit-Policy"] = f"{decision.limit};w=60"
        token = getattr(self, "_account_scope_token", None)
        if token is not None:
            # The response is already rendered data; nothing after this reads tenant rows.
            leave_account_scope(token)
            self._account_scope_token = None
        return super().finalize_response(request, response, *args, **kwargs)

    def get_queryset(self) -> QuerySet:
        # A model that names its account otherwise (the audit trail keeps public ids, not keys) says how.
        account_filter = getattr(self.model, "account_filter", None)
        if account_filter is not None:
            return self.model.objects.filter(**account_filter(self.account))
        return self.model.objects.filter(account=self.account)
