"""Test and benchmark helper: a real pool (supervisor, workers, Kamailio) on free loopback ports.

    with PoolProcess(tmp_path, nats_url=..., routes_file=..., size=3) as pool:
        pool.wait_ready()
        ...  # call 127.0.0.1:pool.sip_port; pool.status(), pool.targets(), pool.kill_worker(0)

Used by the tests and ``make bench`` only.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from telecrm_gateway.pool import RTP_PORTS_PER_WORKER
from telecrm_gateway.pool_kamailio import Target

EPHEMERAL = 32768  # Linux's default first ephemeral port (net.ipv4.ip_local_port_range)
DEPLOY_CONFIG = Path(__file__).resolve().parents[4] / "deploy" / "kamailio" / "kamailio.cfg"
"""deploy/kamailio/kamailio.cfg of this checkout."""


def _bindable(port: int, kinds: tuple[int, ...]) -> bool:
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as sock:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_ports(count: int, *, udp: bool = True, low: int = 20000, high: int = 60000) -> int:
    """The first of ``count`` consecutive loopback ports free for TCP (and UDP), in [low, high)."""
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if udp else (socket.SOCK_STREAM,)
    for _ in range(1000):
        base = random.randrange(low, high - count)
        if all(_bindable(base + i, kinds) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports on loopback")


class PoolProcess:
    """``python -m telecrm_gateway.pool`` with its own Kamailio, workers and log directory."""

    def __init__(
        self,
        root: Path,
        *,
        nats_url: str,
        routes_file: Path,
        size: int = 2,
        max_calls: int = 1,
        instance_id: str = "",
        ping_interval: int = 1,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.root = root
        self.size = size
        self.instance_id = instance_id or f"pool{random.randrange(10**6):06d}"
        # Listening ports below the OS's ephemeral range (32768 and up), so that no outgoing connection
        # (a worker's NATS client, a readiness probe) takes a worker's port before the worker binds it;
        # RTP below 20000, where neither the OS nor the sipp runner (20000-60000) hands out ports.
        self.http_port = free_ports(1, udp=False, high=EPHEMERAL)
        self.sip_port = free_ports(1, high=EPHEMERAL)
        self.rpc_port = free_ports(1, udp=False, high=EPHEMERAL)
        self.grpc_port = free_ports(1, udp=False, high=EPHEMERAL)  # the pool's front door for CallControl
        self.worker_sip_port = free_ports(size, high=EPHEMERAL)
        self.worker_http_port = free_ports(size, udp=False, high=EPHEMERAL)
        self.worker_grpc_port = free_ports(size, udp=False, high=EPHEMERAL)
        self.rtp_port = free_ports(size * RTP_PORTS_PER_WORKER, low=10000, high=20000)
        self.log_dir = root / f"{self.instance_id}-logs"
        self.env = {
            "GATEWAY_NATS_URL": nats_url,
            "GATEWAY_INSTANCE_ID": self.instance_id,
            "GATEWAY_HTTP_PORT": str(self.http_port),
            "GATEWAY_GRPC_PORT": str(self.grpc_port),
            "GATEWAY_ROUTES_FILE": str(routes_file),
            "GATEWAY_MAX_CALLS": str(max_calls),
            "GATEWAY_LOG_FORMAT": "text",
            "GATEWAY_RTP_HOST": "127.0.0.1",
            "GATEWAY_RTP_PORT": str(self.rtp_port),
            "GATEWAY_RTP_PORT_RANGE": str(RTP_PORTS_PER_WORKER),
            "GATEWAY_SHUTDOWN_GRACE": "10",
            "GATEWAY_POOL_SIZE": str(size),
            "GATEWAY_POOL_SIP_PORT": str(self.worker_sip_port),
            "GATEWAY_POOL_HTTP_PORT": str(self.worker_http_port),
            "GATEWAY_POOL_GRPC_PORT": str(self.worker_grpc_port),
            "GATEWAY_POOL_LOG_DIR": str(self.log_dir),
            "GATEWAY_POOL_RESTART_DELAY": "0.2",
            "GATEWAY_KAMAILIO_CONFIG": str(DEPLOY_CONFIG),
            "GATEWAY_KAMAILIO_SIP_PORT": str(self.sip_port),
            "GATEWAY_KAMAILIO_RPC_PORT": str(self.rpc_port),
            "GATEWAY_KAMAILIO_PING_INTERVAL": str(ping_interval),
            "GATEWAY_KAMAILIO_RUN_DIR": str(root / f"{self.instance_id}-kamailio"),
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    # --- lifecycle

    def start(self) -> PoolProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / "pool.log").open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "telecrm_gateway.pool"],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = 90.0) -> dict[str, Any]:
        """Wait until every worker is ready and Kamailio lists them all as active; the pool's status."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"the pool exited with {self.returncode}:\n{self.log_tail()}")
            try:
                last = self.status()
                if last["ready"] == self.size and sum(t.active for t in self.targets()) == self.size:
                    return dict(last)
            except (OSError, ValueError, urllib.error.URLError) as exc:
                last = exc
            time.sleep(0.1)
        if isinstance(last, dict):  # the workers' states, not a hundred workers' details
            workers = last["workers"]
            states = [str(w["state"]) for w in workers]
            last = {state: states.count(state) for state in sorted(set(states))}
            last["restarts"] = sum(int(w["restarts"]) for w in workers)
        raise TimeoutError(f"pool not ready after {timeout:g}s (workers: {last})\n{self.log_tail()}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (the pool drains its workers), SIGKILL after ``timeout``; the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        return self.process.returncode

    def __enter__(self) -> PoolProcess:
        if self.process is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- what tests look at

    def status(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.http_port}/pool"
        with urllib.request.urlopen(url, timeout=5) as response:
            return dict(json.loads(response.read()))

    def worker(self, index: int) -> dict[str, Any]:
        return dict(self.status()["workers"][index])

    def rpc(self, method: str, *params: Any) -> Any:
        """One Kamailio JSON-RPC command (blocking: usable from sync and async tests alike)."""
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}).encode()
        request = urllib.request.Request(  # noqa: S310 - our own loopback URL
            self.rpc_url, body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - our own loopback URL
            return json.loads(response.read())["result"]

    def targets(self) -> list[Target]:
        """The workers as Kamailio's dispatcher lists them, in the order it tries them."""
        out = []
        for record in self.rpc("dispatcher.list")["RECORDS"]:
            for target in record["SET"]["TARGETS"]:
                dest = target["DEST"]
                out.append(Target(dest["URI"], dest["FLAGS"], int(dest.get("RUNTIME", {}).get("DLGLOAD", 0))))
        return out

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}/RPC"

    def worker_source(self, index: int) -> str:
        return f"sip-gateway/{self.instance_id}-w{index}"

    def worker_sip(self, index: int) -> int:
        return self.worker_sip_port + index

    def kill_worker(self, index: int) -> int:
        """SIGKILL one worker (a crash); its pid."""
        pid = int(self.worker(index)["pid"])
        os.kill(pid, signal.SIGKILL)
        return pid

    def worker_pids(self) -> list[int]:
        return [int(w["pid"]) for w in self.status()["workers"] if w["pid"]]

    def kamailio_pids(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-f", f"SIP_PORT={self.sip_port}"], capture_output=True, text=True, check=False
        )
        return [int(p) for p in out.stdout.split()]

    def log_tail(self, lines: int = 40) -> str:
        path = self.log_dir / "pool.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
