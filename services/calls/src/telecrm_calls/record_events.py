"""The call record as a protobuf, and the call log's record events (``calls.record.{created,updated}``).

:func:`call_proto` is the one conversion of a ``calls`` row to ``telecrm.calls.v1.Call``: the gRPC API
returns it and every record event carries it. :func:`stage_record_event` writes a record event to the
outbox (:mod:`telecrm_calls.outbox`) in the caller's transaction, for crm's journal:

- only ended calls are published; a change to a live call (notes typed while it rings or talks) is only
  saved, and the ``created`` event published when the call ends carries it;
- the first event of a call is ``created`` (revision 1), every later one ``updated`` with what changed
  (``record``: late call events changed the record, ``recording``: a recording was attached, ``notes``
  and ``links``: an agent edited the call-registration form);
- ``calls.published_revision`` counts them, and the event id (also the Nats-Msg-Id) is a function of
  the call id and the revision: a retried transaction stages the same id again and the stream stores it
  once, and a consumer keeps the highest revision of each call.

The caller holds the call's lock (:func:`telecrm_calls.repository.lock_calls`) for the transaction, so
two writers of one call (ingestion, a notes update) never stage the same revision twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from telecrm.calls.v1 import call_log_events_pb2 as record_pb
from telecrm.calls.v1 import calls_pb2
from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_calls import outbox
from telecrm_calls.models import Call, utcnow
from telecrm_common.events import CALL_RECORD_SUBJECTS
from telecrm_common.telephony import (
    DIRECTION_BY_NAME,
    DISPOSITION_BY_NAME,
    HANGUP_BY_NAMES,
)
from telecrm_common.timestamps import timestamp_message as timestamp_message

if TYPE_CHECKING:
    from telecrm_calls.records import CallRecord

CallRow = Call | Row[Any] | SimpleNamespace
"""A ``calls`` row: an entity, a row a query returned, or a record merged with its upsert's columns."""

ENDED = "ended"
CREATED = "created"
UPDATED = "updated"
UINT32_MAX = 2**32 - 1
HANGUP_BY_BY_NAME = {name: value for value, name in HANGUP_BY_NAMES.items()}

# What an ``updated`` event says changed (CallRecordEvent.changed).
CHANGED_RECORD = "record"  # late call events changed the record itself
CHANGED_RECORDING = "recording"
CHANGED_NOTES = "notes"  # reason, result, comment (and with them the links: they are CallNotes fields)
CHANGED_LINKS = "links"  # contact, task or ticket


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _stamp(value: datetime | None) -> Timestamp | None:
    """:func:`timestamp_message` by arithmetic (protobuf's ``FromDatetime`` goes through a time tuple,
    several times slower, and a record event has up to a dozen times); a naive value is UTC there too."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)


def _parse_time(value: Any) -> Timestamp | None:
    """A time of the legs / transfers JSON (ISO 8601 text; naive is UTC); None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return _stamp(parsed)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _leg(leg: Mapping[str, Any]) -> calls_pb2.CallLeg:
    return calls_pb2.CallLeg(
        leg_id=_text(leg.get("leg_id")),
        extension=_text(leg.get("extension")),
        employee_id=_text(leg.get("employee_id")),
        rang_at=_parse_time(leg.get("rang_at")),
        answered_at=_parse_time(leg.get("answered_at")),
        ended_at=_parse_time(leg.get("ended_at")),
        disposition=DISPOSITION_BY_NAME.get(_text(leg.get("disposition")), ev.DISPOSITION_UNSPECIFIED),
    )


def _transfer(transfer: Mapping[str, Any]) -> calls_pb2.CallTransfer:
    return calls_pb2.CallTransfer(
        at=_parse_time(transfer.get("at")),
        from_extension=_text(transfer.get("from_extension")),
        to_extension=_text(transfer.get("to_extension")),
        to_number=_text(transfer.get("to_number")),
        attended=transfer.get("attended") is True,
    )


def _unique(values: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(value for value in values if value))


def involved_employees(call: CallRow) -> list[str]:
    """The employees a row names: the call's own, then those of its legs (first seen first)."""
    legs = call.legs or []
    return _unique([call.employee_id, *(_text(leg.get("employee_id")) for leg in legs)])


