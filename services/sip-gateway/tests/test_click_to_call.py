"""Click-to-call over SIP: the agent's phone first, then the customer; the events and dispositions of
each way it can end. The call logic against a fake engine, then the real endpoint with sipp phones."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_gateway.calls import CallManager, DialRefused
from telecrm_gateway.dialing import DialBusy, DialNotAvailable, DialService, InvalidDial
from telecrm_gateway.errors import SipEngineError
from telecrm_gateway.routing import RoutingTable
from telecrm_gateway.service import GatewayService
from telecrm_gateway.settings import GatewaySettings
from telecrm_gateway.sip.facts import LegAnswered, LegEnded, LegProgress
from tests.sipp.runner import environment_ok, free_port, header, start_uas

SIPP_OK, SIPP_MISSING = environment_ok()
HOST = "127.0.0.1"
CUSTOMER = "+15557654321"
T0 = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)
ROUTES = {
    "extensions": {
        "101": {"contact": "sip:101@10.0.0.1", "name": "Alice", "employee_id": "emp-101", "ring_timeout": 20},
        "102": {"contact": "sip:102@10.0.0.2", "name": "Bob", "employee_id": "emp-102"},
    }
}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Card:
    def __init__(self, name: str, company: str = "") -> None:
        self.name, self.company = name, company


class Lookup:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def cached(self, number: str) -> Card | None:
        return None

    async def lookup(self, number: str) -> Card | None:
        self.asked.append(number)
        return Card("Ivan Petrov") if number == CUSTOMER else None


@pytest.fixture
def engine(fake_engine: Any) -> Any:
    """The fake engine of conftest, able to originate (or refuse to, when ``full``)."""
    fake_engine.full = False

    def originate(
        leg_id: str, uri: str, from_uri: str = "", headers: Any = ()
    ) -> concurrent.futures.Future[str]:
        fake_engine.commands.append(("originate", leg_id, uri, from_uri, tuple(headers)))
        future: concurrent.futures.Future[str] = concurrent.futures.Future()
        if fake_engine.full:
            future.set_exception(SipEngineError("all 1 calls of this gateway process are in use"))
        else:
            future.set_result(f"sip-{leg_id}")
        return future

    fake_engine.originate = originate
    return fake_engine


def make(engine: Any, sink: Any, **kwargs: Any) -> CallManager:
    options: dict[str, Any] = {"trunk": "sip:trunk.example:5060;transport=udp", "lookup": Lookup(), **kwargs}
    return CallManager(
        engine, RoutingTable.from_mapping(ROUTES), sink, source="sip-gateway/t", from_host="gw", **options
    )


def of_kind(sink: Any, kind: str) -> list[ev.CallEvent]:
    return [e for e in sink.events if e.WhichOneof("kind") == kind]


async def placed(engine: Any, manager: CallManager, number: str = CUSTOMER, **kwargs: Any) -> tuple[str, str]:
    """Click, the agent answers: (agent leg, customer leg)."""
    await manager.dial("call-1", "101", number, e164=number if number.startswith("+") else "", **kwargs)
    agent = engine.of("originate")[-1][1]
    manager.on_fact(LegProgress(agent, "sip-agent", 180, "Ringing", at(0.1)))
    manager.on_fact(LegAnswered(agent, "sip-agent", at(1)))
    return agent, engine.of("dial")[-1][1]


async def test_the_agent_first_then_the_customer_then_bridged(engine: Any, sink: Any) -> None:
    manager = make(engine, sink)
    await manager.dial(
        "call-1", "101", CUSTOMER, e164=CUSTOMER, context={"contact_id": "c-9", "task_id": "t-1"}
    )
    [originate] = engine.of("originate")
    agent = originate[1]
    # The agent's phone shows whom it will call: the contact's name and the number.
    assert originate[2:] == (
        "sip:101@10.0.0.1",
        f'"Call Ivan Petrov" <sip:{CUSTOMER}@gw>',
        (("X-Telecrm-Call-Id", "call-1"),),
    )
    assert engine.of("dial") == []  # the customer waits for the agent
    offered = sink.events[0]
    assert offered.direction == ev.DIRECTION_OUTBOUND
    assert (offered.caller.extension, offered.callee.e164, offered.extension, offered.employee_id) == (
        "101",
        CUSTOMER,
        "101",
        "emp-101",
    )
    assert dict(offered.context) == {"contact_id": "c-9", "task_id": "t-1"}

    manager.on_fact(LegProgress(agent, "sip-agent", 180, "Ringing", at(0.1)))
    assert sink.kinds() == ["offered"]  # the agent's own phone ringing is not the call ringing
    manager.on_fact(LegAnswered(agent, "sip-agent", at(1)))
    [dial] = engine.of("dial")
    customer = dial[1]
    assert dial[2:5] == (agent, f"sip:{CUSTOMER}@trunk.example:5060;transport=udp", "<sip:101@gw>")
    assert engine.of("bridge") == [("bridge", agent, customer)]  # early media: the agent hears ringback
    manager.on_fact(LegProgress(customer, "sip-customer", 180, "Ringing", at(1.5)))
    manager.on_fact(LegAnswered(customer, "sip-customer", at(4)))
    manager.on_fact(LegEnded(customer, "sip-customer", 200, "OK", True, at(30)))
    assert ("hangup", agent, 0, ()) in engine.commands
    assert sink.kinds() == ["offered", "ringing", "answered", "ended"]
    assert {e.call_id for e in sink.events} == {"call-1"}
    assert all(dict(e.context) == {"contact_id": "c-9", "task_id": "t-1"} for e in sink.events)
    assert sink.events[1].ringing.leg_id == "sip-customer"
    assert sink.events[-1].sip_call_id == f"sip-{agent}"  # the agent leg: the first one placed
    end = sink.events[-1].ended
    assert (end.disposition, end.hangup_by, end.answered_extension) == (
        ev.DISPOSITION_ANSWERED,
        ev.HANGUP_BY_CALLEE,
        "101",
    )
    manager.on_fact(LegEnded(agent, "sip-agent", 200, "OK", True, at(30.1)))
    assert manager.active_calls() == []


@pytest.mark.parametrize(
    ("status", "disposition", "by"),
    [
        (486, ev.DISPOSITION_BUSY, ev.HANGUP_BY_CALLEE),
        (603, ev.DISPOSITION_REJECTED, ev.HANGUP_BY_CALLEE),
        (480, ev.DISPOSITION_NO_ANSWER, ev.HANGUP_BY_SYSTEM),
        (404, ev.DISPOSITION_FAILED, ev.HANGUP_BY_SYSTEM),
    ],
)
async def test_the_customer_side_refusing(
    engine: Any, sink: Any, status: int, disposition: int, by: int
) -> None:
    manager = make(engine, sink)
    agent, customer = await placed(engine, manager)
    manager.on_fact(LegEnded(customer, "sip-customer", status, "no", False, at(2)))
    assert ("hangup", agent, 0, ()) in engine.commands  # BYE to the agent
    end = sink.events[-1].ended
    assert (end.disposition, end.sip_status, end.hangup_by) == (disposition, status, by)
    assert of_kind(sink, "leg_ended") == []


@pytest.mark.parametrize(
    ("status", "disposition", "by"),
    [
        (486, ev.DISPOSITION_BUSY, ev.HANGUP_BY_CALLER),
        (603, ev.DISPOSITION_REJECTED, ev.HANGUP_BY_CALLER),
        (503, ev.DISPOSITION_FAILED, ev.HANGUP_BY_SYSTEM),
    ],
)
async def test_the_agent_side_refusing(
    engine: Any, sink: Any, status: int, disposition: int, by: int
) -> None:
    manager = make(engine, sink)
    await manager.dial("call-1", "101", CUSTOMER, e164=CUSTOMER)
    agent = engine.of("originate")[0][1]
    manager.on_fact(LegEnded(agent, "sip-agent", status, "no", False, at(1)))
    assert engine.of("dial") == []  # the customer is never called
    [leg] = of_kind(sink, "leg_ended")
    assert (leg.leg_ended.extension, leg.leg_ended.disposition) == ("101", disposition)
    end = sink.events[-1].ended
    assert (end.disposition, end.sip_status, end.hangup_by) == (disposition, status, by)


async def test_nobody_answering_on_either_side(engine: Any, sink: Any) -> None:
    routes = {"extensions": {"101": {"contact": "sip:101@x", "ring_timeout": 0.05}}}
    manager = CallManager(
        engine,
        RoutingTable.from_mapping(routes),
        sink,
        source="s",
        from_host="gw",
        trunk="sip:t",
        dial_timeout=0.05,
    )
    await manager.dial("call-1", "101", CUSTOMER)
    agent = engine.of("originate")[0][1]
    await asyncio.sleep(0.2)
    assert ("hangup", agent, 0, ()) in engine.commands
    assert [(e.leg_ended.extension, e.leg_ended.disposition) for e in of_kind(sink, "leg_ended")] == [
        ("101", ev.DISPOSITION_NO_ANSWER)
    ]
    assert sink.events[-1].ended.disposition == ev.DISPOSITION_NO_ANSWER

    sink.events.clear()
    manager.on_fact(LegEnded(agent, "sip-agent", 487, "Request Terminated", False, at(1)))
    agent, customer = await placed(engine, manager)
    await asyncio.sleep(0.2)
    assert ("hangup", customer, 0, ()) in engine.commands
    assert ("hangup", agent, 0, ()) in engine.commands
    assert of_kind(sink, "leg_ended") == []  # the agent answered: it was the customer who did not
    end = sink.events[-1].ended
    assert (end.disposition, end.sip_status, end.q850_cause) == (ev.DISPOSITION_NO_ANSWER, 480, 19)


async def test_the_agent_hanging_up_while_the_customer_rings_cancels(engine: Any, sink: Any) -> None:
    manager = make(engine, sink)
    agent, customer = await placed(engine, manager)
    manager.on_fact(LegEnded(agent, "sip-agent", 200, "OK", True, at(3)))
    assert ("hangup", customer, 0, ()) in engine.commands
    end = sink.events[-1].ended
    assert (end.disposition, end.hangup_by) == (ev.DISPOSITION_CANCELLED, ev.HANGUP_BY_CALLER)


async def test_calling_another_extension_is_internal(engine: Any, sink: Any) -> None:
    manager = make(engine, sink, trunk="")
    await placed(engine, manager, "102")
    assert engine.of("originate")[0][3] == '"Call Bob" <sip:102@gw>'
    assert engine.of("dial")[0][3:5] == ("sip:102@10.0.0.2", '"Alice" <sip:101@gw>')
    assert sink.events[0].direction == ev.DIRECTION_INTERNAL
    assert sink.events[0].callee.extension == "102"


async def test_clicks_that_cannot_be_placed_are_refused_with_the_reason(engine: Any, sink: Any) -> None:
    manager = make(engine, sink, trunk="")
    with pytest.raises(DialRefused, match="extension 999 is not in this gateway's routes") as invalid:
        await manager.dial("c", "999", CUSTOMER)
    assert (invalid.value.kind, invalid.value.field) == ("invalid", "extension")
    with pytest.raises(DialRefused, match="GATEWAY_TRUNK_URI") as unavailable:
        await manager.dial("c", "101", CUSTOMER)
    assert unavailable.value.kind == "unavailable"
    assert sink.events == []

    manager = make(engine, sink)
    await manager.dial("c-1", "101", CUSTOMER)
    with pytest.raises(DialRefused, match="all 1 calls") as full:
        await manager.dial("c-2", "101", "+15550000000")
    assert full.value.kind == "busy"  # another gateway process (or this one later) can take it
    assert {e.call_id for e in sink.events} == {"c-1"}


async def test_a_click_the_engine_cannot_admit_ends_failed(engine: Any, sink: Any) -> None:
    engine.full = True  # an INVITE took the last call between the check and the engine
    manager = make(engine, sink)
    with pytest.raises(DialRefused, match="cannot be rung now"):
        await manager.dial("c-1", "101", CUSTOMER)
    assert sink.kinds() == ["offered", "ended"]
    assert sink.events[-1].ended.disposition == ev.DISPOSITION_FAILED
    assert manager.active_calls() == []


async def test_hangup_over_the_api_ends_both_legs(engine: Any, sink: Any) -> None:
    manager = make(engine, sink)
    agent, customer = await placed(engine, manager)
    manager.on_fact(LegAnswered(customer, "sip-customer", at(2)))
    manager.hangup("call-1")
    assert ("hangup", agent, 0, ()) in engine.commands
    assert ("hangup", customer, 0, ()) in engine.commands
    end = sink.events[-1].ended
    assert (end.disposition, end.hangup_by) == (ev.DISPOSITION_ANSWERED, ev.HANGUP_BY_SYSTEM)


# --- the real endpoint ------------------------------------------------------------------------------

sip = pytest.mark.skipif(not SIPP_OK, reason=SIPP_MISSING)


@pytest.fixture
async def running() -> AsyncIterator[Callable[..., Awaitable[tuple[GatewayService, list[ev.CallEvent]]]]]:
    started: list[GatewayService] = []

    async def make_gateway(
        routes: dict[str, Any], **overrides: Any
    ) -> tuple[GatewayService, list[ev.CallEvent]]:
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

        service = GatewayService(settings, RoutingTable.from_mapping(routes), publish)
        await service.start()
        started.append(service)
        return service, events

    yield make_gateway
    for service in started:
        await service.stop(timeout=3.0)


async def ended(events: list[ev.CallEvent], timeout: float = 20.0) -> ev.CallEvent:
    deadline = time.monotonic() + timeout
    while not any(e.WhichOneof("kind") == "ended" for e in events):
        if time.monotonic() > deadline:
            raise AssertionError(f"the call never ended: {[e.WhichOneof('kind') for e in events]}")
        await asyncio.sleep(0.02)
    return next(e for e in events if e.WhichOneof("kind") == "ended")


@sip
async def test_click_to_call_through_the_trunk_with_sipp(running: Any) -> None:
    with (
        start_uas("uas_answer.xml", duration_ms=200) as agent,
        start_uas("uas_answer_bye.xml", duration_ms=800) as customer,
    ):
        service, events = await running(
            {"extensions": {"101": {"contact": f"sip:101@{HOST}:{agent.port}", "employee_id": "emp-101"}}},
            trunk_uri=f"sip:{HOST}:{customer.port}",
        )
        dialer = DialService({}, sip_dialer=service.dial)
        first = await dialer.dial("101", CUSTOMER, idempotency_key="click-1", context={"contact_id": "c-1"})
        again = await dialer.dial("101", CUSTOMER, idempotency_key="click-1", context={"contact_id": "c-1"})
        assert (again.call_id, again.repeated, first.via) == (first.call_id, True, "sip")
        end = await ended(events)
        agent_done = await agent.wait_async(10)
        assert agent_done.ok, agent_done.explain()  # answered, then the gateway's BYE
        customer_done = await customer.wait_async(10)
        assert customer_done.ok, customer_done.explain()
        await dialer.close()
    assert [e.WhichOneof("kind") for e in events] == ["offered", "ringing", "answered", "ended"]
    assert {e.call_id for e in events} == {first.call_id}
    assert all(dict(e.context) == {"contact_id": "c-1"} for e in events)
    to_agent, to_customer = agent_done.received()[0], customer_done.received()[0]
    assert header(to_agent, "From").startswith(f'"Call {CUSTOMER}" <sip:{CUSTOMER}@')  # type: ignore[union-attr]
    assert to_customer.startswith(f"INVITE sip:{CUSTOMER}@{HOST}:{customer.port} SIP/2.0")
    assert header(to_customer, "X-Telecrm-Call-Id") == first.call_id
    assert (end.ended.disposition, end.ended.hangup_by, end.direction) == (
        ev.DISPOSITION_ANSWERED,
        ev.HANGUP_BY_CALLEE,
        ev.DIRECTION_OUTBOUND,
    )


@sip
async def test_a_busy_agent_never_calls_the_customer(running: Any) -> None:
    with start_uas("uas_busy.xml") as agent:
        service, events = await running(
            {"extensions": {"101": {"contact": f"sip:101@{HOST}:{agent.port}"}}},
            trunk_uri=f"sip:{HOST}:9",
        )
        dialer = DialService({}, sip_dialer=service.dial)
        await dialer.dial("101", CUSTOMER)
        end = await ended(events)
        done = await agent.wait_async(10)
        assert done.ok, done.explain()
        with pytest.raises(InvalidDial, match="extension 555"):
            await dialer.dial("555", CUSTOMER)
        await dialer.close()
    assert [e.WhichOneof("kind") for e in events] == ["offered", "leg_ended", "ended"]
    assert (end.ended.disposition, end.ended.sip_status, end.ended.hangup_by) == (
        ev.DISPOSITION_BUSY,
        486,
        ev.HANGUP_BY_CALLER,
    )


@sip
async def test_without_a_trunk_external_numbers_are_not_available(running: Any) -> None:
    service, events = await running({"extensions": {"101": {"contact": f"sip:101@{HOST}:9"}}})
    dialer = DialService({}, sip_dialer=service.dial)
    with pytest.raises(DialNotAvailable, match="GATEWAY_TRUNK_URI"):
        await dialer.dial("101", CUSTOMER)
    await service.stop(timeout=2.0)
    with pytest.raises(DialBusy, match="shutting down"):
        await dialer.dial("101", "102")
    await dialer.close()
    assert events == []


async def test_hangup_while_crm_is_asked_rings_nobody(engine: Any, sink: Any) -> None:
    class Slow(Lookup):
        async def lookup(self, number: str) -> Card | None:
            await asyncio.sleep(0.2)
            return None

    manager = make(engine, sink, lookup=Slow(), lookup_budget=1.0)
    dial = asyncio.create_task(manager.dial("call-1", "101", CUSTOMER))
    await asyncio.sleep(0.05)
    manager.hangup("call-1")
    await dial
    assert engine.of("originate") == []
    assert sink.kinds() == ["offered", "ended"]
    assert await manager.drain(1.0)  # nothing left behind
