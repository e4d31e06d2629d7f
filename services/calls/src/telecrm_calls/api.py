"""REST API of the call log (FastAPI): ``GET /calls``, ``GET /calls/export.csv``, ``GET /calls/{call_id}``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse

from telecrm_calls import csv_export
from telecrm_calls.schemas import CallOut, CallPageOut, DirectionName, DispositionName, ErrorOut
from telecrm_calls.service import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    CallLogService,
    CallNotFound,
    CallQuery,
    InvalidCursor,
    InvalidQuery,
)
from telecrm_common.app import http_app
from telecrm_common.health import Check

TITLE = "telecrm calls"
DESCRIPTION = "The call log: one record per call, built from the telephony events on the bus."

# Service field -> query parameter, so that a 422 names the parameter the client sent.
_PARAMETERS = {"started_from": "from", "started_to": "to", "dispositions": "disposition"}


def invalid_query_parameter(parameter: str, message: str, value: Any) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", parameter), "msg": message, "input": value}]
    )


def as_utc(value: datetime | None) -> datetime | None:
    """Times without an offset are taken as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def call_filters(
    number: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Digits matched anywhere in the caller's or callee's number (raw or E.164); "
            "punctuation is ignored (`369-04` matches `+74993690439`)",
        ),
    ] = None,
    extension: Annotated[
        str | None, Query(max_length=64, description="The extension the call is for")
    ] = None,
    disposition: Annotated[
        list[DispositionName] | None, Query(description="Repeat to match any of several dispositions")
    ] = None,
    direction: Annotated[DirectionName | None, Query()] = None,
    started_from: Annotated[
        datetime | None,
        Query(alias="from", description="Calls started at or after this time (ISO 8601; UTC if no offset)"),
    ] = None,
    started_to: Annotated[
        datetime | None,
        Query(alias="to", description="Calls started before this time (exclusive); later than `from`"),
    ] = None,
    employee_id: Annotated[
        str | None,
        Query(
            max_length=100, description="Calls that involved this employee (answered, placed, rang, transfer)"
        ),
    ] = None,
    team_id: Annotated[
        str | None, Query(max_length=100, description="Calls that involved anyone of this team")
    ] = None,
    contact_id: Annotated[str | None, Query(max_length=100)] = None,
    state: Annotated[
        list[Literal["ringing", "answered", "ended"]] | None,
        Query(description="Repeat to match any of several states; live calls are ringing or answered"),
    ] = None,
    recorded: Annotated[
        bool | None, Query(description="Only calls with (true) or without (false) a recording")
    ] = None,
    missed: Annotated[
        bool | None,
        Query(description="Only missed calls (true: missed inbound and unsuccessful outgoing) or the others"),
    ] = None,
    sort: Annotated[Literal["newest", "oldest"], Query(description="Order by start time")] = "newest",
) -> CallQuery:
    """The filter parameters shared by ``GET /calls`` and ``GET /calls/export.csv``."""
    return CallQuery(
        number=number,
        extension=extension,
        dispositions=tuple(disposition or ()),
        direction=direction,
        started_from=as_utc(started_from),
        started_to=as_utc(started_to),
        employee_id=employee_id,
        team_id=team_id,
        contact_id=contact_id,
        states=tuple(state or ()),
        recorded=recorded,
        missed=missed,
        sort=sort,
    )


Scope = Literal["mine", "team", "all"]
SCOPE_DESCRIPTION = (
    "Whose calls: `mine` (the calls of the user named by `X-Employee-Id`; the default when that header is "
    "sent and no extension, employee or team filter is given), `team` (the user's team) or `all`."
)
EMPLOYEE_HEADER_DESCRIPTION = (
    "The employee the request is made for, set by the API gateway or the web app until services check "
    "tokens themselves"
)


async def scoped(
    service: CallLogService, query: CallQuery, scope: Scope | None, employee: str | None
) -> CallQuery:
    """The query narrowed to the user's own calls or team, as asked for (and by default)."""
    if scope is None:
        explicit = query.extension or query.employee_id or query.team_id
        scope = "mine" if employee and not explicit else "all"
    if scope == "all":
        return query
    if not employee:
        raise invalid_query_parameter("scope", f"{scope} needs the X-Employee-Id header", scope)
    if scope == "mine":
        return replace(query, employee_id=employee)
    team = await service.team_of(employee)
    if team is None:
        raise invalid_query_parameter("scope", f"employee {employee} has no team", scope)
    return replace(query, team_id=team)


