"""Fixtures of the shared library's tests: real nats-server (the session one, or a private one that a
test may stop), a bus connection, a tracer provider whose spans the tests can read, and polling helpers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.bus import Bus
from telecrm_devstack.processes import NatsServer

Poll = Callable[..., Awaitable[None]]


async def _eventually(
    condition: Callable[[], bool | Awaitable[bool]], *, timeout: float = 5.0, what: str = "condition"
) -> None:
    """Poll ``condition`` (sync or async) every 20 ms until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.02)


def _call_event(event_id: str | None = None, call_id: str = "call-1") -> ev.CallEvent:
    """A valid CallEvent (kind: offered)."""
    return ev.CallEvent(
        event_id=event_id or uuid.uuid4().hex,
        call_id=call_id,
        sequence=1,
        offered=ev.CallOffered(request_uri="sip:101@pbx.example"),
    )


@pytest.fixture
def eventually() -> Poll:
    """``await eventually(lambda: ..., timeout=5, what="...")``: poll with a deadline, no fixed sleeps."""
    return _eventually


@pytest.fixture
def call_event() -> Callable[..., ev.CallEvent]:
    """``call_event(event_id=None, call_id="call-1")``: a valid CallEvent (kind: offered)."""
    return _call_event


@pytest.fixture
def unique() -> str:
    """A short unique token for stream, subject and consumer names (the nats-server is shared)."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    connected = await Bus.connect(nats_server.url, name="common-tests", timeout=5)
    yield connected
    await connected.close()


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test alone, which the test may stop and start again (same port and store)."""
    server = NatsServer(data_dir=tmp_path / "js", log_path=tmp_path / "nats.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    """Every span ended in this process, kept in memory (the tracer provider is global, set once)."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter
