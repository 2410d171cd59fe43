"""CSV import of contacts: the encrypted upload, its preview, its options, and the engine that runs it.

The dashboard's wizard calls, in order: ``store_upload`` (the file, encrypted
as it is written), ``sniff`` (encoding, delimiter, header, suggested mapping
and the first rows), ``configure`` (mapping and options), ``start_import``
(queues ``contacts.import_tasks.run_import`` on the ``bulk`` queue); then
``pause_import``, ``resume_import`` and ``cancel_import`` while it runs. The
task calls ``run_contact_import``. An upload left before ``start_import`` is
cancelled after a day by ``discard_stale_uploads`` (beat, hourly).

The upload holds personal data, so it is never on disk in clear: it is cut
into frames of 1 MiB, each sealed with AES-256-GCM under the account's
newest data key; a frame's associated data binds the import's public id, its
number and whether it is the last, so a frame moved to another import,
reordered, dropped or cut off fails to open. Layout::

    8 bytes  "BSIMPRT1"
    frames:  1 byte flags (1: the last frame), 4 bytes length (big-endian),
             then the sealed frame (security.envelope: format, key version,
             nonce, ciphertext, tag)

The engine reads the file twice, frame by frame: a first pass checks its
structure (encoding, NUL bytes, line length, column count) and counts its
rows, so a malformed file fails before any row is written; the second pass
imports it in chunks of ``CHUNK_ROWS`` rows, in two stages: a worker thread
reads, validates and seals the next chunk (no database, no key store: the
keys are resolved on the writing thread and handed over) while the calling
thread writes the current one. Memory is bounded by one frame, two chunks,
and the set of blind indexes seen so far, which finds duplicates
within the file: one 32-byte digest per distinct address, about 100 MB for
a million addresses.

On PostgreSQL a chunk is sealed as new contacts (fresh public ids) on the
worker thread, copied (``COPY``) into a temporary staging table and written
with an insert of every row that leaves alone the addresses the account
already has; only those are then looked up, sealed again for their own
public id and updated (or skipped). One statement per kind of related row
(subscriptions, tags, sensitive values) follows, in one transaction that
also saves the progress.
Elsewhere (the embedded run's SQLite) the same chunk is written through
model instances: correct and slower.
"""

from __future__ import annotations

import codecs
import csv
import datetime
import io
import json
import os
import re
import secrets
import struct
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Account
from accounts.tenancy import account_scope
from audit.services import record
from contacts import segments
from contacts.models import (
    Contact,
    ContactImport,
    ContactTag,
    CustomField,
    MailingList,
    SensitiveValue,
    Subscription,
    Suppression,
    Tag,
)
from security import keys
from security.envelope import DecryptionError, blind_index, seal, seal_many, sealed_version, unseal
from security.fields import CANONICAL_FORMS, _associated_data_prefix, blind_index_column, seal_column
from security.identifiers import canonical_email, new_public_id

# --- limits ----------------------------------------------------------------------------

FRAME_BYTES = 1024 * 1024
MAX_LINE_CHARS = 64 * 1024
MAX_COLUMNS = 200
CHUNK_ROWS = 25_000
# While an import runs, the GIL changes hands at most this often (Python's default: 5 ms). The writing
# thread comes back from PostgreSQL a dozen times a chunk and must win the GIL back from the reading
# thread, which holds it while it seals; at 5 ms a time that wait showed in the import's rate
# (bench/README.md, "bench_import.py"). The worker process runs one task at a time; it is put back after.
GIL_SWITCH_SECONDS = 0.0005
PREVIEW_ROWS = 10
SNIFF_CHARS = 64 * 1024
MAX_NAME_CHARS = 200
MAX_TEXT_CHARS = 1000
MAX_TAG_CHARS = 100
# An upload whose import was not started within this long was left in the wizard: its file goes
# (``discard_stale_uploads``). The mapping step takes minutes; a day leaves room for a break.
STALE_UPLOAD_AGE = datetime.timedelta(hours=24)

MAGIC = b"BSIMPRT1"
_FRAME_HEAD = struct.Struct(">BI")
_FINAL = 1
# A sealed frame is the plaintext plus the envelope's header, nonce and tag.
_MAX_SEALED_FRAME = FRAME_BYTES + 64

# --- mapping targets -----------------------------------------------------------------------

EMAIL, FIRST_NAME, LAST_NAME, TAGS, IGNORE = "email", "first_name", "last_name", "tags", ""
BUILT_IN_TARGETS = (EMAIL, FIRST_NAME, LAST_NAME, TAGS)
_HEADER_ALIASES = {
    EMAIL: {"email", "e-mail", "mail", "email address", "e-mail address", "emailaddress", "email_address"},
    FIRST_NAME: {"first name", "firstname", "first_name", "given name", "givenname", "forename", "first"},
    LAST_NAME: {"last name", "lastname", "last_name", "surname", "family name", "familyname", "last"},
    TAGS: {"tags", "tag", "labels"},
}

ENDED = (ContactImport.Status.DONE, ContactImport.Status.FAILED, ContactImport.Status.CANCELLED)


class ImportError_(Exception):  # noqa: N801 - the builtin ImportError means something else
    """An import step refused, with a message fit for the user."""


class ImportFileError(ImportError_):
    """The uploaded file cannot be imported (encoding, NUL bytes, a line too long, too many columns…)."""


# --- paths ---------------------------------------------------------------------------------


def import_dir() -> Path:
    path = Path(settings.IMPORT_DIR)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _path(name: str) -> Path:
    # Only names the engine made are stored; a path with a separator would be tampering.
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ImportError_("This import has no file.")
    return import_dir() / name


def _remove(name: str) -> None:
    if name:
        (Path(settings.IMPORT_DIR) / Path(name).name).unlink(missing_ok=True)


def error_report_path(contact_import: ContactImport) -> Path | None:
    """The per-row error report (CSV: line, column, field, reason; no cell values), once the engine wrote one."""
    if not contact_import.error_report_path:
        return None
    path = _path(contact_import.error_report_path)
    return path if path.exists() else None


# --- the encrypted upload --------------------------------------------------------------------


def _frame_associated_data(scope: str, import_id: str, number: int, flags: int) -> bytes:
    return f"bluespark-import|{settings.ENVIRONMENT}|{scope}|{import_id}|{number}|{flags}".encode()


def _iter_upload_chunks(uploaded_file: Any) -> Iterator[bytes]:
    if hasattr(uploaded_file, "chunks"):
        yield from uploaded_file.chunks()
        return
    while True:
        block = uploaded_file.read(FRAME_BYTES)
        if not block:
            return
        yield block


def store_upload(account: Account, uploaded_file: Any, *, created_by: Any = None) -> ContactImport:
    """Write the upload, encrypted frame by frame, under a random name; return the new import.

    Raises ImportError_ when the file is larger than ``IMPORT_MAX_UPLOAD_BYTES`` (nothing is kept).
    """
    contact_import = ContactImport(account=account, created_by=created_by)
    scope, import_id = account.public_id, contact_import.public_id
    key = keys.primary_data_key(scope)
    limit = settings.IMPORT_MAX_UPLOAD_BYTES
    name = f"{secrets.token_hex(16)}.upload"
    path = import_dir() / name
    size, number = 0, 0
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(MAGIC)

            def write_frame(payload: bytes, flags: int) -> None:
                nonlocal number
                sealed = seal(key.aead, key.version, payload, _frame_associated_data(scope, import_id, number, flags))
                out.write(_FRAME_HEAD.pack(flags, len(sealed)))
                out.write(sealed)
                number += 1

            pending = bytearray()
            for block in _iter_upload_chunks(uploaded_file):
                size += len(block)
                if size > limit:
                    raise ImportError_(f"The file is larger than {limit // (1024 * 1024)} MiB; split it and try again.")
                pending += block
                # A frame is written only once more data follows it: the last one is marked final.
                while len(pending) > FRAME_BYTES:
                    write_frame(bytes(pending[:FRAME_BYTES]), 0)
                    del pending[:FRAME_BYTES]
            write_frame(bytes(pending), _FINAL)
        contact_import.file_path = name
        contact_import.file_size = size
        contact_import.save()
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return contact_import


