"""gRPC API of the call log: the ``telecrm.calls.v1.CallLog`` servicer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NoReturn

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from telecrm.calls.v1 import calls_pb2, calls_pb2_grpc
from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_calls.missed import STATE_NAMES, MissedCallLog, MissedCallQuery, missed_call_message
from telecrm_calls.models import Call
from telecrm_calls.service import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    CallLogService,
    CallNotFound,
    CallQuery,
    InvalidCursor,
    InvalidQuery,
)
from telecrm_common.telephony import (
    DIRECTION_BY_NAME,
    DIRECTION_NAMES,
    DISPOSITION_BY_NAME,
    DISPOSITION_NAMES,
    HANGUP_BY_NAMES,
)

SERVICE_NAME = calls_pb2.DESCRIPTOR.services_by_name["CallLog"].full_name
HANGUP_BY_BY_NAME = {name: value for value, name in HANGUP_BY_NAMES.items()}


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("context.abort returned")  # it raises; this tells the type checker


def _timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _datetime(
    request: calls_pb2.ListCallsRequest | calls_pb2.ListMissedCallsRequest, name: str
) -> datetime | None:
    if not request.HasField(name):  # type: ignore[arg-type]
        return None
    stamp: Timestamp = getattr(request, name)
    return stamp.ToDatetime(tzinfo=UTC)


def call_message(call: Call) -> calls_pb2.Call:
    """The protobuf of a call record."""
    return calls_pb2.Call(
        call_id=call.call_id,
        direction=DIRECTION_BY_NAME.get(call.direction or "", ev.DIRECTION_UNSPECIFIED),
        caller=ev.Party(
            number=call.caller_number or "", e164=call.caller_e164 or "", display_name=call.caller_name or ""
        ),
        callee=ev.Party(
            number=call.callee_number or "", e164=call.callee_e164 or "", display_name=call.callee_name or ""
        ),
        line=call.line or "",
        extension=call.extension or "",
        employee_id=call.employee_id or "",
        started_at=_timestamp(call.started_at),
        answered_at=_timestamp(call.answered_at),
        ended_at=_timestamp(call.ended_at),
        ring_ms=min(call.ring_ms or 0, 2**32 - 1),
        talk_ms=min(call.talk_ms or 0, 2**32 - 1),
        disposition=DISPOSITION_BY_NAME.get(call.disposition or "", ev.DISPOSITION_UNSPECIFIED),
        sip_status=call.sip_status or 0,
        sip_reason=call.sip_reason or "",
        q850_cause=call.q850_cause or 0,
        hangup_by=HANGUP_BY_BY_NAME.get(call.hangup_by or "", ev.HANGUP_BY_UNSPECIFIED),
        state=call.state,
        incomplete=call.incomplete,
        context=dict(call.context or {}),
        sip_call_id=call.sip_call_id or "",
    )


class CallLogServicer(calls_pb2_grpc.CallLogServicer):
    """ListCalls and GetCall over :class:`CallLogService`, ListMissedCalls over :class:`MissedCallLog`.

    Bad filters and foreign page tokens answer INVALID_ARGUMENT, unknown calls NOT_FOUND.
    """

    def __init__(self, service: CallLogService, missed: MissedCallLog | None = None) -> None:
        self._service = service
        self._missed = missed

    async def ListCalls(
        self, request: calls_pb2.ListCallsRequest, context: grpc.aio.ServicerContext
    ) -> calls_pb2.ListCallsResponse:
        unknown = [d for d in request.dispositions if d not in DISPOSITION_NAMES]
        if unknown:
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"dispositions: unknown value {unknown[0]}"
            )
        if request.direction and request.direction not in DIRECTION_NAMES:
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"direction: unknown value {request.direction}"
            )
        query = CallQuery(
            number=request.number or None,
            extension=request.extension or None,
            dispositions=tuple(DISPOSITION_NAMES[d] for d in request.dispositions),
            direction=DIRECTION_NAMES.get(request.direction),
            started_from=_datetime(request, "started_from"),
            started_to=_datetime(request, "started_to"),
            limit=min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
            cursor=request.page_token or None,
        )
        try:
            page = await self._service.list_calls(query)
        except InvalidQuery as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except InvalidCursor as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"page_token: {exc}")
        return calls_pb2.ListCallsResponse(
            calls=[call_message(entry.call) for entry in page.items], next_page_token=page.next_cursor or ""
        )

    async def GetCall(
        self, request: calls_pb2.GetCallRequest, context: grpc.aio.ServicerContext
    ) -> calls_pb2.Call:
        if not request.call_id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "call_id: required")
        try:
            entry = await self._service.get_call(request.call_id)
        except CallNotFound as exc:
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        return call_message(entry.call)

    async def ListMissedCalls(
        self, request: calls_pb2.ListMissedCallsRequest, context: grpc.aio.ServicerContext
    ) -> calls_pb2.ListMissedCallsResponse:
        if self._missed is None:
            await _abort(context, grpc.StatusCode.UNIMPLEMENTED, "missed calls are not served here")
        unknown = [s for s in request.states if s not in STATE_NAMES]
        if unknown:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"states: unknown value {unknown[0]}")
        query = MissedCallQuery(
            states=tuple(STATE_NAMES[s] for s in request.states) or ("open",),
            extension=request.extension or None,
            employee_id=request.employee_id or None,
            number=request.number or None,
            last_missed_from=_datetime(request, "last_missed_from"),
            last_missed_to=_datetime(request, "last_missed_to"),
            limit=min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
            cursor=request.page_token or None,
        )
        try:
            page = await self._missed.list_missed_calls(query)
        except InvalidQuery as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except InvalidCursor as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"page_token: {exc}")
        return calls_pb2.ListMissedCallsResponse(
            missed_calls=[missed_call_message(entry.item, entry) for entry in page.items],
            next_page_token=page.next_cursor or "",
            total_size=page.total,
        )

    async def UpdateCallNotes(
        self, request: calls_pb2.UpdateCallNotesRequest, context: grpc.aio.ServicerContext
    ) -> calls_pb2.Call:
        await _abort(context, grpc.StatusCode.UNIMPLEMENTED, "call notes are being built")
        raise AssertionError("unreachable")


def add_to_server(
    server: grpc.aio.Server, service: CallLogService, missed: MissedCallLog | None = None
) -> None:
    calls_pb2_grpc.add_CallLogServicer_to_server(CallLogServicer(service, missed), server)
