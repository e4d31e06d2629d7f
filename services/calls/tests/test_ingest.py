"""Ingestion into the database: idempotent, order-independent, safe with concurrent writers."""

from __future__ import annotations

import asyncio
import random

from sqlalchemy import func, select, update

from telecrm.calls.v1 import call_log_events_pb2 as record_pb
from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_calls import repository
from telecrm_calls.models import Call, CallEventRow, CallParty, OutboxMessage
from telecrm_calls.record_events import call_proto
from telecrm_calls.service import CallLogService, build_record
from telecrm_calls.testing import T0, CallScript, record_values
from telecrm_common.db import Database
from telecrm_common.events import decode_call_record_event


async def _stored(db: Database, call_id: str) -> dict[str, object]:
    async with db.session() as session:
        call = await session.get(Call, call_id)
    assert call is not None
    return record_values(call)


async def _count(db: Database, model: type[Call] | type[CallEventRow]) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_one_batch_stores_the_record(service: CallLogService, db: Database) -> None:
    events = CallScript("i-1", employee_id="emp-1").answered_call(ring=5, talk=60)
    result = await service.ingest(events)

    assert (result.stored, result.duplicates, result.calls) == (4, 0, ["i-1"])
    stored = await _stored(db, "i-1")
    assert stored == record_values(build_record(events))
    assert stored["started_at"] == T0
    assert stored["context"] == {}


async def test_batches_in_any_order_give_the_same_record(service: CallLogService, db: Database) -> None:
    rng = random.Random(3)
    for n in range(8):
        events = CallScript(f"i-order-{n}").answered_call()
        shuffled = events[:]
        rng.shuffle(shuffled)
        cut = rng.randrange(1, len(shuffled))
        await service.ingest(shuffled[cut:])
        await service.ingest(shuffled[:cut])
        assert await _stored(db, f"i-order-{n}") == record_values(build_record(events))


async def test_a_calls_parties_follow_it_across_batches(service: CallLogService, db: Database) -> None:
    """The first batch creates the call with the extension that rang; a later one, answered by another
    extension, replaces the parties: both are on the call, each once."""
    script = CallScript("i-parties")

    async def parties() -> list[tuple[str, str]]:
        async with db.session() as session:
            rows = await session.execute(
                select(CallParty.extension, CallParty.role)
                .where(CallParty.call_id == script.call_id)
                .order_by(CallParty.extension)
            )
            return [(extension, role) for extension, role in rows]

    await service.ingest([script.offered(), script.ringing(1, extension="101")])
    assert await parties() == [("101", "rang")]
    ended = script.ended(60, answered_extension="102")
    await service.ingest([script.answered(5, extension="102"), ended])
    assert await parties() == [("101", "rang"), ("102", "answered")]
    await service.ingest([ended])  # delivered again: nothing changes
    assert await parties() == [("101", "rang"), ("102", "answered")]


async def test_late_offer_completes_an_incomplete_record(service: CallLogService, db: Database) -> None:
    events = CallScript("i-late").answered_call()
    await service.ingest(events[3:])
    assert (await _stored(db, "i-late"))["incomplete"] is True
    await service.ingest(events[:3])
    stored = await _stored(db, "i-late")
    assert stored["incomplete"] is False
    assert stored == record_values(build_record(events))


async def test_duplicates_within_and_across_batches(service: CallLogService, db: Database) -> None:
    events = CallScript("i-dup").missed_call()
    copies = [ev.CallEvent.FromString(e.SerializeToString()) for e in events]

    first = await service.ingest(events + copies[:2])
    again = await service.ingest(copies)

    assert (first.stored, first.duplicates) == (3, 2)
    assert (again.stored, again.duplicates, again.calls) == (0, 3, [])
    assert await _count(db, CallEventRow) == 3
    assert await _count(db, Call) == 1
    assert await _stored(db, "i-dup") == record_values(build_record(events))


async def test_recordings_are_indexed_once(service: CallLogService) -> None:
    recording = ev.RecordingReady(
        event_id="rec-ev-1",
        call_id="i-rec",
        recording_id="rec-1",
        location="s3://recordings/rec-1.wav",
        content_type="audio/wav",
        size_bytes=480_000,
        duration_ms=30_000,
    )
    # The recording may be reported before the call's own events reach us.
    assert (await service.ingest([recording, recording])).recordings == 1
    await service.ingest(CallScript("i-rec").answered_call())
    assert (await service.ingest([recording])).recordings == 0

    assert (await service.get_call("i-rec")).has_recording is True
    await service.ingest(CallScript("i-no-rec").missed_call())
    assert (await service.get_call("i-no-rec")).has_recording is False


