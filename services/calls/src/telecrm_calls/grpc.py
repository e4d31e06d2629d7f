"""gRPC API of the call log: the ``telecrm.calls.v1.CallLog`` servicer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NoReturn

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from telecrm.calls.v1 import calls_pb2, calls_pb2_grpc
from telecrm_calls.missed import STATE_NAMES, MissedCallLog, MissedCallQuery, missed_call_message
from telecrm_calls.models import Call
from telecrm_calls.notes import NOTE_FIELDS, CallNotesService, InvalidNotes, NotesConflict
from telecrm_calls.record_events import call_proto
from telecrm_calls.service import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    CallLogService,
    CallNotFound,
    CallQuery,
    InvalidCursor,
    InvalidQuery,
)
from telecrm_common.telephony import DIRECTION_NAMES, DISPOSITION_NAMES

SERVICE_NAME = calls_pb2.DESCRIPTOR.services_by_name["CallLog"].full_name


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("context.abort returned")  # it raises; this tells the type checker


def _datetime(
    request: calls_pb2.ListCallsRequest | calls_pb2.ListMissedCallsRequest, name: str
) -> datetime | None:
    if not request.HasField(name):  # type: ignore[arg-type]
        return None
    stamp: Timestamp = getattr(request, name)
    return stamp.ToDatetime(tzinfo=UTC)


def call_message(call: Call, *, has_recording: bool | None = None) -> calls_pb2.Call:
    """The protobuf of a call record: the one conversion, shared with the record events."""
    return call_proto(call, has_recording=has_recording)


class CallLogServicer(calls_pb2_grpc.CallLogServicer):
    """ListCalls and GetCall over :class:`CallLogService`, ListMissedCalls over :class:`MissedCallLog`.

    Bad filters and foreign page tokens answer INVALID_ARGUMENT, unknown calls NOT_FOUND.
    """

    def __init__(
        self,
        service: CallLogService,
        missed: MissedCallLog | None = None,
        notes: CallNotesService | None = None,
    ) -> None:
        self._service = service
        self._missed = missed
        self._notes = notes

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
            employee_id=request.employee_id or None,
            team_id=request.team_id or None,
            contact_id=request.contact_id or None,
            states=tuple(request.states),
            recorded=request.recorded if request.HasField("recorded") else None,
            missed=request.missed if request.HasField("missed") else None,
            sort=request.sort or "newest",
            include_total=request.include_total,
        )
        try:
            page = await self._service.list_calls(query)
        except InvalidQuery as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except InvalidCursor as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"page_token: {exc}")
        return calls_pb2.ListCallsResponse(
            calls=[call_message(entry.call) for entry in page.items],
            next_page_token=page.next_cursor or "",
            total_size=page.total or 0,
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
        """Change the notes fields of ``update_mask`` (all six when empty); "" clears a field.

        INVALID_ARGUMENT names the field (``notes.reason``, ``update_mask``...), NOT_FOUND an unknown
        call, FAILED_PRECONDITION a version that moved on (the message says the current one).
        """
        if self._notes is None:
            await _abort(context, grpc.StatusCode.UNIMPLEMENTED, "call notes are not served here")
        if not request.call_id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "call_id: required")
        paths = [path.removeprefix("notes.") for path in request.update_mask.paths] or list(NOTE_FIELDS)
        unknown = [path for path in paths if path not in NOTE_FIELDS]
        if unknown:
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"update_mask: unknown field {unknown[0]!r} (the notes are {', '.join(NOTE_FIELDS)})",
            )
        try:
            entry = await self._notes.update_notes(
                request.call_id,
                {path: getattr(request.notes, path) for path in paths},
                expected_version=request.expected_notes_version or None,
                updated_by=request.updated_by or None,
            )
        except InvalidNotes as exc:
            field = exc.field if exc.field == "updated_by" else f"notes.{exc.field}"
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {exc.message}")
        except CallNotFound as exc:
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        except NotesConflict as exc:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return call_message(entry.call, has_recording=entry.has_recording)


def add_to_server(
    server: grpc.aio.Server,
    service: CallLogService,
    missed: MissedCallLog | None = None,
    notes: CallNotesService | None = None,
) -> None:
    calls_pb2_grpc.add_CallLogServicer_to_server(CallLogServicer(service, missed, notes), server)
