"""The service as it runs: start-up failures, and SIGTERM with a call in progress."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from google.protobuf.message import DecodeError

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.auth import Principal, Role
from telecrm_common.bus import Bus
from telecrm_devstack.processes import NatsServer
from telecrm_devstack.testing import TEST_AUTH_SECRET, make_principal
from telecrm_gateway.main import EXIT_FAILED, EXIT_UNAVAILABLE, serve
from telecrm_gateway.settings import GatewaySettings
from tests.sipp.runner import Sipp, environment_ok, free_port, start_uas

SIPP_OK, SIPP_MISSING = environment_ok()
HOST = "127.0.0.1"


async def test_invalid_routes_stop_the_start(tmp_path: Path) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text('[lines."+15551230000"]\nextension = "404"\n')
    assert await serve(GatewaySettings(routes_file=routes)) == EXIT_UNAVAILABLE


async def test_a_taken_sip_port_stops_the_start(nats_server: NatsServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((HOST, 0))
        port = taken.getsockname()[1]
        settings = GatewaySettings(nats_url=nats_server.url, sip_port=port, startup_timeout=5)
        assert await serve(settings) == EXIT_FAILED


@pytest.mark.e2e
@pytest.mark.sip
@pytest.mark.skipif(not SIPP_OK, reason=SIPP_MISSING)
async def test_sigterm_hangs_up_the_live_call_and_publishes_its_end(
    nats_server: NatsServer, tmp_path: Path, token_for: Callable[[Principal], dict[str, str]]
) -> None:
    with start_uas("uas_answer.xml", duration_ms=100) as agent:
        routes = tmp_path / "routes.toml"
        routes.write_text(f'[extensions."101"]\ncontact = "sip:101@{HOST}:{agent.port}"\nname = "Alice"\n')
        sip_port, http_port, grpc_port = free_port(), free_port(), free_port()
        instance = f"sigterm-{os.getpid()}"
        env = {
            **os.environ,
            "GATEWAY_NATS_URL": nats_server.url,
            "GATEWAY_SIP_PORT": str(sip_port),
            "GATEWAY_HTTP_PORT": str(http_port),
            "GATEWAY_GRPC_PORT": str(grpc_port),
            "GATEWAY_ROUTES_FILE": str(routes),
            "GATEWAY_INSTANCE_ID": instance,
            "GATEWAY_LOG_FORMAT": "text",
            "TELECRM_AUTH_SECRET": TEST_AUTH_SECRET,
        }
        log_path = tmp_path / "gateway.log"
        process = _start_gateway(env, log_path)
        try:
            supervisor = token_for(make_principal("u-sup", Role.SUPERVISOR))
            async with httpx.AsyncClient(
                base_url=f"http://{HOST}:{http_port}", timeout=2, headers=supervisor
            ) as client:
                deadline = time.monotonic() + 30
                while True:
                    assert process.poll() is None, log_path.read_text()
                    try:
                        if (await client.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert time.monotonic() < deadline, log_path.read_text()
                    await asyncio.sleep(0.1)

                caller = Sipp(
                    "uac_answered_callee_bye.xml", remote=f"{HOST}:{sip_port}", service="101"
                ).start()
                deadline = time.monotonic() + 15
                while not [
                    c for c in (await client.get("/calls/active")).json()["items"] if c["state"] == "answered"
                ]:
                    assert time.monotonic() < deadline, log_path.read_text()
                    await asyncio.sleep(0.1)

            process.send_signal(signal.SIGTERM)
            code = await _wait_exit(process, 20)
            assert code == 0, log_path.read_text()
            done = await caller.wait_async(10)
            assert done.ok, done.explain()  # the caller got a BYE
            done = await agent.wait_async(10)
            assert done.ok, done.explain()  # and so did the agent
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(5)

    bus = await Bus.connect(nats_server.url, name="sigterm-test", timeout=10)
    try:
        sub = await bus.js.subscribe("tel.call.ended", ordered_consumer=True)
        ended: list[ev.CallEvent] = []
        deadline = time.monotonic() + 10
        while not ended and time.monotonic() < deadline:
            try:
                msg = await sub.next_msg(timeout=1)
            except Exception:
                continue
            try:
                event = ev.CallEvent.FromString(msg.data)
            except DecodeError:  # other tests on this NATS publish garbage on purpose
                continue
            if event.source == f"sip-gateway/{instance}":
                ended.append(event)
        await sub.unsubscribe()
    finally:
        await bus.close()
    assert len(ended) == 1
    assert (ended[0].ended.disposition, ended[0].ended.hangup_by) == (
        ev.DISPOSITION_ANSWERED,
        ev.HANGUP_BY_SYSTEM,
    )


def _start_gateway(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m telecrm_gateway`` with its output in ``log_path`` (a process the test signals)."""
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "telecrm_gateway"], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )


async def _wait_exit(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110 - Popen has nothing to await
        await asyncio.sleep(0.1)
    return process.poll()
