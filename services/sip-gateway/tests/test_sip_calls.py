"""The gateway in this process (real pjsua2 endpoint on free ports) against sipp callers and agent phones."""

from __future__ import annotations

from datetime import UTC

import pytest

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_gateway.calls import CALL_ID_HEADER
from tests.sipp.runner import Sipp, arun_uac, environment_ok, free_port, header, start_uas

SIPP_OK, SIPP_MISSING = environment_ok()
pytestmark = [pytest.mark.sip, pytest.mark.skipif(not SIPP_OK, reason=SIPP_MISSING)]

HOST = "127.0.0.1"
CALLER = {"caller": "+15557654321", "caller_name": "Ann Lee"}


def extension(agent: Sipp, ring_timeout: float = 10, **extra: object) -> dict[str, object]:
    return {
        "contact": f"sip:101@{HOST}:{agent.port}" + (";transport=tcp" if agent.transport == "tcp" else ""),
        "name": "Alice",
        "employee_id": "emp-101",
        "ring_timeout": ring_timeout,
        **extra,
    }


def only_call(gw: object) -> list[ev.CallEvent]:
    calls = gw.calls()  # type: ignore[attr-defined]
    assert len(calls) == 1, gw.summary()  # type: ignore[attr-defined]
    return next(iter(calls.values()))


async def test_answered_call_caller_hangs_up(gateway_factory) -> None:
    with start_uas("uas_answer.xml", duration_ms=300) as agent:
        gw = await gateway_factory(
            extensions={"101": extension(agent)}, lines={"+15551230000": {"extension": "101"}}
        )
        caller = await arun_uac(
            "uac_answered.xml", HOST, gw.port, service="+15551230000", keys=CALLER, duration_ms=1000
        )
        assert caller.ok, caller.explain()
        assert caller.statuses()[-2:] == [200, 200]  # the INVITE's and the BYE's
        phone = await agent.wait_async(10)
        assert phone.ok, phone.explain()
        await gw.wait_ended()

    events = only_call(gw)
    assert [e.WhichOneof("kind") for e in events] == ["offered", "ringing", "answered", "ended"]
    assert [e.sequence for e in events] == [1, 2, 3, 4]
    offered, ringing, answered, ended = events
    call_id = offered.call_id
    for e in events:
        assert e.call_id == call_id
        assert e.direction == ev.DIRECTION_INBOUND
        assert (e.caller.number, e.caller.e164, e.caller.display_name) == (
            "+15557654321",
            "+15557654321",
            "Ann Lee",
        )
        assert (e.callee.number, e.callee.extension, e.callee.display_name) == (
            "+15551230000",
            "101",
            "Alice",
        )
        assert (e.line, e.extension, e.employee_id) == ("+15551230000", "101", "emp-101")
        assert e.sip_call_id == header(caller.sent()[0], "Call-ID")
        assert e.source == "sip-gateway/test"
    assert offered.offered.request_uri.startswith("sip:+15551230000@127.0.0.1")
    # The agent's phone saw the caller's number and name, and the call id in a header.
    invite = phone.received()[0]
    assert header(invite, "From") is not None
    assert '"Ann Lee" <sip:+15557654321@' in header(invite, "From")
    assert header(invite, CALL_ID_HEADER) == call_id
    assert ringing.ringing.leg_id == header(invite, "Call-ID") == answered.answered.leg_id
    end = ended.ended
    assert (end.disposition, end.sip_status, end.q850_cause, end.hangup_by) == (
        ev.DISPOSITION_ANSWERED,
        200,
        16,
        ev.HANGUP_BY_CALLER,
    )
    assert end.answered_extension == "101"
    started = end.started_at.ToDatetime(tzinfo=UTC)
    answered_at = end.answered_at.ToDatetime(tzinfo=UTC)
    ended_at = ended.occurred_at.ToDatetime(tzinfo=UTC)
    assert started == offered.occurred_at.ToDatetime(tzinfo=UTC)
    assert answered_at == answered.occurred_at.ToDatetime(tzinfo=UTC)
    assert 0.2 <= (answered_at - started).total_seconds() < 5  # the phone rang 300 ms
    assert 0.9 <= (ended_at - answered_at).total_seconds() < 5  # the caller talked 1 s


