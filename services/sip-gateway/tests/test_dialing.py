"""Click-to-call (REST ``POST /calls/dial`` and gRPC ``Dial``) through a provider PBX's make-call URL.

The PBX is a real HTTP server started by the test (``PbxWebhookRecorder``): it records what it is sent
and answers as told (a status, a JSON body, a delay).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import httpx
import pytest

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from telecrm_common.auth import Access, AuthSettings, Principal, Role
from telecrm_common.grpc import GrpcServer
from telecrm_devstack.testing import make_principal
from telecrm_gateway import grpc as gateway_grpc
from telecrm_gateway.api import create_app
from telecrm_gateway.dialing import DialBusy, DialCommand, DialService
from telecrm_gateway.provider import ProviderCalls, ProviderEventIn
from telecrm_gateway.routing import RoutingTable
from telecrm_gateway.service import GatewayService
from telecrm_gateway.settings import GatewaySettings, ProviderPbx
from tests.sipp.runner import free_port

SECRET = "make-call-secret-0123456789"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class PbxWebhookRecorder:
    """A PBX's make-call endpoint: records each request; answers ``status`` with ``reply`` after ``delay``."""

    status: int = 200
    reply: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/make-call"

    def serve(self) -> ThreadingHTTPServer:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                recorder.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                if recorder.delay:
                    time.sleep(recorder.delay)
                payload = json.dumps(recorder.reply).encode()
                try:
                    self.send_response(recorder.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the gateway gave up waiting (the slow-PBX test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


@pytest.fixture
def pbx_webhook() -> Iterator[PbxWebhookRecorder]:
    recorder = PbxWebhookRecorder()
    server = recorder.serve()
    yield recorder
    server.shutdown()
    server.server_close()


class ListMessageSink:
    """Keeps what the provider API would publish."""

    def __init__(self) -> None:
        self.messages: list[ev.CallEvent | ev.RecordingReady] = []

    async def publish(self, messages: Sequence[ev.CallEvent | ev.RecordingReady]) -> None:
        self.messages.extend(messages)


def make_dialer(url: str, **options: Any) -> DialService:
    pbxs = {"cloud": ProviderPbx(extensions=["201", "300-399"], make_call_url=url, make_call_secret=SECRET)}
    return DialService(pbxs, **{"region": "US", "window": 10.0, "timeout": 2.0, **options})


@pytest.fixture
async def dialer(pbx_webhook: PbxWebhookRecorder) -> AsyncIterator[DialService]:
    service = make_dialer(pbx_webhook.url, provider_calls=ProviderCalls(ListMessageSink()))
    yield service
    await service.close()


async def _never_publish(event: ev.CallEvent) -> None:
    raise AssertionError("nothing is published over SIP here")


# Extension 201 (served by the cloud PBX) is Ann's desk: the routes file names its employee.
ROUTES = {"extensions": {"201": {"contact": "sip:201@127.0.0.1:5999", "employee_id": "e-ann"}}}
SUPERVISOR = make_principal("u-sup", Role.SUPERVISOR, employee_id="e-sup")
ANN = make_principal("u-ann", Role.AGENT, employee_id="e-ann")
BOB = make_principal("u-bob", Role.AGENT, employee_id="e-bob")


def gateway() -> GatewayService:
    settings = GatewaySettings(instance_id="dial-test", sip_port=free_port())
    return GatewayService(settings, RoutingTable.from_mapping(ROUTES), _never_publish)


@pytest.fixture
def access(auth_settings: AuthSettings) -> Access:
    return Access.from_settings(auth_settings)


@pytest.fixture
async def client(
    dialer: DialService, access: Access, token_for: Callable[[Principal], dict[str, str]]
) -> AsyncIterator[httpx.AsyncClient]:
    """The REST API as a supervisor (who may call from any extension)."""
    app = create_app(gateway(), {}, dialer=dialer, access=access)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gw", headers=token_for(SUPERVISOR)
    ) as http:
        yield http


async def test_an_agent_calls_from_their_own_extension_only(
    client: httpx.AsyncClient,
    pbx_webhook: PbxWebhookRecorder,
    token_for: Callable[[Principal], dict[str, str]],
) -> None:
    body = {"extension": "201", "number": "+15557654321"}
    assert (await client.post("/calls/dial", json=body, headers={"Authorization": ""})).status_code == 401
    refused = await client.post("/calls/dial", json=body, headers=token_for(BOB))
    assert (refused.status_code, refused.json()["detail"]) == (
        403,
        "extension '201' is not yours to call from",
    )
    assert pbx_webhook.received == []  # nothing reached the PBX
    placed = await client.post("/calls/dial", json=body, headers=token_for(ANN))
    assert placed.status_code == 201, placed.text
    assert len(pbx_webhook.received) == 1


# --- REST ------------------------------------------------------------------------------------------


async def test_a_click_for_a_provider_extension_posts_to_the_pbx(
    client: httpx.AsyncClient, pbx_webhook: PbxWebhookRecorder
) -> None:
    response = await client.post(
        "/calls/dial",
        json={
            "extension": "350",
            "number": "(555) 765-4321",
            "context": {"contact_id": "c-ivan", "task_id": "t-9"},
            "caller_id": "+15551230000",
        },
    )
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["via"] == "provider/cloud"
    assert answer["repeated"] is False
    [request] = pbx_webhook.received
    assert request.path == "/make-call"
    assert request.body == {
        "call_id": answer["call_id"],
        "extension": "350",
        "number": "+15557654321",
        "caller_id": "+15551230000",
        "context": {"contact_id": "c-ivan", "task_id": "t-9"},
    }
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.headers["idempotency-key"] == answer["call_id"]


async def test_repeated_clicks_within_the_window_are_one_call(
    client: httpx.AsyncClient, pbx_webhook: PbxWebhookRecorder
) -> None:
    body = {"extension": "201", "number": "+15557654321", "idempotency_key": "click-1"}
    first = await client.post("/calls/dial", json=body)
    again = await client.post("/calls/dial", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {**first.json(), "repeated": True}
    # Without a key, the same extension and number (written otherwise) is the same click too.
    plain = {"extension": "201", "number": "+1 555 000 1111"}
    third = await client.post("/calls/dial", json=plain)
    fourth = await client.post("/calls/dial", json={**plain, "number": "5550001111"})
    assert fourth.json()["call_id"] == third.json()["call_id"]
    assert len(pbx_webhook.received) == 2
    # The key of the first click for another number is a conflict, not a second call.
    conflict = await client.post("/calls/dial", json={**body, "number": "+15559998888"})
    assert conflict.status_code == 409, conflict.text
    assert "click-1" in conflict.json()["detail"]
    # The Idempotency-Key header does what the body's key does.
    by_header = await client.post(
        "/calls/dial",
        json={"extension": "201", "number": "+15557654321"},
        headers={"Idempotency-Key": "click-1"},
    )
    assert by_header.json()["call_id"] == first.json()["call_id"]
    assert len(pbx_webhook.received) == 2


async def test_concurrent_clicks_send_one_request(
    dialer: DialService, pbx_webhook: PbxWebhookRecorder
) -> None:
    pbx_webhook.delay = 0.3
    results = await asyncio.gather(
        *(dialer.dial("201", "+15557654321", idempotency_key="burst") for _ in range(5))
    )
    assert len({r.call_id for r in results}) == 1
    assert sorted(r.repeated for r in results) == [False, True, True, True, True]
    assert len(pbx_webhook.received) == 1


async def test_without_a_window_every_click_is_a_call(pbx_webhook: PbxWebhookRecorder) -> None:
    service = make_dialer(pbx_webhook.url, window=0)
    try:
        first = await service.dial("201", "+15557654321", idempotency_key="k")
        second = await service.dial("201", "+15557654321", idempotency_key="k")
        assert first.call_id != second.call_id
        assert len(pbx_webhook.received) == 2
    finally:
        await service.close()


async def test_a_pbx_refusal_is_502_and_a_retry_keeps_the_call_id(
    client: httpx.AsyncClient, pbx_webhook: PbxWebhookRecorder
) -> None:
    pbx_webhook.status, pbx_webhook.reply = 500, {"error": "trunk down"}
    body = {"extension": "201", "number": "+15557654321", "idempotency_key": "retry-1"}
    refused = await client.post("/calls/dial", json=body)
    assert refused.status_code == 502, refused.text
    assert "PBX cloud refused the call: HTTP 500" in refused.json()["detail"]
    assert "trunk down" in refused.json()["detail"]
    pbx_webhook.status, pbx_webhook.reply = 202, {}
    retried = await client.post("/calls/dial", json=body)
    assert retried.status_code == 201, retried.text
    first, second = pbx_webhook.received
    assert first.body["call_id"] == second.body["call_id"] == retried.json()["call_id"]
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]


async def test_a_pbx_that_is_down_or_too_slow_is_502(
    pbx_webhook: PbxWebhookRecorder, access: Access, token_for: Callable[[Principal], dict[str, str]]
) -> None:
    down = make_dialer(f"http://127.0.0.1:{free_port()}/make-call")
    slow = make_dialer(pbx_webhook.url, timeout=0.2)
    pbx_webhook.delay = 1.0
    app_down = create_app(gateway(), {}, dialer=down, access=access)
    app_slow = create_app(gateway(), {}, dialer=slow, access=access)
    try:
        for app, words in ((app_down, "cannot be reached"), (app_slow, "did not answer")):
            transport = httpx.ASGITransport(app=app)
            headers = token_for(SUPERVISOR)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw", headers=headers) as http:
                response = await http.post("/calls/dial", json={"extension": "201", "number": "+15557654321"})
            assert response.status_code == 502, response.text
            assert words in response.json()["detail"]
    finally:
        await down.close()
        await slow.close()


async def test_an_extension_no_provider_serves_is_501_until_sip_dialing_exists(
    client: httpx.AsyncClient, dialer: DialService, pbx_webhook: PbxWebhookRecorder
) -> None:
    response = await client.post("/calls/dial", json={"extension": "101", "number": "+15557654321"})
    assert response.status_code == 501, response.text
    assert "extension 101 is not served by a provider PBX" in response.json()["detail"]

    placed: list[DialCommand] = []

    async def sip_dialer(command: DialCommand) -> None:
        placed.append(command)

    dialer.sip_dialer = sip_dialer
    response = await client.post(
        "/calls/dial",
        json={"extension": "101", "number": "+15557654321", "context": {"ticket_id": "tk-1"}},
    )
    assert response.status_code == 201, response.text
    assert response.json()["via"] == "sip"
    [command] = placed
    assert (command.call_id, command.extension, command.e164, dict(command.context)) == (
        response.json()["call_id"],
        "101",
        "+15557654321",
        {"ticket_id": "tk-1"},
    )
    assert pbx_webhook.received == []


async def test_a_full_gateway_process_is_503_with_retry_after_and_the_same_key_retries(
    client: httpx.AsyncClient, dialer: DialService
) -> None:
    """A process with no room (or draining) says "try again", which the pool's front door does on
    another worker; a PBX's refusal stays 502."""
    full = True

    async def sip_dialer(command: DialCommand) -> None:
        if full:
            raise DialBusy("all 1 calls of this gateway process are in use")

    dialer.sip_dialer = sip_dialer
    body = {"extension": "101", "number": "+15557654321", "idempotency_key": "busy-1"}
    refused = await client.post("/calls/dial", json=body)
    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"] == "5"
    assert "in use" in refused.json()["detail"]
    full = False
    placed = await client.post("/calls/dial", json=body)
    assert placed.status_code == 201, placed.text


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"number": "+15557654321"}, "extension", "Field required"),
        ({"extension": "", "number": "+15557654321"}, "extension", "required"),
        ({"extension": "201"}, "number", "Field required"),
        ({"extension": "201", "number": "call me"}, "number", "not a phone number"),
        ({"extension": "2 01", "number": "+15557654321"}, "extension", "letters"),
        ({"extension": "201", "number": "1", "caller_id": "x"}, "caller_id", "not a phone number"),
        ({"extension": "201", "number": "1", "context": {"k": "v" * 300}}, "context", "at most 200"),
    ],
)
async def test_invalid_clicks_are_422_naming_the_field(
    client: httpx.AsyncClient, pbx_webhook: PbxWebhookRecorder, body: dict[str, Any], field: str, words: str
) -> None:
    response = await client.post("/calls/dial", json=body)
    assert response.status_code == 422, response.text
    assert any(d["loc"] == ["body", field] and words in d["msg"] for d in response.json()["detail"])
    assert pbx_webhook.received == []


