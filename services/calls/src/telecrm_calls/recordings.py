"""Recordings of calls: the index per call, the audio files, deletion and retention.

No web imports here: :mod:`telecrm_calls.recordings_api` serves this over HTTP.

The gateway writes the files into a directory it shares with this service (``CALLS_RECORDINGS_DIR``, a
local disk or a mounted volume) and reports each one with ``tel.recording.ready``; its ``location`` is the
file's path, absolute or relative to that directory (a ``file:`` URL is read as its path). Only regular
files under the directory are ever opened or deleted: a location that leads outside it (``..``, another
absolute path, a symlink pointing out) is refused, and every path component is opened with
``O_NOFOLLOW`` below the directory, so a symlink swapped in after the check cannot lead out either.
A recording a cloud PBX keeps (the telephony API for providers reports an ``http(s):`` URL) is not
ours to read: the API redirects the player there. Locations that are URLs of other schemes are indexed
but not served.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import mimetypes
import os
import re
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

from telecrm_calls import recordings_repository as repo
from telecrm_calls.models import Call, Recording
from telecrm_calls.service import CallNotFound, CallsError
from telecrm_common.db import Database

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
SWEEP_BATCH = 500
DEFAULT_CONTENT_TYPE = "audio/wav"

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO must not hang; it changes nothing for regular files.
_O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_UNSAFE_NAME = re.compile(r"[^0-9A-Za-z+._-]+")


# --- errors --------------------------------------------------------------------------------------


class RecordingNotFound(CallsError):
    def __init__(self, recording_id: str) -> None:
        super().__init__(f"recording {recording_id!r} not found")
        self.recording_id = recording_id


class NoRecordings(CallsError):
    """The call is known but has no recordings."""

    def __init__(self, call_id: str) -> None:
        super().__init__(f"call {call_id!r} has no recordings")
        self.call_id = call_id


class RecordingUnavailable(CallsError):
    """The recording is indexed but its file cannot be served (gone, or not a file)."""


class RecordingOutsideRoot(RecordingUnavailable):
    """The location leads outside the recordings directory, or is not a file path at all."""


class RecordingElsewhere(RecordingOutsideRoot):
    """The recording is kept by the PBX that made it, at an ``http(s)`` URL: players go there."""

    def __init__(self, url: str) -> None:
        super().__init__("the recording is kept by the PBX at its URL")
        self.url = url


class RecordingStorageUnavailable(CallsError):
    """The recordings directory itself is missing (volume not mounted?): nothing can be checked."""


# --- files ---------------------------------------------------------------------------------------


class RecordingFiles:
    """The recordings directory: opens and deletes files strictly below it. Blocking; use in a thread."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def real_root(self) -> str:
        """The directory's real path; RecordingStorageUnavailable when it is missing."""
        root = os.path.realpath(self.root)
        if not os.path.isdir(root):
            raise RecordingStorageUnavailable(f"recordings directory {str(self.root)!r} is not available")
        return root

    def parts(self, location: str) -> tuple[str, tuple[str, ...]]:
        """The real root and the components of the location's real path below it.

        Raises RecordingOutsideRoot when the location is not a path under the root (after resolving
        ``..`` and symlinks), RecordingStorageUnavailable when the root is missing.
        """
        root = self.real_root()
        path = _location_path(location)
        try:
            real = os.path.realpath(os.path.join(root, path))  # an absolute path replaces the root
        except (ValueError, OSError):  # NUL bytes, symlink loops
            raise RecordingOutsideRoot(f"location {location!r} is not a usable path") from None
        if os.path.commonpath([root, real]) != root or real == root:
            raise RecordingOutsideRoot("location is outside the recordings directory")
        return root, Path(os.path.relpath(real, root)).parts

    def _parent_fd(self, root: str, parts: tuple[str, ...]) -> int:
        """An open descriptor of the file's directory, reached without following any symlink."""
        fd = os.open(root, _O_DIR)
        try:
            for part in parts[:-1]:
                child = os.open(part, _O_DIR, dir_fd=fd)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def open(self, location: str) -> tuple[int, os.stat_result]:
        """A descriptor of the regular file at ``location`` and its stat; the caller closes it."""
        root, parts = self.parts(location)
        try:
            parent = self._parent_fd(root, parts)
            try:
                fd = os.open(parts[-1], _O_FILE, dir_fd=parent)
            finally:
                os.close(parent)
        except (FileNotFoundError, NotADirectoryError):
            raise RecordingUnavailable("the recording file is missing") from None
        except OSError as exc:  # ELOOP (a symlink swapped in), ENOTDIR, EACCES...
            raise RecordingUnavailable(f"the recording file cannot be opened: {exc.strerror}") from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise RecordingUnavailable("the recording location is not a regular file")
        return fd, info

    def unlink(self, location: str) -> bool:
        """Delete the file at ``location``; False when there is none (gone, or a directory, which is
        never deleted). OSError when it cannot be deleted."""
        root, parts = self.parts(location)
        try:
            parent = self._parent_fd(root, parts)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            if stat.S_ISDIR(os.stat(parts[-1], dir_fd=parent, follow_symlinks=False).st_mode):
                return False
            os.unlink(parts[-1], dir_fd=parent)  # never follows a symlink: removes the link itself
        except FileNotFoundError:
            return False
        finally:
            os.close(parent)
        return True


