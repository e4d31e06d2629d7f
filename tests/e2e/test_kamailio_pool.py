"""End to end: a real Kamailio in front of a real pool of pjsua2 gateway workers.

sipp (caller) -> Kamailio (dispatcher) -> pool worker (pjsua2) -> sipp (agent phone). The supervisor,
Kamailio and each worker are real processes on free loopback ports; the call events come over a real
nats-server. The tests assert what callers and the call log would notice: where calls go, who gets a
503, what a caller hears when its worker is killed, and the ``ended`` events nobody else would publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import nats
import pytest

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from telecrm_common.auth import AuthSettings, Role, TokenIssuer
from telecrm_devstack.processes import NatsServer
from telecrm_devstack.testing import TEST_AUTH_SECRET, make_principal
from telecrm_gateway.pool_kamailio import kamailio_binary
from telecrm_gateway.pool_testing import PoolProcess
from tests.sipp.runner import Sipp, arun_uac, environment_ok, free_port, header, start_uas

pytestmark = [pytest.mark.e2e, pytest.mark.sip]

ROUTES = """
[extensions."101"]
contact = "sip:101@127.0.0.1:{answer}"
name = "Alice"
employee_id = "emp-101"

[extensions."102"]
contact = "sip:102@127.0.0.1:{ring}"
name = "Bob"
employee_id = "emp-102"
ring_timeout = 60
"""


@dataclass
class Phones:
    answer: Sipp  # extension 101: answers at once, waits for BYE
    ring: Sipp  # extension 102: rings until cancelled
    routes: Path


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[Phones]:
    ok, why = environment_ok()
    if not ok:
        pytest.fail(f"these tests need sipp: {why} (make test-deps installs Debian's sip-tester)")
    if kamailio_binary() is None:
        pytest.fail("these tests need kamailio (make test-deps installs Debian's kamailio)")
    # Rings 100 ms: a 180 and a 200 back to back may leave Kamailio in either order (several processes),
    # which a real phone ignores but sipp counts as a failed call.
    answer = start_uas("uas_answer.xml", duration_ms=100, calls=1000)
    ring = start_uas("uas_ring_forever.xml", calls=1000)
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES.format(answer=answer.port, ring=ring.port))
    yield Phones(answer, ring, routes)
    answer.stop()
    ring.stop()


@pytest.fixture
def start_pool(
    tmp_path: Path, nats_server: NatsServer, phones: Phones
) -> Iterator[Callable[..., PoolProcess]]:
    started: list[PoolProcess] = []

    def start(size: int = 2, **options: Any) -> PoolProcess:
        pool = PoolProcess(
            tmp_path, nats_url=nats_server.url, routes_file=phones.routes, size=size, **options
        )
        started.append(pool.start())
        pool.wait_ready()
        return pool

    yield start
    for pool in started:
        pool.stop()


@dataclass
class Events:
    """The call events of one pool's workers (other tests' events on the shared NATS are ignored)."""

    prefix: str
    items: list[ev.CallEvent] = field(default_factory=list)

    def of(self, call_id: str) -> list[ev.CallEvent]:
        return sorted((e for e in self.items if e.call_id == call_id), key=lambda e: e.sequence)

    def kinds(self, call_id: str) -> list[str]:
        return [str(e.WhichOneof("kind")) for e in self.of(call_id)]

    def first(self, kind: str, **where: str) -> ev.CallEvent | None:
        for event in self.items:
            if event.WhichOneof("kind") == kind and all(getattr(event, k) == v for k, v in where.items()):
                return event
        return None

    async def wait(self, kind: str, timeout: float = 15.0, **where: str) -> ev.CallEvent:
        deadline = time.monotonic() + timeout
        while (event := self.first(kind, **where)) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {kind} event with {where}; seen: {self.summary()}")
            await asyncio.sleep(0.05)
        return event

    def summary(self) -> str:
        return "; ".join(
            f"{e.call_id[:8]}#{e.sequence} {e.WhichOneof('kind')} {e.source}" for e in self.items
        )


@contextlib.asynccontextmanager
async def pool_events(nats_url: str, pool: PoolProcess) -> AsyncIterator[Events]:
    events = Events(prefix=f"sip-gateway/{pool.instance_id}-")
    nc = await nats.connect(nats_url)

    async def on_message(msg: Any) -> None:
        event = ev.CallEvent.FromString(msg.data)
        if event.source.startswith(events.prefix):
            events.items.append(event)

    await nc.subscribe("tel.call.>", cb=on_message)
    try:
        yield events
    finally:
        await nc.close()


def caller(pool: PoolProcess, scenario: str, service: str, **options: Any) -> Sipp:
    return Sipp(scenario, remote=f"127.0.0.1:{pool.sip_port}", service=service, **options).start()


async def wait_until(
    what: str, check: Callable[[], bool], timeout: float = 15.0, pool: PoolProcess | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            seen = f"; pool: {pool.status()}; Kamailio: {pool.targets()}" if pool is not None else ""
            raise AssertionError(f"timed out waiting until {what}{seen}")
        await asyncio.sleep(0.1)


def live_calls(pool: PoolProcess) -> list[int]:
    return [int(w["live_calls"]) for w in pool.status()["workers"]]


async def test_calls_spread_over_the_workers_and_a_full_pool_answers_503(
    start_pool: Callable[..., PoolProcess], phones: Phones
) -> None:
    pool = start_pool(size=2)
    first = caller(pool, "uac_answered.xml", "101", duration_ms=4000)
    second = caller(pool, "uac_answered.xml", "101", duration_ms=4000)
    # One call on each worker: Kamailio sends a new call to the worker with the fewest.
    await wait_until("each worker holds one call", lambda: live_calls(pool) == [1, 1])
    assert [t.load for t in pool.targets()] == [1, 1]

    # Every worker is full: the caller gets Kamailio's own 503 with a Retry-After, at once.
    refused = await arun_uac(
        "uac_expect_status.xml", "127.0.0.1", pool.sip_port, service="101", keys={"expected_status": "503"}
    )
    assert refused.ok, refused.explain()
    response = refused.response(503)
    assert response is not None
    assert "All Gateway Workers Busy" in response.splitlines()[0]
    assert header(response, "Retry-After") == "5"

    for call in (first, second):
        result = await call.wait_async(30)
        assert result.ok, result.explain()
    # The load went with the calls: the pool takes calls again.
    await wait_until("the loads are back to 0", lambda: [t.load for t in pool.targets()] == [0, 0])
    again = await arun_uac("uac_answered.xml", "127.0.0.1", pool.sip_port, service="101", duration_ms=200)
    assert again.ok, again.explain()
    # Each worker rang the phone with a Call-ID of its own (pjlib's random numbers are not shared).
    invites = [m for m in phones.answer.stop().received() if m.startswith("INVITE ")]
    call_ids = [header(m, "Call-ID") for m in invites]
    assert len(set(call_ids)) == len(call_ids) == 3, call_ids


async def test_a_worker_answering_503_makes_kamailio_try_the_next_one(
    start_pool: Callable[..., PoolProcess],
) -> None:
    pool = start_pool(size=2)
    # Kamailio picks the first of equally loaded workers: fill that one behind Kamailio's back.
    first_uri = pool.targets()[0].uri
    busy = int(first_uri.rsplit(":", 1)[1]) - pool.worker_sip_port
    direct = Sipp(
        "uac_answered.xml", remote=f"127.0.0.1:{pool.worker_sip(busy)}", service="101", duration_ms=4000
    ).start()
    await wait_until("the worker holds the direct call", lambda: live_calls(pool)[busy] == 1)

    # Its 503 + Retry-After never reaches the caller: Kamailio sends the INVITE to the other worker.
    result = await arun_uac("uac_answered.xml", "127.0.0.1", pool.sip_port, service="101", duration_ms=300)
    assert result.ok, result.explain()
    assert 503 not in result.statuses()
    log = (pool.log_dir / f"{pool.instance_id}-w{busy}.log").read_text()
    assert "gateway full (503)" in log
    other = (pool.log_dir / f"{pool.instance_id}-w{1 - busy}.log").read_text()
    assert "answered by 101" in other
    assert (await direct.wait_async(30)).ok


async def test_a_killed_worker_ends_its_calls_is_replaced_and_kamailio_fails_over(
    start_pool: Callable[..., PoolProcess], nats_server: NatsServer
) -> None:
    pool = start_pool(size=3)
    async with pool_events(nats_server.url, pool) as events:
        talking = caller(pool, "uac_answered_callee_bye.xml", "101", recv_timeout_ms=60_000)
        answered = await events.wait("answered")
        ringing_caller = caller(
            pool, "uac_expect_status.xml", "102", keys={"expected_status": "500"}, recv_timeout_ms=60_000
        )
        ringing = await events.wait("ringing", extension="102")
        victims = {answered.source, ringing.source}
        assert len(victims) == 2  # one call per worker
        indexes = [int(source.rsplit("-w", 1)[1]) for source in sorted(victims)]
        pids = {i: pool.kill_worker(i) for i in indexes}
        killed_at = time.monotonic()

        # Meanwhile Kamailio sends new calls to the worker left.
        meanwhile = await arun_uac(
            "uac_answered.xml", "127.0.0.1", pool.sip_port, service="101", duration_ms=300, timeout=30
        )
        assert meanwhile.ok, meanwhile.explain()

        # The caller of the answered call gets a BYE, the one still ringing a 500: nobody waits.
        bye = await talking.wait_async(15)
        assert bye.ok, bye.explain()
        refused = await ringing_caller.wait_async(15)
        assert refused.ok, refused.explain()
        assert time.monotonic() - killed_at < 10
        assert "Gateway Worker Lost" in (refused.response(500) or "")

        # The call log learns how both ended, with the next sequence number of each call.
        lost_answered = await events.wait("ended", call_id=answered.call_id)
        assert events.kinds(answered.call_id) == ["offered", "ringing", "answered", "ended"]
        assert lost_answered.sequence == answered.sequence + 1
        assert lost_answered.ended.disposition == ev.DISPOSITION_ANSWERED
        assert lost_answered.ended.hangup_by == ev.HANGUP_BY_SYSTEM
        assert lost_answered.ended.sip_reason == "Gateway Worker Lost"
        assert lost_answered.ended.answered_at.seconds > 0
        assert lost_answered.source == answered.source
        lost_ringing = await events.wait("ended", call_id=ringing.call_id)
        assert lost_ringing.ended.disposition == ev.DISPOSITION_FAILED
        assert lost_ringing.ended.sip_status == 500
        assert lost_ringing.ended.hangup_by == ev.HANGUP_BY_SYSTEM
        assert not lost_ringing.ended.HasField("answered_at")

        # Both are replaced on the same ports and take calls again: three at once need all three.
        def replaced() -> bool:
            workers = pool.status()["workers"]
            return all(workers[i]["state"] == "ready" and workers[i]["pid"] != pids[i] for i in indexes)

        await wait_until("the killed workers are replaced", replaced, timeout=30)
        await wait_until(
            "Kamailio lists all workers active", lambda: sum(t.active for t in pool.targets()) == 3
        )
        assert [w["restarts"] for w in pool.status()["workers"] if w["last_exit"] == -signal.SIGKILL] == [
            1,
            1,
        ]
        calls = [caller(pool, "uac_answered.xml", "101", duration_ms=3000) for _ in range(3)]
        try:
            await wait_until("each worker holds one call", lambda: live_calls(pool) == [1, 1, 1], pool=pool)
        except AssertionError:
            for call in calls:
                print((await call.wait_async(30)).explain())
            raise
        for call in calls:
            result = await call.wait_async(30)
            assert result.ok, result.explain()
        assert pool.status()["lost_calls"] == 2


async def test_a_hung_worker_is_skipped_and_taken_back_once_it_answers_again(
    start_pool: Callable[..., PoolProcess],
) -> None:
    pool = start_pool(size=2)
    # Kamailio picks the first of equally loaded workers: that one stops answering anything (SIGSTOP).
    first_uri = pool.targets()[0].uri
    hung = int(first_uri.rsplit(":", 1)[1]) - pool.worker_sip_port
    os.kill(int(pool.worker(hung)["pid"]), signal.SIGSTOP)
    try:
        # No 100 Trying within REPLY_TIMEOUT_MS (2 s): the INVITE goes to the other worker, the caller
        # never hears of it, and the silent one is marked inactive for the calls after.
        started = time.monotonic()
        result = await arun_uac(
            "uac_answered.xml", "127.0.0.1", pool.sip_port, service="101", duration_ms=200
        )
        assert result.ok, result.explain()
        assert time.monotonic() - started < 10
        other = (pool.log_dir / f"{pool.instance_id}-w{1 - hung}.log").read_text()
        assert "answered by 101" in other
        assert {t.uri: t.active for t in pool.targets()}[first_uri] is False
        second = await arun_uac(
            "uac_answered.xml", "127.0.0.1", pool.sip_port, service="101", duration_ms=200
        )
        assert second.ok, second.explain()
    finally:
        os.kill(int(pool.worker(hung)["pid"]), signal.SIGCONT)
    # Answering its OPTIONS pings again puts it back; it was never replaced (it did not die).
    await wait_until(
        "Kamailio takes the worker back",
        lambda: {t.uri: t.active for t in pool.targets()}[first_uri],
        timeout=20,
        pool=pool,
    )
    assert pool.worker(hung)["restarts"] == 0


def test_workers_start_a_few_at_a_time(start_pool: Callable[..., PoolProcess]) -> None:
    # A hundred workers starting at once on two cores would each take longer than the ready timeout,
    # be killed and started again, forever; the pool starts GATEWAY_POOL_START_CONCURRENCY at once.
    pool = start_pool(size=3, env={"GATEWAY_POOL_START_CONCURRENCY": "1"})
    lines = (pool.log_dir / "pool.log").read_text().splitlines()
    steps = [
        ("start" if " starting (pid" in line else "ready", line.split("worker ", 1)[1].split()[0])
        for line in lines
        if "telecrm_gateway.pool" in line and (" starting (pid" in line or " ready (pid" in line)
    ]
    # Each worker is ready before the next one starts: start a, ready a, start b, ready b...
    started = [name for kind, name in steps[0::2] if kind == "start"]
    assert sorted(started) == [f"{pool.instance_id}-w{i}" for i in range(3)], steps
    assert steps == [step for name in started for step in (("start", name), ("ready", name))], steps
    assert all(w["restarts"] == 0 for w in pool.status()["workers"])


async def test_sigterm_drains_the_workers_and_stops_everything(
    start_pool: Callable[..., PoolProcess], nats_server: NatsServer
) -> None:
    pool = start_pool(size=2)
    async with pool_events(nats_server.url, pool) as events:
        talking = caller(pool, "uac_answered_callee_bye.xml", "101", recv_timeout_ms=60_000)
        answered = await events.wait("answered")
        workers, kamailio = pool.worker_pids(), pool.kamailio_pids()
        assert kamailio

        assert pool.stop() == 0
        # The worker hung up its call (BYE to the caller) and published how it ended.
        result = await talking.wait_async(10)
        assert result.ok, result.explain()
        ended = await events.wait("ended", call_id=answered.call_id)
        assert ended.ended.disposition == ev.DISPOSITION_ANSWERED
        assert ended.ended.hangup_by == ev.HANGUP_BY_SYSTEM
    for pid in workers + kamailio:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# --- what the edge does with scans and broken SIP ---------------------------------------------------


def sip_request(method: str, uri: str, local_port: int, *, headers: str = "", user_agent: str = "") -> bytes:
    """A well-formed SIP request over UDP from 127.0.0.1:``local_port``."""
    tag = uuid.uuid4().hex[:8]
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport",
        "Max-Forwards: 70",
        f"From: <sip:+15557654321@127.0.0.1:{local_port}>;tag={tag}",
        f"To: <{uri}>",
        f"Call-ID: probe-{uuid.uuid4().hex}",
        f"CSeq: 1 {method}",
        f"Contact: <sip:+15557654321@127.0.0.1:{local_port}>",
        *([f"User-Agent: {user_agent}"] if user_agent else []),
        *headers.splitlines(),
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def udp_exchange(port: int, payload: bytes | Callable[[int], bytes], wait: float = 1.0) -> list[str]:
    """Send one datagram to the edge; the start lines of what comes back within ``wait`` seconds."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        data = payload(sock.getsockname()[1]) if callable(payload) else payload
        sock.sendto(data, ("127.0.0.1", port))
        sock.settimeout(wait)
        answers = []
        with contextlib.suppress(TimeoutError):
            while True:
                answers.append(sock.recv(65535).decode("utf-8", "replace").split("\r\n", 1)[0])
        return answers


