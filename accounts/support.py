"""Support access: the only door through which Bluespark staff enter a customer's account.

Owners and admins *grant* access (read-only or read-write, expiring, with an
optional ticket) and can withdraw it. A staff member, signed in with 2FA and
recently re-authenticated, *starts a support session* for one account with a
reason, acting as one of its members (never as another staff member). The
session is time-limited and ends early when the grant is withdrawn or expires,
or the member leaves. Without a grant, a *break-glass* start needs a written
justification; it is read-only and flagged to the owners at once.

Every start, refusal, refused write and end is an audit event in the
account's trail naming both the staff member and the member acted as, and the
owners are emailed when a session starts.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.models import Account, Membership, Role, SupportGrant, SupportSession, User
from accounts.services import AccountsError
from accounts.tenancy import account_scope
from audit.context import AuditContext, current_context
from audit.services import record

GRANT_DAYS_CHOICES = (1, 3, 7, 14, 30)
REASON_MAX_LENGTH = 1000


class SupportAccessRefused(AccountsError):
    """A support session that may not start (or continue); ``code`` is recorded, the message shown to staff."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


# --- grants (owners and admins) ------------------------------------------------------------


def active_grant(account: Account, *, at: datetime | None = None) -> SupportGrant | None:
    """The account's grant in force now (the one lasting longest when there are several)."""
    moment = at or timezone.now()
    with account_scope(account):
        return (
            SupportGrant.objects.filter(account=account, withdrawn_at__isnull=True, expires_at__gt=moment)
            .order_by("-expires_at")
            .first()
        )


def grant_support_access(account: Account, *, access: str, days: int, ticket: str, granted_by: User) -> SupportGrant:
    if access not in SupportGrant.Access.values:
        raise AccountsError("Choose read-only or read-write access.")
    if days not in GRANT_DAYS_CHOICES:
        raise AccountsError(f"Choose one of {', '.join(map(str, GRANT_DAYS_CHOICES))} days.")
    with account_scope(account), transaction.atomic():
        grant = SupportGrant.objects.create(
            account=account,
            access=access,
            ticket=ticket.strip(),
            granted_by=granted_by,
            expires_at=timezone.now() + timedelta(days=days),
        )
        record(
            "support.grant_created",
            account=account,
            target=grant,
            data={"access": access, "days": days, "ticket": grant.ticket, "expires_at": grant.expires_at.isoformat()},
        )
    return grant


def withdraw_support_access(account: Account, grant: SupportGrant, *, by: User) -> None:
    """Withdraw the grant; sessions started under it end at their next request."""
    with account_scope(account), transaction.atomic():
        locked = SupportGrant.objects.select_for_update().get(pk=grant.pk)
        if locked.withdrawn_at is not None:
            return
        locked.withdrawn_at = timezone.now()
        locked.withdrawn_by = by
        locked.save(update_fields=["withdrawn_at", "withdrawn_by"])
        record("support.grant_withdrawn", account=account, target=locked)
    grant.withdrawn_at = locked.withdrawn_at


# --- sessions (staff) ------------------------------------------------------------------------


def _session_context(session: SupportSession) -> AuditContext:
    """The request's context (address, request id) naming the staff member and the member acted as."""
    return dataclasses.replace(
        current_context(),
        user_id=session.staff.public_id if session.staff else None,
        acting_as_id=session.acting_as.public_id if session.acting_as else None,
        support_session_id=session.public_id,
        account_id=session.account.public_id,
    )


def record_refusal(account: Account, *, staff: User, code: str, acting_as_id: str | None = None) -> None:
    """A refused start, in the account's trail (committed even though the request fails)."""
    context = dataclasses.replace(current_context(), user_id=staff.public_id, account_id=account.public_id)
    with transaction.atomic():
        record(
            "support.session_refused",
            account=account,
            actor=staff,
            target=("user", acting_as_id) if acting_as_id else None,
            data={"reason": code},
            context=context,
        )


def start_support_session(
    *, staff: User, account: Account, acting_as_id: str, reason: str, ticket: str = "", justification: str = ""
) -> SupportSession:
    """Open a session for ``staff`` in ``account`` as the member ``acting_as_id``.

    Raises SupportAccessRefused (after recording the refusal) when the user is
    not staff, the member is not a member or is staff, there is no reason, or
    there is no grant in force and no break-glass justification.
    """
    try:
        return _start(staff, account, acting_as_id, reason.strip(), ticket.strip(), justification.strip())
    except SupportAccessRefused as refusal:
        record_refusal(account, staff=staff, code=refusal.code, acting_as_id=acting_as_id or None)
        raise


