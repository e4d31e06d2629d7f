"""Call recording on a running gateway: both sides mixed into one WAV file per call, with sipp talking.

The caller (``uac_controlled_audio.xml``) plays sipp's own g711a.pcap (speech) after the answer; the
agent's phone sends nothing, so what the file holds is the caller's voice passed through the bridge.
"""

from __future__ import annotations

import array
import asyncio
import math
import time
import wave
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.auth import Access, AuthSettings, Principal, Role
from telecrm_devstack.testing import make_principal
from telecrm_gateway.api import create_app
from telecrm_gateway.errors import RoutingConfigError
from telecrm_gateway.routing import RoutingTable
from tests.sipp.runner import Sipp, environment_ok, start_uas

SIPP_OK, SIPP_MISSING = environment_ok()
PCAP = Path("/usr/share/sip-tester/g711a.pcap")
pytestmark = [
    pytest.mark.sip,
    pytest.mark.skipif(not SIPP_OK, reason=SIPP_MISSING),
    pytest.mark.skipif(not PCAP.exists(), reason=f"{PCAP} (Debian package sip-tester) is missing"),
]

HOST = "127.0.0.1"
ALICE = make_principal("u-alice", Role.AGENT, employee_id="e1")


def wav_facts(path: Path) -> tuple[int, int, float]:
    """Sample rate, duration (ms) and RMS level of a 16-bit mono WAV file."""
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        rate, frames = wav.getframerate(), wav.getnframes()
        samples = array.array("h", wav.readframes(frames))
    rms = math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0
    return rate, frames * 1000 // rate, rms


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_recorded_line_gives_a_wav_of_the_call(gateway_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with start_uas("uas_answer.xml", duration_ms=100) as agent:
        gw = await gateway_factory(
            extensions={"101": {"contact": f"sip:101@{HOST}:{agent.port}", "employee_id": "e1"}},
            lines={"+15551230000": {"extension": "101", "record": True}},
            recordings_dir=tmp_path,
        )
        ready: list[ev.RecordingReady] = []
        gw.service.calls.recording_sink = ready.append
        caller = Sipp("uac_controlled_audio.xml", remote=f"{HOST}:{gw.port}", service="+15551230000").start()
        await gw.wait_for(lambda: any(e.WhichOneof("kind") == "answered" for e in gw.events), what="answer")
        answered = time.monotonic()
        call_id = gw.events[0].call_id
        await asyncio.sleep(3)  # the conversation
        gw.service.hangup(call_id)
        talked_ms = (time.monotonic() - answered) * 1000
        assert (await caller.wait_async(10)).ok
        await gw.wait_ended()
        await wait_for(lambda: bool(ready), 10, "RecordingReady")

    [recording] = ready
    assert recording.location == f"{call_id}.wav"  # in the recordings directory
    path = tmp_path / recording.location
    assert (recording.call_id, recording.content_type) == (call_id, "audio/wav")
    assert recording.recording_id
    assert recording.size_bytes == path.stat().st_size
    rate, duration_ms, rms = wav_facts(path)
    assert rate >= 8000
    assert recording.duration_ms == duration_ms
    # As long as the call was answered (give or take the media's setup and a loaded machine's clock),
    # and not silent.
    assert talked_ms / 2 <= duration_ms <= talked_ms + 500, (duration_ms, talked_ms)
    assert rms > 100, "the recording is silent"
    assert recording.started_at.ToDatetime() <= recording.occurred_at.ToDatetime()


async def test_recording_started_paused_and_stopped_over_rest(  # type: ignore[no-untyped-def]
    gateway_factory,
    tmp_path: Path,
    auth_settings: AuthSettings,
    token_for: Callable[[Principal], dict[str, str]],
) -> None:
    with start_uas("uas_answer.xml", duration_ms=100) as agent:
        gw = await gateway_factory(
            extensions={"101": {"contact": f"sip:101@{HOST}:{agent.port}", "employee_id": "e1"}},
            recordings_dir=tmp_path,
        )
        ready: list[ev.RecordingReady] = []
        gw.service.calls.recording_sink = ready.append
        app = create_app(
            gw.service, {"sip": gw.service.check_sip}, access=Access.from_settings(auth_settings)
        )
        caller = Sipp("uac_controlled_audio.xml", remote=f"{HOST}:{gw.port}", service="101").start()
        await gw.wait_for(lambda: any(e.WhichOneof("kind") == "answered" for e in gw.events), what="answer")
        call_id = gw.events[0].call_id
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw", headers=token_for(ALICE)
        ) as client:
            assert (await client.post(f"/calls/{call_id}/recording/stop")).status_code == 409  # none yet
            began = time.monotonic()
            started = await client.post(f"/calls/{call_id}/recording/start")
            assert started.status_code == 200, started.text
            body = started.json()
            assert body["state"] == "recording"
            assert (await client.post(f"/calls/{call_id}/recording/start")).status_code == 409
            await asyncio.sleep(1.0)
            paused = await client.post(f"/calls/{call_id}/recording/pause")
            assert paused.json()["state"] == "paused"
            await asyncio.sleep(1.5)  # left out of the file
            resumed = await client.post(f"/calls/{call_id}/recording/resume")
            assert resumed.json()["state"] == "recording"
            await asyncio.sleep(1.0)
            stopped = await client.post(f"/calls/{call_id}/recording/stop")
            wall_ms = (time.monotonic() - began) * 1000
            assert stopped.json() == {
                "call_id": call_id,
                "recording_id": body["recording_id"],
                "state": "stopped",
            }
            # Ready while the call goes on.
            await wait_for(lambda: bool(ready), 10, "RecordingReady")
            assert gw.service.calls.get(call_id) is not None
            assert (await client.post(f"/calls/{call_id}/hangup")).status_code == 202
        assert (await caller.wait_async(10)).ok
        await gw.wait_ended()

    [recording] = ready
    assert recording.recording_id == body["recording_id"]
    assert recording.location == f"{call_id}.wav"  # in the recordings directory
    path = tmp_path / recording.location
    _, duration_ms, rms = wav_facts(path)
    # About 2 s recorded (1 s, pause, 1 s): the 1.5 s pause is not in the file.
    assert 800 <= duration_ms <= wall_ms - 1000, (duration_ms, wall_ms)
    assert rms > 100
    kinds = [e.WhichOneof("kind") for e in gw.events]
    assert kinds == ["offered", "ringing", "answered", "ended"]


