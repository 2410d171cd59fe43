"""Reads of accounts and memberships."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from accounts.models import (
    Account,
    ApiKey,
    DataKeyRotation,
    Invitation,
    Membership,
    SupportGrant,
    SupportSession,
    User,
)


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


# --- support access ----------------------------------------------------------------------------


def support_grant_list(account: Account) -> QuerySet[SupportGrant]:
    return SupportGrant.objects.filter(account=account).select_related("granted_by").order_by("-created_at", "-id")


def access_support_grant(account: Account, public_id: str) -> SupportGrant:
    """The account's grant with that id; Http404 when missing or another account's."""
    return get_object_or_404(SupportGrant.objects.filter(account=account), public_id=public_id)


def support_session_list(account: Account, *, limit: int = 50) -> list[SupportSession]:
    """The account's most recent support sessions, for its owners and admins."""
    return list(
        SupportSession.objects.filter(account=account)
        .select_related("staff", "acting_as")
        .order_by("-started_at", "-id")[:limit]
    )


def accounts_for_staff(query: str, *, limit: int = 50) -> QuerySet[Account]:
    """The staff console's account list: names and ids only, by name or exact public id."""
    accounts = Account.objects.order_by("name", "id")
    if query:
        accounts = accounts.filter(name__icontains=query) | Account.objects.filter(public_id=query)
    return accounts[:limit]


def account_for_staff(public_id: str) -> Account:
    return get_object_or_404(Account, public_id=public_id)


def members_support_may_act_as(account: Account) -> list[User]:
    """The account's members that support may act as: never a staff member."""
    return [
        membership.user
        for membership in Membership.objects.filter(account=account, user__is_staff=False, user__is_active=True)
        .select_related("user")
        .order_by("role", "created_at", "id")
    ]


def support_sessions_of_staff(staff: User, *, limit: int = 20) -> list[SupportSession]:
    """A staff member's own recent sessions, across accounts (no reason shown: it is the account's data)."""
    return list(
        SupportSession.objects_unscoped_dangerous.filter(staff=staff)
        .select_related("account", "acting_as")
        .order_by("-started_at", "-id")[:limit]
    )
