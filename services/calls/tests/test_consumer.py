"""The consumer against a real nats-server: duplicates, disorder, dead letters, replicas."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
from nats.aio.msg import Msg

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_calls.events import TelEvent, TelEventsConsumer
from telecrm_calls.service import CallLogService, CallNotFound
from telecrm_calls.testing import CallScript
from telecrm_common.bus import DLQ_REASON, DLQ_STREAM, DLQ_SUBJECT, Bus, Delivery
from telecrm_common.events import STREAMS, call_event_subject, tel_consumer


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout:.0f}s")
        await asyncio.sleep(0.05)


@pytest.fixture
async def bus(nats_server: Any) -> AsyncIterator[Bus]:
    bus = await Bus.connect(nats_server.url, name="calls-tests", timeout=10)
    await bus.ensure_streams(STREAMS)
    yield bus
    await bus.close()


def consumer(bus: Bus, service: CallLogService, durable: str) -> TelEventsConsumer:
    spec = tel_consumer(durable, batch_size=10, fetch_timeout_seconds=0.2, backoff_seconds=(0.2, 0.5))
    return TelEventsConsumer(bus, service, spec)


async def running(*consumers: TelEventsConsumer) -> tuple[asyncio.Event, list[asyncio.Task[None]]]:
    stop = asyncio.Event()
    return stop, [asyncio.create_task(c.consume_tel_events(stop)) for c in consumers]


async def stopped(stop: asyncio.Event, tasks: Sequence[asyncio.Task[None]]) -> None:
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)


async def publish(bus: Bus, event: ev.CallEvent, msg_id: str | None = None) -> None:
    await bus.publish(call_event_subject(event), event, msg_id=msg_id or event.event_id)


async def ended(service: CallLogService, call_ids: Sequence[str]) -> bool:
    for call_id in call_ids:
        try:
            entry = await service.get_call(call_id)
        except CallNotFound:
            return False
        if entry.call.state != "ended" or entry.call.incomplete:
            return False
    return True


async def next_dead_letter(bus: Bus, subject: str) -> Msg:
    sub = await bus.js.subscribe(subject, stream=DLQ_STREAM, ordered_consumer=True)
    try:
        return await sub.next_msg(timeout=15)
    finally:
        await sub.unsubscribe()


async def test_duplicates_disorder_and_garbage(bus: Bus, service: CallLogService) -> None:
    tag = uuid.uuid4().hex[:8]
    durable = f"calls-test-{tag}"
    scripts = [CallScript(f"n-{tag}-{n}") for n in range(3)]
    events = [e for s in scripts for e in s.answered_call()]
    random.Random(5).shuffle(events)
    for event in events:
        await publish(bus, event)
    for event in events[:4]:
        await publish(bus, event)  # same Nats-Msg-Id: the stream drops it
        await publish(bus, event, msg_id=f"{event.event_id}-republished")  # reaches the consumer
    await bus.js.publish(
        "tel.call.ended", b"\x0a\xff\xff\xff not a protobuf", headers={"Nats-Msg-Id": f"g-{tag}"}
    )
    unusable = ev.CallEvent(call_id=f"n-{tag}-x").SerializeToString()  # parses, but no event id or kind
    await bus.js.publish("tel.call.offered", unusable, headers={"Nats-Msg-Id": f"u-{tag}"})
    late = CallScript(f"n-{tag}-late")
    for event in late.missed_call()[::-1]:
        await publish(bus, event)

    stop, tasks = await running(consumer(bus, service, durable))
    try:
        await eventually(lambda: ended(service, [s.call_id for s in scripts] + [late.call_id]))

        dead = await next_dead_letter(bus, f"dlq.{durable}.tel.call.ended")
        assert dead.data.startswith(b"\x0a\xff\xff\xff")
        assert dead.headers is not None
        assert dead.headers[DLQ_SUBJECT] == "tel.call.ended"
        assert "undecodable payload" in dead.headers[DLQ_REASON]
        dead = await next_dead_letter(bus, f"dlq.{durable}.tel.call.offered")
        assert dead.headers is not None
        assert "without event_id" in dead.headers[DLQ_REASON]

        # Still consuming after the dead letters.
        after = CallScript(f"n-{tag}-after")
        for event in after.answered_call():
            await publish(bus, event)
        await eventually(lambda: ended(service, [after.call_id]))
    finally:
        await stopped(stop, tasks)

    for script in scripts:
        entry = await service.get_call(script.call_id)
        assert (entry.call.disposition, entry.call.ring_ms, entry.call.talk_ms) == ("answered", 5000, 60000)


async def test_replicas_share_the_durable_consumer(
    nats_server: Any, bus: Bus, service: CallLogService
) -> None:
    tag = uuid.uuid4().hex[:8]
    durable = f"calls-test-{tag}"
    handled: Counter[str] = Counter()
    replicas = []
    buses = [await Bus.connect(nats_server.url, name=f"replica-{n}", timeout=10) for n in range(2)]
    for replica_bus in buses:
        replica = consumer(replica_bus, service, durable)
        inner = replica.handle

        async def counting(deliveries: Sequence[Delivery[TelEvent]], inner: Any = inner) -> None:
            await inner(deliveries)
            handled.update(d.message.event_id for d in deliveries if d.message.call_id.startswith(f"r-{tag}"))

        replica.handle = counting  # type: ignore[method-assign]
        replicas.append(replica)

    scripts = [CallScript(f"r-{tag}-{n}") for n in range(10)]
    stop, tasks = await running(*replicas)
    try:
        for script in scripts:
            for event in script.answered_call():
                await publish(bus, event)
        await eventually(lambda: ended(service, [s.call_id for s in scripts]))
    finally:
        await stopped(stop, tasks)
        for replica_bus in buses:
            await replica_bus.close()

    assert len(handled) == 40
    assert set(handled.values()) == {1}  # each event handled once, by one replica
