"""``total`` of the call list and the streamed CSV export (PostgreSQL or SQLite)."""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import timedelta
from typing import Any

import httpx
import pytest

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_calls import csv_export, repository
from telecrm_calls.service import CallLogService, CallQuery, build_record
from telecrm_calls.testing import T0, CallScript


@pytest.fixture
async def seeded(service: CallLogService) -> CallLogService:
    """a-0..a-6 answered (09:00..09:06), a-missed (12:00, ext 102), a-evil (name "=..."), a-out."""
    for n in range(7):
        await service.ingest(
            CallScript(f"a-{n}", start=T0.replace(minute=n)).answered_call(ring=5, talk=61.25)
        )
    missed = CallScript("a-missed", start=T0.replace(hour=12), extension="102")
    await service.ingest(missed.missed_call(ring=20))
    evil = CallScript("a-evil", start=T0.replace(hour=13), caller="=cmd|' /C calc'!A0")
    evil.caller.display_name = '=HYPERLINK("http://x","y")'
    await service.ingest(evil.missed_call(ring=3))
    out = CallScript(
        "a-out",
        start=T0.replace(hour=14),
        direction=ev.DIRECTION_OUTBOUND,
        caller="101",
        callee="+15551234567",
    )
    out.caller.display_name = "-Alice"
    await service.ingest([out.offered(), out.ended(3, ev.DISPOSITION_BUSY, sip_status=486)])
    await service.ingest(
        [ev.RecordingReady(event_id="r", call_id="a-0", recording_id="r-0", location="/var/rec/r-0.wav")]
    )
    return service


def parse(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    rows = list(csv.reader(io.StringIO(response.text, newline="")))
    assert rows[0] == list(csv_export.HEADER)
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


# --- total ---------------------------------------------------------------------------------------


async def test_total_counts_every_page_with_the_filters(
    client: httpx.AsyncClient, seeded: CallLogService
) -> None:
    body = (await client.get("/calls", params={"limit": 2})).json()
    assert (len(body["items"]), body["total"]) == (2, 10)
    second = (await client.get("/calls", params={"limit": 2, "cursor": body["next_cursor"]})).json()
    assert second["total"] == 10

    params: dict[str, Any] = {"number": "369-04", "from": "2025-03-14T09:02:00Z", "limit": 3}
    body = (await client.get("/calls", params=params)).json()
    assert (len(body["items"]), body["total"]) == (3, 6)  # a-2..a-6 and a-missed
    body = (await client.get("/calls", params={"disposition": ["missed", "busy"]})).json()
    assert body["total"] == 3
    body = (await client.get("/calls", params={"extension": "nope"})).json()
    assert (body["items"], body["total"]) == ([], 0)


async def test_include_total_false_skips_the_count(client: httpx.AsyncClient, seeded: CallLogService) -> None:
    body = (await client.get("/calls", params={"limit": 2, "include_total": "false"})).json()
    assert len(body["items"]) == 2
    assert body["total"] is None


async def test_service_counts_only_when_asked(seeded: CallLogService) -> None:
    assert (await seeded.list_calls(CallQuery(limit=1))).total is None
    assert (await seeded.list_calls(CallQuery(limit=1, include_total=True, direction="outbound"))).total == 1


# --- CSV export ----------------------------------------------------------------------------------


async def test_export_content_and_headers(client: httpx.AsyncClient, seeded: CallLogService) -> None:
    response = await client.get("/calls/export.csv")
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="calls-start-now.csv"'
    rows = parse(response)
    assert [r["call_id"] for r in rows] == [
        "a-out",
        "a-evil",
        "a-missed",
        *(f"a-{n}" for n in range(6, -1, -1)),
    ]
    assert rows[-1] == {
        "call_id": "a-0",
        "started_at": "2025-03-14T09:00:53.589000Z",
        "answered_at": "2025-03-14T09:00:58.589000Z",
        "ended_at": "2025-03-14T09:01:59.839000Z",
        "direction": "inbound",
        "caller_number": "+74993690439",
        "caller_e164": "+74993690439",
        "caller_name": "",
        "callee_number": "+74951112233",
        "line": "+74951112233",
        "extension": "101",
        "employee_id": "",
        "disposition": "answered",
        "ring_seconds": "5.0",
        "talk_seconds": "61.25",
        "sip_status": "200",
        "q850_cause": "16",
        "hangup_by": "caller",
        "has_recording": "true",
    }
    missed = rows[2]
    assert (missed["answered_at"], missed["talk_seconds"], missed["has_recording"]) == ("", "0.0", "false")


async def test_export_applies_the_filters(client: httpx.AsyncClient, seeded: CallLogService) -> None:
    params: dict[str, Any] = {"disposition": ["missed", "busy"], "direction": "inbound"}
    assert [r["call_id"] for r in parse(await client.get("/calls/export.csv", params=params))] == [
        "a-evil",
        "a-missed",
    ]
    params = {"number": "369-04", "from": "2025-03-14T09:02:00Z", "to": "2025-03-14T09:05:00"}
    response = await client.get("/calls/export.csv", params=params)
    assert [r["call_id"] for r in parse(response)] == ["a-4", "a-3", "a-2"]
    assert response.headers["content-disposition"] == (
        'attachment; filename="calls-20250314T090200Z-20250314T090500Z.csv"'
    )
    assert parse(await client.get("/calls/export.csv", params={"extension": "nope"})) == []


async def test_export_neutralizes_formulas_but_keeps_phone_numbers(
    client: httpx.AsyncClient, seeded: CallLogService
) -> None:
    rows = {r["call_id"]: r for r in parse(await client.get("/calls/export.csv"))}
    evil = rows["a-evil"]
    assert evil["caller_name"] == '\'=HYPERLINK("http://x","y")'
    assert evil["caller_number"] == "'=cmd|' /C calc'!A0"  # a SIP user part, not a phone number
    out = rows["a-out"]
    assert out["caller_name"] == "'-Alice"
    assert (out["caller_number"], out["callee_number"]) == ("101", "+15551234567")
    assert rows["a-0"]["caller_e164"] == "+74993690439"


def test_guards() -> None:
    for value in ("=1+1", "+SUM(A1)", "-2+3", "@SUM(A1)", "\t=1", "\r=1"):
        assert csv_export.guard_text(value) == "'" + value
        assert csv_export.guard_number(value) == "'" + value
    for number in ("+15551234567", "+7 (499) 369-04-39", "101", "8.499.555"):
        assert csv_export.guard_number(number) == number
    assert csv_export.guard_text("+15551234567") == "'+15551234567"
    assert csv_export.guard_text("Alice = Bob") == "Alice = Bob"
    assert (csv_export.guard_text(None), csv_export.guard_number("")) == ("", "")


async def test_export_route_is_not_taken_for_a_call_id(
    client: httpx.AsyncClient, seeded: CallLogService
) -> None:
    assert (await client.get("/calls/export.csv")).headers["content-type"].startswith("text/csv")
    assert (await client.get("/calls/a-0")).json()["call_id"] == "a-0"
    spec = (await client.get("/openapi.json")).json()
    names = {p["name"] for p in spec["paths"]["/calls/export.csv"]["get"]["parameters"]}
    assert names == {
        *("number", "extension", "employee_id", "team_id", "contact_id", "disposition", "direction"),
        *("state", "recorded", "missed", "from", "to", "sort", "scope"),
    }


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"from": "yesterday"}, ["query", "from"]),
        ({"from": "2025-03-14T10:00:00Z", "to": "2025-03-14T09:00:00Z"}, ["query", "to"]),
        ({"disposition": ["answered", "lost"]}, ["query", "disposition", 1]),
        ({"direction": "sideways"}, ["query", "direction"]),
        ({"number": "abc"}, ["query", "number"]),
        ({"extension": "1" * 65}, ["query", "extension"]),
    ],
)
async def test_export_bad_filters_answer_422(
    client: httpx.AsyncClient, params: dict[str, Any], loc: list[Any]
) -> None:
    response = await client.get("/calls/export.csv", params=params)
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [loc]


