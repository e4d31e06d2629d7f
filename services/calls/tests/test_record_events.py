"""The call record as a protobuf and the record events (calls.record.*): staged in the writer's
transaction, one revision each, published through the outbox to a real nats-server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from telecrm.calls.v1 import call_log_events_pb2 as record_pb
from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_calls import grpc as calls_grpc
from telecrm_calls.models import Call, OutboxMessage
from telecrm_calls.notes import CallNotesService
from telecrm_calls.outbox import OutboxPublisher
from telecrm_calls.record_events import call_proto, record_event_id, stage_record_event
from telecrm_calls.testing import stream_messages
from telecrm_common.bus import Bus, InvalidMessage
from telecrm_common.db import Database
from telecrm_common.events import STREAMS, call_record_subject, decode_call_record_event

T0 = datetime(2025, 3, 14, 9, 26, 53, 589000, tzinfo=UTC)


def call_row(call_id: str, *, state: str = "ended", **overrides: Any) -> Call:
    """A call record as ingestion writes it: answered on 101 by emp-1 after 5 s, 60 s of talk."""
    ended = state == "ended"
    values: dict[str, Any] = {
        "call_id": call_id,
        "direction": "inbound",
        "caller_number": "+74993690439",
        "caller_e164": "+74993690439",
        "callee_number": "+74951112233",
        "callee_e164": "+74951112233",
        "line": "+74951112233",
        "extension": "101",
        "employee_id": "emp-1",
        "sip_call_id": f"sip-{call_id}",
        "started_at": T0,
        "answered_at": T0 + timedelta(seconds=5) if state != "ringing" else None,
        "ended_at": T0 + timedelta(seconds=65) if ended else None,
        "ring_ms": 5000 if state != "ringing" else None,
        "talk_ms": 60000 if ended else None,
        "disposition": "answered" if ended else None,
        "sip_status": 200 if state != "ringing" else None,
        "q850_cause": 16 if ended else None,
        "hangup_by": "caller" if ended else None,
        "state": state,
        "incomplete": False,
        "context": {},
        "last_sequence": 4 if ended else 2,
        **overrides,
    }
    return Call(**values)


async def store(db: Database, call: Call) -> None:
    async with db.session() as session:
        session.add(call)


async def staged_events(
    db: Database, call_id: str | None = None
) -> list[tuple[str, record_pb.CallRecordEvent]]:
    """The record events in the outbox (of one call), in the order they were written."""
    async with db.session() as session:
        rows = (
            await session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.subject.like("calls.record.%"))
                .order_by(OutboxMessage.seq)
            )
        ).all()
    found = [(r.subject, r.msg_id, decode_call_record_event(r.subject, r.payload)) for r in rows]
    for _, msg_id, event in found:
        assert msg_id == event.event_id
    return [
        (subject, event)
        for subject, _, event in found
        if call_id is None or getattr(event, event.WhichOneof("kind") or "created").call_id == call_id
    ]


async def stage(db: Database, call_id: str, changed: list[str]) -> bool:
    async with db.session() as session:
        call = await session.get(Call, call_id)
        assert call is not None
        return await stage_record_event(session, call, changed=changed)


# --- the protobuf --------------------------------------------------------------------------------------


def test_call_proto_carries_the_whole_record() -> None:
    call = call_row(
        "p-1",
        team_id="team-a",
        missed=False,
        recorded=True,
        legs=[
            {
                "leg_id": "leg-101",
                "extension": "101",
                "employee_id": "emp-1",
                "rang_at": T0.isoformat(),
                "answered_at": (T0 + timedelta(seconds=5)).isoformat(),
                "ended_at": None,
                "disposition": "answered",
            },
            {
                "leg_id": None,
                "extension": "102",
                "employee_id": "emp-2",
                "rang_at": "2025-03-14T09:26:54",
                "answered_at": None,
                "ended_at": "not a time",
                "disposition": "cancelled",
                "extra": 1,
            },
        ],
        transfers=[{"at": T0.isoformat(), "from_extension": "101", "to_extension": "103", "attended": True}],
        reason="Order",
        result="Sold",
        comment="two lines\nof comment",
        contact_id="c-1",
        task_id="t-1",
        ticket_id=None,
        notes_version=3,
        notes_updated_at=T0 + timedelta(minutes=2),
        notes_updated_by="user-7",
    )
    message = call_proto(call)
    assert (message.call_id, message.state, message.team_id, message.missed, message.recorded) == (
        "p-1",
        "ended",
        "team-a",
        False,
        True,
    )
    assert (message.direction, message.disposition, message.hangup_by) == (
        ev.DIRECTION_INBOUND,
        ev.DISPOSITION_ANSWERED,
        ev.HANGUP_BY_CALLER,
    )
    assert [(leg.leg_id, leg.extension, leg.employee_id, leg.disposition) for leg in message.legs] == [
        ("leg-101", "101", "emp-1", ev.DISPOSITION_ANSWERED),
        ("", "102", "emp-2", ev.DISPOSITION_CANCELLED),
    ]
    assert message.legs[0].answered_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(seconds=5)
    assert not message.legs[0].HasField("ended_at")
    assert message.legs[1].rang_at.ToDatetime(tzinfo=UTC) == datetime(2025, 3, 14, 9, 26, 54, tzinfo=UTC)
    assert not message.legs[1].HasField("ended_at")  # unreadable: left unset
    (transfer,) = message.transfers
    assert (transfer.from_extension, transfer.to_extension, transfer.to_number, transfer.attended) == (
        "101",
        "103",
        "",
        True,
    )
    notes = message.notes
    assert (notes.reason, notes.result, notes.comment) == ("Order", "Sold", "two lines\nof comment")
    assert (notes.contact_id, notes.task_id, notes.ticket_id) == ("c-1", "t-1", "")
    assert (message.notes_version, message.notes_updated_by) == (3, "user-7")
    assert message.notes_updated_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=2)
    assert list(message.employee_ids) == ["emp-1", "emp-2"]

    assert call_proto(call, has_recording=False).recorded is False
    assert list(call_proto(call, employee_ids=["emp-9", "emp-9", ""]).employee_ids) == ["emp-9"]
    # One conversion: the gRPC answer is the event's record.
    assert calls_grpc.call_message(call) == message


def test_a_live_call_has_no_end() -> None:
    message = call_proto(call_row("p-2", state="ringing", legs=[], transfers=[]))
    assert (message.state, message.disposition, message.talk_ms) == ("ringing", ev.DISPOSITION_UNSPECIFIED, 0)
    assert not message.HasField("ended_at")
    assert not message.HasField("answered_at")
    assert not message.HasField("notes_updated_at")
    assert message.notes == record_pb.CallRecordEvent().created.notes  # all empty


# --- staging ---------------------------------------------------------------------------------------------


async def test_an_ended_call_is_created_once_then_updated(db: Database) -> None:
    await store(db, call_row("s-1"))
    assert await stage(db, "s-1", ["record"]) is True
    assert await stage(db, "s-1", ["recording", "recording"]) is True
    assert await stage(db, "s-1", ["record", "recording"]) is True

    events = await staged_events(db, "s-1")
    assert [subject for subject, _ in events] == ["calls.record.created", *["calls.record.updated"] * 2]
    assert [(e.revision, list(e.changed)) for _, e in events] == [
        (1, []),
        (2, ["recording"]),
        (3, ["record", "recording"]),
    ]
    assert [e.event_id for _, e in events] == [record_event_id("s-1", n) for n in (1, 2, 3)]
    assert len({e.event_id for _, e in events}) == 3
    created = events[0][1].created
    assert (created.call_id, created.state, created.disposition) == ("s-1", "ended", ev.DISPOSITION_ANSWERED)
    assert all(e.HasField("occurred_at") for _, e in events)
    async with db.session() as session:
        call = await session.get(Call, "s-1")
        assert call is not None
        assert call.published_revision == 3


async def test_a_live_call_is_not_published(db: Database) -> None:
    await store(db, call_row("s-live", state="answered"))
    assert await stage(db, "s-live", ["record"]) is False
    assert await staged_events(db, "s-live") == []
    async with db.session() as session:
        call = await session.get(Call, "s-live")
        assert call is not None
        assert call.published_revision == 0


async def test_a_retried_transaction_stages_the_same_event_id(db: Database) -> None:
    """The revision is bumped in the transaction: a rollback takes it back, so the retry's event has the
    same id as the lost attempt's (which the stream would de-duplicate had it been published)."""
    await store(db, call_row("s-retry"))
    assert await stage(db, "s-retry", []) is True

    class Retry(Exception):
        pass

    lost: list[str] = []

    async def attempt() -> None:
        async with db.session() as session:
            call = await session.get(Call, "s-retry")
            assert call is not None
            await stage_record_event(session, call, changed=["notes"])
            lost.extend(
                r.msg_id
                for r in (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.seq))).all()
            )
            raise Retry  # the transaction fails after staging: rolled back

    with pytest.raises(Retry):
        await attempt()
    assert await stage(db, "s-retry", ["notes"]) is True
    events = await staged_events(db, "s-retry")
    assert [e.revision for _, e in events] == [1, 2]
    assert events[1][1].event_id == lost[-1] == record_event_id("s-retry", 2)


