"""REST shapes of the call log: ISO 8601 times in UTC, lowercase names, durations in seconds."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from telecrm_calls.models import Call
from telecrm_calls.service import CallEntry

# The names of telecrm_common.telephony (DISPOSITION_NAMES, DIRECTION_NAMES, HANGUP_BY_NAMES), spelled
# out for validation and OpenAPI; a test checks that they stay the same.
DispositionName = Literal["answered", "missed", "busy", "no_answer", "failed", "cancelled", "rejected"]
DirectionName = Literal["inbound", "outbound", "internal"]
HangupByName = Literal["caller", "callee", "system"]
StateName = Literal["ringing", "answered", "ended"]


class Party(BaseModel):
    number: str | None = Field(description="As signalled (SIP user part, or as the PBX sent it)")
    e164: str | None = Field(description="Normalized +CCNNN..., null when internal or not parseable")
    name: str | None = Field(description="SIP display name or the contact name the CRM gave")


class CallNotesOut(BaseModel):
    """What the agent recorded about the call, and what it belongs to (its links)."""

    reason: str | None
    result: str | None
    comment: str | None
    contact_id: str | None = Field(description="The CRM contact the call is linked to")
    task_id: str | None
    ticket_id: str | None
    links_edited: bool = Field(
        description="An agent set the links: they are no longer taken from the click-to-call context or "
        "the numbers registry"
    )
    version: int = Field(description="Increases with every change (the ETag of the notes)")
    updated_at: datetime | None = Field(description="When the notes last changed; null: never edited")
    updated_by: str | None = Field(description="Who changed them last (user or employee id)")

    @classmethod
    def from_call(cls, call: Call) -> CallNotesOut:
        return cls(
            reason=call.reason,
            result=call.result,
            comment=call.comment,
            contact_id=call.contact_id,
            task_id=call.task_id,
            ticket_id=call.ticket_id,
            links_edited=bool(call.links_edited),
            version=call.notes_version or 0,
            updated_at=call.notes_updated_at,
            updated_by=call.notes_updated_by,
        )


class LegOut(BaseModel):
    """An extension the call rang (a ring group rings several for one call)."""

    model_config = ConfigDict(extra="ignore")

    leg_id: str | None = None
    extension: str | None = None
    employee_id: str | None = None
    rang_at: datetime | None = None
    answered_at: datetime | None = Field(default=None, description="Set on the leg that answered")
    ended_at: datetime | None = None
    disposition: str | None = Field(
        default=None,
        description="`answered` for the leg that won, `cancelled` when another leg answered, else how "
        "the leg ended; null while it rings",
    )


class TransferOut(BaseModel):
    """A hand-over inside the call (blind or attended transfer)."""

    model_config = ConfigDict(extra="ignore")

    at: datetime | None = None
    from_extension: str | None = None
    to_extension: str | None = None
    to_number: str | None = None
    attended: bool = False


def _items(values: Any) -> list[Mapping[str, Any]]:
    return [value for value in values or [] if isinstance(value, Mapping)]


class CallOut(BaseModel):
    """One call record."""

    call_id: str
    direction: DirectionName | None
    caller: Party
    callee: Party
    line: str | None = Field(description="The line / DID that was called")
    extension: str | None = Field(
        description="The extension the call is for: the one that answered an inbound or internal call, "
        "else the one it was offered to (the calling one for outbound calls)"
    )
    employee_id: str | None
    sip_call_id: str | None = Field(description="SIP Call-ID of the first leg")
    started_at: datetime = Field(description="When the call was offered (UTC)")
    answered_at: datetime | None = Field(description="Null when never answered")
    ended_at: datetime | None = Field(description="Null while the call is live")
    ring_seconds: float | None = Field(
        description="Offer to answer, or to the end when never answered (millisecond precision); "
        "null while ringing"
    )
    talk_seconds: float | None = Field(
        description="Answer to end (millisecond precision); 0 when never answered, null while live"
    )
    disposition: DispositionName | None = Field(description="Null while the call is live")
    sip_status: int | None = Field(description="Final SIP status (200 when answered)")
    sip_reason: str | None
    q850_cause: int | None = Field(description="ITU-T Q.850 cause (16 normal clearing, 17 busy...)")
    hangup_by: HangupByName | None
    state: StateName
    incomplete: bool = Field(description="Some events were never seen (for example the offer)")
    has_recording: bool
    context: dict[str, str] = Field(description="What the call was started from: contact_id, task_id...")
    team_id: str | None = Field(description="The team of the employee, at the time of the call")
    missed: bool = Field(
        description="A missed inbound call, or an outgoing external call that did not get through"
    )
    legs: list[LegOut]
    transfers: list[TransferOut]
    notes: CallNotesOut
    updated_at: datetime

    @classmethod
    def from_entry(cls, entry: CallEntry) -> CallOut:
        call = entry.call
        return cls.model_validate(
            {
                "call_id": call.call_id,
                "direction": call.direction,
                "caller": Party(number=call.caller_number, e164=call.caller_e164, name=call.caller_name),
                "callee": Party(number=call.callee_number, e164=call.callee_e164, name=call.callee_name),
                "line": call.line,
                "extension": call.extension,
                "employee_id": call.employee_id,
                "sip_call_id": call.sip_call_id,
                "started_at": call.started_at,
                "answered_at": call.answered_at,
                "ended_at": call.ended_at,
                "ring_seconds": None if call.ring_ms is None else call.ring_ms / 1000,
                "talk_seconds": None if call.talk_ms is None else call.talk_ms / 1000,
                "disposition": call.disposition,
                "sip_status": call.sip_status,
                "sip_reason": call.sip_reason,
                "q850_cause": call.q850_cause,
                "hangup_by": call.hangup_by,
                "state": call.state,
                "incomplete": call.incomplete,
                "has_recording": entry.has_recording,
                "context": dict(call.context or {}),
                "team_id": call.team_id,
                "missed": bool(call.missed),
                "legs": _items(call.legs),
                "transfers": _items(call.transfers),
                "notes": CallNotesOut.from_call(call),
                "updated_at": call.updated_at,
            }
        )


class CallPageOut(BaseModel):
    items: list[CallOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")
    total: int | None = Field(
        default=None, description="Calls matching the filters, on all pages; null with `include_total=false`"
    )


class ErrorOut(BaseModel):
    detail: str
