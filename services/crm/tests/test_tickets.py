"""Service tickets: numbering per series (also under concurrent creation), the status workflow, rights,
e-mails to the customer, notes, the operation log, the evolution report and the events of each change."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from telecrm.crm.v1 import tickets_pb2
from telecrm_common.auth import Principal, Role, Visibility
from telecrm_common.db import Database
from telecrm_crm.access import Access
from telecrm_crm.attachments import AttachmentStore
from telecrm_crm.audit import AuditLog
from telecrm_crm.models import OutboxMessage
from telecrm_crm.tickets import TicketInput, TicketService
from telecrm_crm.tickets_api import tickets_router
from telecrm_crm.tickets_models import STATUSES, TRANSITIONS, Ticket

from .conftest import CURSOR_SECRET, make_principal

Headers = Callable[[Principal], dict[str, str]]
Json = dict[str, Any]
PDF = b"%PDF-1.7\n" + b"x" * 200
START, END = "2026-12-01T08:00:00Z", "2026-12-01T12:00:00Z"
SCHEDULE = {"scheduled_start": START, "scheduled_end": END, "team_id": "team-field"}


def _service(db: Database, tmp_path: Path, level: str = "changes") -> TicketService:
    return TicketService(
        db,
        audit=AuditLog(level),  # type: ignore[arg-type]
        attachments=AttachmentStore(tmp_path / "files", max_bytes=10_000),
        cursor_secret=CURSOR_SECRET,
    )


@pytest.fixture
async def service(crm_db: Database, tmp_path: Path, admin: Principal) -> TicketService:
    service = _service(crm_db, tmp_path)
    await service.create_series(admin, "SRV", "Service interventions")
    await service.create_series(admin, "INS", "Installations", next_number=100)
    await service.create_type(admin, "repair", "Repair")
    await service.create_type(admin, "installation", "Installation")
    return service


def _client(service: TicketService, access: Access) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(tickets_router(service, access))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://crm")


@pytest.fixture
async def client(service: TicketService, access: Access) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(service, access) as http:
        yield http


@pytest.fixture
def outsider() -> Principal:
    return make_principal(
        "u-out", Role.AGENT, employee_id="emp-out", teams=("team-other",), visibility=Visibility.TEAM
    )


async def _create(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> Json:
    response = await client.post("/tickets", json={"client_id": "contact-1", **fields}, headers=headers)
    assert response.status_code == 201, response.text
    result: Json = response.json()
    return result


async def _move(
    client: httpx.AsyncClient, headers: dict[str, str], ticket_id: str, status: str, **body: Any
) -> httpx.Response:
    return await client.post(f"/tickets/{ticket_id}/status", json={"status": status, **body}, headers=headers)


async def _outbox(db: Database) -> list[OutboxMessage]:
    async with db.session() as session:
        return list((await session.scalars(select(OutboxMessage).order_by(OutboxMessage.seq))).all())


def _event(row: OutboxMessage) -> tickets_pb2.TicketEvent:
    event = tickets_pb2.TicketEvent()
    event.ParseFromString(row.payload)
    return event


# --- numbering -----------------------------------------------------------------------------------------


async def test_each_series_numbers_its_own_tickets(
    client: httpx.AsyncClient, token_for: Headers, agent: Principal, admin: Principal
) -> None:
    headers = token_for(agent)
    first = await _create(client, headers)  # the default series: the first one created
    second = await _create(client, headers, series="SRV")
    installation = await _create(client, headers, series="INS", type_code="installation")
    assert [(t["series"], t["number"], t["code"]) for t in (first, second, installation)] == [
        ("SRV", 1, "SRV-1"),
        ("SRV", 2, "SRV-2"),
        ("INS", 100, "INS-100"),
    ]
    assert (first["status"], first["taken_by_id"], first["priority"]) == ("taken", "emp-agent", "medium")
    assert installation["type_name"] == "Installation"
    series = (await client.get("/ticket-series", headers=headers)).json()
    assert {s["code"]: (s["next_number"], s["is_default"]) for s in series} == {
        "INS": (101, False),
        "SRV": (3, True),
    }

    unknown = await client.post("/tickets", json={"client_id": "c", "series": "NOPE"}, headers=headers)
    assert (unknown.status_code, unknown.json()["detail"][0]["loc"]) == (422, ["body", "series"])
    admin_headers = token_for(admin)
    assert (
        await client.patch("/ticket-series/INS", json={"active": False}, headers=admin_headers)
    ).status_code == 200
    inactive = await client.post("/tickets", json={"client_id": "c", "series": "INS"}, headers=headers)
    assert inactive.status_code == 422
    assert "not active" in inactive.json()["detail"][0]["msg"]
    back = await client.patch("/ticket-series/SRV", json={"next_number": 2}, headers=admin_headers)
    assert (back.status_code, back.json()["detail"][0]["loc"]) == (422, ["body", "next_number"])
    forward = await client.patch("/ticket-series/SRV", json={"next_number": 500}, headers=admin_headers)
    assert forward.json()["next_number"] == 500
    assert (await _create(client, headers))["number"] == 500
    new_default = await client.patch(
        "/ticket-series/INS", json={"active": True, "is_default": True}, headers=admin_headers
    )
    assert new_default.json()["is_default"] is True
    assert (await _create(client, headers))["code"] == "INS-101"


async def test_concurrent_creations_get_consecutive_numbers(service: TicketService, agent: Principal) -> None:
    async def take(series: str) -> tuple[str, int]:
        view = await service.create(agent, TicketInput(client_id="contact-1", series=series))
        return view.ticket.series, view.ticket.number

    results = await asyncio.gather(*(take("SRV" if n % 3 else "INS") for n in range(15)))
    srv = sorted(number for series, number in results if series == "SRV")
    ins = sorted(number for series, number in results if series == "INS")
    assert srv == list(range(1, 11))
    assert ins == list(range(100, 105))
    series = {view.series.code: view.next_number for view in await service.list_series()}
    assert series == {"SRV": 11, "INS": 105}


async def test_concurrent_retries_with_one_key_make_one_ticket(
    service: TicketService, agent: Principal
) -> None:
    data = TicketInput(client_id="contact-1", request_key="retry-me")
    views = await asyncio.gather(*(service.create(agent, data) for _ in range(4)))
    assert len({view.ticket.id for view in views}) == 1
    assert {view.ticket.number for view in views} == {1}
    assert (await service.create(agent, TicketInput(client_id="contact-1"))).ticket.number == 2


async def test_a_failed_creation_gives_its_number_back(
    client: httpx.AsyncClient, token_for: Headers, agent: Principal
) -> None:
    headers = token_for(agent)
    refused = await client.post("/tickets", json={"client_id": "c", "type_code": "unknown"}, headers=headers)
    assert (refused.status_code, refused.json()["detail"][0]["loc"]) == (422, ["body", "type_code"])
    assert (await _create(client, headers))["number"] == 1


async def test_the_same_idempotency_key_returns_the_first_ticket(
    client: httpx.AsyncClient, crm_db: Database, token_for: Headers, agent: Principal, supervisor: Principal
) -> None:
    headers = {**token_for(agent), "Idempotency-Key": "call-7781"}
    first = await _create(client, headers, product="Boiler X200")
    again = await _create(client, headers, product="Boiler X200")
    assert again["id"] == first["id"]
    # Another user's request with the same key is a request of its own.
    theirs = await _create(client, {**token_for(supervisor), "Idempotency-Key": "call-7781"})
    assert theirs["id"] != first["id"]
    async with crm_db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Ticket)) == 2
    assert [row.subject for row in await _outbox(crm_db)] == ["crm.ticket.created"] * 2


# --- the workflow --------------------------------------------------------------------------------------

PATHS = {
    "taken": [],
    "allocated": ["allocated"],
    "confirmed": ["allocated", "confirmed"],
    "finalized": ["allocated", "confirmed", "finalized"],
    "cancelled": ["cancelled"],
}


@pytest.mark.parametrize("target", STATUSES)
@pytest.mark.parametrize("current", STATUSES)
async def test_the_workflow_table(
    client: httpx.AsyncClient, token_for: Headers, agent: Principal, current: str, target: str
) -> None:
    headers = token_for(agent)
    ticket = await _create(client, headers, **SCHEDULE)
    for step in PATHS[current]:
        assert (await _move(client, headers, ticket["id"], step)).status_code == 200
    before = (await client.get(f"/tickets/{ticket['id']}", headers=headers)).json()
    assert before["allowed_next"] == list(TRANSITIONS[current])
    response = await _move(client, headers, ticket["id"], target)
    if target in TRANSITIONS[current]:
        assert response.status_code == 200, response.text
        assert (response.json()["status"], response.json()["version"]) == (target, before["version"] + 1)
    else:
        assert response.status_code == 409
        detail = response.json()["detail"]
        assert (detail["status"], detail["requested"], detail["allowed"]) == (
            current,
            target,
            list(TRANSITIONS[current]),
        )
        after = (await client.get(f"/tickets/{ticket['id']}", headers=headers)).json()
        assert after == before


async def test_allocation_needs_scheduled_dates_and_a_team(
    client: httpx.AsyncClient, token_for: Headers, agent: Principal
) -> None:
    headers = token_for(agent)
    ticket = await _create(client, headers, scheduled_start=START)
    refused = await _move(client, headers, ticket["id"], "allocated")
    assert refused.status_code == 409
    assert refused.json()["detail"]["missing"] == ["scheduled_end", "team_id"]
    assert refused.json()["detail"]["allowed"] == ["allocated", "cancelled"]
    backwards = await _move(
        client, headers, ticket["id"], "allocated", scheduled_end="2026-12-01T07:00:00Z", team_id="t"
    )
    assert (backwards.status_code, backwards.json()["detail"][0]["loc"]) == (422, ["body", "scheduled_end"])
    allocated = await _move(
        client, headers, ticket["id"], "allocated", scheduled_end=END, team_id="team-field"
    )
    assert allocated.status_code == 200
    assert (allocated.json()["team_id"], allocated.json()["scheduled_end"]) == (
        "team-field",
        "2026-12-01T12:00:00Z",
    )
    cleared = await client.patch(
        f"/tickets/{ticket['id']}",
        json={"version": allocated.json()["version"], "team_id": None},
        headers=headers,
    )
    assert (cleared.status_code, cleared.json()["detail"][0]["loc"]) == (422, ["body", "team_id"])


async def test_a_closed_ticket_keeps_its_fields_but_takes_notes(
    client: httpx.AsyncClient, token_for: Headers, agent: Principal
) -> None:
    headers = token_for(agent)
    ticket = await _create(client, headers)
    cancelled = await _move(client, headers, ticket["id"], "cancelled", note="Customer fixed it himself")
    assert cancelled.json()["allowed_next"] == []
    edit = await client.patch(
        f"/tickets/{ticket['id']}",
        json={"version": cancelled.json()["version"], "product": "x"},
        headers=headers,
    )
    assert (edit.status_code, edit.json()["detail"]["status"]) == (409, "cancelled")
    note = await client.post(f"/tickets/{ticket['id']}/notes", data={"text": "Called again"}, headers=headers)
    assert note.status_code == 201
    notes = (await client.get(f"/tickets/{ticket['id']}/notes", headers=headers)).json()
    assert [n["text"] for n in notes] == ["Customer fixed it himself", "Called again"]


async def test_edits_need_the_current_version(
    client: httpx.AsyncClient, token_for: Headers, agent: Principal
) -> None:
    headers = token_for(agent)
    ticket = await _create(client, headers)
    url = f"/tickets/{ticket['id']}"
    changed = await client.patch(
        url, json={"version": 1, "priority": "high", "checker_id": "emp-q"}, headers=headers
    )
    assert (changed.json()["priority"], changed.json()["version"]) == ("high", 2)
    stale = await client.patch(url, json={"version": 1, "priority": "low"}, headers=headers)
    assert (stale.status_code, stale.json()["detail"]["version"]) == (409, 2)
    stale_status = await _move(client, headers, ticket["id"], "cancelled", version=1)
    assert stale_status.status_code == 409
    status_field = await client.patch(url, json={"version": 2, "status": "finalized"}, headers=headers)
    assert (status_field.status_code, status_field.json()["detail"][0]["loc"]) == (422, ["body", "status"])
    null_client = await client.patch(url, json={"version": 2, "client_id": None}, headers=headers)
    assert (null_client.status_code, null_client.json()["detail"][0]["loc"]) == (422, ["body", "client_id"])


# --- e-mail to the customer ----------------------------------------------------------------------------


async def test_the_customer_is_emailed_on_allocation_and_finalization_when_asked(
    client: httpx.AsyncClient, crm_db: Database, token_for: Headers, agent: Principal
) -> None:
    headers = token_for(agent)
    missing = await client.post("/tickets", json={"client_id": "c", "notify_customer": True}, headers=headers)
    assert (missing.status_code, missing.json()["detail"][0]["loc"]) == (422, ["body", "customer_email"])
    ticket = await _create(
        client,
        headers,
        notify_customer=True,
        customer_email="ana@example.ro",
        type_code="repair",
        product="Boiler X200",
        **SCHEDULE,
    )
    silent = await _create(client, headers, **SCHEDULE)
    for status in ("allocated", "confirmed", "finalized"):
        assert (await _move(client, headers, ticket["id"], status)).status_code == 200
        assert (await _move(client, headers, silent["id"], status)).status_code == 200

    emails = [row for row in await _outbox(crm_db) if row.subject == "crm.ticket.email_requested"]
    assert len(emails) == 2
    requests = []
    for row in emails:
        request = tickets_pb2.TicketEmailRequest()
        request.ParseFromString(row.payload)
        assert row.msg_id == request.request_id
        requests.append(request)
    assert [(r.reason, r.to, r.ticket_id, r.ticket_code) for r in requests] == [
        ("allocated", "ana@example.ro", ticket["id"], "SRV-1"),
        ("finalized", "ana@example.ro", ticket["id"], "SRV-1"),
    ]
    assert "SRV-1" in requests[0].subject
    assert "Boiler X200" in requests[0].body
    assert "2026-12-01 08:00 UTC" in requests[0].body
    assert "Repair" in requests[0].body
    final = (await client.get(f"/tickets/{ticket['id']}", headers=headers)).json()
    assert final["allocation_email_requested_at"] is not None
    assert final["finalization_email_requested_at"] is not None
    quiet = (await client.get(f"/tickets/{silent['id']}", headers=headers)).json()
    assert quiet["allocation_email_requested_at"] is None


# --- rights and visibility -----------------------------------------------------------------------------


async def test_without_the_right_nothing_changes(
    client: httpx.AsyncClient, crm_db: Database, token_for: Headers, agent: Principal
) -> None:
    ticket = await _create(client, token_for(agent))
    url = f"/tickets/{ticket['id']}"
    reader = token_for(make_principal("u-r", Role.AGENT, employee_id="emp-agent", rights=frozenset()))
    refused = [
        await client.post("/tickets", json={"client_id": "c"}, headers=reader),
        await client.patch(url, json={"version": 1, "product": "x"}, headers=reader),
        await _move(client, reader, ticket["id"], "cancelled"),
        await client.post(f"{url}/notes", data={"text": "x"}, headers=reader),
        await client.delete(url, headers=token_for(agent)),  # agents may not delete by default
        await client.post("/ticket-types", json={"code": "x", "name": "X"}, headers=token_for(agent)),
        await client.post("/ticket-series", json={"code": "X", "name": "X"}, headers=token_for(agent)),
        await client.patch("/ticket-series/SRV", json={"next_number": 90}, headers=token_for(agent)),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    assert "ticket.modify" in refused[1].json()["detail"]
    assert (await client.get(url, headers=reader)).json() == ticket  # still readable, unchanged
    async with crm_db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Ticket)) == 1
    assert [row.subject for row in await _outbox(crm_db)] == ["crm.ticket.created"]
    assert [t["code"] for t in (await client.get("/ticket-types", headers=reader)).json()] == [
        "installation",
        "repair",
    ]
    assert (await client.get("/ticket-series", headers=reader)).json()[1]["next_number"] == 2


async def test_tickets_are_seen_by_who_took_checks_or_created_them_and_their_teams(
    client: httpx.AsyncClient,
    token_for: Headers,
    admin: Principal,
    supervisor: Principal,
    agent: Principal,
    outsider: Principal,
) -> None:
    admin_headers = token_for(admin)
    taken = await _create(client, admin_headers, taken_by_id="emp-agent")
    checked = await _create(client, admin_headers, taken_by_id="emp-x", checker_id="emp-agent")
    team = await _create(client, admin_headers, taken_by_id="emp-x", team_id="team-sales")
    created = await _create(client, token_for(agent), taken_by_id="emp-x")
    other = await _create(client, admin_headers, taken_by_id="emp-x", team_id="team-x")

    async def codes(who: Principal) -> set[str]:
        page = (await client.get("/tickets", headers=token_for(who))).json()
        return {item["code"] for item in page["items"]}

    assert await codes(agent) == {taken["code"], checked["code"], created["code"]}
    team_agent = make_principal(
        "u-ta", Role.AGENT, employee_id="emp-ta", teams=("team-sales",), visibility=Visibility.TEAM
    )
    assert await codes(team_agent) == {team["code"]}
    assert await codes(supervisor) == {team["code"]}
    assert len(await codes(admin)) == 5
    assert await codes(outsider) == set()
    assert (await client.get(f"/tickets/{other['id']}", headers=token_for(agent))).status_code == 404
    hidden = await _move(client, token_for(agent), other["id"], "cancelled")
    assert hidden.status_code == 404


# --- notes, history, evolution, events -----------------------------------------------------------------


async def test_notes_carry_who_when_what_and_a_file(
    client: httpx.AsyncClient, token_for: Headers, agent: Principal, outsider: Principal
) -> None:
    headers = token_for(agent)
    ticket = await _create(client, headers)
    url = f"/tickets/{ticket['id']}/notes"
    plain = await client.post(url, data={"text": "Customer will be home after 14:00"}, headers=headers)
    assert plain.status_code == 201
    assert plain.json()["attachment"] is None
    with_file = await client.post(
        url,
        data={"text": "Photo of the plate"},
        files={"file": ("plate.pdf", PDF, "application/pdf")},
        headers=headers,
    )
    assert with_file.status_code == 201, with_file.text
    attachment = with_file.json()["attachment"]
    assert (attachment["filename"], attachment["content_type"]) == ("plate.pdf", "application/pdf")
    refused = await client.post(
        url, data={"text": "x"}, files={"file": ("a.pdf", b"#!/bin/sh\nreboot\n")}, headers=headers
    )
    assert refused.status_code == 415
    empty = await client.post(url, data={"text": "  "}, headers=headers)
    assert (empty.status_code, empty.json()["detail"][0]["loc"]) == (422, ["body", "text"])

    notes = (await client.get(url, headers=headers)).json()
    assert [(n["author_employee_id"], n["text"], bool(n["attachment_id"])) for n in notes] == [
        ("emp-agent", "Customer will be home after 14:00", False),
        ("emp-agent", "Photo of the plate", True),
    ]
    download = await client.get(f"/tickets/{ticket['id']}/attachments/{attachment['id']}", headers=headers)
    assert (download.status_code, download.content) == (200, PDF)
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["x-content-type-options"] == "nosniff"
    listed = (await client.get(f"/tickets/{ticket['id']}/attachments", headers=headers)).json()
    assert [a["id"] for a in listed] == [attachment["id"]]
    assert (await client.get(url, headers=token_for(outsider))).status_code == 404


async def test_history_and_evolution_follow_every_change(
    client: httpx.AsyncClient, token_for: Headers, agent: Principal, supervisor: Principal
) -> None:
    ticket = await _create(client, token_for(agent), team_id="team-sales")
    url = f"/tickets/{ticket['id']}"
    await client.patch(url, json={"version": 1, "product": "Boiler X200"}, headers=token_for(agent))
    await _move(
        client, token_for(supervisor), ticket["id"], "allocated", scheduled_start=START, scheduled_end=END
    )
    await _move(client, token_for(agent), ticket["id"], "confirmed")
    await _move(client, token_for(supervisor), ticket["id"], "finalized")

    history = (await client.get(f"{url}/history", headers=token_for(agent))).json()
    assert [(h["action"], h["actor_subject"]) for h in history] == [
        ("create", "u-agent"),
        ("update", "u-agent"),
        ("status", "u-sup"),
        ("status", "u-agent"),
        ("status", "u-sup"),
    ]
    assert history[1]["changes"] == {"product": ["", "Boiler X200"]}
    assert history[2]["changes"]["status"] == ["taken", "allocated"]
    assert history[2]["changes"]["scheduled_start"] == [None, "2026-12-01T08:00:00+00:00"]

    evolution = (await client.get(f"{url}/evolution", headers=token_for(agent))).json()
    periods = evolution["periods"]
    assert [(p["status"], p["entered_by"]) for p in periods] == [
        ("taken", "u-agent"),
        ("allocated", "u-sup"),
        ("confirmed", "u-agent"),
        ("finalized", "u-sup"),
    ]
    assert all(p["seconds"] >= 0 and p["left_at"] is not None for p in periods[:3])
    assert (periods[3]["left_at"], periods[3]["seconds"]) == (None, None)
    assert set(evolution["seconds_by_status"]) == {"taken", "allocated", "confirmed"}
    assert evolution["open_seconds"] >= 0
    assert evolution["status"] == "finalized"


async def test_the_operation_log_keeps_what_its_level_says(
    crm_db: Database, tmp_path: Path, access: Access, token_for: Headers, admin: Principal, agent: Principal
) -> None:
    service = _service(crm_db, tmp_path, level="writes")
    await service.create_series(admin, "SRV", "Service")
    async with _client(service, access) as client:
        headers = token_for(agent)
        ticket = await _create(client, headers)
        await client.patch(f"/tickets/{ticket['id']}", json={"version": 1, "product": "x"}, headers=headers)
        await _move(client, headers, ticket["id"], "cancelled")
        history = (await client.get(f"/tickets/{ticket['id']}/history", headers=headers)).json()
        assert [h["action"] for h in history] == ["create", "status"]
        # The evolution report does not depend on the log's level.
        evolution = (await client.get(f"/tickets/{ticket['id']}/evolution", headers=headers)).json()
        assert [p["status"] for p in evolution["periods"]] == ["taken", "cancelled"]


async def test_every_change_publishes_its_event(
    client: httpx.AsyncClient, crm_db: Database, token_for: Headers, supervisor: Principal
) -> None:
    headers = token_for(supervisor)
    ticket = await _create(client, headers)
    tid = ticket["id"]
    await client.patch(f"/tickets/{tid}", json={"version": 1, "priority": "high"}, headers=headers)
    await _move(client, headers, tid, "allocated", **SCHEDULE)
    await client.post(f"/tickets/{tid}/notes", data={"text": "ok"}, headers=headers)
    assert (await client.delete(f"/tickets/{tid}?version=1", headers=headers)).status_code == 409
    assert (await client.delete(f"/tickets/{tid}", headers=headers)).status_code == 204
    assert (await client.get(f"/tickets/{tid}", headers=headers)).status_code == 404

    rows = await _outbox(crm_db)
    assert [row.subject for row in rows] == [
        "crm.ticket.created",
        "crm.ticket.updated",
        "crm.ticket.status_changed",
        "crm.ticket.updated",
        "crm.ticket.deleted",
    ]
    events = [_event(row) for row in rows]
    assert [row.msg_id for row in rows][:3] == [f"ticket:{tid}:1", f"ticket:{tid}:2", f"ticket:{tid}:3"]
    assert events[0].created.code == "SRV-1"
    assert list(events[1].changed) == ["priority"]
    change = events[2].status_changed
    assert (change.from_status, change.to_status, change.ticket.team_id) == (
        "taken",
        "allocated",
        "team-field",
    )
    assert list(events[3].changed) == ["notes"]
    assert events[3].version == 3
    assert (events[4].deleted.ticket_id, events[4].deleted.code, events[4].actor) == (tid, "SRV-1", "u-sup")
    # A deleted ticket's number is not given again.
    assert (await _create(client, headers))["number"] == 2