def _location_path(location: str) -> str:
    """The file path of a location: a path as given, or the path of a ``file:`` URL."""
    if not location or "\x00" in location:
        raise RecordingOutsideRoot("the recording has no usable location")
    parsed = urlsplit(location)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise RecordingOutsideRoot("the recording is on another host")
        return unquote(parsed.path)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        raise RecordingElsewhere(location)
    if len(parsed.scheme) > 1:  # s3:, ftp:... (a one-letter scheme would be a Windows drive)
        raise RecordingOutsideRoot(f"recordings at {parsed.scheme}: locations are not served")
    return location


@dataclass
class AudioFile:
    """An open recording file, ready to be streamed; :meth:`close` it (the HTTP response does)."""

    recording: Recording
    fd: int
    size: int
    modified: datetime
    etag: str  # a strong validator, quoted: the file's identity, size and modification time
    content_type: str
    filename: str  # the name to save it under
    _closed: bool = field(default=False, init=False)

    async def read(self, start: int, length: int, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """The bytes ``[start, start + length)``, one chunk at a time (never the whole file at once)."""
        offset, end = start, start + length
        while offset < end:
            chunk = await asyncio.to_thread(os.pread, self.fd, min(chunk_size, end - offset), offset)
            if not chunk:  # the file shrank under us: the response will be short, the client notices
                log.warning(
                    "recording file ended early",
                    extra={"recording_id": self.recording.recording_id, "offset": offset, "expected": end},
                )
                return
            offset += len(chunk)
            yield chunk

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self.fd)


def download_name(recording: Recording, call: Call | None, extension: str = ".wav") -> str:
    """``<call start, UTC, YYYYmmdd-HHMMSS>-<caller>-<recording id><extension>``, safe in any header."""
    when = (call.started_at if call else None) or recording.started_at or recording.occurred_at
    date = when.astimezone(UTC).strftime("%Y%m%d-%H%M%S") if when else "undated"
    caller = (call.caller_e164 or call.caller_number) if call else None
    parts = [date, _safe(caller or "") or "unknown", _safe(recording.recording_id) or "recording"]
    return "-".join(parts) + extension


def _safe(text: str) -> str:
    return _UNSAFE_NAME.sub("_", text).strip("._")[:64]


def _etag(info: os.stat_result) -> str:
    identity = f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}".encode()
    return '"' + hashlib.blake2b(identity, digest_size=12).hexdigest() + '"'


def _extension(location: str, content_type: str) -> str:
    suffix = Path(urlsplit(location).path).suffix.lower()
    if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix):
        return suffix
    return mimetypes.guess_extension(content_type) or ".wav"


# --- the service ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordingEntry:
    recording: Recording
    call: Call | None


@dataclass
class SweepResult:
    """What one retention sweep did: recordings removed, and those kept because a file would not go."""

    deleted: int = 0
    failed: int = 0


