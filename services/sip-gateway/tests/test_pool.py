"""The pool supervisor's parts: its settings, the workers' environment, the dispatcher list, the live-call
tracking and the ``ended`` events of a dead worker's calls, and its JSON-RPC client against a real
Kamailio. The whole pool behind Kamailio is tested end to end in tests/e2e/test_kamailio_pool.py."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_gateway import pool
from telecrm_gateway.pool import PoolSettings, PoolSupervisor, destinations, worker_environment, worker_specs
from telecrm_gateway.pool_calls import LiveCalls, worker_lost_event
from telecrm_gateway.pool_kamailio import (
    DEPLOY_HINT,
    Destination,
    KamailioError,
    KamailioOptions,
    KamailioProcess,
    KamailioRpc,
    dispatcher_list,
    kamailio_binary,
    write_dispatcher_list,
)
from telecrm_gateway.pool_testing import DEPLOY_CONFIG, free_ports

T0 = datetime(2025, 5, 6, 10, 0, 0, tzinfo=UTC)


def settings(**overrides: object) -> PoolSettings:
    values: dict[str, object] = {
        "instance_id": "edge1",
        "pool_size": 3,
        "pool_sip_port": 6000,
        "pool_http_port": 7000,
        "pool_grpc_port": 8000,
        "nats_url": "nats://127.0.0.1:4999",
        **overrides,
    }
    return PoolSettings(**values)  # type: ignore[arg-type]


# --- settings and the workers' environment -----------------------------------------------------


def test_each_worker_gets_its_own_ports_name_and_rtp_block() -> None:
    s = settings(rtp_port=30000, max_calls=2, retry_after=7, shutdown_grace=20)
    envs = [worker_environment(s, spec) for spec in worker_specs(s)]
    assert [e["GATEWAY_INSTANCE_ID"] for e in envs] == ["edge1-w0", "edge1-w1", "edge1-w2"]
    assert [e["GATEWAY_SIP_PORT"] for e in envs] == ["6000", "6001", "6002"]
    assert [e["GATEWAY_HTTP_PORT"] for e in envs] == ["7000", "7001", "7002"]
    assert [e["GATEWAY_GRPC_PORT"] for e in envs] == ["8000", "8001", "8002"]
    assert [e["GATEWAY_RTP_PORT"] for e in envs] == ["30000", "30016", "30032"]
    assert {e["GATEWAY_RTP_PORT_RANGE"] for e in envs} == {"16"}
    # The gateway settings of the pool reach every worker; the pool's own do not.
    for env in envs:
        assert env["GATEWAY_SERVICE_NAME"] == "sip-gateway"
        assert env["GATEWAY_MAX_CALLS"] == "2"
        assert env["GATEWAY_RETRY_AFTER"] == "7"
        assert env["GATEWAY_NATS_URL"] == "nats://127.0.0.1:4999"
        assert env["GATEWAY_SHUTDOWN_GRACE"] == "17"  # drains within the pool's own grace
        assert not any(name.startswith(("GATEWAY_POOL_", "GATEWAY_KAMAILIO_")) for name in env)


def test_rtp_ports_are_left_to_the_os_when_no_first_port_is_set() -> None:
    env = worker_environment(settings(), worker_specs(settings())[1])
    assert env["GATEWAY_RTP_PORT"] == "0"


def test_a_pool_that_does_not_fit_in_the_port_range_is_refused() -> None:
    with pytest.raises(ValidationError, match="pool_sip_port \\+ pool_size goes past port 65535"):
        settings(pool_sip_port=65530, pool_size=10)
    with pytest.raises(ValidationError, match="rtp_port"):
        settings(rtp_port=65000, pool_size=100)
    with pytest.raises(ValidationError, match="pool_size"):
        settings(pool_size=0)


def test_workers_start_one_per_cpu_at_once_unless_told() -> None:
    assert settings().start_concurrency == (os.cpu_count() or 1)
    assert settings(pool_start_concurrency=3).start_concurrency == 3
    with pytest.raises(ValidationError, match="pool_start_concurrency"):
        settings(pool_start_concurrency=-1)


def test_invalid_settings_exit_2_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_POOL_SIZE", "many")
    assert pool.main(["dispatcher-list"]) == pool.EXIT_UNAVAILABLE
    assert "pool_size" in capsys.readouterr().err


def test_the_dispatcher_list_names_every_worker_with_its_call_limit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in {
        "GATEWAY_INSTANCE_ID": "edge1",
        "GATEWAY_POOL_SIZE": "2",
        "GATEWAY_POOL_SIP_PORT": "5071",
        "GATEWAY_SIP_HOST": "0.0.0.0",  # a wildcard: Kamailio reaches the workers on loopback
        "GATEWAY_MAX_CALLS": "2",
    }.items():
        monkeypatch.setenv(name, value)
    assert pool.main(["dispatcher-list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("#")
    assert lines[1:] == [
        "1 sip:127.0.0.1:5071 0 0 duid=edge1-w0;maxload=2",
        "1 sip:127.0.0.1:5072 0 0 duid=edge1-w1;maxload=2",
    ]


def test_the_list_file_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "kamailio" / "dispatcher.list"
    write_dispatcher_list(path, [Destination("sip:10.0.0.5:5071", "a", 1)], 4)
    write_dispatcher_list(path, destinations(settings(pool_worker_address="10.0.0.5")), 4)
    assert path.read_text() == dispatcher_list(destinations(settings(pool_worker_address="10.0.0.5")), 4)
    assert "4 sip:10.0.0.5:6002 0 0 duid=edge1-w2;maxload=1" in path.read_text()
    assert [p.name for p in path.parent.iterdir()] == ["dispatcher.list"]


# --- live calls and the events of a dead worker's calls ----------------------------------------


def _event(call_id: str, sequence: int, kind: str, *, source: str = "sip-gateway/edge1-w0") -> ev.CallEvent:
    event = ev.CallEvent(
        event_id=f"{call_id}-{sequence}",
        call_id=call_id,
        sequence=sequence,
        direction=ev.DIRECTION_INBOUND,
        caller=ev.Party(number="+15557654321", e164="+15557654321"),
        callee=ev.Party(number="101", extension="101"),
        line="+15551230000",
        extension="101",
        employee_id="emp-101",
        sip_call_id=f"sip-{call_id}" if kind == "offered" else f"agent-{call_id}",
        source=source,
    )
    event.occurred_at.FromDatetime(T0 + timedelta(seconds=sequence))
    if kind == "offered":
        event.offered.request_uri = "sip:101@edge"
    elif kind == "ringing":
        event.ringing.extension = "101"
    elif kind == "answered":
        event.answered.extension = "101"
        event.answered.started_at.FromDatetime(T0 + timedelta(seconds=1))
    elif kind == "ended":
        event.ended.disposition = ev.DISPOSITION_ANSWERED
    return event


def test_an_answered_call_of_a_dead_worker_ends_answered_by_the_system() -> None:
    calls = LiveCalls()
    for sequence, kind in enumerate(["offered", "ringing", "answered"], start=1):
        calls.on_event(_event("c1", sequence, kind))
    (call,) = calls.take("sip-gateway/edge1-w0")
    lost = worker_lost_event(call, at=T0 + timedelta(seconds=30))

    assert lost.WhichOneof("kind") == "ended"
    assert lost.call_id == "c1"
    assert lost.sequence == 4
    assert lost.source == "sip-gateway/edge1-w0"
    assert lost.sip_call_id == "sip-c1"  # the caller's leg, as offered
    assert (lost.caller.number, lost.extension, lost.employee_id) == ("+15557654321", "101", "emp-101")
    assert lost.ended.disposition == ev.DISPOSITION_ANSWERED
    assert lost.ended.hangup_by == ev.HANGUP_BY_SYSTEM
    assert (lost.ended.sip_status, lost.ended.sip_reason) == (200, "Gateway Worker Lost")
    assert lost.ended.q850_cause == 41
    assert lost.ended.answered_at.ToDatetime(UTC) == T0 + timedelta(seconds=3)
    assert lost.ended.started_at.ToDatetime(UTC) == T0 + timedelta(seconds=1)
    assert lost.ended.answered_extension == "101"
    assert lost.occurred_at.ToDatetime(UTC) == T0 + timedelta(seconds=30)
    # The same call always gets the same event id: published twice, stored once.
    assert worker_lost_event(call, at=T0).event_id == lost.event_id


def test_a_ringing_call_of_a_dead_worker_ends_failed_with_500() -> None:
    calls = LiveCalls()
    calls.on_event(_event("c2", 2, "ringing"))  # events may come out of order
    calls.on_event(_event("c2", 1, "offered"))
    (call,) = calls.take("sip-gateway/edge1-w0")
    lost = worker_lost_event(call, at=T0)
    assert lost.sequence == 3
    assert lost.ended.disposition == ev.DISPOSITION_FAILED
    assert (lost.ended.sip_status, lost.ended.hangup_by) == (500, ev.HANGUP_BY_SYSTEM)
    assert not lost.ended.HasField("answered_at")


def test_ended_calls_and_late_events_are_not_live() -> None:
    calls = LiveCalls()
    calls.on_event(_event("c1", 1, "offered"))
    calls.on_event(_event("c1", 2, "ended"))
    calls.on_event(_event("c1", 1, "offered"))  # redelivered after its end
    calls.on_event(_event("c2", 1, "offered"))
    assert [c.call_id for c in calls.take("sip-gateway/edge1-w0")] == ["c2"]
    calls.on_event(_event("c2", 2, "ringing"))  # the dead worker's last event, too late
    assert calls.count("sip-gateway/edge1-w0") == 0


async def test_the_supervisor_follows_only_its_own_workers() -> None:
    published: list[ev.CallEvent] = []

    async def publish(event: ev.CallEvent) -> None:
        published.append(event)

    supervisor = PoolSupervisor(settings(), publish)
    supervisor.on_call_event(_event("mine", 1, "offered", source="sip-gateway/edge1-w2"))
    supervisor.on_call_event(_event("other", 1, "offered", source="sip-gateway/another-w2"))
    assert [w["live_calls"] for w in supervisor.status()["workers"]] == [0, 0, 1]
    assert supervisor.status()["kamailio_rpc"] is None
    with pytest.raises(Exception, match="none of the 3 workers is ready"):
        await supervisor.check_workers()


# --- Kamailio's JSON-RPC --------------------------------------------------------------------


async def test_an_rpc_to_a_kamailio_that_is_not_there_says_so() -> None:
    port = free_ports(1, udp=False)
    rpc = KamailioRpc(f"http://127.0.0.1:{port}/RPC", timeout=1)
    with pytest.raises(KamailioError, match=f"Kamailio RPC at http://127.0.0.1:{port}/RPC did not answer"):
        await rpc.ping()
    with pytest.raises(ValueError, match="http://host:port/path"):
        KamailioRpc("unix:/run/kamailio.sock")


@pytest.fixture
async def kamailio(tmp_path: Path) -> AsyncIterator[KamailioProcess]:
    if kamailio_binary() is None:
        pytest.fail(f"this test needs kamailio ({DEPLOY_HINT})")
    workers = [Destination(f"sip:127.0.0.1:{port}", f"w{i}", 1) for i, port in enumerate((5999, 5998))]
    options = KamailioOptions(
        config=DEPLOY_CONFIG,
        list_file=tmp_path / "dispatcher.list",
        run_dir=tmp_path / "run",
        sip_port=free_ports(1),
        rpc_port=free_ports(1, udp=False),
        ping_interval=60,
    )
    write_dispatcher_list(options.list_file, workers, 1)
    process = KamailioProcess(options, log_path=tmp_path / "kamailio.log")
    await process.start()
    yield process
    await process.stop()


@pytest.mark.sip
async def test_the_rpc_client_drives_a_real_kamailio(kamailio: KamailioProcess) -> None:
    rpc = KamailioRpc(kamailio.options.rpc_url)
    targets = await rpc.targets(1)
    assert sorted(t.uri for t in targets) == ["sip:127.0.0.1:5998", "sip:127.0.0.1:5999"]
    assert all(t.load == 0 for t in targets)

    await rpc.set_state("ip", 1, "sip:127.0.0.1:5999")
    states = {t.uri: t.active for t in await rpc.targets(1)}
    assert states == {"sip:127.0.0.1:5999": False, "sip:127.0.0.1:5998": True}

    # A replaced worker is removed and added back (its call load starts again from 0).
    await rpc.remove(1, "sip:127.0.0.1:5999")
    assert [t.uri for t in await rpc.targets(1)] == ["sip:127.0.0.1:5998"]
    await asyncio.sleep(1.1)  # Kamailio takes one dispatcher change a second
    await rpc.add(1, Destination("sip:127.0.0.1:5999", "w0", 1))
    assert {t.uri: t.active for t in await rpc.targets(1)}["sip:127.0.0.1:5999"] is True

    assert await rpc.dialogs() == []
    with pytest.raises(KamailioError, match=r"dispatcher\.set_state: 500"):
        await rpc.set_state("a", 1, "sip:127.0.0.1:1")
    with pytest.raises(KamailioError, match=r"no\.such\.command"):
        await rpc.call("no.such.command")


@pytest.mark.sip
async def test_kamailio_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    if kamailio_binary() is None:
        pytest.fail(f"this test needs kamailio ({DEPLOY_HINT})")
    bad = tmp_path / "bad.cfg"
    bad.write_text('#!KAMAILIO\nloadmodule "no_such_module.so"\n')
    options = KamailioOptions(
        config=bad, list_file=tmp_path / "d.list", run_dir=tmp_path / "run", rpc_port=free_ports(1, udp=False)
    )
    with pytest.raises(KamailioError, match="kamailio exited with"):
        await KamailioProcess(options, log_path=tmp_path / "k.log").start(timeout=10)
