from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from accounts.selectors import membership_list


def account_navigation(request: HttpRequest) -> dict[str, Any]:
    """The current account and the user's others, for the account switcher."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    support_session = getattr(request, "support_session", None)
    memberships = membership_list(user)
    if support_session is not None:
        # Support sees one account: the member's others are not theirs to switch to.
        memberships = memberships.filter(account=support_session.account_id)
    return {
        "current_account": getattr(request, "account", None),
        "current_membership": getattr(request, "membership", None),
        "switchable_memberships": memberships,
        "support_session": support_session,
        "staff_user": getattr(request, "staff_user", None),
    }
