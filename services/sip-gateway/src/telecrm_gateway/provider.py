"""Telephony API for providers: call events from cloud PBXs, in the words PBXs already speak to CRMs.

A PBX that cannot send SIP to us posts what happens to its calls (``incoming``, ``outgoing``,
``accepted``, ``completed``, plus a recording link that may come later). Each post becomes the suite's
own events, published on the same subjects as the SIP side's, so the call log records provider calls
exactly like SIP calls:

| PBX event                          | published                                                     |
|------------------------------------|---------------------------------------------------------------|
| incoming (ringing, inbound...)     | ``offered`` (sequence 1) + ``ringing`` of the extension (2)   |
| outgoing (outbound, dial...)       | ``offered`` (1), direction outbound                           |
| accepted (answered, connected...)  | ``answered`` by the extension (3)                             |
| completed (hangup, missed, end...) | ``ended`` (9) + ``RecordingReady`` when it has a recording URL |
| recording                          | ``RecordingReady`` (``tel.recording.ready``)                  |

Idempotent and order-proof without memory: our call id is derived from (PBX name, the PBX's call id),
each event id from (call id, what it says), and the sequence is fixed per kind of event, so a retried
or duplicated post publishes the same ``Nats-Msg-Id`` and event id (stored once), and a ``completed``
that overtakes its ``incoming`` still folds into one right record. A small bounded memory of live
calls only fills in what a PBX leaves out of later events (the start time, the direction, the
number); it is lost on restart without harm beyond that.

``completed`` statuses map through :mod:`telecrm_common.telephony` like the SIP side's statuses:

| status (any case; SIP codes too)             | disposition (inbound / outbound) | SIP | hangup_by |
|----------------------------------------------|----------------------------------|-----|-----------|
| answered, success, ok, 200                   | answered                         | 200 | caller    |
| busy, 486, 600                               | busy                             | 486 | callee    |
| no-answer, noanswer, timeout, 480, 408       | missed / no_answer               | 480 | system    |
| missed, 304                                  | missed / no_answer               | 480 | system    |
| cancelled, cancel, abandoned, 487            | missed / cancelled               | 487 | caller    |
| rejected, declined, 603                      | rejected                         | 603 | callee    |
| failed, congestion, chanunavail, 4xx-6xx     | failed                           | 503 / code | system |
| (none): answered when the call had a duration or an accepted event, else as no-answer          |
"""

from __future__ import annotations

import mimetypes
import re
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Protocol

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.bus import Bus, BusError
from telecrm_common.events import RECORDING_READY_SUBJECT, call_event_subject
from telecrm_common.telephony import (
    Q850_NORMAL_CLEARING,
    disposition_for_unanswered,
    q850_for_sip_status,
)
from telecrm_common.timestamps import timestamp_message
from telecrm_gateway import events
from telecrm_gateway.errors import GatewayError
from telecrm_gateway.events import CallHeader, Outcome, PartyInfo

# Our call ids and event ids for provider calls are UUIDv5 in this namespace (never change it: the
# same PBX call must give the same ids across versions and replicas).
PROVIDER_NAMESPACE = uuid.UUID("6f1d4c2e-8a53-5b0e-9c1a-3e7f2d9b4a10")

SEQUENCE = {"offered": 1, "ringing": 2, "answered": 3, "ended": 9}

_TEXT = re.compile(r"[^\x00-\x1f\x7f]*")
_EXTENSION = re.compile(r"[A-Za-z0-9*#+._-]{1,32}")


class ProviderError(GatewayError):
    """Base of the provider API's errors."""


