"""REST API of the recordings: the list per call, metadata, the audio (with ranges) and deletion.

``GET /recordings/{id}/audio`` is what a browser ``<audio>`` element points at: it answers ranges
(``206`` with ``Content-Range``; ``416`` when unsatisfiable) so the player can seek, validators (``ETag``,
``Last-Modified``, ``304``, ``If-Range``) so it can cache, and streams the file in chunks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.types import Receive, Scope, Send

from telecrm_calls.access import CallsAccess, admin_only, audience_of
from telecrm_calls.models import Recording
from telecrm_calls.recordings import (
    AudioFile,
    NoRecordings,
    RecordingElsewhere,
    RecordingNotFound,
    RecordingOutsideRoot,
    RecordingService,
    RecordingStorageUnavailable,
    RecordingUnavailable,
)
from telecrm_calls.schemas import ErrorOut
from telecrm_calls.service import CallNotFound
from telecrm_common.auth import Principal

_SPEC = re.compile(r"\s*(\d*)\s*-\s*(\d*)\s*")
_HUGE = 10**18  # positions with more digits than this are past the end of any file anyway

Download = Annotated[
    bool, Query(description="Send as an attachment named `<call start>-<caller>-<recording id>.wav`")
]


# --- shapes --------------------------------------------------------------------------------------


class RecordingUrls(BaseModel):
    self: str = Field(description="This recording's metadata")
    audio: str = Field(description="The audio, for a player (ranges supported)")
    download: str = Field(description="The audio as an attachment with a descriptive file name")


class RecordingOut(BaseModel):
    """One recording of a call (the index entry; the audio is at `urls.audio`)."""

    recording_id: str
    call_id: str
    content_type: str | None = Field(description="As reported by the gateway (`audio/wav`)")
    size_bytes: int | None = Field(description="As reported by the gateway")
    duration_seconds: float | None = Field(description="Millisecond precision")
    started_at: datetime | None = Field(description="When the recording started (UTC)")
    created_at: datetime = Field(description="When this service indexed it")
    urls: RecordingUrls

    @classmethod
    def from_recording(cls, recording: Recording, request: Request) -> RecordingOut:
        base = f"{request.scope.get('root_path', '')}/recordings/{quote(recording.recording_id, safe='')}"
        return cls(
            recording_id=recording.recording_id,
            call_id=recording.call_id,
            content_type=recording.content_type,
            size_bytes=recording.size_bytes,
            duration_seconds=None if recording.duration_ms is None else recording.duration_ms / 1000,
            started_at=recording.started_at,
            created_at=recording.created_at,
            urls=RecordingUrls(self=base, audio=f"{base}/audio", download=f"{base}/audio?download=1"),
        )


class CallRecordingsOut(BaseModel):
    call_id: str
    items: list[RecordingOut] = Field(description="Oldest first")


# --- HTTP ranges and validators (RFC 9110) -------------------------------------------------------


class RangeNotSatisfiable(Exception):
    pass


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The ``(first, last)`` byte positions (inclusive) that a ``Range`` header asks for.

    None when the header is to be ignored and the whole file sent: another unit, a malformed value, or
    several ranges (allowed by RFC 9110; players ask for one). RangeNotSatisfiable when the range starts
    past the end, or is an empty suffix (``bytes=-0``), or the file is empty.
    """
    unit, sep, ranges = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    specs = [spec for spec in ranges.split(",") if spec.strip()]
    if len(specs) != 1 or (match := _SPEC.fullmatch(specs[0])) is None:
        return None
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:  # bytes=-n: the last n bytes
        suffix = _position(last_text)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(0, size - suffix), size - 1
    first = _position(first_text)
    last = _position(last_text) if last_text else None
    if last is not None and last < first:
        return None  # invalid: ignored
    if first >= size:
        raise RangeNotSatisfiable
    return first, size - 1 if last is None else min(last, size - 1)


def _position(digits: str) -> int:
    return int(digits) if len(digits) < 19 else _HUGE


def _http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _seconds(value: datetime) -> int:
    return int(value.timestamp())


