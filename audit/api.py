"""The audit trail in the REST API: ``GET /api/v1/audit-events/`` with the ``audit:read`` scope."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView

from accounts.rest import TenantAPIView
from audit.actions import ACTIONS
from audit.models import AuditEvent
from bluespark.rest import KeysetCursorPagination


class AuditEventSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    actor = serializers.SerializerMethodField()
    target = serializers.SerializerMethodField()

    class Meta:
        model = AuditEvent
        fields = ["id", "action", "occurred_at", "actor", "target", "ip", "request_id", "data"]
        read_only_fields = fields

    def get_actor(self, event: AuditEvent) -> dict[str, Any]:
        return {
            "type": event.actor_type,
            "user": event.actor_id or None,
            "acting_as": event.acting_as_id or None,
            "support_session": event.support_session_id or None,
            "api_key": event.api_key_id or None,
        }

    def get_target(self, event: AuditEvent) -> dict[str, str] | None:
        return {"type": event.target_type, "id": event.target_id} if event.target_id else None


class AuditEventFilters(serializers.Serializer):
    action = serializers.ChoiceField(choices=sorted(ACTIONS), required=False)
    actor = serializers.CharField(required=False, max_length=40, help_text="A user's public id (usr_…).")
    since = serializers.DateTimeField(required=False, help_text="Events at or after this time (ISO 8601).")
    until = serializers.DateTimeField(required=False, help_text="Events before this time (ISO 8601).")


class OccurredAtCursorPagination(KeysetCursorPagination):
    field = "occurred_at"


@extend_schema(
    parameters=[
        OpenApiParameter("action", str, enum=sorted(ACTIONS)),
        OpenApiParameter("actor", str, description="A user's public id (usr_…)."),
        OpenApiParameter("since", str, description="Events at or after this time (ISO 8601)."),
        OpenApiParameter("until", str, description="Events before this time (ISO 8601)."),
    ]
)
class AuditEventListAPI(TenantAPIView, ListAPIView):
    """The account's audit trail, newest first, with cursor pagination."""

    model = AuditEvent
    scope_resource = "audit"
    serializer_class = AuditEventSerializer
    pagination_class = OccurredAtCursorPagination

    def filter_queryset(self, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        filters = AuditEventFilters(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        if "action" in values:
            queryset = queryset.filter(action=values["action"])
        if "actor" in values:
            queryset = queryset.filter(actor_id=values["actor"])
        if "since" in values:
            queryset = queryset.filter(occurred_at__gte=values["since"])
        if "until" in values:
            queryset = queryset.filter(occurred_at__lt=values["until"])
        return queryset