def _invalid(query: CallQuery, exc: InvalidQuery) -> RequestValidationError:
    parameter = _PARAMETERS.get(exc.field, exc.field)
    return invalid_query_parameter(parameter, exc.message, getattr(query, exc.field, None))


def calls_router(service: CallLogService) -> APIRouter:
    router = APIRouter(prefix="/calls", tags=["calls"])

    @router.get(
        "",
        summary="List calls, newest first",
        description="Calls filtered by number, extension, employee, team, contact, disposition, direction, "
        "state, recording, missed and period (any combination), ordered by start time (newest first, or "
        "oldest first with `sort=oldest`), one page at a time: pass `next_cursor` back as `cursor`. "
        "With an `X-Employee-Id` header and no other whose-calls filter, the user's own calls.",
        responses={400: {"model": ErrorOut, "description": "The cursor is not one this service issued"}},
    )
    async def list_calls(
        filters: Annotated[CallQuery, Depends(call_filters)],
        scope: Annotated[Scope | None, Query(description=SCOPE_DESCRIPTION)] = None,
        x_employee_id: Annotated[
            str | None, Header(max_length=100, description=EMPLOYEE_HEADER_DESCRIPTION)
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size")] = DEFAULT_PAGE_SIZE,
        cursor: Annotated[
            str | None, Query(max_length=1024, description="`next_cursor` of the previous page")
        ] = None,
        include_total: Annotated[
            bool, Query(description="Count the calls matching the filters (`total`); false skips it")
        ] = True,
    ) -> CallPageOut:
        filters = await scoped(service, filters, scope, x_employee_id)
        query = replace(filters, limit=limit, cursor=cursor or None, include_total=include_total)
        try:
            page = await service.list_calls(query)
        except InvalidQuery as exc:
            raise _invalid(query, exc) from None
        except InvalidCursor as exc:
            raise HTTPException(status_code=400, detail=f"cursor: {exc}") from None
        return CallPageOut(
            items=[CallOut.from_entry(e) for e in page.items], next_cursor=page.next_cursor, total=page.total
        )

    # Declared before /{call_id}, which would otherwise take "export.csv" for a call id.
    @router.get(
        "/export.csv",
        summary="Export calls as CSV, newest first",
        description="Every call matching the filters of `GET /calls` (no paging), streamed as UTF-8 CSV "
        "with a header row. Cells that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`) get a "
        "leading `'` in the name and id columns, and in the number columns unless phone-like "
        "(`+15551234567` is kept as is).",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/csv": {}}, "description": "The calls, one row each"}},
    )
    async def export_calls(
        filters: Annotated[CallQuery, Depends(call_filters)],
        scope: Annotated[Scope | None, Query(description=SCOPE_DESCRIPTION)] = None,
        x_employee_id: Annotated[
            str | None, Header(max_length=100, description=EMPLOYEE_HEADER_DESCRIPTION)
        ] = None,
    ) -> StreamingResponse:
        filters = await scoped(service, filters, scope, x_employee_id)
        try:
            chunks = service.export_calls(filters)
        except InvalidQuery as exc:
            raise _invalid(filters, exc) from None

        async def body() -> AsyncIterator[bytes]:
            yield csv_export.header()
            async for entries in chunks:
                yield csv_export.chunk(entries)

        name = (
            f"calls-{csv_export.filename_part(filters.started_from, 'start')}"
            f"-{csv_export.filename_part(filters.started_to, 'now')}.csv"
        )
        return StreamingResponse(
            body(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @router.get(
        "/{call_id}",
        summary="One call",
        responses={404: {"model": ErrorOut, "description": "No call with this id"}},
    )
    async def get_call(call_id: str) -> CallOut:
        try:
            entry = await service.get_call(call_id)
        except CallNotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        return CallOut.from_entry(entry)

    return router


def create_app(service: CallLogService, checks: Mapping[str, Check]) -> FastAPI:
    """The HTTP application: the call log, ``/healthz`` and ``/readyz``; OpenAPI at ``/docs``."""
    return http_app(TITLE, DESCRIPTION, [calls_router(service)], checks)
