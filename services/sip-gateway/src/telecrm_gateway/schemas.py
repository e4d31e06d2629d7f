"""Pydantic shapes of the gateway's REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

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
    on_hold: bool = False  # put on hold over the API
    transfer_to: str | None = None  # the extension a transfer in progress goes to
    transfer_state: str | None = None  # dialling, ringing or answered (attended: talking to the agent)
    transfer_attended: bool = False  # the agent consults first: complete or cancel the transfer after
    transferable: bool = True  # a routed call; a click-to-call cannot be transferred
    recording: str | None = None  # recording or paused

    @classmethod
    def of(cls, call: LiveCall) -> ActiveCallOut:
        h = call.header
        moving = call.consult or (call.winner if call.transfer_from is not None else None)
        return cls(
            on_hold=call.held,
            transfer_to=moving.extension.number if moving is not None else None,
            transfer_state=moving.state.value if moving is not None else None,
            transfer_attended=call.consult is not None,
            transferable=call.click is None,
            recording=call.recording.state.value if call.recording is not None else None,
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


class ControlOut(BaseModel):
    call_id: str
    status: str  # what was done: "held", "resumed", "transferring", "dtmf_sent"


class TransferIn(BaseModel):
    extension: str = Field(min_length=1, max_length=32, description="the extension that takes the call")
    attended: bool = Field(default=False, description="false: blind (the agent leaves at once)")


class DtmfIn(BaseModel):
    digits: str = Field(pattern=r"^[0-9*#A-Da-d]{1,32}$", description="0-9, *, #, A-D; at most 32")
    method: Literal["rfc2833", "info"] = "rfc2833"


class RecordingOut(BaseModel):
    call_id: str
    recording_id: str
    state: str  # recording, paused, stopped
