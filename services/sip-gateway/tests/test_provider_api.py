"""The telephony API for providers over HTTP, publishing to a real nats-server.

Each test posts as a PBX of its own name, so it only reads back its own calls from the shared TEL stream.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.message import DecodeError
from nats.js import api

from telecrm.crm.v1 import contacts_pb2, contacts_pb2_grpc
from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.bus import MSG_ID_HEADER, Bus
from telecrm_common.events import STREAMS, TEL_STREAM
from telecrm_devstack.processes import NatsServer
from telecrm_gateway.api import create_app
from telecrm_gateway.crm_lookup import CrmLookup
from telecrm_gateway.provider import BusSink, ProviderCalls, provider_call_id
from telecrm_gateway.routing import RoutingTable
from telecrm_gateway.service import GatewayService
from telecrm_gateway.settings import GatewaySettings
from tests.sipp.runner import free_port

KEY = "k3y-of-the-test-pbx-0123456789"
OTHER_KEY = "another-pbx-key-0123456789abcdef"
T0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)

Stored = list[tuple[str, dict[str, str], ev.CallEvent | ev.RecordingReady]]


@pytest.fixture(scope="module")
async def bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    connected = await Bus.connect(nats_server.url, name="provider-api-test", timeout=10)
    await connected.ensure_streams(STREAMS)
    yield connected
    await connected.close()


async def stored(bus: Bus, call_id: str, count: int, timeout: float = 10.0) -> Stored:
    """(subject, headers, message) of what the TEL stream holds for ``call_id``, in stream order;
    waits until there are at least ``count`` and a little longer to catch extra (duplicate) ones."""
    deadline = time.monotonic() + timeout
    found: Stored = []
    while True:
        found = []
        sub = await bus.js.pull_subscribe(
            "tel.>", stream=TEL_STREAM.name, config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL)
        )
        try:
            while True:
                try:
                    msgs = await sub.fetch(1000, timeout=0.3)
                except Exception:
                    break
                for msg in msgs:
                    message: ev.CallEvent | ev.RecordingReady
                    try:
                        if msg.subject == "tel.recording.ready":
                            message = ev.RecordingReady.FromString(msg.data)
                        else:
                            message = ev.CallEvent.FromString(msg.data)
                    except DecodeError:  # other tests publish garbage on purpose
                        continue
                    if message.call_id == call_id:
                        found.append((msg.subject, dict(msg.headers or {}), message))
        finally:
            await sub.unsubscribe()
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


class Pbx:
    """A PBX of its own name posting to the gateway's provider API."""

    def __init__(self, client: httpx.AsyncClient, name: str) -> None:
        self.client = client
        self.name = name

    async def post(self, **event: Any) -> httpx.Response:
        return await self.client.post("/provider/v1/events", json=event, headers={"X-Api-Key": KEY})

    async def ok(self, **event: Any) -> dict[str, Any]:
        response = await self.post(**event)
        assert response.status_code == 202, response.text
        return dict(response.json())

    def call_id(self, their_call_id: str) -> str:
        return provider_call_id(self.name, their_call_id)


@pytest.fixture
async def pbx(bus: Bus) -> AsyncIterator[Pbx]:
    name = f"pbx-{uuid.uuid4().hex[:8]}"
    settings = GatewaySettings(
        instance_id="provider-test",
        sip_port=free_port(),
        provider_keys={name: KEY, "other-pbx": OTHER_KEY},
    )
    gateway = GatewayService(settings, RoutingTable.from_mapping({}), _never_publish)
    provider = ProviderCalls(BusSink(bus, timeout=5), region="US")
    app = create_app(gateway, {}, provider=provider)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        yield Pbx(client, name)


async def _never_publish(event: ev.CallEvent) -> None:
    raise AssertionError("the SIP side publishes nothing in these tests")


def kinds(found: Stored) -> list[str]:
    return [str(m.WhichOneof("kind")) if isinstance(m, ev.CallEvent) else "recording" for _, _, m in found]


def call_events(found: Stored) -> list[ev.CallEvent]:
    return [m for _, _, m in found if isinstance(m, ev.CallEvent)]