# --- the PBX's events join the click's call --------------------------------------------------------


async def test_the_pbx_events_of_a_click_belong_to_its_call_and_carry_its_context(
    pbx_webhook: PbxWebhookRecorder,
) -> None:
    sink = ListMessageSink()
    provider = ProviderCalls(sink)
    service = make_dialer(pbx_webhook.url, provider_calls=provider)
    try:
        # The PBX names its own id of the call in its answer...
        pbx_webhook.reply = {"call_id": "pbx-77"}
        named = await service.dial("201", "+15557654321", context={"contact_id": "c-ivan"})
        await provider.accept(
            "cloud",
            ProviderEventIn(type="outgoing", call_id="pbx-77", extension="201", number="+15557654321"),
        )
        # ...or echoes ours as crm_call_id.
        pbx_webhook.reply = {}
        echoed = await service.dial("201", "+15550001111", context={"task_id": "t-1"})
        await provider.accept(
            "cloud",
            ProviderEventIn(
                type="completed",
                call_id="x-1",
                extension="201",
                number="+15550001111",
                crm_call_id=echoed.call_id,
            ),
        )
        # Later events of that call without crm_call_id still belong to it.
        await provider.accept(
            "cloud", ProviderEventIn(type="recording", call_id="x-1", recording_url="https://pbx/r.mp3")
        )
    finally:
        await service.close()
    offered, ended, recording = sink.messages
    assert isinstance(offered, ev.CallEvent)
    assert isinstance(ended, ev.CallEvent)
    assert (offered.call_id, dict(offered.context)) == (named.call_id, {"contact_id": "c-ivan"})
    assert offered.direction == ev.DIRECTION_OUTBOUND
    assert (ended.call_id, dict(ended.context)) == (echoed.call_id, {"task_id": "t-1"})
    assert recording.call_id == echoed.call_id


