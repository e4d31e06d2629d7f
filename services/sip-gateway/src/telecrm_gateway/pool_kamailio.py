"""The pool's side of Kamailio: the dispatcher list, a JSON-RPC client, and Kamailio as a child process.

The configuration is ``deploy/kamailio/kamailio.cfg``; what differs between a laptop, a test and a
cluster (ports, the list file) is passed as ``-A NAME=value`` defines, built by :func:`kamailio_argv`.
The pool talks to Kamailio over JSON-RPC on HTTP (``POST /RPC`` on a loopback TCP port): the dispatcher
(``dispatcher.set_state``, ``.add``, ``.remove``, ``.list``), the dialogs (``dlg.list``, ``dlg.end_dlg``) and
the transactions (``tm.reply_callid``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from telecrm_gateway.errors import GatewayError

log = logging.getLogger(__name__)

DEPLOY_HINT = "Debian package kamailio; make test-deps installs it"

# Dispatcher destination states, as dispatcher.set_state takes them.
ACTIVE = "a"
INACTIVE_PROBING = "ip"
DISABLED = "d"

# Dialog states in dlg.list (Kamailio dialog module).
DLG_UNCONFIRMED, DLG_EARLY, DLG_CONFIRMED_NA, DLG_CONFIRMED, DLG_DELETED = 1, 2, 3, 4, 5


class KamailioError(GatewayError):
    """Kamailio did not answer, or answered an RPC with an error."""


@dataclass(frozen=True, slots=True)
class Destination:
    """One worker as Kamailio's dispatcher list names it."""

    uri: str  # sip:127.0.0.1:5071
    duid: str  # unique id the call-load algorithm counts calls by
    max_load: int  # calls Kamailio sends it at most (its GATEWAY_MAX_CALLS)

    @property
    def attrs(self) -> str:
        return f"duid={self.duid};maxload={self.max_load}"


def dispatcher_list(destinations: Sequence[Destination], set_id: int) -> str:
    """The dispatcher list file for these workers (``setid uri flags priority attrs`` a line)."""
    lines = ["# telecrm SIP gateway pool: written by the pool supervisor (setid uri flags priority attrs)"]
    lines += [f"{set_id} {d.uri} 0 0 {d.attrs}" for d in destinations]
    return "\n".join(lines) + "\n"


def write_dispatcher_list(path: Path, destinations: Sequence[Destination], set_id: int) -> None:
    """Write the list atomically (Kamailio may read it at any time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dispatcher_list(destinations, set_id))
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class Target:
    """A dispatcher destination as ``dispatcher.list`` reports it."""

    uri: str
    flags: str  # "AP": active and pinged, "IP": inactive, "DX": disabled...
    load: int  # calls the call-load algorithm counts on it

    @property
    def active(self) -> bool:
        return self.flags.startswith("A")


@dataclass(frozen=True, slots=True)
class Dialog:
    """A dialog of Kamailio's dialog module, with the worker that took it (``$dlg_var(worker)``)."""

    h_entry: int
    h_id: int
    call_id: str
    state: int
    caller_cseq: str
    callee_tag: str
    variables: dict[str, str] = field(default_factory=dict)

    @property
    def worker(self) -> str:
        return self.variables.get("worker", "")

    @property
    def confirmed(self) -> bool:
        return self.state in (DLG_CONFIRMED_NA, DLG_CONFIRMED)

    @property
    def early(self) -> bool:
        return self.state in (DLG_UNCONFIRMED, DLG_EARLY)


class KamailioRpc:
    """A JSON-RPC client of Kamailio's jsonrpcs module over HTTP (``http://127.0.0.1:5090/RPC``)."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the Kamailio RPC URL must be http://host:port/path, not {url!r}")
        self.url = url
        self._host = parts.hostname
        self._port = parts.port or 80
        self._path = parts.path or "/RPC"
        self._timeout = timeout
        self._ids = itertools.count(1)

    async def call(self, method: str, *params: Any) -> Any:
        """Run one RPC command; its ``result``, or KamailioError with Kamailio's message."""
        request = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": next(self._ids)}
        try:
            async with asyncio.timeout(self._timeout):
                status, body = await self._post(json.dumps(request).encode())
        except (OSError, TimeoutError) as exc:
            raise KamailioError(f"Kamailio RPC at {self.url} did not answer {method}: {exc!r}") from exc
        try:
            answer = json.loads(body) if body.strip() else {}
        except ValueError as exc:
            raise KamailioError(f"{method}: Kamailio answered HTTP {status} with {body[:200]!r}") from exc
        if "error" in answer:
            error = answer["error"]
            raise KamailioError(f"{method}: {error.get('code')} {error.get('message')}")
        if status != 200:
            raise KamailioError(f"{method}: Kamailio answered HTTP {status}")
        return answer.get("result")

    async def _post(self, payload: bytes) -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(self._host, self._port)
        try:
            writer.write(
                (
                    f"POST {self._path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                    "Connection: close\r\n\r\n"
                ).encode()
                + payload
            )
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            length = next(
                (
                    int(v)
                    for k, _, v in (h.partition(":") for h in lines[1:])
                    if k.lower() == "content-length"
                ),
                None,
            )
            body = await (reader.readexactly(length) if length is not None else reader.read())
            return status, body
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    # --- dispatcher

    async def targets(self, set_id: int) -> list[Target]:
        result = await self.call("dispatcher.list")
        out: list[Target] = []
        for record in (result or {}).get("RECORDS", []):
            group = record.get("SET", {})
            if group.get("ID") != set_id:
                continue
            for target in group.get("TARGETS", []):
                dest = target.get("DEST", {})
                out.append(
                    Target(
                        uri=str(dest.get("URI", "")),
                        flags=str(dest.get("FLAGS", "")),
                        load=int((dest.get("RUNTIME") or {}).get("DLGLOAD", 0)),
                    )
                )
        return out

    async def set_state(self, state: str, set_id: int, uri: str) -> None:
        await self.call("dispatcher.set_state", state, set_id, uri)

    async def remove(self, set_id: int, uri: str) -> None:
        await self.call("dispatcher.remove", set_id, uri)

    async def add(self, set_id: int, destination: Destination, flags: int = 0) -> None:
        await self.call("dispatcher.add", set_id, destination.uri, flags, 0, destination.attrs)

    # --- dialogs and transactions

    async def dialogs(self) -> list[Dialog]:
        result = await self.call("dlg.list")
        out: list[Dialog] = []
        for item in result or []:
            variables: dict[str, str] = {}
            for pair in item.get("variables") or []:
                variables.update({str(k): str(v) for k, v in pair.items()})
            out.append(
                Dialog(
                    h_entry=int(item["h_entry"]),
                    h_id=int(item["h_id"]),
                    call_id=str(item.get("call-id", "")),
                    state=int(item.get("state", 0)),
                    caller_cseq=str((item.get("caller") or {}).get("cseq") or "1"),
                    callee_tag=str((item.get("callee") or {}).get("tag") or ""),
                    variables=variables,
                )
            )
        return out

    async def end_dialog(self, dialog: Dialog) -> None:
        """BYE to both sides of a confirmed dialog."""
        await self.call("dlg.end_dlg", dialog.h_entry, dialog.h_id)

    async def reply(self, dialog: Dialog, status: int, reason: str) -> None:
        """A final answer to the caller of an early dialog (its INVITE transaction is still open)."""
        await self.call(
            "tm.reply_callid",
            status,
            reason,
            dialog.call_id,
            dialog.caller_cseq,
            dialog.callee_tag or ".",
            ".",
        )

    async def ping(self) -> None:
        await self.call("core.version")


