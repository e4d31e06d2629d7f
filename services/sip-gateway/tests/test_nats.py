"""Call events on a real nats-server: subjects, order, ids, and nothing lost while NATS restarts."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.protobuf.message import DecodeError
from nats.js import api

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.bus import MSG_ID_HEADER, Bus
from telecrm_common.events import STREAMS, TEL_STREAM
from telecrm_common.telemetry import setup_telemetry
from telecrm_devstack.processes import NatsServer
from telecrm_gateway.publisher import bus_publisher
from telecrm_gateway.routing import RoutingTable
from telecrm_gateway.service import GatewayService
from telecrm_gateway.settings import GatewaySettings
from tests.sipp.runner import arun_uac, environment_ok, free_port, start_uas

SIPP_OK, SIPP_MISSING = environment_ok()
pytestmark = [pytest.mark.sip, pytest.mark.skipif(not SIPP_OK, reason=SIPP_MISSING)]

HOST = "127.0.0.1"


def make_gateway(bus: Bus, agent_port: int) -> GatewayService:
    settings = GatewaySettings(
        sip_port=free_port(), instance_id=f"nats-{uuid.uuid4().hex[:8]}", rtp_host=HOST, shutdown_grace=5.0
    )
    routes = RoutingTable.from_mapping(
        {
            "extensions": {"101": {"contact": f"sip:101@{HOST}:{agent_port}", "employee_id": "emp-101"}},
            "lines": {"+15551230000": {"extension": "101"}},
        }
    )
    return GatewayService(settings, routes, bus_publisher(bus))


async def published(
    bus: Bus, source: str, count: int, timeout: float = 20.0
) -> list[tuple[str, dict[str, str], ev.CallEvent]]:
    """(subject, headers, event) of the call events ``source`` stored in the TEL stream, in order."""
    deadline = time.monotonic() + timeout
    found: list[tuple[str, dict[str, str], ev.CallEvent]] = []
    while time.monotonic() < deadline:
        sub = await bus.js.pull_subscribe(
            "tel.call.>",
            stream=TEL_STREAM.name,
            config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL),
        )
        found = []
        try:
            while True:
                try:
                    msgs = await sub.fetch(500, timeout=0.5)
                except Exception:
                    break
                for msg in msgs:
                    try:
                        event = ev.CallEvent.FromString(msg.data)
                    except DecodeError:  # other tests on this NATS publish garbage on purpose
                        await msg.ack()
                        continue
                    if event.source == source:
                        found.append((msg.subject, dict(msg.headers or {}), event))
                    await msg.ack()
        finally:
            await sub.unsubscribe()
        if len(found) >= count:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"{len(found)} of {count} events from {source} in the stream")


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    connected = await Bus.connect(nats_server.url, name="gateway-test", timeout=10)
    await connected.ensure_streams(STREAMS)
    yield connected
    await connected.close()


async def test_an_answered_call_is_published_in_order(bus: Bus) -> None:
    setup_telemetry(GatewaySettings())  # as main does: the SDK tracer, so spans have real ids
    with start_uas("uas_answer.xml", duration_ms=200) as agent:
        gateway = make_gateway(bus, agent.port)
        await gateway.start()
        try:
            caller = await arun_uac(
                "uac_answered.xml", HOST, gateway.sip_port, service="+15551230000", duration_ms=300
            )
            assert caller.ok, caller.explain()
        finally:
            await gateway.stop(timeout=5)
    source = f"sip-gateway/{gateway.settings.instance_id}"
    stored = await published(bus, source, 4)
    assert [subject for subject, _, _ in stored] == [
        "tel.call.offered",
        "tel.call.ringing",
        "tel.call.answered",
        "tel.call.ended",
    ]
    events = [event for _, _, event in stored]
    assert [e.sequence for e in events] == [1, 2, 3, 4]
    assert len({e.call_id for e in events}) == 1
    assert all(headers[MSG_ID_HEADER] == event.event_id for _, headers, event in stored)
    # One call is one trace: every event carries a traceparent of the same trace.
    trace_ids = {headers["traceparent"].split("-")[1] for _, headers, _ in stored}
    assert len(trace_ids) == 1
    assert trace_ids != {"0" * 32}
    assert len({e.event_id for e in events}) == 4
    for e in events:
        assert (e.line, e.extension, e.employee_id, e.direction) == (
            "+15551230000",
            "101",
            "emp-101",
            ev.DIRECTION_INBOUND,
        )
        assert e.caller.e164 == "+15557654321"
    end = events[-1].ended
    assert (end.disposition, end.sip_status, end.q850_cause, end.hangup_by) == (
        ev.DISPOSITION_ANSWERED,
        200,
        16,
        ev.HANGUP_BY_CALLER,
    )


async def test_events_survive_a_nats_restart_in_order(tmp_path: Path) -> None:
    server = NatsServer(data_dir=tmp_path / "js", log_path=tmp_path / "nats.log").start()
    bus = await Bus.connect(server.url, name="gateway-restart-test", timeout=10)
    try:
        await bus.ensure_streams(STREAMS)
        with start_uas("uas_busy.xml", calls=2) as agent:
            gateway = make_gateway(bus, agent.port)
            await gateway.start()
            try:
                server.stop()  # NATS goes away; calls go on
                for _ in range(2):
                    caller = await arun_uac(
                        "uac_expect_status.xml",
                        HOST,
                        gateway.sip_port,
                        service="101",
                        keys={"expected_status": "486"},
                    )
                    assert caller.ok, caller.explain()
                await asyncio.sleep(0.5)
                assert gateway.publisher.pending == 4
                server.start()  # same port, same store
                assert await gateway.publisher.flush(30)
            finally:
                await gateway.stop(timeout=5)
        stored = await published(bus, f"sip-gateway/{gateway.settings.instance_id}", 4)
    finally:
        await bus.close()
        server.stop()
    assert len(stored) == 4, "each event stored once"
    by_call: dict[str, list[str]] = {}
    for subject, _, event in stored:
        by_call.setdefault(event.call_id, []).append(f"{event.sequence}:{subject}")
    assert list(by_call.values()) == [["1:tel.call.offered", "2:tel.call.ended"]] * 2
