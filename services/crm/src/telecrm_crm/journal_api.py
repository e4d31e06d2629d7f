"""REST API of the events journal (``/journal/...``): event types, events, archive, attachments, views.

Rights: reading needs a valid token; creating ``event.create``, changing, archiving, restoring and
attaching ``event.modify``, deleting ``event.delete``; event types are managed by admins. An event the
user may not see answers 404. Changes name the ``version`` they read (409 with the current one when
the event moved on). Lists page with ``limit`` + ``cursor`` (``next_cursor`` of the previous page) and
count on request (``include_total``); times without an offset are UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NoReturn

from fastapi import APIRouter, Depends, File, Header, HTTPException, Query, Response, UploadFile, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, model_validator

from telecrm_common.auth import Principal
from telecrm_crm import paging
from telecrm_crm.access import Access
from telecrm_crm.attachments import AttachmentError, download, upload_chunks
from telecrm_crm.journal import (
    EventInput,
    EventQuery,
    InvalidField,
    JournalError,
    JournalService,
    MissedGroup,
    MissedQuery,
    TypeInput,
    VersionConflict,
)
from telecrm_crm.journal_models import JournalEvent, JournalEventType
from telecrm_crm.schemas import AttachmentOut, HistoryEntryOut

Direction = Literal["inbound", "outbound", "internal"]
Channel = Literal["call", "letter", "email", "sms", "fax", "survey", "visit", "queue", "phone", "other"]
Source = Literal["manual", "calls", "api"]
IdText = Annotated[str, Field(min_length=1, max_length=100)]


# --- schemas ------------------------------------------------------------------------------------------


class ErrorOut(BaseModel):
    detail: str


class EventTypeOut(BaseModel):
    code: str = Field(description="Stable code; system types' codes never change")
    name: str
    system: bool = Field(description="Seeded with the journal: cannot be deleted, only renamed")
    channel: str
    direction: Direction | None = Field(description="The direction new events of this type get by default")
    active: bool = Field(description="Inactive types are kept for old events but refused for new ones")
    position: int
    version: int

    @classmethod
    def of(cls, row: JournalEventType) -> EventTypeOut:
        return cls(
            code=row.code,
            name=row.name,
            system=row.system,
            channel=row.channel,
            direction=row.direction,
            active=row.active,
            position=row.position,
            version=row.version,
        )


class EventTypeIn(BaseModel):
    code: str = Field(min_length=2, max_length=32, description="a-z, 0-9 and _, starting with a letter")
    name: str = Field(min_length=1, max_length=100)
    channel: Channel = "other"
    direction: Direction | None = None
    position: int = Field(default=1000, ge=0, le=1_000_000)


class EventTypePatch(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    channel: Channel | None = None
    direction: Direction | None = None
    active: bool | None = None
    position: int | None = Field(default=None, ge=0, le=1_000_000)
    version: int | None = Field(default=None, description="The version read; 409 when it moved on")


class EventIn(BaseModel):
    type_code: str = Field(min_length=1, max_length=32, description="A system or an active custom type")
    start_at: datetime | None = Field(default=None, description="Default: now")
    end_at: datetime | None = None
    responsible_employee_id: IdText | None = Field(default=None, description="Default: you")
    team_id: IdText | None = Field(default=None, description="Default: your team, when you have one")
    contact_id: IdText | None = None
    contact_person_id: IdText | None = None
    project_id: IdText | None = None
    phone: str | None = Field(
        default=None, max_length=64, description="Any format; kept as given when it cannot be normalized"
    )
    email: str | None = Field(default=None, max_length=254)
    direction: Direction | None = Field(default=None, description="Default: the type's direction")
    subject: str | None = Field(default=None, max_length=255)
    content: str | None = Field(default=None, max_length=100_000)
    call_id: IdText | None = Field(default=None, description="The call this event records (one event a call)")


class EventPatch(BaseModel):
    """The fields to change (those sent, null clears) and the version they were read at."""

    version: int = Field(description="The version read; 409 with the current one when the event moved on")
    type_code: str | None = Field(default=None, min_length=1, max_length=32)
    start_at: datetime | None = None
    end_at: datetime | None = None
    responsible_employee_id: IdText | None = None
    team_id: IdText | None = None
    contact_id: IdText | None = None
    contact_person_id: IdText | None = None
    project_id: IdText | None = None
    phone: str | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=254)
    direction: Direction | None = None
    subject: str | None = Field(default=None, max_length=255)
    content: str | None = Field(default=None, max_length=100_000)


class EventOut(BaseModel):
    id: str
    type_code: str
    start_at: datetime
    end_at: datetime | None
    responsible_employee_id: str | None
    team_id: str | None
    contact_id: str | None
    contact_person_id: str | None
    project_id: str | None
    phone: str | None = Field(description="As given or signalled")
    phone_e164: str | None
    phone_valid: bool = Field(description="False when the phone could not be normalized (kept as given)")
    email: str | None
    direction: str | None
    subject: str | None
    content: str | None
    call_id: str | None
    disposition: str | None = Field(description="Of the call: answered, missed, busy, no_answer...")
    missed_item_id: str | None = Field(description="A missed call: its missed-call item in the call log")
    resolved_at: datetime | None = Field(description="A missed call: when it was answered or called back")
    resolving_call_id: str | None
    answers_missed_item_id: str | None = Field(description="A callback / answer: the item it resolved")
    source: str
    locked_fields: list[str] = Field(description="Fields edited by hand, which the call log leaves alone")
    created_by: str | None
    archived: bool
    archived_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: JournalEvent) -> EventOut:
        return cls(
            id=row.id,
            type_code=row.type_code,
            start_at=row.start_at,
            end_at=row.end_at,
            responsible_employee_id=row.responsible_employee_id,
            team_id=row.team_id,
            contact_id=row.contact_id,
            contact_person_id=row.contact_person_id,
            project_id=row.project_id,
            phone=row.phone,
            phone_e164=row.phone_e164,
            phone_valid=row.phone is None or row.phone_e164 is not None,
            email=row.email,
            direction=row.direction,
            subject=row.subject,
            content=row.content,
            call_id=row.call_id,
            disposition=row.disposition,
            missed_item_id=row.missed_item_id,
            resolved_at=row.resolved_at,
            resolving_call_id=row.resolving_call_id,
            answers_missed_item_id=row.answers_missed_item_id,
            source=row.source,
            locked_fields=list(row.locked_fields or []),
            created_by=row.created_by,
            archived=row.archived,
            archived_at=row.archived_at,
            version=row.version,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class ArchiveIn(BaseModel):
    """Either a selection (``ids``) or a date (``before``: every event that ended before it)."""

    ids: list[IdText] | None = Field(default=None, min_length=1, max_length=1000)
    before: datetime | None = Field(
        default=None, description="Events ended (or, without an end, started) before"
    )

    @model_validator(mode="after")
    def one_of(self) -> ArchiveIn:
        if (self.ids is None) == (self.before is None):
            raise ValueError("give either ids or before")
        return self


class SelectionIn(BaseModel):
    ids: list[IdText] = Field(min_length=1, max_length=1000)


class ArchiveOut(BaseModel):
    count: int = Field(description="Events whose state changed")
    changed: list[str] = Field(description="Their ids (a selection only)")
    unchanged: list[str] = Field(description="Selected events already in that state")


class MissedGroupOut(BaseModel):
    number: str | None = Field(description="The number as signalled (one of its forms)")
    e164: str | None
    count: int = Field(description="Missed incoming calls from the number")
    open_count: int = Field(description="Of those, not yet answered or called back")
    resolved: bool = Field(description="Every missed call was answered or called back")
    first_at: datetime
    last_at: datetime
    last_resolved_at: datetime | None
    contact_id: str | None

    @classmethod
    def of(cls, group: MissedGroup) -> MissedGroupOut:
        return cls(
            number=group.number,
            e164=group.e164,
            count=group.count,
            open_count=group.open_count,
            resolved=group.resolved,
            first_at=group.first_at,
            last_at=group.last_at,
            last_resolved_at=group.last_resolved_at,
            contact_id=group.contact_id,
        )


# --- helpers ------------------------------------------------------------------------------------------


def as_utc(value: datetime | None) -> datetime | None:
    """Times without an offset are taken as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _refuse(exc: JournalError | paging.InvalidCursor | AttachmentError, where: str = "body") -> NoReturn:
    """The HTTP answer of a refusal: 422 naming the field, 409 with the current version..."""
    if isinstance(exc, InvalidField):
        raise RequestValidationError(
            [{"type": "value_error", "loc": (where, exc.field), "msg": exc.message, "input": None}]
        ) from None
    if isinstance(exc, paging.InvalidCursor):
        raise HTTPException(status_code=400, detail=f"cursor: {exc}") from None
    if isinstance(exc, VersionConflict):
        raise HTTPException(
            status_code=409, detail=str(exc), headers={"X-Current-Version": str(exc.current_version)}
        ) from None
    raise HTTPException(status_code=exc.status, detail=str(exc)) from None