async def test_a_click_to_call_of_a_recorded_extension_is_recorded(gateway_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with (
        start_uas("uas_answer.xml", duration_ms=100) as alice,
        start_uas("uas_answer.xml", duration_ms=100) as bob,
    ):
        gw = await gateway_factory(
            extensions={
                "101": {"contact": f"sip:101@{HOST}:{alice.port}", "employee_id": "e1", "record": True},
                "102": {"contact": f"sip:102@{HOST}:{bob.port}", "employee_id": "e2"},
            },
            recordings_dir=tmp_path,
        )
        ready: list[ev.RecordingReady] = []
        gw.service.calls.recording_sink = ready.append
        await gw.service.calls.dial("click-1", "101", "102")
        await gw.wait_for(lambda: any(e.WhichOneof("kind") == "answered" for e in gw.events), what="answer")
        await asyncio.sleep(1.5)
        gw.service.hangup("click-1")
        assert (await alice.wait_async(10)).ok
        assert (await bob.wait_async(10)).ok
        await gw.wait_ended()
        await wait_for(lambda: bool(ready), 10, "RecordingReady")

    [recording] = ready
    assert (recording.call_id, recording.location) == ("click-1", "click-1.wav")
    _, duration_ms, _ = wav_facts(tmp_path / recording.location)
    assert 0 < duration_ms == recording.duration_ms


def test_the_routes_file_says_what_is_recorded() -> None:
    routes = RoutingTable.from_mapping(
        {
            "extensions": {
                "101": {"contact": "sip:101@127.0.0.1:5070", "record": True},
                "102": {"contact": "sip:102@127.0.0.1:5070"},
            },
            "lines": {
                "+15551230000": {"extension": "102", "record": True},
                "+15551230001": {"extension": "102"},
            },
        }
    )
    assert [routes.extensions[n].record for n in ("101", "102")] == [True, False]
    assert [routes.lines[n].record for n in ("+15551230000", "+15551230001")] == [True, False]
    with pytest.raises(RoutingConfigError, match="record"):
        RoutingTable.from_mapping({"extensions": {"101": {"record": "sometimes"}}})