def call_proto(
    call: CallRow, *, has_recording: bool | None = None, employee_ids: Sequence[str] | None = None
) -> calls_pb2.Call:
    """The protobuf of a call record (gRPC answers and record events).

    ``has_recording`` overrides the row's ``recorded`` flag (a query that computed it);
    ``employee_ids`` overrides what the row itself names (:func:`involved_employees`), for a caller that
    read the call's parties.
    """
    return calls_pb2.Call(
        call_id=call.call_id,
        direction=DIRECTION_BY_NAME.get(call.direction or "", ev.DIRECTION_UNSPECIFIED),
        caller=ev.Party(
            number=call.caller_number or "", e164=call.caller_e164 or "", display_name=call.caller_name or ""
        ),
        callee=ev.Party(
            number=call.callee_number or "", e164=call.callee_e164 or "", display_name=call.callee_name or ""
        ),
        line=call.line or "",
        extension=call.extension or "",
        employee_id=call.employee_id or "",
        started_at=_stamp(call.started_at),
        answered_at=_stamp(call.answered_at),
        ended_at=_stamp(call.ended_at),
        ring_ms=min(call.ring_ms or 0, UINT32_MAX),
        talk_ms=min(call.talk_ms or 0, UINT32_MAX),
        disposition=DISPOSITION_BY_NAME.get(call.disposition or "", ev.DISPOSITION_UNSPECIFIED),
        sip_status=call.sip_status or 0,
        sip_reason=call.sip_reason or "",
        q850_cause=call.q850_cause or 0,
        hangup_by=HANGUP_BY_BY_NAME.get(call.hangup_by or "", ev.HANGUP_BY_UNSPECIFIED),
        state=call.state,
        incomplete=call.incomplete,
        context=dict(call.context or {}),
        sip_call_id=call.sip_call_id or "",
        team_id=call.team_id or "",
        missed=bool(call.missed),
        recorded=bool(call.recorded) if has_recording is None else has_recording,
        legs=[_leg(leg) for leg in call.legs or [] if isinstance(leg, Mapping)],
        transfers=[_transfer(t) for t in call.transfers or [] if isinstance(t, Mapping)],
        notes=calls_pb2.CallNotes(
            reason=call.reason or "",
            result=call.result or "",
            comment=call.comment or "",
            contact_id=call.contact_id or "",
            task_id=call.task_id or "",
            ticket_id=call.ticket_id or "",
        ),
        notes_version=min(call.notes_version or 0, UINT32_MAX),
        notes_updated_at=_stamp(call.notes_updated_at),
        notes_updated_by=call.notes_updated_by or "",
        employee_ids=involved_employees(call) if employee_ids is None else _unique(employee_ids),
    )


def record_event_id(call_id: str, revision: int) -> str:
    """The event id (and Nats-Msg-Id) of revision ``revision`` of a call's record: the same on a retry."""
    return f"call-record:{call_id}:{revision}"


async def stage_record_event(
    session: AsyncSession,
    call: Call,
    *,
    changed: Sequence[str],
    employee_ids: Sequence[str] | None = None,
) -> bool:
    """Publish the call's record (through the outbox, in the caller's transaction) if the call ended.

    Bumps ``call.published_revision``: revision 1 is ``calls.record.created`` (``changed`` empty: the
    whole record is new), later ones ``calls.record.updated`` with ``changed``. ``call`` is the row as
    it now is, loaded in ``session`` under the call's lock. Returns whether an event was staged (False
    while the call is live): wake the outbox publisher after the commit when it was.
    """
    row = record_event_row(call, changed=changed, employee_ids=employee_ids)
    if row is None:
        return False
    await outbox.add(session, [row])
    return True


def record_event_row(
    call: Call, *, changed: Sequence[str], employee_ids: Sequence[str] | None = None
) -> dict[str, Any] | None:
    """The outbox row of :func:`stage_record_event` (the revision bumped), or None while the call is
    live; for callers that stage many calls at once and add the rows in one statement."""
    if call.state != ENDED:
        return None
    revision = (call.published_revision or 0) + 1
    call.published_revision = revision
    return record_event_of_revision(call, revision, changed=changed, employee_ids=employee_ids)


def record_event_of_upsert(
    record: CallRecord, upserted: Row[Any], *, changed: Sequence[str], employee_ids: Sequence[str]
) -> dict[str, Any]:
    """The outbox row of an ended call's record just upserted: the record as folded, with what the
    upsert returned of the row (:data:`telecrm_calls.repository.UPSERT_RETURNS`: the revision, the
    notes and links kept from agents' edits), so the row need not be read back."""
    call = SimpleNamespace(**record.row())
    call.__dict__.update(upserted._mapping)
    return record_event_of_revision(
        call, upserted.published_revision, changed=changed, employee_ids=employee_ids
    )


def record_event_of_revision(
    call: CallRow,
    revision: int,
    *,
    changed: Sequence[str],
    employee_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The outbox row of revision ``revision`` of an ended call's record, whose row (an entity, or a
    row an upsert returned with its revision already bumped) is ``call``."""
    kind = CREATED if revision == 1 else UPDATED
    event_id = record_event_id(call.call_id, revision)
    event = record_pb.CallRecordEvent(
        event_id=event_id,
        occurred_at=_stamp(utcnow()),
        revision=revision,
        changed=[] if kind == CREATED else list(dict.fromkeys(changed)),
    )
    getattr(event, kind).CopyFrom(call_proto(call, employee_ids=employee_ids))
    return outbox.row(CALL_RECORD_SUBJECTS[kind], event, event_id)
