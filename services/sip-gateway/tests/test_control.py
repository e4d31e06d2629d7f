"""Call control on a running gateway (hold, resume, blind transfer, DTMF) with sipp on both sides.

The caller (``uac_controlled.xml``) takes whatever the gateway sends in its dialog (re-INVITEs, INFOs)
until the gateway's BYE; the tests end each call with a hangup over the API.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import grpc
import httpx
import pytest

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from telecrm_common.auth import Access, AuthSettings, Principal, Role
from telecrm_common.grpc import GrpcServer
from telecrm_devstack.testing import make_principal
from telecrm_gateway import grpc as gateway_grpc
from telecrm_gateway.api import create_app
from telecrm_gateway.calls import CallControlError
from tests.sipp.runner import Sipp, SippResult, environment_ok, free_port, header, start_uas

SIPP_OK, SIPP_MISSING = environment_ok()
pytestmark = [pytest.mark.sip, pytest.mark.skipif(not SIPP_OK, reason=SIPP_MISSING)]

HOST = "127.0.0.1"
ALICE = make_principal("u-alice", Role.AGENT, employee_id="e1")
BOB = make_principal("u-bob", Role.AGENT, employee_id="e2")


def ext(phone: Sipp, name: str, employee_id: str, **extra: object) -> dict[str, object]:
    return {"contact": f"sip:x@{HOST}:{phone.port}", "name": name, "employee_id": employee_id, **extra}


def kinds(gw) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(e.WhichOneof("kind")) for e in gw.events]


def has(gw, kind: str, count: int = 1) -> Callable[[], bool]:  # type: ignore[no-untyped-def]
    return lambda: kinds(gw).count(kind) >= count


def invites_in_dialog(result: SippResult) -> list[str]:
    """The re-INVITEs the caller received (the requests, not the responses)."""
    return [m for m in result.received() if m.startswith("INVITE ")]


@asynccontextmanager
async def rest(gw, auth_settings: AuthSettings, token: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    app = create_app(gw.service, {"sip": gw.service.check_sip}, access=Access.from_settings(auth_settings))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw", headers=token
    ) as client:
        yield client


@asynccontextmanager
async def grpc_stub(gw) -> AsyncIterator[gateway_pb2_grpc.CallControlStub]:  # type: ignore[no-untyped-def]
    server = GrpcServer(
        gw.service.settings.model_copy(update={"grpc_port": 0}),
        service_names=[gateway_grpc.SERVICE_NAME],
        checks={"sip": gw.service.check_sip},
    )
    gateway_grpc.add_to_server(server.server, gw.service)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"{HOST}:{server.port}") as channel:
            yield gateway_pb2_grpc.CallControlStub(channel)
    finally:
        await server.stop(0)


async def test_hold_and_resume_over_rest(  # type: ignore[no-untyped-def]
    gateway_factory, auth_settings: AuthSettings, token_for: Callable[[Principal], dict[str, str]]
) -> None:
    with start_uas("uas_answer.xml", duration_ms=100) as agent:
        gw = await gateway_factory(extensions={"101": ext(agent, "Alice", "e1")})
        caller = Sipp("uac_controlled.xml", remote=f"{HOST}:{gw.port}", service="101").start()
        await gw.wait_for(has(gw, "answered"), what="answer")
        call_id = gw.events[0].call_id
        async with rest(gw, auth_settings, token_for(ALICE)) as client:
            held = await client.post(f"/calls/{call_id}/hold")
            assert held.status_code == 200, held.text
            assert held.json() == {"call_id": call_id, "status": "held"}
            again = await client.post(f"/calls/{call_id}/hold")
            assert again.status_code == 409, again.text  # already on hold
            resumed = await client.post(f"/calls/{call_id}/resume")
            assert resumed.status_code == 200, resumed.text
            assert (await client.post(f"/calls/{call_id}/resume")).status_code == 409  # not on hold
            # The resume's re-INVITE goes out once the hold's is answered.
            await _wait_resumed_at(caller, gw)
            assert (await client.post(f"/calls/{call_id}/hangup")).status_code == 202
        done = await caller.wait_async(10)
        assert done.ok, done.explain()
        assert (await agent.wait_async(10)).ok
        await gw.wait_ended()

    assert kinds(gw) == ["offered", "ringing", "answered", "held", "resumed", "ended"]
    held_event, resumed_event = gw.events[3], gw.events[4]
    assert held_event.held.by == ev.HANGUP_BY_CALLEE  # the agent (callee of an inbound call) held it
    assert resumed_event.resumed.by == ev.HANGUP_BY_CALLEE
    assert (held_event.extension, held_event.employee_id) == ("101", "e1")
    # The caller got a sendonly re-INVITE, then a sendrecv one (each followed by pjsua's codec lock).
    directions = [d for m in invites_in_dialog(done) for d in ("sendonly", "sendrecv") if f"a={d}" in m]
    assert [d for i, d in enumerate(directions) if i == 0 or directions[i - 1] != d] == [
        "sendonly",
        "sendrecv",
    ]
    assert gw.events[-1].ended.disposition == ev.DISPOSITION_ANSWERED


async def _wait_resumed_at(caller: Sipp, gw) -> None:  # type: ignore[no-untyped-def]
    """Wait until the caller's message trace shows a sendonly re-INVITE, then a sendrecv one."""

    def resumed() -> bool:
        trace = _trace(caller)
        held = trace.find("a=sendonly")
        return held >= 0 and trace.find("a=sendrecv", held) >= 0

    await gw.wait_for(resumed, timeout=10, what="hold and resume at the caller")