class InvalidProviderEvent(ProviderError):
    """An event that lacks what its kind needs (HTTP 422 naming the field)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in problems))
        self.problems = problems


class PublishFailed(ProviderError):
    """NATS did not acknowledge the events in time: the PBX should retry (HTTP 503)."""


class EventType(Enum):
    INCOMING = "incoming"
    OUTGOING = "outgoing"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    RECORDING = "recording"


# Every word a PBX may use for ``type``; "missed" is a completed call whose status defaults to missed.
TYPE_WORDS: Mapping[str, EventType] = {
    **dict.fromkeys(("incoming", "inbound", "in", "ringing", "ring", "call_start"), EventType.INCOMING),
    **dict.fromkeys(("outgoing", "outbound", "out", "dial", "dialing"), EventType.OUTGOING),
    **dict.fromkeys(("accepted", "answered", "answer", "connected", "pickup", "pick_up"), EventType.ACCEPTED),
    **dict.fromkeys(
        ("completed", "complete", "hangup", "hang_up", "ended", "end", "finished", "finish", "missed"),
        EventType.COMPLETED,
    ),
    **dict.fromkeys(("recording", "record", "recording_ready"), EventType.RECORDING),
}

DIRECTION_WORDS: Mapping[str, ev.Direction.ValueType] = {
    **dict.fromkeys(("inbound", "incoming", "in"), ev.DIRECTION_INBOUND),
    **dict.fromkeys(("outbound", "outgoing", "out"), ev.DIRECTION_OUTBOUND),
    **dict.fromkeys(("internal", "local"), ev.DIRECTION_INTERNAL),
}


class Status(Enum):
    """What a PBX's ``status`` of a completed call means (the module's table)."""

    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    FAILED = "failed"


STATUS_WORDS: Mapping[str, Status] = {
    **dict.fromkeys(("answered", "answer", "success", "ok", "completed", "connected"), Status.ANSWERED),
    **dict.fromkeys(("busy", "user_busy"), Status.BUSY),
    **dict.fromkeys(
        ("no_answer", "noanswer", "not_answered", "timeout", "missed", "unanswered"), Status.NO_ANSWER
    ),
    **dict.fromkeys(("cancelled", "canceled", "cancel", "abandoned", "caller_hangup"), Status.CANCELLED),
    **dict.fromkeys(("rejected", "declined", "decline", "refused"), Status.REJECTED),
    **dict.fromkeys(
        ("failed", "failure", "error", "congestion", "chanunavail", "unavailable", "invalid_number"),
        Status.FAILED,
    ),
}
STATUS_CODES: Mapping[int, Status] = {200: Status.ANSWERED, 304: Status.NO_ANSWER}  # 304: Bitrix24's missed


def _word(value: str) -> str:
    return re.sub(r"[\s-]+", "_", value.strip().lower())


def _text(value: str, name: str, limit: int) -> str:
    value = value.strip()
    if len(value) > limit:
        raise ValueError(f"at most {limit} characters")
    if not _TEXT.fullmatch(value):
        raise ValueError(f"{name} must not contain control characters")
    return value


def _check_call_id(value: str) -> str:
    value = _text(value, "call_id", 200)
    if not value:
        raise ValueError("required")
    return value


def _check_url(value: str) -> str:
    value = _text(value, "recording_url", 2000)
    if value and not re.match(r"https?://[^\s/]+", value, re.IGNORECASE):
        raise ValueError("an http:// or https:// URL")
    return value


def _check_crm_call_id(value: str) -> str:
    if not value:
        return ""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError("the call_id the click-to-call answered (a UUID)") from None


class ProviderEventIn(BaseModel):
    """One call event from a PBX (JSON or form fields; common alternative names accepted)."""

    model_config = ConfigDict(
        populate_by_name=True, str_strip_whitespace=True, coerce_numbers_to_str=True, extra="ignore"
    )

    type: str = Field(
        validation_alias=AliasChoices("type", "event", "event_type", "cmd"),
        description="incoming, outgoing, accepted, completed, recording (or a synonym: answered, "
        "hangup, missed, ...)",
    )
    call_id: str = Field(
        validation_alias=AliasChoices("call_id", "callid", "call_uid", "uuid"),
        description="the PBX's id of the call",
    )
    extension: str = Field(
        default="",
        validation_alias=AliasChoices("extension", "ext", "internal", "user"),
        description="our employee's extension on the PBX",
    )
    number: str = Field(
        default="",
        validation_alias=AliasChoices("number", "phone", "phone_number", "customer_number"),
        description="the customer's number (caller of an incoming call, callee of an outgoing one)",
    )
    line: str = Field(
        default="",
        validation_alias=AliasChoices("line", "did", "diversion", "line_number"),
        description="our number (DID) the customer called, or presented on an outgoing call",
    )
    direction: str = Field(
        default="",
        description="inbound, outbound or internal; needed on a completed event that may "
        "arrive before its outgoing event",
    )
    duration: int | None = Field(
        default=None,
        ge=0,
        le=7 * 24 * 3600,
        validation_alias=AliasChoices("duration", "billsec", "talk_duration", "call_duration"),
        description="seconds of conversation",
    )
    status: str = Field(
        default="",
        validation_alias=AliasChoices("status", "disposition", "status_code", "dialstatus"),
        description="how a completed call ended: answered, busy, no-answer, missed, cancelled, "
        "rejected, failed, or a SIP status code",
    )
    recording_url: str = Field(
        default="",
        validation_alias=AliasChoices("recording_url", "recording", "record_url", "link", "record_link"),
        description="http(s) URL of the call's recording",
    )
    occurred_at: datetime | None = Field(
        default=None,
        validation_alias=AliasChoices("occurred_at", "timestamp", "time", "date"),
        description="when it happened (ISO 8601 or UNIX seconds; without a zone: UTC); default: now",
    )
    crm_call_id: str = Field(
        default="", description="our call_id, echoed back for a call started by click-to-call"
    )

    @field_validator("duration", "occurred_at", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        word = _word(value)
        if word not in TYPE_WORDS:
            raise ValueError(
                f"unknown event type {value[:40]!r}: use incoming, outgoing, accepted, completed or recording"
            )
        return word

    @field_validator("call_id")
    @classmethod
    def _call_id(cls, value: str) -> str:
        return _check_call_id(value)

    @field_validator("extension")
    @classmethod
    def _extension(cls, value: str) -> str:
        if value and not _EXTENSION.fullmatch(value):
            raise ValueError("1-32 letters, digits or * # + . _ -")
        return value

    @field_validator("number", "line")
    @classmethod
    def _number(cls, value: str) -> str:
        return _text(value, "a number", 64)

    @field_validator("direction")
    @classmethod
    def _direction(cls, value: str) -> str:
        if value and _word(value) not in DIRECTION_WORDS:
            raise ValueError("inbound, outbound or internal")
        return _word(value) if value else ""

    @field_validator("status")
    @classmethod
    def _status(cls, value: str) -> str:
        if value and parse_status(value) is None:
            raise ValueError(
                f"unknown status {value[:40]!r}: use answered, busy, no-answer, missed, cancelled, "
                "rejected, failed or a SIP status code"
            )
        return value

    @field_validator("recording_url")
    @classmethod
    def _recording_url(cls, value: str) -> str:
        return _check_url(value)

    @field_validator("occurred_at")
    @classmethod
    def _occurred_at(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    @field_validator("crm_call_id")
    @classmethod
    def _crm_call_id(cls, value: str) -> str:
        return _check_crm_call_id(value)

    def problems(self) -> list[tuple[str, str]]:
        """(field, message) of what this kind of event needs and lacks."""
        kind = self.kind
        found: list[tuple[str, str]] = []
        if kind in (EventType.INCOMING, EventType.OUTGOING) and not self.number:
            found.append(("number", f"required for {kind.value} events (the customer's number)"))
        if kind is EventType.ACCEPTED and not self.extension:
            found.append(("extension", "required for accepted events (who answered)"))
        if kind is EventType.RECORDING and not self.recording_url:
            found.append(("recording_url", "required for recording events"))
        return found

    @property
    def kind(self) -> EventType:
        return TYPE_WORDS[self.type]


class RecordingIn(BaseModel):
    """A recording link that arrives after the call (``POST /provider/v1/recordings``)."""

    model_config = ConfigDict(
        populate_by_name=True, str_strip_whitespace=True, coerce_numbers_to_str=True, extra="ignore"
    )

    call_id: str = Field(validation_alias=AliasChoices("call_id", "callid", "call_uid", "uuid"))
    recording_url: str = Field(
        validation_alias=AliasChoices("recording_url", "recording", "record_url", "link", "record_link")
    )
    duration: int | None = Field(default=None, ge=0, le=7 * 24 * 3600)
    crm_call_id: str = ""

    @field_validator("call_id")
    @classmethod
    def _call_id(cls, value: str) -> str:
        return _check_call_id(value)

    @field_validator("recording_url")
    @classmethod
    def _recording_url(cls, value: str) -> str:
        value = _check_url(value)
        if not value:
            raise ValueError("required")
        return value

    @field_validator("crm_call_id")
    @classmethod
    def _crm_call_id(cls, value: str) -> str:
        return _check_crm_call_id(value)

    def as_event(self) -> ProviderEventIn:
        return ProviderEventIn(
            type="recording",
            call_id=self.call_id,
            recording_url=self.recording_url,
            duration=self.duration,
            crm_call_id=self.crm_call_id,
        )


def parse_status(value: str) -> tuple[Status, int] | None:
    """A PBX's status as (what it means, the SIP status recorded); None when it is not one we know."""
    word = _word(value)
    if word.isdigit() and 100 <= int(word) <= 699:
        code = int(word)
        known = STATUS_CODES.get(code)
        if known is not None:
            return known, 200 if known is Status.ANSWERED else 480
        if 200 <= code < 300:
            return Status.ANSWERED, 200
        if code < 400:
            return None
        if code in (486, 600):
            return Status.BUSY, code
        if code in (480, 408):
            return Status.NO_ANSWER, code
        if code == 487:
            return Status.CANCELLED, code
        if code == 603:
            return Status.REJECTED, code
        return Status.FAILED, code
    status = STATUS_WORDS.get(word)
    if status is None:
        return None
    return status, DEFAULT_SIP_STATUS[status]


