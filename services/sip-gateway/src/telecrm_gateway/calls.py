"""The call logic (a B2BUA): engine facts in, SIP commands and call events out.

Runs on the asyncio loop. Each inbound INVITE becomes a :class:`LiveCall` with one ``call_id``. Its route
(:mod:`telecrm_gateway.routing`) is a chain of stages: one extension, a ring group or a queue, then the
overflow targets. A stage rings its members on agent legs, all at once or one after another; the first
18x becomes one 180 to the caller, the first answer wins (the caller is answered, the audio bridged and
the other legs cancelled), and whichever side hangs up first ends the other. A stage that rings out or
whose members all refuse hands over to the next stage; after the last one the call is missed (or ends
with the refusal, see :mod:`telecrm_gateway.events`).

Caller name: before the first agent leg rings, the caller's number is looked up in crm
(:class:`CallerLookup`). A cached answer is used at once; otherwise the lookup may take ``lookup_budget``
seconds, then ringing starts with what is known and a later answer only names the legs rung after it.
The agent's phone shows ``<contact name> / <line name>`` as the From display name; the number stays
the caller's.

Click-to-call (:meth:`CallManager.dial`): the agent's own phone rings first (its From shows whom it will
call), and once the agent answers the customer is called (through the trunk, or an extension directly)
and the two legs bridged (early media included: the agent hears the customer's ringback). Busy, no
answer or a failure on either side ends the call with that disposition; on the agent's side it is
``hangup_by caller`` (the agent is the caller) and a ``leg_ended`` names the agent's leg.

Capacity: a call holds at most ``max_legs`` engine legs (its caller's and its agents'); a member whose
turn comes while the call is at that limit (the cancelled legs of a stage not gone yet) is dialled as
soon as a leg is gone.

Every change is published as a CallEvent through the sink, in the order the gateway saw it. Nothing here
blocks: commands go to the engine's queue and their outcome comes back as facts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import re
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import PurePath
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_gateway import events
from telecrm_gateway.errors import CallNotFoundError, GatewayError
from telecrm_gateway.events import CallHeader, EndCause, LegEnd
from telecrm_gateway.routing import Extension, Route, RoutingTable, Stage, Strategy, contact_at
from telecrm_gateway.sip.engine import AnyFact, DtmfMethod, LegHold, RecordingDone
from telecrm_gateway.sip.facts import (
    CallRefused,
    IncomingCall,
    LegAnswered,
    LegEnded,
    LegProgress,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

Header = tuple[str, str]
CALL_ID_HEADER = "X-Telecrm-Call-Id"
DEFAULT_MAX_LEGS = 4  # pjsua2's legs per process (sip.engine.PJSUA_MAX_CALLS), for one call per process
DEFAULT_LOOKUP_BUDGET = 0.15  # seconds ringing may wait for crm's answer about the caller
DEFAULT_DIAL_TIMEOUT = 45.0  # click-to-call: seconds the customer's phone may ring
MAX_DISPLAY_NAME = 64
# Characters RFC 3261 allows unescaped in the user part of a SIP URI (unreserved + user-unreserved).
_SIP_USER_SAFE = "-_.!~*'()&=+$,;?/"
DTMF_DIGITS = re.compile(r"[0-9*#A-Da-d]{1,32}")


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

    def originate(
        self, leg_id: str, uri: str, from_uri: str = "", headers: Sequence[Header] = ()
    ) -> concurrent.futures.Future[str]: ...

    def hold(self, leg_id: str) -> concurrent.futures.Future[None]: ...

    def resume(self, leg_id: str) -> concurrent.futures.Future[None]: ...

    def send_dtmf(self, leg_id: str, digits: str, method: DtmfMethod) -> concurrent.futures.Future[None]: ...

    def record_start(self, group: str, name: str) -> concurrent.futures.Future[str]: ...

    def record_pause(self, group: str) -> concurrent.futures.Future[None]: ...

    def record_resume(self, group: str) -> concurrent.futures.Future[None]: ...

    def record_stop(self, group: str) -> concurrent.futures.Future[None]: ...


class RequestRefused(GatewayError):
    """A request the gateway turns down: ``kind`` says why (the subclass lists the kinds), ``field``
    names the bad input when there is one."""

    def __init__(self, kind: str, message: str, field: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.field = field
        self.message = message


class CallControlError(RequestRefused):
    """A control request the call cannot take: ``kind`` is ``conflict`` (not in a state for it: not
    answered, not recorded...) or ``invalid`` (bad input, ``field`` names it)."""


class RecordingState(StrEnum):
    RECORDING = "recording"
    PAUSED = "paused"
    STOPPED = "stopped"


@dataclass
class Recording:
    """The recording of a call while it is written (its RecordingReady goes out once it is complete)."""

    recording_id: str
    call_id: str
    state: RecordingState = RecordingState.RECORDING
    path: str = ""


class DialRefused(RequestRefused):
    """A click-to-call that cannot be placed; ``kind`` is ``invalid``, ``unavailable``, ``busy`` (no room
    in this process now, or draining: another process can take it) or ``failed``."""


class EventSink(Protocol):
    """Takes call events in order and never blocks (:class:`telecrm_gateway.publisher.EventPublisher`)."""

    def emit(self, event: ev.CallEvent) -> None: ...


class CallerInfo(Protocol):
    """What the call logic reads of crm's caller card (:class:`telecrm_gateway.crm_lookup.CallerCard`)."""

    @property
    def name(self) -> str: ...

    @property
    def company(self) -> str: ...


class CallerLookup(Protocol):
    """Who is calling, by number (:class:`telecrm_gateway.crm_lookup.CrmLookup`): never raises."""

    def cached(self, number: str) -> CallerInfo | None: ...

    async def lookup(self, number: str) -> CallerInfo | None: ...


class CallState(StrEnum):
    OFFERED = "offered"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


class LegState(StrEnum):
    DIALLING = "dialling"
    RINGING = "ringing"
    ANSWERED = "answered"  # the winner
    DONE = "done"  # lost, rang out or refused: its outcome is known, the engine may still hold it


@dataclass
class AgentLeg:
    """One leg towards an agent's phone."""

    leg_id: str
    extension: Extension
    stage: int
    state: LegState = LegState.DIALLING
    sip_call_id: str = ""
    timer: asyncio.TimerHandle | None = None

    @property
    def ringing(self) -> bool:
        """Placed and not answered, refused or given up yet."""
        return self.state in (LegState.DIALLING, LegState.RINGING)


@dataclass
class ClickToCall:
    """The two legs of a click-to-call: the agent's phone first, then the customer."""

    agent: Extension
    agent_leg: str
    number: str
    target_uri: str  # where the customer is called
    from_uri: str  # what the customer's phone sees
    agent_answered: bool = False
    customer_leg: str = ""
    customer_ringing: bool = False
    timer: asyncio.TimerHandle | None = None


