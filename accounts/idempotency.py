"""``Idempotency-Key`` for API writes: a retried request gets the first answer instead of acting twice.

The client sends a key of its choosing (a UUID, say) with a POST. The first
request with that key claims it by inserting an ``IdempotencyRecord``
(unique per account, API key and key) before the view runs, and stores the
answer when it is done. Then, for 24 hours:

* the same key with the same request (method, path and body, by SHA-256)
  replays the stored answer, with ``Idempotent-Replayed: true``;
* the same key with another request is refused (422): a key names one request;
* the same key while the first request still runs is refused (409): the
  client retries later and then gets the replay. A claim still without an
  answer after ``ABANDONED_CLAIM_AGE`` was left by a process that died
  mid-request (a killed worker): it is dropped, and the retry runs.

Answers with a 2xx or 4xx status are stored (a 400 stays a 400: retrying
cannot fix the body); a 5xx or an unhandled error releases the key so the
retry runs again. What is stored is what was sent: the status, the body's
bytes and its ``Content-Type``, so a replay is the same answer whatever the
renderer. The stored body is encrypted (it may hold an address).
``purge_idempotency_records`` deletes expired records; beat runs it hourly (``accounts.tasks``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Account, ApiKey, IdempotencyRecord
from accounts.tenancy import account_scope
from bluespark.rest import PROBLEM_CONTENT_TYPE

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
IDEMPOTENCY_KEY_LIFETIME = timedelta(hours=24)
# No request runs this long: gunicorn kills a worker after GUNICORN_TIMEOUT (30 s) and the proxy gives
# up after 60 s. Keep it well above both, or a slow first request could run again beside its retry.
ABANDONED_CLAIM_AGE = timedelta(minutes=10)
MAX_KEY_LENGTH = 255
PURGE_BATCH = 5000


class IdempotencyKeyReused(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"
    default_detail = (
        "This Idempotency-Key was already used for a different request (method, path or body). "
        "Use a new key for a new request."
    )


class IdempotencyKeyInProgress(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "idempotency_key_in_progress"
    default_detail = "A request with this Idempotency-Key is still being processed. Retry in a moment."


def request_fingerprint(method: str, path: str, body: bytes) -> bytes:
    """SHA-256 of what makes two requests the same one: method, path (with any query) and body."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), body):
        # Length-prefixed, so no two different triples give the same input.
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


@dataclass(frozen=True)
class Claim:
    """A key claimed: ``replay`` says whether it holds a finished answer to send instead of running the view."""

    record: IdempotencyRecord
    replay: bool


def claim_idempotency_key(account: Account, api_key: ApiKey, key: str, fingerprint: bytes) -> Claim:
    """Claim ``key`` for this request, or find the finished answer to replay.

    The claim is an INSERT committed on its own (its own transaction under
    autocommit), so a concurrent duplicate finds it at once. A record older
    than the key's lifetime, or a claim abandoned without an answer, is
    deleted first: the key is free again. Raises IdempotencyKeyReused for
    another request's key, IdempotencyKeyInProgress while the first request runs.
    """
    records = IdempotencyRecord.objects.filter(account=account, api_key=api_key, key=key)
    for _attempt in range(2):
        now = timezone.now()
        records.filter(
            Q(created_at__lt=now - IDEMPOTENCY_KEY_LIFETIME)
            | Q(status_code__isnull=True, created_at__lt=now - ABANDONED_CLAIM_AGE)
        ).delete()
        record = IdempotencyRecord(account=account, api_key=api_key, key=key, request_fingerprint=fingerprint)
        try:
            with transaction.atomic():
                record.save(force_insert=True)
            return Claim(record, replay=False)
        except IntegrityError:
            existing = records.first()
        if existing is None:
            continue  # the holder failed and released the key between our INSERT and SELECT
        if bytes(existing.request_fingerprint) != fingerprint:
            raise IdempotencyKeyReused()
        if existing.status_code is None:
            raise IdempotencyKeyInProgress()
        return Claim(existing, replay=True)
    raise IdempotencyKeyInProgress()


def store_idempotent_answer(record: IdempotencyRecord, status_code: int, body: str, *, content_type: str) -> None:
    """Keep the answer a claimed key replays from now on (``content_type`` empty for an answer with none)."""
    record.status_code = status_code
    record.response_body = body
    record.response_content_type = content_type
    record.save(update_fields=["status_code", "response_body", "response_content_type"])


def release_idempotency_key(record: IdempotencyRecord) -> None:
    """Free a claimed key whose request failed on our side, so the client's retry runs again."""
    IdempotencyRecord.objects_unscoped_dangerous.filter(pk=record.pk, status_code__isnull=True).delete()


