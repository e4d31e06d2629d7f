"""Calls and missed calls become journal events: one per call, typed by what became of it, updated in place
by later revisions, linked to their missed-call items whatever the order of arrival, and never duplicated;
the same through a real nats-server, with a duplicate delivery and a malformed payload."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select

from telecrm.calls.v1 import call_log_events_pb2 as record_pb
from telecrm.calls.v1 import calls_pb2
from telecrm.calls.v1 import missed_calls_pb2 as missed_pb
from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.auth import Principal
from telecrm_common.bus import DLQ_REASON, DLQ_STREAM, Bus
from telecrm_common.db import Database
from telecrm_common.events import STREAMS, call_record_subject, missed_call_subject
from telecrm_crm.access import Access
from telecrm_crm.attachments import AttachmentStore
from telecrm_crm.audit import AuditLog
from telecrm_crm.journal import JournalService
from telecrm_crm.journal_api import journal_router
from telecrm_crm.journal_consumer import JournalConsumer, journal_consumer_spec
from telecrm_crm.journal_models import JournalEvent
from telecrm_crm.models import OutboxMessage

from .conftest import CURSOR_SECRET

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CUSTOMER = "+74993690439"
OTHER = "+359888123456"
Headers = Callable[[Principal], dict[str, str]]


# --- the call log's events --------------------------------------------------------------------------


def stamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    result = Timestamp()
    result.FromDatetime(value)
    return result


def record(
    call_id: str,
    revision: int,
    *,
    outbound: bool = False,
    disposition: ev.Disposition.ValueType = ev.DISPOSITION_ANSWERED,
    number: str = CUSTOMER,
    minutes: float = 0,
    talk: float = 60,
    employee: str = "emp-agent",
    team: str = "team-sales",
    comment: str = "",
    reason: str = "",
    contact: str = "",
    internal: bool = False,
) -> record_pb.CallRecordEvent:
    """The call log's record of an ended call, as published at ``revision``."""
    start = T0 + timedelta(minutes=minutes)
    answered = disposition == ev.DISPOSITION_ANSWERED
    customer = ev.Party(number=number, e164=number if number.startswith("+") else "")
    agent = ev.Party(number="101", extension="101")
    direction = (
        ev.DIRECTION_INTERNAL if internal else ev.DIRECTION_OUTBOUND if outbound else ev.DIRECTION_INBOUND
    )
    call = calls_pb2.Call(
        call_id=call_id,
        direction=direction,
        caller=agent if outbound else customer,
        callee=customer if outbound else agent,
        extension="101",
        employee_id=employee if answered or outbound else "",
        employee_ids=[employee],
        team_id=team,
        started_at=stamp(start),
        answered_at=stamp(start + timedelta(seconds=5)) if answered else None,
        ended_at=stamp(start + timedelta(seconds=5 + talk)),
        disposition=disposition,
        state="ended",
        missed=not answered,
        notes=calls_pb2.CallNotes(comment=comment, reason=reason, contact_id=contact),
    )
    event = record_pb.CallRecordEvent(event_id=f"{call_id}:r{revision}", revision=revision)
    (event.created if revision == 1 else event.updated).CopyFrom(call)
    return event


def missed_item(
    item_id: str,
    version: int,
    call_ids: list[str],
    *,
    number: str = CUSTOMER,
    kind: str = "created",
    state: missed_pb.MissedCallState.ValueType = missed_pb.MISSED_CALL_STATE_OPEN,
    resolving_call_id: str = "",
    resolving_direction: ev.Direction.ValueType = ev.DIRECTION_OUTBOUND,
    first: float = 0,
    last: float = 0,
    resolved: float | None = None,
) -> missed_pb.MissedCallEvent:
    item = missed_pb.MissedCall(
        id=item_id,
        number=number,
        e164=number if number.startswith("+") else "",
        employee_ids=["emp-agent"],
        team_ids=["team-sales"],
        missed_count=len(call_ids),
        call_ids=call_ids,
        first_missed_at=stamp(T0 + timedelta(minutes=first)),
        last_missed_at=stamp(T0 + timedelta(minutes=last)),
        state=state,
        version=version,
    )
    if resolving_call_id:
        item.resolving_call_id = resolving_call_id
        item.resolving_direction = resolving_direction
        item.resolved_at.CopyFrom(stamp(T0 + timedelta(minutes=resolved or 0)))
    event = missed_pb.MissedCallEvent(event_id=f"{item_id}:v{version}")
    getattr(event, kind).CopyFrom(item)
    return event


