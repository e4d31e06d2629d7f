"""The gateway as one unit: the SIP engine, the call logic and the event publisher, started and
stopped in the right order. ``main`` builds it; tests build it with their own settings and publisher."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from telecrm_common.errors import NotReadyError
from telecrm_gateway.calls import CallerLookup, CallManager, DialRefused, LiveCall
from telecrm_gateway.dialing import DialBusy, DialCommand, DialFailed, DialNotAvailable, InvalidDial
from telecrm_gateway.errors import SipEngineError
from telecrm_gateway.events import EndCause
from telecrm_gateway.publisher import EventPublisher, PublishFn
from telecrm_gateway.routing import RoutingTable
from telecrm_gateway.settings import GatewaySettings
from telecrm_gateway.sip.engine import SipEngine, legs_per_call

log = logging.getLogger(__name__)

ENGINE_WATCH_INTERVAL = 1.0


class GatewayService:
    """Start with :meth:`start`, stop with :meth:`stop` (or hand :meth:`run` to the ServiceRunner)."""

    def __init__(
        self,
        settings: GatewaySettings,
        routes: RoutingTable,
        publish: PublishFn,
        lookup: CallerLookup | None = None,
    ) -> None:
        """``lookup`` names callers on the agents' phones (crm); RoutingConfigError when a ring group
        needs more SIP legs than a call may hold with ``settings.max_calls``."""
        max_legs = legs_per_call(settings.max_calls)
        routes.check_capacity(max_legs)
        self.settings = settings
        self.routes = routes
        self.engine = SipEngine(settings.engine_config())
        self.publisher = EventPublisher(publish, max_buffer=settings.event_buffer)
        self.calls = CallManager(
            self.engine,
            routes,
            self.publisher,
            source=f"sip-gateway/{settings.instance_id}",
            from_host=settings.sip_public_address or settings.sip_host,  # the engine's, once started
            region=settings.default_region,
            retry_after=settings.retry_after,
            max_legs=max_legs,
            lookup=lookup,
            lookup_budget=settings.caller_name_wait,
            max_calls=settings.max_calls,
            trunk=settings.trunk_uri,
            trunk_domain=trunk.aor.rpartition("@")[2] if (trunk := settings.trunk_config()) else "",
            dial_timeout=settings.dial_timeout,
        )
        # Finished recordings go out in order with the call's events (after its ``ended`` when the
        # recording lasted to the end of the call).
        self.calls.recording_sink = self.publisher.emit
        self._publisher_task: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def sip_port(self) -> int:
        return self.engine.port

    async def start(self) -> None:
        """Start publishing and the SIP endpoint; raises SipEngineError when SIP cannot listen."""
        self._publisher_task = asyncio.create_task(self.publisher.run(), name="call-event-publisher")
        loop = asyncio.get_running_loop()
        try:
            await asyncio.to_thread(self.engine.start, loop, self.calls.on_fact)
        except BaseException:
            self._publisher_task.cancel()
            raise
        self.calls.from_host = self.settings.sip_public_address or self.engine.public_host
        log.info(
            "SIP gateway taking calls on %s:%d: %d extensions, %d groups, %d queues, %d lines",
            self.settings.sip_host,
            self.engine.port,
            len(self.routes.extensions),
            len(self.routes.groups),
            len(self.routes.queues),
            len(self.routes.lines),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """A ServiceRunner background task: serve until ``stop``, then shut down gracefully.

        Raises SipEngineError (which stops the service) when the SIP thread dies on its own.
        """
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), ENGINE_WATCH_INTERVAL)
            if not stop.is_set() and not self.engine.running:
                await self.stop(timeout=1.0)
                raise SipEngineError("the SIP endpoint stopped unexpectedly")
        await self.stop()

    async def stop(self, timeout: float | None = None) -> None:
        """Refuse new calls (503), hang up live calls (their ended events published), flush the events,
        then stop the SIP endpoint. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        budget = timeout if timeout is not None else max(self.settings.shutdown_grace - 1.0, 1.0)
        live = len(self.calls.active_calls())
        log.info("stopping: refusing new calls, hanging up %d live calls", live)
        if self.engine.running:
            await self.calls.drain(budget * 0.4)
        await self.publisher.flush(budget * 0.5)
        self.publisher.close()
        if self._publisher_task is not None:
            self._publisher_task.cancel()
            await asyncio.gather(self._publisher_task, return_exceptions=True)
        await asyncio.to_thread(self.engine.stop, 2.0)

    # --- what the APIs use

    def active_calls(self) -> list[LiveCall]:
        return self.calls.active_calls()

    async def dial(self, command: DialCommand) -> None:
        """Click-to-call over SIP (the ``sip_dialer`` of :class:`telecrm_gateway.dialing.DialService`):
        the agent's phone rings now; raises InvalidDial, DialNotAvailable or DialFailed."""
        try:
            await self.calls.dial(
                command.call_id,
                command.extension,
                command.number,
                e164=command.e164,
                context=command.context,
                caller_id=command.caller_id,
            )
        except DialRefused as exc:
            if exc.kind == "invalid":
                raise InvalidDial(exc.field, exc.message) from None
            if exc.kind == "unavailable":
                raise DialNotAvailable(exc.message) from None
            if exc.kind == "busy":
                raise DialBusy(exc.message) from None
            raise DialFailed(exc.message) from None

    def hangup(self, call_id: str) -> None:
        """End a live call (hangup_by SYSTEM); CallNotFoundError when there is none with this id."""
        self.calls.hangup(call_id, EndCause.SYSTEM_HANGUP)

    async def check_sip(self) -> None:
        """Health: the SIP endpoint's thread is alive and it still takes calls."""
        if not self.engine.running:
            raise NotReadyError("the SIP endpoint is not running")
        if self.calls.draining:
            raise NotReadyError("the SIP gateway is shutting down")
