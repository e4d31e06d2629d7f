"""REST API of the numbers registry: ``GET /numbers`` (extensions and contacts' numbers in one list),
``POST /numbers`` (register an extension), ``GET`` / ``PATCH`` / ``DELETE /numbers/{id}``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from telecrm_calls.access import admin_only
from telecrm_calls.api import invalid_query_parameter
from telecrm_calls.numbers import (
    CONTACT,
    MAX_LABEL_LENGTH,
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
from telecrm_calls.schemas import ErrorOut
from telecrm_common.auth import Access, Principal

NumberKindName = Literal["internal", "contact"]
PREFIX = "/numbers"


class NumberOut(BaseModel):
    """A number of the registry: one of our extensions, or a contact's phone number (from crm)."""

    id: str
    kind: NumberKindName = Field(
        description="`internal`: an extension, edited here; `contact`: a contact's number, edited in crm"
    )
    number: str = Field(description='As entered: "101", "+7 (499) 369-04-39"')
    e164: str | None = Field(description="E.164 form of a contact's number; null for extensions")
    label: str | None
    employee_id: str | None = Field(description="Extensions: the responsible employee")
    employee_name: str | None = Field(description="Their name, as crm gave it")
    team_id: str | None
    team_name: str | None
    employee_active: bool | None = Field(
        description="False when crm deactivated or deleted the employee; null without an employee known"
    )
    contact_id: str | None = Field(description="Contacts' numbers: whose number it is")
    contact_name: str | None
    company_name: str | None = Field(description="The contact's company, for a person")
    phone_kind: str | None = Field(description="Contacts' numbers: mobile, work, home, fax, other")
    version: int = Field(description="Increases with every change; pass it back to edit safely")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: NumberRow) -> NumberOut:
        number = row.number
        return cls(
            id=number.id,
            kind=CONTACT if number.kind == CONTACT else "internal",
            number=number.number,
            e164=number.e164,
            label=number.label,
            employee_id=number.employee_id,
            employee_name=row.employee_name,
            team_id=row.team_id,
            team_name=row.team_name,
            employee_active=row.employee_active,
            contact_id=number.contact_id,
            contact_name=row.contact_name,
            company_name=row.company_name,
            phone_kind=number.phone_kind,
            version=number.version,
            created_at=number.created_at,
            updated_at=number.updated_at,
        )


class NumberPageOut(BaseModel):
    items: list[NumberOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")
    total: int = Field(description="Numbers matching the filters, on all pages")


class ExtensionIn(BaseModel):
    """A new extension."""

    model_config = ConfigDict(extra="forbid")

    number: str = Field(max_length=64, description="Digits only, 1 to 15 of them")
    label: str | None = Field(
        default=None, max_length=MAX_LABEL_LENGTH, description='"Reception", "Sales desk"...'
    )
    employee_id: str | None = Field(
        default=None, max_length=128, description="The responsible employee: one crm knows, not deleted"
    )


class ExtensionPatch(BaseModel):
    """The fields to change; those left out stay as they are, null clears a label or an employee."""

    model_config = ConfigDict(extra="forbid")

    number: str | None = Field(default=None, max_length=64)
    label: str | None = Field(default=None, max_length=MAX_LABEL_LENGTH)
    employee_id: str | None = Field(default=None, max_length=128)
    version: int | None = Field(
        default=None, ge=1, description="The version you edited: 409 when the number changed since"
    )


def _invalid_body(exc: InvalidField, body: BaseModel) -> RequestValidationError:
    return RequestValidationError(
        [
            {
                "type": "value_error",
                "loc": ("body", exc.field),
                "msg": exc.message,
                "input": getattr(body, exc.field, None),
            }
        ]
    )


def _not_found(exc: NumberNotFound) -> HTTPException:
    return HTTPException(status_code=404, detail=str(exc))


def _conflict(exc: NumberConflict) -> HTTPException:
    return HTTPException(status_code=409, detail=str(exc))


_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No number with this id"}
}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorOut,
        "description": "A contact's number (edited in crm), or `version` is not the current one",
    }
}


