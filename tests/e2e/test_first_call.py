"""End to end: real SIP calls placed by sipp become records in the call log, through NATS JetStream.

sipp (caller) -> sip-gateway (pjsua2) -> sipp (agent phone); gateway -> tel.call.* -> calls -> database
-> GET /calls. The tests assert the records a user would see: how many, their dispositions, SIP status
and Q.850 cause, who hung up, and ring and talk durations within a tolerance.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from google.protobuf.message import DecodeError

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.bus import DLQ_REASON, Bus
from tests.e2e.conftest import RING_MS, Suite
from tests.sipp.runner import run_uac

pytestmark = [pytest.mark.e2e, pytest.mark.sip]

TALK_MS = 1500
TOLERANCE_S = 0.6


def _caller(prefix: str) -> str:
    """A caller number unique to one test, so each test can find its own records."""
    return f"+1555{prefix}{uuid.uuid4().int % 100_000:05d}"


def call(suite: Suite, scenario: str, service: str, caller: str, **options: Any) -> None:
    result = run_uac(
        scenario,
        "127.0.0.1",
        suite.sip_port,
        service=service,
        keys={"caller": caller, "caller_name": "E2E Caller", **options.pop("keys", {})},
        timeout=60,
        **options,
    )
    assert result.ok, result.explain()


def test_answered_cancelled_busy_and_unknown_calls_give_exact_records(suite: Suite) -> None:
    caller = _caller("10")
    call(suite, "uac_answered.xml", "101", caller, duration_ms=TALK_MS, calls=3, max_concurrent=1)
    call(suite, "uac_cancel.xml", "102", caller, duration_ms=700, calls=2, max_concurrent=1)
    call(suite, "uac_expect_status.xml", "103", caller, keys={"expected_status": "486"})
    call(
        suite,
        "uac_expect_status.xml",
        "999",
        caller,
        keys={"expected_status": "404"},
        calls=2,
        max_concurrent=1,
    )

    records = suite.wait_for_calls(
        lambda items: len(items) == 8 and all(r["state"] == "ended" for r in items), number=caller
    )
    by_disposition = Counter(r["disposition"] for r in records)
    assert by_disposition == {"answered": 3, "missed": 2, "busy": 1, "failed": 2}
    assert len({r["call_id"] for r in records}) == 8

    for record in records:
        assert record["direction"] == "inbound"
        assert record["caller"]["e164"] == caller
        assert record["incomplete"] is False
        assert record["started_at"]
        assert record["ended_at"]

    for record in (r for r in records if r["disposition"] == "answered"):
        assert record["extension"] == "101"
        assert record["employee_id"] == "emp-101"
        assert record["sip_status"] == 200
        assert record["q850_cause"] == 16
        assert record["hangup_by"] == "caller"
        assert record["talk_seconds"] == pytest.approx(TALK_MS / 1000, abs=TOLERANCE_S)
        assert record["ring_seconds"] == pytest.approx(RING_MS / 1000, abs=TOLERANCE_S)

    for record in (r for r in records if r["disposition"] == "missed"):
        assert record["extension"] == "102"
        assert record["sip_status"] == 487
        assert record["hangup_by"] == "caller"
        assert record["answered_at"] is None
        assert record["talk_seconds"] == 0
        assert record["ring_seconds"] == pytest.approx(0.7, abs=TOLERANCE_S)

    (busy,) = (r for r in records if r["disposition"] == "busy")
    assert (busy["sip_status"], busy["q850_cause"], busy["extension"]) == (486, 17, "103")

    for record in (r for r in records if r["disposition"] == "failed"):
        assert (record["sip_status"], record["q850_cause"]) == (404, 1)
        assert record["callee"]["number"] == "999"


def test_a_call_to_a_line_rings_its_extension_and_the_filters_find_it(suite: Suite) -> None:
    caller = _caller("20")
    call(suite, "uac_answered.xml", "+15551230000", caller, duration_ms=500)
    (record,) = suite.wait_for_calls(
        lambda items: len(items) == 1 and items[0]["state"] == "ended", number=caller
    )
    assert record["line"] == "+15551230000"
    assert record["extension"] == "101"
    assert record["disposition"] == "answered"

    digits = caller[-6:]
    assert [r["call_id"] for r in suite.list_calls(number=digits)] == [record["call_id"]]
    assert record["call_id"] in {
        r["call_id"] for r in suite.list_calls(extension="101", disposition="answered")
    }
    assert record["call_id"] not in {r["call_id"] for r in suite.list_calls(disposition="missed")}
    with suite.calls() as calls:
        single = calls.get(f"/calls/{record['call_id']}").json()
        assert single["call_id"] == record["call_id"]
        # The call log takes crm's tokens only: none, and the record is not shown.
        assert httpx.get(f"{suite.calls_url}/calls/{record['call_id']}", timeout=5).status_code == 401


def test_a_call_on_a_recorded_line_is_playable_from_the_call_log(suite: Suite) -> None:
    caller = _caller("25")
    call(suite, "uac_answered.xml", "+15551230007", caller, duration_ms=TALK_MS)
    (record,) = suite.wait_for_calls(
        lambda items: len(items) == 1 and items[0]["state"] == "ended" and items[0]["has_recording"],
        number=caller,
    )
    assert record["line"] == "+15551230007"
    with suite.calls() as calls:
        (recording,) = calls.get(f"/calls/{record['call_id']}/recordings").json()["items"]
        assert recording["content_type"] == "audio/wav"
        # The file holds the answered part of the call: the talk time, give or take the machine's pace.
        assert abs(recording["duration_seconds"] - TALK_MS / 1000) < 1.0 + TOLERANCE_S
        audio = f"/recordings/{recording['recording_id']}/audio"
        head = calls.get(audio, headers={"Range": "bytes=0-11"})
        assert head.status_code == 206
        assert head.content[:4] == b"RIFF"
        assert head.content[8:12] == b"WAVE"
        whole = calls.get(audio)
        assert whole.status_code == 200
        assert len(whole.content) == recording["size_bytes"]
        past = calls.get(audio, headers={"Range": f"bytes={recording['size_bytes'] + 10}-"})
        assert past.status_code == 416
    # A call on the plain line is not recorded.
    plain = _caller("26")
    call(suite, "uac_answered.xml", "+15551230000", plain, duration_ms=300)
    (unrecorded,) = suite.wait_for_calls(
        lambda items: len(items) == 1 and items[0]["state"] == "ended", number=plain
    )
    assert unrecorded["has_recording"] is False


def test_malformed_sip_leaves_no_record_and_the_gateway_keeps_taking_calls(suite: Suite) -> None:
    before = len(suite.list_calls())
    result = run_uac("uac_malformed.xml", "127.0.0.1", suite.sip_port, timeout=60)
    assert result.returncode in (0, 1), result.explain()  # some broken requests get no answer at all
    assert suite.gateway_proc.running
    caller = _caller("30")
    call(suite, "uac_answered.xml", "101", caller, duration_ms=300)
    suite.wait_for_calls(
        lambda items: len(items) == 1 and items[0]["disposition"] == "answered", number=caller
    )
    assert len(suite.list_calls()) == before + 1


def test_a_payload_that_does_not_parse_is_dead_lettered_and_calls_keep_flowing(suite: Suite) -> None:
    async def publish_garbage_and_read_dlq() -> dict[str, str]:
        bus = await Bus.connect(suite.nats.url, name="e2e")
        try:
            dlq = await bus.js.subscribe("dlq.calls.tel.call.ended", stream="DLQ", ordered_consumer=True)
            await bus.js.publish(
                "tel.call.ended", b"\xff\x00 not a protobuf", headers={"Nats-Msg-Id": "junk-1"}
            )
            msg = await dlq.next_msg(timeout=15)
            await dlq.unsubscribe()
            return dict(msg.headers or {})
        finally:
            await bus.close()

    headers = asyncio.run(publish_garbage_and_read_dlq())
    assert "undecodable" in headers[DLQ_REASON]
    caller = _caller("40")
    call(suite, "uac_answered.xml", "101", caller, duration_ms=300)
    suite.wait_for_calls(lambda items: len(items) == 1, number=caller)


def test_calls_placed_while_the_call_log_is_down_are_recorded_when_it_comes_back(suite: Suite) -> None:
    caller = _caller("50")
    suite.calls_proc.signal(signal.SIGKILL)  # a crash, not a clean stop
    suite.calls_proc.process.wait(10)  # type: ignore[union-attr]
    call(suite, "uac_answered.xml", "101", caller, duration_ms=300, calls=2, max_concurrent=1)
    call(suite, "uac_cancel.xml", "102", caller, duration_ms=300)
    suite.restart_calls()
    records = suite.wait_for_calls(
        lambda items: len(items) == 3 and all(r["state"] == "ended" for r in items), number=caller
    )
    assert Counter(r["disposition"] for r in records) == {"answered": 2, "missed": 1}


def test_duplicate_events_on_the_bus_do_not_duplicate_records(suite: Suite) -> None:
    caller = _caller("60")
    call(suite, "uac_answered.xml", "101", caller, duration_ms=300)
    (record,) = suite.wait_for_calls(
        lambda items: len(items) == 1 and items[0]["state"] == "ended", number=caller
    )

    async def redeliver_its_ended_event() -> None:
        """Publish the call's real `ended` event again under a new Nats-Msg-Id, as a publisher that
        retried after losing the server's acknowledgement would: the server cannot drop it, the
        consumer must."""
        bus = await Bus.connect(suite.nats.url, name="e2e")
        try:
            sub = await bus.js.subscribe("tel.call.ended", stream="TEL", ordered_consumer=True)
            while True:
                msg = await sub.next_msg(timeout=10)
                event = ev.CallEvent()
                with contextlib.suppress(DecodeError):  # the garbage of the dead-letter test
                    event.ParseFromString(msg.data)
                if event.call_id == record["call_id"]:
                    break
            await sub.unsubscribe()
            await bus.publish("tel.call.ended", event, msg_id=f"retry-{uuid.uuid4()}")
        finally:
            await bus.close()

    asyncio.run(redeliver_its_ended_event())
    # A later answered call proves the consumer has moved past the duplicate.
    call(suite, "uac_answered.xml", "101", caller, duration_ms=300)
    records = suite.wait_for_calls(lambda items: len(items) == 2, number=caller)
    assert [r for r in records if r["call_id"] == record["call_id"]] == [record]
