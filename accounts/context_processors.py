from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from accounts.selectors import membership_list


def account_navigation(request: HttpRequest) -> dict[str, Any]:
    """The current account and the user's others, for the account switcher."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "current_account": getattr(request, "account", None),
        "current_membership": getattr(request, "membership", None),
        "switchable_memberships": membership_list(user),
    }
