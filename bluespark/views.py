"""Pages that join several apps, and error pages."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from accounts.models import Role
from accounts.roles import require_role
from bluespark.health import run_checks
from campaigns.selectors import campaign_list
from contacts.selectors import mailing_list_list


@require_role(Role.VIEWER)
def dashboard(request: HttpRequest) -> HttpResponse:
    """The account's home page."""
    account = request.account
    return render(
        request,
        "bluespark/dashboard.html",
        {
            "recent_campaigns": campaign_list(account)[:5],
            "recent_lists": mailing_list_list(account)[:5],
        },
    )


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A plain 403 page that does not echo the reason (it can name cookie details)."""
    return render(request, "403_csrf.html", status=403)


def healthz(request: HttpRequest) -> HttpResponse:
    """The process is alive; no dependency is touched."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> HttpResponse:
    """Ready to serve: database, broker and cache all answer (503 otherwise)."""
    results = run_checks()
    ok = all(result.ok for result in results)
    body = {
        "status": "ok" if ok else "unavailable",
        "checks": {
            result.name: {
                "ok": result.ok,
                "ms": result.milliseconds,
                **({"error": result.error} if result.error else {}),
            }
            for result in results
        },
    }
    return JsonResponse(body, status=200 if ok else 503)
