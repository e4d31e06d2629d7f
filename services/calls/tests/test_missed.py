"""Missed calls and callbacks: grouping, resolution, order independence, the events on the bus, the API."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select

from telecrm.calls.v1 import calls_pb2, calls_pb2_grpc
from telecrm.calls.v1 import missed_calls_pb2 as missed_pb
from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_calls import grpc as calls_grpc
from telecrm_calls import outbox
from telecrm_calls.access import CallsAccess
from telecrm_calls.api import calls_router
from telecrm_calls.missed import (
    STATES,
    MissedCallLog,
    MissedCallQuery,
    MissedInput,
    Rang,
    ResolvingInput,
    customer_key,
    fold_items,
    is_missed,
    is_resolving,
)
from telecrm_calls.missed_api import missed_calls_router
from telecrm_calls.models import OutboxMessage
from telecrm_calls.outbox import OutboxPublisher
from telecrm_calls.service import CallLogService, build_record
from telecrm_calls.settings import CallsSettings
from telecrm_calls.testing import T0, CallScript, stream_messages
from telecrm_common.app import http_app
from telecrm_common.bus import Bus, BusError, InvalidMessage
from telecrm_common.db import Database
from telecrm_common.events import (
    STREAMS,
    call_event_subject,
    decode_missed_call_event,
    missed_call_subject,
    missed_calls_consumer,
)
from telecrm_common.grpc import GrpcServer, channel
from telecrm_devstack.processes import ManagedProcess, free_port, wait_http_ok
from telecrm_devstack.testing import TEST_AUTH_SECRET

SECRET = "test-cursor-secret"
NUMBER = "+74993690439"
OTHER = "+15551234567"


# --- calls as the gateway reports them -------------------------------------------------------------


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def missed(
    call_id: str,
    minutes: float,
    caller: str = NUMBER,
    *,
    rings: Sequence[str] = ("101",),
    employee_id: str = "",
    name: str = "",
) -> list[ev.CallEvent]:
    """An inbound call that rang ``rings`` and that the caller gave up on after 20 s."""
    call = CallScript(call_id, start=at(minutes), caller=caller, extension=rings[0], employee_id=employee_id)
    if name:
        call.caller.display_name = name
    return [
        call.offered(),
        *(call.ringing(0.1 * (n + 1), extension) for n, extension in enumerate(rings)),
        call.ended(20, ev.DISPOSITION_MISSED, sip_status=487, q850=16, hangup_by=ev.HANGUP_BY_CALLER),
    ]


def answered_inbound(
    call_id: str, minutes: float, caller: str = NUMBER, extension: str = "102"
) -> list[ev.CallEvent]:
    """The customer calls again and is answered after 5 s."""
    script = CallScript(call_id, start=at(minutes), caller=caller, extension=extension, employee_id="emp-2")
    return script.answered_call(ring=5, talk=60)


def callback(
    call_id: str, minutes: float, callee: str = NUMBER, extension: str = "103"
) -> list[ev.CallEvent]:
    """Our extension calls the number back; the customer answers after 7 s."""
    script = CallScript(
        call_id,
        start=at(minutes),
        direction=ev.DIRECTION_OUTBOUND,
        caller=extension,
        callee=callee,
        extension=extension,
        employee_id="emp-3",
    )
    return script.answered_call(ring=7, talk=30)


def unanswered_callback(call_id: str, minutes: float, callee: str = NUMBER) -> list[ev.CallEvent]:
    script = CallScript(
        call_id,
        start=at(minutes),
        direction=ev.DIRECTION_OUTBOUND,
        caller="103",
        callee=callee,
        extension="103",
    )
    return [
        script.offered(),
        script.ringing(1),
        script.ended(30, ev.DISPOSITION_NO_ANSWER, sip_status=480, hangup_by=ev.HANGUP_BY_SYSTEM),
    ]


def internal(call_id: str, minutes: float) -> list[ev.CallEvent]:
    """An answered internal call that happens to carry the customer's number (a consultation)."""
    script = CallScript(
        call_id,
        start=at(minutes),
        direction=ev.DIRECTION_INTERNAL,
        caller=NUMBER,
        callee="102",
        extension="102",
    )
    return script.answered_call(ring=2, talk=10)


# --- fixtures and helpers ---------------------------------------------------------------------------


@pytest.fixture
def log(db: Database) -> MissedCallLog:
    return MissedCallLog(db, cursor_secret=SECRET)


async def items(log: MissedCallLog, **filters: Any) -> list[dict[str, Any]]:
    """Every item (all states unless told), as comparable values without the ids, oldest first."""
    query = MissedCallQuery(**{"states": STATES, "limit": 500, **filters})
    page = await log.list_missed_calls(query)
    assert page.next_cursor is None
    return sorted(
        (
            {
                "number": e.item.number,
                "e164": e.item.e164,
                "caller_name": e.item.caller_name,
                "state": e.item.state,
                "count": e.item.missed_count,
                "calls": e.call_ids,
                "first": e.item.first_missed_at,
                "last": e.item.last_missed_at,
                "extensions": e.extensions,
                "employees": e.employee_ids,
                "resolved_at": e.item.resolved_at,
                "resolving_call": e.item.resolving_call_id,
                "resolving_direction": e.item.resolving_direction,
                "resolving_extension": e.item.resolving_extension,
                "resolving_employee": e.item.resolving_employee_id,
                "callback_ms": e.item.callback_ms,
            }
            for e in page.items
        ),
        key=lambda item: (item["first"], item["calls"]),
    )


