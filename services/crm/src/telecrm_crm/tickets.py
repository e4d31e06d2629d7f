"""Service tickets (the call centre's "sesizari"): numbering per series, the status workflow, notes,
e-mails to the customer, the register's filters and groupings, the appointments calendar, the evolution
report and the operation log, on one service layer that the REST and gRPC APIs share.

Why it is built this way:

- Numbers: a ticket takes the next number of its series with one ``UPDATE ticket_series SET
  last_number = last_number + 1 ... RETURNING`` as the first write of the transaction that inserts it.
  On PostgreSQL concurrent creations in one series queue on that row's lock and get consecutive
  numbers; a creation that fails rolls its number back, so a series has no gaps and no duplicates
  (``uq_tickets_series_number`` would refuse one anyway). SQLite serialises writers the same way.
- The workflow (:data:`~telecrm_crm.tickets_models.TRANSITIONS`) is the only way to change a status:
  taken -> allocated (only with scheduled start, end and team) -> confirmed -> finalized, or cancelled
  from any open status. Any other move raises :class:`TransitionNotAllowed` with the allowed next
  statuses (the API answers 409 with them). Finalized and cancelled tickets are closed: their fields no
  longer change, though notes may still be added.
- E-mail: on allocation and on finalization, a ticket that asks for it (``notify_customer`` with a
  ``customer_email``) gets a ``crm.ticket.email_requested`` message in the outbox (messaging sends it)
  and the time of the request stored on the ticket; the message id is fixed per ticket, reason and
  version, so a republished outbox row is sent once.
- Every change writes its ``crm.ticket.*`` event and its operation-log entry (at the configured level)
  in the transaction of the change; each status entered is also kept in ``ticket_status_changes``
  whatever the log level, for the evolution report.
- Who sees a ticket: admins all; others the tickets they took, check or created, and those of the
  teams they see (supervisors their teams, agents with team visibility their team). Others answer "not
  found". gRPC callers are services inside the suite: they act as ``system:<name>`` and see all.
- Creation is idempotent by key (REST ``Idempotency-Key``, gRPC ``request_id``): the same key from the
  same caller returns the ticket the first request made (the key is stored hashed with the caller).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, and_, delete, false, func, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from telecrm.crm.v1 import tickets_pb2
from telecrm_common.auth import Principal
from telecrm_common.db import Database, utcnow
from telecrm_common.errors import TelecrmError
from telecrm_common.timestamps import timestamp_message
from telecrm_crm import outbox, paging
from telecrm_crm.attachments import AttachmentStore, StoredFile
from telecrm_crm.audit import AuditLog, diff
from telecrm_crm.models import Attachment, AuditEntry
from telecrm_crm.tickets_models import (
    ALLOCATED,
    CANCELLED,
    EMAIL_STATUSES,
    OPEN_STATUSES,
    PRIORITIES,
    SCHEDULE_FIELDS,
    SCHEDULED_STATUSES,
    STATUSES,
    TAKEN,
    TRANSITIONS,
    Ticket,
    TicketNote,
    TicketSeries,
    TicketStatusChange,
    TicketType,
)

TICKET_SUBJECTS = {kind: f"crm.ticket.{kind}" for kind in ("created", "updated", "status_changed", "deleted")}
EMAIL_REQUESTED_SUBJECT = "crm.ticket.email_requested"
OWNER_KIND = "ticket"
CURSOR_DOMAIN = "tickets"
CONTACT_CURSOR_DOMAIN = "tickets-of-contact"
SYSTEM_ACTOR = "system:grpc"

Actor = Principal | str  # a user, or a service of the suite ("system:queue")

MAX_PRODUCT_LENGTH = 300
MAX_DESCRIPTION_LENGTH = 20_000
MAX_NOTE_LENGTH = 10_000
MAX_NAME_LENGTH = 100
MAX_EMAIL_LENGTH = 320
MAX_KEY_LENGTH = 100
MAX_ID_LENGTH = 64
MAX_GROUPS = 1000
MAX_CALENDAR_ITEMS = 2000
MAX_CALENDAR_DAYS = 366
EXPORT_CHUNK = 500

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")
_SERIES_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,15}")
_TYPE_CODE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")

EDITABLE_FIELDS: tuple[str, ...] = (
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
    "notify_customer",
    "customer_email",
)
_OPTIONAL_IDS = ("contact_person_id", "taken_by_id", "checker_id", "team_id")
# The fields of a ticket a register may be grouped by (``GET /tickets?group_by=...``).
GROUP_FIELDS: tuple[str, ...] = (
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
    "scheduled_start",  # by day (UTC)
    "scheduled_end",  # by day (UTC)
)


# --- errors --------------------------------------------------------------------------------------------


class TicketError(TelecrmError):
    """Base of the errors of service tickets."""


class TicketNotFound(TicketError):
    """No such ticket (series, type, attachment), or not one the asker may see."""


class InvalidField(TicketError):
    """A field's value is refused; ``field`` names it as the client sent it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class StaleVersion(TicketError):
    """The change named a version the ticket has moved on from; nothing was changed."""

    def __init__(self, current: int) -> None:
        super().__init__(f"the ticket was changed meanwhile: its version is now {current}")
        self.current = current


class TransitionNotAllowed(TicketError):
    """The workflow forbids this status change (or the ticket lacks what the new status needs)."""

    def __init__(
        self, current: str, target: str, allowed: Sequence[str], missing: Sequence[str] = ()
    ) -> None:
        if missing:
            message = f"a ticket is {target} only with {', '.join(missing)} set"
        elif allowed:
            message = f"a {current} ticket cannot become {target}: it may become {', '.join(allowed)}"
        else:
            message = f"a {current} ticket is closed: its status no longer changes"
        super().__init__(message)
        self.current = current
        self.target = target
        self.allowed = list(allowed)
        self.missing = list(missing)


class TicketClosed(TicketError):
    """A finalized or cancelled ticket's fields no longer change."""

    def __init__(self, status: str) -> None:
        super().__init__(f"the ticket is {status}: a closed ticket is not changed")
        self.status = status


