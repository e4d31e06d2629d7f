"""Test helpers: call events built the way the gateway publishes them. Used by the tests only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_calls.models import Call
from telecrm_calls.records import RECORD_COLUMNS, CallRecord
from telecrm_common.bus import Bus, InvalidMessage

T0 = datetime(2025, 3, 14, 9, 26, 53, 589000, tzinfo=UTC)


class CallScript:
    """Builds the events of one call the way the gateway publishes them (sequence 1, 2, 3...)."""

    def __init__(
        self,
        call_id: str,
        *,
        start: datetime = T0,
        direction: ev.Direction.ValueType = ev.DIRECTION_INBOUND,
        caller: str = "+74993690439",
        callee: str = "+74951112233",
        extension: str = "101",
        line: str = "+74951112233",
        employee_id: str = "",
        context: dict[str, str] | None = None,
    ) -> None:
        self.call_id = call_id
        self.start = start
        self.direction = direction
        self.caller = ev.Party(number=caller, e164=caller if caller.startswith("+") else "")
        self.callee = ev.Party(number=callee, e164=callee if callee.startswith("+") else "")
        self.extension = extension
        self.line = line
        self.employee_id = employee_id
        self.context = dict(context or {})
        self.sequence = 0

    def at(self, seconds: float) -> datetime:
        return self.start + timedelta(seconds=seconds)

    def _event(self, seconds: float, **fields: object) -> ev.CallEvent:
        self.sequence += 1
        event = ev.CallEvent(
            event_id=f"{self.call_id}-{self.sequence}",
            call_id=self.call_id,
            sequence=self.sequence,
            direction=self.direction,
            line=self.line,
            extension=self.extension,
            employee_id=self.employee_id,
            sip_call_id=f"sip-{self.call_id}",
            source="sip-gateway/test",
            context=self.context,
            **fields,  # type: ignore[arg-type]
        )
        event.caller.CopyFrom(self.caller)
        event.callee.CopyFrom(self.callee)
        event.occurred_at.FromDatetime(self.at(seconds))
        return event

    def offered(self, seconds: float = 0) -> ev.CallEvent:
        return self._event(seconds, offered=ev.CallOffered(request_uri=f"sip:{self.extension}@pbx"))

    def ringing(self, seconds: float, extension: str | None = None) -> ev.CallEvent:
        ext = extension or self.extension
        return self._event(seconds, ringing=ev.CallRinging(extension=ext, leg_id=f"leg-{ext}"))

    def answered(self, seconds: float, extension: str | None = None) -> ev.CallEvent:
        event = self._event(seconds, answered=ev.CallAnswered(extension=extension or self.extension))
        event.answered.started_at.FromDatetime(self.start)
        return event

    def leg_ended(
        self, seconds: float, extension: str, disposition: ev.Disposition.ValueType, *, sip_status: int = 0
    ) -> ev.CallEvent:
        """A ring-group leg that ended while the call goes on (cancelled, rang out, busy)."""
        leg = ev.CallLegEnded(
            leg_id=f"leg-{extension}", extension=extension, disposition=disposition, sip_status=sip_status
        )
        return self._event(seconds, leg_ended=leg)

    def transferred(
        self, seconds: float, to_extension: str, *, from_extension: str | None = None, attended: bool = False
    ) -> ev.CallEvent:
        transfer = ev.CallTransferred(
            from_extension=from_extension or self.extension, to_extension=to_extension, attended=attended
        )
        return self._event(seconds, transferred=transfer)

    def held(self, seconds: float) -> ev.CallEvent:
        return self._event(seconds, held=ev.CallHeld(by=ev.HANGUP_BY_CALLEE))

    def ended(
        self,
        seconds: float,
        disposition: ev.Disposition.ValueType = ev.DISPOSITION_UNSPECIFIED,
        *,
        sip_status: int = 0,
        q850: int = 0,
        hangup_by: ev.HangupBy.ValueType = ev.HANGUP_BY_UNSPECIFIED,
        answered_at: float | None = None,
        answered_extension: str = "",
        reason: str = "",
    ) -> ev.CallEvent:
        ended = ev.CallEnded(
            disposition=disposition,
            sip_status=sip_status,
            sip_reason=reason,
            q850_cause=q850,
            hangup_by=hangup_by,
            answered_extension=answered_extension,
        )
        ended.started_at.FromDatetime(self.start)
        if answered_at is not None:
            ended.answered_at.FromDatetime(self.at(answered_at))
        return self._event(seconds, ended=ended)

    def answered_call(self, ring: float = 5, talk: float = 60) -> list[ev.CallEvent]:
        """offered, ringing, answered, ended (answered, 200, normal clearing, caller hung up)."""
        return [
            self.offered(),
            self.ringing(0.2),
            self.answered(ring),
            self.ended(
                ring + talk,
                ev.DISPOSITION_ANSWERED,
                sip_status=200,
                q850=16,
                hangup_by=ev.HANGUP_BY_CALLER,
                answered_at=ring,
            ),
        ]

    def missed_call(self, ring: float = 20) -> list[ev.CallEvent]:
        return [
            self.offered(),
            self.ringing(0.2),
            self.ended(ring, ev.DISPOSITION_MISSED, sip_status=487, q850=16, hangup_by=ev.HANGUP_BY_CALLER),
        ]


def record_values(record: CallRecord | Call) -> dict[str, object]:
    """The comparable values of a record or a row (without created_at / updated_at)."""
    return {name: getattr(record, name) for name in RECORD_COLUMNS}


M = TypeVar("M")


async def stream_messages(
    bus: Bus, subjects: str, decode: Callable[[str, bytes], M], keep: Callable[[M], bool]
) -> list[tuple[str, M]]:
    """Every message of the CALLS stream on ``subjects`` that ``keep`` accepts, decoded, in stream
    order (read with an ordered consumer until none comes for half a second)."""
    sub = await bus.js.subscribe(subjects, stream="CALLS", ordered_consumer=True)
    found: list[tuple[str, M]] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except TimeoutError:
                return found
            try:
                message = decode(msg.subject, msg.data)
            except InvalidMessage:
                continue  # another test's deliberately malformed message on the shared stream
            if keep(message):
                found.append((msg.subject, message))
    finally:
        await sub.unsubscribe()
