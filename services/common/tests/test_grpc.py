"""GrpcServer on a real port: the standard health service follows the checks, reflection lists the
services, and the trace context crosses the call in metadata."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry import trace

from telecrm.calls.v1 import calls_pb2, calls_pb2_grpc
from telecrm_common.errors import NotReadyError
from telecrm_common.grpc import GrpcServer, channel
from telecrm_common.settings import ServiceSettings
from telecrm_devstack.processes import free_port

CALL_LOG = calls_pb2.DESCRIPTOR.services_by_name["CallLog"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class CallLog(calls_pb2_grpc.CallLogServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.trace_ids: list[int] = []

    async def GetCall(self, request: calls_pb2.GetCallRequest, context: Any) -> calls_pb2.Call:
        self.trace_ids.append(trace.get_current_span().get_span_context().trace_id)
        return calls_pb2.Call(call_id=request.call_id, state="ended")


class Dependency:
    """A check whose outcome the test decides."""

    def __init__(self) -> None:
        self.up = True

    async def check(self) -> None:
        if not self.up:
            raise NotReadyError("NATS is not connected")


@pytest.fixture
def dependency() -> Dependency:
    return Dependency()


@pytest.fixture
async def server(dependency: Dependency) -> AsyncIterator[tuple[GrpcServer, CallLog]]:
    settings = ServiceSettings(grpc_host="127.0.0.1", grpc_port=free_port())
    grpc_server = GrpcServer(
        settings, service_names=[CALL_LOG], checks={"nats": dependency.check}, health_interval=0.05
    )
    servicer = CallLog()
    calls_pb2_grpc.add_CallLogServicer_to_server(servicer, grpc_server.server)
    await grpc_server.start()
    yield grpc_server, servicer
    await grpc_server.stop(grace=0.5)


@pytest.fixture
async def client(server: tuple[GrpcServer, CallLog]) -> AsyncIterator[grpc.aio.Channel]:
    async with channel(f"127.0.0.1:{server[0].port}") as chan:
        yield chan


async def status_of(chan: grpc.aio.Channel, service: str) -> int:
    response = await health_pb2_grpc.HealthStub(chan).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=2
    )
    return int(response.status)


@pytest.mark.parametrize("service", ["", CALL_LOG])
async def test_health_follows_the_checks(
    service: str, client: grpc.aio.Channel, dependency: Dependency, eventually: Any
) -> None:
    assert await status_of(client, service) == SERVING

    dependency.up = False

    async def not_serving() -> bool:
        return await status_of(client, service) == NOT_SERVING

    await eventually(not_serving, timeout=3, what="NOT_SERVING")

    dependency.up = True

    async def serving() -> bool:
        return await status_of(client, service) == SERVING

    await eventually(serving, timeout=3, what="SERVING again")


async def test_health_of_an_unknown_service_is_not_found(client: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await status_of(client, "telecrm.nothing.v1.Nothing")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_the_services(client: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(client)
    call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names: list[str] = []
    async for response in call:
        names.extend(service.name for service in response.list_services_response.service)
    assert sorted(names) == sorted(
        [CALL_LOG, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"]
    )


async def test_a_call_continues_the_callers_trace(
    server: tuple[GrpcServer, CallLog], client: grpc.aio.Channel, spans: Any
) -> None:
    _, servicer = server
    with trace.get_tracer("test").start_as_current_span("agent clicks the call") as caller:
        call = await calls_pb2_grpc.CallLogStub(client).GetCall(
            calls_pb2.GetCallRequest(call_id="c-9"), timeout=2
        )
    assert call.call_id == "c-9"
    trace_id = caller.get_span_context().trace_id
    assert servicer.trace_ids == [trace_id]
    server_spans = [s for s in spans.get_finished_spans() if s.name == f"/{CALL_LOG}/GetCall"]
    assert len(server_spans) == 1
    assert server_spans[0].kind == trace.SpanKind.SERVER
    assert server_spans[0].parent is not None
    assert server_spans[0].parent.span_id == caller.get_span_context().span_id


async def test_stop_reports_not_serving_then_closes(dependency: Dependency) -> None:
    settings = ServiceSettings(grpc_host="127.0.0.1", grpc_port=free_port())
    grpc_server = GrpcServer(settings, service_names=[CALL_LOG], checks={"nats": dependency.check})
    await grpc_server.start()
    assert grpc_server.port == settings.grpc_port
    await grpc_server.stop(grace=0.1)
    async with channel(f"127.0.0.1:{settings.grpc_port}") as chan:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await status_of(chan, "")
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        settings = ServiceSettings(grpc_host="127.0.0.1", grpc_port=port)
        with pytest.raises((OSError, RuntimeError), match=str(port)):
            GrpcServer(settings, service_names=[])
