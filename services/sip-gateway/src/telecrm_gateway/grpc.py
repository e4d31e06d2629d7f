"""gRPC API of the gateway: the ``telecrm.gateway.v1.CallControl`` servicer."""

from __future__ import annotations

from typing import Any, NoReturn

import grpc

from telecrm.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from telecrm_gateway.dialing import (
    DialConflict,
    DialFailed,
    DialNotAvailable,
    DialService,
    InvalidDial,
)
from telecrm_gateway.errors import CallNotFoundError
from telecrm_gateway.service import GatewayService

SERVICE_NAME = gateway_pb2.DESCRIPTOR.services_by_name["CallControl"].full_name


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("context.abort returned")  # it raises; this tells the type checker


class CallControlServicer(gateway_pb2_grpc.CallControlServicer):
    """Hangup ends a live call (hangup_by SYSTEM); Dial is click-to-call (:mod:`telecrm_gateway.dialing`)."""

    def __init__(self, gateway: GatewayService, dialer: DialService | None = None) -> None:
        self._gateway = gateway
        self._dialer = dialer

    async def Dial(self, request: gateway_pb2.DialRequest, context: Any) -> gateway_pb2.DialResponse:
        if self._dialer is None:
            await _abort(
                context,
                grpc.StatusCode.UNIMPLEMENTED,
                "click-to-call (Dial) is not implemented in this version of the SIP gateway",
            )
        try:
            result = await self._dialer.dial(
                request.extension,
                request.number,
                idempotency_key=request.idempotency_key,
                context=dict(request.context),
                caller_id=request.caller_id,
            )
        except InvalidDial as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except DialConflict as exc:
            await _abort(context, grpc.StatusCode.ALREADY_EXISTS, str(exc))
        except DialNotAvailable as exc:
            await _abort(context, grpc.StatusCode.UNIMPLEMENTED, str(exc))
        except DialFailed as exc:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
        return gateway_pb2.DialResponse(call_id=result.call_id)

    async def Hangup(self, request: gateway_pb2.HangupRequest, context: Any) -> gateway_pb2.HangupResponse:
        if not request.call_id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "call_id is required")
        try:
            self._gateway.hangup(request.call_id)
        except CallNotFoundError:
            await _abort(context, grpc.StatusCode.NOT_FOUND, f"no live call with id {request.call_id}")
        return gateway_pb2.HangupResponse()


def add_to_server(
    server: grpc.aio.Server, gateway: GatewayService, dialer: DialService | None = None
) -> None:
    gateway_pb2_grpc.add_CallControlServicer_to_server(CallControlServicer(gateway, dialer), server)
