"""Campaigns in the REST API."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.generics import ListAPIView, RetrieveAPIView

from accounts.rest import TenantAPIView
from campaigns.models import Campaign


class CampaignSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)

    class Meta:
        model = Campaign
        fields = ["id", "name", "subject", "status", "created_at", "updated_at"]
        read_only_fields = fields


class CampaignListAPI(TenantAPIView, ListAPIView):
    """The account's campaigns, newest first."""

    model = Campaign
    scope_resource = "campaigns"
    serializer_class = CampaignSerializer


class CampaignDetailAPI(TenantAPIView, RetrieveAPIView):
    """One campaign of the account."""

    model = Campaign
    scope_resource = "campaigns"
    serializer_class = CampaignSerializer
