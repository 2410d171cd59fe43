"""Segments: a whitelisted JSON filter language over an account's contacts, compiled to the ORM.

A definition is a tree of groups and conditions. Nothing in it ever becomes
SQL text: every field and operator is looked up in the tables below and
compiled to ``Q`` objects, ORM lookups and ``Exists(...)`` subqueries; values
travel as query parameters.

Groups::

    {"all": [node, ...]}     every child matches (AND); {"all": []} at the top matches everyone
    {"any": [node, ...]}     at least one child matches (OR); needs a child
    {"not": node}            the child does not match (a true complement: see "Missing values")

``{}`` means ``{"all": []}`` (everyone), and a bare condition at the top means
``{"all": [condition]}``. A group below the top needs at least one child.

Conditions are ``{"field": F, "op": OP, "value": V}``:

=======================  ============================================  ==========================================
field                    operators                                     value
=======================  ============================================  ==========================================
``status``               ``eq``, ``neq``, ``in``                       a ``Contact.Status`` (a list for ``in``)
``source``               ``eq``, ``in``                                a ``Contact.Source`` (a list for ``in``)
``created_at``,          ``before``, ``after``, ``within_days``        ``"YYYY-MM-DD"`` or an ISO 8601 time with
``updated_at``                                                         an offset; days: an integer 1–3650
``email``                ``eq``                                        an address (exact; case and Unicode form
                                                                       do not matter); never a substring
``email_domain``         ``eq``, ``in``                                a domain (``"example.com"``)
``tag``                  ``has``, ``has_not``                          the name of one of the account's tags
``list``                 ``subscribed``, ``pending``,                  the public id of one of the account's
                         ``unsubscribed``, ``not_subscribed``          lists (``lst_…``)
``attributes.<key>``     by the custom field's type (below)            by type
``sensitive.<key>``      ``eq``                                        the exact value (surrounding spaces aside;
                                                                       numbers and flags as the contact stores them)
``engagement``           ``opened_within_days``,                       days: an integer 1–3650
                         ``clicked_within_days``
=======================  ============================================  ==========================================

``attributes.<key>`` names a custom field of the account that is not
sensitive; its operators depend on the field's type:

* text: ``eq``, ``neq`` (case-insensitive), ``contains``, ``starts_with``
  (case-insensitive; ``%`` and ``_`` are ordinary characters),
  ``is_set``, ``is_not_set`` (no value; an empty string is not set);
* number: ``eq``, ``neq``, ``gt``, ``gte``, ``lt``, ``lte`` (a JSON number);
* date: ``before``, ``after`` (``"YYYY-MM-DD"``, days strictly before or
  after), ``within_days`` (from N days ago to today, inclusive, in UTC);
* boolean: ``is_true``, ``is_false`` (no value);
* choice: ``eq``, ``in`` (values among the field's choices, exact).

Meanings:

* ``created_at``/``updated_at``: ``before`` a date is earlier than that
  day's start (UTC); ``after`` a date is from the next day's start on;
  with a time, strictly before or after that instant. ``within_days`` N is
  the last N×24 hours.
* ``list``: ``subscribed``/``pending``/``unsubscribed`` is a subscription to
  the list in that state; ``not_subscribed`` is the complement of
  ``subscribed`` (never subscribed, waiting for confirmation, or left).
* ``email`` and ``sensitive.<key>`` match through the account's blind
  indexes, so only equality exists; ``validate`` replaces their plaintext
  ``value`` with ``"value_index"`` (the hex blind index), so a saved segment
  never stores an address or a sensitive value in clear. A definition may
  carry ``value_index`` instead of ``value`` (that is how saved ones come back).
* ``email_domain`` matches through the per-account domain index.
* First and last names are encrypted without any index: refused.
* ``engagement``: the contact opened a message (``opened_within_days``) or
  clicked a link in one (``clicked_within_days``) at least once in the last
  N×24 hours; ``{"not": …}`` of it is "did not". Contacts does not hold opens
  and clicks: the app that records them (delivery) registers how to filter by
  them with ``register_engagement_filter`` from its ``AppConfig.ready()``.
  With none registered, ``validate`` still accepts the condition (saved
  segments keep it) but ``contacts_matching`` and the counts raise
  ``SegmentError(ENGAGEMENT_UNAVAILABLE)``.

Missing values: a condition on a custom field is false for a contact with
no value (or a value of the wrong shape, such as text in a number field), so
``neq`` is exactly ``not eq`` and ``{"not": …}`` is always the complement.

Limits: groups nest at most 5 deep (the top group is 1), at most 50
conditions, strings at most 200 characters, lists at most 100 items. Every
error is a ``SegmentError`` whose message starts with the path of the bad part
(``all[2].value: …``).

Tags, lists and custom fields are resolved in the active account only, so
another account's ids and names are unknown here. Segments only filter: who
may be mailed (subscription, suppression) is the sender's rule.

SQLite (the embedded run) runs the same ORM: JSON keys through
``JSON_EXTRACT``, regular expressions through Django's Python ``REGEXP``;
results are the same, only slower.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Case, Exists, FloatField, JSONField, OuterRef, Q, QuerySet, Value, When
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast, Substr
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    IContains,
    IExact,
    In,
    IsNull,
    IStartsWith,
    LessThan,
    LessThanOrEqual,
    Regex,
)
from django.utils import timezone
from redis.exceptions import RedisError

from accounts.models import Account
from accounts.tenancy import TenantScopeError, get_active_account
from contacts.models import Contact, ContactTag, CustomField, MailingList, Segment, SensitiveValue, Subscription, Tag
from security.fields import blind_index_for
from security.identifiers import canonical_email

logger = logging.getLogger(__name__)

MAX_DEPTH = 5
MAX_CONDITIONS = 50
MAX_STRING = 200
MAX_LIST = 100
MAX_DAYS = 3650
# A cached count older than this (or than the definition) is refreshed in the background.
CACHED_COUNT_MAX_AGE = dt.timedelta(minutes=10)
# How long "a refresh is queued" is remembered, so a busy page queues one task, not one per view.
REFRESH_PENDING_SECONDS = 300
# How long an account's "small or large" answer is trusted.
SIZE_PROBE_SECONDS = 300

ENGAGEMENT_UNAVAILABLE = "Engagement filters need opens and clicks, which this installation does not record."

# What a JSON number looks like as text; anything else in a number field is "no value", never a cast error.
_NUMBER_TEXT = r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$"
_ISO_DAY_TEXT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
_INDEX_HEX = re.compile(r"^[0-9a-f]{64}$")
_ENCRYPTED_NAMES = ("first_name", "last_name", "name")

_DATE_OPS = ("before", "after", "within_days")
_OPS: dict[str, tuple[str, ...]] = {
    "status": ("eq", "neq", "in"),
    "source": ("eq", "in"),
    "created_at": _DATE_OPS,
    "updated_at": _DATE_OPS,
    "email": ("eq",),
    "email_domain": ("eq", "in"),
    "tag": ("has", "has_not"),
    "list": ("subscribed", "pending", "unsubscribed", "not_subscribed"),
    "engagement": ("opened_within_days", "clicked_within_days"),
}
_ATTRIBUTE_OPS: dict[str, tuple[str, ...]] = {
    CustomField.Type.TEXT: ("eq", "neq", "contains", "starts_with", "is_set", "is_not_set"),
    CustomField.Type.NUMBER: ("eq", "neq", "gt", "gte", "lt", "lte"),
    CustomField.Type.DATE: _DATE_OPS,
    CustomField.Type.BOOLEAN: ("is_true", "is_false"),
    CustomField.Type.CHOICE: ("eq", "in"),
}
_VALUELESS_OPS = ("is_set", "is_not_set", "is_true", "is_false")
# The act an engagement operator asks about, as the registered filter is told it.
_ENGAGEMENT_ACTS = {"opened_within_days": "opened", "clicked_within_days": "clicked"}
_LIST_STATUS = {
    "subscribed": Subscription.Status.SUBSCRIBED,
    "pending": Subscription.Status.PENDING,
    "unsubscribed": Subscription.Status.UNSUBSCRIBED,
}


class SegmentError(ValueError):
    """A definition outside the language, or naming something this account does not have."""

    def __init__(self, path: str, message: str | None = None) -> None:
        if message is None:  # SegmentError("…"): about the whole definition
            path, message = "", path
        self.path = path
        self.message = message
        super().__init__(f"{path or 'definition'}: {message}")


# --- engagement, filtered by the app that records it ------------------------------------------

#: ``build(act, since)``: a ``Q`` over ``Contact`` matching the contacts who did ``act`` ("opened" or "clicked")
#: at ``since`` or later, reading inside the active account's scope. One ORM expression, never SQL text.
EngagementFilter = Callable[[str, dt.datetime], Q]

_engagement_filter: EngagementFilter | None = None


def register_engagement_filter(build: EngagementFilter) -> None:
    """Compile ``engagement`` conditions with ``build``; called from the recording app's AppConfig.ready()."""
    global _engagement_filter
    _engagement_filter = build


