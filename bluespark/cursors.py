"""Page cursors: a row's place in a list, sealed so that a client can neither read nor forge it.

Every list pages by keyset over (time, id): the API's cursors
(``bluespark.rest.KeysetCursorPagination``), the dashboard's contacts and
audit pages. In clear, a position would hand out internal ids, which come
from sequences every account shares (so how fast Bluespark grows), and
would let a client make up positions. It is sealed with AES-256-GCM under
a key derived from ``SECRET_KEY`` for cursors alone, and bound to the list
it came from. A cursor that does not open (changed, cut short, another
list's, or older than a ``SECRET_KEY`` rotation) is no cursor: the API
answers 404, a dashboard page starts again at the top.
"""

from __future__ import annotations

import base64
import functools
import os
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.db.models import Q, QuerySet

from security.envelope import derive_subkey

#: A row's place in a list: its time and its id.
Position = tuple[datetime, int]

_NONCE_BYTES = 12
_TAG_BYTES = 16
# Far above any cursor sealed here (about 100 characters): longer is refused before decoding.
_MAX_CURSOR_CHARACTERS = 400


@functools.lru_cache(maxsize=4)
def _aead(secret: str) -> AESGCM:
    return AESGCM(derive_subkey(secret.encode(), "bluespark-page-cursor"))


def seal_position(purpose: str, position: Position, direction: str = "") -> str:
    """The cursor of ``position`` in the list ``purpose`` names, with an optional ``direction`` (one letter)."""
    moment, pk = position
    plaintext = f"{direction}|{moment.isoformat()}|{pk}".encode("ascii")
    nonce = os.urandom(_NONCE_BYTES)
    sealed = nonce + _aead(settings.SECRET_KEY).encrypt(nonce, plaintext, purpose.encode())
    return base64.urlsafe_b64encode(sealed).decode("ascii").rstrip("=")


def open_position(purpose: str, cursor: str) -> tuple[str, Position] | None:
    """The (direction, position) a cursor of ``purpose`` holds; None for anything that is not one."""
    if len(cursor) > _MAX_CURSOR_CHARACTERS:
        return None
    try:
        sealed = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if len(sealed) < _NONCE_BYTES + _TAG_BYTES:
            return None
        nonce, body = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
        plaintext = _aead(settings.SECRET_KEY).decrypt(nonce, body, purpose.encode())
        direction, moment, pk = plaintext.decode("ascii").split("|")
        position = (datetime.fromisoformat(moment), int(pk))
    except (ValueError, InvalidTag):  # not base64 or not ASCII, not ours, not three parts, no time, no integer
        return None
    if position[0].tzinfo is None or not 0 < position[1] < 2**63:
        return None
    return direction, position


def beyond(rows: QuerySet, field: str, position: Position | None, *, backward: bool = False) -> QuerySet:
    """The rows strictly after ``position`` in newest-first (``field``, id) order; before it when ``backward``.

    Only filters: the caller orders. ``field <= t`` is redundant with the pair
    beside it, but it is what lets PostgreSQL start its index scan at the
    position instead of walking every newer row: page 20,000 costs what
    page 2 does.
    """
    if position is None:
        return rows
    moment, pk = position
    if backward:
        return rows.filter(
            Q(**{f"{field}__gte": moment}), Q(**{f"{field}__gt": moment}) | Q(**{field: moment, "pk__gt": pk})
        )
    return rows.filter(
        Q(**{f"{field}__lte": moment}), Q(**{f"{field}__lt": moment}) | Q(**{field: moment, "pk__lt": pk})
    )
