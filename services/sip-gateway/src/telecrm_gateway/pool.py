"""The SIP gateway as a pool of pjsua2 worker processes behind Kamailio.

One pjsua2 process holds at most 4 call legs (2 bridged calls), so the gateway scales by processes: the
pool supervisor starts ``GATEWAY_POOL_SIZE`` workers (``python -m telecrm_gateway``), each on its own SIP,
HTTP and gRPC port (``GATEWAY_POOL_SIP_PORT + i``...) with its own instance id, and Kamailio spreads the
calls over them (``deploy/kamailio/kamailio.cfg``: dispatcher, call-load algorithm, failover on 503 or
silence). The supervisor

- writes Kamailio's dispatcher list for the workers (``GATEWAY_POOL_DISPATCHER_LIST``; the command
  ``python -m telecrm_gateway.pool dispatcher-list`` prints it), and starts Kamailio itself when
  ``GATEWAY_KAMAILIO_CONFIG`` is set (tests, ``make run``; in a cluster Kamailio is its own container);
- replaces a worker that dies, on the same ports, so the dispatcher list stays right; meanwhile Kamailio
  sends new calls to the others (the supervisor marks the dead one inactive at once, the OPTIONS pings
  would within ``PING_INTERVAL``);
- ends the calls of a dead worker: over Kamailio's JSON-RPC the callers of answered calls get a BYE
  (``dlg.end_dlg``) and those still ringing a ``500 Gateway Worker Lost`` (``tm.reply_callid``); on NATS
  each call the worker left live gets its ``ended`` event (:mod:`telecrm_gateway.pool_calls`), so the call
  log never keeps a call live forever. The supervisor learns each worker's live calls by following
  ``tel.call.>``;
- on SIGTERM disables every worker in Kamailio (new calls get its 503), lets each worker drain (live
  calls hung up with their events), then stops Kamailio if it started it.

``python -m telecrm_gateway.pool`` (or ``telecrm-sip-gateway-pool``) serves until SIGTERM; its HTTP API
(``GATEWAY_HTTP_PORT``) has ``GET /pool`` and the health endpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_core import to_jsonable_python
from pydantic_settings import SettingsConfigDict

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.errors import NotReadyError
from telecrm_gateway.pool_calls import WORKER_LOST_REASON, WORKER_LOST_STATUS, LiveCalls, worker_lost_event
from telecrm_gateway.pool_kamailio import (
    ACTIVE,
    DISABLED,
    INACTIVE_PROBING,
    Destination,
    KamailioError,
    KamailioOptions,
    KamailioProcess,
    KamailioRpc,
    dispatcher_list,
    write_dispatcher_list,
)
from telecrm_gateway.publisher import EventPublisher, PublishFn
from telecrm_gateway.settings import GatewaySettings

log = logging.getLogger("telecrm_gateway.pool")

EXIT_FAILED = 1
EXIT_UNAVAILABLE = 2
STABLE_AFTER = 30.0  # seconds a worker must live for its restart delay to start again from the smallest
DISPATCHER_CHANGE_GAP = 1.1  # Kamailio's reload_delta (1 s) between two dispatcher.add/remove
RTP_PORTS_PER_WORKER = 16  # 4 call legs, RTP + RTCP each, and room to skip ports in use


class PoolSettings(GatewaySettings):
    """The pool's settings: every ``GATEWAY_*`` one (passed on to the workers) plus ``GATEWAY_POOL_*`` and
    ``GATEWAY_KAMAILIO_*``. The pool's own HTTP API listens on ``GATEWAY_HTTP_PORT``."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    service_name: str = "sip-gateway-pool"
    http_port: int = 8100

    # Workers: worker i (0-based) listens on pool_sip_port + i (UDP and TCP), pool_http_port + i and
    # pool_grpc_port + i; its instance id is "<instance_id>-w<i>".
    pool_size: int = Field(default=2, ge=1, le=1000)
    pool_sip_port: int = Field(default=5071, ge=1, le=65535)
    pool_http_port: int = Field(default=8101, ge=1, le=65535)
    pool_grpc_port: int = Field(default=50151, ge=1, le=65535)
    # Address Kamailio reaches the workers at (dispatcher list); "" = sip_host (127.0.0.1 for a wildcard).
    pool_worker_address: str = ""
    pool_restart_delay: float = Field(default=0.5, ge=0)  # first delay before a dead worker is replaced
    pool_restart_max_delay: float = Field(default=30.0, ge=0)  # doubled up to this while it keeps dying
    pool_ready_timeout: float = Field(default=60.0, gt=0)  # a worker not ready by then is killed, replaced
    # Workers starting at once (0: one per CPU). Starting is CPU-bound (Python, pjsua2): a hundred at
    # once on two cores starve each other past pool_ready_timeout, get killed and start again, forever.
    pool_start_concurrency: int = Field(default=0, ge=0)
    # How long a dead worker's last events may still be on their way before its calls are ended.
    pool_event_grace: float = Field(default=0.5, ge=0)
    pool_log_dir: Path | None = None  # each worker's output to <dir>/<instance>.log; unset: the pool's
    pool_dispatcher_list: Path | None = None  # where to write Kamailio's dispatcher list
    pool_dispatcher_set: int = Field(default=1, ge=0)

    # Kamailio's JSON-RPC (POST /RPC); "" and no kamailio_config: the pool works without Kamailio.
    kamailio_rpc_url: str = ""
    # When set, the pool starts Kamailio itself with this configuration (deploy/kamailio/kamailio.cfg).
    kamailio_config: Path | None = None
    kamailio_binary: str = "kamailio"
    kamailio_sip_host: str = "127.0.0.1"
    kamailio_sip_port: int = Field(default=5060, ge=1, le=65535)
    kamailio_rpc_host: str = "127.0.0.1"
    kamailio_rpc_port: int = Field(default=5090, ge=1, le=65535)
    kamailio_ping_interval: int = Field(default=5, ge=1)
    kamailio_children: int = Field(default=4, ge=1)
    kamailio_log_level: int = Field(default=1, ge=-3, le=4)
    kamailio_run_dir: Path | None = None  # its runtime files; unset: <tmp>/telecrm-kamailio-<instance>

    @model_validator(mode="after")
    def _ports_fit(self) -> PoolSettings:
        for name in ("pool_sip_port", "pool_http_port", "pool_grpc_port"):
            if getattr(self, name) + self.pool_size - 1 > 65535:
                raise ValueError(f"{name} + pool_size goes past port 65535")
        rtp_block = self.rtp_port_range or RTP_PORTS_PER_WORKER
        if self.rtp_port and self.rtp_port + self.pool_size * rtp_block - 1 > 65535:
            raise ValueError("rtp_port + pool_size * rtp_port_range goes past port 65535")
        return self

    @property
    def start_concurrency(self) -> int:
        return self.pool_start_concurrency or max(os.cpu_count() or 1, 1)

    @property
    def worker_address(self) -> str:
        address = self.pool_worker_address or self.sip_public_address or self.sip_host
        return "127.0.0.1" if address in ("", "0.0.0.0", "::", "[::]") else address

    def kamailio_options(self) -> KamailioOptions | None:
        if self.kamailio_config is None:
            return None
        run_dir = (
            self.kamailio_run_dir or Path(tempfile.gettempdir()) / f"telecrm-kamailio-{self.instance_id}"
        )
        return KamailioOptions(
            config=self.kamailio_config,
            list_file=self.pool_dispatcher_list or run_dir / "dispatcher.list",
            run_dir=run_dir,
            sip_host=self.kamailio_sip_host,
            sip_port=self.kamailio_sip_port,
            rpc_host=self.kamailio_rpc_host,
            rpc_port=self.kamailio_rpc_port,
            set_id=self.pool_dispatcher_set,
            ping_interval=self.kamailio_ping_interval,
            retry_after=self.retry_after,
            children=self.kamailio_children,
            log_level=self.kamailio_log_level,
            binary=self.kamailio_binary,
        )

    def rpc_url(self) -> str:
        options = self.kamailio_options()
        return self.kamailio_rpc_url or (options.rpc_url if options else "")


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Where one worker listens and how it is named."""

    index: int
    name: str  # its instance id
    host: str  # where Kamailio and the pool reach it
    sip_port: int
    http_port: int
    grpc_port: int

    @property
    def uri(self) -> str:
        return f"sip:{self.host}:{self.sip_port}"

    @property
    def source(self) -> str:
        """The ``source`` of its call events."""
        return f"sip-gateway/{self.name}"


def worker_specs(settings: PoolSettings) -> list[WorkerSpec]:
    return [
        WorkerSpec(
            index=i,
            name=f"{settings.instance_id}-w{i}",
            host=settings.worker_address,
            sip_port=settings.pool_sip_port + i,
            http_port=settings.pool_http_port + i,
            grpc_port=settings.pool_grpc_port + i,
        )
        for i in range(settings.pool_size)
    ]


def destinations(settings: PoolSettings) -> list[Destination]:
    return [Destination(w.uri, w.name, settings.max_calls) for w in worker_specs(settings)]


def _env_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float | Path):
        return str(value)
    return json.dumps(to_jsonable_python(value))


def rtp_ports(settings: PoolSettings, index: int) -> dict[str, str]:
    """Worker ``index``'s own RTP ports: with ``GATEWAY_RTP_PORT`` set, each worker gets the next block
    of ``GATEWAY_RTP_PORT_RANGE`` (default 16) ports; unset (0), the OS picks them."""
    if not settings.rtp_port:
        return {}
    block = settings.rtp_port_range or RTP_PORTS_PER_WORKER
    return {"GATEWAY_RTP_PORT": str(settings.rtp_port + index * block), "GATEWAY_RTP_PORT_RANGE": str(block)}


def worker_environment(settings: PoolSettings, spec: WorkerSpec) -> dict[str, str]:
    """The worker's ``GATEWAY_*`` variables: every gateway setting of the pool, its own ports and name."""
    env: dict[str, str] = {}
    for name in GatewaySettings.model_fields:
        text = _env_value(getattr(settings, name))
        if text is not None:
            env[f"GATEWAY_{name.upper()}"] = text
    env.update(
        {
            "GATEWAY_SERVICE_NAME": "sip-gateway",
            "GATEWAY_INSTANCE_ID": spec.name,
            "GATEWAY_SIP_PORT": str(spec.sip_port),
            "GATEWAY_HTTP_PORT": str(spec.http_port),
            "GATEWAY_GRPC_PORT": str(spec.grpc_port),
            **rtp_ports(settings, spec.index),
            # A worker drains within the pool's own grace.
            "GATEWAY_SHUTDOWN_GRACE": f"{max(settings.shutdown_grace - 3.0, 1.0):g}",
        }
    )
    return env


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def http_status(host: str, port: int, path: str, timeout: float = 2.0) -> int:
    """The HTTP status of ``GET path`` (0 when nothing answers)."""
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        return int(line.split()[1]) if line.startswith(b"HTTP/") else 0
    except (OSError, TimeoutError, ValueError, IndexError):
        return 0


