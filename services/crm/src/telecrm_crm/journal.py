"""The events journal: typed events with their people, contact, project, phone and attachments, made by
hand, by other services and from the call log; archived and restored; listed in the views users know.

Rules a reader should know before the code:

- **Types.** The system types (:data:`~telecrm_crm.journal_models.SYSTEM_TYPES`) are fixed: only their
  display name and position may change (installations name them in their language); custom types are
  an admin's, and one still used by events is deactivated rather than deleted.
- **Who sees what.** An event belongs to its responsible employee and team; lists go through
  :func:`~telecrm_crm.access.visible_filter`, and an event a user may not see answers 404 as if it did
  not exist. A user may not create or move an event outside what they see (403, nothing changed).
- **Versions.** Every change of an event increases ``version``; a change from a client names the
  version it read and answers 409 with the current one when the event moved on. Archived events are
  read-only until restored. Deleting leaves a tombstone: a late event of the call log cannot bring a
  deleted event back.
- **Calls.** ``calls.record.*`` gives one event per call id, kept at the highest record ``revision``
  (a redelivered or late event changes nothing); its type follows the direction and the disposition.
  ``calls.missed.*`` links the events of an item's missed calls to the item, marks them resolved with
  the call that resolved them, and turns that call's event into a *callback* (we called) or an *answer
  to a missed call* (they called again). The two streams may arrive in any order: what one says is kept
  (``journal_missed_items``) until the other's event needs it, and a missed call whose record has not
  arrived yet gets its event from the item. Fields a user edited by hand are never overwritten by the
  call log afterwards.
- Every change publishes ``crm.event.{created,updated,deleted,archived,restored}`` through the outbox
  and writes the operation log, in the transaction of the change.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

import phonenumbers
from sqlalchemy import ColumnElement, and_, func, literal_column, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from telecrm.calls.v1 import call_log_events_pb2 as record_pb
from telecrm.calls.v1 import calls_pb2
from telecrm.calls.v1 import missed_calls_pb2 as missed_pb
from telecrm.crm.v1 import journal_pb2
from telecrm_common.auth import Principal
from telecrm_common.db import Database, utcnow
from telecrm_common.telephony import (
    DIRECTION_BY_NAME,
    DIRECTION_NAMES,
    DISPOSITION_BY_NAME,
    DISPOSITION_NAMES,
    digits,
    is_missed_call,
    normalize_number,
)
from telecrm_common.timestamps import timestamp_datetime as timestamp_datetime
from telecrm_common.timestamps import timestamp_message
from telecrm_crm import outbox, paging
from telecrm_crm.access import visible_filter
from telecrm_crm.attachments import AttachmentError, AttachmentStore, StoredFile
from telecrm_crm.audit import AuditLog, diff
from telecrm_crm.journal_models import (
    ACCEPTED_CALL_TYPES,
    CALLBACK,
    CHANNELS,
    DIRECTIONS,
    INBOUND,
    INCOMING_CALL,
    INTERNAL,
    MISSED_CALL_ANSWER,
    MISSED_INCOMING_CALL,
    MISSED_OUTGOING_CALL,
    OUTBOUND,
    OUTGOING_CALL,
    SOURCE_API,
    SOURCE_CALLS,
    SOURCE_MANUAL,
    SOURCES,
    JournalEvent,
    JournalEventType,
    JournalMissedCall,
    JournalMissedItem,
    system_type_rows,
)
from telecrm_crm.models import Attachment, AuditEntry

log = logging.getLogger(__name__)

KIND = "event"  # the document kind: rights, audit entries, attachments' owner_kind, subjects
TYPE_KIND = "event_type"
EVENT_SUBJECT_PREFIX = "crm.event"
CHANGE_KINDS: tuple[str, ...] = ("created", "updated", "deleted", "archived", "restored")
EVENT_SUBJECTS = {kind: f"{EVENT_SUBJECT_PREFIX}.{kind}" for kind in CHANGE_KINDS}
CONSUMER_ACTOR = "system:journal"  # who the operation log names for events made from the call log
ARCHIVE_CHUNK = 500  # events archived by date per transaction
MAX_SELECTION = 1000  # ids in one archive / restore request
MAX_CONTENT = 100_000
MIN_NATIONAL_DIGITS = 7  # shorter national parts would match too many other numbers
OPEN, RESOLVED, DISCARDED = "open", "resolved", "discarded"
ITEM_STATES = {
    missed_pb.MISSED_CALL_STATE_OPEN: OPEN,
    missed_pb.MISSED_CALL_STATE_RESOLVED: RESOLVED,
    missed_pb.MISSED_CALL_STATE_DISCARDED: DISCARDED,
}
_TYPE_CODE = re.compile(r"[a-z][a-z0-9_]{1,31}")

Actor = Principal | str  # a user, or "system:<component>" (gRPC callers, the consumer)
ArchivedFilter = Literal["active", "archived", "all"]
Order = Literal["newest", "oldest"]
MissedState = Literal["open", "resolved", "all"]


# --- errors -------------------------------------------------------------------------------------------


class JournalError(Exception):
    """Base of the journal's refusals; ``status`` is the HTTP answer."""

    status = 400


class NotFound(JournalError):
    status = 404


class InvalidField(JournalError):
    """A value that cannot be taken; ``field`` names it as the client sent it."""

    status = 422

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


class Conflict(JournalError):
    status = 409


class VersionConflict(Conflict):
    def __init__(self, event_id: str, current: int, expected: int) -> None:
        super().__init__(f"event {event_id} is at version {current}, not {expected}: read it again and retry")
        self.current_version = current


class Forbidden(JournalError):
    status = 403


# --- inputs and outputs -------------------------------------------------------------------------------


@dataclass
class EventInput:
    """A new event. Empty strings count as absent."""

    type_code: str
    start_at: datetime | None = None  # None: now
    end_at: datetime | None = None
    responsible_employee_id: str | None = None  # None: the creating user's employee
    team_id: str | None = None  # None: the creating user's team when they have exactly one
    contact_id: str | None = None
    contact_person_id: str | None = None
    project_id: str | None = None
    phone: str | None = None
    email: str | None = None
    direction: str | None = None  # None: the type's direction
    subject: str | None = None
    content: str | None = None
    call_id: str | None = None


# Fields a user may change on an event (PATCH).
EDITABLE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(EventInput) if f.name != "call_id")
# Fields the call log fills; a user's change of one of them keeps the call log off it.
AUTO_FIELDS: frozenset[str] = frozenset(
    {
        "type_code",
        "start_at",
        "end_at",
        "responsible_employee_id",
        "team_id",
        "contact_id",
        "phone",
        "direction",
        "subject",
        "content",
    }
)
# A locked field and the columns it covers.
_LOCK_COLUMNS = {"phone": ("phone", "phone_e164", "phone_digits")}
# What a snapshot (audit, diff) holds.
_SNAPSHOT_FIELDS: tuple[str, ...] = (
    "type_code",
    "start_at",
    "end_at",
    "responsible_employee_id",
    "team_id",
    "contact_id",
    "contact_person_id",
    "project_id",
    "phone",
    "phone_e164",
    "email",
    "direction",
    "subject",
    "content",
    "call_id",
    "disposition",
    "missed_item_id",
    "resolved_at",
    "resolving_call_id",
    "answers_missed_item_id",
    "archived",
)


