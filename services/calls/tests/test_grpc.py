"""gRPC CallLog over a real grpc.aio server on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from telecrm.calls.v1 import calls_pb2, calls_pb2_grpc
from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_calls import grpc as calls_grpc
from telecrm_calls.service import CallLogService
from telecrm_calls.settings import CallsSettings
from telecrm_calls.testing import T0, CallScript
from telecrm_common.grpc import GrpcServer, channel


@pytest.fixture
async def stub(service: CallLogService) -> AsyncIterator[calls_pb2_grpc.CallLogStub]:
    async def ok() -> None:
        return None

    server = GrpcServer(
        CallsSettings(grpc_port=0), service_names=[calls_grpc.SERVICE_NAME], checks={"database": ok}
    )
    calls_grpc.add_to_server(server.server, service)
    await server.start()
    async with channel(f"127.0.0.1:{server.port}") as chan:
        yield calls_pb2_grpc.CallLogStub(chan)
        health = health_pb2_grpc.HealthStub(chan)
        status = await health.Check(health_pb2.HealthCheckRequest(service=calls_grpc.SERVICE_NAME))
        assert status.status == health_pb2.HealthCheckResponse.SERVING
    await server.stop(0)


@pytest.fixture
async def seeded(service: CallLogService) -> CallLogService:
    for n in range(5):
        call = CallScript(f"g-{n}", start=T0.replace(minute=n), employee_id=f"emp-{n}")
        await service.ingest(call.answered_call(ring=2, talk=30))
    busy = CallScript(
        "g-busy", start=T0.replace(hour=11), direction=ev.DIRECTION_OUTBOUND, callee="+15551234567"
    )
    await service.ingest([busy.offered(), busy.ended(1.5, ev.DISPOSITION_BUSY, sip_status=486, q850=17)])
    return service


def _ts(text: str) -> Timestamp:
    stamp = Timestamp()
    stamp.FromJsonString(text)
    return stamp


async def test_get_call(stub: calls_pb2_grpc.CallLogStub, seeded: CallLogService) -> None:
    call = await stub.GetCall(calls_pb2.GetCallRequest(call_id="g-1"))
    assert call.call_id == "g-1"
    assert call.direction == ev.DIRECTION_INBOUND
    assert call.disposition == ev.DISPOSITION_ANSWERED
    assert call.hangup_by == ev.HANGUP_BY_CALLER
    assert call.caller.e164 == "+74993690439"
    assert call.started_at.ToJsonString() == "2025-03-14T09:01:53.589Z"
    assert (call.ring_ms, call.talk_ms, call.sip_status, call.q850_cause) == (2000, 30000, 200, 16)
    assert (call.state, call.incomplete, call.employee_id, call.sip_call_id) == (
        "ended",
        False,
        "emp-1",
        "sip-g-1",
    )


async def test_unanswered_call_has_no_answer_time(
    stub: calls_pb2_grpc.CallLogStub, seeded: CallLogService
) -> None:
    call = await stub.GetCall(calls_pb2.GetCallRequest(call_id="g-busy"))
    assert not call.HasField("answered_at")
    assert call.HasField("ended_at")
    assert (call.disposition, call.ring_ms, call.talk_ms) == (ev.DISPOSITION_BUSY, 1500, 0)


async def test_list_pages_and_filters(stub: calls_pb2_grpc.CallLogStub, seeded: CallLogService) -> None:
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListCalls(
            calls_pb2.ListCallsRequest(
                page_size=2,
                page_token=token,
                dispositions=[ev.DISPOSITION_ANSWERED],
                started_from=_ts("2025-03-14T09:01:00Z"),
                started_to=_ts("2025-03-14T09:04:00Z"),
            )
        )
        seen += [c.call_id for c in page.calls]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["g-3", "g-2", "g-1"]

    page = await stub.ListCalls(calls_pb2.ListCallsRequest(number="1555", direction=ev.DIRECTION_OUTBOUND))
    assert [c.call_id for c in page.calls] == ["g-busy"]
    page = await stub.ListCalls(calls_pb2.ListCallsRequest())  # page_size 0: the default
    assert len(page.calls) == 6
    assert page.next_page_token == ""


async def test_list_by_employee_state_missed_and_oldest_first(
    stub: calls_pb2_grpc.CallLogStub, seeded: CallLogService
) -> None:
    live = CallScript("g-live", start=T0.replace(hour=12), employee_id="emp-1")
    await seeded.ingest([live.offered(), live.ringing(0.1)])

    page = await stub.ListCalls(calls_pb2.ListCallsRequest(employee_id="emp-1", include_total=True))
    assert ([c.call_id for c in page.calls], page.total_size) == (["g-live", "g-1"], 2)
    page = await stub.ListCalls(calls_pb2.ListCallsRequest(employee_id="emp-1", states=["ended"]))
    assert [c.call_id for c in page.calls] == ["g-1"]
    page = await stub.ListCalls(calls_pb2.ListCallsRequest(missed=True))
    assert [(c.call_id, c.missed) for c in page.calls] == [("g-busy", True)]  # a missed outgoing call
    page = await stub.ListCalls(calls_pb2.ListCallsRequest(recorded=False, sort="oldest", page_size=2))
    assert [c.call_id for c in page.calls] == ["g-0", "g-1"]
    page = await stub.ListCalls(
        calls_pb2.ListCallsRequest(
            recorded=False, sort="oldest", page_size=2, page_token=page.next_page_token
        )
    )
    assert [c.call_id for c in page.calls] == ["g-2", "g-3"]


@pytest.mark.parametrize(
    ("request_", "code", "field"),
    [
        (
            calls_pb2.ListCallsRequest(page_token="forged.token"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_token",
        ),
        (
            calls_pb2.ListCallsRequest(
                started_from=_ts("2025-03-14T10:00:00Z"), started_to=_ts("2025-03-14T09:00:00Z")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "started_to",
        ),
        (calls_pb2.ListCallsRequest(number="abc"), grpc.StatusCode.INVALID_ARGUMENT, "number"),
        (calls_pb2.ListCallsRequest(states=["gone"]), grpc.StatusCode.INVALID_ARGUMENT, "states"),
        (calls_pb2.ListCallsRequest(sort="loudest"), grpc.StatusCode.INVALID_ARGUMENT, "sort"),
        (
            calls_pb2.ListCallsRequest(dispositions=[ev.Disposition.ValueType(42)]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "dispositions",
        ),
        (
            calls_pb2.ListCallsRequest(direction=ev.Direction.ValueType(9)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "direction",
        ),
    ],
)
async def test_list_errors(
    stub: calls_pb2_grpc.CallLogStub, request_: calls_pb2.ListCallsRequest, code: grpc.StatusCode, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListCalls(request_)
    assert raised.value.code() == code
    assert (raised.value.details() or "").startswith(field)


async def test_get_errors(stub: calls_pb2_grpc.CallLogStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetCall(calls_pb2.GetCallRequest(call_id="nope"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetCall(calls_pb2.GetCallRequest())
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
