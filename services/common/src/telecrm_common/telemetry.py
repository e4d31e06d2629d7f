"""OpenTelemetry set-up and W3C trace-context propagation through NATS headers and gRPC metadata.

One call is one trace: the gateway starts a span per call event, the trace context travels in the
``traceparent`` header of the NATS message, and consumers continue it; gRPC calls carry it in metadata.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from telecrm_common.settings import ServiceSettings

_configured = False


def setup_telemetry(settings: ServiceSettings) -> None:
    """Install the SDK tracer provider once per process (spans exported only when asked to)."""
    global _configured
    if _configured:
        return
    resource = Resource.create(
        {"service.name": settings.service_name, "service.instance.id": settings.instance_id}
    )
    provider = TracerProvider(resource=resource)
    if settings.otel_traces == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def inject(carrier: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Write the current trace context (traceparent, tracestate) into headers or metadata."""
    propagate.inject(carrier)
    return carrier


def extract(carrier: Mapping[str, str] | None) -> otel_context.Context:
    """Read a trace context written by :func:`inject`; an empty context when there is none."""
    return propagate.extract(dict(carrier or {}))


# --- gRPC ------------------------------------------------------------------------------------------


class ServerTracingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Continues the caller's trace for every unary request and names the span after the method."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        metadata = {k: v for k, v in (handler_call_details.invocation_metadata or ()) if isinstance(v, str)}
        method = handler_call_details.method
        inner = handler.unary_unary

        async def traced(request: Any, context: grpc.aio.ServicerContext) -> Any:
            token = otel_context.attach(extract(metadata))
            try:
                with tracer("telecrm.grpc").start_as_current_span(
                    method, kind=trace.SpanKind.SERVER, attributes={"rpc.system": "grpc"}
                ):
                    return await inner(request, context)
            finally:
                otel_context.detach(token)

        return grpc.unary_unary_rpc_method_handler(
            traced,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class ClientTracingInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Adds the current trace context to the metadata of every unary call."""

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        metadata = list(client_call_details.metadata or [])
        metadata.extend(inject({}).items())
        details = grpc.aio.ClientCallDetails(
            client_call_details.method,
            client_call_details.timeout,
            grpc.aio.Metadata(*metadata),
            client_call_details.credentials,
            client_call_details.wait_for_ready,
        )
        return await continuation(details, request)