async def test_answered_call_agent_hangs_up_over_tcp(gateway_factory) -> None:
    with start_uas("uas_answer_bye.xml", duration_ms=500, transport="tcp") as agent:
        gw = await gateway_factory(extensions={"101": extension(agent)})
        caller = await arun_uac("uac_answered_callee_bye.xml", HOST, gw.port, service="101", transport="tcp")
        assert caller.ok, caller.explain()
        done = await agent.wait_async(10)
        assert done.ok, done.explain()
        await gw.wait_ended()
    events = only_call(gw)
    assert [e.WhichOneof("kind") for e in events] == ["offered", "ringing", "answered", "ended"]
    assert events[-1].ended.hangup_by == ev.HANGUP_BY_CALLEE
    assert events[-1].ended.disposition == ev.DISPOSITION_ANSWERED


async def test_caller_cancels_while_it_rings(gateway_factory) -> None:
    with start_uas("uas_ring_forever.xml") as agent:
        gw = await gateway_factory(extensions={"101": extension(agent)})
        caller = await arun_uac("uac_cancel.xml", HOST, gw.port, service="101", duration_ms=300)
        assert caller.ok, caller.explain()
        assert caller.statuses()[-2:] == [200, 487]
        phone = await agent.wait_async(10)
        assert phone.ok, phone.explain()  # the agent leg got its CANCEL
        await gw.wait_ended()
    events = only_call(gw)
    assert [e.WhichOneof("kind") for e in events] == ["offered", "ringing", "ended"]
    end = events[-1].ended
    assert (end.disposition, end.sip_status, end.q850_cause, end.hangup_by) == (
        ev.DISPOSITION_MISSED,
        487,
        16,
        ev.HANGUP_BY_CALLER,
    )


@pytest.mark.parametrize(
    ("phone", "status", "disposition", "q850", "by"),
    [
        ("uas_busy.xml", 486, ev.DISPOSITION_BUSY, 17, ev.HANGUP_BY_CALLEE),
        ("uas_decline.xml", 603, ev.DISPOSITION_REJECTED, 21, ev.HANGUP_BY_CALLEE),
    ],
)
async def test_agent_refuses(
    gateway_factory, phone: str, status: int, disposition: int, q850: int, by: int
) -> None:
    with start_uas(phone) as agent:
        gw = await gateway_factory(extensions={"101": extension(agent)})
        caller = await arun_uac(
            "uac_expect_status.xml", HOST, gw.port, service="101", keys={"expected_status": str(status)}
        )
        assert caller.ok, caller.explain()
        done = await agent.wait_async(10)
        assert done.ok, done.explain()
        await gw.wait_ended()
    end = only_call(gw)[-1].ended
    assert (end.disposition, end.sip_status, end.q850_cause, end.hangup_by) == (disposition, status, q850, by)


async def test_nobody_answers_within_the_ring_timeout(gateway_factory) -> None:
    with start_uas("uas_ring_forever.xml") as agent:
        gw = await gateway_factory(extensions={"101": extension(agent, ring_timeout=1.0)})
        caller = await arun_uac(
            "uac_expect_status.xml", HOST, gw.port, service="101", keys={"expected_status": "480"}
        )
        assert caller.ok, caller.explain()
        done = await agent.wait_async(10)
        assert done.ok, done.explain()  # CANCEL answered with 200 + 487, ACK received
        await gw.wait_ended()
    events = only_call(gw)
    assert [e.WhichOneof("kind") for e in events] == ["offered", "ringing", "ended"]
    end = events[-1].ended
    assert (end.disposition, end.sip_status, end.q850_cause, end.hangup_by) == (
        ev.DISPOSITION_MISSED,
        480,
        19,
        ev.HANGUP_BY_SYSTEM,
    )
    rang = events[-1].occurred_at.ToDatetime(tzinfo=UTC) - end.started_at.ToDatetime(tzinfo=UTC)
    assert 0.9 <= rang.total_seconds() < 5


async def test_unknown_extension_gets_404_and_a_failed_record(gateway_factory) -> None:
    gw = await gateway_factory(extensions={"101": {"contact": f"sip:101@{HOST}:9"}})
    caller = await arun_uac(
        "uac_expect_status.xml", HOST, gw.port, service="999", keys={"expected_status": "404"}
    )
    assert caller.ok, caller.explain()
    events = await gw.wait_ended()
    assert [e.WhichOneof("kind") for e in only_call(gw)] == ["offered", "ended"]
    end = events[0].ended
    assert (end.disposition, end.sip_status, end.q850_cause, end.hangup_by) == (
        ev.DISPOSITION_FAILED,
        404,
        1,
        ev.HANGUP_BY_SYSTEM,
    )
    assert events[0].line == "999"
    assert events[0].extension == ""


