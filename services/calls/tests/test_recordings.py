"""Recordings: the index per call, audio over HTTP with ranges, path safety, deletion and retention.

Real files in a temporary recordings directory, RecordingReady ingested through CallLogService, the
REST API over ASGI.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_calls import recordings as recordings_module
from telecrm_calls.access import CallsAccess
from telecrm_calls.api import calls_router
from telecrm_calls.main import wire
from telecrm_calls.recordings import (
    RecordingFiles,
    RecordingOutsideRoot,
    RecordingService,
    RecordingStorageUnavailable,
)
from telecrm_calls.recordings_api import RangeNotSatisfiable, byte_range, recordings_router
from telecrm_calls.service import CallLogService
from telecrm_calls.settings import CallsSettings
from telecrm_calls.testing import T0, CallScript
from telecrm_common.app import Context, http_app
from telecrm_common.db import Database

AUDIO = bytes(range(256)) * 1200  # 300 KiB: several chunks
SIZE = len(AUDIO)
RETENTION = timedelta(days=30)


def _untouched(outside: Path) -> bool:
    return outside.read_bytes() == b"not yours" and Path("/etc/passwd").is_file()


def _unmount(root: Path) -> None:
    """As when the recordings volume is not mounted: the directory is not there."""
    root.rename(root.with_name("unmounted"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "recordings"
    path.mkdir()
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file next to the recordings directory, which must never be served or deleted."""
    path = tmp_path / "secret.wav"
    path.write_bytes(b"not yours")
    return path


@pytest.fixture
def recordings(db: Database, root: Path) -> RecordingService:
    return RecordingService(db, RecordingFiles(root), retention=RETENTION, sweep_interval=0.05)


@pytest.fixture
async def client(
    service: CallLogService,
    recordings: RecordingService,
    access: CallsAccess,
    admin_headers: dict[str, str],
) -> AsyncIterator[httpx.AsyncClient]:
    app = http_app("calls", "", [calls_router(service, access), recordings_router(recordings, access)], {})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://calls", headers=admin_headers
    ) as client:
        yield client


def recording_ready(
    recording_id: str,
    call_id: str,
    location: str,
    *,
    started_seconds: float = 5,
    size: int = SIZE,
    duration_ms: int = 61250,
    content_type: str = "audio/wav",
) -> ev.RecordingReady:
    event = ev.RecordingReady(
        event_id=f"ev-{recording_id}",
        call_id=call_id,
        recording_id=recording_id,
        location=location,
        content_type=content_type,
        size_bytes=size,
        duration_ms=duration_ms,
    )
    event.started_at.FromDatetime(T0 + timedelta(seconds=started_seconds))
    event.occurred_at.FromDatetime(T0 + timedelta(seconds=started_seconds + 62))
    return event


@pytest.fixture
async def call_with_recording(service: CallLogService, root: Path) -> str:
    """Call ``c-1`` (answered) with recording ``rec-1`` at ``2025/03/14/rec-1.wav`` (relative)."""
    await service.ingest(CallScript("c-1").answered_call(ring=5, talk=61.25))
    (root / "2025" / "03" / "14").mkdir(parents=True)
    (root / "2025" / "03" / "14" / "rec-1.wav").write_bytes(AUDIO)
    await service.ingest([recording_ready("rec-1", "c-1", "2025/03/14/rec-1.wav")])
    return "rec-1"


# --- the index -----------------------------------------------------------------------------------


async def test_list_of_a_call_and_metadata(
    client: httpx.AsyncClient, service: CallLogService, call_with_recording: str
) -> None:
    await service.ingest([recording_ready("rec-0", "c-1", "early.wav", started_seconds=1, duration_ms=0)])
    response = await client.get("/calls/c-1/recordings")
    assert response.status_code == 200
    body = response.json()
    assert body["call_id"] == "c-1"
    assert [item["recording_id"] for item in body["items"]] == ["rec-0", "rec-1"]  # oldest first
    item = body["items"][1]
    assert item == {
        "recording_id": "rec-1",
        "call_id": "c-1",
        "content_type": "audio/wav",
        "size_bytes": SIZE,
        "duration_seconds": 61.25,
        "started_at": "2025-03-14T09:26:58.589000Z",
        "created_at": item["created_at"],
        "urls": {
            "self": "/recordings/rec-1",
            "audio": "/recordings/rec-1/audio",
            "download": "/recordings/rec-1/audio?download=1",
        },
    }
    assert "location" not in item  # server paths stay on the server

    response = await client.get(item["urls"]["self"])
    assert response.status_code == 200
    assert response.json() == item


