"""Reads of accounts and memberships."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from accounts.models import Account, ApiKey, DataKeyRotation, Invitation, Membership, User


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


def team_member_list(account: Account) -> QuerySet[Membership]:
    return Membership.objects.filter(account=account).select_related("user").order_by("created_at", "id")


def access_membership(account: Account, user_public_id: str) -> Membership:
    """The account's membership of that user; Http404 when missing or another account's."""
    return get_object_or_404(
        Membership.objects.select_related("user").filter(account=account), user__public_id=user_public_id
    )


def open_invitation_list(account: Account) -> QuerySet[Invitation]:
    return Invitation.objects.filter(
        account=account, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
    ).order_by("-created_at", "-id")


def access_invitation(account: Account, public_id: str) -> Invitation:
    """The account's invitation with that id; Http404 when missing or another account's."""
    return get_object_or_404(Invitation.objects.filter(account=account), public_id=public_id)
