"""Recordings and reports through the desktop's API, against real crm, calls and NATS: a recording the
gateway announced is listed and its audio relayed with ranges (206 with the right bytes, 416 past the
end, validators), kept from users who may not see the call and deleted only by administrators; a
report covers whole days in the user's time zone, as JSON and as calls' SVG chart."""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import secrets
import struct
import wave
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.events import RECORDING_READY_SUBJECT

from .conftest import (
    ADA,
    ADMIN_PASSWORD,
    BOB,
    PASSWORD,
    RunningDesktop,
    Services,
    call_event,
    new_call_id,
    unique_number,
)

SOFIA = ZoneInfo("Europe/Sofia")


def tone_wav(seconds: float = 1.0, rate: int = 8000) -> bytes:
    """A real WAV file: ``seconds`` of a 440 Hz tone, 16-bit mono."""
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / rate)))
        for n in range(int(seconds * rate))
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return buffer.getvalue()


def store_file(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def _at(event: ev.CallEvent, moment: datetime) -> ev.CallEvent:
    event.occurred_at.FromDatetime(moment)
    return event


async def publish_call(
    desktop: RunningDesktop,
    services: Services,
    *,
    number: str,
    when: datetime | None = None,
    answered: bool = True,
    talk_seconds: float = 30,
) -> str:
    """An inbound call to ada's 201 (answered, or missed), logged by calls before this returns."""
    call_id = new_call_id()
    start = when or datetime.now(UTC)
    await desktop.publish(_at(call_event("ringing", call_id, caller=number, leg_id="l1"), start))
    if answered:
        answer = start + timedelta(seconds=5)
        await desktop.publish(
            _at(
                call_event("answered", call_id, caller=number, sequence=2, extension="201", leg_id="l1"),
                answer,
            )
        )
        end = _at(
            call_event(
                "ended",
                call_id,
                caller=number,
                sequence=3,
                disposition=ev.DISPOSITION_ANSWERED,
                answered_extension="201",
                sip_status=200,
            ),
            answer + timedelta(seconds=talk_seconds),
        )
    else:
        end = _at(
            call_event("ended", call_id, caller=number, sequence=2, disposition=ev.DISPOSITION_MISSED),
            start + timedelta(seconds=20),
        )
    await desktop.publish(end)
    with services.calls() as calls:
        for _ in range(200):
            response = calls.get(f"/calls/{call_id}")
            if response.status_code == 200 and response.json()["disposition"]:
                return call_id
            await asyncio.sleep(0.05)
    raise AssertionError(f"calls never logged {call_id}")


async def add_recording(desktop: RunningDesktop, services: Services, call_id: str, audio: bytes) -> str:
    """A WAV file in calls' recordings directory, announced on the bus as the gateway does; listed by
    calls before this returns."""
    recording_id = f"rec-{secrets.token_hex(6)}"
    store_file(services.root / "recordings" / "web-tests" / f"{recording_id}.wav", audio)
    event = ev.RecordingReady(
        event_id=f"ev-{recording_id}",
        call_id=call_id,
        recording_id=recording_id,
        location=f"web-tests/{recording_id}.wav",
        content_type="audio/wav",
        size_bytes=len(audio),
        duration_ms=int(1000 * (len(audio) - 44) / 16000),
    )
    event.occurred_at.FromDatetime(datetime.now(UTC))
    event.started_at.FromDatetime(datetime.now(UTC) - timedelta(seconds=30))
    await desktop.bus.publish(RECORDING_READY_SUBJECT, event, msg_id=event.event_id)
    with services.calls() as calls:
        for _ in range(200):
            if calls.get(f"/calls/{call_id}/recordings").status_code == 200:
                return recording_id
            await asyncio.sleep(0.05)
    raise AssertionError(f"calls never indexed {recording_id}")


async def recorded_call(desktop: RunningDesktop, services: Services, audio: bytes) -> tuple[str, str, str]:
    """(number, call id, recording id) of an answered call of ada's with a recording."""
    number = unique_number()
    call_id = await publish_call(desktop, services, number=number)
    return number, call_id, await add_recording(desktop, services, call_id, audio)


@contextlib.asynccontextmanager
async def signed_in(
    desktop: RunningDesktop, login: str, password: str = PASSWORD
) -> AsyncIterator[httpx.AsyncClient]:
    """A client with ``login``'s session, sending the page's CSRF token and our origin."""
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, login, password)
        client.headers.update({"X-CSRF-Token": csrf, "Origin": desktop.url})
        yield client


# --- recordings ----------------------------------------------------------------------------------