async def outbox_events(db: Database) -> list[tuple[str, missed_pb.MissedCallEvent]]:
    async with db.session() as session:
        stmt = select(OutboxMessage).where(OutboxMessage.subject.startswith("calls.missed."))
        rows = (await session.scalars(stmt.order_by(OutboxMessage.seq))).all()
    return [(row.subject, missed_pb.MissedCallEvent.FromString(row.payload)) for row in rows]


def kinds(events: Sequence[tuple[str, missed_pb.MissedCallEvent]]) -> list[tuple[str, int, int]]:
    """(kind, state, count) of each event."""
    result = []
    for _, event in events:
        kind = event.WhichOneof("kind")
        assert kind is not None
        item = getattr(event, kind)
        result.append((kind, item.state, item.missed_count))
    return result


OPEN = missed_pb.MISSED_CALL_STATE_OPEN
RESOLVED = missed_pb.MISSED_CALL_STATE_RESOLVED
DISCARDED = missed_pb.MISSED_CALL_STATE_DISCARDED


# --- grouping ---------------------------------------------------------------------------------------


async def test_missed_calls_from_one_number_are_one_item(service: CallLogService, log: MissedCallLog) -> None:
    await service.ingest(missed("m-1", 0, rings=("101", "102"), employee_id="emp-1", name="Savitskaya"))
    await service.ingest(missed("m-2", 10, rings=("101",)))
    await service.ingest(missed("m-3", 20, rings=("104",), employee_id="emp-4"))
    await service.ingest(missed("m-other", 5, caller=OTHER))

    found = await items(log)
    assert len(found) == 2
    item = found[0]
    assert item["calls"] == ["m-1", "m-2", "m-3"]
    assert (item["count"], item["state"], item["number"], item["e164"]) == (3, "open", NUMBER, NUMBER)
    assert (item["first"], item["last"]) == (at(0), at(20))
    assert item["extensions"] == ["101", "102", "104"]
    assert item["employees"] == ["emp-1", "emp-4"]
    assert item["caller_name"] == "Savitskaya"
    assert (item["resolving_call"], item["callback_ms"]) == (None, None)
    assert (found[1]["calls"], found[1]["number"]) == (["m-other"], OTHER)

    events = await outbox_events(service.db)
    assert kinds(events) == [
        ("created", OPEN, 1),
        ("updated", OPEN, 2),
        ("updated", OPEN, 3),
        ("created", OPEN, 1),
    ]
    subject, event = events[2]
    assert subject == "calls.missed.updated" == missed_call_subject(event)
    assert list(event.updated.call_ids) == ["m-1", "m-2", "m-3"]
    assert list(event.updated.extensions) == ["101", "102", "104"]
    assert event.event_id == f"{event.updated.id}:updated:open:3:3"


async def test_only_missed_inbound_calls_with_a_number_open_items(
    service: CallLogService, log: MissedCallLog
) -> None:
    busy = CallScript("busy-in", start=at(0))
    await service.ingest([busy.offered(), busy.ended(3, ev.DISPOSITION_BUSY, sip_status=486)])
    await service.ingest(unanswered_callback("no-answer-out", 1))
    live = CallScript("ringing-in", start=at(2))
    await service.ingest([live.offered(), live.ringing(0.2)])  # not ended yet: not missed yet
    await service.ingest(missed("anonymous", 3, caller="anonymous"))  # cannot be called back
    internal_missed = CallScript(
        "missed-internal", start=at(4), direction=ev.DIRECTION_INTERNAL, caller="105"
    )
    await service.ingest(internal_missed.missed_call())
    assert await items(log) == []

    await service.ingest(
        [live.ended(20, ev.DISPOSITION_MISSED, sip_status=487, hangup_by=ev.HANGUP_BY_CALLER)]
    )
    assert [item["calls"] for item in await items(log)] == [["ringing-in"]]


async def test_a_number_without_e164_goes_by_the_raw_number(
    service: CallLogService, log: MissedCallLog
) -> None:
    await service.ingest(missed("raw-1", 0, caller="84993690439"))
    await service.ingest(missed("raw-2", 1, caller="84993690439"))
    await service.ingest(missed("e164-1", 2, caller=NUMBER))  # another key: another item
    found = await items(log)
    assert [(i["number"], i["e164"], i["count"]) for i in found] == [
        ("84993690439", None, 2),
        (NUMBER, NUMBER, 1),
    ]

    await service.ingest(callback("raw-back", 30, callee="84993690439"))
    found = await items(log)
    assert [(i["number"], i["state"]) for i in found] == [("84993690439", "resolved"), (NUMBER, "open")]