DEFAULT_SIP_STATUS: Mapping[Status, int] = {
    Status.ANSWERED: 200,
    Status.BUSY: 486,
    Status.NO_ANSWER: 480,
    Status.CANCELLED: 487,
    Status.REJECTED: 603,
    Status.FAILED: 503,
}
SIP_REASONS: Mapping[int, str] = {
    200: "OK",
    480: "Temporarily Unavailable",
    486: "Busy Here",
    487: "Request Terminated",
    503: "Service Unavailable",
    603: "Decline",
}


def provider_outcome(status: Status, sip_status: int, direction: ev.Direction.ValueType) -> Outcome:
    """How a provider call that ended with ``status`` is recorded (the module's table)."""
    if status is Status.ANSWERED:
        return Outcome(ev.DISPOSITION_ANSWERED, 200, "OK", Q850_NORMAL_CLEARING, ev.HANGUP_BY_CALLER)
    by = {
        Status.BUSY: ev.HANGUP_BY_CALLEE,
        Status.REJECTED: ev.HANGUP_BY_CALLEE,
        Status.CANCELLED: ev.HANGUP_BY_CALLER,
    }.get(status, ev.HANGUP_BY_SYSTEM)
    disposition = disposition_for_unanswered(
        direction,
        sip_status,
        cancelled_by_caller=status is Status.CANCELLED,
        timed_out=status is Status.NO_ANSWER,
    )
    if status is Status.FAILED:
        disposition = ev.DISPOSITION_FAILED
    return Outcome(
        disposition, sip_status, SIP_REASONS.get(sip_status, ""), q850_for_sip_status(sip_status), by
    )