def _not_modified(request: Request, audio: AudioFile) -> bool:
    """If-None-Match (weak comparison), else If-Modified-Since."""
    if (none_match := request.headers.get("if-none-match")) is not None:
        tags = [tag.strip() for tag in none_match.split(",")]
        return "*" in tags or audio.etag in (tag.removeprefix("W/") for tag in tags)
    if (since := request.headers.get("if-modified-since")) is not None:
        date = _http_date(since)
        return date is not None and _seconds(audio.modified) <= _seconds(date)
    return False


def _range_applies(request: Request, audio: AudioFile) -> bool:
    """If-Range: the range is for this very file (strong ETag, or exactly its Last-Modified)."""
    condition = request.headers.get("if-range")
    if condition is None:
        return True
    condition = condition.strip()
    if condition.startswith(('"', "W/")):
        return condition == audio.etag
    date = _http_date(condition)
    return date is not None and _seconds(date) == _seconds(audio.modified)


class AudioResponse(StreamingResponse):
    """Streams ``length`` bytes of an open recording from ``start``, and closes it however it ends."""

    def __init__(
        self, audio: AudioFile, start: int, length: int, status_code: int, headers: Mapping[str, str]
    ) -> None:
        super().__init__(audio.read(start, length), status_code=status_code, headers=headers)
        self.audio = audio

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.audio.close()


def _audio_response(request: Request, audio: AudioFile, download: bool) -> Response:
    """The response to GET or HEAD of an open recording; it closes ``audio`` (now, or after streaming)."""
    try:
        response = _respond(request, audio, download)
    except BaseException:
        audio.close()
        raise
    if not isinstance(response, AudioResponse):
        audio.close()
    return response


def _respond(request: Request, audio: AudioFile, download: bool) -> Response:
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": audio.etag,
        "Last-Modified": format_datetime(audio.modified, usegmt=True),
        # Recordings are personal data: no shared caches; browsers revalidate (cheap, with the ETag).
        "Cache-Control": "private, no-cache",
    }
    if _not_modified(request, audio):
        return Response(status_code=304, headers=headers)
    first, last, status = 0, audio.size - 1, 200
    header = request.headers.get("range")
    if header is not None and _range_applies(request, audio):
        try:
            wanted = byte_range(header, audio.size)
        except RangeNotSatisfiable:
            return JSONResponse(
                {"detail": f"range {header!r} is not satisfiable: the recording has {audio.size} bytes"},
                status_code=416,
                headers={**headers, "Content-Range": f"bytes */{audio.size}"},
            )
        if wanted is not None:
            first, last, status = *wanted, 206
            headers["Content-Range"] = f"bytes {first}-{last}/{audio.size}"
    headers["Content-Type"] = audio.content_type
    headers["X-Content-Type-Options"] = "nosniff"
    if download:
        headers["Content-Disposition"] = f'attachment; filename="{audio.filename}"'
    length = last - first + 1
    headers["Content-Length"] = str(length)
    if request.method == "HEAD" or length == 0:
        return Response(status_code=status, headers=headers)
    return AudioResponse(audio, first, length, status, headers)


# --- routes --------------------------------------------------------------------------------------


