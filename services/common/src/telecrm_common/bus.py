"""The message bus: NATS JetStream with protobuf payloads.

What every service gets from here:

- streams created idempotently (:meth:`Bus.ensure_streams`);
- publishing with ``Nats-Msg-Id`` so the server drops duplicates inside the stream's window, the trace
  context in the headers, and retries while the connection comes back (:meth:`Bus.publish`);
- durable pull consumers with explicit ack (:meth:`Bus.consume`): messages are fetched in batches and
  handed to the handler as decoded protobufs; a payload that does not decode goes straight to the
  dead-letter subject; a handler failure is retried with backoff (``nak`` with a delay) and, after
  ``max_deliver`` attempts, the message goes to the dead-letter subject with the reason;
- several replicas of a service bind to the same durable consumer, so each message is handled once;
- a graceful stop: the consumer finishes the batch in hand, then the connection is drained.

Dead letters are published to ``dlq.<consumer>.<original subject>`` (stream ``DLQ``) with headers naming
the reason, the original subject, stream sequence and delivery count, so they can be inspected and
replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import nats
import nats.errors
import nats.js.errors
from google.protobuf.message import Message
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from opentelemetry import trace

from telecrm_common import telemetry
from telecrm_common.errors import NotReadyError, TelecrmError

log = logging.getLogger(__name__)
# The W3C trace-context header telemetry.inject writes; a message without it has no trace to link.
TRACEPARENT = "traceparent"

M = TypeVar("M", bound=Message)

MSG_ID_HEADER = "Nats-Msg-Id"
TYPE_HEADER = "Telecrm-Type"
DLQ_STREAM = "DLQ"
DLQ_PREFIX = "dlq"
DLQ_REASON = "Telecrm-Dlq-Reason"
DLQ_SUBJECT = "Telecrm-Dlq-Subject"
DLQ_STREAM_SEQ = "Telecrm-Dlq-Stream-Seq"
DLQ_CONSUMER = "Telecrm-Dlq-Consumer"
DLQ_DELIVERIES = "Telecrm-Dlq-Deliveries"
# JetStream's API subjects (the default domain, as ``nc.jetstream()`` uses) and its status headers.
JS_API_PREFIX = "$JS.API"
STATUS_HEADER = "Status"
DESCRIPTION_HEADER = "Description"
STATUS_HEARTBEAT = "100"
STATUS_NO_MESSAGES = "404"
STATUS_REQUEST_TIMEOUT = "408"


class BusError(TelecrmError):
    """The bus could not do what was asked (not connected, publish not acknowledged in time)."""


class InvalidMessage(TelecrmError):
    """A payload that will never be handled: it is dead-lettered at once, without retries."""


@dataclass(frozen=True)
class StreamSpec:
    """A JetStream stream, created or updated by :meth:`Bus.ensure_streams`."""

    name: str
    subjects: tuple[str, ...]
    max_age_seconds: float = 30 * 24 * 3600
    duplicate_window_seconds: float = 120
    replicas: int = 1


DLQ_STREAM_SPEC = StreamSpec(name=DLQ_STREAM, subjects=(f"{DLQ_PREFIX}.>",), max_age_seconds=90 * 24 * 3600)


Decoder = Callable[[str, bytes], M]
"""Turns (subject, payload) into a message; raises InvalidMessage (or DecodeError) when it cannot."""


@dataclass(frozen=True)
class ConsumerSpec(Generic[M]):
    """A durable pull consumer and how its messages are decoded and retried."""

    stream: str
    durable: str
    filter_subjects: tuple[str, ...]
    decode: Decoder[M]
    batch_size: int = 100
    max_deliver: int = 8
    backoff_seconds: tuple[float, ...] = (1, 2, 5, 10, 30, 60, 120)
    ack_wait_seconds: float = 30
    max_ack_pending: int = 5000
    # How long a pull request waits on the server for messages (a loop checks ``stop`` at least as often).
    fetch_timeout_seconds: float = 1.0
    # With fewer than ``batch_size`` messages in hand, how long a loop waits for more before it handles
    # them: a little latency for fuller batches (a batch's transaction costs the same for 50 or 500).
    batch_linger_seconds: float = 0.0
    # Batches handled at the same time by this process (each its own fetch loop on the durable). A
    # handler that waits on a database most of the time keeps a core busy only with several in
    # flight; it must then be safe to run concurrently (as it must be anyway for replicas).
    concurrency: int = 1
    # What the handler depends on (for example the database's check). When a batch fails while this
    # raises, the batch is held and retried, kept from redelivery, until the dependency answers again:
    # an outage must not use up good messages' deliveries and send them to the dead-letter subject.
    dependencies_ready: Callable[[], Awaitable[None]] | None = None
    hold_interval_seconds: float = 2.0


@dataclass(frozen=True)
class SerializedMessage:
    """A message to publish whose payload is already serialized (an outbox row)."""

    subject: str
    payload: bytes
    msg_id: str
    message_type: str  # full protobuf name, the Telecrm-Type header
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Delivery(Generic[M]):
    """One message as a handler sees it."""

    subject: str
    message: M
    headers: Mapping[str, str]
    raw: Msg = field(repr=False)

    # Read from the reply subject when asked for: parsing it for every message cost as much as
    # decoding the payload, and only retries and dead-lettering need them.
    @property
    def num_delivered(self) -> int:
        return int(self.raw.metadata.num_delivered)

    @property
    def stream_sequence(self) -> int:
        return int(self.raw.metadata.sequence.stream)


BatchHandler = Callable[[Sequence[Delivery[M]]], Awaitable[None]]


def _is_transient(exc: BaseException) -> bool:
    return isinstance(
        exc,
        nats.errors.TimeoutError
        | nats.errors.ConnectionClosedError
        | nats.errors.NoRespondersError
        | nats.errors.StaleConnectionError
        | nats.errors.OutboundBufferLimitError
        | asyncio.TimeoutError
        | nats.js.errors.ServiceUnavailableError
        # js.publish turns NoRespondersError into this: the stream is not up yet (server restarting).
        | nats.js.errors.NoStreamResponseError,
    )


class Bus:
    """A NATS connection with its JetStream context. Build it with :meth:`connect`."""

    def __init__(self, nc: NatsClient, name: str) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream(timeout=5)
        self._name = name

    # --- connection -------------------------------------------------------------------------------

    @classmethod
    async def connect(cls, url: str, *, name: str, timeout: float = 60.0) -> Bus:
        """Connect, retrying every second for up to ``timeout`` seconds with a clear log line each time;
        raises BusError when the server is still not reachable.

        Once connected, the client reconnects on its own forever; publishes wait for it.
        """
        # nats-py retries the first connection on its own (every ``reconnect_time_wait``) and, with
        # ``max_reconnect_attempts=-1``, never gives up: the deadline is enforced here.
        nc = NatsClient()
        attempts = 0
        connecting = True

        async def on_error(exc: Exception) -> None:
            nonlocal attempts
            if not connecting:
                await _on_error(exc)
                return
            attempts += 1
            log.warning("NATS at %s is not reachable (attempt %d: %s); retrying", url, attempts, _text(exc))

        async def on_disconnect() -> None:
            if connecting:
                return
            if nc.is_closed:
                log.info("NATS connection closed")
            else:
                await _on_disconnect()

        try:
            await asyncio.wait_for(
                nc.connect(
                    url,
                    name=name,
                    connect_timeout=2,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    error_cb=on_error,
                    disconnected_cb=on_disconnect,
                    reconnected_cb=_on_reconnect,
                ),
                timeout=timeout,
            )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            last = nc.last_error or exc
            with contextlib.suppress(Exception):
                await nc.close()
            raise BusError(
                f"NATS at {url} is not reachable after {timeout:g}s ({attempts} attempts): {_text(last)}"
            ) from exc
        connecting = False
        log.info("connected to NATS", extra={"nats_url": url, "attempts": attempts + 1})
        return cls(nc, name)

    @property
    def nc(self) -> NatsClient:
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        return self._js

    @property
    def is_connected(self) -> bool:
        return bool(self._nc.is_connected)

    async def check(self) -> None:
        """A real round trip to the server (PING/PONG); raises NotReadyError when it fails."""
        if not self._nc.is_connected:
            raise NotReadyError("NATS is not connected")
        try:
            await self._nc.flush(timeout=1)
        except (TimeoutError, nats.errors.Error) as exc:
            raise NotReadyError(f"NATS did not answer: {exc or type(exc).__name__}") from exc

    async def close(self) -> None:
        """Drain subscriptions and pending publishes, then close. Safe to call twice."""
        if self._nc.is_closed:
            return
        try:
            await self._nc.drain()
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            log.warning("NATS drain did not complete cleanly: %s", _text(exc))
            # While the server is down, nats-py's close still tries to flush what publishes left in its
            # buffer and fails with ConnectionResetError; the connection is closed all the same.
            with contextlib.suppress(OSError, nats.errors.Error):
                await self._nc.close()

    # --- streams ----------------------------------------------------------------------------------

    async def ensure_streams(self, specs: Sequence[StreamSpec]) -> None:
        """Create each stream, or update it to the spec when it exists. The DLQ stream is always added."""
        for spec in (*specs, DLQ_STREAM_SPEC):
            config = api.StreamConfig(
                name=spec.name,
                subjects=list(spec.subjects),
                retention=api.RetentionPolicy.LIMITS,
                storage=api.StorageType.FILE,
                max_age=spec.max_age_seconds,
                duplicate_window=spec.duplicate_window_seconds,
                num_replicas=spec.replicas,
            )
            try:
                await self._js.add_stream(config)
            except nats.js.errors.BadRequestError:
                # Exists with another configuration: bring it to the spec (a no-op when equal).
                await self._js.update_stream(config)
            log.debug("stream ready", extra={"stream": spec.name, "subjects": list(spec.subjects)})

    # --- publishing -------------------------------------------------------------------------------

    async def publish(
        self,
        subject: str,
        message: Message,
        *,
        msg_id: str,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> api.PubAck:
        """Publish a protobuf to a stream subject and wait for the stream's acknowledgement.

        ``msg_id`` becomes ``Nats-Msg-Id``: publishing the same id twice inside the stream's duplicate
        window stores one message. Retries transient failures (reconnecting, no responders) for up to
        ``timeout`` seconds, then raises BusError.
        """
        all_headers = {MSG_ID_HEADER: msg_id, TYPE_HEADER: message.DESCRIPTOR.full_name}
        if headers:
            all_headers.update(headers)
        telemetry.inject(all_headers)
        payload = message.SerializeToString()
        deadline = time.monotonic() + timeout
        delay = 0.1
        while True:
            try:
                return await self._js.publish(subject, payload, timeout=2, headers=all_headers)
            except Exception as exc:
                if not _is_transient(exc) or time.monotonic() + delay > deadline:
                    raise BusError(f"publish to {subject} failed: {exc or type(exc).__name__}") from exc
                log.warning("publish to %s failed (%s); retrying", subject, exc or type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def publish_serialized(
        self,
        messages: Sequence[SerializedMessage],
        *,
        timeout: float = 10.0,
    ) -> int:
        """Publish already-serialized messages in this order, pipelined, and wait for their acks.

        Returns how many messages from the start of ``messages`` the stream acknowledged: all of
        them, or those before the first that failed or was not acknowledged within ``timeout``
        (those after it may have been stored too; publishing them again stores them once, by their
        ``Nats-Msg-Id``). One round trip for the lot instead of one per message.

        The acknowledgements come to one inbox of this call (``<inbox>.<index>``), counted as they
        arrive: nats-py's ``publish_async`` costs a future, a random token, a semaphore and a parsed
        PubAck per message, more than the publish itself, and the outbox of every service and the
        gateway publish through here.
        """
        if not messages:
            return 0
        outcome: list[bool | None] = [None] * len(messages)  # True: stored, False: refused
        refusals: dict[int, bytes] = {}
        waiting = len(messages)
        all_in = asyncio.Event()
        inbox = self._nc.new_inbox()

        async def acknowledged(msg: Msg) -> None:
            nonlocal waiting
            index = int(msg.subject.rpartition(".")[2])
            if outcome[index] is not None:
                return
            # A PubAck is {"stream":..., "seq":...}; a refusal is {"error":...}, or a status without
            # payload (503: no stream listens on the subject).
            refused = b'"error"' in msg.data or bool(msg.headers and STATUS_HEADER in msg.headers)
            outcome[index] = not refused
            if refused:
                refusals[index] = msg.data[:200] or str(msg.headers).encode()
            waiting -= 1
            if waiting == 0:
                all_in.set()

        sent = 0
        try:
            subscription = await self._nc.subscribe(f"{inbox}.*", cb=acknowledged)
        except Exception as exc:
            if not _is_transient(exc) and not isinstance(exc, nats.errors.Error):
                raise
            log.warning("publishing failed (%s)", exc or type(exc).__name__)
            return 0
        try:
            try:
                for index, message in enumerate(messages):
                    headers = {
                        **message.headers,
                        MSG_ID_HEADER: message.msg_id,
                        TYPE_HEADER: message.message_type,
                    }
                    await self._nc.publish(
                        message.subject, message.payload, reply=f"{inbox}.{index}", headers=headers
                    )
                    sent += 1
            except Exception as exc:
                if not _is_transient(exc) and not isinstance(exc, nats.errors.Error):
                    raise
                log.warning("publishing failed (%s)", exc or type(exc).__name__)
            if sent:
                waiting -= len(messages) - sent
                if waiting <= 0:
                    all_in.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(all_in.wait(), timeout)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()
        if not sent:
            return 0
        count = next((index for index, stored in enumerate(outcome[:sent]) if not stored), sent)
        if count < len(messages):
            if count >= sent:
                reason = "not sent"
            elif outcome[count] is None:
                reason = "no acknowledgement in time"
            else:
                reason = f"refused: {refusals[count]!r}"
            log.warning(
                "%d of %d messages acknowledged; %s on %s",
                count,
                len(messages),
                reason,
                messages[count].subject,
            )
        return count

    # --- consuming --------------------------------------------------------------------------------

    async def ensure_consumer(self, spec: ConsumerSpec[Any]) -> None:
        """Create the durable consumer, or update it to the spec."""
        # No server-side ``backoff``: the server would replace ``ack_wait`` with its first value (a
        # handler slower than that gets its messages redelivered, to another replica, while it is
        # still working on them). Retries are spaced by the delay of each ``nak`` instead.
        config = api.ConsumerConfig(
            durable_name=spec.durable,
            name=spec.durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=spec.ack_wait_seconds,
            max_deliver=spec.max_deliver,
            max_ack_pending=spec.max_ack_pending,
        )
        if len(spec.filter_subjects) == 1:
            config.filter_subject = spec.filter_subjects[0]
        else:
            config.filter_subjects = list(spec.filter_subjects)
        await self._js.add_consumer(spec.stream, config)

    async def consume(self, spec: ConsumerSpec[M], handler: BatchHandler[M], stop: asyncio.Event) -> None:
        """Fetch and handle messages until ``stop`` is set; the batches in hand are finished first.

        The handler gets a batch of decoded deliveries. If it raises, the batch is handled again one
        message at a time so that one bad message does not hold up the others; a message that still
        fails is nak'ed with the next backoff delay, and dead-lettered on its last delivery. With
        ``spec.concurrency`` > 1 that many fetch loops run side by side on the durable consumer.
        """
        await self.ensure_consumer(spec)
        log.info(
            "consuming",
            extra={
                "stream": spec.stream,
                "consumer": spec.durable,
                "subjects": list(spec.filter_subjects),
                "concurrency": spec.concurrency,
            },
        )
        consumer = _Consumer(self, spec, handler, stop)
        puller = _Puller(self._nc, spec)
        await puller.start()
        waker = asyncio.create_task(_wake_on(stop, puller))
        try:
            loops = [self._fetch_loop(spec, puller, consumer, stop) for _ in range(max(spec.concurrency, 1))]
            await asyncio.gather(*loops)
        finally:
            waker.cancel()
            await puller.close()
        log.info("consumer stopped", extra={"consumer": spec.durable})

    async def _fetch_loop(
        self, spec: ConsumerSpec[M], puller: _Puller, consumer: _Consumer[M], stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            try:
                msgs = await puller.take(stop)
            except Exception as exc:
                if not _is_transient(exc) and not isinstance(exc, nats.errors.Error | BusError):
                    raise
                log.warning("fetch from %s failed (%s); retrying", spec.durable, exc or type(exc).__name__)
                await _sleep_or_stop(stop, 1.0)
                continue
            if msgs:
                await consumer.handle(msgs)

    async def dead_letter(self, msg: Msg, *, consumer: str, reason: str) -> bool:
        """Copy a message to ``dlq.<consumer>.<subject>`` with the reason; True when the DLQ stored it."""
        meta = msg.metadata
        headers = {k: v for k, v in (msg.headers or {}).items() if k != MSG_ID_HEADER}
        headers.update(
            {
                DLQ_REASON: reason[:1000],
                DLQ_SUBJECT: msg.subject,
                DLQ_STREAM_SEQ: str(meta.sequence.stream),
                DLQ_CONSUMER: consumer,
                DLQ_DELIVERIES: str(meta.num_delivered),
                MSG_ID_HEADER: f"dlq-{meta.stream}-{meta.sequence.stream}-{consumer}",
            }
        )
        try:
            await self._js.publish(
                f"{DLQ_PREFIX}.{consumer}.{msg.subject}", msg.data, timeout=5, headers=headers
            )
        except Exception as exc:
            if not _is_transient(exc) and not isinstance(exc, nats.errors.Error):
                raise
            log.error("could not dead-letter a message from %s: %s", msg.subject, exc or type(exc).__name__)
            return False
        log.error(
            "message dead-lettered",
            extra={
                "subject": msg.subject,
                "stream_seq": meta.sequence.stream,
                "consumer": consumer,
                "deliveries": meta.num_delivered,
                "reason": reason,
            },
        )
        return True

    async def pending(self, spec: ConsumerSpec[Any]) -> int:
        """How many messages the consumer has not yet been delivered (its lag) plus those unacked."""
        info = await self._js.consumer_info(spec.stream, spec.durable)
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)


class _Puller:
    """The pull requests of one process on a durable consumer, shared by its fetch loops.

    One subscription on an inbox receives what the server delivers, into a buffer the loops take
    batches from, and one pull request at a time keeps it filled up to ``batch_size x concurrency``
    messages. So under load a loop that comes back for more finds everything that arrived meanwhile
    (full batches), and when idle a message is handled as soon as it arrives. (nats-py's ``fetch``
    waits on every message with a timer and a task of its own: most of the consumer's CPU time.)
    """

    def __init__(self, nc: NatsClient, spec: ConsumerSpec[Any]) -> None:
        self._nc = nc
        self._spec = spec
        self._subject = f"{JS_API_PREFIX}.CONSUMER.MSG.NEXT.{spec.stream}.{spec.durable}"
        self._inbox = nc.new_inbox()
        self._capacity = spec.batch_size * max(spec.concurrency, 1)
        self._buffer: deque[Msg] = deque()
        self._arrived = asyncio.Event()
        self._open = 0  # messages the pull request in flight may still deliver (0: none in flight)
        self._open_until = 0.0  # when it has surely ended (it expires on the server before)
        self._error: str | None = None  # why the server ended the last request, when not expected
        self._sub: Any = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._inbox, cb=self._received)

    def wake(self) -> None:
        """Wake the loops waiting for messages (the consumer is stopping)."""
        self._arrived.set()

    async def take(self, stop: asyncio.Event) -> list[Msg]:
        """Up to ``batch_size`` messages: those in hand, else the first to arrive within the fetch
        timeout (then, with ``batch_linger_seconds``, what else arrives in that time); [] if none."""
        spec = self._spec
        deadline = time.monotonic() + spec.fetch_timeout_seconds
        lingered = False
        while not stop.is_set():
            await self._request()
            now = time.monotonic()
            if self._buffer:
                if len(self._buffer) >= spec.batch_size or lingered or spec.batch_linger_seconds <= 0:
                    break
                lingered = True
                wait = min(spec.batch_linger_seconds, deadline - now)
            else:
                if self._error is not None:
                    error, self._error = self._error, None
                    raise BusError(f"pull request on {spec.durable} ended: {error}")
                wait = deadline - now
            if wait <= 0:
                break
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), wait)
        count = min(len(self._buffer), spec.batch_size)
        return [self._buffer.popleft() for _ in range(count)]

    async def _request(self) -> None:
        """Ask for as many messages as the buffer has room for, unless a request is in flight."""
        now = time.monotonic()
        if self._open > 0 and now < self._open_until:
            return
        wanted = self._capacity - len(self._buffer)
        if wanted <= 0:
            return
        expires = self._spec.fetch_timeout_seconds
        request = {"batch": wanted, "expires": int(expires * 1_000_000_000)}
        await self._nc.publish(self._subject, json.dumps(request).encode(), reply=self._inbox)
        self._open = wanted
        self._open_until = now + expires + 1.0  # its end (408) lost to a reconnect: ask again then

    async def _received(self, msg: Msg) -> None:
        status = msg.headers.get(STATUS_HEADER) if msg.headers else None
        if status is None:
            self._buffer.append(msg)
            self._open -= 1
        elif status == STATUS_HEARTBEAT:
            return
        else:
            # The request is over: expired (408), nothing left at once (404), or refused (409: the
            # consumer was deleted, the server is shutting down...), which the loops are told.
            self._open = 0
            if status not in (STATUS_NO_MESSAGES, STATUS_REQUEST_TIMEOUT):
                self._error = f"{status} {msg.headers.get(DESCRIPTION_HEADER, '')}".strip()  # type: ignore[union-attr]
        self._arrived.set()

    async def close(self) -> None:
        """Stop receiving, and hand back what was delivered but not taken, for prompt redelivery."""
        with contextlib.suppress(nats.errors.Error):
            if self._sub is not None:
                await self._sub.unsubscribe()
        left, self._buffer = list(self._buffer), deque()
        await asyncio.gather(*(msg.nak() for msg in left), return_exceptions=True)


async def _wake_on(stop: asyncio.Event, puller: _Puller) -> None:
    await stop.wait()
    puller.wake()


class _Released(Exception):
    """A held batch was handed back to the server because the consumer is stopping."""


class _Consumer(Generic[M]):
    """The per-batch logic of :meth:`Bus.consume`, kept apart so it reads top to bottom."""

    def __init__(
        self, bus: Bus, spec: ConsumerSpec[M], handler: BatchHandler[M], stop: asyncio.Event
    ) -> None:
        self._bus = bus
        self._spec = spec
        self._handler = handler
        self._stop = stop
        self._tracer = telemetry.tracer("telecrm.bus")

    async def handle(self, msgs: Sequence[Msg]) -> None:
        deliveries: list[Delivery[M]] = []
        for msg in msgs:
            delivery = await self._decode(msg)
            if delivery is not None:
                deliveries.append(delivery)
        if not deliveries:
            return
        links = [
            trace.Link(span_ctx)
            for d in deliveries
            if TRACEPARENT in d.headers
            and (span_ctx := trace.get_current_span(telemetry.extract(d.headers)).get_span_context()).is_valid
        ]
        with self._tracer.start_as_current_span(
            f"consume {self._spec.durable}", kind=trace.SpanKind.CONSUMER, links=links
        ):
            try:
                await self._handle_holding(deliveries)
            except _Released:
                return
            except Exception:
                if len(deliveries) == 1:
                    await self._failed(deliveries[0])
                    return
                log.warning(
                    "batch of %d failed; handling its messages one by one", len(deliveries), exc_info=True
                )
                for delivery in deliveries:
                    await self._handle_one(delivery)
                return
        # One at a time: an ack only queues a message on the connection (no round trip), and a task
        # per ack cost more than the ack itself.
        for delivery in deliveries:
            with contextlib.suppress(nats.errors.Error):
                await delivery.raw.ack()

    async def _handle_holding(self, deliveries: Sequence[Delivery[M]]) -> None:
        """Run the handler; while it fails because a dependency is down, hold the batch and retry."""
        held = False
        while True:
            try:
                await self._handler(deliveries)
            except Exception as exc:
                down = await self._dependency_down()
                if down is None:
                    raise
                if not held:
                    log.warning(
                        "%s; holding %d messages until it answers (%s)",
                        down,
                        len(deliveries),
                        _text(exc),
                    )
                    held = True
                if self._stop.is_set():
                    # Stopping: hand the batch back now so another replica can take it.
                    await asyncio.gather(*(d.raw.nak() for d in deliveries), return_exceptions=True)
                    raise _Released from None
                await asyncio.gather(*(d.raw.in_progress() for d in deliveries), return_exceptions=True)
                await _sleep_or_stop(self._stop, self._spec.hold_interval_seconds)
                continue
            if held:
                log.info("dependency answers again; %d held messages handled", len(deliveries))
            return

    async def _dependency_down(self) -> str | None:
        """The reason a dependency is down, or None when it answers (or none is declared)."""
        if self._spec.dependencies_ready is None:
            return None
        try:
            await self._spec.dependencies_ready()
        except Exception as exc:
            return _text(exc)
        return None

    async def _handle_one(self, delivery: Delivery[M]) -> None:
        ctx = telemetry.extract(delivery.headers)
        with self._tracer.start_as_current_span(
            f"consume {delivery.subject}", context=ctx, kind=trace.SpanKind.CONSUMER
        ):
            try:
                await self._handler([delivery])
            except Exception:
                await self._failed(delivery)
                return
        await delivery.raw.ack()

    async def _decode(self, msg: Msg) -> Delivery[M] | None:
        try:
            message = self._spec.decode(msg.subject, msg.data)
        except Exception as exc:
            reason = f"undecodable payload on {msg.subject}: {type(exc).__name__}: {exc}"
            if await self._bus.dead_letter(msg, consumer=self._spec.durable, reason=reason):
                await msg.term()
            else:
                await msg.nak(delay=self._delay(msg.metadata.num_delivered))
            return None
        return Delivery(subject=msg.subject, message=message, headers=msg.headers or {}, raw=msg)

    async def _failed(self, delivery: Delivery[M]) -> None:
        exc_text = _current_exception_text()
        if delivery.num_delivered >= self._spec.max_deliver:
            reason = f"handler failed {delivery.num_delivered} times; last error: {exc_text}"
            if await self._bus.dead_letter(delivery.raw, consumer=self._spec.durable, reason=reason):
                await delivery.raw.term()
                return
        delay = self._delay(delivery.num_delivered)
        log.warning(
            "handling %s failed (delivery %d of %d): %s; retrying in %.0fs",
            delivery.subject,
            delivery.num_delivered,
            self._spec.max_deliver,
            exc_text,
            delay,
            exc_info=log.isEnabledFor(logging.DEBUG),
        )
        await delivery.raw.nak(delay=delay)

    def _delay(self, num_delivered: int) -> float:
        backoff = self._spec.backoff_seconds or (1.0,)
        return backoff[min(num_delivered, len(backoff)) - 1]


def _current_exception_text() -> str:
    exc = sys.exc_info()[1]
    return f"{type(exc).__name__}: {exc}" if exc else "unknown error"


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def _on_error(exc: Exception) -> None:
    log.warning("NATS error: %s", _text(exc))


async def _on_disconnect() -> None:
    log.warning("disconnected from NATS; reconnecting")


async def _on_reconnect() -> None:
    log.info("reconnected to NATS")
