"""Contact events on a real nats-server: through the outbox to the CRM stream, decoded by the call log's
decoder, versions growing per contact, a merged contact deleted with where it went."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from telecrm.crm.v1 import directory_events_pb2 as directory_pb
from telecrm_common.bus import Bus, InvalidMessage
from telecrm_common.db import Database
from telecrm_common.events import STREAMS, decode_directory_event
from telecrm_crm import outbox
from telecrm_crm.audit import AuditLog
from telecrm_crm.contacts import ContactIn, ContactPatch, ContactService, PhoneIn, system_principal
from telecrm_crm.outbox import OutboxPublisher

ADMIN = system_principal("tests")


@pytest.fixture
async def bus(nats_server: Any) -> AsyncIterator[Bus]:
    bus = await Bus.connect(nats_server.url, name="crm-contacts-events-tests", timeout=10)
    await bus.ensure_streams(STREAMS)
    yield bus
    await bus.close()


async def contact_events(bus: Bus, contact_ids: set[str]) -> list[tuple[str, directory_pb.ContactEvent]]:
    """The CRM stream's events about these contacts, in stream order."""
    sub = await bus.js.subscribe("crm.contact.>", stream="CRM", ordered_consumer=True)
    found: list[tuple[str, directory_pb.ContactEvent]] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except TimeoutError:
                return found
            try:
                event = decode_directory_event(msg.subject, msg.data)
            except InvalidMessage:
                continue  # another test's garbage on the shared stream (dead-lettering tests)
            assert isinstance(event, directory_pb.ContactEvent)
            body = getattr(event, event.WhichOneof("kind") or "created")
            if body.contact_id in contact_ids:
                found.append((msg.subject, event))
    finally:
        await sub.unsubscribe()


async def test_contact_changes_reach_the_bus_in_order(crm_db: Database, bus: Bus) -> None:
    publisher = OutboxPublisher(crm_db, bus, interval=0.2)
    service = ContactService(
        crm_db, audit=AuditLog("writes"), cursor_secret=b"x", default_region="UA", on_outbox=publisher.wake
    )
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    try:
        keep = await service.create(ADMIN, ContactIn(name="Oksana", phones=[PhoneIn(number="044 123 45 67")]))
        lose = await service.create(
            ADMIN,
            ContactIn(name="O. Melnyk", phones=[PhoneIn(number="+380 44 123 4567")]),
            allow_duplicate=True,
        )
        await service.update(ADMIN, keep.id, ContactPatch(job_title="Director", version=1))
        await service.merge(ADMIN, keep.id, [lose.id])
        for _ in range(100):
            async with crm_db.session() as session:
                if await outbox.size(session) == 0:
                    break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)

    events = await contact_events(bus, {keep.id, lose.id})
    seen = [(subject, getattr(e, e.WhichOneof("kind") or "").contact_id, e.version) for subject, e in events]
    assert seen == [
        ("crm.contact.created", keep.id, 1),
        ("crm.contact.created", lose.id, 1),
        ("crm.contact.updated", keep.id, 2),
        ("crm.contact.updated", keep.id, 3),
        ("crm.contact.deleted", lose.id, 2),
    ]
    assert events[0][1].created.phones[0].e164 == "+380441234567"
    assert events[-1][1].deleted.merged_into == keep.id
