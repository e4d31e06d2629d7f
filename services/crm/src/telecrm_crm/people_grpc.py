"""gRPC API of people: the ``telecrm.crm.v1.People`` servicer, for services on the inside.

The gateway resolves the extension a call rang to its employee, the contact card names the responsible
employee; both are trusted services, so they see every employee (no user rights apply here).
"""

from __future__ import annotations

from typing import NoReturn

import grpc

from telecrm.crm.v1 import people_pb2, people_pb2_grpc
from telecrm_crm import paging
from telecrm_crm.people import (
    MAX_IDS_PER_QUERY,
    EmployeeQuery,
    InvalidField,
    NotFound,
    PeopleService,
    employee_record,
)

SERVICE_NAME = people_pb2.DESCRIPTOR.services_by_name["People"].full_name


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("context.abort returned")  # it raises; this tells the type checker


class PeopleServicer(people_pb2_grpc.PeopleServicer):
    """Bad values answer INVALID_ARGUMENT naming the field, unknown ones NOT_FOUND."""

    def __init__(self, service: PeopleService) -> None:
        self._service = service

    async def GetEmployee(
        self, request: people_pb2.GetEmployeeRequest, context: grpc.aio.ServicerContext
    ) -> people_pb2.EmployeeRecord:
        if not request.employee_id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "employee_id: required")
        try:
            view = await self._service.get_employee(None, request.employee_id, include_deleted=True)
        except NotFound as exc:
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        return employee_record(view)

    async def ListEmployees(
        self, request: people_pb2.ListEmployeesRequest, context: grpc.aio.ServicerContext
    ) -> people_pb2.ListEmployeesResponse:
        if len(request.employee_ids) > MAX_IDS_PER_QUERY:
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"employee_ids: at most {MAX_IDS_PER_QUERY}"
            )
        query = EmployeeQuery(
            team_id=request.team_id or None,
            active=None if request.include_inactive or request.include_deleted else True,
            q=request.query or None,
            ids=tuple(request.employee_ids),
            include_deleted=request.include_deleted,
            limit=min(request.page_size or paging.DEFAULT_LIMIT, paging.MAX_LIMIT),
            cursor=request.page_token or None,
        )
        try:
            page = await self._service.list_employees(None, query)
        except InvalidField as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except paging.InvalidCursor as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"page_token: {exc}")
        return people_pb2.ListEmployeesResponse(
            employees=[employee_record(view) for view in page.items], next_page_token=page.next_cursor or ""
        )

    async def ResolveExtension(
        self, request: people_pb2.ResolveExtensionRequest, context: grpc.aio.ServicerContext
    ) -> people_pb2.EmployeeRecord:
        try:
            view = await self._service.resolve_extension(request.extension)
        except InvalidField as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except NotFound as exc:
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        return employee_record(view)


def add_to_server(server: grpc.aio.Server, service: PeopleService) -> None:
    people_pb2_grpc.add_PeopleServicer_to_server(PeopleServicer(service), server)
