"""Ring groups, queues and overflow on a real pjsua2 endpoint, with sipp as the caller and the agents'
phones, and the caller's name from crm (a gRPC Contacts server in this process) on the agent's phone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from telecrm.crm.v1 import contacts_pb2, contacts_pb2_grpc
from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_gateway.calls import CallerLookup
from telecrm_gateway.crm_lookup import CrmLookup
from telecrm_gateway.routing import RoutingTable
from telecrm_gateway.service import GatewayService
from telecrm_gateway.settings import GatewaySettings
from tests.sipp.runner import Sipp, arun_uac, environment_ok, free_port, header, start_uas

SIPP_OK, SIPP_MISSING = environment_ok()
pytestmark = [pytest.mark.sip, pytest.mark.skipif(not SIPP_OK, reason=SIPP_MISSING)]

HOST = "127.0.0.1"
CALLER = {"caller": "+15557654321", "caller_name": "Ann Lee"}
LINE = "+15551230000"


class Gateway:
    """A started gateway and the events it published."""

    def __init__(self, service: GatewayService, events: list[ev.CallEvent]) -> None:
        self.service = service
        self.events = events

    @property
    def port(self) -> int:
        return self.service.sip_port

    def kinds(self) -> list[str]:
        return [str(e.WhichOneof("kind")) for e in self.events]

    def of(self, kind: str) -> list[ev.CallEvent]:
        return [e for e in self.events if e.WhichOneof("kind") == kind]

    async def wait_ended(self, timeout: float = 20.0) -> ev.CallEvent:
        deadline = time.monotonic() + timeout
        while not self.of("ended"):
            if time.monotonic() > deadline:
                raise AssertionError(f"the call never ended: {self.kinds()}")
            await asyncio.sleep(0.02)
        return self.of("ended")[0]


Factory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def gateway() -> AsyncIterator[Factory]:
    started: list[GatewayService] = []

    async def make(routes: dict[str, Any], lookup: CallerLookup | None = None, **overrides: Any) -> Gateway:
        settings = GatewaySettings(
            **{
                "sip_port": free_port(),
                "instance_id": "test",
                "rtp_host": HOST,
                "shutdown_grace": 5.0,
                **overrides,
            }
        )
        events: list[ev.CallEvent] = []

        async def publish(event: ev.CallEvent) -> None:
            events.append(event)

        service = GatewayService(settings, RoutingTable.from_mapping(routes), publish, lookup)
        await service.start()
        started.append(service)
        return Gateway(service, events)

    yield make
    for service in started:
        await service.stop(timeout=3.0)


def phone(agent: Sipp, number: str) -> dict[str, str]:
    return {
        "contact": f"sip:{number}@{HOST}:{agent.port}",
        "name": f"Agent {number}",
        "employee_id": f"emp-{number}",
    }


class Contacts(contacts_pb2_grpc.ContactsServicer):
    """crm's number look-up, answering one known contact."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def LookupNumber(
        self, request: contacts_pb2.LookupNumberRequest, context: Any
    ) -> contacts_pb2.LookupNumberResponse:
        self.asked.append(request.number)
        if request.number.endswith("7654321"):
            card = contacts_pb2.ContactCard(contact_id="c-1", name="Ivan Petrov", company_name="Acme")
            return contacts_pb2.LookupNumberResponse(match=contacts_pb2.MATCH_KIND_EXACT, contact=card)
        return contacts_pb2.LookupNumberResponse(match=contacts_pb2.MATCH_KIND_NONE)


@pytest.fixture
async def crm() -> AsyncIterator[tuple[str, Contacts]]:
    server = grpc.aio.server()
    servicer = Contacts()
    contacts_pb2_grpc.add_ContactsServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"{HOST}:0")
    await server.start()
    yield f"{HOST}:{port}", servicer
    await server.stop(None)


