"""The pjsua2 endpoint, owned by one dedicated thread.

Every pjsua2 call happens on that thread: it creates the library, polls it with ``libHandleEvents`` and,
between polls, runs the commands other threads posted to its queue. pjsua2 callbacks only take a
snapshot (a fact from :mod:`telecrm_gateway.sip.facts`) and hand it to the asyncio loop with
``call_soon_threadsafe``; they never block and never decide anything about the call. The engine knows
legs, not calls: the call logic lives in :class:`telecrm_gateway.calls.CallManager`.

Capacity. The pjsua2 wheel is compiled with PJSUA_MAX_CALLS = 4 call legs per process, and when all four
are taken pjsua answers a new INVITE itself with ``486 Busy Here`` (a stateless reply we cannot change).
An admitted call needs two legs (caller + agent), so the engine admits at most ``max_calls`` calls and
answers any INVITE beyond that with ``503`` + ``Retry-After`` from ``onIncomingCall``. With
``max_calls = 1`` two legs stay free for those rejections, so the 503 is always ours; with
``max_calls = 2`` an INVITE arriving while both calls are up meets pjsua's own 486 (logged as a warning).
A ring group's call holds more agent legs: the call logic keeps each call within
:func:`legs_per_call` legs, and the routes refuse ring-all groups that would not fit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import gc
import itertools
import logging
import os
import queue
import socket
import sys
import threading
import time
import wave
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import pjsua2 as pj

from telecrm_gateway.errors import SipEngineError
from telecrm_gateway.sip.facts import (
    CallRefused,
    EngineFact,
    IncomingCall,
    LegAnswered,
    LegEnded,
    LegProgress,
)
from telecrm_gateway.sip.uri import parse_name_addr, request_uri, uri_user, via_transport

log = logging.getLogger(__name__)
pjsip_log = logging.getLogger("telecrm_gateway.pjsip")

PJSUA_MAX_CALLS = 4
"""Call legs one pjsua2 process can hold (compiled into the wheel; ``maxCalls`` above it is clamped)."""

LEGS_PER_CALL = 2
"""Legs of a plain call (caller + one agent); ring groups take more, see :func:`legs_per_call`."""

PJ_ETOOMANY = 70010
"""pjlib's status when pjsua has no free call slot (PJ_ERRNO_START_STATUS + 10)."""
SLOT_WAIT = 2.0
"""Seconds an outgoing leg waits for a pjsua slot held by legs that are ending."""


def legs_per_call(max_calls: int) -> int:
    """The most legs one admitted call may hold when the process admits ``max_calls`` calls.

    With 1 call, all 4: the caller and up to 3 agents rung at once (while a call holds all four, a new
    INVITE meets pjsua's own ``486`` instead of our 503). With 2 calls, 2 each: caller and one agent.
    """
    return PJSUA_MAX_CALLS // max(max_calls, 1)


Header = tuple[str, str]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TrunkConfig:
    """Registration at an upstream PBX or SIP provider, and the account its calls go through."""

    registrar: str  # sip:host:port;params (no user); calls to this host:port use the trunk's account
    aor: str  # address of record: sip:<username>@<domain>
    username: str
    password: str = field(default="", repr=False)
    realm: str = "*"  # any realm the registrar challenges with
    expires: int = 300  # seconds asked for; pjsua refreshes before the granted time runs out
    retry_interval: int = 30  # seconds between attempts after a failed registration

    def serves(self, uri: str) -> bool:
        """Whether a request URI goes to the trunk (same host and port as the registrar)."""
        return _hostport(uri) == _hostport(self.registrar)


def _hostport(uri: str) -> str:
    """``host:port`` of a SIP URI, lowercased, without user, parameters or brackets."""
    rest = uri.strip().strip("<>").partition(":")[2]
    rest = rest.rpartition("@")[2]
    return rest.split(";", 1)[0].split("?", 1)[0].split(">", 1)[0].lower()


@dataclass(frozen=True, slots=True)
class TrunkState:
    """The trunk registration as last reported by pjsua (for health and the API)."""

    configured: bool
    registered: bool = False
    status: int = 0  # last SIP status of a REGISTER (0: none answered yet)
    reason: str = ""
    expires: int = 0  # seconds granted by the last successful registration
    changed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How the endpoint listens and behaves; built from the gateway settings."""

    host: str = "127.0.0.1"
    port: int = 5060  # 0 picks a free port (UDP), TCP then takes the same number
    udp: bool = True
    tcp: bool = True
    public_address: str = ""  # address put in Via/Contact/SDP; empty: ``host``
    rtp_host: str = ""  # where RTP sockets bind; empty: ``host``
    rtp_port: int = 4000  # first RTP port; 0 lets pjsua choose
    rtp_port_range: int = 0  # 0: no limit
    max_calls: int = 1  # admitted calls (two legs each), see the module docstring
    retry_after: int = 5  # seconds, sent with 503 when the gateway is full or draining
    user_agent: str = "telecrm-sip-gateway"
    identity: str = "gateway"  # user part of the endpoint's own SIP URI
    pjsip_log_level: int = 2  # 1 errors, 2 warnings, 3 info (SIP summaries), 4+ debug (messages)
    codecs: tuple[str, ...] = ("PCMU/8000", "PCMA/8000", "G722/16000")  # offered in this order; others off
    poll_ms: int = 10  # libHandleEvents timeout while legs are up: the longest a posted command waits
    idle_poll_ms: int = 250  # ... with no legs: a posted command wakes the poll (see ``_wake``)
    trunk: TrunkConfig | None = None  # register upstream (digest auth) and place its calls through it
    recordings_dir: str = "recordings"  # where call recordings (WAV, named by call id) are written

    def __post_init__(self) -> None:
        if not 1 <= self.max_calls <= PJSUA_MAX_CALLS // LEGS_PER_CALL:
            raise ValueError(
                f"max_calls must be between 1 and {PJSUA_MAX_CALLS // LEGS_PER_CALL} "
                f"(pjsua2 holds {PJSUA_MAX_CALLS} legs per process, a call takes {LEGS_PER_CALL})"
            )
        if not (self.udp or self.tcp):
            raise ValueError("at least one of UDP and TCP must be enabled")


@dataclass(frozen=True, slots=True)
class LegHold:
    """The far end of a leg put it on hold (re-INVITE with sendonly/inactive) or took it back."""

    leg_id: str
    held: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class RecordingDone:
    """A call's recording was stopped (on request, or because its legs are gone): the file is complete."""

    name: str  # what the recording was started as (the call id)
    path: str
    size_bytes: int
    duration_ms: int
    started_at: datetime
    ended_at: datetime


