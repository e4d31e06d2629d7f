"""crm's employees and contacts as read models: versions, phones, links of calls and missed calls, the
consumer on a real nats-server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from telecrm.calls.v1 import missed_calls_pb2 as missed_pb
from telecrm.crm.v1 import directory_events_pb2 as directory_pb
from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_calls.directory import (
    DirectoryEventsConsumer,
    DirectoryReadModel,
    directory_consumer_spec,
)
from telecrm_calls.missed import STATES, MissedCallLog, MissedCallQuery
from telecrm_calls.models import Call, OutboxMessage
from telecrm_calls.numbers import ExtensionInput, InvalidField, NumberQuery, NumberRow, NumbersRegistry
from telecrm_calls.service import CallLogService
from telecrm_calls.testing import T0, CallScript
from telecrm_common.bus import DLQ_REASON, DLQ_STREAM, Bus
from telecrm_common.db import Database
from telecrm_common.events import STREAMS, DirectoryEvent, directory_event_subject

SECRET = "test-cursor-secret"
NUMBER = "+74993690439"
OTHER = "+15551234567"


# --- crm's events ----------------------------------------------------------------------------------


def contact(
    contact_id: str,
    version: int,
    *phones: str | directory_pb.ContactPhone,
    kind: str = "updated",
    name: str = "",
    company: str = "",
) -> directory_pb.ContactEvent:
    """A contact created or updated in crm; phones as ``"+7..."`` (crm normalized them) or as
    :class:`ContactPhone`."""
    body = directory_pb.Contact(
        contact_id=contact_id,
        kind="person",
        name=name or f"Contact {contact_id}",
        company_name=company,
        phones=[
            p if isinstance(p, directory_pb.ContactPhone) else directory_pb.ContactPhone(number=p, e164=p)
            for p in phones
        ],
    )
    event = directory_pb.ContactEvent(event_id=f"{contact_id}-v{version}-{kind}", version=version)
    getattr(event, kind).CopyFrom(body)
    return event


def deleted(contact_id: str, version: int, merged_into: str = "") -> directory_pb.ContactEvent:
    return directory_pb.ContactEvent(
        event_id=f"{contact_id}-v{version}-deleted",
        version=version,
        deleted=directory_pb.ContactDeleted(contact_id=contact_id, merged_into=merged_into),
    )


def employee(
    employee_id: str, version: int, *, name: str, team: str = "t-1", kind: str = "updated"
) -> directory_pb.EmployeeEvent:
    event = directory_pb.EmployeeEvent(event_id=f"{employee_id}-v{version}-{kind}", version=version)
    getattr(event, kind).CopyFrom(
        directory_pb.Employee(
            employee_id=employee_id, name=name, team_id=team, team_name=f"Team {team}", active=True
        )
    )
    return event


def employee_deleted(employee_id: str, version: int) -> directory_pb.EmployeeEvent:
    return directory_pb.EmployeeEvent(
        event_id=f"{employee_id}-v{version}-deleted",
        version=version,
        deleted=directory_pb.EmployeeDeleted(employee_id=employee_id),
    )


# --- calls -----------------------------------------------------------------------------------------


def inbound_missed(call_id: str, minutes: float, caller: str = NUMBER) -> list[ev.CallEvent]:
    return CallScript(call_id, start=T0 + timedelta(minutes=minutes), caller=caller).missed_call()


def inbound_answered(call_id: str, minutes: float, caller: str = NUMBER) -> list[ev.CallEvent]:
    return CallScript(call_id, start=T0 + timedelta(minutes=minutes), caller=caller).answered_call()


def outbound(call_id: str, minutes: float, callee: str = NUMBER) -> list[ev.CallEvent]:
    script = CallScript(
        call_id,
        start=T0 + timedelta(minutes=minutes),
        direction=ev.DIRECTION_OUTBOUND,
        caller="101",
        callee=callee,
    )
    return script.answered_call()


def internal(call_id: str, minutes: float) -> list[ev.CallEvent]:
    """An internal call that carries the customer's number (a consultation): no customer in it."""
    script = CallScript(
        call_id, start=T0 + timedelta(minutes=minutes), direction=ev.DIRECTION_INTERNAL, callee="102"
    )
    return script.answered_call()


# --- fixtures and helpers --------------------------------------------------------------------------


@pytest.fixture
def read_model(db: Database) -> DirectoryReadModel:
    return DirectoryReadModel(db)


@pytest.fixture
def registry(db: Database) -> NumbersRegistry:
    return NumbersRegistry(db, cursor_secret=SECRET)


@pytest.fixture
def missed_log(db: Database) -> MissedCallLog:
    return MissedCallLog(db, cursor_secret=SECRET)


