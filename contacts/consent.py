"""Consent: subscribing with evidence, double opt-in, unsubscribing, and the account's suppression list.

Every subscription keeps its evidence: when, how (form, import, API, by
hand), from which address, and the words agreed to. Double opt-in mails a
signed link (7 days, single use, built from ``BASE_URL``); only following it
subscribes. The suppression list is keyed by the account's blind index of an
address, never the address, and every send consults it.

A person's own choice is never undone by someone else: an address that
unsubscribed, complained or was erased is subscribed again only when the
person follows a confirmation link sent to it, whatever the list's opt-in
(see docs/contacts.md, "Consent, GDPR and suppression").
"""

from __future__ import annotations

import logging
import smtplib
import time
from collections.abc import Iterable

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.models import Account
from accounts.tenancy import account_scope
from audit.services import record
from contacts.models import Contact, MailingList, Subscription, Suppression
from contacts.selectors import contact_email_index
from security.identifiers import canonical_email
from security.ratelimit import RateLimit, RateLimitUnavailable, hit

logger = logging.getLogger("bluespark.security")

CONFIRMATION_DAYS = 7
CONFIRMATION_MAX_AGE = CONFIRMATION_DAYS * 24 * 3600
_CONFIRM_SALT = "bluespark.contacts.consent.confirm"
_UNSUBSCRIBE_SALT = "bluespark.contacts.consent.unsubscribe"
#: Confirmation emails per address and account: a subscribe form cannot be turned into a mail bomb.
CONFIRMATION_EMAILS = RateLimit("subscription-confirmation-emails", capacity=3, period=24 * 3600)
#: Reasons the person lifts themself, by following a confirmation link sent to the address.
PERSON_LIFTABLE = frozenset({Suppression.Reason.UNSUBSCRIBED, Suppression.Reason.ERASED, Suppression.Reason.COMPLAINED})
#: Reasons a member may lift by hand (``unsuppress``): never an erasure or a spam complaint.
MEMBER_LIFTABLE = frozenset({Suppression.Reason.MANUAL, Suppression.Reason.UNSUBSCRIBED, Suppression.Reason.BOUNCED})
#: Reasons ``unsubscribe_contact`` takes: the person's click, or what the mail system found.
UNSUBSCRIBE_REASONS = frozenset(
    {Suppression.Reason.UNSUBSCRIBED, Suppression.Reason.BOUNCED, Suppression.Reason.COMPLAINED}
)
_SUPPRESSION_BATCH = 5000


class ConsentError(Exception):
    """A consent change refused, with a message fit for the user."""


