"""REST API of the missed calls: ``GET /missed-calls`` (the lists to call back) and
``GET /missed-calls/{id}`` (an item with its calls)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from telecrm_calls.access import audience_of
from telecrm_calls.api import as_utc, invalid_query_parameter
from telecrm_calls.missed import (
    RESOLVED,
    STATES,
    MissedCallDetail,
    MissedCallEntry,
    MissedCallLog,
    MissedCallNotFound,
    MissedCallQuery,
)
from telecrm_calls.schemas import CallOut, ErrorOut
from telecrm_calls.service import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, InvalidCursor, InvalidQuery
from telecrm_common.auth import Access, Principal

MissedCallStateName = Literal["open", "resolved"]
StateFilter = Literal["open", "resolved", "all"]

# Service field -> query parameter, so that a 422 names the parameter the client sent.
_PARAMETERS = {"last_missed_from": "from", "last_missed_to": "to", "states": "state"}


class MissedCallOut(BaseModel):
    """Missed inbound calls from one number that wait for (or got) the same answer."""

    id: str
    number: str | None = Field(description="The caller's number as signalled")
    e164: str | None = Field(
        description="Its E.164 form; null when it has none (the item then goes by number)"
    )
    caller_name: str | None = Field(description="The last display name seen on the missed calls")
    contact_id: str | None = Field(description="The CRM contact of the number: null until crm provides it")
    extensions: list[str] = Field(description="Every extension the missed calls rang")
    employee_ids: list[str] = Field(description="The employees behind them, when known")
    team_ids: list[str] = Field(description="Their teams: empty until crm provides them")
    missed_count: int = Field(description="How many missed calls the item holds")
    call_ids: list[str] = Field(description="Those calls, oldest first")
    first_missed_at: datetime = Field(description="Start of the first missed call (UTC)")
    last_missed_at: datetime = Field(description="Start of the last missed call (UTC)")
    state: MissedCallStateName
    resolved_at: datetime | None = Field(description="When the resolving call was answered")
    resolving_call_id: str | None = Field(
        description="The answered call with the number that came after the missed calls"
    )
    resolving_direction: Literal["inbound", "outbound"] | None = Field(
        description="`outbound`: we called back; `inbound`: the customer called again and was answered"
    )
    resolving_extension: str | None
    resolving_employee_id: str | None
    time_to_callback_seconds: float | None = Field(
        description="resolved_at - first_missed_at (millisecond precision); null while open"
    )
    version: int = Field(description="Increases with every change of the item")
    updated_at: datetime

    @classmethod
    def from_entry(cls, entry: MissedCallEntry) -> MissedCallOut:
        item = entry.item
        return cls(
            id=item.id,
            number=item.number,
            e164=item.e164,
            caller_name=item.caller_name,
            contact_id=item.contact_id,
            extensions=entry.extensions,
            employee_ids=entry.employee_ids,
            team_ids=entry.team_ids,
            missed_count=item.missed_count,
            call_ids=entry.call_ids,
            first_missed_at=item.first_missed_at,
            last_missed_at=item.last_missed_at,
            state=RESOLVED if item.state == RESOLVED else "open",
            resolved_at=item.resolved_at,
            resolving_call_id=item.resolving_call_id,
            resolving_direction=item.resolving_direction,
            resolving_extension=item.resolving_extension,
            resolving_employee_id=item.resolving_employee_id,
            time_to_callback_seconds=None if item.callback_ms is None else item.callback_ms / 1000,
            version=item.version,
            updated_at=item.updated_at,
        )


class MissedCallDetailOut(MissedCallOut):
    calls: list[CallOut] = Field(description="The missed calls, oldest first")
    resolving_call: CallOut | None

    @classmethod
    def from_detail(cls, detail: MissedCallDetail) -> MissedCallDetailOut:
        return cls(
            **MissedCallOut.from_entry(detail.entry).model_dump(),
            calls=[CallOut.from_entry(call) for call in detail.calls],
            resolving_call=CallOut.from_entry(detail.resolving_call) if detail.resolving_call else None,
        )


class MissedCallPageOut(BaseModel):
    items: list[MissedCallOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")
    total: int = Field(description="Items matching the filters, on all pages")


def missed_calls_router(log: MissedCallLog, access: Access) -> APIRouter:
    router = APIRouter(prefix="/missed-calls", tags=["missed calls"])
    reader = Depends(access.current)

    @router.get(
        "",
        summary="List missed calls to call back, latest first",
        description="Missed inbound calls grouped by number (several missed calls from one number are "
        "one item), filtered by state, extension, employee, team, number and period, ordered by the "
        "last missed call (latest first), one page at a time: pass `next_cursor` back as `cursor`. An "
        "item is resolved by the next answered call with its number, ours (callback) or theirs. A user "
        "sees the items that rang them or a team they see (admins: all).",
        responses={400: {"model": ErrorOut, "description": "The cursor is not one this service issued"}},
    )
    async def list_missed_calls(
        state: Annotated[
            StateFilter, Query(description="`open` (to call back), `resolved` or `all`")
        ] = "open",
        extension: Annotated[
            str | None, Query(max_length=64, description="Items whose calls rang this extension")
        ] = None,
        employee_id: Annotated[
            str | None, Query(max_length=128, description="Items whose calls rang this employee")
        ] = None,
        team_id: Annotated[
            str | None, Query(max_length=128, description="Items whose calls rang this team")
        ] = None,
        number: Annotated[
            str | None,
            Query(
                max_length=64,
                description="Digits matched anywhere in the number; punctuation is ignored",
            ),
        ] = None,
        last_missed_from: Annotated[
            datetime | None,
            Query(
                alias="from",
                description="Items whose last missed call started at or after this time (ISO 8601; UTC "
                "if no offset)",
            ),
        ] = None,
        last_missed_to: Annotated[
            datetime | None,
            Query(alias="to", description="... before this time (exclusive); later than `from`"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size")] = DEFAULT_PAGE_SIZE,
        cursor: Annotated[
            str | None, Query(max_length=1024, description="`next_cursor` of the previous page")
        ] = None,
        user: Principal = reader,
    ) -> MissedCallPageOut:
        query = MissedCallQuery(
            states=STATES if state == "all" else (state,),
            extension=extension,
            employee_id=employee_id,
            team_id=team_id,
            number=number,
            last_missed_from=as_utc(last_missed_from),
            last_missed_to=as_utc(last_missed_to),
            limit=limit,
            cursor=cursor or None,
            audience=audience_of(user),
        )
        try:
            page = await log.list_missed_calls(query)
        except InvalidQuery as exc:
            parameter = _PARAMETERS.get(exc.field, exc.field)
            raise invalid_query_parameter(parameter, exc.message, getattr(query, exc.field, None)) from None
        except InvalidCursor as exc:
            raise HTTPException(status_code=400, detail=f"cursor: {exc}") from None
        return MissedCallPageOut(
            items=[MissedCallOut.from_entry(entry) for entry in page.items],
            next_cursor=page.next_cursor,
            total=page.total,
        )

    @router.get(
        "/{item_id}",
        summary="One missed-call item with its calls",
        responses={404: {"model": ErrorOut, "description": "No missed-call item with this id"}},
    )
    async def get_missed_call(item_id: str, user: Principal = reader) -> MissedCallDetailOut:
        try:
            detail = await log.get_missed_call(item_id, audience_of(user))
        except MissedCallNotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        return MissedCallDetailOut.from_detail(detail)

    return router