@dataclass
class LiveCall:
    """One call as the gateway tracks it, from the INVITE until its last leg is gone."""

    header: CallHeader
    inbound_leg: str
    started_at: datetime
    route: Route | None
    caller_display: str = ""  # what the agent's phone shows when crm does not know the caller
    state: CallState = CallState.OFFERED
    answered_at: datetime | None = None
    answered_extension: str = ""
    ended_at: datetime | None = None
    sequence: int = 0
    legs: set[str] = field(default_factory=set)  # engine legs not gone yet (the caller's included)
    agent_legs: dict[str, AgentLeg] = field(default_factory=dict)
    winner: AgentLeg | None = None
    stage: int = -1
    pending: deque[Extension] = field(default_factory=deque)  # members of the stage not dialled yet
    stage_timer: asyncio.TimerHandle | None = None
    card: CallerInfo | None = None
    rang_out: bool = False  # a leg rang without an answer until a timeout
    refusals: list[tuple[int, str]] = field(default_factory=list)  # final statuses of refusing legs
    caller_ringing: bool = False  # 180 sent to the caller
    click: ClickToCall | None = None  # set for a click-to-call (then there is no inbound leg)
    held: bool = False  # put on hold over the API (the customer's leg)
    recording: Recording | None = None
    transfer_from: AgentLeg | None = None  # a blind transfer in progress: the leg that handed over
    consult: AgentLeg | None = None  # an attended transfer in progress: the extension consulted
    attended_transfer: bool = False  # the transfer in progress began attended (completed while ringing)

    @property
    def call_id(self) -> str:
        return self.header.call_id

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED

    @property
    def current_stage(self) -> Stage | None:
        if self.route is None or not 0 <= self.stage < len(self.route.stages):
            return None
        return self.route.stages[self.stage]


def _now() -> datetime:
    return datetime.now(UTC)


def _quote(display: str) -> str:
    return '"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"'


def display_name(text: str) -> str:
    """A display name safe for a SIP header: no control characters, spaces collapsed, at most 64."""
    text = "".join(ch if ch >= " " and ch != "\x7f" else " " for ch in text)
    return " ".join(text.split())[:MAX_DISPLAY_NAME].strip()