# --- authentication ----------------------------------------------------------------------------------


async def test_every_route_wants_a_known_api_key(pbx: Pbx) -> None:
    body = {"type": "incoming", "call_id": "auth-1", "number": "+15557654321"}
    client = pbx.client
    for headers in ({}, {"X-Api-Key": "wrong-key-0123456789"}, {"Authorization": "Bearer nope"}):
        response = await client.post("/provider/v1/events", json=body, headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"].startswith("Bearer")
        lookup = await client.get("/provider/v1/contacts/lookup", params={"number": "1"}, headers=headers)
        assert lookup.status_code == 401
    response = await client.post("/provider/v1/events", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 202, response.text
    # Another PBX's key posts as that PBX: its calls are its own.
    response = await client.post("/provider/v1/events", json=body, headers={"X-Api-Key": OTHER_KEY})
    assert response.json()["call_id"] == provider_call_id("other-pbx", "auth-1")
    assert response.json()["call_id"] != pbx.call_id("auth-1")


# --- a call --------------------------------------------------------------------------------------------


async def test_an_answered_inbound_call_is_published_like_a_sip_call(bus: Bus, pbx: Pbx) -> None:
    common = {"call_id": "c-1", "extension": "201", "number": "(555) 765-4321", "line": "+15551230000"}
    first = await pbx.ok(type="incoming", occurred_at=T0.isoformat(), **common)
    await pbx.ok(type="accepted", occurred_at=(T0 + timedelta(seconds=5)).isoformat(), **common)
    await pbx.ok(
        type="completed",
        status="answered",
        duration=60,
        occurred_at=(T0 + timedelta(seconds=65)).isoformat(),
        recording_url="https://pbx.example/rec/c-1.mp3",
        **common,
    )
    call_id = pbx.call_id("c-1")
    assert first["call_id"] == call_id
    found = await stored(bus, call_id, 5)
    assert [subject for subject, _, _ in found] == [
        "tel.call.offered",
        "tel.call.ringing",
        "tel.call.answered",
        "tel.call.ended",
        "tel.recording.ready",
    ]
    assert all(headers[MSG_ID_HEADER] == m.event_id for _, headers, m in found)
    events = call_events(found)
    assert [e.sequence for e in events] == [1, 2, 3, 9]
    for e in events:
        assert e.source == f"provider-api/{pbx.name}"
        assert e.direction == ev.DIRECTION_INBOUND
        assert (e.caller.number, e.caller.e164) == ("(555) 765-4321", "+15557654321")
        assert (e.line, e.extension, e.callee.extension) == ("+15551230000", "201", "201")
        assert e.sip_call_id == "c-1"  # the PBX's id, for people matching records with the PBX
    assert events[1].ringing.extension == "201"
    assert events[2].answered.extension == "201"
    end = events[3].ended
    assert (end.disposition, end.sip_status, end.q850_cause, end.answered_extension) == (
        ev.DISPOSITION_ANSWERED,
        200,
        16,
        "201",
    )
    assert end.started_at.ToDatetime(tzinfo=UTC) == T0
    assert end.answered_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(seconds=5)
    recording = found[4][2]
    assert isinstance(recording, ev.RecordingReady)
    assert (recording.location, recording.content_type, recording.duration_ms) == (
        "https://pbx.example/rec/c-1.mp3",
        "audio/mpeg",
        60_000,
    )


async def test_a_repeated_post_publishes_the_same_events_once(bus: Bus, pbx: Pbx) -> None:
    body = {"type": "incoming", "call_id": "dup-1", "extension": "202", "number": "+15557654321"}
    first = await pbx.ok(**body)
    again = await pbx.ok(**body)
    assert first == again
    assert len(first["event_ids"]) == 2  # offered + ringing
    found = await stored(bus, pbx.call_id("dup-1"), 3, timeout=1.0)
    assert kinds(found) == ["offered", "ringing"]


async def test_completed_before_incoming_still_names_one_call(bus: Bus, pbx: Pbx) -> None:
    common = {"call_id": "ooo-1", "extension": "203", "number": "+15557654321"}
    await pbx.ok(
        type="completed", status="no-answer", occurred_at=(T0 + timedelta(seconds=30)).isoformat(), **common
    )
    await pbx.ok(type="incoming", occurred_at=T0.isoformat(), **common)
    found = await stored(bus, pbx.call_id("ooo-1"), 3)
    # Published in arrival order, but the sequence puts the ended event last for the call log.
    assert kinds(found) == ["ended", "offered", "ringing"]
    events = call_events(found)
    assert [e.sequence for e in events] == [9, 1, 2]
    assert events[0].ended.disposition == ev.DISPOSITION_MISSED
    assert {e.call_id for e in events} == {pbx.call_id("ooo-1")}
    assert events[1].occurred_at.ToDatetime(tzinfo=UTC) == T0


@pytest.mark.parametrize(
    ("event", "disposition", "sip_status", "hangup_by"),
    [
        ({"type": "missed"}, ev.DISPOSITION_MISSED, 480, ev.HANGUP_BY_SYSTEM),
        ({"type": "hangup", "status": "busy"}, ev.DISPOSITION_BUSY, 486, ev.HANGUP_BY_CALLEE),
        ({"type": "completed", "status": "cancel"}, ev.DISPOSITION_MISSED, 487, ev.HANGUP_BY_CALLER),
        ({"type": "completed", "status": "603"}, ev.DISPOSITION_REJECTED, 603, ev.HANGUP_BY_CALLEE),
        ({"type": "completed", "status": "304"}, ev.DISPOSITION_MISSED, 480, ev.HANGUP_BY_SYSTEM),
        ({"type": "completed", "status": "404"}, ev.DISPOSITION_FAILED, 404, ev.HANGUP_BY_SYSTEM),
        ({"type": "completed", "duration": 12}, ev.DISPOSITION_ANSWERED, 200, ev.HANGUP_BY_CALLER),
        (
            {"type": "completed", "status": "NO ANSWER", "direction": "outbound"},
            ev.DISPOSITION_NO_ANSWER,
            480,
            ev.HANGUP_BY_SYSTEM,
        ),
        (
            {"type": "completed", "status": "CANCEL", "direction": "outbound"},
            ev.DISPOSITION_CANCELLED,
            487,
            ev.HANGUP_BY_CALLER,
        ),
    ],
)
async def test_statuses_map_to_the_dispositions_of_the_sip_side(
    bus: Bus, pbx: Pbx, event: dict[str, Any], disposition: int, sip_status: int, hangup_by: int
) -> None:
    their_id = f"st-{uuid.uuid4().hex[:6]}"
    await pbx.ok(call_id=their_id, extension="204", number="+15557654321", **event)
    [(_, _, ended)] = await stored(bus, pbx.call_id(their_id), 1)
    assert isinstance(ended, ev.CallEvent)
    assert (ended.ended.disposition, ended.ended.sip_status, ended.ended.hangup_by) == (
        disposition,
        sip_status,
        hangup_by,
    )


async def test_an_outgoing_call_puts_the_customer_on_the_callee_side(bus: Bus, pbx: Pbx) -> None:
    await pbx.ok(
        type="outgoing", call_id="out-1", extension="205", number="+442071234567", line="+15551230000"
    )
    [(subject, _, offered)] = await stored(bus, pbx.call_id("out-1"), 1)
    assert subject == "tel.call.offered"
    assert isinstance(offered, ev.CallEvent)
    assert offered.direction == ev.DIRECTION_OUTBOUND
    assert (offered.callee.e164, offered.caller.extension, offered.caller.e164) == (
        "+442071234567",
        "205",
        "+15551230000",
    )


async def test_form_fields_with_the_pbx_words_are_accepted(bus: Bus, pbx: Pbx) -> None:
    response = await pbx.client.post(
        "/provider/v1/events",
        content="event=INCOMING&callid=form-1&ext=206&phone=%2B15557654321&did=%2B15551230000",
        headers={"X-Api-Key": KEY, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 202, response.text
    found = await stored(bus, pbx.call_id("form-1"), 2)
    assert kinds(found) == ["offered", "ringing"]
    assert call_events(found)[1].ringing.extension == "206"


async def test_json_numbers_and_blank_form_fields_are_taken_as_pbxs_send_them(bus: Bus, pbx: Pbx) -> None:
    response = await pbx.client.post(
        "/provider/v1/events",
        json={"type": "completed", "call_id": 4711, "ext": 209, "phone": 15557654321, "status": 486},
        headers={"X-Api-Key": KEY},
    )
    assert response.status_code == 202, response.text
    blank = await pbx.client.post(
        "/provider/v1/events",
        content="type=incoming&call_id=4712&number=15557654321&duration=&timestamp=",
        headers={"X-Api-Key": KEY, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert blank.status_code == 202, blank.text
    [(_, _, ended)] = await stored(bus, pbx.call_id("4711"), 1)
    assert isinstance(ended, ev.CallEvent)
    assert (ended.extension, ended.caller.e164, ended.ended.disposition) == (
        "209",
        "+15557654321",
        ev.DISPOSITION_BUSY,
    )


async def test_a_recording_that_comes_later_is_published_for_the_same_call(bus: Bus, pbx: Pbx) -> None:
    await pbx.ok(type="completed", call_id="rec-1", extension="207", number="+15557654321", duration=30)
    response = await pbx.client.post(
        "/provider/v1/recordings",
        json={"call_id": "rec-1", "recording_url": "https://pbx.example/r/rec-1.wav"},
        headers={"X-Api-Key": KEY},
    )
    assert response.status_code == 202, response.text
    assert response.json()["call_id"] == pbx.call_id("rec-1")
    # A second completed event carrying the link gives the same recording, stored once.
    await pbx.ok(
        type="completed",
        call_id="rec-1",
        extension="207",
        number="+15557654321",
        duration=30,
        recording_url="https://pbx.example/r/rec-1.wav",
    )
    found = await stored(bus, pbx.call_id("rec-1"), 3, timeout=1.0)
    assert kinds(found) == ["ended", "recording"]
    recording = found[1][2]
    assert isinstance(recording, ev.RecordingReady)
    assert (recording.location, recording.content_type) == ("https://pbx.example/r/rec-1.wav", "audio/x-wav")


# --- bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"type": "incoming", "number": "+15557654321"}, "call_id", "required"),
        ({"type": "teleport", "call_id": "bad-1", "number": "1"}, "type", "unknown event type"),
        ({"call_id": "bad-2", "number": "1"}, "type", "required"),
        ({"type": "incoming", "call_id": "bad-3"}, "number", "required for incoming"),
        ({"type": "accepted", "call_id": "bad-4"}, "extension", "who answered"),
        ({"type": "completed", "call_id": "bad-5", "status": "exploded"}, "status", "unknown status"),
        ({"type": "completed", "call_id": "bad-6", "duration": -3}, "duration", "greater than"),
        ({"type": "completed", "call_id": "bad-7", "recording_url": "ftp://x/y"}, "recording_url", "http"),
        ({"type": "recording", "call_id": "bad-8"}, "recording_url", "required"),
        (
            {"type": "incoming", "call_id": "bad-9", "number": "1", "extension": "2 01"},
            "extension",
            "letters",
        ),
        ({"type": "incoming", "call_id": "bad-10", "number": "1", "occurred_at": "soon"}, "occurred_at", ""),
        ({"type": "completed", "call_id": "bad-11", "crm_call_id": "nope"}, "crm_call_id", "UUID"),
        ({"type": "completed", "call_id": "bad-12", "direction": "sideways"}, "direction", "inbound"),
    ],
)
async def test_invalid_events_are_422_naming_the_field_and_publish_nothing(
    bus: Bus, pbx: Pbx, body: dict[str, Any], field: str, words: str
) -> None:
    response = await pbx.post(**body)
    assert response.status_code == 422, response.text
    details = response.json()["detail"]
    assert any(d["loc"] == ["body", field] and words in d["msg"] for d in details), details
    if "call_id" in body:
        assert await stored(bus, pbx.call_id(body["call_id"]), 1, timeout=0.3) == []


async def test_a_body_that_is_not_an_object_is_422(pbx: Pbx) -> None:
    for content, kind in (("not json", "application/json"), ("[1, 2]", "application/json")):
        response = await pbx.client.post(
            "/provider/v1/events", content=content, headers={"X-Api-Key": KEY, "Content-Type": kind}
        )
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["body"]


async def test_when_nats_cannot_store_the_events_the_pbx_is_told_to_retry(tmp_path: Path) -> None:
    server = NatsServer(data_dir=tmp_path / "js", log_path=tmp_path / "nats.log").start()
    own_bus = await Bus.connect(server.url, name="provider-nats-down", timeout=10)
    try:
        await own_bus.ensure_streams(STREAMS)
        settings = GatewaySettings(
            instance_id="provider-test", sip_port=free_port(), provider_keys={"p": KEY}
        )
        gateway = GatewayService(settings, RoutingTable.from_mapping({}), _never_publish)
        app = create_app(gateway, {}, provider=ProviderCalls(BusSink(own_bus, timeout=0.5)))
        body = {"type": "incoming", "call_id": "down-1", "number": "+15557654321", "extension": "208"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            server.stop()
            response = await client.post("/provider/v1/events", json=body, headers={"X-Api-Key": KEY})
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "5"
            server.start()  # same port, same store: the PBX's retry is stored
            for _ in range(50):
                response = await client.post("/provider/v1/events", json=body, headers={"X-Api-Key": KEY})
                if response.status_code == 202:
                    break
                await asyncio.sleep(0.2)
            assert response.status_code == 202, response.text
        found = await stored(own_bus, provider_call_id("p", "down-1"), 2)
        assert kinds(found) == ["offered", "ringing"]
    finally:
        await own_bus.close()
        server.stop()


# --- contact look-up -----------------------------------------------------------------------------------


class FakeContactsServicer(contacts_pb2_grpc.ContactsServicer):
    """A stand-in for crm's Contacts that knows one number."""

    async def LookupNumber(
        self, request: contacts_pb2.LookupNumberRequest, context: grpc.aio.ServicerContext
    ) -> contacts_pb2.LookupNumberResponse:
        if request.number != "+15557654321":
            return contacts_pb2.LookupNumberResponse(match=contacts_pb2.MATCH_KIND_NONE)
        card = contacts_pb2.ContactCard(
            contact_id="c-ivan",
            name="Ivan Petrov",
            company_name="Acme Ltd",
            responsible_employee_id="emp-7",
            responsible_extension="107",
        )
        return contacts_pb2.LookupNumberResponse(match=contacts_pb2.MATCH_KIND_EXACT, contact=card)


async def test_the_contact_look_up_names_the_contact_and_the_responsible_extension(bus: Bus) -> None:
    server = grpc.aio.server()
    contacts_pb2_grpc.add_ContactsServicer_to_server(FakeContactsServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    lookup = CrmLookup(f"127.0.0.1:{port}", deadline=2.0)
    settings = GatewaySettings(instance_id="provider-test", sip_port=free_port(), provider_keys={"p": KEY})
    gateway = GatewayService(settings, RoutingTable.from_mapping({}), _never_publish)
    app = create_app(gateway, {}, provider=ProviderCalls(BusSink(bus)), lookup=lookup)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            headers = {"X-Api-Key": KEY}
            found = await client.get(
                "/provider/v1/contacts/lookup", params={"number": "+1 555 765 4321"}, headers=headers
            )
            assert found.status_code == 200, found.text
            assert found.json() == {
                "found": True,
                "number": "+1 555 765 4321",
                "contact_id": "c-ivan",
                "name": "Ivan Petrov",
                "company": "Acme Ltd",
                "responsible_employee_id": "emp-7",
                "responsible_extension": "107",
            }
            unknown = await client.get(
                "/provider/v1/contacts/lookup", params={"number": "+15550000000"}, headers=headers
            )
            assert unknown.json()["found"] is False
            missing = await client.get("/provider/v1/contacts/lookup", headers=headers)
            assert missing.status_code == 422
            assert missing.json()["detail"][0]["loc"] == ["query", "number"]
    finally:
        await lookup.close()
        await server.stop(0)
