"""Pydantic shapes of the gateway's REST API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from telecrm_common.telephony import DIRECTION_NAMES
from telecrm_gateway.calls import LiveCall
from telecrm_gateway.events import PartyInfo


class PartyOut(BaseModel):
    number: str
    e164: str
    display_name: str
    extension: str

    @classmethod
    def of(cls, party: PartyInfo) -> PartyOut:
        return cls(
            number=party.number, e164=party.e164, display_name=party.display_name, extension=party.extension
        )


class ActiveCallOut(BaseModel):
    call_id: str
    state: str  # offered, ringing, answered
    direction: str  # inbound, internal
    caller: PartyOut
    callee: PartyOut
    line: str
    extension: str
    employee_id: str
    sip_call_id: str
    started_at: datetime
    answered_at: datetime | None

    @classmethod
    def of(cls, call: LiveCall) -> ActiveCallOut:
        h = call.header
        return cls(
            call_id=call.call_id,
            state=call.state.value,
            direction=DIRECTION_NAMES.get(h.direction, "unspecified"),
            caller=PartyOut.of(h.caller),
            callee=PartyOut.of(h.callee),
            line=h.line,
            extension=h.extension,
            employee_id=h.employee_id,
            sip_call_id=h.sip_call_id,
            started_at=call.started_at,
            answered_at=call.answered_at,
        )


class ActiveCallsOut(BaseModel):
    items: list[ActiveCallOut]
    accepting: bool  # false while the gateway shuts down
    max_calls: int  # calls this process admits at once


class HangupOut(BaseModel):
    call_id: str
    status: str = "hanging_up"
