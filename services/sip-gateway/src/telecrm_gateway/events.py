"""From what the gateway saw to CallEvent protobufs: pure functions, the one place for this mapping.

How a call ended (:class:`EndCause`) decides its disposition, SIP status, Q.850 cause and who hung up.
Answered calls always end ``answered, 200, Q.850 16`` with hangup_by caller, callee or system. Unanswered:

| cause         | disposition                       | SIP / Q.850             | hangup_by         |
|---------------|-----------------------------------|-------------------------|-------------------|
| CALLER_HANGUP | missed (outbound: cancelled)      | 487 / 16                | caller            |
| CALLEE_HANGUP | 486/600 busy, 603 rejected,       | the agent's status /    | callee for busy   |
|               | 480/408 missed, else failed       | RFC 3398 cause          | and rejected      |
| RING_TIMEOUT  | missed (outbound: no_answer)      | 480 / 19                | system            |
| NO_ROUTE      | failed                            | 404 / 1                 | system            |
| CALLER_FAILED | failed                            | the leg's status / 3398 | system            |
| SYSTEM_HANGUP | cancelled (an operator, over API) | 480 / 16                | system            |
| SHUTDOWN      | failed (the caller may retry)     | 503 / 41                | system            |
| AGENT_FAILED  | busy, rejected, no_answer, failed | the agent's status/3398 | caller for busy   |
|               | (click-to-call: the agent's phone)|                         | and rejected      |

A route that rings several legs (a ring group, a queue, an overflow) ends RING_TIMEOUT when any of its
legs rang out without an answer, else CALLEE_HANGUP with the most telling refusal (a 6xx, then busy, then
the last status). Each leg that lost gets a ``leg_ended`` (:func:`leg_outcome`):

| why the leg ended                    | leg disposition         | SIP / Q.850              |
|--------------------------------------|-------------------------|--------------------------|
| another leg answered first           | cancelled               | 487 / 26 (non-selected)  |
| it rang out (member or stage timeout)| no_answer               | 480 / 19                 |
| its phone refused or failed          | busy, rejected, failed  | its status / RFC 3398    |
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from google.protobuf.timestamp_pb2 import Timestamp

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.telephony import (
    Q850_NO_ANSWER,
    Q850_NORMAL_CLEARING,
    Q850_UNALLOCATED_NUMBER,
    disposition_for_unanswered,
    normalize_number,
    q850_for_sip_status,
)


class EndCause(Enum):
    """Why the gateway ended a call (see the module's table)."""

    CALLER_HANGUP = "caller_hangup"  # BYE, or CANCEL before the answer, from the caller
    CALLEE_HANGUP = "callee_hangup"  # BYE from the agent, or the agent's final refusal (486, 603...)
    RING_TIMEOUT = "ring_timeout"
    NO_ROUTE = "no_route"
    CALLER_FAILED = "caller_failed"  # the caller's leg broke (no ACK, transport error)
    SYSTEM_HANGUP = "system_hangup"  # Hangup over gRPC / REST
    SHUTDOWN = "shutdown"
    AGENT_FAILED = "agent_failed"  # click-to-call: the agent's own phone refused or could not be reached


@dataclass(frozen=True, slots=True)
class Outcome:
    """The fields of CallEnded that say how the call ended."""

    disposition: ev.Disposition.ValueType
    sip_status: int
    sip_reason: str
    q850_cause: int
    hangup_by: ev.HangupBy.ValueType


@dataclass(frozen=True, slots=True)
class PartyInfo:
    number: str
    e164: str = ""
    display_name: str = ""
    extension: str = ""


@dataclass(frozen=True, slots=True)
class CallHeader:
    """What every event of a call repeats (see CallEvent)."""

    call_id: str
    direction: ev.Direction.ValueType
    caller: PartyInfo
    callee: PartyInfo
    line: str
    extension: str
    employee_id: str
    sip_call_id: str
    source: str
    request_uri: str
    context: Mapping[str, str] = field(default_factory=dict)  # contact_id, task_id... (click-to-call)


def party(number: str, region: str, *, display_name: str = "", extension: str = "") -> PartyInfo:
    """A party as signalled, with its E.164 form ("" for internal or unparseable numbers)."""
    return PartyInfo(
        number=number,
        e164=normalize_number(number, region),
        display_name=display_name,
        extension=extension,
    )


ANSWERED_REASON = "OK"


def outcome(
    cause: EndCause,
    *,
    direction: ev.Direction.ValueType,
    answered: bool,
    sip_status: int = 0,
    sip_reason: str = "",
) -> Outcome:
    """How a call that ended for ``cause`` is recorded; ``sip_status`` is the status seen on the leg
    that ended it (the agent's refusal, the caller's failure)."""
    if answered:
        answered_by = {
            EndCause.CALLER_HANGUP: ev.HANGUP_BY_CALLER,
            EndCause.CALLER_FAILED: ev.HANGUP_BY_CALLER,
            EndCause.CALLEE_HANGUP: ev.HANGUP_BY_CALLEE,
        }.get(cause, ev.HANGUP_BY_SYSTEM)
        return Outcome(ev.DISPOSITION_ANSWERED, 200, ANSWERED_REASON, Q850_NORMAL_CLEARING, answered_by)
    if cause is EndCause.CALLER_HANGUP:
        return Outcome(
            disposition_for_unanswered(direction, 487, cancelled_by_caller=True),
            487,
            "Request Terminated",
            Q850_NORMAL_CLEARING,
            ev.HANGUP_BY_CALLER,
        )
    if cause is EndCause.RING_TIMEOUT:
        return Outcome(
            disposition_for_unanswered(direction, 480, timed_out=True),
            480,
            "Temporarily Unavailable",
            Q850_NO_ANSWER,
            ev.HANGUP_BY_SYSTEM,
        )
    if cause is EndCause.NO_ROUTE:
        return Outcome(ev.DISPOSITION_FAILED, 404, "Not Found", Q850_UNALLOCATED_NUMBER, ev.HANGUP_BY_SYSTEM)
    if cause is EndCause.SYSTEM_HANGUP:
        return Outcome(
            ev.DISPOSITION_CANCELLED,
            480,
            "Temporarily Unavailable",
            Q850_NORMAL_CLEARING,
            ev.HANGUP_BY_SYSTEM,
        )
    if cause is EndCause.SHUTDOWN:
        return Outcome(
            ev.DISPOSITION_FAILED, 503, "Service Unavailable", q850_for_sip_status(503), ev.HANGUP_BY_SYSTEM
        )
    status = sip_status or 500
    disposition = disposition_for_unanswered(direction, status)
    if cause is EndCause.AGENT_FAILED:  # the agent is the caller of a click-to-call
        by_agent = disposition in (ev.DISPOSITION_BUSY, ev.DISPOSITION_REJECTED)
        return Outcome(
            disposition,
            status,
            sip_reason,
            q850_for_sip_status(status),
            ev.HANGUP_BY_CALLER if by_agent else ev.HANGUP_BY_SYSTEM,
        )
    if cause is EndCause.CALLEE_HANGUP and disposition in (ev.DISPOSITION_BUSY, ev.DISPOSITION_REJECTED):
        by: ev.HangupBy.ValueType = ev.HANGUP_BY_CALLEE
    else:
        by = ev.HANGUP_BY_SYSTEM
    if cause is EndCause.CALLER_FAILED:
        disposition = ev.DISPOSITION_FAILED
    return Outcome(disposition, status, sip_reason, q850_for_sip_status(status), by)


Q850_NON_SELECTED_USER_CLEARING = 26


class LegEnd(Enum):
    """Why a leg of a multi-leg call ended while the call went on (see the module's second table)."""

    LOST = "lost"  # another leg answered first
    NO_ANSWER = "no_answer"  # rang out: member or stage timeout
    REFUSED = "refused"  # the phone answered with a final error (486, 603, 404...) or could not be reached


def leg_outcome(why: LegEnd, sip_status: int = 0) -> tuple[ev.Disposition.ValueType, int, int]:
    """Disposition, SIP status and Q.850 cause of a leg that ended for ``why``."""
    if why is LegEnd.LOST:
        return ev.DISPOSITION_CANCELLED, 487, Q850_NON_SELECTED_USER_CLEARING
    if why is LegEnd.NO_ANSWER:
        return ev.DISPOSITION_NO_ANSWER, 480, Q850_NO_ANSWER
    status = sip_status or 500
    # A leg is a call placed to a phone: named as an outbound call's ending (408/480: no_answer).
    return disposition_for_unanswered(ev.DIRECTION_OUTBOUND, status), status, q850_for_sip_status(status)


def final_refusal(statuses: list[int]) -> int:
    """The status a caller gets when every leg refused: a 6xx, else busy, else the last one."""
    for wanted in (lambda s: s >= 600, lambda s: s in (486, 600)):
        for status in statuses:
            if wanted(status):
                return status
    return statuses[-1] if statuses else 480


def caller_status_for_callee_failure(status: int) -> int:
    """The final status the caller gets when the agent's leg fails with ``status``.

    Relayed as is, except 487 (the agent's side was cancelled, not by the caller: 480) and 503, which a
    proxy in front would take as "try another gateway" (RFC 3261 16.7 turns it into 500).
    """
    if status == 487 or status < 300:
        return 480
    if status == 503:
        return 500
    return status


# --- builders ------------------------------------------------------------------------------------


def _timestamp(at: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(at)
    return ts


def _base(header: CallHeader, sequence: int, at: datetime, event_id: str | None) -> ev.CallEvent:
    def to_party(p: PartyInfo) -> ev.Party:
        return ev.Party(number=p.number, e164=p.e164, display_name=p.display_name, extension=p.extension)

    return ev.CallEvent(
        event_id=event_id or str(uuid.uuid4()),
        call_id=header.call_id,
        sequence=sequence,
        occurred_at=_timestamp(at),
        direction=header.direction,
        caller=to_party(header.caller),
        callee=to_party(header.callee),
        line=header.line,
        extension=header.extension,
        employee_id=header.employee_id,
        sip_call_id=header.sip_call_id,
        source=header.source,
        context=dict(header.context),
    )


def offered(header: CallHeader, *, sequence: int, at: datetime, event_id: str | None = None) -> ev.CallEvent:
    event = _base(header, sequence, at, event_id)
    event.offered.CopyFrom(ev.CallOffered(request_uri=header.request_uri))
    return event


def ringing(
    header: CallHeader,
    *,
    sequence: int,
    at: datetime,
    extension: str,
    leg_id: str,
    employee_id: str = "",
    event_id: str | None = None,
) -> ev.CallEvent:
    event = _base(header, sequence, at, event_id)
    event.ringing.CopyFrom(ev.CallRinging(extension=extension, leg_id=leg_id, employee_id=employee_id))
    return event


def answered(
    header: CallHeader,
    *,
    sequence: int,
    at: datetime,
    extension: str,
    leg_id: str,
    started_at: datetime,
    employee_id: str = "",
    event_id: str | None = None,
) -> ev.CallEvent:
    event = _base(header, sequence, at, event_id)
    event.answered.CopyFrom(
        ev.CallAnswered(
            extension=extension, leg_id=leg_id, started_at=_timestamp(started_at), employee_id=employee_id
        )
    )
    return event


def leg_ended(
    header: CallHeader,
    *,
    sequence: int,
    at: datetime,
    extension: str,
    leg_id: str,
    employee_id: str,
    why: LegEnd,
    sip_status: int = 0,
    event_id: str | None = None,
) -> ev.CallEvent:
    disposition, status, q850 = leg_outcome(why, sip_status)
    event = _base(header, sequence, at, event_id)
    event.leg_ended.CopyFrom(
        ev.CallLegEnded(
            leg_id=leg_id,
            extension=extension,
            employee_id=employee_id,
            disposition=disposition,
            sip_status=status,
            q850_cause=q850,
        )
    )
    return event


def ended(
    header: CallHeader,
    *,
    sequence: int,
    at: datetime,
    result: Outcome,
    started_at: datetime,
    answered_at: datetime | None,
    answered_extension: str,
    event_id: str | None = None,
) -> ev.CallEvent:
    event = _base(header, sequence, at, event_id)
    event.ended.CopyFrom(
        ev.CallEnded(
            disposition=result.disposition,
            sip_status=result.sip_status,
            sip_reason=result.sip_reason,
            q850_cause=result.q850_cause,
            hangup_by=result.hangup_by,
            started_at=_timestamp(started_at),
            answered_extension=answered_extension,
        )
    )
    if answered_at is not None:
        event.ended.answered_at.CopyFrom(_timestamp(answered_at))
    return event


def held(
    header: CallHeader, *, sequence: int, at: datetime, by: ev.HangupBy.ValueType, event_id: str | None = None
) -> ev.CallEvent:
    """The call was put on hold by ``by`` (the party: the agent over the API, or a phone's re-INVITE)."""
    event = _base(header, sequence, at, event_id)
    event.held.CopyFrom(ev.CallHeld(by=by))
    return event


def resumed(
    header: CallHeader, *, sequence: int, at: datetime, by: ev.HangupBy.ValueType, event_id: str | None = None
) -> ev.CallEvent:
    event = _base(header, sequence, at, event_id)
    event.resumed.CopyFrom(ev.CallResumed(by=by))
    return event


def transferred(
    header: CallHeader,
    *,
    sequence: int,
    at: datetime,
    from_extension: str,
    to_extension: str,
    leg_id: str,
    attended: bool,
    from_employee_id: str = "",
    to_employee_id: str = "",
    event_id: str | None = None,
) -> ev.CallEvent:
    """The call went over to ``to_extension`` (the header already names it as the call's extension)."""
    event = _base(header, sequence, at, event_id)
    event.transferred.CopyFrom(
        ev.CallTransferred(
            from_extension=from_extension,
            to_extension=to_extension,
            attended=attended,
            from_employee_id=from_employee_id,
            to_employee_id=to_employee_id,
            leg_id=leg_id,
        )
    )
    return event


def dtmf(
    header: CallHeader,
    *,
    sequence: int,
    at: datetime,
    digits: str,
    method: str,
    to: ev.HangupBy.ValueType,
    event_id: str | None = None,
) -> ev.CallEvent:
    event = _base(header, sequence, at, event_id)
    event.dtmf.CopyFrom(ev.CallDtmf(digits=digits, method=method, to=to))
    return event


def recording_ready(
    *,
    call_id: str,
    recording_id: str,
    at: datetime,
    location: str,
    size_bytes: int,
    duration_ms: int,
    started_at: datetime,
    event_id: str | None = None,
) -> ev.RecordingReady:
    """A complete WAV recording of a call (``location``: the file's path in the recordings directory)."""
    return ev.RecordingReady(
        event_id=event_id or str(uuid.uuid4()),
        call_id=call_id,
        recording_id=recording_id,
        occurred_at=_timestamp(at),
        location=location,
        content_type="audio/wav",
        size_bytes=size_bytes,
        duration_ms=duration_ms,
        started_at=_timestamp(started_at),
    )
