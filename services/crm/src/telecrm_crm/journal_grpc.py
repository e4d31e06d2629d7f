"""gRPC API of the events journal: the ``telecrm.crm.v1.Journal`` servicer, for other services.

Callers are services (the queue adds its tickets' events, messaging its SMS and e-mails...), trusted
like every service-to-service call of the suite: they act as ``created_by`` (an employee id or
``system:<service>``) and see every event. Bad values answer INVALID_ARGUMENT naming the field,
unknown ids NOT_FOUND, a call that has an event already ALREADY_EXISTS. ``request_id`` makes
CreateEvent idempotent: a retried request returns the event of the first one.
"""

from __future__ import annotations

from typing import NoReturn

import grpc

from telecrm.crm.v1 import journal_pb2, journal_pb2_grpc
from telecrm_crm import paging
from telecrm_crm.journal import (
    Conflict,
    EventInput,
    EventQuery,
    InvalidField,
    JournalService,
    NotFound,
    event_message,
    timestamp_datetime,
)
from telecrm_crm.journal_models import SOURCE_API

SERVICE_NAME = journal_pb2.DESCRIPTOR.services_by_name["Journal"].full_name
DEFAULT_ACTOR = "system:grpc"


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("context.abort returned")  # it raises; this tells the type checker


class JournalServicer(journal_pb2_grpc.JournalServicer):
    def __init__(self, service: JournalService) -> None:
        self._service = service

    async def CreateEvent(
        self, request: journal_pb2.CreateEventRequest, context: grpc.aio.ServicerContext
    ) -> journal_pb2.JournalEvent:
        actor = request.created_by.strip() or DEFAULT_ACTOR
        if len(actor) > 100:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "created_by: at most 100 characters")
        if len(request.request_id) > 150:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "request_id: at most 150 characters")
        responsible = request.responsible_employee_id
        if not responsible and not actor.startswith("system:"):
            responsible = actor  # an employee records their own event
        data = EventInput(
            type_code=request.type_code,
            start_at=timestamp_datetime(request.start_at),
            end_at=timestamp_datetime(request.end_at),
            responsible_employee_id=responsible or None,
            team_id=request.team_id or None,
            contact_id=request.contact_id or None,
            contact_person_id=request.contact_person_id or None,
            project_id=request.project_id or None,
            phone=request.phone or None,
            email=request.email or None,
            direction=request.direction or None,
            subject=request.subject or None,
            content=request.content or None,
            call_id=request.call_id or None,
        )
        request_id = f"grpc:{request.request_id}" if request.request_id else None
        try:
            row, _ = await self._service.create_event(actor, data, request_id=request_id, source=SOURCE_API)
        except InvalidField as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Conflict as exc:
            await _abort(context, grpc.StatusCode.ALREADY_EXISTS, str(exc))
        return event_message(row)

    async def GetEvent(
        self, request: journal_pb2.GetEventRequest, context: grpc.aio.ServicerContext
    ) -> journal_pb2.JournalEvent:
        if not request.event_id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "event_id: required")
        try:
            row = await self._service.get_event(DEFAULT_ACTOR, request.event_id)
        except NotFound as exc:
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        return event_message(row)

    async def ListEvents(
        self, request: journal_pb2.ListEventsRequest, context: grpc.aio.ServicerContext
    ) -> journal_pb2.ListEventsResponse:
        if request.page_size > paging.MAX_LIMIT:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"page_size: at most {paging.MAX_LIMIT}")
        query = EventQuery(
            contact_id=request.contact_id or None,
            phone=request.number or None,
            type_codes=list(request.type_codes),
            start_from=timestamp_datetime(request.start_from),
            start_to=timestamp_datetime(request.start_to),
            archived="all" if request.include_archived else "active",
            project_id=request.project_id or None,
            employee_id=request.employee_id or None,
            limit=request.page_size or paging.DEFAULT_LIMIT,
            cursor=request.page_token or None,
        )
        try:
            page = await self._service.list_events(DEFAULT_ACTOR, query)
        except InvalidField as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except paging.InvalidCursor as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"page_token: {exc}")
        return journal_pb2.ListEventsResponse(
            events=[event_message(row) for row in page.items], next_page_token=page.next_cursor or ""
        )


def add_to_server(server: grpc.aio.Server, service: JournalService) -> None:
    journal_pb2_grpc.add_JournalServicer_to_server(JournalServicer(service), server)


__all__ = ["SERVICE_NAME", "JournalServicer", "add_to_server"]
