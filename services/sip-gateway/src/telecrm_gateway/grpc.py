"""gRPC API of the gateway: the ``telecrm.gateway.v1.CallControl`` servicer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc

from telecrm.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from telecrm_gateway.calls import CallControlError
from telecrm_gateway.dialing import (
    DialBusy,
    DialConflict,
    DialFailed,
    DialNotAvailable,
    DialService,
    InvalidDial,
)
from telecrm_gateway.errors import CallNotFoundError
from telecrm_gateway.service import GatewayService
from telecrm_gateway.sip.engine import DtmfMethod

T = TypeVar("T")

SERVICE_NAME = gateway_pb2.DESCRIPTOR.services_by_name["CallControl"].full_name


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("context.abort returned")  # it raises; this tells the type checker


_RECORD_ACTIONS = {
    gateway_pb2.RECORD_ACTION_START: "start",
    gateway_pb2.RECORD_ACTION_STOP: "stop",
    gateway_pb2.RECORD_ACTION_PAUSE: "pause",
    gateway_pb2.RECORD_ACTION_RESUME: "resume",
}


async def _control(context: grpc.aio.ServicerContext, call_id: str, action: Callable[[], Awaitable[T]]) -> T:
    """Run a call-control action; its errors as gRPC statuses (NOT_FOUND, FAILED_PRECONDITION,
    INVALID_ARGUMENT)."""
    if not call_id:
        await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "call_id is required")
    try:
        return await action()
    except CallNotFoundError:
        await _abort(context, grpc.StatusCode.NOT_FOUND, f"no live call with id {call_id}")
    except CallControlError as exc:
        code = (
            grpc.StatusCode.INVALID_ARGUMENT if exc.kind == "invalid" else grpc.StatusCode.FAILED_PRECONDITION
        )
        await _abort(context, code, exc.message)


class CallControlServicer(gateway_pb2_grpc.CallControlServicer):
    """Hangup ends a live call (hangup_by SYSTEM); Dial is click-to-call (:mod:`telecrm_gateway.dialing`);
    Hold, Resume, Transfer, SendDtmf and Record control an answered call (:class:`CallManager`)."""

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
        except DialBusy as exc:
            await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
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

    async def Hold(self, request: gateway_pb2.HoldRequest, context: Any) -> gateway_pb2.HoldResponse:
        await _control(context, request.call_id, lambda: self._gateway.calls.hold(request.call_id))
        return gateway_pb2.HoldResponse()

    async def Resume(self, request: gateway_pb2.ResumeRequest, context: Any) -> gateway_pb2.ResumeResponse:
        await _control(context, request.call_id, lambda: self._gateway.calls.resume(request.call_id))
        return gateway_pb2.ResumeResponse()

    async def Transfer(
        self, request: gateway_pb2.TransferRequest, context: Any
    ) -> gateway_pb2.TransferResponse:
        if not request.extension:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "extension is required")
        await _control(
            context,
            request.call_id,
            lambda: self._gateway.calls.transfer(
                request.call_id, request.extension, attended=request.attended
            ),
        )
        return gateway_pb2.TransferResponse()

    async def CompleteTransfer(
        self, request: gateway_pb2.CompleteTransferRequest, context: Any
    ) -> gateway_pb2.CompleteTransferResponse:
        await _control(
            context, request.call_id, lambda: self._gateway.calls.complete_transfer(request.call_id)
        )
        return gateway_pb2.CompleteTransferResponse()

    async def CancelTransfer(
        self, request: gateway_pb2.CancelTransferRequest, context: Any
    ) -> gateway_pb2.CancelTransferResponse:
        await _control(context, request.call_id, lambda: self._gateway.calls.cancel_transfer(request.call_id))
        return gateway_pb2.CancelTransferResponse()

    async def SendDtmf(
        self, request: gateway_pb2.SendDtmfRequest, context: Any
    ) -> gateway_pb2.SendDtmfResponse:
        method = DtmfMethod.INFO if request.method == gateway_pb2.DTMF_METHOD_INFO else DtmfMethod.RFC2833
        await _control(
            context,
            request.call_id,
            lambda: self._gateway.calls.send_dtmf(request.call_id, request.digits, method),
        )
        return gateway_pb2.SendDtmfResponse()

    async def Record(self, request: gateway_pb2.RecordRequest, context: Any) -> gateway_pb2.RecordResponse:
        action = _RECORD_ACTIONS.get(request.action)
        if action is None:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "action: START, STOP, PAUSE or RESUME")
        recording = await _control(
            context, request.call_id, lambda: self._gateway.calls.record(request.call_id, action)
        )
        return gateway_pb2.RecordResponse(recording_id=recording.recording_id, state=recording.state.value)


def add_to_server(
    server: grpc.aio.Server, gateway: GatewayService, dialer: DialService | None = None
) -> None:
    gateway_pb2_grpc.add_CallControlServicer_to_server(CallControlServicer(gateway, dialer), server)