async def test_unreachable_agent_fails_the_call(gateway_factory) -> None:
    closed_port = free_port(udp=False)  # nobody listens on it over TCP
    gw = await gateway_factory(extensions={"101": {"contact": f"sip:101@{HOST}:{closed_port};transport=tcp"}})
    caller = await arun_uac(
        "uac_expect_status.xml", HOST, gw.port, service="101", keys={"expected_status": "500"}
    )
    assert caller.ok, caller.explain()
    end = (await gw.wait_ended())[0].ended
    assert (end.disposition, end.sip_status, end.q850_cause, end.hangup_by) == (
        ev.DISPOSITION_FAILED,
        503,
        41,
        ev.HANGUP_BY_SYSTEM,
    )


async def test_a_full_gateway_answers_503_with_retry_after(gateway_factory) -> None:
    with start_uas("uas_answer.xml", duration_ms=100, calls=2) as agent:
        gw = await gateway_factory(extensions={"101": extension(agent)}, max_calls=1, retry_after=9)
        first = Sipp("uac_answered.xml", remote=f"{HOST}:{gw.port}", service="101", duration_ms=2500).start()
        await gw.wait_for(lambda: any(e.WhichOneof("kind") == "answered" for e in gw.events), what="answer")
        overflow = await arun_uac(
            "uac_expect_status.xml", HOST, gw.port, service="101", keys={"expected_status": "503"}
        )
        assert overflow.ok, overflow.explain()
        refusal = overflow.response(503)
        assert refusal is not None
        assert header(refusal, "Retry-After") == "9"
        done = await first.wait_async(15)
        assert done.ok, done.explain()
        await gw.wait_ended()
        assert len(gw.calls()) == 1, "a refused INVITE publishes no call events"
        # Capacity is back once the first call is gone.
        second = await arun_uac("uac_answered.xml", HOST, gw.port, service="101", duration_ms=100)
        assert second.ok, second.explain()
        done = await agent.wait_async(10)
        assert done.ok, done.explain()
        await gw.wait_ended(2)
    assert gw.service.calls.refused == 1


async def test_malformed_invites_leave_the_gateway_taking_calls(gateway_factory) -> None:
    with start_uas("uas_answer.xml", duration_ms=100) as agent:
        gw = await gateway_factory(extensions={"101": extension(agent)})
        garbage = await arun_uac("uac_malformed.xml", HOST, gw.port, service="101")
        assert garbage.ok, garbage.explain()
        assert gw.events == [], "no call is logged for a broken INVITE"
        good = await arun_uac("uac_answered.xml", HOST, gw.port, service="101", duration_ms=100)
        assert good.ok, good.explain()
        await gw.wait_ended()
    assert [e.WhichOneof("kind") for e in only_call(gw)] == ["offered", "ringing", "answered", "ended"]


async def test_stopping_hangs_up_live_calls_and_publishes_their_end(gateway_factory) -> None:
    with start_uas("uas_answer.xml", duration_ms=100) as agent:
        gw = await gateway_factory(extensions={"101": extension(agent)})
        caller = Sipp("uac_answered_callee_bye.xml", remote=f"{HOST}:{gw.port}", service="101").start()
        await gw.wait_for(lambda: any(e.WhichOneof("kind") == "answered" for e in gw.events), what="answer")
        await gw.service.stop(timeout=5)
        done = await caller.wait_async(10)
        assert done.ok, done.explain()  # the caller got a BYE
        done = await agent.wait_async(10)
        assert done.ok, done.explain()  # and so did the agent
    end = only_call(gw)[-1].ended
    assert (end.disposition, end.hangup_by) == (ev.DISPOSITION_ANSWERED, ev.HANGUP_BY_SYSTEM)
    assert not gw.service.engine.running


async def test_listening_on_all_interfaces_advertises_a_real_address(gateway_factory) -> None:
    with start_uas("uas_answer.xml", duration_ms=100) as agent:
        gw = await gateway_factory(
            extensions={"101": extension(agent)}, sip_host="0.0.0.0", rtp_host="0.0.0.0"
        )
        public = gw.service.engine.public_host
        assert public
        assert public != "0.0.0.0"
        caller = await arun_uac("uac_answered.xml", HOST, gw.port, service="101", duration_ms=100)
        assert caller.ok, caller.explain()
        phone = await agent.wait_async(10)
        assert phone.ok, phone.explain()
    invite = phone.received()[0]
    assert f"@{public}:{gw.port}" in (header(invite, "Contact") or "")
    assert "0.0.0.0" not in invite