def _iter_frames(
    contact_import: ContactImport, key_for: Callable[[int], keys.DataKey] | None = None
) -> Iterator[bytes]:
    """The plaintext of the upload, one frame at a time; ImportFileError if any frame fails to open.

    ``key_for`` gives the data key of a version (by default from ``security.keys``,
    which may query the key store).
    """
    scope = _scope_of(contact_import)
    path = _path(contact_import.file_path)
    if key_for is None:

        def key_for(version: int) -> keys.DataKey:
            return keys.data_key(scope, version)

    return _read_frames(path, scope, contact_import.public_id, key_for)


def _read_frames(path: Path, scope: str, import_id: str, key_for: Callable[[int], keys.DataKey]) -> Iterator[bytes]:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed in the finally below, across yields
    except FileNotFoundError:
        raise ImportFileError("The uploaded file is no longer there; upload it again.") from None
    try:
        if handle.read(len(MAGIC)) != MAGIC:
            raise ImportFileError("The stored upload is damaged; upload it again.")
        number = 0
        while True:
            head = handle.read(_FRAME_HEAD.size)
            if len(head) < _FRAME_HEAD.size:
                raise ImportFileError("The stored upload is cut short; upload it again.")
            flags, length = _FRAME_HEAD.unpack(head)
            if flags not in (0, _FINAL) or length > _MAX_SEALED_FRAME:
                raise ImportFileError("The stored upload is damaged; upload it again.")
            sealed = handle.read(length)
            try:
                key = key_for(sealed_version(sealed))
                associated = _frame_associated_data(scope, import_id, number, flags)
                plaintext = unseal(key.aead, sealed, associated)
            except DecryptionError:
                raise ImportFileError("The stored upload is damaged or not this import's; upload it again.") from None
            number += 1
            yield plaintext
            if flags == _FINAL:
                if handle.read(1):
                    raise ImportFileError("The stored upload is damaged; upload it again.")
                return
    finally:
        handle.close()


def _frame_keys(contact_import: ContactImport) -> Callable[[int], keys.DataKey]:
    """The data keys of every frame, resolved now: the reader they go with never queries the key store.

    Only the frame headers are read here; the reader still checks each frame
    (a version not found here means the file changed under us: damaged).
    """
    scope = _scope_of(contact_import)
    versions: set[int] = set()
    try:
        with open(_path(contact_import.file_path), "rb") as handle:
            flags = 0 if handle.read(len(MAGIC)) == MAGIC else _FINAL
            while flags != _FINAL:
                head = handle.read(_FRAME_HEAD.size)
                if len(head) < _FRAME_HEAD.size:
                    break
                flags, length = _FRAME_HEAD.unpack(head)
                if length > _MAX_SEALED_FRAME:
                    break
                versions.add(sealed_version(handle.read(length)))
    except (FileNotFoundError, DecryptionError):
        pass  # the reader reports what is wrong with the file, at the frame where it is
    resolved = {version: keys.data_key(scope, version) for version in versions}

    def key_for(version: int) -> keys.DataKey:
        try:
            return resolved[version]
        except KeyError:
            raise DecryptionError("A frame names a key version the file did not have.") from None

    return key_for


def _scope_of(contact_import: ContactImport) -> str:
    return Account.objects.only("public_id").get(pk=contact_import.account_id).public_id


class _DecryptedStream(io.RawIOBase):
    """A read-only byte stream over the decrypted frames (one frame in memory at a time)."""

    def __init__(self, frames: Iterator[bytes]) -> None:
        super().__init__()
        self._frames = frames
        self._view = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._view:
            frame = next(self._frames, None)
            if frame is None:
                return 0
            self._view = memoryview(frame)
        count = min(len(buffer), len(self._view))
        buffer[:count] = self._view[:count]
        self._view = self._view[count:]
        return count


# --- reading the CSV -----------------------------------------------------------------------------

_BOMS = (
    (codecs.BOM_UTF32_LE, None, "UTF-32"),
    (codecs.BOM_UTF32_BE, None, "UTF-32"),
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16 LE"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16 BE"),
)


def detect_encoding(head: bytes) -> str:
    """The codec for a file starting with ``head``: UTF-8 (with or without BOM), UTF-16 with a BOM.

    Raises ImportFileError naming what was found otherwise.
    """
    for bom, codec, label in _BOMS:
        if head.startswith(bom):
            if codec is None:
                raise ImportFileError(f"The file is {label}, which is not supported: save it as UTF-8 CSV.")
            return codec
    if b"\x00" in head[:4096]:
        raise ImportFileError(
            "The file contains NUL bytes: it may be UTF-16 without a byte-order mark, or not a CSV file. "
            "Save it as UTF-8 CSV."
        )
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(head, final=False)
    except UnicodeDecodeError as error:
        raise ImportFileError(
            f"The file is not UTF-8 (byte 0x{head[error.start]:02x} at position {error.start}): "
            "it may be Latin-1 or Windows-1252. Save it as UTF-8 CSV."
        ) from None
    return "utf-8"


def _limited_lines(text: io.TextIOBase, budget: list[int]) -> Iterator[str]:
    """Physical lines, refusing NUL characters and records (``budget`` is reset per record) over the limit."""
    readline = text.readline
    number = 0
    while True:
        try:
            line = readline(MAX_LINE_CHARS + 1)
        except UnicodeDecodeError:
            # The decoder reads ahead, so the bad byte is somewhere after the last line read.
            raise ImportFileError(
                f"The file is not valid text in its encoding after line {number}; save it as UTF-8 CSV."
            ) from None
        if not line:
            return
        number += 1
        budget[0] += len(line)
        if budget[0] > MAX_LINE_CHARS:
            raise ImportFileError(f"Line {number} is longer than {MAX_LINE_CHARS // 1024} KiB.")
        if "\x00" in line:
            raise ImportFileError(f"Line {number} contains a NUL byte; this is not a text CSV file.")
        yield line


def _open_text(
    contact_import: ContactImport, encoding: str, key_for: Callable[[int], keys.DataKey] | None = None
) -> io.TextIOWrapper:
    raw = io.BufferedReader(_DecryptedStream(_iter_frames(contact_import, key_for)), buffer_size=FRAME_BYTES)
    return io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline="")