def _trace(caller: Sipp) -> str:
    try:
        return (caller.workdir / f"{caller.scenario.stem}.messages").read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _requests(caller: Sipp, method: str) -> int:
    """Requests of ``method`` in the caller's message trace so far (sent and received)."""
    return sum(1 for line in _trace(caller).splitlines() if line.startswith(f"{method} sip:"))


@pytest.mark.parametrize("direction", ["sendonly", "inactive"])
async def test_hold_from_the_agents_phone_is_published(gateway_factory, direction: str) -> None:  # type: ignore[no-untyped-def]
    with start_uas("uas_answer_hold.xml", duration_ms=400, keys={"hold": direction}) as agent:
        gw = await gateway_factory(extensions={"101": ext(agent, "Alice", "e1")})
        caller = Sipp("uac_controlled.xml", remote=f"{HOST}:{gw.port}", service="101").start()
        await gw.wait_for(has(gw, "resumed"), what="held and resumed by the phone")
        gw.service.hangup(gw.events[0].call_id)
        result = await caller.wait_async(10)
        assert result.ok, result.explain()
        phone = await agent.wait_async(10)
        assert phone.ok, phone.explain()
        await gw.wait_ended()

    assert kinds(gw) == ["offered", "ringing", "answered", "held", "resumed", "ended"]
    assert gw.events[3].held.by == ev.HANGUP_BY_CALLEE
    assert gw.events[4].resumed.by == ev.HANGUP_BY_CALLEE
    # The gateway answered the phone's hold (recvonly or inactive) and its resume.
    answers = [m for m in phone.received() if m.startswith("SIP/2.0 200") and "CSeq: 1 INVITE" in m]
    assert answers
    assert "a=recvonly" in answers[0] or "a=inactive" in answers[0]


async def test_blind_transfer_to_another_extension(  # type: ignore[no-untyped-def]
    gateway_factory, auth_settings: AuthSettings, token_for: Callable[[Principal], dict[str, str]]
) -> None:
    with (
        start_uas("uas_answer.xml", duration_ms=100) as alice,
        start_uas("uas_answer.xml", duration_ms=300) as bob,
    ):
        gw = await gateway_factory(
            extensions={"101": ext(alice, "Alice", "e1"), "102": ext(bob, "Bob", "e2")},
            lines={"+15551230000": {"extension": "101", "name": "Main"}},
        )
        caller = Sipp("uac_controlled.xml", remote=f"{HOST}:{gw.port}", service="+15551230000").start()
        await gw.wait_for(has(gw, "answered"), what="answer")
        call_id = gw.events[0].call_id
        async with rest(gw, auth_settings, token_for(ALICE)) as client:
            moved = await client.post(f"/calls/{call_id}/transfer", json={"extension": "102"})
            assert moved.status_code == 202, moved.text
            first = await alice.wait_async(10)
            assert first.ok, first.explain()  # Alice's phone got its BYE at once
            await gw.wait_for(has(gw, "transferred"), what="transferred")
            # The call is Bob's now: Alice no longer acts on it... but still sees it (it rang her).
            active = (await client.get("/calls/active", headers=token_for(BOB))).json()["items"]
            assert [c["extension"] for c in active] == ["102"]
        gw.service.hangup(call_id)
        done = await caller.wait_async(10)
        assert done.ok, done.explain()
        second = await bob.wait_async(10)
        assert second.ok, second.explain()
        await gw.wait_ended()

    assert kinds(gw) == ["offered", "ringing", "answered", "transferred", "ended"]
    transferred = gw.events[3]
    t = transferred.transferred
    assert (t.from_extension, t.to_extension, t.from_employee_id, t.to_employee_id, t.attended) == (
        "101",
        "102",
        "e1",
        "e2",
        False,
    )
    assert t.leg_id == header(second.received()[0], "Call-ID")
    assert (transferred.extension, transferred.employee_id) == ("102", "e2")
    assert (gw.events[-1].extension, gw.events[-1].ended.disposition) == ("102", ev.DISPOSITION_ANSWERED)
    # Bob's phone saw the customer's number, and that Alice handed the call over.
    invite = second.received()[0]
    assert "sip:+15557654321@" in (header(invite, "From") or "")
    assert "from Alice" in (header(invite, "From") or "")
    assert header(invite, "X-Telecrm-Call-Id") == call_id