@contextmanager
def using_engagement_filter(build: EngagementFilter | None) -> Iterator[None]:
    """Compile ``engagement`` conditions with ``build`` (None: refuse them) inside the block only; for tests."""
    global _engagement_filter
    previous, _engagement_filter = _engagement_filter, build
    try:
        yield
    finally:
        _engagement_filter = previous


# --- validation ---------------------------------------------------------------------------


@dataclass
class _Checked:
    """A normalised definition and what compiling it needs (resolved ids, field types)."""

    definition: dict[str, Any]
    engagement_path: str | None = None
    tag_ids: dict[str, int] = field(default_factory=dict)
    list_ids: dict[str, int] = field(default_factory=dict)
    fields: dict[str, CustomField] = field(default_factory=dict)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class _Checker:
    def __init__(self, account: Account) -> None:
        self.account = account
        self.conditions = 0
        self.engagement_path: str | None = None
        self.tags: dict[str, str] = {}  # name -> path of its first use
        self.lists: dict[str, str] = {}  # public id -> path of its first use
        self._fields: dict[str, CustomField] | None = None

    @property
    def fields(self) -> dict[str, CustomField]:
        if self._fields is None:
            self._fields = {f.key: f for f in CustomField.objects.all()}
        return self._fields

    def check(self, definition: Any) -> _Checked:
        if not isinstance(definition, dict):
            raise SegmentError("", "a definition is a JSON object.")
        if not definition:
            normalised: dict[str, Any] = {"all": []}
        elif "field" in definition:
            normalised = {"all": [self.condition(definition, "")]}
        else:
            normalised = self.node(definition, "", depth=1, is_top=True)
        checked = _Checked(normalised, engagement_path=self.engagement_path)
        checked.tag_ids = self._resolve(Tag.objects.all(), "name", self.tags, "no tag named {!r} in this account.")
        checked.list_ids = self._resolve(
            MailingList.objects.all(), "public_id", self.lists, "no list {!r} in this account."
        )
        if self._fields is not None:
            checked.fields = self._fields
        return checked

    def _resolve(self, queryset: QuerySet, attribute: str, wanted: dict[str, str], missing: str) -> dict[str, int]:
        if not wanted:
            return {}
        found = dict(queryset.filter(**{f"{attribute}__in": list(wanted)}).values_list(attribute, "pk"))
        for name, path in wanted.items():
            if name not in found:
                raise SegmentError(path, missing.format(name))
        return found

    def node(self, node: Any, path: str, *, depth: int, is_top: bool = False) -> dict[str, Any]:
        if not isinstance(node, dict):
            raise SegmentError(path, 'expected a group ({"all": …}, {"any": …}, {"not": …}) or a condition.')
        if "field" in node or "op" in node:
            return self.condition(node, path)
        if len(node) != 1 or next(iter(node)) not in ("all", "any", "not"):
            keys = ", ".join(sorted(map(str, node))) or "nothing"
            raise SegmentError(path, f"a group has exactly one key, all, any or not (found {keys}).")
        if depth > MAX_DEPTH:
            raise SegmentError(path, f"groups nest at most {MAX_DEPTH} deep.")
        ((kind, children),) = node.items()
        here = _join(path, kind)
        if kind == "not":
            return {"not": self.node(children, here, depth=depth + 1)}
        if not isinstance(children, list):
            raise SegmentError(here, "expected a list of conditions and groups.")
        if len(children) > MAX_LIST:
            raise SegmentError(here, f"at most {MAX_LIST} items.")
        if not children and not (is_top and kind == "all"):
            raise SegmentError(here, "a group needs at least one condition.")
        return {kind: [self.node(child, _join(here, i), depth=depth + 1) for i, child in enumerate(children)]}

    def condition(self, node: dict[str, Any], path: str) -> dict[str, Any]:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise SegmentError(path, f"a segment has at most {MAX_CONDITIONS} conditions.")
        for key in node:
            if key not in ("field", "op", "value", "value_index"):
                raise SegmentError(_join(path, str(key)), "unknown key (a condition has field, op and value).")
        name, op = node.get("field"), node.get("op")
        if not isinstance(name, str) or not name:
            raise SegmentError(_join(path, "field"), "expected the name of a field.")
        if name in _ENCRYPTED_NAMES:
            raise SegmentError(
                _join(path, "field"), f"{name} is encrypted without a search index, so segments cannot filter on it."
            )
        if name.startswith("attributes."):
            return self.attribute(node, path, name.removeprefix("attributes."))
        if name.startswith("sensitive."):
            return self.sensitive(node, path, name.removeprefix("sensitive."))
        if name not in _OPS:
            raise SegmentError(
                _join(path, "field"),
                f"unknown field {name[:MAX_STRING]!r} (known: {', '.join(_OPS)}, attributes.<key>, sensitive.<key>).",
            )
        self.check_op(path, name, op, _OPS[name])
        if "value_index" in node and name != "email":
            raise SegmentError(_join(path, "value_index"), "only email and sensitive fields take a value_index.")
        value_path = _join(path, "value")
        value = node.get("value")
        if name == "status":
            value = self.choice(value, value_path, Contact.Status.values, many=op == "in")
        elif name == "source":
            value = self.choice(value, value_path, Contact.Source.values, many=op == "in")
        elif name in ("created_at", "updated_at"):
            value = self.days(value, value_path) if op == "within_days" else self.moment(value, value_path)
        elif name == "email":
            return self.indexed(node, path, name, op, "email")
        elif name == "email_domain":
            value = self.domains(value, value_path, many=op == "in")
        elif name == "tag":
            value = self.string(value, value_path).strip()
            if not value:
                raise SegmentError(value_path, "expected a tag name.")
            self.tags.setdefault(value, value_path)
        elif name == "list":
            value = self.string(value, value_path).strip()
            self.lists.setdefault(value, value_path)
        elif name == "engagement":
            value = self.days(value, value_path)
            if self.engagement_path is None:
                self.engagement_path = _join(path, "field")
        return {"field": name, "op": op, "value": value}

    def attribute(self, node: dict[str, Any], path: str, key: str) -> dict[str, Any]:
        custom = self.custom_field(path, key)
        if custom.sensitive:
            raise SegmentError(
                _join(path, "field"), f"{key} is a sensitive field: match it with sensitive.{key} and eq."
            )
        name = f"attributes.{key}"
        op = node.get("op")
        self.check_op(path, name, op, _ATTRIBUTE_OPS[custom.type])
        if "value_index" in node:
            raise SegmentError(_join(path, "value_index"), "only email and sensitive fields take a value_index.")
        value_path = _join(path, "value")
        value = node.get("value")
        if op in _VALUELESS_OPS:
            if value is not None:
                raise SegmentError(value_path, f"{op} takes no value.")
            return {"field": name, "op": op}
        if custom.type == CustomField.Type.TEXT:
            value = self.string(value, value_path)
        elif custom.type == CustomField.Type.NUMBER:
            value = self.number(value, value_path)
        elif custom.type == CustomField.Type.DATE:
            value = self.days(value, value_path) if op == "within_days" else self.day(value, value_path)
        elif custom.type == CustomField.Type.CHOICE:
            choices = [c.get("value") if isinstance(c, dict) else c for c in custom.choices or []]
            value = self.choice(value, value_path, [c for c in choices if isinstance(c, str)], many=op == "in")
        return {"field": name, "op": op, "value": value}

    def sensitive(self, node: dict[str, Any], path: str, key: str) -> dict[str, Any]:
        custom = self.custom_field(path, key)
        if not custom.sensitive:
            raise SegmentError(_join(path, "field"), f"{key} is not a sensitive field: use attributes.{key}.")
        name = f"sensitive.{key}"
        op = node.get("op")
        if op != "eq":
            self.check_op(path, name, op, ())
        return self.indexed(node, path, name, op, "text")

    def indexed(self, node: dict[str, Any], path: str, name: str, op: str, purpose: str) -> dict[str, Any]:
        """An equality through a blind index; the plaintext is replaced by its index, never kept."""
        if "value_index" in node:
            if "value" in node:
                raise SegmentError(path, "give value or value_index, not both.")
            index = node["value_index"]
            if not isinstance(index, str) or not _INDEX_HEX.match(index):
                raise SegmentError(_join(path, "value_index"), "expected a blind index (64 hexadecimal digits).")
            return {"field": name, "op": op, "value_index": index}
        value_path = _join(path, "value")
        value = node.get("value")
        if purpose == "text" and isinstance(value, bool):
            value = "true" if value else "false"  # spelt as the contact services store a sensitive flag
        elif purpose == "text" and isinstance(value, int | float) and math.isfinite(value):
            value = str(value)
        value = self.string(value, value_path)
        if purpose == "email":
            try:
                validate_email(canonical_email(value))
            except ValidationError:
                raise SegmentError(value_path, "expected an email address.") from None
        elif not value.strip():
            raise SegmentError(value_path, "expected a value.")
        index = blind_index_for(self.account.public_id, purpose, value)
        return {"field": name, "op": op, "value_index": index.hex()}

    def custom_field(self, path: str, key: str) -> CustomField:
        custom = self.fields.get(key)
        if custom is None:
            raise SegmentError(_join(path, "field"), f"no custom field {key[:MAX_STRING]!r} in this account.")
        return custom

    @staticmethod
    def check_op(path: str, name: str, op: Any, allowed: tuple[str, ...]) -> None:
        if op not in allowed:
            shown = repr(op[:MAX_STRING]) if isinstance(op, str) else "missing" if op is None else "not a string"
            known = f" (known: {', '.join(allowed)})" if allowed else ""
            raise SegmentError(_join(path, "op"), f"operator {shown} does not apply to {name}{known}.")

    # --- values ---

    @staticmethod
    def string(value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise SegmentError(path, "expected a string.")
        if len(value) > MAX_STRING:
            raise SegmentError(path, f"at most {MAX_STRING} characters.")
        return value

    def strings(self, value: Any, path: str) -> list[str]:
        if not isinstance(value, list) or not value:
            raise SegmentError(path, "expected a non-empty list.")
        if len(value) > MAX_LIST:
            raise SegmentError(path, f"at most {MAX_LIST} items.")
        return list(dict.fromkeys(self.string(item, _join(path, i)) for i, item in enumerate(value)))

    def choice(self, value: Any, path: str, allowed: list[str], *, many: bool) -> str | list[str]:
        items = self.strings(value, path) if many else [self.string(value, path)]
        for i, item in enumerate(items):
            if item not in allowed:
                shown = ", ".join(allowed[:20]) or "none"
                raise SegmentError(_join(path, i) if many else path, f"{item!r} is not one of: {shown}.")
        return items if many else items[0]

    def domains(self, value: Any, path: str, *, many: bool) -> str | list[str]:
        items = self.strings(value, path) if many else [self.string(value, path)]
        cleaned = []
        for i, item in enumerate(items):
            domain = canonical_email(item).removeprefix("@")
            if not domain or "@" in domain or any(c.isspace() for c in domain):
                raise SegmentError(_join(path, i) if many else path, "expected a domain such as example.com.")
            cleaned.append(domain)
        cleaned = list(dict.fromkeys(cleaned))
        return cleaned if many else cleaned[0]

    @staticmethod
    def days(value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DAYS:
            raise SegmentError(path, f"expected a whole number of days from 1 to {MAX_DAYS}.")
        return value

    @staticmethod
    def number(value: Any, path: str) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise SegmentError(path, "expected a number.")
        return value

    def day(self, value: Any, path: str) -> str:
        try:
            return dt.date.fromisoformat(self.string(value, path)).isoformat()
        except ValueError:
            raise SegmentError(path, "expected a date as YYYY-MM-DD.") from None

    def moment(self, value: Any, path: str) -> str:
        text = self.string(value, path)
        if len(text) == 10:
            return self.day(text, path)
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            raise SegmentError(path, "expected YYYY-MM-DD or an ISO 8601 time with an offset.") from None
        if moment.tzinfo is None:
            raise SegmentError(path, "a time needs an offset (such as Z or +02:00).")
        return moment.astimezone(dt.UTC).isoformat()


def validate(account: Account, definition: dict) -> dict:
    """The definition, checked against the language and the account's fields, tags and lists, normalised.

    Raises SegmentError naming the bad part. Needs the account's scope (it reads its fields, tags and lists).
    """
    _require_scope(account)
    return _Checker(account).check(definition).definition


# --- compiling ------------------------------------------------------------------------------


def contacts_matching(account: Account, definition: dict) -> QuerySet[Contact]:
    """The account's contacts matching ``definition`` (validated here); raises SegmentError.

    Runs inside the account's scope, through the scoped manager only.
    """
    _require_scope(account)
    return _matching(account, _runnable(account, definition))


def _matching(account: Account, checked: _Checked) -> QuerySet[Contact]:
    return Contact.objects.filter(_Compiler(account, checked, timezone.now()).node(checked.definition))


def count(account: Account, definition: dict) -> int:
    """How many of the account's contacts match; raises SegmentError."""
    return contacts_matching(account, definition).count()


def _runnable(account: Account, definition: dict) -> _Checked:
    """The checked definition; SegmentError also for an engagement condition that no registered filter compiles."""
    checked = _Checker(account).check(definition)
    if checked.engagement_path is not None and _engagement_filter is None:
        raise SegmentError(checked.engagement_path, ENGAGEMENT_UNAVAILABLE)
    return checked


def _require_scope(account: Account) -> None:
    active = get_active_account()
    if active is None or active.pk != account.pk:
        raise TenantScopeError("Segments run inside their account's scope (accounts.tenancy.account_scope).")


class _Compiler:
    def __init__(self, account: Account, checked: _Checked, now: dt.datetime) -> None:
        self.scope = account.public_id
        self.checked = checked
        self.now = now
        self.today = now.astimezone(dt.UTC).date()

    def node(self, node: dict[str, Any]) -> Q:
        if "all" in node:
            result = Q()
            for child in node["all"]:
                result &= self.node(child)
            return result
        if "any" in node:
            children = [self.node(child) for child in node["any"]]
            result = children[0]
            for child in children[1:]:
                result |= child
            return result
        if "not" in node:
            return ~self.node(node["not"])
        return self.condition(node)

    def condition(self, node: dict[str, Any]) -> Q:
        name, op, value = node["field"], node["op"], node.get("value")
        if name in ("status", "source"):
            if op == "in":
                return Q(**{f"{name}__in": value})
            return ~Q(**{name: value}) if op == "neq" else Q(**{name: value})
        if name in ("created_at", "updated_at"):
            return self.timestamp(name, op, value)
        if name == "email":
            return Q(email_index=bytes.fromhex(node["value_index"]))
        if name == "email_domain":
            values = value if op == "in" else [value]
            indexes = [blind_index_for(self.scope, "email_domain", domain) for domain in values]
            return Q(email_domain_index__in=indexes) if op == "in" else Q(email_domain_index=indexes[0])
        if name == "tag":
            tagged = Exists(ContactTag.objects.filter(contact=OuterRef("pk"), tag_id=self.checked.tag_ids[value]))
            return Q(tagged) if op == "has" else ~Q(tagged)
        if name == "list":
            status = _LIST_STATUS.get(op, Subscription.Status.SUBSCRIBED)
            on_list = Exists(
                Subscription.objects.filter(
                    contact=OuterRef("pk"), mailing_list_id=self.checked.list_ids[value], status=status
                )
            )
            return ~Q(on_list) if op == "not_subscribed" else Q(on_list)
        if name == "engagement":
            if _engagement_filter is None:  # _runnable refused the definition already
                raise SegmentError(ENGAGEMENT_UNAVAILABLE)
            # The same window as created_at's within_days.
            return _engagement_filter(_ENGAGEMENT_ACTS[op], self.now - dt.timedelta(days=value))
        if name.startswith("sensitive."):
            custom = self.checked.fields[name.removeprefix("sensitive.")]
            return Q(
                Exists(
                    SensitiveValue.objects.filter(
                        contact=OuterRef("pk"), field_id=custom.pk, value_index=bytes.fromhex(node["value_index"])
                    )
                )
            )
        return self.attribute(name.removeprefix("attributes."), op, value)

    def timestamp(self, name: str, op: str, value: Any) -> Q:
        if op == "within_days":
            return Q(**{f"{name}__gte": self.now - dt.timedelta(days=value)})
        if len(value) == 10:  # a day: its start, or the next day's start, in UTC
            day = dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), tzinfo=dt.UTC)
            return Q(**{f"{name}__lt": day}) if op == "before" else Q(**{f"{name}__gte": day + dt.timedelta(days=1)})
        moment = dt.datetime.fromisoformat(value)
        return Q(**{f"{name}__lt": moment}) if op == "before" else Q(**{f"{name}__gt": moment})

    def attribute(self, key: str, op: str, value: Any) -> Q:
        kind = self.checked.fields[key].type
        # One key, never split on "__": a key such as "a__b" or "contains" stays a key.
        text = KeyTextTransform(key, "attributes")
        present = Q(IsNull(text, False))
        if kind == CustomField.Type.BOOLEAN:
            json_value = KeyTransform(key, "attributes")
            is_value = json_value.get_lookup("exact")(json_value, Value(op == "is_true", output_field=JSONField()))
            return Q(json_value.get_lookup("isnull")(json_value, False)) & Q(is_value)
        if kind == CustomField.Type.TEXT:
            if op in ("is_set", "is_not_set"):
                is_set = present & ~Q(Exact(text, ""))
                return is_set if op == "is_set" else ~is_set
            if op in ("eq", "neq"):
                equal = present & Q(IExact(text, value))
                return equal if op == "eq" else ~equal
            lookup = IContains if op == "contains" else IStartsWith
            return present & Q(lookup(text, value))
        if kind == CustomField.Type.CHOICE:
            return present & Q(In(text, value) if op == "in" else Exact(text, value))
        if kind == CustomField.Type.NUMBER:
            # The CASE keeps the cast away from values that are not numbers (it would raise).
            is_number = present & Q(Regex(text, _NUMBER_TEXT))
            number = Case(When(is_number, then=Cast(text, FloatField())), default=None, output_field=FloatField())
            if op in ("eq", "neq"):
                equal = is_number & Q(Exact(number, float(value)))
                return equal if op == "eq" else ~equal
            compare: dict[str, Callable[..., Any]] = {
                "gt": GreaterThan,
                "gte": GreaterThanOrEqual,
                "lt": LessThan,
                "lte": LessThanOrEqual,
            }
            return is_number & Q(compare[op](number, float(value)))
        # Dates: ISO days compare as text (fixed width), so no cast can fail on a malformed value.
        is_day = present & Q(Regex(text, _ISO_DAY_TEXT))
        day = Substr(text, 1, 10)
        if op == "before":
            return is_day & Q(LessThan(day, value))
        if op == "after":
            return is_day & Q(GreaterThan(day, value))
        since = (self.today - dt.timedelta(days=value)).isoformat()
        return is_day & Q(GreaterThanOrEqual(day, since)) & Q(LessThanOrEqual(day, self.today.isoformat()))


