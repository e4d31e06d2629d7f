"""CSV rows of the call log export (``GET /calls/export.csv``), guarded against CSV (formula) injection.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula (OWASP "CSV
Injection"); tab and carriage return are on OWASP's list too. Such cells get a leading single quote
(``'=HYPERLINK(...)`` shows as text) in:

- free-text fields (the caller's name, which is the SIP display name anyone can send; ``employee_id``
  and ``call_id``): always;
- number fields (caller number and E.164, callee number, line, extension): only when the value is not
  phone-like, so ``+15551234567`` and ``+7 (499) 369-04-39`` stay as they are (usable, and harmless: a
  spreadsheet reads them as a number at worst), while a SIP user part like ``=cmd|'/C calc'!A0`` is
  neutralized.

Enumerations, times and numbers are written by this service and need no guard.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from datetime import UTC, datetime

from telecrm_calls.service import CallEntry

HEADER = (
    "call_id",
    "started_at",
    "answered_at",
    "ended_at",
    "direction",
    "caller_number",
    "caller_e164",
    "caller_name",
    "callee_number",
    "line",
    "extension",
    "employee_id",
    "disposition",
    "ring_seconds",
    "talk_seconds",
    "sip_status",
    "q850_cause",
    "hangup_by",
    "has_recording",
)

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PHONE_LIKE = re.compile(r"\+?[0-9][0-9 ()./-]*")


def guard_text(value: str | None) -> str:
    """A free-text cell: quoted when a spreadsheet would take it for a formula."""
    if not value:
        return ""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def guard_number(value: str | None) -> str:
    """A phone number or extension cell: kept when phone-like, else guarded like free text."""
    if not value:
        return ""
    return value if _PHONE_LIKE.fullmatch(value) else guard_text(value)


def iso_utc(value: datetime | None) -> str:
    """ISO 8601 in UTC with a ``Z`` (``2025-03-14T09:00:53.589000Z``), as the JSON API writes it."""
    if value is None:
        return ""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _seconds(ms: int | None) -> str:
    return "" if ms is None else str(ms / 1000)


def _int(value: int | None) -> str:
    return "" if value is None else str(value)


def row(entry: CallEntry) -> list[str]:
    """The cells of one call, in the order of :data:`HEADER`."""
    call = entry.call
    return [
        guard_text(call.call_id),
        iso_utc(call.started_at),
        iso_utc(call.answered_at),
        iso_utc(call.ended_at),
        call.direction or "",
        guard_number(call.caller_number),
        guard_number(call.caller_e164),
        guard_text(call.caller_name),
        guard_number(call.callee_number),
        guard_number(call.line),
        guard_number(call.extension),
        guard_text(call.employee_id),
        call.disposition or "",
        _seconds(call.ring_ms),
        _seconds(call.talk_ms),
        _int(call.sip_status),
        _int(call.q850_cause),
        call.hangup_by or "",
        "true" if entry.has_recording else "false",
    ]


def encode(rows: Iterable[list[str]]) -> bytes:
    """Rows as UTF-8 CSV (RFC 4180: CRLF line ends, quotes where needed)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def header() -> bytes:
    return encode([list(HEADER)])


def chunk(entries: Iterable[CallEntry]) -> bytes:
    return encode(row(entry) for entry in entries)


def filename_part(value: datetime | None, default: str) -> str:
    """A bound of the period for the file name: ``20250314T090000Z`` (UTC), or ``default``."""
    return default if value is None else value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