async def test_the_audio_of_a_recording_is_relayed_with_ranges_for_a_seeking_player(
    desktop: RunningDesktop, services: Services
) -> None:
    audio = tone_wav(1.0)
    size = len(audio)
    _, call_id, recording_id = await recorded_call(desktop, services, audio)
    async with signed_in(desktop, "ada") as client:
        listed = await client.get(f"/api/calls/{call_id}/recordings")
        assert listed.status_code == 200, listed.text
        [item] = listed.json()["items"]
        url = f"/api/recordings/{recording_id}/audio"
        assert item["urls"] == {"audio": url, "download": f"{url}?download=true"}

        whole = await client.get(url)
        part = await client.get(url, headers={"Range": "bytes=1000-1999"})
        tail = await client.get(url, headers={"Range": "bytes=-100"})
        past = await client.get(url, headers={"Range": f"bytes={size}-"})
        stale = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"another-version"'})
        same = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": whole.headers["etag"]})
        cached = await client.get(url, headers={"If-None-Match": whole.headers["etag"]})
        head = await client.head(url)
        download = await client.get(item["urls"]["download"])

    assert whole.status_code == 200
    assert whole.content == audio
    assert whole.headers["content-type"] == "audio/wav"
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-length"] == str(size)

    assert part.status_code == 206
    assert part.content == audio[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{size}"
    assert part.headers["content-length"] == "1000"
    assert tail.status_code == 206
    assert tail.content == audio[-100:]

    assert past.status_code == 416
    assert past.headers["content-range"] == f"bytes */{size}"
    assert stale.status_code == 200  # the file changed since: the whole new one
    assert stale.content == audio
    assert same.status_code == 206
    assert same.content == audio[:10]
    assert cached.status_code == 304
    assert cached.content == b""

    assert head.status_code == 200
    assert head.headers["content-length"] == str(size)
    assert head.content == b""
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.content == audio


async def test_a_call_without_a_recording_and_a_call_the_user_may_not_see_answer_404(
    desktop: RunningDesktop, services: Services
) -> None:
    plain = await publish_call(desktop, services, number=unique_number())
    _, call_id, recording_id = await recorded_call(desktop, services, tone_wav(0.2))
    async with signed_in(desktop, "ada") as ada:
        none = await ada.get(f"/api/calls/{plain}/recordings")
        unknown = await ada.get("/api/recordings/no-such-recording/audio")
    async with signed_in(desktop, "bob") as bob:  # an agent who sees only his own calls
        listed = await bob.get(f"/api/calls/{call_id}/recordings")
        played = await bob.get(f"/api/recordings/{recording_id}/audio", headers={"Range": "bytes=0-99"})
    assert none.status_code == 404
    assert unknown.status_code == 404
    # calls does not tell whether a call the user may not see exists: 404, and never a byte of audio.
    assert listed.status_code == 404
    assert played.status_code == 404
    assert b"RIFF" not in played.content


async def test_only_an_administrator_deletes_a_recording_and_only_with_the_pages_token(
    desktop: RunningDesktop, services: Services
) -> None:
    _, call_id, recording_id = await recorded_call(desktop, services, tone_wav(0.2))
    url = f"/api/recordings/{recording_id}"
    async with signed_in(desktop, "ada") as ada:
        refused = await ada.delete(url)
        without_token = await ada.delete(url, headers={"X-CSRF-Token": ""})
        still = await ada.get(f"{url}/audio")
    assert refused.status_code == 403
    assert "administrator" in refused.json()["detail"]
    assert without_token.status_code == 403
    assert still.status_code == 200

    async with signed_in(desktop, "admin", ADMIN_PASSWORD) as admin:
        deleted = await admin.delete(url)
        gone = await admin.get(f"/api/calls/{call_id}/recordings")
        audio = await admin.get(f"{url}/audio")
    assert deleted.status_code == 204
    assert gone.status_code == 404
    assert audio.status_code == 404


# --- reports -------------------------------------------------------------------------------------


def a_quiet_day() -> date:
    """A day of the past no other test puts calls on."""
    return date(2021, 1, 4) + timedelta(days=secrets.randbelow(360))


async def calls_on(desktop: RunningDesktop, services: Services, day: date) -> None:
    """On ``day`` (Sofia time): two answered calls at 10:15 and 10:40 (30 s and 90 s), one missed at 14:05."""

    def local(hour: int, minute: int) -> datetime:
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SOFIA).astimezone(UTC)

    await publish_call(desktop, services, number=unique_number(), when=local(10, 15), talk_seconds=30)
    await publish_call(desktop, services, number=unique_number(), when=local(10, 40), talk_seconds=90)
    await publish_call(desktop, services, number=unique_number(), when=local(14, 5), answered=False)