# --- gRPC ------------------------------------------------------------------------------------------


async def test_grpc_dial(dialer: DialService, pbx_webhook: PbxWebhookRecorder) -> None:
    gw = gateway()
    server = GrpcServer(
        gw.settings.model_copy(update={"grpc_port": 0}), service_names=[gateway_grpc.SERVICE_NAME], checks={}
    )
    gateway_grpc.add_to_server(server.server, gw, dialer)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = gateway_pb2_grpc.CallControlStub(channel)
            request = gateway_pb2.DialRequest(
                extension="201", number="+15557654321", idempotency_key="g-1", context={"contact_id": "c-1"}
            )
            first = await stub.Dial(request)
            again = await stub.Dial(request)
            assert first.call_id == again.call_id
            assert len(pbx_webhook.received) == 1
            assert pbx_webhook.received[0].body["context"] == {"contact_id": "c-1"}

            for bad, code, words in (
                (gateway_pb2.DialRequest(extension="201"), grpc.StatusCode.INVALID_ARGUMENT, "number"),
                (
                    gateway_pb2.DialRequest(extension="201", number="+15550009999", idempotency_key="g-1"),
                    grpc.StatusCode.ALREADY_EXISTS,
                    "g-1",
                ),
                (
                    gateway_pb2.DialRequest(extension="101", number="+15557654321"),
                    grpc.StatusCode.UNIMPLEMENTED,
                    "not served by a provider PBX",
                ),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await stub.Dial(bad)
                assert failed.value.code() == code
                assert words in (failed.value.details() or "")
    finally:
        await server.stop(0)


async def test_grpc_dial_without_a_dialer_is_unimplemented() -> None:
    gw = gateway()
    server = GrpcServer(
        gw.settings.model_copy(update={"grpc_port": 0}), service_names=[gateway_grpc.SERVICE_NAME], checks={}
    )
    gateway_grpc.add_to_server(server.server, gw)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await gateway_pb2_grpc.CallControlStub(channel).Dial(
                    gateway_pb2.DialRequest(extension="101", number="+15557654321")
                )
            assert failed.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(0)


def test_extension_ranges_are_of_one_length() -> None:
    pbx = ProviderPbx(extensions=["201", "300-399"], make_call_url="http://pbx/make-call")
    assert [pbx.serves(e) for e in ("201", "300", "399", "350", "3500", "30", "202", "abc")] == [
        True,
        True,
        True,
        True,
        False,
        False,
        False,
        False,
    ]
    with pytest.raises(ValueError, match="two bounds of one length"):
        ProviderPbx(extensions=["300-39"], make_call_url="http://pbx/make-call")
    with pytest.raises(ValueError, match="http"):
        ProviderPbx(extensions=["1"], make_call_url="ftp://pbx/make-call")