# --- fixtures and helpers ---------------------------------------------------------------------------


@pytest.fixture
async def journal(crm_db: Database, tmp_path: Path) -> JournalService:
    service = JournalService(
        crm_db,
        audit=AuditLog("changes"),
        attachments=AttachmentStore(tmp_path / "files", max_bytes=4096),
        cursor_secret=CURSOR_SECRET,
        default_region="BG",
    )
    await service.ensure_system_types()
    return service


@pytest.fixture
async def client(journal: JournalService, access: Access) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(journal_router(journal, access))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://crm") as http:
        yield http


async def event_of(journal: JournalService, call_id: str) -> JournalEvent:
    async with journal.db.session() as session:
        row = (await session.scalars(select(JournalEvent).where(JournalEvent.call_id == call_id))).one()
    return row


async def events(journal: JournalService) -> list[JournalEvent]:
    async with journal.db.session() as session:
        return list((await session.scalars(select(JournalEvent).order_by(JournalEvent.start_at))).all())


async def subjects(journal: JournalService) -> list[str]:
    async with journal.db.session() as session:
        rows = (await session.scalars(select(OutboxMessage.subject).order_by(OutboxMessage.seq))).all()
    return list(rows)


# --- call records -----------------------------------------------------------------------------------


async def test_a_call_is_one_event_updated_in_place_by_later_revisions(journal: JournalService) -> None:
    first = record("c-1", 1, comment="Wants a quote")
    result = await journal.apply_call_log_events([first])
    assert (result.created, result.updated, result.ignored) == (1, 0, 0)
    event = await event_of(journal, "c-1")
    assert (event.type_code, event.direction, event.disposition, event.source) == (
        "incoming_call",
        "inbound",
        "answered",
        "calls",
    )
    assert (event.phone, event.phone_e164, event.responsible_employee_id, event.team_id) == (
        CUSTOMER,
        CUSTOMER,
        "emp-agent",
        "team-sales",
    )
    assert (event.start_at, event.end_at) == (T0, T0 + timedelta(seconds=65))
    assert (event.content, event.version) == ("Wants a quote", 1)

    # Redelivered: nothing changes.
    again = await journal.apply_call_log_events([first, first])
    assert (again.created, again.updated, again.ignored) == (0, 0, 2)
    # A later revision updates the same event; an older one arriving late changes nothing.
    notes = record("c-1", 3, comment="Wants a quote", reason="Pricing", contact="c-42")
    late = record("c-1", 2, comment="stale")
    result = await journal.apply_call_log_events([notes, late])
    assert (result.created, result.updated, result.ignored) == (0, 1, 1)
    event = await event_of(journal, "c-1")
    assert (event.subject, event.contact_id, event.content, event.version) == (
        "Pricing",
        "c-42",
        "Wants a quote",
        2,
    )
    # A revision that changes nothing the journal keeps (a recording attached) makes no new version.
    same = await journal.apply_call_log_events(
        [record("c-1", 4, comment="Wants a quote", reason="Pricing", contact="c-42")]
    )
    assert (same.updated, same.ignored) == (0, 1)
    assert (await event_of(journal, "c-1")).version == 2
    assert await subjects(journal) == ["crm.event.created", "crm.event.updated"]


async def test_types_follow_direction_and_what_became_of_the_call(journal: JournalService) -> None:
    await journal.apply_call_log_events(
        [
            record("in-ok", 1),
            record("out-ok", 1, outbound=True, number=OTHER),
            record("in-missed", 1, disposition=ev.DISPOSITION_MISSED, minutes=1),
            record("out-busy", 1, outbound=True, disposition=ev.DISPOSITION_BUSY, minutes=2),
            record("in-busy", 1, disposition=ev.DISPOSITION_BUSY, minutes=3),
            record("internal", 1, internal=True, number="102"),
        ]
    )
    types = {row.call_id: row.type_code for row in await events(journal)}
    assert types == {
        "in-ok": "incoming_call",
        "out-ok": "outgoing_call",
        "in-missed": "missed_incoming_call",
        "out-busy": "missed_outgoing_call",
        # Refused busy by the agent: it reached someone, so it is not a missed call (as in the call log).
        "in-busy": "incoming_call",
    }  # internal calls are not journaled unless asked for
    outbound = await event_of(journal, "out-ok")
    assert (outbound.phone_e164, outbound.direction) == (OTHER, "outbound")


