"""A test urlconf: the project's URLs plus test-only endpoints.

The real campaign API views are mounted again under ``/test-api/`` with the
test authentication (API keys are not built yet); ``/test-api/probe/`` checks
a serializer's validation errors, ``/test-api/refuse/`` raises a validation
error that names no field, and ``/test-boom/`` raises, for the 500 path.
``/test-context/``, ``/a/<account_id>/test-context/`` and
``/test-api/context/`` answer with the audit context the view runs in, and
``/a/<account_id>/test-context/task/`` queues a task that reports its own.
"""

from __future__ import annotations

from celery.utils import uuid
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.http import require_POST
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.rest import TenantAPIView
from audit.context import current_context
from bluespark.urls import urlpatterns as project_urlpatterns
from campaigns.api import CampaignDetailAPI, CampaignListAPI
from tests.support.api_auth import TestAccountAuthentication
from tests.support.probe_tasks import report_context

TEST_API_OPTIONS = {"authentication_classes": [TestAccountAuthentication], "permission_classes": []}


class ProbeSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=10)
    reply_to = serializers.EmailField()


class ValidationProbeAPI(APIView):
    """Validates a body with a serializer and echoes it; no data is touched."""

    authentication_classes: list[type] = []
    permission_classes: list[type] = []

    def post(self, request: Request) -> Response:
        serializer = ProbeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(serializer.validated_data)


class RefusingAPI(APIView):
    """Refuses every request with a message that belongs to no field, as a service's rule would."""

    authentication_classes: list[type] = []
    permission_classes: list[type] = []

    def post(self, request: Request) -> Response:
        raise serializers.ValidationError("A sent campaign cannot be sent again.")


class ViewCrashedError(RuntimeError):
    """Raised by the crashing test view."""


def crash(request: HttpRequest) -> HttpResponse:
    raise ViewCrashedError("this view always crashes")


def show_context(request: HttpRequest) -> JsonResponse:
    return JsonResponse(current_context().as_headers())


@require_POST
def queue_context_task(request: HttpRequest) -> JsonResponse:
    """Queue the probe once the request's transaction commits, as services enqueue their tasks."""
    task_id = uuid()
    transaction.on_commit(lambda: report_context.apply_async(args=["from a request"], task_id=task_id))
    return JsonResponse({"task_id": task_id})


class ContextProbeAPI(TenantAPIView):
    """A tenant endpoint (an API key with ``campaigns:read``) that answers with its audit context."""

    scope_resource = "campaigns"

    def get(self, request: Request) -> Response:
        return Response(current_context().as_headers())


urlpatterns = [
    path("test-context/", show_context, name="test-context"),
    path("a/<str:account_id>/test-context/", show_context, name="test-account-context"),
    path("a/<str:account_id>/test-context/task/", queue_context_task, name="test-account-context-task"),
    path("test-api/context/", ContextProbeAPI.as_view(), name="test-api-context"),
    path(
        "test-api/campaigns/",
        CampaignListAPI.as_view(**TEST_API_OPTIONS),
        name="test-api-campaign-list",
    ),
    path(
        "test-api/campaigns/<str:public_id>/",
        CampaignDetailAPI.as_view(**TEST_API_OPTIONS),
        name="test-api-campaign-detail",
    ),
    path("test-api/probe/", ValidationProbeAPI.as_view(), name="test-api-probe"),
    path("test-api/refuse/", RefusingAPI.as_view(), name="test-api-refuse"),
    path("test-boom/", crash, name="test-boom"),
    *project_urlpatterns,
]
