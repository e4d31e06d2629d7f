"""What the pool knows of its workers' calls, and how the calls of a worker that died are ended.

Each worker publishes its CallEvents with ``source = "sip-gateway/<instance>"``. The pool follows
``tel.call.>`` (a core NATS subscription: it needs every event once, live, and keeps no state that
would need a durable consumer) and keeps, per worker, the calls that have no ``ended`` yet. When a worker
dies, those calls would stay "live" in the call log forever: the pool publishes their ``ended`` itself,
with the next sequence number, as :func:`worker_lost_event` builds it:

| the call was | disposition | SIP status / reason           | Q.850                 | hangup_by |
|--------------|-------------|-------------------------------|-----------------------|-----------|
| answered     | answered    | 200 / "Gateway Worker Lost"   | 41 temporary failure  | system    |
| not answered | failed      | 500 / "Gateway Worker Lost"   | 41 temporary failure  | system    |
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.telephony import Q850_TEMPORARY_FAILURE

WORKER_LOST_REASON = "Gateway Worker Lost"
WORKER_LOST_STATUS = 500  # what the caller of an unanswered call gets from Kamailio, and the record says
_NAMESPACE = uuid.UUID("6c0b7f1e-3d0c-4f57-9d1a-6a3f1f4c2b10")


@dataclass
class TrackedCall:
    """A live call of one worker, as its events told it."""

    call_id: str
    header: ev.CallEvent  # the latest event (every event repeats the call's header fields)
    sip_call_id: str  # the caller's leg, from the first event seen: what Kamailio's dialog is keyed by
    sequence: int
    started_at: Timestamp
    answered_at: Timestamp | None = None
    answered_extension: str = ""

    @property
    def answered(self) -> bool:
        return self.answered_at is not None


class LiveCalls:
    """The calls each worker (by its event ``source``) has not ended yet. Not thread-safe: one loop."""

    def __init__(self) -> None:
        self._by_source: dict[str, dict[str, TrackedCall]] = {}
        self._ended: dict[str, None] = {}  # recently ended call ids (a late event must not revive them)

    def on_event(self, event: ev.CallEvent) -> None:
        kind = event.WhichOneof("kind")
        if not event.call_id or kind is None or not event.source:
            return
        calls = self._by_source.setdefault(event.source, {})
        if kind == "ended":
            calls.pop(event.call_id, None)
            self._remember_ended(event.call_id)
            return
        if event.call_id in self._ended:
            return
        call = calls.get(event.call_id)
        if call is None:
            started = Timestamp()
            started.CopyFrom(event.occurred_at)
            call = calls[event.call_id] = TrackedCall(
                call_id=event.call_id,
                header=event,
                sip_call_id=event.sip_call_id,
                sequence=event.sequence,
                started_at=started,
            )
        if event.sequence >= call.sequence:
            call.header = event
            call.sequence = event.sequence
        if kind == "answered" and call.answered_at is None:
            call.answered_at = Timestamp()
            call.answered_at.CopyFrom(event.occurred_at)
            call.answered_extension = event.answered.extension
            if event.answered.HasField("started_at"):
                call.started_at.CopyFrom(event.answered.started_at)

    def _remember_ended(self, call_id: str) -> None:
        self._ended[call_id] = None
        while len(self._ended) > 10_000:
            del self._ended[next(iter(self._ended))]

    def source_of(self, call_id: str) -> str | None:
        """The source (worker) of a live call, None when it is not live."""
        for source, calls in self._by_source.items():
            if call_id in calls:
                return source
        return None

    def of(self, source: str) -> list[TrackedCall]:
        return list(self._by_source.get(source, {}).values())

    def count(self, source: str) -> int:
        return len(self._by_source.get(source, {}))

    def take(self, source: str) -> list[TrackedCall]:
        """The live calls of a worker, forgotten from now on (the pool ends them)."""
        calls = list(self._by_source.pop(source, {}).values())
        for call in calls:
            self._remember_ended(call.call_id)
        return calls

    def sources(self) -> Iterable[str]:
        return self._by_source.keys()


def worker_lost_event(call: TrackedCall, *, at: datetime) -> ev.CallEvent:
    """The ``ended`` of a call whose worker died (see the module's table); the same call always gets the
    same event id, so a second publish is dropped by the stream's de-duplication."""
    event = ev.CallEvent()
    event.CopyFrom(call.header)
    kind = event.WhichOneof("kind")
    if kind is not None:
        event.ClearField(kind)
    event.event_id = str(uuid.uuid5(_NAMESPACE, f"{call.call_id}/worker-lost"))
    event.sequence = call.sequence + 1
    event.sip_call_id = call.sip_call_id
    event.occurred_at.FromDatetime(at)
    ended = ev.CallEnded(
        disposition=ev.DISPOSITION_ANSWERED if call.answered else ev.DISPOSITION_FAILED,
        sip_status=200 if call.answered else WORKER_LOST_STATUS,
        sip_reason=WORKER_LOST_REASON,
        q850_cause=Q850_TEMPORARY_FAILURE,
        hangup_by=ev.HANGUP_BY_SYSTEM,
        started_at=call.started_at,
        answered_extension=call.answered_extension,
    )
    if call.answered_at is not None:
        ended.answered_at.CopyFrom(call.answered_at)
    event.ended.CopyFrom(ended)
    return event
