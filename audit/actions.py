"""The registry of audit actions: stable dotted names, each with what it means.

Names are an API: customers filter and export by them, and integrators read
them from ``/api/v1/audit-events/``. Add names; never rename or reuse one.
Recording an unregistered name is an error, so a typo cannot start a new
series nobody looks for.
"""

from __future__ import annotations

ACTIONS: dict[str, str] = {
    # Signing in and staying signed in (the user's own events: no account).
    "auth.login": "Logged in",
    "auth.login_failed": "A login failed",
    "auth.logout": "Logged out",
    "auth.lockout_started": "Logins were locked after repeated failures",
    "auth.lockout_ended": "A login lockout ended",
    "auth.reauthenticated": "Confirmed their password for a sensitive action",
    "auth.password_changed": "Changed their password",
    "auth.password_reset_requested": "Asked for a password reset link",
    "auth.password_reset": "Reset their password with a link",
    "auth.email_change_requested": "Asked to change their email address",
    "auth.email_changed": "Changed their email address",
    "auth.two_factor_enabled": "Turned on two-factor authentication",
    "auth.two_factor_disabled": "Turned off two-factor authentication",
    "auth.two_factor_failed": "Entered a wrong two-factor code",
    "auth.two_factor_lockout_started": "Two-factor codes were locked after repeated failures",
    "auth.two_factor_lockout_ended": "A two-factor lockout ended",
    "auth.recovery_code_used": "Used a recovery code",
    "auth.recovery_codes_regenerated": "Made new recovery codes",
    "session.revoked": "Ended a session",
    "session.others_revoked": "Ended every other session",
    # The account.
    "account.created": "Created the account",
    "account.renamed": "Renamed the account",
    "account.deleted": "Deleted the account",
    "account.two_factor_required": "Changed whether members must use two-factor authentication",
    # The team.
    "member.invited": "Invited a member",
    "member.invitation_withdrawn": "Withdrew an invitation",
    "member.joined": "Joined the account",
    "member.role_changed": "Changed a member's role",
    "member.removed": "Removed a member",
    # API keys.
    "api_key.created": "Created an API key",
    "api_key.revoked": "Revoked an API key",
    "api_key.rejected": "An invalid API key was presented",
    "security.decryption_failed": "A stored value failed to decrypt",
    # The audit trail itself.
    "audit.exported": "Exported the audit trail",
    # Contacts and campaigns (recorded by those features).
    "contact.exported": "Exported contacts",
    "contact.erased": "Erased a contact's personal data",
    "contact.deleted": "Deleted a contact",
    "contact.data_exported": "Exported everything held about a contact (GDPR)",
    "contact.import_started": "Started a contact import",
    "contact.import_finished": "A contact import finished",
    "contact.import_cancelled": "Cancelled a contact import",
    "list.deleted": "Deleted a list",
    "suppression.added": "Added an address to the suppression list",
    "suppression.removed": "Removed an address from the suppression list",
    "campaign.sent": "Sent a campaign",
    # Support access.
    "support.grant_created": "Granted support access",
    "support.grant_withdrawn": "Withdrew support access",
    "support.session_started": "A support session started",
    "support.session_ended": "A support session ended",
    "support.session_refused": "A support session was refused",
    "support.break_glass": "A support session started without a grant",
    "support.write_made": "A change was made during a support session",
    "support.write_refused": "A write was refused in a read-only support session",
    "support.action_refused": "An action only the customer may take was refused in a support session",
}


class UnknownAction(ValueError):
    """An audit action that is not in the registry."""


def check_action(name: str) -> str:
    if name not in ACTIONS:
        raise UnknownAction(f"{name!r} is not a registered audit action (audit/actions.py).")
    return name


def describe(name: str) -> str:
    return ACTIONS.get(name, name)
