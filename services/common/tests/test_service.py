"""ServiceRunner as a real process: SIGTERM drains and exits 0, a failing part exits 1, and a taken
HTTP port is a clear start-up error. The logs are JSON lines on stderr."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from telecrm_devstack.processes import free_port

SCRIPT = """
import asyncio
import sys
from pathlib import Path

from fastapi import FastAPI

from telecrm_common.grpc import GrpcServer
from telecrm_common.health import health_router
from telecrm_common.logging import setup_logging
from telecrm_common.service import ServiceRunner
from telecrm_common.settings import ServiceSettings

mode, marker = sys.argv[1], Path(sys.argv[2])


async def worker(stop: asyncio.Event) -> None:
    marker.write_text("started")
    if mode == "fail":
        await asyncio.sleep(0.2)
        raise RuntimeError("the consumer broke")
    await stop.wait()
    await asyncio.sleep(0.1)  # finishing the batch in hand
    marker.write_text("stopped")


async def closing() -> None:
    Path(str(marker) + ".closed").touch()


async def main() -> int:
    settings = ServiceSettings(service_name="demo", shutdown_grace=5)
    setup_logging(settings)
    app = FastAPI()
    app.include_router(health_router({}))
    grpc_server = GrpcServer(settings, service_names=[])
    runner = ServiceRunner(
        settings, http_app=app, grpc=grpc_server, background=[worker], on_shutdown=[closing]
    )
    return await runner.run()


sys.exit(asyncio.run(main()))
"""


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    http_port: int
    marker: Path
    log: Path

    def lines(self) -> list[dict[str, Any]]:
        """The log as parsed JSON objects; fails on a line that is not one."""
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def wait(self, timeout: float = 15) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the service did not exit within {timeout}s:\n{self.log.read_text()}")


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    started: list[Service] = []

    def run(mode: str, http_port: int | None = None) -> Service:
        script = tmp_path / "demo_service.py"
        script.write_text(SCRIPT)
        port = http_port or free_port()
        env = {
            **os.environ,
            "TELECRM_HTTP_PORT": str(port),
            "TELECRM_GRPC_PORT": str(free_port()),
            "TELECRM_LOG_FORMAT": "json",
            "TELECRM_INSTANCE_ID": "demo-1",
        }
        log = tmp_path / f"{mode}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, str(script), mode, str(tmp_path / f"{mode}.marker")],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        service = Service(proc, port, tmp_path / f"{mode}.marker", log)
        started.append(service)
        return service

    yield run
    for service in started:
        if service.proc.poll() is None:
            service.proc.kill()
            service.proc.wait(5)


def wait_http_ok(service: Service, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            pytest.fail(f"the service exited with {service.proc.returncode}:\n{service.log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{service.http_port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    pytest.fail(f"/healthz did not answer within {timeout}s:\n{service.log.read_text()}")


def test_sigterm_stops_the_background_task_and_exits_0(start: Any) -> None:
    service = start("run")
    wait_http_ok(service)
    deadline = time.monotonic() + 5
    while not service.marker.exists() and time.monotonic() < deadline:  # the task starts after HTTP
        time.sleep(0.02)
    assert service.marker.read_text() == "started"

    service.proc.send_signal(signal.SIGTERM)
    assert service.wait() == 0

    assert service.marker.read_text() == "stopped", "the task saw the stop event and finished"
    assert Path(f"{service.marker}.closed").exists(), "the on_shutdown callbacks ran"
    lines = service.lines()
    messages = [line["msg"] for line in lines]
    assert "SIGTERM received; stopping" in messages
    assert messages[-1] == "service stopped"
    assert all(line["service"] == "demo" and line["instance"] == "demo-1" for line in lines)
    assert not [line for line in lines if line["level"] == "error"]


def test_a_failing_background_task_stops_the_process_with_exit_1(start: Any) -> None:
    service = start("fail")
    assert service.wait() == 1

    lines = service.lines()
    failure = [line for line in lines if "background task worker failed" in line["msg"]]
    assert failure, service.log.read_text()
    assert "RuntimeError: the consumer broke" in failure[0]["exc"]
    assert lines[-1]["msg"] == "service stopped"
    assert Path(f"{service.marker}.closed").exists()


def test_a_taken_http_port_exits_non_zero_with_a_clear_log_line(start: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = start("run", http_port=port)
        code = service.wait()

    assert code != 0
    messages = [line["msg"] for line in service.lines()]
    assert any(f"HTTP server could not start on port {port}" in m for m in messages), messages
    assert any("address already in use" in m for m in messages), messages
