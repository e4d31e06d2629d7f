"""REST and gRPC call control on a running gateway, with sipp on both sides of the call."""

from __future__ import annotations

from collections.abc import Callable

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
from tests.sipp.runner import Sipp, environment_ok, start_uas

SIPP_OK, SIPP_MISSING = environment_ok()
pytestmark = [pytest.mark.sip, pytest.mark.skipif(not SIPP_OK, reason=SIPP_MISSING)]

HOST = "127.0.0.1"


def ringing_or_answered(gw, kind: str) -> bool:  # type: ignore[no-untyped-def]
    return any(e.WhichOneof("kind") == kind for e in gw.events)


ALICE = make_principal("u-alice", Role.AGENT, employee_id="e1")
BOB = make_principal("u-bob", Role.AGENT, employee_id="e2")


async def test_rest_lists_live_calls_and_hangs_up_a_ringing_one(  # type: ignore[no-untyped-def]
    gateway_factory, auth_settings: AuthSettings, token_for: Callable[[Principal], dict[str, str]]
) -> None:
    with start_uas("uas_ring_forever.xml") as agent:
        gw = await gateway_factory(
            extensions={
                "101": {"contact": f"sip:101@{HOST}:{agent.port}", "name": "Alice", "employee_id": "e1"}
            }
        )
        app = create_app(
            gw.service, {"sip": gw.service.check_sip}, access=Access.from_settings(auth_settings)
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw", headers=token_for(ALICE)
        ) as client:
            assert (await client.get("/readyz", headers={"Authorization": ""})).status_code == 200
            assert (await client.get("/calls/active", headers={"Authorization": ""})).status_code == 401
            caller = Sipp(
                "uac_expect_status.xml",
                remote=f"{HOST}:{gw.port}",
                service="101",
                keys={"expected_status": "480"},
            ).start()
            await gw.wait_for(lambda: ringing_or_answered(gw, "ringing"), what="ringing")

            active = (await client.get("/calls/active")).json()
            assert active["accepting"] is True
            assert active["max_calls"] == 1
            [call] = active["items"]
            assert call["state"] == "ringing"
            assert call["direction"] == "inbound"
            assert (call["extension"], call["employee_id"], call["line"]) == ("101", "e1", "101")
            assert call["caller"]["number"] == "+15557654321"
            assert call["answered_at"] is None
            # Another agent neither sees nor ends it (403, as for every control); the call's agent does.
            assert (await client.get("/calls/active", headers=token_for(BOB))).json()["items"] == []
            refused = await client.post(f"/calls/{call['call_id']}/hangup", headers=token_for(BOB))
            assert refused.status_code == 403

            response = await client.post(f"/calls/{call['call_id']}/hangup")
            assert response.status_code == 202, response.text
            done = await caller.wait_async(10)
            assert done.ok, done.explain()  # the caller heard 480
            done = await agent.wait_async(10)
            assert done.ok, done.explain()  # the agent's phone was cancelled
            assert (await client.post(f"/calls/{call['call_id']}/hangup")).status_code == 404
            assert (await client.get("/calls/active")).json()["items"] == []
            await gw.wait_ended()

            await gw.service.stop(timeout=3)
            health = await client.get("/healthz")
            assert health.status_code == 503
            assert health.json()["checks"]["sip"] != "ok"
    end = gw.events[-1].ended
    assert (end.disposition, end.hangup_by, end.sip_status) == (
        ev.DISPOSITION_CANCELLED,
        ev.HANGUP_BY_SYSTEM,
        480,
    )


async def test_grpc_hangup_ends_an_answered_call(gateway_factory) -> None:
    with start_uas("uas_answer.xml", duration_ms=100) as agent:
        gw = await gateway_factory(extensions={"101": {"contact": f"sip:101@{HOST}:{agent.port}"}})
        server = GrpcServer(
            gw.service.settings.model_copy(update={"grpc_port": 0}),
            service_names=[gateway_grpc.SERVICE_NAME],
            checks={"sip": gw.service.check_sip},
        )
        gateway_grpc.add_to_server(server.server, gw.service)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"{HOST}:{server.port}") as channel:
                stub = gateway_pb2_grpc.CallControlStub(channel)
                caller = Sipp(
                    "uac_answered_callee_bye.xml", remote=f"{HOST}:{gw.port}", service="101"
                ).start()
                await gw.wait_for(lambda: ringing_or_answered(gw, "answered"), what="answer")
                call_id = gw.events[0].call_id

                await stub.Hangup(gateway_pb2.HangupRequest(call_id=call_id))
                done = await caller.wait_async(10)
                assert done.ok, done.explain()  # BYE to the caller
                done = await agent.wait_async(10)
                assert done.ok, done.explain()  # BYE to the agent

                with pytest.raises(grpc.aio.AioRpcError) as not_found:
                    await stub.Hangup(gateway_pb2.HangupRequest(call_id=call_id))
                assert not_found.value.code() == grpc.StatusCode.NOT_FOUND
                with pytest.raises(grpc.aio.AioRpcError) as unimplemented:
                    await stub.Dial(gateway_pb2.DialRequest(extension="101", number="+15557654321"))
                assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED
        finally:
            await server.stop(0)
    end = (await gw.wait_ended())[0].ended
    assert (end.disposition, end.hangup_by, end.sip_status) == (
        ev.DISPOSITION_ANSWERED,
        ev.HANGUP_BY_SYSTEM,
        200,
    )
