"""Benchmark: screen-pop latency, a ringing call on the bus to the card on the agent's WebSocket.

Real parts: nats-server, crm and calls (fresh databases), and the web service, each its own process.
The benchmark logs ``--agents`` agents in through the log-in form and opens one live WebSocket per
agent (as the desktop page does), then plays the gateway: at ``--rate`` new calls a second it
publishes each call's ``offered`` then ``ringing`` event (``tel.call.*``, the same protobuf the gateway
publishes) for the next agent's extension, half of them from numbers crm knows. It reports, per call:

- **card**: from publishing ``ringing`` to the first ``card`` message for that call on the agent's
  WebSocket (the card with the number, before crm's look-up answers): p50 / p95 / p99 / max;
- **completed card**: to the card completed with crm's look-up (contact, missed calls);
- calls whose card never came (lost).

What is not in it: the gateway's own INVITE -> ``ringing`` time (the phone's 180 after the caller-name
wait), which the ``ring`` benchmark measures; INVITE -> card is the sum of the two. The page's
rendering (a few DOM nodes) is not timed either.

    python -m tests.bench.screen_pop [--rate 20] [--seconds 20] [--agents 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.bus import Bus
from telecrm_common.events import STREAMS, call_event_subject
from telecrm_devstack.databases import create_database, drop_database
from telecrm_devstack.processes import ManagedProcess, NatsServer, free_port, wait_http_ok
from telecrm_devstack.testing import TEST_AUTH_SECRET
from tests.bench.report import Row

ADMIN_PASSWORD = "bench-admin-password"
AGENT_PASSWORD = "bench-agent-password"
EXTENSION_BASE = 500
TARGET_P99_MS = 100.0


@dataclass
class Timings:
    """Per call: when ``ringing`` was published, when its first card and its completed card came."""

    published: dict[str, float] = field(default_factory=dict)
    card: dict[str, float] = field(default_factory=dict)
    completed: dict[str, float] = field(default_factory=dict)
    expected: int = 0
    all_completed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Stack:
    nats: NatsServer
    processes: list[ManagedProcess]
    databases: list[str]
    crm_url: str
    web_url: str

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.nats.stop()
        for url in self.databases:
            with contextlib.suppress(Exception):
                drop_database(url)


def _start(root: Path, say: Callable[[str], None]) -> Stack:
    nats = NatsServer(data_dir=root / "nats", log_path=root / "nats.log").start()
    common = {"TELECRM_AUTH_SECRET": TEST_AUTH_SECRET}
    calls_http, calls_grpc, crm_http, crm_grpc, web_http = (free_port() for _ in range(5))
    databases = [create_database("bench-pop-calls", root), create_database("bench-pop-crm", root)]
    processes: list[ManagedProcess] = []
    stack = Stack(nats, processes, databases, f"http://127.0.0.1:{crm_http}", f"http://127.0.0.1:{web_http}")
    try:
        say("screen pop: starting calls, crm and web...")
        processes.append(
            ManagedProcess(
                "calls",
                [sys.executable, "-m", "telecrm_calls"],
                env={
                    **common,
                    "CALLS_NATS_URL": nats.url,
                    "CALLS_DATABASE_URL": databases[0],
                    "CALLS_HTTP_PORT": str(calls_http),
                    "CALLS_GRPC_PORT": str(calls_grpc),
                    "CALLS_LOG_LEVEL": "WARNING",
                },
                log_path=root / "calls.log",
            ).start()
        )
        processes.append(
            ManagedProcess(
                "crm",
                [sys.executable, "-m", "telecrm_crm"],
                env={
                    **common,
                    "CRM_NATS_URL": nats.url,
                    "CRM_DATABASE_URL": databases[1],
                    "CRM_HTTP_PORT": str(crm_http),
                    "CRM_GRPC_PORT": str(crm_grpc),
                    "CRM_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
                    "CRM_ATTACHMENTS_DIR": str(root / "attachments"),
                    "CRM_CALLS_GRPC_TARGET": f"127.0.0.1:{calls_grpc}",
                    "CRM_LOG_LEVEL": "WARNING",
                },
                log_path=root / "crm.log",
            ).start()
        )
        processes.append(
            ManagedProcess(
                "web",
                [sys.executable, "-m", "telecrm_web"],
                env={
                    **common,
                    "WEB_NATS_URL": nats.url,
                    "WEB_CRM_URL": stack.crm_url,
                    "WEB_CALLS_URL": f"http://127.0.0.1:{calls_http}",
                    "WEB_CRM_GRPC_TARGET": f"127.0.0.1:{crm_grpc}",
                    "WEB_HTTP_PORT": str(web_http),
                    "WEB_GRPC_PORT": str(free_port()),
                    "WEB_COOKIE_SECURE": "false",
                    "WEB_LOG_LEVEL": "WARNING",
                },
                log_path=root / "web.log",
            ).start()
        )
        wait_http_ok(f"http://127.0.0.1:{calls_http}/readyz", 120, processes[0])
        wait_http_ok(f"{stack.crm_url}/readyz", 120, processes[1])
        wait_http_ok(f"{stack.web_url}/readyz", 120, processes[2])
    except BaseException:
        stack.stop()
        raise
    return stack


def _seed(crm_url: str, agents: int) -> list[str]:
    """Employees, users and contacts; the known callers' numbers."""
    login = httpx.post(
        f"{crm_url}/auth/login", json={"login": "admin", "password": ADMIN_PASSWORD}, timeout=30
    )
    token = login.raise_for_status().json()["access_token"]
    known = []
    with httpx.Client(base_url=crm_url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as crm:
        crm.post("/teams", json={"id": "bench-team", "name": "Bench team"})
        for i in range(agents):
            employee = f"bench-emp-{i}"
            crm.post(
                "/employees",
                json={
                    "id": employee,
                    "name": f"Agent {i}",
                    "extension": str(EXTENSION_BASE + i),
                    "team_id": "bench-team",
                },
            ).raise_for_status()
            crm.post(
                "/users",
                json={
                    "login": f"agent{i}",
                    "password": AGENT_PASSWORD,
                    "roles": ["agent"],
                    "employee_id": employee,
                },
            ).raise_for_status()
        for i in range(50):
            number = f"+1444{secrets.randbelow(10**7):07d}"
            crm.post(
                "/contacts",
                json={"kind": "person", "name": f"Customer {i}", "phones": [{"number": number}]},
                params={"allow_duplicate": "true"},
            ).raise_for_status()
            known.append(number)
    return known


async def _log_in(web_url: str, login: str) -> str:
    """The session cookie of ``login``, got through the log-in form as a browser would."""
    async with httpx.AsyncClient(base_url=web_url, timeout=30, follow_redirects=False) as client:
        await client.get("/login")
        response = await client.post(
            "/login",
            data={
                "login": login,
                "password": AGENT_PASSWORD,
                "csrf_token": client.cookies.get("telecrm_login_csrf") or "",
                "next": "/desktop",
            },
            headers={"Origin": web_url},
        )
        if response.status_code != 303:
            raise RuntimeError(f"log-in of {login} failed: {response.status_code} {response.text[:200]}")
        return str(client.cookies.get("telecrm_session"))


async def _listen(socket: ClientConnection, timings: Timings) -> None:
    async for raw in socket:
        at = time.perf_counter()
        message = json.loads(raw)
        if message.get("type") != "card":
            continue
        card = message["card"]
        call_id = card["call_id"]
        timings.card.setdefault(call_id, at)
        if card.get("lookup_state") in ("done", "failed"):
            timings.completed.setdefault(call_id, at)
            if len(timings.completed) >= timings.expected:
                timings.all_completed.set()


def _event(kind: str, call_id: str, caller: str, agent: int, sequence: int) -> ev.CallEvent:
    extension = str(EXTENSION_BASE + agent)
    event = ev.CallEvent(
        event_id=f"{call_id}-{sequence}",
        call_id=call_id,
        sequence=sequence,
        direction=ev.DIRECTION_INBOUND,
        caller=ev.Party(number=caller, e164=caller),
        callee=ev.Party(number=extension, extension=extension),
        extension=extension,
        employee_id=f"bench-emp-{agent}",
        source="bench-screen-pop",
    )
    event.occurred_at.FromDatetime(datetime.now(UTC))
    if kind == "offered":
        event.offered.CopyFrom(ev.CallOffered())
    else:
        event.ringing.CopyFrom(ev.CallRinging(leg_id=f"{call_id}-leg"))
    return event


async def _measure(stack: Stack, known: list[str], rate: float, seconds: float, agents: int) -> Timings:
    timings = Timings()
    cookies = await asyncio.gather(*(_log_in(stack.web_url, f"agent{i}") for i in range(agents)))
    ws_url = stack.web_url.replace("http://", "ws://") + "/api/live"
    sockets = [
        await connect(
            ws_url,
            additional_headers={"Cookie": f"telecrm_session={cookie}"},
            origin=stack.web_url,
            max_size=2**20,
        )
        for cookie in cookies
    ]
    listeners = [asyncio.create_task(_listen(socket, timings)) for socket in sockets]
    bus = await Bus.connect(stack.nats.url, name="bench-screen-pop", timeout=10)
    try:
        await bus.ensure_streams(STREAMS)
        await asyncio.sleep(1.0)  # every socket has had its hello
        total = timings.expected = int(rate * seconds)
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            call_id = f"bench-{uuid.uuid4().hex[:12]}"
            caller = known[i % len(known)] if i % 2 == 0 else f"+1666{secrets.randbelow(10**7):07d}"
            agent = i % agents
            offered = _event("offered", call_id, caller, agent, 1)
            await bus.publish(call_event_subject(offered), offered, msg_id=offered.event_id)
            ringing = _event("ringing", call_id, caller, agent, 2)
            timings.published[call_id] = time.perf_counter()
            await bus.publish(call_event_subject(ringing), ringing, msg_id=ringing.event_id)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(timings.all_completed.wait(), timeout=10)
    finally:
        for task in listeners:
            task.cancel()
        for socket in sockets:
            with contextlib.suppress(Exception):
                await socket.close()
        await bus.close()
    return timings


def _percentiles(samples: list[float]) -> tuple[float, float, float, float]:
    if len(samples) < 2:
        value = samples[0] if samples else float("nan")
        return value, value, value, value
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return statistics.median(samples), cuts[94], cuts[98], max(samples)


def _rows(timings: Timings, rate: float, agents: int) -> list[Row]:
    card = [(timings.card[c] - t) * 1000 for c, t in timings.published.items() if c in timings.card]
    completed = [
        (timings.completed[c] - t) * 1000 for c, t in timings.published.items() if c in timings.completed
    ]
    lost = len(timings.published) - len(card)
    p50, p95, p99, top = _percentiles(card)
    c50, c95, c99, ctop = _percentiles(completed)
    verdict = "meets" if p99 < TARGET_P99_MS and not lost else "MISSES"
    return [
        Row(
            f"screen pop: ringing -> card on the agent's WebSocket, {rate:g} calls/s",
            f"p99 {p99:.1f} ms",
            f"p50 {p50:.1f}, p95 {p95:.1f}, max {top:.1f} ms; {len(card)} calls to {agents} agents, "
            f"{lost} lost; {verdict} the p99 < {TARGET_P99_MS:.0f} ms target",
        ),
        Row(
            f"screen pop: ringing -> card completed by crm's look-up, {rate:g} calls/s",
            f"p99 {c99:.1f} ms",
            f"p50 {c50:.1f}, p95 {c95:.1f}, max {ctop:.1f} ms; half the numbers known to crm",
        ),
    ]


def run(
    rate: float = 20.0, seconds: float = 20.0, agents: int = 20, say: Callable[[str], None] = print
) -> list[Row]:
    if rate <= 0 or seconds <= 0 or agents < 1:
        raise ValueError("rate and seconds must be positive and there must be at least one agent")
    with tempfile.TemporaryDirectory(prefix="bench-screen-pop-") as tmp:
        stack = _start(Path(tmp), say)
        try:
            known = _seed(stack.crm_url, agents)
            say(f"screen pop: {rate:g} calls/s for {seconds:g} s to {agents} agents...")
            timings = asyncio.run(_measure(stack, known, rate, seconds, agents))
        finally:
            stack.stop()
    return _rows(timings, rate, agents)


if __name__ == "__main__":
    from tests.bench.report import table

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=20.0, help="new calls a second")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long calls keep coming")
    parser.add_argument("--agents", type=int, default=20, help="agents logged in, one WebSocket each")
    args = parser.parse_args()
    rows = run(args.rate, args.seconds, args.agents)
    print(table(rows, "python -m tests.bench.screen_pop " + " ".join(sys.argv[1:])))
