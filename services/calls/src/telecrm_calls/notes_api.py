"""REST API of the notes on a call: ``GET`` / ``PATCH /calls/{call_id}/notes`` and
``GET /calls/notes/options`` (the reasons and results to choose from).

Optimistic concurrency the HTTP way: every answer carries the notes' version as an ``ETag``
(``"<notes_version>"``); a ``PATCH`` with ``If-Match`` is refused with 412 when the notes moved on.

Who made a change is the signed-in user (their employee id, or the user id of an account that is no
employee). Reading and changing the notes of a call needs the right to see the call.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from telecrm_calls.access import CallsAccess
from telecrm_calls.notes import (
    MAX_LENGTHS,
    MAX_UPDATED_BY_LENGTH,
    NOTE_FIELDS,
    CallNotesService,
    InvalidNotes,
    NotesConflict,
)
from telecrm_calls.records import CallEntry, CallNotFound
from telecrm_calls.schemas import CallNotesOut, ErrorOut
from telecrm_common.auth import Principal

_CLEARS = "Absent: unchanged; null or empty: cleared."


class NotesIn(BaseModel):
    """The fields to change: only those present in the body are (``{}`` changes nothing)."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(
        default=None,
        description=f"One of `GET /calls/notes/options` `reasons` when that list is not empty, else free "
        f"text; at most {MAX_LENGTHS['reason']} characters. {_CLEARS}",
    )
    result: str | None = Field(
        default=None,
        description=f"One of the options' `results` when that list is not empty, else free text; at most "
        f"{MAX_LENGTHS['result']} characters. {_CLEARS}",
    )
    comment: str | None = Field(
        default=None,
        description=f"Free text, newlines and tabs allowed, no other control characters; at most "
        f"{MAX_LENGTHS['comment']} characters. {_CLEARS}",
    )
    contact_id: str | None = Field(
        default=None,
        description=f"The CRM contact the call belongs to. Setting a link stops the call log from taking "
        f"links from the click-to-call context and the numbers registry. {_CLEARS}",
    )
    task_id: str | None = Field(default=None, description=f"The CRM task of the call. {_CLEARS}")
    ticket_id: str | None = Field(default=None, description=f"The service ticket of the call. {_CLEARS}")


class NotesOut(CallNotesOut):
    call_id: str

    @classmethod
    def from_entry(cls, entry: CallEntry) -> NotesOut:
        return cls(call_id=entry.call.call_id, **CallNotesOut.from_call(entry.call).model_dump())


class NotesOptionsOut(BaseModel):
    reasons: list[str] = Field(description="The allowed reasons; empty: free text")
    results: list[str] = Field(description="The allowed results; empty: free text")
    max_lengths: dict[str, int] = Field(description="Longest value of each field, in characters")


class ConflictOut(BaseModel):
    detail: str
    version: int = Field(description="The notes' current version (also the response's ETag)")


def etag(version: int) -> str:
    return f'"{version}"'


def expected_version(if_match: str | None) -> int | None:
    """The version an ``If-Match`` header asks for: None without one (or with ``*``), -1 (which no
    version is) when it names no version of ours, such as a weak or foreign tag."""
    if if_match is None or if_match.strip() == "*":
        return None
    tag = if_match.strip()
    if len(tag) >= 2 and tag[0] == tag[-1] == '"':
        tag = tag[1:-1]
    return int(tag) if tag.isascii() and tag.isdigit() and len(tag) < 10 else -1


def _invalid(exc: InvalidNotes, value: object) -> RequestValidationError:
    location = ("header", "x-user-id") if exc.field == "updated_by" else ("body", exc.field)
    return RequestValidationError(
        [{"type": "value_error", "loc": location, "msg": exc.message, "input": value}]
    )


def notes_router(notes: CallNotesService, access: CallsAccess) -> APIRouter:
    router = APIRouter(prefix="/calls", tags=["call notes"])
    reader = Depends(access.current)

    # Declared before the /{call_id} routes (a call id never has a slash, but keep it obvious).
    @router.get("/notes/options", summary="The reasons and results to choose from")
    async def get_options(_user: Principal = reader) -> NotesOptionsOut:
        return NotesOptionsOut(
            reasons=list(notes.options.reasons),
            results=list(notes.options.results),
            max_lengths=dict(MAX_LENGTHS),
        )

    @router.get(
        "/{call_id}/notes",
        summary="The notes of a call",
        responses={404: {"model": ErrorOut, "description": "No call with this id"}},
    )
    async def get_notes(call_id: str, response: Response, user: Principal = reader) -> NotesOut:
        await access.ensure_call_visible(user, call_id)
        try:
            entry = await notes.get_notes(call_id)
        except CallNotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        response.headers["ETag"] = etag(entry.call.notes_version)
        return NotesOut.from_entry(entry)

    @router.patch(
        "/{call_id}/notes",
        response_model=NotesOut,
        summary="Change the notes of a call",
        description="Changes the fields present in the body and leaves the others as they are. Send "
        "`If-Match` with the `ETag` of the notes you edited to be refused (412) instead of overwriting "
        "someone else's change.",
        responses={
            404: {"model": ErrorOut, "description": "No call with this id"},
            412: {"model": ConflictOut, "description": "The notes changed since the `If-Match` version"},
        },
    )
    async def patch_notes(
        call_id: str,
        body: NotesIn,
        response: Response,
        if_match: Annotated[
            str | None,
            Header(description='The ETag of the notes the change was made on (`"3"`)'),
        ] = None,
        user: Principal = reader,
    ) -> NotesOut | JSONResponse:
        await access.ensure_call_visible(user, call_id)
        changes = {field: getattr(body, field) for field in NOTE_FIELDS if field in body.model_fields_set}
        # The employee when the user is one, else the user (an admin account): who changed the notes.
        author = (user.employee_id or user.subject)[:MAX_UPDATED_BY_LENGTH]
        try:
            entry = await notes.update_notes(
                call_id, changes, expected_version=expected_version(if_match), updated_by=author
            )
        except InvalidNotes as exc:
            value = author if exc.field == "updated_by" else changes.get(exc.field)
            raise _invalid(exc, value) from None
        except CallNotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        except NotesConflict as exc:
            return JSONResponse(
                status_code=412,
                content=ConflictOut(detail=str(exc), version=exc.current_version).model_dump(),
                headers={"ETag": etag(exc.current_version)},
            )
        response.headers["ETag"] = etag(entry.call.notes_version)
        return NotesOut.from_entry(entry)

    return router