async def contact_of(service: CallLogService, call_id: str) -> str | None:
    return (await service.get_call(call_id)).call.contact_id


async def contacts_of(service: CallLogService, *call_ids: str) -> dict[str, str | None]:
    return {call_id: await contact_of(service, call_id) for call_id in call_ids}


async def numbers_of(registry: NumbersRegistry, contact_id: str) -> list[NumberRow]:
    page = await registry.list_numbers(NumberQuery(contact_id=contact_id, limit=500))
    return page.items


async def missed_item_contacts(missed_log: MissedCallLog) -> dict[str, str | None]:
    """state -> contact of the items of NUMBER."""
    page = await missed_log.list_missed_calls(MissedCallQuery(states=STATES, number=NUMBER))
    return {entry.item.state: entry.item.contact_id for entry in page.items}


async def mark_links_edited(db: Database, call_id: str, contact_id: str | None) -> None:
    """What an agent editing the call's links does (the notes API)."""
    async with db.session() as session:
        await session.execute(
            update(Call).where(Call.call_id == call_id).values(contact_id=contact_id, links_edited=True)
        )


async def published_missed(db: Database) -> list[missed_pb.MissedCall]:
    """The ``calls.missed.updated`` events in the outbox, oldest first."""
    async with db.session() as session:
        rows = (
            await session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.subject == "calls.missed.updated")
                .order_by(OutboxMessage.seq)
            )
        ).all()
    return [missed_pb.MissedCallEvent.FromString(row.payload).updated for row in rows]


# --- versions --------------------------------------------------------------------------------------


async def test_employee_events_apply_in_version_order(
    read_model: DirectoryReadModel, registry: NumbersRegistry
) -> None:
    await read_model.apply([employee("e-1", 1, name="Anna", kind="created")])
    extension = await registry.create_extension(ExtensionInput(number="101", employee_id="e-1"))
    assert (extension.employee_name, extension.team_name) == ("Anna", "Team t-1")

    result = await read_model.apply(
        [
            employee("e-1", 3, name="Anna Savitskaya", team="t-2"),
            employee("e-1", 2, name="Anna S."),  # late
            employee("e-1", 3, name="Anna Savitskaya", team="t-2"),  # again
        ]
    )
    assert (result.applied, result.ignored) == (1, 2)
    shown = await registry.get_number(extension.number.id)
    assert (shown.employee_name, shown.team_id, shown.team_name) == ("Anna Savitskaya", "t-2", "Team t-2")
    assert shown.employee_active is True

    await read_model.apply([employee_deleted("e-1", 4)])
    await read_model.apply([employee("e-1", 1, name="Anna", kind="created")])  # a very late creation
    shown = await registry.get_number(extension.number.id)
    assert shown.employee_active is False
    assert shown.employee_name == "Anna Savitskaya"
    with pytest.raises(InvalidField) as raised:
        await registry.create_extension(ExtensionInput(number="102", employee_id="e-1"))
    assert raised.value.field == "employee_id"


async def test_a_deletion_seen_first_keeps_the_contact_deleted(
    read_model: DirectoryReadModel, registry: NumbersRegistry
) -> None:
    await read_model.apply([deleted("c-1", 3)])
    result = await read_model.apply([contact("c-1", 1, NUMBER, kind="created"), contact("c-1", 2, OTHER)])
    assert (result.applied, result.ignored) == (0, 2)
    assert await numbers_of(registry, "c-1") == []


