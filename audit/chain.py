"""The hash chain that makes an edited, removed or reordered audit event detectable.

Each event's hash is an HMAC-SHA256 over the previous event's hash and the
event's own canonical form (every stored field but the hashes). The HMAC key
is derived from a platform secret kept in the key store, not in the
application database: whoever can write the events table alone cannot forge
a consistent chain after an edit. ``AuditChainHead`` keeps each chain's last
sequence and hash, so removing the newest events shows too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass

from audit.models import AuditChainHead, AuditEvent
from security.keys import PLATFORM_SCOPE, index_key

GENESIS = bytes(32)
CHAIN_KEY_PURPOSE = "audit-chain"


def canonical(event: AuditEvent) -> bytes:
    fields = {
        "public_id": event.public_id,
        "chain": event.chain,
        "sequence": event.sequence,
        "account_id": event.account_id,
        "occurred_at": event.occurred_at.isoformat(timespec="microseconds"),
        "action": event.action,
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "acting_as_id": event.acting_as_id,
        "support_session_id": event.support_session_id,
        "api_key_id": event.api_key_id,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "ip": event.ip,
        "request_id": event.request_id,
        "data": event.data,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(event: AuditEvent, previous_hash: bytes) -> bytes:
    key = index_key(PLATFORM_SCOPE, CHAIN_KEY_PURPOSE)
    return hmac.new(key, bytes(previous_hash) + canonical(event), hashlib.sha256).digest()


@dataclass(frozen=True)
class Problem:
    chain: str
    sequence: int | None
    event: str | None
    kind: str  # edited | missing | out_of_order | truncated
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {
            "chain": self.chain,
            "sequence": self.sequence,
            "event": self.event,
            "kind": self.kind,
            "detail": self.detail,
        }


def chains(account_ids: list[str] | None = None) -> list[str]:
    names = set(AuditChainHead.objects.values_list("chain", flat=True))
    names |= set(AuditEvent.objects.values_list("chain", flat=True).distinct())
    if account_ids:
        names &= set(account_ids)
    return sorted(names)


def verify_chain(chain: str) -> tuple[int, list[Problem]]:
    """(events checked, problems found) for one chain, read in sequence order in batches."""
    problems: list[Problem] = []
    expected_sequence, expected_previous, checked = 1, GENESIS, 0
    for event in _events(chain):
        checked += 1
        if event.sequence != expected_sequence:
            problems.append(
                Problem(
                    chain,
                    event.sequence,
                    event.public_id,
                    "missing",
                    f"event(s) {expected_sequence}..{event.sequence - 1} are missing before this one",
                )
            )
        if bytes(event.previous_hash) != expected_previous:
            problems.append(
                Problem(
                    chain,
                    event.sequence,
                    event.public_id,
                    "out_of_order",
                    "does not follow the event before it: an event was removed, inserted or reordered",
                )
            )
        if not hmac.compare_digest(event_hash(event, bytes(event.previous_hash)), bytes(event.hash)):
            problems.append(
                Problem(chain, event.sequence, event.public_id, "edited", "its content does not match its hash")
            )
        expected_sequence, expected_previous = event.sequence + 1, bytes(event.hash)
    head = AuditChainHead.objects.filter(chain=chain).first()
    if head is not None and (head.sequence != expected_sequence - 1 or bytes(head.hash) != expected_previous):
        problems.append(
            Problem(
                chain,
                head.sequence,
                None,
                "truncated",
                f"the chain should end at event {head.sequence} but ends at {expected_sequence - 1}",
            )
        )
    return checked, problems


def _events(chain: str) -> Iterator[AuditEvent]:
    last = 0
    while True:
        batch = list(AuditEvent.objects.filter(chain=chain, sequence__gt=last).order_by("sequence")[:2000])
        if not batch:
            return
        yield from batch
        last = batch[-1].sequence