async def test_call_without_recordings_and_unknown_ids_answer_404(
    client: httpx.AsyncClient, service: CallLogService
) -> None:
    await service.ingest(CallScript("c-none").missed_call())
    response = await client.get("/calls/c-none/recordings")
    assert response.status_code == 404
    assert response.json() == {"detail": "call 'c-none' has no recordings"}

    response = await client.get("/calls/nope/recordings")
    assert response.status_code == 404
    assert response.json() == {"detail": "call 'nope' not found"}

    for method, url in [
        ("GET", "/recordings/nope"),
        ("GET", "/recordings/nope/audio"),
        ("HEAD", "/recordings/nope/audio"),
        ("DELETE", "/recordings/nope"),
        ("GET", "/recordings/..%2F..%2Fetc%2Fpasswd/audio"),
    ]:
        response = await client.request(method, url)
        assert response.status_code == 404, (method, url)
    assert (await client.get("/recordings/nope")).json() == {"detail": "recording 'nope' not found"}


async def test_recording_before_its_call_events(
    client: httpx.AsyncClient, service: CallLogService, root: Path
) -> None:
    """Events arrive in any order: a recording may be indexed before its call is known."""
    (root / "orphan.wav").write_bytes(AUDIO[:100])
    await service.ingest([recording_ready("rec-orphan", "c-later", "orphan.wav")])
    response = await client.get("/calls/c-later/recordings")
    assert [item["recording_id"] for item in response.json()["items"]] == ["rec-orphan"]
    response = await client.get("/recordings/rec-orphan/audio", params={"download": 1})
    assert response.headers["content-disposition"] == (
        'attachment; filename="20250314-092658-unknown-rec-orphan.wav"'
    )


async def test_has_recording_follows_deletion(
    client: httpx.AsyncClient, service: CallLogService, root: Path, call_with_recording: str
) -> None:
    (root / "second.wav").write_bytes(AUDIO[:10])
    await service.ingest([recording_ready("rec-2", "c-1", "second.wav", started_seconds=30)])
    assert (await client.get("/calls/c-1")).json()["has_recording"] is True

    assert (await client.delete("/recordings/rec-1")).status_code == 204
    assert (await client.get("/calls/c-1")).json()["has_recording"] is True
    assert (await client.delete("/recordings/rec-2")).status_code == 204
    assert (await client.get("/calls/c-1")).json()["has_recording"] is False
    assert (await client.get("/calls", params={"number": "3690439"})).json()["items"][0][
        "has_recording"
    ] is False
    assert (await client.get("/calls/c-1/recordings")).status_code == 404


async def test_a_recording_a_cloud_pbx_keeps_is_played_from_there(
    client: httpx.AsyncClient, service: CallLogService
) -> None:
    """The telephony API for providers reports the PBX's URL: the player is sent there (307, keeping
    Range), the index lists it, and deleting it drops our entry, never a request to the PBX."""
    url = "https://pbx.example.com/records/2025/03/14/abc.mp3?sig=x1"
    await service.ingest([recording_ready("rec-pbx", "c-pbx", url)])
    for method in ("GET", "HEAD"):
        response = await client.request(method, "/recordings/rec-pbx/audio", headers={"Range": "bytes=0-99"})
        assert (response.status_code, response.headers["location"]) == (307, url), method
    assert (await client.get("/recordings/rec-pbx")).json()["urls"]["audio"] == "/recordings/rec-pbx/audio"
    for location in ("s3://bucket/key.wav", "ftp://pbx.example.com/a.wav", "https:///no-host.wav"):
        await service.ingest([recording_ready(f"rec-{len(location)}", "c-pbx", location)])
        assert (await client.get(f"/recordings/rec-{len(location)}/audio")).status_code == 403, location
    assert (await client.delete("/recordings/rec-pbx")).status_code == 204
    assert (await client.get("/recordings/rec-pbx")).status_code == 404


# --- audio ---------------------------------------------------------------------------------------


