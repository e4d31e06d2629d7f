"""REST API of the call log (FastAPI): ``GET /calls``, ``GET /calls/export.csv``, ``GET /calls/{call_id}``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse

from telecrm_calls import csv_export
from telecrm_calls.access import audience_of
from telecrm_calls.schemas import CallOut, CallPageOut, DirectionName, DispositionName, ErrorOut
from telecrm_calls.service import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Audience,
    CallLogService,
    CallNotFound,
    CallQuery,
    InvalidCursor,
    InvalidQuery,
)
from telecrm_common.app import http_app
from telecrm_common.auth import Access, Principal
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
    "Whose calls: `mine` (the signed-in user's; the default when no extension, employee or team filter "
    "is given), `team` (the calls of the user's teams, and of the teams they supervise) or `all`. "
    "Whatever the scope, a user only sees the calls their role lets them see."
)


def scoped(query: CallQuery, scope: Scope | None, user: Principal) -> CallQuery:
    """The query narrowed to what the user asked for (their own calls by default) and may see."""
    visible = audience_of(user)
    if scope is None:
        explicit = query.extension or query.employee_id or query.team_id
        scope = "mine" if user.employee_id and not explicit else "all"
    if scope == "mine":
        if not user.employee_id:
            raise invalid_query_parameter("scope", "mine needs a user who is an employee", scope)
        return replace(query, employee_id=user.employee_id, audience=visible)
    if scope == "team":
        teams = user.team_ids | user.supervised_team_ids
        if not teams:
            raise invalid_query_parameter("scope", "the user is in no team", scope)
        if visible is not None:
            teams &= visible.team_ids
        return replace(query, audience=Audience(employee_id=user.employee_id, team_ids=teams))
    return replace(query, audience=visible)


def _invalid(query: CallQuery, exc: InvalidQuery) -> RequestValidationError:
    parameter = _PARAMETERS.get(exc.field, exc.field)
    return invalid_query_parameter(parameter, exc.message, getattr(query, exc.field, None))


def calls_router(service: CallLogService, access: Access) -> APIRouter:
    router = APIRouter(prefix="/calls", tags=["calls"])
    reader = Depends(access.current)

    @router.get(
        "",
        summary="List calls, newest first",
        description="Calls filtered by number, extension, employee, team, contact, disposition, direction, "
        "state, recording, missed and period (any combination), ordered by start time (newest first, or "
        "oldest first with `sort=oldest`), one page at a time: pass `next_cursor` back as `cursor`. "
        "Without a whose-calls filter, the signed-in user's own calls (`scope`).",
        responses={400: {"model": ErrorOut, "description": "The cursor is not one this service issued"}},
    )
    async def list_calls(
        filters: Annotated[CallQuery, Depends(call_filters)],
        scope: Annotated[Scope | None, Query(description=SCOPE_DESCRIPTION)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size")] = DEFAULT_PAGE_SIZE,
        cursor: Annotated[
            str | None, Query(max_length=1024, description="`next_cursor` of the previous page")
        ] = None,
        include_total: Annotated[
            bool, Query(description="Count the calls matching the filters (`total`); false skips it")
        ] = True,
        user: Principal = reader,
    ) -> CallPageOut:
        filters = scoped(filters, scope, user)
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
        user: Principal = reader,
    ) -> StreamingResponse:
        filters = scoped(filters, scope, user)
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
    async def get_call(call_id: str, user: Principal = reader) -> CallOut:
        try:
            entry = await service.get_call(call_id, audience_of(user))
        except CallNotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        return CallOut.from_entry(entry)

    return router


def create_app(service: CallLogService, checks: Mapping[str, Check], access: Access) -> FastAPI:
    """The HTTP application: the call log, ``/healthz`` and ``/readyz``; OpenAPI at ``/docs``."""
    return http_app(TITLE, DESCRIPTION, [calls_router(service, access)], checks)