# --- ids ---------------------------------------------------------------------------------------------


def provider_call_id(pbx: str, their_call_id: str) -> str:
    """Our call id of a PBX's call: the same for every event, post, retry and gateway replica."""
    return str(uuid.uuid5(PROVIDER_NAMESPACE, f"call\x1f{pbx}\x1f{their_call_id}"))


def event_id(call_id: str, what: str) -> str:
    return str(uuid.uuid5(PROVIDER_NAMESPACE, f"event\x1f{call_id}\x1f{what}"))


# --- memory of live calls ------------------------------------------------------------------------


@dataclass
class ProviderCall:
    """What earlier events of a call said (filled in where a later event is silent)."""

    call_id: str
    direction: ev.Direction.ValueType = ev.DIRECTION_UNSPECIFIED
    number: str = ""
    line: str = ""
    extension: str = ""
    started_at: datetime | None = None
    answered_at: datetime | None = None
    answered_extension: str = ""
    context: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Accepted:
    """What one post published."""

    call_id: str
    event_ids: tuple[str, ...]


class MessageSink(Protocol):
    async def publish(self, messages: Sequence[ev.CallEvent | ev.RecordingReady]) -> None:
        """Publish in order; return once the bus stored them all; raise PublishFailed otherwise."""


class BusSink:
    """Publishes straight to JetStream and waits for each ack, so a 2xx to the PBX means stored."""

    def __init__(self, bus: Bus, *, timeout: float = 5.0) -> None:
        self._bus = bus
        self._timeout = timeout

    async def publish(self, messages: Sequence[ev.CallEvent | ev.RecordingReady]) -> None:
        for message in messages:
            subject = (
                call_event_subject(message) if isinstance(message, ev.CallEvent) else RECORDING_READY_SUBJECT
            )
            try:
                await self._bus.publish(subject, message, msg_id=message.event_id, timeout=self._timeout)
            except BusError as exc:
                raise PublishFailed(str(exc)) from exc


