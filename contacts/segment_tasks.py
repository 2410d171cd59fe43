"""Background counts of saved segments (large accounts see a cached count; contacts.segments)."""

from __future__ import annotations

import logging

from accounts.models import Account
from accounts.tenancy import tenant_task
from contacts.segments import SegmentError, count_definition_now, refresh_count, segment_to_count

logger = logging.getLogger(__name__)


@tenant_task()
def refresh_segment_count(account: Account, segment_id: str) -> int | None:
    """Count a segment and cache the figure on it; safe to run twice, a no-op for a deleted segment."""
    segment = segment_to_count(account, segment_id)
    if segment is None:
        return None
    try:
        return refresh_count(account, segment)
    except SegmentError as error:
        # A list or field it names was deleted: the dashboard shows the same error when it counts live.
        logger.info("Segment %s not counted: %s", segment.public_id, error.message)
        return None


@tenant_task()
def count_segment_definition(account: Account, definition: dict) -> int | None:
    """Count a definition the builder shows before it is saved, and cache the figure for the builder.

    ``definition`` is normalised (blind indexes in place of addresses and sensitive values), so the task's
    arguments hold no personal data.
    """
    try:
        return count_definition_now(account, definition)
    except SegmentError as error:
        # A list or field it names was deleted since: the builder shows the error when it asks again.
        logger.info("Segment definition not counted: %s", error.message)
        return None