async def test_internal_calls_are_journaled_when_asked(journal: JournalService) -> None:
    journal.log_internal_calls = True
    await journal.apply_call_log_events([record("int-1", 1, internal=True, number="102")])
    event = await event_of(journal, "int-1")
    assert (event.direction, event.phone, event.phone_e164) == ("internal", "102", None)


async def test_a_users_edits_survive_the_call_logs_updates(
    journal: JournalService, client: httpx.AsyncClient, token_for: Headers, agent: Principal
) -> None:
    await journal.apply_call_log_events([record("c-7", 1, comment="auto", contact="c-1")])
    event = await event_of(journal, "c-7")
    edited = await client.patch(
        f"/journal/events/{event.id}",
        json={"version": 1, "content": "Agreed a visit on Friday", "project_id": "p-3"},
        headers=token_for(agent),
    )
    assert edited.json()["locked_fields"] == ["content"]
    await journal.apply_call_log_events(
        [record("c-7", 2, comment="changed in the call log", contact="c-2", talk=90)]
    )
    event = await event_of(journal, "c-7")
    assert (event.content, event.project_id) == ("Agreed a visit on Friday", "p-3")  # the user's
    assert (event.contact_id, event.end_at) == ("c-2", T0 + timedelta(seconds=95))  # the call log's
    assert event.version == 3

    # A deleted event stays deleted, whatever the call log says later.
    admin_headers = token_for(Principal(subject="root", roles=frozenset({"admin"})))  # type: ignore[arg-type]
    assert (await client.delete(f"/journal/events/{event.id}", headers=admin_headers)).status_code == 204
    result = await journal.apply_call_log_events([record("c-7", 3, comment="again")])
    assert (result.created, result.updated, result.ignored) == (0, 0, 1)
    assert len(await events(journal)) == 1


# --- missed calls -----------------------------------------------------------------------------------