async def _seed_many(service: CallLogService, count: int) -> list[str]:
    """``count`` calls, seven per start instant (ties broken by call_id); their ids newest first."""
    template = build_record(CallScript("template").answered_call())
    records = [
        dataclasses.replace(template, call_id=f"m-{n:05d}", started_at=T0 + timedelta(seconds=n // 7))
        for n in range(count)
    ]
    async with service.db.session() as session:
        await repository.upsert_calls(session, records)
    ordered = sorted(records, key=lambda r: (r.started_at, r.call_id), reverse=True)
    return [r.call_id for r in ordered]


async def test_export_streams_2500_rows_across_chunks(
    client: httpx.AsyncClient, service: CallLogService
) -> None:
    expected = await _seed_many(service, 2500)

    sizes = [len(chunk) async for chunk in service.export_calls(CallQuery())]
    assert sizes == [1000, 1000, 500]

    async with client.stream("GET", "/calls/export.csv") as response:
        assert response.status_code == 200
        parts = [part async for part in response.aiter_bytes()]
    text = b"".join(parts).decode("utf-8")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == list(csv_export.HEADER)
    assert len(rows) == 2501
    assert [row[0] for row in rows[1:]] == expected
    assert len({row[0] for row in rows[1:]}) == 2500


async def test_export_chunks_end_on_an_exact_multiple(service: CallLogService) -> None:
    expected = await _seed_many(service, 10)
    chunks = [chunk async for chunk in service.export_calls(CallQuery(), chunk_size=5)]
    assert [len(chunk) for chunk in chunks] == [5, 5]
    assert [entry.call.call_id for chunk in chunks for entry in chunk] == expected
    assert [len(c) async for c in service.export_calls(CallQuery(direction="outbound"), chunk_size=5)] == []