# --- counts for the dashboard -----------------------------------------------------------------


def _pending_key(account: Account, segment: Segment) -> str:
    return f"segments:refresh-pending:{account.public_id}:{segment.public_id}"


def segment_to_count(account: Account, public_id: str) -> Segment | None:
    """The account's segment with that id, or None (deleted since a count was queued, or another account's)."""
    return Segment.objects.filter(account=account, public_id=public_id).first()


def refresh_count(account: Account, segment: Segment) -> int:
    """Count the segment now and cache it on the row, unless its definition changed meanwhile.

    Raises SegmentError when the saved definition no longer holds (a list or field was deleted).
    """
    started = timezone.now()
    matched = count(account, segment.definition)
    # Stored only if the row is still the one counted: an edit since then leaves the cache stale, to be recounted.
    Segment.objects.filter(pk=segment.pk, updated_at=segment.updated_at).update(
        cached_count=matched, counted_at=started
    )
    segment.cached_count, segment.counted_at = matched, started
    cache.delete(_pending_key(account, segment))
    return matched


def account_is_small(account: Account) -> bool:
    """Whether the account has at most BLUESPARK_SEGMENT_LIVE_COUNT_LIMIT contacts.

    Counts at most limit + 1 rows (an index-only scan that stops early), and remembers the answer for a while.
    """
    limit = settings.SEGMENT_LIVE_COUNT_LIMIT
    key = f"segments:small:{account.public_id}:{limit}"
    answer = cache.get(key)
    if answer is None:
        answer = Contact.objects.values("pk")[: limit + 1].count() <= limit
        cache.set(key, answer, SIZE_PROBE_SECONDS)
    return bool(answer)