ControlFact: TypeAlias = LegHold | RecordingDone
"""Facts of call control (hold from the phone, finished recordings), on top of :data:`EngineFact`."""

AnyFact: TypeAlias = EngineFact | ControlFact


class DtmfMethod(Enum):
    RFC2833 = "rfc2833"  # RTP telephone-event
    INFO = "info"  # SIP INFO with application/dtmf-relay


@dataclass(frozen=True, slots=True)
class EngineStats:
    """A snapshot of what the engine holds, for health and the REST API."""

    running: bool
    accepting: bool
    admitted_calls: int
    live_legs: int
    max_calls: int
    refused: int


def _concrete(address: str) -> str:
    """The address, or "" for a wildcard (0.0.0.0, ::) that cannot be put in a SIP header."""
    return "" if address in ("", "0.0.0.0", "::", "[::]") else address


def _reseed_pjlib_random() -> None:
    """Seed libc's rand(), which pjlib draws Call-IDs, tags and branches from, with real entropy.

    pjsua seeds it at start, but gRPC's core seeds it again with a constant when its server starts: every
    gateway process (each worker of a pool, each restart) would place calls with the same Call-IDs.
    """
    _LIBC.srand(int.from_bytes(os.urandom(4), "little"))


_LIBC = ctypes.CDLL(None)
HOLD_RETRY_FOR = 5.0  # seconds a hold / resume re-INVITE waits for the dialog's previous one
RECORDING_CLOSE_WAIT = 2.0  # seconds pjmedia may take to complete a recording's WAV file


def _riff_complete(path: Path) -> bool:
    """Whether a WAV file's RIFF header counts all its bytes (pjmedia writes it when the file closes)."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return False
    return len(head) == 8 and head[:4] == b"RIFF" and int.from_bytes(head[4:], "little") == size - 8


_UNANSWERED = (pj.PJSIP_INV_STATE_INCOMING, pj.PJSIP_INV_STATE_EARLY)


class _Role(Enum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    REFUSED = "refused"  # an INVITE we answered with 503; kept only until pjsua lets go of it


@dataclass(slots=True)
class _Leg:
    leg_id: str
    call: _PjCall
    role: _Role
    group: str  # the inbound leg id of the call this leg belongs to ("" for refused legs)
    sip_call_id: str = ""
    connected: bool = False
    ended: bool = False
    media_ready: bool = False
    peer: str = ""  # the leg whose audio this one is bridged with
    pending_hangup: bool = False  # hang up once the ACK for our 200 arrives
    on_hold: bool = False  # we put it on hold: its audio is not bridged until resumed
    remote_hold: bool = False  # its far end put it on hold
    hold_signalled: bool = False  # the hold state our last re-INVITE asked for


@dataclass(slots=True)
class _Group:
    """The legs of one admitted call: it holds its capacity until all of them are gone."""

    inbound: str
    legs: set[str] = field(default_factory=set)
    recording: _Recording | None = None


@dataclass(slots=True)
class _Recording:
    """A WAV recorder on the conference bridge, fed by every bridged leg of a call (mixed)."""

    name: str
    path: Path
    recorder: Any  # pj.AudioMediaRecorder
    started_at: datetime
    paused: bool = False
    feeding: set[str] = field(default_factory=set)  # legs whose audio goes to the recorder


def _now() -> datetime:
    return datetime.now(UTC)


@contextlib.contextmanager
def stdout_silenced() -> Iterator[None]:
    """Point file descriptor 1 at /dev/null for a moment (C code writing to stdout)."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


_PJ_LOG_LEVELS = {0: logging.CRITICAL, 1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO}


class _LogWriter(pj.LogWriter):  # type: ignore[misc]
    """Routes pjsip's log to Python logging (called from any pjsip thread)."""

    def write(self, entry: Any) -> None:
        level = int(entry.level)
        pjsip_log.log(_PJ_LOG_LEVELS.get(level, logging.DEBUG), "%s", entry.msg.rstrip())


class _PjEndpoint(pj.Endpoint):  # type: ignore[misc]
    def __init__(self, engine: SipEngine) -> None:
        super().__init__()
        self._engine = engine

    def onRejectedIncomingCall(self, prm: Any) -> None:
        self._engine._on_rejected_by_pjsua(prm)


class _PjAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, engine: SipEngine) -> None:
        super().__init__()
        self._engine = engine

    def onIncomingCall(self, prm: Any) -> None:
        self._engine._on_incoming(self, prm)


class _PjTrunkAccount(_PjAccount):
    def onRegState(self, prm: Any) -> None:
        self._engine._on_reg_state(prm)


class _PjCall(pj.Call):  # type: ignore[misc]
    def __init__(self, engine: SipEngine, account: _PjAccount, leg_id: str, call_id: int) -> None:
        super().__init__(account, call_id)
        self._engine = engine
        self.leg_id = leg_id

    def onCallState(self, prm: Any) -> None:
        self._engine._on_call_state(self)

    def onCallMediaState(self, prm: Any) -> None:
        self._engine._on_media_state(self)

    def onCallTransferRequest(self, prm: Any) -> None:
        # A phone's REFER would make pjsua place a call outside the call logic: refuse it; transfers
        # are asked for over the API (see calls.CallManager.transfer).
        prm.statusCode = 603


_ENDPOINT_IN_USE = threading.Lock()


def _endpoint_alive() -> bool:
    """True while a pjsua2 Endpoint object exists in this process (constructing a second aborts)."""
    try:
        pj.Endpoint.instance()
    except pj.Error:
        return False
    return True


