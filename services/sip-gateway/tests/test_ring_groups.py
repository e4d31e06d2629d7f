"""Ring groups, queues, overflow and the caller's name, against a fake engine: which legs are rung,
cancelled and bridged, and which events say so."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_gateway.calls import CallManager, agent_display
from telecrm_gateway.routing import RoutingTable
from telecrm_gateway.sip.facts import IncomingCall, LegAnswered, LegEnded, LegProgress

T0 = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)
SALES = "+15551230000"
SUPPORT = "+15551230001"
DIRECT = "+15551230002"
CALLER = "+15557654321"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def phones(*numbers: str) -> dict[str, Any]:
    return {
        n: {"contact": f"sip:{n}@10.0.0.{n[-1]}", "name": f"Agent {n}", "employee_id": f"emp-{n}"}
        for n in numbers
    }


def table(**overrides: Any) -> RoutingTable:
    data: dict[str, Any] = {
        "extensions": phones("101", "102", "103", "104"),
        "groups": {
            "sales": {"strategy": "all", "members": ["101", "102", "103"], "timeout": 30, "name": "Sales"},
            "night": {"members": ["104"], "timeout": 30},
        },
        "queues": {"support": {"members": ["101", "102", "103"], "member_timeout": 10}},
        "lines": {
            SALES: {"group": "sales", "name": "Sales line"},
            SUPPORT: {"queue": "support", "name": "Support"},
            DIRECT: {"extension": "104", "overflow": "group:sales"},
        },
    }
    data.update(overrides)
    return RoutingTable.from_mapping(data)


def incoming(
    dialled: str = SALES, caller: str = CALLER, leg: str = "in-1", display: str = ""
) -> IncomingCall:
    return IncomingCall(
        leg_id=leg,
        sip_call_id=f"sip-{leg}",
        request_uri=f"sip:{dialled}@gw",
        request_user=dialled,
        from_uri=f"<sip:{caller}@pbx>",
        from_user=caller,
        from_display=display,
        to_uri=f"<sip:{dialled}@gw>",
        source="127.0.0.1:5062",
        transport="UDP",
        at=at(0),
    )


@dataclass(frozen=True)
class Card:
    name: str
    company: str = ""


class FakeLookup:
    """crm's caller look-up: answers from ``known`` at once, or when the test releases it."""

    def __init__(self, known: Mapping[str, Card] | None = None, *, hold: bool = False) -> None:
        self.known = dict(known or {})
        self.hold = hold
        self.release = asyncio.Event()
        self.asked: list[str] = []
        self.cache: dict[str, Card] = {}

    def cached(self, number: str) -> Card | None:
        return self.cache.get(number)

    async def lookup(self, number: str) -> Card | None:
        self.asked.append(number)
        if self.hold:
            await self.release.wait()
        return self.known.get(number)


def make(fake_engine: Any, sink: Any, routes: RoutingTable | None = None, **kwargs: Any) -> CallManager:
    return CallManager(
        fake_engine, routes or table(), sink, source="sip-gateway/t", from_host="gw.local", **kwargs
    )


def dials(fake_engine: Any) -> list[tuple[str, str, str]]:
    """(leg id, contact, From) of every leg dialled, in order."""
    return [(c[1], c[3], c[4]) for c in fake_engine.of("dial")]


def leg_of(fake_engine: Any, extension: str, nth: int = 0) -> str:
    legs = [leg for leg, contact, _ in dials(fake_engine) if contact.startswith(f"sip:{extension}@")]
    return legs[nth]


def of_kind(sink: Any, kind: str) -> list[ev.CallEvent]:
    return [e for e in sink.events if e.WhichOneof("kind") == kind]


async def until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def ring(manager: CallManager, leg: str, t: float = 0.2) -> None:
    manager.on_fact(LegProgress(leg, f"sip-{leg}", 180, "Ringing", at(t)))


# --- ring all -------------------------------------------------------------------------------------