# --- resolution --------------------------------------------------------------------------------------


async def test_the_customer_calling_again_resolves(service: CallLogService, log: MissedCallLog) -> None:
    await service.ingest(missed("m-1", 0))
    await service.ingest(missed("m-2", 10))
    await service.ingest(answered_inbound("in-1", 60))

    (item,) = await items(log)
    assert (item["state"], item["count"], item["calls"]) == ("resolved", 2, ["m-1", "m-2"])
    assert (item["resolving_call"], item["resolving_direction"]) == ("in-1", "inbound")
    assert (item["resolving_extension"], item["resolving_employee"]) == ("102", "emp-2")
    answered_at = at(60) + timedelta(seconds=5)
    assert item["resolved_at"] == answered_at
    # Time to callback runs from the first missed call.
    assert item["callback_ms"] == (answered_at - at(0)) // timedelta(milliseconds=1) == 3_605_000

    events = await outbox_events(service.db)
    assert kinds(events) == [("created", OPEN, 1), ("updated", OPEN, 2), ("resolved", RESOLVED, 2)]
    resolved = events[-1][1].resolved
    assert events[-1][0] == "calls.missed.resolved"
    assert (resolved.resolving_call_id, resolved.resolving_direction) == ("in-1", ev.DIRECTION_INBOUND)
    assert resolved.time_to_callback_seconds == 3605.0
    assert resolved.resolved_at.ToDatetime().replace(tzinfo=answered_at.tzinfo) == answered_at


async def test_our_callback_resolves(service: CallLogService, log: MissedCallLog) -> None:
    await service.ingest(missed("m-1", 0))
    await service.ingest(callback("out-1", 15))

    (item,) = await items(log)
    assert (item["state"], item["resolving_call"], item["resolving_direction"]) == (
        "resolved",
        "out-1",
        "outbound",
    )
    assert (item["resolving_extension"], item["resolving_employee"]) == ("103", "emp-3")
    assert item["callback_ms"] == 15 * 60_000 + 7_000


async def test_internal_and_unanswered_calls_resolve_nothing(
    service: CallLogService, log: MissedCallLog
) -> None:
    await service.ingest(missed("m-1", 0))
    await service.ingest(internal("internal-1", 5))
    await service.ingest(unanswered_callback("out-no-answer", 6))
    await service.ingest(callback("out-other-number", 7, callee=OTHER))
    await service.ingest(answered_inbound("in-other-number", 8, caller=OTHER))
    live = CallScript("out-live", start=at(9), direction=ev.DIRECTION_OUTBOUND, caller="103", callee=NUMBER)
    await service.ingest([live.offered(), live.answered(3)])  # answered, not ended yet

    (item,) = await items(log)
    assert (item["state"], item["calls"]) == ("open", ["m-1"])
    assert kinds(await outbox_events(service.db)) == [("created", OPEN, 1)]

    await service.ingest([live.ended(40, ev.DISPOSITION_ANSWERED, sip_status=200, answered_at=3)])
    (item,) = await items(log)
    assert (item["state"], item["resolving_call"]) == ("resolved", "out-live")


async def test_an_answer_resolves_only_the_calls_before_it(
    service: CallLogService, log: MissedCallLog
) -> None:
    await service.ingest(missed("m-1", 0))
    await service.ingest(callback("out-1", 5))
    await service.ingest(missed("m-2", 10))
    await service.ingest(missed("m-3", 11))

    found = await items(log)
    assert [(i["calls"], i["state"], i["resolving_call"]) for i in found] == [
        (["m-1"], "resolved", "out-1"),
        (["m-2", "m-3"], "open", None),
    ]
    open_items = await items(log, states=("open",))
    assert [i["calls"] for i in open_items] == [["m-2", "m-3"]]


# --- duplicates, late and out-of-order events -------------------------------------------------------


def scenario() -> list[list[ev.CallEvent]]:
    """Two numbers; missed calls, answers both ways, and calls that resolve nothing."""
    return [
        missed("s-m1", 0, rings=("101", "102"), employee_id="emp-1"),
        missed("s-m2", 3, rings=("102",)),
        missed("s-o1", 4, caller=OTHER),
        internal("s-int", 5),
        unanswered_callback("s-na", 6),
        answered_inbound("s-in", 8),
        answered_inbound("s-in-other", 10, caller=OTHER),
        missed("s-m3", 12, rings=("104",), employee_id="emp-4"),
        callback("s-cb", 20),
        missed("s-m4", 25),
        missed("s-m5", 26),
        missed("s-o2", 30, caller=OTHER),
        callback("s-cb-other", 31, callee=OTHER),
        missed("s-m6", 40),
    ]


EXPECTED = [
    (["s-m1", "s-m2"], "resolved", "s-in"),
    (["s-o1"], "resolved", "s-in-other"),
    (["s-m3"], "resolved", "s-cb"),
    (["s-m4", "s-m5", "s-m6"], "open", None),
    (["s-o2"], "resolved", "s-cb-other"),
]


