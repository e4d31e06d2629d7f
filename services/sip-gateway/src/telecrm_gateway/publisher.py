"""Publishes call events (and recordings ready) to NATS in the order they were made, buffering while
NATS is away.

``emit`` never blocks the call logic: it appends to a bounded in-memory buffer. One task publishes the
buffer head first, and only removes an event once JetStream acknowledged it, so events are neither
reordered nor lost while NATS restarts (a retried publish keeps its ``Nats-Msg-Id``, so the stream
stores it once). When the buffer is full, new events are dropped with an error log.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from opentelemetry import trace

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common import telemetry
from telecrm_common.bus import Bus
from telecrm_common.events import RECORDING_READY_SUBJECT, call_event_subject

log = logging.getLogger(__name__)

GatewayEvent = ev.CallEvent | ev.RecordingReady
"""What the gateway publishes: call events on ``tel.call.<kind>``, finished recordings on
``tel.recording.ready``."""
PublishFn = Callable[[GatewayEvent], Awaitable[None]]

RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)


def bus_publisher(bus: Bus) -> PublishFn:
    """Publish a CallEvent on its ``tel.call.<kind>`` subject with its event id as ``Nats-Msg-Id`` (a
    RecordingReady on ``tel.recording.ready``, in the trace of its call when the call is still live).

    One call is one trace: a ``call`` span opens with the call's first event and closes with its
    ``ended`` event; each publish is a child span, so the ``traceparent`` every event carries to the
    consumers names the same trace.
    """
    tracer = telemetry.tracer("telecrm.sip-gateway")
    calls: dict[str, trace.Span] = {}

    async def publish(event: GatewayEvent) -> None:
        if isinstance(event, ev.RecordingReady):
            live = calls.get(event.call_id)
            with tracer.start_as_current_span(
                f"publish {RECORDING_READY_SUBJECT}",
                context=trace.set_span_in_context(live) if live is not None else None,
                kind=trace.SpanKind.PRODUCER,
            ):
                await bus.publish(RECORDING_READY_SUBJECT, event, msg_id=event.event_id)
            return
        call_span = calls.get(event.call_id)
        if call_span is None:
            call_span = calls[event.call_id] = tracer.start_span(
                "call",
                kind=trace.SpanKind.SERVER,
                attributes={"telecrm.call_id": event.call_id, "sip.call_id": event.sip_call_id},
            )
        subject = call_event_subject(event)
        with tracer.start_as_current_span(
            f"publish {subject}", context=trace.set_span_in_context(call_span), kind=trace.SpanKind.PRODUCER
        ):
            await bus.publish(subject, event, msg_id=event.event_id)
        if event.WhichOneof("kind") == "ended":
            calls.pop(event.call_id).end()

    return publish


class EventPublisher:
    """The gateway's one publisher of call events and recordings ready (an
    :class:`telecrm_gateway.calls.EventSink`, and the call manager's ``recording_sink``)."""

    def __init__(self, publish: PublishFn, *, max_buffer: int = 100_000) -> None:
        self._publish = publish
        self._max = max_buffer
        self._buffer: deque[GatewayEvent] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._failing = False
        self.published = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def emit(self, event: GatewayEvent) -> None:
        if len(self._buffer) >= self._max:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error(
                    "call event buffer full (%d events waiting for NATS): dropped %d events so far",
                    len(self._buffer),
                    self.dropped,
                )
            return
        self._buffer.append(event)
        self._idle.clear()
        self._wakeup.set()

    async def run(self) -> None:
        """Publish until :meth:`close` is called and the buffer is empty (or until cancelled)."""
        attempt = 0
        while True:
            if not self._buffer:
                self._idle.set()
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            event = self._buffer[0]
            try:
                await self._publish(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._failing:
                    log.warning(
                        "cannot publish call events (%s); keeping them in order until NATS is back",
                        exc or type(exc).__name__,
                    )
                    self._failing = True
                await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
                attempt += 1
                continue
            attempt = 0
            self._buffer.popleft()
            self.published += 1
            if self._failing:
                self._failing = False
                log.info("publishing call events again; %d still buffered", len(self._buffer))

    async def flush(self, timeout: float) -> bool:
        """Wait until every emitted event is published; False (logged) when some are left."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.error("%d call events could not be published within %.1fs", len(self._buffer), timeout)
            return False
        return True

    def close(self) -> None:
        """Let :meth:`run` return once the buffer is empty."""
        self._closed = True
        self._wakeup.set()
