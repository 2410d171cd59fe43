"""The peer: the list endpoint a DRF tutorial would write, with no authentication."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny

from bench.naive_api.models import NaiveContact


class NaiveContactSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")

    class Meta:
        model = NaiveContact
        fields = [
            "id",
            "email",
            "first_name",
            "last_name",
            "status",
            "source",
            "tags",
            "attributes",
            "created_at",
            "updated_at",
        ]


class NaiveContactList(ListAPIView):
    """Newest first, pages by the project's default pagination (cursor over created_at and id, ``?limit=``)."""

    queryset = NaiveContact.objects.all()
    serializer_class = NaiveContactSerializer
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