def _records(text: io.TextIOBase, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of every non-blank record; ImportFileError on a structural problem."""
    budget = [0]
    reader = csv.reader(_limited_lines(text, budget), delimiter=delimiter, strict=False)
    try:
        for row in reader:
            budget[0] = 0
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) > MAX_COLUMNS:
                raise ImportFileError(f"Line {reader.line_num} has {len(row)} columns; at most {MAX_COLUMNS} are read.")
            yield reader.line_num, row
    except csv.Error as error:
        raise ImportFileError(f"Line {reader.line_num} cannot be read as CSV: {error}.") from None


# --- sniffing: the wizard's preview ----------------------------------------------------------------


@dataclass
class Preview:
    """What the wizard shows after an upload: the detected format, the columns and the first rows."""

    encoding: str
    delimiter: str
    has_header: bool
    column_count: int
    # The header's cells, or "Column 1", "Column 2"… without a header.
    columns: list[str]
    # Column position (as a string) -> suggested target; every column appears ("" to ignore).
    suggested_mapping: dict[str, str]
    rows: list[list[str]] = field(default_factory=list)


def _detect_delimiter(sample: str) -> str:
    try:
        return csv.Sniffer().sniff(sample[:16384], delimiters=",;\t").delimiter
    except csv.Error:
        first_line = sample.split("\n", 1)[0]
        counts = {delimiter: first_line.count(delimiter) for delimiter in (",", ";", "\t")}
        best = max(counts, key=lambda delimiter: counts[delimiter])
        return best if counts[best] else ","


def _normalise_header(cell: str) -> str:
    return " ".join(cell.strip().lower().replace("_", " ").replace("-", " ").split())


def _target_for_header(cell: str, custom: dict[str, str]) -> str:
    name = _normalise_header(cell)
    squashed = name.replace(" ", "")
    for target, aliases in _HEADER_ALIASES.items():
        normalised = {_normalise_header(alias) for alias in aliases}
        if name in normalised or squashed in {alias.replace(" ", "") for alias in normalised}:
            return target
    return custom.get(name) or custom.get(squashed) or IGNORE


def _custom_field_names(account: Account) -> dict[str, str]:
    """Normalised key or label -> the custom field's key."""
    names: dict[str, str] = {}
    for key, label in CustomField.objects.filter(account=account).values_list("key", "label"):
        if key in BUILT_IN_TARGETS:
            continue
        for name in (_normalise_header(key), _normalise_header(label)):
            names.setdefault(name, key)
            names.setdefault(name.replace(" ", ""), key)
    return names


def sniff(contact_import: ContactImport) -> Preview:
    """Detect the upload's encoding, delimiter and header, suggest a mapping, and read the first rows.

    Reads at most the first frame. Raises ImportFileError for an unsupported
    encoding, NUL bytes, a line too long or too many columns.
    """
    frames = _iter_frames(contact_import)
    head = next(frames, b"")
    frames.close()
    if not head.strip():
        raise ImportFileError("The file is empty.")
    encoding = detect_encoding(head)
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        sample = decoder.decode(head[: SNIFF_CHARS * 4], final=False)
    except UnicodeDecodeError:
        raise ImportFileError("The file is not valid text in its encoding; save it as UTF-8 CSV.") from None
    delimiter = _detect_delimiter(sample[:SNIFF_CHARS])
    with _open_text(contact_import, encoding) as text:
        records = []
        for _line, row in _records(text, delimiter):
            records.append(row)
            if len(records) > PREVIEW_ROWS + 1:
                break
    if not records:
        raise ImportFileError("The file has no rows.")
    has_header = _looks_like_header(records, contact_import)
    column_count = max(len(row) for row in records)
    if has_header:
        columns = [cell.strip() or f"Column {position + 1}" for position, cell in enumerate(records[0])]
        columns += [f"Column {position + 1}" for position in range(len(columns), column_count)]
        custom = _custom_field_names(_account(contact_import))
        suggested = {str(position): _target_for_header(name, custom) for position, name in enumerate(columns)}
        rows = records[1 : PREVIEW_ROWS + 1]
    else:
        columns = [f"Column {position + 1}" for position in range(column_count)]
        suggested = {str(position): IGNORE for position in range(column_count)}
        rows = records[:PREVIEW_ROWS]
    if EMAIL not in suggested.values():
        email_column = _column_with_emails(rows)
        if email_column is not None:
            suggested[str(email_column)] = EMAIL
    _deduplicate_suggestions(suggested)
    return Preview(encoding, delimiter, has_header, column_count, columns, suggested, rows)


def _account(contact_import: ContactImport) -> Account:
    return Account.objects.get(pk=contact_import.account_id)


def _looks_like_header(records: list[list[str]], contact_import: ContactImport) -> bool:
    first = records[0]
    custom = _custom_field_names(_account(contact_import))
    if any(_target_for_header(cell, custom) != IGNORE for cell in first):
        return True
    if any(_is_email(cell.strip().lower()) for cell in first):
        return False
    # No address in the first row while later rows have one: the first row names the columns.
    return len(records) > 1 and _column_with_emails(records[1:]) is not None


def _column_with_emails(rows: list[list[str]]) -> int | None:
    counts: dict[int, int] = {}
    for row in rows:
        for position, cell in enumerate(row):
            if _is_email(cell.strip().lower()):
                counts[position] = counts.get(position, 0) + 1
    return max(counts, key=lambda position: counts[position]) if counts else None


def _deduplicate_suggestions(suggested: dict[str, str]) -> None:
    """Each target but tags is suggested for one column only (the first)."""
    seen: set[str] = set()
    for position in sorted(suggested, key=int):
        target = suggested[position]
        if target in (IGNORE, TAGS):
            continue
        if target in seen:
            suggested[position] = IGNORE
        seen.add(target)


# --- the email rule ----------------------------------------------------------------------------------

# The address, once canonical (NFKC, trimmed, lower-cased), must be an ASCII
# dot-atom local part of at most 64 characters, "@", and a domain of at least
# two labels of letters, digits and inner hyphens (at most 63 each), ending in
# a letters-only or punycode top-level label; 254 characters at most. Quoted
# local parts and address literals are refused: no mail service issues them to
# people. An address with other characters (an internationalised domain or
# mailbox) goes to Django's validator, which knows IDNA.
_ATOM = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_EMAIL_RE = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+(?:[a-z]{{2,63}}|xn--[a-z0-9-]{{1,59}})")
_match_email = _EMAIL_RE.fullmatch


def _is_email(address: str) -> bool:
    if len(address) > 254:
        return False
    if address.isascii():
        return _match_email(address) is not None and address.index("@") <= 64
    try:
        validate_email(address)
    except ValidationError:
        return False
    return True


def _canonical(value: str) -> str:
    # For ASCII, NFKC is the identity: canonical_email without the normalisation call.
    return value.strip().lower() if value.isascii() else canonical_email(value)


# Control characters (C0 but space, DEL, C1) are removed from names and text values.
_CONTROL = dict.fromkeys([*range(0x00, 0x20), *range(0x7F, 0xA0)])


def _clean_text(value: str) -> str:
    if not (value.isascii() and value.isprintable()):
        value = value.translate(_CONTROL)
    return value.strip()


# --- mapping and options ------------------------------------------------------------------------------


def configure(
    contact_import: ContactImport,
    *,
    mapping: dict[Any, str],
    update_existing: bool,
    mailing_list: MailingList | None,
    consent_source: str = Contact.Source.IMPORT,
    has_header: bool | None = None,
    delimiter: str | None = None,
) -> ContactImport:
    """Store the mapping (column position -> email, first_name, last_name, tags, a custom field key or "")
    and the options. The format comes from ``sniff`` unless ``has_header`` or ``delimiter`` override it.

    Raises ImportError_ for a mapping without exactly one email column, an unknown target, a target
    mapped twice, an unknown consent source, a list of another account, or an import already started.
    """
    if contact_import.status != ContactImport.Status.UPLOADED:
        raise ImportError_("This import has already started.")
    preview = sniff(contact_import)
    if delimiter is not None and delimiter not in (",", ";", "\t", "|"):
        raise ImportError_("The delimiter must be a comma, a semicolon, a tab or a vertical bar.")
    custom_keys = set(CustomField.objects.filter(account_id=contact_import.account_id).values_list("key", flat=True))
    columns: dict[str, str] = {}
    for raw_position, raw_target in mapping.items():
        try:
            position = int(raw_position)
        except (TypeError, ValueError):
            raise ImportError_(f"Unknown column {raw_position!r}.") from None
        if not 0 <= position < max(preview.column_count, 1):
            raise ImportError_(f"The file has no column {position + 1}.")
        target = "" if raw_target in (None, "", "ignore") else str(raw_target)
        if target == "tag":
            target = TAGS
        if target and target not in BUILT_IN_TARGETS and target not in custom_keys:
            raise ImportError_(f"Unknown field {target!r}: map each column to a contact field or ignore it.")
        columns[str(position)] = target
    used = [target for target in columns.values() if target]
    if used.count(EMAIL) != 1:
        raise ImportError_("Map exactly one column to the email address.")
    repeated = sorted({target for target in used if target != TAGS and used.count(target) > 1})
    if repeated:
        raise ImportError_(f"{', '.join(repeated)} is mapped to more than one column.")
    if consent_source not in Contact.Source.values:
        raise ImportError_("Unknown consent source.")
    if mailing_list is not None and mailing_list.account_id != contact_import.account_id:
        raise ImportError_("Unknown list.")
    contact_import.mapping = {
        "columns": columns,
        "has_header": preview.has_header if has_header is None else bool(has_header),
        "delimiter": preview.delimiter if delimiter is None else delimiter,
        "encoding": preview.encoding,
    }
    contact_import.update_existing = update_existing
    contact_import.mailing_list = mailing_list
    contact_import.consent_source = consent_source
    contact_import.save(update_fields=["mapping", "update_existing", "mailing_list", "consent_source"])
    return contact_import


# --- controlling a run ----------------------------------------------------------------------------------


def access_contact_import(account: Account, public_id: str) -> ContactImport | None:
    """The account's import with that public id, or None (another account's import is None too)."""
    return ContactImport.objects.filter(account=account, public_id=public_id).first()


def _check_account(account: Account, contact_import: ContactImport) -> None:
    if contact_import.account_id != account.pk:
        raise ImportError_("Unknown import.")


def _counts(contact_import: ContactImport) -> dict[str, int]:
    return {
        name: getattr(contact_import, name)
        for name in ("rows_total", "rows_done", "created", "updated", "skipped", "invalid", "duplicates", "suppressed")
    }


def _enqueue(contact_import: ContactImport) -> None:
    from contacts.import_tasks import run_import

    account_id, import_id = _account(contact_import).public_id, contact_import.public_id
    transaction.on_commit(lambda: run_import.delay(account_id, import_id))


def start_import(account: Account, contact_import: ContactImport, *, actor: Any = None) -> ContactImport:
    """Queue the configured import on the bulk queue and record ``contact.import_started``.

    Raises ImportError_ when it is not configured or already started.
    """
    _check_account(account, contact_import)
    if not contact_import.mapping.get("columns"):
        raise ImportError_("Map the columns before starting the import.")
    with transaction.atomic():
        started = ContactImport.objects.filter(pk=contact_import.pk, status=ContactImport.Status.UPLOADED).update(
            status=ContactImport.Status.QUEUED
        )
        if not started:
            raise ImportError_("This import has already started.")
        contact_import.status = ContactImport.Status.QUEUED
        record(
            "contact.import_started",
            account=account,
            actor=actor,
            target=contact_import,
            data={
                "update_existing": contact_import.update_existing,
                "mailing_list": contact_import.mailing_list.public_id if contact_import.mailing_list else None,
                "consent_source": contact_import.consent_source,
                "file_size": contact_import.file_size,
            },
        )
        _enqueue(contact_import)
    return contact_import


def pause_import(account: Account, contact_import: ContactImport) -> ContactImport:
    """Pause a queued or running import; the engine stops after its current chunk. Raises ImportError_ otherwise."""
    _check_account(account, contact_import)
    paused = ContactImport.objects.filter(
        pk=contact_import.pk, status__in=[ContactImport.Status.QUEUED, ContactImport.Status.RUNNING]
    ).update(status=ContactImport.Status.PAUSED)
    if not paused:
        raise ImportError_("Only a queued or running import can be paused.")
    contact_import.refresh_from_db()
    return contact_import


def resume_import(account: Account, contact_import: ContactImport) -> ContactImport:
    """Queue a paused import again; it goes on from the last chunk it saved. Raises ImportError_ otherwise."""
    _check_account(account, contact_import)
    with transaction.atomic():
        resumed = ContactImport.objects.filter(pk=contact_import.pk, status=ContactImport.Status.PAUSED).update(
            status=ContactImport.Status.QUEUED
        )
        if not resumed:
            raise ImportError_("Only a paused import can be resumed.")
        _enqueue(contact_import)
    contact_import.refresh_from_db()
    return contact_import


def cancel_import(account: Account, contact_import: ContactImport, *, actor: Any = None) -> ContactImport:
    """Stop an import for good (rows already imported stay), delete its upload, record ``contact.import_cancelled``.

    Raises ImportError_ when the import has already ended.
    """
    _check_account(account, contact_import)
    with transaction.atomic():
        locked = ContactImport.objects.select_for_update().get(pk=contact_import.pk)
        if locked.status in ENDED:
            raise ImportError_("This import has already ended.")
        locked.status = ContactImport.Status.CANCELLED
        locked.finished_at = timezone.now()
        name, locked.file_path = locked.file_path, ""
        locked.save(update_fields=["status", "finished_at", "file_path"])
        record("contact.import_cancelled", account=account, actor=actor, target=locked, data=_counts(locked))
    # A running engine keeps its open descriptor until its next chunk, where it sees the cancellation.
    _remove(name)
    contact_import.refresh_from_db()
    return contact_import


def discard_stale_uploads(older_than: datetime.timedelta = STALE_UPLOAD_AGE) -> int:
    """Cancel every account's imports still waiting for their mapping after ``older_than`` and delete their
    uploads (personal data, kept for nothing), each with its ``contact.import_cancelled``; how many.

    Each account's are handled in its scope, each under a row lock: an import started meanwhile is left
    alone. Beat runs this hourly (``contacts.import_tasks``); safe to run twice.
    """
    cutoff = timezone.now() - older_than
    stale = {"status": ContactImport.Status.UPLOADED, "created_at__lt": cutoff}
    account_ids = ContactImport.objects_unscoped_dangerous.filter(**stale).values_list("account_id", flat=True)
    discarded = 0
    for account in Account.objects.filter(pk__in=set(account_ids)).order_by("pk"):
        with account_scope(account):
            for pk in ContactImport.objects.filter(account=account, **stale).values_list("pk", flat=True):
                discarded += _discard_upload(account, pk, stale)
    return discarded


def _discard_upload(account: Account, pk: int, stale: dict[str, Any]) -> bool:
    with transaction.atomic():
        locked = ContactImport.objects.select_for_update().filter(pk=pk, **stale).first()
        if locked is None:
            return False  # started or discarded since it was listed
        locked.status = ContactImport.Status.CANCELLED
        locked.finished_at = timezone.now()
        name, locked.file_path = locked.file_path, ""
        locked.save(update_fields=["status", "finished_at", "file_path"])
        record(
            "contact.import_cancelled",
            account=account,
            target=locked,
            data={**_counts(locked), "reason": "abandoned"},
        )
    _remove(name)
    return True


def delete_error_report(account: Account, contact_import: ContactImport) -> None:
    """Remove the error report of an ended import (after its download, or with the import)."""
    _check_account(account, contact_import)
    name = contact_import.error_report_path
    ContactImport.objects.filter(pk=contact_import.pk).update(error_report_path="")
    contact_import.error_report_path = ""
    _remove(name)


# --- the engine ---------------------------------------------------------------------------------------------


@dataclass
class _Chunk:
    """One chunk's valid, new-in-file rows, column by column, and what it counted."""

    lines: list[int] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    digests: list[bytes] = field(default_factory=list)
    firsts: list[str | None] = field(default_factory=list)
    lasts: list[str | None] = field(default_factory=list)
    attributes: list[dict[str, Any] | None] = field(default_factory=list)
    tags: list[list[str] | None] = field(default_factory=list)
    sensitive: list[dict[int, str] | None] = field(default_factory=list)
    rows: int = 0
    invalid: int = 0
    duplicates: int = 0
    errors: list[tuple[int, int, str, str]] = field(default_factory=list)
    # Filled by the writer's ``prepare`` (PostgreSQL): one fresh public id and one COPY line per row.
    ids: list[str] = field(default_factory=list)
    copy_rows: list[str] = field(default_factory=list)
    chunk_keys: _ChunkKeys | None = None

    _PER_ROW = ("lines", "emails", "digests", "firsts", "lasts", "attributes", "tags", "sensitive", "ids", "copy_rows")

    def keep(self, positions: list[int]) -> None:
        """Keep only the rows at ``positions`` (in order) in every per-row list."""
        for name in self._PER_ROW:
            values = getattr(self, name)
            if values:
                setattr(self, name, [values[position] for position in positions])


@dataclass(frozen=True)
class _ChunkKeys:
    """The keys one chunk is prepared with, resolved on the database thread.

    The parsing thread seals and indexes with these and never calls
    ``security.keys`` itself (which may query the key store); the values it
    produces are the ones ``seal_column`` and ``blind_index_column`` give.
    """

    scope: str
    data: keys.DataKey
    email_index: bytes
    domain_index: bytes

    @classmethod
    def of(cls, scope: str) -> _ChunkKeys:
        return cls(
            scope=scope,
            data=keys.primary_data_key(scope),
            email_index=keys.index_key(scope, "email"),
            domain_index=keys.index_key(scope, "email_domain"),
        )

    def seal(self, label: str, field_name: str, ids: list[str], texts: Iterable[str]) -> list[bytes]:
        """As ``seal_column(model, field_name, scope, zip(ids, texts))`` under this chunk's data key."""
        prefix = _associated_data_prefix(self.scope, label, field_name)
        return seal_many(
            self.data.aead,
            self.data.version,
            [(text.encode(), prefix + row_id.encode()) for row_id, text in zip(ids, texts, strict=True)],
        )

    def index_emails(self, values: list[str]) -> list[bytes]:
        key, canonical = self.email_index, CANONICAL_FORMS["email"]
        return [blind_index(key, canonical(value)) for value in values]

    def index_domains(self, values: list[str]) -> list[bytes]:
        key, canonical = self.domain_index, CANONICAL_FORMS["email_domain"]
        return [blind_index(key, canonical(value)) for value in values]


class _Stop(Exception):
    """The import was paused, cancelled or taken over by another run: stop without writing the chunk."""


@dataclass
class _Plan:
    """The import's mapping, resolved once."""

    email: int
    first: int | None
    last: int | None
    tags: list[int]
    plain: list[tuple[int, CustomField]]
    sensitive: list[tuple[int, CustomField]]
    has_header: bool
    delimiter: str
    encoding: str

    @classmethod
    def of(cls, contact_import: ContactImport) -> _Plan:
        mapping = contact_import.mapping or {}
        columns = {int(position): target for position, target in (mapping.get("columns") or {}).items() if target}
        fields_by_key = {
            custom.key: custom for custom in CustomField.objects.filter(account_id=contact_import.account_id)
        }
        by_target = {target: position for position, target in columns.items()}
        if EMAIL not in by_target:
            raise ImportError_("The import has no email column.")
        plain, sensitive = [], []
        for position, target in sorted(columns.items()):
            custom = fields_by_key.get(target) if target not in BUILT_IN_TARGETS else None
            if custom is not None:
                (sensitive if custom.sensitive else plain).append((position, custom))
        return cls(
            email=by_target[EMAIL],
            first=by_target.get(FIRST_NAME),
            last=by_target.get(LAST_NAME),
            tags=[position for position, target in sorted(columns.items()) if target == TAGS],
            plain=plain,
            sensitive=sensitive,
            has_header=bool(mapping.get("has_header")),
            delimiter=mapping.get("delimiter") or ",",
            encoding=mapping.get("encoding") or "utf-8",
        )

    def label(self, position: int) -> str:
        if position == self.email:
            return EMAIL
        if position == self.first:
            return FIRST_NAME
        if position == self.last:
            return LAST_NAME
        if position in self.tags:
            return TAGS
        for column, custom in (*self.plain, *self.sensitive):
            if column == position:
                return custom.key
        return ""


_TRUE = {"1", "true", "yes", "y", "on", "x"}
_FALSE = {"0", "false", "no", "n", "off"}


def _custom_value(custom: CustomField, value: str) -> Any:
    """The stored form of a custom field's cell; ValueError with a reason when it does not fit the type."""
    kind = custom.type
    if kind == CustomField.Type.NUMBER:
        if value.isdigit() and len(value) < 16:
            return int(value)
        try:
            number = Decimal(value.replace(" ", ""))
        except InvalidOperation:
            raise ValueError("not a number") from None
        if not number.is_finite():
            raise ValueError("not a number")
        return int(number) if number == number.to_integral_value() and abs(number) < 2**53 else float(number)
    if kind == CustomField.Type.DATE:
        try:
            return datetime.date.fromisoformat(value).isoformat()
        except ValueError:
            raise ValueError("not a date (YYYY-MM-DD)") from None
    if kind == CustomField.Type.BOOLEAN:
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError("not yes or no")
    if kind == CustomField.Type.CHOICE:
        for choice in custom.choices or []:
            if str(choice).lower() == value.lower():
                return choice
        raise ValueError("not one of the field's choices")
    if len(value) > MAX_TEXT_CHARS:
        raise ValueError(f"longer than {MAX_TEXT_CHARS} characters")
    return value


def _parse_chunk(
    records: Iterator[tuple[int, list[str]]], plan: _Plan, limit: int, scope: str | _ChunkKeys, seen: set[bytes]
) -> _Chunk | None:
    """Read up to ``limit`` rows: validate them, drop duplicates within the file. None at the end of the file.

    ``scope`` is the account's scope, or the keys already resolved for it
    (on the reading thread, which must not query the key store).
    """
    chunk_keys = _ChunkKeys.of(scope) if isinstance(scope, str) else scope
    chunk = _Chunk()
    email_at, first_at, last_at = plan.email, plan.first, plan.last
    tag_columns, plain, sensitive = plan.tags, plan.plain, plan.sensitive
    lines, emails, firsts, lasts = chunk.lines, chunk.emails, chunk.firsts, chunk.lasts
    attributes, tags, sensitive_values, errors = chunk.attributes, chunk.tags, chunk.sensitive, chunk.errors
    has_extras = bool(tag_columns or plain or sensitive)
    for line, row in records:
        chunk.rows += 1
        width = len(row)
        address = _canonical(row[email_at]) if email_at < width else ""
        if not address:
            errors.append((line, email_at, EMAIL, "no email address"))
        elif not _is_email(address):
            errors.append((line, email_at, EMAIL, "not a valid email address"))
        else:
            first = _clean_text(row[first_at]) if first_at is not None and first_at < width else ""
            last = _clean_text(row[last_at]) if last_at is not None and last_at < width else ""
            if len(first) > MAX_NAME_CHARS:
                errors.append((line, first_at, FIRST_NAME, f"longer than {MAX_NAME_CHARS} characters"))
            elif len(last) > MAX_NAME_CHARS:
                errors.append((line, last_at, LAST_NAME, f"longer than {MAX_NAME_CHARS} characters"))
            elif not has_extras:
                lines.append(line)
                emails.append(address)
                firsts.append(first or None)
                lasts.append(last or None)
                attributes.append(None)
                tags.append(None)
                sensitive_values.append(None)
            elif _extras(row, width, line, plan, chunk):
                lines.append(line)
                emails.append(address)
                firsts.append(first or None)
                lasts.append(last or None)
        if chunk.rows >= limit:
            break
    if not chunk.rows:
        return None
    chunk.invalid = len(errors)
    # Duplicates within the file, by the account's blind index: the first row of an address wins.
    digests = chunk_keys.index_emails(emails)
    chunk.chunk_keys = chunk_keys
    keep = []
    add = seen.add
    for position, digest in enumerate(digests):
        if digest in seen:
            errors.append((lines[position], email_at, EMAIL, "duplicate of an earlier row in the file"))
        else:
            add(digest)
            keep.append(position)
    chunk.duplicates = len(digests) - len(keep)
    chunk.digests = digests
    if chunk.duplicates:
        chunk.keep(keep)
    chunk.errors.sort()
    return chunk


def _extras(row: list[str], width: int, line: int, plan: _Plan, chunk: _Chunk) -> bool:
    """Tags and custom field values of a row onto the chunk; False (and an error) when a value does not fit."""
    values: dict[str, Any] = {}
    for position, custom in plan.plain:
        cell = _clean_text(row[position]) if position < width else ""
        if cell:
            try:
                values[custom.key] = _custom_value(custom, cell)
            except ValueError as reason:
                chunk.errors.append((line, position, custom.key, str(reason)))
                return False
    secret: dict[int, str] = {}
    for position, custom in plan.sensitive:
        cell = _clean_text(row[position]) if position < width else ""
        if cell:
            try:
                secret[custom.pk] = str(_custom_value(custom, cell))
            except ValueError as reason:
                chunk.errors.append((line, position, custom.key, str(reason)))
                return False
    names: list[str] = []
    for position in plan.tags:
        cell = _clean_text(row[position]) if position < width else ""
        for name in cell.replace(";", ",").split(","):
            name = name.strip()
            if not name:
                continue
            if len(name) > MAX_TAG_CHARS:
                chunk.errors.append((line, position, TAGS, f"a tag is longer than {MAX_TAG_CHARS} characters"))
                return False
            if name not in names:
                names.append(name)
    chunk.attributes.append(values or None)
    chunk.tags.append(names or None)
    chunk.sensitive.append(secret or None)
    return True


class _ErrorReport:
    """The per-row report: line, column (1-based), field, reason. Never a cell's value: cells are personal data."""

    def __init__(self, path: Path) -> None:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._file = os.fdopen(descriptor, "w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(["line", "column", "field", "reason"])

    def add(self, errors: Iterable[tuple[int, int, str, str]]) -> None:
        self._writer.writerows((line, position + 1, target, reason) for line, position, target, reason in errors)

    def close(self) -> None:
        self._file.close()


def run_contact_import(
    account: Account,
    contact_import: ContactImport,
    *,
    chunk_rows: int = CHUNK_ROWS,
    max_seconds: float | None = None,
    max_chunks: int | None = None,
) -> ContactImport:
    """Run (or go on with) a queued import until it ends, is paused, or has used its budget; safe to run twice.

    With ``max_seconds`` or ``max_chunks``, it returns after that much work
    still ``running``, and a later run goes on from the saved progress.

    Ends as done, failed (with a message fit for the user in ``error``) or
    cancelled; the upload is deleted when it ends. A second run of the same
    import stops at its first chunk when another run has saved progress it
    did not expect.
    """
    _check_account(account, contact_import)
    claimed = ContactImport.objects.filter(
        pk=contact_import.pk, status__in=[ContactImport.Status.QUEUED, ContactImport.Status.RUNNING]
    ).update(status=ContactImport.Status.RUNNING, started_at=Coalesce(F("started_at"), Value(timezone.now())))
    contact_import.refresh_from_db()
    if not claimed:
        if contact_import.status == ContactImport.Status.CANCELLED:
            _remove(contact_import.file_path)
        return contact_import
    try:
        plan = _Plan.of(contact_import)
        if not contact_import.rows_total:
            _count_rows(contact_import, plan)
        finished = _import_rows(account, contact_import, plan, chunk_rows, max_seconds, max_chunks)
    except _Stop:
        contact_import.refresh_from_db()
        if contact_import.status == ContactImport.Status.CANCELLED:
            _remove(contact_import.file_path)
        return contact_import
    except ImportError_ as error:
        return _finish(account, contact_import, ContactImport.Status.FAILED, str(error))
    except Exception:
        _finish(account, contact_import, ContactImport.Status.FAILED, "The import failed unexpectedly.")
        raise
    if finished:
        return _finish(account, contact_import, ContactImport.Status.DONE, "")
    return contact_import


def _count_rows(contact_import: ContactImport, plan: _Plan) -> None:
    """The first pass: check the whole file's structure and count its rows, before anything is written."""
    total = 0
    with _open_text(contact_import, plan.encoding) as text:
        for _ in _records(text, plan.delimiter):
            total += 1
    total -= 1 if plan.has_header and total else 0
    ContactImport.objects.filter(pk=contact_import.pk).update(rows_total=total)
    contact_import.rows_total = total


def _finish(account: Account, contact_import: ContactImport, status: str, error: str) -> ContactImport:
    with transaction.atomic():
        locked = ContactImport.objects.select_for_update().get(pk=contact_import.pk)
        if locked.status == ContactImport.Status.CANCELLED:
            _remove(locked.file_path)
            return locked
        name = locked.file_path
        locked.status, locked.error, locked.file_path = status, error, ""
        locked.finished_at = timezone.now()
        # A report with no refused row (its header alone) is not kept: nothing to download, nothing left on disk.
        empty_report = locked.error_report_path if not (locked.invalid or locked.duplicates) else ""
        if empty_report:
            locked.error_report_path = ""
        locked.save(update_fields=["status", "error", "file_path", "finished_at", "error_report_path"])
        record(
            "contact.import_finished",
            account=account,
            target=locked,
            data={"status": status, **_counts(locked)},
        )
    _remove(name)
    if empty_report:
        _remove(empty_report)
    if locked.created or locked.updated:
        segments.audience_changed(account)
    return locked


def _import_rows(
    account: Account,
    contact_import: ContactImport,
    plan: _Plan,
    chunk_rows: int,
    max_seconds: float | None,
    max_chunks: int | None,
) -> bool:
    """The second pass; True when the file was read to its end, False when the budget ran out first.

    Two stages: a worker thread reads, validates, dedupes and seals chunk N+1
    (``_parse_chunk`` and the writer's ``prepare``: CPU work that touches
    neither the database nor the key store) while this thread writes chunk N
    (the database work, during which psycopg2 releases the GIL). The keys a
    chunk is sealed with are resolved here, on this thread, before it is
    handed over. Everything that decides what is written (the import's
    status and progress, suppressions, existing contacts) is read in the
    chunk's own transaction, as before; a chunk read ahead is simply not
    written when the import stops.
    """
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    chunks_left = max_chunks
    scope = account.public_id
    seen: set[bytes] = set()
    if not contact_import.error_report_path:
        contact_import.error_report_path = f"{secrets.token_hex(16)}.errors.csv"
        contact_import.save(update_fields=["error_report_path"])
    report = _ErrorReport(_path(contact_import.error_report_path))
    writer = _PostgresWriter if connection.vendor == "postgresql" else _PortableWriter
    target = writer(account, contact_import, plan)
    # Rows already imported by an earlier run (before a pause) are read again to
    # rebuild the duplicate set and the error report, and not written.
    already = contact_import.rows_done
    done = 0
    key_for = _frame_keys(contact_import)
    try:
        with _open_text(contact_import, plan.encoding, key_for) as text:
            records = _records(text, plan.delimiter)

            def read(limit: int, write: bool, chunk_keys: _ChunkKeys) -> _Chunk | None:
                # On the worker thread: no database, no key store.
                chunk = _parse_chunk(records, plan, limit, chunk_keys, seen)
                if chunk is not None and write:
                    target.prepare(chunk)
                return chunk

            def read_from(start: int) -> Future[_Chunk | None]:
                limit = min(already - start, chunk_rows) if start < already else chunk_rows
                return ahead.submit(read, limit, start >= already, _ChunkKeys.of(scope))

            ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="contact-import")
            pending: Future[Any] | None = None
            switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(GIL_SWITCH_SECONDS)
            try:
                if plan.has_header:
                    ahead.submit(next, records, None).result()
                pending = read_from(0)
                while True:
                    chunk = pending.result()
                    if chunk is None:
                        return True
                    written = done >= already
                    last_of_budget = written and chunks_left is not None and chunks_left <= 1
                    # Chunk N+1 is read while chunk N is written; after the budget's
                    # last chunk, only whether a row is left.
                    pending = ahead.submit(_at_end, records) if last_of_budget else read_from(done + chunk.rows)
                    if written:
                        target.write(chunk, rows_done_before=done)
                    report.add(chunk.errors)
                    done += chunk.rows
                    if last_of_budget:
                        return pending.result()
                    if written and chunks_left is not None:
                        chunks_left -= 1
                    if written and deadline is not None and time.monotonic() >= deadline:
                        return pending.result() is None
            finally:
                # The worker finishes what it is reading before the file is closed.
                if pending is not None:
                    pending.cancel()
                ahead.shutdown(wait=True)
                sys.setswitchinterval(switch_interval)
    finally:
        report.close()


def _at_end(records: Iterator[tuple[int, list[str]]]) -> bool:
    """Whether no row is left (so a run that used its budget on the last chunk still finishes)."""
    return next(records, None) is None


class _Writer(ABC):
    """Writes one chunk and its progress in one transaction, after checking the import may go on."""

    def __init__(self, account: Account, contact_import: ContactImport, plan: _Plan) -> None:
        self.account = account
        self.contact_import = contact_import
        self.plan = plan
        self.scope = account.public_id
        self.mailing_list = contact_import.mailing_list
        self.consent_text = self.mailing_list.consent_text if self.mailing_list else ""
        self.update_existing = contact_import.update_existing

    def write(self, chunk: _Chunk, *, rows_done_before: int) -> None:
        with transaction.atomic():
            locked = (
                ContactImport.objects.select_for_update().only("status", "rows_done").get(pk=self.contact_import.pk)
            )
            if locked.status != ContactImport.Status.RUNNING or locked.rows_done != rows_done_before:
                raise _Stop
            suppressed = self.suppressed(chunk.digests)
            created = updated = skipped = 0
            if suppressed:
                chunk.keep([position for position, digest in enumerate(chunk.digests) if digest not in suppressed])
            if chunk.digests:
                created, updated, skipped = self.write_rows(chunk)
            changes = {
                "rows_done": chunk.rows,
                "created": created,
                "updated": updated,
                "skipped": skipped,
                "invalid": chunk.invalid,
                "duplicates": chunk.duplicates,
                "suppressed": len(suppressed),
            }
            ContactImport.objects.filter(pk=self.contact_import.pk).update(
                **{name: F(name) + value for name, value in changes.items()}
            )
            for name, value in changes.items():
                setattr(self.contact_import, name, getattr(self.contact_import, name) + value)

    def suppressed(self, digests: list[bytes]) -> set[bytes]:
        if not digests:
            return set()
        if connection.vendor != "postgresql":
            found = Suppression.objects.filter(account=self.account, email_index__in=digests)
            return {bytes(digest) for digest in found.values_list("email_index", flat=True)}
        with connection.cursor() as cursor:
            # An account with fewer suppressions than the chunk has rows (a first import has none): read
            # them all, one scan of the account's index entries instead of one probe per row.
            cursor.execute(
                "SELECT email_index FROM contacts_suppression WHERE account_id = %s LIMIT %s",
                [self.account.pk, len(digests) + 1],
            )
            held = {bytes(row[0]) for row in cursor}
            if len(held) <= len(digests):
                return held.intersection(digests)
            # One array parameter, not one placeholder per address.
            cursor.execute(
                "SELECT email_index FROM contacts_suppression WHERE account_id = %s AND email_index = ANY(%s)",
                [self.account.pk, digests],
            )
            return {bytes(row[0]) for row in cursor}

    def prepare(self, chunk: _Chunk) -> None:  # noqa: B027 - a hook: writers without such work keep it
        """The chunk's CPU work that needs no database, done on the reading thread (nothing by default)."""

    @abstractmethod
    def write_rows(self, chunk: _Chunk) -> tuple[int, int, int]:
        """Write the chunk's rows; (created, updated, skipped)."""


# --- PostgreSQL: COPY into a staging table, then set-based statements -------------------------------------------

_STAGING = "bluespark_import_rows"
_STAGING_COLUMNS = (
    "public_id",
    "email",
    "email_index",
    "email_domain_index",
    "first_name",
    "last_name",
    "attributes",
    "subscription_id",
    "consent_text",
    "is_new",
)
_CONTACT = "contacts.contact"


_BASE32 = b"abcdefghijklmnopqrstuvwxyz234567"
# Every byte maps to one of 32 letters (256 is a multiple of 32, so uniformly).
_TO_BASE32 = bytes(_BASE32[byte % 32] for byte in range(256))


def _public_ids(prefix: str, count: int) -> list[str]:
    """``count`` random public ids in PublicIdField's alphabet and length (26 letters: 130 random bits).

    ``new_public_id`` base32-encodes 16 bytes in pure Python (about 6 µs each);
    translating one block of random bytes gives the same form for a whole chunk at once.
    """
    letters = os.urandom(26 * count).translate(_TO_BASE32).decode("ascii")
    head = prefix + "_"
    return [head + letters[start : start + 26] for start in range(0, 26 * count, 26)]


def _json_for_copy(value: dict[str, Any] | None) -> str:
    if not value:
        return "{}"
    # json.dumps escapes control characters, so only COPY's own escape, the backslash, needs doubling.
    return json.dumps(value, separators=(",", ":")).replace("\\", "\\\\")


class _PostgresWriter(_Writer):
    def prepare(self, chunk: _Chunk) -> None:
        """Seal every row as a new contact under a fresh public id and build its COPY line.

        Runs on the reading thread with the chunk's own keys. A row that turns
        out to exist when the chunk is written is sealed again there for the
        existing row's id (the associated data binds it), so this is only ever
        a guess made early, never a shortcut.
        """
        chunk_keys = chunk.chunk_keys
        assert chunk_keys is not None
        count = len(chunk.digests)
        if not count:
            return
        ids = _public_ids("con", count)
        emails = chunk.emails
        sealed_emails = chunk_keys.seal(_CONTACT, "email", ids, emails)
        sealed_firsts = chunk_keys.seal(_CONTACT, "first_name", ids, [first or "" for first in chunk.firsts])
        sealed_lasts = chunk_keys.seal(_CONTACT, "last_name", ids, [last or "" for last in chunk.lasts])
        domains = chunk_keys.index_domains(emails)
        attributes = [_json_for_copy(value) for value in chunk.attributes]
        if self.mailing_list is not None:
            subscription_ids = _public_ids("sub", count)
            consent = chunk_keys.seal(
                "contacts.subscription", "consent_text", subscription_ids, [self.consent_text] * count
            )
            tails = [f"{sub_id}\t\\\\x{blob.hex()}" for sub_id, blob in zip(subscription_ids, consent, strict=True)]
        else:
            tails = ["\\N\t\\N"] * count
        # bytea in COPY's text format: "\x" and hex digits, the backslash itself escaped.
        chunk.copy_rows = [
            f"{row_id}\t\\\\x{email.hex()}\t\\\\x{digest.hex()}\t\\\\x{domain.hex()}\t\\\\x{first.hex()}\t"
            f"\\\\x{last.hex()}\t{attrs}\t{tail}\tt"
            for row_id, email, digest, domain, first, last, attrs, tail in zip(
                ids, sealed_emails, chunk.digests, domains, sealed_firsts, sealed_lasts, attributes, tails, strict=True
            )
        ]
        chunk.ids = ids
        # The addresses and attributes now live in the COPY lines only (what is written never reads them
        # again): two fewer copies of the chunk in memory while it waits for its turn.
        chunk.emails, chunk.attributes = [], []

    def write_rows(self, chunk: _Chunk) -> tuple[int, int, int]:
        """Insert the chunk as new contacts, then update (or skip) the rows whose address was there already.

        Inserting first and dealing with the conflicts afterwards spares the
        common case, an address new to the account, a lookup of every row: the
        insert probes the unique index anyway. The rows it refuses are looked
        up (only they), sealed again for their own public ids, and updated.
        """
        account_id = self.account.pk
        count = len(chunk.digests)
        now = timezone.now()
        with connection.cursor() as cursor:
            # The import commits often and can always be resumed from its saved progress:
            # waiting for each commit's WAL flush buys nothing (documented in docs/contacts.md).
            cursor.execute("SET LOCAL synchronous_commit = off")
            # A table that grew fast (a first import) has stale statistics, and the planner then
            # scans it whole for every chunk; the lookup of existing rows is an index probe by design.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} (public_id text, email bytea, email_index bytea, "
                "email_domain_index bytea, first_name bytea, last_name bytea, attributes jsonb, "
                "subscription_id text, consent_text bytea, is_new boolean) ON COMMIT DELETE ROWS"
            )
            cursor.execute(f"TRUNCATE {_STAGING}")
            # One copy of the chunk's COPY text at a time: the lines, then the text, then its bytes.
            text = "\n".join(chunk.copy_rows)
            chunk.copy_rows = []
            data = io.BytesIO(text.encode("utf-8"))
            del text
            cursor.copy_expert(f"COPY {_STAGING} ({', '.join(_STAGING_COLUMNS)}) FROM STDIN", data, size=1 << 20)
            del data
            columns = (
                "INSERT INTO contacts_contact AS c (account_id, public_id, email, email_index, email_domain_index, "  # noqa: S608
                "first_name, last_name, status, source, attributes, created_at, updated_at) "
                "SELECT %s, s.public_id, s.email, s.email_index, s.email_domain_index, s.first_name, s.last_name, "
                f"%s, %s, s.attributes, %s, %s FROM {_STAGING} s "
            )
            parameters = [account_id, Contact.Status.SUBSCRIBED, Contact.Source.IMPORT, now, now]
            cursor.execute(
                columns + "ON CONFLICT (account_id, email_index) DO NOTHING RETURNING email_index",  # noqa: S608
                parameters,
            )
            inserted = {bytes(row[0]) for row in cursor}
            created, updated = len(inserted), 0
            refused = [digest for digest in chunk.digests if digest not in inserted] if created < count else []
            if refused and self.update_existing:
                cursor.execute(
                    "SELECT email_index, public_id, email, first_name, last_name FROM contacts_contact "
                    "WHERE account_id = %s AND email_index = ANY(%s)",
                    [account_id, refused],
                )
                existing = {bytes(row[0]): (row[1], bytes(row[2]), bytes(row[3]), bytes(row[4])) for row in cursor}
                if existing:
                    self.update_rows(cursor, chunk, existing)
                    # Sealed for their own public ids now: updated only while the address still
                    # belongs to that row (one deleted since is created again).
                    cursor.execute(
                        "WITH written AS ("  # noqa: S608 - fixed names, values as parameters
                        + columns
                        + "WHERE NOT s.is_new ON CONFLICT (account_id, email_index) DO UPDATE SET "
                        "email = EXCLUDED.email, first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, "
                        "attributes = c.attributes || EXCLUDED.attributes, updated_at = EXCLUDED.updated_at "
                        "WHERE c.public_id = EXCLUDED.public_id RETURNING (xmax = 0) AS inserted) "
                        "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written",
                        parameters,
                    )
                    also_created, updated = cursor.fetchone()
                    created += also_created
            # A refused row left as it came (skip existing, or its row went in between) keeps the fresh
            # public id it was sealed for, which no contact has: the joins below pass it by, so it gets
            # no subscription, tag or sensitive value. It counts as skipped.
            if self.mailing_list is not None:
                # Never re-subscribes: a person's existing subscription (even an unsubscribe) stays as it is,
                # and a contact that is not subscribed (it left, or was set so) is not put on the list.
                cursor.execute(
                    "INSERT INTO contacts_subscription (account_id, public_id, contact_id, mailing_list_id, status, "  # noqa: S608
                    "consent_source, consent_at, consent_ip, consent_text, confirmed_at, unsubscribed_at, "
                    "created_at, updated_at) "
                    "SELECT %s, s.subscription_id, c.id, %s, %s, %s, %s, NULL, s.consent_text, NULL, NULL, %s, %s "
                    f"FROM {_STAGING} s JOIN contacts_contact c ON c.account_id = %s AND c.public_id = s.public_id "
                    "WHERE c.status = %s ON CONFLICT (contact_id, mailing_list_id) DO NOTHING",
                    [
                        account_id,
                        self.mailing_list.pk,
                        Subscription.Status.SUBSCRIBED,
                        self.contact_import.consent_source,
                        now,
                        now,
                        now,
                        account_id,
                        Contact.Status.SUBSCRIBED,
                    ],
                )
            self.write_tags(cursor, chunk.ids, chunk.tags, now)
            self.write_sensitive(cursor, chunk.ids, chunk.sensitive)
        return created, updated, count - created - updated

    def update_rows(self, cursor: Any, chunk: _Chunk, existing: dict[bytes, tuple[str, bytes, bytes, bytes]]) -> None:
        """Turn the staged rows found existing into updates of those rows: their public id, sealed anew for it.

        The stored email is kept as it is (same address, same blind index); a
        name the file leaves empty keeps the stored ciphertext.
        """
        chunk_keys = chunk.chunk_keys
        assert chunk_keys is not None
        ids = chunk.ids
        changed: list[tuple[bytes, str, bytes, bytes, bytes]] = []
        for position, digest in enumerate(chunk.digests):
            found = existing.get(digest)
            if found is None:
                continue
            row_id, email_blob, first_blob, last_blob = found
            first, last = chunk.firsts[position], chunk.lasts[position]
            if first:
                first_blob = chunk_keys.seal(_CONTACT, "first_name", [row_id], [first])[0]
            if last:
                last_blob = chunk_keys.seal(_CONTACT, "last_name", [row_id], [last])[0]
            changed.append((digest, row_id, email_blob, first_blob, last_blob))
            ids[position] = row_id
        cursor.execute(
            f"UPDATE {_STAGING} s SET public_id = u.public_id, email = u.email, first_name = u.first_name, "  # noqa: S608
            "last_name = u.last_name, is_new = false "
            "FROM unnest(%s::bytea[], %s::text[], %s::bytea[], %s::bytea[], %s::bytea[]) "
            "AS u(email_index, public_id, email, first_name, last_name) WHERE s.email_index = u.email_index",
            [list(column) for column in zip(*changed, strict=True)],
        )

    def write_tags(self, cursor: Any, ids: list[str], tags: list[list[str] | None], now: datetime.datetime) -> None:
        pairs = [(row_id, name) for row_id, names in zip(ids, tags, strict=True) if names for name in names]
        if not pairs:
            return
        account_id = self.account.pk
        names = sorted({name for _row_id, name in pairs})
        cursor.execute(
            "INSERT INTO contacts_tag (account_id, name, created_at) SELECT %s, name, %s FROM unnest(%s::text[]) "
            "AS t(name) ON CONFLICT (account_id, name) DO NOTHING",
            [account_id, now, names],
        )
        cursor.execute(
            "INSERT INTO contacts_contacttag (account_id, contact_id, tag_id) "
            "SELECT %s, c.id, t.id FROM unnest(%s::text[], %s::text[]) AS p(public_id, name) "
            "JOIN contacts_contact c ON c.account_id = %s AND c.public_id = p.public_id "
            "JOIN contacts_tag t ON t.account_id = %s AND t.name = p.name "
            "ON CONFLICT (contact_id, tag_id) DO NOTHING",
            [account_id, [p[0] for p in pairs], [p[1] for p in pairs], account_id, account_id],
        )

    def write_sensitive(self, cursor: Any, ids: list[str], values: list[dict[int, str] | None]) -> None:
        wanted = [
            (row_id, field_id, text)
            for row_id, by_field in zip(ids, values, strict=True)
            if by_field
            for field_id, text in by_field.items()
        ]
        if not wanted:
            return
        account_id, scope = self.account.pk, self.scope
        cursor.execute(
            "SELECT c.public_id, v.field_id, v.public_id FROM contacts_sensitivevalue v "
            "JOIN contacts_contact c ON c.id = v.contact_id "
            "WHERE v.account_id = %s AND c.account_id = %s AND c.public_id = ANY(%s)",
            [account_id, account_id, sorted({row_id for row_id, _f, _t in wanted})],
        )
        existing = {(row[0], row[1]): row[2] for row in cursor}
        value_ids = [existing.get((row_id, field_id)) or new_public_id("sv") for row_id, field_id, _t in wanted]
        texts = [text for _r, _f, text in wanted]
        sealed = seal_column(SensitiveValue, "value", scope, list(zip(value_ids, texts, strict=True)))
        indexes = blind_index_column(scope, "text", texts)
        cursor.execute(
            "INSERT INTO contacts_sensitivevalue AS v "
            "(account_id, public_id, contact_id, field_id, value, value_index) "
            "SELECT %s, p.value_id, c.id, p.field_id, p.value, p.value_index "
            "FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bytea[], %s::bytea[]) "
            "AS p(value_id, public_id, field_id, value, value_index) "
            "JOIN contacts_contact c ON c.account_id = %s AND c.public_id = p.public_id "
            "ON CONFLICT (contact_id, field_id) DO UPDATE SET value = EXCLUDED.value, "
            "value_index = EXCLUDED.value_index WHERE v.public_id = EXCLUDED.public_id",
            [
                account_id,
                value_ids,
                [row_id for row_id, _f, _t in wanted],
                [field_id for _r, field_id, _t in wanted],
                sealed,
                indexes,
                account_id,
            ],
        )


