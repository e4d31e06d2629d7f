"""The events journal over its REST API and gRPC: types, events with rights and visibility, versions,
archive, attachments and the views users know (by project, number, contact..., missed by number)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi import FastAPI
from sqlalchemy import Table, inspect, select, text

from telecrm.crm.v1 import journal_pb2, journal_pb2_grpc
from telecrm_common.auth import Principal, Role
from telecrm_common.db import Database, alembic_config, upgrade
from telecrm_common.grpc import GrpcServer, channel
from telecrm_crm import journal_grpc
from telecrm_crm.access import Access
from telecrm_crm.all_models import metadata
from telecrm_crm.attachments import AttachmentStore
from telecrm_crm.audit import AuditLog
from telecrm_crm.journal import JournalService
from telecrm_crm.journal_api import journal_router
from telecrm_crm.journal_models import SYSTEM_TYPES, JournalEvent
from telecrm_crm.main import MIGRATIONS
from telecrm_crm.models import OutboxMessage
from telecrm_crm.settings import CRMSettings

from .conftest import CURSOR_SECRET, make_principal

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
Headers = Callable[[Principal], dict[str, str]]
PDF = b"%PDF-1.7\n" + b"x" * 200


@pytest.fixture
async def journal(crm_db: Database, tmp_path: Path) -> JournalService:
    service = JournalService(
        crm_db,
        audit=AuditLog("changes"),
        attachments=AttachmentStore(tmp_path / "files", max_bytes=4096),
        cursor_secret=CURSOR_SECRET,
        default_region="BG",
    )
    await service.ensure_system_types()  # the per-test emptying removed the migration's rows
    return service


@pytest.fixture
async def client(journal: JournalService, access: Access) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(journal_router(journal, access))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://crm") as http:
        yield http


async def published(db: Database) -> list[tuple[str, journal_pb2.JournalEventChange]]:
    async with db.session() as session:
        rows = (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.seq))).all()
    return [
        (row.subject, journal_pb2.JournalEventChange.FromString(row.payload))
        for row in rows
        if row.subject.startswith("crm.event.")
    ]


async def create(
    client: httpx.AsyncClient, headers: dict[str, str], expect: int = 201, **body: Any
) -> dict[str, Any]:
    body.setdefault("type_code", "visit")
    answer = await client.post("/journal/events", json=body, headers=headers)
    assert answer.status_code == expect, answer.text
    result: dict[str, Any] = answer.json()
    return result


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


# --- types ------------------------------------------------------------------------------------------


async def test_system_types_are_fixed_and_custom_types_are_an_admins(
    client: httpx.AsyncClient, token_for: Headers, admin: Principal, agent: Principal
) -> None:
    as_admin, as_agent = token_for(admin), token_for(agent)
    answer = await client.get("/journal/event-types", headers=as_agent)
    assert answer.status_code == 200, answer.text
    codes = [item["code"] for item in answer.json()]
    assert codes == [item.code for item in SYSTEM_TYPES]
    assert {"incoming_call", "missed_call_answer", "callback", "electronic_queue", "phone_off"} <= set(codes)

    custom = {"code": "webinar", "name": "Webinar", "channel": "visit"}
    assert (await client.post("/journal/event-types", json=custom, headers=as_agent)).status_code == 403
    created = await client.post("/journal/event-types", json=custom, headers=as_admin)
    assert created.status_code == 201
    assert created.json()["system"] is False
    again = await client.post("/journal/event-types", json=custom, headers=as_admin)
    assert again.status_code == 409

    bad = await client.post("/journal/event-types", json={"code": "Bad Code", "name": "x"}, headers=as_admin)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "code"]

    # A system type may be renamed (installations speak their language), not changed or deleted.
    renamed = await client.patch(
        "/journal/event-types/incoming_call", json={"name": "Вхідний дзвінок"}, headers=as_admin
    )
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Вхідний дзвінок"
    changed = await client.patch(
        "/journal/event-types/incoming_call", json={"direction": "outbound"}, headers=as_admin
    )
    assert changed.status_code == 409
    assert "direction" in changed.json()["detail"]
    assert (await client.delete("/journal/event-types/incoming_call", headers=as_admin)).status_code == 409

    # A custom type in use is deactivated, not deleted; an inactive type takes no new events.
    await create(client, as_agent, type_code="webinar")
    assert (await client.delete("/journal/event-types/webinar", headers=as_admin)).status_code == 409
    off = await client.patch("/journal/event-types/webinar", json={"active": False}, headers=as_admin)
    assert off.json()["active"] is False
    refused = await create(client, as_agent, expect=422, type_code="webinar")
    assert refused["detail"][0]["loc"] == ["body", "type_code"]
    listed = await client.get("/journal/event-types", headers=as_agent)
    assert "webinar" not in [item["code"] for item in listed.json()]

    spare = {"code": "spare", "name": "Spare"}
    assert (await client.post("/journal/event-types", json=spare, headers=as_admin)).status_code == 201
    assert (await client.delete("/journal/event-types/spare", headers=as_agent)).status_code == 403
    assert (await client.delete("/journal/event-types/spare", headers=as_admin)).status_code == 204


# --- events -----------------------------------------------------------------------------------------


async def test_an_event_is_created_with_the_users_defaults_and_its_number_normalized(
    client: httpx.AsyncClient, token_for: Headers, agent: Principal, crm_db: Database
) -> None:
    event = await create(
        client,
        token_for(agent),
        type_code="letter_in",
        start_at="2026-03-02T11:00:00",  # no offset: UTC
        phone="0888 123 456",
        contact_id="c-1",
        subject="Offer request",
    )
    assert event["start_at"] == "2026-03-02T11:00:00Z"
    assert (event["phone"], event["phone_e164"], event["phone_valid"]) == (
        "0888 123 456",
        "+359888123456",
        True,
    )
    assert (event["responsible_employee_id"], event["team_id"]) == ("emp-agent", "team-sales")
    assert event["direction"] == "inbound"  # the type's
    assert (event["version"], event["source"], event["archived"]) == (1, "manual", False)

    # A number that cannot be normalized is kept as given and flagged, never lost.
    odd = await create(client, token_for(agent), phone="12-AB")
    assert (odd["phone"], odd["phone_e164"], odd["phone_valid"]) == ("12-AB", None, False)

    ((subject, change), _) = await published(crm_db)
    assert subject == "crm.event.created"
    assert change.created.event_id == event["id"]
    assert change.created.phone_e164 == "+359888123456"
    assert change.event_id == f"event:{event['id']}:1"
    history = await client.get(f"/journal/events/{event['id']}/history", headers=token_for(agent))
    assert [entry["action"] for entry in history.json()] == ["create"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type_code": "nope"}, "type_code"),
        ({"start_at": at(10), "end_at": at(5)}, "end_at"),
        ({"email": "not-an-address"}, "email"),
        ({"direction": "sideways"}, "direction"),
        ({"subject": "x" * 256}, "subject"),
    ],
)
async def test_bad_values_answer_422_naming_the_field(
    client: httpx.AsyncClient, token_for: Headers, agent: Principal, body: dict[str, Any], field: str
) -> None:
    refused = await create(client, token_for(agent), expect=422, **body)
    assert refused["detail"][0]["loc"][-1] == field


async def test_rights_and_visibility(
    client: httpx.AsyncClient,
    token_for: Headers,
    agent: Principal,
    supervisor: Principal,
    crm_db: Database,
) -> None:
    mine = await create(client, token_for(agent))
    stranger = make_principal("u-other", Role.AGENT, employee_id="emp-other", teams=("team-support",))
    no_create = make_principal("u-ro", Role.AGENT, employee_id="emp-ro", rights=frozenset())

    # Without the right: 403, nothing changed.
    assert (await client.delete(f"/journal/events/{mine['id']}", headers=token_for(agent))).status_code == 403
    assert (await create(client, token_for(no_create), expect=403))["detail"]
    # An agent may not put an event outside what they see.
    await create(client, token_for(agent), expect=403, responsible_employee_id="emp-other", team_id="team-x")
    moved = await client.patch(
        f"/journal/events/{mine['id']}",
        json={"version": 1, "responsible_employee_id": "emp-other", "team_id": "team-support"},
        headers=token_for(agent),
    )
    assert moved.status_code == 403
    # Another team's agent does not see it (404, as if it did not exist); the team's supervisor does.
    assert (await client.get(f"/journal/events/{mine['id']}", headers=token_for(stranger))).status_code == 404
    assert (
        await client.get(f"/journal/events/{mine['id']}", headers=token_for(supervisor))
    ).status_code == 200
    theirs = await create(client, token_for(stranger))
    listed = await client.get("/journal/events", headers=token_for(agent))
    assert [item["id"] for item in listed.json()["items"]] == [mine["id"]]
    everything = await client.get("/journal/events", headers=token_for(supervisor))
    assert [item["id"] for item in everything.json()["items"]] == [mine["id"]]  # not the support team's
    assert (await client.get("/journal/events")).status_code == 401

    deleted = await client.delete(f"/journal/events/{theirs['id']}", headers=token_for(supervisor))
    assert deleted.status_code == 404  # not theirs to see
    assert (
        await client.delete(f"/journal/events/{mine['id']}", headers=token_for(supervisor))
    ).status_code == 204
    assert (await client.get(f"/journal/events/{mine['id']}", headers=token_for(agent))).status_code == 404
    assert [subject for subject, _ in await published(crm_db)] == [
        "crm.event.created",
        "crm.event.created",
        "crm.event.deleted",
    ]


async def test_a_change_names_the_version_it_read(
    client: httpx.AsyncClient, token_for: Headers, agent: Principal, crm_db: Database
) -> None:
    headers = token_for(agent)
    event = await create(client, headers, content="First words", project_id="p-1")
    url = f"/journal/events/{event['id']}"
    changed = await client.patch(
        url, json={"version": 1, "content": "Second", "project_id": None}, headers=headers
    )
    assert changed.status_code == 200
    assert (changed.json()["content"], changed.json()["project_id"], changed.json()["version"]) == (
        "Second",
        None,
        2,
    )

    stale = await client.patch(url, json={"version": 1, "content": "Lost update"}, headers=headers)
    assert stale.status_code == 409
    assert stale.headers["X-Current-Version"] == "2"
    assert (await client.get(url, headers=headers)).json()["content"] == "Second"

    same = await client.patch(url, json={"version": 2, "content": "Second"}, headers=headers)
    assert same.json()["version"] == 2  # nothing changed: no new version, no event
    history = (await client.get(f"{url}/history", headers=headers)).json()
    assert [entry["action"] for entry in history] == ["create", "update"]
    assert history[1]["changes"] == {"content": ["First words", "Second"], "project_id": ["p-1", None]}
    subjects = [
        (subject, change.version, list(change.changed)) for subject, change in await published(crm_db)
    ]
    assert subjects == [("crm.event.created", 1, []), ("crm.event.updated", 2, ["content", "project_id"])]
    stale_delete = await client.delete(f"{url}?version=1", headers=token_for(make_principal("s", Role.ADMIN)))
    assert stale_delete.status_code == 409


async def test_an_idempotency_key_makes_one_event(
    client: httpx.AsyncClient, token_for: Headers, agent: Principal, crm_db: Database
) -> None:
    headers = {**token_for(agent), "Idempotency-Key": "form-42"}
    first = await client.post(
        "/journal/events", json={"type_code": "sms", "phone": "+359888000111"}, headers=headers
    )
    again = await client.post(
        "/journal/events", json={"type_code": "sms", "phone": "+359888000111"}, headers=headers
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert len(await published(crm_db)) == 1


# --- archive ----------------------------------------------------------------------------------------


async def test_archive_by_selection_and_by_date_and_restore(
    client: httpx.AsyncClient, token_for: Headers, agent: Principal, supervisor: Principal, crm_db: Database
) -> None:
    headers = token_for(agent)
    old = await create(client, headers, start_at=at(-3 * 24 * 60), end_at=at(-3 * 24 * 60 + 30))
    older_open = await create(client, headers, start_at=at(-5 * 24 * 60))  # no end: counts by its start
    recent = await create(client, headers, start_at=at(0), end_at=at(10))
    picked = await create(client, headers, start_at=at(60))
    other_team = make_principal("u-x", Role.AGENT, employee_id="emp-x", teams=("team-x",))
    not_mine = await create(client, token_for(other_team), start_at=at(-9 * 24 * 60))

    unknown = await client.post("/journal/archive", json={"ids": [picked["id"], "missing"]}, headers=headers)
    assert unknown.status_code == 404
    assert (await client.get(f"/journal/events/{picked['id']}", headers=headers)).json()["archived"] is False

    by_selection = await client.post("/journal/archive", json={"ids": [picked["id"]]}, headers=headers)
    assert by_selection.json() == {"count": 1, "changed": [picked["id"]], "unchanged": []}
    by_date = await client.post("/journal/archive", json={"before": at(-24 * 60)}, headers=headers)
    assert by_date.json()["count"] == 2  # old and older_open; not another team's event
    neither = await client.post("/journal/archive", json={}, headers=headers)
    assert neither.status_code == 422

    listed = await client.get("/journal/events", headers=headers)
    assert [item["id"] for item in listed.json()["items"]] == [recent["id"]]
    archive = await client.get("/journal/events?archived=true", headers=headers)
    assert {item["id"] for item in archive.json()["items"]} == {picked["id"], old["id"], older_open["id"]}
    everything = await client.get("/journal/events?include_archived=true&include_total=true", headers=headers)
    assert everything.json()["total"] == 4
    visible_to_x = await client.get("/journal/events", headers=token_for(other_team))
    assert [item["id"] for item in visible_to_x.json()["items"]] == [not_mine["id"]]

    # Archived events are read-only until restored.
    read_only = await client.patch(
        f"/journal/events/{picked['id']}", json={"version": 2, "content": "x"}, headers=headers
    )
    assert read_only.status_code == 409
    restored = await client.post(
        "/journal/restore", json={"ids": [picked["id"], recent["id"]]}, headers=headers
    )
    assert restored.json() == {"count": 1, "changed": [picked["id"]], "unchanged": [recent["id"]]}
    event = (await client.get(f"/journal/events/{picked['id']}", headers=headers)).json()
    assert (event["archived"], event["archived_at"], event["version"]) == (False, None, 3)

    subjects = [subject for subject, _ in await published(crm_db)]
    assert subjects.count("crm.event.archived") == 3
    assert subjects.count("crm.event.restored") == 1
    history = (
        await client.get(f"/journal/events/{picked['id']}/history", headers=token_for(supervisor))
    ).json()
    assert [entry["action"] for entry in history] == ["create", "archive", "restore"]


# --- views ------------------------------------------------------------------------------------------


async def test_views_by_project_number_contact_employee_type_and_period(
    client: httpx.AsyncClient, token_for: Headers, admin: Principal
) -> None:
    headers = token_for(admin)
    a = await create(
        client,
        headers,
        type_code="incoming_call",
        start_at=at(0),
        phone="+7 (499) 369-04-39",
        project_id="p-1",
        contact_id="c-1",
        responsible_employee_id="emp-1",
        team_id="t-1",
        content="Asked about the delivery date",
    )
    b = await create(
        client,
        headers,
        type_code="email_out",
        start_at=at(10),
        phone="0888 123 456",
        project_id="p-2",
        contact_id="c-2",
        responsible_employee_id="emp-2",
        team_id="t-2",
    )
    c = await create(
        client,
        headers,
        type_code="visit",
        start_at=at(20),
        contact_id="c-1",
        responsible_employee_id="emp-1",
        team_id="t-1",
    )
    # Written the Russian way: no E.164 form in a Bulgarian installation, kept as given.
    d = await create(
        client,
        headers,
        type_code="incoming_call",
        start_at=at(30),
        phone="8 (499) 369-04-39",
        project_id="p-1",
    )
    assert d["phone_valid"] is False

    async def ids(query: str) -> list[str]:
        answer = await client.get(f"/journal/events?{query}", headers=headers)
        assert answer.status_code == 200, answer.text
        return [item["id"] for item in answer.json()["items"]]

    assert await ids("project_id=p-1") == [d["id"], a["id"]]
    assert await ids("without_project=true") == [c["id"]]
    # One number in any format: E.164, a mask, the digits, part of it.
    for form in ("%2B74993690439", "+7 499 369 04 39".replace(" ", "%20").replace("+", "%2B"), "369-04-39"):
        assert await ids(f"phone={form}") == [d["id"], a["id"]], form
    assert await ids("phone=%2B359888123456") == [b["id"]]
    assert await ids("phone=888123456") == [b["id"]]
    assert await ids("contact_id=c-1") == [c["id"], a["id"]]
    assert await ids("employee_id=emp-1&order=oldest") == [a["id"], c["id"]]
    assert await ids("team_id=t-2") == [b["id"]]
    assert await ids("type=incoming_call&type=visit") == [d["id"], c["id"], a["id"]]
    assert await ids(f"from={at(10)}&to={at(30)}".replace("+", "%2B")) == [c["id"], b["id"]]
    assert await ids("q=delivery") == [a["id"]]
    bad_phone = await client.get("/journal/events?phone=abc", headers=headers)
    assert bad_phone.status_code == 422
    assert bad_phone.json()["detail"][0]["loc"] == ["query", "phone"]
    backwards = await client.get(
        f"/journal/events?from={at(30)}&to={at(10)}".replace("+", "%2B"), headers=headers
    )
    assert backwards.status_code == 422

    # Pages: keyset cursors, signed.
    first = (await client.get("/journal/events?limit=3&include_total=true", headers=headers)).json()
    assert ([item["id"] for item in first["items"]], first["total"]) == ([d["id"], c["id"], b["id"]], 4)
    second = (
        await client.get(f"/journal/events?limit=3&cursor={first['next_cursor']}", headers=headers)
    ).json()
    assert ([item["id"] for item in second["items"]], second["next_cursor"]) == ([a["id"]], None)
    tampered = await client.get(f"/journal/events?cursor=x{first['next_cursor']}", headers=headers)
    assert tampered.status_code == 400
    other_list = await client.get(
        f"/journal/events?order=oldest&cursor={first['next_cursor']}", headers=headers
    )
    assert other_list.status_code == 400


# --- attachments ------------------------------------------------------------------------------------


async def test_attachments_are_checked_stored_and_served_as_downloads(
    client: httpx.AsyncClient, token_for: Headers, agent: Principal, crm_db: Database
) -> None:
    headers = token_for(agent)
    event = await create(client, headers)
    url = f"/journal/events/{event['id']}/attachments"
    uploaded = await client.post(
        url, files={"file": ("../../offer.pdf", PDF, "application/pdf")}, headers=headers
    )
    assert uploaded.status_code == 201, uploaded.text
    attachment = uploaded.json()
    assert (attachment["filename"], attachment["content_type"], attachment["size"]) == (
        "offer.pdf",
        "application/pdf",
        len(PDF),
    )
    executable = await client.post(
        url, files={"file": ("a.pdf", b"MZ\x90\x00" + b"\x00" * 64)}, headers=headers
    )
    assert executable.status_code == 415
    too_big = await client.post(url, files={"file": ("big.pdf", PDF + b"y" * 5000)}, headers=headers)
    assert too_big.status_code == 413
    listed = await client.get(url, headers=headers)
    assert [item["id"] for item in listed.json()] == [attachment["id"]]

    download = await client.get(f"{url}/{attachment['id']}", headers=headers)
    assert download.content == PDF
    assert download.headers["content-disposition"].startswith("attachment")
    assert download.headers["x-content-type-options"] == "nosniff"
    stranger = make_principal("u-s", Role.AGENT, employee_id="emp-s", teams=("team-s",))
    assert (await client.get(f"{url}/{attachment['id']}", headers=token_for(stranger))).status_code == 404
    other = await create(client, headers)
    wrong_owner = await client.get(
        f"/journal/events/{other['id']}/attachments/{attachment['id']}", headers=headers
    )
    assert wrong_owner.status_code == 404

    assert (await client.delete(f"{url}/{attachment['id']}", headers=headers)).status_code == 204
    assert (await client.get(url, headers=headers)).json() == []
    changes = [(s, list(c.changed)) for s, c in await published(crm_db) if s == "crm.event.updated"]
    assert changes == [("crm.event.updated", ["attachments"])] * 2


# --- gRPC -------------------------------------------------------------------------------------------


async def test_grpc_create_get_and_list(journal: JournalService) -> None:
    async def ok() -> None:
        return None

    server = GrpcServer(
        CRMSettings(grpc_port=0), service_names=[journal_grpc.SERVICE_NAME], checks={"database": ok}
    )
    journal_grpc.add_to_server(server.server, journal)
    await server.start()
    try:
        async with channel(f"127.0.0.1:{server.port}") as chan:
            stub = journal_pb2_grpc.JournalStub(chan)
            request = journal_pb2.CreateEventRequest(
                type_code="electronic_queue",
                contact_id="c-9",
                phone="+7 (499) 369-04-39",
                subject="Ticket A-017",
                created_by="system:queue",
                request_id="queue-ticket-17",
            )
            first = await stub.CreateEvent(request)
            again = await stub.CreateEvent(request)
            assert first.event_id == again.event_id
            assert (first.source, first.created_by, first.phone_e164) == (
                "api",
                "system:queue",
                "+74993690439",
            )
            by_employee = await stub.CreateEvent(
                journal_pb2.CreateEventRequest(type_code="survey", created_by="emp-7", phone="369")
            )
            assert (by_employee.responsible_employee_id, by_employee.phone_valid) == ("emp-7", False)

            got = await stub.GetEvent(journal_pb2.GetEventRequest(event_id=first.event_id))
            assert got.subject == "Ticket A-017"
            by_contact = await stub.ListEvents(journal_pb2.ListEventsRequest(contact_id="c-9"))
            assert [e.event_id for e in by_contact.events] == [first.event_id]
            by_number = await stub.ListEvents(
                journal_pb2.ListEventsRequest(number="(499) 369-04-39", page_size=1)
            )
            assert [e.event_id for e in by_number.events] == [first.event_id]
            assert by_number.next_page_token == ""

            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await stub.GetEvent(journal_pb2.GetEventRequest(event_id="nope"))
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await stub.CreateEvent(journal_pb2.CreateEventRequest(type_code="nope"))
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "type_code" in (bad.value.details() or "")
    finally:
        await server.stop(0)
    async with journal.db.session() as session:
        count = len((await session.scalars(select(JournalEvent))).all())
    assert count == 2


# --- the migration ----------------------------------------------------------------------------------


async def test_the_migration_seeds_the_system_types_and_matches_the_models(
    database_factory: Callable[[str], str],
) -> None:
    url = await asyncio.to_thread(database_factory, "crmjournal")  # it runs its own event loop
    await asyncio.to_thread(upgrade, url, MIGRATIONS, "0005")
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            codes = (
                await conn.execute(text("SELECT code FROM journal_event_types ORDER BY position"))
            ).scalars()
            assert list(codes) == [item.code for item in SYSTEM_TYPES]

            def differences(sync_conn: Any) -> list[Any]:
                context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                found = compare_metadata(context, metadata)
                return [d for d in found if _table_of(d).startswith("journal_")]

            assert await conn.run_sync(differences) == []
        await asyncio.to_thread(command.downgrade, alembic_config(url, MIGRATIONS), "0004")
        async with db.engine.connect() as conn:
            names = await conn.run_sync(lambda sync_conn: inspect(sync_conn).get_table_names())
        assert not [name for name in names if name.startswith("journal_")]
        await asyncio.to_thread(upgrade, url, MIGRATIONS, "0005")
    finally:
        await db.dispose()


def _table_of(difference: Any) -> str:
    """The table an Alembic autogenerate difference is about."""
    if isinstance(difference, list):
        difference = difference[0]
    for part in difference[1:]:
        if isinstance(part, Table):
            return str(part.name)
        table = getattr(part, "table", None)
        if isinstance(table, Table):
            return str(table.name)
    return next((part for part in difference[1:] if isinstance(part, str) and part), "")
