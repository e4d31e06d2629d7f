"""Live screen pops: call events from the bus become cards on the ringing agent's open tabs.

The desktop follows ``tel.call.*`` with a core NATS subscription: every replica of the web service
sees every event (each serves its own WebSockets), nothing is acknowledged or stored for it, and a
replica that was down catches up from its own card buffer and the call log, not from the stream.

- ``ringing`` names the extension and (usually) the employee behind it; when it does not, crm's
  ``People.ResolveExtension`` is asked. A card goes at once to every WebSocket of that employee with
  the caller's number, and is completed when crm's look-up answers (the contact, the responsible
  employee, open tasks, last calls) and the call log says how many of the number's missed calls
  still wait for a callback. The look-up runs with the employee's own token, so it shows only the
  contacts that employee may see, and it never delays the card: it has a deadline, and a card
  whose look-up failed says so (the page can ask again).
- ``answered``, ``leg_ended`` and ``ended`` update the cards of that call (a ring group rang several
  agents: each sees who answered).
- Every change of a card gives it a new sequence number. Each employee's last cards are kept
  (``recent`` of them, for ``recent_seconds``): a tab that reconnects sends the last number it saw and
  gets every card that changed since; a tab of a restarted process (another ``boot`` id) gets all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, Protocol

from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.msg import Msg

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.bus import Bus, InvalidMessage
from telecrm_common.events import CALL_SUBJECT_PREFIX, decode_call_event
from telecrm_web.errors import SessionExpired, UpstreamUnavailable
from telecrm_web.sessions import Session, SessionStore
from telecrm_web.upstream import Upstream

log = logging.getLogger(__name__)

DIRECTIONS = {
    ev.DIRECTION_INBOUND: "inbound",
    ev.DIRECTION_OUTBOUND: "outbound",
    ev.DIRECTION_INTERNAL: "internal",
}
DISPOSITIONS = {
    ev.DISPOSITION_ANSWERED: "answered",
    ev.DISPOSITION_MISSED: "missed",
    ev.DISPOSITION_BUSY: "busy",
    ev.DISPOSITION_NO_ANSWER: "no_answer",
    ev.DISPOSITION_FAILED: "failed",
    ev.DISPOSITION_CANCELLED: "cancelled",
    ev.DISPOSITION_REJECTED: "rejected",
}
_NOT_DIGITS = re.compile(r"\D")
# A WebSocket whose page does not read this many messages is closed (it reconnects and catches up).
QUEUE_LIMIT = 200


def _iso(stamp: Timestamp | None) -> str | None:
    if stamp is None or (stamp.seconds == 0 and stamp.nanos == 0):
        return None
    return stamp.ToDatetime(tzinfo=UTC).isoformat()


@dataclass
class Card:
    """One call as one agent's screen pop shows it."""

    call_id: str
    employee_id: str
    extension: str
    direction: str
    number: str  # the other party: the caller of an incoming call, the callee of an outgoing one
    e164: str
    name: str  # the display name the call carried
    line: str
    started_at: str | None
    seq: int
    state: str = "ringing"  # ringing, answered, ended
    answered_extension: str = ""
    disposition: str = ""
    lookup_state: str = "pending"  # pending, done, failed, none (nobody looked: the page asks)
    lookup: dict[str, Any] | None = None
    missed_open: int | None = None
    touched: float = field(default_factory=time.monotonic)

    def as_json(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "seq": self.seq,
            "employee_id": self.employee_id,
            "extension": self.extension,
            "direction": self.direction,
            "number": self.number,
            "e164": self.e164,
            "name": self.name,
            "line": self.line,
            "started_at": self.started_at,
            "state": self.state,
            "answered_extension": self.answered_extension,
            "disposition": self.disposition,
            "lookup_state": self.lookup_state,
            "lookup": self.lookup,
            "missed_open": self.missed_open,
        }


class Sink(Protocol):
    """Where an employee's live messages go (a WebSocket of one of their tabs)."""

    employee_id: str | None

    def send(self, message: dict[str, Any]) -> None: ...

    def stop(self) -> None: ...