async def test_a_contact_update_replaces_its_phones(
    read_model: DirectoryReadModel, registry: NumbersRegistry
) -> None:
    await read_model.apply(
        [
            contact(
                "c-1",
                1,
                directory_pb.ContactPhone(number="+7 (499) 369-04-39", kind="work"),  # crm did not normalize
                directory_pb.ContactPhone(number="+1 555 123 4567", e164=OTHER, kind="mobile"),
                directory_pb.ContactPhone(number="+1-555-123-4567", kind="home"),  # the same digits again
                directory_pb.ContactPhone(number="n/a"),  # no digits: not a number
                kind="created",
                name="Olga Savitskaya",
                company="Horns & Hoofs",
            )
        ]
    )
    before = {row.number.e164 or "": row for row in await numbers_of(registry, "c-1")}
    assert sorted(before) == [OTHER, NUMBER]
    work = before[NUMBER]
    assert (work.number.number, work.number.phone_kind, work.number.kind) == (
        "+7 (499) 369-04-39",
        "work",
        "contact",
    )
    assert (work.contact_name, work.company_name) == ("Olga Savitskaya", "Horns & Hoofs")
    assert before[OTHER].number.phone_kind == "mobile"

    # The number search ignores punctuation and finds the E.164 form too.
    found = await registry.list_numbers(NumberQuery(number="369-04"))
    assert [row.number.id for row in found.items] == [work.number.id]

    await read_model.apply(
        [
            contact(
                "c-1",
                2,
                directory_pb.ContactPhone(number="+7 (499) 369-04-39", e164=NUMBER, kind="mobile"),
                "+442071838750",
                name="Olga Savitskaya",
            )
        ]
    )
    after = {row.number.e164 or "": row for row in await numbers_of(registry, "c-1")}
    assert sorted(after) == ["+442071838750", NUMBER]
    assert after[NUMBER].number.id == work.number.id  # the same number keeps its id
    assert (after[NUMBER].number.phone_kind, after[NUMBER].number.version) == ("mobile", 2)
    assert after[NUMBER].company_name is None

    # A late or repeated version changes nothing.
    await read_model.apply([contact("c-1", 1, OTHER, kind="created"), contact("c-1", 2, OTHER)])
    assert sorted(row.number.e164 or "" for row in await numbers_of(registry, "c-1")) == sorted(after)


# --- links of calls and missed calls ---------------------------------------------------------------


async def test_a_contact_gets_the_past_calls_of_its_number(
    db: Database,
    service: CallLogService,
    read_model: DirectoryReadModel,
    missed_log: MissedCallLog,
) -> None:
    await service.ingest(inbound_answered("in-1", 0))
    await service.ingest(outbound("out-1", 5))
    await service.ingest(internal("int-1", 6))
    await service.ingest(inbound_missed("miss-1", 10))
    await service.ingest(inbound_missed("other-1", 11, caller=OTHER))
    await mark_links_edited(db, "in-1", None)  # an agent unlinked it on purpose
    assert await missed_item_contacts(missed_log) == {"open": None}

    result = await read_model.apply([contact("c-1", 1, NUMBER, kind="created")])

    assert await contacts_of(service, "in-1", "out-1", "int-1", "miss-1", "other-1") == {
        "in-1": None,
        "out-1": "c-1",
        "int-1": None,
        "miss-1": "c-1",
        "other-1": None,
    }
    assert result.calls == {"out-1", "miss-1"}
    assert await missed_item_contacts(missed_log) == {"open": "c-1"}
    (published,) = await published_missed(db)
    assert (published.contact_id, published.e164, published.version) == ("c-1", NUMBER, 2)

    # Applying the same version again links nothing more and publishes nothing.
    await read_model.apply([contact("c-1", 1, NUMBER, kind="created")])
    assert len(await published_missed(db)) == 1


async def test_a_shared_number_links_nobody_until_one_contact_keeps_it(
    service: CallLogService, read_model: DirectoryReadModel, missed_log: MissedCallLog
) -> None:
    await service.ingest(inbound_missed("miss-1", 0))
    await read_model.apply(
        [contact("c-1", 1, NUMBER, kind="created"), contact("c-2", 1, NUMBER, OTHER, kind="created")]
    )
    # c-1 had the number alone for a moment (the first event), so its calls went to c-1.
    assert await contact_of(service, "miss-1") == "c-1"

    await service.ingest(inbound_answered("in-2", 30))
    await service.ingest(inbound_missed("miss-3", 60))
    await read_model.apply([contact("c-2", 2, NUMBER, OTHER, name="Renamed")])
    assert await contacts_of(service, "in-2", "miss-3") == {"in-2": None, "miss-3": None}
    assert await missed_item_contacts(missed_log) == {"resolved": "c-1", "open": None}

    # c-2 drops the number: c-1 is its only contact again.
    await read_model.apply([contact("c-2", 3, OTHER)])
    assert await contacts_of(service, "miss-1", "in-2", "miss-3") == {
        "miss-1": "c-1",
        "in-2": "c-1",
        "miss-3": "c-1",
    }
    assert await missed_item_contacts(missed_log) == {"resolved": "c-1", "open": "c-1"}


async def test_a_merged_contact_hands_its_calls_to_the_survivor(
    db: Database, service: CallLogService, read_model: DirectoryReadModel, missed_log: MissedCallLog
) -> None:
    await service.ingest(inbound_missed("miss-1", 0))
    await service.ingest(outbound("out-2", 5, callee=OTHER))
    await read_model.apply(
        [contact("c-a", 1, NUMBER, kind="created"), contact("c-old", 1, OTHER, kind="created")]
    )
    await mark_links_edited(db, "out-2", "c-old")  # an agent confirmed it: the merge still moves it
    assert await contacts_of(service, "miss-1", "out-2") == {"miss-1": "c-a", "out-2": "c-old"}

    # c-a merged into c-b; c-old merged into c-a, told after: its calls follow on to c-b.
    await read_model.apply([deleted("c-a", 2, merged_into="c-b")])
    await read_model.apply([deleted("c-old", 2, merged_into="c-a")])

    assert await contacts_of(service, "miss-1", "out-2") == {"miss-1": "c-b", "out-2": "c-b"}
    assert await missed_item_contacts(missed_log) == {"open": "c-b"}
    assert [item.contact_id for item in await published_missed(db)] == ["c-a", "c-b"]