# --- anywhere else (SQLite in the embedded run): model instances in batches -------------------------------------


class _PortableWriter(_Writer):
    def write_rows(self, chunk: _Chunk) -> tuple[int, int, int]:
        now = timezone.now()
        existing = {
            bytes(contact.email_index): contact
            for contact in Contact.objects.filter(account=self.account, email_index__in=chunk.digests)
        }
        created = updated = skipped = 0
        new_contacts: list[Contact] = []
        touched: list[tuple[Contact, int]] = []
        for position, digest in enumerate(chunk.digests):
            contact = existing.get(digest)
            if contact is None:
                contact = Contact(
                    account=self.account,
                    email=chunk.emails[position],
                    first_name=chunk.firsts[position] or "",
                    last_name=chunk.lasts[position] or "",
                    source=Contact.Source.IMPORT,
                    attributes=chunk.attributes[position] or {},
                    created_at=now,
                )
                new_contacts.append(contact)
                touched.append((contact, position))
                continue
            if not self.update_existing:
                skipped += 1
                continue
            if chunk.firsts[position]:
                contact.first_name = chunk.firsts[position]
            if chunk.lasts[position]:
                contact.last_name = chunk.lasts[position]
            if chunk.attributes[position]:
                contact.attributes = {**contact.attributes, **chunk.attributes[position]}
            contact.save()
            updated += 1
            touched.append((contact, position))
        Contact.objects.bulk_create(new_contacts, batch_size=500)
        created = len(new_contacts)
        if self.mailing_list is not None and touched:
            Subscription.objects.bulk_create(
                [
                    Subscription(
                        account=self.account,
                        contact=contact,
                        mailing_list=self.mailing_list,
                        consent_source=self.contact_import.consent_source,
                        consent_at=now,
                        consent_text=self.consent_text,
                    )
                    for contact, _position in touched
                    if contact.status == Contact.Status.SUBSCRIBED
                ],
                batch_size=500,
                ignore_conflicts=True,
            )
        for contact, position in touched:
            for name in chunk.tags[position] or []:
                tag, _ = Tag.objects.get_or_create(account=self.account, name=name)
                ContactTag.objects.get_or_create(account=self.account, contact=contact, tag=tag)
            for field_id, text in (chunk.sensitive[position] or {}).items():
                value = SensitiveValue.objects.filter(contact=contact, field_id=field_id).first()
                if value is None:
                    value = SensitiveValue(account=self.account, contact=contact, field_id=field_id)
                value.value = text
                value.save()
        return created, updated, skipped
