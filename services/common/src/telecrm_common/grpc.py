"""A gRPC server with the standard health service, reflection and trace-context propagation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from telecrm_common.health import Check, run_checks
from telecrm_common.settings import ServiceSettings
from telecrm_common.telemetry import ClientTracingInterceptor, ServerTracingInterceptor

log = logging.getLogger(__name__)


class GrpcServer:
    """grpc.aio server; add servicers to :attr:`server` before :meth:`start`.

    The health service reports SERVING for the server ("") and each named service while every check
    passes, NOT_SERVING otherwise; it is refreshed every ``health_interval`` seconds.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        service_names: Sequence[str],
        checks: Mapping[str, Check] | None = None,
        health_interval: float = 5.0,
    ) -> None:
        self.address = f"{settings.grpc_host}:{settings.grpc_port}"
        self.server = grpc.aio.server(interceptors=[ServerTracingInterceptor()])
        self._service_names = list(service_names)
        self._checks = dict(checks or {})
        self._interval = health_interval
        self._health = health.aio.HealthServicer()
        self._task: asyncio.Task[None] | None = None
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self.server)
        reflection.enable_server_reflection(
            [*self._service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        self.port = self.server.add_insecure_port(self.address)
        if self.port == 0:
            raise OSError(f"gRPC cannot listen on {self.address}")

    async def start(self) -> None:
        await self.server.start()
        await self._refresh_health()
        self._task = asyncio.create_task(self._watch_health(), name="grpc-health")
        log.info("gRPC listening", extra={"address": f"{self.address.rsplit(':', 1)[0]}:{self.port}"})

    async def stop(self, grace: float) -> None:
        if self._task:
            self._task.cancel()
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace)

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._refresh_health()

    async def _refresh_health(self) -> None:
        results = await run_checks(self._checks)
        healthy = all(result == "ok" for result in results.values())
        await self._set_all(
            health_pb2.HealthCheckResponse.SERVING if healthy else health_pb2.HealthCheckResponse.NOT_SERVING
        )

    async def _set_all(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for name in ("", *self._service_names):
            await self._health.set(name, status)


def channel(target: str) -> grpc.aio.Channel:
    """A client channel that carries the trace context to the server."""
    return grpc.aio.insecure_channel(target, interceptors=[ClientTracingInterceptor()])
