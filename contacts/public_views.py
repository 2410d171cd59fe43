"""Public pages, no login: a list's subscribe form, the double opt-in link and the one-click unsubscribe link.

Why their POSTs are exempt from CSRF:

* The subscribe form is embedded in an iframe on customers' sites, where a
  CSRF cookie would be a third-party cookie that browsers block. A forged
  submission can do nothing that anyone typing into the form cannot: it is
  idempotent, it answers the same whatever the address was (new, subscribed,
  suppressed), under double opt-in nothing happens until the person follows
  the link sent to their mailbox (and an address that unsubscribed or was
  erased always needs that link), and it is rate limited per client address
  and per list.
* The confirmation and unsubscribe pages act on the signed token in their
  URL, which a cross-site forger does not have; RFC 8058 requires the
  one-click unsubscribe POST to work with no cookie or page in between. Their
  GETs change nothing (link scanners follow links).

Only the subscribe form may be framed (``frame-ancestors *``, no
``X-Frame-Options``); the confirmation and unsubscribe pages keep the
site-wide ``DENY``, so no page can trick a person into clicking them.
"""

from __future__ import annotations

import logging
import time

from csp.decorators import csp_replace
from django import forms
from django.core import signing
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from contacts import consent
from contacts.models import MailingList
from security.ratelimit import RateLimit, hit

logger = logging.getLogger("bluespark.security")

#: Submissions per client address, and per list from everyone (a distributed flood still stops).
FORM_POSTS_PER_CLIENT = RateLimit("subscribe-form-client", capacity=10, period=3600)
FORM_POSTS_PER_LIST = RateLimit("subscribe-form-list", capacity=300, period=3600)
#: A person needs a few seconds to type an address; a script posting at once is dropped.
MIN_FILL_SECONDS = 3
#: A form left open longer than this is shown again with a fresh stamp.
FORM_STAMP_MAX_AGE = 24 * 3600
_STAMP_SALT = "bluespark.contacts.public_views.form-stamp"
HONEYPOT_FIELD = "website"


class SubscribeForm(forms.Form):
    email = forms.EmailField(max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    first_name = forms.CharField(
        max_length=200, required=False, widget=forms.TextInput(attrs={"autocomplete": "given-name"})
    )
    last_name = forms.CharField(
        max_length=200, required=False, widget=forms.TextInput(attrs={"autocomplete": "family-name"})
    )


def form_stamp(mailing_list: MailingList) -> str:
    """A signed (list, time) pair for the hidden field: proves when this form was served, and for which list."""
    return signing.dumps([mailing_list.public_id, int(time.time())], salt=_STAMP_SALT)


def _stamp_verdict(value: str, mailing_list: MailingList) -> str:
    """``human``, ``bot`` (missing, forged, another list's, too fast) or ``stale`` (served too long ago)."""
    try:
        list_id, served_at = signing.loads(value, salt=_STAMP_SALT, max_age=FORM_STAMP_MAX_AGE)
    except signing.SignatureExpired:
        return "stale"
    except (signing.BadSignature, ValueError, TypeError):
        return "bot"
    if list_id != mailing_list.public_id or time.time() - served_at < MIN_FILL_SECONDS:
        return "bot"
    return "human"


def _form_page(request: HttpRequest, mailing_list: MailingList, form: SubscribeForm, **extra: object) -> HttpResponse:
    context = {"mailing_list": mailing_list, "form": form, "stamp": form_stamp(mailing_list), **extra}
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "contacts/public_form.html", context, status=status)


def _thanks(request: HttpRequest, mailing_list: MailingList) -> HttpResponse:
    # One page per list whatever happened: it tells nobody whether an address was known.
    return render(request, "contacts/public_thanks.html", {"mailing_list": mailing_list})


def _rate_limited(request: HttpRequest, mailing_list: MailingList) -> HttpResponse | None:
    now = time.time()
    for policy, subject in (
        (FORM_POSTS_PER_CLIENT, getattr(request, "client_ip", None) or "unknown"),
        (FORM_POSTS_PER_LIST, mailing_list.public_id),
    ):
        decision = hit(policy, subject, now=now)
        if not decision.allowed:
            logger.warning("subscribe_form_rate_limited", extra={"policy": policy.name, "list": mailing_list.public_id})
            response = render(request, "contacts/public_rate_limited.html", {"mailing_list": mailing_list}, status=429)
            response["Retry-After"] = str(decision.retry_after)
            return response
    return None


@csrf_exempt
@xframe_options_exempt
@csp_replace({"frame-ancestors": ["*"]})
@require_http_methods(["GET", "POST"])
def subscribe_form(request: HttpRequest, list_id: str) -> HttpResponse:
    """GET the form (embeddable); POST subscribes, or silently drops a bot. 404 unless the list's form is on."""
    try:
        mailing_list = consent.find_form_list(list_id)
    except consent.FormNotFound:
        raise Http404("No such form.") from None
    if request.method == "GET":
        return _form_page(request, mailing_list, SubscribeForm())
    limited = _rate_limited(request, mailing_list)
    if limited is not None:
        return limited
    verdict = _stamp_verdict(request.POST.get("stamp", ""), mailing_list)
    if request.POST.get(HONEYPOT_FIELD):
        verdict = "bot"
    if verdict == "bot":
        logger.info("subscribe_form_dropped", extra={"list": mailing_list.public_id})
        return _thanks(request, mailing_list)
    form = SubscribeForm(request.POST)
    if verdict == "stale":
        return _form_page(request, mailing_list, SubscribeForm(initial=request.POST.dict()), stale=True)
    if not form.is_valid():
        return _form_page(request, mailing_list, form)
    try:
        consent.subscribe_through_form(
            mailing_list,
            email=form.cleaned_data["email"],
            first_name=form.cleaned_data["first_name"],
            last_name=form.cleaned_data["last_name"],
            ip=getattr(request, "client_ip", None),
        )
    except consent.ConsentError as error:
        form.add_error("email", str(error))
        return _form_page(request, mailing_list, form)
    return _thanks(request, mailing_list)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows a button (mail scanners follow links); POST confirms the subscription."""
    if request.method == "GET":
        return render(request, "contacts/public_confirm.html", {"state": "ask"})
    try:
        subscription = consent.confirm_subscription(token)
    except consent.InvalidLink as error:
        context = {"state": "error", "reason": error.reason, "message": str(error)}
        return render(request, "contacts/public_confirm.html", context, status=400)
    context = {"state": "done", "list_name": subscription.mailing_list.name}
    return render(request, "contacts/public_confirm.html", context)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET asks (no side effect); POST unsubscribes: RFC 8058's one-click ``List-Unsubscribe=One-Click`` included.

    ``scope=everything`` (the page's second button) leaves every list of the account.
    """
    try:
        account_name, list_name = consent.describe_unsubscribe_token(token)
    except consent.InvalidLink as error:
        context = {"state": "error", "message": str(error)}
        return render(request, "contacts/public_unsubscribe.html", context, status=400)
    context = {"account_name": account_name, "list_name": list_name}
    if request.method == "GET":
        return render(request, "contacts/public_unsubscribe.html", {"state": "ask", **context})
    everywhere = request.POST.get("scope") == "everything"
    consent.unsubscribe_by_token(token, everywhere=everywhere)
    return render(request, "contacts/public_unsubscribe.html", {"state": "done", "everywhere": everywhere, **context})
