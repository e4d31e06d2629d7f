"""Ingestion into the database: idempotent, order-independent, safe with concurrent writers."""

from __future__ import annotations

import asyncio
import random

from sqlalchemy import func, select

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_calls import repository
from telecrm_calls.models import Call, CallEventRow
from telecrm_calls.service import CallLogService, build_record
from telecrm_calls.testing import T0, CallScript, record_values
from telecrm_common.db import Database


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


async def test_load_events_of_unknown_calls_is_empty(db: Database) -> None:
    async with db.session() as session:
        assert await repository.load_events(session, ["nope"]) == {}
