"""Done when: a scan of the raw tables, Redis and the access log finds no plaintext personal data or secret.

People and contacts are created through the real sign-up, activation and
login requests (and the contact service) with canary values: random strings
that must then appear nowhere but inside ciphertext. The scan reads every
table of the application database and of the key store, every Redis key of
the test database, and every access-log line, and looks for each canary's
random part in any letter case, in bytes and text, and inside base64 or
zlib layers (Django's signed session data). The outbox is left out: mailing
a person at their own address is the point of it.

The second test plants canaries in clear in each place the scan reads, so a
scanner that silently stopped looking would fail it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import redis
from django.conf import settings
from django.core import mail
from django.core.cache import cache
from django.db import connections
from django.test import Client
from django.urls import reverse

from accounts.models import User
from accounts.tenancy import account_scope
from contacts.models import Contact, MailingList
from contacts.services import create_contact
from security.models import WrappedKey
from security.routers import KEYSTORE_ALIAS

ACTIVATION_PATH = re.compile(r"https?://[^/\s]+(/accounts/activate/[^\s]+/)")
BASE64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{16,}={0,2}")


def canary_token() -> str:
    """Twelve random upper-case hex digits: the part the scan looks for, in any case."""
    return secrets.token_hex(6).upper()


@dataclass(frozen=True)
class Canary:
    label: str
    token: str
    value: str


def make_canaries() -> dict[str, Canary]:
    templates = {
        "user email": "Canary-{}@Example.test",
        "user full name": "Canary{} Person",
        "password": "Canary {} pass phrase",
        "contact email": "Canary.{}@Example.test",
        "contact first name": "Canary{}",
        "contact last name": "Canary{}-Surname",
    }
    canaries = {}
    for label, template in templates.items():
        token = canary_token()
        canaries[label] = Canary(label, token, template.format(token))
    return canaries


# --- the scanner -----------------------------------------------------------------------


def layers(raw: bytes) -> Iterator[bytes]:
    """The bytes themselves, then whatever base64 runs in them decode to (and inflate to, when compressed)."""
    yield raw
    for run in BASE64_RUN.findall(raw):
        for decode in (base64.urlsafe_b64decode, base64.b64decode):
            try:
                decoded = decode(run.rstrip(b"=") + b"=" * (-len(run.rstrip(b"=")) % 4))
            except (binascii.Error, ValueError):
                continue
            yield decoded
            try:
                yield zlib.decompress(decoded)
            except zlib.error:
                pass


def as_bytes(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
    return str(value).encode("utf-8")


def contains_canary(raw: bytes, canary: Canary) -> bool:
    """Case-insensitively, in the raw bytes, their latin-1 and UTF-8 readings, and every decodable layer."""
    needle = canary.token.lower()
    for layer in layers(raw):
        for text in (layer.decode("latin-1"), layer.decode("utf-8", "replace")):
            if needle in text.lower():
                return True
    return False


@dataclass
class Scan:
    canaries: dict[str, Canary]
    access_log: list[str]
    findings: set[tuple[str, str]] = field(default_factory=set)

    def look(self, place: str, value: object) -> None:
        raw = as_bytes(value)
        if raw is None:
            return
        for canary in self.canaries.values():
            if contains_canary(raw, canary):
                self.findings.add((place, canary.label))

    def run(self) -> set[tuple[str, str]]:
        self.scan_databases()
        self.scan_redis()
        for line in self.access_log:
            self.look("access log", line)
        return self.findings

    def scan_databases(self) -> None:
        for alias in (connections["default"].alias, KEYSTORE_ALIAS):
            connection = connections[alias]
            with connection.cursor() as cursor:
                tables = connection.introspection.table_names(cursor)
                assert tables, f"no tables found in {alias}"
                for table in tables:
                    cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 - introspected
                    columns = [column.name for column in cursor.description]
                    for row in cursor.fetchall():
                        for column, value in zip(columns, row, strict=True):
                            self.look(f"{alias}.{table}.{column}", value)

    def scan_redis(self) -> None:
        client = redis.Redis.from_url(settings.REDIS_URL)
        for key in client.scan_iter(count=1000):
            place = f"redis {key.decode('latin-1')}"
            self.look(place, key)
            kind = client.type(key).decode()
            if kind == "string":
                values = [client.get(key)]
            elif kind == "hash":
                values = [part for pair in client.hgetall(key).items() for part in pair]
            elif kind == "list":
                values = client.lrange(key, 0, -1)
            elif kind == "set":
                values = list(client.smembers(key))
            elif kind == "zset":
                values = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
            elif kind == "stream":
                values = [json.dumps(entry, default=repr) for entry in client.xrange(key)]
            else:
                raise AssertionError(f"Redis key {key!r} has a type the scan does not read: {kind}")
            for value in values:
                self.look(place, value)


# --- the traffic -------------------------------------------------------------------------


class AccessLogCapture(logging.Handler):
    """Every access-log line, formatted by the configured (JSON) formatter of the access handler."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        access_logger = logging.getLogger("bluespark.access")
        [configured] = [handler for handler in access_logger.handlers if handler.name == "access"]
        self.setFormatter(configured.formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def access_log() -> Iterator[list[str]]:
    capture = AccessLogCapture()
    access_logger = logging.getLogger("bluespark.access")
    access_logger.addHandler(capture)
    try:
        yield capture.lines
    finally:
        access_logger.removeHandler(capture)


def sign_up_activate_and_log_in(client: Client, canaries: dict[str, Canary]) -> User:
    email, password = canaries["user email"].value, canaries["password"].value
    response = client.post(
        reverse("accounts:sign_up"),
        {
            "email": email,
            "full_name": canaries["user full name"].value,
            "account_name": "Canary Test Shop",
            "password": password,
        },
    )
    assert response.status_code == 302, response.content
    [activation] = mail.outbox
    path = ACTIVATION_PATH.search(activation.body).group(1)
    assert client.get(path).status_code == 200
    assert client.post(path).status_code == 302
    assert client.post(reverse("accounts:logout")).status_code == 302

    response = client.post(reverse("accounts:login"), {"username": f" {email.upper()} ", "password": password})
    assert response.status_code == 302, response.content
    dashboard = client.get(reverse("accounts:home"))["Location"]
    assert client.get(dashboard).status_code == 200
    return User.objects.with_email(email).get()


def add_contact(user: User, canaries: dict[str, Canary]) -> Contact:
    account = user.memberships.get().account
    with account_scope(account):
        contact = create_contact(
            account,
            email=canaries["contact email"].value,
            first_name=canaries["contact first name"].value,
            last_name=canaries["contact last name"].value,
        )
        assert Contact.objects.get(pk=contact.pk).email == canaries["contact email"].value.lower()
    return contact


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_no_canary_appears_in_clear_in_the_databases_redis_or_the_access_log(access_log):
    canaries = make_canaries()
    user = sign_up_activate_and_log_in(Client(), canaries)
    add_contact(user, canaries)

    # The values did reach the database, and come back out of it decrypted.
    stored = User.objects.get(pk=user.pk)
    assert (stored.email, stored.full_name) == (canaries["user email"].value.lower(), canaries["user full name"].value)
    assert stored.check_password(canaries["password"].value)
    assert access_log, "the requests wrote no access-log line"

    assert Scan(canaries, access_log).run() == set()


@pytest.mark.django_db(transaction=True)
def test_the_scan_finds_a_canary_left_in_clear_in_each_place_it_reads(access_log):
    canaries = make_canaries()
    client = Client()
    user = sign_up_activate_and_log_in(client, canaries)
    contact = add_contact(user, canaries)
    account = user.memberships.get().account
    planted = {
        label: Canary(label, token, f"Planted{token}")
        for label, token in (
            ("list name", canary_token()),
            ("in an encrypted column", canary_token()),
            ("key store", canary_token()),
            ("redis", canary_token()),
            ("access log", canary_token()),
            ("session", canary_token()),
        )
    }

    # A list name is not personal data and is stored in clear: created through the dashboard.
    response = client.post(
        reverse("contacts:list_create", kwargs={"account_id": account.public_id}), {"name": planted["list name"].value}
    )
    assert response.status_code == 302
    # Plaintext forced into an encrypted column, past the field, as raw bytes.
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "UPDATE contacts_contact SET last_name = %s WHERE id = %s",
            [planted["in an encrypted column"].value.encode(), contact.pk],
        )
    WrappedKey.objects.using(KEYSTORE_ALIAS).create(
        scope=planted["key store"].value, purpose="data", version=1, kek_id="kek_probe", wrapped=b""
    )
    cache.set("probe", {"name": planted["redis"].value})
    # Session data is signed, base64 and often zlib: the scan must read through those layers.
    session = client.session
    session["note"] = planted["session"].value * 3
    session.save()
    logging.getLogger("bluespark.access").info("request", extra={"path": f"/{planted['access log'].value}/"})

    findings = Scan({**canaries, **planted}, access_log).run()

    with account_scope(account):
        assert MailingList.objects.filter(name=planted["list name"].value).exists()
    assert findings == {
        ("default.contacts_mailinglist.name", "list name"),
        ("default.contacts_contact.last_name", "in an encrypted column"),
        ("keystore.security_wrappedkey.scope", "key store"),
        (f"redis {settings.CACHES['default']['KEY_PREFIX']}:1:probe", "redis"),
        ("access log", "access log"),
        ("default.django_session.session_data", "session"),
    }


@pytest.mark.django_db(transaction=True)
def test_failed_logins_leave_no_canary_in_clear(access_log):
    canaries = make_canaries()
    client = Client()
    sign_up_activate_and_log_in(client, canaries)
    assert client.post(reverse("accounts:logout")).status_code == 302
    # A wrong password for the user, and an address that belongs to nobody (a typo, or a guess). django-axes
    # stores a username for every failed attempt (axes_accessattempt): it must not be the address itself.
    for username in (canaries["user email"].value, canaries["contact email"].value):
        response = client.post(reverse("accounts:login"), {"username": username, "password": "not the password at all"})
        assert response.status_code == 200

    assert Scan(canaries, access_log).run() == set()