async def latest_events_match_the_items(db: Database, log: MissedCallLog) -> None:
    """A consumer that keeps the latest event of each item sees the items as they are."""
    latest: dict[str, missed_pb.MissedCall] = {}
    for _, event in await outbox_events(db):
        kind = event.WhichOneof("kind")
        assert kind is not None
        item = getattr(event, kind)
        assert item.version >= latest.get(item.id, item).version
        latest[item.id] = item
    page = await log.list_missed_calls(MissedCallQuery(states=STATES, limit=500))
    stored = {e.item.id: (list(e.call_ids), e.item.state, e.item.resolving_call_id or "") for e in page.items}
    alive = {
        item_id: (
            list(item.call_ids),
            {OPEN: "open", RESOLVED: "resolved"}[item.state],
            item.resolving_call_id,
        )
        for item_id, item in latest.items()
        if item.state != DISCARDED
    }
    assert alive == stored


@pytest.mark.parametrize("seed", range(5))
async def test_duplicates_and_any_order_give_the_same_items(
    service: CallLogService, log: MissedCallLog, seed: int
) -> None:
    calls = scenario()
    rng = random.Random(seed)
    events = [e for call in calls for e in call]
    rng.shuffle(events)
    events += rng.sample(events, 15)  # duplicates, late
    batches: list[list[ev.CallEvent]] = []
    while events:
        size = rng.randint(1, 6)
        batches.append(events[:size])
        events = events[size:]
    for batch in batches:
        await service.ingest(batch)
    shuffled = await items(log)
    await latest_events_match_the_items(service.db, log)

    async with service.db.session() as session:  # the same calls again, one at a time, in order
        for model in reversed(OutboxMessage.metadata.sorted_tables):
            await session.execute(model.delete())
    for call in calls:
        await service.ingest(call)
    in_order = await items(log)

    assert [(i["calls"], i["state"], i["resolving_call"]) for i in in_order] == EXPECTED
    assert shuffled == in_order
    assert in_order[0]["extensions"] == ["101", "102"]
    assert in_order[0]["employees"] == ["emp-1"]


@pytest.mark.parametrize("seed", range(3))
async def test_random_histories_match_the_pure_fold(
    service: CallLogService, log: MissedCallLog, seed: int
) -> None:
    """Random calls of three numbers, events shuffled into random batches: the stored items are what
    :func:`fold_items` makes of the final records."""
    rng = random.Random(100 + seed)
    numbers = [NUMBER, OTHER, "84951112233"]
    makers = [missed, missed, missed, answered_inbound, callback, unanswered_callback]
    calls: list[list[ev.CallEvent]] = []
    for n in range(40):
        make = rng.choice(makers)
        number = rng.choice(numbers)
        minute = rng.randrange(0, 300)
        calls.append(make(f"h-{n}", minute, number))
    events = [e for call in calls for e in call]
    rng.shuffle(events)
    while events:
        size = rng.randint(1, 12)
        await service.ingest(events[:size])
        events = events[size:]

    records = [build_record(call) for call in calls]
    expected = []
    for number in numbers:
        missed_inputs = [
            MissedInput(r.call_id, r.started_at, r.caller_number, r.caller_e164, r.caller_name, Rang())
            for r in records
            if is_missed(r) and customer_key(r) == number
        ]
        answers = [
            ResolvingInput(
                r.call_id, r.started_at, r.answered_at, r.direction or "", r.extension, r.employee_id
            )
            for r in records
            if is_resolving(r) and customer_key(r) == number
        ]
        expected += [
            (list(i.call_ids), i.state, i.resolving_call_id, i.callback_ms)
            for i in fold_items(number, missed_inputs, answers)
        ]
    found = [(i["calls"], i["state"], i["resolving_call"], i["callback_ms"]) for i in await items(log)]
    assert sorted(found) == sorted(expected)
    await latest_events_match_the_items(service.db, log)


async def test_refolding_a_call_does_not_count_it_twice(service: CallLogService, log: MissedCallLog) -> None:
    events = missed("m-1", 0)
    await service.ingest(events)
    await service.ingest(events)  # redelivered
    copies = [ev.CallEvent.FromString(e.SerializeToString()) for e in events]
    await service.ingest(copies)
    (item,) = await items(log)
    assert (item["count"], item["calls"]) == (1, ["m-1"])

    # A late event of the same call (another extension of the ring group rang) refolds it: same item.
    late = CallScript("m-1", start=at(0))
    late.sequence = 10
    await service.ingest([late.ringing(0.5, "109")])
    (item,) = await items(log)
    assert (item["count"], item["extensions"]) == (1, ["101", "109"])
    assert kinds(await outbox_events(service.db)) == [("created", OPEN, 1), ("updated", OPEN, 1)]