class CallerLookup:
    """The card's details from crm and calls, with an employee's token and a deadline."""

    def __init__(self, upstream: Upstream, store: SessionStore, *, timeout: float) -> None:
        self._upstream = upstream
        self._store = store
        self._timeout = timeout

    async def token_of(self, employee_id: str) -> str | None:
        """An access token of one of the employee's sessions (the most recently used that still works)."""
        for session in self._store.of_employee(employee_id):
            try:
                return await self._store.access_token(session)
            except (SessionExpired, UpstreamUnavailable):
                continue
        return None

    async def details(self, token: str, number: str) -> tuple[dict[str, Any] | None, int | None]:
        """crm's look-up of ``number`` and the count of its missed calls waiting for a callback; each is
        None when its service refused or did not answer within the deadline."""
        lookup, missed = await asyncio.gather(
            self._lookup(token, number), self._missed(token, number), return_exceptions=True
        )
        return (
            lookup if isinstance(lookup, dict) else None,
            missed if isinstance(missed, int) else None,
        )

    async def _lookup(self, token: str, number: str) -> dict[str, Any] | None:
        response = await self._upstream.request(
            self._upstream.crm,
            "GET",
            "/contacts/lookup",
            token=token,
            params={"number": number[:200]},
            timeout=self._timeout,
        )
        if response.status_code != 200:
            log.info("crm's look-up answered %s", response.status_code)
            return None
        body: dict[str, Any] = response.json()
        return body

    async def _missed(self, token: str, number: str) -> int | None:
        digits = _NOT_DIGITS.sub("", number)
        if len(digits) < 3:
            return None
        response = await self._upstream.request(
            self._upstream.calls,
            "GET",
            "/missed-calls",
            token=token,
            params={"number": digits[-15:], "state": "open", "limit": 20},
            timeout=self._timeout,
        )
        if response.status_code != 200:
            return None
        items = response.json().get("items", [])
        return sum(
            int(item.get("missed_count", 0))
            for item in items
            if _NOT_DIGITS.sub("", item.get("e164") or item.get("number") or "").endswith(digits[-9:])
        )