REFUSALS: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorOut, "description": "The right is missing, or the owner is outside what you see"},
    404: {"model": ErrorOut, "description": "No such event (or one you may not see)"},
    409: {"model": ErrorOut, "description": "The event moved on (X-Current-Version), or is archived"},
}


# --- the router ---------------------------------------------------------------------------------------


def journal_router(service: JournalService, access: Access) -> APIRouter:
    router = APIRouter(prefix="/journal", tags=["events journal"])
    # Dependencies as defaults: the annotations are strings (postponed), resolved in this module's globals.
    reader = Depends(access.current)
    creator = Depends(access.require("event.create"))
    modifier = Depends(access.require("event.modify"))
    deleter = Depends(access.require("event.delete"))

    def admin_only(principal: Principal) -> None:
        if not principal.is_admin:
            raise HTTPException(status_code=403, detail="only an admin manages event types")

    # --- types ----------------------------------------------------------------------------------

    @router.get("/event-types", summary="Event types, system and custom")
    async def list_types(
        _user: Principal = reader,
        include_inactive: Annotated[bool, Query(description="Also the deactivated custom types")] = False,
    ) -> list[EventTypeOut]:
        return [EventTypeOut.of(row) for row in await service.list_types(include_inactive=include_inactive)]

    @router.post(
        "/event-types",
        status_code=status.HTTP_201_CREATED,
        summary="Add a custom event type (admins)",
        responses={403: {"model": ErrorOut}, 409: {"model": ErrorOut, "description": "The code exists"}},
    )
    async def create_type(body: EventTypeIn, user: Principal = reader) -> EventTypeOut:
        admin_only(user)
        data = TypeInput(
            code=body.code,
            name=body.name,
            channel=body.channel,
            direction=body.direction,
            position=body.position,
        )
        try:
            return EventTypeOut.of(await service.create_type(user, data))
        except JournalError as exc:
            _refuse(exc)

    @router.patch(
        "/event-types/{code}",
        summary="Rename, reorder or (custom types) change or deactivate a type (admins)",
        responses={
            403: {"model": ErrorOut},
            404: {"model": ErrorOut},
            409: {"model": ErrorOut, "description": "A system type's fixed field, or a moved-on version"},
        },
    )
    async def update_type(code: str, body: EventTypePatch, user: Principal = reader) -> EventTypeOut:
        admin_only(user)
        changes = {name: getattr(body, name) for name in body.model_fields_set if name != "version"}
        for name in ("name", "channel", "active", "position"):
            if name in changes and changes[name] is None:
                _refuse(InvalidField(name, "cannot be null"))
        try:
            return EventTypeOut.of(await service.update_type(user, code, changes, body.version))
        except JournalError as exc:
            _refuse(exc)

    @router.delete(
        "/event-types/{code}",
        status_code=status.HTTP_204_NO_CONTENT,
        summary="Delete a custom type no event uses (admins)",
        responses={
            403: {"model": ErrorOut},
            404: {"model": ErrorOut},
            409: {"model": ErrorOut, "description": "A system type, or one events use"},
        },
    )
    async def delete_type(code: str, user: Principal = reader) -> Response:
        admin_only(user)
        try:
            await service.delete_type(user, code)
        except JournalError as exc:
            _refuse(exc)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    # --- events ---------------------------------------------------------------------------------

    @router.post(
        "/events",
        status_code=status.HTTP_201_CREATED,
        summary="Add an event",
        description="With an `Idempotency-Key` header, a repeated request returns the event the first one "
        "made (200) instead of adding another.",
        responses={**REFUSALS, 200: {"model": EventOut, "description": "The event of an earlier request"}},
    )
    async def create_event(
        body: EventIn,
        response: Response,
        user: Principal = creator,
        idempotency_key: Annotated[str | None, Header(max_length=100)] = None,
    ) -> EventOut:
        data = EventInput(**body.model_dump())
        data.start_at, data.end_at = as_utc(data.start_at), as_utc(data.end_at)
        request_id = f"rest:{user.subject}:{idempotency_key}" if idempotency_key else None
        try:
            row, created = await service.create_event(user, data, request_id=request_id)
        except JournalError as exc:
            _refuse(exc)
        if not created:
            response.status_code = status.HTTP_200_OK
        return EventOut.of(row)

    @router.get(
        "/events",
        summary="The journal: events by type, contact, project, number, employee, team and period",
        description="Newest first (or `order=oldest`), one page at a time. `phone` matches the number in "
        "any format (its E.164 form, or the digits anywhere in the number). Archived events are left out "
        "unless `include_archived`; `archived=true` lists only them (the archive).",
        responses={400: {"model": ErrorOut, "description": "The cursor is not one this service issued"}},
    )
    async def list_events(
        user: Principal = reader,
        type_code: Annotated[list[str] | None, Query(alias="type", description="Any of these types")] = None,
        contact_id: Annotated[str | None, Query(max_length=100)] = None,
        contact_person_id: Annotated[str | None, Query(max_length=100)] = None,
        project_id: Annotated[str | None, Query(max_length=100)] = None,
        without_project: Annotated[bool, Query(description="Only events of no project")] = False,
        phone: Annotated[str | None, Query(max_length=64, description="A number in any format")] = None,
        employee_id: Annotated[str | None, Query(max_length=100, description="Responsible employee")] = None,
        team_id: Annotated[str | None, Query(max_length=100)] = None,
        start_from: Annotated[datetime | None, Query(alias="from", description="Started at or after")] = None,
        start_to: Annotated[datetime | None, Query(alias="to", description="Started before")] = None,
        direction: Direction | None = None,
        call_id: Annotated[str | None, Query(max_length=100)] = None,
        source: Source | None = None,
        q: Annotated[str | None, Query(max_length=200, description="Text in the subject or content")] = None,
        include_archived: bool = False,
        archived: Annotated[bool, Query(description="Only archived events (the archive)")] = False,
        order: Literal["newest", "oldest"] = "newest",
        limit: Annotated[int, Query(ge=1, le=paging.MAX_LIMIT)] = paging.DEFAULT_LIMIT,
        cursor: Annotated[str | None, Query(max_length=1024)] = None,
        include_total: bool = False,
    ) -> paging.Page[EventOut]:
        query = EventQuery(
            type_codes=type_code or (),
            contact_id=contact_id,
            contact_person_id=contact_person_id,
            project_id=project_id,
            without_project=without_project,
            phone=phone,
            employee_id=employee_id,
            team_id=team_id,
            start_from=as_utc(start_from),
            start_to=as_utc(start_to),
            direction=direction,
            call_id=call_id,
            source=source,
            text=q,
            archived="archived" if archived else "all" if include_archived else "active",
            order=order,
            limit=limit,
            cursor=cursor,
            include_total=include_total,
        )
        return await _page(user, query)

    async def _page(user: Principal, query: EventQuery) -> paging.Page[EventOut]:
        try:
            page = await service.list_events(user, query)
        except (JournalError, paging.InvalidCursor) as exc:
            _refuse(exc, "query")
        return paging.Page[EventOut](
            items=[EventOut.of(row) for row in page.items], next_cursor=page.next_cursor, total=page.total
        )

    @router.get("/events/{event_id}", summary="One event", responses=REFUSALS)
    async def get_event(event_id: str, user: Principal = reader) -> EventOut:
        try:
            return EventOut.of(await service.get_event(user, event_id))
        except JournalError as exc:
            _refuse(exc)

    @router.patch(
        "/events/{event_id}",
        summary="Change an event",
        description="Send the fields to change and the `version` you read. A field of a call's event you "
        "change is yours from then on: the call log no longer updates it.",
        responses=REFUSALS,
    )
    async def update_event(event_id: str, body: EventPatch, user: Principal = modifier) -> EventOut:
        changes = {name: getattr(body, name) for name in body.model_fields_set if name != "version"}
        for name in ("start_at", "end_at"):
            if name in changes:
                changes[name] = as_utc(changes[name])
        try:
            return EventOut.of(await service.update_event(user, event_id, changes, body.version))
        except JournalError as exc:
            _refuse(exc)

    @router.delete(
        "/events/{event_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        summary="Delete an event (and its attachments)",
        responses=REFUSALS,
    )
    async def delete_event(
        event_id: str,
        user: Principal = deleter,
        version: Annotated[int | None, Query(description="The version read; 409 when it moved on")] = None,
    ) -> Response:
        try:
            await service.delete_event(user, event_id, version)
        except JournalError as exc:
            _refuse(exc)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.get("/events/{event_id}/history", summary="Every change of an event", responses=REFUSALS)
    async def event_history(event_id: str, user: Principal = reader) -> list[HistoryEntryOut]:
        try:
            return [HistoryEntryOut.of(row) for row in await service.history(user, event_id)]
        except JournalError as exc:
            _refuse(exc)

    # --- archive --------------------------------------------------------------------------------

    @router.post(
        "/archive",
        summary="Archive events: a selection, or every event that ended before a date",
        description="Archived events leave the journal (see `archived=true`) and are read-only until "
        "restored. By date, only the events you can see are archived.",
        responses={404: {"model": ErrorOut, "description": "Selected events that do not exist"}},
    )
    async def archive(body: ArchiveIn, user: Principal = modifier) -> ArchiveOut:
        try:
            if body.ids is not None:
                result = await service.archive(user, body.ids)
            else:
                before = as_utc(body.before)
                assert before is not None
                result = await service.archive_before(user, before)
        except JournalError as exc:
            _refuse(exc)
        return ArchiveOut(count=result.count, changed=result.changed, unchanged=result.unchanged)

    @router.post(
        "/restore",
        summary="Bring archived events back to the journal",
        responses={404: {"model": ErrorOut, "description": "Selected events that do not exist"}},
    )
    async def restore(body: SelectionIn, user: Principal = modifier) -> ArchiveOut:
        try:
            result = await service.restore(user, body.ids)
        except JournalError as exc:
            _refuse(exc)
        return ArchiveOut(count=result.count, changed=result.changed, unchanged=result.unchanged)

    # --- attachments ----------------------------------------------------------------------------

    @router.post(
        "/events/{event_id}/attachments",
        status_code=status.HTTP_201_CREATED,
        summary="Attach a file to an event",
        responses={
            **REFUSALS,
            413: {"model": ErrorOut, "description": "Larger than the limit"},
            415: {"model": ErrorOut, "description": "A type that is not accepted, or not what it claims"},
        },
    )
    async def add_attachment(
        event_id: str, file: Annotated[UploadFile, File()], user: Principal = modifier
    ) -> AttachmentOut:
        try:
            row = await service.add_attachment(
                user,
                event_id,
                filename=file.filename or "attachment",
                declared_type=file.content_type,
                chunks=upload_chunks(file),
            )
        except (JournalError, AttachmentError) as exc:
            _refuse(exc)
        finally:
            await file.close()
        return AttachmentOut.of(row)

    @router.get("/events/{event_id}/attachments", summary="An event's attachments", responses=REFUSALS)
    async def list_attachments(event_id: str, user: Principal = reader) -> list[AttachmentOut]:
        try:
            return [AttachmentOut.of(row) for row in await service.list_attachments(user, event_id)]
        except JournalError as exc:
            _refuse(exc)

    @router.get(
        "/events/{event_id}/attachments/{attachment_id}",
        summary="Download an attachment",
        response_class=FileResponse,
        responses=REFUSALS,
    )
    async def download_attachment(
        event_id: str, attachment_id: str, user: Principal = reader
    ) -> FileResponse:
        try:
            stored = await service.open_attachment(user, event_id, attachment_id)
        except (JournalError, AttachmentError) as exc:
            _refuse(exc)
        return download(stored)

    @router.delete(
        "/events/{event_id}/attachments/{attachment_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        summary="Remove an attachment",
        responses=REFUSALS,
    )
    async def delete_attachment(event_id: str, attachment_id: str, user: Principal = modifier) -> Response:
        try:
            await service.delete_attachment(user, event_id, attachment_id)
        except (JournalError, AttachmentError) as exc:
            _refuse(exc)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    # --- views ----------------------------------------------------------------------------------

    @router.get(
        "/views/missed-by-number",
        summary="Missed incoming calls grouped by number",
        description="One row per number: how many missed calls, the first and the last, and whether all "
        "were answered or called back; the number with the latest missed call first.",
        responses={400: {"model": ErrorOut, "description": "The cursor is not one this service issued"}},
    )
    async def missed_by_number(
        user: Principal = reader,
        state: Annotated[
            Literal["open", "resolved", "all"],
            Query(description="`open`: numbers with a call still to return; `resolved`: all returned"),
        ] = "all",
        phone: Annotated[str | None, Query(max_length=64)] = None,
        employee_id: Annotated[str | None, Query(max_length=100)] = None,
        team_id: Annotated[str | None, Query(max_length=100)] = None,
        contact_id: Annotated[str | None, Query(max_length=100)] = None,
        start_from: Annotated[datetime | None, Query(alias="from")] = None,
        start_to: Annotated[datetime | None, Query(alias="to")] = None,
        include_archived: bool = False,
        limit: Annotated[int, Query(ge=1, le=paging.MAX_LIMIT)] = paging.DEFAULT_LIMIT,
        cursor: Annotated[str | None, Query(max_length=1024)] = None,
        include_total: bool = False,
    ) -> paging.Page[MissedGroupOut]:
        query = MissedQuery(
            state=state,
            phone=phone,
            employee_id=employee_id,
            team_id=team_id,
            contact_id=contact_id,
            start_from=as_utc(start_from),
            start_to=as_utc(start_to),
            include_archived=include_archived,
            limit=limit,
            cursor=cursor,
            include_total=include_total,
        )
        try:
            page = await service.missed_by_number(user, query)
        except (JournalError, paging.InvalidCursor) as exc:
            _refuse(exc, "query")
        return paging.Page[MissedGroupOut](
            items=[MissedGroupOut.of(group) for group in page.items],
            next_cursor=page.next_cursor,
            total=page.total,
        )

    @router.get(
        "/views/accepted-calls",
        summary="Accepted calls: inbound calls someone answered",
        responses={400: {"model": ErrorOut, "description": "The cursor is not one this service issued"}},
    )
    async def accepted_calls(
        user: Principal = reader,
        phone: Annotated[str | None, Query(max_length=64)] = None,
        employee_id: Annotated[str | None, Query(max_length=100)] = None,
        team_id: Annotated[str | None, Query(max_length=100)] = None,
        contact_id: Annotated[str | None, Query(max_length=100)] = None,
        project_id: Annotated[str | None, Query(max_length=100)] = None,
        start_from: Annotated[datetime | None, Query(alias="from")] = None,
        start_to: Annotated[datetime | None, Query(alias="to")] = None,
        include_archived: bool = False,
        limit: Annotated[int, Query(ge=1, le=paging.MAX_LIMIT)] = paging.DEFAULT_LIMIT,
        cursor: Annotated[str | None, Query(max_length=1024)] = None,
        include_total: bool = False,
    ) -> paging.Page[EventOut]:
        query = EventQuery(
            accepted_calls=True,
            phone=phone,
            employee_id=employee_id,
            team_id=team_id,
            contact_id=contact_id,
            project_id=project_id,
            start_from=as_utc(start_from),
            start_to=as_utc(start_to),
            archived="all" if include_archived else "active",
            limit=limit,
            cursor=cursor,
            include_total=include_total,
        )
        return await _page(user, query)

    return router


__all__ = ["EventOut", "EventTypeOut", "MissedGroupOut", "journal_router"]
