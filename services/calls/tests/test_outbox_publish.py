"""The outbox publisher against a real nats-server: what the stream stores leaves the outbox, in order;
what it refuses stops the round and stays, with everything after it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from telecrm.calls.v1 import call_log_events_pb2 as record_pb
from telecrm_calls import outbox
from telecrm_calls.models import OutboxMessage
from telecrm_calls.outbox import OutboxPublisher
from telecrm_common.bus import Bus, BusError, SerializedMessage
from telecrm_common.db import Database
from telecrm_common.events import STREAMS


@pytest.fixture
async def bus(nats_server: Any) -> AsyncIterator[Bus]:
    bus = await Bus.connect(nats_server.url, name="calls-outbox-tests", timeout=10)
    await bus.ensure_streams(STREAMS)
    yield bus
    await bus.close()


def _row(subject: str, event_id: str) -> dict[str, Any]:
    return outbox.row(subject, record_pb.CallRecordEvent(event_id=event_id), event_id)


async def _subjects_left(db: Database) -> list[str]:
    async with db.session() as session:
        return list(await session.scalars(select(OutboxMessage.subject).order_by(OutboxMessage.seq)))


async def test_a_refused_message_stops_the_round_and_stays_with_those_after_it(
    db: Database, bus: Bus
) -> None:
    tag = uuid.uuid4().hex[:8]
    stored, nowhere = f"calls.test.{tag}", f"nowhere.{tag}"  # no stream takes nowhere.*
    async with db.session() as session:
        await outbox.add(
            session, [_row(stored, f"{tag}-1"), _row(nowhere, f"{tag}-2"), _row(stored, f"{tag}-3")]
        )
    publisher = OutboxPublisher(db, bus)
    with pytest.raises(BusError, match="not acknowledged"):
        await publisher.publish_pending()
    assert await _subjects_left(db) == [nowhere, stored]
    # The third went out in the same round and may be stored already; a second round sends it again
    # and the stream keeps it once (by its Nats-Msg-Id): the first and the third, never a copy.
    with pytest.raises(BusError, match="not acknowledged"):
        await publisher.publish_pending()
    assert await _subjects_left(db) == [nowhere, stored]
    info = await bus.js.stream_info("CALLS", subjects_filter=stored)
    assert (info.state.subjects or {}).get(stored) == 2


async def test_every_acknowledged_message_counts_once_and_a_repeat_is_stored_once(bus: Bus) -> None:
    tag = uuid.uuid4().hex[:8]
    subject = f"calls.test.{tag}"
    messages = [
        SerializedMessage(subject, f"payload {n}".encode(), f"{tag}-{n}", "telecrm.test.Payload")
        for n in range(1200)
    ]
    assert await bus.publish_serialized(messages) == len(messages)
    assert await bus.publish_serialized(messages[:10]) == 10  # duplicates: acknowledged, not stored again
    info = await bus.js.stream_info("CALLS", subjects_filter=subject)
    assert (info.state.subjects or {}).get(subject) == len(messages)
    assert await bus.publish_serialized([]) == 0