async def test_a_deleted_contact_leaves_its_calls_except_those_an_agent_linked(
    db: Database, service: CallLogService, read_model: DirectoryReadModel, missed_log: MissedCallLog
) -> None:
    await service.ingest(inbound_missed("miss-1", 0))
    await service.ingest(inbound_answered("in-2", 30))
    await read_model.apply([contact("c-1", 1, NUMBER, kind="created")])
    await mark_links_edited(db, "in-2", "c-1")

    await read_model.apply([deleted("c-1", 2)])

    assert await contacts_of(service, "miss-1", "in-2") == {"miss-1": None, "in-2": "c-1"}
    assert await missed_item_contacts(missed_log) == {"resolved": None}


async def test_batching_does_not_change_the_outcome(
    service: CallLogService, read_model: DirectoryReadModel
) -> None:
    await service.ingest(inbound_missed("miss-1", 0))
    # Created and merged away in one batch: as if the two events had come one at a time.
    await read_model.apply([contact("c-1", 1, NUMBER, kind="created"), deleted("c-1", 2, merged_into="c-2")])
    assert await contact_of(service, "miss-1") == "c-2"


# --- the consumer ----------------------------------------------------------------------------------


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout:.0f}s")
        await asyncio.sleep(0.05)


@pytest.fixture
async def bus(nats_server: Any) -> AsyncIterator[Bus]:
    bus = await Bus.connect(nats_server.url, name="calls-directory-tests", timeout=10)
    await bus.ensure_streams(STREAMS)
    yield bus
    await bus.close()


async def publish(bus: Bus, events: Sequence[DirectoryEvent]) -> None:
    for event in events:
        await bus.publish(directory_event_subject(event), event, msg_id=event.event_id)


async def test_the_consumer_applies_crm_events_and_dead_letters_garbage(
    bus: Bus, service: CallLogService, read_model: DirectoryReadModel, registry: NumbersRegistry
) -> None:
    tag = uuid.uuid4().hex[:8]
    durable = f"calls-directory-test-{tag}"
    first, second = f"c-{tag}-1", f"c-{tag}-2"
    await service.ingest(inbound_missed(f"miss-{tag}", 0))
    # Out of order and repeated, with garbage in between.
    await publish(bus, [contact(first, 2, NUMBER, name="Current")])
    await bus.js.publish(
        "crm.contact.updated", b"\x0a\xff\xff\xff not a protobuf", headers={"Nats-Msg-Id": f"g-{tag}"}
    )
    await publish(bus, [contact(first, 1, OTHER, kind="created", name="Stale")])
    stale = contact(first, 1, OTHER, kind="created")
    await bus.publish(directory_event_subject(stale), stale, msg_id=f"{stale.event_id}-again")
    await publish(bus, [employee(f"e-{tag}", 1, name="Anna", kind="created")])

    spec = directory_consumer_spec(
        durable, read_model, batch_size=10, fetch_timeout_seconds=0.2, backoff_seconds=(0.2, 0.5)
    )
    consumer = DirectoryEventsConsumer(bus, read_model, spec)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.consume_directory_events(stop))
    try:

        async def linked() -> bool:
            return await contact_of(service, f"miss-{tag}") == first

        await eventually(linked)
        dead_sub = await bus.js.subscribe(
            f"dlq.{durable}.crm.contact.updated", stream=DLQ_STREAM, ordered_consumer=True
        )
        try:
            dead = await dead_sub.next_msg(timeout=15)
        finally:
            await dead_sub.unsubscribe()
        assert dead.data.startswith(b"\x0a\xff\xff\xff")
        assert dead.headers is not None
        assert "undecodable payload" in dead.headers[DLQ_REASON]

        # Still consuming after the dead letter.
        await publish(bus, [contact(second, 1, OTHER, kind="created")])

        async def second_known() -> bool:
            return len(await numbers_of(registry, second)) == 1

        await eventually(second_known)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)

    (row,) = await numbers_of(registry, first)
    assert (row.number.e164, row.contact_name) == (NUMBER, "Current")
