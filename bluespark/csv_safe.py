"""CSV cells a spreadsheet will not run: formula injection (OWASP "CSV Injection") neutralised.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return is prefixed with a single quote, so Excel, LibreOffice and Google
Sheets show it as text instead of evaluating it. Every CSV Bluespark writes
goes through ``safe_row``.
"""

from __future__ import annotations

from collections.abc import Iterable

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def safe_row(values: Iterable[object]) -> list[str]:
    return [safe_cell(value) for value in values]


class Echo:
    """A file-like object whose write returns the line: lets csv.writer feed a streaming response."""

    def write(self, value: str) -> str:
        return value