class AlreadyExists(TicketError):
    """A series or type with this code exists."""


class NotAllowed(TicketError):
    """Only admins manage series and ticket types."""


# --- inputs and views ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TicketInput:
    client_id: str
    series: str | None = None  # None: the default series
    ticket_date: date | None = None  # None: today (UTC)
    contact_person_id: str | None = None
    type_code: str | None = None
    product: str = ""
    description: str = ""
    priority: str = "medium"
    taken_by_id: str | None = None  # None: the creating user's employee
    checker_id: str | None = None
    team_id: str | None = None
    scheduled_start: datetime | None = None
    scheduled_end: datetime | None = None
    notify_customer: bool = False
    customer_email: str | None = None
    request_key: str | None = None


@dataclass(frozen=True)
class TicketChanges:
    """The fields to change (only those in ``values``) of the ticket at ``version``."""

    version: int
    values: Mapping[str, Any]


@dataclass(frozen=True)
class NoteFile:
    filename: str
    declared_type: str | None
    chunks: AsyncIterator[bytes]


@dataclass(frozen=True)
class TicketView:
    ticket: Ticket
    type_name: str | None

    @property
    def code(self) -> str:
        return ticket_code(self.ticket)


@dataclass(frozen=True)
class TicketFilters:
    """Filters of the register, the CSV export and the groupings; every one optional."""

    series: tuple[str, ...] = ()
    number: int | None = None
    date_from: date | None = None  # ticket date, inclusive
    date_to: date | None = None  # inclusive
    client_id: str | None = None
    contact_person_id: str | None = None
    type_codes: tuple[str, ...] = ()
    product: str | None = None  # a part of it, any case
    priorities: tuple[str, ...] = ()
    taken_by_id: str | None = None
    checker_id: str | None = None
    team_id: str | None = None
    statuses: tuple[str, ...] = ()
    scheduled_start_from: datetime | None = None  # inclusive
    scheduled_start_to: datetime | None = None  # exclusive
    scheduled_end_from: datetime | None = None
    scheduled_end_to: datetime | None = None


@dataclass(frozen=True)
class TicketPage:
    items: list[TicketView]
    next_cursor: str | None
    total: int | None


@dataclass(frozen=True)
class GroupCount:
    key: str | None
    count: int


@dataclass(frozen=True)
class Groups:
    field: str
    groups: list[GroupCount]
    total: int
    truncated: bool


@dataclass(frozen=True)
class Calendar:
    items: list[TicketView]
    truncated: bool


@dataclass(frozen=True)
class StatusPeriod:
    status: str
    entered_at: datetime
    entered_by: str
    entered_by_employee_id: str | None
    left_at: datetime | None
    seconds: float | None  # None for the final status a closed ticket rests in


@dataclass(frozen=True)
class Evolution:
    view: TicketView
    periods: list[StatusPeriod]
    seconds_by_status: dict[str, float]
    open_seconds: float  # creation to closing (or to now while open)
    as_of: datetime
    notes: int = 0


@dataclass(frozen=True)
class SeriesView:
    series: TicketSeries

    @property
    def next_number(self) -> int:
        return self.series.last_number + 1


# --- helpers -------------------------------------------------------------------------------------------


def ticket_code(ticket: Ticket) -> str:
    """The ticket as people name it: series and number (``SRV-42``)."""
    return f"{ticket.series}-{ticket.number}"


def _subject(actor: Actor) -> str:
    return actor if isinstance(actor, str) else actor.subject


def _employee(actor: Actor) -> str | None:
    return None if isinstance(actor, str) else actor.employee_id


def _request_key(actor: Actor, key: str) -> str:
    """The stored form of an idempotency key: scoped to who sent it, so one caller's key never finds
    another caller's ticket, and of a fixed length whatever the subject."""
    return hashlib.sha256(f"{_subject(actor)}\x00{key}".encode()).hexdigest()


def visible_tickets(actor: Actor) -> ColumnElement[bool]:
    """A WHERE clause over ``tickets`` keeping those ``actor`` may see (services see all)."""
    if isinstance(actor, str) or actor.sees_all:
        return true()
    clauses: list[ColumnElement[bool]] = [Ticket.created_by == actor.subject]
    if actor.employee_id is not None:
        clauses += [Ticket.taken_by_id == actor.employee_id, Ticket.checker_id == actor.employee_id]
    teams = actor.visible_team_ids
    if teams:
        clauses.append(Ticket.team_id.in_(sorted(teams)))
    return or_(*clauses) if clauses else false()


