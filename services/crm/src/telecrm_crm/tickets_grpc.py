"""gRPC API of service tickets: the ``telecrm.crm.v1.Tickets`` servicer, for the suite's own services
(the queue opening a ticket for a walk-in customer, the web backend showing a customer's tickets).

Callers are services inside the suite's network, as for the other servicers: they act as
``system:<name>`` (``actor``) and see every ticket. Bad values answer INVALID_ARGUMENT naming the field,
unknown ids NOT_FOUND. ``CreateTicket`` with a ``request_id`` is safe to retry: the same id returns the
ticket the first call made.
"""

from __future__ import annotations

from datetime import UTC, date
from typing import NoReturn

import grpc

from telecrm.crm.v1 import tickets_pb2, tickets_pb2_grpc
from telecrm_crm import paging
from telecrm_crm.tickets import (
    SYSTEM_ACTOR,
    InvalidField,
    TicketInput,
    TicketNotFound,
    TicketService,
    ticket_message,
)

SERVICE_NAME = tickets_pb2.DESCRIPTOR.services_by_name["Tickets"].full_name
MAX_ACTOR_LENGTH = 100


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("context.abort returned")  # it raises; this tells the type checker


def _actor(value: str) -> str:
    """Who asks, as the operation log and events name it: ``system:<name>`` for a bare name."""
    if not value:
        return SYSTEM_ACTOR
    return value if ":" in value else f"system:{value}"


class TicketsServicer(tickets_pb2_grpc.TicketsServicer):
    def __init__(self, service: TicketService) -> None:
        self._service = service

    async def CreateTicket(
        self, request: tickets_pb2.CreateTicketRequest, context: grpc.aio.ServicerContext
    ) -> tickets_pb2.Ticket:
        if len(request.actor) > MAX_ACTOR_LENGTH:
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"actor: at most {MAX_ACTOR_LENGTH} characters"
            )
        ticket_date = None
        if request.ticket_date:
            try:
                ticket_date = date.fromisoformat(request.ticket_date)
            except ValueError:
                await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "ticket_date: a date (YYYY-MM-DD)")
        data = TicketInput(
            client_id=request.client_id,
            series=request.series or None,
            ticket_date=ticket_date,
            contact_person_id=request.contact_person_id or None,
            type_code=request.type_code or None,
            product=request.product,
            description=request.description,
            priority=request.priority or "medium",
            taken_by_id=request.taken_by_id or None,
            checker_id=request.checker_id or None,
            team_id=request.team_id or None,
            scheduled_start=request.scheduled_start.ToDatetime(tzinfo=UTC)
            if request.HasField("scheduled_start")
            else None,
            scheduled_end=request.scheduled_end.ToDatetime(tzinfo=UTC)
            if request.HasField("scheduled_end")
            else None,
            notify_customer=request.notify_customer,
            customer_email=request.customer_email or None,
            request_key=request.request_id or None,
        )
        try:
            view = await self._service.create(_actor(request.actor), data)
        except InvalidField as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return ticket_message(view.ticket)

    async def GetTicket(
        self, request: tickets_pb2.GetTicketRequest, context: grpc.aio.ServicerContext
    ) -> tickets_pb2.Ticket:
        if not request.ticket_id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "ticket_id: required")
        try:
            view = await self._service.get(SYSTEM_ACTOR, request.ticket_id)
        except TicketNotFound as exc:
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        return ticket_message(view.ticket)

    async def ListTicketsForContact(
        self, request: tickets_pb2.ListTicketsForContactRequest, context: grpc.aio.ServicerContext
    ) -> tickets_pb2.ListTicketsForContactResponse:
        if not request.contact_id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "contact_id: required")
        if request.page_size > paging.MAX_LIMIT:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"page_size: at most {paging.MAX_LIMIT}")
        try:
            page = await self._service.list_for_contact(
                request.contact_id,
                open_only=request.open_only,
                limit=request.page_size or paging.DEFAULT_LIMIT,
                cursor=request.page_token or None,
            )
        except paging.InvalidCursor as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"page_token: {exc}")
        return tickets_pb2.ListTicketsForContactResponse(
            tickets=[ticket_message(view.ticket) for view in page.items],
            next_page_token=page.next_cursor or "",
        )


def add_to_server(server: grpc.aio.Server, service: TicketService) -> None:
    tickets_pb2_grpc.add_TicketsServicer_to_server(TicketsServicer(service), server)


__all__ = ["SERVICE_NAME", "TicketsServicer", "add_to_server"]