def numbers_router(registry: NumbersRegistry, access: Access) -> APIRouter:
    """Every user reads the registry (it is the company's phone book); admins change extensions."""
    router = APIRouter(prefix=PREFIX, tags=["numbers"])
    reader = Depends(access.current)
    forbidden: dict[int | str, dict[str, Any]] = {
        403: {"model": ErrorOut, "description": "Only administrators change extensions"}
    }

    @router.get(
        "",
        summary="List the numbers registry",
        description="Our extensions and the contacts' numbers in one list, filtered by kind, employee, "
        "contact and number, ordered by kind, then number, one page at a time: pass `next_cursor` back "
        "as `cursor`.",
        responses={400: {"model": ErrorOut, "description": "The cursor is not one this service issued"}},
    )
    async def list_numbers(
        kind: Annotated[
            NumberKindName | None, Query(description="Only extensions, or only contacts'")
        ] = None,
        employee_id: Annotated[
            str | None, Query(max_length=128, description="Extensions of this employee")
        ] = None,
        contact_id: Annotated[
            str | None, Query(max_length=128, description="Numbers of this contact")
        ] = None,
        number: Annotated[
            str | None,
            Query(
                max_length=64,
                description="Digits matched anywhere in the number (as entered or E.164); punctuation "
                "is ignored",
            ),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size")] = DEFAULT_PAGE_SIZE,
        cursor: Annotated[
            str | None, Query(max_length=1024, description="`next_cursor` of the previous page")
        ] = None,
        _user: Principal = reader,
    ) -> NumberPageOut:
        query = NumberQuery(
            kind=kind,
            employee_id=employee_id,
            contact_id=contact_id,
            number=number,
            limit=limit,
            cursor=cursor or None,
        )
        try:
            page = await registry.list_numbers(query)
        except InvalidQuery as exc:
            raise invalid_query_parameter(exc.field, exc.message, getattr(query, exc.field, None)) from None
        except InvalidCursor as exc:
            raise HTTPException(status_code=400, detail=f"cursor: {exc}") from None
        return NumberPageOut(
            items=[NumberOut.from_row(row) for row in page.items],
            next_cursor=page.next_cursor,
            total=page.total,
        )

    @router.post(
        "",
        status_code=201,
        summary="Register an extension",
        description="Contacts' numbers come from crm and cannot be added here.",
        responses={
            **forbidden,
            409: {"model": ErrorOut, "description": "The extension is registered already"},
        },
    )
    async def create_extension(body: ExtensionIn, response: Response, user: Principal = reader) -> NumberOut:
        admin_only(user, "register extensions")
        try:
            row = await registry.create_extension(
                ExtensionInput(number=body.number, label=body.label, employee_id=body.employee_id)
            )
        except InvalidField as exc:
            raise _invalid_body(exc, body) from None
        except NumberConflict as exc:
            raise _conflict(exc) from None
        response.headers["Location"] = f"{PREFIX}/{row.number.id}"
        return NumberOut.from_row(row)

    @router.get("/{number_id}", summary="One number", responses=_NOT_FOUND)
    async def get_number(number_id: str, _user: Principal = reader) -> NumberOut:
        try:
            return NumberOut.from_row(await registry.get_number(number_id))
        except NumberNotFound as exc:
            raise _not_found(exc) from None

    @router.patch(
        "/{number_id}",
        summary="Edit an extension",
        description="Change the number, label or employee of an extension; send `version` to make sure "
        "nobody changed it since you read it. Contacts' numbers are edited in crm (409).",
        responses={**forbidden, **_NOT_FOUND, **_CONFLICT},
    )
    async def update_extension(number_id: str, body: ExtensionPatch, user: Principal = reader) -> NumberOut:
        admin_only(user, "edit extensions")
        changes = ExtensionChanges(
            number=body.number,
            label=body.label,
            employee_id=body.employee_id,
            fields=frozenset(body.model_fields_set - {"version"}),
            expected_version=body.version,
        )
        try:
            row = await registry.update_extension(number_id, changes)
        except InvalidField as exc:
            raise _invalid_body(exc, body) from None
        except NumberNotFound as exc:
            raise _not_found(exc) from None
        except NumberConflict as exc:
            raise _conflict(exc) from None
        return NumberOut.from_row(row)

    @router.delete(
        "/{number_id}",
        status_code=204,
        summary="Delete an extension",
        description="Contacts' numbers are deleted in crm (409).",
        responses={**forbidden, **_NOT_FOUND, **_CONFLICT},
    )
    async def delete_extension(
        number_id: str,
        version: Annotated[
            int | None, Query(ge=1, description="The version you saw: 409 when the number changed since")
        ] = None,
        user: Principal = reader,
    ) -> Response:
        admin_only(user, "delete extensions")
        try:
            await registry.delete_extension(number_id, expected_version=version)
        except NumberNotFound as exc:
            raise _not_found(exc) from None
        except NumberConflict as exc:
            raise _conflict(exc) from None
        return Response(status_code=204)

    return router