class RecordingService:
    """The recordings index over one database and the recordings directory."""

    def __init__(
        self,
        db: Database,
        files: RecordingFiles,
        *,
        retention: timedelta | None = None,
        sweep_interval: float = 3600.0,
    ) -> None:
        self.db = db
        self.files = files
        self.retention = retention if retention else None  # None (or 0): keep forever
        self.sweep_interval = sweep_interval

    async def list_for_call(self, call_id: str) -> list[Recording]:
        """The call's recordings, oldest first; CallNotFound or NoRecordings when there are none."""
        async with self.db.session() as session:
            recordings = await repo.list_for_call(session, call_id)
            if not recordings:
                if await repo.call_exists(session, call_id):
                    raise NoRecordings(call_id)
                raise CallNotFound(call_id)
        return recordings

    async def get(self, recording_id: str) -> RecordingEntry:
        async with self.db.session() as session:
            row = await repo.get(session, recording_id)
        if row is None:
            raise RecordingNotFound(recording_id)
        return RecordingEntry(*row)

    async def open_audio(self, recording_id: str) -> AudioFile:
        """The recording's file, open. RecordingNotFound, RecordingUnavailable (RecordingOutsideRoot),
        RecordingStorageUnavailable."""
        entry = await self.get(recording_id)
        recording = entry.recording
        content_type = (
            recording.content_type
            or mimetypes.guess_type(urlsplit(recording.location).path)[0]
            or DEFAULT_CONTENT_TYPE
        )
        filename = download_name(recording, entry.call, _extension(recording.location, content_type))
        fd, info = await asyncio.to_thread(self.files.open, recording.location)
        return AudioFile(
            recording=recording,
            fd=fd,
            size=info.st_size,
            modified=datetime.fromtimestamp(info.st_mtime, UTC),
            etag=_etag(info),
            content_type=content_type,
            filename=filename,
        )

    async def delete(self, recording_id: str) -> None:
        """Delete the file, then the index row. A file already gone is fine; a location outside the
        directory only loses its row (that file is not ours to delete). RecordingNotFound when unknown;
        RecordingStorageUnavailable or OSError (and nothing deleted) when the file cannot be removed."""
        recording = (await self.get(recording_id)).recording
        await self._remove_file(recording.recording_id, recording.location)
        async with self.db.session() as session:
            if not await repo.delete_ids(session, [recording_id]):
                raise RecordingNotFound(recording_id)  # deleted meanwhile by another request
        log.info("recording deleted", extra={"recording_id": recording_id, "call_id": recording.call_id})

    async def _remove_file(self, recording_id: str, location: str) -> None:
        try:
            removed = await asyncio.to_thread(self.files.unlink, location)
        except RecordingOutsideRoot as exc:
            log.warning("recording file left in place: %s", exc, extra={"recording_id": recording_id})
            return
        if not removed:
            log.info("recording file was already gone", extra={"recording_id": recording_id})

    async def sweep(self, now: datetime | None = None) -> SweepResult:
        """One retention pass: every recording made before ``now - retention`` loses its file and row.

        Files that cannot be removed (permissions, I/O errors) keep their rows, for the next pass. While
        the recordings directory is missing nothing is deleted (RecordingStorageUnavailable).
        """
        result = SweepResult()
        if self.retention is None:
            return result
        await asyncio.to_thread(self.files.real_root)  # raises when the directory is missing
        before = (now or datetime.now(UTC)) - self.retention
        after: str | None = None
        while True:
            async with self.db.session() as session:
                batch = await repo.expired(session, before=before, after_id=after, limit=SWEEP_BATCH)
            if not batch:
                break
            after = batch[-1][0]
            removed: list[str] = []
            for recording_id, location in batch:
                try:
                    await self._remove_file(recording_id, location)
                except (OSError, RecordingStorageUnavailable) as exc:
                    log.warning(
                        "recording file could not be deleted: %s", exc, extra={"recording_id": recording_id}
                    )
                    result.failed += 1
                    continue
                removed.append(recording_id)
            async with self.db.session() as session:
                result.deleted += await repo.delete_ids(session, removed)
            if len(batch) < SWEEP_BATCH:
                break
        if result.deleted or result.failed:
            log.info(
                "recordings retention sweep",
                extra={"deleted": result.deleted, "failed": result.failed, "before": before.isoformat()},
            )
        return result

    async def run_sweeper(self, stop: asyncio.Event) -> None:
        """Sweep every ``sweep_interval`` seconds until ``stop`` is set (a ServiceRunner background task).

        A failed sweep (database or directory unavailable) is logged and tried again next time.
        """
        if self.retention is None:
            log.info("recordings are kept forever (CALLS_RECORDINGS_RETENTION_DAYS=0)")
            return
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("recordings retention sweep failed: %s", exc, exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.sweep_interval)