async def test_a_report_counts_the_calls_of_whole_days_in_the_users_time_zone(
    desktop: RunningDesktop, services: Services
) -> None:
    day = a_quiet_day()
    await calls_on(desktop, services, day)
    period: dict[str, Any] = {"from_date": day.isoformat(), "to_date": day.isoformat(), "tz": "Europe/Sofia"}
    async with signed_in(desktop, "ada") as ada:
        mine = await ada.get("/api/reports", params={"subject": "employee", "id": ADA, **period})
        next_day = await ada.get(
            "/api/reports",
            params={"subject": "employee", "id": ADA, **period, "from_date": str(day + timedelta(days=1))},
        )
        company = await ada.get("/api/reports", params={"subject": "company", **period})
        backwards = await ada.get(
            "/api/reports",
            params={"subject": "employee", "id": ADA, **period, "to_date": str(day - timedelta(days=1))},
        )
        no_id = await ada.get("/api/reports", params={"subject": "team", **period})
        bad_zone = await ada.get(
            "/api/reports", params={"subject": "employee", "id": ADA, **period, "tz": "Mars/Base"}
        )
        page = await ada.get("/reports")
    async with signed_in(desktop, "bob") as bob:
        others = await bob.get("/api/reports", params={"subject": "employee", "id": ADA, **period})

    assert mine.status_code == 200, mine.text
    report = mine.json()
    counts = report["counts"]
    assert (counts["calls"], counts["answered"], counts["missed"]) == (3, 2, 1)
    assert counts["talk_seconds"] == 120
    assert counts["mean_talk_seconds"] == 60
    hours = {h["hour"]: (h["calls"], h["answered"], h["missed"]) for h in report["hours"] if h["calls"]}
    assert hours == {10: (2, 2, 0), 14: (1, 0, 1)}  # local hours, not UTC's
    assert report["period"]["tz"] == "Europe/Sofia"

    assert next_day.status_code == 422  # the last day before the first
    assert next_day.json()["detail"][0]["loc"] == ["query", "to_date"]
    assert backwards.status_code == 422
    assert no_id.status_code == 422
    assert no_id.json()["detail"][0]["loc"] == ["query", "id"]
    assert bad_zone.status_code == 422
    assert bad_zone.json()["detail"][0]["loc"] == ["query", "tz"]
    assert company.status_code == 403  # the whole company is for those who see all calls
    assert others.status_code == 403
    # An agent is offered only the report on themselves.
    assert 'value="employee"' in page.text
    assert 'value="company"' not in page.text


async def test_the_chart_of_a_report_is_calls_svg_served_for_an_img(
    desktop: RunningDesktop, services: Services
) -> None:
    day = a_quiet_day()
    await calls_on(desktop, services, day)
    params = {
        "subject": "employee",
        "id": ADA,
        "from_date": str(day),
        "to_date": str(day),
        "tz": "Europe/Sofia",
    }
    async with signed_in(desktop, "ada") as ada:
        chart = await ada.get("/api/reports/chart.svg", params=params)
        refused = await ada.get("/api/reports/chart.svg", params={**params, "subject": "company"})
    assert chart.status_code == 200
    assert chart.headers["content-type"] == "image/svg+xml"
    assert "default-src 'none'" in chart.headers["content-security-policy"]
    assert chart.headers["x-content-type-options"] == "nosniff"
    assert "<svg" in chart.text
    assert "Ada Lovelace" in chart.text
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/json"


async def test_an_administrator_picks_among_everyone_and_sees_the_company_and_the_ranking(
    desktop: RunningDesktop, services: Services
) -> None:
    day = a_quiet_day()
    await calls_on(desktop, services, day)
    period = {"from_date": str(day), "to_date": str(day), "tz": "Europe/Sofia"}
    async with signed_in(desktop, "admin", ADMIN_PASSWORD) as admin:
        subjects = (await admin.get("/api/reports/subjects")).json()
        company = await admin.get("/api/reports", params={"subject": "company", **period})
        team = await admin.get("/api/reports", params={"subject": "team", "id": "web-team", **period})
        ranking = await admin.get("/api/reports/employees", params={"team_id": "web-team", **period})
        page = await admin.get("/reports")
    async with signed_in(desktop, "ada") as ada:
        own = (await ada.get("/api/reports/subjects")).json()

    assert subjects["kinds"] == ["employee", "team", "contact", "company"]
    assert {ADA, BOB} <= {e["id"] for e in subjects["employees"]}
    assert "web-team" in {t["id"] for t in subjects["teams"]}
    assert own == {"kinds": ["employee"], "employees": [{"id": ADA, "name": "Ada Lovelace"}], "teams": []}
    assert company.status_code == 200
    assert company.json()["counts"]["calls"] >= 3
    assert team.json()["counts"]["calls"] == 3
    rows = {row["employee_id"]: row["counts"] for row in ranking.json()["items"]}
    assert (rows[ADA]["calls"], rows[ADA]["answered"], rows[ADA]["missed"]) == (3, 2, 1)
    assert rows[BOB]["calls"] == 0
    for kind in ("employee", "team", "contact", "company"):
        assert f'<option value="{kind}">' in page.text