async def test_missed_calls_are_linked_resolved_and_the_callback_typed(
    journal: JournalService, client: httpx.AsyncClient, token_for: Headers, supervisor: Principal
) -> None:
    missed = ev.DISPOSITION_MISSED
    # Two missed calls, their item, then our callback and the item resolved by it.
    await journal.apply_call_log_events(
        [
            record("m-1", 1, disposition=missed, minutes=0),
            record("m-2", 1, disposition=missed, minutes=5),
            missed_item("item-1", 1, ["m-1", "m-2"], first=0, last=5),
            record("cb-1", 1, outbound=True, minutes=20),
        ]
    )
    assert (await event_of(journal, "m-1")).missed_item_id == "item-1"
    assert (await event_of(journal, "cb-1")).type_code == "outgoing_call"
    resolved = missed_item(
        "item-1",
        2,
        ["m-1", "m-2"],
        kind="resolved",
        state=missed_pb.MISSED_CALL_STATE_RESOLVED,
        resolving_call_id="cb-1",
        first=0,
        last=5,
        resolved=20,
    )
    await journal.apply_call_log_events([resolved, resolved])  # redelivered too
    for call_id in ("m-1", "m-2"):
        event = await event_of(journal, call_id)
        assert (event.resolved_at, event.resolving_call_id) == (T0 + timedelta(minutes=20), "cb-1")
    callback = await event_of(journal, "cb-1")
    assert (callback.type_code, callback.answers_missed_item_id) == ("callback", "item-1")

    # Another number: the item arrives before its calls' records, and the customer calls again and is
    # answered (inbound) before that call's record arrives too.
    await journal.apply_call_log_events(
        [
            missed_item("item-2", 1, ["m-3"], number=OTHER, first=30, last=30),
            missed_item(
                "item-2",
                2,
                ["m-3"],
                number=OTHER,
                kind="resolved",
                state=missed_pb.MISSED_CALL_STATE_RESOLVED,
                resolving_call_id="in-3",
                resolving_direction=ev.DIRECTION_INBOUND,
                first=30,
                last=30,
                resolved=41,
            ),
        ]
    )
    early = await event_of(journal, "m-3")
    assert (early.type_code, early.phone_e164, early.start_at, early.source_revision) == (
        "missed_incoming_call",
        OTHER,
        T0 + timedelta(minutes=30),
        0,
    )
    assert early.resolving_call_id == "in-3"
    await journal.apply_call_log_events(
        [
            record("m-3", 1, disposition=missed, number=OTHER, minutes=30.5, comment="left a message"),
            record("in-3", 1, number=OTHER, minutes=40),
        ]
    )
    late = await event_of(journal, "m-3")
    assert (late.start_at, late.content, late.missed_item_id, late.resolving_call_id) == (
        T0 + timedelta(minutes=30.5),
        "left a message",
        "item-2",
        "in-3",
    )
    assert (await event_of(journal, "in-3")).type_code == "missed_call_answer"
    assert len(await events(journal)) == 5  # one event per call, none twice

    # A third number, still open.
    await journal.apply_call_log_events(
        [record("m-4", 1, disposition=missed, number="+359888000999", minutes=50, employee="emp-sup")]
    )

    headers = token_for(supervisor)
    view = await client.get("/journal/views/missed-by-number?include_total=true", headers=headers)
    assert view.status_code == 200, view.text
    groups = [
        (g["e164"], g["count"], g["open_count"], g["resolved"], g["first_at"], g["last_at"])
        for g in view.json()["items"]
    ]
    assert groups == [
        ("+359888000999", 1, 1, False, "2026-03-02T09:50:00Z", "2026-03-02T09:50:00Z"),
        (OTHER, 1, 0, True, "2026-03-02T09:30:30Z", "2026-03-02T09:30:30Z"),
        (CUSTOMER, 2, 0, True, "2026-03-02T09:00:00Z", "2026-03-02T09:05:00Z"),
    ]
    assert view.json()["total"] == 3
    still_open = await client.get("/journal/views/missed-by-number?state=open", headers=headers)
    assert [g["e164"] for g in still_open.json()["items"]] == ["+359888000999"]
    page = (await client.get("/journal/views/missed-by-number?limit=2", headers=headers)).json()
    rest = await client.get(
        f"/journal/views/missed-by-number?limit=2&cursor={page['next_cursor']}", headers=headers
    )
    assert [g["e164"] for g in rest.json()["items"]] == [CUSTOMER]
    by_number = await client.get("/journal/views/missed-by-number?phone=499-369", headers=headers)
    assert [g["count"] for g in by_number.json()["items"]] == [2]

    accepted = await client.get("/journal/views/accepted-calls", headers=headers)
    assert [e["call_id"] for e in accepted.json()["items"]] == ["in-3"]


async def test_an_item_that_loses_its_calls_or_its_resolution_unlinks_them(journal: JournalService) -> None:
    missed = ev.DISPOSITION_MISSED
    await journal.apply_call_log_events(
        [
            record("m-1", 1, disposition=missed),
            record("m-2", 1, disposition=missed, minutes=2),
            record("cb", 1, outbound=True, minutes=10),
            missed_item(
                "item-9",
                1,
                ["m-1", "m-2"],
                state=missed_pb.MISSED_CALL_STATE_RESOLVED,
                resolving_call_id="cb",
                last=2,
                resolved=10,
            ),
        ]
    )
    assert (await event_of(journal, "cb")).type_code == "callback"
    # Late events: the callback no longer resolves it (reopened), and m-2 turned out answered.
    await journal.apply_call_log_events(
        [
            record("m-2", 2, minutes=2),
            missed_item("item-9", 2, ["m-1"], kind="updated"),
        ]
    )
    assert (await event_of(journal, "cb")).type_code == "outgoing_call"
    m1, m2 = await event_of(journal, "m-1"), await event_of(journal, "m-2")
    assert (m1.missed_item_id, m1.resolved_at) == ("item-9", None)
    assert (m2.type_code, m2.missed_item_id) == ("incoming_call", None)
    # Discarded: its calls were not missed after all.
    await journal.apply_call_log_events(
        [missed_item("item-9", 3, ["m-1"], kind="updated", state=missed_pb.MISSED_CALL_STATE_DISCARDED)]
    )
    assert (await event_of(journal, "m-1")).missed_item_id is None
    # An old version of the item arriving late changes nothing.
    result = await journal.apply_call_log_events([missed_item("item-9", 1, ["m-1", "m-2"])])
    assert result.ignored == 1
    assert (await event_of(journal, "m-1")).missed_item_id is None