async def test_full_get(client: httpx.AsyncClient, call_with_recording: str) -> None:
    response = await client.get("/recordings/rec-1/audio")
    assert response.status_code == 200
    assert response.content == AUDIO
    headers = response.headers
    assert headers["accept-ranges"] == "bytes"
    assert headers["content-length"] == str(SIZE)
    assert headers["content-type"] == "audio/wav"
    assert headers["etag"].startswith('"')
    assert headers["last-modified"].endswith(" GMT")
    assert headers["cache-control"] == "private, no-cache"
    assert "content-range" not in headers
    assert "content-disposition" not in headers


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-1000", 1000, 1000),
        (f"bytes=100-{SIZE * 2}", 100, SIZE - 1),  # the end is clamped
        ("bytes=70000-", 70000, SIZE - 1),
        ("bytes=-500", SIZE - 500, SIZE - 1),
        (f"bytes=-{SIZE + 1}", 0, SIZE - 1),  # a suffix longer than the file: all of it
        ("Bytes = 5 - 9", 5, 9),
    ],
)
async def test_ranges_answer_206(
    client: httpx.AsyncClient, call_with_recording: str, header: str, first: int, last: int
) -> None:
    response = await client.get("/recordings/rec-1/audio", headers={"Range": header})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {first}-{last}/{SIZE}"
    assert response.headers["content-length"] == str(last - first + 1)
    assert response.headers["accept-ranges"] == "bytes"
    assert response.content == AUDIO[first : last + 1]


@pytest.mark.parametrize(
    "header", [f"bytes={SIZE}-", f"bytes={SIZE + 10}-{SIZE + 20}", "bytes=-0", "bytes=" + "9" * 40 + "-"]
)
async def test_unsatisfiable_ranges_answer_416(
    client: httpx.AsyncClient, call_with_recording: str, header: str
) -> None:
    response = await client.get("/recordings/rec-1/audio", headers={"Range": header})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{SIZE}"
    assert response.headers["content-type"] == "application/json"
    assert "not satisfiable" in response.json()["detail"]


@pytest.mark.parametrize("header", ["items=0-10", "bytes=10-5", "bytes=abc", "bytes=-", "bytes=0-1,5-6"])
async def test_ignored_ranges_send_the_whole_file(
    client: httpx.AsyncClient, call_with_recording: str, header: str
) -> None:
    response = await client.get("/recordings/rec-1/audio", headers={"Range": header})
    assert response.status_code == 200
    assert response.content == AUDIO


async def test_empty_file(client: httpx.AsyncClient, service: CallLogService, root: Path) -> None:
    (root / "empty.wav").write_bytes(b"")
    await service.ingest([recording_ready("rec-empty", "c-e", "empty.wav", size=0)])
    response = await client.get("/recordings/rec-empty/audio")
    assert (response.status_code, response.content, response.headers["content-length"]) == (200, b"", "0")
    response = await client.get("/recordings/rec-empty/audio", headers={"Range": "bytes=0-"})
    assert (response.status_code, response.headers["content-range"]) == (416, "bytes */0")


async def test_head(client: httpx.AsyncClient, call_with_recording: str) -> None:
    get = await client.get("/recordings/rec-1/audio")
    head = await client.head("/recordings/rec-1/audio")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(SIZE)
    for name in ("accept-ranges", "content-type", "etag", "last-modified"):
        assert head.headers[name] == get.headers[name]

    head = await client.head("/recordings/rec-1/audio", headers={"Range": "bytes=10-19"})
    assert (head.status_code, head.headers["content-range"], head.content) == (
        206,
        f"bytes 10-19/{SIZE}",
        b"",
    )
    head = await client.head("/recordings/rec-1/audio", params={"download": "1"})
    assert head.headers["content-disposition"].startswith("attachment; ")


async def test_download_names_the_file(client: httpx.AsyncClient, call_with_recording: str) -> None:
    response = await client.get("/recordings/rec-1/audio", params={"download": 1})
    assert response.status_code == 200
    assert response.headers["content-disposition"] == (
        'attachment; filename="20250314-092653-+74993690439-rec-1.wav"'
    )
    assert response.content == AUDIO
    response = await client.get("/recordings/rec-1/audio", params={"download": "false"})
    assert "content-disposition" not in response.headers