def purge_idempotency_records(older_than: timedelta = IDEMPOTENCY_KEY_LIFETIME) -> int:
    """Delete every account's records older than ``older_than`` (the keys have expired); how many went.

    For a periodic task: in batches, so no statement holds locks on a day of records at once.
    """
    cutoff = timezone.now() - older_than
    expired = IdempotencyRecord.objects_unscoped_dangerous.filter(created_at__lt=cutoff)
    deleted = 0
    while True:
        batch = list(expired.values_list("pk", flat=True)[:PURGE_BATCH])
        if not batch:
            return deleted
        deleted += IdempotencyRecord.objects_unscoped_dangerous.filter(pk__in=batch).delete()[0]


class _Replay(Exception):
    """Raised from ``initial`` to skip the handler: the answer is already known."""

    def __init__(self, record: IdempotencyRecord) -> None:
        super().__init__()
        self.record = record


def replayed_response(record: IdempotencyRecord) -> HttpResponse:
    """The stored answer again: status, body and ``Content-Type`` as first sent, marked as a replay."""
    status_code = record.status_code or status.HTTP_200_OK
    response = HttpResponse(record.response_body, status=status_code)
    content_type = record.response_content_type or _content_type_of_an_older_record(record)
    if content_type:
        response["Content-Type"] = content_type
    else:
        del response["Content-Type"]  # as DRF sends an empty answer (a 204): with none
    response[REPLAYED_HEADER] = "true"
    return response


def _content_type_of_an_older_record(record: IdempotencyRecord) -> str:
    # Records stored before response_content_type existed (at most a day old when it was added) kept
    # only JSON bodies, as problem+json for errors. Remove a day after accounts.0008 is deployed.
    if not record.response_body:
        return ""
    return PROBLEM_CONTENT_TYPE if (record.status_code or 0) >= 400 else "application/json"


class IdempotentAutoSchema(AutoSchema):
    """Documents the ``Idempotency-Key`` header on the methods a view makes idempotent."""

    def get_override_parameters(self) -> list[Any]:
        parameters = list(super().get_override_parameters())
        if self.method in getattr(self.view, "idempotent_methods", ()):
            parameters.append(
                OpenApiParameter(
                    IDEMPOTENCY_HEADER,
                    str,
                    OpenApiParameter.HEADER,
                    description=(
                        "Up to 255 characters of your choosing (a UUID): a retry with the same key and body "
                        "gets the first answer, with `Idempotent-Replayed: true`, for 24 hours."
                    ),
                )
            )
        return parameters


class IdempotentMixin:
    """Makes a tenant API view's POSTs (``idempotent_methods``) honour ``Idempotency-Key``.

    Put it before ``TenantAPIView`` in the bases: it claims the key once the
    request is authenticated, permitted and scoped to its account.
    """

    idempotent_methods: ClassVar[frozenset[str]] = frozenset({"POST"})
    schema = IdempotentAutoSchema()
    _idempotency_record: IdempotencyRecord | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is None or request.method not in self.idempotent_methods:
            return
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            message = f"Send 1 to {MAX_KEY_LENGTH} printable characters, such as a UUID."
            raise exceptions.ValidationError({IDEMPOTENCY_HEADER: [message]})
        fingerprint = request_fingerprint(request.method, request.get_full_path(), request.body)
        claim = claim_idempotency_key(self.account, request.auth.key, key, fingerprint)  # type: ignore[attr-defined]
        if claim.replay:
            raise _Replay(claim.record)
        self._idempotency_record = claim.record

    def handle_exception(self, exc: Exception) -> Any:
        if isinstance(exc, _Replay):
            return replayed_response(exc.record)
        try:
            return super().handle_exception(exc)  # type: ignore[misc]
        except BaseException:
            self._release_claim()
            raise

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        record, self._idempotency_record = self._idempotency_record, None
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        if record is None:
            return response
        if not isinstance(response, Response) or response.status_code >= 500:
            release_idempotency_key(record)
            return response
        # Rendered now, by the renderer content negotiation chose, so the record keeps the bytes and the
        # Content-Type this client gets (Django's later render() of a rendered response does nothing).
        response.render()
        body, content_type = response.content.decode("utf-8"), response.get("Content-Type", "")
        # TenantAPIView.finalize_response has left the account's scope: the record is saved in it again.
        with account_scope(self.account):  # type: ignore[attr-defined]
            store_idempotent_answer(record, response.status_code, body, content_type=content_type)
        return response

    def _release_claim(self) -> None:
        record, self._idempotency_record = self._idempotency_record, None
        if record is not None:
            release_idempotency_key(record)
