"""The tickets' register: a filter and a grouping for every field, paging, the CSV export and the
appointments calendar, each limited to the tickets the user sees."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from telecrm_common.auth import Principal, Role, Visibility
from telecrm_common.db import Database
from telecrm_crm.access import Access
from telecrm_crm.attachments import AttachmentStore
from telecrm_crm.audit import AuditLog
from telecrm_crm.tickets import TicketService
from telecrm_crm.tickets_api import CSV_HEADER, tickets_router

from .conftest import CURSOR_SECRET, make_principal

Headers = Callable[[Principal], dict[str, str]]

# code -> fields; all taken by admin, so agents see only what the fields give them.
TICKETS: dict[str, dict[str, Any]] = {
    "SRV-1": {
        "ticket_date": "2026-11-02",
        "client_id": "acme",
        "contact_person_id": "ana",
        "type_code": "repair",
        "product": "Boiler X200",
        "priority": "high",
        "taken_by_id": "emp-a",
        "checker_id": "emp-q",
        "team_id": "team-north",
        "scheduled_start": "2026-11-03T08:00:00Z",
        "scheduled_end": "2026-11-03T10:00:00Z",
    },
    "SRV-2": {
        "ticket_date": "2026-11-02",
        "client_id": "acme",
        "type_code": "installation",
        "product": "Heat pump HP9",
        "taken_by_id": "emp-b",
        "team_id": "team-south",
        "scheduled_start": "2026-11-04T08:00:00Z",
        "scheduled_end": "2026-11-05T16:00:00Z",
    },
    "SRV-3": {
        "ticket_date": "2026-11-10",
        "client_id": "globex",
        "contact_person_id": "ion",
        "type_code": "repair",
        "product": '=HYPERLINK("http://evil")',
        "priority": "low",
        "taken_by_id": "emp-a",
        "checker_id": "emp-b",
    },
    "INS-1": {
        "series": "INS",
        "ticket_date": "2026-11-20",
        "client_id": "globex",
        "product": "boiler x300",
        "taken_by_id": "emp-c",
        "team_id": "team-north",
        "scheduled_start": "2026-11-03T09:00:00Z",
        "scheduled_end": "2026-11-03T11:00:00Z",
    },
}


@pytest.fixture
async def service(crm_db: Database, tmp_path: Path, admin: Principal) -> TicketService:
    service = TicketService(
        crm_db,
        audit=AuditLog("changes"),
        attachments=AttachmentStore(tmp_path / "files", max_bytes=10_000),
        cursor_secret=CURSOR_SECRET,
    )
    await service.create_series(admin, "SRV", "Service")
    await service.create_series(admin, "INS", "Installations")
    await service.create_type(admin, "repair", "Repair")
    await service.create_type(admin, "installation", "Installation")
    return service


@pytest.fixture
async def client(service: TicketService, access: Access) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(tickets_router(service, access))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://crm") as http:
        yield http


@pytest.fixture
async def ids(client: httpx.AsyncClient, token_for: Headers, admin: Principal) -> dict[str, str]:
    headers = token_for(admin)
    made: dict[str, str] = {}
    for code, fields in TICKETS.items():
        response = await client.post("/tickets", json=fields, headers=headers)
        assert response.status_code == 201, response.text
        assert response.json()["code"] == code
        made[code] = response.json()["id"]
    # SRV-2 allocated, SRV-3 cancelled, INS-1 allocated then finalized.
    for code, steps in (
        ("SRV-2", ["allocated"]),
        ("SRV-3", ["cancelled"]),
        ("INS-1", ["allocated", "confirmed", "finalized"]),
    ):
        for step in steps:
            moved = await client.post(f"/tickets/{made[code]}/status", json={"status": step}, headers=headers)
            assert moved.status_code == 200, moved.text
    return made


async def _codes(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> set[str]:
    response = await client.get("/tickets", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return {item["code"] for item in response.json()["items"]}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"series": "INS"}, {"INS-1"}),
        ({"series": ["INS", "SRV"], "number": 1}, {"SRV-1", "INS-1"}),
        ({"date_from": "2026-11-03", "date_to": "2026-11-10"}, {"SRV-3"}),
        ({"date_to": "2026-11-02"}, {"SRV-1", "SRV-2"}),
        ({"client_id": "globex"}, {"SRV-3", "INS-1"}),
        ({"contact_person_id": "ana"}, {"SRV-1"}),
        ({"type_code": "repair"}, {"SRV-1", "SRV-3"}),
        ({"type_code": ["repair", "installation"]}, {"SRV-1", "SRV-2", "SRV-3"}),
        ({"product": "BOILER"}, {"SRV-1", "INS-1"}),
        ({"product": "%"}, set()),  # a literal percent sign, not a wildcard
        ({"priority": "medium"}, {"SRV-2", "INS-1"}),
        ({"priority": ["high", "low"]}, {"SRV-1", "SRV-3"}),
        ({"taken_by_id": "emp-a"}, {"SRV-1", "SRV-3"}),
        ({"checker_id": "emp-b"}, {"SRV-3"}),
        ({"team_id": "team-north"}, {"SRV-1", "INS-1"}),
        ({"status": "taken"}, {"SRV-1"}),
        ({"status": ["allocated", "finalized"]}, {"SRV-2", "INS-1"}),
        ({"scheduled_start_from": "2026-11-03T08:30:00Z"}, {"SRV-2", "INS-1"}),
        ({"scheduled_start_to": "2026-11-03T09:00:00Z"}, {"SRV-1"}),
        ({"scheduled_end_from": "2026-11-04T00:00:00", "scheduled_end_to": "2026-11-06T00:00:00"}, {"SRV-2"}),
        ({"client_id": "acme", "team_id": "team-south", "status": "allocated"}, {"SRV-2"}),
    ],
)
async def test_every_field_filters_the_register(
    client: httpx.AsyncClient,
    token_for: Headers,
    admin: Principal,
    ids: dict[str, str],
    params: dict[str, Any],
    expected: set[str],
) -> None:
    assert await _codes(client, token_for(admin), **params) == expected


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        ("status", [("allocated", 1), ("cancelled", 1), ("finalized", 1), ("taken", 1)]),
        ("series", [("SRV", 3), ("INS", 1)]),
        ("priority", [("medium", 2), ("high", 1), ("low", 1)]),
        ("type_code", [("repair", 2), ("installation", 1), (None, 1)]),
        ("client_id", [("acme", 2), ("globex", 2)]),
        ("contact_person_id", [(None, 2), ("ana", 1), ("ion", 1)]),
        ("taken_by_id", [("emp-a", 2), ("emp-b", 1), ("emp-c", 1)]),
        ("checker_id", [(None, 2), ("emp-b", 1), ("emp-q", 1)]),
        ("team_id", [("team-north", 2), ("team-south", 1), (None, 1)]),
        ("ticket_date", [("2026-11-02", 2), ("2026-11-10", 1), ("2026-11-20", 1)]),
        ("scheduled_start", [("2026-11-03", 2), ("2026-11-04", 1), (None, 1)]),
        ("scheduled_end", [("2026-11-03", 2), ("2026-11-05", 1), (None, 1)]),
    ],
)
async def test_every_field_groups_the_register(
    client: httpx.AsyncClient,
    token_for: Headers,
    admin: Principal,
    ids: dict[str, str],
    group_by: str,
    expected: list[tuple[str | None, int]],
) -> None:
    response = await client.get("/tickets", params={"group_by": group_by}, headers=token_for(admin))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["group_by"], body["total"], body["truncated"]) == (group_by, 4, False)
    assert [(g["key"], g["count"]) for g in body["groups"]] == expected


async def test_groupings_take_filters_and_visibility(
    client: httpx.AsyncClient, token_for: Headers, admin: Principal, ids: dict[str, str]
) -> None:
    filtered = await client.get(
        "/tickets", params={"group_by": "product", "client_id": "acme"}, headers=token_for(admin)
    )
    assert [(g["key"], g["count"]) for g in filtered.json()["groups"]] == [
        ("Boiler X200", 1),
        ("Heat pump HP9", 1),
    ]
    north = make_principal(
        "u-n", Role.AGENT, employee_id="emp-n", teams=("team-north",), visibility=Visibility.TEAM
    )
    seen = (await client.get("/tickets", params={"group_by": "status"}, headers=token_for(north))).json()
    assert ([(g["key"], g["count"]) for g in seen["groups"]], seen["total"]) == (
        [("finalized", 1), ("taken", 1)],
        2,
    )
    bad = await client.get("/tickets", params={"group_by": "description"}, headers=token_for(admin))
    assert (bad.status_code, bad.json()["detail"][0]["loc"]) == (422, ["query", "group_by"])
    bad_status = await client.get("/tickets", params={"status": "open"}, headers=token_for(admin))
    assert bad_status.status_code == 422


async def test_the_register_pages_newest_first(
    client: httpx.AsyncClient, token_for: Headers, admin: Principal, ids: dict[str, str]
) -> None:
    headers = token_for(admin)
    first = (await client.get("/tickets", params={"limit": 3, "include_total": True}, headers=headers)).json()
    assert ([t["code"] for t in first["items"]], first["total"]) == (["INS-1", "SRV-3", "SRV-2"], 4)
    second = (
        await client.get("/tickets", params={"limit": 3, "cursor": first["next_cursor"]}, headers=headers)
    ).json()
    assert ([t["code"] for t in second["items"]], second["next_cursor"]) == (["SRV-1"], None)
    other_filter = await client.get(
        "/tickets", params={"cursor": first["next_cursor"][:-2] + "xx"}, headers=headers
    )
    assert other_filter.status_code == 400


async def test_the_csv_export_streams_every_visible_match_safely(
    client: httpx.AsyncClient, token_for: Headers, admin: Principal, ids: dict[str, str]
) -> None:
    response = await client.get(
        "/tickets/export.csv", params={"type_code": "repair"}, headers=token_for(admin)
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith('attachment; filename="tickets-')
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8"))))
    assert rows[0] == list(CSV_HEADER)
    records = [dict(zip(CSV_HEADER, row, strict=True)) for row in rows[1:]]
    assert [r["code"] for r in records] == ["SRV-3", "SRV-1"]
    assert records[0]["product"] == '\'=HYPERLINK("http://evil")'  # shown as text, never run
    assert (records[1]["type_name"], records[1]["status"], records[1]["scheduled_start"]) == (
        "Repair",
        "taken",
        "2026-11-03T08:00:00Z",
    )
    everything = await client.get("/tickets/export.csv", headers=token_for(admin))
    assert len(everything.content.decode().strip().splitlines()) == 5
    south = make_principal(
        "u-s", Role.AGENT, employee_id="emp-s", teams=("team-south",), visibility=Visibility.TEAM
    )
    theirs = await client.get("/tickets/export.csv", headers=token_for(south))
    assert [row[0] for row in csv.reader(io.StringIO(theirs.content.decode()))][1:] == ["SRV-2"]
    refused = await client.get(
        "/tickets/export.csv",
        params={"date_from": "2026-12-01", "date_to": "2026-11-01"},
        headers=token_for(admin),
    )
    assert (refused.status_code, refused.json()["detail"][0]["loc"]) == (422, ["query", "date_to"])


async def test_the_appointments_calendar(
    client: httpx.AsyncClient, token_for: Headers, admin: Principal, ids: dict[str, str]
) -> None:
    headers = token_for(admin)

    async def calendar(**params: Any) -> list[str]:
        response = await client.get("/tickets/calendar", params=params, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["truncated"] is False
        return [item["code"] for item in response.json()["items"]]

    day = {"from": "2026-11-03T00:00:00Z", "to": "2026-11-04T00:00:00Z"}
    assert await calendar(**day) == ["SRV-1", "INS-1"]
    # SRV-2 runs from the 4th to the 5th: it is on the calendar of the 5th too.
    assert await calendar(**{"from": "2026-11-05T00:00:00", "to": "2026-11-06T00:00:00"}) == ["SRV-2"]
    assert await calendar(**{"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}) == [
        "SRV-1",
        "INS-1",
        "SRV-2",
    ]
    assert await calendar(**day, team_id="team-north") == ["SRV-1", "INS-1"]
    assert await calendar(**day, employee_id="emp-q") == ["SRV-1"]  # the checker
    assert await calendar(**day, employee_id="emp-c") == ["INS-1"]  # who took it
    body = (await client.get("/tickets/calendar", params=day, headers=headers)).json()
    assert (body["from"], body["to"]) == ("2026-11-03T00:00:00Z", "2026-11-04T00:00:00Z")

    cancelled = await client.post(
        f"/tickets/{ids['SRV-1']}/status", json={"status": "cancelled"}, headers=headers
    )
    assert cancelled.status_code == 200
    assert await calendar(**day) == ["INS-1"]

    north = make_principal(
        "u-n", Role.AGENT, employee_id="emp-n", teams=("team-north",), visibility=Visibility.TEAM
    )
    mine = await client.get(
        "/tickets/calendar", params={"from": "2026-11-01", "to": "2026-12-01"}, headers=token_for(north)
    )
    assert [item["code"] for item in mine.json()["items"]] == ["INS-1"]

    too_long = await client.get(
        "/tickets/calendar", params={"from": "2026-01-01", "to": "2027-06-01"}, headers=headers
    )
    assert (too_long.status_code, too_long.json()["detail"][0]["loc"]) == (422, ["query", "to"])
    backwards = await client.get(
        "/tickets/calendar", params={"from": "2026-02-01", "to": "2026-01-01"}, headers=headers
    )
    assert backwards.status_code == 422
    assert (
        await client.get("/tickets/calendar", params={"from": "2026-02-01"}, headers=headers)
    ).status_code == 422
