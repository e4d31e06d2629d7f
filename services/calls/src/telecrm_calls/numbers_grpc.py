"""gRPC API of the numbers registry: the ``telecrm.calls.v1.NumbersRegistry`` servicer."""

from __future__ import annotations

from typing import NoReturn

import grpc
from google.protobuf.empty_pb2 import Empty

from telecrm.calls.v1 import numbers_pb2, numbers_pb2_grpc
from telecrm_calls.numbers import (
    CONTACT,
    INTERNAL,
    DuplicateNumber,
    ExtensionChanges,
    ExtensionInput,
    InvalidField,
    NumberConflict,
    NumberNotFound,
    NumberQuery,
    NumberRow,
    NumbersRegistry,
)
from telecrm_calls.records import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, InvalidCursor, InvalidQuery
from telecrm_common.timestamps import timestamp_message

SERVICE_NAME = numbers_pb2.DESCRIPTOR.services_by_name["NumbersRegistry"].full_name
KIND_VALUES = {INTERNAL: numbers_pb2.NUMBER_KIND_INTERNAL, CONTACT: numbers_pb2.NUMBER_KIND_CONTACT}
KIND_NAMES = {value: name for name, value in KIND_VALUES.items()}
EXTENSION_PATHS = ("number", "label", "employee_id")


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("context.abort returned")  # it raises; this tells the type checker


def number_message(row: NumberRow) -> numbers_pb2.RegisteredNumber:
    """The protobuf of a registered number."""
    number = row.number
    return numbers_pb2.RegisteredNumber(
        id=number.id,
        kind=KIND_VALUES.get(number.kind, numbers_pb2.NUMBER_KIND_UNSPECIFIED),
        number=number.number,
        e164=number.e164 or "",
        label=number.label or "",
        employee_id=number.employee_id or "",
        employee_name=row.employee_name or "",
        team_id=row.team_id or "",
        team_name=row.team_name or "",
        employee_active=bool(row.employee_active),
        contact_id=number.contact_id or "",
        contact_name=row.contact_name or "",
        company_name=row.company_name or "",
        phone_kind=number.phone_kind or "",
        version=number.version,
        created_at=timestamp_message(number.created_at),
        updated_at=timestamp_message(number.updated_at),
    )


class NumbersRegistryServicer(numbers_pb2_grpc.NumbersRegistryServicer):
    """The registry over :class:`NumbersRegistry`: bad values answer INVALID_ARGUMENT (naming the
    field), unknown ids NOT_FOUND, a registered extension ALREADY_EXISTS, a moved-on version or a
    contact's number FAILED_PRECONDITION."""

    def __init__(self, registry: NumbersRegistry) -> None:
        self._registry = registry

    async def ListNumbers(
        self, request: numbers_pb2.ListNumbersRequest, context: grpc.aio.ServicerContext
    ) -> numbers_pb2.ListNumbersResponse:
        if request.kind and request.kind not in KIND_NAMES:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"kind: unknown value {request.kind}")
        query = NumberQuery(
            kind=KIND_NAMES.get(request.kind),
            employee_id=request.employee_id or None,
            contact_id=request.contact_id or None,
            number=request.number or None,
            limit=min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
            cursor=request.page_token or None,
        )
        try:
            page = await self._registry.list_numbers(query)
        except InvalidQuery as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except InvalidCursor as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"page_token: {exc}")
        return numbers_pb2.ListNumbersResponse(
            numbers=[number_message(row) for row in page.items],
            next_page_token=page.next_cursor or "",
            total_size=page.total,
        )

    async def GetNumber(
        self, request: numbers_pb2.GetNumberRequest, context: grpc.aio.ServicerContext
    ) -> numbers_pb2.RegisteredNumber:
        if not request.id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "id: required")
        try:
            row = await self._registry.get_number(request.id)
        except NumberNotFound as exc:
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        return number_message(row)

    async def CreateExtension(
        self, request: numbers_pb2.CreateExtensionRequest, context: grpc.aio.ServicerContext
    ) -> numbers_pb2.RegisteredNumber:
        extension = request.extension
        data = ExtensionInput(
            number=extension.number, label=extension.label or None, employee_id=extension.employee_id or None
        )
        try:
            row = await self._registry.create_extension(data)
        except InvalidField as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"extension.{exc}")
        except DuplicateNumber as exc:
            await _abort(context, grpc.StatusCode.ALREADY_EXISTS, str(exc))
        return number_message(row)

    async def UpdateExtension(
        self, request: numbers_pb2.UpdateExtensionRequest, context: grpc.aio.ServicerContext
    ) -> numbers_pb2.RegisteredNumber:
        if not request.id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "id: required")
        paths = list(request.update_mask.paths) or list(EXTENSION_PATHS)
        unknown = [path for path in paths if path not in EXTENSION_PATHS]
        if unknown:
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"update_mask: unknown path {unknown[0]!r}"
            )
        extension = request.extension
        changes = ExtensionChanges(
            number=extension.number,
            label=extension.label or None,
            employee_id=extension.employee_id or None,
            fields=frozenset(paths),
            expected_version=request.expected_version or None,
        )
        try:
            row = await self._registry.update_extension(request.id, changes)
        except InvalidField as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"extension.{exc}")
        except NumberNotFound as exc:
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        except DuplicateNumber as exc:
            await _abort(context, grpc.StatusCode.ALREADY_EXISTS, str(exc))
        except NumberConflict as exc:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return number_message(row)

    async def DeleteExtension(
        self, request: numbers_pb2.DeleteExtensionRequest, context: grpc.aio.ServicerContext
    ) -> Empty:
        if not request.id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "id: required")
        try:
            await self._registry.delete_extension(
                request.id, expected_version=request.expected_version or None
            )
        except NumberNotFound as exc:
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        except NumberConflict as exc:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return Empty()


def add_to_server(server: grpc.aio.Server, registry: NumbersRegistry) -> None:
    numbers_pb2_grpc.add_NumbersRegistryServicer_to_server(NumbersRegistryServicer(registry), server)