def tcp_garbage(port: int, data: bytes) -> None:
    """Open a SIP TCP connection to the edge, write ``data``, close it."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        sock.settimeout(0.5)
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            sock.recv(65535)


async def test_malformed_and_stray_sip_at_the_edge_is_no_call_and_breaks_nothing(
    start_pool: Callable[..., PoolProcess], nats_server: NatsServer
) -> None:
    pool = start_pool(size=2)
    port = pool.sip_port
    workers, kamailio = pool.worker_pids(), pool.kamailio_pids()
    async with pool_events(nats_server.url, pool) as events:
        # Garbage, an empty datagram, a keep-alive, a datagram as big as UDP takes: no answer, no crash.
        for junk in (b"\x00\xff\xfe" * 300, b"", b"\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n", b"A" * 65000):
            assert udp_exchange(port, junk, wait=0.3) == []
        tcp_garbage(port, b"INVITE-ISH \x00\x01 garbage\r\n\r\n" * 50)
        tcp_garbage(port, b"INVITE sip:101@127.0.0.1 SIP/2.0\r\nContent-Length: 99999\r\n\r\nv=0")

        # Well-formed requests that are not calls are answered by the edge itself.
        edge = f"sip:127.0.0.1:{port}"
        assert udp_exchange(port, lambda p: sip_request("OPTIONS", edge, p)) == ["SIP/2.0 200 OK"]
        assert udp_exchange(port, lambda p: sip_request("INVITE", edge, p)) == [
            "SIP/2.0 484 Address Incomplete"
        ]
        register = udp_exchange(port, lambda p: sip_request("REGISTER", edge, p))
        assert register == ["SIP/2.0 405 Method Not Allowed"]
        stray_bye = udp_exchange(
            port,
            lambda p: sip_request("BYE", f"sip:101@127.0.0.1:{port}", p).replace(
                b">\r\nCall", b">;tag=x\r\nCall", 1
            ),
        )
        assert stray_bye == ["SIP/2.0 404 Not here"]
        looping = udp_exchange(
            port,
            lambda p: sip_request("INVITE", f"sip:101@127.0.0.1:{port}", p).replace(
                b"Max-Forwards: 70", b"Max-Forwards: 0"
            ),
        )
        assert looping == ["SIP/2.0 483 Too Many Hops"]

        # sipp's broken INVITEs (bad start line, missing headers, a From that does not parse, a short
        # body, an SDP that does not parse): whatever comes back, the edge and its workers stay up.
        broken = await arun_uac("uac_malformed.xml", "127.0.0.1", port, service="101", timeout=30)
        assert broken.returncode in (0, 1), broken.explain()

        await asyncio.sleep(1.0)  # any event would be on its way by now
        assert events.items == [], f"broken SIP was logged as calls: {events.summary()}"
        assert pool.worker_pids() == workers
        assert pool.kamailio_pids() == kamailio
        assert [w["restarts"] for w in pool.status()["workers"]] == [0, 0]

        # The edge still takes calls: this one is the only call the workers ever saw.
        good = await arun_uac("uac_answered.xml", "127.0.0.1", port, service="101", duration_ms=200)
        assert good.ok, good.explain()
        ended = await events.wait("ended")
        assert events.kinds(ended.call_id) == ["offered", "ringing", "answered", "ended"]
        assert {e.call_id for e in events.items} == {ended.call_id}


def sipvicious(tool: str, *args: str) -> str:
    """Run one of sipvicious' tools (Debian package sipvicious) to completion; what it printed."""
    if shutil.which(tool) is None:
        pytest.fail(f"this test needs {tool} (Debian package sipvicious: apt-get install sipvicious)")
    done = subprocess.run(
        [tool, "-P", str(free_port(tcp=False)), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


async def test_a_sip_scanner_finds_nothing_and_rings_nobody(
    start_pool: Callable[..., PoolProcess], nats_server: NatsServer, phones: Phones
) -> None:
    pool = start_pool(size=2)
    port = pool.sip_port
    async with pool_events(nats_server.url, pool) as events:
        # svmap looks for SIP servers (OPTIONS, then INVITE); svwar enumerates extensions (REGISTER, then
        # INVITE, which would ring a phone behind a naive proxy). The edge answers none of them.
        scans = [
            await asyncio.to_thread(sipvicious, "svmap", "-p", str(port), "127.0.0.1"),
            await asyncio.to_thread(
                sipvicious, "svmap", "-p", str(port), "-m", "INVITE", "-e", "101", "127.0.0.1"
            ),
            await asyncio.to_thread(sipvicious, "svwar", "-e100-103", f"udp://127.0.0.1:{port}"),
            await asyncio.to_thread(
                sipvicious, "svwar", "-e100-103", "-m", "INVITE", f"udp://127.0.0.1:{port}"
            ),
        ]
        for output in scans:
            assert "found nothing" in output, output
        await asyncio.sleep(1.0)
        assert events.items == [], f"a scan was logged as calls: {events.summary()}"
        assert [int(w["live_calls"]) for w in pool.status()["workers"]] == [0, 0]
    # No phone rang.
    assert not [m for m in phones.answer.stop().received() if m.startswith("INVITE ")]
    scan_log = (pool.log_dir / "kamailio.log").read_text()
    assert "SIP scan (friendly-scanner) INVITE" in scan_log


async def test_the_pool_front_door_sends_dial_and_call_control_to_the_worker_holding_the_call(
    start_pool: Callable[..., PoolProcess], nats_server: NatsServer
) -> None:
    """Clients know one REST and one gRPC address (the supervisor's), not the workers: a click-to-call
    is placed by a worker with room, and the buttons of that call reach that worker, over either API."""
    pool = start_pool(size=2, env={"TELECRM_AUTH_SECRET": TEST_AUTH_SECRET})
    agent = make_principal("u-alice", Role.AGENT, employee_id="emp-101")
    token, _ = TokenIssuer(AuthSettings(secret=TEST_AUTH_SECRET)).issue(agent)
    front = f"http://127.0.0.1:{pool.http_port}"
    async with (
        pool_events(nats_server.url, pool) as events,
        httpx.AsyncClient(base_url=front, headers={"Authorization": f"Bearer {token}"}, timeout=15) as rest,
        grpc.aio.insecure_channel(f"127.0.0.1:{pool.grpc_port}") as channel,
    ):
        stub = gateway_pb2_grpc.CallControlStub(channel)
        body = {"extension": "101", "number": "102", "idempotency_key": "click-1"}
        placed = await rest.post("/calls/dial", json=body)
        assert placed.status_code == 201, placed.text
        call_id = placed.json()["call_id"]
        # A second click with the same key reaches the same worker: one call, not two.
        again = await rest.post("/calls/dial", json=body)
        assert again.status_code == 200, again.text
        assert again.json()["call_id"] == call_id
        ringing = await events.wait("ringing", call_id=call_id)  # Alice answered; Bob's phone rings
        active = await rest.get("/calls/active")
        assert active.status_code == 200, active.text
        assert [c["call_id"] for c in active.json()["items"]] == [call_id]

        # A second call (over gRPC) goes to the other worker, the one with room.
        second = await stub.Dial(gateway_pb2.DialRequest(extension="101", number="102", idempotency_key="k2"))
        second_ringing = await events.wait("ringing", call_id=second.call_id)
        assert second_ringing.source != ringing.source
        await wait_until("each worker holds one call", lambda: sorted(live_calls(pool)) == [1, 1], pool=pool)

        # Each call's buttons reach its own worker: REST for the first, gRPC for the second.
        hung = await rest.post(f"/calls/{call_id}/hangup")
        assert hung.status_code == 202, hung.text
        await stub.Hangup(gateway_pb2.HangupRequest(call_id=second.call_id))
        for ended_call in (call_id, second.call_id):
            ended = await events.wait("ended", call_id=ended_call)
            assert ended.source == events.first("offered", call_id=ended_call).source  # type: ignore[union-attr]

        # A call nobody holds: the same answers as a single gateway's.
        gone = await rest.post(f"/calls/{call_id}/hold")
        assert gone.status_code == 404
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.Hold(gateway_pb2.HoldRequest(call_id="no-such-call"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        unsigned = await rest.post("/calls/dial", json=body, headers={"Authorization": ""})
        assert unsigned.status_code == 401
