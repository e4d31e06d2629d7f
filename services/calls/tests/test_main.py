"""Start-up and shutdown of the real process: clear errors without tracebacks, migrations, serving."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from telecrm_calls.main import main, migrate, serve
from telecrm_calls.settings import CallsSettings
from telecrm_calls.testing import CallScript
from telecrm_common.auth import Principal, Role, Visibility
from telecrm_common.bus import Bus
from telecrm_common.events import STREAMS, call_event_subject
from telecrm_common.grpc import channel
from telecrm_devstack.processes import ManagedProcess, free_port, wait_http_ok
from telecrm_devstack.testing import TEST_AUTH_SECRET, make_principal

ADMIN = make_principal("u-admin", Role.ADMIN, visibility=Visibility.ALL)


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLS_")}
    env.update({"CALLS_LOG_FORMAT": "text", **values})
    return env


def _python(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "telecrm_calls", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("migrate_on_start", [False, True])
async def test_database_down_exits_2_with_one_clear_line(
    caplog: pytest.LogCaptureFixture, migrate_on_start: bool
) -> None:
    settings = CallsSettings(
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/calls",
        startup_timeout=0.6,
        migrate_on_start=migrate_on_start,
    )
    with caplog.at_level(logging.INFO):
        assert await serve(settings) == 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].getMessage().startswith("cannot start: database postgresql")
    assert "gave up after" in errors[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)
    assert any("retrying" in r.getMessage() for r in caplog.records)


async def test_nats_down_exits_2(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = CallsSettings(
        database_url=f"sqlite:///{tmp_path / 'calls.sqlite3'}",
        nats_url=f"nats://127.0.0.1:{free_port()}",
        startup_timeout=1,
    )
    assert await serve(settings) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors[0].startswith("cannot start: NATS at")


def test_process_with_database_down_prints_no_traceback() -> None:
    env = _env(
        CALLS_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/calls", CALLS_STARTUP_TIMEOUT="0.5"
    )
    result = _python("serve", env=env)
    assert result.returncode == 2
    assert "cannot start: database" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_settings_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CALLS_HTTP_PORT", "eighty")
    assert main(["serve"]) == 2
    assert "http_port" in capsys.readouterr().err


async def test_migrate_command(tmp_path: Path) -> None:
    database = tmp_path / "var" / "calls.sqlite3"
    result = await asyncio.to_thread(_python, "migrate", env=_env(CALLS_DATABASE_URL=f"sqlite:///{database}"))
    assert result.returncode == 0, result.stderr
    assert "migrations applied" in result.stderr
    assert await migrate(CallsSettings(database_url=f"sqlite:///{database}")) == 0  # again: nothing to do


@pytest.fixture
def service_db(database_factory: Callable[[str], str]) -> str:
    return database_factory("calls_e2e")


@pytest.mark.e2e
async def test_service_process_end_to_end(
    nats_server: Any,
    service_db: str,
    tmp_path: Path,
    token_for: Callable[[Principal], dict[str, str]],
) -> None:
    """The real process: migrates, consumes, answers on REST (to crm's tokens) and gRPC, and stops
    cleanly on SIGTERM."""
    from telecrm.calls.v1 import calls_pb2, calls_pb2_grpc

    http_port, grpc_port = free_port(), free_port()
    proc = ManagedProcess(
        "calls",
        [sys.executable, "-m", "telecrm_calls"],
        env=_env(
            CALLS_DATABASE_URL=service_db,
            CALLS_NATS_URL=nats_server.url,
            CALLS_HTTP_PORT=str(http_port),
            CALLS_GRPC_PORT=str(grpc_port),
            CALLS_CONSUMER_DURABLE=f"calls-e2e-{uuid.uuid4().hex[:8]}",
            CALLS_SHUTDOWN_GRACE="5",
            TELECRM_AUTH_SECRET=TEST_AUTH_SECRET,
        ),
        log_path=tmp_path / "calls.log",
    ).start()
    try:
        await asyncio.to_thread(wait_http_ok, f"http://127.0.0.1:{http_port}/readyz", 30, proc)
        bus = await Bus.connect(nats_server.url, name="e2e", timeout=10)
        await bus.ensure_streams(STREAMS)
        script = CallScript(f"e2e-{uuid.uuid4().hex[:8]}")
        for event in reversed(script.answered_call()):
            await bus.publish(call_event_subject(event), event, msg_id=event.event_id)
        await bus.close()

        agent = make_principal("u-agent", Role.AGENT, employee_id="emp-nobody")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as client:
            assert (await client.get(f"/calls/{script.call_id}")).status_code == 401  # no token
            client.headers.update(token_for(ADMIN))
            deadline = time.monotonic() + 15
            while True:
                response = await client.get(f"/calls/{script.call_id}")
                if response.status_code == 200 and response.json()["state"] == "ended":
                    break
                assert time.monotonic() < deadline, response.text
                await asyncio.sleep(0.05)
            assert response.json()["disposition"] == "answered"
            # A token crm signed for an agent who was not on the call: as if the call did not exist.
            hidden = await client.get(f"/calls/{script.call_id}", headers=token_for(agent))
            assert hidden.status_code == 404

        async with channel(f"127.0.0.1:{grpc_port}") as chan:
            call = await calls_pb2_grpc.CallLogStub(chan).GetCall(
                calls_pb2.GetCallRequest(call_id=script.call_id)
            )
        assert (call.ring_ms, call.talk_ms) == (5000, 60000)

        proc.signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.process.wait, 15) == 0  # type: ignore[union-attr]
        log = proc.log_tail(200)
        assert "service stopped" in log
        assert "Traceback" not in log
    finally:
        proc.stop()
