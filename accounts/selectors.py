"""Reads of accounts and memberships."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import Account, ApiKey, DataKeyRotation, Membership, User


def membership_for(user: User, account_public_id: str) -> Membership | None:
    """The user's membership of that account, or None (missing and foreign alike)."""
    if not user.is_authenticated or user.is_staff:
        return None
    return Membership.objects.select_related("account").filter(user=user, account__public_id=account_public_id).first()


def membership_list(user: User) -> QuerySet[Membership]:
    """The accounts a user belongs to, for the account switcher."""
    return Membership.objects.select_related("account").filter(user=user).order_by("account__name", "account_id")


def access_data_key_rotation(account: Account, public_id: str) -> DataKeyRotation | None:
    """The account's rotation with that id, or None (a task's rotation may be gone with its account)."""
    return DataKeyRotation.objects.filter(account=account, public_id=public_id).first()


def data_key_rotation_list(account: Account) -> QuerySet[DataKeyRotation]:
    return DataKeyRotation.objects.filter(account=account).order_by("-started_at", "-id")


def access_api_key(account: Account, public_id: str) -> ApiKey:
    """The account's key with that id; Http404 when missing or another account's."""
    return get_object_or_404(ApiKey.objects.filter(account=account), public_id=public_id)


def api_key_list(account: Account) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(account=account).select_related("created_by").order_by("-created_at", "-id")