async def test_ring_all_first_answer_wins_and_the_others_are_cancelled(fake_engine: Any, sink: Any) -> None:
    manager = make(fake_engine, sink)
    manager.on_fact(incoming(display="Ann"))
    rung = dials(fake_engine)
    assert [contact for _, contact, _ in rung] == ["sip:101@10.0.0.1", "sip:102@10.0.0.2", "sip:103@10.0.0.3"]
    assert {from_ for _, _, from_ in rung} == {f'"Ann / Sales line" <sip:{CALLER}@gw.local>'}
    a, b, c = (leg for leg, _, _ in rung)
    for leg in (a, b, c):
        ring(manager, leg)
    assert fake_engine.of("answer") == [("answer", "in-1", 180, ())]  # the caller hears one ringing
    ringing = of_kind(sink, "ringing")
    assert [(e.ringing.extension, e.ringing.employee_id, e.ringing.leg_id) for e in ringing] == [
        ("101", "emp-101", f"sip-{a}"),
        ("102", "emp-102", f"sip-{b}"),
        ("103", "emp-103", f"sip-{c}"),
    ]
    assert sink.events[0].extension == ""  # a group: nobody in particular until someone answers
    assert sink.events[0].callee.display_name == "Sales"

    manager.on_fact(LegAnswered(b, f"sip-{b}", at(3)))
    assert ("answer", "in-1", 200, ()) in fake_engine.commands
    assert fake_engine.of("bridge") == [("bridge", "in-1", b)]
    assert ("hangup", a, 0, ()) in fake_engine.commands
    assert ("hangup", c, 0, ()) in fake_engine.commands
    assert ("hangup", b, 0, ()) not in fake_engine.commands
    [answered] = of_kind(sink, "answered")
    assert (answered.answered.extension, answered.answered.employee_id) == ("102", "emp-102")
    assert (answered.extension, answered.employee_id, answered.callee.extension) == ("102", "emp-102", "102")
    lost = of_kind(sink, "leg_ended")
    assert [(e.leg_ended.extension, e.leg_ended.disposition, e.leg_ended.sip_status) for e in lost] == [
        ("101", ev.DISPOSITION_CANCELLED, 487),
        ("103", ev.DISPOSITION_CANCELLED, 487),
    ]
    assert {e.leg_ended.q850_cause for e in lost} == {26}  # non-selected user clearing

    # The cancelled phone picks up anyway: it is hung up, nothing more is published.
    count = len(sink.events)
    manager.on_fact(LegAnswered(c, f"sip-{c}", at(3.1)))
    assert fake_engine.commands[-1] == ("hangup", c, 0, ())
    assert len(sink.events) == count
    for leg in (a, c):
        manager.on_fact(LegEnded(leg, f"sip-{leg}", 487, "Request Terminated", False, at(3.2)))
    manager.on_fact(LegEnded("in-1", "sip-in-1", 200, "OK", True, at(9)))
    assert ("hangup", b, 0, ()) in fake_engine.commands
    end = sink.events[-1].ended
    assert (end.disposition, end.answered_extension, end.hangup_by) == (
        ev.DISPOSITION_ANSWERED,
        "102",
        ev.HANGUP_BY_CALLER,
    )
    assert len({e.call_id for e in sink.events}) == 1
    assert [e.sequence for e in sink.events] == list(range(1, len(sink.events) + 1))
    manager.on_fact(LegEnded(b, f"sip-{b}", 200, "OK", True, at(9.1)))
    assert manager.active_calls() == []