def recordings_router(service: RecordingService, access: CallsAccess) -> APIRouter:
    """Reading needs the right to see the recording's call; deleting is for admins."""
    router = APIRouter(tags=["recordings"])
    reader = Depends(access.current)

    async def ensure_visible(user: Principal, recording_id: str) -> None:
        """404 unless the recording exists and the user may see its call."""
        if audience_of(user) is None:
            return
        try:
            entry = await service.get(recording_id)
            await access.ensure_call_visible(user, entry.recording.call_id)
        except (RecordingNotFound, HTTPException):
            raise HTTPException(status_code=404, detail=str(RecordingNotFound(recording_id))) from None

    not_found: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut}}
    unavailable: dict[int | str, dict[str, Any]] = {
        403: {"model": ErrorOut, "description": "The file is outside the recordings directory"},
        404: {"model": ErrorOut, "description": "No recording with this id, or its file is gone"},
        503: {"model": ErrorOut, "description": "The recordings directory is not available"},
    }

    @router.get(
        "/calls/{call_id}/recordings",
        summary="The recordings of a call",
        responses={404: {"model": ErrorOut, "description": "Unknown call, or a call without recordings"}},
    )
    async def list_call_recordings(
        call_id: str, request: Request, user: Principal = reader
    ) -> CallRecordingsOut:
        await access.ensure_call_visible(user, call_id)
        try:
            recordings = await service.list_for_call(call_id)
        except (CallNotFound, NoRecordings) as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        return CallRecordingsOut(
            call_id=call_id, items=[RecordingOut.from_recording(r, request) for r in recordings]
        )

    @router.get("/recordings/{recording_id}", summary="One recording", responses=not_found)
    async def get_recording(recording_id: str, request: Request, user: Principal = reader) -> RecordingOut:
        await ensure_visible(user, recording_id)
        try:
            entry = await service.get(recording_id)
        except RecordingNotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        return RecordingOut.from_recording(entry.recording, request)

    async def audio(recording_id: str, request: Request, download: bool) -> Response:
        try:
            opened = await service.open_audio(recording_id)
        except RecordingElsewhere as exc:  # a cloud PBX keeps it: the player fetches it there
            return RedirectResponse(exc.url, status_code=307)
        except RecordingOutsideRoot as exc:
            raise HTTPException(status_code=403, detail=f"recording {recording_id!r}: {exc}") from None
        except RecordingUnavailable as exc:
            raise HTTPException(status_code=404, detail=f"recording {recording_id!r}: {exc}") from None
        except RecordingNotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        except RecordingStorageUnavailable as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from None
        return _audio_response(request, opened, download)

    @router.get(
        "/recordings/{recording_id}/audio",
        summary="The audio of a recording",
        description="The file, streamed. `Range: bytes=first-last`, `bytes=first-` and `bytes=-suffix` "
        "answer `206 Partial Content`; a range past the end answers `416` with "
        "`Content-Range: bytes */size`. "
        "`ETag` / `Last-Modified` allow `304` and `If-Range`. HEAD answers the same headers.",
        response_class=Response,
        responses={
            200: {"content": {"audio/wav": {}}, "description": "The whole file"},
            206: {"content": {"audio/wav": {}}, "description": "The requested range"},
            304: {"description": "Not modified (If-None-Match / If-Modified-Since)"},
            307: {"description": "The recording is kept by the cloud PBX that made it: its URL"},
            416: {"model": ErrorOut, "description": "Range not satisfiable"},
            **unavailable,
        },
    )
    async def get_audio(
        recording_id: str, request: Request, download: Download = False, user: Principal = reader
    ) -> Response:
        await ensure_visible(user, recording_id)
        return await audio(recording_id, request, download)

    @router.head(
        "/recordings/{recording_id}/audio",
        summary="The headers of the audio of a recording",
        response_class=Response,
        responses=unavailable,
    )
    async def head_audio(
        recording_id: str, request: Request, download: Download = False, user: Principal = reader
    ) -> Response:
        await ensure_visible(user, recording_id)
        return await audio(recording_id, request, download)

    @router.delete(
        "/recordings/{recording_id}",
        summary="Delete a recording (file and index entry)",
        status_code=204,
        response_class=Response,
        responses={
            403: {"model": ErrorOut, "description": "Only administrators delete recordings"},
            404: {"model": ErrorOut, "description": "No recording with this id"},
            500: {"model": ErrorOut, "description": "The file could not be deleted (nothing was)"},
            503: {"model": ErrorOut, "description": "The recordings directory is not available"},
        },
    )
    async def delete_recording(recording_id: str, user: Principal = reader) -> Response:
        admin_only(user, "delete recordings")
        try:
            await service.delete(recording_id)
        except RecordingNotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        except RecordingStorageUnavailable as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from None
        except OSError as exc:
            raise HTTPException(
                status_code=500,
                detail=f"recording {recording_id!r}: the file could not be deleted: {exc.strerror or exc}",
            ) from None
        return Response(status_code=204)

    return router