async def test_validators(client: httpx.AsyncClient, root: Path, call_with_recording: str) -> None:
    first = await client.get("/recordings/rec-1/audio")
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert (await client.get("/recordings/rec-1/audio")).headers["etag"] == etag  # stable

    response = await client.get("/recordings/rec-1/audio", headers={"If-None-Match": etag})
    assert (response.status_code, response.content, response.headers["etag"]) == (304, b"", etag)
    response = await client.get("/recordings/rec-1/audio", headers={"If-None-Match": f'"other", W/{etag}'})
    assert response.status_code == 304
    response = await client.head("/recordings/rec-1/audio", headers={"If-Modified-Since": modified})
    assert response.status_code == 304
    response = await client.get("/recordings/rec-1/audio", headers={"If-None-Match": '"other"'})
    assert response.status_code == 200

    # If-Range: the range only when the file is still the one the client has part of.
    ranged = {"Range": "bytes=0-9"}
    response = await client.get("/recordings/rec-1/audio", headers={**ranged, "If-Range": etag})
    assert response.status_code == 206
    response = await client.get("/recordings/rec-1/audio", headers={**ranged, "If-Range": modified})
    assert response.status_code == 206
    response = await client.get("/recordings/rec-1/audio", headers={**ranged, "If-Range": '"stale"'})
    assert (response.status_code, len(response.content)) == (200, SIZE)

    # A rewritten file is another representation: a new ETag.
    path = root / "2025" / "03" / "14" / "rec-1.wav"
    path.write_bytes(AUDIO[::-1])
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    response = await client.get("/recordings/rec-1/audio", headers={"If-None-Match": etag})
    assert response.status_code == 200
    assert response.headers["etag"] != etag
    assert response.content == AUDIO[::-1]
    later = format_datetime(
        recordings_module.datetime.fromtimestamp(path.stat().st_mtime, recordings_module.UTC), usegmt=True
    )
    assert response.headers["last-modified"] == later


