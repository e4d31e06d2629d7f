"""Routes edited at run time: the admin API writes the routes file, and every gateway process follows it.

The routes file (``GATEWAY_ROUTES_FILE``) stays the one source of truth: a pool's workers share it, and
a hand edit and the admin page change the same thing. :class:`RoutesFile` reads it as JSON-ready data
and writes a whole new set back: checked with the rules the gateway starts with (references, loops,
the capacity of one process), versioned by the hash of the file's bytes (the API's ETag, so two admins do
not overwrite each other unknowingly), written as TOML to a temporary file renamed over the old one
under a lock on its directory, so a reader sees the old file or the new one, never half of either. The
packaged default and a file the process may not replace (a read-only mount) are read-only.

:class:`RoutesReloader` makes a running process follow the file: every couple of seconds it looks at
the file's inode, size and mtime (one ``stat``), and when they changed it loads the file and swaps the
routing table in place (:meth:`RoutingTable.replace_with`), so the next call takes the new routes while
calls in progress keep the route they were given. A file that does not load (a bad hand edit) is not
used: the old table stays, and ``/healthz/routes`` and the admin API say why.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from telecrm_gateway.errors import GatewayError, RoutingConfigError
from telecrm_gateway.routing import RoutingTable, routes_document

log = logging.getLogger(__name__)

RELOAD_INTERVAL = 2.0
SECTIONS = ("extensions", "groups", "queues", "lines")
MAX_NAME_LENGTH = 64
# Extensions and lines are the user part of a request URI; groups and queues are names in a target.
_NUMBER = re.compile(r"[0-9A-Za-z*#+._-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
# Where RoutingTable's messages say the problem is: groups."sales".members[2]: ...
_PLACE = re.compile(r'^(extensions|groups|queues|lines)\."([^"]*)"(?:\.(\w+))?(?:\[(\d+)\])?')
_HEADER = (
    "# The sip-gateway's routes, written by its admin API (PUT /admin/routes, the /admin/telephony page).\n"
    "# Every key is described in the packaged default_routes.toml; a hand edit is loaded within seconds\n"
    "# by every gateway process, or refused (the old routes stay) with the reason in /healthz/routes.\n"
)
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


class RoutesReadOnly(GatewayError):
    """There is no routes file this process may replace (the packaged default, a read-only mount)."""


class RoutesStale(GatewayError):
    """The file changed since the version the edit was made on."""

    def __init__(self, current: str) -> None:
        super().__init__(f"the routes changed since you loaded them (now version {current}): reload them")
        self.current = current


class InvalidRoutes(GatewayError):
    """The routes break a rule; ``errors`` name each place as FastAPI does (``loc``, ``msg``)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class RoutesSnapshot:
    """The routes file as the admin API shows it."""

    routes: dict[str, Any]  # the file's shape, every key given
    version: str  # the hash of the file's bytes: the ETag
    error: str | None  # why the file is not what runs (it does not load); routes are then those in use


def version_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:20]


def _invalid(loc: list[str | int], message: str) -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": message, "type": "value_error"}


def _errors_of(exc: RoutingConfigError) -> list[dict[str, Any]]:
    """The places of a RoutingTable refusal: pydantic's own, else read from the message's prefix."""
    cause = exc.__cause__
    if isinstance(cause, ValidationError):
        return [
            _invalid([p for p in error["loc"]], str(error["msg"]).removeprefix("Value error, "))
            for error in cause.errors()
        ]
    message = str(exc)
    place = _PLACE.match(message)
    if place is None:
        return [_invalid([], message)]
    loc: list[str | int] = [place[1], place[2]]
    if place[3]:
        loc.append(place[3])
    if place[4]:
        loc.append(int(place[4]))
    return [_invalid(loc, message[place.end() :].lstrip(": ") or message)]


