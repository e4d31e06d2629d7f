"""The bus against a real nats-server: streams, de-duplication, durable pull consumers shared by
replicas, dead letters, retries, graceful stop, trace context, and connection failures."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import nats.errors
import nats.js.errors
import pytest
from nats.aio.msg import Msg
from opentelemetry import trace

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.bus import (
    DLQ_CONSUMER,
    DLQ_DELIVERIES,
    DLQ_REASON,
    DLQ_STREAM,
    DLQ_STREAM_SEQ,
    DLQ_SUBJECT,
    Bus,
    BusError,
    ConsumerSpec,
    Delivery,
    StreamSpec,
)
from telecrm_common.errors import NotReadyError
from telecrm_common.events import decode_call_event
from telecrm_devstack.processes import NatsServer, free_port

Deliveries = Sequence[Delivery[ev.CallEvent]]


def stream_spec(unique: str, **overrides: Any) -> StreamSpec:
    return StreamSpec(name=f"T_{unique}", subjects=(f"t{unique}.>",), **overrides)


def consumer_spec(unique: str, durable: str = "worker", **overrides: Any) -> ConsumerSpec[ev.CallEvent]:
    settings: dict[str, Any] = {
        "fetch_timeout_seconds": 0.2,
        "backoff_seconds": (0.05, 0.1),
        "ack_wait_seconds": 2.0,
        **overrides,
    }
    return ConsumerSpec(
        stream=f"T_{unique}",
        durable=f"{durable}_{unique}",
        filter_subjects=(f"t{unique}.>",),
        decode=decode_call_event,
        **settings,
    )


@contextlib.asynccontextmanager
async def consuming(bus: Bus, spec: ConsumerSpec[Any], handler: Any) -> AsyncIterator[asyncio.Event]:
    """Run ``bus.consume`` in a task; stop it (and surface its errors) when the block ends."""
    stop = asyncio.Event()
    task = asyncio.create_task(bus.consume(spec, handler, stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def read_dlq(bus: Bus, durable: str, count: int, timeout: float = 5.0) -> list[Msg]:
    """The dead letters of a consumer, waiting until ``count`` are there (fewer after the timeout)."""
    sub = await bus.js.pull_subscribe(f"dlq.{durable}.>", stream=DLQ_STREAM)
    got: list[Msg] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < count and time.monotonic() < deadline:
            with contextlib.suppress(nats.errors.TimeoutError):
                got.extend(await sub.fetch(count - len(got), timeout=0.2))
    finally:
        await sub.unsubscribe()
    return got


async def dlq_count(bus: Bus, durable: str) -> int:
    info = await bus.js.stream_info(DLQ_STREAM, subjects_filter=f"dlq.{durable}.>")
    return sum((info.state.subjects or {}).values())


async def settled(bus: Bus, spec: ConsumerSpec[Any]) -> bool:
    """Nothing left to deliver and nothing waiting for an ack (False until the consumer exists)."""
    await bus.nc.flush()
    try:
        return await bus.pending(spec) == 0
    except nats.js.errors.NotFoundError:
        return False


# --- streams and publishing ----------------------------------------------------------------------


async def test_ensure_streams_is_idempotent_and_applies_a_config_change(bus: Bus, unique: str) -> None:
    spec = stream_spec(unique)
    await bus.ensure_streams([spec])
    await bus.publish(f"t{unique}.a", ev.CallEvent(event_id="e1"), msg_id="e1")
    await bus.ensure_streams([spec])  # again, unchanged: no error, nothing lost

    info = await bus.js.stream_info(spec.name)
    assert info.state.messages == 1
    assert info.config.subjects == [f"t{unique}.>"]
    assert (await bus.js.stream_info(DLQ_STREAM)).config.subjects == ["dlq.>"]

    changed = StreamSpec(
        name=spec.name,
        subjects=(*spec.subjects, f"u{unique}.>"),
        duplicate_window_seconds=30,
        max_age_seconds=3600,
    )
    await bus.ensure_streams([changed])
    await bus.ensure_streams([changed])

    info = await bus.js.stream_info(spec.name)
    assert sorted(info.config.subjects or []) == sorted([f"t{unique}.>", f"u{unique}.>"])
    assert info.config.duplicate_window == pytest.approx(30)
    assert info.config.max_age == pytest.approx(3600)
    assert info.state.messages == 1


async def test_the_same_msg_id_published_twice_is_stored_once(bus: Bus, unique: str) -> None:
    spec = stream_spec(unique)
    await bus.ensure_streams([spec])
    event = ev.CallEvent(event_id="dup-1", call_id="c1", offered=ev.CallOffered())

    first = await bus.publish(f"t{unique}.call", event, msg_id=event.event_id)
    second = await bus.publish(f"t{unique}.call", event, msg_id=event.event_id)
    other = await bus.publish(f"t{unique}.call", event, msg_id="dup-2")

    assert not first.duplicate
    assert second.duplicate
    assert second.seq == first.seq
    assert other.seq == first.seq + 1
    assert (await bus.js.stream_info(spec.name)).state.messages == 2


# --- consuming -----------------------------------------------------------------------------------


async def test_durable_consumer_handles_each_message_and_acks_it(
    bus: Bus, unique: str, eventually: Any, call_event: Any
) -> None:
    await bus.ensure_streams([stream_spec(unique)])
    spec = consumer_spec(unique, ack_wait_seconds=0.5)
    seen: list[tuple[str, int, str]] = []

    async def handler(batch: Deliveries) -> None:
        seen.extend((d.message.event_id, d.num_delivered, d.subject) for d in batch)

    ids = [f"e{i}" for i in range(5)]
    for event_id in ids:
        await bus.publish(f"t{unique}.call.offered", call_event(event_id), msg_id=event_id)

    async with consuming(bus, spec, handler):
        await eventually(lambda: len(seen) >= 5, what="5 messages handled")
        await eventually(lambda: settled(bus, spec), what="all acked")
        # Longer than ack_wait: an unacked message would come back by now.
        await asyncio.sleep(0.8)

    assert sorted(event_id for event_id, _, _ in seen) == ids
    assert {n for _, n, _ in seen} == {1}
    assert {s for _, _, s in seen} == {f"t{unique}.call.offered"}
    info = await bus.js.consumer_info(spec.stream, spec.durable)
    assert info.num_redelivered == 0
    assert info.num_ack_pending == 0

    # The durable remembers its position: a consumer started later gets only what is new.
    later: list[str] = []

    async def later_handler(batch: Deliveries) -> None:
        later.extend(d.message.event_id for d in batch)

    await bus.publish(f"t{unique}.call.offered", call_event("e5"), msg_id="e5")
    async with consuming(bus, spec, later_handler):
        await eventually(lambda: later == ["e5"], what="the new message handled")


async def test_a_handler_slower_than_the_first_backoff_is_not_redelivered_meanwhile(
    bus: Bus, unique: str, eventually: Any, call_event: Any
) -> None:
    """The backoff applies to failures; a slow handler still has ack_wait to finish its work."""
    await bus.ensure_streams([stream_spec(unique)])
    spec = consumer_spec(unique, backoff_seconds=(0.05, 0.1), ack_wait_seconds=5)
    calls: list[int] = []

    async def slow(batch: Deliveries) -> None:
        calls.extend(d.num_delivered for d in batch)
        await asyncio.sleep(0.4)

    await bus.publish(f"t{unique}.call", call_event("slow-1"), msg_id="slow-1")
    async with consuming(bus, spec, slow):
        await eventually(lambda: len(calls) == 1, what="the message handled")
        await eventually(lambda: settled(bus, spec), what="the message acked")

    assert calls == [1]
    assert (await bus.js.consumer_info(spec.stream, spec.durable)).config.ack_wait == pytest.approx(5)


async def test_two_replicas_on_one_durable_handle_each_message_exactly_once(
    nats_server: NatsServer, unique: str, eventually: Any, call_event: Any
) -> None:
    replicas = [await Bus.connect(nats_server.url, name=f"replica-{i}", timeout=5) for i in range(2)]
    try:
        await replicas[0].ensure_streams([stream_spec(unique)])
        spec = consumer_spec(unique, batch_size=3, ack_wait_seconds=1.0)
        handled: list[tuple[int, str]] = []

        def handler_for(replica: int) -> Any:
            async def handler(batch: Deliveries) -> None:
                await asyncio.sleep(0.01)
                handled.extend((replica, d.message.event_id) for d in batch)

            return handler

        ids = [f"m{i:02d}" for i in range(40)]
        async with (
            consuming(replicas[0], spec, handler_for(0)),
            consuming(replicas[1], spec, handler_for(1)),
        ):
            await asyncio.gather(
                *(
                    replicas[i % 2].publish(f"t{unique}.call", call_event(event_id), msg_id=event_id)
                    for i, event_id in enumerate(ids)
                )
            )
            await eventually(lambda: len(handled) >= len(ids), what="every message handled")
            await eventually(lambda: settled(replicas[0], spec), what="every message acked")
            await asyncio.sleep(1.3)  # past ack_wait: nothing may come back

        counts = Counter(event_id for _, event_id in handled)
        assert sorted(counts) == ids
        assert set(counts.values()) == {1}, [k for k, v in counts.items() if v > 1]
        assert {replica for replica, _ in handled} == {0, 1}, "both replicas should have taken work"
    finally:
        for replica in replicas:
            await replica.close()


async def test_undecodable_payloads_are_dead_lettered_and_consuming_goes_on(
    bus: Bus, unique: str, eventually: Any, call_event: Any
) -> None:
    await bus.ensure_streams([stream_spec(unique)])
    spec = consumer_spec(unique, durable="decoder")
    subject = f"t{unique}.call.offered"
    garbage = await bus.js.publish(subject, b"\xff\xfe not a protobuf \x00\x01", headers={"Nats-Msg-Id": "g"})
    # Parses as a CallEvent (only `sequence` set) but has no event_id, call_id or kind.
    hollow = await bus.js.publish(
        subject, ev.CallEvent(sequence=7).SerializeToString(), headers={"Nats-Msg-Id": "h"}
    )
    await bus.publish(subject, call_event("good-1"), msg_id="good-1")
    handled: list[str] = []

    async def handler(batch: Deliveries) -> None:
        handled.extend(d.message.event_id for d in batch)

    async with consuming(bus, spec, handler):
        await eventually(lambda: handled == ["good-1"], what="the good message handled")
        dead = await read_dlq(bus, spec.durable, 2)
        await eventually(lambda: settled(bus, spec), what="nothing left unacked")

    by_seq = {int((m.headers or {})[DLQ_STREAM_SEQ]): m for m in dead}
    assert sorted(by_seq) == [garbage.seq, hollow.seq]
    for seq, original in ((garbage.seq, b"\xff\xfe not a protobuf \x00\x01"), (hollow.seq, None)):
        msg = by_seq[seq]
        headers = msg.headers or {}
        assert msg.subject == f"dlq.{spec.durable}.{subject}"
        assert headers[DLQ_SUBJECT] == subject
        assert headers[DLQ_CONSUMER] == spec.durable
        assert headers[DLQ_DELIVERIES] == "1"
        assert headers[DLQ_REASON].startswith(f"undecodable payload on {subject}")
        if original is not None:
            assert msg.data == original
    assert "event_id" in (by_seq[hollow.seq].headers or {})[DLQ_REASON]
    assert "call_id" in (by_seq[hollow.seq].headers or {})[DLQ_REASON]
    assert "kind" in (by_seq[hollow.seq].headers or {})[DLQ_REASON]
    # Dead-lettered at once (terminated), not retried.
    assert (await bus.js.consumer_info(spec.stream, spec.durable)).num_redelivered == 0


async def test_a_failing_handler_is_retried_with_backoff_then_dead_lettered(
    bus: Bus, unique: str, eventually: Any, call_event: Any
) -> None:
    await bus.ensure_streams([stream_spec(unique)])
    spec = consumer_spec(unique, durable="failing", max_deliver=3, backoff_seconds=(0.1, 0.2))
    attempts: list[tuple[str, int, float]] = []

    async def handler(batch: Deliveries) -> None:
        for d in batch:
            attempts.append((d.message.event_id, d.num_delivered, time.monotonic()))
            if d.message.event_id == "always":
                raise RuntimeError("the CRM is down")
            if d.message.event_id == "once" and d.num_delivered == 1:
                raise RuntimeError("a hiccup")

    await bus.publish(f"t{unique}.call", call_event("always"), msg_id="always")
    async with consuming(bus, spec, handler):
        dead = await read_dlq(bus, spec.durable, 1)
        await eventually(lambda: settled(bus, spec), what="the message terminated")

    assert [n for event_id, n, _ in attempts if event_id == "always"] == [1, 2, 3]
    times = [t for _, _, t in attempts]
    assert times[1] - times[0] >= 0.09, "the first retry waits for the first backoff"
    assert times[2] - times[1] >= 0.19, "the second retry waits for the second backoff"
    assert len(dead) == 1
    headers = dead[0].headers or {}
    assert headers[DLQ_DELIVERIES] == "3"
    assert headers[DLQ_SUBJECT] == f"t{unique}.call"
    assert "handler failed 3 times" in headers[DLQ_REASON]
    assert "RuntimeError: the CRM is down" in headers[DLQ_REASON]

    # A handler that fails once succeeds on the retry: handled, not dead-lettered.
    attempts.clear()
    await bus.publish(f"t{unique}.call", call_event("once"), msg_id="once")
    async with consuming(bus, spec, handler):
        await eventually(lambda: [n for _, n, _ in attempts] == [1, 2], what="one retry")
        await eventually(lambda: settled(bus, spec), what="the retried message acked")
    assert await dlq_count(bus, spec.durable) == 1


async def test_while_a_dependency_is_down_the_batch_is_held_not_dead_lettered(
    bus: Bus, unique: str, eventually: Any, call_event: Any
) -> None:
    """An outage of the database must not use up good messages' deliveries: the batch is held (kept
    from redelivery) and handled once the dependency answers, with no dead letter."""
    await bus.ensure_streams([stream_spec(unique)])
    database_up = asyncio.Event()

    async def database_check() -> None:
        if not database_up.is_set():
            raise NotReadyError("database is not reachable")

    spec = consumer_spec(
        unique,
        durable="held",
        max_deliver=2,
        ack_wait_seconds=1.0,
        dependencies_ready=database_check,
        hold_interval_seconds=0.05,
    )
    handled: list[tuple[str, int]] = []
    attempts = 0

    async def handler(batch: Deliveries) -> None:
        nonlocal attempts
        attempts += 1
        if not database_up.is_set():
            raise OSError("connection refused")
        handled.extend((d.message.event_id, d.num_delivered) for d in batch)

    for event_id in ("a", "b"):
        await bus.publish(f"t{unique}.call", call_event(event_id), msg_id=event_id)
    async with consuming(bus, spec, handler):
        await eventually(lambda: attempts >= 3, what="the batch retried while held")
        await asyncio.sleep(1.5)  # longer than ack_wait: a held batch must not be redelivered
        assert handled == []
        database_up.set()
        await eventually(lambda: len(handled) == 2, what="the held batch handled")
        await eventually(lambda: settled(bus, spec), what="the held batch acked")
    assert sorted(handled) == [("a", 1), ("b", 1)], "handled on their first delivery, never redelivered"
    assert await dlq_count(bus, spec.durable) == 0


async def test_one_poison_message_in_a_batch_does_not_hold_up_the_others(
    bus: Bus, unique: str, eventually: Any, call_event: Any
) -> None:
    await bus.ensure_streams([stream_spec(unique)])
    spec = consumer_spec(unique, durable="batch", batch_size=10, max_deliver=2)
    ids = ["a", "b", "poison", "c", "d"]
    for event_id in ids:  # published before the consumer starts: they arrive as one batch
        await bus.publish(f"t{unique}.call", call_event(event_id), msg_id=event_id)
    batches: list[list[str]] = []
    handled: list[str] = []

    async def handler(batch: Deliveries) -> None:
        batch_ids = [d.message.event_id for d in batch]
        batches.append(batch_ids)
        if "poison" in batch_ids:
            raise ValueError("cannot handle poison")
        handled.extend(batch_ids)

    async with consuming(bus, spec, handler):
        dead = await read_dlq(bus, spec.durable, 1)
        await eventually(lambda: settled(bus, spec), what="everything acked or terminated")

    assert batches[0] == ids, "the first fetch should bring the whole batch"
    assert sorted(handled) == ["a", "b", "c", "d"]
    assert len(handled) == 4
    assert [(m.headers or {})[DLQ_DELIVERIES] for m in dead] == ["2"]
    assert "ValueError: cannot handle poison" in (dead[0].headers or {})[DLQ_REASON]


async def test_stop_finishes_the_batch_in_hand_then_returns(
    bus: Bus, unique: str, eventually: Any, call_event: Any
) -> None:
    await bus.ensure_streams([stream_spec(unique)])
    spec = consumer_spec(unique, durable="stopping", batch_size=10)
    for i in range(3):
        await bus.publish(f"t{unique}.call", call_event(f"s{i}"), msg_id=f"s{i}")
    stop = asyncio.Event()
    handled: list[str] = []

    async def handler(batch: Deliveries) -> None:
        stop.set()  # the stop comes while the batch is being handled
        await asyncio.sleep(0.2)
        handled.extend(d.message.event_id for d in batch)

    task = asyncio.create_task(bus.consume(spec, handler, stop))
    await asyncio.wait_for(task, 3)

    assert handled == ["s0", "s1", "s2"]
    await eventually(lambda: settled(bus, spec), what="the finished batch acked")
    # Nothing is fetched after the stop.
    await bus.publish(f"t{unique}.call", call_event("after"), msg_id="after")
    await asyncio.sleep(0.3)
    assert handled == ["s0", "s1", "s2"]
    assert await bus.pending(spec) == 1


async def test_a_batch_takes_everything_that_arrived_while_the_handler_was_busy(
    bus: Bus, unique: str, eventually: Any, call_event: Any
) -> None:
    """Batches grow with the load: a busy handler comes back to all that arrived meanwhile (up to
    batch_size) in one batch, one transaction, instead of many small ones."""
    await bus.ensure_streams([stream_spec(unique)])
    spec = consumer_spec(unique, durable="grows", batch_size=50, ack_wait_seconds=30)
    busy = asyncio.Event()
    release = asyncio.Event()
    batches: list[list[str]] = []

    async def handler(batch: Deliveries) -> None:
        batches.append([d.message.event_id for d in batch])
        busy.set()
        await release.wait()

    async def delivered_all(count: int) -> bool:
        info = await bus.js.consumer_info(spec.stream, spec.durable)
        return info.num_pending == 0 and info.num_ack_pending == count

    await bus.publish(f"t{unique}.call", call_event("first"), msg_id="first")
    async with consuming(bus, spec, handler):
        await eventually(busy.is_set, what="the first batch in hand")
        for i in range(30):
            await bus.publish(f"t{unique}.call", call_event(f"m{i}"), msg_id=f"m{i}")
        await eventually(lambda: delivered_all(31), what="the 30 delivered to the consumer")
        await bus.nc.flush()  # what the server sent before its PONG has reached this process
        release.set()
        await eventually(lambda: settled(bus, spec), what="all handled")

    sent = [f"m{i}" for i in range(30)]
    assert [event for batch in batches for event in batch] == ["first", *sent]  # each once, in order
    # The server counts a message delivered once it sent it, and the flush only brings it to the
    # client's queue: on a loaded machine the last one or two may reach the buffer after the handler
    # returns and make a batch of their own. Without the growth there would be 30 batches of one.
    assert batches[0] == ["first"]
    assert len(batches) <= 3
    assert len(batches[1]) >= 25, batches


async def test_messages_delivered_but_not_handled_at_stop_go_back_at_once(
    nats_server: NatsServer, unique: str, eventually: Any, call_event: Any
) -> None:
    """A stopping replica hands back what it holds beyond the batch in hand: another replica gets it
    now, not after the ack wait."""
    first = await Bus.connect(nats_server.url, name="first", timeout=5)
    second = await Bus.connect(nats_server.url, name="second", timeout=5)
    try:
        await first.ensure_streams([stream_spec(unique)])
        spec = consumer_spec(unique, durable="handback", batch_size=5, ack_wait_seconds=60)
        for i in range(20):
            await first.publish(f"t{unique}.call", call_event(f"h{i}"), msg_id=f"h{i}")
        stop = asyncio.Event()
        handled: list[str] = []

        async def stops(batch: Deliveries) -> None:
            handled.extend(d.message.event_id for d in batch)
            stop.set()  # the replica stops after its first batch

        await asyncio.wait_for(first.consume(spec, stops, stop), 5)
        assert len(handled) == 5
        rest: list[str] = []

        async def collects(batch: Deliveries) -> None:
            rest.extend(d.message.event_id for d in batch)

        async with consuming(second, spec, collects):
            # Well within the 60 s ack wait: the rest was nak'ed, not left to time out.
            await eventually(lambda: len(rest) == 15, timeout=10, what="the rest handled by the other")
        assert sorted(handled + rest) == sorted(f"h{i}" for i in range(20))
    finally:
        await first.close()
        await second.close()


async def test_trace_context_travels_from_publisher_to_handler(
    bus: Bus, unique: str, eventually: Any, call_event: Any, spans: Any
) -> None:
    await bus.ensure_streams([stream_spec(unique)])
    spec = consumer_spec(unique, durable="traced")
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("gateway: call offered") as publish_span:
        await bus.publish(f"t{unique}.call", call_event("traced-1"), msg_id="traced-1")
    trace_id = publish_span.get_span_context().trace_id
    seen: list[tuple[dict[str, str], int]] = []

    async def handler(batch: Deliveries) -> None:
        current = trace.get_current_span().get_span_context()
        seen.extend((dict(d.headers), current.span_id) for d in batch)

    async with consuming(bus, spec, handler):
        await eventually(lambda: len(seen) == 1, what="the message handled")

    headers, handler_span_id = seen[0]
    assert headers["traceparent"].split("-")[1] == f"{trace_id:032x}"
    consume = [s for s in spans.get_finished_spans() if s.name == f"consume {spec.durable}"]
    assert len(consume) == 1
    span = consume[0]
    assert span.context.span_id == handler_span_id, "the handler runs inside the consume span"
    assert span.kind == trace.SpanKind.CONSUMER
    continued = span.context.trace_id == trace_id
    linked = any(link.context.trace_id == trace_id for link in span.links)
    assert continued or linked


# --- connection failures -------------------------------------------------------------------------


async def test_connect_gives_up_with_a_clear_error_when_nothing_listens(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(BusError) as raised:
        # The outer limit turns a connect that never gives up into a failure instead of a hang.
        await asyncio.wait_for(Bus.connect(url, name="nobody", timeout=1.5), 10)
    elapsed = time.monotonic() - started

    assert 1.4 < elapsed < 4
    message = str(raised.value)
    assert url in message
    assert "not reachable" in message
    assert "\n" not in message
    retries = [r for r in caplog.records if "not reachable" in r.getMessage() and url in r.getMessage()]
    assert len(retries) >= 2, "each failed attempt is logged"


async def test_publish_waits_for_a_restarted_server_and_check_follows_it(
    own_nats: NatsServer, unique: str, eventually: Any, call_event: Any
) -> None:
    bus = await Bus.connect(own_nats.url, name="restart", timeout=5)
    try:
        await bus.ensure_streams([stream_spec(unique)])
        await bus.publish(f"t{unique}.call", call_event("before"), msg_id="before")
        await bus.check()

        await asyncio.to_thread(own_nats.stop)
        await eventually(lambda: not bus.is_connected, what="the client to notice")
        with pytest.raises(NotReadyError):
            await bus.check()

        async def restart() -> None:
            await asyncio.sleep(0.5)
            await asyncio.to_thread(own_nats.start)

        restarting = asyncio.create_task(restart())
        ack = await bus.publish(f"t{unique}.call", call_event("during"), msg_id="during", timeout=15)
        await restarting

        assert ack.stream == f"T_{unique}"
        assert ack.seq == 2, "the stream (file storage) survived the restart"
        await bus.check()
    finally:
        await bus.close()


async def test_publish_gives_up_after_its_timeout_when_the_server_stays_down(
    own_nats: NatsServer, unique: str, eventually: Any, call_event: Any
) -> None:
    bus = await Bus.connect(own_nats.url, name="down", timeout=5)
    try:
        await bus.ensure_streams([stream_spec(unique)])
        await asyncio.to_thread(own_nats.stop)
        await eventually(lambda: not bus.is_connected, what="the client to notice")
        started = time.monotonic()
        with pytest.raises(BusError, match=f"publish to t{unique}.call failed"):
            await bus.publish(f"t{unique}.call", call_event("lost"), msg_id="lost", timeout=2)
        assert time.monotonic() - started < 5
    finally:
        await bus.close()


async def test_publish_to_a_subject_no_stream_covers_fails_after_its_timeout(bus: Bus, unique: str) -> None:
    started = time.monotonic()
    with pytest.raises(BusError, match=f"publish to nostream{unique}.x failed"):
        await bus.publish(f"nostream{unique}.x", ev.CallEvent(event_id="x"), msg_id="x", timeout=0.5)
    assert time.monotonic() - started < 3


async def test_a_consumer_keeps_going_across_a_server_restart(
    own_nats: NatsServer, unique: str, eventually: Any, call_event: Any
) -> None:
    bus = await Bus.connect(own_nats.url, name="restart-consumer", timeout=5)
    try:
        await bus.ensure_streams([stream_spec(unique)])
        spec = consumer_spec(unique, durable="survivor")
        handled: list[str] = []

        async def handler(batch: Deliveries) -> None:
            handled.extend(d.message.event_id for d in batch)

        async with consuming(bus, spec, handler):
            await bus.publish(f"t{unique}.call", call_event("before"), msg_id="before")
            await eventually(lambda: handled == ["before"], what="the first message handled")

            await asyncio.to_thread(own_nats.stop)
            await eventually(lambda: not bus.is_connected, what="the client to notice")
            await asyncio.to_thread(own_nats.start)
            await bus.publish(f"t{unique}.call", call_event("after"), msg_id="after", timeout=15)
            await eventually(lambda: handled == ["before", "after"], timeout=10, what="handled after restart")
    finally:
        await bus.close()
