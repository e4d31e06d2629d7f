"""Trunk registration: digest authentication at an upstream registrar (sipp), the refresh before the
registration expires, the state in ``/healthz/trunk``, and a wrong password reported, not hidden."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_gateway.api import create_app
from telecrm_gateway.routing import RoutingTable
from telecrm_gateway.service import GatewayService
from telecrm_gateway.settings import GatewaySettings
from telecrm_gateway.sip.engine import TrunkConfig
from tests.sipp.runner import arun_uac, environment_ok, free_port, header, start_uas

SIPP_OK, SIPP_MISSING = environment_ok()
HOST = "127.0.0.1"
CREDENTIALS = {"user": "trunkuser", "password": "s3cret", "expires": "6"}

Factory = Callable[..., Awaitable[GatewayService]]
published: list[ev.CallEvent] = []


@pytest.fixture
async def gateway() -> AsyncIterator[Factory]:
    started: list[GatewayService] = []

    async def make(routes: dict[str, Any] | None = None, **overrides: Any) -> GatewayService:
        settings = GatewaySettings(
            **{
                "sip_port": free_port(),
                "instance_id": "test",
                "rtp_host": HOST,
                "shutdown_grace": 5.0,
                **overrides,
            }
        )

        async def publish(event: ev.CallEvent) -> None:
            published.append(event)

        service = GatewayService(settings, RoutingTable.from_mapping(routes or {}), publish)
        await service.start()
        started.append(service)
        return service

    yield make
    for service in started:
        await service.stop(timeout=3.0)


async def until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_the_trunk_settings() -> None:
    settings = GatewaySettings(
        trunk_uri="sip:pbx.example.com:5080;transport=tcp", trunk_username="acme", trunk_password="pw"
    )
    assert settings.trunk_config() == TrunkConfig(
        registrar="sip:pbx.example.com:5080;transport=tcp",
        aor="sip:acme@pbx.example.com",
        username="acme",
        password="pw",
        expires=300,
    )
    assert "pw" not in repr(settings.trunk_config())
    assert GatewaySettings(trunk_uri="sip:pbx.example.com").trunk_config() is None  # calls only, no REGISTER
    with pytest.raises(ValueError, match="trunk_uri"):
        GatewaySettings(trunk_username="acme")
    with pytest.raises(ValueError, match="without a user"):
        GatewaySettings(trunk_uri="sip:acme@pbx.example.com")
    trunk = settings.trunk_config()
    assert trunk is not None
    assert trunk.serves("sip:+15557654321@PBX.example.com:5080;transport=tcp")
    assert not trunk.serves("sip:101@10.0.0.5:5070")


@pytest.mark.sip
@pytest.mark.skipif(not SIPP_OK, reason=SIPP_MISSING)
async def test_registers_with_digest_auth_and_refreshes_before_expiry(gateway: Factory) -> None:
    with start_uas("uas_registrar.xml", keys=CREDENTIALS) as registrar:
        service = await gateway(
            trunk_uri=f"sip:{HOST}:{registrar.port}", trunk_username="trunkuser", trunk_password="s3cret"
        )
        await until(lambda: service.engine.trunk_state().registered, "the registration")
        state = service.engine.trunk_state()
        assert (state.status, state.expires) == (200, 6)
        health = await trunk_health(service)
        assert health.status_code == 200
        assert health.json() | {"changed_at": None} == {
            "configured": True,
            "registered": True,
            "registrar": f"sip:{HOST}:{registrar.port}",
            "status": 200,
            "reason": "OK",
            "expires": 6,
            "changed_at": None,
        }
        done = await registrar.wait_async(20)  # the refresh came before the 6 s ran out
        assert done.ok, done.explain()
    registers = [m for m in done.received() if m.startswith("REGISTER ")]
    assert len(registers) == 3  # challenged, authenticated, refreshed
    assert header(registers[0], "From").startswith("<sip:trunkuser@127.0.0.1>")  # type: ignore[union-attr]
    assert 'username="trunkuser"' in (header(registers[1], "Authorization") or "")
    assert header(registers[2], "Expires") != "0"  # a refresh, not the unregistration at stop
    assert "s3cret" not in done.messages


@pytest.mark.sip
@pytest.mark.skipif(not SIPP_OK, reason=SIPP_MISSING)
async def test_a_wrong_password_is_reported_in_health(gateway: Factory) -> None:
    with start_uas("uas_registrar.xml", keys=CREDENTIALS) as registrar:
        service = await gateway(
            trunk_uri=f"sip:{HOST}:{registrar.port}", trunk_username="trunkuser", trunk_password="wrong"
        )
        await until(lambda: service.engine.trunk_state().status == 403, "the refusal")
        assert not service.engine.trunk_state().registered
        health = await trunk_health(service)
        assert health.status_code == 503
        assert (health.json()["registered"], health.json()["status"], health.json()["reason"]) == (
            False,
            403,
            "Forbidden",
        )
        assert "wrong" not in health.text
        await registrar.wait_async(10)


async def test_without_a_trunk_health_has_nothing_to_say(gateway: Factory) -> None:
    service = await gateway()
    assert not service.engine.trunk_state().configured
    health = await trunk_health(service)
    assert (health.status_code, health.json()["configured"]) == (200, False)


async def trunk_health(service: GatewayService) -> httpx.Response:
    app = create_app(service, {})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        return await client.get("/healthz/trunk")


@pytest.mark.sip
@pytest.mark.skipif(not SIPP_OK, reason=SIPP_MISSING)
async def test_a_call_from_the_provider_rings_the_line_in_to(gateway: Factory) -> None:
    published.clear()
    with (
        start_uas("uas_registrar.xml", keys=CREDENTIALS) as registrar,
        start_uas("uas_answer.xml", duration_ms=100) as phone,
    ):
        service = await gateway(
            {
                "extensions": {"101": {"contact": f"sip:101@{HOST}:{phone.port}"}},
                "lines": {"+15551230000": {"extension": "101"}},
            },
            trunk_uri=f"sip:{HOST}:{registrar.port}",
            trunk_username="trunkuser",
            trunk_password="s3cret",
        )
        await until(lambda: service.engine.trunk_state().registered, "the registration")
        caller = await arun_uac(
            "uac_trunk_call.xml",
            HOST,
            service.sip_port,
            service="trunkuser",
            keys={"did": "+15551230000", "caller": "+15557654321"},
            duration_ms=200,
        )
        assert caller.ok, caller.explain()
        done = await phone.wait_async(10)
        assert done.ok, done.explain()
        await until(lambda: any(e.WhichOneof("kind") == "ended" for e in published), "the call to end")
    offered = published[0]
    assert (offered.line, offered.extension) == ("+15551230000", "101")
    assert published[-1].ended.disposition == ev.DISPOSITION_ANSWERED