async def test_a_recording_and_its_call_ingested_at_once_mark_the_call_recorded(db: Database) -> None:
    """Two replicas, one with a call's events, the other with its recording, at the same time: the call
    is marked recorded whichever commits first (neither may miss the other's uncommitted row)."""
    replica_a = CallLogService(db, cursor_secret="s")
    replica_b = CallLogService(db, cursor_secret="s")
    call_ids = [f"i-rec-race-{n}" for n in range(30)]
    for call_id in call_ids:
        recording = ev.RecordingReady(
            event_id=f"{call_id}-rec-ev", call_id=call_id, recording_id=f"{call_id}-rec", location="s3://r/x"
        )
        await asyncio.gather(
            replica_a.ingest(CallScript(call_id).answered_call()), replica_b.ingest([recording])
        )
    for call_id in call_ids:
        assert (await replica_a.get_call(call_id)).has_recording is True, call_id


async def test_concurrent_writers_of_the_same_calls_lose_nothing(db: Database) -> None:
    """Two replicas, each with half of every call's events, at the same time: every record is whole."""
    replica_a = CallLogService(db, cursor_secret="s")
    replica_b = CallLogService(db, cursor_secret="s")
    calls = {f"i-race-{n}": CallScript(f"i-race-{n}").answered_call() for n in range(30)}
    half_a = [e for events in calls.values() for e in events[::2]]
    half_b = [e for events in calls.values() for e in events[1::2]]

    await asyncio.gather(
        *(replica_a.ingest(half_a[i : i + 7]) for i in range(0, len(half_a), 7)),
        *(replica_b.ingest(half_b[i : i + 5]) for i in range(0, len(half_b), 5)),
    )

    for call_id, events in calls.items():
        assert await _stored(db, call_id) == record_values(build_record(events)), call_id


async def test_record_events_carry_each_record_as_stored(db: Database) -> None:
    """Ingestion builds the ``calls.record.*`` event from the fold and what the upsert returned (the
    row is not read back): whatever the replicas, order, duplicates and batches, each ended call's
    events count its revisions from 1 and the last one carries the row as it is in the database."""
    replica_a = CallLogService(db, cursor_secret="s")
    replica_b = CallLogService(db, cursor_secret="s")
    calls = {
        f"i-pub-{n}": CallScript(f"i-pub-{n}", employee_id=f"emp-{n % 3}", context={"task_id": f"t-{n}"})
        for n in range(24)
    }
    events = {call_id: script.answered_call() for call_id, script in calls.items()}
    events["i-pub-0"] = CallScript("i-pub-0").missed_call()
    # An agent fills the form of i-pub-1 while it rings: its notes and links stay, and are published.
    await replica_a.ingest(events["i-pub-1"][:1])
    async with db.session() as session:
        await session.execute(
            update(Call)
            .where(Call.call_id == "i-pub-1")
            .values(links_edited=True, task_id="agent-task", reason="Order", notes_version=1)
        )
    rng = random.Random(5)
    mixed = [e for call_events in events.values() for e in call_events]
    mixed += rng.sample(mixed, 20)  # redelivered
    rng.shuffle(mixed)
    half = len(mixed) // 2
    await asyncio.gather(
        *(replica_a.ingest(mixed[i : i + 9]) for i in range(0, half, 9)),
        *(replica_b.ingest(mixed[i : i + 4]) for i in range(half, len(mixed), 4)),
    )

    async with db.session() as session:
        rows = (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.seq))).all()
        stored = {call.call_id: call for call in (await session.scalars(select(Call))).all()}
        parties = (await session.execute(select(CallParty.call_id, CallParty.employee_id))).all()
    published: dict[str, list[record_pb.CallRecordEvent]] = {}
    for row in rows:
        if row.subject.startswith("calls.record."):
            event = decode_call_record_event(row.subject, row.payload)
            record = getattr(event, event.WhichOneof("kind") or "created")
            published.setdefault(record.call_id, []).append(event)
    assert sorted(published) == sorted(events)
    for call_id, call_events in published.items():
        assert [e.revision for e in call_events] == list(range(1, len(call_events) + 1)), call_id
        assert stored[call_id].published_revision == len(call_events)
        employees = sorted({employee for c, employee in parties if c == call_id and employee})
        last = call_events[-1]
        assert getattr(last, last.WhichOneof("kind") or "created") == call_proto(
            stored[call_id], employee_ids=employees
        ), call_id
    last = published["i-pub-1"][-1]
    agent_edited = getattr(last, last.WhichOneof("kind") or "created")
    assert (agent_edited.notes.task_id, agent_edited.notes.reason) == ("agent-task", "Order")


async def test_load_events_of_unknown_calls_is_empty(db: Database) -> None:
    async with db.session() as session:
        assert await repository.load_events(session, ["nope"]) == {}
