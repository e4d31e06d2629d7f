"""The call record and its paging: the fold of call events into a record, errors, queries, cursors.

The record of a call is a pure function of the *set* of its events (:func:`build_record`): events that
arrive twice, late or out of order give the same record. Kept apart from :mod:`telecrm_calls.service`
so that the modules the service builds on (missed calls) can share it without an import cycle.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_calls.models import Call
from telecrm_common.errors import TelecrmError
from telecrm_common.telephony import (
    DIRECTION_NAMES,
    DISPOSITION_NAMES,
    HANGUP_BY_NAMES,
    digits,
    disposition_for_unanswered,
    is_missed_call,
    q850_for_sip_status,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
EXPORT_CHUNK_SIZE = 1000  # calls read per query (keyset page) by an export
STATES = ("ringing", "answered", "ended")

TelEvent = ev.CallEvent | ev.RecordingReady


class CallsError(TelecrmError):
    """Base of the errors the calls service raises on purpose."""


class CallNotFound(CallsError):
    def __init__(self, call_id: str) -> None:
        super().__init__(f"call {call_id!r} not found")
        self.call_id = call_id


class InvalidQuery(CallsError):
    """A filter that cannot be applied; ``field`` names it (``started_to``, ``number``...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidCursor(CallsError):
    """A page cursor that this service did not issue (garbage, truncated or tampered with)."""


# --- the fold ------------------------------------------------------------------------------------


# The roles of a party, strongest first: an extension (or an employee) with several is named by this one.
PARTY_ROLE_STRENGTH = {"placed": 4, "answered": 3, "transferred": 2, "rang": 1}


@dataclass(frozen=True)
class PartyRef:
    """An extension the call involved, as the events tell it (the registry adds employee and team)."""

    extension: str
    role: str  # answered, placed, rang, transferred (see models.CallParty)
    employee_id: str | None = None
    team_id: str | None = None  # from the employees read model (telecrm_calls.rules)


# Columns of ``calls`` that the fold computes; everything else in the row (notes, links edited by an
# agent, publication state) belongs to other writers and is never overwritten by ingestion.
RECORD_COLUMNS = (
    "call_id", "direction", "caller_number", "caller_e164", "caller_name", "callee_number",
    "callee_e164", "callee_name", "line", "extension", "employee_id", "sip_call_id", "started_at",
    "answered_at", "ended_at", "ring_ms", "talk_ms", "disposition", "sip_status", "sip_reason",
    "q850_cause", "hangup_by", "state", "incomplete", "context", "last_sequence", "team_id", "missed",
    "party_digits", "legs", "transfers", "contact_id", "task_id", "ticket_id",
)  # fmt: skip
LINK_COLUMNS = ("contact_id", "task_id", "ticket_id")  # kept once an agent edited them


@dataclass(frozen=True)
class CallRecord:
    """The values of one ``calls`` row, as computed from the call's events (and then the call rules)."""

    call_id: str
    direction: str | None
    caller_number: str | None
    caller_e164: str | None
    caller_name: str | None
    callee_number: str | None
    callee_e164: str | None
    callee_name: str | None
    line: str | None
    extension: str | None
    employee_id: str | None
    sip_call_id: str | None
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    ring_ms: int | None
    talk_ms: int | None
    disposition: str | None
    sip_status: int | None
    sip_reason: str | None
    q850_cause: int | None
    hangup_by: str | None
    state: str
    incomplete: bool
    context: dict[str, str]
    last_sequence: int
    legs: list[dict[str, str | None]] = field(default_factory=list)
    transfers: list[dict[str, str | bool | None]] = field(default_factory=list)
    party_digits: str = ""
    missed: bool = False
    # Set by the call rules (telecrm_calls.rules) from the registry; the fold leaves them empty or
    # takes them from the click-to-call context.
    team_id: str | None = None
    contact_id: str | None = None
    task_id: str | None = None
    ticket_id: str | None = None
    # Not a column: who the call involved, for call_parties (the rules add employees and teams).
    parties: tuple[PartyRef, ...] = ()
    caller_extension: str | None = None  # not a column: the calling extension, when one of ours

    def row(self) -> dict[str, Any]:
        """The ``calls`` columns of this record."""
        return {name: getattr(self, name) for name in RECORD_COLUMNS}


def timestamp(value: Timestamp) -> datetime | None:
    """A protobuf Timestamp as an aware UTC datetime (microseconds); None when it is unset."""
    if value.seconds == 0 and value.nanos == 0:
        return None
    return EPOCH + timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


def _ms(start: datetime, end: datetime) -> int:
    return max((end - start) // timedelta(milliseconds=1), 0)


def _order(event: ev.CallEvent) -> tuple[int, datetime, str]:
    return (event.sequence, timestamp(event.occurred_at) or EPOCH, event.event_id)


def _first(values: Iterable[str]) -> str | None:
    return next((value for value in values if value), None)


def _tiebreak(event: ev.CallEvent) -> tuple[int, datetime, str, bytes]:
    return (*_order(event), event.SerializeToString(deterministic=True))


@dataclass
class _Header:
    """The header fields of a call's events, read in one pass: the last non-empty value of each in
    event order (the first for the SIP Call-ID: the leg that was offered), the context merged."""

    direction: ev.Direction.ValueType | None = None
    caller_number: str | None = None
    caller_e164: str | None = None
    caller_name: str | None = None
    caller_extension: str | None = None
    callee_number: str | None = None
    callee_e164: str | None = None
    callee_name: str | None = None
    line: str | None = None
    extension: str | None = None
    employee_id: str | None = None
    sip_call_id: str | None = None
    context: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, ordered: Sequence[ev.CallEvent]) -> _Header:
        h = cls()
        for event in ordered:
            if event.direction:
                h.direction = event.direction
            caller, callee = event.caller, event.callee
            h.caller_number = caller.number or h.caller_number
            h.caller_e164 = caller.e164 or h.caller_e164
            h.caller_name = caller.display_name or h.caller_name
            h.caller_extension = caller.extension or h.caller_extension
            h.callee_number = callee.number or h.callee_number
            h.callee_e164 = callee.e164 or h.callee_e164
            h.callee_name = callee.display_name or h.callee_name
            h.line = event.line or h.line
            h.extension = event.extension or h.extension
            h.employee_id = event.employee_id or h.employee_id
            h.sip_call_id = h.sip_call_id or event.sip_call_id or None
            if event.context:
                h.context.update(event.context)
        return h


def build_record(events: Iterable[ev.CallEvent]) -> CallRecord:
    """Fold the events of one call into its record; the result depends only on the set of events.

    - header fields (parties, line, employee...): the last non-empty value in (sequence, time) order;
      the SIP Call-ID is the first one seen (the leg that was offered);
    - ``started_at``: when the call was offered; without the offer, the ``started_at`` that answered and
      ended repeat; without those, the earliest event (the record is then ``incomplete``);
    - ``answered_at``: the answered event, else ended's ``answered_at``; ``ended_at``: the ended event;
    - ``ring_ms`` = (answered or ended) - started; ``talk_ms`` = ended - answered (0 when never answered);
    - disposition, SIP status, Q.850 cause and who hung up come from ``ended``; a missing disposition
      or cause is derived with :mod:`telecrm_common.telephony`;
    - ``state``: ended when an ended event is known, else answered, else ringing, whatever the order;
    - ``incomplete``: the offer was never seen, or the call was answered at an unknown time.
    """
    # One event per id: the first in (sequence, time, id, bytes) order when an id came with two
    # different contents (the bytes only decide such a tie, which never happens with stored events).
    unique: dict[str, ev.CallEvent] = {}
    for event in events:
        kept = unique.get(event.event_id)
        if kept is None or _tiebreak(event) < _tiebreak(kept):
            unique[event.event_id] = event
    # Each event's time and kind, read once (the fold asks for them again and again).
    at = {event_id: timestamp(event.occurred_at) for event_id, event in unique.items()}
    keyed = sorted(
        ((event.sequence, at[event_id] or EPOCH, event_id), event) for event_id, event in unique.items()
    )
    ordered = [event for _, event in keyed]
    if not ordered:
        raise ValueError("a call record needs at least one event")
    call_ids = {event.call_id for event in ordered}
    if len(call_ids) != 1:
        raise ValueError(f"events of several calls folded together: {sorted(call_ids)}")
    header = _Header.of(ordered)
    kinds = [event.WhichOneof("kind") for event in ordered]
    by_kind: dict[str | None, list[ev.CallEvent]] = {}
    for event, which in zip(ordered, kinds, strict=True):
        by_kind.setdefault(which, []).append(event)

    def kind(name: str) -> list[ev.CallEvent]:
        return by_kind.get(name, [])

    offered, answered, ended = kind("offered"), kind("answered"), kind("ended")
    last_ended = ended[-1].ended if ended else None

    direction_value = header.direction
    direction = DIRECTION_NAMES.get(direction_value) if direction_value is not None else None

    offered_at = _min(at[event.event_id] for event in offered)
    repeated_start = _min(
        [timestamp(event.answered.started_at) for event in answered]
        + [timestamp(event.ended.started_at) for event in ended]
    )
    started_at = offered_at or repeated_start or _min(at.values()) or EPOCH

    answered_at = _min(at[event.event_id] for event in answered)
    if answered_at is None and last_ended is not None:
        answered_at = timestamp(last_ended.answered_at)
    ended_at = at[ended[-1].event_id] if ended else None

    was_answered = bool(answered) or answered_at is not None
    disposition_value: ev.Disposition.ValueType = ev.DISPOSITION_UNSPECIFIED
    sip_status = sip_reason = q850 = hangup_by = None
    if last_ended is not None:
        sip_status = last_ended.sip_status or None
        sip_reason = last_ended.sip_reason or None
        q850 = last_ended.q850_cause or (q850_for_sip_status(sip_status) if sip_status else None)
        hangup_by = HANGUP_BY_NAMES.get(last_ended.hangup_by)
        disposition_value = last_ended.disposition
        if disposition_value == ev.DISPOSITION_UNSPECIFIED:
            disposition_value = (
                ev.DISPOSITION_ANSWERED
                if was_answered
                else disposition_for_unanswered(
                    direction_value or ev.DIRECTION_INBOUND,
                    sip_status or 0,
                    cancelled_by_caller=last_ended.hangup_by == ev.HANGUP_BY_CALLER,
                )
            )
        was_answered = was_answered or disposition_value == ev.DISPOSITION_ANSWERED
    disposition = DISPOSITION_NAMES.get(disposition_value)

    ring_end = answered_at if was_answered else ended_at
    ring_ms = _ms(started_at, ring_end) if ring_end is not None else None
    talk_ms: int | None = None
    if ended_at is not None:
        talk_ms = _ms(answered_at, ended_at) if answered_at is not None else (None if was_answered else 0)

    # Who the call is for: the extension that answered an inbound or internal call, else the header's.
    answered_extension = _first(e.answered.extension for e in answered) or (
        last_ended.answered_extension if last_ended is not None else ""
    )
    extension = header.extension
    if answered_extension and direction_value != ev.DIRECTION_OUTBOUND:
        extension = answered_extension

    context = header.context

    leg_events = [(e, which) for e, which in zip(ordered, kinds, strict=True) if which in _LEG_KINDS]
    legs = _legs(leg_events, at, answered_at=answered_at if was_answered else None, ended_at=ended_at,
                 answered_extension=answered_extension, disposition=disposition)  # fmt: skip
    transfers = [
        {
            "at": _iso(at[event.event_id]),
            "from_extension": event.transferred.from_extension or None,
            "to_extension": event.transferred.to_extension or None,
            "to_number": event.transferred.to_number or None,
            "attended": event.transferred.attended,
        }
        for event in kind("transferred")
    ]
    caller = (header.caller_number, header.caller_e164)
    callee = (header.callee_number, header.callee_e164)
    caller_extension = header.caller_extension
    parties = _parties(
        direction_value,
        extension=extension,
        caller_extension=caller_extension,
        answered_extension=answered_extension if was_answered else None,
        employee_id=header.employee_id,
        legs=legs,
        transfers=transfers,
    )

    return CallRecord(
        call_id=ordered[0].call_id,
        direction=direction,
        caller_number=header.caller_number,
        caller_e164=header.caller_e164,
        caller_name=header.caller_name,
        callee_number=header.callee_number,
        callee_e164=header.callee_e164,
        callee_name=header.callee_name,
        line=header.line,
        extension=extension,
        employee_id=header.employee_id,
        sip_call_id=header.sip_call_id,
        started_at=started_at,
        answered_at=answered_at,
        ended_at=ended_at,
        ring_ms=ring_ms,
        talk_ms=talk_ms,
        disposition=disposition,
        sip_status=sip_status,
        sip_reason=sip_reason,
        q850_cause=q850,
        hangup_by=hangup_by,
        state="ended" if ended else ("answered" if was_answered else "ringing"),
        incomplete=not offered or (was_answered and answered_at is None),
        context=context,
        last_sequence=max(event.sequence for event in ordered),
        legs=legs,
        transfers=transfers,
        party_digits=" ".join(digits(value or "") for value in (*caller, *callee)),
        missed=bool(ended) and is_missed_call(direction_value or ev.DIRECTION_INBOUND, disposition_value),
        contact_id=context.get("contact_id") or None,
        task_id=context.get("task_id") or None,
        ticket_id=context.get("ticket_id") or None,
        parties=parties,
        caller_extension=caller_extension,
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


_LEG_KINDS = frozenset(("ringing", "answered", "leg_ended"))


def _legs(
    events: Sequence[tuple[ev.CallEvent, str | None]],
    at: dict[str, datetime | None],
    *,
    answered_at: datetime | None,
    ended_at: datetime | None,
    answered_extension: str,
    disposition: str | None,
) -> list[dict[str, str | None]]:
    """The legs of a call (the extensions it rang), in the order they started ringing.

    A leg is known by its ``leg_id`` (or its extension when the reporter gives none). Its outcome is the
    leg's own ``leg_ended`` when one came; otherwise it follows from the call: the leg that answered is
    ``answered``; when another leg answered, ``cancelled``; when nobody did, the call's disposition.
    """
    legs: list[dict[str, str | None]] = []
    for event, which in events:  # the ringing, answered and leg_ended events, in order, with their kind
        part = getattr(event, which or "")
        occurred = at[event.event_id]
        if not part.extension or (ended_at is not None and occurred is not None and occurred > ended_at):
            continue  # a leg reported after the call ended does not reopen it
        leg = _find_leg(legs, part.leg_id, part.extension)
        if leg is None:
            leg = {"leg_id": part.leg_id or None, "extension": part.extension, "employee_id": None,
                   "rang_at": None, "answered_at": None, "ended_at": None, "disposition": None}  # fmt: skip
            legs.append(leg)
        leg["leg_id"] = leg["leg_id"] or part.leg_id or None
        leg["employee_id"] = part.employee_id or leg["employee_id"]
        when = _iso(occurred)
        if which == "ringing":
            leg["rang_at"] = min(filter(None, (leg["rang_at"], when)), default=None)
        elif which == "answered":
            leg["answered_at"], leg["disposition"] = when, "answered"
        else:
            leg["ended_at"] = when
            leg["disposition"] = DISPOSITION_NAMES.get(event.leg_ended.disposition) or leg["disposition"]
    for leg in legs:
        if leg["disposition"] is not None:
            if leg["disposition"] == "answered" and ended_at is not None:
                leg["ended_at"] = _iso(ended_at)
            continue
        if answered_at is not None and leg["extension"] == answered_extension:
            leg["disposition"], leg["answered_at"] = "answered", _iso(answered_at)
            leg["ended_at"] = _iso(ended_at)
        elif answered_at is not None:
            leg["disposition"], leg["ended_at"] = "cancelled", _iso(answered_at)
        elif ended_at is not None:
            leg["disposition"], leg["ended_at"] = disposition, _iso(ended_at)
    return sorted(legs, key=lambda leg: (leg["rang_at"] or leg["answered_at"] or "", leg["extension"] or ""))


def _find_leg(legs: list[dict[str, str | None]], leg_id: str, extension: str) -> dict[str, str | None] | None:
    """The leg an event is about: by leg id; an event without one (or a leg first seen without one)
    matches by extension."""
    for leg in legs:
        if leg_id and leg["leg_id"] == leg_id:
            return leg
    for leg in legs:
        if leg["extension"] == extension and (not leg_id or leg["leg_id"] is None):
            return leg
    return None


def _parties(
    direction: ev.Direction.ValueType | None,
    *,
    extension: str | None,
    caller_extension: str | None,
    answered_extension: str | None,
    employee_id: str | None,
    legs: list[dict[str, str | None]],
    transfers: list[dict[str, str | bool | None]],
) -> tuple[PartyRef, ...]:
    """Every extension of ours the call involved, with its role (one role per extension, the
    strongest: placed > answered > transferred > rang)."""
    found: dict[str, PartyRef] = {}
    strength = PARTY_ROLE_STRENGTH

    def add(ext: str | None, role: str, employee: str | None = None) -> None:
        if not ext:
            return
        old = found.get(ext)
        if old is None or strength[role] > strength[old.role]:
            found[ext] = PartyRef(ext, role, employee or (old.employee_id if old else None))
        elif employee and old.employee_id is None:
            found[ext] = PartyRef(ext, old.role, employee)

    if direction == ev.DIRECTION_OUTBOUND:
        add(caller_extension or extension, "placed", employee_id)
    else:
        add(caller_extension, "placed")
        for leg in legs:
            add(
                leg["extension"],
                "answered" if leg["disposition"] == "answered" else "rang",
                leg["employee_id"],
            )
        add(answered_extension, "answered", employee_id)
        add(extension, "answered" if answered_extension == extension else "rang", employee_id)
    for transfer in transfers:
        to_extension = transfer["to_extension"]
        add(to_extension if isinstance(to_extension, str) else None, "transferred")
    return tuple(sorted(found.values(), key=lambda p: p.extension))


def _min(values: Iterable[datetime | None]) -> datetime | None:
    present = [value for value in values if value is not None]
    return min(present) if present else None


# --- page cursors --------------------------------------------------------------------------------

_CURSOR_DOMAIN = b"telecrm.calls.cursor.v1|"


def encode_cursor(
    secret: bytes, started_at: datetime, call_id: str, *, domain: bytes = _CURSOR_DOMAIN
) -> str:
    """An opaque page token for the position (started_at, call_id), signed with HMAC-SHA256.

    ``domain`` tells the lists apart: a token of one list is refused by another.
    """
    micros = (started_at - EPOCH) // timedelta(microseconds=1)
    payload = f"{micros}|{call_id}".encode()
    tag = hmac.new(secret, domain + payload, hashlib.sha256).digest()
    return f"{_b64encode(payload)}.{_b64encode(tag)}"


def decode_cursor(secret: bytes, token: str, *, domain: bytes = _CURSOR_DOMAIN) -> tuple[datetime, str]:
    """The position a token stands for; raises InvalidCursor unless this service signed it."""
    try:
        payload_part, tag_part = token.split(".")
        payload, tag = _b64decode(payload_part), _b64decode(tag_part)
    except (ValueError, binascii.Error):
        raise InvalidCursor("not a page cursor of this service") from None
    expected = hmac.new(secret, domain + payload, hashlib.sha256).digest()
    if not hmac.compare_digest(tag, expected):
        raise InvalidCursor("page cursor signature does not match")
    try:
        micros_text, call_id = payload.decode().split("|", 1)
        started_at = EPOCH + timedelta(microseconds=int(micros_text))
    except (ValueError, OverflowError):
        raise InvalidCursor("page cursor is malformed") from None
    return started_at, call_id


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not text or not text.isascii():
        raise ValueError("empty or non-ASCII")
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


# --- queries -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Audience:
    """Whose calls a user may see when they may not see all: those that involved the employee (any
    leg) or anyone of the teams (as the call's parties were recorded at the time of the call)."""

    employee_id: str | None = None
    team_ids: frozenset[str] = frozenset()

    def covers(self, employee_id: str | None, team_id: str | None) -> bool:
        """Whether a filter on this employee or team already stays inside what the user may see."""
        if employee_id is not None and employee_id == self.employee_id:
            return True
        return team_id is not None and team_id in self.team_ids


@dataclass(frozen=True)
class CallQuery:
    """Filters of the call list. Names are the telephony names (``missed``, ``inbound``...)."""

    number: str | None = None
    extension: str | None = None
    dispositions: tuple[str, ...] = ()
    direction: str | None = None
    started_from: datetime | None = None  # inclusive
    started_to: datetime | None = None  # exclusive
    limit: int = DEFAULT_PAGE_SIZE
    cursor: str | None = None
    include_total: bool = False  # also count the matching calls (one COUNT query)
    employee_id: str | None = None  # calls that involved the employee (any leg, transfers)
    team_id: str | None = None  # calls that involved anyone of the team (at the time of the call)
    contact_id: str | None = None
    states: tuple[str, ...] = ()  # ringing, answered, ended
    recorded: bool | None = None
    missed: bool | None = None
    sort: str = "newest"  # or "oldest"
    audience: Audience | None = None  # None: every call (admins, services)


@dataclass(frozen=True)
class CallEntry:
    call: Call
    has_recording: bool


@dataclass(frozen=True)
class CallPage:
    items: list[CallEntry]
    next_cursor: str | None
    total: int | None = None  # calls matching the filters on all pages, when asked for