def _check_names(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Keys that could not be dialled or named in a target, and text no TOML file can hold."""
    errors: list[dict[str, Any]] = []
    for section in SECTIONS:
        entries = document.get(section)
        if not isinstance(entries, Mapping):
            continue  # the shape's own check names it
        for key in entries:
            if section in ("extensions", "lines"):
                if not _NUMBER.fullmatch(key):
                    errors.append(
                        _invalid(
                            [section, key],
                            f"{key!r}: 1-{MAX_NAME_LENGTH} digits, letters or * # + . _ - (what is dialled)",
                        )
                    )
            elif (
                not key
                or len(key) > MAX_NAME_LENGTH
                or key != key.strip()
                or _CONTROL.search(key)
                or any(c in key for c in '":')
            ):
                errors.append(
                    _invalid(
                        [section, key],
                        f"{key!r}: 1-{MAX_NAME_LENGTH} characters, no quotes, colons or spaces at the ends",
                    )
                )

    def walk(value: Any, loc: list[str | int]) -> None:
        if isinstance(value, str):
            if _CONTROL.search(value):
                errors.append(_invalid(loc, "control characters are not allowed"))
        elif isinstance(value, Mapping):
            for key, item in value.items():
                walk(item, [*loc, key])
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, [*loc, index])

    walk(document, [])
    return errors


# --- TOML ------------------------------------------------------------------------------------------


def _string(text: str) -> str:
    return (
        '"' + "".join(_ESCAPES.get(c) or (f"\\u{ord(c):04X}" if _CONTROL.match(c) else c) for c in text) + '"'
    )


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def to_toml(document: Mapping[str, Any], header: str = _HEADER) -> str:
    """The routes as a TOML file: one table per entry, keys left out where they hold their default."""
    out = [header.rstrip("\n")] if header.strip() else []
    if document.get("registrar"):
        out += ["", f"registrar = {_string(document['registrar'])}"]
    for section in SECTIONS:
        for key, entry in document.get(section, {}).items():
            out += ["", f"[{section}.{_string(key)}]"]
            out += [
                f"{field} = {_value(value)}"
                for field, value in entry.items()
                if value is not None and value != "" and value is not False
            ]
    return "\n".join(out).lstrip("\n") + "\n"


def _header_of(text: str) -> str:
    """The comment lines a file starts with (kept when the API rewrites it)."""
    lines: list[str] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            lines.append(line)
        else:
            break
    return "\n".join(lines).strip("\n") + "\n" if any(line.strip() for line in lines) else ""


# --- the file --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on the file's directory: writers of every process take turns."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class RoutesFile:
    """The routes file of this gateway (``path`` None: the packaged default, read-only)."""

    def __init__(self, path: Path | None, region: str, max_legs: int) -> None:
        self.path = path
        self.region = region
        self.max_legs = max_legs

    @property
    def target(self) -> Path | None:
        """The file itself (through a symlink): what a write replaces."""
        return None if self.path is None else self.path.resolve()

    def writable(self) -> bool:
        target = self.target
        if target is None:
            return False
        if target.exists() and (not os.access(target, os.W_OK) or not target.stat().st_mode & 0o222):
            return False  # no write bit at all: read-only on purpose, even for root
        return os.access(target.parent, os.W_OK)

    def read_bytes(self) -> bytes:
        if self.path is None:
            return resources.files("telecrm_gateway").joinpath("default_routes.toml").read_bytes()
        return self.path.read_bytes()

    def signature(self) -> tuple[int, int, int] | None:
        """What changes when the file does: inode (a rename), size and mtime; None when it is gone."""
        if self.path is None:
            return (0, 0, 0)
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def check(self, routes: Mapping[str, Any]) -> tuple[dict[str, Any], RoutingTable]:
        """The routes with every key given, and their table; InvalidRoutes naming each bad place."""
        if errors := _check_names(routes):
            raise InvalidRoutes(errors)
        try:
            document = routes_document(routes)
            table = RoutingTable.from_mapping(document, self.region)
            table.check_capacity(self.max_legs)
        except RoutingConfigError as exc:
            raise InvalidRoutes(_errors_of(exc)) from None
        return document, table

    def snapshot(self, running: dict[str, Any]) -> RoutesSnapshot:
        """The file as it is; when it cannot be read as routes, ``running`` (the routes in use), and why."""
        try:
            data = self.read_bytes()
        except OSError as exc:
            return RoutesSnapshot(running, "", f"cannot read {self.path}: {exc.strerror}")
        version = version_of(data)
        try:
            raw = tomllib.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            return RoutesSnapshot(running, version, f"not a TOML file: {exc}")
        try:
            document = routes_document(raw)
        except RoutingConfigError as exc:
            return RoutesSnapshot(running, version, str(exc))
        try:
            self.check(document)
        except InvalidRoutes as exc:
            return RoutesSnapshot(document, version, str(exc))
        return RoutesSnapshot(document, version, None)

    def write(self, routes: Mapping[str, Any], expected_version: str) -> tuple[RoutesSnapshot, RoutingTable]:
        """Replace the file with ``routes`` unless it changed since ``expected_version``.

        Raises RoutesReadOnly, InvalidRoutes or RoutesStale; blocking (run it in a thread)."""
        target = self.target
        if target is None or not self.writable():
            raise RoutesReadOnly(
                "the routes are read-only here: "
                + (
                    "the packaged default is in use (set GATEWAY_ROUTES_FILE to a writable file)"
                    if target is None
                    else f"{self.path} cannot be replaced by this process (a read-only mount?)"
                )
            )
        document, table = self.check(routes)
        with _locked(target.parent):
            try:
                current = target.read_bytes()
            except FileNotFoundError:
                current = b""
            if version_of(current) != expected_version:
                raise RoutesStale(version_of(current))
            text = to_toml(document, _header_of(current.decode("utf-8", "replace")) or _HEADER)
            if routes_document(tomllib.loads(text)) != document:  # the writer's own guard
                raise RuntimeError("the routes would not read back as written")
            data = text.encode("utf-8")
            mode = os.stat(target).st_mode & 0o777 if current else 0o644
            fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.chmod(temporary, mode)
                os.replace(temporary, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
            directory = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        return RoutesSnapshot(document, version_of(data), None), table


class RoutesReloader:
    """Keeps ``table`` (the one the call logic holds) in step with the routes file."""

    def __init__(self, table: RoutingTable, file: RoutesFile, interval: float = RELOAD_INTERVAL) -> None:
        self.table = table
        self.file = file
        self.interval = interval
        self.error: str | None = None
        self.checked_at: datetime | None = None
        self.loaded_at = datetime.now(UTC)
        # The table was loaded from the file as it is now (at the start); a change after this is new.
        self._signature = file.signature()
        try:
            self.version = version_of(file.read_bytes())
        except OSError:
            self.version = ""
        self._task: asyncio.Task[None] | None = None

    def check(self) -> bool:
        """Load the file when it changed; whether the table was replaced. Run it on the event loop."""
        self.checked_at = datetime.now(UTC)
        signature = self.file.signature()
        if signature == self._signature:
            return False
        self._signature = signature
        if signature is None:
            self._failed(f"the routes file {self.file.path} is gone")
            return False
        try:
            data = self.file.read_bytes()
        except OSError as exc:
            self._failed(f"cannot read {self.file.path}: {exc.strerror}")
            return False
        version = version_of(data)
        if version == self.version:  # touched, not changed
            self.error = None
            return False
        try:
            raw = tomllib.loads(data.decode("utf-8"))
            table = RoutingTable.from_mapping(raw, self.file.region)
            table.check_capacity(self.file.max_legs)
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            self._failed(f"{self.file.path}: not a TOML file: {exc}")
            return False
        except RoutingConfigError as exc:
            self._failed(f"{self.file.path}: {exc}")
            return False
        self.adopt(table, version)
        return True

    def adopt(self, table: RoutingTable, version: str) -> None:
        """Use ``table`` from the next call on (it was just written, or loaded, as ``version``)."""
        self.table.replace_with(table)
        self.version = version
        self.error = None
        self.loaded_at = datetime.now(UTC)
        log.info(
            "routes reloaded",
            extra={
                "routes_file": str(self.file.path),
                "version": version,
                "extensions": len(table.extensions),
                "groups": len(table.groups),
                "queues": len(table.queues),
                "lines": len(table.lines),
            },
        )

    def after_write(self, table: RoutingTable, version: str) -> None:
        """The file was replaced by this process: use it now, without waiting for the next look."""
        self._signature = self.file.signature()
        self.adopt(table, version)

    def _failed(self, reason: str) -> None:
        if reason != self.error:
            log.error("routes not reloaded, the previous ones stay in use: %s", reason)
        self.error = reason

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Look at the file every ``interval`` seconds until ``stop`` (or cancelled)."""
        if self.file.path is None:
            return
        stop = stop or asyncio.Event()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
            try:
                self.check()
            except Exception:  # a bug here must not stop the gateway from following the file later
                log.exception("checking the routes file failed")

    def start(self) -> None:
        """Follow the file on the running event loop (none yet: the admin API's next request starts it)."""
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._task = loop.create_task(self.run(), name="routes-reloader")