async def test_blind_transfer_refused_by_the_target_ends_the_call(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    with start_uas("uas_answer.xml", duration_ms=100) as alice, start_uas("uas_busy.xml") as bob:
        gw = await gateway_factory(
            extensions={"101": ext(alice, "Alice", "e1"), "102": ext(bob, "Bob", "e2")}
        )
        caller = Sipp("uac_controlled.xml", remote=f"{HOST}:{gw.port}", service="101").start()
        await gw.wait_for(has(gw, "answered"), what="answer")
        await gw.service.calls.transfer(gw.events[0].call_id, "102")
        done = await caller.wait_async(10)
        assert done.ok, done.explain()  # the caller got a BYE
        await gw.wait_ended()
    assert kinds(gw) == ["offered", "ringing", "answered", "ended"]
    end = gw.events[-1].ended
    assert (end.disposition, end.hangup_by, end.answered_extension) == (
        ev.DISPOSITION_ANSWERED,
        ev.HANGUP_BY_CALLEE,
        "101",
    )


async def test_dtmf_over_grpc_as_sip_info_and_rfc2833(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    with start_uas("uas_answer.xml", duration_ms=100) as agent:
        gw = await gateway_factory(extensions={"101": ext(agent, "Alice", "e1")})
        caller = Sipp("uac_controlled.xml", remote=f"{HOST}:{gw.port}", service="101").start()
        await gw.wait_for(has(gw, "answered"), what="answer")
        call_id = gw.events[0].call_id
        async with grpc_stub(gw) as stub:
            await stub.SendDtmf(
                gateway_pb2.SendDtmfRequest(call_id=call_id, digits="1#", method=gateway_pb2.DTMF_METHOD_INFO)
            )
            await stub.SendDtmf(gateway_pb2.SendDtmfRequest(call_id=call_id, digits="42"))  # RFC 2833
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await stub.SendDtmf(gateway_pb2.SendDtmfRequest(call_id=call_id, digits="12x"))
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            await gw.wait_for(lambda: _requests(caller, "INFO") >= 2, what="the INFOs at the caller")
            gw.service.hangup(call_id)
        done = await caller.wait_async(10)
        assert done.ok, done.explain()
        await gw.wait_ended()

    infos = [m for m in done.received() if m.startswith("INFO ")]
    assert [header(m, "Content-Type") for m in infos] == ["application/dtmf-relay"] * 2
    assert ["Signal=1" in infos[0], "Signal=#" in infos[1]] == [True, True]
    dtmf = [e.dtmf for e in gw.events if e.WhichOneof("kind") == "dtmf"]
    assert [(d.digits, d.method, d.to) for d in dtmf] == [
        ("1#", "info", ev.HANGUP_BY_CALLER),
        ("42", "rfc2833", ev.HANGUP_BY_CALLER),
    ]


async def test_control_refuses_bad_requests(  # type: ignore[no-untyped-def]
    gateway_factory, auth_settings: AuthSettings, token_for: Callable[[Principal], dict[str, str]]
) -> None:
    with start_uas("uas_ring_forever.xml") as ringing_phone:
        gw = await gateway_factory(extensions={"101": ext(ringing_phone, "Alice", "e1")})
        caller = Sipp(
            "uac_expect_status.xml",
            remote=f"{HOST}:{gw.port}",
            service="101",
            keys={"expected_status": "480"},
        ).start()
        await gw.wait_for(has(gw, "ringing"), what="ringing")
        call_id = gw.events[0].call_id
        async with rest(gw, auth_settings, token_for(ALICE)) as client:
            unknown = await client.post("/calls/no-such-call/hold")
            assert unknown.status_code == 404, unknown.text
            for path, body in (
                ("hold", None),
                ("resume", None),
                ("transfer", {"extension": "101"}),
                ("dtmf", {"digits": "1"}),
                ("recording/start", None),
            ):
                response = await client.post(f"/calls/{call_id}/{path}", json=body)
                assert response.status_code == 409, (path, response.text)  # not answered yet
                assert "not answered" in response.json()["detail"]
            mine = await client.post(f"/calls/{call_id}/recording/stop")
            assert mine.status_code == 409
            other = await client.post(f"/calls/{call_id}/hold", headers=token_for(BOB))
            assert other.status_code == 403, other.text
            bad = await client.post(f"/calls/{call_id}/dtmf", json={"digits": "12x"})
            assert bad.status_code == 422
            assert bad.json()["detail"][0]["loc"] == ["body", "digits"]
            assert (await client.post(f"/calls/{call_id}/recording/rewind")).status_code == 422
            assert (await client.post(f"/calls/{call_id}/hangup")).status_code == 202
        result = await caller.wait_async(10)
        assert result.ok, result.explain()
        await gw.wait_ended()
    assert "held" not in kinds(gw)


async def test_transfer_to_an_unknown_extension_is_422_and_agents_act_only_on_their_calls(  # type: ignore[no-untyped-def]
    gateway_factory, auth_settings: AuthSettings, token_for: Callable[[Principal], dict[str, str]]
) -> None:
    with start_uas("uas_answer.xml", duration_ms=100) as agent:
        gw = await gateway_factory(extensions={"101": ext(agent, "Alice", "e1")})
        caller = Sipp("uac_controlled.xml", remote=f"{HOST}:{gw.port}", service="101").start()
        await gw.wait_for(has(gw, "answered"), what="answer")
        call_id = gw.events[0].call_id
        async with rest(gw, auth_settings, token_for(ALICE)) as client:
            unknown = await client.post(f"/calls/{call_id}/transfer", json={"extension": "999"})
            assert unknown.status_code == 422, unknown.text
            assert unknown.json()["detail"][0]["loc"] == ["body", "extension"]
            to_self = await client.post(f"/calls/{call_id}/transfer", json={"extension": "101"})
            assert to_self.status_code == 422, to_self.text
            empty = await client.post(f"/calls/{call_id}/transfer", json={"extension": ""})
            assert empty.status_code == 422
            for path, body in (("hold", None), ("transfer", {"extension": "101"}), ("dtmf", {"digits": "1"})):
                response = await client.post(f"/calls/{call_id}/{path}", json=body, headers=token_for(BOB))
                assert response.status_code == 403, (path, response.text)
            async with grpc_stub(gw) as stub:
                with pytest.raises(grpc.aio.AioRpcError) as not_found:
                    await stub.Hold(gateway_pb2.HoldRequest(call_id="no-such-call"))
                assert not_found.value.code() == grpc.StatusCode.NOT_FOUND
                with pytest.raises(grpc.aio.AioRpcError) as invalid:
                    await stub.Transfer(gateway_pb2.TransferRequest(call_id=call_id, extension="999"))
                assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                with pytest.raises(grpc.aio.AioRpcError) as conflict:
                    await stub.Resume(gateway_pb2.ResumeRequest(call_id=call_id))
                assert conflict.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert (await client.post(f"/calls/{call_id}/hangup")).status_code == 202
        result = await caller.wait_async(10)
        assert result.ok, result.explain()
        await gw.wait_ended()
    assert kinds(gw) == ["offered", "ringing", "answered", "ended"]


async def _active(client: httpx.AsyncClient) -> dict[str, object]:
    [call] = (await client.get("/calls/active")).json()["items"]
    return call  # type: ignore[no-any-return]


async def test_attended_transfer_consults_then_hands_over(  # type: ignore[no-untyped-def]
    gateway_factory, auth_settings: AuthSettings, token_for: Callable[[Principal], dict[str, str]]
) -> None:
    with (
        start_uas("uas_answer.xml", duration_ms=100) as alice,
        start_uas("uas_answer.xml", duration_ms=200) as bob,
    ):
        gw = await gateway_factory(
            extensions={"101": ext(alice, "Alice", "e1"), "102": ext(bob, "Bob", "e2")}
        )
        caller = Sipp("uac_controlled.xml", remote=f"{HOST}:{gw.port}", service="101").start()
        await gw.wait_for(has(gw, "answered"), what="answer")
        call_id = gw.events[0].call_id
        async with rest(gw, auth_settings, token_for(ALICE)) as client:
            consulting = await client.post(
                f"/calls/{call_id}/transfer", json={"extension": "102", "attended": True}
            )
            assert consulting.status_code == 202, consulting.text
            assert consulting.json()["status"] == "consulting"
            assert (await client.post(f"/calls/{call_id}/resume")).status_code == 409  # in the transfer
            again = await client.post(f"/calls/{call_id}/transfer", json={"extension": "102"})
            assert again.status_code == 409
            state = await _active(client)
            assert (state["on_hold"], state["transfer_to"]) == (True, "102")
            await gw.wait_for(lambda: gw.service.calls.get(call_id).consult.state.value == "answered")  # type: ignore[union-attr]
            assert "transferred" not in kinds(gw)  # Alice and Bob talk; the customer waits
            done = await client.post(f"/calls/{call_id}/transfer/complete")
            assert done.status_code == 200, done.text
            first = await alice.wait_async(10)
            assert first.ok, first.explain()  # Alice's leg got its BYE
            assert (await client.post(f"/calls/{call_id}/transfer/complete")).status_code == 409
            await _wait_resumed_at(caller, gw)
            state = await _active(client)
            assert (state["on_hold"], state["transfer_to"], state["extension"]) == (False, None, "102")
        gw.service.hangup(call_id)
        result = await caller.wait_async(10)
        assert result.ok, result.explain()
        second = await bob.wait_async(10)
        assert second.ok, second.explain()
        await gw.wait_ended()

    assert kinds(gw) == ["offered", "ringing", "answered", "held", "resumed", "transferred", "ended"]
    t = gw.events[5].transferred
    assert (t.from_extension, t.to_extension, t.attended) == ("101", "102", True)
    assert gw.events[5].extension == "102"
    assert gw.events[3].held.by == ev.HANGUP_BY_CALLEE


async def test_attended_transfer_cancelled_returns_the_customer(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    with (
        start_uas("uas_answer.xml", duration_ms=100) as alice,
        start_uas("uas_ring_forever.xml") as bob,
    ):
        gw = await gateway_factory(
            extensions={"101": ext(alice, "Alice", "e1"), "102": ext(bob, "Bob", "e2")}
        )
        caller = Sipp("uac_controlled.xml", remote=f"{HOST}:{gw.port}", service="101").start()
        await gw.wait_for(has(gw, "answered"), what="answer")
        call_id = gw.events[0].call_id
        async with grpc_stub(gw) as stub:
            await stub.Transfer(gateway_pb2.TransferRequest(call_id=call_id, extension="102", attended=True))
            await gw.wait_for(lambda: gw.service.calls.get(call_id).consult.state.value == "ringing")  # type: ignore[union-attr]
            await stub.CancelTransfer(gateway_pb2.CancelTransferRequest(call_id=call_id))
            cancelled = await bob.wait_async(10)
            assert cancelled.ok, cancelled.explain()  # Bob's phone was cancelled
            with pytest.raises(grpc.aio.AioRpcError) as none:
                await stub.CompleteTransfer(gateway_pb2.CompleteTransferRequest(call_id=call_id))
            assert none.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            await _wait_resumed_at(caller, gw)
            assert gw.service.calls.get(call_id) is not None  # still with Alice
            await stub.Hangup(gateway_pb2.HangupRequest(call_id=call_id))
        result = await caller.wait_async(10)
        assert result.ok, result.explain()
        first = await alice.wait_async(10)
        assert first.ok, first.explain()
        await gw.wait_ended()

    assert kinds(gw) == ["offered", "ringing", "answered", "held", "resumed", "ended"]
    assert gw.events[-1].extension == "101"


async def test_attended_transfer_needs_a_third_leg(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    with start_uas("uas_answer.xml", duration_ms=100) as alice, start_uas("uas_answer.xml") as bob:
        gw = await gateway_factory(
            extensions={"101": ext(alice, "Alice", "e1"), "102": ext(bob, "Bob", "e2")}, max_calls=2
        )
        caller = Sipp("uac_controlled.xml", remote=f"{HOST}:{gw.port}", service="101").start()
        await gw.wait_for(has(gw, "answered"), what="answer")
        call_id = gw.events[0].call_id
        with pytest.raises(CallControlError, match="third SIP leg") as refused:
            await gw.service.calls.transfer(call_id, "102", attended=True)
        assert refused.value.kind == "conflict"
        gw.service.hangup(call_id)
        result = await caller.wait_async(10)
        assert result.ok, result.explain()
        await gw.wait_ended()
    assert kinds(gw) == ["offered", "ringing", "answered", "ended"]


RFC2833_EVENTS = "0123456789*#ABCD"


async def test_dtmf_as_rfc2833_reaches_the_customer_as_telephone_events(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    rtp_port = free_port(tcp=False, block=2)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((HOST, rtp_port))
    sink.setblocking(False)
    loop = asyncio.get_running_loop()
    seen: list[tuple[int, str]] = []  # (RTP timestamp, digit): an event's packets share its timestamp

    async def listen() -> None:
        """RTP telephone-events (payload type 101, as the caller offered), RFC 4733 section 2.3."""
        while True:
            packet = await loop.sock_recv(sink, 2048)
            if len(packet) >= 16 and packet[1] & 0x7F == 101:
                digit = RFC2833_EVENTS[packet[12]] if packet[12] < 16 else "?"
                seen.append((int.from_bytes(packet[4:8], "big"), digit))

    listener = asyncio.create_task(listen())
    try:
        with start_uas("uas_answer.xml", duration_ms=100) as agent:
            gw = await gateway_factory(extensions={"101": ext(agent, "Alice", "e1")})
            caller = Sipp(
                "uac_controlled_rtp_sink.xml",
                remote=f"{HOST}:{gw.port}",
                service="101",
                keys={"rtp_port": str(rtp_port)},
            ).start()
            await gw.wait_for(has(gw, "answered"), what="answer")
            call_id = gw.events[0].call_id
            await gw.service.calls.send_dtmf(call_id, "4#")
            await gw.wait_for(lambda: len({ts for ts, _ in seen}) >= 2, what="two telephone-events")
            gw.service.hangup(call_id)
            result = await caller.wait_async(10)
            assert result.ok, result.explain()
            await gw.wait_ended()
    finally:
        listener.cancel()
        sink.close()
    events: dict[int, str] = {}
    for ts, digit in seen:
        events.setdefault(ts, digit)
    assert [events[ts] for ts in sorted(events)] == ["4", "#"]


async def test_the_agent_hanging_up_while_consulting_hands_the_customer_over(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    with (
        start_uas("uas_answer_bye.xml", duration_ms=1500) as alice,  # hangs up 1.5 s after answering
        start_uas("uas_answer.xml", duration_ms=200) as bob,
    ):
        gw = await gateway_factory(
            extensions={"101": ext(alice, "Alice", "e1"), "102": ext(bob, "Bob", "e2")}
        )
        caller = Sipp("uac_controlled.xml", remote=f"{HOST}:{gw.port}", service="101").start()
        await gw.wait_for(has(gw, "answered"), what="answer")
        call_id = gw.events[0].call_id
        await gw.service.calls.transfer(call_id, "102", attended=True)
        first = await alice.wait_async(10)
        assert first.ok, first.explain()
        await gw.wait_for(has(gw, "transferred"), what="transferred")
        assert gw.service.calls.get(call_id) is not None  # the customer is with Bob
        gw.service.hangup(call_id)
        result = await caller.wait_async(10)
        assert result.ok, result.explain()
        second = await bob.wait_async(10)
        assert second.ok, second.explain()
        await gw.wait_ended()

    assert kinds(gw) == ["offered", "ringing", "answered", "held", "resumed", "transferred", "ended"]
    t = gw.events[5].transferred
    assert (t.from_extension, t.to_extension, t.attended) == ("101", "102", True)
    end = gw.events[-1]
    assert (end.extension, end.ended.hangup_by) == ("102", ev.HANGUP_BY_SYSTEM)
