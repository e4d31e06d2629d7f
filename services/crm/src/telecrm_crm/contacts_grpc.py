"""gRPC API of contacts: the ``telecrm.crm.v1.Contacts`` servicer (look-up, a contact, creating one).

Other services call it on their own behalf (no user token): they see every contact. Deadlines are
honoured: the look-up gets the time the client has left (less a little to answer), leaves out the
details that do not fit (``incomplete``) and ends with DEADLINE_EXCEEDED when even the contact could
not be found in time.
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct
from pydantic import ValidationError

from telecrm.crm.v1 import contacts_pb2, contacts_pb2_grpc
from telecrm_common.timestamps import timestamp_message
from telecrm_crm.contacts import (
    ContactError,
    ContactIn,
    ContactNotFound,
    ContactOut,
    ContactService,
    DuplicateContacts,
    InvalidContact,
    RequestReused,
    StaleVersion,
    system_principal,
)
from telecrm_crm.lookup import DEFAULT_MAX_CANDIDATES, MAX_CANDIDATES, Card, LookupResult, NumberLookup
from telecrm_crm.phones import ParsedPhone, display, parse_phone

SERVICE_NAME = contacts_pb2.DESCRIPTOR.services_by_name["Contacts"].full_name
ANSWER_MARGIN = 0.003  # seconds kept from the client's deadline to send the answer
MATCH_VALUES = {
    "none": contacts_pb2.MATCH_KIND_NONE,
    "exact": contacts_pb2.MATCH_KIND_EXACT,
    "suffix": contacts_pb2.MATCH_KIND_SUFFIX,
    "ambiguous": contacts_pb2.MATCH_KIND_AMBIGUOUS,
}


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("context.abort returned")  # it raises; this tells the type checker


def _struct(values: dict[str, Any]) -> Struct:
    struct = Struct()
    struct.update(values)
    return struct


def card_message(card: Card) -> contacts_pb2.ContactCard:
    message = contacts_pb2.ContactCard(
        contact_id=card.contact_id,
        kind=card.kind,
        name=card.name,
        company_id=card.company_id or "",
        company_name=card.company_name or "",
        job_title=card.job_title or "",
        responsible_employee_id=card.responsible_employee_id or "",
        responsible_employee_name=card.responsible_employee_name or "",
        responsible_extension=card.responsible_extension or "",
        version=card.version,
    )
    phone = card.phone
    if phone is not None:
        message.phone.CopyFrom(
            contacts_pb2.PhoneRecord(
                id=phone.id,
                number=phone.number,
                e164=phone.e164 or "",
                extension=phone.extension or "",
                kind=phone.kind,
                valid=phone.valid,
                display=display(
                    ParsedPhone(
                        raw=phone.number,
                        e164=phone.e164,
                        extension=phone.extension,
                        valid=phone.valid,
                        digits="",
                    )
                ),
            )
        )
    return message


def lookup_message(result: LookupResult) -> contacts_pb2.LookupNumberResponse:
    response = contacts_pb2.LookupNumberResponse(
        match=MATCH_VALUES[result.match],
        e164=result.e164 or "",
        candidates=[card_message(card) for card in result.candidates],
        open_tasks=[
            contacts_pb2.OpenTask(
                task_id=task.task_id,
                title=task.title,
                status=task.status,
                due_at=timestamp_message(task.due_at) if task.due_at is not None else None,
            )
            for task in result.open_tasks
        ],
        open_tasks_total=result.open_tasks_total,
        incomplete=result.incomplete,
    )
    if result.contact is not None:
        response.contact.CopyFrom(card_message(result.contact))
    if result.calls is not None:
        response.calls.CopyFrom(
            contacts_pb2.CallsSummary(
                total=result.calls.total,
                missed=result.calls.missed,
                recent=[
                    contacts_pb2.RecentCall(
                        call_id=call.call_id,
                        started_at=timestamp_message(call.started_at),
                        direction=call.direction,
                        disposition=call.disposition,
                        talk_seconds=call.talk_seconds,
                        employee_id=call.employee_id or "",
                    )
                    for call in result.calls.recent
                ],
            )
        )
    return response


def contact_record(contact: ContactOut) -> contacts_pb2.ContactRecord:
    return contacts_pb2.ContactRecord(
        contact_id=contact.id,
        kind=contact.kind,
        name=contact.name,
        job_title=contact.job_title or "",
        tax_id=contact.tax_id or "",
        company_id=contact.company_id or "",
        company_name=contact.company_name or "",
        phones=[
            contacts_pb2.PhoneRecord(
                id=phone.id,
                number=phone.number,
                e164=phone.e164 or "",
                extension=phone.extension or "",
                kind=phone.kind,
                valid=phone.valid,
                display=phone.display,
            )
            for phone in contact.phones
        ],
        emails=contact.emails,
        address=contact.address or "",
        notes=contact.notes or "",
        responsible_employee_id=contact.responsible_employee_id or "",
        owner_employee_id=contact.owner_employee_id or "",
        owner_team_id=contact.owner_team_id or "",
        custom_fields=_struct(contact.custom_fields),
        version=contact.version,
        created_at=timestamp_message(contact.created_at),
        updated_at=timestamp_message(contact.updated_at),
    )


def _path(location: tuple[int | str, ...]) -> str:
    """``phones[0].kind`` from pydantic's ``("phones", 0, "kind")``."""
    out = ""
    for part in location:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _validation_message(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = _path(error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


class ContactsServicer(contacts_pb2_grpc.ContactsServicer):
    """``telecrm.crm.v1.Contacts`` over :class:`ContactService` and :class:`NumberLookup`."""

    def __init__(self, service: ContactService, lookup: NumberLookup) -> None:
        self._service = service
        self._lookup = lookup

    async def LookupNumber(
        self, request: contacts_pb2.LookupNumberRequest, context: grpc.aio.ServicerContext
    ) -> contacts_pb2.LookupNumberResponse:
        if not request.number.strip():
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "number: required")
        if len(request.number) > 200:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "number: at most 200 characters")
        remaining = context.time_remaining()
        timeout = None if remaining is None else max(remaining - ANSWER_MARGIN, 0.0)
        try:
            result = await self._lookup.lookup(
                request.number,
                names_only=request.names_only,
                timeout=timeout,
                max_candidates=min(request.max_candidates or DEFAULT_MAX_CANDIDATES, MAX_CANDIDATES),
            )
        except TimeoutError:
            await _abort(context, grpc.StatusCode.DEADLINE_EXCEEDED, "the look-up did not finish in time")
        return lookup_message(result)

    async def GetContact(
        self, request: contacts_pb2.GetContactRequest, context: grpc.aio.ServicerContext
    ) -> contacts_pb2.ContactRecord:
        if not request.contact_id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "contact_id: required")
        try:
            contact = await self._service.get_any(request.contact_id)
        except ContactNotFound as exc:
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        return contact_record(contact)

    async def CreateContact(
        self, request: contacts_pb2.CreateContactRequest, context: grpc.aio.ServicerContext
    ) -> contacts_pb2.ContactRecord:
        """A new contact; an empty name is the first number written for people, and the responsible
        employee defaults to ``created_by_employee_id`` when the installation auto-assigns them."""
        service = self._service
        employee = request.created_by_employee_id.strip() or None
        actor = system_principal("grpc", employee_id=employee)
        name = request.name
        if not name.strip() and request.phones:
            first = request.phones[0]
            name = display(parse_phone(first.number, service.region, extension=first.extension or None))
        responsible = request.responsible_employee_id or None
        if responsible is None and service.auto_responsible:
            responsible = employee
        values: dict[str, Any] = {
            "kind": request.kind or "person",
            "name": name,
            "company_id": request.company_id or None,
            "phones": [
                {"number": p.number, "kind": p.kind or "work", "extension": p.extension or None}
                for p in request.phones
            ],
            "emails": list(request.emails),
            "address": request.address or None,
            "notes": request.notes or None,
            "responsible_employee_id": responsible,
            "job_title": request.job_title or None,
            "tax_id": request.tax_id or None,
            "custom_fields": json_format.MessageToDict(request.custom_fields),
        }
        if employee is not None or request.owner_team_id:
            values["owner_employee_id"] = employee
            values["owner_team_id"] = request.owner_team_id or None
        try:
            data = ContactIn.model_validate(values)
        except ValidationError as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, _validation_message(exc))
        try:
            contact = await service.create(
                actor,
                data,
                allow_duplicate=request.allow_duplicate,
                request_id=request.request_id or None,
            )
        except InvalidContact as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except DuplicateContacts as exc:
            named = ", ".join(f"{d.contact_id} ({d.name}, {d.number})" for d in exc.duplicates)
            await _abort(context, grpc.StatusCode.ALREADY_EXISTS, f"{exc} - {named}")
        except (RequestReused, StaleVersion) as exc:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except ContactNotFound as exc:
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        except ContactError as exc:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return contact_record(contact)


def add_to_server(server: grpc.aio.Server, service: ContactService, lookup: NumberLookup) -> None:
    contacts_pb2_grpc.add_ContactsServicer_to_server(ContactsServicer(service, lookup), server)


__all__ = ["SERVICE_NAME", "ContactsServicer", "add_to_server", "card_message", "lookup_message"]