class Worker:
    """One worker process and what the supervisor knows of it."""

    def __init__(self, spec: WorkerSpec, settings: PoolSettings) -> None:
        self.spec = spec
        self.settings = settings
        self.process: asyncio.subprocess.Process | None = None
        self.state = "new"  # new, starting, ready, dead, stopping, stopped
        self.restarts = 0
        self.deaths = 0
        self.last_exit: int | None = None
        self.started_at = 0.0
        self.removed_from_kamailio = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        env = {**os.environ, **worker_environment(self.settings, self.spec)}
        out: IO[bytes] | None = None
        if self.settings.pool_log_dir is not None:
            self.settings.pool_log_dir.mkdir(parents=True, exist_ok=True)
            out = (self.settings.pool_log_dir / f"{self.spec.name}.log").open("ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "telecrm_gateway",
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT if out is not None else None,
                start_new_session=True,  # signals come from the supervisor only
                preexec_fn=_die_with_parent,
            )
        finally:
            if out is not None:
                out.close()
        self.state = "starting"
        self.started_at = time.monotonic()

    async def wait_ready(self, timeout: float) -> bool:
        """True once ``/readyz`` answers 200; False when the process exits or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.running:
            if await http_status(self.settings.http_host, self.spec.http_port, "/readyz") == 200:
                return True
            await asyncio.sleep(0.1)
        return False

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)


class PoolSupervisor:
    """Starts, watches and replaces the workers; ends a dead worker's calls. See the module docstring."""

    def __init__(self, settings: PoolSettings, publish: PublishFn, rpc: KamailioRpc | None = None) -> None:
        self.settings = settings
        self.workers = [Worker(spec, settings) for spec in worker_specs(settings)]
        self.calls = LiveCalls()
        self.publisher = EventPublisher(publish, max_buffer=settings.event_buffer)
        url = settings.rpc_url()
        self.rpc = rpc or (KamailioRpc(url) if url else None)
        options = settings.kamailio_options()
        self.kamailio = (
            KamailioProcess(
                options,
                log_path=(settings.pool_log_dir / "kamailio.log") if settings.pool_log_dir else None,
            )
            if options is not None
            else None
        )
        self.lost_calls = 0  # calls ended by the pool because their worker died
        self._stopping = False
        self._dispatcher_lock = asyncio.Lock()
        self._last_dispatcher_change = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._publisher_task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._starting = asyncio.Semaphore(settings.start_concurrency)

    # --- the events of the workers

    def on_call_event(self, event: ev.CallEvent) -> None:
        """Every CallEvent seen on the bus (other gateways' too: only the workers' sources are kept)."""
        if event.source in self._sources:
            self.calls.on_event(event)

    @property
    def _sources(self) -> set[str]:
        return {w.spec.source for w in self.workers}

    def stopping(self) -> bool:
        """Whether stop() has begun (a call, so that type narrowing never assumes it unchanged)."""
        return self._stopping

    # --- lifecycle

    async def start(self) -> None:
        """Write the dispatcher list, start Kamailio (when the pool runs it) and the workers."""
        self._publisher_task = asyncio.create_task(self.publisher.run(), name="pool-event-publisher")
        options = self.settings.kamailio_options()
        list_file = self.settings.pool_dispatcher_list or (options.list_file if options else None)
        if list_file is not None:
            write_dispatcher_list(list_file, destinations(self.settings), self.settings.pool_dispatcher_set)
            log.info("dispatcher list written", extra={"path": str(list_file), "workers": len(self.workers)})
        if self.kamailio is not None:
            await self.kamailio.start()
        self._tasks = [
            asyncio.create_task(self._supervise(worker), name=f"worker-{worker.spec.index}")
            for worker in self.workers
        ]
        log.info(
            "pool of %d workers starting, %d at a time: SIP ports %d-%d, max %d calls each",
            len(self.workers),
            self.settings.start_concurrency,
            self.settings.pool_sip_port,
            self.settings.pool_sip_port + len(self.workers) - 1,
            self.settings.max_calls,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """A ServiceRunner background task: supervise until ``stop``, then drain and stop."""
        if not self._tasks:
            await self.start()
        kamailio_wait = (
            asyncio.create_task(self.kamailio.wait(), name="kamailio") if self.kamailio is not None else None
        )
        stop_wait = asyncio.create_task(stop.wait())
        try:
            waits: set[asyncio.Task[Any]] = {stop_wait} | ({kamailio_wait} if kamailio_wait else set())
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if kamailio_wait is not None and kamailio_wait in done and not stop.is_set():
                raise KamailioError(f"kamailio exited with {kamailio_wait.result()}")
        finally:
            stop_wait.cancel()
            if kamailio_wait is not None:
                kamailio_wait.cancel()
            await self.stop()

    async def stop(self) -> None:
        """Disable the workers in Kamailio, let each drain (SIGTERM), end what is left, stop Kamailio."""
        if self._stopping:
            return
        self._stopping = True
        self._wakeup.set()
        grace = max(self.settings.shutdown_grace - 1.0, 1.0)
        if self.rpc is not None and (self.kamailio is None or self.kamailio.running):
            try:
                await self.rpc.set_state(DISABLED, self.settings.pool_dispatcher_set, "all")
            except KamailioError as exc:
                log.warning("could not disable the workers in Kamailio: %s", exc)
        running = [w for w in self.workers if w.running]
        log.info("stopping the pool: draining %d workers", len(running))
        for worker in running:
            worker.state = "stopping"
            worker.signal(signal.SIGTERM)
        waits = [asyncio.create_task(w.process.wait()) for w in running if w.process is not None]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=grace * 0.8)
            for wait in pending:
                wait.cancel()
        for worker in running:
            if worker.running:
                log.error("worker %s did not drain in time: killed", worker.spec.name)
                worker.signal(signal.SIGKILL)
                if worker.process is not None:
                    await worker.process.wait()
                self._end_lost_calls(worker)
            worker.state = "stopped"
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.publisher.flush(grace * 0.2)
        self.publisher.close()
        if self._publisher_task is not None:
            self._publisher_task.cancel()
            await asyncio.gather(self._publisher_task, return_exceptions=True)
        if self.kamailio is not None:
            await self.kamailio.stop()
        log.info("pool stopped")

    # --- one worker

    async def _supervise(self, worker: Worker) -> None:
        delay = self.settings.pool_restart_delay
        while not self._stopping:
            # A few at a time (start_concurrency); the ready timeout counts from the worker's own start.
            async with self._starting:
                if self.stopping():  # stopped while it waited its turn
                    return
                ready: bool | None
                try:
                    await worker.start()
                except OSError as exc:
                    log.error("cannot start worker %s: %s", worker.spec.name, exc)
                    ready = None
                else:
                    log.info("worker %s starting (pid %s)", worker.spec.name, worker.pid)
                    ready = await worker.wait_ready(self.settings.pool_ready_timeout)
            if ready is None:
                await self._sleep(delay)
                delay = min(max(delay * 2, 0.5), self.settings.pool_restart_max_delay)
                continue
            if ready:
                await self._activate(worker)
            elif worker.running and not self._stopping:
                log.error(
                    "worker %s not ready after %.0fs: killed",
                    worker.spec.name,
                    self.settings.pool_ready_timeout,
                )
                worker.signal(signal.SIGKILL)
            assert worker.process is not None
            code = await worker.process.wait()
            worker.last_exit = code
            if self.stopping():
                return
            await self._on_death(worker, code)
            if time.monotonic() - worker.started_at > STABLE_AFTER:
                delay = self.settings.pool_restart_delay
            await self._sleep(delay)
            delay = min(max(delay * 2, 0.5), self.settings.pool_restart_max_delay)
            worker.restarts += 1

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)

    async def _activate(self, worker: Worker) -> None:
        """The worker is ready: Kamailio may send it calls (with its call load counted from 0)."""
        log.info(
            "worker %s ready (pid %s, SIP %s)",
            worker.spec.name,
            worker.pid,
            worker.spec.uri,
            extra={"worker": worker.spec.name},
        )
        rpc = self.rpc
        if rpc is None:
            worker.state = "ready"
            return
        destination = Destination(worker.spec.uri, worker.spec.name, self.settings.max_calls)
        try:
            if worker.removed_from_kamailio:
                await self._dispatcher_change(lambda: rpc.add(self.settings.pool_dispatcher_set, destination))
                worker.removed_from_kamailio = False
            else:
                await rpc.set_state(ACTIVE, self.settings.pool_dispatcher_set, worker.spec.uri)
        except KamailioError as exc:
            log.warning("could not mark worker %s active in Kamailio: %s", worker.spec.name, exc)
        worker.state = "ready"  # in Kamailio's list too (or Kamailio's pings will find it)

    async def _dispatcher_change(self, change: Any) -> None:
        """dispatcher.add/remove, one at a time and at most one a second (Kamailio's reload_delta)."""
        async with self._dispatcher_lock:
            for attempt in range(10):
                gap = self._last_dispatcher_change + DISPATCHER_CHANGE_GAP - time.monotonic()
                if gap > 0:
                    await asyncio.sleep(gap)
                try:
                    await change()
                    return
                except KamailioError as exc:
                    if "Ongoing reload" not in str(exc) or attempt == 9:
                        raise
                finally:
                    self._last_dispatcher_change = time.monotonic()

    async def _on_death(self, worker: Worker, code: int) -> None:
        """Stop sending it calls, end its calls (SIP through Kamailio, events on NATS), reset its load."""
        worker.state = "dead"
        worker.deaths += 1
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        log.error(
            "worker %s (pid %s) died with %s; replacing it",
            worker.spec.name,
            worker.pid,
            how,
            extra={"worker": worker.spec.name},
        )
        set_id = self.settings.pool_dispatcher_set
        if self.rpc is not None and not worker.removed_from_kamailio:
            try:
                await self.rpc.set_state(INACTIVE_PROBING, set_id, worker.spec.uri)
            except KamailioError as exc:
                log.warning("could not mark worker %s inactive in Kamailio: %s", worker.spec.name, exc)
        # Its last events may still be on their way to us: an ended one means the call needs nothing.
        await asyncio.sleep(self.settings.pool_event_grace)
        if self.rpc is not None:
            await self._end_dialogs(worker)
        self._end_lost_calls(worker)
        rpc = self.rpc
        if rpc is not None and not worker.removed_from_kamailio:
            try:
                # Removed now and added back once its replacement is ready: its call load starts from 0.
                await self._dispatcher_change(lambda: rpc.remove(set_id, worker.spec.uri))
                worker.removed_from_kamailio = True
            except KamailioError as exc:
                log.warning("could not reset worker %s in Kamailio: %s", worker.spec.name, exc)

    async def _end_dialogs(self, worker: Worker) -> None:
        assert self.rpc is not None
        try:
            dialogs = [d for d in await self.rpc.dialogs() if d.worker == worker.spec.uri]
        except KamailioError as exc:
            log.error("cannot list Kamailio's dialogs to end worker %s's calls: %s", worker.spec.name, exc)
            return
        ended = refused = 0
        for dialog in dialogs:
            try:
                if dialog.confirmed:
                    await self.rpc.end_dialog(dialog)
                    ended += 1
                elif dialog.early:
                    await self.rpc.reply(dialog, WORKER_LOST_STATUS, WORKER_LOST_REASON)
                    refused += 1
            except KamailioError as exc:
                log.warning(
                    "could not end SIP dialog %s of worker %s: %s", dialog.call_id, worker.spec.name, exc
                )
        if dialogs:
            log.warning(
                "worker %s's SIP calls ended: %d answered (BYE), %d ringing (%d)",
                worker.spec.name,
                ended,
                refused,
                WORKER_LOST_STATUS,
            )

    def _end_lost_calls(self, worker: Worker) -> None:
        now = datetime.now(UTC)
        lost = self.calls.take(worker.spec.source)
        for call in lost:
            self.publisher.emit(worker_lost_event(call, at=now))
            log.warning(
                "call %s ended: its worker %s died",
                call.call_id,
                worker.spec.name,
                extra={"call_id": call.call_id, "worker": worker.spec.name},
            )
        self.lost_calls += len(lost)

    # --- what the API and health use

    def status(self) -> dict[str, Any]:
        return {
            "size": len(self.workers),
            "ready": sum(w.state == "ready" for w in self.workers),
            "max_calls_per_worker": self.settings.max_calls,
            "lost_calls": self.lost_calls,
            "kamailio_rpc": self.rpc.url if self.rpc is not None else None,
            "workers": [
                {
                    "name": w.spec.name,
                    "sip": w.spec.uri,
                    "http_port": w.spec.http_port,
                    "state": w.state,
                    "pid": w.pid,
                    "restarts": w.restarts,
                    "last_exit": w.last_exit,
                    "live_calls": self.calls.count(w.spec.source),
                }
                for w in self.workers
            ],
        }

    async def check_workers(self) -> None:
        ready = sum(w.state == "ready" for w in self.workers)
        if self._stopping:
            raise NotReadyError("the pool is stopping")
        if ready == 0:
            raise NotReadyError(f"none of the {len(self.workers)} workers is ready")

    async def check_kamailio(self) -> None:
        if self.rpc is None:
            return
        try:
            await self.rpc.ping()
        except KamailioError as exc:
            raise NotReadyError(str(exc)) from exc