async def test_a_missed_call_older_than_a_known_answer_is_created_resolved(
    service: CallLogService, log: MissedCallLog
) -> None:
    await service.ingest(callback("out-1", 10))
    await service.ingest(missed("m-late", 0))

    (item,) = await items(log)
    assert (item["state"], item["resolving_call"], item["callback_ms"]) == (
        "resolved",
        "out-1",
        10 * 60_000 + 7_000,
    )
    # Created already resolved: both events, so a consumer of either sees it.
    assert kinds(await outbox_events(service.db)) == [("created", RESOLVED, 1), ("resolved", RESOLVED, 1)]

    await service.ingest(missed("m-even-older", -5))  # joins the item, which stays resolved
    (item,) = await items(log)
    assert (item["calls"], item["state"], item["callback_ms"]) == (
        ["m-even-older", "m-late"],
        "resolved",
        907_000,
    )


async def test_a_late_answer_splits_the_open_item(service: CallLogService, log: MissedCallLog) -> None:
    await service.ingest(missed("m-1", 0) + missed("m-2", 10))
    (before,) = (await log.list_missed_calls(MissedCallQuery())).items
    await service.ingest(callback("out-between", 5))

    found = await items(log)
    assert [(i["calls"], i["state"], i["resolving_call"]) for i in found] == [
        (["m-1"], "resolved", "out-between"),
        (["m-2"], "open", None),
    ]
    # The item keeps its id with its earliest call; the rest is a new item.
    page = await log.list_missed_calls(MissedCallQuery(states=("resolved",)))
    assert page.items[0].item.id == before.item.id
    assert kinds((await outbox_events(service.db))[-2:]) == [("resolved", RESOLVED, 1), ("created", OPEN, 1)]


async def test_a_call_that_turns_out_answered_leaves_its_item(
    service: CallLogService, log: MissedCallLog
) -> None:
    """The ended event did not say; a late answered event makes the call answered: the item goes."""
    script = CallScript("m-x", start=at(0))
    offered, ended = script.offered(), script.ended(30, sip_status=487, hangup_by=ev.HANGUP_BY_CALLER)
    await service.ingest([offered, ended])
    assert [i["calls"] for i in await items(log)] == [["m-x"]]

    await service.ingest([script.answered(4)])
    assert await items(log) == []
    events = await outbox_events(service.db)
    assert kinds(events) == [("created", OPEN, 1), ("updated", DISCARDED, 1)]
    await latest_events_match_the_items(service.db, log)


async def test_concurrent_replicas_fold_a_number_together(db: Database, log: MissedCallLog) -> None:
    """Missed calls and their answers handled at the same time by two replicas: nothing is lost."""
    replica_a = CallLogService(db, cursor_secret=SECRET)
    replica_b = CallLogService(db, cursor_secret=SECRET)
    numbers = [f"+7499369{n:04d}" for n in range(8)]
    missed_calls = [
        missed(f"c-m-{n}-{k}", k, caller=number) for n, number in enumerate(numbers) for k in range(3)
    ]
    answers = [callback(f"c-cb-{n}", 5, callee=number) for n, number in enumerate(numbers)]
    late_missed = [missed(f"c-late-{n}", 6, caller=number) for n, number in enumerate(numbers)]
    await asyncio.gather(
        *(replica_a.ingest(call) for call in missed_calls),
        *(replica_b.ingest(call) for call in answers),
        *(replica_b.ingest(call) for call in late_missed),
    )
    found = await items(log)
    assert len(found) == 16
    for n, number in enumerate(numbers):
        mine = [i for i in found if i["number"] == number]
        assert [(i["calls"], i["state"]) for i in mine] == [
            ([f"c-m-{n}-0", f"c-m-{n}-1", f"c-m-{n}-2"], "resolved"),
            ([f"c-late-{n}"], "open"),
        ]


def test_fold_is_a_function_of_the_sets() -> None:
    def m(call_id: str, minute: int) -> MissedInput:
        return MissedInput(call_id, at(minute), NUMBER, NUMBER, None, Rang(("101",), ()))

    def r(call_id: str, minute: int) -> ResolvingInput:
        return ResolvingInput(call_id, at(minute), at(minute) + timedelta(seconds=3), "outbound", "103", None)

    missed_calls = [m("a", 0), m("b", 2), m("c", 2), m("d", 9)]
    answers = [r("x", 2), r("y", 5)]
    expected = fold_items(NUMBER, missed_calls, answers)
    assert [(i.call_ids, i.state, i.resolving_call_id) for i in expected] == [
        (("a",), "resolved", "x"),
        (("b", "c"), "resolved", "y"),  # started with the answer x, not before it
        (("d",), "open", None),
    ]
    assert expected[1].callback_ms == 3 * 60_000 + 3_000
    rng = random.Random(1)
    for _ in range(20):
        shuffled_missed = [*rng.sample(missed_calls, len(missed_calls)), missed_calls[0]]
        assert fold_items(NUMBER, shuffled_missed, rng.sample(answers, len(answers))) == expected


# --- events on the bus ---------------------------------------------------------------------------------


@pytest.fixture
async def bus(nats_server: Any) -> AsyncIterator[Bus]:
    bus = await Bus.connect(nats_server.url, name="calls-missed-tests", timeout=10)
    await bus.ensure_streams(STREAMS)
    yield bus
    await bus.close()


