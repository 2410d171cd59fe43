"""A stand-in for API-key authentication until API keys exist (tests only).

It authenticates the way the real scheme will: the credentials name one
account, carried on ``request.auth.account``; the account never comes from the
URL or the body.
"""

from __future__ import annotations

from types import SimpleNamespace

from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from accounts.models import Account

ACCOUNT_HEADER = "X-Test-Account"


class TestAccountAuthentication(BaseAuthentication):
    """``X-Test-Account: <account public id>`` authenticates as that account.

    An unknown id authenticates with no account (``request.auth.account`` is
    None), so the tenant base view's own refusal is what the tests see.
    """

    __test__ = False  # a name pytest would otherwise collect as a test class

    def authenticate(self, request: Request) -> tuple[None, SimpleNamespace] | None:
        public_id = request.headers.get(ACCOUNT_HEADER)
        if public_id is None:
            return None
        return None, SimpleNamespace(account=Account.objects.filter(public_id=public_id).first())