# --- main ----------------------------------------------------------------------------------------


async def serve(settings: PoolSettings) -> int:
    """Serve until SIGTERM/SIGINT: NATS, the supervisor, the pool's HTTP API."""
    from telecrm_common.bus import Bus, BusError
    from telecrm_common.events import STREAMS, decode_call_event
    from telecrm_common.grpc import GrpcServer
    from telecrm_common.service import ServiceRunner
    from telecrm_gateway.pool_api import create_app
    from telecrm_gateway.pool_front import GRPC_SERVICE, PoolFront, add_front_to_server
    from telecrm_gateway.publisher import bus_publisher

    try:
        bus = await Bus.connect(
            settings.nats_url, name=settings.instance_id, timeout=settings.startup_timeout
        )
    except BusError as exc:
        log.error("cannot start: %s", exc)
        return EXIT_UNAVAILABLE
    supervisor = PoolSupervisor(settings, bus_publisher(bus))

    async def on_message(msg: Any) -> None:
        try:
            supervisor.on_call_event(decode_call_event(msg.subject, msg.data))
        except Exception as exc:  # a bad payload is the call log's problem (it dead-letters it)
            log.debug("ignored %s: %s", msg.subject, exc)

    checks = {"nats": bus.check, "workers": supervisor.check_workers, "kamailio": supervisor.check_kamailio}
    front = PoolFront(supervisor)
    try:
        grpc_server = GrpcServer(settings, service_names=[GRPC_SERVICE], checks=checks)
        add_front_to_server(grpc_server.server, front)
        await bus.ensure_streams(STREAMS)
        await bus.nc.subscribe("tel.call.>", cb=on_message)
        await supervisor.start()
    except (KamailioError, OSError, BusError) as exc:
        log.error("cannot start: %s", exc)
        await supervisor.stop()
        await front.close()
        await bus.close()
        return EXIT_FAILED
    runner = ServiceRunner(
        settings,
        http_app=create_app(supervisor, checks, front),
        grpc=grpc_server,
        background=[supervisor.run],
        on_shutdown=[supervisor.stop, front.close, bus.close],
    )
    return await runner.run()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="telecrm-sip-gateway-pool",
        description="The SIP gateway as a pool of worker processes behind Kamailio (GATEWAY_* settings).",
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "dispatcher-list"],
        help="serve (default), or print Kamailio's dispatcher list for these settings and exit",
    )
    args = parser.parse_args(argv)
    try:
        settings = PoolSettings()
    except ValidationError as exc:
        print(f"telecrm-sip-gateway-pool: invalid settings (GATEWAY_* variables):\n{exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if args.command == "dispatcher-list":
        sys.stdout.write(dispatcher_list(destinations(settings), settings.pool_dispatcher_set))
        return 0
    from telecrm_common.logging import setup_logging
    from telecrm_common.telemetry import setup_telemetry

    setup_logging(settings)
    setup_telemetry(settings)
    return asyncio.run(serve(settings))


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