async def test_ring_all_everyone_busy_ends_busy(fake_engine: Any, sink: Any) -> None:
    manager = make(fake_engine, sink)
    manager.on_fact(incoming())
    a, b, c = (leg for leg, _, _ in dials(fake_engine))
    manager.on_fact(LegEnded(a, "sip-a", 486, "Busy Here", False, at(0.1)))
    manager.on_fact(LegEnded(b, "sip-b", 603, "Decline", False, at(0.2)))
    assert of_kind(sink, "ended") == []  # 103 still rings
    manager.on_fact(LegEnded(c, "sip-c", 486, "Busy Here", False, at(0.3)))
    assert [(e.leg_ended.extension, e.leg_ended.disposition) for e in of_kind(sink, "leg_ended")] == [
        ("101", ev.DISPOSITION_BUSY),
        ("102", ev.DISPOSITION_REJECTED),
        ("103", ev.DISPOSITION_BUSY),
    ]
    assert fake_engine.commands[-1] == ("hangup", "in-1", 603, ())  # a 6xx says the most
    end = sink.events[-1].ended
    assert (end.disposition, end.sip_status, end.sip_reason) == (ev.DISPOSITION_REJECTED, 603, "Decline")


async def test_the_caller_hanging_up_cancels_every_ringing_leg(fake_engine: Any, sink: Any) -> None:
    manager = make(fake_engine, sink)
    manager.on_fact(incoming())
    legs = [leg for leg, _, _ in dials(fake_engine)]
    manager.on_fact(LegEnded(legs[0], "sip-x", 486, "Busy Here", False, at(0.1)))
    manager.on_fact(LegEnded("in-1", "sip-in-1", 487, "Request Terminated", False, at(2)))
    assert [c for c in fake_engine.of("hangup")] == [("hangup", legs[1], 0, ()), ("hangup", legs[2], 0, ())]
    assert sink.kinds() == ["offered", "leg_ended", "ended"]  # the ringing legs share the call's fate
    end = sink.events[-1].ended
    assert (end.disposition, end.hangup_by) == (ev.DISPOSITION_MISSED, ev.HANGUP_BY_CALLER)


async def test_nobody_answering_the_group_is_a_missed_call(fake_engine: Any, sink: Any) -> None:
    routes = table(groups={"sales": {"members": ["101", "102"], "timeout": 0.05}})
    manager = make(fake_engine, sink, routes)
    manager.on_fact(incoming())
    a, b = (leg for leg, _, _ in dials(fake_engine))
    ring(manager, a)
    await until(lambda: bool(of_kind(sink, "ended")), "the group to ring out")
    assert ("hangup", a, 0, ()) in fake_engine.commands
    assert ("hangup", b, 0, ()) in fake_engine.commands
    assert ("hangup", "in-1", 480, ()) in fake_engine.commands
    assert [(e.leg_ended.extension, e.leg_ended.disposition) for e in of_kind(sink, "leg_ended")] == [
        ("101", ev.DISPOSITION_NO_ANSWER),
        ("102", ev.DISPOSITION_NO_ANSWER),
    ]
    end = sink.events[-1].ended
    assert (end.disposition, end.sip_status, end.q850_cause) == (ev.DISPOSITION_MISSED, 480, 19)


# --- sequential, queues, overflow -------------------------------------------------------------------


async def test_a_queue_rings_its_members_in_order(fake_engine: Any, sink: Any) -> None:
    routes = table(queues={"support": {"members": ["101", "102", "103"], "member_timeout": 0.05}})
    manager = make(fake_engine, sink, routes, max_legs=2)  # two calls per process: caller + one agent
    manager.on_fact(incoming(SUPPORT))
    first = leg_of(fake_engine, "101")
    assert len(dials(fake_engine)) == 1
    ring(manager, first)
    await until(lambda: ("hangup", first, 0, ()) in fake_engine.commands, "101 to ring out")
    [no_answer] = of_kind(sink, "leg_ended")
    assert (no_answer.leg_ended.extension, no_answer.leg_ended.disposition) == (
        "101",
        ev.DISPOSITION_NO_ANSWER,
    )
    assert len(dials(fake_engine)) == 1  # the cancelled leg still holds the call's second leg
    manager.on_fact(LegEnded(first, "sip-1", 487, "Request Terminated", False, at(1)))
    second = leg_of(fake_engine, "102")
    manager.on_fact(LegEnded(second, "sip-2", 486, "Busy Here", False, at(1.1)))  # busy: next at once
    third = leg_of(fake_engine, "103")
    ring(manager, third)
    manager.on_fact(LegAnswered(third, "sip-3", at(2)))
    assert fake_engine.of("bridge") == [("bridge", "in-1", third)]
    assert [(e.leg_ended.extension, e.leg_ended.disposition) for e in of_kind(sink, "leg_ended")] == [
        ("101", ev.DISPOSITION_NO_ANSWER),
        ("102", ev.DISPOSITION_BUSY),
    ]
    assert of_kind(sink, "answered")[0].answered.extension == "103"
    assert fake_engine.of("answer").count(("answer", "in-1", 180, ())) == 1