def _text(name: str, value: Any, *, max_length: int, required: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidField(name, "must be text")
    text: str = value.strip()
    if required and not text:
        raise InvalidField(name, "required")
    if len(text) > max_length:
        raise InvalidField(name, f"at most {max_length} characters")
    return text


def _id(name: str, value: Any, *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise InvalidField(name, "required")
        return None
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidField(name, f"not an id (letters, digits, . _ : @ -, up to {MAX_ID_LENGTH})")
    return value


def _when(name: str, value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidField(name, "a date and time (ISO 8601)")
    if value.tzinfo is None:
        raise InvalidField(name, "needs a time zone offset")
    return value.astimezone(UTC)


def _check_value(name: str, value: Any) -> Any:
    """The checked, cleaned value of one editable field."""
    if name == "client_id":
        return _id(name, value, required=True)
    if name in _OPTIONAL_IDS:
        return _id(name, value)
    if name == "type_code":
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not _TYPE_CODE.fullmatch(value):
            raise InvalidField(name, "not a ticket type code")
        return value
    if name == "product":
        return _text(name, value, max_length=MAX_PRODUCT_LENGTH)
    if name == "description":
        return _text(name, value, max_length=MAX_DESCRIPTION_LENGTH)
    if name == "priority":
        if value not in PRIORITIES:
            raise InvalidField(name, f"one of {', '.join(PRIORITIES)}")
        return value
    if name in ("scheduled_start", "scheduled_end"):
        return _when(name, value)
    if name == "ticket_date":
        if not isinstance(value, date) or isinstance(value, datetime):
            raise InvalidField(name, "a date (YYYY-MM-DD)")
        return value
    if name == "notify_customer":
        if not isinstance(value, bool):
            raise InvalidField(name, "true or false")
        return value
    if name == "customer_email":
        email = _text(name, value, max_length=MAX_EMAIL_LENGTH)
        if email and not _EMAIL.fullmatch(email):
            raise InvalidField(name, "not an e-mail address")
        return email or None
    raise InvalidField(name, "not a field of a ticket")


def _check_coherent(values: Mapping[str, Any], status: str) -> None:
    """Rules between fields of a ticket in ``status``."""
    start, end = values.get("scheduled_start"), values.get("scheduled_end")
    if start is not None and end is not None and end < start:
        raise InvalidField("scheduled_end", "the work cannot end before it starts")
    if values.get("notify_customer") and not values.get("customer_email"):
        raise InvalidField("customer_email", "required to e-mail the customer (notify_customer)")
    if status in SCHEDULED_STATUSES:
        for name in SCHEDULE_FIELDS:
            if values.get(name) is None:
                raise InvalidField(name, f"required while the ticket is {status}")


def _snapshot(ticket: Ticket) -> dict[str, Any]:
    return {name: getattr(ticket, name) for name in (*EDITABLE_FIELDS, "status")}


def ticket_message(ticket: Ticket) -> tickets_pb2.Ticket:
    return tickets_pb2.Ticket(
        ticket_id=ticket.id,
        series=ticket.series,
        number=ticket.number,
        code=ticket_code(ticket),
        ticket_date=ticket.ticket_date.isoformat(),
        client_id=ticket.client_id,
        contact_person_id=ticket.contact_person_id or "",
        type_code=ticket.type_code or "",
        product=ticket.product,
        description=ticket.description,
        priority=ticket.priority,
        taken_by_id=ticket.taken_by_id or "",
        checker_id=ticket.checker_id or "",
        team_id=ticket.team_id or "",
        scheduled_start=timestamp_message(ticket.scheduled_start),
        scheduled_end=timestamp_message(ticket.scheduled_end),
        status=ticket.status,
        notify_customer=ticket.notify_customer,
        customer_email=ticket.customer_email or "",
        allocation_email_requested_at=timestamp_message(ticket.allocation_email_requested_at),
        finalization_email_requested_at=timestamp_message(ticket.finalization_email_requested_at),
        version=ticket.version,
        created_at=timestamp_message(ticket.created_at),
        updated_at=timestamp_message(ticket.updated_at),
        status_changed_at=timestamp_message(ticket.status_changed_at),
        created_by=ticket.created_by,
    )


def _format_time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def customer_email(view: TicketView, reason: str) -> tuple[str, str]:
    """Subject and plain-text body of the e-mail telling the customer their ticket was scheduled
    (``allocated``) or completed (``finalized``). The description stays out: it holds staff's notes."""
    ticket = view.ticket
    code = view.code
    if reason == ALLOCATED:
        subject = f"Service ticket {code}: your intervention is scheduled"
        opening = "Your request has been scheduled. A team will carry out the work in this period:"
    else:
        subject = f"Service ticket {code}: the work is completed"
        opening = "The work on your request is completed."
    lines = [
        "Hello,",
        "",
        opening,
        "",
        f"Ticket: {code} of {ticket.ticket_date.isoformat()}",
        f"Type: {view.type_name or ticket.type_code or '-'}",
        f"Object: {ticket.product or '-'}",
        f"Scheduled: {_format_time(ticket.scheduled_start)} - {_format_time(ticket.scheduled_end)}",
        "",
        "Please quote the ticket number if you contact us about it.",
    ]
    return subject, "\n".join(lines)


def _cursor_key(key: list[Any]) -> tuple[datetime, str]:
    try:
        created, last_id = key
        return datetime.fromisoformat(str(created)), str(last_id)
    except (TypeError, ValueError):
        raise paging.InvalidCursor("page cursor is malformed") from None


def _like(value: str) -> str:
    escaped = value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def filter_conditions(filters: TicketFilters) -> list[ColumnElement[bool]]:
    """The WHERE clauses of ``filters``; raises InvalidField naming a bad one."""
    conditions: list[ColumnElement[bool]] = []
    for name, values, allowed in (
        ("status", filters.statuses, STATUSES),
        ("priority", filters.priorities, PRIORITIES),
    ):
        unknown = [value for value in values if value not in allowed]
        if unknown:
            raise InvalidField(name, f"{unknown[0]!r} is not one of {', '.join(allowed)}")
    if filters.series:
        conditions.append(Ticket.series.in_(filters.series))
    if filters.number is not None:
        conditions.append(Ticket.number == filters.number)
    if filters.date_from is not None:
        conditions.append(Ticket.ticket_date >= filters.date_from)
    if filters.date_to is not None:
        if filters.date_from is not None and filters.date_to < filters.date_from:
            raise InvalidField("date_to", "before date_from")
        conditions.append(Ticket.ticket_date <= filters.date_to)
    for column, value in (
        (Ticket.client_id, filters.client_id),
        (Ticket.contact_person_id, filters.contact_person_id),
        (Ticket.taken_by_id, filters.taken_by_id),
        (Ticket.checker_id, filters.checker_id),
        (Ticket.team_id, filters.team_id),
    ):
        if value:
            conditions.append(column == value)
    if filters.type_codes:
        conditions.append(Ticket.type_code.in_(filters.type_codes))
    if filters.product:
        conditions.append(func.lower(Ticket.product).like(_like(filters.product), escape="\\"))
    if filters.priorities:
        conditions.append(Ticket.priority.in_(filters.priorities))
    if filters.statuses:
        conditions.append(Ticket.status.in_(filters.statuses))
    for when, low, high in (
        (Ticket.scheduled_start, filters.scheduled_start_from, filters.scheduled_start_to),
        (Ticket.scheduled_end, filters.scheduled_end_from, filters.scheduled_end_to),
    ):
        if low is not None:
            conditions.append(when >= low)
        if high is not None:
            conditions.append(when < high)
    return conditions


def _day(column: Any, dialect: str) -> ColumnElement[Any]:
    """The UTC day of a timestamp column as ``YYYY-MM-DD`` text."""
    if dialect == "sqlite":  # stored as naive UTC text, "YYYY-MM-DD HH:MM:SS..."
        return func.substr(column, 1, 10, type_=String)
    return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD", type_=String)


def _key_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


# --- the service ---------------------------------------------------------------------------------------


class TicketService:
    """Service tickets over the crm database. Methods take the asking user (a :class:`Principal`), or a
    ``"system:<service>"`` string for the suite's own services (gRPC)."""

    def __init__(
        self,
        db: Database,
        *,
        audit: AuditLog,
        attachments: AttachmentStore,
        cursor_secret: bytes,
        on_outbox: Callable[[], None] | None = None,
    ) -> None:
        self._db = db
        self._audit = audit
        self._attachments = attachments
        self._cursor_secret = cursor_secret
        self._on_outbox = on_outbox or (lambda: None)

    # --- series and types (admins) ---------------------------------------------------------------------

    async def list_series(self) -> list[SeriesView]:
        async with self._db.session() as session:
            rows = await session.scalars(select(TicketSeries).order_by(TicketSeries.code))
            return [SeriesView(row) for row in rows]

    async def create_series(
        self, principal: Principal, code: str, name: str, *, next_number: int = 1, is_default: bool = False
    ) -> SeriesView:
        _require_admin(principal)
        if not _SERIES_CODE.fullmatch(code):
            raise InvalidField("code", "letters, digits, _ and -, up to 16, starting with a letter or digit")
        name = _text("name", name, max_length=MAX_NAME_LENGTH, required=True)
        if next_number < 1:
            raise InvalidField("next_number", "at least 1")
        now = utcnow()
        try:
            async with self._db.session() as session:
                has_default = await session.scalar(select(TicketSeries.code).where(TicketSeries.is_default))
                if is_default:
                    await session.execute(update(TicketSeries).values(is_default=False))
                series = TicketSeries(
                    code=code,
                    name=name,
                    last_number=next_number - 1,
                    is_default=is_default or has_default is None,
                    active=True,
                    created_at=now,
                    updated_at=now,
                )
                session.add(series)
                await session.flush()
                await self._audit.record(
                    session, principal, "ticket_series", code, "create", {"name": [None, name]}
                )
        except IntegrityError:
            raise AlreadyExists(f"a series {code} exists") from None
        return SeriesView(series)

    async def update_series(self, principal: Principal, code: str, values: Mapping[str, Any]) -> SeriesView:
        """Rename, (de)activate, make default, or move the numbering on (never back)."""
        _require_admin(principal)
        async with self._db.session() as session:
            series = await session.scalar(
                select(TicketSeries).where(TicketSeries.code == code).with_for_update()
            )
            if series is None:
                raise TicketNotFound(f"no series {code}")
            before = {"name": series.name, "active": series.active, "is_default": series.is_default}
            before["next_number"] = series.last_number + 1
            if "name" in values:
                series.name = _text("name", values["name"], max_length=MAX_NAME_LENGTH, required=True)
            if "active" in values:
                series.active = bool(values["active"])
            if "is_default" in values:
                if values["is_default"]:
                    await session.execute(
                        update(TicketSeries).where(TicketSeries.code != code).values(is_default=False)
                    )
                series.is_default = bool(values["is_default"])
            if "next_number" in values:
                wanted = int(values["next_number"])
                if wanted <= series.last_number:
                    raise InvalidField(
                        "next_number", f"at least {series.last_number + 1}: the numbers before are used"
                    )
                series.last_number = wanted - 1
            series.updated_at = utcnow()
            after = {
                "name": series.name,
                "active": series.active,
                "is_default": series.is_default,
                "next_number": series.last_number + 1,
            }
            await self._audit.record(session, principal, "ticket_series", code, "update", diff(before, after))
            return SeriesView(series)

    async def list_types(self, *, include_inactive: bool = False) -> list[TicketType]:
        async with self._db.session() as session:
            query = select(TicketType).order_by(TicketType.name, TicketType.code)
            if not include_inactive:
                query = query.where(TicketType.active)
            return list(await session.scalars(query))

    async def create_type(self, principal: Principal, code: str, name: str) -> TicketType:
        _require_admin(principal)
        if not _TYPE_CODE.fullmatch(code):
            raise InvalidField("code", "lower-case letters, digits, _ and -, up to 32")
        name = _text("name", name, max_length=MAX_NAME_LENGTH, required=True)
        now = utcnow()
        try:
            async with self._db.session() as session:
                kind = TicketType(code=code, name=name, active=True, created_at=now, updated_at=now)
                session.add(kind)
                await session.flush()
                await self._audit.record(
                    session, principal, "ticket_type", code, "create", {"name": [None, name]}
                )
        except IntegrityError:
            raise AlreadyExists(f"a ticket type {code} exists") from None
        return kind

    async def update_type(
        self, principal: Principal, code: str, *, name: str | None = None, active: bool | None = None
    ) -> TicketType:
        _require_admin(principal)
        async with self._db.session() as session:
            kind = await session.get(TicketType, code)
            if kind is None:
                raise TicketNotFound(f"no ticket type {code}")
            before = {"name": kind.name, "active": kind.active}
            if name is not None:
                kind.name = _text("name", name, max_length=MAX_NAME_LENGTH, required=True)
            if active is not None:
                kind.active = active
            kind.updated_at = utcnow()
            await self._audit.record(
                session,
                principal,
                "ticket_type",
                code,
                "update",
                diff(before, {"name": kind.name, "active": kind.active}),
            )
            return kind

    # --- reading ---------------------------------------------------------------------------------------

    async def get(self, actor: Actor, ticket_id: str) -> TicketView:
        async with self._db.session() as session:
            return await self._visible(session, actor, ticket_id)

    async def list_tickets(
        self,
        actor: Actor,
        filters: TicketFilters,
        *,
        limit: int = paging.DEFAULT_LIMIT,
        cursor: str | None = None,
        include_total: bool = False,
    ) -> TicketPage:
        conditions = [visible_tickets(actor), *filter_conditions(filters)]
        return await self._page(
            conditions, CURSOR_DOMAIN, limit=limit, cursor=cursor, include_total=include_total
        )

    async def list_for_contact(
        self,
        contact_id: str,
        *,
        open_only: bool = False,
        limit: int = paging.DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> TicketPage:
        """The tickets of a customer, as client or as contact person, newest first (for services)."""
        conditions: list[ColumnElement[bool]] = [
            or_(Ticket.client_id == contact_id, Ticket.contact_person_id == contact_id)
        ]
        if open_only:
            conditions.append(Ticket.status.in_(sorted(OPEN_STATUSES)))
        return await self._page(
            conditions, CONTACT_CURSOR_DOMAIN, limit=limit, cursor=cursor, include_total=False
        )

    async def group(self, actor: Actor, filters: TicketFilters, group_by: str) -> Groups:
        """How many visible tickets matching ``filters`` fall in each value of ``group_by``."""
        if group_by not in GROUP_FIELDS:
            raise InvalidField("group_by", f"one of {', '.join(GROUP_FIELDS)}")
        conditions = [visible_tickets(actor), *filter_conditions(filters)]
        column: Any = getattr(Ticket, group_by)
        if group_by in ("scheduled_start", "scheduled_end"):
            column = _day(column, self._db.dialect)
        key = column.label("key")
        count = func.count().label("count")
        async with self._db.session() as session:
            rows = (
                await session.execute(
                    select(key, count)
                    .where(*conditions)
                    .group_by(key)
                    .order_by(count.desc(), key.asc().nulls_last())
                    .limit(MAX_GROUPS + 1)
                )
            ).all()
            total = int(
                await session.scalar(select(func.count()).select_from(Ticket).where(*conditions)) or 0
            )
        groups = [GroupCount(_key_text(key_value), int(number)) for key_value, number in rows[:MAX_GROUPS]]
        return Groups(field=group_by, groups=groups, total=total, truncated=len(rows) > MAX_GROUPS)

    def export(self, actor: Actor, filters: TicketFilters) -> AsyncIterator[list[TicketView]]:
        """Every visible ticket matching ``filters``, newest first, in chunks, each read in a short
        session of its own (memory bounded by a chunk, no connection held while the caller writes)."""
        conditions = [visible_tickets(actor), *filter_conditions(filters)]  # checked before streaming
        return self._export(conditions)

    async def _export(self, conditions: list[ColumnElement[bool]]) -> AsyncIterator[list[TicketView]]:
        after: tuple[datetime, str] | None = None
        while True:
            page_conditions = list(conditions)
            if after is not None:
                page_conditions.append(_before(*after))
            async with self._db.session() as session:
                views = await self._views(
                    session,
                    select(Ticket, TicketType.name)
                    .outerjoin(TicketType, TicketType.code == Ticket.type_code)
                    .where(*page_conditions)
                    .order_by(Ticket.created_at.desc(), Ticket.id.desc())
                    .limit(EXPORT_CHUNK),
                )
            if not views:
                return
            yield views
            if len(views) < EXPORT_CHUNK:
                return
            last = views[-1].ticket
            after = (last.created_at, last.id)

    async def calendar(
        self,
        actor: Actor,
        start: datetime,
        end: datetime,
        *,
        team_id: str | None = None,
        employee_id: str | None = None,
    ) -> Calendar:
        """The appointments: visible tickets scheduled in [start, end), cancelled ones left out, by start.
        ``employee_id``: those the employee took or checks."""
        start_at, end_at = _when("from", start), _when("to", end)
        assert start_at is not None
        assert end_at is not None
        if end_at <= start_at:
            raise InvalidField("to", "after from")
        if end_at - start_at > timedelta(days=MAX_CALENDAR_DAYS):
            raise InvalidField("to", f"at most {MAX_CALENDAR_DAYS} days after from")
        conditions: list[ColumnElement[bool]] = [
            visible_tickets(actor),
            Ticket.status != CANCELLED,
            Ticket.scheduled_start.is_not(None),
            Ticket.scheduled_start < end_at,
            func.coalesce(Ticket.scheduled_end, Ticket.scheduled_start) >= start_at,
        ]
        if team_id:
            conditions.append(Ticket.team_id == team_id)
        if employee_id:
            conditions.append(or_(Ticket.taken_by_id == employee_id, Ticket.checker_id == employee_id))
        async with self._db.session() as session:
            views = await self._views(
                session,
                select(Ticket, TicketType.name)
                .outerjoin(TicketType, TicketType.code == Ticket.type_code)
                .where(*conditions)
                .order_by(Ticket.scheduled_start, Ticket.id)
                .limit(MAX_CALENDAR_ITEMS + 1),
            )
        return Calendar(items=views[:MAX_CALENDAR_ITEMS], truncated=len(views) > MAX_CALENDAR_ITEMS)

    async def evolution(self, actor: Actor, ticket_id: str) -> Evolution:
        """Each status the ticket was in: when it entered, who moved it, how long it stayed."""
        now = utcnow()
        async with self._db.session() as session:
            view = await self._visible(session, actor, ticket_id)
            changes = (
                await session.scalars(
                    select(TicketStatusChange)
                    .where(TicketStatusChange.ticket_id == ticket_id)
                    .order_by(TicketStatusChange.at, TicketStatusChange.id)
                )
            ).all()
            notes = int(
                await session.scalar(
                    select(func.count()).select_from(TicketNote).where(TicketNote.ticket_id == ticket_id)
                )
                or 0
            )
        periods: list[StatusPeriod] = []
        totals: dict[str, float] = {}
        for index, change in enumerate(changes):
            left = changes[index + 1].at if index + 1 < len(changes) else None
            if left is not None:
                seconds: float | None = (left - change.at).total_seconds()
            elif change.to_status in OPEN_STATUSES:
                seconds = (now - change.at).total_seconds()
            else:
                seconds = None
            if seconds is not None:
                totals[change.to_status] = totals.get(change.to_status, 0.0) + seconds
            periods.append(
                StatusPeriod(
                    status=change.to_status,
                    entered_at=change.at,
                    entered_by=change.actor_subject,
                    entered_by_employee_id=change.actor_employee_id,
                    left_at=left,
                    seconds=seconds,
                )
            )
        opened = changes[0].at if changes else view.ticket.created_at
        closed = view.ticket.status_changed_at if view.ticket.status not in OPEN_STATUSES else now
        return Evolution(
            view=view,
            periods=periods,
            seconds_by_status=totals,
            open_seconds=(closed - opened).total_seconds(),
            as_of=now,
            notes=notes,
        )

    async def history(self, actor: Actor, ticket_id: str) -> Sequence[AuditEntry]:
        async with self._db.session() as session:
            await self._visible(session, actor, ticket_id)
            return await AuditLog.history(session, OWNER_KIND, ticket_id)

    async def notes(self, actor: Actor, ticket_id: str) -> Sequence[TicketNote]:
        async with self._db.session() as session:
            await self._visible(session, actor, ticket_id)
            rows = await session.scalars(
                select(TicketNote)
                .where(TicketNote.ticket_id == ticket_id)
                .order_by(TicketNote.created_at, TicketNote.id)
            )
            return rows.all()

    async def attachments(self, actor: Actor, ticket_id: str) -> Sequence[Attachment]:
        async with self._db.session() as session:
            await self._visible(session, actor, ticket_id)
            return await AttachmentStore.list(session, OWNER_KIND, ticket_id)

    async def open_attachment(self, actor: Actor, ticket_id: str, attachment_id: str) -> StoredFile:
        async with self._db.session() as session:
            await self._visible(session, actor, ticket_id)
            attachment = await session.get(Attachment, attachment_id)
            if attachment is None or attachment.owner_kind != OWNER_KIND or attachment.owner_id != ticket_id:
                raise TicketNotFound(f"the ticket has no attachment {attachment_id}")
            return await self._attachments.open(session, attachment_id)

    # --- writing ---------------------------------------------------------------------------------------

    async def create(self, actor: Actor, data: TicketInput) -> TicketView:
        """Open a ticket (status taken) with the next number of its series."""
        values = {
            name: _check_value(name, getattr(data, name)) for name in EDITABLE_FIELDS if name != "ticket_date"
        }
        if data.taken_by_id is None:
            values["taken_by_id"] = _employee(actor)
        values["ticket_date"] = (
            _check_value("ticket_date", data.ticket_date) if data.ticket_date is not None else utcnow().date()
        )
        _check_coherent(values, TAKEN)
        series_code = data.series or None
        if series_code is not None and not _SERIES_CODE.fullmatch(series_code):
            raise InvalidField("series", "not a series code")
        if data.request_key and len(data.request_key) > MAX_KEY_LENGTH:
            raise InvalidField("request_key", f"at most {MAX_KEY_LENGTH} characters")
        key = _request_key(actor, data.request_key) if data.request_key else None
        if key is not None:
            existing = await self._by_key(key)
            if existing is not None:
                return existing
        try:
            async with self._db.session() as session:
                series, number = await self._next_number(session, series_code)
                type_name = await self._check_type(session, values["type_code"])
                now = utcnow()
                ticket = Ticket(
                    id=str(uuid.uuid4()),
                    series=series,
                    number=number,
                    status=TAKEN,
                    status_changed_at=now,
                    request_key=key,
                    version=1,
                    created_by=_subject(actor),
                    created_at=now,
                    updated_at=now,
                    **values,
                )
                session.add(ticket)
                await session.flush()
                session.add(
                    TicketStatusChange(
                        ticket_id=ticket.id,
                        from_status=None,
                        to_status=TAKEN,
                        at=now,
                        actor_subject=_subject(actor),
                        actor_employee_id=_employee(actor),
                    )
                )
                created = diff({}, {**_snapshot(ticket), "series": series, "number": number})
                await self._audit.record(session, actor, OWNER_KIND, ticket.id, "create", created)
                await self._publish(session, actor, ticket, "created", [])
        except IntegrityError:
            if key is not None:
                existing = await self._by_key(key)
                if existing is not None:
                    return existing
            raise
        self._on_outbox()
        return TicketView(ticket, type_name)

    async def update(self, principal: Actor, ticket_id: str, changes: TicketChanges) -> TicketView:
        """Change fields of an open ticket (not its status: see :meth:`change_status`)."""
        values = {name: _check_value(name, value) for name, value in changes.values.items()}
        async with self._db.session() as session:
            view = await self._visible(session, principal, ticket_id, for_update=True)
            ticket = view.ticket
            if ticket.version != changes.version:
                raise StaleVersion(ticket.version)
            if ticket.status not in OPEN_STATUSES:
                raise TicketClosed(ticket.status)
            before = _snapshot(ticket)
            after = {**before, **values}
            _check_coherent(after, ticket.status)
            changed = diff(before, after)
            if not changed:
                return view
            type_name = view.type_name
            if "type_code" in changed:
                type_name = await self._check_type(session, after["type_code"])
            for name in changed:
                setattr(ticket, name, after[name])
            ticket.version += 1
            ticket.updated_at = utcnow()
            await self._audit.record(session, principal, OWNER_KIND, ticket.id, "update", changed)
            await self._publish(session, principal, ticket, "updated", sorted(changed))
        self._on_outbox()
        return TicketView(ticket, type_name)

    async def change_status(
        self,
        actor: Actor,
        ticket_id: str,
        target: str,
        *,
        version: int | None = None,
        schedule: Mapping[str, Any] | None = None,
        note: str | None = None,
    ) -> TicketView:
        """Move the ticket along the workflow. ``schedule`` may set the scheduled start, end and team in
        the same step (allocating in one go); ``note`` adds a line to the notes timeline."""
        if target not in STATUSES:
            raise InvalidField("status", f"one of {', '.join(STATUSES)}")
        planned = {name: _check_value(name, value) for name, value in (schedule or {}).items()}
        unknown = sorted(set(planned) - set(SCHEDULE_FIELDS))
        if unknown:
            raise InvalidField(
                unknown[0], "only the schedule (scheduled_start, scheduled_end, team_id) goes with a status"
            )
        note_text = _text("note", note, max_length=MAX_NOTE_LENGTH)
        async with self._db.session() as session:
            view = await self._visible(session, actor, ticket_id, for_update=True)
            ticket = view.ticket
            if version is not None and ticket.version != version:
                raise StaleVersion(ticket.version)
            current = ticket.status
            allowed = TRANSITIONS[current]
            if target not in allowed:
                raise TransitionNotAllowed(current, target, allowed)
            before = _snapshot(ticket)
            after = {**before, **planned, "status": target}
            if target in SCHEDULED_STATUSES:
                missing = [name for name in SCHEDULE_FIELDS if after.get(name) is None]
                if missing:
                    raise TransitionNotAllowed(current, target, allowed, missing)
            _check_coherent(after, target)
            now = utcnow()
            for name, value in planned.items():
                setattr(ticket, name, value)
            ticket.status = target
            ticket.status_changed_at = now
            ticket.version += 1
            ticket.updated_at = now
            session.add(
                TicketStatusChange(
                    ticket_id=ticket.id,
                    from_status=current,
                    to_status=target,
                    at=now,
                    actor_subject=_subject(actor),
                    actor_employee_id=_employee(actor),
                )
            )
            email_rows: list[dict[str, Any]] = []
            if target in EMAIL_STATUSES and ticket.notify_customer and ticket.customer_email:
                email_rows.append(self._email_row(TicketView(ticket, view.type_name), target, now))
                if target == ALLOCATED:
                    ticket.allocation_email_requested_at = now
                else:
                    ticket.finalization_email_requested_at = now
            if note_text:
                session.add(self._note(actor, ticket.id, note_text, None, now))
            changed = diff(before, _snapshot(ticket))
            await self._audit.record(session, actor, OWNER_KIND, ticket.id, "status", changed)
            event = self._event(actor, ticket, "status_changed", sorted(changed))
            event.status_changed.CopyFrom(
                tickets_pb2.TicketStatusChange(
                    ticket=ticket_message(ticket), from_status=current, to_status=target
                )
            )
            await outbox.add(
                session, [outbox.row(TICKET_SUBJECTS["status_changed"], event, event.event_id), *email_rows]
            )
        self._on_outbox()
        return TicketView(ticket, view.type_name)

    async def delete(self, principal: Actor, ticket_id: str, *, version: int | None = None) -> None:
        """Delete the ticket with its notes, status history and files (its number is not reused)."""
        async with self._db.session() as session:
            view = await self._visible(session, principal, ticket_id, for_update=True)
            ticket = view.ticket
            if version is not None and ticket.version != version:
                raise StaleVersion(ticket.version)
            for attachment in await AttachmentStore.list(session, OWNER_KIND, ticket.id):
                await self._attachments.delete(session, attachment.id)
            await session.execute(delete(TicketNote).where(TicketNote.ticket_id == ticket.id))
            await session.execute(delete(TicketStatusChange).where(TicketStatusChange.ticket_id == ticket.id))
            await session.execute(delete(Ticket).where(Ticket.id == ticket.id))
            await self._audit.record(
                session,
                principal,
                OWNER_KIND,
                ticket.id,
                "delete",
                diff({**_snapshot(ticket), "code": view.code}, {}),
            )
            event = self._event(principal, ticket, "deleted", [], event_id=f"ticket:{ticket.id}:deleted")
            event.deleted.CopyFrom(tickets_pb2.TicketDeleted(ticket_id=ticket.id, code=view.code))
            await outbox.add(session, [outbox.row(TICKET_SUBJECTS["deleted"], event, event.event_id)])
        self._on_outbox()

    async def add_note(
        self, actor: Actor, ticket_id: str, text: str, *, file: NoteFile | None = None
    ) -> tuple[TicketNote, Attachment | None]:
        """A line of the notes timeline (who, when, what), with a file when one is given; notes may be
        added to closed tickets too."""
        body = _text("text", text, max_length=MAX_NOTE_LENGTH)
        if not body and file is None:
            raise InvalidField("text", "required (or attach a file)")
        async with self._db.session() as session:
            view = await self._visible(session, actor, ticket_id)
            attachment = None
            if file is not None:
                attachment = await self._attachments.save(
                    session,
                    owner_kind=OWNER_KIND,
                    owner_id=ticket_id,
                    filename=file.filename,
                    declared_type=file.declared_type,
                    chunks=file.chunks,
                    created_by=_subject(actor),
                )
            note = self._note(actor, ticket_id, body, attachment.id if attachment else None, utcnow())
            session.add(note)
            await self._audit.record(
                session,
                actor,
                OWNER_KIND,
                ticket_id,
                "note",
                {"note": [None, body], **({"attachment": [None, attachment.filename]} if attachment else {})},
            )
            await self._publish(
                session,
                actor,
                view.ticket,
                "updated",
                ["notes"],
                event_id=f"ticket:{ticket_id}:note:{note.id}",
            )
        self._on_outbox()
        return note, attachment

    # --- internals -------------------------------------------------------------------------------------

    async def _page(
        self,
        conditions: list[ColumnElement[bool]],
        domain: str,
        *,
        limit: int,
        cursor: str | None,
        include_total: bool,
    ) -> TicketPage:
        page_conditions = list(conditions)
        if cursor:
            page_conditions.append(_before(*_cursor_key(paging.decode(self._cursor_secret, domain, cursor))))
        async with self._db.session() as session:
            views = await self._views(
                session,
                select(Ticket, TicketType.name)
                .outerjoin(TicketType, TicketType.code == Ticket.type_code)
                .where(*page_conditions)
                .order_by(Ticket.created_at.desc(), Ticket.id.desc())
                .limit(limit + 1),
            )
            total = None
            if include_total:
                total = int(
                    await session.scalar(select(func.count()).select_from(Ticket).where(*conditions)) or 0
                )
        items = views[:limit]
        next_cursor = None
        if len(views) > limit:
            last = items[-1].ticket
            next_cursor = paging.encode(self._cursor_secret, domain, [last.created_at.isoformat(), last.id])
        return TicketPage(items=items, next_cursor=next_cursor, total=total)

    @staticmethod
    async def _views(session: AsyncSession, query: Any) -> list[TicketView]:
        rows = (await session.execute(query)).all()
        return [TicketView(ticket, type_name) for ticket, type_name in rows]

    async def _visible(
        self, session: AsyncSession, actor: Actor, ticket_id: str, *, for_update: bool = False
    ) -> TicketView:
        query = (
            select(Ticket, TicketType.name)
            .outerjoin(TicketType, TicketType.code == Ticket.type_code)
            .where(Ticket.id == ticket_id, visible_tickets(actor))
        )
        if for_update:
            query = query.with_for_update(of=Ticket)
        row = (await session.execute(query)).first()
        if row is None:
            raise TicketNotFound(f"no ticket {ticket_id}")
        return TicketView(row[0], row[1])

    async def _by_key(self, key: str) -> TicketView | None:
        async with self._db.session() as session:
            row = (
                await session.execute(
                    select(Ticket, TicketType.name)
                    .outerjoin(TicketType, TicketType.code == Ticket.type_code)
                    .where(Ticket.request_key == key)
                )
            ).first()
        return TicketView(row[0], row[1]) if row else None

    @staticmethod
    async def _next_number(session: AsyncSession, code: str | None) -> tuple[str, int]:
        """Take the next number of the series (the default one when ``code`` is None)."""
        if code is None:
            code = await session.scalar(
                select(TicketSeries.code).where(TicketSeries.is_default, TicketSeries.active).limit(1)
            )
            if code is None:
                raise InvalidField("series", "required: no default series is set")
        row = (
            await session.execute(
                update(TicketSeries)
                .where(TicketSeries.code == code, TicketSeries.active)
                .values(last_number=TicketSeries.last_number + 1)
                .returning(TicketSeries.last_number)
                .execution_options(synchronize_session=False)
            )
        ).first()
        if row is None:
            exists_inactive = await session.scalar(select(TicketSeries.code).where(TicketSeries.code == code))
            raise InvalidField(
                "series", f"the series {code} is not active" if exists_inactive else f"no series {code}"
            )
        return code, int(row[0])

    @staticmethod
    async def _check_type(session: AsyncSession, code: str | None) -> str | None:
        """The name of an active ticket type (None without a type); InvalidField otherwise."""
        if code is None:
            return None
        kind = await session.get(TicketType, code)
        if kind is None or not kind.active:
            raise InvalidField("type_code", f"no active ticket type {code}")
        return kind.name

    @staticmethod
    def _note(
        actor: Actor, ticket_id: str, text: str, attachment_id: str | None, now: datetime
    ) -> TicketNote:
        return TicketNote(
            id=str(uuid.uuid4()),
            ticket_id=ticket_id,
            author_subject=_subject(actor),
            author_employee_id=_employee(actor),
            author_name="" if isinstance(actor, str) else actor.name[:200],
            text=text,
            attachment_id=attachment_id,
            created_at=now,
        )

    def _email_row(self, view: TicketView, reason: str, now: datetime) -> dict[str, Any]:
        ticket = view.ticket
        subject, body = customer_email(view, reason)
        request_id = f"ticket:{ticket.id}:email:{reason}:{ticket.version}"
        message = tickets_pb2.TicketEmailRequest(
            request_id=request_id,
            occurred_at=timestamp_message(now),
            ticket_id=ticket.id,
            ticket_code=view.code,
            reason=reason,
            to=ticket.customer_email or "",
            subject=subject,
            body=body,
        )
        return outbox.row(EMAIL_REQUESTED_SUBJECT, message, request_id)

    @staticmethod
    def _event(
        actor: Actor, ticket: Ticket, kind: str, changed: list[str], *, event_id: str | None = None
    ) -> tickets_pb2.TicketEvent:
        return tickets_pb2.TicketEvent(
            event_id=event_id or f"ticket:{ticket.id}:{ticket.version}",
            occurred_at=timestamp_message(utcnow()),
            version=ticket.version,
            actor=_subject(actor),
            changed=changed,
        )

    async def _publish(
        self,
        session: AsyncSession,
        actor: Actor,
        ticket: Ticket,
        kind: str,
        changed: list[str],
        *,
        event_id: str | None = None,
    ) -> None:
        event = self._event(actor, ticket, kind, changed, event_id=event_id)
        getattr(event, kind).CopyFrom(ticket_message(ticket))
        await outbox.add(session, [outbox.row(TICKET_SUBJECTS[kind], event, event.event_id)])


def _before(created: datetime, last_id: str) -> ColumnElement[bool]:
    """Rows after (created, id) in newest-first order."""
    return or_(Ticket.created_at < created, and_(Ticket.created_at == created, Ticket.id < last_id))


def _require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise NotAllowed("only admins manage ticket series and types")


__all__ = [
    "EMAIL_REQUESTED_SUBJECT",
    "GROUP_FIELDS",
    "SYSTEM_ACTOR",
    "TICKET_SUBJECTS",
    "AlreadyExists",
    "Calendar",
    "Evolution",
    "Groups",
    "InvalidField",
    "NotAllowed",
    "NoteFile",
    "StaleVersion",
    "TicketChanges",
    "TicketClosed",
    "TicketError",
    "TicketFilters",
    "TicketInput",
    "TicketNotFound",
    "TicketPage",
    "TicketService",
    "TicketView",
    "TransitionNotAllowed",
    "customer_email",
    "ticket_code",
    "ticket_message",
    "visible_tickets",
]
