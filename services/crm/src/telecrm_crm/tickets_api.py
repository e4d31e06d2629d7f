"""REST API of service tickets: the register (filters, groupings, CSV export), the appointments
calendar, the ticket card with its workflow, notes timeline, evolution report and operation log, and the
admin-managed series and ticket types.

Rights are checked before anything is read (403, nothing changed): ``ticket.create`` to open a ticket,
``ticket.modify`` to edit it, move it along the workflow or add notes, ``ticket.delete`` to delete it;
series and types are managed by admins. A ticket the user may not see is a 404. A status change the
workflow forbids answers 409 with ``allowed`` (the statuses the ticket may go to) and, when allocation
lacks them, ``missing`` (the fields to set first). ``POST /tickets`` takes an ``Idempotency-Key``: the
same key again returns the ticket made the first time.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, NoReturn

from fastapi import APIRouter, Depends, File, Form, Header, HTTPException, Query, Response, UploadFile
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from telecrm_common.auth import Principal
from telecrm_crm import paging
from telecrm_crm.access import Access
from telecrm_crm.attachments import AttachmentError, download, upload_chunks
from telecrm_crm.models import Attachment
from telecrm_crm.projects_api import (
    FORBIDDEN,
    NOT_FOUND,
    STALE,
    ErrorOut,
    attachment_error,
    invalid,
)
from telecrm_crm.schemas import AttachmentOut, HistoryEntryOut
from telecrm_crm.tickets import (
    MAX_DESCRIPTION_LENGTH,
    MAX_EMAIL_LENGTH,
    MAX_ID_LENGTH,
    MAX_KEY_LENGTH,
    MAX_NAME_LENGTH,
    MAX_NOTE_LENGTH,
    MAX_PRODUCT_LENGTH,
    AlreadyExists,
    Evolution,
    InvalidField,
    NotAllowed,
    NoteFile,
    SeriesView,
    StaleVersion,
    TicketChanges,
    TicketClosed,
    TicketError,
    TicketFilters,
    TicketInput,
    TicketNotFound,
    TicketService,
    TicketView,
    TransitionNotAllowed,
)
from telecrm_crm.tickets_models import TRANSITIONS, TicketNote, TicketType

StatusName = Literal["taken", "allocated", "confirmed", "finalized", "cancelled"]
PriorityName = Literal["low", "medium", "high"]
GroupField = Literal[
    "series",
    "status",
    "priority",
    "type_code",
    "client_id",
    "contact_person_id",
    "taken_by_id",
    "checker_id",
    "team_id",
    "product",
    "ticket_date",
    "scheduled_start",
    "scheduled_end",
]
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
# Service field -> the query parameter a client sends, so that a 422 names what the client wrote.
_QUERY_NAMES = {"statuses": "status", "priorities": "priority", "type_codes": "type_code"}


def as_utc(value: datetime | None) -> datetime | None:
    """Times without an offset are taken as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


# --- schemas -------------------------------------------------------------------------------------------


class TicketIn(BaseModel):
    """A new ticket, taken from the customer (status ``taken``); numbered in its series."""

    model_config = ConfigDict(extra="forbid")

    series: str | None = Field(
        default=None, max_length=16, description="The series (booklet); default if left out"
    )
    ticket_date: date | None = Field(default=None, description="The document date; today (UTC) if left out")
    client_id: Id = Field(description="The customer (a contact)")
    contact_person_id: Id | None = Field(default=None, description="The customer's person who reported it")
    type_code: str | None = Field(default=None, max_length=32, description="One of `GET /ticket-types`")
    product: str = Field(
        default="", max_length=MAX_PRODUCT_LENGTH, description="The object: product or system"
    )
    description: str = Field(default="", max_length=MAX_DESCRIPTION_LENGTH)
    priority: PriorityName = "medium"
    taken_by_id: Id | None = Field(default=None, description="Who took it; the user's employee if left out")
    checker_id: Id | None = Field(default=None, description="Employee responsible for checking the work")
    team_id: Id | None = Field(default=None, description="The team the work is allocated to")
    scheduled_start: datetime | None = Field(default=None, description="Planned start (UTC if no offset)")
    scheduled_end: datetime | None = Field(default=None, description="Planned end, not before the start")
    notify_customer: bool = Field(
        default=False, description="E-mail the customer on allocation and finalization"
    )
    customer_email: str | None = Field(default=None, max_length=MAX_EMAIL_LENGTH)


