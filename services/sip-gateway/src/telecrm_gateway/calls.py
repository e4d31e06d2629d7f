"""The call logic (a B2BUA for one destination): engine facts in, SIP commands and call events out.

Runs on the asyncio loop. Each inbound INVITE becomes a :class:`LiveCall`: it is offered, the route's
extension is rung on a second leg, its 18x becomes 180 to the caller, its answer is relayed and the two
audio streams bridged, and whichever side hangs up first ends the other. Every change is published as a
CallEvent through the sink, in the order the gateway saw it; :mod:`telecrm_gateway.events` decides how
each ending is recorded. Nothing here blocks: commands go to the engine's queue and their outcome comes
back as facts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_gateway import events
from telecrm_gateway.errors import CallNotFoundError
from telecrm_gateway.events import CallHeader, EndCause
from telecrm_gateway.routing import Route, RoutingTable
from telecrm_gateway.sip.facts import (
    CallRefused,
    EngineFact,
    IncomingCall,
    LegAnswered,
    LegEnded,
    LegProgress,
)

log = logging.getLogger(__name__)

Header = tuple[str, str]
CALL_ID_HEADER = "X-Telecrm-Call-Id"


class SipControl(Protocol):
    """What the call logic asks of the SIP engine (:class:`telecrm_gateway.sip.engine.SipEngine`)."""

    def new_leg_id(self) -> str: ...

    def answer(
        self, leg_id: str, status: int, reason: str = "", headers: Sequence[Header] = ()
    ) -> concurrent.futures.Future[None]: ...

    def hangup(
        self, leg_id: str, status: int = 0, reason: str = "", headers: Sequence[Header] = ()
    ) -> concurrent.futures.Future[None]: ...

    def dial(
        self, leg_id: str, group: str, uri: str, from_uri: str = "", headers: Sequence[Header] = ()
    ) -> concurrent.futures.Future[str]: ...

    def bridge(self, leg_a: str, leg_b: str) -> concurrent.futures.Future[None]: ...

    def set_accepting(self, accepting: bool) -> concurrent.futures.Future[None]: ...


class EventSink(Protocol):
    """Takes call events in order and never blocks (:class:`telecrm_gateway.publisher.EventPublisher`)."""

    def emit(self, event: ev.CallEvent) -> None: ...


class CallState(StrEnum):
    OFFERED = "offered"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


@dataclass
class LiveCall:
    """One call as the gateway tracks it, from the INVITE until its last leg is gone."""

    header: CallHeader
    inbound_leg: str
    started_at: datetime
    route: Route | None
    state: CallState = CallState.OFFERED
    agent_leg: str = ""
    agent_sip_call_id: str = ""
    answered_at: datetime | None = None
    answered_extension: str = ""
    ended_at: datetime | None = None
    sequence: int = 0
    legs: set[str] = field(default_factory=set)
    ring_timer: asyncio.TimerHandle | None = None

    @property
    def call_id(self) -> str:
        return self.header.call_id

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED


def _now() -> datetime:
    return datetime.now(UTC)


def _quote(display: str) -> str:
    return '"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"'


class CallManager:
    """Owns the live calls; :meth:`on_fact` is called on the loop for each engine fact, in order."""

    def __init__(
        self,
        engine: SipControl,
        routes: RoutingTable,
        sink: EventSink,
        *,
        source: str,
        from_host: str,
        region: str = "US",
        retry_after: int = 5,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._engine = engine
        self._routes = routes
        self._sink = sink
        self._source = source
        self.from_host = from_host  # host part of the From URI the agent's phone sees
        self._region = region
        self._retry_after = retry_after
        self._clock = clock
        self._calls: dict[str, LiveCall] = {}
        self._by_leg: dict[str, LiveCall] = {}
        self._draining = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.refused = 0

    # --------------------------------------------------------------------------- queries and commands

    def active_calls(self) -> list[LiveCall]:
        """Calls not yet ended, oldest first."""
        return [call for call in self._calls.values() if not call.ended]

    def get(self, call_id: str) -> LiveCall | None:
        call = self._calls.get(call_id)
        return call if call is not None and not call.ended else None

    @property
    def draining(self) -> bool:
        return self._draining

    def hangup(self, call_id: str, cause: EndCause = EndCause.SYSTEM_HANGUP) -> None:
        """End a live call from our side (hangup_by SYSTEM); CallNotFoundError when it is not live."""
        call = self.get(call_id)
        if call is None:
            raise CallNotFoundError(call_id)
        log.info("call %s: hanging up (%s)", call_id, cause.value, extra={"call_id": call_id})
        answered = call.state is CallState.ANSWERED
        if call.agent_leg:
            self._send(self._engine.hangup(call.agent_leg), "hangup agent leg")
        if answered:
            self._send(self._engine.hangup(call.inbound_leg), "hangup caller leg")
        elif cause is EndCause.SHUTDOWN:
            self._send(self._engine.hangup(call.inbound_leg, 503, "", self._retry_after_header()), "refuse")
        else:
            self._send(self._engine.hangup(call.inbound_leg, 480), "refuse caller leg")
        self._end(call, cause, self._clock())

    async def drain(self, timeout: float) -> bool:
        """Refuse new calls (503), hang up the live ones and wait until their legs are gone.

        True when everything ended within ``timeout`` seconds.
        """
        self._draining = True
        try:
            await asyncio.wait_for(asyncio.wrap_future(self._engine.set_accepting(False)), timeout)
        except Exception as exc:
            log.warning("could not stop the SIP engine taking calls: %s", exc)
        for call in self.active_calls():
            self.hangup(call.call_id, EndCause.SHUTDOWN)
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning("%d calls still had SIP legs after %.1fs", len(self._calls), timeout)
            return False
        return True

    # --------------------------------------------------------------------------- facts

    def on_fact(self, fact: EngineFact) -> None:
        """Handle one fact from the engine; never raises (a bug here must not stop the next call)."""
        try:
            if isinstance(fact, IncomingCall):
                self._on_incoming(fact)
            elif isinstance(fact, LegProgress):
                self._on_progress(fact)
            elif isinstance(fact, LegAnswered):
                self._on_answered(fact)
            elif isinstance(fact, LegEnded):
                self._on_leg_ended(fact)
            elif isinstance(fact, CallRefused):
                self.refused += 1
        except Exception:
            log.exception("handling %r failed", fact)

    def _on_incoming(self, fact: IncomingCall) -> None:
        if self._draining:
            # The INVITE was admitted just before the engine stopped taking calls.
            self._send(self._engine.hangup(fact.leg_id, 503, "", self._retry_after_header()), "refuse")
            return
        route = self._routes.route(fact.request_user)
        caller_ext = self._routes.extension_of(fact.from_user)
        direction = ev.DIRECTION_INTERNAL if caller_ext is not None else ev.DIRECTION_INBOUND
        extension = route.extension if route is not None else None
        header = CallHeader(
            call_id=str(uuid.uuid4()),
            direction=direction,
            caller=events.party(
                fact.from_user,
                self._region,
                display_name=fact.from_display or (caller_ext.name if caller_ext else ""),
                extension=caller_ext.number if caller_ext else "",
            ),
            callee=events.party(
                fact.request_user,
                self._region,
                display_name=extension.name if extension else "",
                extension=extension.number if extension else "",
            ),
            line=fact.request_user,
            extension=extension.number if extension else "",
            employee_id=extension.employee_id if extension else "",
            sip_call_id=fact.sip_call_id,
            source=self._source,
            request_uri=fact.request_uri,
        )
        call = LiveCall(header=header, inbound_leg=fact.leg_id, started_at=fact.at, route=route)
        self._track(call, fact.leg_id)
        log.info(
            "call %s: %s from %s to %s (SIP %s)",
            call.call_id,
            "internal" if direction == ev.DIRECTION_INTERNAL else "inbound",
            fact.from_user or "anonymous",
            fact.request_user,
            fact.sip_call_id,
            extra={"call_id": call.call_id, "sip_call_id": fact.sip_call_id},
        )
        self._publish(call, lambda seq: events.offered(header, sequence=seq, at=fact.at))
        if extension is None:
            log.info(
                "call %s: no line or extension %r: 404",
                call.call_id,
                fact.request_user,
                extra={"call_id": call.call_id},
            )
            self._send(self._engine.hangup(fact.leg_id, 404, "Not Found"), "refuse unknown number")
            self._end(call, EndCause.NO_ROUTE, fact.at)
            return
        agent_leg = self._engine.new_leg_id()
        call.agent_leg = agent_leg
        self._track(call, agent_leg)
        from_uri = f"{_quote(fact.from_display)} <sip:{fact.from_user or 'anonymous'}@{self.from_host}>"
        self._send(
            self._engine.dial(
                agent_leg, fact.leg_id, extension.contact, from_uri, [(CALL_ID_HEADER, call.call_id)]
            ),
            "ring the extension",
        )
        loop = asyncio.get_running_loop()
        call.ring_timer = loop.call_later(extension.ring_timeout, self._on_ring_timeout, call.call_id)

    def _on_progress(self, fact: LegProgress) -> None:
        call = self._by_leg.get(fact.leg_id)
        if call is None or call.ended or fact.leg_id != call.agent_leg:
            return
        call.agent_sip_call_id = fact.sip_call_id
        if call.state is not CallState.OFFERED or fact.status <= 100:
            return
        call.state = CallState.RINGING
        self._send(self._engine.answer(call.inbound_leg, 180), "send 180 to the caller")
        extension = call.header.extension
        self._publish(
            call,
            lambda seq: events.ringing(
                call.header, sequence=seq, at=fact.at, extension=extension, leg_id=fact.sip_call_id
            ),
        )

    def _on_answered(self, fact: LegAnswered) -> None:
        call = self._by_leg.get(fact.leg_id)
        if call is None or fact.leg_id != call.agent_leg:
            return
        if call.ended:
            # The agent picked up as the call was ending (timeout, caller gone): hang the agent up.
            self._send(self._engine.hangup(fact.leg_id), "hang up a late answer")
            return
        call.agent_sip_call_id = fact.sip_call_id
        call.state = CallState.ANSWERED
        call.answered_at = fact.at
        call.answered_extension = call.header.extension
        self._cancel_timer(call)
        self._send(self._engine.answer(call.inbound_leg, 200), "answer the caller")
        self._send(self._engine.bridge(call.inbound_leg, fact.leg_id), "bridge audio")
        log.info(
            "call %s: answered by %s", call.call_id, call.answered_extension, extra={"call_id": call.call_id}
        )
        self._publish(
            call,
            lambda seq: events.answered(
                call.header,
                sequence=seq,
                at=fact.at,
                extension=call.answered_extension,
                leg_id=fact.sip_call_id,
                started_at=call.started_at,
            ),
        )

    def _on_leg_ended(self, fact: LegEnded) -> None:
        call = self._by_leg.pop(fact.leg_id, None)
        if call is None:
            return
        call.legs.discard(fact.leg_id)
        if not call.ended:
            answered = call.state is CallState.ANSWERED
            if fact.leg_id == call.inbound_leg:
                cause = EndCause.CALLER_HANGUP if answered or fact.status == 487 else EndCause.CALLER_FAILED
                if call.agent_leg:
                    self._send(self._engine.hangup(call.agent_leg), "hang up the agent leg")
                self._end(call, cause, fact.at, fact.status, fact.reason)
            elif fact.leg_id == call.agent_leg:
                if answered:
                    self._send(self._engine.hangup(call.inbound_leg), "hang up the caller leg")
                else:
                    status = events.caller_status_for_callee_failure(fact.status)
                    self._send(self._engine.hangup(call.inbound_leg, status), "relay the refusal")
                self._end(call, EndCause.CALLEE_HANGUP, fact.at, fact.status, fact.reason)
        if call.ended and not call.legs:
            self._forget(call)

    def _on_ring_timeout(self, call_id: str) -> None:
        call = self._calls.get(call_id)
        if call is None or call.ended or call.state is CallState.ANSWERED:
            return
        call.ring_timer = None
        log.info("call %s: not answered within the ring timeout", call_id, extra={"call_id": call_id})
        if call.agent_leg:
            self._send(self._engine.hangup(call.agent_leg), "cancel the agent leg")
        self._send(self._engine.hangup(call.inbound_leg, 480), "tell the caller")
        self._end(call, EndCause.RING_TIMEOUT, self._clock())

    # --------------------------------------------------------------------------- helpers

    def _end(
        self, call: LiveCall, cause: EndCause, at: datetime, sip_status: int = 0, sip_reason: str = ""
    ) -> None:
        result = events.outcome(
            cause,
            direction=call.header.direction,
            answered=call.state is CallState.ANSWERED,
            sip_status=sip_status,
            sip_reason=sip_reason,
        )
        self._cancel_timer(call)
        call.state = CallState.ENDED
        call.ended_at = at
        log.info(
            "call %s: ended %s, SIP %d, Q.850 %d, by %s",
            call.call_id,
            ev.Disposition.Name(result.disposition),
            result.sip_status,
            result.q850_cause,
            ev.HangupBy.Name(result.hangup_by),
            extra={"call_id": call.call_id},
        )
        self._publish(
            call,
            lambda seq: events.ended(
                call.header,
                sequence=seq,
                at=at,
                result=result,
                started_at=call.started_at,
                answered_at=call.answered_at,
                answered_extension=call.answered_extension,
            ),
        )
        if not call.legs:
            self._forget(call)

    def _publish(self, call: LiveCall, build: Callable[[int], ev.CallEvent]) -> None:
        call.sequence += 1
        self._sink.emit(build(call.sequence))

    def _track(self, call: LiveCall, leg_id: str) -> None:
        self._calls[call.call_id] = call
        self._by_leg[leg_id] = call
        call.legs.add(leg_id)
        self._idle.clear()

    def _forget(self, call: LiveCall) -> None:
        self._calls.pop(call.call_id, None)
        for leg_id in list(call.legs):
            self._by_leg.pop(leg_id, None)
        if not self._calls:
            self._idle.set()

    def _cancel_timer(self, call: LiveCall) -> None:
        if call.ring_timer is not None:
            call.ring_timer.cancel()
            call.ring_timer = None

    def _retry_after_header(self) -> list[Header]:
        return [("Retry-After", str(self._retry_after))]

    @staticmethod
    def _send(future: concurrent.futures.Future[Any], what: str) -> None:
        """Fire and forget an engine command; a failure is only logged (its facts tell the rest)."""

        def done(f: concurrent.futures.Future[Any]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.warning("could not %s: %s", what, f.exception())

        future.add_done_callback(done)