async def test_audio_is_read_in_chunks(recordings: RecordingService, call_with_recording: str) -> None:
    audio = await recordings.open_audio("rec-1")
    try:
        chunks = [chunk async for chunk in audio.read(0, SIZE)]
        assert all(len(chunk) <= recordings_module.CHUNK_SIZE for chunk in chunks)
        assert len(chunks) == -(-SIZE // recordings_module.CHUNK_SIZE)
        assert b"".join(chunks) == AUDIO
        chunks = [chunk async for chunk in audio.read(10, 2500, chunk_size=1000)]
        assert [len(chunk) for chunk in chunks] == [1000, 1000, 500]
        assert b"".join(chunks) == AUDIO[10:2510]
    finally:
        audio.close()


# --- locations: what is served, and what never is ------------------------------------------------


async def test_locations_under_the_root_are_served(
    client: httpx.AsyncClient, service: CallLogService, root: Path
) -> None:
    (root / "a.wav").write_bytes(b"absolute")
    (root / "b.wav").write_bytes(b"file url")
    (root / "c.wav").write_bytes(b"through a link")
    (root / "link.wav").symlink_to(root / "c.wav")  # a symlink that stays inside is fine
    (root / "sub").mkdir()
    (root / "sub" / "d.wav").write_bytes(b"dotted")
    await service.ingest(
        [
            recording_ready("abs", "c-loc", str(root / "a.wav")),
            recording_ready("url", "c-loc", (root / "b.wav").as_uri()),
            recording_ready("link", "c-loc", "link.wav"),
            recording_ready("dots", "c-loc", "sub/../sub/./d.wav"),
        ]
    )
    for recording_id, content in [
        ("abs", b"absolute"),
        ("url", b"file url"),
        ("link", b"through a link"),
        ("dots", b"dotted"),
    ]:
        response = await client.get(f"/recordings/{recording_id}/audio")
        assert (response.status_code, response.content) == (200, content), recording_id


async def test_locations_outside_the_root_are_never_served(
    client: httpx.AsyncClient, service: CallLogService, root: Path, outside: Path
) -> None:
    (root / "escape.wav").symlink_to(outside)
    (root / "dirlink").symlink_to(outside.parent)
    locations = {
        "dotdot-passwd": "../../etc/passwd",
        "dotdot": "../secret.wav",
        "absolute": str(outside),
        "etc": "/etc/passwd",
        "symlink": "escape.wav",
        "dir-symlink": "dirlink/secret.wav",
        "file-url": outside.as_uri(),
        "prefix-sibling": str(root) + "-other/x.wav",  # /tmp/.../recordings-other is not under the root
        "ftp-url": "ftp://example.com/r.wav",  # (http(s): a cloud PBX's, redirected to: see above)
        "root-itself": ".",
    }
    await service.ingest([recording_ready(rid, "c-out", loc) for rid, loc in locations.items()])
    for recording_id in locations:
        for method in ("GET", "HEAD"):
            response = await client.request(method, f"/recordings/{recording_id}/audio")
            assert response.status_code == 403, (recording_id, method)
            assert b"not yours" not in response.content
            assert b"root:" not in response.content

    # Deleting them drops the index entries and leaves the files alone.
    for recording_id in locations:
        assert (await client.delete(f"/recordings/{recording_id}")).status_code == 204
    assert _untouched(outside)
    assert (await client.get("/calls/c-out/recordings")).status_code == 404


@pytest.mark.parametrize(
    "location", ["../x.wav", "a/../../x.wav", "/etc/passwd", "a\x00b.wav", "", "file://elsewhere/x.wav"]
)
def test_resolution_refuses_what_is_not_under_the_root(root: Path, location: str) -> None:
    with pytest.raises(RecordingOutsideRoot):
        RecordingFiles(root).parts(location)


def test_a_symlink_swapped_in_after_the_check_is_not_followed(root: Path, outside: Path) -> None:
    """The check resolves the path; the open then refuses any symlink met on the way (O_NOFOLLOW)."""
    (root / "day").mkdir()
    (root / "day" / "r.wav").write_bytes(b"ok")
    files = RecordingFiles(root)
    real_root, parts = files.parts("day/r.wav")
    (root / "day" / "r.wav").unlink()
    (root / "day").rmdir()
    (root / "day").symlink_to(outside.parent)  # the attacker's swap, between check and open
    (outside.parent / "r.wav").write_bytes(b"outside")
    with pytest.raises(OSError, match=r"Too many levels of symbolic links|Not a directory"):
        files._parent_fd(real_root, parts)


async def test_missing_and_odd_files(client: httpx.AsyncClient, service: CallLogService, root: Path) -> None:
    os.mkfifo(root / "fifo.wav")  # opening it for reading must not hang the service
    (root / "folder.wav").mkdir()
    await service.ingest(
        [
            recording_ready("gone", "c-odd", "gone.wav"),
            recording_ready("fifo", "c-odd", "fifo.wav"),
            recording_ready("folder", "c-odd", "folder.wav"),
            recording_ready("under-file", "c-odd", "fifo.wav/x.wav"),
        ]
    )
    async with asyncio.timeout(5):
        for recording_id, detail in [
            ("gone", "the recording file is missing"),
            ("fifo", "not a regular file"),
            ("folder", "not a regular file"),
            ("under-file", "missing"),
        ]:
            response = await client.get(f"/recordings/{recording_id}/audio")
            assert response.status_code == 404, recording_id
            assert detail in response.json()["detail"], recording_id


async def test_missing_recordings_directory_answers_503(
    client: httpx.AsyncClient, root: Path, call_with_recording: str
) -> None:
    _unmount(root)
    response = await client.get("/recordings/rec-1/audio")
    assert response.status_code == 503
    assert "recordings directory" in response.json()["detail"]
    response = await client.delete("/recordings/rec-1")
    assert response.status_code == 503
    assert (await client.get("/recordings/rec-1")).status_code == 200  # nothing was deleted


# --- deletion ------------------------------------------------------------------------------------


async def test_delete_removes_file_and_entry(
    client: httpx.AsyncClient, root: Path, call_with_recording: str
) -> None:
    path = root / "2025" / "03" / "14" / "rec-1.wav"
    response = await client.delete("/recordings/rec-1")
    assert (response.status_code, response.content) == (204, b"")
    assert not path.exists()
    assert (root / "2025" / "03" / "14").is_dir()  # only the file goes
    assert (await client.get("/recordings/rec-1")).status_code == 404
    assert (await client.get("/recordings/rec-1/audio")).status_code == 404
    assert (await client.delete("/recordings/rec-1")).status_code == 404


async def test_delete_when_the_file_is_already_gone(
    client: httpx.AsyncClient, root: Path, call_with_recording: str
) -> None:
    (root / "2025" / "03" / "14" / "rec-1.wav").unlink()
    assert (await client.delete("/recordings/rec-1")).status_code == 204
    assert (await client.get("/recordings/rec-1")).status_code == 404


async def test_delete_never_removes_a_directory(
    client: httpx.AsyncClient, service: CallLogService, root: Path
) -> None:
    (root / "folder.wav").mkdir()
    await service.ingest([recording_ready("folder", "c-d", "folder.wav")])
    assert (await client.delete("/recordings/folder")).status_code == 204
    assert (root / "folder.wav").is_dir()
    assert (await client.get("/recordings/folder")).status_code == 404


async def test_delete_through_a_symlink_removes_the_audio(
    client: httpx.AsyncClient, service: CallLogService, root: Path
) -> None:
    (root / "target.wav").write_bytes(b"target")
    (root / "link.wav").symlink_to(root / "target.wav")
    (root / "keep.wav").write_bytes(b"keep")
    await service.ingest([recording_ready("via-link", "c-l", "link.wav")])
    assert (await client.delete("/recordings/via-link")).status_code == 204
    # The location resolved to target.wav, which is what the recording is: that file goes.
    assert not (root / "target.wav").exists()
    assert (root / "keep.wav").read_bytes() == b"keep"


async def test_delete_failure_keeps_the_entry(
    client: httpx.AsyncClient,
    recordings: RecordingService,
    monkeypatch: pytest.MonkeyPatch,
    call_with_recording: str,
) -> None:
    def refuse(location: str) -> bool:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(recordings.files, "unlink", refuse)
    response = await client.delete("/recordings/rec-1")
    assert response.status_code == 500
    assert "Permission denied" in response.json()["detail"]
    assert (await client.get("/recordings/rec-1")).status_code == 200


# --- retention -----------------------------------------------------------------------------------


async def _ids(recordings: RecordingService, call_id: str) -> list[str]:
    try:
        return [r.recording_id for r in await recordings.list_for_call(call_id)]
    except Exception:
        return []


@pytest.fixture
async def aged(service: CallLogService, root: Path) -> dict[str, Path]:
    """Recordings of call ``c-age`` made 0, 29, 31 and 90 days after T0 (by ``started_at``)."""
    paths: dict[str, Path] = {}
    events = []
    for days in (0, 29, 31, 90):
        paths[f"d{days}"] = root / f"d{days}.wav"
        paths[f"d{days}"].write_bytes(b"x" * days)
        events.append(recording_ready(f"d{days}", "c-age", f"d{days}.wav", started_seconds=days * 86400))
    await service.ingest(events)
    return paths


async def test_sweep_removes_old_recordings_and_keeps_new_ones(
    recordings: RecordingService, aged: dict[str, Path]
) -> None:
    now = T0 + timedelta(days=61)  # cut-off: T0 + 31 days
    result = await recordings.sweep(now)
    assert (result.deleted, result.failed) == (2, 0)
    assert await _ids(recordings, "c-age") == ["d31", "d90"]
    assert [name for name, path in aged.items() if path.exists()] == ["d31", "d90"]

    assert (await recordings.sweep(now)).deleted == 0  # nothing left to do


async def test_retention_zero_keeps_everything(db: Database, root: Path, aged: dict[str, Path]) -> None:
    forever = RecordingService(db, RecordingFiles(root), retention=timedelta(0))
    result = await forever.sweep(T0 + timedelta(days=10000))
    assert (result.deleted, result.failed) == (0, 0)
    assert await _ids(forever, "c-age") == ["d0", "d29", "d31", "d90"]
    assert all(path.exists() for path in aged.values())
    stop = asyncio.Event()
    async with asyncio.timeout(1):
        await forever.run_sweeper(stop)  # returns at once: nothing to do, ever


async def test_sweep_in_batches_with_failures_and_foreign_locations(
    recordings: RecordingService,
    service: CallLogService,
    root: Path,
    outside: Path,
    aged: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recordings_module, "SWEEP_BATCH", 2)
    await service.ingest(
        [
            recording_ready("foreign", "c-age", str(outside), started_seconds=0),
            recording_ready("gone", "c-age", "gone.wav", started_seconds=0),
            recording_ready("stuck", "c-age", "d29.wav", started_seconds=0),
        ]
    )
    real_unlink = recordings.files.unlink

    def unlink(location: str) -> bool:
        if location == "d29.wav":
            raise PermissionError(13, "Permission denied")
        return real_unlink(location)

    monkeypatch.setattr(recordings.files, "unlink", unlink)
    result = await recordings.sweep(T0 + timedelta(days=61))
    # d0, foreign (entry only), gone (entry only) deleted; d29 and "stuck" kept: their file would not go
    assert (result.deleted, result.failed) == (3, 2)
    assert sorted(await _ids(recordings, "c-age")) == ["d29", "d31", "d90", "stuck"]
    assert _untouched(outside)
    assert not aged["d0"].exists()

    monkeypatch.setattr(recordings.files, "unlink", real_unlink)
    result = await recordings.sweep(T0 + timedelta(days=61))
    assert (result.deleted, result.failed) == (2, 0)  # the next pass finishes the job


async def test_sweep_does_nothing_while_the_directory_is_missing(
    recordings: RecordingService, root: Path, aged: dict[str, Path]
) -> None:
    _unmount(root)
    with pytest.raises(RecordingStorageUnavailable):
        await recordings.sweep(T0 + timedelta(days=1000))
    assert await _ids(recordings, "c-age") == ["d0", "d29", "d31", "d90"]


async def test_sweeper_task_sweeps_until_stopped(
    recordings: RecordingService, aged: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real_sweep = recordings.sweep
    stop = asyncio.Event()

    async def sweep(now: recordings_module.datetime | None = None) -> recordings_module.SweepResult:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("database went away")  # logged; the task keeps going
        if calls == 3:
            stop.set()
        return await real_sweep(now)

    monkeypatch.setattr(recordings, "sweep", sweep)
    async with asyncio.timeout(5):
        await recordings.run_sweeper(stop)
    assert calls == 3
    # Real time is years after T0: every recording is past the 30 days.
    assert await _ids(recordings, "c-age") == []
    assert not any(path.exists() for path in aged.values())


# --- pieces --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", 1, (0, 0)),
        ("bytes=0-", 10, (0, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=5-100", 10, (5, 9)),
        ("bytes=0-1, 3-4", 10, None),
        ("bytes=0-1,", 10, (0, 1)),
        ("bytes=1-0", 10, None),
        ("bytes 0-1", 10, None),
        ("bytes=0x1-2", 10, None),
    ],
)
def test_byte_range(header: str, size: int, expected: tuple[int, int] | None) -> None:
    assert byte_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=-0", 10), ("bytes=-5", 0)])
def test_byte_range_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        byte_range(header, size)


def test_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = CallsSettings()
    assert (settings.recordings_dir, settings.recordings_retention_days) == (Path("var/recordings"), 0)
    monkeypatch.setenv("CALLS_RECORDINGS_DIR", "/srv/recordings")
    monkeypatch.setenv("CALLS_RECORDINGS_RETENTION_DAYS", "90")
    monkeypatch.setenv("CALLS_RECORDINGS_SWEEP_INTERVAL_SECONDS", "600")
    settings = CallsSettings()
    assert settings.recordings_dir == Path("/srv/recordings")
    assert (settings.recordings_retention_days, settings.recordings_sweep_interval_seconds) == (90, 600)
    monkeypatch.setenv("CALLS_RECORDINGS_RETENTION_DAYS", "-1")
    with pytest.raises(ValueError, match="recordings_retention_days"):
        CallsSettings()


def test_wiring_serves_recordings_and_runs_the_sweeper(db: Database, root: Path) -> None:
    settings = CallsSettings(recordings_dir=root, recordings_retention_days=7)
    wiring = wire(Context(settings=settings, db=db, bus=None))  # type: ignore[arg-type]
    paths = {route.path for router in wiring.routers for route in router.routes}  # type: ignore[attr-defined]
    assert {"/calls/{call_id}/recordings", "/recordings/{recording_id}/audio"} <= paths
    sweeper = [task for task in wiring.background if getattr(task, "__name__", "") == "run_sweeper"]
    assert len(sweeper) == 1
    service = sweeper[0].__self__  # type: ignore[attr-defined]
    assert (service.files.root, service.retention) == (root, timedelta(days=7))