def agent_display(who: str, line_name: str) -> str:
    """What the agent's phone shows: ``<who> / <line name>``, either alone when the other is empty."""
    return display_name(" / ".join(part for part in (display_name(who), display_name(line_name)) if part))


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
        max_legs: int = DEFAULT_MAX_LEGS,
        lookup: CallerLookup | None = None,
        lookup_budget: float = DEFAULT_LOOKUP_BUDGET,
        max_calls: int = 1,
        trunk: str = "",
        trunk_domain: str = "",
        dial_timeout: float = DEFAULT_DIAL_TIMEOUT,
    ) -> None:
        self._engine = engine
        self._routes = routes
        self._sink = sink
        self._source = source
        self.from_host = from_host  # host part of the From URI the agent's phone sees
        self._region = region
        self._retry_after = retry_after
        self._clock = clock
        self._max_legs = max(max_legs, 2)
        self._lookup = lookup
        self._lookup_budget = lookup_budget
        self._max_calls = max_calls
        self._trunk = trunk  # sip:host:port;params of the trunk for external numbers ("" : none)
        self._trunk_domain = trunk_domain  # set when registered at the trunk: its From domain
        self._dial_timeout = dial_timeout
        self._calls: dict[str, LiveCall] = {}
        self._by_leg: dict[str, LiveCall] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._draining = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.refused = 0
        # Where RecordingReady events go (tel.recording.ready); None: recordings are only logged.
        self.recording_sink: Callable[[ev.RecordingReady], None] | None = None
        self._recordings: list[Recording] = []  # started, until their file is complete

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
        if call.click is not None:
            for leg_id in (call.click.agent_leg, call.click.customer_leg):
                if leg_id in call.legs:
                    self._send(self._engine.hangup(leg_id), "hang up a click-to-call leg")
            self._end(call, cause, self._clock())
            return
        self._hangup_agents(call)
        if call.state is CallState.ANSWERED:
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
        for task in list(self._tasks):
            task.cancel()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning("%d calls still had SIP legs after %.1fs", len(self._calls), timeout)
            return False
        return True

    # --------------------------------------------------------------------------- call control

    def _answered_call(self, call_id: str) -> LiveCall:
        call = self.get(call_id)
        if call is None:
            raise CallNotFoundError(call_id)
        if call.state is not CallState.ANSWERED:
            raise CallControlError("conflict", f"call {call_id} is not answered yet")
        return call

    @staticmethod
    def _sides(call: LiveCall) -> tuple[str, str, Extension]:
        """The customer's leg, the agent's leg and the agent's extension of an answered call."""
        if call.click is not None:
            return call.click.customer_leg, call.click.agent_leg, call.click.agent
        assert call.winner is not None
        return call.inbound_leg, call.winner.leg_id, call.winner.extension

    @staticmethod
    def _agent_side(call: LiveCall) -> ev.HangupBy.ValueType:
        """The party the agent is: the callee of a routed call, the caller of a click-to-call."""
        return ev.HANGUP_BY_CALLER if call.click is not None else ev.HANGUP_BY_CALLEE

    @staticmethod
    def _group(call: LiveCall) -> str:
        """The engine's name for the call's legs together (its first leg)."""
        return call.click.agent_leg if call.click is not None else call.inbound_leg

    async def hold(self, call_id: str) -> None:
        """Put the customer on hold (sendonly re-INVITE, audio unbridged); publishes ``held``."""
        call = self._answered_call(call_id)
        if call.consult is not None:
            raise CallControlError(
                "conflict", f"call {call_id} is in an attended transfer: complete or cancel it"
            )
        if call.held:
            raise CallControlError("conflict", f"call {call_id} is already on hold")
        customer, _, _ = self._sides(call)
        await self._command(self._engine.hold(customer))
        call.held = True
        by = self._agent_side(call)
        log.info("call %s: on hold", call_id, extra={"call_id": call_id})
        self._publish(call, lambda seq: events.held(call.header, sequence=seq, at=self._clock(), by=by))

    async def resume(self, call_id: str) -> None:
        """Take the customer back from hold; publishes ``resumed``."""
        call = self._answered_call(call_id)
        if call.consult is not None:
            raise CallControlError(
                "conflict", f"call {call_id} is in an attended transfer: complete or cancel it"
            )
        if not call.held:
            raise CallControlError("conflict", f"call {call_id} is not on hold")
        customer, _, _ = self._sides(call)
        await self._command(self._engine.resume(customer))
        call.held = False
        by = self._agent_side(call)
        log.info("call %s: resumed", call_id, extra={"call_id": call_id})
        self._publish(call, lambda seq: events.resumed(call.header, sequence=seq, at=self._clock(), by=by))

    async def send_dtmf(self, call_id: str, digits: str, method: DtmfMethod = DtmfMethod.RFC2833) -> None:
        """Send DTMF digits to the customer's side (an IVR, a conference PIN); publishes ``dtmf``."""
        if not DTMF_DIGITS.fullmatch(digits):
            raise CallControlError("invalid", "digits: 1 to 32 of 0-9, *, #, A-D", "digits")
        call = self._answered_call(call_id)
        customer, _, _ = self._sides(call)
        await self._command(self._engine.send_dtmf(customer, digits.upper(), method))
        log.info("call %s: sent DTMF %s (%s)", call_id, digits, method.value, extra={"call_id": call_id})
        to = ev.HANGUP_BY_CALLEE if call.click is not None else ev.HANGUP_BY_CALLER
        self._publish(
            call,
            lambda seq: events.dtmf(
                call.header, sequence=seq, at=self._clock(), digits=digits.upper(), method=method.value, to=to
            ),
        )

    async def transfer(self, call_id: str, extension: str, *, attended: bool = False) -> None:
        """Hand a routed, answered call over to ``extension``.

        Blind: the agent's leg is hung up at once and ``extension`` rung for the customer, who hears it
        ring; ``transferred`` is published when it answers. If it refuses or rings out, the call ends.

        Attended: the customer is put on hold (``held``) and ``extension`` rung for the agent, who talks
        to it first; :meth:`complete_transfer` (or the agent hanging up) hands the customer over
        (``resumed``, ``transferred``), :meth:`cancel_transfer` (or the extension refusing, ringing
        out or hanging up) takes the customer back (``resumed``). It needs a third SIP leg, so only a
        process that admits one call (``GATEWAY_MAX_CALLS=1``) does it.
        """
        call = self._answered_call(call_id)
        target = self._routes.extension_of(extension)
        if target is None:
            raise CallControlError(
                "invalid", f"extension {extension!r} is not in this gateway's routes", "extension"
            )
        if call.click is not None:
            raise CallControlError("conflict", "a click-to-call cannot be transferred (only routed calls)")
        if call.transfer_from is not None or call.consult is not None:
            raise CallControlError("conflict", f"call {call_id} is already being transferred")
        assert call.winner is not None
        current = call.winner
        if target.number == current.extension.number:
            raise CallControlError("invalid", f"the call is already with extension {extension}", "extension")
        if attended and len(call.legs) + 1 > self._max_legs:
            raise CallControlError(
                "conflict",
                f"an attended transfer needs a third SIP leg; this process holds {self._max_legs} per call "
                "(GATEWAY_MAX_CALLS=1 allows it); transfer blind",
            )
        if attended:
            if not call.held:
                await self.hold(call_id)
        elif call.held:
            await self.resume(call_id)
        leg = AgentLeg(self._engine.new_leg_id(), target, call.stage)
        call.agent_legs[leg.leg_id] = leg
        self._track(call, leg.leg_id)
        log.info(
            "call %s: %s transfer from %s to %s",
            call_id,
            "attended" if attended else "blind",
            current.extension.number,
            target.number,
            extra={"call_id": call_id},
        )
        if attended:
            call.consult = leg
        else:
            call.transfer_from = current
            current.state = LegState.DONE
            call.winner = leg  # the old leg's BYE no longer ends the call; the new leg's end does
            self._send(self._engine.hangup(current.leg_id), "hang up the transferring agent")
        user = quote(call.header.caller.number or "anonymous", safe=_SIP_USER_SAFE)
        display = agent_display(
            call.caller_display, f"from {current.extension.name or current.extension.number}"
        )
        self._send(
            self._engine.dial(
                leg.leg_id,
                call.inbound_leg,
                target.contact,
                f"{_quote(display)} <sip:{user}@{self.from_host}>",
                [(CALL_ID_HEADER, call.call_id)],
            ),
            f"ring extension {target.number} for a transfer",
        )
        # Who hears the new extension ring: the customer (blind), or the agent (attended).
        near = current.leg_id if attended else call.inbound_leg
        self._send(self._engine.bridge(near, leg.leg_id), "bridge the transfer's audio")
        leg.timer = asyncio.get_running_loop().call_later(
            target.ring_timeout, self._on_transfer_timeout, call.call_id, leg.leg_id
        )

    async def complete_transfer(self, call_id: str) -> None:
        """Attended transfer: hand the customer over to the extension the agent consulted."""
        call = self._consulting(call_id)
        self._complete_consult(call, self._clock())

    async def cancel_transfer(self, call_id: str) -> None:
        """Attended transfer: drop the consulted extension and take the customer back."""
        call = self._consulting(call_id)
        assert call.consult is not None
        leg = call.consult
        log.info(
            "call %s: transfer to %s cancelled", call_id, leg.extension.number, extra={"call_id": call_id}
        )
        self._send(self._engine.hangup(leg.leg_id), "hang up the consulted extension")
        self._return_to_agent(call, self._clock())

    def _consulting(self, call_id: str) -> LiveCall:
        call = self.get(call_id)
        if call is None:
            raise CallNotFoundError(call_id)
        if call.consult is None:
            raise CallControlError("conflict", f"call {call_id} has no attended transfer in progress")
        return call

    def _complete_consult(self, call: LiveCall, at: datetime) -> None:
        """The customer goes to the consulted extension; the agent's leg is hung up (if still up)."""
        target, source = call.consult, call.winner
        assert target is not None
        assert source is not None
        call.consult = None
        source.state = LegState.DONE
        call.winner = target
        if source.leg_id in call.legs:
            self._send(self._engine.hangup(source.leg_id), "hang up the transferring agent")
        self._resume_customer(call, at)
        self._send(self._engine.bridge(call.inbound_leg, target.leg_id), "bridge the customer to the target")
        if target.state is LegState.ANSWERED:
            self._transferred(call, source, target, at, attended=True)
        else:  # still ringing: published (attended) when it answers; its refusal ends the call
            call.transfer_from = source
            call.attended_transfer = True

    def _return_to_agent(self, call: LiveCall, at: datetime) -> None:
        """The consulted extension is gone: the customer is taken back by the agent."""
        leg, agent = call.consult, call.winner
        assert leg is not None
        assert agent is not None
        call.consult = None
        self._cancel_timer(leg)
        leg.state = LegState.DONE
        self._resume_customer(call, at)
        self._send(self._engine.bridge(call.inbound_leg, agent.leg_id), "bridge the customer back")

    def _resume_customer(self, call: LiveCall, at: datetime) -> None:
        if not call.held:
            return
        call.held = False
        self._send(self._engine.resume(call.inbound_leg), "take the customer off hold")
        by = self._agent_side(call)
        self._publish(call, lambda seq: events.resumed(call.header, sequence=seq, at=at, by=by))

    def _on_transfer_timeout(self, call_id: str, leg_id: str) -> None:
        call = self._calls.get(call_id)
        if call is None or call.ended:
            return
        if call.consult is not None and call.consult.leg_id == leg_id and call.consult.ringing:
            call.consult.timer = None
            log.info("call %s: the consulted extension did not answer", call_id, extra={"call_id": call_id})
            self._send(self._engine.hangup(leg_id), "cancel the consultation")  # its end returns the call
            return
        if call.winner is None or call.winner.leg_id != leg_id or call.winner.state is LegState.ANSWERED:
            return
        call.winner.timer = None
        log.info("call %s: the transfer was not answered", call_id, extra={"call_id": call_id})
        self._send(self._engine.hangup(leg_id), "cancel the transfer")
        self._send(self._engine.hangup(call.inbound_leg), "hang up the caller leg")
        self._end(call, EndCause.RING_TIMEOUT, self._clock())

    def _transfer_fact(self, call: LiveCall, fact: LegProgress | LegAnswered | LegEnded) -> bool:
        """Facts of a transfer's legs; True when handled here (not by the ringing logic)."""
        consult = call.consult
        if consult is not None and fact.leg_id == consult.leg_id:
            if isinstance(fact, LegProgress):
                consult.sip_call_id = fact.sip_call_id
                if consult.state is LegState.DIALLING and fact.status > 100:
                    consult.state = LegState.RINGING
            elif isinstance(fact, LegAnswered):
                self._cancel_timer(consult)
                consult.sip_call_id = fact.sip_call_id or consult.sip_call_id
                consult.state = LegState.ANSWERED
            else:
                log.info(
                    "call %s: extension %s left the consultation (%d)",
                    call.call_id,
                    consult.extension.number,
                    fact.status,
                    extra={"call_id": call.call_id},
                )
                self._return_to_agent(call, fact.at)
            return True
        winner = call.winner
        if consult is not None and isinstance(fact, LegEnded) and winner and fact.leg_id == winner.leg_id:
            self._complete_consult(call, fact.at)  # the agent hung up while consulting: hand over
            return True
        source = call.transfer_from
        if source is None or call.winner is None or fact.leg_id != call.winner.leg_id:
            return False
        leg = call.winner
        if isinstance(fact, LegProgress):
            leg.sip_call_id = fact.sip_call_id
            if leg.state is LegState.DIALLING and fact.status > 100:
                leg.state = LegState.RINGING  # the caller hears it ring; no event
            return True
        if isinstance(fact, LegAnswered) and leg.ringing:
            self._cancel_timer(leg)
            leg.state = LegState.ANSWERED
            leg.sip_call_id = fact.sip_call_id or leg.sip_call_id
            call.transfer_from = None
            self._transferred(call, source, leg, fact.at, attended=call.attended_transfer)
            return True
        return False  # its end ends the call (the winner's)

    def _transferred(
        self, call: LiveCall, source: AgentLeg, leg: AgentLeg, at: datetime, *, attended: bool
    ) -> None:
        ext = leg.extension
        call.attended_transfer = False
        call.header = dataclasses.replace(
            call.header,
            extension=ext.number,
            employee_id=ext.employee_id,
            callee=dataclasses.replace(
                call.header.callee,
                extension=ext.number,
                display_name=ext.name or call.header.callee.display_name,
            ),
        )
        log.info("call %s: transferred to %s", call.call_id, ext.number, extra={"call_id": call.call_id})
        self._publish(
            call,
            lambda seq: events.transferred(
                call.header,
                sequence=seq,
                at=at,
                from_extension=source.extension.number,
                from_employee_id=source.extension.employee_id,
                to_extension=ext.number,
                to_employee_id=ext.employee_id,
                leg_id=leg.sip_call_id,
                attended=attended,
            ),
        )
        if call.route is not None and ext.record and call.recording is None:
            self._start_recording(call)

    async def record(self, call_id: str, action: str) -> Recording:
        """``start``, ``stop``, ``pause`` or ``resume`` the call's recording (both sides, one WAV file)."""
        call = self.get(call_id)
        if call is None:
            raise CallNotFoundError(call_id)
        if action == "start":
            if call.state is not CallState.ANSWERED:
                raise CallControlError("conflict", f"call {call_id} is not answered yet")
            if call.recording is not None:
                raise CallControlError("conflict", f"call {call_id} is already being recorded")
            started = Recording(str(uuid.uuid4()), call_id)
            call.recording = started
            self._recordings.append(started)
            try:
                started.path = await self._command(self._engine.record_start(self._group(call), call_id))
            except CallControlError:
                call.recording = None
                self._recordings.remove(started)
                raise
            return started
        if action not in ("stop", "pause", "resume"):
            raise CallControlError("invalid", "action: start, stop, pause or resume", "action")
        recording = call.recording
        if recording is None:
            raise CallControlError("conflict", f"call {call_id} is not being recorded")
        group = self._group(call)
        if action == "stop":
            call.recording = None
            recording.state = RecordingState.STOPPED
            await self._command(self._engine.record_stop(group))
        elif action == "pause":
            await self._command(self._engine.record_pause(group))
            recording.state = RecordingState.PAUSED
        else:
            await self._command(self._engine.record_resume(group))
            recording.state = RecordingState.RECORDING
        return recording

    def _start_recording(self, call: LiveCall) -> None:
        """Record an answered call whose route says so (fire and forget: a failure is logged)."""
        recording = Recording(str(uuid.uuid4()), call.call_id)
        call.recording = recording
        self._recordings.append(recording)

        def started(f: concurrent.futures.Future[str]) -> None:
            if not f.cancelled() and f.exception() is None:
                recording.path = f.result()

        future = self._engine.record_start(self._group(call), call.call_id)
        future.add_done_callback(started)
        self._send(future, "start recording")

    def _on_recording_done(self, fact: RecordingDone) -> None:
        recording = next((r for r in self._recordings if r.path == fact.path), None) or next(
            (r for r in self._recordings if r.call_id == fact.name), None
        )
        if recording is not None:
            self._recordings.remove(recording)
        recording_id = recording.recording_id if recording is not None else str(uuid.uuid4())
        call = self._calls.get(fact.name)
        if call is not None and call.recording is recording:
            call.recording = None
        ready = events.recording_ready(
            call_id=fact.name,
            recording_id=recording_id,
            at=fact.ended_at,
            # Relative to the recordings directory the calls service shares (mounted where it likes).
            location=PurePath(fact.path).name,
            size_bytes=fact.size_bytes,
            duration_ms=fact.duration_ms,
            started_at=fact.started_at,
        )
        if self.recording_sink is None:
            log.warning("call %s: recording %s complete, but no sink publishes it", fact.name, fact.path)
            return
        self.recording_sink(ready)

    def _on_leg_hold(self, fact: LegHold) -> None:
        call = self._by_leg.get(fact.leg_id)
        if call is None or call.ended or call.state is not CallState.ANSWERED:
            return
        customer, agent, _ = self._sides(call)
        if fact.leg_id == customer:
            by = ev.HANGUP_BY_CALLEE if call.click is not None else ev.HANGUP_BY_CALLER
        elif fact.leg_id == agent:
            by = self._agent_side(call)
        else:
            return
        log.info(
            "call %s: %s by the phone",
            call.call_id,
            "held" if fact.held else "resumed",
            extra={"call_id": call.call_id},
        )
        build = events.held if fact.held else events.resumed
        self._publish(call, lambda seq: build(call.header, sequence=seq, at=fact.at, by=by))

    @staticmethod
    async def _command(future: concurrent.futures.Future[T]) -> T:
        """Await an engine command; its SipEngineError becomes a conflict (the leg cannot do it now)."""
        try:
            return await asyncio.wrap_future(future)
        except GatewayError as exc:
            raise CallControlError("conflict", str(exc)) from None

    # --------------------------------------------------------------------------- facts

    def on_fact(self, fact: AnyFact) -> None:
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
            elif isinstance(fact, LegHold):
                self._on_leg_hold(fact)
            elif isinstance(fact, RecordingDone):
                self._on_recording_done(fact)
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
        callee_name = ""
        if route is not None:
            callee_name = extension.name if extension is not None else route.stages[0].display_name
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
                display_name=callee_name,
                extension=extension.number if extension else "",
            ),
            line=fact.request_user,
            extension=extension.number if extension else "",
            employee_id=extension.employee_id if extension else "",
            sip_call_id=fact.sip_call_id,
            source=self._source,
            request_uri=fact.request_uri,
        )
        call = LiveCall(
            header=header,
            inbound_leg=fact.leg_id,
            started_at=fact.at,
            route=route,
            caller_display=header.caller.display_name,
        )
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
        if route is None:
            log.info(
                "call %s: no line or extension %r: 404",
                call.call_id,
                fact.request_user,
                extra={"call_id": call.call_id},
            )
            self._send(self._engine.hangup(fact.leg_id, 404, "Not Found"), "refuse unknown number")
            self._end(call, EndCause.NO_ROUTE, fact.at)
            return
        number = header.caller.e164 or fact.from_user
        if self._lookup is None or caller_ext is not None or not any(c.isdigit() for c in number):
            self._start_stage(call, 0)
            return
        call.card = self._lookup.cached(number)
        if call.card is not None:
            self._start_stage(call, 0)
            return
        task = asyncio.create_task(self._lookup_then_ring(call, number), name=f"caller-name-{call.call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _lookup_then_ring(self, call: LiveCall, number: str) -> None:
        """Ask crm who is calling for at most ``lookup_budget`` seconds, then ring with what is known."""
        assert self._lookup is not None
        lookup = asyncio.ensure_future(self._lookup.lookup(number))

        def learnt(done: asyncio.Future[CallerInfo | None]) -> None:
            if not done.cancelled() and done.exception() is None and done.result() is not None:
                call.card = done.result()  # later legs (the next member, the overflow) show the name

        lookup.add_done_callback(learnt)
        await asyncio.wait({lookup}, timeout=self._lookup_budget)
        if not lookup.done():
            log.info(
                "call %s: crm did not name the caller within %.0f ms; ringing without the name",
                call.call_id,
                self._lookup_budget * 1000,
                extra={"call_id": call.call_id},
            )
        if not call.ended and call.stage < 0:
            self._start_stage(call, 0)

    def _on_progress(self, fact: LegProgress) -> None:
        call = self._by_leg.get(fact.leg_id)
        if call is not None and call.click is not None:
            self._click_progress(call, call.click, fact)
            return
        leg = call.agent_legs.get(fact.leg_id) if call is not None else None
        if call is None or leg is None or call.ended or self._transfer_fact(call, fact):
            return
        leg.sip_call_id = fact.sip_call_id
        if leg.state is not LegState.DIALLING or fact.status <= 100:
            return

        leg.state = LegState.RINGING
        if not call.caller_ringing:
            call.caller_ringing = True
            call.state = CallState.RINGING
            self._send(self._engine.answer(call.inbound_leg, 180), "send 180 to the caller")
        self._publish(
            call,
            lambda seq: events.ringing(
                call.header,
                sequence=seq,
                at=fact.at,
                extension=leg.extension.number,
                leg_id=fact.sip_call_id,
                employee_id=leg.extension.employee_id,
            ),
        )

    def _on_answered(self, fact: LegAnswered) -> None:
        call = self._by_leg.get(fact.leg_id)
        if call is not None and call.click is not None:
            self._click_answered(call, call.click, fact)
            return
        leg = call.agent_legs.get(fact.leg_id) if call is not None else None
        if call is None or leg is None:
            return
        leg.sip_call_id = fact.sip_call_id or leg.sip_call_id
        if not call.ended and self._transfer_fact(call, fact):
            return
        if call.ended or not leg.ringing or call.winner is not None:
            # Too late: the call ended, the leg was given up, or another leg answered first.
            self._send(self._engine.hangup(fact.leg_id), "hang up a late answer")
            if not call.ended and leg.ringing:
                self._leg_done(call, leg, LegEnd.LOST, fact.at)
            return
        self._cancel_timer(leg)
        leg.state = LegState.ANSWERED
        ext = leg.extension
        call.winner = leg
        call.state = CallState.ANSWERED
        call.answered_at = fact.at
        call.answered_extension = ext.number
        call.pending.clear()
        self._cancel_stage_timer(call)
        # Every later event says who took the call.
        call.header = dataclasses.replace(
            call.header,
            extension=ext.number,
            employee_id=ext.employee_id or call.header.employee_id,
            callee=dataclasses.replace(
                call.header.callee,
                extension=ext.number,
                display_name=ext.name or call.header.callee.display_name,
            ),
        )
        self._send(self._engine.answer(call.inbound_leg, 200), "answer the caller")
        self._send(self._engine.bridge(call.inbound_leg, fact.leg_id), "bridge audio")
        log.info("call %s: answered by %s", call.call_id, ext.number, extra={"call_id": call.call_id})
        line = call.route.line if call.route is not None else None
        if ext.record or (line is not None and line.record):
            self._start_recording(call)
        self._publish(
            call,
            lambda seq: events.answered(
                call.header,
                sequence=seq,
                at=fact.at,
                extension=ext.number,
                leg_id=leg.sip_call_id,
                started_at=call.started_at,
                employee_id=ext.employee_id,
            ),
        )
        for other in list(call.agent_legs.values()):
            if other is not leg and other.ringing:
                self._send(self._engine.hangup(other.leg_id), "cancel a losing leg")
                self._leg_done(call, other, LegEnd.LOST, fact.at)

    def _on_leg_ended(self, fact: LegEnded) -> None:
        call = self._by_leg.pop(fact.leg_id, None)
        if call is None:
            return
        call.legs.discard(fact.leg_id)
        if call.click is not None:
            if not call.ended:
                self._click_leg_ended(call, call.click, fact)
            if call.ended and not call.legs:
                self._forget(call)
            return
        leg = call.agent_legs.get(fact.leg_id)
        if leg is not None:
            self._cancel_timer(leg)
            if not leg.sip_call_id:
                leg.sip_call_id = fact.sip_call_id
        if not call.ended and fact.leg_id != call.inbound_leg and self._transfer_fact(call, fact):
            return  # the call goes on (with the agent, or with the extension it went to)
        if not call.ended:
            if fact.leg_id == call.inbound_leg:
                answered = call.state is CallState.ANSWERED
                cause = EndCause.CALLER_HANGUP if answered or fact.status == 487 else EndCause.CALLER_FAILED
                self._hangup_agents(call)
                self._end(call, cause, fact.at, fact.status, fact.reason)
            elif leg is not None and leg is call.winner:
                self._send(self._engine.hangup(call.inbound_leg), "hang up the caller leg")
                self._end(call, EndCause.CALLEE_HANGUP, fact.at, fact.status, fact.reason)
            elif leg is not None and leg.ringing:
                log.info(
                    "call %s: extension %s refused (%d %s)",
                    call.call_id,
                    leg.extension.number,
                    fact.status,
                    fact.reason,
                    extra={"call_id": call.call_id},
                )
                call.refusals.append((fact.status, fact.reason))
                self._leg_done(call, leg, LegEnd.REFUSED, fact.at, fact.status)
            if not call.ended and call.winner is None:
                self._advance(call, fact.at)  # a slot is free, or a member refused
        if call.ended and not call.legs:
            self._forget(call)

    # --------------------------------------------------------------------------- stages

    def _start_stage(self, call: LiveCall, index: int) -> None:
        assert call.route is not None
        stage = call.route.stages[index]
        call.stage = index
        call.pending = deque(stage.members)
        self._cancel_stage_timer(call)
        loop = asyncio.get_running_loop()
        call.stage_timer = loop.call_later(stage.timeout, self._on_stage_timeout, call.call_id, index)
        log.info(
            "call %s: ringing %s (%s, %s)",
            call.call_id,
            stage.target,
            stage.strategy.value,
            ", ".join(m.number for m in stage.members),
            extra={"call_id": call.call_id},
        )
        self._dial_pending(call)

    def _dial_pending(self, call: LiveCall) -> None:
        """Dial the stage's next members while the strategy and the call's legs allow."""
        stage = call.current_stage
        if stage is None:
            return
        while call.pending and len(call.legs) < self._max_legs:
            if stage.strategy is Strategy.SEQUENTIAL and any(
                leg.ringing for leg in call.agent_legs.values() if leg.stage == call.stage
            ):
                return
            self._dial(call, stage, call.pending.popleft())

    def _dial(self, call: LiveCall, stage: Stage, extension: Extension) -> None:
        leg = AgentLeg(self._engine.new_leg_id(), extension, call.stage)
        call.agent_legs[leg.leg_id] = leg
        self._track(call, leg.leg_id)
        who = (call.card.name or call.card.company) if call.card is not None else ""
        line_name = call.route.line.name if call.route is not None and call.route.line is not None else ""
        display = agent_display(who or call.caller_display, line_name)
        user = quote(call.header.caller.number or "anonymous", safe=_SIP_USER_SAFE)
        from_uri = (
            f"{_quote(display)} <sip:{user}@{self.from_host}>"
            if display
            else f"<sip:{user}@{self.from_host}>"
        )
        self._send(
            self._engine.dial(
                leg.leg_id, call.inbound_leg, extension.contact, from_uri, [(CALL_ID_HEADER, call.call_id)]
            ),
            f"ring extension {extension.number}",
        )
        if stage.strategy is Strategy.SEQUENTIAL and len(stage.members) > 1:
            leg.timer = asyncio.get_running_loop().call_later(
                stage.member_timeout, self._on_member_timeout, call.call_id, leg.leg_id
            )

    def _advance(self, call: LiveCall, at: datetime) -> None:
        """After a leg of an unanswered call ended: ring the next member, or move past the stage."""
        self._dial_pending(call)
        if call.pending or any(leg.ringing for leg in call.agent_legs.values()):
            return
        self._next_stage(call, at)

    def _next_stage(self, call: LiveCall, at: datetime) -> None:
        assert call.route is not None
        if call.stage + 1 < len(call.route.stages):
            self._start_stage(call, call.stage + 1)
            return
        self._cancel_stage_timer(call)
        if call.rang_out or not call.refusals:
            log.info("call %s: nobody answered", call.call_id, extra={"call_id": call.call_id})
            self._send(self._engine.hangup(call.inbound_leg, 480), "tell the caller")
            self._end(call, EndCause.RING_TIMEOUT, at)
            return
        status = events.final_refusal([s for s, _ in call.refusals])
        reason = next(r for s, r in reversed(call.refusals) if s == status)
        self._send(
            self._engine.hangup(call.inbound_leg, events.caller_status_for_callee_failure(status)),
            "relay the refusal",
        )
        self._end(call, EndCause.CALLEE_HANGUP, at, status, reason)

    def _on_stage_timeout(self, call_id: str, index: int) -> None:
        call = self._calls.get(call_id)
        if call is None or call.ended or call.winner is not None or call.stage != index:
            return
        call.stage_timer = None
        stage = call.current_stage
        log.info(
            "call %s: %s not answered within %.0fs",
            call_id,
            stage.target if stage else "?",
            stage.timeout if stage else 0,
            extra={"call_id": call_id},
        )
        call.rang_out = True
        call.pending.clear()
        now = self._clock()
        for leg in list(call.agent_legs.values()):
            if leg.ringing:
                self._send(self._engine.hangup(leg.leg_id), "cancel a leg that rang out")
                self._leg_done(call, leg, LegEnd.NO_ANSWER, now)
        self._next_stage(call, now)

    def _on_member_timeout(self, call_id: str, leg_id: str) -> None:
        call = self._calls.get(call_id)
        leg = call.agent_legs.get(leg_id) if call is not None else None
        if call is None or leg is None or call.ended or call.winner is not None or not leg.ringing:
            return
        leg.timer = None
        log.info(
            "call %s: extension %s did not answer; next member",
            call_id,
            leg.extension.number,
            extra={"call_id": call_id},
        )
        call.rang_out = True
        now = self._clock()
        self._send(self._engine.hangup(leg_id), "cancel a member that rang out")
        self._leg_done(call, leg, LegEnd.NO_ANSWER, now)
        self._advance(call, now)

    def _leg_done(self, call: LiveCall, leg: AgentLeg, why: LegEnd, at: datetime, status: int = 0) -> None:
        """A leg lost, rang out or refused: publish its end when the call has other legs or goes on."""
        self._cancel_timer(leg)
        leg.state = LegState.DONE
        goes_on = (
            why is LegEnd.LOST
            or bool(call.pending)
            or any(other.ringing for other in call.agent_legs.values())
        )
        if call.route is not None and call.stage + 1 < len(call.route.stages):
            goes_on = True
        if not goes_on and len(call.agent_legs) == 1:
            return  # a call with one leg says everything in its ended event
        self._publish(
            call,
            lambda seq: events.leg_ended(
                call.header,
                sequence=seq,
                at=at,
                extension=leg.extension.number,
                leg_id=leg.sip_call_id,
                employee_id=leg.extension.employee_id,
                why=why,
                sip_status=status,
            ),
        )

    # --------------------------------------------------------------------------- click-to-call

    async def dial(
        self,
        call_id: str,
        extension: str,
        number: str,
        *,
        e164: str = "",
        context: Mapping[str, str] | None = None,
        caller_id: str = "",
    ) -> None:
        """Click-to-call: ring ``extension``'s phone, then ``number``; returns once the agent's leg is
        placed (the rest is reported as events of ``call_id``). Raises :class:`DialRefused`."""
        if self._draining:
            raise DialRefused("busy", "the gateway is shutting down; try again")
        agent = self._routes.extension_of(extension)
        if agent is None:
            raise DialRefused(
                "invalid", f"extension {extension} is not in this gateway's routes", "extension"
            )
        internal = self._routes.extension_of(number)
        if internal is not None:
            target = internal.contact
        elif self._trunk:
            target = contact_at(self._trunk, quote(e164 or number.replace(" ", ""), safe=_SIP_USER_SAFE))
        else:
            raise DialRefused(
                "unavailable", "no trunk to call external numbers through (GATEWAY_TRUNK_URI is not set)"
            )
        if len(self._calls) >= self._max_calls:
            raise DialRefused("busy", f"all {self._max_calls} calls of this gateway process are in use")
        user = quote(caller_id or agent.number, safe=_SIP_USER_SAFE)
        display = "" if internal is None else agent.name
        header = CallHeader(
            call_id=call_id,
            direction=ev.DIRECTION_INTERNAL if internal is not None else ev.DIRECTION_OUTBOUND,
            caller=events.party(agent.number, self._region, display_name=agent.name, extension=agent.number),
            callee=events.party(
                number,
                self._region,
                display_name=internal.name if internal is not None else "",
                extension=internal.number if internal is not None else "",
            ),
            line=caller_id,
            extension=agent.number,
            employee_id=agent.employee_id,
            sip_call_id="",
            source=self._source,
            request_uri=target,
            context=dict(context or {}),
        )
        from_customer = (
            f"{_quote(display_name(display))} <sip:{user}@{self.from_host}>"
            if display
            else f"<sip:{user}@{self.from_host}>"
        )
        if internal is None and self._trunk_domain:
            # Through a registered trunk: the provider expects its own domain (or the account's AOR).
            from_customer = (
                f"<sip:{quote(caller_id, safe=_SIP_USER_SAFE)}@{self._trunk_domain}>" if caller_id else ""
            )
        click = ClickToCall(
            agent=agent,
            agent_leg=self._engine.new_leg_id(),
            number=number,
            target_uri=target,
            from_uri=from_customer,
        )
        call = LiveCall(header=header, inbound_leg="", started_at=self._clock(), route=None, click=click)
        self._track(call, click.agent_leg)
        log.info(
            "call %s: click-to-call from %s to %s",
            call_id,
            agent.number,
            number,
            extra={"call_id": call_id},
        )
        self._publish(call, lambda seq: events.offered(header, sequence=seq, at=call.started_at))
        who = internal.name if internal is not None else ""
        if internal is None and self._lookup is not None and any(c.isdigit() for c in number):
            card = await self._name_of(e164 or number)
            who = (card.name or card.company) if card is not None else ""
        if call.ended:  # hung up over the API (or drained) while crm was asked: the leg never existed
            self._by_leg.pop(click.agent_leg, None)
            call.legs.discard(click.agent_leg)
            if not call.legs:
                self._forget(call)
            return
        shown = display_name(f"Call {who or number}")
        from_agent = f"{_quote(shown)} <sip:{quote(number, safe=_SIP_USER_SAFE)}@{self.from_host}>"
        try:
            sip_call_id = await asyncio.wrap_future(
                self._engine.originate(
                    click.agent_leg, agent.contact, from_agent, [(CALL_ID_HEADER, call_id)]
                )
            )
        except Exception as exc:
            # Not admitted after all (an INVITE took the last call, or the gateway began to drain).
            self._by_leg.pop(click.agent_leg, None)
            call.legs.discard(click.agent_leg)
            if not call.ended:
                self._end(call, EndCause.SHUTDOWN, self._clock())
            raise DialRefused("busy", f"the agent's phone cannot be rung now: {exc}") from exc
        if sip_call_id and not call.header.sip_call_id:
            call.header = dataclasses.replace(call.header, sip_call_id=sip_call_id)
        if not call.ended and not click.agent_answered and click.agent_leg in call.legs:
            click.timer = asyncio.get_running_loop().call_later(
                agent.ring_timeout, self._on_click_timeout, call_id
            )

    async def _name_of(self, number: str) -> CallerInfo | None:
        """The contact behind ``number``: cached, else whatever crm answers within the budget."""
        assert self._lookup is not None
        card = self._lookup.cached(number)
        if card is not None:
            return card
        lookup = asyncio.ensure_future(self._lookup.lookup(number))
        await asyncio.wait({lookup}, timeout=self._lookup_budget)
        if lookup.done() and not lookup.cancelled() and lookup.exception() is None:
            return lookup.result()
        return None

    def _click_progress(self, call: LiveCall, click: ClickToCall, fact: LegProgress) -> None:
        if call.ended:
            return
        if fact.leg_id == click.agent_leg:
            if fact.sip_call_id and not call.header.sip_call_id:
                call.header = dataclasses.replace(call.header, sip_call_id=fact.sip_call_id)
            return
        if fact.leg_id != click.customer_leg or click.customer_ringing or fact.status <= 100:
            return
        click.customer_ringing = True
        call.state = CallState.RINGING
        self._publish(
            call,
            lambda seq: events.ringing(
                call.header,
                sequence=seq,
                at=fact.at,
                extension=click.agent.number,
                leg_id=fact.sip_call_id,
                employee_id=click.agent.employee_id,
            ),
        )

    def _click_answered(self, call: LiveCall, click: ClickToCall, fact: LegAnswered) -> None:
        if call.ended:
            self._send(self._engine.hangup(fact.leg_id), "hang up a late answer")
            return
        if fact.leg_id == click.agent_leg and not click.agent_answered:
            click.agent_answered = True
            if fact.sip_call_id and not call.header.sip_call_id:
                call.header = dataclasses.replace(call.header, sip_call_id=fact.sip_call_id)
            self._cancel_click_timer(click)
            click.customer_leg = self._engine.new_leg_id()
            self._track(call, click.customer_leg)
            log.info(
                "call %s: agent %s answered; calling %s",
                call.call_id,
                click.agent.number,
                click.number,
                extra={"call_id": call.call_id},
            )
            self._send(
                self._engine.dial(
                    click.customer_leg,
                    click.agent_leg,
                    click.target_uri,
                    click.from_uri,
                    [(CALL_ID_HEADER, call.call_id)],
                ),
                "call the customer",
            )
            # Early media too: the agent hears the customer's ringback (or the network's announcement).
            self._send(self._engine.bridge(click.agent_leg, click.customer_leg), "bridge audio")
            click.timer = asyncio.get_running_loop().call_later(
                self._dial_timeout, self._on_click_timeout, call.call_id
            )
        elif fact.leg_id == click.customer_leg and call.state is not CallState.ANSWERED:
            self._cancel_click_timer(click)
            call.state = CallState.ANSWERED
            call.answered_at = fact.at
            call.answered_extension = click.agent.number
            log.info("call %s: %s answered", call.call_id, click.number, extra={"call_id": call.call_id})
            if click.agent.record:
                self._start_recording(call)
            self._publish(
                call,
                lambda seq: events.answered(
                    call.header,
                    sequence=seq,
                    at=fact.at,
                    extension=click.agent.number,
                    leg_id=fact.sip_call_id,
                    started_at=call.started_at,
                    employee_id=click.agent.employee_id,
                ),
            )

    def _click_leg_ended(self, call: LiveCall, click: ClickToCall, fact: LegEnded) -> None:
        answered = call.state is CallState.ANSWERED
        if fact.leg_id == click.agent_leg:
            if click.customer_leg in call.legs:
                self._send(self._engine.hangup(click.customer_leg), "hang up the customer's leg")
            if click.agent_answered:  # the agent hung up: before the customer answered, a cancel
                cause = EndCause.CALLER_HANGUP if answered or fact.connected else EndCause.CALLER_FAILED
                self._end(call, cause, fact.at, fact.status, fact.reason)
                return
            self._agent_leg_ended(call, click, LegEnd.REFUSED, fact.at, fact.status)
            self._end(call, EndCause.AGENT_FAILED, fact.at, fact.status, fact.reason)
        elif fact.leg_id == click.customer_leg:
            if click.agent_leg in call.legs:
                self._send(self._engine.hangup(click.agent_leg), "hang up the agent's leg")
            self._end(call, EndCause.CALLEE_HANGUP, fact.at, fact.status, fact.reason)

    def _on_click_timeout(self, call_id: str) -> None:
        call = self._calls.get(call_id)
        if call is None or call.ended or call.click is None or call.state is CallState.ANSWERED:
            return
        click = call.click
        click.timer = None
        now = self._clock()
        for leg_id in (click.agent_leg, click.customer_leg):
            if leg_id in call.legs:
                self._send(self._engine.hangup(leg_id), "cancel an unanswered leg")
        if not click.agent_answered:
            log.info("call %s: the agent did not answer", call_id, extra={"call_id": call_id})
            self._agent_leg_ended(call, click, LegEnd.NO_ANSWER, now)
        else:
            log.info("call %s: %s did not answer", call_id, click.number, extra={"call_id": call_id})
        self._end(call, EndCause.RING_TIMEOUT, now)

    def _agent_leg_ended(
        self, call: LiveCall, click: ClickToCall, why: LegEnd, at: datetime, status: int = 0
    ) -> None:
        """The agent's own phone did not take a click-to-call: a leg_ended says it was that side."""
        self._publish(
            call,
            lambda seq: events.leg_ended(
                call.header,
                sequence=seq,
                at=at,
                extension=click.agent.number,
                leg_id=call.header.sip_call_id,
                employee_id=click.agent.employee_id,
                why=why,
                sip_status=status,
            ),
        )

    @staticmethod
    def _cancel_click_timer(click: ClickToCall) -> None:
        if click.timer is not None:
            click.timer.cancel()
            click.timer = None

    # --------------------------------------------------------------------------- helpers

    def _hangup_agents(self, call: LiveCall) -> None:
        """Hang up (CANCEL or BYE) every agent leg still up that was not given up already."""
        for leg in call.agent_legs.values():
            if leg.leg_id in call.legs and leg.state is not LegState.DONE:
                self._send(self._engine.hangup(leg.leg_id), "hang up an agent leg")

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
        self._cancel_stage_timer(call)
        for leg in call.agent_legs.values():
            self._cancel_timer(leg)
        if call.click is not None:
            self._cancel_click_timer(call.click)
        call.pending.clear()
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

    @staticmethod
    def _cancel_timer(leg: AgentLeg) -> None:
        if leg.timer is not None:
            leg.timer.cancel()
            leg.timer = None

    @staticmethod
    def _cancel_stage_timer(call: LiveCall) -> None:
        if call.stage_timer is not None:
            call.stage_timer.cancel()
            call.stage_timer = None

    def _retry_after_header(self) -> list[Header]:
        return [("Retry-After", str(self._retry_after))]

    @staticmethod
    def _send(future: concurrent.futures.Future[Any], what: str) -> None:
        """Fire and forget an engine command; a failure is only logged (its facts tell the rest)."""

        def done(f: concurrent.futures.Future[Any]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.warning("could not %s: %s", what, f.exception())

        future.add_done_callback(done)