def _audience_key(account: Account) -> str:
    return f"segments:audience-version:{account.public_id}"


def audience_changed(account: Account) -> None:
    """Say many contacts just changed (an import, a bulk upsert): cached counts are recounted when next shown.

    Saved segments' figures become stale (still shown, marked as being refreshed) and the builder's cached
    figures are forgotten. Single-contact changes do not call this: their figures catch up within
    ``CACHED_COUNT_MAX_AGE``.
    """
    Segment.objects.filter(account=account, counted_at__isnull=False).update(counted_at=None)
    try:
        try:
            cache.incr(_audience_key(account))
        except ValueError:  # no version yet
            cache.set(_audience_key(account), 1, None)
    except RedisError:
        # The write that called this is done and must not fail for the cache: the builder's cached
        # figures then age out within CACHED_COUNT_MAX_AGE instead.
        logger.warning("audience_version_not_bumped", extra={"account": account.public_id})


def _draft_key(account: Account, definition: dict) -> str:
    # The normalised definition holds blind indexes, never addresses or sensitive values (validate).
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    version = cache.get(_audience_key(account), 0)
    return f"segments:draft-count:{account.public_id}:{version}:{digest}"


def count_definition_for_display(account: Account, definition: dict) -> tuple[int | None, bool]:
    """(count, refreshing) of a definition not saved yet (the builder's live count).

    A small account is counted now. A large one gets the figure a background count left in the cache for the
    same normalised definition in the last ``CACHED_COUNT_MAX_AGE``, else None with one count queued (the page
    asks again). Raises SegmentError for a definition outside the language, in both cases.
    """
    _require_scope(account)
    checked = _runnable(account, definition)
    if account_is_small(account):
        return _matching(account, checked).count(), False
    normalised = checked.definition
    key = _draft_key(account, normalised)
    cached = cache.get(key)
    if cached is not None:
        return int(cached), False
    if cache.add(f"{key}:pending", True, REFRESH_PENDING_SECONDS):
        from contacts.segment_tasks import count_segment_definition

        account_id = account.public_id
        transaction.on_commit(lambda: count_segment_definition.delay(account_id, normalised))
    return None, True