class ScreenPops:
    """Cards per employee, the WebSockets that show them, and the events that change them."""

    def __init__(
        self,
        lookup: CallerLookup,
        *,
        resolve_extension: Callable[[str], Awaitable[str | None]] | None = None,
        recent: int = 20,
        recent_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.boot = secrets.token_hex(8)
        self._lookup = lookup
        self._resolve = resolve_extension
        self._recent = recent
        self._recent_seconds = recent_seconds
        self._clock = clock
        self._seq = 0
        self._cards: dict[str, OrderedDict[str, Card]] = {}
        self._calls: dict[str, set[str]] = {}  # call id -> employees with a card of it
        self._sinks: dict[str, set[Sink]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.events_seen = 0

    # --- the WebSockets -----------------------------------------------------------------------------

    def attach(self, sink: Sink) -> None:
        if sink.employee_id:
            self._sinks.setdefault(sink.employee_id, set()).add(sink)

    def detach(self, sink: Sink) -> None:
        if sink.employee_id and (sinks := self._sinks.get(sink.employee_id)) is not None:
            sinks.discard(sink)
            if not sinks:
                del self._sinks[sink.employee_id]

    def close_all(self) -> int:
        """Close every live connection (on shutdown: the pages reconnect, to another replica, and catch
        up); how many there were."""
        sinks = [sink for sinks in self._sinks.values() for sink in sinks]
        for sink in sinks:
            sink.stop()
        return len(sinks)

    def connected(self, employee_id: str) -> int:
        return len(self._sinks.get(employee_id, ()))

    def cards_since(self, employee_id: str, *, boot: str | None, after: int) -> list[dict[str, Any]]:
        """The employee's cards that changed after sequence ``after`` (all of them after a restart)."""
        if boot != self.boot:
            after = 0
        cards = self._live_cards(employee_id)
        return [card.as_json() for card in cards if card.seq > after]

    # --- the bus ------------------------------------------------------------------------------------

    async def follow(self, bus: Bus, stop: asyncio.Event) -> None:
        """Follow ``tel.call.>`` until ``stop`` (a background task of the service)."""
        subscription = await bus.nc.subscribe(f"{CALL_SUBJECT_PREFIX}.>", cb=self._on_message)
        log.info("following call events for screen pops", extra={"subject": f"{CALL_SUBJECT_PREFIX}.>"})
        try:
            await stop.wait()
        finally:
            self.close_all()
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_message(self, msg: Msg) -> None:
        try:
            event = decode_call_event(msg.subject, msg.data)
        except InvalidMessage as exc:
            log.warning("ignoring an undecodable call event on %s: %s", msg.subject, exc)
            return
        try:
            await self.handle(event)
        except Exception:
            log.exception("screen pop of call %s failed", event.call_id)

    async def handle(self, event: ev.CallEvent) -> None:
        """Apply one call event to the cards (public for the tests and the benchmark)."""
        self.events_seen += 1
        kind = event.WhichOneof("kind")
        if kind == "ringing":
            await self._ringing(event)
        elif kind == "answered":
            self._update(
                event.call_id,
                lambda card: _answered(card, event.answered.extension or event.extension),
            )
        elif kind == "leg_ended":
            leg = event.leg_ended
            self._update(event.call_id, lambda card: _leg_ended(card, leg))
        elif kind == "ended":
            ended = event.ended
            self._update(event.call_id, lambda card: _ended(card, ended))

    async def _ringing(self, event: ev.CallEvent) -> None:
        ringing = event.ringing
        extension = ringing.extension or event.extension
        employee = ringing.employee_id or event.employee_id
        if not employee and extension and self._resolve is not None:
            employee = await self._resolve(extension) or ""
        if not employee:
            return
        cards = self._cards.setdefault(employee, OrderedDict())
        card = cards.get(event.call_id)
        if card is not None:  # rings again (a sequential group came back, a re-INVITE): same card
            card.extension = extension
            card.state = "ringing"
            self._publish(card)
            return
        outbound = event.direction == ev.DIRECTION_OUTBOUND
        party = event.callee if outbound else event.caller
        card = Card(
            call_id=event.call_id,
            employee_id=employee,
            extension=extension,
            direction=DIRECTIONS.get(event.direction, "inbound"),
            number=party.number or party.e164,
            e164=party.e164,
            name=party.display_name,
            line=event.line,
            started_at=_iso(event.occurred_at),
            seq=0,
            lookup_state="pending" if self.connected(employee) else "none",
        )
        cards[event.call_id] = card
        self._calls.setdefault(event.call_id, set()).add(employee)
        self._trim(employee)
        self._publish(card)
        if card.lookup_state == "pending":
            task = asyncio.create_task(self._complete(card), name=f"lookup-{event.call_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _complete(self, card: Card) -> None:
        token = await self._lookup.token_of(card.employee_id)
        lookup: dict[str, Any] | None = None
        missed: int | None = None
        if token is not None and (card.e164 or card.number):
            lookup, missed = await self._lookup.details(token, card.e164 or card.number)
        card.lookup = lookup
        card.missed_open = missed
        card.lookup_state = "done" if lookup is not None else "failed"
        self._publish(card)

    def _update(self, call_id: str, change: Callable[[Card], bool]) -> None:
        for employee in list(self._calls.get(call_id, ())):
            cards = self._cards.get(employee)
            card = cards.get(call_id) if cards is not None else None
            if card is not None and change(card):
                self._publish(card)

    def _publish(self, card: Card) -> None:
        self._seq += 1
        card.seq = self._seq
        card.touched = self._clock()
        cards = self._cards.get(card.employee_id)
        if cards is None or cards.get(card.call_id) is not card:
            return  # dropped from the buffer meanwhile (a look-up that answered very late)
        cards.move_to_end(card.call_id)
        message = {"type": "card", "boot": self.boot, "card": card.as_json()}
        for sink in list(self._sinks.get(card.employee_id, ())):
            sink.send(message)

    def _live_cards(self, employee_id: str) -> list[Card]:
        self._trim(employee_id)
        return list(self._cards.get(employee_id, {}).values())

    def _trim(self, employee_id: str) -> None:
        cards = self._cards.get(employee_id)
        if cards is None:
            return
        oldest = self._clock() - self._recent_seconds
        while cards and (len(cards) > self._recent or next(iter(cards.values())).touched < oldest):
            _, card = cards.popitem(last=False)
            employees = self._calls.get(card.call_id)
            if employees is not None:
                employees.discard(employee_id)
                if not employees:
                    del self._calls[card.call_id]
        if not cards:
            del self._cards[employee_id]


def _answered(card: Card, extension: str) -> bool:
    card.state = "answered"
    card.answered_extension = extension
    return True


def _leg_ended(card: Card, leg: ev.CallLegEnded) -> bool:
    if leg.extension and leg.extension != card.extension:
        return False
    if card.state == "answered" and card.answered_extension and card.answered_extension != card.extension:
        return False  # the others' legs end when one answers: "answered on 101" says more
    card.state = "ended"
    card.disposition = DISPOSITIONS.get(leg.disposition, "")
    return True


def _ended(card: Card, ended: ev.CallEnded) -> bool:
    card.state = "ended"
    card.disposition = DISPOSITIONS.get(ended.disposition, "")
    if ended.answered_extension:
        card.answered_extension = ended.answered_extension
    return True


class LiveSocket:
    """One tab's WebSocket: a bounded queue of messages and the task that writes them."""

    def __init__(self, session: Session, send_json: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self.session = session
        self.employee_id = session.employee_id
        self._send_json = send_json
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self.overflowed = False

    def send(self, message: dict[str, Any]) -> None:
        if self.overflowed:
            return
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed = True
            while not self._queue.empty():  # drop what the page did not read...
                self._queue.get_nowait()
            self._queue.put_nowait(None)  # ...and stop the writer: the page reconnects and catches up

    def stop(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    async def write(self) -> None:
        """Send what is queued until :meth:`stop` (or an overflow)."""
        while True:
            message = await self._queue.get()
            if message is None:
                return
            await self._send_json(message)