@dataclass
class EventQuery:
    type_codes: Sequence[str] = ()
    contact_id: str | None = None
    contact_person_id: str | None = None
    project_id: str | None = None
    without_project: bool = False
    phone: str | None = None  # any format
    employee_id: str | None = None  # responsible employee
    team_id: str | None = None
    start_from: datetime | None = None  # inclusive
    start_to: datetime | None = None  # exclusive
    direction: str | None = None
    call_id: str | None = None
    source: str | None = None
    text: str | None = None  # in subject or content
    archived: ArchivedFilter = "active"
    accepted_calls: bool = False  # inbound calls someone answered
    order: Order = "newest"
    limit: int = paging.DEFAULT_LIMIT
    cursor: str | None = None
    include_total: bool = False


@dataclass
class EventPage:
    items: list[JournalEvent]
    next_cursor: str | None = None
    total: int | None = None


@dataclass
class MissedQuery:
    state: MissedState = "all"
    phone: str | None = None
    employee_id: str | None = None
    team_id: str | None = None
    contact_id: str | None = None
    start_from: datetime | None = None
    start_to: datetime | None = None
    include_archived: bool = False
    limit: int = paging.DEFAULT_LIMIT
    cursor: str | None = None
    include_total: bool = False


@dataclass
class MissedGroup:
    """The missed incoming calls from one number."""

    key: str  # E.164, else the digits, else "" (calls without a number)
    number: str | None
    e164: str | None
    count: int
    open_count: int
    first_at: datetime
    last_at: datetime
    last_resolved_at: datetime | None
    contact_id: str | None
    last_event_id: str | None = None

    @property
    def resolved(self) -> bool:
        return self.open_count == 0


@dataclass
class MissedPage:
    items: list[MissedGroup]
    next_cursor: str | None = None
    total: int | None = None


@dataclass
class ArchiveResult:
    changed: list[str] = field(default_factory=list)  # ids archived (or restored)
    unchanged: list[str] = field(default_factory=list)  # already in that state
    count: int = 0


@dataclass
class ApplyResult:
    """What a batch of call-log events did."""

    created: int = 0
    updated: int = 0
    ignored: int = 0


@dataclass
class TypeInput:
    code: str
    name: str
    channel: str = "other"
    direction: str | None = None
    position: int = 1000


# --- helpers ------------------------------------------------------------------------------------------


def _actor_name(actor: Actor) -> str:
    return actor if isinstance(actor, str) else actor.subject


def _principal(actor: Actor) -> Principal | None:
    return None if isinstance(actor, str) else actor


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def call_type(direction: str | None, disposition: str | None, resolves_missed: bool) -> str:
    """The journal type of a call: from its direction and what became of it (see the module's rules).

    Missed is what the call log calls missed (:func:`telecrm_common.telephony.is_missed_call`): an
    inbound call nobody answered, an outbound one that did not get through.
    """
    outbound = direction == OUTBOUND
    if resolves_missed:
        return CALLBACK if outbound else MISSED_CALL_ANSWER
    code = DISPOSITION_BY_NAME.get(disposition or "")
    missed = code is not None and is_missed_call(DIRECTION_BY_NAME[OUTBOUND if outbound else INBOUND], code)
    if outbound:
        return MISSED_OUTGOING_CALL if missed else OUTGOING_CALL
    return MISSED_INCOMING_CALL if missed else INCOMING_CALL


def phone_condition(query: str, default_region: str) -> ColumnElement[bool]:
    """Events with this number in any format: the same E.164 number; a number ending with its national
    part (a number kept as written, "8 (499) 369-04-39", for "+7 499 369 04 39"); or the digits typed
    anywhere in the number ("369-04")."""
    query_digits = digits(query)
    if not query_digits:
        raise InvalidField("phone", "a phone number needs digits")
    conditions: list[ColumnElement[bool]] = [JournalEvent.phone_digits.like(f"%{query_digits}%")]
    e164 = normalize_number(query, default_region)
    if e164:
        conditions.append(JournalEvent.phone_e164 == e164)
        national = phonenumbers.national_significant_number(phonenumbers.parse(e164))
        if len(national) >= MIN_NATIONAL_DIGITS:
            conditions.append(JournalEvent.phone_digits.like(f"%{national}"))
    return or_(*conditions)


def snapshot(row: JournalEvent) -> dict[str, Any]:
    return {name: getattr(row, name) for name in _SNAPSHOT_FIELDS}


def event_message(row: JournalEvent) -> journal_pb2.JournalEvent:
    """The protobuf of a journal event (bus events and gRPC answers)."""
    return journal_pb2.JournalEvent(
        event_id=row.id,
        type_code=row.type_code,
        start_at=timestamp_message(row.start_at),
        end_at=timestamp_message(row.end_at),
        responsible_employee_id=row.responsible_employee_id or "",
        team_id=row.team_id or "",
        contact_id=row.contact_id or "",
        contact_person_id=row.contact_person_id or "",
        project_id=row.project_id or "",
        phone=row.phone or "",
        phone_e164=row.phone_e164 or "",
        phone_valid=row.phone is None or row.phone_e164 is not None,
        email=row.email or "",
        direction=row.direction or "",
        subject=row.subject or "",
        content=row.content or "",
        call_id=row.call_id or "",
        disposition=row.disposition or "",
        missed_item_id=row.missed_item_id or "",
        resolved_at=timestamp_message(row.resolved_at),
        resolving_call_id=row.resolving_call_id or "",
        answers_missed_item_id=row.answers_missed_item_id or "",
        source=row.source,
        archived=row.archived,
        archived_at=timestamp_message(row.archived_at),
        version=row.version,
        created_at=timestamp_message(row.created_at),
        updated_at=timestamp_message(row.updated_at),
        created_by=row.created_by or "",
    )


def change_row(
    kind: str, row: JournalEvent, actor: Actor, changed: Sequence[str] = (), suffix: str = ""
) -> dict[str, Any]:
    """The outbox row of ``crm.event.<kind>`` about ``row``; its id is a function of the event, its
    version and the change, so a retried transaction stages the same message id."""
    msg_id = f"{KIND}:{row.id}:{row.version}"
    if kind not in ("created", "updated"):
        msg_id += f":{kind}"
    msg_id += suffix
    change = journal_pb2.JournalEventChange(
        event_id=msg_id,
        occurred_at=timestamp_message(utcnow()),
        version=row.version,
        actor=_actor_name(actor),
        changed=list(changed),
    )
    if kind == "deleted":
        change.deleted.CopyFrom(journal_pb2.JournalEventDeleted(event_id=row.id, call_id=row.call_id or ""))
    else:
        getattr(change, kind).CopyFrom(event_message(row))
    return outbox.row(EVENT_SUBJECTS[kind], change, msg_id)


