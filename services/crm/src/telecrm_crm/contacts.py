"""Contacts: companies and persons with their phones, e-mails and custom fields, on one service layer.

Why it is built this way:

- Every number is kept as typed and as E.164 (:mod:`telecrm_crm.phones`); a number that does not parse
  is stored and flagged invalid, never refused, because an agent's note of a number is worth keeping.
- A number another contact has already is a likely duplicate: creating or editing a contact with one
  is refused (:class:`DuplicateContacts`, 409 listing them) unless the caller says ``allow_duplicate``.
  Contacts of one company (the company and its persons) may share a number (a switchboard) without
  that counting. On PostgreSQL the numbers being written are locked for the transaction, so two agents
  creating the same caller at once cannot both pass the check. ``GET /contacts/duplicates`` reports
  the numbers and e-mails several contacts share; :meth:`ContactService.merge` unites them.
- Every create/update/delete publishes ``crm.contact.created|updated|deleted`` (the ``ContactEvent``
  of the call log's read model) through the outbox in the transaction of the change, with the
  contact's ``version``, which grows with every change: the call log keeps the highest it saw. A
  merged contact is deleted with ``merged_into`` (its calls follow it there). A renamed or deleted
  company re-publishes its persons, whose events carry the company's name.
- ``version`` is also the optimistic lock: a write naming an older one changes nothing (409).
- Visibility: a contact is seen by its owner employee, their team as the user's visibility says
  (:func:`telecrm_crm.access.visible_filter`), and its responsible employee; a contact with neither
  owner employee nor owner team is the company's shared address book, seen by everyone. Contacts a user
  may not see answer 404, as if they did not exist.
- Creating a contact from an unknown caller's number is one call (:meth:`create_from_number`): the
  number pre-filled, the name defaulting to the number, and (Planfix's "auto-assign responsible"
  automation, on by default) the creating user's employee responsible when none is given.
- Nothing here knows HTTP or gRPC: errors are :class:`ContactError` subclasses the APIs translate.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import ColumnElement, and_, delete, false, func, or_, select, text, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from telecrm.crm.v1 import directory_events_pb2 as directory_pb
from telecrm_common.auth import ALL_RIGHTS, Principal, Visibility
from telecrm_common.db import Database, utcnow
from telecrm_common.errors import TelecrmError
from telecrm_common.events import CONTACT_SUBJECTS
from telecrm_common.timestamps import timestamp_message
from telecrm_crm import outbox, paging
from telecrm_crm.access import visible_filter
from telecrm_crm.audit import AuditLog, diff
from telecrm_crm.contacts_models import (
    FIELD_TYPES,
    Contact,
    ContactEmail,
    ContactFieldDefinition,
    ContactPhone,
)
from telecrm_crm.models import AuditEntry
from telecrm_crm.phones import (
    MAX_EXTENSION_LENGTH,
    MAX_RAW_LENGTH,
    ParsedPhone,
    display,
    is_region,
    parse_phone,
    suffix_range,
)

log = logging.getLogger(__name__)

AUDIT_KIND = "contact"
MAX_NAME_LENGTH = 300
MAX_TITLE_LENGTH = 200
MAX_TAX_ID_LENGTH = 64
MAX_ADDRESS_LENGTH = 2000
MAX_NOTES_LENGTH = 20_000
MAX_ID_LENGTH = 64
MAX_EMAIL_LENGTH = 320
MAX_PHONES = 20
MAX_EMAILS = 20
MAX_CUSTOM_FIELDS = 100
MAX_TEXT_FIELD_LENGTH = 2000
MAX_CHOICES = 200
MAX_MERGE = 20
MAX_REQUEST_ID_LENGTH = 100
DUPLICATES_LISTED = 20  # contacts named in one duplicate answer

ContactKind = Literal["person", "company"]
PhoneKind = Literal["mobile", "work", "home", "fax", "other"]
FieldType = Literal["text", "number", "date", "choice"]
ContactSort = Literal["name", "-updated"]
DuplicateKey = Literal["number", "email"]

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_EXTENSION_DIGITS = re.compile(r"[0-9]{1,16}")
_CURSOR_DOMAINS = {"name": "contacts:name", "-updated": "contacts:updated"}
_DUPLICATES_CURSOR = "contacts:duplicates"


# --- errors --------------------------------------------------------------------------------------------


class ContactError(TelecrmError):
    """Base of the errors of contacts."""


class ContactNotFound(ContactError):
    """No such contact, or not one the asker may see; ``merged_into`` when it was merged away."""

    def __init__(self, contact_id: str, merged_into: str | None = None) -> None:
        message = f"contact {contact_id} not found"
        if merged_into:
            message = f"contact {contact_id} was merged into {merged_into}"
        super().__init__(message)
        self.contact_id = contact_id
        self.merged_into = merged_into


class FieldNotFound(ContactError):
    """No custom field definition of that name."""


class PhoneNotFound(ContactError):
    """The contact has no phone of that id."""


class InvalidContact(ContactError):
    """A value is refused; ``field`` names it as the client sent it (``phones[1].number``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class StaleVersion(ContactError):
    """The write named a version the contact has moved on from; nothing was changed."""

    def __init__(self, current: int) -> None:
        super().__init__(f"the contact was changed meanwhile: its version is now {current}")
        self.current = current


class Forbidden(ContactError):
    """The asker may not do this (beyond what the API's rights checks already refuse)."""


class RequestReused(ContactError):
    """An idempotency key another user already used for a creation."""


@dataclass(frozen=True)
class Duplicate:
    """Another contact with one of the numbers; its name only when the asker may see it."""

    contact_id: str
    kind: str
    name: str | None
    number: str  # the shared number: E.164, or the digits of a number that does not parse
    visible: bool


class DuplicateContacts(ContactError):
    """Other contacts have these numbers; nothing was changed (send ``allow_duplicate`` to go on)."""

    def __init__(self, duplicates: Sequence[Duplicate]) -> None:
        numbers = sorted({d.number for d in duplicates})
        super().__init__(
            f"{len({d.contact_id for d in duplicates})} other contact(s) have the number(s) "
            f"{', '.join(numbers)}: merge them, or send allow_duplicate"
        )
        self.duplicates = list(duplicates)


# --- inputs --------------------------------------------------------------------------------------------


def _clean_optional(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


class PhoneIn(BaseModel):
    """A number as typed: any usual format, with an extension after "ext.", "доб.", "вн."... or apart."""

    model_config = ConfigDict(extra="forbid")

    number: str = Field(
        min_length=1, max_length=MAX_RAW_LENGTH, examples=["+7 (499) 369-04-39 доб. 12", "0888 123 456"]
    )
    kind: PhoneKind = "work"
    extension: str | None = Field(default=None, max_length=MAX_EXTENSION_LENGTH, description="Digits")

    @field_validator("number")
    @classmethod
    def _number(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("extension")
    @classmethod
    def _extension(cls, value: str | None) -> str | None:
        value = _clean_optional(value)
        if value is not None and not _EXTENSION_DIGITS.fullmatch(value):
            raise ValueError("must be 1 to 16 digits")
        return value


def _check_email(value: str) -> str:
    value = value.strip()
    if len(value) > MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(value):
        raise ValueError(f"{value!r} is not an e-mail address")
    return value


def _check_name(value: str) -> str:
    value = " ".join(value.split())
    if not value:
        raise ValueError("must not be blank")
    return value


Email = Annotated[str, AfterValidator(_check_email)]


class _ContactFields(BaseModel):
    """Fields common to a new contact and a change of one."""

    model_config = ConfigDict(extra="forbid")

    job_title: str | None = Field(default=None, max_length=MAX_TITLE_LENGTH, description="Persons")
    tax_id: str | None = Field(
        default=None, max_length=MAX_TAX_ID_LENGTH, description="Companies: VAT or registration number"
    )
    company_id: str | None = Field(
        default=None, max_length=MAX_ID_LENGTH, description="A person's company (a company contact)"
    )
    address: str | None = Field(default=None, max_length=MAX_ADDRESS_LENGTH)
    notes: str | None = Field(default=None, max_length=MAX_NOTES_LENGTH)
    responsible_employee_id: str | None = Field(
        default=None, max_length=MAX_ID_LENGTH, description="The employee who looks after the contact"
    )
    owner_employee_id: str | None = Field(
        default=None, max_length=MAX_ID_LENGTH, description="Whose contact it is (who sees it)"
    )
    owner_team_id: str | None = Field(
        default=None, max_length=MAX_ID_LENGTH, description="The team that sees it as well"
    )

    @field_validator(
        "job_title",
        "tax_id",
        "company_id",
        "address",
        "notes",
        "responsible_employee_id",
        "owner_employee_id",
        "owner_team_id",
    )
    @classmethod
    def _optional_text(cls, value: str | None) -> str | None:
        return _clean_optional(value)


class ContactIn(_ContactFields):
    """A new company or person."""

    kind: ContactKind = "person"
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH, description="Full name, or company name")
    phones: list[PhoneIn] = Field(default_factory=list, max_length=MAX_PHONES)
    emails: list[Email] = Field(default_factory=list, max_length=MAX_EMAILS)
    custom_fields: dict[str, Any] = Field(
        default_factory=dict, description="Values of the defined custom fields, by field name"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value)


class ContactPatch(_ContactFields):
    """The fields to change; those left out stay, null clears. ``phones`` and ``emails`` replace the
    lists; ``custom_fields`` changes the keys it names (null removes one)."""

    kind: ContactKind | None = None
    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)
    phones: list[PhoneIn] | None = Field(default=None, max_length=MAX_PHONES)
    emails: list[Email] | None = Field(default=None, max_length=MAX_EMAILS)
    custom_fields: dict[str, Any] | None = None
    version: int | None = Field(
        default=None, ge=1, description="The version you edited: 409 when the contact changed since"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _check_name(value)


class FromNumberIn(BaseModel):
    """A contact for a number that called (or was called) and is not known yet."""

    model_config = ConfigDict(extra="forbid")

    number: str = Field(min_length=1, max_length=MAX_RAW_LENGTH, description="As the call presented it")
    phone_kind: PhoneKind = "mobile"
    kind: ContactKind = "person"
    name: str | None = Field(
        default=None, max_length=MAX_NAME_LENGTH, description="Defaults to the number, written for people"
    )
    company_id: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    responsible_employee_id: str | None = Field(
        default=None,
        max_length=MAX_ID_LENGTH,
        description="Defaults to your own employee (the auto-assign automation)",
    )
    emails: list[Email] = Field(default_factory=list, max_length=MAX_EMAILS)
    notes: str | None = Field(default=None, max_length=MAX_NOTES_LENGTH)

    @field_validator("number")
    @classmethod
    def _number(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("name", "company_id", "responsible_employee_id", "notes")
    @classmethod
    def _optional(cls, value: str | None) -> str | None:
        return _clean_optional(value)


class FieldDefinitionIn(BaseModel):
    """A custom field of contacts."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(min_length=1, max_length=200)
    type: FieldType = "text"
    choices: list[str] = Field(default_factory=list, max_length=MAX_CHOICES, description="For `choice`")
    position: int = Field(default=0, ge=0, le=10_000)

    @field_validator("label")
    @classmethod
    def _label(cls, value: str) -> str:
        return _check_name(value)

    @field_validator("choices")
    @classmethod
    def _choices(cls, values: list[str]) -> list[str]:
        cleaned = [" ".join(value.split()) for value in values]
        if any(not value or len(value) > 200 for value in cleaned):
            raise ValueError("each choice is 1 to 200 characters")
        if len(set(cleaned)) != len(cleaned):
            raise ValueError("choices must differ")
        return cleaned


# --- outputs -------------------------------------------------------------------------------------------


class PhoneOut(BaseModel):
    id: str
    number: str = Field(description="As typed")
    e164: str | None = Field(description="Normalized; null when the number could not be parsed")
    extension: str | None
    kind: PhoneKind
    valid: bool = Field(description="False: kept as typed, but not a number of an assigned range")
    display: str = Field(description="Written for people: international format when parsed")


class ContactOut(BaseModel):
    id: str
    kind: ContactKind
    name: str
    job_title: str | None
    tax_id: str | None
    company_id: str | None
    company_name: str | None
    phones: list[PhoneOut]
    emails: list[str]
    address: str | None
    notes: str | None
    responsible_employee_id: str | None
    owner_employee_id: str | None
    owner_team_id: str | None
    custom_fields: dict[str, Any]
    version: int = Field(description="Increases with every change; send it back to edit safely")
    created_at: datetime
    updated_at: datetime
    created_by: str | None


class ContactBrief(BaseModel):
    id: str
    kind: ContactKind
    name: str | None = Field(description="Null when you may not see the contact")
    company_id: str | None
    visible: bool


class DuplicateGroupOut(BaseModel):
    by: DuplicateKey
    key: str = Field(description="The shared E.164 number or lowercase e-mail")
    contacts: list[ContactBrief]


class FieldDefinitionOut(BaseModel):
    name: str
    label: str
    type: FieldType
    choices: list[str]
    position: int
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ContactQuery:
    q: str | None = None  # part of the name, or a number (its last digits)
    kind: ContactKind | None = None
    company_id: str | None = None
    responsible_employee_id: str | None = None
    owner_employee_id: str | None = None
    email: str | None = None
    sort: ContactSort = "name"
    limit: int = paging.DEFAULT_LIMIT
    cursor: str | None = None
    include_total: bool = False


# --- helpers -------------------------------------------------------------------------------------------


def system_principal(component: str, employee_id: str | None = None) -> Principal:
    """The actor of changes another service asks for (over gRPC): sees and may do all."""
    return Principal(
        subject=f"system:{component}",
        employee_id=employee_id,
        name=component,
        rights=ALL_RIGHTS,
        visibility=Visibility.ALL,
    )


def _new_id() -> str:
    return str(uuid.uuid4())


def may_see(principal: Principal, contact: Contact) -> bool:
    """Whether ``principal`` sees ``contact`` (see the module's docstring)."""
    if principal.sees_all:
        return True
    if contact.owner_employee_id is None and contact.owner_team_id is None:
        return True
    if principal.employee_id is not None and contact.responsible_employee_id == principal.employee_id:
        return True
    return principal.may_see(contact.owner_employee_id, contact.owner_team_id)


def may_see_owner(
    principal: Principal, owner_employee_id: str | None, owner_team_id: str | None, responsible: str | None
) -> bool:
    if principal.sees_all or (owner_employee_id is None and owner_team_id is None):
        return True
    if principal.employee_id is not None and responsible == principal.employee_id:
        return True
    return principal.may_see(owner_employee_id, owner_team_id)


def visible_contacts(principal: Principal) -> ColumnElement[bool]:
    """The WHERE clause of the contacts ``principal`` sees."""
    if principal.sees_all:
        return true()
    clauses = [
        visible_filter(principal, Contact.owner_employee_id, Contact.owner_team_id),
        and_(Contact.owner_employee_id.is_(None), Contact.owner_team_id.is_(None)),
    ]
    if principal.employee_id is not None:
        clauses.append(Contact.responsible_employee_id == principal.employee_id)
    return or_(*clauses)


def _like(column: Any, value: str) -> ColumnElement[bool]:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(f"%{escaped}%", escape="\\")  # type: ignore[no-any-return]


@dataclass
class _Loaded:
    """A contact with its children, as the service works on it."""

    contact: Contact
    phones: list[ContactPhone] = field(default_factory=list)
    emails: list[ContactEmail] = field(default_factory=list)
    company_name: str | None = None


def _phone_kind(value: str) -> PhoneKind:
    return value if value in ("mobile", "work", "home", "fax", "other") else "other"  # type: ignore[return-value]


def _phone_out(phone: ContactPhone) -> PhoneOut:
    parsed = ParsedPhone(
        raw=phone.raw, e164=phone.e164, extension=phone.extension, valid=phone.valid, digits=""
    )
    return PhoneOut(
        id=phone.id,
        number=phone.raw,
        e164=phone.e164,
        extension=phone.extension,
        kind=_phone_kind(phone.kind),
        valid=phone.valid,
        display=display(parsed),
    )


def contact_out(loaded: _Loaded) -> ContactOut:
    contact = loaded.contact
    return ContactOut(
        id=contact.id,
        kind="company" if contact.kind == "company" else "person",
        name=contact.name,
        job_title=contact.job_title,
        tax_id=contact.tax_id,
        company_id=contact.company_id,
        company_name=loaded.company_name,
        phones=[_phone_out(phone) for phone in loaded.phones],
        emails=[email.email for email in loaded.emails],
        address=contact.address,
        notes=contact.notes,
        responsible_employee_id=contact.responsible_employee_id,
        owner_employee_id=contact.owner_employee_id,
        owner_team_id=contact.owner_team_id,
        custom_fields=dict(contact.custom_fields or {}),
        version=contact.version,
        created_at=contact.created_at,
        updated_at=contact.updated_at,
        created_by=contact.created_by,
    )


def contact_message(loaded: _Loaded) -> directory_pb.Contact:
    """The ``Contact`` of the bus events."""
    contact = loaded.contact
    return directory_pb.Contact(
        contact_id=contact.id,
        kind=contact.kind,
        name=contact.name,
        company_id=contact.company_id or "",
        company_name=loaded.company_name or "",
        phones=[
            directory_pb.ContactPhone(
                number=phone.raw,
                e164=phone.e164 or "",
                kind=phone.kind,
                extension=phone.extension or "",
                valid=phone.valid,
            )
            for phone in loaded.phones
        ],
        responsible_employee_id=contact.responsible_employee_id or "",
        emails=[email.email for email in loaded.emails],
        owner_employee_id=contact.owner_employee_id or "",
        owner_team_id=contact.owner_team_id or "",
    )


def _snapshot(loaded: _Loaded) -> dict[str, Any]:
    """The fields the operation log compares."""
    contact = loaded.contact
    return {
        "kind": contact.kind,
        "name": contact.name,
        "job_title": contact.job_title,
        "tax_id": contact.tax_id,
        "company_id": contact.company_id,
        "address": contact.address,
        "notes": contact.notes,
        "responsible_employee_id": contact.responsible_employee_id,
        "owner_employee_id": contact.owner_employee_id,
        "owner_team_id": contact.owner_team_id,
        "custom_fields": dict(contact.custom_fields or {}),
        "phones": [f"{p.raw} ({p.kind})" for p in loaded.phones],
        "emails": [e.email for e in loaded.emails],
    }


def _field_type(value: str) -> FieldType:
    return value if value in FIELD_TYPES else "text"  # type: ignore[return-value]


def field_definition_out(row: ContactFieldDefinition) -> FieldDefinitionOut:
    return FieldDefinitionOut(
        name=row.name,
        label=row.label,
        type=_field_type(row.type),
        choices=list(row.choices or []),
        position=row.position,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def check_custom_value(definition: ContactFieldDefinition, value: Any, where: str) -> Any:
    """``value`` as stored for ``definition``; raises InvalidContact naming ``where``."""
    kind = definition.type
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidContact(where, "must be a number")
        return value
    if not isinstance(value, str):
        raise InvalidContact(where, f"must be a {'date (YYYY-MM-DD)' if kind == 'date' else 'string'}")
    value = value.strip()
    if kind == "date":
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise InvalidContact(where, "must be a date (YYYY-MM-DD)") from None
    if kind == "choice":
        if value not in (definition.choices or []):
            raise InvalidContact(where, f"must be one of {', '.join(definition.choices or [])}")
        return value
    if len(value) > MAX_TEXT_FIELD_LENGTH:
        raise InvalidContact(where, f"must be at most {MAX_TEXT_FIELD_LENGTH} characters long")
    return value


# --- the service ---------------------------------------------------------------------------------------


class ContactService:
    """Contacts: create, read, list, change, delete, phones, duplicates, merge, custom fields.

    ``on_outbox`` is called after a commit that wrote events (it wakes the outbox publisher);
    ``on_change`` after every committed change of contacts or phones (the look-up's cache drops what
    it knows).
    """

    def __init__(
        self,
        db: Database,
        *,
        audit: AuditLog,
        cursor_secret: bytes,
        default_region: str = "BG",
        auto_responsible: bool = True,
        on_outbox: Callable[[], None] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if not is_region(default_region):
            raise ValueError(f"default_region {default_region!r} is not a region phonenumbers knows")
        self.db = db
        self.audit = audit
        self.region = default_region.upper()
        self.auto_responsible = auto_responsible
        self._secret = cursor_secret
        self._on_outbox = on_outbox
        self._on_change = on_change

    def _committed(self) -> None:
        if self._on_change is not None:
            self._on_change()
        if self._on_outbox is not None:
            self._on_outbox()

    # --- reading -------------------------------------------------------------------------------------

    async def _load(
        self, session: AsyncSession, actor: Principal, contact_id: str, *, lock: bool = False
    ) -> _Loaded:
        """The live contact the actor may see, or ContactNotFound."""
        statement = select(Contact).where(Contact.id == contact_id)
        if lock:
            statement = statement.with_for_update()
        contact = (await session.scalars(statement)).one_or_none() if len(contact_id) <= 64 else None
        if contact is None or not may_see(actor, contact):
            raise ContactNotFound(contact_id)
        if contact.deleted_at is not None:
            raise ContactNotFound(contact_id, contact.merged_into)
        return (await self._children(session, [contact]))[0]

    @staticmethod
    async def _children(session: AsyncSession, contacts: Sequence[Contact]) -> list[_Loaded]:
        """The contacts with their phones, e-mails and company names (three queries in all)."""
        if not contacts:
            return []
        ids = [contact.id for contact in contacts]
        loaded = {contact.id: _Loaded(contact) for contact in contacts}
        for phone in await session.scalars(
            select(ContactPhone)
            .where(ContactPhone.contact_id.in_(ids))
            .order_by(ContactPhone.contact_id, ContactPhone.position, ContactPhone.id)
        ):
            loaded[phone.contact_id].phones.append(phone)
        for email in await session.scalars(
            select(ContactEmail)
            .where(ContactEmail.contact_id.in_(ids))
            .order_by(ContactEmail.contact_id, ContactEmail.position, ContactEmail.id)
        ):
            loaded[email.contact_id].emails.append(email)
        company_ids = sorted({c.company_id for c in contacts if c.company_id})
        if company_ids:
            result = await session.execute(
                select(Contact.id, Contact.name).where(Contact.id.in_(company_ids))
            )
            names = {company_id: name for company_id, name in result}
            for item in loaded.values():
                if item.contact.company_id:
                    item.company_name = names.get(item.contact.company_id)
        return [loaded[contact_id] for contact_id in ids]

    async def get(self, actor: Principal, contact_id: str) -> ContactOut:
        async with self.db.session() as session:
            return contact_out(await self._load(session, actor, contact_id))

    async def get_any(self, contact_id: str) -> ContactOut:
        """A contact whoever owns it (other services, over gRPC)."""
        return await self.get(system_principal("grpc"), contact_id)

    async def history(self, actor: Principal, contact_id: str) -> Sequence[AuditEntry]:
        async with self.db.session() as session:
            contact = await session.get(Contact, contact_id)
            if contact is None or not may_see(actor, contact):
                raise ContactNotFound(contact_id)
            return await self.audit.history(session, AUDIT_KIND, contact_id)

    async def list_contacts(self, actor: Principal, query: ContactQuery) -> paging.Page[ContactOut]:
        limit = max(1, min(query.limit, paging.MAX_LIMIT))
        where: list[ColumnElement[bool]] = [Contact.deleted_at.is_(None), visible_contacts(actor)]
        if query.kind:
            where.append(Contact.kind == query.kind)
        if query.company_id:
            where.append(Contact.company_id == query.company_id)
        if query.responsible_employee_id:
            where.append(Contact.responsible_employee_id == query.responsible_employee_id)
        if query.owner_employee_id:
            where.append(Contact.owner_employee_id == query.owner_employee_id)
        if query.email:
            where.append(
                Contact.id.in_(
                    select(ContactEmail.contact_id).where(
                        ContactEmail.email_key == query.email.strip().lower()
                    )
                )
            )
        if query.q and query.q.strip():
            where.append(self._search(query.q.strip()))
        domain = _CURSOR_DOMAINS[query.sort]
        statement = select(Contact).where(*where)
        if query.sort == "name":
            order = (Contact.name_key, Contact.id)
            if query.cursor:
                key = paging.decode(self._secret, domain, query.cursor)
                if len(key) != 2 or not all(isinstance(part, str) for part in key):
                    raise paging.InvalidCursor("page cursor is malformed")
                statement = statement.where(
                    or_(Contact.name_key > key[0], and_(Contact.name_key == key[0], Contact.id > key[1]))
                )
            statement = statement.order_by(*order)
        else:
            if query.cursor:
                key = paging.decode(self._secret, domain, query.cursor)
                try:
                    after = datetime.fromisoformat(str(key[0]))
                    tie = str(key[1])
                except (ValueError, IndexError):
                    raise paging.InvalidCursor("page cursor is malformed") from None
                statement = statement.where(
                    or_(Contact.updated_at < after, and_(Contact.updated_at == after, Contact.id < tie))
                )
            statement = statement.order_by(Contact.updated_at.desc(), Contact.id.desc())
        async with self.db.session() as session:
            rows = list((await session.scalars(statement.limit(limit + 1))).all())
            more = len(rows) > limit
            rows = rows[:limit]
            items = [contact_out(item) for item in await self._children(session, rows)]
            total = None
            if query.include_total:
                total = int(
                    await session.scalar(select(func.count()).select_from(Contact).where(*where)) or 0
                )
        next_cursor = None
        if more and rows:
            last = rows[-1]
            key_values: list[Any] = (
                [last.name_key, last.id] if query.sort == "name" else [last.updated_at.isoformat(), last.id]
            )
            next_cursor = paging.encode(self._secret, domain, key_values)
        return paging.Page[ContactOut](items=items, next_cursor=next_cursor, total=total)

    def _search(self, text_query: str) -> ColumnElement[bool]:
        """A name part, or (mostly digits) a number: the contacts whose phones end with its digits."""
        digits = "".join(ch for ch in text_query if ch.isdigit())
        letters = any(ch.isalpha() for ch in text_query)
        if len(digits) >= 3 and not letters:
            parsed = parse_phone(text_query, self.region)
            number_digits = parsed.digits if parsed.e164 and len(digits) >= 7 else digits
            bounds = suffix_range(number_digits, len(number_digits))
            if bounds is None:
                return false()
            return Contact.id.in_(
                select(ContactPhone.contact_id).where(
                    ContactPhone.rdigits >= bounds[0], ContactPhone.rdigits < bounds[1]
                )
            )
        return _like(Contact.name_key, " ".join(text_query.split()).casefold())

    # --- validation ----------------------------------------------------------------------------------

    def _parse_phones(
        self, phones: Sequence[PhoneIn], field_name: str = "phones"
    ) -> list[tuple[PhoneIn, ParsedPhone]]:
        parsed: list[tuple[PhoneIn, ParsedPhone]] = []
        seen: set[tuple[str | None, str | None]] = set()
        for index, phone in enumerate(phones):
            result = parse_phone(phone.number, self.region, extension=phone.extension)
            key = (result.match_key or result.raw, result.extension)
            if key in seen:
                raise InvalidContact(f"{field_name}[{index}].number", "the same number is listed twice")
            seen.add(key)
            parsed.append((phone, result))
        return parsed

    @staticmethod
    def _emails(emails: Sequence[str], field_name: str = "emails") -> list[str]:
        seen: set[str] = set()
        out: list[str] = []
        for index, email in enumerate(emails):
            key = email.lower()
            if key in seen:
                raise InvalidContact(f"{field_name}[{index}]", "the same e-mail is listed twice")
            seen.add(key)
            out.append(email)
        return out

    @staticmethod
    async def _custom_fields(
        session: AsyncSession, current: Mapping[str, Any], changes: Mapping[str, Any], *, replace: bool
    ) -> dict[str, Any]:
        """The custom fields after ``changes`` (all of them when ``replace``), each checked against its
        definition; a null value removes a key."""
        if len(changes) > MAX_CUSTOM_FIELDS:
            raise InvalidContact("custom_fields", f"at most {MAX_CUSTOM_FIELDS} fields")
        result: dict[str, Any] = {} if replace else dict(current)
        if not changes:
            return result
        definitions = {
            row.name: row
            for row in await session.scalars(
                select(ContactFieldDefinition).where(ContactFieldDefinition.name.in_(sorted(changes)))
            )
        }
        for name, value in changes.items():
            where = f"custom_fields.{name}"
            if value is None:
                result.pop(name, None)
                continue
            definition = definitions.get(name)
            if definition is None:
                raise InvalidContact(where, "no such custom field (define it first)")
            result[name] = check_custom_value(definition, value, where)
        return result

    async def _check_company(
        self, session: AsyncSession, actor: Principal, company_id: str | None, kind: str, self_id: str | None
    ) -> Contact | None:
        if company_id is None:
            return None
        if kind != "person":
            raise InvalidContact("company_id", "only a person belongs to a company")
        if company_id == self_id:
            raise InvalidContact("company_id", "a contact cannot be its own company")
        company = await session.get(Contact, company_id)
        if company is None or company.deleted_at is not None or not may_see(actor, company):
            raise InvalidContact("company_id", f"no company {company_id}")
        if company.kind != "company":
            raise InvalidContact("company_id", f"{company_id} is a person, not a company")
        return company

    @staticmethod
    def _check_owner(
        actor: Principal, owner_employee_id: str | None, owner_team_id: str | None, responsible: str | None
    ) -> None:
        if not may_see_owner(actor, owner_employee_id, owner_team_id, responsible):
            field_name = "owner_team_id" if owner_team_id is not None else "owner_employee_id"
            raise InvalidContact(field_name, "you would not see the contact yourself")

    # --- duplicates ----------------------------------------------------------------------------------

    async def _lock_numbers(self, session: AsyncSession, keys: Iterable[str]) -> None:
        """On PostgreSQL, serialize the writers of these numbers until the transaction ends."""
        if self.db.dialect != "postgresql":
            return
        for key in sorted(set(keys)):
            await session.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"crm.contact.phone:{key}"}
            )

    async def _duplicates(
        self,
        session: AsyncSession,
        actor: Principal,
        phones: Sequence[ParsedPhone],
        *,
        self_id: str | None,
        kind: str,
        company_id: str | None,
    ) -> list[Duplicate]:
        """Other live contacts with one of ``phones`` (the contact's own company family excepted)."""
        e164s = sorted({p.e164 for p in phones if p.e164})
        raw_digits = sorted({p.rdigits for p in phones if p.e164 is None and p.rdigits})
        clauses: list[ColumnElement[bool]] = []
        if e164s:
            clauses.append(ContactPhone.e164.in_(e164s))
        if raw_digits:
            clauses.append(and_(ContactPhone.e164.is_(None), ContactPhone.rdigits.in_(raw_digits)))
        if not clauses:
            return []
        statement = (
            select(Contact, ContactPhone.e164, ContactPhone.rdigits)
            .join(ContactPhone, ContactPhone.contact_id == Contact.id)
            .where(or_(*clauses), Contact.deleted_at.is_(None))
            .order_by(Contact.updated_at.desc(), Contact.id)
            .limit(DUPLICATES_LISTED * 4)
        )
        family = {company_id} if company_id else set()
        if kind == "company" and self_id is not None:
            family.add(self_id)
        duplicates: dict[tuple[str, str], Duplicate] = {}
        for contact, e164, rdigits in await session.execute(statement):
            if (
                contact.id == self_id
                or contact.id in family
                or (contact.company_id and contact.company_id in family)
            ):
                continue
            number = e164 or (rdigits or "")[::-1]
            visible = may_see(actor, contact)
            duplicates.setdefault(
                (contact.id, number),
                Duplicate(
                    contact_id=contact.id,
                    kind=contact.kind,
                    name=contact.name if visible else None,
                    number=number,
                    visible=visible,
                ),
            )
        return list(duplicates.values())[:DUPLICATES_LISTED]

    async def _guard_numbers(
        self,
        session: AsyncSession,
        actor: Principal,
        phones: Sequence[ParsedPhone],
        *,
        allow_duplicate: bool,
        self_id: str | None,
        kind: str,
        company_id: str | None,
    ) -> None:
        await self._lock_numbers(session, [p.match_key for p in phones if p.match_key])
        if allow_duplicate:
            return
        found = await self._duplicates(
            session, actor, phones, self_id=self_id, kind=kind, company_id=company_id
        )
        if found:
            raise DuplicateContacts(found)

    # --- writing helpers -----------------------------------------------------------------------------

    @staticmethod
    def _phone_row(contact_id: str, position: int, phone: PhoneIn, parsed: ParsedPhone) -> ContactPhone:
        return ContactPhone(
            id=_new_id(),
            contact_id=contact_id,
            position=position,
            kind=phone.kind,
            raw=parsed.raw,
            e164=parsed.e164,
            extension=parsed.extension,
            valid=parsed.valid,
            rdigits=parsed.rdigits,
            created_at=utcnow(),
        )

    async def _replace_phones(
        self, session: AsyncSession, loaded: _Loaded, phones: Sequence[tuple[PhoneIn, ParsedPhone]]
    ) -> None:
        """Make ``phones`` the contact's phones; a number it keeps keeps its row (and id)."""
        existing: dict[tuple[str | None, str | None], ContactPhone] = {
            (row.e164 or (row.rdigits or "")[::-1] or row.raw, row.extension): row for row in loaded.phones
        }
        kept: list[ContactPhone] = []
        for position, (phone, parsed) in enumerate(phones):
            row = existing.pop((parsed.match_key or parsed.raw, parsed.extension), None)
            if row is None:
                row = self._phone_row(loaded.contact.id, position, phone, parsed)
                session.add(row)
            else:
                row.position, row.kind, row.raw, row.valid = position, phone.kind, parsed.raw, parsed.valid
            kept.append(row)
        if existing:
            await session.execute(
                delete(ContactPhone).where(ContactPhone.id.in_([row.id for row in existing.values()]))
            )
        loaded.phones = kept

    @staticmethod
    async def _replace_emails(session: AsyncSession, loaded: _Loaded, emails: Sequence[str]) -> None:
        existing = {row.email_key: row for row in loaded.emails}
        kept: list[ContactEmail] = []
        for position, email in enumerate(emails):
            row = existing.pop(email.lower(), None)
            if row is None:
                row = ContactEmail(
                    id=_new_id(),
                    contact_id=loaded.contact.id,
                    position=position,
                    email=email,
                    email_key=email.lower(),
                )
                session.add(row)
            else:
                row.position, row.email = position, email
            kept.append(row)
        if existing:
            await session.execute(
                delete(ContactEmail).where(ContactEmail.id.in_([row.id for row in existing.values()]))
            )
        loaded.emails = kept

    async def _publish(
        self, session: AsyncSession, loaded: _Loaded, kind: str, *, merged_into: str | None = None
    ) -> None:
        """The contact's ``crm.contact.<kind>`` event, in this transaction."""
        contact = loaded.contact
        event_id = f"contact:{contact.id}:{contact.version}"
        event = directory_pb.ContactEvent(
            event_id=event_id, occurred_at=timestamp_message(contact.updated_at), version=contact.version
        )
        if kind == "deleted":
            event.deleted.CopyFrom(
                directory_pb.ContactDeleted(contact_id=contact.id, merged_into=merged_into or "")
            )
        else:
            getattr(event, kind).CopyFrom(contact_message(loaded))
        await outbox.add(session, [outbox.row(CONTACT_SUBJECTS[kind], event, event_id)])

    @staticmethod
    def _touch(contact: Contact) -> None:
        contact.version += 1
        contact.updated_at = utcnow()

    async def _republish_persons(
        self,
        session: AsyncSession,
        actor: Principal,
        company_id: str,
        *,
        detach: bool = False,
        move_to: str | None = None,
    ) -> None:
        """The persons of a company changed with it: publish each again (detached or moved when asked)."""
        persons = list(
            (
                await session.scalars(
                    select(Contact)
                    .where(Contact.company_id == company_id, Contact.deleted_at.is_(None))
                    .order_by(Contact.id)
                    .with_for_update()
                )
            ).all()
        )
        for loaded in await self._children(session, persons):
            before = loaded.contact.company_id
            if detach or move_to is not None:
                loaded.contact.company_id = move_to
                if move_to is None:
                    loaded.company_name = None
            if move_to is not None:
                target = await session.get(Contact, move_to)
                loaded.company_name = target.name if target is not None else None
            self._touch(loaded.contact)
            if loaded.contact.company_id != before:
                await self.audit.record(
                    session,
                    actor,
                    AUDIT_KIND,
                    loaded.contact.id,
                    "update",
                    {"company_id": [before, loaded.contact.company_id]},
                )
            await self._publish(session, loaded, "updated")

    # --- creating ------------------------------------------------------------------------------------

    async def create(
        self,
        actor: Principal,
        data: ContactIn,
        *,
        allow_duplicate: bool = False,
        request_id: str | None = None,
    ) -> ContactOut:
        """A new contact; DuplicateContacts when another contact has one of its numbers."""
        if request_id is not None and (not request_id.strip() or len(request_id) > MAX_REQUEST_ID_LENGTH):
            raise InvalidContact("request_id", f"1 to {MAX_REQUEST_ID_LENGTH} characters")
        phones = self._parse_phones(data.phones)
        emails = self._emails(data.emails)
        owner_employee = data.owner_employee_id if "owner_employee_id" in data.model_fields_set else None
        owner_team = data.owner_team_id if "owner_team_id" in data.model_fields_set else None
        if "owner_employee_id" not in data.model_fields_set and "owner_team_id" not in data.model_fields_set:
            owner_employee = actor.employee_id
            owner_team = next(iter(actor.team_ids)) if len(actor.team_ids) == 1 else None
        self._check_owner(actor, owner_employee, owner_team, data.responsible_employee_id)
        try:
            async with self.db.session() as session:
                if request_id is not None:
                    repeated = await self._by_request(session, actor, request_id)
                    if repeated is not None:
                        return repeated
                company = await self._check_company(session, actor, data.company_id, data.kind, None)
                await self._guard_numbers(
                    session,
                    actor,
                    [parsed for _, parsed in phones],
                    allow_duplicate=allow_duplicate,
                    self_id=None,
                    kind=data.kind,
                    company_id=data.company_id,
                )
                custom = await self._custom_fields(session, {}, data.custom_fields, replace=True)
                now = utcnow()
                contact = Contact(
                    id=_new_id(),
                    kind=data.kind,
                    name=data.name,
                    name_key=data.name.casefold(),
                    job_title=data.job_title if data.kind == "person" else None,
                    tax_id=data.tax_id,
                    company_id=data.company_id,
                    address=data.address,
                    notes=data.notes,
                    responsible_employee_id=data.responsible_employee_id,
                    owner_employee_id=owner_employee,
                    owner_team_id=owner_team,
                    custom_fields=custom,
                    request_id=request_id,
                    version=1,
                    created_at=now,
                    updated_at=now,
                    created_by=actor.subject,
                )
                session.add(contact)
                await session.flush()
                loaded = _Loaded(contact, company_name=company.name if company is not None else None)
                await self._replace_phones(session, loaded, phones)
                await self._replace_emails(session, loaded, emails)
                await session.flush()
                await self.audit.record(
                    session, actor, AUDIT_KIND, contact.id, "create", diff({}, _snapshot(loaded))
                )
                await self._publish(session, loaded, "created")
                out = contact_out(loaded)
        except IntegrityError:
            if request_id is None:
                raise
            async with self.db.session() as session:  # the same key, committed meanwhile
                repeated = await self._by_request(session, actor, request_id)
            if repeated is None:
                raise
            return repeated
        self._committed()
        return out

    async def _by_request(
        self, session: AsyncSession, actor: Principal, request_id: str
    ) -> ContactOut | None:
        contact = (
            await session.scalars(select(Contact).where(Contact.request_id == request_id))
        ).one_or_none()
        if contact is None:
            return None
        if contact.created_by != actor.subject:
            raise RequestReused(f"the request id {request_id!r} was used by another user")
        if contact.deleted_at is not None:
            raise ContactNotFound(contact.id, contact.merged_into)
        return contact_out((await self._children(session, [contact]))[0])

    async def create_from_number(
        self,
        actor: Principal,
        data: FromNumberIn,
        *,
        allow_duplicate: bool = False,
        request_id: str | None = None,
    ) -> ContactOut:
        """A contact for an unknown number in one call (see the module's docstring)."""
        parsed = parse_phone(data.number, self.region)
        responsible = data.responsible_employee_id
        if responsible is None and self.auto_responsible:
            responsible = actor.employee_id
        try:
            contact_in = ContactIn(
                kind=data.kind,
                name=data.name or display(parsed),
                company_id=data.company_id,
                phones=[PhoneIn(number=data.number, kind=data.phone_kind)],
                emails=data.emails,
                notes=data.notes,
                responsible_employee_id=responsible,
            )
        except ValueError as exc:  # the number written for people is too long a name...
            raise InvalidContact("number", str(exc)) from None
        try:
            return await self.create(
                actor, contact_in, allow_duplicate=allow_duplicate, request_id=request_id
            )
        except InvalidContact as exc:
            if exc.field.startswith("phones[0]."):
                raise InvalidContact("number", exc.message) from None
            raise

    # --- changing ------------------------------------------------------------------------------------

    async def update(
        self,
        actor: Principal,
        contact_id: str,
        patch: ContactPatch,
        *,
        allow_duplicate: bool = False,
    ) -> ContactOut:
        fields = patch.model_fields_set - {"version"}
        for required in ("name", "kind"):
            if required in fields and getattr(patch, required) is None:
                raise InvalidContact(required, "must not be null")
        phones = self._parse_phones(patch.phones) if patch.phones is not None else None
        emails = self._emails(patch.emails) if patch.emails is not None else None
        async with self.db.session() as session:
            loaded = await self._load(session, actor, contact_id, lock=True)
            contact = loaded.contact
            if patch.version is not None and patch.version != contact.version:
                raise StaleVersion(contact.version)
            before = _snapshot(loaded)
            old_name, old_kind = contact.name, contact.kind
            kind = patch.kind if "kind" in fields and patch.kind else contact.kind
            company_id = patch.company_id if "company_id" in fields else contact.company_id
            if kind == "company":
                if "company_id" in fields and patch.company_id is not None:
                    raise InvalidContact("company_id", "only a person belongs to a company")
                company_id = None
            if kind == "person" and old_kind == "company":
                has_persons = await session.scalar(
                    select(func.count())
                    .select_from(Contact)
                    .where(Contact.company_id == contact.id, Contact.deleted_at.is_(None))
                )
                if has_persons:
                    raise InvalidContact("kind", "the company has persons: move them first")
            company = None
            if company_id is not None and (company_id != contact.company_id or "kind" in fields):
                company = await self._check_company(session, actor, company_id, kind, contact.id)
            owner_employee = (
                patch.owner_employee_id if "owner_employee_id" in fields else contact.owner_employee_id
            )
            owner_team = patch.owner_team_id if "owner_team_id" in fields else contact.owner_team_id
            responsible = (
                patch.responsible_employee_id
                if "responsible_employee_id" in fields
                else contact.responsible_employee_id
            )
            if {"owner_employee_id", "owner_team_id", "responsible_employee_id"} & fields:
                self._check_owner(actor, owner_employee, owner_team, responsible)
            if phones is not None:
                current = {(p.e164 or (p.rdigits or "")[::-1]) for p in loaded.phones}
                new_numbers = [parsed for _, parsed in phones if (parsed.match_key or "") not in current]
                await self._guard_numbers(
                    session,
                    actor,
                    new_numbers,
                    allow_duplicate=allow_duplicate,
                    self_id=contact.id,
                    kind=kind,
                    company_id=company_id,
                )
                await self._replace_phones(session, loaded, phones)
            if emails is not None:
                await self._replace_emails(session, loaded, emails)
            if "custom_fields" in fields:
                contact.custom_fields = await self._custom_fields(
                    session, contact.custom_fields or {}, patch.custom_fields or {}, replace=False
                )
            for name in ("job_title", "tax_id", "address", "notes"):
                if name in fields:
                    setattr(contact, name, getattr(patch, name))
            if "name" in fields and patch.name is not None:
                contact.name, contact.name_key = patch.name, patch.name.casefold()
            contact.kind = kind
            if kind == "company":
                contact.job_title = None
            contact.company_id = company_id
            if company is not None or company_id is None:
                loaded.company_name = company.name if company is not None else None
            contact.owner_employee_id, contact.owner_team_id = owner_employee, owner_team
            contact.responsible_employee_id = responsible
            changes = diff(before, _snapshot(loaded))
            if not changes:
                return contact_out(loaded)
            self._touch(contact)
            await session.flush()
            await self.audit.record(session, actor, AUDIT_KIND, contact.id, "update", changes)
            await self._publish(session, loaded, "updated")
            if contact.kind == "company" and contact.name != old_name:
                await self._republish_persons(session, actor, contact.id)
            out = contact_out(loaded)
        self._committed()
        return out

    async def add_phone(
        self,
        actor: Principal,
        contact_id: str,
        phone: PhoneIn,
        *,
        allow_duplicate: bool = False,
        expected_version: int | None = None,
    ) -> ContactOut:
        """Add a number to a contact; a number it has already changes nothing (a repeat is harmless)."""
        parsed = parse_phone(phone.number, self.region, extension=phone.extension)
        async with self.db.session() as session:
            loaded = await self._load(session, actor, contact_id, lock=True)
            contact = loaded.contact
            if expected_version is not None and expected_version != contact.version:
                raise StaleVersion(contact.version)
            key = (parsed.match_key or parsed.raw, parsed.extension)
            if any((p.e164 or (p.rdigits or "")[::-1] or p.raw, p.extension) == key for p in loaded.phones):
                return contact_out(loaded)
            if len(loaded.phones) >= MAX_PHONES:
                raise InvalidContact("number", f"a contact has at most {MAX_PHONES} phones")
            await self._guard_numbers(
                session,
                actor,
                [parsed],
                allow_duplicate=allow_duplicate,
                self_id=contact.id,
                kind=contact.kind,
                company_id=contact.company_id,
            )
            before = _snapshot(loaded)
            position = max((p.position for p in loaded.phones), default=-1) + 1
            row = self._phone_row(contact.id, position, phone, parsed)
            session.add(row)
            loaded.phones.append(row)
            self._touch(contact)
            await session.flush()
            await self.audit.record(
                session, actor, AUDIT_KIND, contact.id, "update", diff(before, _snapshot(loaded))
            )
            await self._publish(session, loaded, "updated")
            out = contact_out(loaded)
        self._committed()
        return out

    async def remove_phone(self, actor: Principal, contact_id: str, phone_id: str) -> ContactOut:
        async with self.db.session() as session:
            loaded = await self._load(session, actor, contact_id, lock=True)
            if not any(p.id == phone_id for p in loaded.phones):
                raise PhoneNotFound(f"contact {contact_id} has no phone {phone_id}")
            before = _snapshot(loaded)
            await session.execute(delete(ContactPhone).where(ContactPhone.id == phone_id))
            loaded.phones = [p for p in loaded.phones if p.id != phone_id]
            self._touch(loaded.contact)
            await session.flush()
            await self.audit.record(
                session, actor, AUDIT_KIND, contact_id, "update", diff(before, _snapshot(loaded))
            )
            await self._publish(session, loaded, "updated")
            out = contact_out(loaded)
        self._committed()
        return out

    async def delete(self, actor: Principal, contact_id: str, *, expected_version: int | None = None) -> None:
        """Delete softly (the id keeps answering "deleted"); a company's persons are detached."""
        async with self.db.session() as session:
            loaded = await self._load(session, actor, contact_id, lock=True)
            if expected_version is not None and expected_version != loaded.contact.version:
                raise StaleVersion(loaded.contact.version)
            await self._delete(session, actor, loaded, merged_into=None)
        self._committed()

    async def _delete(
        self, session: AsyncSession, actor: Principal, loaded: _Loaded, *, merged_into: str | None
    ) -> None:
        contact = loaded.contact
        if contact.kind == "company" and merged_into is None:
            await self._republish_persons(session, actor, contact.id, detach=True)
        await session.execute(delete(ContactPhone).where(ContactPhone.contact_id == contact.id))
        await session.execute(delete(ContactEmail).where(ContactEmail.contact_id == contact.id))
        loaded.phones, loaded.emails = [], []
        contact.deleted_at = utcnow()
        contact.merged_into = merged_into
        self._touch(contact)
        await session.flush()
        changes: dict[str, Any] = {"merged_into": [None, merged_into]} if merged_into else {}
        await self.audit.record(session, actor, AUDIT_KIND, contact.id, "delete", changes)
        await self._publish(session, loaded, "deleted", merged_into=merged_into)

    # --- merging -------------------------------------------------------------------------------------

    async def merge(
        self,
        actor: Principal,
        survivor_id: str,
        others: Sequence[str],
        *,
        expected_version: int | None = None,
    ) -> ContactOut:
        """Merge ``others`` into ``survivor_id``: phones, e-mails and custom fields united, empty
        fields filled from the others, notes appended, a company's persons moved over; the others are
        deleted with ``merged_into``."""
        loser_ids = list(dict.fromkeys(others))
        if not loser_ids:
            raise InvalidContact("contact_ids", "name at least one contact to merge")
        if len(loser_ids) > MAX_MERGE:
            raise InvalidContact("contact_ids", f"at most {MAX_MERGE} contacts at once")
        if survivor_id in loser_ids:
            raise InvalidContact("contact_ids", "a contact cannot be merged into itself")
        async with self.db.session() as session:
            # Locked in id order, so two merges of overlapping contacts cannot deadlock.
            locked: dict[str, _Loaded] = {}
            for contact_id in sorted([survivor_id, *loser_ids]):
                try:
                    locked[contact_id] = await self._load(session, actor, contact_id, lock=True)
                except ContactNotFound as exc:
                    if contact_id == survivor_id:
                        raise
                    raise InvalidContact("contact_ids", str(exc)) from None
            survivor = locked[survivor_id]
            losers = [locked[contact_id] for contact_id in loser_ids]
            if expected_version is not None and expected_version != survivor.contact.version:
                raise StaleVersion(survivor.contact.version)
            for loser in losers:
                if loser.contact.kind != survivor.contact.kind:
                    raise InvalidContact(
                        "contact_ids",
                        f"{loser.contact.id} is a {loser.contact.kind}, {survivor_id} a "
                        f"{survivor.contact.kind}: only contacts of one kind merge",
                    )
            before = _snapshot(survivor)
            await self._absorb(session, survivor, losers)
            self._touch(survivor.contact)
            await session.flush()
            changes = diff(before, _snapshot(survivor))
            changes["merged"] = [None, loser_ids]
            await self.audit.record(session, actor, AUDIT_KIND, survivor_id, "merge", changes)
            await self._publish(session, survivor, "updated")
            for loser in losers:
                if loser.contact.kind == "company":
                    await self._republish_persons(session, actor, loser.contact.id, move_to=survivor_id)
                await self._delete(session, actor, loser, merged_into=survivor_id)
            out = contact_out(survivor)
        self._committed()
        return out

    async def _absorb(self, session: AsyncSession, survivor: _Loaded, losers: Sequence[_Loaded]) -> None:
        contact = survivor.contact
        phone_keys = {(p.e164 or (p.rdigits or "")[::-1] or p.raw, p.extension) for p in survivor.phones}
        email_keys = {e.email_key for e in survivor.emails}
        position = max((p.position for p in survivor.phones), default=-1)
        email_position = max((e.position for e in survivor.emails), default=-1)
        custom = dict(contact.custom_fields or {})
        notes = [contact.notes] if contact.notes else []
        for loser in losers:
            other = loser.contact
            for phone in loser.phones:
                key = (phone.e164 or (phone.rdigits or "")[::-1] or phone.raw, phone.extension)
                if key in phone_keys or len(survivor.phones) >= MAX_PHONES:
                    continue
                phone_keys.add(key)
                position += 1
                phone.contact_id, phone.position = contact.id, position
                survivor.phones.append(phone)
            for email in loser.emails:
                if email.email_key in email_keys or len(survivor.emails) >= MAX_EMAILS:
                    continue
                email_keys.add(email.email_key)
                email_position += 1
                email.contact_id, email.position = contact.id, email_position
                survivor.emails.append(email)
            for field_name, value in (other.custom_fields or {}).items():
                custom.setdefault(field_name, value)
            for name in ("job_title", "tax_id", "address", "responsible_employee_id"):
                if getattr(contact, name) is None and getattr(other, name) is not None:
                    setattr(contact, name, getattr(other, name))
            if contact.kind == "person" and contact.company_id is None and other.company_id:
                contact.company_id, survivor.company_name = other.company_id, loser.company_name
            if other.notes and all(other.notes not in note for note in notes):
                notes.append(other.notes)
            loser.phones = [p for p in loser.phones if p.contact_id == other.id]
            loser.emails = [e for e in loser.emails if e.contact_id == other.id]
        await session.flush()
        contact.custom_fields = custom
        merged_notes = "\n\n".join(notes) if notes else None
        contact.notes = merged_notes[:MAX_NOTES_LENGTH] if merged_notes else None

    # --- the duplicates report -----------------------------------------------------------------------

    async def duplicate_groups(
        self,
        actor: Principal,
        *,
        by: DuplicateKey = "number",
        limit: int = paging.DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> paging.Page[DuplicateGroupOut]:
        """Numbers (or e-mails) that several live contacts share, in key order, the contacts the asker
        sees among them (a group needs two of those)."""
        limit = max(1, min(limit, paging.MAX_LIMIT))
        domain = f"{_DUPLICATES_CURSOR}:{by}"
        if by == "number":
            key_column: Any = ContactPhone.e164
            owner_column: Any = ContactPhone.contact_id
            table: Any = ContactPhone
        else:
            key_column, owner_column, table = ContactEmail.email_key, ContactEmail.contact_id, ContactEmail
        visible = visible_contacts(actor)
        keyed = (
            select(key_column.label("key"))
            .select_from(table)
            .join(Contact, Contact.id == owner_column)
            .where(key_column.is_not(None), Contact.deleted_at.is_(None), visible)
            .group_by(key_column)
            .having(func.count(func.distinct(owner_column)) > 1)
        )
        if cursor:
            key = paging.decode(self._secret, domain, cursor)
            if len(key) != 1 or not isinstance(key[0], str):
                raise paging.InvalidCursor("page cursor is malformed")
            keyed = keyed.where(key_column > key[0])
        async with self.db.session() as session:
            keys = list((await session.scalars(keyed.order_by(key_column).limit(limit + 1))).all())
            more = len(keys) > limit
            keys = keys[:limit]
            members: dict[str, dict[str, Contact]] = {key: {} for key in keys}
            if keys:
                rows = await session.execute(
                    select(key_column, Contact)
                    .select_from(table)
                    .join(Contact, Contact.id == owner_column)
                    .where(key_column.in_(keys), Contact.deleted_at.is_(None), visible)
                    .order_by(key_column, Contact.name_key, Contact.id)
                )
                for key, contact in rows:
                    members[key][contact.id] = contact
        groups = [
            DuplicateGroupOut(
                by=by,
                key=key,
                contacts=[
                    ContactBrief(
                        id=c.id,
                        kind="company" if c.kind == "company" else "person",
                        name=c.name,
                        company_id=c.company_id,
                        visible=True,
                    )
                    for c in members[key].values()
                ],
            )
            for key in keys
        ]
        next_cursor = paging.encode(self._secret, domain, [keys[-1]]) if more and keys else None
        return paging.Page[DuplicateGroupOut](items=groups, next_cursor=next_cursor)

    # --- custom field definitions --------------------------------------------------------------------

    async def list_fields(self) -> list[FieldDefinitionOut]:
        async with self.db.session() as session:
            rows = await session.scalars(
                select(ContactFieldDefinition).order_by(
                    ContactFieldDefinition.position, ContactFieldDefinition.name
                )
            )
            return [field_definition_out(row) for row in rows]

    async def put_field(
        self, actor: Principal, name: str, data: FieldDefinitionIn, *, expected_version: int | None = None
    ) -> tuple[FieldDefinitionOut, bool]:
        """Define or redefine a custom field (admins); True when it was created."""
        if not actor.is_admin:
            raise Forbidden("only an admin defines custom fields")
        if not _FIELD_NAME.fullmatch(name):
            raise InvalidContact(
                "name", "lowercase letters, digits and _, starting with a letter (at most 64)"
            )
        if data.type == "choice" and not data.choices:
            raise InvalidContact("choices", "a choice field needs its choices")
        async with self.db.session() as session:
            row = await session.get(ContactFieldDefinition, name, with_for_update=True)
            now = utcnow()
            created = row is None
            if row is None:
                row = ContactFieldDefinition(name=name, version=1, created_at=now, updated_at=now)
                session.add(row)
                before: dict[str, Any] = {}
            else:
                if expected_version is not None and expected_version != row.version:
                    raise StaleVersion(row.version)
                before = {
                    "label": row.label,
                    "type": row.type,
                    "choices": row.choices,
                    "position": row.position,
                }
                row.version += 1
                row.updated_at = now
            row.label, row.type, row.position = data.label, data.type, data.position
            row.choices = data.choices if data.type == "choice" else []
            after = {"label": row.label, "type": row.type, "choices": row.choices, "position": row.position}
            await session.flush()
            await self.audit.record(
                session, actor, "contact_field", name, "create" if created else "update", diff(before, after)
            )
            return field_definition_out(row), created

    async def delete_field(self, actor: Principal, name: str) -> None:
        """Remove a definition; values contacts hold stay (shown, no longer checked)."""
        if not actor.is_admin:
            raise Forbidden("only an admin defines custom fields")
        async with self.db.session() as session:
            row = await session.get(ContactFieldDefinition, name)
            if row is None:
                raise FieldNotFound(f"no custom field {name!r}")
            await session.delete(row)
            await self.audit.record(session, actor, "contact_field", name, "delete", {})


__all__ = [
    "ContactBrief",
    "ContactError",
    "ContactIn",
    "ContactNotFound",
    "ContactOut",
    "ContactPatch",
    "ContactQuery",
    "ContactService",
    "Duplicate",
    "DuplicateContacts",
    "DuplicateGroupOut",
    "FieldDefinitionIn",
    "FieldDefinitionOut",
    "FieldNotFound",
    "Forbidden",
    "FromNumberIn",
    "InvalidContact",
    "PhoneIn",
    "PhoneNotFound",
    "PhoneOut",
    "RequestReused",
    "StaleVersion",
    "system_principal",
]