class ProviderCalls:
    """Turns PBX events into CallEvents and RecordingReady, and publishes them (see the module)."""

    def __init__(self, sink: MessageSink, *, region: str = "US", max_calls: int = 10_000) -> None:
        self._sink = sink
        self._region = region
        self._max_calls = max(1, max_calls)
        self._calls: OrderedDict[str, ProviderCall] = OrderedDict()
        # (pbx, their call id) -> our call id, for calls started by click-to-call (dialing.py).
        self._links: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._dialed: OrderedDict[str, dict[str, str]] = OrderedDict()  # our call id -> its context

    # --- click-to-call links -------------------------------------------------------------------------

    def remember_dial(self, call_id: str, context: Mapping[str, str]) -> None:
        """A click-to-call we asked a PBX for: its events that name ``call_id`` carry ``context``."""
        self._bounded_put(self._dialed, call_id, dict(context))

    def link(self, pbx: str, their_call_id: str, call_id: str) -> None:
        """The PBX told us its id of the call we asked for: its events belong to ``call_id``."""
        self._bounded_put(self._links, (pbx, their_call_id), call_id)

    def _bounded_put(self, table: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self._max_calls:
            table.popitem(last=False)

    # --- events --------------------------------------------------------------------------------------

    def call_id_of(self, pbx: str, their_call_id: str, crm_call_id: str = "") -> str:
        return crm_call_id or self._links.get((pbx, their_call_id)) or provider_call_id(pbx, their_call_id)

    async def accept(self, pbx: str, event: ProviderEventIn, *, now: datetime | None = None) -> Accepted:
        """Translate and publish one PBX event; raises PublishFailed when NATS did not store it."""
        messages = self.translate(pbx, event, now=now)
        await self._sink.publish(messages)
        return Accepted(
            call_id=self.call_id_of(pbx, event.call_id, event.crm_call_id),
            event_ids=tuple(m.event_id for m in messages),
        )

    def translate(
        self, pbx: str, event: ProviderEventIn, *, now: datetime | None = None
    ) -> list[ev.CallEvent | ev.RecordingReady]:
        """The events one PBX post stands for (pure but for the memory of live calls).

        Raises InvalidProviderEvent when the event lacks what its kind needs.
        """
        problems = event.problems()
        if problems:
            raise InvalidProviderEvent(problems)
        at = event.occurred_at or now or datetime.now(UTC)
        if event.crm_call_id:  # the PBX's later events of this call may leave it out
            self.link(pbx, event.call_id, event.crm_call_id)
        call_id = self.call_id_of(pbx, event.call_id, event.crm_call_id)
        state = self._state(call_id)
        kind = event.kind
        direction = DIRECTION_WORDS.get(event.direction, ev.DIRECTION_UNSPECIFIED)
        if not direction:
            direction = {
                EventType.INCOMING: ev.DIRECTION_INBOUND,
                EventType.OUTGOING: ev.DIRECTION_OUTBOUND,
            }.get(kind, state.direction or ev.DIRECTION_INBOUND)
        state.direction = direction
        state.number = event.number or state.number
        state.line = event.line or state.line
        state.extension = event.extension or state.extension
        if kind in (EventType.INCOMING, EventType.OUTGOING):
            state.started_at = min(at, state.started_at) if state.started_at else at
        header = self._header(pbx, event, state)
        out: list[ev.CallEvent | ev.RecordingReady] = []
        if kind in (EventType.INCOMING, EventType.OUTGOING):
            started = state.started_at or at
            out.append(
                events.offered(
                    header, sequence=SEQUENCE["offered"], at=started, event_id=event_id(call_id, "offered")
                )
            )
            if kind is EventType.INCOMING and event.extension:
                out.append(
                    events.ringing(
                        header,
                        sequence=SEQUENCE["ringing"],
                        at=at,
                        extension=event.extension,
                        leg_id=event.extension,
                        event_id=event_id(call_id, f"ringing\x1f{event.extension}"),
                    )
                )
        elif kind is EventType.ACCEPTED:
            state.answered_at = min(at, state.answered_at) if state.answered_at else at
            state.answered_extension = state.answered_extension or event.extension
            out.append(
                events.answered(
                    header,
                    sequence=SEQUENCE["answered"],
                    at=at,
                    extension=event.extension,
                    leg_id=event.extension,
                    started_at=state.started_at or at,
                    event_id=event_id(call_id, f"answered\x1f{event.extension}"),
                )
            )
        elif kind is EventType.COMPLETED:
            out.append(self._ended(call_id, header, event, state, at))
        if event.recording_url:
            out.append(self._recording(call_id, event, state, at))
        return out

    def _state(self, call_id: str) -> ProviderCall:
        state = self._calls.get(call_id)
        if state is None:
            state = ProviderCall(call_id=call_id, context=dict(self._dialed.get(call_id, {})))
        self._bounded_put(self._calls, call_id, state)
        return state

    def _header(self, pbx: str, event: ProviderEventIn, state: ProviderCall) -> CallHeader:
        ours = PartyInfo(
            number=state.line or state.extension,
            e164=events.party(state.line, self._region).e164 if state.line else "",
            extension=state.extension,
        )
        customer = events.party(state.number, self._region) if state.number else PartyInfo(number="")
        if state.direction == ev.DIRECTION_OUTBOUND:
            caller, callee = ours, customer
        elif state.direction == ev.DIRECTION_INTERNAL:  # "number" is the other extension
            caller, callee = PartyInfo(number=state.number, extension=state.number), ours
        else:
            caller, callee = customer, ours
        return CallHeader(
            call_id=state.call_id,
            direction=state.direction,
            caller=caller,
            callee=callee,
            line=state.line,
            extension=state.extension,
            employee_id="",
            sip_call_id=event.call_id,
            source=f"provider-api/{pbx}",
            request_uri=state.line or state.extension,
            context=state.context,
        )

    def _ended(
        self, call_id: str, header: CallHeader, event: ProviderEventIn, state: ProviderCall, at: datetime
    ) -> ev.CallEvent:
        parsed = parse_status(event.status) if event.status else None
        if parsed is None:
            talked = bool(event.duration) or state.answered_at is not None
            if event.type == "missed":
                talked = False
            parsed = (Status.ANSWERED, 200) if talked else (Status.NO_ANSWER, 480)
        status, sip_status = parsed
        result = provider_outcome(status, sip_status, state.direction)
        answered = status is Status.ANSWERED
        answered_at = state.answered_at if answered else None
        if answered and answered_at is None and event.duration is not None:
            answered_at = at - timedelta(seconds=event.duration)
        started_at = state.started_at or answered_at or at
        answered_extension = (state.answered_extension or state.extension) if answered else ""
        return events.ended(
            header,
            sequence=SEQUENCE["ended"],
            at=at,
            result=result,
            started_at=started_at,
            answered_at=answered_at,
            answered_extension=answered_extension,
            event_id=event_id(call_id, "ended"),
        )

    def _recording(
        self, call_id: str, event: ProviderEventIn, state: ProviderCall, at: datetime
    ) -> ev.RecordingReady:
        url = event.recording_url
        recording_id = event_id(call_id, f"recording\x1f{url}")
        content_type = mimetypes.guess_type(url.split("?", 1)[0])[0] or ""
        message = ev.RecordingReady(
            event_id=recording_id,
            call_id=call_id,
            recording_id=recording_id,
            occurred_at=timestamp_message(at),
            location=url,
            content_type=content_type if content_type.startswith("audio/") else "",
            duration_ms=(event.duration or 0) * 1000,
        )
        started = state.answered_at or state.started_at
        if started is not None:
            message.started_at.CopyFrom(timestamp_message(started))
        return message


__all__ = [
    "Accepted",
    "BusSink",
    "EventType",
    "InvalidProviderEvent",
    "MessageSink",
    "ProviderCalls",
    "ProviderError",
    "ProviderEventIn",
    "PublishFailed",
    "RecordingIn",
    "Status",
    "event_id",
    "parse_status",
    "provider_call_id",
    "provider_outcome",
]
