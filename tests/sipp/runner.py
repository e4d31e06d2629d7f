"""Run sipp from tests: agent phones (UAS) in the background, callers (UAC) to completion.

Everything runs on loopback (127.0.0.1) with free ports, so several sipps and the gateway can run side by
side. Each run keeps its message, error and statistics traces in its own directory and returns them in a
:class:`SippResult`::

    with start_uas("uas_answer.xml", duration_ms=300) as agent:          # the agent's phone
        ...                                                               # point extension 101 at agent.port
        result = run_uac("uac_answered.xml", "127.0.0.1", gateway_port, service="101", duration_ms=500)
        assert result.ok, result.explain()
        assert agent.wait(10).ok

``arun_uac`` and ``Sipp.wait_async`` do the same without blocking an asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypedDict, Unpack

from telecrm_devstack.processes import die_with_parent

SCENARIOS = Path(__file__).resolve().parent
"""The directory holding the shared scenarios (uac_*.xml, uas_*.xml)."""

LOOPBACK = "127.0.0.1"

DEFAULT_KEYS: Mapping[str, str] = {"caller": "+15557654321", "caller_name": "Test Caller"}
"""Keys the caller scenarios need (``-key``); override per run with ``keys=``."""

EXIT_ALL_CALLS_OK = 0
EXIT_SOME_CALLS_FAILED = 1
EXIT_NO_CALL_PROCESSED = 99


def sipp_binary() -> str | None:
    """Path of the sipp program, or None when it is not installed (Debian package sip-tester)."""
    return shutil.which("sipp")


def _bindable(port: int, kinds: Sequence[int]) -> bool:
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as sock:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


def _holds_port(pid: int, port: int, transport: str) -> bool:
    """Whether process ``pid`` has a socket bound to ``port`` (listening, for TCP), from /proc."""
    table = Path("/proc/net/tcp" if transport == "tcp" else "/proc/net/udp")
    inodes = set()
    for line in table.read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and (transport != "tcp" or fields[3] == "0A"):  # 0A: LISTEN
            inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return False
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(fd) in inodes:
                return True
    return False


def free_port(*, tcp: bool = True, udp: bool = True, block: int = 1) -> int:
    """A port free on loopback (for UDP and/or TCP); with ``block`` > 1, the first of that many free ports.

    Media needs a block (sipp's -mp takes the port and the next ones for RTCP and video): use ``block=4``.
    """
    kinds = [k for k, on in ((socket.SOCK_DGRAM, udp), (socket.SOCK_STREAM, tcp)) if on]
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(20000, 60000, 2)
        if all(_bindable(base + i, kinds) for i in range(block)):
            return base
    raise RuntimeError("no free port found on loopback")


@dataclass
class SippResult:
    """What one sipp run did: its exit code, traces and final statistics."""

    scenario: str
    args: list[str]
    returncode: int
    timed_out: bool
    stdout: str
    stderr: str
    messages: str  # -trace_msg: every message sent and received
    errors: str  # -trace_err: unexpected messages and aborted calls
    stats: dict[str, str] = field(default_factory=dict)  # last row of -trace_stat

    @property
    def ok(self) -> bool:
        """sipp ran to the end and every call of the scenario succeeded."""
        return self.returncode == EXIT_ALL_CALLS_OK and not self.timed_out

    @property
    def successful_calls(self) -> int:
        return int(self.stats.get("SuccessfulCall(C)", "0") or 0)

    @property
    def failed_calls(self) -> int:
        return int(self.stats.get("FailedCall(C)", "0") or 0)

    def received(self) -> list[str]:
        """The SIP messages sipp received, in order (each as its text)."""
        return _messages(self.messages, "received")

    def sent(self) -> list[str]:
        """The SIP messages sipp sent, in order."""
        return _messages(self.messages, "sent")

    def statuses(self) -> list[int]:
        """Status codes of the responses sipp received, in order."""
        codes = []
        for message in self.received():
            m = re.match(r"SIP/2\.0 (\d{3})", message)
            if m:
                codes.append(int(m.group(1)))
        return codes

    def response(self, status: int) -> str | None:
        """The first received response with this status, or None."""
        for message in self.received():
            if message.startswith(f"SIP/2.0 {status} "):
                return message
        return None

    def flow(self) -> list[str]:
        """The call flow as sipp saw it: "> INVITE", "< 100", "< 200"... in order."""
        out = []
        for block in re.split(r"^-{20,}.*$", self.messages, flags=re.M):
            m = re.search(r"message (sent|received)[^\n]*:\n\n?([^\n]*)", block)
            if m:
                first = m.group(2).split()
                label = first[1] if first and first[0].startswith("SIP/") and len(first) > 1 else first[0]
                out.append(f"{'>' if m.group(1) == 'sent' else '<'} {label}")
        return out

    def explain(self) -> str:
        """A readable summary for assertion messages."""
        tail = "\n".join((self.stderr or self.stdout).strip().splitlines()[-15:])
        return (
            f"sipp {self.scenario}: exit {self.returncode}{' (timed out)' if self.timed_out else ''}, "
            f"{self.successful_calls} ok / {self.failed_calls} failed; flow: {' '.join(self.flow())}"
            f"\n--- errors\n{self.errors.strip()[-3000:]}\n--- output\n{tail}"
        )


def header(message: str, name: str) -> str | None:
    """The value of the first header ``name`` in a SIP message (case-insensitive), or None."""
    for line in message.splitlines()[1:]:
        if not line.strip():
            break
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name.lower():
            return value.strip()
    return None


def _messages(trace: str, direction: str) -> list[str]:
    # sipp's message trace: a dashed line with a timestamp, then "UDP message received [n] bytes :",
    # an empty line and the message.
    out = []
    for block in re.split(r"^-{20,}.*$", trace, flags=re.M):
        m = re.search(r"message (sent|received)[^\n]*:\n\n?(.*)", block, flags=re.S)
        if m and m.group(1) == direction:
            out.append(m.group(2).strip("\n").replace("\r\n", "\n"))
    return out


class SippOptions(TypedDict, total=False):
    """Options of a sipp run (see :class:`Sipp`)."""

    transport: str  # "udp" (default) or "tcp"
    service: str  # -s: the user part of the request URI the caller dials
    keys: Mapping[str, str]  # -key name value, on top of DEFAULT_KEYS
    duration_ms: int  # -d: length of the scenario's unnamed <pause/> (ring or talk time)
    calls: int  # -m: calls to run before exiting (default 1)
    max_concurrent: int  # -l
    rate: float  # -r: calls per second
    recv_timeout_ms: int  # -recv_timeout: fail a call that waits longer for a message (default 30 s)
    extra_args: Sequence[str]
    workdir: Path  # where traces stay (default: a temporary directory, removed once read)


class Sipp:
    """One sipp process started with the given scenario; a context manager that always stops it.

    ``remote`` is the "host:port" to call (callers); agent phones leave it empty and listen on ``port``
    (0: a free port, see ``.port``).
    """

    def __init__(
        self, scenario: str | Path, *, remote: str = "", port: int = 0, **options: Unpack[SippOptions]
    ) -> None:
        transport = options.get("transport", "udp")
        service = options.get("service", "")
        keys = options.get("keys", {})
        duration_ms = options.get("duration_ms")
        calls = options.get("calls", 1)
        max_concurrent = options.get("max_concurrent")
        rate = options.get("rate")
        recv_timeout_ms = options.get("recv_timeout_ms", 30000)
        extra_args = options.get("extra_args", ())
        workdir = options.get("workdir")
        binary = sipp_binary()
        if binary is None:
            raise RuntimeError("sipp is not installed (Debian package sip-tester)")
        path = Path(scenario)
        if not path.is_absolute():
            path = SCENARIOS / path
        if not path.exists():
            raise FileNotFoundError(path)
        self.scenario = path
        self.remote = remote
        self.transport = transport
        self._own_ports = not port  # ports this object picked (and may pick again, see start())
        self.port = port or free_port(tcp=transport == "tcp", udp=transport == "udp")
        self.media_port = free_port(tcp=False, block=4)
        self._own_workdir = workdir is None  # a temporary directory, removed once the result is read
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix=f"sipp-{path.stem}-"))
        self._files = {
            name: self.workdir / f"{path.stem}.{name}"
            for name in ("messages", "errors", "stats", "out", "err")
        }
        args = [
            binary,
            *([remote] if remote else []),
            "-sf",
            str(path),
            "-t",
            {"udp": "u1", "tcp": "t1"}[transport],
            "-i",
            LOOPBACK,
            "-p",
            str(self.port),
            "-mi",
            LOOPBACK,
            "-mp",
            str(self.media_port),
            "-m",
            str(calls),
            "-nostdin",
            "-aa",
            "-recv_timeout",
            str(recv_timeout_ms),
            "-trace_msg",
            "-message_file",
            str(self._files["messages"]),
            "-trace_err",
            "-error_file",
            str(self._files["errors"]),
            "-trace_stat",
            "-stf",
            str(self._files["stats"]),
        ]
        if service:
            args += ["-s", service]
        if duration_ms is not None:
            args += ["-d", str(duration_ms)]
        if max_concurrent is not None:
            args += ["-l", str(max_concurrent)]
        if rate is not None:
            args += ["-r", str(rate)]
        for key, value in {**DEFAULT_KEYS, **keys}.items():
            args += ["-key", key, value]
        args += list(extra_args)
        self.args = args
        self._process: subprocess.Popen[bytes] | None = None
        self._result: SippResult | None = None

    # -- lifecycle

    def start(self) -> Sipp:
        """Start sipp; an agent phone (no ``remote``) is ready once this returns.

        An agent phone that exits at once (a port it was given got taken between the pick and sipp's
        bind) is started again on other free ports, when it chose them itself; then it is an error
        with sipp's own words, never a phone that silently does not answer.
        """
        for attempt in range(3):
            self._spawn()
            if self.remote:
                return self
            self._wait_listening(5.0)
            if self.returncode is None:
                return self
            if not self._own_ports or attempt == 2:
                break
            self._repick_ports()
        stderr = _read(self._files["err"]).strip()[-2000:]
        raise RuntimeError(f"sipp {self.scenario.name} exited at start ({self.returncode}): {stderr}")

    def _spawn(self) -> None:
        with open(self._files["out"], "wb") as out, open(self._files["err"], "wb") as err:
            self._process = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.workdir,
                preexec_fn=die_with_parent,  # no sipp outlives the test run that started it
            )

    def _repick_ports(self) -> None:
        self.port = free_port(tcp=self.transport == "tcp", udp=self.transport == "udp")
        self.media_port = free_port(tcp=False, block=4)
        for flag, value in (("-p", self.port), ("-mp", self.media_port)):
            self.args[self.args.index(flag) + 1] = str(value)

    def _wait_listening(self, timeout: float) -> None:
        """Until sipp itself holds its SIP port (not whoever else may have bound it), or exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is None or self.returncode is not None:
                return  # died at once: start() reports why
            if _holds_port(self._process.pid, self.port, self.transport):
                return
            time.sleep(0.01)

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def wait(self, timeout: float = 30.0) -> SippResult:
        """Wait for sipp to finish (killing it after ``timeout`` seconds) and return what it did."""
        if self._result is not None:
            return self._result
        assert self._process is not None, "start() first"
        timed_out = False
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            self._kill()
        return self._collect(timed_out)

    async def wait_async(self, timeout: float = 30.0) -> SippResult:
        """Like :meth:`wait`, without blocking the event loop."""
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:  # noqa: ASYNC110 - a Popen has nothing to await
            await asyncio.sleep(0.05)
        return self.wait(timeout=0.1 if self.running else 5.0)

    def stop(self) -> SippResult:
        """Stop sipp now (if still running) and return what it did."""
        if self._result is not None:
            return self._result
        timed_out = False
        if self.running:
            self._kill()
            timed_out = True
        return self._collect(timed_out)

    def _kill(self) -> None:
        assert self._process is not None
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(2.0)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(5.0)

    def _collect(self, timed_out: bool) -> SippResult:
        assert self._process is not None
        self._result = SippResult(
            scenario=self.scenario.name,
            args=self.args,
            returncode=self._process.returncode,
            timed_out=timed_out,
            stdout=_read(self._files["out"]),
            stderr=_read(self._files["err"]),
            messages=_read(self._files["messages"]),
            errors=_read(self._files["errors"]),
            stats=_last_stats_row(self._files["stats"]),
        )
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return self._result

    def __enter__(self) -> Sipp:
        if self._process is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _last_stats_row(path: Path) -> dict[str, str]:
    text = _read(path)
    rows = list(csv.reader(text.splitlines(), delimiter=";"))
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


def start_uas(scenario: str | Path, *, port: int = 0, **options: Unpack[SippOptions]) -> Sipp:
    """Start an agent phone (a sipp UAS, by default for one call) listening on 127.0.0.1:``port``.

    Options are those of :class:`Sipp` (``duration_ms``, ``transport``, ``calls``...). Use it as a context
    manager, or call ``wait``/``stop``.
    """
    return Sipp(scenario, port=port, **options).start()


def run_uac(
    scenario: str | Path, host: str, port: int, *, timeout: float = 30.0, **options: Unpack[SippOptions]
) -> SippResult:
    """Place the calls of a caller scenario against ``host:port`` and wait for sipp to finish."""
    with Sipp(scenario, remote=f"{host}:{port}", **options) as sipp:
        return sipp.wait(timeout)


async def arun_uac(
    scenario: str | Path, host: str, port: int, *, timeout: float = 30.0, **options: Unpack[SippOptions]
) -> SippResult:
    """:func:`run_uac` for asyncio code: the event loop keeps running while sipp calls."""
    sipp = Sipp(scenario, remote=f"{host}:{port}", **options)
    with sipp:
        return await sipp.wait_async(timeout)


@contextlib.contextmanager
def uas(scenario: str | Path, *, port: int = 0, **options: Unpack[SippOptions]) -> Iterator[Sipp]:
    """``with uas("uas_busy.xml") as phone:`` - an agent phone stopped when the block ends."""
    phone = start_uas(scenario, port=port, **options)
    try:
        yield phone
    finally:
        phone.stop()


def environment_ok() -> tuple[bool, str]:
    """Whether sipp can run here, and why not."""
    if sipp_binary() is None:
        return False, "sipp is not installed (apt-get install sip-tester, or make test-deps)"
    if not os.access(SCENARIOS, os.R_OK):
        return False, f"cannot read {SCENARIOS}"
    return True, ""
