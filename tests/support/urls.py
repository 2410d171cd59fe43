"""A test urlconf: the project's URLs plus test-only endpoints.

The real campaign API views are mounted again under ``/test-api/`` with the
test authentication (API keys are not built yet); ``/test-api/probe/`` checks
a serializer's validation errors, ``/test-api/refuse/`` raises a validation
error that names no field, and ``/test-boom/`` raises, for the 500 path.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bluespark.urls import urlpatterns as project_urlpatterns
from campaigns.api import CampaignDetailAPI, CampaignListAPI
from tests.support.api_auth import TestAccountAuthentication

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


urlpatterns = [
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
