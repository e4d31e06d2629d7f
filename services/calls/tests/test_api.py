"""REST API over ASGI: shapes, filters, 422 naming the parameter, 400 on bad cursors, 404, health."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_calls.access import CallsAccess
from telecrm_calls.api import create_app
from telecrm_calls.service import CallLogService
from telecrm_calls.testing import T0, CallScript
from telecrm_common.errors import NotReadyError


@pytest.fixture
async def seeded(service: CallLogService) -> CallLogService:
    for n in range(7):
        await service.ingest(
            CallScript(f"a-{n}", start=T0.replace(minute=n)).answered_call(ring=5, talk=61.25)
        )
    missed = CallScript("a-missed", start=T0.replace(hour=12), extension="102")
    await service.ingest(missed.missed_call(ring=20))
    await service.ingest(
        [ev.RecordingReady(event_id="r", call_id="a-0", recording_id="r-0", location="/var/rec/r-0.wav")]
    )
    return service


def _loc(response: httpx.Response) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    return [error["loc"] for error in response.json()["detail"]]


async def test_call_shape(client: httpx.AsyncClient, seeded: CallLogService) -> None:
    response = await client.get("/calls/a-0")
    assert response.status_code == 200
    body = response.json()
    assert body["call_id"] == "a-0"
    assert body["direction"] == "inbound"
    assert body["disposition"] == "answered"
    assert body["hangup_by"] == "caller"
    assert body["state"] == "ended"
    assert body["caller"] == {"number": "+74993690439", "e164": "+74993690439", "name": None}
    assert body["started_at"] == "2025-03-14T09:00:53.589000Z"
    assert body["answered_at"] == "2025-03-14T09:00:58.589000Z"
    assert body["ended_at"] == "2025-03-14T09:01:59.839000Z"
    assert (body["ring_seconds"], body["talk_seconds"]) == (5.0, 61.25)
    assert (body["sip_status"], body["q850_cause"], body["incomplete"]) == (200, 16, False)
    assert body["has_recording"] is True
    assert body["sip_call_id"] == "sip-a-0"
    assert body["context"] == {}


async def test_list_filters_and_pages(client: httpx.AsyncClient, seeded: CallLogService) -> None:
    response = await client.get("/calls", params={"disposition": ["missed", "busy"]})
    assert [c["call_id"] for c in response.json()["items"]] == ["a-missed"]
    assert response.json()["next_cursor"] is None

    params: dict[str, Any] = {
        "limit": 3,
        "number": "369-04",
        "from": "2025-03-14T09:00:00Z",
        "to": "2025-03-14T10:00:00",
    }
    seen: list[str] = []
    while True:
        page = (await client.get("/calls", params=params)).json()
        seen += [c["call_id"] for c in page["items"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == [f"a-{n}" for n in range(6, -1, -1)]

    response = await client.get("/calls", params={"extension": "102", "direction": "inbound"})
    assert [c["call_id"] for c in response.json()["items"]] == ["a-missed"]


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": 501}, ["query", "limit"]),
        ({"limit": "ten"}, ["query", "limit"]),
        ({"from": "yesterday"}, ["query", "from"]),
        ({"to": "2025-13-01T00:00:00Z"}, ["query", "to"]),
        ({"from": "2025-03-14T10:00:00Z", "to": "2025-03-14T09:00:00Z"}, ["query", "to"]),
        ({"from": "2025-03-14T10:00:00+03:00", "to": "2025-03-14T07:00:00Z"}, ["query", "to"]),
        ({"disposition": ["answered", "lost"]}, ["query", "disposition", 1]),
        ({"direction": "sideways"}, ["query", "direction"]),
        ({"number": "abc"}, ["query", "number"]),
    ],
)
async def test_bad_filters_answer_422_naming_the_parameter(
    client: httpx.AsyncClient, params: dict[str, Any], loc: list[Any]
) -> None:
    assert _loc(await client.get("/calls", params=params)) == [loc]


async def test_range_error_message(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/calls", params={"from": "2025-03-14T10:00:00Z", "to": "2025-03-14T10:00:00Z"}
    )
    assert response.json()["detail"][0]["msg"] == "must be later than started_from"


@pytest.mark.parametrize("cursor", ["garbage", "bm90LWEtY3Vyc29y.AAAA", "a.b.c"])
async def test_bad_cursor_answers_400(client: httpx.AsyncClient, cursor: str) -> None:
    response = await client.get("/calls", params={"cursor": cursor})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("cursor: ")


async def test_tampered_cursor_answers_400(client: httpx.AsyncClient, seeded: CallLogService) -> None:
    cursor = (await client.get("/calls", params={"limit": 2})).json()["next_cursor"]
    payload, tag = cursor.split(".")
    forged = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    assert (await client.get("/calls", params={"cursor": f"{forged}.{tag}"})).status_code == 400
    assert (await client.get("/calls", params={"cursor": cursor})).status_code == 200


async def test_unknown_call_answers_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/calls/nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "call 'nope' not found"}


FILTERS = (
    *("number", "extension", "employee_id", "team_id", "contact_id", "disposition", "direction", "state"),
    *("recorded", "missed", "from", "to", "sort"),
)


async def test_openapi_documents_the_parameters(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    names = {p["name"] for p in spec["paths"]["/calls"]["get"]["parameters"]}
    assert names == {*FILTERS, "scope", "limit", "cursor", "include_total"}
    assert "/calls/{call_id}" in spec["paths"]


async def test_health(service: CallLogService, access: CallsAccess) -> None:
    async def down() -> None:
        raise NotReadyError("NATS is not connected")

    app = create_app(service, {"nats": down}, access)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://calls") as client:
        response = await client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"nats": "NATS is not connected"}