class SipEngine:
    """A pjsua2 endpoint on its own thread; thread-safe commands in, facts out to asyncio.

    ``start`` and ``stop`` block (call them through ``asyncio.to_thread``); the command methods return a
    :class:`concurrent.futures.Future` at once (``asyncio.wrap_future`` to await it). Only one engine can
    run per process: pjsua2's Endpoint is a singleton.
    """

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._commands: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop_requested = threading.Event()
        self._start_error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_fact: Callable[[AnyFact], None] | None = None
        self._ids = itertools.count(1)
        # owned by the engine thread
        self._ep: _PjEndpoint | None = None
        self._account: _PjAccount | None = None
        self._trunk_account: _PjTrunkAccount | None = None
        self._trunk_state = TrunkState(configured=config.trunk is not None)
        self._log_writer: _LogWriter | None = None
        self._legs: dict[str, _Leg] = {}
        self._groups: dict[str, _Group] = {}
        self._ended: list[str] = []
        self._media_dirty: set[str] = set()
        self._deferred_hangups: list[str] = []
        self._finished_recordings: list[_Recording] = []
        self._closing: list[tuple[_Recording, datetime, float]] = []  # recorders destroyed, files not yet
        self._hold_retries: dict[str, float] = {}  # leg -> until when its hold re-INVITE is retried
        # outgoing legs waiting for a free pjsua slot: leg -> (account, uri, from, headers, until when)
        self._slot_waits: dict[str, tuple[_PjAccount, str, str, tuple[Header, ...], float]] = {}
        self._accepting = True
        self._refused = 0
        self._port = 0
        self._public_host = ""
        # Idle polling: with no legs the thread polls every ``idle_poll_ms`` instead of ``poll_ms`` (an
        # idle worker of a large pool then costs next to nothing), and a command posted meanwhile wakes
        # it with a CRLF keep-alive datagram to our own UDP port, which pjsip takes in silence.
        self._idle = False
        self._wake_to: tuple[str, int] | None = None
        self._wake_socket: socket.socket | None = None

    # ------------------------------------------------------------------ lifecycle (any thread)

    def start(
        self, loop: asyncio.AbstractEventLoop, on_fact: Callable[[AnyFact], None], timeout: float = 10.0
    ) -> None:
        """Start the thread and wait until the endpoint listens; raise SipEngineError if it cannot."""
        if self._thread is not None:
            raise SipEngineError("the SIP engine was already started")
        # pjsua2's Endpoint is a process-wide singleton: a second one while the first still lives (a
        # stop that timed out, a test that did not stop its gateway) would crash the process. Wait for
        # the previous engine to be destroyed, or refuse to start with a clear error.
        if not _ENDPOINT_IN_USE.acquire(timeout=timeout):
            raise SipEngineError("another SIP engine of this process is still running")
        self._loop = loop
        self._on_fact = on_fact
        self._thread = threading.Thread(target=self._run, name="pjsua", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise SipEngineError(f"the SIP endpoint did not start within {timeout}s")
        if self._start_error is not None:
            raise SipEngineError(
                f"the SIP endpoint could not start: {self._start_error}"
            ) from self._start_error

    def stop(self, timeout: float = 5.0) -> None:
        """Refuse new calls, hang up what is left, destroy the endpoint and join the thread."""
        self._stop_requested.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout + 5.0)
            if thread.is_alive():
                log.error("the pjsua thread did not stop within %.1fs", timeout + 5.0)

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and self._ready.is_set() and self._start_error is None

    @property
    def public_host(self) -> str:
        """The address the endpoint advertises in Via/Contact (known once started)."""
        return self._public_host

    @property
    def port(self) -> int:
        """The SIP port the endpoint listens on (UDP and TCP), known once started."""
        return self._port

    def trunk_state(self) -> TrunkState:
        """The trunk registration (``configured`` False when there is no trunk)."""
        return self._trunk_state

    def stats(self) -> EngineStats:
        return EngineStats(
            running=self.running,
            accepting=self._accepting,
            admitted_calls=len(self._groups),
            live_legs=sum(1 for leg in list(self._legs.values()) if not leg.ended),
            max_calls=self.config.max_calls,
            refused=self._refused,
        )

    # ------------------------------------------------------------------ commands (any thread)

    def answer(
        self, leg_id: str, status: int, reason: str = "", headers: Sequence[Header] = ()
    ) -> concurrent.futures.Future[None]:
        """Send a provisional (180) or final (200) answer on an inbound leg."""
        return self._submit(lambda: self._do_answer(leg_id, status, reason, headers))

    def hangup(
        self, leg_id: str, status: int = 0, reason: str = "", headers: Sequence[Header] = ()
    ) -> concurrent.futures.Future[None]:
        """End a leg: final ``status`` for an unanswered inbound leg, CANCEL or BYE otherwise."""
        return self._submit(lambda: self._do_hangup(leg_id, status, reason, headers))

    def dial(
        self, leg_id: str, group: str, uri: str, from_uri: str = "", headers: Sequence[Header] = ()
    ) -> concurrent.futures.Future[str]:
        """Place an outgoing leg for the call whose inbound leg is ``group``; returns its SIP Call-ID.

        A leg that cannot be placed is reported as a LegEnded fact (and "" returned), never raised.
        """
        return self._submit(lambda: self._do_dial(leg_id, group, uri, from_uri, headers))

    def originate(
        self, leg_id: str, uri: str, from_uri: str = "", headers: Sequence[Header] = ()
    ) -> concurrent.futures.Future[str]:
        """Place an outgoing leg that starts a call of its own (click-to-call); returns its SIP Call-ID.

        Admitted like an INVITE: the future fails with SipEngineError when the gateway is full or
        draining (no leg, no fact). The call's later legs name this one as their ``group``.
        """
        return self._submit(lambda: self._do_originate(leg_id, uri, from_uri, headers))

    def bridge(self, leg_a: str, leg_b: str) -> concurrent.futures.Future[None]:
        """Connect the audio of two legs both ways, now or as soon as both have active media."""
        return self._submit(lambda: self._do_bridge(leg_a, leg_b))

    def set_accepting(self, accepting: bool) -> concurrent.futures.Future[None]:
        """Stop (or resume) admitting calls: new INVITEs get 503 + Retry-After."""
        return self._submit(lambda: self._do_set_accepting(accepting))

    def hold(self, leg_id: str) -> concurrent.futures.Future[None]:
        """Put an answered leg on hold: its audio leaves the bridge and it gets a sendonly re-INVITE."""
        return self._submit(lambda: self._do_hold(leg_id))

    def resume(self, leg_id: str) -> concurrent.futures.Future[None]:
        """Take a held leg back (a sendrecv re-INVITE); its audio is bridged again once media is up."""
        return self._submit(lambda: self._do_resume(leg_id))

    def send_dtmf(self, leg_id: str, digits: str, method: DtmfMethod) -> concurrent.futures.Future[None]:
        """Send DTMF digits to a leg's far end (RTP telephone-event or SIP INFO); SipEngineError when
        the leg cannot take them (gone, or RFC 2833 not offered by the far end)."""
        return self._submit(lambda: self._do_send_dtmf(leg_id, digits, method))

    def record_start(self, group: str, name: str) -> concurrent.futures.Future[str]:
        """Record every bridged leg of the call ``group`` (mixed) to ``<recordings_dir>/<name>.wav``;
        returns the file's path. A RecordingDone fact follows when it stops (or the call's legs are gone)."""
        return self._submit(lambda: self._do_record_start(group, name))

    def record_pause(self, group: str) -> concurrent.futures.Future[None]:
        """Stop feeding the recorder (the paused time is left out of the file)."""
        return self._submit(lambda: self._do_record_pause(group, True))

    def record_resume(self, group: str) -> concurrent.futures.Future[None]:
        return self._submit(lambda: self._do_record_pause(group, False))

    def record_stop(self, group: str) -> concurrent.futures.Future[None]:
        """Close the call's recording; its RecordingDone fact follows."""
        return self._submit(lambda: self._do_record_stop(group))

    def new_leg_id(self) -> str:
        return f"leg-{next(self._ids)}"

    def _submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        if not self.running:
            future.set_exception(SipEngineError("the SIP engine is not running"))
            return future
        self._commands.put((fn, future))
        if self._idle:
            self._wake()
        return future

    def _wake(self) -> None:
        wake_to, sock = self._wake_to, self._wake_socket
        if wake_to is None or sock is None:
            return
        with contextlib.suppress(OSError):  # the poll's timeout still runs the command, later
            sock.sendto(b"\r\n\r\n", wake_to)

    # ------------------------------------------------------------------ the pjsua thread

    def _run(self) -> None:
        try:
            self._run_endpoint()
        finally:
            _ENDPOINT_IN_USE.release()  # taken by start(); the endpoint is destroyed by now

    def _run_endpoint(self) -> None:
        try:
            self._create()
        except BaseException as exc:  # reported to start(), then the thread ends
            # A fresh exception, without the traceback: its frames would keep the pjsua2 Endpoint
            # alive, and the next engine's Endpoint() would abort the process (a process singleton).
            self._start_error = SipEngineError(f"{type(exc).__name__}: {exc}")
            del exc
            self._destroy()
            self._ready.set()
            return
        self._ready.set()
        log.info(
            "SIP endpoint listening on %s:%d (%s), max %d calls",
            self.config.host,
            self._port,
            "+".join(t for t, on in (("UDP", self.config.udp), ("TCP", self.config.tcp)) if on),
            self.config.max_calls,
        )
        try:
            self._serve()
        except Exception:
            log.exception("the pjsua thread failed")
        finally:
            self._fail_pending_commands()
            self._destroy()
            log.info("SIP endpoint stopped")

    def _serve(self) -> None:
        """Poll until stop is asked, then hang up what is left. (Its own frame: no local reference to
        the Endpoint outlives it, so ``_destroy`` can free the Endpoint.)"""
        ep = self._ep
        assert ep is not None
        idle_ms = self.config.idle_poll_ms if self._wake_to is not None else self.config.poll_ms
        while not self._stop_requested.is_set():
            self._idle = not self._busy()  # set before the queue is looked at: see ``_submit``
            if self._idle and self._commands.empty():
                ep.libHandleEvents(idle_ms)
            else:
                ep.libHandleEvents(self.config.poll_ms)
            self._idle = False
            self._after_events()
        self._hangup_all_and_wait(ep, timeout=5.0)

    def _busy(self) -> bool:
        """Whether anything needs the short poll: legs, or work of ``_after_events`` still pending."""
        return bool(
            self._legs
            or self._hold_retries
            or self._closing
            or self._deferred_hangups
            or self._media_dirty
            or self._finished_recordings
            or self._ended
        )

    def _create(self) -> None:
        cfg = self.config
        if _endpoint_alive():
            raise SipEngineError("a pjsua2 Endpoint of an earlier engine is still alive in this process")
        ep = _PjEndpoint(self)
        self._ep = ep
        with stdout_silenced():  # pjlib prints its banner before our log writer is installed
            ep.libCreate()
        ep_cfg = pj.EpConfig()
        ep_cfg.uaConfig.threadCnt = 0
        ep_cfg.uaConfig.mainThreadOnly = False
        ep_cfg.uaConfig.maxCalls = PJSUA_MAX_CALLS
        ep_cfg.uaConfig.userAgent = cfg.user_agent
        self._log_writer = _LogWriter()
        ep_cfg.logConfig.writer = self._log_writer
        ep_cfg.logConfig.level = cfg.pjsip_log_level
        ep_cfg.logConfig.consoleLevel = cfg.pjsip_log_level
        ep_cfg.logConfig.decor = 0
        ep_cfg.medConfig.noVad = True
        ep_cfg.medConfig.ecTailLen = 0
        ep.libInit(ep_cfg)

        # A wildcard bind address cannot be published: pjsua then advertises the host's default address.
        public = cfg.public_address or _concrete(cfg.host)
        if cfg.udp:
            self._port = self._create_transport(ep, pj.PJSIP_TRANSPORT_UDP, cfg.port, public)
            self._open_wake_socket(self._port)
        if cfg.tcp:
            tcp_port = self._create_transport(ep, pj.PJSIP_TRANSPORT_TCP, self._port or cfg.port, public)
            self._port = self._port or tcp_port
        ep.libStart()
        ep.audDevManager().setNullDev()
        self._set_codecs(ep)

        acc_cfg = pj.AccountConfig()
        acc_cfg.idUri = f"sip:{cfg.identity}@{self._public_host}:{self._port}"
        media = acc_cfg.mediaConfig.transportConfig
        media.boundAddress = cfg.rtp_host or cfg.host
        media.publicAddress = cfg.public_address or _concrete(cfg.rtp_host or cfg.host)
        media.port = cfg.rtp_port
        media.portRange = cfg.rtp_port_range
        account = _PjAccount(self)
        account.create(acc_cfg, True)
        self._account = account
        if cfg.trunk is not None:
            self._create_trunk(cfg.trunk, acc_cfg)

    def _create_trunk(self, trunk: TrunkConfig, local: Any) -> None:
        acc_cfg = pj.AccountConfig()
        acc_cfg.idUri = trunk.aor
        acc_cfg.regConfig.registrarUri = trunk.registrar
        acc_cfg.regConfig.timeoutSec = trunk.expires
        acc_cfg.regConfig.retryIntervalSec = trunk.retry_interval
        acc_cfg.regConfig.firstRetryIntervalSec = min(trunk.retry_interval, 5)
        acc_cfg.regConfig.dropCallsOnFail = False  # a lost registration does not end live calls
        acc_cfg.sipConfig.authCreds.append(
            pj.AuthCredInfo("digest", trunk.realm, trunk.username, 0, trunk.password)
        )
        acc_cfg.mediaConfig.transportConfig = local.mediaConfig.transportConfig
        account = _PjTrunkAccount(self)
        account.create(acc_cfg, False)
        self._trunk_account = account
        log.info("registering at %s as %s", trunk.registrar, trunk.aor)

    def _set_codecs(self, ep: _PjEndpoint) -> None:
        wanted = [c.lower() for c in self.config.codecs]
        for info in ep.codecEnum2():
            codec_id = str(info.codecId)
            rank = next((i for i, c in enumerate(wanted) if codec_id.lower().startswith(c)), None)
            ep.codecSetPriority(codec_id, 0 if rank is None else 255 - rank)

    def _create_transport(self, ep: _PjEndpoint, kind: int, port: int, public: str) -> int:
        tcfg = pj.TransportConfig()
        tcfg.port = port
        tcfg.boundAddress = self.config.host
        if public:
            tcfg.publicAddress = public
        tid = ep.transportCreate(kind, tcfg)
        host, _, port_text = str(ep.transportGetInfo(tid).localName).rpartition(":")  # published "host:port"
        self._public_host = self._public_host or host.strip("[]")
        return int(port_text)

    def _open_wake_socket(self, port: int) -> None:
        host = self.config.host or "0.0.0.0"
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
        except OSError as exc:  # then the engine polls every ``poll_ms``, idle or not
            log.warning("no wake-up socket (%s): the SIP thread polls without pause", exc)
            return
        self._wake_socket, self._wake_to = sock, (host, port)

    def _destroy(self) -> None:
        if self._wake_socket is not None:
            self._wake_socket.close()
            self._wake_socket, self._wake_to = None, None
        for group in self._groups.values():
            if group.recording is not None:  # legs that outlived the shutdown: the file is still usable
                self._finished_recordings.append(group.recording)
                group.recording = None
        for recording in self._finished_recordings:
            self._close_recording(recording)
        self._finished_recordings.clear()
        deadline = time.monotonic() + RECORDING_CLOSE_WAIT
        while self._closing and time.monotonic() < deadline:
            self._report_closed_recordings()
            time.sleep(0.02)
        self._closing = [(r, at, 0.0) for r, at, _ in self._closing]
        self._report_closed_recordings()
        self._legs.clear()
        self._groups.clear()
        for account in (self._trunk_account, self._account):
            if account is not None:
                try:
                    account.shutdown()  # the trunk's: unregisters
                except Exception:
                    log.exception("pjsua account shutdown failed")
        self._trunk_account = self._account = None
        del account
        ep, self._ep = self._ep, None
        if ep is not None:
            try:
                ep.libDestroy()
            except Exception:
                log.exception("pjsua libDestroy failed")
        del ep
        # Free the Endpoint now, on this (still registered) thread, even if a reference cycle held it.
        gc.collect()
        if _endpoint_alive():
            log.error("the pjsua2 Endpoint is still referenced after libDestroy; no new engine can start")

    def _after_events(self) -> None:
        while True:
            try:
                fn, future = self._commands.get_nowait()
            except queue.Empty:
                break
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to whoever awaits the future
                future.set_exception(exc)
        if self._deferred_hangups:
            deferred, self._deferred_hangups = self._deferred_hangups, []
            for leg_id in deferred:
                self._do_hangup(leg_id, 0, "", ())
        if self._media_dirty:
            dirty, self._media_dirty = self._media_dirty, set()
            for leg_id in dirty:
                self._connect_audio(leg_id)
        if self._hold_retries:
            self._retry_holds()
        if self._slot_waits:
            self._retry_slot_waits()
        if self._finished_recordings:
            finished, self._finished_recordings = self._finished_recordings, []
            for recording in finished:
                self._close_recording(recording)
        if self._closing:
            self._report_closed_recordings()
        if self._ended:
            # Drop our references (and so the pjsua2 Call objects) outside their own callbacks.
            ended, self._ended = self._ended, []
            for leg_id in ended:
                self._legs.pop(leg_id, None)

    def _fail_pending_commands(self) -> None:
        while True:
            try:
                _, future = self._commands.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(SipEngineError("the SIP engine stopped"))

    def _hangup_all_and_wait(self, ep: _PjEndpoint, timeout: float) -> None:
        self._accepting = False
        live = [leg for leg in self._legs.values() if not leg.ended]
        if live:
            log.info("hanging up %d SIP legs left at shutdown", len(live))
        for leg in live:
            if leg.role is _Role.INBOUND and not leg.connected:
                self._do_hangup(leg.leg_id, 503, "", [("Retry-After", str(self.config.retry_after))])
            else:
                self._do_hangup(leg.leg_id, 0, "", ())
        deadline = time.monotonic() + timeout
        while any(not leg.ended for leg in self._legs.values()) and time.monotonic() < deadline:
            ep.libHandleEvents(self.config.poll_ms)
            self._after_events()
        self._after_events()

    # ------------------------------------------------------------------ commands, on the pjsua thread

    def _do_set_accepting(self, accepting: bool) -> None:
        self._accepting = accepting

    def _do_answer(self, leg_id: str, status: int, reason: str, headers: Sequence[Header]) -> None:
        leg = self._legs.get(leg_id)
        if leg is None or leg.ended:
            log.debug("answer %d on %s: the leg is gone", status, leg_id)
            return
        prm = self._op_param(status, reason, headers)
        try:
            leg.call.answer(prm)
        except pj.Error as exc:
            log.warning("answer %d on %s failed: %s", status, leg_id, exc.info())

    def _do_hangup(self, leg_id: str, status: int, reason: str, headers: Sequence[Header]) -> None:
        leg = self._legs.get(leg_id)
        if leg is None or leg.ended:
            return
        if self._slot_waits.pop(leg_id, None) is not None:  # never sent: nothing to cancel on the wire
            self._leg_gone(leg, 487, "Request Terminated")
            return
        state = self._state_of(leg)
        if leg.role is _Role.INBOUND and state == pj.PJSIP_INV_STATE_CONNECTING:
            # Our 200 is not ACKed yet: RFC 3261 15 says BYE waits for the ACK (pjsua would send one
            # now and a second one when the ACK arrives). Sent from _after_events once CONFIRMED.
            leg.pending_hangup = True
            return
        prm = self._op_param(status, reason, headers)
        try:
            if status >= 300 and leg.role is not _Role.OUTBOUND and state in _UNANSWERED:
                leg.call.answer(prm)  # a final answer keeps its headers (see _on_incoming)
            else:
                leg.call.hangup(prm)
        except pj.Error as exc:
            log.warning("hangup of %s failed: %s", leg_id, exc.info())

    @staticmethod
    def _state_of(leg: _Leg) -> int:
        try:
            return int(leg.call.getInfo().state)
        except pj.Error:
            return int(pj.PJSIP_INV_STATE_DISCONNECTED)

    def _do_dial(self, leg_id: str, group_id: str, uri: str, from_uri: str, headers: Sequence[Header]) -> str:
        group = self._groups.get(group_id)
        if group is None or group.inbound not in group.legs or self._account is None:
            # The caller's leg is already gone: nothing to ring for.
            self._emit(LegEnded(leg_id, "", 487, "Request Terminated", False, _now()))
            return ""
        return self._place(leg_id, group, uri, from_uri, headers)

    def _do_originate(self, leg_id: str, uri: str, from_uri: str, headers: Sequence[Header]) -> str:
        if not self._accepting:
            raise SipEngineError("the gateway is shutting down")
        if len(self._groups) >= self.config.max_calls or self._account is None:
            raise SipEngineError(f"all {self.config.max_calls} calls of this gateway process are in use")
        group = _Group(leg_id)
        self._groups[leg_id] = group
        return self._place(leg_id, group, uri, from_uri, headers)

    def _place(self, leg_id: str, group: _Group, uri: str, from_uri: str, headers: Sequence[Header]) -> str:
        assert self._account is not None
        group_id = group.inbound
        trunk = self.config.trunk
        account = self._account
        if trunk is not None and self._trunk_account is not None and trunk.serves(uri):
            account = self._trunk_account  # its credentials answer the provider's challenge
        call = _PjCall(self, account, leg_id, pj.PJSUA_INVALID_ID)
        leg = _Leg(leg_id, call, _Role.OUTBOUND, group_id)
        self._legs[leg_id] = leg
        group.legs.add(leg_id)
        return self._make_call(leg, account, uri, from_uri, headers, time.monotonic() + SLOT_WAIT)

    def _make_call(
        self, leg: _Leg, account: _PjAccount, uri: str, from_uri: str, headers: Sequence[Header], until: float
    ) -> str:
        """INVITE ``uri`` for ``leg``. When pjsua has no free slot (INVITEs we are refusing, or the legs of
        a call that just ended, still hold theirs for a moment) the leg waits for one until ``until``,
        then ends with 503: the caller is told to try again (Kamailio tries another worker), never 502."""
        prm = self._op_param(0, "", headers, default_settings=True)
        if from_uri:
            prm.txOption.localUri = from_uri
        _reseed_pjlib_random()
        try:
            leg.call.makeCall(uri, prm)
        except pj.Error as exc:
            if exc.status == PJ_ETOOMANY and time.monotonic() < until:
                leg.call = _PjCall(self, account, leg.leg_id, pj.PJSUA_INVALID_ID)  # a failed one is spent
                self._slot_waits[leg.leg_id] = (account, uri, from_uri, tuple(headers), until)
                return ""
            if exc.status == PJ_ETOOMANY:
                log.warning("cannot call %s: no free call slot within %.1f s", uri, SLOT_WAIT)
                self._leg_gone(leg, 503, "Service Unavailable (no free call slot)")
                return ""
            log.warning("cannot call %s: %s", uri, exc.info())
            self._leg_gone(leg, 502, f"Bad Gateway ({exc.title or exc.reason})")
            return ""
        with contextlib.suppress(pj.Error):  # already disconnected: its LegEnded fact is on its way
            leg.sip_call_id = leg.call.getInfo().callIdString
        return leg.sip_call_id

    def _retry_slot_waits(self) -> None:
        waiting, self._slot_waits = self._slot_waits, {}
        for leg_id, (account, uri, from_uri, headers, until) in waiting.items():
            leg = self._legs.get(leg_id)
            if leg is None or leg.ended:
                continue
            self._make_call(leg, account, uri, from_uri, headers, until)

    def _live(self, leg_id: str) -> _Leg:
        leg = self._legs.get(leg_id)
        if leg is None or leg.ended:
            raise SipEngineError(f"leg {leg_id} is gone")
        return leg

    def _do_hold(self, leg_id: str) -> None:
        leg = self._live(leg_id)
        if leg.on_hold:
            return
        leg.on_hold = True
        self._unbridge(leg)
        self._signal_hold(leg)

    def _do_resume(self, leg_id: str) -> None:
        leg = self._live(leg_id)
        if not leg.on_hold:
            return
        leg.on_hold = False
        self._signal_hold(leg)
        self._connect_audio(leg_id)  # now if media stayed up, else once the re-INVITE's media is

    def _signal_hold(self, leg: _Leg) -> None:
        """Send the re-INVITE for the leg's wanted hold state, now or, while another re-INVITE of the
        dialog is in progress (pjsua's codec lock after the answer, the phone's own), once it is over."""
        if not self._sync_hold(leg) and leg.leg_id not in self._hold_retries:
            self._hold_retries[leg.leg_id] = time.monotonic() + HOLD_RETRY_FOR

    def _sync_hold(self, leg: _Leg) -> bool:
        if leg.on_hold == leg.hold_signalled:
            return True
        try:
            if leg.on_hold:
                leg.call.setHold(pj.CallOpParam(True))
            else:
                prm = pj.CallOpParam(True)
                prm.opt.flag = pj.PJSUA_CALL_UNHOLD
                leg.call.reinvite(prm)
        except pj.Error as exc:
            log.debug("re-INVITE of %s deferred: %s", leg.leg_id, exc.info())
            return False
        leg.hold_signalled = leg.on_hold
        return True

    def _retry_holds(self) -> None:
        now = time.monotonic()
        for leg_id, deadline in list(self._hold_retries.items()):
            leg = self._legs.get(leg_id)
            if leg is None or leg.ended or self._sync_hold(leg):
                del self._hold_retries[leg_id]
            elif now > deadline:
                del self._hold_retries[leg_id]
                log.warning(
                    "could not %s %s: its dialog stayed busy", "hold" if leg.on_hold else "resume", leg_id
                )

    def _unbridge(self, leg: _Leg) -> None:
        peer = self._legs.get(leg.peer) if leg.peer else None
        if peer is None or peer.ended or not (leg.media_ready and peer.media_ready):
            return
        with contextlib.suppress(pj.Error):
            audio_a = leg.call.getAudioMedia(-1)
            audio_b = peer.call.getAudioMedia(-1)
            audio_a.stopTransmit(audio_b)
            audio_b.stopTransmit(audio_a)

    def _do_send_dtmf(self, leg_id: str, digits: str, method: DtmfMethod) -> None:
        leg = self._live(leg_id)
        prm = pj.CallSendDtmfParam()
        prm.digits = digits
        prm.method = (
            pj.PJSUA_DTMF_METHOD_SIP_INFO if method is DtmfMethod.INFO else pj.PJSUA_DTMF_METHOD_RFC2833
        )
        try:
            leg.call.sendDtmf(prm)
        except pj.Error as exc:
            raise SipEngineError(f"cannot send DTMF on {leg_id}: {exc.reason or exc.info()}") from None

    # ------------------------------------------------------------------ recording (pjsua thread)

    def _do_record_start(self, group_id: str, name: str) -> str:
        group = self._groups.get(group_id)
        if group is None:
            raise SipEngineError("the call's legs are gone")
        if group.recording is not None:
            raise SipEngineError("the call is already being recorded")
        directory = Path(self.config.recordings_dir)
        directory.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".") or "call"
        path = directory / f"{safe}.wav"
        n = 1
        while path.exists():  # a call recorded again after a stop keeps its earlier file
            n += 1
            path = directory / f"{safe}-{n}.wav"
        recorder = pj.AudioMediaRecorder()
        try:
            recorder.createRecorder(str(path))
        except pj.Error as exc:
            raise SipEngineError(f"cannot record to {path}: {exc.reason or exc.info()}") from None
        group.recording = _Recording(name, path, recorder, _now())
        for leg_id in group.legs:
            self._feed_recorder(leg_id)
        log.info("recording call %s to %s", name, path)
        return str(path)

    def _do_record_pause(self, group_id: str, paused: bool) -> None:
        group = self._groups.get(group_id)
        recording = group.recording if group is not None else None
        if group is None or recording is None:
            raise SipEngineError("the call is not being recorded")
        if recording.paused == paused:
            return
        recording.paused = paused
        if paused:
            self._unfeed_recorder(recording)
        else:
            for leg_id in group.legs:
                self._feed_recorder(leg_id)

    def _do_record_stop(self, group_id: str) -> None:
        group = self._groups.get(group_id)
        recording = group.recording if group is not None else None
        if group is None or recording is None:
            raise SipEngineError("the call is not being recorded")
        group.recording = None
        self._close_recording(recording)

    def _feed_recorder(self, leg_id: str) -> None:
        leg = self._legs.get(leg_id)
        group = self._groups.get(leg.group) if leg is not None else None
        recording = group.recording if group is not None else None
        if leg is None or recording is None or recording.paused or leg.ended or not leg.peer:
            return  # only legs bridged into the conversation (not ring-group legs still ringing)
        if not leg.media_ready:
            return
        try:
            leg.call.getAudioMedia(-1).startTransmit(recording.recorder)
        except pj.Error as exc:
            log.warning("cannot record %s: %s", leg_id, exc.info())
            return
        recording.feeding.add(leg_id)

    def _unfeed_recorder(self, recording: _Recording) -> None:
        for leg_id in list(recording.feeding):
            leg = self._legs.get(leg_id)
            if leg is not None and not leg.ended:
                with contextlib.suppress(pj.Error):
                    leg.call.getAudioMedia(-1).stopTransmit(recording.recorder)
        recording.feeding.clear()

    def _close_recording(self, recording: _Recording) -> None:
        """Destroy the recorder; the file is reported once pjmedia has completed it (see below)."""
        self._unfeed_recorder(recording)
        recorder, recording.recorder = recording.recorder, None
        del recorder  # the last reference: pjsua destroys the recorder
        # PJSIP 2.15's conference bridge removes ports on its clock thread: the WAV writer flushes and
        # writes its header a moment later. Reported from _after_events once the RIFF size is right.
        self._closing.append((recording, _now(), time.monotonic() + RECORDING_CLOSE_WAIT))

    def _report_closed_recordings(self) -> None:
        waiting: list[tuple[_Recording, datetime, float]] = []
        for recording, ended_at, deadline in self._closing:
            complete = _riff_complete(recording.path)
            if not complete and time.monotonic() < deadline:
                waiting.append((recording, ended_at, deadline))
                continue
            size, duration_ms = 0, 0
            try:
                size = recording.path.stat().st_size
                with wave.open(str(recording.path), "rb") as wav:
                    duration_ms = wav.getnframes() * 1000 // max(wav.getframerate(), 1)
            except (OSError, wave.Error, EOFError) as exc:
                log.warning("recording %s is unreadable: %s", recording.path, exc)
            log.info("recording of call %s complete: %s, %d ms", recording.name, recording.path, duration_ms)
            self._emit(
                RecordingDone(
                    name=recording.name,
                    path=str(recording.path),
                    size_bytes=size,
                    duration_ms=duration_ms,
                    started_at=recording.started_at,
                    ended_at=ended_at,
                )
            )
        self._closing = waiting

    def _do_bridge(self, leg_a: str, leg_b: str) -> None:
        a, b = self._legs.get(leg_a), self._legs.get(leg_b)
        if a is None or b is None:
            return
        a.peer, b.peer = leg_b, leg_a
        self._connect_audio(leg_a)

    def _connect_audio(self, leg_id: str) -> None:
        leg = self._legs.get(leg_id)
        if leg is None or not leg.peer:
            return
        peer = self._legs.get(leg.peer)
        if peer is None or leg.ended or peer.ended or not (leg.media_ready and peer.media_ready):
            return
        self._feed_recorder(leg.leg_id)
        self._feed_recorder(peer.leg_id)
        if leg.on_hold or peer.on_hold:
            return
        try:
            audio_a = leg.call.getAudioMedia(-1)
            audio_b = peer.call.getAudioMedia(-1)
            audio_a.startTransmit(audio_b)
            audio_b.startTransmit(audio_a)
        except pj.Error as exc:
            log.warning("cannot bridge audio of %s and %s: %s", leg.leg_id, peer.leg_id, exc.info())
            return
        log.debug("audio bridged: %s <-> %s", leg.leg_id, peer.leg_id)

    def _op_param(
        self, status: int, reason: str, headers: Sequence[Header], *, default_settings: bool = False
    ) -> Any:
        prm = pj.CallOpParam(default_settings)
        if status:
            prm.statusCode = status
        if reason:
            prm.reason = reason
        for name, value in headers:
            header = pj.SipHeader()
            header.hName = name
            header.hValue = value
            prm.txOption.headers.append(header)
        return prm

    # ------------------------------------------------------------------ callbacks (pjsua thread)

    def _on_incoming(self, account: _PjAccount, prm: Any) -> None:
        at = _now()
        leg_id = self.new_leg_id()
        call = _PjCall(self, account, leg_id, prm.callId)
        leg = _Leg(leg_id, call, _Role.INBOUND, leg_id)
        self._legs[leg_id] = leg
        try:
            info = call.getInfo()
            leg.sip_call_id = info.callIdString
            try:
                message = str(prm.rdata.wholeMsg)
            except Exception:  # undecodable bytes: fall back to the To URI
                message = ""
            req_uri = request_uri(message)
            from_uri, to_uri = info.remoteUri, info.localUri
            from_addr = parse_name_addr(from_uri)
            request_user = uri_user(req_uri) if req_uri else parse_name_addr(to_uri).user
            trunk = self.config.trunk
            if account is self._trunk_account and trunk is not None and request_user == trunk.username:
                # A provider sends its calls to our registered contact: the number dialled is in To.
                request_user = parse_name_addr(to_uri).user or request_user
            if not self._accepting or len(self._groups) >= self.config.max_calls:
                leg.role = _Role.REFUSED
                leg.group = ""
                self._refused += 1
                why = "draining" if not self._accepting else "full"
                log.warning("refusing call %s from %s: gateway %s (503)", leg.sip_call_id, from_uri, why)
                # answer(), not hangup(): while pjsua still sets up the incoming call's media it defers a
                # hangup and forgets its headers, but keeps those of an answer.
                call.answer(
                    self._op_param(
                        503, "Service Unavailable", [("Retry-After", str(self.config.retry_after))]
                    )
                )
                self._emit(CallRefused(leg.sip_call_id, 503, why, req_uri, from_uri, at))
                return
            self._groups[leg_id] = _Group(leg_id, {leg_id})
            self._emit(
                IncomingCall(
                    leg_id=leg_id,
                    sip_call_id=leg.sip_call_id,
                    request_uri=req_uri,
                    request_user=request_user,
                    from_uri=from_uri,
                    from_user=from_addr.user,
                    from_display=from_addr.display,
                    to_uri=to_uri,
                    source=str(prm.rdata.srcAddress),
                    transport=via_transport(message),
                    at=at,
                )
            )
        except Exception:
            log.exception("incoming call %s could not be taken", leg.sip_call_id or prm.callId)
            try:
                call.hangup(self._op_param(500, "", ()))
            except Exception:
                log.exception("could not reject the incoming call")

    def _on_reg_state(self, prm: Any) -> None:
        """pjsua reports a REGISTER's outcome (the first, each refresh, a failure, the unregistration)."""
        code, reason, expires = int(prm.code), str(prm.reason), int(prm.expiration)
        registered = 200 <= code < 300 and expires > 0
        before = self._trunk_state
        self._trunk_state = TrunkState(True, registered, code, reason, expires if registered else 0, _now())
        trunk = self.config.trunk
        where = trunk.registrar if trunk is not None else "?"
        if registered and not before.registered:
            log.info("registered at %s for %d s", where, expires)
        elif registered:
            log.debug("registration at %s refreshed for %d s", where, expires)
        elif 200 <= code < 300:
            log.info("unregistered from %s", where)
        elif before.registered or before.status != code:
            log.warning("not registered at %s: %d %s", where, code, reason)

    def _on_rejected_by_pjsua(self, prm: Any) -> None:
        """pjsua answered an INVITE itself (bad SDP, unsupported extension, or all legs in use)."""
        self._refused += 1
        status, reason = int(prm.statusCode), str(prm.reason)
        if sum(1 for leg in self._legs.values() if not leg.ended) >= PJSUA_MAX_CALLS:
            log.warning(
                "pjsua refused an INVITE with %d %s: all %d legs in use (max_calls=%d admits more than "
                "pjsua can hold alongside a 503)",
                status,
                reason,
                PJSUA_MAX_CALLS,
                self.config.max_calls,
            )
        else:
            log.info("pjsua refused an INVITE from %s with %d %s", prm.remoteInfo, status, reason)
        self._emit(CallRefused("", status, reason, "", str(prm.remoteInfo), _now()))

    def _live_leg(self, call: _PjCall) -> tuple[_Leg, Any] | None:
        """The leg of a pjsua2 callback and the call's info, or None when the leg is over."""
        leg = self._legs.get(call.leg_id)
        if leg is None or leg.ended:
            return None
        try:
            return leg, call.getInfo()
        except pj.Error:
            return None

    def _on_call_state(self, call: _PjCall) -> None:
        if (live := self._live_leg(call)) is None:
            return
        leg, info = live
        if not leg.sip_call_id:
            leg.sip_call_id = info.callIdString
        state = info.state
        if state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self._leg_gone(leg, int(info.lastStatusCode), str(info.lastReason))
        elif state == pj.PJSIP_INV_STATE_CONFIRMED:
            leg.connected = True
            if leg.pending_hangup:
                self._deferred_hangups.append(leg.leg_id)
            if leg.role is not _Role.REFUSED:
                self._emit(LegAnswered(leg.leg_id, leg.sip_call_id, _now()))
        elif state == pj.PJSIP_INV_STATE_EARLY and leg.role is _Role.OUTBOUND:
            self._emit(
                LegProgress(
                    leg.leg_id, leg.sip_call_id, int(info.lastStatusCode), str(info.lastReason), _now()
                )
            )

    def _on_media_state(self, call: _PjCall) -> None:
        if (live := self._live_leg(call)) is None:
            return
        leg, info = live
        leg.media_ready = any(
            m.type == pj.PJMEDIA_TYPE_AUDIO
            and m.status in (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD)
            for m in info.media
        )
        if leg.media_ready and leg.peer:
            self._media_dirty.add(leg.leg_id)
        remote_hold = any(
            m.type == pj.PJMEDIA_TYPE_AUDIO and m.status == pj.PJSUA_CALL_MEDIA_REMOTE_HOLD
            for m in info.media
        )
        if remote_hold != leg.remote_hold and leg.connected:
            leg.remote_hold = remote_hold
            self._emit(LegHold(leg.leg_id, remote_hold, _now()))

    def _leg_gone(self, leg: _Leg, status: int, reason: str) -> None:
        if leg.ended:
            return
        leg.ended = True
        self._ended.append(leg.leg_id)
        if leg.role is _Role.REFUSED:
            return
        group = self._groups.get(leg.group)
        if group is not None:
            group.legs.discard(leg.leg_id)
            if group.recording is not None:
                group.recording.feeding.discard(leg.leg_id)
            if not group.legs:  # the call's capacity is free once all its legs are gone
                if group.recording is not None:  # closed outside pjsua's callback
                    self._finished_recordings.append(group.recording)
                    group.recording = None
                del self._groups[leg.group]
        self._emit(LegEnded(leg.leg_id, leg.sip_call_id, status, reason, leg.connected, _now()))

    def _emit(self, fact: AnyFact) -> None:
        loop, on_fact = self._loop, self._on_fact
        if loop is None or on_fact is None:
            return
        try:
            loop.call_soon_threadsafe(on_fact, fact)
        except RuntimeError:
            log.debug("event loop closed; dropped %r", fact)