async def test_ring_all_the_first_answer_wins_and_the_agent_sees_who_calls(
    gateway: Factory, crm: tuple[str, Contacts]
) -> None:
    target, contacts = crm
    lookup = CrmLookup(target, deadline=2.0)
    with (
        start_uas("uas_ring_forever.xml") as ringing,
        start_uas("uas_answer.xml", duration_ms=500) as answering,
    ):
        gw = await gateway(
            {
                "extensions": {"101": phone(ringing, "101"), "102": phone(answering, "102")},
                "groups": {"sales": {"strategy": "all", "members": ["101", "102"], "timeout": 10}},
                "lines": {LINE: {"group": "sales", "name": "Sales line"}},
            },
            lookup,
            caller_name_wait=2.0,
        )
        caller = await arun_uac("uac_answered.xml", HOST, gw.port, service=LINE, keys=CALLER, duration_ms=500)
        assert caller.ok, caller.explain()
        cancelled = await ringing.wait_async(10)
        assert cancelled.ok, cancelled.explain()  # the losing phone got its CANCEL
        answered = await answering.wait_async(10)
        assert answered.ok, answered.explain()
        end = await gw.wait_ended()
    await lookup.close()

    assert contacts.asked, "crm was asked who calls"
    for result in (cancelled, answered):
        invite = result.received()[0]
        assert header(invite, "From").startswith(f'"Ivan Petrov / Sales line" <sip:{CALLER["caller"]}@')
    kinds = gw.kinds()
    assert kinds[0] == "offered"
    assert sorted(kinds[1:3]) == ["ringing", "ringing"]
    assert kinds[3:] == ["answered", "leg_ended", "ended"]
    assert len({e.call_id for e in gw.events}) == 1
    assert {e.ringing.extension for e in gw.of("ringing")} == {"101", "102"}
    assert gw.of("answered")[0].answered.extension == "102"
    lost = gw.of("leg_ended")[0].leg_ended
    assert (lost.extension, lost.disposition, lost.leg_id) == (
        "101",
        ev.DISPOSITION_CANCELLED,
        header(cancelled.received()[0], "Call-ID"),
    )
    assert (end.ended.disposition, end.ended.answered_extension, end.extension, end.employee_id) == (
        ev.DISPOSITION_ANSWERED,
        "102",
        "102",
        "emp-102",
    )


async def test_a_queue_rings_in_order_and_overflows(gateway: Factory) -> None:
    with (
        start_uas("uas_ring_forever.xml") as first,
        start_uas("uas_busy.xml") as second,
        start_uas("uas_answer.xml", duration_ms=200) as overflow,
    ):
        gw = await gateway(
            {
                "extensions": {
                    "101": phone(first, "101"),
                    "102": phone(second, "102"),
                    "103": phone(overflow, "103"),
                },
                "queues": {
                    "support": {"members": ["101", "102"], "member_timeout": 1, "overflow": "extension:103"}
                },
                "lines": {LINE: {"queue": "support"}},
            },
            max_calls=2,  # two legs per call: each member waits for the previous leg to be gone
        )
        caller = await arun_uac("uac_answered.xml", HOST, gw.port, service=LINE, keys=CALLER, duration_ms=300)
        assert caller.ok, caller.explain()
        for agent in (first, second, overflow):
            done = await agent.wait_async(10)
            assert done.ok, done.explain()
        end = await gw.wait_ended()
    assert gw.kinds() == ["offered", "ringing", "leg_ended", "leg_ended", "ringing", "answered", "ended"]
    assert [(e.leg_ended.extension, e.leg_ended.disposition) for e in gw.of("leg_ended")] == [
        ("101", ev.DISPOSITION_NO_ANSWER),
        ("102", ev.DISPOSITION_BUSY),
    ]
    assert [e.ringing.extension for e in gw.of("ringing")] == ["101", "103"]  # 102 refused at once
    assert end.ended.answered_extension == "103"
    assert caller.statuses().count(180) >= 1


async def test_nobody_in_the_group_answers_the_call_is_missed(gateway: Factory) -> None:
    with start_uas("uas_ring_forever.xml") as a, start_uas("uas_ring_forever.xml") as b:
        gw = await gateway(
            {
                "extensions": {"101": phone(a, "101"), "102": phone(b, "102")},
                "groups": {"sales": {"members": ["101", "102"], "timeout": 1}},
                "lines": {LINE: {"group": "sales"}},
            }
        )
        caller = await arun_uac(
            "uac_expect_status.xml", HOST, gw.port, service=LINE, keys={**CALLER, "expected_status": "480"}
        )
        assert caller.ok, caller.explain()
        for agent in (a, b):
            done = await agent.wait_async(10)
            assert done.ok, done.explain()
        end = await gw.wait_ended()
    assert [e.leg_ended.disposition for e in gw.of("leg_ended")] == [ev.DISPOSITION_NO_ANSWER] * 2
    assert (end.ended.disposition, end.ended.sip_status, end.ended.q850_cause) == (
        ev.DISPOSITION_MISSED,
        480,
        19,
    )