# --- the service --------------------------------------------------------------------------------------


class JournalService:
    """The journal's logic over the crm database (no web or gRPC here)."""

    def __init__(
        self,
        db: Database,
        *,
        audit: AuditLog,
        attachments: AttachmentStore,
        cursor_secret: bytes,
        on_outbox: Callable[[], None] | None = None,
        default_region: str = "BG",
        log_internal_calls: bool = False,
    ) -> None:
        self.db = db
        self.audit = audit
        self.attachments = attachments
        self._secret = cursor_secret
        self._on_outbox = on_outbox
        self.default_region = default_region
        self.log_internal_calls = log_internal_calls

    def _wake(self) -> None:
        if self._on_outbox is not None:
            self._on_outbox()

    # --- types ------------------------------------------------------------------------------------

    async def ensure_system_types(self) -> int:
        """Insert the system types that are missing (the migration seeds them; this repairs). Returns how
        many were added."""
        async with self.db.session() as session:
            known = set((await session.scalars(select(JournalEventType.code))).all())
            missing = [row for row in system_type_rows(utcnow()) if row["code"] not in known]
            for row in missing:
                session.add(JournalEventType(**row))
        return len(missing)

    async def list_types(self, *, include_inactive: bool = True) -> list[JournalEventType]:
        async with self.db.session() as session:
            stmt = select(JournalEventType).order_by(JournalEventType.position, JournalEventType.code)
            if not include_inactive:
                stmt = stmt.where(JournalEventType.active.is_(True))
            return list((await session.scalars(stmt)).all())

    async def create_type(self, actor: Actor, data: TypeInput) -> JournalEventType:
        code = data.code.strip().lower()
        if not _TYPE_CODE.fullmatch(code):
            raise InvalidField("code", "2 to 32 of a-z, 0-9 and _, starting with a letter")
        name = _text(data.name)
        if name is None:
            raise InvalidField("name", "a type needs a name")
        self._check_type_fields(data.channel, data.direction)
        try:
            async with self.db.session() as session:
                if await session.get(JournalEventType, code) is not None:
                    raise Conflict(f"an event type with code {code!r} exists")
                now = utcnow()
                row = JournalEventType(
                    code=code,
                    name=name,
                    system=False,
                    channel=data.channel,
                    direction=data.direction,
                    active=True,
                    position=data.position,
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
                await session.flush()
                await self.audit.record(
                    session, actor, TYPE_KIND, code, "create", diff({}, self._type_snapshot(row))
                )
        except IntegrityError:
            raise Conflict(f"an event type with code {code!r} exists") from None
        return row

    async def update_type(
        self, actor: Actor, code: str, changes: Mapping[str, Any], expected_version: int | None = None
    ) -> JournalEventType:
        async with self.db.session() as session:
            row = await session.get(JournalEventType, code, with_for_update=True)
            if row is None:
                raise NotFound(f"no event type {code!r}")
            if expected_version is not None and expected_version != row.version:
                raise Conflict(f"event type {code} is at version {row.version}, not {expected_version}")
            if row.system:
                fixed = sorted(
                    name
                    for name, value in changes.items()
                    if name not in ("name", "position") and value != getattr(row, name, None)
                )
                if fixed:
                    raise Conflict(
                        f"{fixed[0]}: a system type's {', '.join(fixed)} cannot change "
                        "(only its name and position)"
                    )
            before = self._type_snapshot(row)
            if "name" in changes:
                name = _text(changes["name"])
                if name is None:
                    raise InvalidField("name", "a type needs a name")
                row.name = name
            if "channel" in changes or "direction" in changes:
                self._check_type_fields(
                    changes.get("channel", row.channel), changes.get("direction", row.direction)
                )
                row.channel = changes.get("channel", row.channel)
                row.direction = changes.get("direction", row.direction)
            if "active" in changes:
                row.active = bool(changes["active"])
            if "position" in changes:
                row.position = int(changes["position"])
            changed = diff(before, self._type_snapshot(row))
            if changed:
                row.version += 1
                row.updated_at = utcnow()
                await self.audit.record(session, actor, TYPE_KIND, code, "update", changed)
        return row

    async def delete_type(self, actor: Actor, code: str) -> None:
        async with self.db.session() as session:
            row = await session.get(JournalEventType, code, with_for_update=True)
            if row is None:
                raise NotFound(f"no event type {code!r}")
            if row.system:
                raise Conflict(f"{code} is a system type: it cannot be deleted")
            used = await session.scalar(
                select(func.count()).select_from(JournalEvent).where(JournalEvent.type_code == code)
            )
            if used:
                raise Conflict(f"{used} events have type {code}: deactivate it instead (active: false)")
            await self.audit.record(
                session, actor, TYPE_KIND, code, "delete", diff(self._type_snapshot(row), {})
            )
            await session.delete(row)

    @staticmethod
    def _check_type_fields(channel: str, direction: str | None) -> None:
        if channel not in CHANNELS:
            raise InvalidField("channel", f"one of {', '.join(CHANNELS)}")
        if direction is not None and direction not in DIRECTIONS:
            raise InvalidField("direction", f"one of {', '.join(DIRECTIONS)}, or null")

    @staticmethod
    def _type_snapshot(row: JournalEventType) -> dict[str, Any]:
        return {
            "name": row.name,
            "channel": row.channel,
            "direction": row.direction,
            "active": row.active,
            "position": row.position,
        }

    # --- events: create, read, change, delete ---------------------------------------------------

    async def create_event(
        self, actor: Actor, data: EventInput, *, request_id: str | None = None, source: str | None = None
    ) -> tuple[JournalEvent, bool]:
        """Create an event; returns it and whether it is new. With ``request_id``, a repeat returns the
        event the first request made (and False)."""
        principal = _principal(actor)
        source = source or (SOURCE_MANUAL if principal is not None else SOURCE_API)
        if source not in SOURCES:
            raise InvalidField("source", f"one of {', '.join(SOURCES)}")
        if request_id is not None:
            existing = await self._by_request(request_id)
            if existing is not None:
                return existing, False
        try:
            async with self.db.session() as session:
                values = await self._validated(session, vars(data).copy(), creating=True)
                if principal is not None:
                    if values["responsible_employee_id"] is None:
                        values["responsible_employee_id"] = principal.employee_id
                    if values["team_id"] is None and len(principal.team_ids) == 1:
                        (values["team_id"],) = principal.team_ids
                    self._check_owner(principal, values)
                if values.get("call_id") is not None:
                    taken = await self._by_call(session, values["call_id"])
                    if taken is not None:
                        raise Conflict(f"call {values['call_id']} already has event {taken.id}")
                now = utcnow()
                row = JournalEvent(
                    id=str(uuid.uuid4()),
                    source=source,
                    # What the creator gave, the call log will not overwrite.
                    locked_fields=sorted(
                        name
                        for name in AUTO_FIELDS
                        if getattr(data, name) not in (None, "") and values.get("call_id") is not None
                    ),
                    request_id=request_id,
                    created_by=_actor_name(actor),
                    archived=False,
                    version=1,
                    created_at=now,
                    updated_at=now,
                    **values,
                )
                session.add(row)
                await session.flush()
                await self.audit.record(session, actor, KIND, row.id, "create", diff({}, snapshot(row)))
                await outbox.add(session, [change_row("created", row, actor)])
        except IntegrityError:
            # Two requests with one key at once: the other one's insert won.
            if request_id is not None and (existing := await self._by_request(request_id)) is not None:
                return existing, False
            raise Conflict("the event conflicts with another one (its call has an event already)") from None
        self._wake()
        return row, True

    async def _by_request(self, request_id: str) -> JournalEvent | None:
        async with self.db.session() as session:
            return (
                await session.scalars(select(JournalEvent).where(JournalEvent.request_id == request_id))
            ).first()

    async def get_event(self, actor: Actor, event_id: str) -> JournalEvent:
        async with self.db.session() as session:
            return await self._visible(session, actor, event_id)

    async def update_event(
        self, actor: Actor, event_id: str, changes: Mapping[str, Any], expected_version: int
    ) -> JournalEvent:
        unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
        if unknown:
            raise InvalidField(unknown[0], "cannot be changed")
        async with self.db.session() as session:
            row = await self._visible(session, actor, event_id, lock=True)
            self._check_version(row, expected_version)
            if row.archived:
                raise Conflict(f"event {event_id} is archived: restore it before changing it")
            values = await self._validated(session, dict(changes), creating=False, current=row)
            principal = _principal(actor)
            if principal is not None:
                owner = {
                    "responsible_employee_id": values.get(
                        "responsible_employee_id", row.responsible_employee_id
                    ),
                    "team_id": values.get("team_id", row.team_id),
                }
                self._check_owner(principal, owner)
            before = snapshot(row)
            for name, value in values.items():
                setattr(row, name, value)
            changed = diff(before, snapshot(row))
            if not changed:
                return row
            if row.source == SOURCE_CALLS or row.call_id is not None:
                row.locked_fields = sorted(set(row.locked_fields) | (set(changes) & AUTO_FIELDS))
            row.version += 1
            row.updated_at = utcnow()
            await session.flush()
            await self.audit.record(session, actor, KIND, row.id, "update", changed)
            await outbox.add(session, [change_row("updated", row, actor, sorted(changed))])
        self._wake()
        return row

    async def delete_event(self, actor: Actor, event_id: str, expected_version: int | None = None) -> None:
        async with self.db.session() as session:
            row = await self._visible(session, actor, event_id, lock=True)
            if expected_version is not None:
                self._check_version(row, expected_version)
            for attachment in await self.attachments.list(session, KIND, row.id):
                await self.attachments.delete(session, attachment.id)
            now = utcnow()
            row.deleted_at = now
            row.updated_at = now
            row.version += 1
            row.request_id = None  # the key may be used again
            await session.flush()
            await self.audit.record(session, actor, KIND, row.id, "delete", diff(snapshot(row), {}))
            await outbox.add(session, [change_row("deleted", row, actor)])
        self._wake()

    async def history(self, actor: Actor, event_id: str) -> Sequence[AuditEntry]:
        async with self.db.session() as session:
            await self._visible(session, actor, event_id)
            return await AuditLog.history(session, KIND, event_id)

    @staticmethod
    def _check_version(row: JournalEvent, expected: int) -> None:
        if expected != row.version:
            raise VersionConflict(row.id, row.version, expected)

    @staticmethod
    def _check_owner(principal: Principal, values: Mapping[str, Any]) -> None:
        if not principal.may_see(values.get("responsible_employee_id"), values.get("team_id")):
            raise Forbidden(
                "the event's responsible employee and team must be ones you can see "
                "(yourself, or a team you belong to or supervise)"
            )

    async def _visible(
        self, session: AsyncSession, actor: Actor, event_id: str, *, lock: bool = False
    ) -> JournalEvent:
        stmt = select(JournalEvent).where(JournalEvent.id == event_id, JournalEvent.deleted_at.is_(None))
        principal = _principal(actor)
        if principal is not None:
            stmt = stmt.where(self._visibility(principal))
        if lock:
            stmt = stmt.with_for_update()
        row = (await session.scalars(stmt)).first()
        if row is None:
            raise NotFound(f"no event {event_id}")
        return row

    @staticmethod
    def _visibility(principal: Principal | None) -> ColumnElement[bool]:
        if principal is None:
            return true()
        return visible_filter(principal, JournalEvent.responsible_employee_id, JournalEvent.team_id)

    async def _validated(
        self,
        session: AsyncSession,
        values: dict[str, Any],
        *,
        creating: bool,
        current: JournalEvent | None = None,
    ) -> dict[str, Any]:
        """Clean and check values of :class:`EventInput` fields; returns the columns to set."""
        out: dict[str, Any] = {}
        for name in (
            "responsible_employee_id",
            "team_id",
            "contact_id",
            "contact_person_id",
            "project_id",
            "call_id",
        ):
            if name in values:
                value = _text(values[name])
                if value is not None and len(value) > 100:
                    raise InvalidField(name, "at most 100 characters")
                out[name] = value
        type_row: JournalEventType | None = None
        if creating or "type_code" in values:
            code = _text(values.get("type_code"))
            if code is None:
                raise InvalidField("type_code", "an event needs a type")
            type_row = await session.get(JournalEventType, code)
            if type_row is None:
                raise InvalidField("type_code", f"no event type {code!r}")
            if not type_row.active and (current is None or current.type_code != code):
                raise InvalidField("type_code", f"event type {code!r} is not active")
            out["type_code"] = code
        if creating:
            out["start_at"] = values.get("start_at") or utcnow()
        elif "start_at" in values:
            if values["start_at"] is None:
                raise InvalidField("start_at", "an event needs a start")
            out["start_at"] = values["start_at"]
        if "end_at" in values:
            out["end_at"] = values["end_at"]
        for name in ("start_at", "end_at"):
            value = out.get(name)
            if value is not None and value.tzinfo is None:
                raise InvalidField(name, "give a time zone (or UTC)")
        start = out.get("start_at", current.start_at if current is not None else None)
        end = out.get("end_at", current.end_at if current is not None else None)
        if start is not None and end is not None and end < start:
            raise InvalidField("end_at" if "end_at" in out else "start_at", "the end is before the start")
        if "direction" in values or creating:
            direction = _text(values.get("direction"))
            if direction is None and creating and type_row is not None:
                direction = type_row.direction
            if direction is not None and direction not in DIRECTIONS:
                raise InvalidField("direction", f"one of {', '.join(DIRECTIONS)}")
            out["direction"] = direction
        if "phone" in values:
            out.update(self._phone_columns(_text(values["phone"])))
        if "email" in values:
            email = _text(values["email"])
            if email is not None and (len(email) > 254 or not re.fullmatch(r"[^@\s]+@[^@\s]+", email)):
                raise InvalidField("email", "not an e-mail address")
            out["email"] = email
        if "subject" in values:
            subject = _text(values["subject"])
            if subject is not None and len(subject) > 255:
                raise InvalidField("subject", "at most 255 characters")
            out["subject"] = subject
        if "content" in values:
            content = values["content"]
            content = content if content and content.strip() else None
            if content is not None and len(content) > MAX_CONTENT:
                raise InvalidField("content", f"at most {MAX_CONTENT} characters")
            out["content"] = content
        return out

    def _phone_columns(self, phone: str | None) -> dict[str, Any]:
        """Raw, E.164 and digits of a number; one that does not normalize is kept raw (phone_valid false)."""
        if phone is None:
            return {"phone": None, "phone_e164": None, "phone_digits": None}
        if len(phone) > 64:
            raise InvalidField("phone", "at most 64 characters")
        e164 = normalize_number(phone, self.default_region) or None
        return {"phone": phone, "phone_e164": e164, "phone_digits": digits(phone) or None}

    # --- attachments ------------------------------------------------------------------------------

    async def add_attachment(
        self,
        actor: Actor,
        event_id: str,
        *,
        filename: str,
        declared_type: str | None,
        chunks: AsyncIterator[bytes],
    ) -> Attachment:
        async with self.db.session() as session:
            row = await self._visible(session, actor, event_id, lock=True)
            if row.archived:
                raise Conflict(f"event {event_id} is archived: restore it before changing it")
            attachment = await self.attachments.save(
                session,
                owner_kind=KIND,
                owner_id=row.id,
                filename=filename,
                declared_type=declared_type,
                chunks=chunks,
                created_by=_actor_name(actor),
            )
            await session.flush()
            await self.audit.record(
                session, actor, KIND, row.id, "attach", {"attachments": [None, attachment.filename]}
            )
            await outbox.add(
                session,
                [change_row("updated", row, actor, ["attachments"], f":attachment:{attachment.id}:added")],
            )
        self._wake()
        return attachment

    async def list_attachments(self, actor: Actor, event_id: str) -> Sequence[Attachment]:
        async with self.db.session() as session:
            await self._visible(session, actor, event_id)
            return await self.attachments.list(session, KIND, event_id)

    async def open_attachment(self, actor: Actor, event_id: str, attachment_id: str) -> StoredFile:
        async with self.db.session() as session:
            await self._visible(session, actor, event_id)
            stored = await self.attachments.open(session, attachment_id)
            if stored.attachment.owner_kind != KIND or stored.attachment.owner_id != event_id:
                raise AttachmentError(404, "attachment not found")
            return stored

    async def delete_attachment(self, actor: Actor, event_id: str, attachment_id: str) -> None:
        async with self.db.session() as session:
            row = await self._visible(session, actor, event_id, lock=True)
            if row.archived:
                raise Conflict(f"event {event_id} is archived: restore it before changing it")
            attachment = await session.get(Attachment, attachment_id)
            if attachment is None or attachment.owner_kind != KIND or attachment.owner_id != event_id:
                raise AttachmentError(404, "attachment not found")
            await self.attachments.delete(session, attachment_id)
            await self.audit.record(
                session, actor, KIND, row.id, "detach", {"attachments": [attachment.filename, None]}
            )
            await outbox.add(
                session,
                [change_row("updated", row, actor, ["attachments"], f":attachment:{attachment_id}:removed")],
            )
        self._wake()

    # --- archive ----------------------------------------------------------------------------------

    async def archive(self, actor: Actor, event_ids: Sequence[str]) -> ArchiveResult:
        """Archive the selected events (already archived ones are left as they are)."""
        return await self._set_archived(actor, event_ids, archived=True)

    async def restore(self, actor: Actor, event_ids: Sequence[str]) -> ArchiveResult:
        """Bring archived events back to the journal."""
        return await self._set_archived(actor, event_ids, archived=False)

    async def _set_archived(self, actor: Actor, event_ids: Sequence[str], *, archived: bool) -> ArchiveResult:
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            raise InvalidField("ids", "select at least one event")
        if len(ids) > MAX_SELECTION:
            raise InvalidField("ids", f"at most {MAX_SELECTION} events at once")
        result = ArchiveResult()
        async with self.db.session() as session:
            stmt = (
                select(JournalEvent)
                .where(
                    JournalEvent.id.in_(ids),
                    JournalEvent.deleted_at.is_(None),
                    self._visibility(_principal(actor)),
                )
                .with_for_update()
            )
            rows = {row.id: row for row in (await session.scalars(stmt)).all()}
            missing = [event_id for event_id in ids if event_id not in rows]
            if missing:
                raise NotFound(f"no events {', '.join(missing[:20])}" + (" ..." if len(missing) > 20 else ""))
            changes: list[dict[str, Any]] = []
            for event_id in ids:
                row = rows[event_id]
                if row.archived == archived:
                    result.unchanged.append(event_id)
                    continue
                changes.append(await self._archive_row(session, actor, row, archived))
                result.changed.append(event_id)
            await outbox.add(session, changes)
        result.count = len(result.changed)
        if changes:
            self._wake()
        return result

    async def archive_before(self, actor: Actor, before: datetime) -> ArchiveResult:
        """Archive every event (that the actor sees) which ended before ``before``; an event without an
        end counts by its start. Done in chunks, each its own transaction."""
        if before.tzinfo is None:
            raise InvalidField("before", "give a time zone (or UTC)")
        result = ArchiveResult()
        ended = func.coalesce(JournalEvent.end_at, JournalEvent.start_at)
        while True:
            async with self.db.session() as session:
                stmt = (
                    select(JournalEvent)
                    .where(
                        JournalEvent.archived.is_(False),
                        JournalEvent.deleted_at.is_(None),
                        ended < before,
                        self._visibility(_principal(actor)),
                    )
                    .order_by(JournalEvent.start_at, JournalEvent.id)
                    .limit(ARCHIVE_CHUNK)
                    .with_for_update()
                )
                rows = list((await session.scalars(stmt)).all())
                changes = [await self._archive_row(session, actor, row, True) for row in rows]
                await outbox.add(session, changes)
            result.count += len(rows)
            if changes:
                self._wake()
            if len(rows) < ARCHIVE_CHUNK:
                return result

    async def _archive_row(
        self, session: AsyncSession, actor: Actor, row: JournalEvent, archived: bool
    ) -> dict[str, Any]:
        now = utcnow()
        before = {"archived": row.archived, "archived_at": row.archived_at}
        row.archived = archived
        row.archived_at = now if archived else None
        row.version += 1
        row.updated_at = now
        action = "archive" if archived else "restore"
        await self.audit.record(
            session,
            actor,
            KIND,
            row.id,
            action,
            diff(before, {"archived": archived, "archived_at": row.archived_at}),
        )
        return change_row("archived" if archived else "restored", row, actor)

    # --- lists and views --------------------------------------------------------------------------

    async def list_events(self, actor: Actor, query: EventQuery) -> EventPage:
        if not 1 <= query.limit <= paging.MAX_LIMIT:
            raise InvalidField("limit", f"between 1 and {paging.MAX_LIMIT}")
        conditions = self._event_conditions(_principal(actor), query)
        domain = f"journal.events.{query.order}"
        stmt = select(JournalEvent).where(*conditions)
        newest = query.order == "newest"
        if query.cursor:
            start_text, last_id = self._cursor(domain, query.cursor)
            start = datetime.fromisoformat(start_text)
            if newest:
                stmt = stmt.where(
                    or_(
                        JournalEvent.start_at < start,
                        and_(JournalEvent.start_at == start, JournalEvent.id < last_id),
                    )
                )
            else:
                stmt = stmt.where(
                    or_(
                        JournalEvent.start_at > start,
                        and_(JournalEvent.start_at == start, JournalEvent.id > last_id),
                    )
                )
        if newest:
            stmt = stmt.order_by(JournalEvent.start_at.desc(), JournalEvent.id.desc())
        else:
            stmt = stmt.order_by(JournalEvent.start_at, JournalEvent.id)
        async with self.db.session() as session:
            rows = list((await session.scalars(stmt.limit(query.limit + 1))).all())
            total = None
            if query.include_total:
                total = int(
                    await session.scalar(select(func.count()).select_from(JournalEvent).where(*conditions))
                    or 0
                )
        next_cursor = None
        if len(rows) > query.limit:
            rows = rows[: query.limit]
            last = rows[-1]
            next_cursor = paging.encode(self._secret, domain, [last.start_at.isoformat(), last.id])
        return EventPage(items=rows, next_cursor=next_cursor, total=total)

    def _cursor(self, domain: str, token: str) -> list[Any]:
        key = paging.decode(self._secret, domain, token)
        if len(key) != 2 or not all(isinstance(part, str) for part in key):
            raise paging.InvalidCursor("page cursor is malformed")
        try:
            datetime.fromisoformat(key[0])
        except ValueError:
            raise paging.InvalidCursor("page cursor is malformed") from None
        return key

    def _event_conditions(self, principal: Principal | None, query: EventQuery) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = [
            JournalEvent.deleted_at.is_(None),
            self._visibility(principal),
        ]
        if query.archived == "active":
            conditions.append(JournalEvent.archived.is_(False))
        elif query.archived == "archived":
            conditions.append(JournalEvent.archived.is_(True))
        if query.type_codes:
            conditions.append(JournalEvent.type_code.in_(sorted(set(query.type_codes))))
        for name in ("contact_id", "contact_person_id", "team_id", "call_id"):
            value = getattr(query, name)
            if value:
                conditions.append(getattr(JournalEvent, name) == value)
        if query.employee_id:
            conditions.append(JournalEvent.responsible_employee_id == query.employee_id)
        if query.without_project:
            if query.project_id:
                raise InvalidField("without_project", "ask for a project or for events without one")
            conditions.append(JournalEvent.project_id.is_(None))
        elif query.project_id:
            conditions.append(JournalEvent.project_id == query.project_id)
        if query.direction:
            if query.direction not in DIRECTIONS:
                raise InvalidField("direction", f"one of {', '.join(DIRECTIONS)}")
            conditions.append(JournalEvent.direction == query.direction)
        if query.source:
            if query.source not in SOURCES:
                raise InvalidField("source", f"one of {', '.join(SOURCES)}")
            conditions.append(JournalEvent.source == query.source)
        if query.phone:
            conditions.append(phone_condition(query.phone, self.default_region))
        conditions += self._period(query.start_from, query.start_to)
        if query.text:
            pattern = f"%{_escape_like(query.text.strip())}%"
            conditions.append(
                or_(
                    JournalEvent.subject.ilike(pattern, escape="\\"),
                    JournalEvent.content.ilike(pattern, escape="\\"),
                )
            )
        if query.accepted_calls:
            conditions.append(JournalEvent.type_code.in_(ACCEPTED_CALL_TYPES))
            conditions.append(or_(JournalEvent.disposition.is_(None), JournalEvent.disposition == "answered"))
        return conditions

    @staticmethod
    def _period(start_from: datetime | None, start_to: datetime | None) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        for name, value in (("from", start_from), ("to", start_to)):
            if value is not None and value.tzinfo is None:
                raise InvalidField(name, "give a time zone (or UTC)")
        if start_from is not None and start_to is not None and start_to <= start_from:
            raise InvalidField("to", "must be later than from")
        if start_from is not None:
            conditions.append(JournalEvent.start_at >= start_from)
        if start_to is not None:
            conditions.append(JournalEvent.start_at < start_to)
        return conditions

    async def missed_by_number(self, actor: Actor, query: MissedQuery) -> MissedPage:
        """Missed incoming calls grouped by number, the number with the latest missed call first."""
        if not 1 <= query.limit <= paging.MAX_LIMIT:
            raise InvalidField("limit", f"between 1 and {paging.MAX_LIMIT}")
        conditions: list[ColumnElement[bool]] = [
            JournalEvent.deleted_at.is_(None),
            JournalEvent.type_code == MISSED_INCOMING_CALL,
            self._visibility(_principal(actor)),
        ]
        if not query.include_archived:
            conditions.append(JournalEvent.archived.is_(False))
        if query.employee_id:
            conditions.append(JournalEvent.responsible_employee_id == query.employee_id)
        if query.team_id:
            conditions.append(JournalEvent.team_id == query.team_id)
        if query.contact_id:
            conditions.append(JournalEvent.contact_id == query.contact_id)
        if query.phone:
            conditions.append(phone_condition(query.phone, self.default_region))
        conditions += self._period(query.start_from, query.start_to)
        # The literal is rendered inline so that the SELECT and GROUP BY expressions are one to the database.
        key = func.coalesce(JournalEvent.phone_e164, JournalEvent.phone_digits, literal_column("''"))
        count = func.count()
        resolved = func.count(JournalEvent.resolved_at)
        last_at = func.max(JournalEvent.start_at)
        grouped = (
            select(
                key.label("number_key"),
                func.max(JournalEvent.phone).label("number"),
                func.max(JournalEvent.phone_e164).label("e164"),
                count.label("calls"),
                resolved.label("resolved_calls"),
                func.min(JournalEvent.start_at).label("first_at"),
                last_at.label("last_at"),
                func.max(JournalEvent.resolved_at).label("last_resolved_at"),
                func.max(JournalEvent.contact_id).label("contact_id"),
            )
            .where(*conditions)
            .group_by(key)
        )
        if query.state == "open":
            grouped = grouped.having(count > resolved)
        elif query.state == "resolved":
            grouped = grouped.having(count == resolved)
        domain = "journal.missed-by-number"
        stmt = grouped
        if query.cursor:
            last_text, last_key = self._cursor(domain, query.cursor)
            last = datetime.fromisoformat(last_text)
            stmt = stmt.having(or_(last_at < last, and_(last_at == last, key < last_key)))
        stmt = stmt.order_by(last_at.desc(), key.desc()).limit(query.limit + 1)
        async with self.db.session() as session:
            found = (await session.execute(stmt)).all()
            total = None
            if query.include_total:
                total = int(await session.scalar(select(func.count()).select_from(grouped.subquery())) or 0)
            groups = [
                MissedGroup(
                    key=values["number_key"],
                    number=values["number"],
                    e164=values["e164"],
                    count=int(values["calls"]),
                    open_count=int(values["calls"]) - int(values["resolved_calls"]),
                    first_at=values["first_at"],
                    last_at=values["last_at"],
                    last_resolved_at=values["last_resolved_at"],
                    contact_id=values["contact_id"],
                )
                for values in (row._mapping for row in found[: query.limit])
            ]
        next_cursor = None
        if len(found) > query.limit:
            last_group = groups[-1]
            next_cursor = paging.encode(
                self._secret, domain, [last_group.last_at.isoformat(), last_group.key]
            )
        return MissedPage(items=groups, next_cursor=next_cursor, total=total)

    # --- from the call log ------------------------------------------------------------------------

    async def apply_call_log_events(
        self, messages: Sequence[record_pb.CallRecordEvent | missed_pb.MissedCallEvent]
    ) -> ApplyResult:
        """Apply a batch of the call log's events in one transaction, in their order; each as if it came
        alone, so batching changes nothing and a repeated event changes nothing."""
        result = ApplyResult()
        rows: list[dict[str, Any]] = []
        async with self.db.session() as session:
            for message in messages:
                if isinstance(message, record_pb.CallRecordEvent):
                    await self._apply_record(session, message, result, rows)
                else:
                    await self._apply_missed(session, message, result, rows)
                await session.flush()
            await outbox.add(session, rows)
        if rows:
            self._wake()
        return result

    async def _by_call(
        self, session: AsyncSession, call_id: str, *, lock: bool = False
    ) -> JournalEvent | None:
        stmt = select(JournalEvent).where(JournalEvent.call_id == call_id)
        if lock:
            stmt = stmt.with_for_update()
        return (await session.scalars(stmt)).first()

    def _call_values(self, call: calls_pb2.Call) -> dict[str, Any]:
        direction = DIRECTION_NAMES.get(call.direction)
        customer = call.callee if direction == OUTBOUND else call.caller
        number = (customer.number or customer.e164).strip()[:64]
        e164 = customer.e164 or normalize_number(number, self.default_region) or None
        employee = call.employee_id or (call.employee_ids[0] if len(call.employee_ids) == 1 else "")
        notes = call.notes
        content = "\n".join(
            part
            for part in (notes.comment.strip(), notes.result.strip() and f"Result: {notes.result.strip()}")
            if part
        )
        return {
            "start_at": timestamp_datetime(call.started_at) or utcnow(),
            "end_at": timestamp_datetime(call.ended_at),
            "direction": direction,
            "phone": number or None,
            "phone_e164": e164,
            "phone_digits": digits(number or e164 or "") or None,
            "responsible_employee_id": employee or None,
            "team_id": call.team_id or None,
            "contact_id": notes.contact_id or None,
            "subject": notes.reason.strip()[:255] or None,
            "content": content[:MAX_CONTENT] or None,
            "disposition": DISPOSITION_NAMES.get(call.disposition),
        }

    async def _missed_links(self, session: AsyncSession, call_id: str) -> dict[str, Any]:
        """What the missed-call items say about a call: the item of a missed call, the item it resolved."""
        links: dict[str, Any] = {
            "missed_item_id": None,
            "resolved_at": None,
            "resolving_call_id": None,
            "answers_missed_item_id": None,
        }
        member = await session.get(JournalMissedCall, call_id)
        if member is not None:
            item = await session.get(JournalMissedItem, member.item_id)
            if item is not None and item.state != DISCARDED:
                links.update(self._item_links(item))
        answered = (
            await session.scalars(
                select(JournalMissedItem)
                .where(JournalMissedItem.resolving_call_id == call_id, JournalMissedItem.state == RESOLVED)
                .order_by(JournalMissedItem.updated_at.desc())
            )
        ).first()
        if answered is not None:
            links["answers_missed_item_id"] = answered.id
        return links

    @staticmethod
    def _item_links(item: JournalMissedItem) -> dict[str, Any]:
        resolved = item.state == RESOLVED
        return {
            "missed_item_id": item.id,
            "resolved_at": item.resolved_at if resolved else None,
            "resolving_call_id": item.resolving_call_id if resolved else None,
        }

    async def _apply_record(
        self,
        session: AsyncSession,
        message: record_pb.CallRecordEvent,
        result: ApplyResult,
        rows: list[dict[str, Any]],
    ) -> None:
        call: calls_pb2.Call = getattr(message, message.WhichOneof("kind") or "created")
        direction = DIRECTION_NAMES.get(call.direction)
        if direction is None or (direction == INTERNAL and not self.log_internal_calls):
            result.ignored += 1
            return
        revision = int(message.revision)
        row = await self._by_call(session, call.call_id, lock=True)
        if row is not None and (
            row.deleted_at is not None
            or (row.source_revision is not None and revision <= row.source_revision)
        ):
            result.ignored += 1
            return
        values = self._call_values(call)
        values.update(await self._missed_links(session, call.call_id))
        values["type_code"] = call_type(
            direction, values["disposition"], values["answers_missed_item_id"] is not None
        )
        if row is None:
            rows.append(await self._create_from_calls(session, call.call_id, values, revision))
            result.created += 1
            return
        changed = await self._auto_update(session, row, values, revision, rows)
        result.updated += changed
        result.ignored += not changed

    async def _create_from_calls(
        self, session: AsyncSession, call_id: str, values: dict[str, Any], revision: int
    ) -> dict[str, Any]:
        now = utcnow()
        row = JournalEvent(
            id=str(uuid.uuid4()),
            call_id=call_id,
            source=SOURCE_CALLS,
            source_revision=revision,
            locked_fields=[],
            created_by=CONSUMER_ACTOR,
            archived=False,
            version=1,
            created_at=now,
            updated_at=now,
            **values,
        )
        session.add(row)
        await session.flush()
        await self.audit.record(session, CONSUMER_ACTOR, KIND, row.id, "create", diff({}, snapshot(row)))
        return change_row("created", row, CONSUMER_ACTOR)

    async def _auto_update(
        self,
        session: AsyncSession,
        row: JournalEvent,
        values: Mapping[str, Any],
        revision: int | None,
        rows: list[dict[str, Any]],
    ) -> bool:
        """Apply the call log's values except those a user locked; True when the event changed."""
        locked = {column for name in row.locked_fields for column in _LOCK_COLUMNS.get(name, (name,))}
        before = snapshot(row)
        for name, value in values.items():
            if name not in locked and getattr(row, name) != value:
                setattr(row, name, value)
        if revision is not None:
            row.source_revision = revision
        changed = diff(before, snapshot(row))
        if not changed:
            return False
        row.version += 1
        row.updated_at = utcnow()
        await session.flush()
        await self.audit.record(session, CONSUMER_ACTOR, KIND, row.id, "update", changed)
        rows.append(change_row("updated", row, CONSUMER_ACTOR, sorted(changed)))
        return True

    async def _apply_missed(
        self,
        session: AsyncSession,
        message: missed_pb.MissedCallEvent,
        result: ApplyResult,
        rows: list[dict[str, Any]],
    ) -> None:
        data: missed_pb.MissedCall = getattr(message, message.WhichOneof("kind") or "created")
        item = await session.get(JournalMissedItem, data.id, with_for_update=True)
        if item is not None and data.version <= item.version:
            result.ignored += 1
            return
        previous_resolving = item.resolving_call_id if item is not None and item.state == RESOLVED else None
        if item is None:
            item = JournalMissedItem(id=data.id)
            session.add(item)
        state = ITEM_STATES.get(data.state, OPEN)
        item.version = data.version
        item.state = state
        item.number = data.number[:64] or None
        item.e164 = data.e164 or None
        item.missed_count = data.missed_count
        item.call_ids = list(data.call_ids)
        item.first_missed_at = timestamp_datetime(data.first_missed_at)
        item.last_missed_at = timestamp_datetime(data.last_missed_at)
        item.resolved_at = timestamp_datetime(data.resolved_at) if state == RESOLVED else None
        item.resolving_call_id = (data.resolving_call_id or None) if state == RESOLVED else None
        item.resolving_direction = (
            DIRECTION_NAMES.get(data.resolving_direction) if state == RESOLVED else None
        )
        item.updated_at = utcnow()
        await session.flush()
        calls = list(dict.fromkeys(data.call_ids)) if state != DISCARDED else []
        await self._replace_members(session, item.id, calls)
        changed = 0
        links = self._item_links(item)
        for index, call_id in enumerate(calls):
            event = await self._by_call(session, call_id, lock=True)
            if event is not None and event.deleted_at is not None:
                continue
            if event is None:
                values = {**self._placeholder(data, index), **links, "answers_missed_item_id": None}
                rows.append(await self._create_from_calls(session, call_id, values, 0))
                result.created += 1
                continue
            values = dict(links)
            if event.source_revision == 0:  # made from the item: keep it in step until the record arrives
                values.update(self._placeholder(data, index))
            changed += await self._auto_update(session, event, values, None, rows)
        # Events of calls the item no longer holds (late events moved them, or it was discarded).
        stale_stmt = select(JournalEvent).where(
            JournalEvent.missed_item_id == item.id, JournalEvent.deleted_at.is_(None)
        )
        if calls:
            stale_stmt = stale_stmt.where(JournalEvent.call_id.not_in(calls))
        for event in (await session.scalars(stale_stmt.with_for_update())).all():
            cleared = {"missed_item_id": None, "resolved_at": None, "resolving_call_id": None}
            changed += await self._auto_update(session, event, cleared, None, rows)
        # The call that resolved the item: a callback or an answer to a missed call.
        resolving = item.resolving_call_id
        if previous_resolving is not None and previous_resolving != resolving:
            event = await self._by_call(session, previous_resolving, lock=True)
            if event is not None and event.deleted_at is None and event.answers_missed_item_id == item.id:
                values = {
                    "answers_missed_item_id": None,
                    "type_code": call_type(event.direction, event.disposition, False),
                }
                changed += await self._auto_update(session, event, values, None, rows)
        if resolving is not None:
            event = await self._by_call(session, resolving, lock=True)
            if event is not None and event.deleted_at is None and event.source == SOURCE_CALLS:
                values = {
                    "answers_missed_item_id": item.id,
                    "type_code": call_type(event.direction, event.disposition, True),
                }
                changed += await self._auto_update(session, event, values, None, rows)
        result.updated += changed

    async def _replace_members(self, session: AsyncSession, item_id: str, call_ids: Iterable[str]) -> None:
        wanted = set(call_ids)
        current = (
            await session.scalars(select(JournalMissedCall).where(JournalMissedCall.item_id == item_id))
        ).all()
        for member in current:
            if member.call_id not in wanted:
                await session.delete(member)
        for call_id in sorted(wanted - {member.call_id for member in current}):
            moved = await session.get(JournalMissedCall, call_id)
            if moved is None:
                session.add(JournalMissedCall(call_id=call_id, item_id=item_id))
            else:
                moved.item_id = item_id  # it was in another item
        await session.flush()

    def _placeholder(self, data: missed_pb.MissedCall, index: int) -> dict[str, Any]:
        """The event of a missed call whose record has not arrived: what the item knows of it (its start is
        the item's first or last missed call until the record tells)."""
        number = data.number.strip()[:64]
        e164 = data.e164 or normalize_number(number, self.default_region) or None
        start = timestamp_datetime(data.first_missed_at if index == 0 else data.last_missed_at) or utcnow()
        return {
            "type_code": MISSED_INCOMING_CALL,
            "start_at": start,
            "end_at": None,
            "direction": INBOUND,
            "phone": number or None,
            "phone_e164": e164,
            "phone_digits": digits(number or e164 or "") or None,
            "responsible_employee_id": data.employee_ids[0] if len(data.employee_ids) == 1 else None,
            "team_id": data.team_ids[0] if len(data.team_ids) == 1 else None,
            "contact_id": data.contact_id or None,
            "disposition": "missed",
        }


__all__ = [
    "ACCEPTED_CALL_TYPES",
    "CHANGE_KINDS",
    "CONSUMER_ACTOR",
    "EDITABLE_FIELDS",
    "EVENT_SUBJECTS",
    "ApplyResult",
    "ArchiveResult",
    "Conflict",
    "EventInput",
    "EventPage",
    "EventQuery",
    "Forbidden",
    "InvalidField",
    "JournalError",
    "JournalService",
    "MissedGroup",
    "MissedPage",
    "MissedQuery",
    "NotFound",
    "TypeInput",
    "VersionConflict",
    "call_type",
    "change_row",
    "event_message",
    "timestamp_datetime",
]