def _start(
    staff: User, account: Account, acting_as_id: str, reason: str, ticket: str, justification: str
) -> SupportSession:
    if not staff.is_staff:
        raise SupportAccessRefused("Only Bluespark staff can open support sessions.", code="not_staff")
    if not reason:
        raise SupportAccessRefused("Say why you need to enter this account.", code="no_reason")
    if len(reason) > REASON_MAX_LENGTH or len(justification) > REASON_MAX_LENGTH:
        raise SupportAccessRefused("Keep the reason and justification under 1,000 characters.", code="too_long")
    membership = Membership.objects.select_related("user").filter(account=account, user__public_id=acting_as_id).first()
    if membership is None:
        raise SupportAccessRefused("Choose a member of this account to act as.", code="not_a_member")
    if membership.user.is_staff:
        raise SupportAccessRefused("Support never acts as another staff member.", code="staff_target")
    now = timezone.now()
    grant = active_grant(account, at=now)
    if grant is None and not justification:
        raise SupportAccessRefused(
            "This account has not granted support access. Ask the customer for a grant, or give a break-glass "
            "justification.",
            code="no_grant",
        )
    lifetime = timedelta(minutes=settings.SUPPORT_SESSION_MINUTES)
    expires_at = min(now + lifetime, grant.expires_at) if grant else now + lifetime
    with account_scope(account), transaction.atomic():
        session = SupportSession.objects.create(
            account=account,
            staff=staff,
            acting_as=membership.user,
            grant=grant,
            # A break-glass session only reads: whatever the emergency, writes need the customer's grant.
            access=grant.access if grant else SupportGrant.Access.READ_ONLY,
            reason=reason,
            ticket=ticket,
            break_glass=grant is None,
            justification=justification if grant is None else "",
            started_at=now,
            expires_at=expires_at,
        )
        record(
            "support.break_glass" if session.break_glass else "support.session_started",
            account=account,
            target=("user", membership.user.public_id),
            data={
                "access": session.access,
                "ticket": ticket,
                "grant": grant.public_id if grant else None,
                "expires_at": expires_at.isoformat(),
            },
            context=_session_context(session),
        )
        transaction.on_commit(lambda: _tell_owners(session))
    return session


def reason_to_end(session: SupportSession, *, at: datetime | None = None) -> str | None:
    """Why an open session must end now, or None while it may go on."""
    moment = at or timezone.now()
    if session.ended_at is not None:
        return "ended"
    if session.expires_at <= moment:
        return "expired"
    if session.staff is None or not session.staff.is_staff or not session.staff.is_active:
        return "staff_removed"
    if (
        session.acting_as is None
        or not Membership.objects.filter(account=session.account_id, user=session.acting_as).exists()
    ):
        return "member_removed"
    if session.grant is not None and not session.grant.is_active_at(moment):
        return "grant_withdrawn" if session.grant.withdrawn_at else "grant_expired"
    return None


def end_support_session(session: SupportSession, *, reason: str) -> None:
    """Close the session (once) and record why: ``ended`` by staff, ``expired``, ``grant_withdrawn``…"""
    with account_scope(session.account), transaction.atomic():
        locked = SupportSession.objects.select_for_update().get(pk=session.pk)
        if locked.ended_at is not None:
            return
        locked.ended_at = timezone.now()
        locked.end_reason = reason
        locked.save(update_fields=["ended_at", "end_reason"])
        record(
            "support.session_ended",
            account=session.account,
            target=("user", session.acting_as.public_id) if session.acting_as else None,
            data={"reason": reason, "minutes": int((locked.ended_at - session.started_at).total_seconds() // 60)},
            context=_session_context(session),
        )
    session.ended_at, session.end_reason = locked.ended_at, reason


def record_session_request(session: SupportSession, *, action: str, method: str, view: str) -> None:
    """A change made in a session, a write refused in a read-only one, or an action only the customer may take."""
    with transaction.atomic():
        record(
            action,
            account=session.account,
            data={"method": method, "view": view},
            context=_session_context(session),
        )


def _tell_owners(session: SupportSession) -> None:
    owners = [
        m.user for m in Membership.objects.select_related("user").filter(account=session.account, role=Role.OWNER)
    ]
    context = {
        "account_name": session.account.name,
        "staff_name": session.staff.full_name or "A Bluespark support engineer",
        "acting_as": session.acting_as.full_name or session.acting_as.email,
        "access": session.get_access_display().lower(),
        "reason": session.reason,
        "ticket": session.ticket,
        "break_glass": session.break_glass,
        "justification": session.justification,
        "expires_at": session.expires_at,
        "link": settings.BASE_URL.rstrip("/") + f"/a/{session.account.public_id}/settings/support/",
    }
    subject = (
        f"Bluespark support entered {session.account.name} without a grant"
        if session.break_glass
        else f"Bluespark support entered {session.account.name}"
    )
    body = render_to_string("accounts/email/support_session_started.txt", context)
    for owner in owners:
        send_mail(subject, body, None, [owner.email])