async def stream_events(bus: Bus, number: str) -> list[tuple[str, missed_pb.MissedCallEvent]]:
    """Every missed-call event of the CALLS stream about the number, in stream order."""

    def about(event: missed_pb.MissedCallEvent) -> bool:
        return bool(getattr(event, event.WhichOneof("kind") or "created").number == number)

    return await stream_messages(bus, "calls.missed.>", decode_missed_call_event, about)


async def test_events_are_published_after_commit_once(db: Database, bus: Bus) -> None:
    number = f"+7495{uuid.uuid4().int % 10**7:07d}"
    tag = uuid.uuid4().hex[:8]
    publisher = OutboxPublisher(db, bus, interval=0.2)
    service = CallLogService(db, cursor_secret=SECRET, on_missed_events=publisher.wake)
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    try:
        await service.ingest(missed(f"{tag}-1", 0, caller=number))
        await service.ingest(missed(f"{tag}-2", 1, caller=number))
        await service.ingest(callback(f"{tag}-cb", 30, callee=number))
        deadline = asyncio.get_running_loop().time() + 10
        while len(published := await stream_events(bus, number)) < 3:
            assert asyncio.get_running_loop().time() < deadline, published
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)

    assert [subject for subject, _ in published] == [
        "calls.missed.created",
        "calls.missed.updated",
        "calls.missed.resolved",
    ]
    assert kinds(published) == [("created", OPEN, 1), ("updated", OPEN, 2), ("resolved", RESOLVED, 2)]
    resolved = published[-1][1].resolved
    assert (resolved.resolving_call_id, resolved.resolving_direction) == (f"{tag}-cb", ev.DIRECTION_OUTBOUND)
    assert resolved.time_to_callback_seconds == 30 * 60 + 7
    async with db.session() as session:
        assert await outbox.size(session) == 0

    # A publisher that died between publishing and deleting publishes the rows again: the stream keeps one.
    async with db.session() as session:
        await outbox.add(
            session,
            [outbox.row(subject, event, event.event_id) for subject, event in published],
        )
    assert await publisher.publish_pending() == 3
    assert [e.event_id for _, e in await stream_events(bus, number)] == [e.event_id for _, e in published]


async def test_a_failing_publish_keeps_the_rest_for_later(db: Database, bus: Bus) -> None:
    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        async def publish_serialized(self, messages: Sequence[Any], **kwargs: Any) -> int:
            self.calls += 1
            if self.calls == 1:  # the second message is not acknowledged: only the first counts
                return await bus.publish_serialized(messages[:1], **kwargs)
            return await bus.publish_serialized(messages, **kwargs)

    service = CallLogService(db, cursor_secret=SECRET)
    number = f"+7495{uuid.uuid4().int % 10**7:07d}"
    await service.ingest(missed("f-1", 0, caller=number) + missed("f-2", 1, caller=number, rings=("102",)))
    await service.ingest(missed("f-3", 2, caller=number))
    await service.ingest(missed("f-4", 3, caller=number))
    publisher = OutboxPublisher(db, Flaky(), interval=0.05)  # type: ignore[arg-type]
    async with db.session() as session:
        waiting = await outbox.size(session)  # missed-call and call-record events
    with pytest.raises(BusError):
        await publisher.publish_pending()
    async with db.session() as session:
        assert await outbox.size(session) == waiting - 1  # the first was published and removed

    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while len(published := await stream_events(bus, number)) < 3:
            assert asyncio.get_running_loop().time() < deadline, published
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert kinds(published) == [("created", OPEN, 2), ("updated", OPEN, 3), ("updated", OPEN, 4)]


async def test_the_consumer_contract(bus: Bus, db: Database) -> None:
    """What crm will bind to: a durable consumer of calls.missed.* decoding MissedCallEvent."""
    number = f"+7495{uuid.uuid4().int % 10**7:07d}"
    service = CallLogService(db, cursor_secret=SECRET)
    await service.ingest(missed("k-1", 0, caller=number))
    await OutboxPublisher(db, bus).publish_pending()
    spec = missed_calls_consumer(f"crm-test-{uuid.uuid4().hex[:8]}", fetch_timeout_seconds=0.2)
    got: list[missed_pb.MissedCallEvent] = []
    stop = asyncio.Event()

    async def handle(deliveries: Sequence[Any]) -> None:
        got.extend(d.message for d in deliveries if d.message.created.number == number)
        if got:
            stop.set()

    await asyncio.wait_for(bus.consume(spec, handle, stop), 15)
    assert [e.created.call_ids for e in got] == [["k-1"]]