async def test_a_line_overflows_from_an_extension_to_a_group(fake_engine: Any, sink: Any) -> None:
    routes = table(
        extensions={**phones("101", "102", "103"), "104": {"contact": "sip:104@x", "ring_timeout": 0.05}}
    )
    manager = make(fake_engine, sink, routes)
    manager.on_fact(incoming(DIRECT))
    first = leg_of(fake_engine, "104")
    assert sink.events[0].extension == "104"
    ring(manager, first)
    await until(lambda: len(dials(fake_engine)) == 3, "the overflow group to ring")
    [no_answer] = of_kind(sink, "leg_ended")
    assert (no_answer.leg_ended.extension, no_answer.leg_ended.disposition) == (
        "104",
        ev.DISPOSITION_NO_ANSWER,
    )
    assert ("hangup", first, 0, ()) in fake_engine.commands
    # Four legs per call: the caller, 104 (cancelled, not gone yet), 101 and 102. 103 rings once 104 is gone.
    assert [contact for _, contact, _ in dials(fake_engine)][1:] == ["sip:101@10.0.0.1", "sip:102@10.0.0.2"]
    manager.on_fact(LegEnded(first, "sip-104", 487, "Request Terminated", False, at(1)))
    assert dials(fake_engine)[-1][1] == "sip:103@10.0.0.3"
    manager.on_fact(LegAnswered(leg_of(fake_engine, "101"), "sip-101", at(1)))
    assert of_kind(sink, "answered")[0].extension == "101"


async def test_the_overflow_after_everyone_refused(fake_engine: Any, sink: Any) -> None:
    routes = table(
        groups={"sales": {"members": ["101"], "overflow": "group:night"}, "night": {"members": ["104"]}}
    )
    manager = make(fake_engine, sink, routes)
    manager.on_fact(incoming())
    manager.on_fact(LegEnded(leg_of(fake_engine, "101"), "sip-1", 486, "Busy Here", False, at(0.1)))
    night = leg_of(fake_engine, "104")
    manager.on_fact(LegEnded(night, "sip-4", 480, "Temporarily Unavailable", False, at(0.2)))
    assert [(e.leg_ended.extension, e.leg_ended.disposition) for e in of_kind(sink, "leg_ended")] == [
        ("101", ev.DISPOSITION_BUSY),
        ("104", ev.DISPOSITION_NO_ANSWER),
    ]
    assert fake_engine.commands[-1] == ("hangup", "in-1", 486, ())
    assert sink.events[-1].ended.disposition == ev.DISPOSITION_BUSY


# --- the caller's name -----------------------------------------------------------------------------


async def test_the_agent_sees_the_contact_name_and_the_line(fake_engine: Any, sink: Any) -> None:
    lookup = FakeLookup({CALLER: Card("Ivan Petrov", "Acme")})
    manager = make(fake_engine, sink, lookup=lookup, lookup_budget=5.0)
    manager.on_fact(incoming(display="CALLER ID"))
    await until(lambda: bool(dials(fake_engine)), "the group to ring")
    assert lookup.asked == [CALLER]
    assert {from_ for _, _, from_ in dials(fake_engine)} == {
        f'"Ivan Petrov / Sales line" <sip:{CALLER}@gw.local>'
    }
    assert sink.events[0].caller.display_name == "CALLER ID"  # the event keeps what the caller signalled