async def test_notes_on_an_ended_call_publish_an_update(db: Database) -> None:
    await store(db, call_row("n-1"))
    assert await stage(db, "n-1", []) is True  # ingestion's created, when the call ended
    woken: list[int] = []
    notes = CallNotesService(db, on_published=lambda: woken.append(1))

    await notes.update_notes("n-1", {"comment": "called about the invoice"}, updated_by="user-1")
    assert woken == [1]
    await notes.update_notes("n-1", {"contact_id": "c-9", "reason": "Invoice"})
    assert woken == [1, 1]
    await notes.update_notes("n-1", {"contact_id": "c-9"})  # no change: no event
    assert woken == [1, 1]

    events = await staged_events(db, "n-1")
    assert [(s, e.revision, list(e.changed)) for s, e in events] == [
        ("calls.record.created", 1, []),
        ("calls.record.updated", 2, ["notes"]),
        ("calls.record.updated", 3, ["notes", "links"]),
    ]
    first, second = events[1][1].updated, events[2][1].updated
    assert (first.notes.comment, first.notes_version, first.notes_updated_by) == (
        "called about the invoice",
        1,
        "user-1",
    )
    assert (second.notes.contact_id, second.notes.reason, second.notes_version) == ("c-9", "Invoice", 2)
    assert second.notes.comment == "called about the invoice"