def test_decoder_refuses_what_is_not_a_missed_call_event() -> None:
    event = missed_pb.MissedCallEvent(event_id="e", created=missed_pb.MissedCall(id="i"))
    assert decode_missed_call_event("calls.missed.created", event.SerializeToString()) == event
    with pytest.raises(InvalidMessage):
        decode_missed_call_event("calls.missed.resolved", event.SerializeToString())
    with pytest.raises(InvalidMessage):
        decode_missed_call_event(
            "calls.missed.created", missed_pb.MissedCallEvent(event_id="e").SerializeToString()
        )
    with pytest.raises(InvalidMessage):
        decode_missed_call_event("calls.missed.created", b"\x0a\xff\xff")
    with pytest.raises(ValueError, match="kind"):
        missed_call_subject(missed_pb.MissedCallEvent(event_id="e"))


# --- REST and gRPC ---------------------------------------------------------------------------------------


@pytest.fixture
async def client(
    service: CallLogService, log: MissedCallLog, access: CallsAccess, admin_headers: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    app = http_app("calls", "", [calls_router(service, access), missed_calls_router(log, access)], {})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://calls", headers=admin_headers
    ) as client:
        yield client


@pytest.fixture
async def seeded(service: CallLogService) -> CallLogService:
    """Six numbers missed on 101 or 102 (emp-1 / emp-2), the first two called back."""
    for n in range(6):
        extension, employee = ("101", "emp-1") if n % 2 == 0 else ("102", "emp-2")
        number = f"+7499369{n:04d}"
        await service.ingest(missed(f"r-{n}", n, caller=number, rings=(extension,), employee_id=employee))
    await service.ingest(missed("r-0-again", 10, caller="+74993690000", rings=("101",), employee_id="emp-1"))
    await service.ingest(callback("r-cb-0", 20, callee="+74993690000"))
    await service.ingest(answered_inbound("r-in-1", 21, caller="+74993690001"))
    return service


async def test_rest_lists_open_items_by_default(client: httpx.AsyncClient, seeded: CallLogService) -> None:
    page = (await client.get("/missed-calls")).json()
    assert [i["call_ids"] for i in page["items"]] == [["r-5"], ["r-4"], ["r-3"], ["r-2"]]
    assert (page["total"], page["next_cursor"]) == (4, None)
    first = page["items"][0]
    assert first["number"] == first["e164"] == "+74993690005"
    assert (first["state"], first["missed_count"], first["extensions"], first["employee_ids"]) == (
        "open",
        1,
        ["102"],
        ["emp-2"],
    )
    assert (first["contact_id"], first["team_ids"], first["resolving_call_id"]) == (None, [], None)
    assert first["time_to_callback_seconds"] is None
    assert first["last_missed_at"] == "2025-03-14T09:31:53.589000Z"


async def test_rest_filters(client: httpx.AsyncClient, seeded: CallLogService) -> None:
    async def ids(**params: Any) -> list[list[str]]:
        response = await client.get("/missed-calls", params=params)
        assert response.status_code == 200, response.text
        return [i["call_ids"] for i in response.json()["items"]]

    assert await ids(state="resolved") == [["r-0", "r-0-again"], ["r-1"]]
    assert len(await ids(state="all")) == 6
    assert await ids(extension="101") == [["r-4"], ["r-2"]]
    assert await ids(employee_id="emp-2", state="all") == [["r-5"], ["r-3"], ["r-1"]]
    assert await ids(number="369-00-04") == [["r-4"]]
    assert await ids(state="all", **{"from": "2025-03-14T09:29:00Z", "to": "2025-03-14T09:31:00"}) == [
        ["r-4"],
        ["r-3"],
    ]
    assert await ids(extension="999") == []

    resolved = (await client.get("/missed-calls", params={"state": "resolved"})).json()["items"]
    assert (resolved[0]["resolving_call_id"], resolved[0]["resolving_direction"]) == ("r-cb-0", "outbound")
    assert resolved[0]["time_to_callback_seconds"] == 20 * 60 + 7
    assert (resolved[0]["resolving_extension"], resolved[0]["resolving_employee_id"]) == ("103", "emp-3")
    assert resolved[1]["resolving_direction"] == "inbound"
    assert resolved[1]["time_to_callback_seconds"] == 20 * 60 + 5


async def test_rest_pages(client: httpx.AsyncClient, seeded: CallLogService) -> None:
    params: dict[str, Any] = {"state": "all", "limit": 4}
    seen: list[str] = []
    totals = set()
    while True:
        page = (await client.get("/missed-calls", params=params)).json()
        seen += [i["id"] for i in page["items"]]
        totals.add(page["total"])
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert len(seen) == len(set(seen)) == 6
    assert totals == {6}

    calls_cursor = (await client.get("/calls", params={"limit": 1})).json()["next_cursor"]
    response = await client.get("/missed-calls", params={"cursor": calls_cursor})
    assert response.status_code == 400  # a cursor of another list
    assert response.json()["detail"].startswith("cursor: ")


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"state": "closed"}, ["query", "state"]),
        ({"limit": 0}, ["query", "limit"]),
        ({"number": "abc"}, ["query", "number"]),
        ({"from": "2025-03-14T10:00:00Z", "to": "2025-03-14T09:00:00Z"}, ["query", "to"]),
    ],
)
async def test_rest_bad_filters_answer_422(
    client: httpx.AsyncClient, params: dict[str, Any], loc: list[Any]
) -> None:
    response = await client.get("/missed-calls", params=params)
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [loc]