# --- through the bus --------------------------------------------------------------------------------


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout:.0f}s")
        await asyncio.sleep(0.05)


@pytest.fixture
async def bus(nats_server: Any) -> AsyncIterator[Bus]:
    bus = await Bus.connect(nats_server.url, name="crm-journal-tests", timeout=10)
    await bus.ensure_streams(STREAMS)
    yield bus
    await bus.close()


async def test_the_consumer_journals_calls_once_and_dead_letters_garbage(
    bus: Bus, journal: JournalService
) -> None:
    tag = uuid.uuid4().hex[:8]
    durable = f"crm-journal-test-{tag}"
    missed_call, callback = f"m-{tag}", f"cb-{tag}"
    first = record(missed_call, 1, disposition=ev.DISPOSITION_MISSED)
    await bus.publish(call_record_subject(first), first, msg_id=first.event_id)
    # The same event delivered a second time (another publish of it, outside the server's de-duplication).
    await bus.publish(call_record_subject(first), first, msg_id=f"{first.event_id}-again")
    await bus.js.publish(
        "calls.record.created", b"\x0a\xff\xff\xff not a protobuf", headers={"Nats-Msg-Id": f"g-{tag}"}
    )
    item = missed_item(f"item-{tag}", 1, [missed_call])
    await bus.publish(missed_call_subject(item), item, msg_id=item.event_id)
    back = record(callback, 1, outbound=True, minutes=15)
    await bus.publish(call_record_subject(back), back, msg_id=back.event_id)

    wakes: list[int] = []
    journal._on_outbox = lambda: wakes.append(1)
    spec = journal_consumer_spec(
        journal, durable, batch_size=10, fetch_timeout_seconds=0.2, backoff_seconds=(0.2,)
    )
    consumer = JournalConsumer(bus, journal, spec)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:

        async def journaled() -> bool:
            async with journal.db.session() as session:
                rows = (
                    await session.scalars(
                        select(JournalEvent).where(JournalEvent.call_id.in_([missed_call, callback]))
                    )
                ).all()
            return len(rows) == 2 and any(row.missed_item_id == f"item-{tag}" for row in rows)

        await eventually(journaled)
        dead_sub = await bus.js.subscribe(
            f"dlq.{durable}.calls.record.created", stream=DLQ_STREAM, ordered_consumer=True
        )
        try:
            dead = await dead_sub.next_msg(timeout=15)
        finally:
            await dead_sub.unsubscribe()
        assert dead.data.startswith(b"\x0a\xff\xff\xff")
        assert dead.headers is not None
        assert "undecodable payload" in dead.headers[DLQ_REASON]

        # Still consuming after the dead letter: the item resolved by our callback.
        resolved = missed_item(
            f"item-{tag}",
            2,
            [missed_call],
            kind="resolved",
            state=missed_pb.MISSED_CALL_STATE_RESOLVED,
            resolving_call_id=callback,
            resolved=15,
        )
        await bus.publish(missed_call_subject(resolved), resolved, msg_id=resolved.event_id)

        async def called_back() -> bool:
            return (await event_of(journal, callback)).type_code == "callback"

        await eventually(called_back)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)

    event = await event_of(journal, missed_call)
    assert (event.type_code, event.version, event.resolving_call_id) == ("missed_incoming_call", 3, callback)
    assert wakes
    # The stream is shared with other tests: count the events of this test's two calls only.
    ours = {event.id, (await event_of(journal, callback)).id}
    async with journal.db.session() as session:
        created = (
            await session.scalars(
                select(OutboxMessage.msg_id).where(OutboxMessage.subject == "crm.event.created")
            )
        ).all()
    assert len([m for m in created if m.split(":")[1] in ours]) == 2  # the duplicate made nothing