class TicketPatch(BaseModel):
    """Fields to change on an open ticket; those left out stay, null clears an optional one. The status
    changes through ``POST /tickets/{id}/status`` only."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="The version you edited: 409 when the ticket changed since")
    ticket_date: date | None = None
    client_id: Id | None = None
    contact_person_id: Id | None = None
    type_code: str | None = Field(default=None, max_length=32)
    product: str | None = Field(default=None, max_length=MAX_PRODUCT_LENGTH)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_LENGTH)
    priority: PriorityName | None = None
    taken_by_id: Id | None = None
    checker_id: Id | None = None
    team_id: Id | None = None
    scheduled_start: datetime | None = None
    scheduled_end: datetime | None = None
    notify_customer: bool | None = None
    customer_email: str | None = Field(default=None, max_length=MAX_EMAIL_LENGTH)


class StatusIn(BaseModel):
    """A move along the workflow, optionally with the schedule (to allocate in one step) and a note."""

    model_config = ConfigDict(extra="forbid")

    status: StatusName
    version: int | None = Field(
        default=None, ge=1, description="When given: 409 unless it is the current one"
    )
    scheduled_start: datetime | None = None
    scheduled_end: datetime | None = None
    team_id: Id | None = None
    note: str | None = Field(default=None, max_length=MAX_NOTE_LENGTH, description="Added to the notes")


class TicketOut(BaseModel):
    id: str
    code: str = Field(description='Series and number as people say it: "SRV-42"')
    series: str
    number: int
    ticket_date: date
    client_id: str
    contact_person_id: str | None
    type_code: str | None
    type_name: str | None
    product: str
    description: str
    priority: PriorityName
    taken_by_id: str | None
    checker_id: str | None
    team_id: str | None
    scheduled_start: datetime | None
    scheduled_end: datetime | None
    status: StatusName
    allowed_next: list[StatusName] = Field(description="The statuses the workflow lets the ticket move to")
    status_changed_at: datetime
    notify_customer: bool
    customer_email: str | None
    allocation_email_requested_at: datetime | None = Field(
        description="When the allocation e-mail to the customer was handed to messaging"
    )
    finalization_email_requested_at: datetime | None
    version: int = Field(description="Increases with every change; pass it back to edit safely")
    created_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: TicketView) -> TicketOut:
        ticket = view.ticket
        return cls.model_validate(
            {
                **{name: getattr(ticket, name) for name in _TICKET_COLUMNS},
                "code": view.code,
                "type_name": view.type_name,
                "allowed_next": list(TRANSITIONS[ticket.status]),
            }
        )


_TICKET_COLUMNS = (
    "id",
    "series",
    "number",
    "ticket_date",
    "client_id",
    "contact_person_id",
    "type_code",
    "product",
    "description",
    "priority",
    "taken_by_id",
    "checker_id",
    "team_id",
    "scheduled_start",
    "scheduled_end",
    "status",
    "status_changed_at",
    "notify_customer",
    "customer_email",
    "allocation_email_requested_at",
    "finalization_email_requested_at",
    "version",
    "created_by",
    "created_at",
    "updated_at",
)


class TicketPageOut(BaseModel):
    items: list[TicketOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")
    total: int | None = Field(description="Tickets matching the filters (with `include_total=true`)")


class GroupOut(BaseModel):
    key: str | None = Field(description="The value (a day as YYYY-MM-DD for dates); null: not set")
    count: int


class TicketGroupsOut(BaseModel):
    group_by: GroupField
    groups: list[GroupOut] = Field(description="Largest first")
    total: int = Field(description="Tickets matching the filters")
    truncated: bool = Field(description="True when there were more groups than listed")


class CalendarOut(BaseModel):
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    items: list[TicketOut] = Field(description="Scheduled tickets (not cancelled) by start time")
    truncated: bool


class PeriodOut(BaseModel):
    status: StatusName
    entered_at: datetime
    entered_by: str = Field(description="User id, or system:<service>")
    entered_by_employee_id: str | None
    left_at: datetime | None = Field(description="Null: the ticket is still in this status")
    seconds: float | None = Field(description="Time spent in it (to now if current); null for a final status")


class EvolutionOut(BaseModel):
    ticket_id: str
    code: str
    status: StatusName
    as_of: datetime
    periods: list[PeriodOut]
    seconds_by_status: dict[str, float]
    open_seconds: float = Field(description="From taking the ticket to closing it (or to now)")
    notes: int = Field(description="Lines in the notes timeline")

    @classmethod
    def of(cls, evolution: Evolution) -> EvolutionOut:
        ticket = evolution.view.ticket
        return cls.model_validate(
            {
                "ticket_id": ticket.id,
                "code": evolution.view.code,
                "status": ticket.status,
                "as_of": evolution.as_of,
                "periods": [asdict(period) for period in evolution.periods],
                "seconds_by_status": evolution.seconds_by_status,
                "open_seconds": evolution.open_seconds,
                "notes": evolution.notes,
            }
        )


class NoteOut(BaseModel):
    id: str
    author_subject: str
    author_employee_id: str | None
    author_name: str
    text: str
    attachment_id: str | None
    created_at: datetime

    @classmethod
    def of(cls, note: TicketNote) -> NoteOut:
        return cls(
            id=note.id,
            author_subject=note.author_subject,
            author_employee_id=note.author_employee_id,
            author_name=note.author_name,
            text=note.text,
            attachment_id=note.attachment_id,
            created_at=note.created_at,
        )


class NoteWithFileOut(NoteOut):
    attachment: AttachmentOut | None


class SeriesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=16, description='"SRV", "2026-A"...')
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    next_number: int = Field(
        default=1, ge=1, description="The first number to give (continue a paper booklet)"
    )
    is_default: bool = Field(default=False, description="Tickets without a series go here; the first one is")


class SeriesPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)
    active: bool | None = None
    is_default: bool | None = None
    next_number: int | None = Field(default=None, ge=1, description="Only forward: used numbers stay used")


class SeriesOut(BaseModel):
    code: str
    name: str
    next_number: int
    is_default: bool
    active: bool

    @classmethod
    def of(cls, view: SeriesView) -> SeriesOut:
        series = view.series
        return cls(
            code=series.code,
            name=series.name,
            next_number=view.next_number,
            is_default=series.is_default,
            active=series.active,
        )


class TypeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=32, description='"repair", "installation"...')
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)


class TypePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)
    active: bool | None = None


class TypeOut(BaseModel):
    code: str
    name: str
    active: bool

    @classmethod
    def of(cls, kind: TicketType) -> TypeOut:
        return cls(code=kind.code, name=kind.name, active=kind.active)


# --- filters -------------------------------------------------------------------------------------------


def ticket_filters(
    series: Annotated[list[str] | None, Query(max_length=16, description="Repeat for several")] = None,
    number: Annotated[int | None, Query(ge=1, description="The number within the series")] = None,
    date_from: Annotated[date | None, Query(description="Ticket date on or after")] = None,
    date_to: Annotated[date | None, Query(description="Ticket date on or before")] = None,
    client_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH)] = None,
    contact_person_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH)] = None,
    type_code: Annotated[list[str] | None, Query(max_length=32, description="Repeat for several")] = None,
    product: Annotated[str | None, Query(max_length=MAX_PRODUCT_LENGTH, description="A part of it")] = None,
    priority: Annotated[list[PriorityName] | None, Query()] = None,
    taken_by_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH)] = None,
    checker_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH)] = None,
    team_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH)] = None,
    status: Annotated[list[StatusName] | None, Query(description="Repeat for several")] = None,
    scheduled_start_from: Annotated[datetime | None, Query(description="Scheduled start at or after")] = None,
    scheduled_start_to: Annotated[datetime | None, Query(description="Scheduled start before")] = None,
    scheduled_end_from: Annotated[datetime | None, Query()] = None,
    scheduled_end_to: Annotated[datetime | None, Query()] = None,
) -> TicketFilters:
    """The filters shared by the register, its groupings and the CSV export."""
    return TicketFilters(
        series=tuple(series or ()),
        number=number,
        date_from=date_from,
        date_to=date_to,
        client_id=client_id,
        contact_person_id=contact_person_id,
        type_codes=tuple(type_code or ()),
        product=product,
        priorities=tuple(priority or ()),
        taken_by_id=taken_by_id,
        checker_id=checker_id,
        team_id=team_id,
        statuses=tuple(status or ()),
        scheduled_start_from=as_utc(scheduled_start_from),
        scheduled_start_to=as_utc(scheduled_start_to),
        scheduled_end_from=as_utc(scheduled_end_from),
        scheduled_end_to=as_utc(scheduled_end_to),
    )


# --- CSV -----------------------------------------------------------------------------------------------

CSV_HEADER = (
    "code",
    "series",
    "number",
    "ticket_date",
    "status",
    "priority",
    "type_code",
    "type_name",
    "client_id",
    "contact_person_id",
    "product",
    "taken_by_id",
    "checker_id",
    "team_id",
    "scheduled_start",
    "scheduled_end",
    "notify_customer",
    "customer_email",
    "created_by",
    "created_at",
    "updated_at",
    "description",
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: str | None) -> str:
    """A cell a spreadsheet would run as a formula gets a leading quote (OWASP "CSV injection")."""
    if not value:
        return ""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def csv_row(view: TicketView) -> list[str]:
    ticket = view.ticket
    return [
        csv_text(view.code),
        csv_text(ticket.series),
        str(ticket.number),
        ticket.ticket_date.isoformat(),
        ticket.status,
        ticket.priority,
        csv_text(ticket.type_code),
        csv_text(view.type_name),
        csv_text(ticket.client_id),
        csv_text(ticket.contact_person_id),
        csv_text(ticket.product),
        csv_text(ticket.taken_by_id),
        csv_text(ticket.checker_id),
        csv_text(ticket.team_id),
        _iso(ticket.scheduled_start),
        _iso(ticket.scheduled_end),
        "true" if ticket.notify_customer else "false",
        csv_text(ticket.customer_email),
        csv_text(ticket.created_by),
        _iso(ticket.created_at),
        _iso(ticket.updated_at),
        csv_text(ticket.description),
    ]


def csv_encode(rows: Iterable[Iterable[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


# --- errors --------------------------------------------------------------------------------------------

TRANSITION: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorOut,
        "description": "The workflow forbids it: `detail.allowed` lists the next statuses, `detail.missing` "
        "the fields allocation needs; or `version` is stale (`detail.version`); or the ticket is closed",
    }
}


def _fail(exc: TicketError | AttachmentError | paging.InvalidCursor, location: str = "body") -> NoReturn:
    if isinstance(exc, TicketNotFound):
        raise HTTPException(status_code=404, detail=str(exc)) from None
    if isinstance(exc, InvalidField):
        raise invalid(location, _QUERY_NAMES.get(exc.field, exc.field), exc.message) from None
    if isinstance(exc, TransitionNotAllowed):
        detail = {
            "message": str(exc),
            "status": exc.current,
            "requested": exc.target,
            "allowed": exc.allowed,
            "missing": exc.missing,
        }
        raise HTTPException(status_code=409, detail=detail) from None
    if isinstance(exc, StaleVersion):
        raise HTTPException(status_code=409, detail={"message": str(exc), "version": exc.current}) from None
    if isinstance(exc, TicketClosed):
        raise HTTPException(status_code=409, detail={"message": str(exc), "status": exc.status}) from None
    if isinstance(exc, AlreadyExists):
        raise HTTPException(status_code=409, detail=str(exc)) from None
    if isinstance(exc, NotAllowed):
        raise HTTPException(status_code=403, detail=str(exc)) from None
    if isinstance(exc, AttachmentError):
        raise attachment_error(exc) from None
    if isinstance(exc, paging.InvalidCursor):
        raise HTTPException(status_code=400, detail=f"cursor: {exc}") from None
    raise HTTPException(status_code=400, detail=str(exc)) from None


# --- the routers ---------------------------------------------------------------------------------------


def tickets_router(service: TicketService, access: Access) -> APIRouter:
    router = APIRouter(tags=["tickets"])
    # Dependencies as defaults: annotations are strings here (resolved in the module's globals, where
    # this function's ``access`` is not).
    signed_in = Depends(access.current)
    creator = Depends(access.require("ticket.create"))
    editor = Depends(access.require("ticket.modify"))
    deleter = Depends(access.require("ticket.delete"))

    # --- series and types ------------------------------------------------------------------------------

    @router.get("/ticket-series", summary="Ticket series (booklets) with their next number")
    async def list_series(user: Principal = signed_in) -> list[SeriesOut]:
        return [SeriesOut.of(view) for view in await service.list_series()]

    @router.post(
        "/ticket-series",
        status_code=201,
        summary="Add a series (admins)",
        responses={**FORBIDDEN, 409: {"model": ErrorOut, "description": "The code is taken"}},
    )
    async def create_series(body: SeriesIn, user: Principal = signed_in) -> SeriesOut:
        try:
            view = await service.create_series(
                user, body.code, body.name, next_number=body.next_number, is_default=body.is_default
            )
        except TicketError as exc:
            _fail(exc)
        return SeriesOut.of(view)

    @router.patch(
        "/ticket-series/{code}",
        summary="Rename, (de)activate, make default or move the numbering on (admins)",
        responses={**FORBIDDEN, **NOT_FOUND},
    )
    async def update_series(code: str, body: SeriesPatch, user: Principal = signed_in) -> SeriesOut:
        values = {name: getattr(body, name) for name in body.model_fields_set}
        for name in ("name", "active", "is_default", "next_number"):
            if name in values and values[name] is None:
                raise invalid("body", name, "cannot be null")
        try:
            return SeriesOut.of(await service.update_series(user, code, values))
        except TicketError as exc:
            _fail(exc)

    @router.get("/ticket-types", summary="Ticket types")
    async def list_types(
        user: Principal = signed_in,
        include_inactive: Annotated[bool, Query(description="Also those no longer offered")] = False,
    ) -> list[TypeOut]:
        return [TypeOut.of(kind) for kind in await service.list_types(include_inactive=include_inactive)]

    @router.post(
        "/ticket-types",
        status_code=201,
        summary="Add a ticket type (admins)",
        responses={**FORBIDDEN, 409: {"model": ErrorOut, "description": "The code is taken"}},
    )
    async def create_type(body: TypeIn, user: Principal = signed_in) -> TypeOut:
        try:
            return TypeOut.of(await service.create_type(user, body.code, body.name))
        except TicketError as exc:
            _fail(exc)

    @router.patch(
        "/ticket-types/{code}",
        summary="Rename or (de)activate a ticket type (admins)",
        responses={**FORBIDDEN, **NOT_FOUND},
    )
    async def update_type(code: str, body: TypePatch, user: Principal = signed_in) -> TypeOut:
        try:
            return TypeOut.of(await service.update_type(user, code, name=body.name, active=body.active))
        except TicketError as exc:
            _fail(exc)

    # --- the register ----------------------------------------------------------------------------------

    @router.post(
        "/tickets",
        status_code=201,
        summary="Take a ticket",
        description="Opens a ticket (status `taken`) with the next number of its series.",
        responses={**FORBIDDEN},
    )
    async def create_ticket(
        body: TicketIn,
        user: Principal = creator,
        idempotency_key: Annotated[
            str | None,
            Header(max_length=MAX_KEY_LENGTH, description="The same key again returns the first ticket"),
        ] = None,
    ) -> TicketOut:
        data = TicketInput(
            **{
                **body.model_dump(),
                "scheduled_start": as_utc(body.scheduled_start),
                "scheduled_end": as_utc(body.scheduled_end),
            },
            request_key=idempotency_key or None,
        )
        try:
            view = await service.create(user, data)
        except TicketError as exc:
            _fail(exc)
        return TicketOut.of(view)

    @router.get(
        "/tickets",
        summary="The register of tickets, or its counts by a field",
        description="The tickets the user sees, filtered by any of the fields, newest first, one page at a "
        "time (pass `next_cursor` back as `cursor`). With `group_by`, the number of tickets for each value "
        "of that field instead (days for dates), largest first.",
        responses={400: {"model": ErrorOut, "description": "The cursor is not one this service issued"}},
    )
    async def list_tickets(
        filters: Annotated[TicketFilters, Depends(ticket_filters)],
        user: Principal = signed_in,
        group_by: Annotated[GroupField | None, Query(description="Count by this field")] = None,
        limit: Annotated[int, Query(ge=1, le=paging.MAX_LIMIT)] = paging.DEFAULT_LIMIT,
        cursor: Annotated[str | None, Query(max_length=1024)] = None,
        include_total: Annotated[bool, Query(description="Count all matching tickets (`total`)")] = False,
    ) -> TicketPageOut | TicketGroupsOut:
        try:
            if group_by is not None:
                grouped = await service.group(user, filters, group_by)
                return TicketGroupsOut(
                    group_by=group_by,
                    groups=[GroupOut(key=g.key, count=g.count) for g in grouped.groups],
                    total=grouped.total,
                    truncated=grouped.truncated,
                )
            page = await service.list_tickets(
                user, filters, limit=limit, cursor=cursor or None, include_total=include_total
            )
        except (TicketError, paging.InvalidCursor) as exc:
            _fail(exc, "query")
        return TicketPageOut(
            items=[TicketOut.of(view) for view in page.items], next_cursor=page.next_cursor, total=page.total
        )

    # Declared before /tickets/{ticket_id}, which would otherwise take these for ids.
    @router.get(
        "/tickets/export.csv",
        summary="Export tickets as CSV",
        description="Every ticket of the register's filters (no paging), newest first, streamed as UTF-8 "
        "CSV with a header row. Text cells a spreadsheet would run as a formula get a leading `'`.",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/csv": {}}, "description": "One row per ticket"}},
    )
    async def export_tickets(
        filters: Annotated[TicketFilters, Depends(ticket_filters)], user: Principal = signed_in
    ) -> StreamingResponse:
        try:
            chunks = service.export(user, filters)
        except TicketError as exc:
            _fail(exc, "query")

        async def body() -> AsyncIterator[bytes]:
            yield csv_encode([CSV_HEADER])
            async for views in chunks:
                yield csv_encode(csv_row(view) for view in views)

        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return StreamingResponse(
            body(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="tickets-{stamp}.csv"'},
        )

    @router.get(
        "/tickets/calendar",
        summary="Appointments: scheduled tickets in a period",
        description="Tickets (not cancelled) whose scheduled work overlaps [`from`, `to`), by start; for a "
        "team, or for an employee (who took or checks them). At most 366 days.",
    )
    async def calendar(
        start: Annotated[datetime, Query(alias="from", description="Start (UTC if no offset)")],
        end: Annotated[datetime, Query(alias="to", description="End, exclusive")],
        user: Principal = signed_in,
        team_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH)] = None,
        employee_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH)] = None,
    ) -> CalendarOut:
        start_at, end_at = as_utc(start), as_utc(end)
        assert start_at is not None
        assert end_at is not None
        try:
            found = await service.calendar(user, start_at, end_at, team_id=team_id, employee_id=employee_id)
        except TicketError as exc:
            _fail(exc, "query")
        return CalendarOut(
            start=start_at,
            end=end_at,
            items=[TicketOut.of(view) for view in found.items],
            truncated=found.truncated,
        )

    # --- one ticket ------------------------------------------------------------------------------------

    @router.get("/tickets/{ticket_id}", summary="A ticket", responses={**NOT_FOUND})
    async def get_ticket(ticket_id: str, user: Principal = signed_in) -> TicketOut:
        try:
            return TicketOut.of(await service.get(user, ticket_id))
        except TicketError as exc:
            _fail(exc)

    @router.patch(
        "/tickets/{ticket_id}",
        summary="Change an open ticket's fields",
        responses={**FORBIDDEN, **NOT_FOUND, **TRANSITION},
    )
    async def update_ticket(ticket_id: str, body: TicketPatch, user: Principal = editor) -> TicketOut:
        values = {name: getattr(body, name) for name in body.model_fields_set if name != "version"}
        for name in ("client_id", "priority", "ticket_date", "notify_customer"):
            if name in values and values[name] is None:
                raise invalid("body", name, "cannot be null")
        for name in ("scheduled_start", "scheduled_end"):
            if name in values:
                values[name] = as_utc(values[name])
        try:
            view = await service.update(user, ticket_id, TicketChanges(version=body.version, values=values))
        except TicketError as exc:
            _fail(exc)
        return TicketOut.of(view)

    @router.post(
        "/tickets/{ticket_id}/status",
        summary="Move a ticket along the workflow",
        description="taken -> allocated (needs scheduled start, end and team: send them here or set them "
        "before) -> confirmed -> finalized; cancelled from any open status. Allocation and finalization "
        "e-mail the customer when the ticket asks for it.",
        responses={**FORBIDDEN, **NOT_FOUND, **TRANSITION},
    )
    async def change_status(ticket_id: str, body: StatusIn, user: Principal = editor) -> TicketOut:
        schedule: dict[str, Any] = {
            name: as_utc(value) if isinstance(value, datetime) else value
            for name in ("scheduled_start", "scheduled_end", "team_id")
            if name in body.model_fields_set and (value := getattr(body, name)) is not None
        }
        try:
            view = await service.change_status(
                user, ticket_id, body.status, version=body.version, schedule=schedule, note=body.note
            )
        except TicketError as exc:
            _fail(exc)
        return TicketOut.of(view)

    @router.delete(
        "/tickets/{ticket_id}",
        status_code=204,
        summary="Delete a ticket with its notes and files",
        responses={**FORBIDDEN, **NOT_FOUND, **STALE},
    )
    async def delete_ticket(
        ticket_id: str,
        user: Principal = deleter,
        version: Annotated[
            int | None, Query(ge=1, description="409 unless this is the current version")
        ] = None,
    ) -> Response:
        try:
            await service.delete(user, ticket_id, version=version)
        except TicketError as exc:
            _fail(exc)
        return Response(status_code=204)

    @router.get(
        "/tickets/{ticket_id}/evolution",
        summary="Evolution report: each status with when, who and time spent",
        responses={**NOT_FOUND},
    )
    async def evolution(ticket_id: str, user: Principal = signed_in) -> EvolutionOut:
        try:
            return EvolutionOut.of(await service.evolution(user, ticket_id))
        except TicketError as exc:
            _fail(exc)

    @router.get(
        "/tickets/{ticket_id}/history", summary="The operation log of a ticket", responses={**NOT_FOUND}
    )
    async def history(ticket_id: str, user: Principal = signed_in) -> list[HistoryEntryOut]:
        try:
            entries = await service.history(user, ticket_id)
        except TicketError as exc:
            _fail(exc)
        return [HistoryEntryOut.of(entry) for entry in entries]

    # --- notes and files -------------------------------------------------------------------------------

    @router.get(
        "/tickets/{ticket_id}/notes", summary="The notes timeline, oldest first", responses={**NOT_FOUND}
    )
    async def list_notes(ticket_id: str, user: Principal = signed_in) -> list[NoteOut]:
        try:
            notes = await service.notes(user, ticket_id)
        except TicketError as exc:
            _fail(exc)
        return [NoteOut.of(note) for note in notes]

    @router.post(
        "/tickets/{ticket_id}/notes",
        status_code=201,
        summary="Add a note (text, a file, or both)",
        description="Multipart form: `text` and an optional `file` (size limit 413, type checked 415).",
        responses={**FORBIDDEN, **NOT_FOUND, 413: {"model": ErrorOut}, 415: {"model": ErrorOut}},
    )
    async def add_note(
        ticket_id: str,
        user: Principal = editor,
        text: Annotated[str, Form(max_length=MAX_NOTE_LENGTH)] = "",
        file: Annotated[UploadFile | None, File()] = None,
    ) -> NoteWithFileOut:
        upload = None
        if file is not None:
            upload = NoteFile(
                filename=file.filename or "attachment",
                declared_type=file.content_type,
                chunks=upload_chunks(file),
            )
        try:
            note, attachment = await service.add_note(user, ticket_id, text, file=upload)
        except (TicketError, AttachmentError) as exc:
            _fail(exc)
        return NoteWithFileOut(
            **NoteOut.of(note).model_dump(), attachment=AttachmentOut.of(attachment) if attachment else None
        )

    @router.get("/tickets/{ticket_id}/attachments", summary="The ticket's files", responses={**NOT_FOUND})
    async def list_attachments(ticket_id: str, user: Principal = signed_in) -> list[AttachmentOut]:
        try:
            attachments: list[Attachment] = list(await service.attachments(user, ticket_id))
        except TicketError as exc:
            _fail(exc)
        return [AttachmentOut.of(attachment) for attachment in attachments]

    @router.get(
        "/tickets/{ticket_id}/attachments/{attachment_id}",
        summary="Download a file of the ticket",
        response_class=FileResponse,
        responses={**NOT_FOUND},
    )
    async def download_attachment(
        ticket_id: str, attachment_id: str, user: Principal = signed_in
    ) -> FileResponse:
        try:
            return download(await service.open_attachment(user, ticket_id, attachment_id))
        except (TicketError, AttachmentError) as exc:
            _fail(exc)

    return router


__all__ = ["CSV_HEADER", "TicketIn", "TicketOut", "csv_row", "csv_text", "ticket_filters", "tickets_router"]
