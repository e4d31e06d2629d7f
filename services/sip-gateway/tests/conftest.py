"""Fixtures of the gateway's tests: a fake SIP engine for the call logic, real gateways for sipp tests."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_gateway.routing import RoutingTable
from telecrm_gateway.service import GatewayService
from telecrm_gateway.settings import GatewaySettings
from tests.sipp.runner import free_port


class FakeEngine:
    """Records the commands the call logic sends; every command succeeds at once."""

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []
        self._ids = itertools.count(1)

    def new_leg_id(self) -> str:
        return f"leg-{next(self._ids)}"

    @staticmethod
    def _done(value: Any = None) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.set_result(value)
        return future

    def answer(
        self, leg_id: str, status: int, reason: str = "", headers: Sequence[tuple[str, str]] = ()
    ) -> concurrent.futures.Future[None]:
        self.commands.append(("answer", leg_id, status, tuple(headers)))
        return self._done()

    def hangup(
        self, leg_id: str, status: int = 0, reason: str = "", headers: Sequence[tuple[str, str]] = ()
    ) -> concurrent.futures.Future[None]:
        self.commands.append(("hangup", leg_id, status, tuple(headers)))
        return self._done()

    def dial(
        self, leg_id: str, group: str, uri: str, from_uri: str = "", headers: Sequence[tuple[str, str]] = ()
    ) -> concurrent.futures.Future[str]:
        self.commands.append(("dial", leg_id, group, uri, from_uri, tuple(headers)))
        return self._done(f"sip-{leg_id}")

    def bridge(self, leg_a: str, leg_b: str) -> concurrent.futures.Future[None]:
        self.commands.append(("bridge", leg_a, leg_b))
        return self._done()

    def set_accepting(self, accepting: bool) -> concurrent.futures.Future[None]:
        self.commands.append(("set_accepting", accepting))
        return self._done()

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [c for c in self.commands if c[0] == kind]


class ListSink:
    """An event sink that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[ev.CallEvent] = []

    def emit(self, event: ev.CallEvent) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [str(e.WhichOneof("kind")) for e in self.events]


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def sink() -> ListSink:
    return ListSink()


ROUTES: Mapping[str, Any] = {
    "extensions": {
        "101": {
            "contact": "sip:101@127.0.0.1:5070",
            "name": "Alice",
            "employee_id": "emp-1",
            "ring_timeout": 20,
        },
        "102": {"contact": "sip:102@127.0.0.1:5070", "name": "Bob", "employee_id": "emp-2"},
    },
    "lines": {"+15551230000": {"extension": "101", "name": "Main"}},
}


@pytest.fixture
def routes() -> RoutingTable:
    return RoutingTable.from_mapping(ROUTES)


# --- real gateways ------------------------------------------------------------------------------


@dataclass
class RunningGateway:
    """A started GatewayService whose published events are kept in ``events``."""

    service: GatewayService
    events: list[ev.CallEvent] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.service.sip_port

    def calls(self) -> dict[str, list[ev.CallEvent]]:
        """Published events grouped by call id, in publication order."""
        out: dict[str, list[ev.CallEvent]] = {}
        for event in self.events:
            out.setdefault(event.call_id, []).append(event)
        return out

    def kinds(self, call_id: str) -> list[str]:
        return [str(e.WhichOneof("kind")) for e in self.calls().get(call_id, [])]

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or condition}; events: {self.summary()}")
            await asyncio.sleep(0.02)

    async def wait_ended(self, count: int = 1, timeout: float = 15.0) -> list[ev.CallEvent]:
        """Wait until ``count`` calls have an ended event; return those ended events."""

        def ended() -> list[ev.CallEvent]:
            return [e for e in self.events if e.WhichOneof("kind") == "ended"]

        await self.wait_for(lambda: len(ended()) >= count, timeout, f"{count} ended calls")
        return ended()

    def summary(self) -> str:
        return "; ".join(
            f"{e.call_id[:8]}#{e.sequence} {e.WhichOneof('kind')}"
            + (
                f"({ev.Disposition.Name(e.ended.disposition)} {e.ended.sip_status})"
                if e.WhichOneof("kind") == "ended"
                else ""
            )
            for e in self.events
        )


GatewayFactory = Callable[..., Awaitable[RunningGateway]]


@pytest.fixture
async def gateway_factory() -> AsyncIterator[GatewayFactory]:
    """``await gateway_factory(extensions={...}, lines={...}, max_calls=1, ...)``: a gateway on free ports.

    Extra keyword arguments are GatewaySettings fields. Every gateway is stopped at the end of the test.
    """
    started: list[RunningGateway] = []

    async def make(
        extensions: Mapping[str, Any] | None = None,
        lines: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> RunningGateway:
        routes = RoutingTable.from_mapping({"extensions": extensions or {}, "lines": lines or {}})
        defaults: dict[str, Any] = {
            "sip_port": free_port(),
            "instance_id": "test",
            "rtp_host": "127.0.0.1",
            "shutdown_grace": 5.0,
        }
        settings = GatewaySettings(**{**defaults, **overrides})
        events: list[ev.CallEvent] = []

        async def publish(event: ev.CallEvent) -> None:
            events.append(event)

        running = RunningGateway(GatewayService(settings, routes, publish), events)
        await running.service.start()
        started.append(running)
        return running

    yield make
    for running in started:
        await running.service.stop(timeout=3.0)