class InvalidLink(ConsentError):
    """A confirmation or unsubscribe link that does not work; ``reason`` is ``invalid``, ``expired`` or ``used``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class FormNotFound(ConsentError):
    """No list with a public subscribe form has this id."""


# --- suppression ----------------------------------------------------------------------------


def _suppression(account: Account, index: bytes) -> Suppression | None:
    return Suppression.objects.filter(account=account, email_index=index).first()


def _contact_with_index(account: Account, index: bytes) -> Contact | None:
    return Contact.objects.filter(account=account, email_index=index).first()


def suppress_index(account: Account, index: bytes, *, reason: str, actor: object = None) -> Suppression:
    """Add or strengthen the suppression of one index; records ``suppression.added`` when anything changed.

    The first reason stands, except that an erasure replaces any other (it is the one
    only the person may lift).
    """
    reason = Suppression.Reason(reason)
    contact = _contact_with_index(account, index)
    target = ("contact", contact.public_id) if contact is not None else None
    with transaction.atomic():
        existing = Suppression.objects.select_for_update().filter(account=account, email_index=index).first()
        if existing is not None:
            if existing.reason == reason or reason != Suppression.Reason.ERASED:
                return existing
            previous = existing.reason
            existing.reason = reason
            existing.created_at = timezone.now()
            existing.save(update_fields=["reason", "created_at"])
            suppression = existing
        else:
            previous = None
            try:
                with transaction.atomic():
                    suppression = Suppression(account=account, email_index=index, reason=reason)
                    suppression.save(force_insert=True)
            except IntegrityError:
                # Another request suppressed it at the same moment: theirs stands, strengthened if need be.
                return suppress_index(account, index, reason=reason, actor=actor)
        record(
            "suppression.added",
            account=account,
            actor=actor,
            target=target,
            data={"reason": str(reason), "previous_reason": previous},
        )
    return suppression


def suppress(account: Account, email: str, *, reason: str, actor: object = None) -> Suppression:
    """Put an address on the account's suppression list (by its blind index); records ``suppression.added``.

    Idempotent: an address already suppressed keeps its reason, unless the new one is ``erased``.
    """
    return suppress_index(account, contact_email_index(account, email), reason=reason, actor=actor)


def unsuppress(account: Account, email: str, *, actor: object = None) -> bool:
    """Take an address off the suppression list; False when it was not on it. Records ``suppression.removed``.

    Raises ConsentError for an erasure or a spam complaint: only the person lifts those,
    by subscribing again through a form and following the confirmation link.
    """
    index = contact_email_index(account, email)
    with transaction.atomic():
        suppression = Suppression.objects.select_for_update().filter(account=account, email_index=index).first()
        if suppression is None:
            return False
        if suppression.reason not in MEMBER_LIFTABLE:
            raise ConsentError(
                f"This address is suppressed because it was {Suppression.Reason(suppression.reason).label.lower()}: "
                "only the person can lift that, by subscribing again through a subscribe form."
            )
        _lift(account, suppression, actor=actor, by="member")
    return True


def _lift(account: Account, suppression: Suppression, *, actor: object = None, by: str) -> None:
    contact = _contact_with_index(account, bytes(suppression.email_index))
    record(
        "suppression.removed",
        account=account,
        actor=actor,
        target=("contact", contact.public_id) if contact is not None else None,
        data={"reason": suppression.reason, "lifted_by": by},
    )
    suppression.delete()


def is_suppressed(account: Account, email: str) -> bool:
    """Whether the account must not mail this address (any reason)."""
    return Suppression.objects.filter(account=account, email_index=contact_email_index(account, email)).exists()


def suppressed_indexes(account: Account, indexes: Iterable[bytes]) -> set[bytes]:
    """Which of these blind indexes are suppressed in the account: one query per 5,000, for sends and imports."""
    wanted = [bytes(index) for index in indexes]
    found: set[bytes] = set()
    for start in range(0, len(wanted), _SUPPRESSION_BATCH):
        batch = wanted[start : start + _SUPPRESSION_BATCH]
        rows = Suppression.objects.filter(account=account, email_index__in=batch).values_list("email_index", flat=True)
        found.update(bytes(index) for index in rows)
    return found


# --- subscribing ----------------------------------------------------------------------------


def _locked_subscription(account: Account, contact: Contact, mailing_list: MailingList) -> Subscription | None:
    return (
        Subscription.objects.select_for_update()
        .filter(account=account, contact=contact, mailing_list=mailing_list)
        .first()
    )


def subscribe_contact(
    account: Account,
    contact: Contact,
    mailing_list: MailingList,
    *,
    source: str,
    ip: str | None = None,
    consent_text: str | None = None,
) -> Subscription:
    """Subscribe a contact to a list with the evidence of consent; idempotent for one already subscribed.

    Single opt-in subscribes at once; double opt-in leaves the subscription
    ``pending`` and mails a confirmation link. A suppressed address, one that
    left this list, or a contact that is not ``subscribed`` (it left its last
    list, a member set it ``unsubscribed``, or its first confirmation is still
    pending) must confirm by email even on a single opt-in list, and only
    through a subscribe form (``source="form"``): for every other source, and
    for an address bounced or suppressed by hand, ConsentError.
    """
    source = Contact.Source(source)
    if contact.status == Contact.Status.ERASED:
        raise ConsentError("This contact was erased: the person can subscribe again through a subscribe form.")
    with transaction.atomic():
        subscription = _locked_subscription(account, contact, mailing_list)
        if subscription is not None and subscription.status == Subscription.Status.SUBSCRIBED:
            return subscription
        suppression = _suppression(account, bytes(contact.email_index))
        left = subscription is not None and subscription.status == Subscription.Status.UNSUBSCRIBED
        if suppression is not None and suppression.reason not in PERSON_LIFTABLE:
            raise ConsentError(
                f"This address is on the suppression list ({Suppression.Reason(suppression.reason).label.lower()})."
            )
        withdrawn = contact.status != Contact.Status.SUBSCRIBED
        needs_the_person = suppression is not None or left or withdrawn
        if needs_the_person and source != Contact.Source.FORM:
            if suppression is None and not left:
                raise ConsentError(
                    f"This contact is {contact.status}: only the person can subscribe again, through a subscribe form."
                )
            raise ConsentError(
                "This person unsubscribed or was erased: only they can subscribe again, through a subscribe form."
            )
        double = mailing_list.opt_in == MailingList.OptIn.DOUBLE or needs_the_person
        if subscription is not None and subscription.status == Subscription.Status.PENDING:
            # Waiting already: the first request's evidence stands, and its link is sent again (rate limited).
            _confirm_later(account, contact, subscription)
            return subscription
        now = timezone.now()
        if subscription is None:
            subscription = Subscription(account=account, contact=contact, mailing_list=mailing_list)
        subscription.status = Subscription.Status.PENDING if double else Subscription.Status.SUBSCRIBED
        subscription.consent_source = source
        subscription.consent_at = now
        subscription.consent_ip = ip or None
        subscription.consent_text = mailing_list.consent_text if consent_text is None else consent_text
        subscription.confirmed_at = None
        subscription.unsubscribed_at = None
        if subscription.pk is None:
            try:
                with transaction.atomic():
                    subscription.save(force_insert=True)
            except IntegrityError:
                # Another request subscribed the same contact to the same list: go again, seeing theirs.
                return subscribe_contact(
                    account, contact, mailing_list, source=source, ip=ip, consent_text=consent_text
                )
        else:
            subscription.save()
        if double:
            _confirm_later(account, contact, subscription)
        else:
            _mark_contact_subscribed(contact)
    return subscription


def _mark_contact_subscribed(contact: Contact) -> None:
    if contact.status == Contact.Status.UNSUBSCRIBED:
        contact.status = Contact.Status.SUBSCRIBED
        contact.save(update_fields=["status", "updated_at"])


def _round(subscription: Subscription) -> str:
    """Names one pending round: a new request after an unsubscribe starts another, so old links stop working."""
    return str(int(subscription.consent_at.timestamp() * 1_000_000))


def confirmation_token(account: Account, subscription: Subscription) -> str:
    payload = f"{account.public_id}.{subscription.public_id}.{_round(subscription)}"
    return signing.TimestampSigner(salt=_CONFIRM_SALT).sign(payload)


def confirmation_link(account: Account, subscription: Subscription) -> str:
    """The link mailed for double opt-in, from BASE_URL (never the request's Host header)."""
    token = confirmation_token(account, subscription)
    return settings.BASE_URL + reverse("subscribe:confirm", kwargs={"token": token})


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _confirm_later(account: Account, contact: Contact, subscription: Subscription) -> None:
    address, link = contact.email, confirmation_link(account, subscription)
    mailing_list = subscription.mailing_list
    context = {
        "account_name": account.name,
        "list_name": mailing_list.name,
        "consent_text": subscription.consent_text,
        "link": link,
        "days": CONFIRMATION_DAYS,
    }
    bucket = f"{account.public_id}:{bytes(contact.email_index).hex()}"
    transaction.on_commit(lambda: _send_confirmation(address, bucket, context))


def _send_confirmation(address: str, bucket: str, context: dict) -> None:
    try:
        allowed = hit(CONFIRMATION_EMAILS, bucket, now=time.time()).allowed
    except RateLimitUnavailable:
        # The subscription is saved (pending). Unthrottled, the form could mail an address without end:
        # no mail now; submitting again sends a link once the limit can be counted.
        logger.error("subscription_confirmation_not_sent", extra={"error": "RateLimitUnavailable"})
        return
    if not allowed:
        logger.warning("subscription_confirmation_throttled")
        return
    subject = _one_line(f"Confirm your subscription to {context['list_name']}")
    body = render_to_string("contacts/email/subscription_confirm.txt", context)
    try:
        EmailMessage(subject, body, None, [address], headers={"Auto-Submitted": "auto-generated"}).send()
    except (smtplib.SMTPException, OSError) as error:
        # The request is saved (pending): a mail server that is down or refuses must not turn it into an error
        # page. Submitting again sends a new link. Logged by the error's kind only: its text can name the address.
        logger.error("subscription_confirmation_not_sent", extra={"error": type(error).__name__})


def _open_account(account_id: str) -> Account:
    account = Account.objects.filter(public_id=account_id).first()
    if account is None:
        raise InvalidLink("invalid", "This link is not valid.")
    return account


def confirm_subscription(token: str) -> Subscription:
    """Follow a double opt-in link: the subscription becomes ``subscribed`` and the confirmation is evidence.

    Lifts the person's own ``unsubscribed``, ``erased`` or ``complained``
    suppression (following the link is their act). Raises InvalidLink for a
    link that was tampered with (``invalid``), is older than 7 days
    (``expired``) or was followed already (``used``).
    """
    try:
        payload = signing.TimestampSigner(salt=_CONFIRM_SALT).unsign(token, max_age=CONFIRMATION_MAX_AGE)
    except signing.SignatureExpired:
        raise InvalidLink("expired", "This confirmation link has expired: subscribe again for a new one.") from None
    except signing.BadSignature:
        raise InvalidLink("invalid", "This confirmation link is not valid.") from None
    account_id, subscription_id, round_id = payload.split(".")
    account = _open_account(account_id)
    with account_scope(account), transaction.atomic():
        subscription = (
            Subscription.objects.select_for_update()
            .select_related("contact", "mailing_list")
            .filter(account=account, public_id=subscription_id)
            .first()
        )
        if subscription is None or subscription.contact.status == Contact.Status.ERASED:
            raise InvalidLink("invalid", "This confirmation link is not valid.")
        if subscription.status != Subscription.Status.PENDING or _round(subscription) != round_id:
            raise InvalidLink("used", "This confirmation link was used already.")
        contact = subscription.contact
        suppression = _suppression(account, bytes(contact.email_index))
        if suppression is not None:
            if suppression.reason not in PERSON_LIFTABLE:
                raise InvalidLink("invalid", "This address cannot be subscribed.")
            _lift(account, suppression, by="person")
        subscription.status = Subscription.Status.SUBSCRIBED
        subscription.confirmed_at = timezone.now()
        subscription.save(update_fields=["status", "confirmed_at", "updated_at"])
        _mark_contact_subscribed(contact)
    return subscription


# --- the public subscribe form --------------------------------------------------------------


def find_form_list(list_id: str) -> MailingList:
    """The list with this public id and an enabled form, in whichever account; FormNotFound otherwise.

    The one place a request with no account reaches a list: list ids are random
    (128 bits), and a form that is off answers exactly like a missing one.
    """
    candidates = list(
        MailingList.objects_unscoped_dangerous.select_related("account").filter(public_id=list_id, form_enabled=True)[
            :2
        ]
    )
    if len(candidates) != 1:
        raise FormNotFound("No such form.")
    return candidates[0]


def subscribe_through_form(
    mailing_list: MailingList, *, email: str, first_name: str = "", last_name: str = "", ip: str | None = None
) -> None:
    """What the public form does with a submission. Returns nothing, on purpose: the caller answers the same.

    A new address becomes a contact (source ``form``); an existing contact's
    names are left alone (an anonymous form must not overwrite them). An address
    bounced or suppressed by hand is silently left out; one that unsubscribed,
    complained or was erased gets a confirmation link.
    """
    account = mailing_list.account
    address = canonical_email(email)
    try:
        validate_email(address)
    except ValidationError:
        raise ConsentError("Enter a valid email address.") from None
    with account_scope(account):
        index = contact_email_index(account, address)
        suppression = _suppression(account, index)
        if suppression is not None and suppression.reason not in PERSON_LIFTABLE:
            return
        contact = _contact_with_index(account, index)
        if contact is None:
            # Not mailable until confirmed when a link must be followed first; confirming sets it subscribed.
            waits = suppression is not None or mailing_list.opt_in == MailingList.OptIn.DOUBLE
            contact = Contact(
                account=account,
                email=address,
                first_name=first_name.strip()[:200],
                last_name=last_name.strip()[:200],
                source=Contact.Source.FORM,
                status=Contact.Status.UNSUBSCRIBED if waits else Contact.Status.SUBSCRIBED,
            )
            try:
                with transaction.atomic():
                    contact.save(force_insert=True)
            except IntegrityError:
                contact = _contact_with_index(account, index)
                if contact is None:
                    return
        try:
            subscribe_contact(account, contact, mailing_list, source=Contact.Source.FORM, ip=ip)
        except ConsentError:
            return


# --- unsubscribing --------------------------------------------------------------------------


def unsubscribe_contact(
    account: Account, contact: Contact, mailing_list: MailingList, *, reason: str = "unsubscribed"
) -> Subscription:
    """Take a contact off a list; ``bounced`` and ``complained`` also suppress the address for the whole account.

    When the contact is left on no list, its status becomes ``unsubscribed`` (or
    the bounce or complaint). Idempotent. Raises ConsentError for a contact that
    was never on the list.
    """
    reason = Suppression.Reason(reason)
    if reason not in UNSUBSCRIBE_REASONS:
        raise ConsentError("A contact leaves a list because they unsubscribed, bounced or complained.")
    with transaction.atomic():
        subscription = _locked_subscription(account, contact, mailing_list)
        if subscription is None:
            raise ConsentError("This contact is not on this list.")
        if subscription.status != Subscription.Status.UNSUBSCRIBED:
            subscription.status = Subscription.Status.UNSUBSCRIBED
            subscription.unsubscribed_at = timezone.now()
            subscription.save(update_fields=["status", "unsubscribed_at", "updated_at"])
        if reason != Suppression.Reason.UNSUBSCRIBED:
            suppress_index(account, bytes(contact.email_index), reason=reason)
        _settle_contact_status(account, contact, reason)
    return subscription


def _settle_contact_status(account: Account, contact: Contact, reason: str) -> None:
    if contact.status == Contact.Status.ERASED:
        return
    if reason == Suppression.Reason.UNSUBSCRIBED:
        still_on = Subscription.objects.filter(
            account=account,
            contact=contact,
            status__in=[Subscription.Status.SUBSCRIBED, Subscription.Status.PENDING],
        ).exists()
        if still_on or contact.status != Contact.Status.SUBSCRIBED:
            return
    if contact.status != reason:
        contact.status = reason
        contact.save(update_fields=["status", "updated_at"])


def unsubscribe_everywhere(account: Account, contact: Contact) -> int:
    """The person leaves every list of the account and the address is suppressed (``unsubscribed``).

    Returns how many subscriptions ended. Only the person undoes it, through a form.
    """
    with transaction.atomic():
        now = timezone.now()
        ended = Subscription.objects.filter(account=account, contact=contact).exclude(
            status=Subscription.Status.UNSUBSCRIBED
        )
        count = ended.update(status=Subscription.Status.UNSUBSCRIBED, unsubscribed_at=now, updated_at=now)
        suppress_index(account, bytes(contact.email_index), reason=Suppression.Reason.UNSUBSCRIBED)
        _settle_contact_status(account, contact, Suppression.Reason.UNSUBSCRIBED)
    return count


def unsubscribe_token(account: Account, contact: Contact, mailing_list: MailingList) -> str:
    """Signed, not expiring: a link in a years-old message must still work (RFC 8058, CAN-SPAM)."""
    payload = f"{account.public_id}.{contact.public_id}.{mailing_list.public_id}"
    return signing.Signer(salt=_UNSUBSCRIBE_SALT).sign(payload)


def unsubscribe_link(account: Account, contact: Contact, mailing_list: MailingList) -> str:
    """The per-recipient one-click link for ``List-Unsubscribe`` (and ``List-Unsubscribe-Post``), from BASE_URL."""
    return settings.BASE_URL + reverse(
        "subscribe:unsubscribe", kwargs={"token": unsubscribe_token(account, contact, mailing_list)}
    )


def _read_unsubscribe_token(token: str) -> tuple[str, str, str]:
    try:
        payload = signing.Signer(salt=_UNSUBSCRIBE_SALT).unsign(token)
    except signing.BadSignature:
        raise InvalidLink("invalid", "This unsubscribe link is not valid.") from None
    account_id, contact_id, list_id = payload.split(".")
    return account_id, contact_id, list_id


def describe_unsubscribe_token(token: str) -> tuple[str, str]:
    """(account name, list name) for the confirm page; reads only. Raises InvalidLink."""
    account_id, _, list_id = _read_unsubscribe_token(token)
    account = _open_account(account_id)
    with account_scope(account):
        mailing_list = MailingList.objects.filter(account=account, public_id=list_id).first()
    return account.name, mailing_list.name if mailing_list is not None else ""


def unsubscribe_by_token(token: str, *, everywhere: bool = False) -> Subscription | None:
    """The one-click unsubscribe: off the link's list (or, when asked, everything the account sends).

    Idempotent; None when the contact or the list no longer exists (there is
    nothing left to stop). Raises InvalidLink for a link that was tampered with.
    """
    account_id, contact_id, list_id = _read_unsubscribe_token(token)
    account = _open_account(account_id)
    with account_scope(account), transaction.atomic():
        contact = Contact.objects.filter(account=account, public_id=contact_id).first()
        mailing_list = MailingList.objects.filter(account=account, public_id=list_id).first()
        if contact is None:
            return None
        subscription = None
        if mailing_list is not None:
            try:
                subscription = unsubscribe_contact(account, contact, mailing_list)
            except ConsentError:
                subscription = None
        if everywhere:
            unsubscribe_everywhere(account, contact)
    return subscription


def suppression_counts(account: Account) -> list[tuple[str, str, int]]:
    """(reason, label, count) for every reason, in the model's order: the suppression page's summary."""
    counted = dict(
        Suppression.objects.filter(account=account).values("reason").annotate(n=Count("id")).values_list("reason", "n")
    )
    return [(reason.value, reason.label, counted.get(reason.value, 0)) for reason in Suppression.Reason]
