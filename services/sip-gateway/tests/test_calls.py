"""The call logic against a fake engine: which SIP commands it sends and which events it publishes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_gateway.calls import CALL_ID_HEADER, CallManager, CallState
from telecrm_gateway.errors import CallNotFoundError
from telecrm_gateway.routing import RoutingTable
from telecrm_gateway.sip.facts import CallRefused, IncomingCall, LegAnswered, LegEnded, LegProgress

T0 = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def incoming(dialled: str = "+15551230000", caller: str = "+15557654321", leg: str = "in-1") -> IncomingCall:
    return IncomingCall(
        leg_id=leg,
        sip_call_id=f"sip-{leg}",
        request_uri=f"sip:{dialled}@gw",
        request_user=dialled,
        from_uri=f'"Ann" <sip:{caller}@pbx>',
        from_user=caller,
        from_display="Ann",
        to_uri=f"<sip:{dialled}@gw>",
        source="127.0.0.1:5062",
        transport="UDP",
        at=at(0),
    )


@pytest.fixture
def manager(fake_engine: Any, routes: RoutingTable, sink: Any) -> CallManager:
    return CallManager(fake_engine, routes, sink, source="sip-gateway/t", from_host="gw.local", retry_after=7)


def agent_leg(fake_engine: Any) -> str:
    return str(fake_engine.of("dial")[0][1])


def ended(sink: Any) -> ev.CallEnded:
    assert sink.events[-1].WhichOneof("kind") == "ended"
    return sink.events[-1].ended


async def test_an_answered_call_rings_answers_bridges_and_ends(
    manager: CallManager, fake_engine: Any, sink: Any
) -> None:
    manager.on_fact(incoming())
    dial = fake_engine.of("dial")[0]
    agent = dial[1]
    assert dial[2:5] == ("in-1", "sip:101@127.0.0.1:5070", '"Ann / Main" <sip:+15557654321@gw.local>')
    call_id = sink.events[0].call_id
    assert dict(dial[5]) == {CALL_ID_HEADER: call_id}

    manager.on_fact(LegProgress(agent, "sip-agent", 180, "Ringing", at(0.5)))
    manager.on_fact(LegProgress(agent, "sip-agent", 183, "Session Progress", at(0.6)))  # only one 180
    assert fake_engine.of("answer") == [("answer", "in-1", 180, ())]
    manager.on_fact(LegAnswered(agent, "sip-agent", at(3)))
    assert fake_engine.of("answer")[-1] == ("answer", "in-1", 200, ())
    assert fake_engine.of("bridge") == [("bridge", "in-1", agent)]
    assert manager.get(call_id) is not None
    assert manager.get(call_id).state is CallState.ANSWERED

    manager.on_fact(LegEnded("in-1", "sip-in-1", 200, "OK", True, at(10)))
    assert fake_engine.of("hangup") == [("hangup", agent, 0, ())]
    assert sink.kinds() == ["offered", "ringing", "answered", "ended"]
    assert [e.sequence for e in sink.events] == [1, 2, 3, 4]
    assert {e.call_id for e in sink.events} == {call_id}
    assert sink.events[1].ringing.leg_id == "sip-agent"
    end = ended(sink)
    assert (end.disposition, end.sip_status, end.q850_cause, end.hangup_by) == (
        ev.DISPOSITION_ANSWERED,
        200,
        16,
        ev.HANGUP_BY_CALLER,
    )
    assert end.started_at.ToDatetime(tzinfo=UTC) == at(0)
    assert end.answered_at.ToDatetime(tzinfo=UTC) == at(3)
    assert sink.events[-1].occurred_at.ToDatetime(tzinfo=UTC) == at(10)
    assert end.answered_extension == "101"
    assert manager.active_calls() == []  # ended; the agent leg is still going away
    manager.on_fact(LegEnded(agent, "sip-agent", 200, "OK", True, at(10.1)))
    assert sink.kinds() == ["offered", "ringing", "answered", "ended"]


async def test_the_header_of_an_inbound_call(manager: CallManager, sink: Any) -> None:
    manager.on_fact(incoming())
    offered = sink.events[0]
    assert offered.direction == ev.DIRECTION_INBOUND
    assert (
        offered.caller.number,
        offered.caller.e164,
        offered.caller.display_name,
        offered.caller.extension,
    ) == (
        "+15557654321",
        "+15557654321",
        "Ann",
        "",
    )
    assert (offered.callee.number, offered.callee.extension, offered.callee.display_name) == (
        "+15551230000",
        "101",
        "Alice",
    )
    assert (offered.line, offered.extension, offered.employee_id) == ("+15551230000", "101", "emp-1")
    assert (offered.sip_call_id, offered.source) == ("sip-in-1", "sip-gateway/t")
    assert offered.offered.request_uri == "sip:+15551230000@gw"


async def test_a_call_from_an_extension_is_internal(manager: CallManager, sink: Any) -> None:
    manager.on_fact(incoming(dialled="102", caller="101"))
    offered = sink.events[0]
    assert offered.direction == ev.DIRECTION_INTERNAL
    assert (offered.caller.extension, offered.caller.e164) == ("101", "")
    assert (offered.extension, offered.employee_id) == ("102", "emp-2")


async def test_the_agent_hanging_up_ends_the_call_by_the_callee(
    manager: CallManager, fake_engine: Any, sink: Any
) -> None:
    manager.on_fact(incoming())
    agent = agent_leg(fake_engine)
    manager.on_fact(LegAnswered(agent, "sip-agent", at(1)))
    manager.on_fact(LegEnded(agent, "sip-agent", 200, "OK", True, at(5)))
    assert fake_engine.of("hangup") == [("hangup", "in-1", 0, ())]
    end = ended(sink)
    assert (end.disposition, end.hangup_by) == (ev.DISPOSITION_ANSWERED, ev.HANGUP_BY_CALLEE)
    assert sink.kinds() == ["offered", "answered", "ended"]


async def test_the_caller_cancelling_cancels_the_agent_leg(
    manager: CallManager, fake_engine: Any, sink: Any
) -> None:
    manager.on_fact(incoming())
    agent = agent_leg(fake_engine)
    manager.on_fact(LegProgress(agent, "sip-agent", 180, "Ringing", at(0.2)))
    manager.on_fact(LegEnded("in-1", "sip-in-1", 487, "Request Terminated", False, at(4)))
    assert fake_engine.of("hangup") == [("hangup", agent, 0, ())]
    end = ended(sink)
    assert (end.disposition, end.sip_status, end.q850_cause, end.hangup_by) == (
        ev.DISPOSITION_MISSED,
        487,
        16,
        ev.HANGUP_BY_CALLER,
    )
    assert not end.HasField("answered_at")


@pytest.mark.parametrize(
    ("status", "relayed", "disposition", "q850", "by"),
    [
        (486, 486, ev.DISPOSITION_BUSY, 17, ev.HANGUP_BY_CALLEE),
        (603, 603, ev.DISPOSITION_REJECTED, 21, ev.HANGUP_BY_CALLEE),
        (503, 500, ev.DISPOSITION_FAILED, 41, ev.HANGUP_BY_SYSTEM),
        (408, 408, ev.DISPOSITION_MISSED, 102, ev.HANGUP_BY_SYSTEM),
    ],
)
async def test_the_agent_refusing_is_relayed_to_the_caller(
    manager: CallManager,
    fake_engine: Any,
    sink: Any,
    status: int,
    relayed: int,
    disposition: int,
    q850: int,
    by: int,
) -> None:
    manager.on_fact(incoming())
    agent = agent_leg(fake_engine)
    manager.on_fact(LegEnded(agent, "sip-agent", status, "reason", False, at(1)))
    assert fake_engine.of("hangup") == [("hangup", "in-1", relayed, ())]
    end = ended(sink)
    assert (end.disposition, end.sip_status, end.sip_reason, end.q850_cause, end.hangup_by) == (
        disposition,
        status,
        "reason",
        q850,
        by,
    )


async def test_an_unknown_number_gets_404_and_a_failed_record(
    manager: CallManager, fake_engine: Any, sink: Any
) -> None:
    manager.on_fact(incoming(dialled="999"))
    assert fake_engine.of("dial") == []
    assert fake_engine.of("hangup") == [("hangup", "in-1", 404, ())]
    assert sink.kinds() == ["offered", "ended"]
    assert (sink.events[0].extension, sink.events[0].callee.extension) == ("", "")
    end = ended(sink)
    assert (end.disposition, end.sip_status, end.q850_cause, end.hangup_by) == (
        ev.DISPOSITION_FAILED,
        404,
        1,
        ev.HANGUP_BY_SYSTEM,
    )
    manager.on_fact(LegEnded("in-1", "sip-in-1", 404, "Not Found", False, at(0.1)))
    assert sink.kinds() == ["offered", "ended"]
    assert manager.active_calls() == []


async def test_nobody_answering_within_the_ring_timeout(fake_engine: Any, sink: Any) -> None:
    routes = RoutingTable.from_mapping(
        {"extensions": {"101": {"contact": "sip:101@x", "ring_timeout": 0.05}}}
    )
    manager = CallManager(fake_engine, routes, sink, source="s", from_host="gw")
    manager.on_fact(incoming(dialled="101"))
    agent = agent_leg(fake_engine)
    manager.on_fact(LegProgress(agent, "sip-agent", 180, "Ringing", at(0)))
    await asyncio.sleep(0.2)
    assert ("hangup", agent, 0, ()) in fake_engine.commands
    assert ("hangup", "in-1", 480, ()) in fake_engine.commands
    end = ended(sink)
    assert (end.disposition, end.sip_status, end.q850_cause, end.hangup_by) == (
        ev.DISPOSITION_MISSED,
        480,
        19,
        ev.HANGUP_BY_SYSTEM,
    )
    # The agent picks up just too late: the gateway hangs that leg up and publishes nothing more.
    manager.on_fact(LegAnswered(agent, "sip-agent", at(1)))
    assert fake_engine.commands[-1] == ("hangup", agent, 0, ())
    assert sink.kinds() == ["offered", "ringing", "ended"]


async def test_an_answered_call_has_no_ring_timeout(fake_engine: Any, sink: Any) -> None:
    routes = RoutingTable.from_mapping(
        {"extensions": {"101": {"contact": "sip:101@x", "ring_timeout": 0.05}}}
    )
    manager = CallManager(fake_engine, routes, sink, source="s", from_host="gw")
    manager.on_fact(incoming(dialled="101"))
    manager.on_fact(LegAnswered(agent_leg(fake_engine), "sip-agent", at(0.01)))
    await asyncio.sleep(0.15)
    assert sink.kinds() == ["offered", "answered"]


async def test_hangup_over_the_api(manager: CallManager, fake_engine: Any, sink: Any) -> None:
    manager.on_fact(incoming())
    agent = agent_leg(fake_engine)
    call_id = sink.events[0].call_id
    manager.on_fact(LegAnswered(agent, "sip-agent", at(1)))
    manager.hangup(call_id)
    assert ("hangup", agent, 0, ()) in fake_engine.commands
    assert ("hangup", "in-1", 0, ()) in fake_engine.commands
    end = ended(sink)
    assert (end.disposition, end.hangup_by) == (ev.DISPOSITION_ANSWERED, ev.HANGUP_BY_SYSTEM)
    with pytest.raises(CallNotFoundError):
        manager.hangup(call_id)
    with pytest.raises(CallNotFoundError):
        manager.hangup("no-such-call")
    # The legs' own endings after our hangup publish nothing more.
    manager.on_fact(LegEnded(agent, "sip-agent", 200, "OK", True, at(2)))
    manager.on_fact(LegEnded("in-1", "sip-in-1", 200, "OK", True, at(2)))
    assert sink.kinds() == ["offered", "answered", "ended"]


async def test_hangup_of_a_ringing_call_tells_the_caller(
    manager: CallManager, fake_engine: Any, sink: Any
) -> None:
    manager.on_fact(incoming())
    manager.hangup(sink.events[0].call_id)
    assert ("hangup", "in-1", 480, ()) in fake_engine.commands
    assert ended(sink).disposition == ev.DISPOSITION_CANCELLED


async def test_drain_refuses_new_calls_and_hangs_up_live_ones(
    manager: CallManager, fake_engine: Any, sink: Any
) -> None:
    manager.on_fact(incoming(leg="in-1"))
    first_agent = agent_leg(fake_engine)
    manager.on_fact(LegAnswered(first_agent, "sip-a1", at(1)))
    manager.on_fact(incoming(leg="in-2"))  # ringing
    second_agent = str(fake_engine.of("dial")[1][1])

    async def legs_go_away() -> None:
        await asyncio.sleep(0.05)
        for leg in ("in-1", first_agent, "in-2", second_agent):
            manager.on_fact(LegEnded(leg, f"sip-{leg}", 200, "OK", False, at(2)))

    task = asyncio.create_task(legs_go_away())
    assert await manager.drain(timeout=2.0)
    await task
    assert ("set_accepting", False) in fake_engine.commands
    assert ("hangup", "in-2", 503, (("Retry-After", "7"),)) in fake_engine.commands
    ends = [e.ended for e in sink.events if e.WhichOneof("kind") == "ended"]
    assert [(e.disposition, e.sip_status, e.hangup_by) for e in ends] == [
        (ev.DISPOSITION_ANSWERED, 200, ev.HANGUP_BY_SYSTEM),
        (ev.DISPOSITION_FAILED, 503, ev.HANGUP_BY_SYSTEM),
    ]
    # An INVITE admitted just before the engine stopped taking calls is refused too, without events.
    count = len(sink.events)
    manager.on_fact(incoming(leg="in-3"))
    assert fake_engine.commands[-1] == ("hangup", "in-3", 503, (("Retry-After", "7"),))
    assert len(sink.events) == count


async def test_refused_invites_publish_nothing(manager: CallManager, sink: Any) -> None:
    manager.on_fact(CallRefused("x@y", 503, "full", "sip:101@gw", "<sip:a@b>", at(0)))
    assert sink.events == []
    assert manager.refused == 1


async def test_a_bad_fact_does_not_break_the_next_call(
    manager: CallManager, sink: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(dialled: str) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(manager._routes, "route", broken)
    manager.on_fact(incoming(leg="in-1"))  # logged, not raised
    monkeypatch.undo()
    manager.on_fact(incoming(leg="in-2"))
    assert sink.kinds()[-1] == "offered"