# --- Kamailio as a child process -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KamailioOptions:
    """How to run Kamailio for a pool: the config file and the defines it takes."""

    config: Path
    list_file: Path
    run_dir: Path
    sip_host: str = "127.0.0.1"
    sip_port: int = 5060
    rpc_host: str = "127.0.0.1"
    rpc_port: int = 5090
    set_id: int = 1
    ping_interval: int = 5
    retry_after: int = 5
    children: int = 4
    log_level: int = 1  # Kamailio's debug: -1 errors ... 1 notices, 2 info, 3 debug
    binary: str = "kamailio"
    shm_mb: int = 64

    @property
    def rpc_url(self) -> str:
        return f"http://{self.rpc_host}:{self.rpc_port}/RPC"


def kamailio_binary(name: str = "kamailio") -> str | None:
    """The kamailio program (Debian package kamailio installs /usr/sbin/kamailio), or None."""
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/local/sbin") / name) if p.exists()), None
    )


def kamailio_argv(options: KamailioOptions) -> list[str]:
    """The command line: foreground (-DD), logs on stderr (-E), every setting as a define (-A)."""
    binary = kamailio_binary(options.binary) or options.binary
    defines = {
        "SIP_IP": options.sip_host,
        "SIP_PORT": str(options.sip_port),
        "RPC_IP": options.rpc_host,
        "RPC_PORT": str(options.rpc_port),
        "DISPATCHER_LIST": json.dumps(str(options.list_file)),
        "WORKER_SET": str(options.set_id),
        "PING_INTERVAL": str(options.ping_interval),
        "RETRY_AFTER": str(options.retry_after),
        "SIP_WORKERS": str(options.children),
        "LOG_LEVEL": str(options.log_level),
    }
    argv = [
        binary,
        "-DD",
        "-E",
        "-f",
        str(options.config),
        "-Y",
        str(options.run_dir),
        "-m",
        str(options.shm_mb),
    ]
    for name, value in defines.items():
        argv += ["-A", f"{name}={value}"]
    return argv


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class KamailioProcess:
    """Kamailio started by the pool (tests, ``make run``); in a cluster it runs as its own container."""

    def __init__(self, options: KamailioOptions, *, log_path: Path | None = None) -> None:
        self.options = options
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, timeout: float = 15.0) -> None:
        """Start Kamailio and wait until its RPC answers; KamailioError when it cannot."""
        if kamailio_binary(self.options.binary) is None:
            raise KamailioError(f"{self.options.binary} not found ({DEPLOY_HINT})")
        self.options.run_dir.mkdir(parents=True, exist_ok=True)
        out: Any = asyncio.subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = self.log_path.open("ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                *kamailio_argv(self.options),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            if out is not asyncio.subprocess.DEVNULL:
                out.close()
        rpc = KamailioRpc(self.options.rpc_url, timeout=1.0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if not self.running:
                raise KamailioError(f"kamailio exited with {self.process.returncode}{self._tail()}")
            try:
                await rpc.ping()
                break
            except KamailioError as exc:
                if loop.time() > deadline:
                    await self.stop()
                    raise KamailioError(
                        f"kamailio did not answer its RPC within {timeout:g}s: {exc}"
                    ) from exc
                await asyncio.sleep(0.1)
        log.info(
            "kamailio listening on %s:%d, RPC on %s",
            self.options.sip_host,
            self.options.sip_port,
            self.options.rpc_url,
        )

    def _tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return ":\n" + "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])

    async def wait(self) -> int:
        assert self.process is not None
        return await self.process.wait()

    async def stop(self, grace: float = 5.0) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
