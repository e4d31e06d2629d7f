"""REST API of contacts: the address book, creating a contact from a caller's number, duplicates and
merging, custom fields, and the screen pop's number look-up.

Rights are checked before anything is read or changed (403): ``contact.create`` to create,
``contact.modify`` to edit or add a number, ``contact.delete`` to delete, both of those to merge;
custom fields are defined by admins. A contact the user may not see answers 404.

Numbers another contact has already answer 409 with the list of those contacts (``duplicates``)
unless ``allow_duplicate=true``; a stale ``version`` answers 409 with the current one. A creation
sent with an ``Idempotency-Key`` is made once: a repeat returns the contact made the first time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from telecrm_common.auth import Principal
from telecrm_crm.access import Access
from telecrm_crm.contacts import (
    MAX_MERGE,
    ContactError,
    ContactIn,
    ContactKind,
    ContactNotFound,
    ContactOut,
    ContactPatch,
    ContactQuery,
    ContactService,
    ContactSort,
    DuplicateContacts,
    DuplicateGroupOut,
    DuplicateKey,
    FieldDefinitionIn,
    FieldDefinitionOut,
    FieldNotFound,
    Forbidden,
    FromNumberIn,
    InvalidContact,
    PhoneIn,
    PhoneNotFound,
    RequestReused,
    StaleVersion,
)
from telecrm_crm.lookup import MAX_CANDIDATES, Card, LookupResult, NumberLookup
from telecrm_crm.paging import DEFAULT_LIMIT, MAX_LIMIT, InvalidCursor, Page
from telecrm_crm.schemas import HistoryEntryOut

PREFIX = "/contacts"


class ErrorOut(BaseModel):
    detail: str


class DuplicateOut(BaseModel):
    contact_id: str
    kind: str
    name: str | None = Field(description="Null when you may not see the contact")
    number: str = Field(description="The shared number (E.164, or the digits of one that does not parse)")
    visible: bool


class DuplicatesDetail(BaseModel):
    message: str
    duplicates: list[DuplicateOut]


class DuplicatesErrorOut(BaseModel):
    detail: DuplicatesDetail


class MergeIn(BaseModel):
    """The contacts to merge into this one (they are deleted, pointing here)."""

    model_config = ConfigDict(extra="forbid")

    contact_ids: list[str] = Field(min_length=1, max_length=MAX_MERGE)
    version: int | None = Field(
        default=None, ge=1, description="This contact's version you saw: 409 when it changed since"
    )


# --- the look-up's answer ------------------------------------------------------------------------


class CardPhoneOut(BaseModel):
    id: str
    number: str
    e164: str | None
    extension: str | None
    kind: str
    valid: bool


class ContactCardOut(BaseModel):
    contact_id: str
    kind: str
    name: str
    company_id: str | None
    company_name: str | None
    job_title: str | None
    responsible_employee_id: str | None
    responsible_employee_name: str | None
    responsible_extension: str | None
    phone: CardPhoneOut | None = Field(
        description="The number that matched; null for a company shown for its persons"
    )
    version: int

    @classmethod
    def of(cls, card: Card) -> ContactCardOut:
        phone = card.phone
        return cls(
            contact_id=card.contact_id,
            kind=card.kind,
            name=card.name,
            company_id=card.company_id,
            company_name=card.company_name,
            job_title=card.job_title,
            responsible_employee_id=card.responsible_employee_id,
            responsible_employee_name=card.responsible_employee_name,
            responsible_extension=card.responsible_extension,
            phone=(
                CardPhoneOut(
                    id=phone.id,
                    number=phone.number,
                    e164=phone.e164,
                    extension=phone.extension,
                    kind=phone.kind,
                    valid=phone.valid,
                )
                if phone is not None
                else None
            ),
            version=card.version,
        )


class OpenTaskOut(BaseModel):
    task_id: str
    title: str
    status: str
    due_at: datetime | None


class RecentCallOut(BaseModel):
    call_id: str
    started_at: datetime
    direction: str
    disposition: str
    talk_seconds: int
    employee_id: str | None


class CallsSummaryOut(BaseModel):
    total: int
    missed: int
    recent: list[RecentCallOut]


class LookupOut(BaseModel):
    number: str = Field(description="As asked")
    e164: str | None = Field(description="As understood; null when it does not parse")
    match: str = Field(description="`exact`, `suffix` (last digits), `ambiguous` (see candidates) or `none`")
    contact: ContactCardOut | None
    candidates: list[ContactCardOut] = Field(description="The matching contacts you see, best first")
    hidden: int = Field(description="Matching contacts you may not see (known, but not yours)")
    open_tasks: list[OpenTaskOut]
    open_tasks_total: int
    calls: CallsSummaryOut | None
    incomplete: bool = Field(description="Some details were left out (a part did not answer in time)")

    @classmethod
    def of(cls, result: LookupResult) -> LookupOut:
        calls = result.calls
        return cls(
            number=result.number,
            e164=result.e164,
            match=result.match,
            contact=ContactCardOut.of(result.contact) if result.contact is not None else None,
            candidates=[ContactCardOut.of(card) for card in result.candidates],
            hidden=result.hidden,
            open_tasks=[
                OpenTaskOut(task_id=t.task_id, title=t.title, status=t.status, due_at=t.due_at)
                for t in result.open_tasks
            ],
            open_tasks_total=result.open_tasks_total,
            calls=(
                CallsSummaryOut(
                    total=calls.total,
                    missed=calls.missed,
                    recent=[
                        RecentCallOut(
                            call_id=c.call_id,
                            started_at=c.started_at,
                            direction=c.direction,
                            disposition=c.disposition,
                            talk_seconds=c.talk_seconds,
                            employee_id=c.employee_id,
                        )
                        for c in calls.recent
                    ],
                )
                if calls is not None
                else None
            ),
            incomplete=result.incomplete,
        )


# --- errors --------------------------------------------------------------------------------------


def _location(field: str) -> tuple[str | int, ...]:
    """``("phones", 1, "number")`` from ``"phones[1].number"``."""
    parts: list[str | int] = []
    for piece in field.replace("]", "").split("."):
        name, *indexes = piece.split("[")
        if name:
            parts.append(name)
        parts += [int(index) for index in indexes if index.isdigit()]
    return tuple(parts)


def _raise(exc: ContactError, where: str = "body") -> NoReturn:
    """The HTTP answer of a service error."""
    if isinstance(exc, InvalidContact):
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": (where, *_location(exc.field)),
                    "msg": exc.message,
                    "input": None,
                }
            ]
        ) from None
    if isinstance(exc, ContactNotFound):
        headers = {"X-Merged-Into": exc.merged_into} if exc.merged_into else None
        raise HTTPException(status_code=404, detail=str(exc), headers=headers) from None
    if isinstance(exc, PhoneNotFound | FieldNotFound):
        raise HTTPException(status_code=404, detail=str(exc)) from None
    if isinstance(exc, DuplicateContacts):
        detail = DuplicatesDetail(
            message=str(exc),
            duplicates=[
                DuplicateOut(
                    contact_id=d.contact_id, kind=d.kind, name=d.name, number=d.number, visible=d.visible
                )
                for d in exc.duplicates
            ],
        )
        raise HTTPException(status_code=409, detail=detail.model_dump()) from None
    if isinstance(exc, StaleVersion | RequestReused):
        raise HTTPException(status_code=409, detail=str(exc)) from None
    if isinstance(exc, Forbidden):
        raise HTTPException(status_code=403, detail=str(exc)) from None
    raise HTTPException(status_code=400, detail=str(exc)) from None


_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No such contact, or not one you may see (merged: X-Merged-Into)"}
}
_DUPLICATES: dict[int | str, dict[str, Any]] = {
    409: {
        "model": DuplicatesErrorOut,
        "description": "Other contacts have the number (listed; send allow_duplicate=true to go on), "
        "or `version` is not the current one",
    }
}
_FORBIDDEN: dict[int | str, dict[str, Any]] = {403: {"model": ErrorOut, "description": "A right is missing"}}

AllowDuplicate = Annotated[
    bool, Query(description="Save even when other contacts have one of the numbers (no 409)")
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=100,
        description="A repeat with the same key returns the contact created the first time",
    ),
]


def contacts_router(service: ContactService, access: Access, lookup: NumberLookup | None = None) -> APIRouter:
    router = APIRouter(tags=["contacts"])
    # Defaults, not Annotated aliases: a local alias is not resolvable from the postponed annotations.
    signed_in = Depends(access.current)
    may_create = Depends(access.require("contact.create"))
    may_modify = Depends(access.require("contact.modify"))
    may_delete = Depends(access.require("contact.delete"))

    @router.get(
        PREFIX,
        summary="List contacts",
        description="The contacts you see, by name (or most recently changed first with `sort=-updated`), "
        "one page at a time: pass `next_cursor` back as `cursor`. `q` is part of a name, or a number "
        "(any format; matched by its last digits).",
        responses={400: {"model": ErrorOut, "description": "The cursor is not one this service issued"}},
    )
    async def list_contacts(
        user: Principal = signed_in,
        q: Annotated[str | None, Query(max_length=200, description="Part of the name, or a number")] = None,
        kind: Annotated[ContactKind | None, Query()] = None,
        company_id: Annotated[
            str | None, Query(max_length=64, description="The persons of a company")
        ] = None,
        responsible_employee_id: Annotated[str | None, Query(max_length=64)] = None,
        owner_employee_id: Annotated[str | None, Query(max_length=64)] = None,
        email: Annotated[
            str | None, Query(max_length=320, description="An e-mail address (any case)")
        ] = None,
        sort: Annotated[ContactSort, Query()] = "name",
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        cursor: Annotated[str | None, Query(max_length=1024)] = None,
        include_total: Annotated[bool, Query(description="Also count the matching contacts")] = False,
    ) -> Page[ContactOut]:
        query = ContactQuery(
            q=q,
            kind=kind,
            company_id=company_id,
            responsible_employee_id=responsible_employee_id,
            owner_employee_id=owner_employee_id,
            email=email,
            sort=sort,
            limit=limit,
            cursor=cursor or None,
            include_total=include_total,
        )
        try:
            return await service.list_contacts(user, query)
        except InvalidCursor as exc:
            raise HTTPException(status_code=400, detail=f"cursor: {exc}") from None

    @router.post(
        PREFIX,
        status_code=201,
        summary="Create a contact",
        description="A company or a person with numbers in any usual format (kept as typed and as "
        "E.164; a number that does not parse is kept and flagged `valid: false`).",
        responses={**_DUPLICATES, **_FORBIDDEN},
    )
    async def create_contact(
        body: ContactIn,
        response: Response,
        user: Principal = may_create,
        allow_duplicate: AllowDuplicate = False,
        idempotency_key: IdempotencyKey = None,
    ) -> ContactOut:
        try:
            out = await service.create(
                user, body, allow_duplicate=allow_duplicate, request_id=idempotency_key
            )
        except ContactError as exc:
            _raise(exc)
        response.headers["Location"] = f"{PREFIX}/{out.id}"
        return out

    @router.post(
        f"{PREFIX}/from-number",
        status_code=201,
        summary="Create a contact from a caller's number",
        description="One call from the screen pop of an unknown number: the number pre-filled, the name "
        "defaulting to it, and you responsible unless someone else is named.",
        responses={**_DUPLICATES, **_FORBIDDEN},
    )
    async def create_from_number(
        body: FromNumberIn,
        response: Response,
        user: Principal = may_create,
        allow_duplicate: AllowDuplicate = False,
        idempotency_key: IdempotencyKey = None,
    ) -> ContactOut:
        try:
            out = await service.create_from_number(
                user, body, allow_duplicate=allow_duplicate, request_id=idempotency_key
            )
        except ContactError as exc:
            _raise(exc)
        response.headers["Location"] = f"{PREFIX}/{out.id}"
        return out

    if lookup is not None:
        number_lookup = lookup

        @router.get(
            f"{PREFIX}/lookup",
            summary="Who has this number (screen pop)",
            description="Any format. The exact number first, then its last digits; the card of the "
            "contact with the responsible employee, open tasks and last calls.",
        )
        async def lookup_number(
            number: Annotated[str, Query(min_length=1, max_length=200)],
            user: Principal = signed_in,
            names_only: Annotated[bool, Query(description="The card only, without details")] = False,
            max_candidates: Annotated[int, Query(ge=1, le=MAX_CANDIDATES)] = 10,
        ) -> LookupOut:
            result = await number_lookup.lookup(
                number, principal=user, names_only=names_only, max_candidates=max_candidates
            )
            return LookupOut.of(result)

    @router.get(
        f"{PREFIX}/duplicates",
        summary="Contacts that share a number or an e-mail",
        description="Groups of the contacts you see that share a number (`by=number`) or an e-mail "
        "(`by=email`): candidates to merge.",
        responses={400: {"model": ErrorOut, "description": "The cursor is not one this service issued"}},
    )
    async def duplicates(
        user: Principal = signed_in,
        by: Annotated[DuplicateKey, Query()] = "number",
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        cursor: Annotated[str | None, Query(max_length=1024)] = None,
    ) -> Page[DuplicateGroupOut]:
        try:
            return await service.duplicate_groups(user, by=by, limit=limit, cursor=cursor or None)
        except InvalidCursor as exc:
            raise HTTPException(status_code=400, detail=f"cursor: {exc}") from None

    @router.get(f"{PREFIX}/{{contact_id}}", summary="One contact", responses=_NOT_FOUND)
    async def get_contact(contact_id: str, user: Principal = signed_in) -> ContactOut:
        try:
            return await service.get(user, contact_id)
        except ContactError as exc:
            _raise(exc)

    @router.patch(
        f"{PREFIX}/{{contact_id}}",
        summary="Change a contact",
        description="Only the fields sent change; null clears one. `phones` and `emails` replace the "
        "lists (a number kept keeps its id); `custom_fields` changes the keys it names (null removes "
        "one). Send `version` to be sure nobody changed the contact since you read it.",
        responses={**_NOT_FOUND, **_DUPLICATES, **_FORBIDDEN},
    )
    async def update_contact(
        contact_id: str,
        body: ContactPatch,
        user: Principal = may_modify,
        allow_duplicate: AllowDuplicate = False,
    ) -> ContactOut:
        try:
            return await service.update(user, contact_id, body, allow_duplicate=allow_duplicate)
        except ContactError as exc:
            _raise(exc)

    @router.delete(
        f"{PREFIX}/{{contact_id}}",
        status_code=204,
        summary="Delete a contact",
        description="A company's persons stay, without a company.",
        responses={**_NOT_FOUND, **_FORBIDDEN, 409: {"model": ErrorOut, "description": "Stale version"}},
    )
    async def delete_contact(
        contact_id: str,
        user: Principal = may_delete,
        version: Annotated[int | None, Query(ge=1, description="409 when the contact changed since")] = None,
    ) -> Response:
        try:
            await service.delete(user, contact_id, expected_version=version)
        except ContactError as exc:
            _raise(exc, "query")
        return Response(status_code=204)

    @router.post(
        f"{PREFIX}/{{contact_id}}/phones",
        summary="Add a number to a contact",
        description="For a call from a number the contact did not have yet. A number the contact has "
        "already changes nothing.",
        responses={**_NOT_FOUND, **_DUPLICATES, **_FORBIDDEN},
    )
    async def add_phone(
        contact_id: str,
        body: PhoneIn,
        user: Principal = may_modify,
        allow_duplicate: AllowDuplicate = False,
        version: Annotated[int | None, Query(ge=1, description="409 when the contact changed since")] = None,
    ) -> ContactOut:
        try:
            return await service.add_phone(
                user, contact_id, body, allow_duplicate=allow_duplicate, expected_version=version
            )
        except ContactError as exc:
            _raise(exc)

    @router.delete(
        f"{PREFIX}/{{contact_id}}/phones/{{phone_id}}",
        summary="Remove a number from a contact",
        responses={**_NOT_FOUND, **_FORBIDDEN},
    )
    async def remove_phone(contact_id: str, phone_id: str, user: Principal = may_modify) -> ContactOut:
        try:
            return await service.remove_phone(user, contact_id, phone_id)
        except ContactError as exc:
            _raise(exc)

    @router.post(
        f"{PREFIX}/{{contact_id}}/merge",
        summary="Merge duplicates into this contact",
        description="Numbers, e-mails and custom fields are united, empty fields filled from the others, "
        "notes appended and a company's persons moved here; the others are deleted and point here "
        "(their calls follow). Needs both `contact.modify` and `contact.delete`.",
        responses={**_NOT_FOUND, **_FORBIDDEN, 409: {"model": ErrorOut, "description": "Stale version"}},
    )
    async def merge(contact_id: str, body: MergeIn, user: Principal = may_delete) -> ContactOut:
        if not user.has("contact.modify"):
            raise HTTPException(status_code=403, detail="the right 'contact.modify' is needed")
        try:
            return await service.merge(user, contact_id, body.contact_ids, expected_version=body.version)
        except ContactError as exc:
            _raise(exc)

    @router.get(
        f"{PREFIX}/{{contact_id}}/history",
        summary="The operation log of a contact",
        responses=_NOT_FOUND,
    )
    async def history(contact_id: str, user: Principal = signed_in) -> list[HistoryEntryOut]:
        try:
            entries = await service.history(user, contact_id)
        except ContactError as exc:
            _raise(exc)
        return [HistoryEntryOut.of(entry) for entry in entries]

    # --- custom fields -------------------------------------------------------------------------------

    @router.get("/contact-fields", summary="The custom fields of contacts", tags=["contacts"])
    async def list_fields(user: Principal = signed_in) -> list[FieldDefinitionOut]:
        return await service.list_fields()

    @router.put(
        "/contact-fields/{name}",
        summary="Define a custom field (admins)",
        description="Creates it (201) or changes it (200). Values contacts hold already are not checked "
        "again.",
        responses={**_FORBIDDEN, 409: {"model": ErrorOut, "description": "Stale version"}},
    )
    async def put_field(
        name: str,
        body: FieldDefinitionIn,
        response: Response,
        user: Principal = signed_in,
        version: Annotated[int | None, Query(ge=1)] = None,
    ) -> FieldDefinitionOut:
        try:
            out, created = await service.put_field(user, name, body, expected_version=version)
        except ContactError as exc:
            _raise(exc, "path" if isinstance(exc, InvalidContact) and exc.field == "name" else "body")
        response.status_code = 201 if created else 200
        return out

    @router.delete(
        "/contact-fields/{name}",
        status_code=204,
        summary="Remove a custom field (admins)",
        description="Values contacts hold stay, no longer checked.",
        responses={**_FORBIDDEN, 404: {"model": ErrorOut, "description": "No such field"}},
    )
    async def delete_field(name: str, user: Principal = signed_in) -> Response:
        try:
            await service.delete_field(user, name)
        except ContactError as exc:
            _raise(exc)
        return Response(status_code=204)

    return router


__all__ = ["LookupOut", "contacts_router"]
