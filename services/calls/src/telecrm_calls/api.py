"""REST API of the call log (FastAPI): ``GET /calls`` and ``GET /calls/{call_id}``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Query
from fastapi.exceptions import RequestValidationError

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


def calls_router(service: CallLogService) -> APIRouter:
    router = APIRouter(prefix="/calls", tags=["calls"])

    @router.get(
        "",
        summary="List calls, newest first",
        description="Calls filtered by number, extension, disposition, direction and period, ordered by "
        "start time (newest first), one page at a time: pass `next_cursor` back as `cursor`.",
        responses={400: {"model": ErrorOut, "description": "The cursor is not one this service issued"}},
    )
    async def list_calls(
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
            Query(
                alias="from", description="Calls started at or after this time (ISO 8601; UTC if no offset)"
            ),
        ] = None,
        started_to: Annotated[
            datetime | None,
            Query(alias="to", description="Calls started before this time (exclusive); later than `from`"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size")] = DEFAULT_PAGE_SIZE,
        cursor: Annotated[
            str | None, Query(max_length=1024, description="`next_cursor` of the previous page")
        ] = None,
    ) -> CallPageOut:
        query = CallQuery(
            number=number,
            extension=extension,
            dispositions=tuple(disposition or ()),
            direction=direction,
            started_from=as_utc(started_from),
            started_to=as_utc(started_to),
            limit=limit,
            cursor=cursor or None,
        )
        try:
            page = await service.list_calls(query)
        except InvalidQuery as exc:
            parameter = _PARAMETERS.get(exc.field, exc.field)
            raise invalid_query_parameter(parameter, exc.message, getattr(query, exc.field, None)) from None
        except InvalidCursor as exc:
            raise HTTPException(status_code=400, detail=f"cursor: {exc}") from None
        return CallPageOut(items=[CallOut.from_entry(e) for e in page.items], next_cursor=page.next_cursor)

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