def count_definition_now(account: Account, definition: dict) -> int:
    """Count a normalised definition and leave the figure where ``count_definition_for_display`` looks."""
    key = _draft_key(account, definition)  # before counting: a change meanwhile makes this figure stale at once
    matched = count(account, definition)
    cache.set(key, matched, int(CACHED_COUNT_MAX_AGE.total_seconds()))
    cache.delete(f"{key}:pending")
    return matched


def count_for_display(account: Account, segment: Segment) -> tuple[int | None, bool]:
    """(count, refreshing): a live count for a small account; otherwise the cached one (None before the first).

    ``refreshing`` is True when the cached count is stale and a background refresh is queued (by this call or a
    moment ago). Raises SegmentError for a definition that no longer holds, in both cases.
    """
    matching = contacts_matching(account, segment.definition)
    if account_is_small(account):
        return matching.count(), False
    fresh = (
        segment.cached_count is not None
        and segment.counted_at is not None
        and segment.counted_at >= segment.updated_at
        and timezone.now() - segment.counted_at < CACHED_COUNT_MAX_AGE
    )
    if fresh:
        return segment.cached_count, False
    if cache.add(_pending_key(account, segment), True, REFRESH_PENDING_SECONDS):
        from contacts.segment_tasks import refresh_segment_count

        account_id, segment_id = account.public_id, segment.public_id
        transaction.on_commit(lambda: refresh_segment_count.delay(account_id, segment_id))
    return segment.cached_count, True