async def test_a_cached_name_rings_without_waiting(fake_engine: Any, sink: Any) -> None:
    lookup = FakeLookup(hold=True)
    lookup.cache[CALLER] = Card("", "Acme Ltd")
    manager = make(fake_engine, sink, lookup=lookup, lookup_budget=5.0)
    manager.on_fact(incoming(DIRECT))
    assert dials(fake_engine)[0][2] == f'"Acme Ltd" <sip:{CALLER}@gw.local>'  # no line name: a company
    assert lookup.asked == []


async def test_a_late_answer_does_not_hold_the_ringing(fake_engine: Any, sink: Any) -> None:
    routes = table(queues={"support": {"members": ["101", "102"], "member_timeout": 30}})
    lookup = FakeLookup({CALLER: Card("Ivan Petrov")}, hold=True)
    manager = make(fake_engine, sink, routes, lookup=lookup, lookup_budget=0.02)
    manager.on_fact(incoming(SUPPORT, display="Ann"))
    await until(lambda: bool(dials(fake_engine)), "ringing without the name")
    assert dials(fake_engine)[0][2] == f'"Ann / Support" <sip:{CALLER}@gw.local>'
    lookup.release.set()  # crm answers after all: the next member sees the name
    await asyncio.sleep(0.01)
    manager.on_fact(LegEnded(leg_of(fake_engine, "101"), "sip-1", 486, "Busy Here", False, at(1)))
    assert dials(fake_engine)[1][2] == f'"Ivan Petrov / Support" <sip:{CALLER}@gw.local>'


async def test_the_caller_hanging_up_during_the_lookup_rings_nobody(fake_engine: Any, sink: Any) -> None:
    lookup = FakeLookup(hold=True)
    manager = make(fake_engine, sink, lookup=lookup, lookup_budget=0.02)
    manager.on_fact(incoming())
    manager.on_fact(LegEnded("in-1", "sip-in-1", 487, "Request Terminated", False, at(0.01)))
    await asyncio.sleep(0.05)
    assert dials(fake_engine) == []
    assert sink.kinds() == ["offered", "ended"]
    assert manager.active_calls() == []


async def test_internal_and_anonymous_callers_are_not_looked_up(fake_engine: Any, sink: Any) -> None:
    lookup = FakeLookup(hold=True)
    manager = make(fake_engine, sink, lookup=lookup, lookup_budget=5.0)
    manager.on_fact(incoming("101", caller="102", leg="in-1"))
    manager.on_fact(incoming(DIRECT, caller="anonymous", leg="in-2"))
    assert len(dials(fake_engine)) == 2  # both rang at once
    assert dials(fake_engine)[0][2] == '"Agent 102" <sip:102@gw.local>'
    assert lookup.asked == []


@pytest.mark.parametrize(
    ("who", "line", "shown"),
    [
        ("Ivan Petrov", "Sales", "Ivan Petrov / Sales"),
        ("", "Sales", "Sales"),
        ("Ivan", "", "Ivan"),
        ("Evil\r\nVia: x", "", "Evil Via: x"),  # no header injection from crm data
        ("Иван Петров", "Продажи", "Иван Петров / Продажи"),
        ("x" * 100, "Sales", "x" * 64),
    ],
)
def test_agent_display(who: str, line: str, shown: str) -> None:
    assert agent_display(who, line) == shown


async def test_quotes_in_a_name_are_escaped(fake_engine: Any, sink: Any) -> None:
    lookup = FakeLookup()
    lookup.cache[CALLER] = Card('Bob "the builder" \\o/')
    manager = make(fake_engine, sink, lookup=lookup)
    manager.on_fact(incoming(DIRECT))
    assert dials(fake_engine)[0][2] == f'"Bob \\"the builder\\" \\\\o/" <sip:{CALLER}@gw.local>'
