"""A small pjsua2 user agent for the local stack: demo phones that answer, and the caller of `make call`.

It stands in for real people: the agents' desk phones behind the extensions, and a customer calling in.
All pjsua2 calls happen on the thread that created the library (pjsua2 asserts otherwise).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import pjsua2 as pj

from telecrm_gateway.sip.engine import stdout_silenced

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhoneBehaviour:
    """How a demo phone treats a call to one extension."""

    answer_after: float | None = 2.0  # seconds of ringing before it answers; None: never answers
    reject_with: int | None = None  # a final status instead of ringing (486 busy, 603 decline)
    hangup_after: float | None = None  # seconds of talk before it hangs up; None: waits for the caller


def start_endpoint(port: int, host: str = "127.0.0.1", log_level: int = 1) -> pj.Endpoint:
    """Create, initialise and start a pjsua2 endpoint with a null sound device on UDP and TCP ``port``."""
    ep = pj.Endpoint()
    with stdout_silenced():  # libCreate prints a banner whatever the log level
        ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = False
    cfg.uaConfig.maxCalls = 4
    cfg.logConfig.level = log_level
    cfg.logConfig.consoleLevel = log_level
    cfg.medConfig.noVad = True
    ep.libInit(cfg)
    ep.audDevManager().setNullDev()
    for kind in (pj.PJSIP_TRANSPORT_UDP, pj.PJSIP_TRANSPORT_TCP):
        tcfg = pj.TransportConfig()
        tcfg.port = port
        tcfg.boundAddress = host
        tcfg.publicAddress = host
        ep.transportCreate(kind, tcfg)
    ep.libStart()
    return ep


def account_config(uri: str, host: str = "127.0.0.1") -> pj.AccountConfig:
    """A local account (no registration) whose RTP ports are picked by the OS on ``host``."""
    acfg = pj.AccountConfig()
    acfg.idUri = uri
    acfg.mediaConfig.transportConfig.port = 0
    acfg.mediaConfig.transportConfig.boundAddress = host
    return acfg


def _bridge(call: pj.Call) -> None:
    """Loop the call's audio into the null device so media flows both ways."""
    info = call.getInfo()
    for index, media in enumerate(info.media):
        if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
            audio = call.getAudioMedia(index)
            manager = pj.Endpoint.instance().audDevManager()
            audio.startTransmit(manager.getPlaybackDevMedia())
            manager.getCaptureDevMedia().startTransmit(audio)


class _Call(pj.Call):  # type: ignore[misc]
    def __init__(self, acc: pj.Account, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(acc, call_id)
        self.answer_at: float | None = None
        self.hangup_at: float | None = None
        self.confirmed_at: float | None = None
        self.disconnected = threading.Event()
        self.last_status = 0

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and self.confirmed_at is None:
            self.confirmed_at = time.monotonic()
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.last_status = info.lastStatusCode
            self.disconnected.set()

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        _bridge(self)


class DemoPhones(pj.Account):  # type: ignore[misc]
    """Answers every extension by its behaviour (unknown extensions ring and answer after 2 s)."""

    def __init__(self, behaviours: dict[str, PhoneBehaviour]) -> None:
        super().__init__()
        self.behaviours = behaviours
        self.calls: list[_Call] = []

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        call = _Call(self, prm.callId)
        extension = _user_of(call.getInfo().localUri)
        behaviour = self.behaviours.get(extension, PhoneBehaviour())
        op = pj.CallOpParam()
        if behaviour.reject_with is not None:
            op.statusCode = behaviour.reject_with
            call.answer(op)
        else:
            op.statusCode = 180
            call.answer(op)
            if behaviour.answer_after is not None:
                call.answer_at = time.monotonic() + behaviour.answer_after
            if behaviour.hangup_after is not None and behaviour.answer_after is not None:
                call.hangup_at = time.monotonic() + behaviour.answer_after + behaviour.hangup_after
        self.calls.append(call)

    def tick(self) -> None:
        now = time.monotonic()
        for call in list(self.calls):
            if call.disconnected.is_set():
                self.calls.remove(call)
                continue
            if call.answer_at is not None and now >= call.answer_at:
                call.answer_at = None
                op = pj.CallOpParam()
                op.statusCode = 200
                call.answer(op)
            if call.hangup_at is not None and now >= call.hangup_at:
                call.hangup_at = None
                call.hangup(pj.CallOpParam())


def _user_of(uri: str) -> str:
    """'"Bob" <sip:101@host>' -> '101'."""
    inner = uri.split("<", 1)[-1].split(">", 1)[0]
    return inner.split(":", 1)[-1].split("@", 1)[0]


def run_phones(
    port: int, behaviours: dict[str, PhoneBehaviour], stop: threading.Event, host: str = "127.0.0.1"
) -> None:
    """Serve the demo phones until ``stop`` is set (call it from the thread that will own pjsua2)."""
    ep = start_endpoint(port, host)
    phones = DemoPhones(behaviours)
    phones.create(account_config(f"sip:phones@{host}:{port}", host))
    log.info("demo phones listening on sip:%s:%d", host, port)
    try:
        while not stop.is_set():
            ep.libHandleEvents(20)
            phones.tick()
    finally:
        ep.hangupAllCalls()
        for _ in range(10):
            ep.libHandleEvents(20)
        phones.calls.clear()
        phones.shutdown()
        ep.libDestroy()


@dataclass
class CallResult:
    status: int
    answered: bool
    talk_seconds: float


def place_call(
    target: str, *, seconds: float, local_port: int, caller: str = "+15550001234", timeout: float = 60
) -> CallResult:
    """Call ``target`` (a SIP URI), stay ``seconds`` after the answer, hang up; return what happened."""
    ep = start_endpoint(local_port)
    acc = pj.Account()
    acc.create(account_config(f'"Demo caller" <sip:{caller}@127.0.0.1:{local_port}>'))
    call = _Call(acc)
    try:
        call.makeCall(target, pj.CallOpParam(True))
        deadline = time.monotonic() + timeout
        hung_up = False
        while not call.disconnected.is_set() and time.monotonic() < deadline:
            ep.libHandleEvents(20)
            if call.confirmed_at and not hung_up and time.monotonic() - call.confirmed_at >= seconds:
                call.hangup(pj.CallOpParam())
                hung_up = True
        if not call.disconnected.is_set():
            call.hangup(pj.CallOpParam())
            for _ in range(50):
                ep.libHandleEvents(20)
        talk = (time.monotonic() - call.confirmed_at) if call.confirmed_at else 0.0
        return CallResult(status=call.last_status, answered=call.confirmed_at is not None, talk_seconds=talk)
    finally:
        del call
        acc.shutdown()
        ep.libDestroy()