async def test_notes_on_a_live_call_wait_for_its_end(db: Database) -> None:
    await store(db, call_row("n-live", state="answered"))
    woken: list[int] = []
    notes = CallNotesService(db, on_published=lambda: woken.append(1))
    entry = await notes.update_notes("n-live", {"reason": "Order", "comment": "typed while talking"})
    assert entry.call.notes_version == 1
    assert woken == []
    assert await staged_events(db, "n-live") == []

    # The call ends: ingestion writes the record and stages `created`, which carries the notes.
    async with db.session() as session:
        call = await session.get(Call, "n-live")
        assert call is not None
        call.state, call.ended_at, call.disposition = "ended", T0 + timedelta(seconds=65), "answered"
        await stage_record_event(session, call, changed=["record"])
    ((subject, event),) = await staged_events(db, "n-live")
    assert (subject, event.revision, list(event.changed)) == ("calls.record.created", 1, [])
    assert (event.created.notes.reason, event.created.notes.comment) == ("Order", "typed while talking")


async def test_notes_on_an_ended_call_never_published_create_it(db: Database) -> None:
    """A call that ended before record events existed: its first event is `created`, whoever stages it."""
    await store(db, call_row("n-old"))
    await CallNotesService(db).update_notes("n-old", {"result": "Done"})
    ((subject, event),) = await staged_events(db, "n-old")
    assert (subject, event.revision, event.created.notes.result) == ("calls.record.created", 1, "Done")


def test_decoder_and_subjects() -> None:
    event = record_pb.CallRecordEvent(event_id="e", revision=1)
    with pytest.raises(ValueError, match="kind"):
        call_record_subject(event)
    event.created.call_id = "x"
    assert call_record_subject(event) == "calls.record.created"
    with pytest.raises(InvalidMessage):
        decode_call_record_event("calls.record.updated", event.SerializeToString())


# --- on the bus ------------------------------------------------------------------------------------------


@pytest.fixture
async def bus(nats_server: Any) -> AsyncIterator[Bus]:
    bus = await Bus.connect(nats_server.url, name="calls-record-events-tests", timeout=10)
    await bus.ensure_streams(STREAMS)
    yield bus
    await bus.close()


async def stream_events(bus: Bus, call_id: str) -> list[tuple[str, record_pb.CallRecordEvent]]:
    """Every record event of the CALLS stream about the call, in stream order."""

    def about(event: record_pb.CallRecordEvent) -> bool:
        return bool(getattr(event, event.WhichOneof("kind") or "created").call_id == call_id)

    return await stream_messages(bus, "calls.record.>", decode_call_record_event, about)


async def test_record_events_reach_the_bus_once(db: Database, bus: Bus) -> None:
    call_id = f"bus-{uuid.uuid4().hex[:8]}"
    await store(db, call_row(call_id))
    publisher = OutboxPublisher(db, bus, interval=0.2)
    notes = CallNotesService(db, on_published=publisher.wake)
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    try:
        assert await stage(db, call_id, ["record"])
        publisher.wake()
        await notes.update_notes(call_id, {"comment": "<script>alert(1)</script>", "task_id": "t-5"})
        deadline = asyncio.get_running_loop().time() + 10
        while len(published := await stream_events(bus, call_id)) < 2:
            assert asyncio.get_running_loop().time() < deadline, published
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)

    assert [(s, e.revision, list(e.changed)) for s, e in published] == [
        ("calls.record.created", 1, []),
        ("calls.record.updated", 2, ["notes", "links"]),
    ]
    updated = published[1][1].updated
    assert (updated.notes.comment, updated.notes.task_id) == ("<script>alert(1)</script>", "t-5")
    assert await staged_events(db, call_id) == []  # published and removed

    # A publisher that died between publishing and deleting publishes the same rows again: the stream
    # keeps one of each (Nats-Msg-Id is the event id, a function of call and revision).
    async with db.session() as session:
        call = await session.get(Call, call_id)
        assert call is not None
        call.published_revision = 0
        await stage_record_event(session, call, changed=[])
        await stage_record_event(session, call, changed=["notes", "links"])
    assert await publisher.publish_pending() == 2
    assert [e.event_id for _, e in await stream_events(bus, call_id)] == [e.event_id for _, e in published]