async def test_rest_one_item_with_its_calls(client: httpx.AsyncClient, seeded: CallLogService) -> None:
    (item,) = (await client.get("/missed-calls", params={"number": "3690000", "state": "all"})).json()[
        "items"
    ]
    body = (await client.get(f"/missed-calls/{item['id']}")).json()
    assert [c["call_id"] for c in body["calls"]] == ["r-0", "r-0-again"]
    assert all(c["disposition"] == "missed" for c in body["calls"])
    assert body["resolving_call"]["call_id"] == "r-cb-0"
    assert body["resolving_call"]["direction"] == "outbound"
    assert body["missed_count"] == 2

    response = await client.get("/missed-calls/nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "missed call 'nope' not found"}


async def test_grpc_list_missed_calls(
    service: CallLogService, log: MissedCallLog, seeded: CallLogService
) -> None:
    async def ok() -> None:
        return None

    server = GrpcServer(CallsSettings(grpc_port=0), service_names=[calls_grpc.SERVICE_NAME], checks={"d": ok})
    calls_grpc.add_to_server(server.server, service, log)
    await server.start()
    try:
        async with channel(f"127.0.0.1:{server.port}") as chan:
            stub = calls_pb2_grpc.CallLogStub(chan)
            response = await stub.ListMissedCalls(
                calls_pb2.ListMissedCallsRequest(extension="101", page_size=1)
            )
            assert response.total_size == 2
            assert [list(m.call_ids) for m in response.missed_calls] == [["r-4"]]
            response = await stub.ListMissedCalls(
                calls_pb2.ListMissedCallsRequest(
                    extension="101", page_size=1, page_token=response.next_page_token
                )
            )
            assert [list(m.call_ids) for m in response.missed_calls] == [["r-2"]]
            assert response.next_page_token == ""

            stamp = Timestamp()
            stamp.FromDatetime(at(5))
            response = await stub.ListMissedCalls(
                calls_pb2.ListMissedCallsRequest(states=[RESOLVED], last_missed_from=stamp)
            )
            (item,) = response.missed_calls
            assert (list(item.call_ids), item.state, item.resolving_call_id, item.resolving_direction) == (
                ["r-0", "r-0-again"],
                RESOLVED,
                "r-cb-0",
                ev.DIRECTION_OUTBOUND,
            )
            assert item.time_to_callback_seconds == 20 * 60 + 7

            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.ListMissedCalls(calls_pb2.ListMissedCallsRequest(page_token="garbage"))
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await server.stop(0)


# --- the real process -------------------------------------------------------------------------------------


@pytest.fixture
def process_db(database_factory: Any) -> str:
    """A fresh database for the process (made outside the event loop: the factory runs its own)."""
    url: str = database_factory("calls_missed_e2e")
    return url


@pytest.mark.e2e
async def test_service_process_tracks_and_publishes_missed_calls(
    nats_server: Any, process_db: str, tmp_path: Any, bus: Bus, admin_headers: dict[str, str]
) -> None:
    """main's wiring: the process folds missed calls, serves them and publishes their events."""
    http_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLS_")}
    env.update(
        CALLS_LOG_FORMAT="text",
        CALLS_DATABASE_URL=process_db,
        CALLS_NATS_URL=nats_server.url,
        CALLS_HTTP_PORT=str(http_port),
        CALLS_GRPC_PORT=str(free_port()),
        CALLS_CONSUMER_DURABLE=f"calls-missed-e2e-{uuid.uuid4().hex[:8]}",
        CALLS_SHUTDOWN_GRACE="5",
        TELECRM_AUTH_SECRET=TEST_AUTH_SECRET,
    )
    proc = ManagedProcess(
        "calls", [sys.executable, "-m", "telecrm_calls"], env=env, log_path=tmp_path / "calls.log"
    ).start()
    number = f"+7495{uuid.uuid4().int % 10**7:07d}"
    tag = uuid.uuid4().hex[:8]
    try:
        await asyncio.to_thread(wait_http_ok, f"http://127.0.0.1:{http_port}/readyz", 30, proc)
        for event in missed(f"{tag}-1", 0, caller=number) + callback(f"{tag}-cb", 3, callee=number):
            await bus.publish(call_event_subject(event), event, msg_id=event.event_id)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{http_port}", headers=admin_headers
        ) as client:
            deadline = asyncio.get_running_loop().time() + 15
            while True:
                page = (await client.get("/missed-calls", params={"state": "all", "number": number})).json()
                if page["items"] and page["items"][0]["state"] == "resolved":
                    break
                assert asyncio.get_running_loop().time() < deadline, page
                await asyncio.sleep(0.1)
        deadline = asyncio.get_running_loop().time() + 15
        while not any(subject == "calls.missed.resolved" for subject, _ in await stream_events(bus, number)):
            assert asyncio.get_running_loop().time() < deadline
    finally:
        proc.stop()
    assert page["items"][0]["resolving_call_id"] == f"{tag}-cb"
