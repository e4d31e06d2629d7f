"""People and access: employees, teams and users (log-ins, roles, rights), on one service layer.

Why it is built this way:

- Employees are what the rest of the suite names (tasks, journal events, calls), so every change of one
  publishes ``crm.employee.created|updated|deleted`` (the existing ``EmployeeEvent`` the call log keeps a
  read model of) through the outbox, in the transaction of the change, with the employee's ``version``,
  which grows with every change. A team's rename changes its members' ``team_name``, so it re-publishes
  each live member with a new version. Deletion is soft: the row keeps naming the person in history.
- ``version`` is also the optimistic lock: a write that names an older version changes nothing and
  raises :class:`StaleVersion` (the API answers 409, or 412 for ``If-Match``).
- A user's rights are the defaults of their roles, plus those an admin granted, minus those revoked (an
  agent who "may not change task status" has ``task.status`` revoked). Tokens carry the result
  (:func:`principal_of`); they are rebuilt from here at every refresh, so a change reaches the user
  within one access-token lifetime. Disabling a user or setting their password revokes their
  refresh tokens at once.
- Passwords are hashed with argon2 in a worker thread (a hash costs tens of milliseconds of CPU, which
  must not stall the event loop).
- Nothing here knows HTTP or gRPC: errors are :class:`PeopleError` subclasses the APIs translate.
"""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from google.protobuf.message import Message
from sqlalchemy import ColumnElement, Select, String, and_, cast, delete, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from telecrm.crm.v1 import directory_events_pb2 as directory_pb
from telecrm.crm.v1 import people_pb2
from telecrm_common.auth import ALL_RIGHTS, Principal, Role, Visibility, default_rights
from telecrm_common.db import Database, utcnow
from telecrm_common.errors import TelecrmError
from telecrm_common.events import EMPLOYEE_SUBJECTS
from telecrm_common.timestamps import timestamp_message
from telecrm_crm import outbox, paging
from telecrm_crm.access import visible_filter
from telecrm_crm.audit import AuditLog, diff
from telecrm_crm.people_models import Employee, RefreshToken, Team, User

log = logging.getLogger(__name__)

TEAM_SUBJECTS = {kind: f"crm.team.{kind}" for kind in ("created", "updated", "deleted")}
USER_SUBJECTS = {kind: f"crm.user.{kind}" for kind in ("created", "updated", "deleted")}

MAX_NAME_LENGTH = 200
MAX_EMAIL_LENGTH = 320
MAX_LOGIN_LENGTH = 100
MAX_PASSWORD_LENGTH = 1024
MAX_ID_LENGTH = 64
MAX_IDS_PER_QUERY = 500
MAX_SUPERVISOR_CHAIN = 64  # how far up a chain of supervisors a cycle is looked for

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_EXTENSION = re.compile(r"[0-9]{1,15}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_LOGIN = re.compile(r"[a-z0-9][a-z0-9._@+-]{0,99}")

EMPLOYEE_FIELDS = frozenset({"name", "email", "extension", "team_id", "supervisor_id", "active"})
TEAM_FIELDS = frozenset({"name", "supervisor_id"})
USER_FIELDS = frozenset(
    {"login", "employee_id", "roles", "visibility", "granted_rights", "revoked_rights", "disabled"}
)
USER_VISIBILITIES = (Visibility.OWN, Visibility.TEAM)


# --- errors --------------------------------------------------------------------------------------------


class PeopleError(TelecrmError):
    """Base of the errors of people and access."""


class NotFound(PeopleError):
    """No such employee, team or user (or not one the asker may see)."""


class InvalidField(PeopleError):
    """A field's value is refused; ``field`` names it as the client sent it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Conflict(PeopleError):
    """The change contradicts the stored state (a duplicate, a document still in use, the last admin)."""


class StaleVersion(PeopleError):
    """The write named a version the document has moved on from; nothing was changed."""

    def __init__(self, kind: str, current: int) -> None:
        super().__init__(f"the {kind} was changed meanwhile: its version is now {current}")
        self.current = current


class Forbidden(PeopleError):
    """The asker may not do this (beyond what the API's rights checks already refuse)."""


class BootstrapError(PeopleError):
    """The first admin cannot be created from the settings given."""


# --- passwords -----------------------------------------------------------------------------------------


class Passwords:
    """Argon2 hashing with a password policy; hashing and checking run in a worker thread."""

    def __init__(self, hasher: PasswordHasher | None = None, *, min_length: int = 10) -> None:
        self.hasher = hasher or PasswordHasher()
        self.min_length = min_length
        self._dummy: str | None = None

    def check_policy(self, password: str, *, field: str, login: str | None = None) -> None:
        """Raise :class:`InvalidField` (naming ``field``) for a password the policy refuses."""
        if len(password) < self.min_length:
            raise InvalidField(field, f"must be at least {self.min_length} characters long")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise InvalidField(field, f"must be at most {MAX_PASSWORD_LENGTH} characters long")
        if not password.strip():
            raise InvalidField(field, "must not be only spaces")
        try:
            password.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidField(field, "must be valid Unicode text") from None
        if login is not None and password.strip().lower() == login.lower():
            raise InvalidField(field, "must not be the login")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored``; without a stored hash a dummy is checked, so that
        an unknown login costs as much time as a known one."""
        if len(password) > MAX_PASSWORD_LENGTH:
            return False
        if stored is None:
            if self._dummy is None:
                self._dummy = await self.hash(uuid.uuid4().hex)
            stored = self._dummy
            password = password + "\x00not-this"  # never matches the dummy
        try:
            return await asyncio.to_thread(self.hasher.verify, stored, password)
        except (VerificationError, InvalidHashError, UnicodeEncodeError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        """Whether ``stored`` was made with other parameters than the current ones."""
        try:
            return self.hasher.check_needs_rehash(stored)
        except (InvalidHashError, ValueError):
            return True


# --- rights and tokens' claims -------------------------------------------------------------------------


def effective_rights(roles: Iterable[Role], granted: Iterable[str], revoked: Iterable[str]) -> frozenset[str]:
    """The roles' default rights, plus the granted ones, minus the revoked ones."""
    return (default_rights(roles) | frozenset(granted)) - frozenset(revoked)


def user_roles(user: User) -> frozenset[Role]:
    return frozenset(Role(role) for role in user.roles if role in Role._value2member_map_)


async def principal_of(session: AsyncSession, user: User) -> Principal:
    """What an access token of ``user`` says, read from the database now."""
    roles = user_roles(user)
    employee = await session.get(Employee, user.employee_id) if user.employee_id else None
    if employee is not None and employee.deleted_at is not None:
        employee = None
    team_ids: frozenset[str] = frozenset()
    supervised: frozenset[str] = frozenset()
    if employee is not None:
        team_ids = frozenset({employee.team_id}) if employee.team_id else frozenset()
        supervised = frozenset(
            (await session.scalars(select(Team.id).where(Team.supervisor_id == employee.id))).all()
        )
    if Role.ADMIN in roles:
        visibility = Visibility.ALL
    else:
        visibility = Visibility(user.visibility) if user.visibility in ("own", "team") else Visibility.OWN
    return Principal(
        subject=user.id,
        employee_id=employee.id if employee is not None else None,
        name=employee.name if employee is not None else user.login,
        roles=roles,
        team_ids=team_ids,
        supervised_team_ids=supervised,
        rights=effective_rights(roles, user.granted_rights, user.revoked_rights),
        visibility=visibility,
    )


async def revoke_refresh_tokens(
    session: AsyncSession, reason: str, *, user_id: str | None = None, family_id: str | None = None
) -> int:
    """Revoke the live refresh tokens of a user or of one family (in the caller's transaction)."""
    if user_id is None and family_id is None:
        raise ValueError("whose refresh tokens: give user_id or family_id")
    where: list[ColumnElement[bool]] = [RefreshToken.revoked_at.is_(None)]
    if user_id is not None:
        where.append(RefreshToken.user_id == user_id)
    if family_id is not None:
        where.append(RefreshToken.family_id == family_id)
    result = await session.execute(
        update(RefreshToken).where(*where).values(revoked_at=utcnow(), revoked_reason=reason)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- views and queries ---------------------------------------------------------------------------------

T = TypeVar("T")


@dataclass(frozen=True)
class PageResult(Generic[T]):
    items: list[T]
    next_cursor: str | None = None
    total: int | None = None


@dataclass(frozen=True)
class EmployeeView:
    """An employee with the names of their team and supervisor."""

    employee: Employee
    team_name: str | None = None
    supervisor_name: str | None = None


@dataclass(frozen=True)
class Me:
    """The asker: their token's principal (as the database says now, when they have a user here)."""

    principal: Principal
    user: User | None
    employee: EmployeeView | None


@dataclass(frozen=True)
class EmployeeQuery:
    team_id: str | None = None
    supervisor_id: str | None = None
    active: bool | None = None
    extension: str | None = None
    q: str | None = None  # part of the name, e-mail or extension
    ids: Sequence[str] = ()
    include_deleted: bool = False
    limit: int = paging.DEFAULT_LIMIT
    cursor: str | None = None
    include_total: bool = False


@dataclass(frozen=True)
class TeamQuery:
    q: str | None = None
    supervisor_id: str | None = None
    limit: int = paging.DEFAULT_LIMIT
    cursor: str | None = None
    include_total: bool = False


@dataclass(frozen=True)
class UserQuery:
    role: Role | None = None
    disabled: bool | None = None
    employee_id: str | None = None
    q: str | None = None  # part of the login
    limit: int = paging.DEFAULT_LIMIT
    cursor: str | None = None
    include_total: bool = False


def _after(column: Any, tie: Any, key: list[Any]) -> ColumnElement[bool]:
    """Keyset condition: rows after ``key`` = (value, id) in (column, tie) order."""
    if len(key) != 2 or not all(isinstance(part, str) for part in key):
        raise paging.InvalidCursor("page cursor is malformed")
    return or_(column > key[0], and_(column == key[0], tie > key[1]))


def _limit(limit: int) -> int:
    if limit < 1 or limit > paging.MAX_LIMIT:
        raise InvalidField("limit", f"must be between 1 and {paging.MAX_LIMIT}")
    return limit


def _like(column: Any, text: str) -> ColumnElement[bool]:
    return func.lower(column).contains(text.strip().lower(), autoescape=True)


# --- field checks --------------------------------------------------------------------------------------


def _text(values: Mapping[str, Any], name: str, *, max_length: int, required: bool) -> str | None:
    value = values.get(name)
    if value is None:
        if required:
            raise InvalidField(name, "required")
        return None
    if not isinstance(value, str):
        raise InvalidField(name, "must be a string")
    value = unicodedata.normalize("NFC", value).strip()
    if not value:
        if required:
            raise InvalidField(name, "must not be empty")
        return None
    if len(value) > max_length:
        raise InvalidField(name, f"must be at most {max_length} characters long")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise InvalidField(name, "must not contain control characters")
    return value


def check_id(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidField(
            name, "must be 1 to 64 letters, digits or . _ : - (starting with a letter or a digit)"
        )
    return value


def clean_extension(value: Any, name: str = "extension") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidField(name, "must be a string of digits")
    number = value.strip()
    if not number:
        return None
    if not _EXTENSION.fullmatch(number):
        raise InvalidField(name, "must be 1 to 15 digits")
    return number


def clean_login(value: Any, name: str = "login") -> str:
    if not isinstance(value, str):
        raise InvalidField(name, "required")
    login = unicodedata.normalize("NFKC", value).strip().lower()
    if not _LOGIN.fullmatch(login):
        raise InvalidField(
            name, "must be 1 to 100 letters, digits or . _ @ + - (starting with a letter or a digit)"
        )
    return login


def _roles(value: Any) -> list[str]:
    if not isinstance(value, list | tuple) or not value:
        raise InvalidField("roles", "at least one of admin, supervisor, agent")
    roles: set[str] = set()
    for role in value:
        if role not in Role._value2member_map_:
            raise InvalidField("roles", f"unknown role {role!r}: admin, supervisor or agent")
        roles.add(str(role))
    return sorted(roles)


def _rights(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise InvalidField(name, "must be a list of rights")
    for item in value:
        if item not in ALL_RIGHTS:
            raise InvalidField(name, f"unknown right {item!r}; rights are {', '.join(sorted(ALL_RIGHTS))}")
    return sorted(set(value))


def _visibility(value: Any) -> str:
    if value not in {str(v) for v in USER_VISIBILITIES}:
        raise InvalidField("visibility", "must be own or team (admins see everything anyway)")
    return str(value)


def _bool(values: Mapping[str, Any], name: str) -> bool:
    value = values.get(name)
    if not isinstance(value, bool):
        raise InvalidField(name, "must be true or false")
    return value


def _unknown(values: Mapping[str, Any], allowed: Iterable[str]) -> None:
    extra = sorted(set(values) - set(allowed))
    if extra:
        raise InvalidField(extra[0], "unknown field")


# --- protobuf of the events and of gRPC ----------------------------------------------------------------


def employee_message(view: EmployeeView) -> directory_pb.Employee:
    employee = view.employee
    return directory_pb.Employee(
        employee_id=employee.id,
        name=employee.name,
        email=employee.email or "",
        extension=employee.extension or "",
        team_id=employee.team_id or "",
        team_name=view.team_name or "",
        supervisor_id=employee.supervisor_id or "",
        active=employee.active and employee.deleted_at is None,
    )


def employee_record(view: EmployeeView) -> people_pb2.EmployeeRecord:
    """The gRPC form of an employee."""
    employee = view.employee
    return people_pb2.EmployeeRecord(
        employee_id=employee.id,
        name=employee.name,
        email=employee.email or "",
        extension=employee.extension or "",
        team_id=employee.team_id or "",
        team_name=view.team_name or "",
        supervisor_id=employee.supervisor_id or "",
        supervisor_name=view.supervisor_name or "",
        active=employee.active and employee.deleted_at is None,
        deleted=employee.deleted_at is not None,
        version=employee.version,
        created_at=timestamp_message(employee.created_at),
        updated_at=timestamp_message(employee.updated_at),
    )


def employee_event_row(kind: str, view: EmployeeView) -> dict[str, Any]:
    employee = view.employee
    event = directory_pb.EmployeeEvent(
        event_id=f"employee:{employee.id}:{employee.version}",
        occurred_at=timestamp_message(employee.updated_at),
        version=employee.version,
    )
    if kind == "deleted":
        event.deleted.CopyFrom(directory_pb.EmployeeDeleted(employee_id=employee.id))
    else:
        getattr(event, kind).CopyFrom(employee_message(view))
    return outbox.row(EMPLOYEE_SUBJECTS[kind], event, event.event_id)


def team_event_row(kind: str, team: Team) -> dict[str, Any]:
    event = people_pb2.TeamEvent(
        event_id=f"team:{team.id}:{team.version}",
        occurred_at=timestamp_message(team.updated_at),
        version=team.version,
    )
    if kind == "deleted":
        event.deleted.CopyFrom(people_pb2.TeamDeleted(team_id=team.id))
    else:
        getattr(event, kind).CopyFrom(
            people_pb2.Team(team_id=team.id, name=team.name, supervisor_id=team.supervisor_id or "")
        )
    return outbox.row(TEAM_SUBJECTS[kind], event, event.event_id)


def user_event_row(kind: str, user: User) -> dict[str, Any]:
    event = people_pb2.UserEvent(
        event_id=f"user:{user.id}:{user.version}",
        occurred_at=timestamp_message(user.updated_at),
        version=user.version,
    )
    message: Message
    if kind == "deleted":
        message = people_pb2.UserDeleted(user_id=user.id)
    else:
        roles = user_roles(user)
        message = people_pb2.User(
            user_id=user.id,
            login=user.login,
            employee_id=user.employee_id or "",
            roles=sorted(roles),
            visibility=str(Visibility.ALL) if Role.ADMIN in roles else user.visibility,
            rights=sorted(effective_rights(roles, user.granted_rights, user.revoked_rights)),
            disabled=user.disabled,
        )
    getattr(event, kind).CopyFrom(message)
    return outbox.row(USER_SUBJECTS[kind], event, event.event_id)


# --- snapshots for the operation log -------------------------------------------------------------------


def _employee_fields(employee: Employee) -> dict[str, Any]:
    return {name: getattr(employee, name) for name in sorted(EMPLOYEE_FIELDS)}


def _team_fields(team: Team) -> dict[str, Any]:
    return {"name": team.name, "supervisor_id": team.supervisor_id}


def _user_fields(user: User) -> dict[str, Any]:
    return {name: getattr(user, name) for name in sorted(USER_FIELDS)}


def _enabled_admin(fields: Mapping[str, Any]) -> bool:
    return not fields["disabled"] and str(Role.ADMIN) in fields["roles"]


# --- the service ---------------------------------------------------------------------------------------


class PeopleService:
    """Employees, teams and users; every change audited and published in its own transaction."""

    def __init__(
        self,
        db: Database,
        *,
        audit: AuditLog,
        cursor_secret: bytes,
        passwords: Passwords | None = None,
        on_outbox: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.audit = audit
        self.passwords = passwords or Passwords()
        self._secret = cursor_secret
        self._on_outbox = on_outbox

    def _published(self) -> None:
        if self._on_outbox is not None:
            self._on_outbox()

    @staticmethod
    def _check_version(kind: str, current: int, expected: int | None) -> None:
        if expected is not None and expected != current:
            raise StaleVersion(kind, current)

    @staticmethod
    async def _flush(session: AsyncSession, conflict: str) -> None:
        """Flush; a unique constraint that another writer won meanwhile is a :class:`Conflict`."""
        try:
            await session.flush()
        except IntegrityError:
            raise Conflict(conflict) from None

    # --- employees ---------------------------------------------------------------------------------

    @staticmethod
    def _employee_select() -> Select[Employee, str, str]:
        """Employees with their team's and supervisor's names (both may be missing: outer joins)."""
        supervisor = aliased(Employee)
        return (
            select(Employee, Team.name, supervisor.name)
            .outerjoin(Team, Team.id == Employee.team_id)
            .outerjoin(supervisor, supervisor.id == Employee.supervisor_id)
        )

    async def _employee_view(self, session: AsyncSession, employee_id: str) -> EmployeeView | None:
        row = (await session.execute(self._employee_select().where(Employee.id == employee_id))).first()
        if row is None:
            return None
        return EmployeeView(row[0], row[1], row[2])

    async def _live_employee(
        self, session: AsyncSession, employee_id: str, *, lock: bool = False
    ) -> Employee:
        statement = select(Employee).where(Employee.id == employee_id, Employee.deleted_at.is_(None))
        if lock:
            statement = statement.with_for_update()
        employee = (await session.scalars(statement)).first()
        if employee is None:
            raise NotFound(f"no employee {employee_id!r}")
        return employee

    async def list_employees(
        self, viewer: Principal | None, query: EmployeeQuery
    ) -> PageResult[EmployeeView]:
        """Employees by name; ``viewer`` None is a trusted service (sees all), a user sees whom they may."""
        limit = _limit(query.limit)
        where: list[ColumnElement[bool]] = []
        if viewer is not None:
            if query.include_deleted and not viewer.is_admin:
                raise Forbidden("only admins list deleted employees")
            where.append(visible_filter(viewer, Employee.id, Employee.team_id))
        if not query.include_deleted:
            where.append(Employee.deleted_at.is_(None))
        if query.team_id is not None:
            where.append(Employee.team_id == query.team_id)
        if query.supervisor_id is not None:
            where.append(Employee.supervisor_id == query.supervisor_id)
        if query.active is not None:
            if query.active:
                where.append(and_(Employee.active.is_(True), Employee.deleted_at.is_(None)))
            else:
                where.append(or_(Employee.active.is_(False), Employee.deleted_at.is_not(None)))
        if query.extension is not None:
            where.append(Employee.extension == clean_extension(query.extension))
        if query.ids:
            if len(query.ids) > MAX_IDS_PER_QUERY:
                raise InvalidField("ids", f"at most {MAX_IDS_PER_QUERY} ids")
            where.append(Employee.id.in_(sorted(set(query.ids))))
        if query.q and query.q.strip():
            where.append(
                or_(
                    _like(Employee.name, query.q),
                    _like(Employee.email, query.q),
                    _like(Employee.extension, query.q),
                )
            )
        statement = self._employee_select().where(*where)
        if query.cursor:
            key = paging.decode(self._secret, "employees", query.cursor)
            statement = statement.where(_after(Employee.name, Employee.id, key))
        statement = statement.order_by(Employee.name, Employee.id).limit(limit + 1)
        async with self.db.session() as session:
            rows = (await session.execute(statement)).all()
            total = None
            if query.include_total:
                total = int(
                    await session.scalar(select(func.count()).select_from(Employee).where(*where)) or 0
                )
        items = [EmployeeView(row[0], row[1], row[2]) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1].employee
            next_cursor = paging.encode(self._secret, "employees", [last.name, last.id])
        return PageResult(items, next_cursor, total)

    async def get_employee(
        self, viewer: Principal | None, employee_id: str, *, include_deleted: bool = False
    ) -> EmployeeView:
        """One employee; NotFound when unknown, deleted (unless asked) or not visible to ``viewer``."""
        async with self.db.session() as session:
            view = await self._employee_view(session, employee_id)
        if view is None:
            raise NotFound(f"no employee {employee_id!r}")
        employee = view.employee
        if employee.deleted_at is not None and not include_deleted:
            raise NotFound(f"employee {employee_id!r} was deleted")
        if viewer is not None and not viewer.may_see(employee.id, employee.team_id):
            raise NotFound(f"no employee {employee_id!r}")
        return view

    async def resolve_extension(self, extension: str) -> EmployeeView:
        """The employee who answers ``extension`` (deleted employees have none)."""
        number = clean_extension(extension)
        if number is None:
            raise InvalidField("extension", "required")
        async with self.db.session() as session:
            row = (await session.execute(self._employee_select().where(Employee.extension == number))).first()
        if row is None:
            raise NotFound(f"no employee has the extension {number}")
        return EmployeeView(row[0], row[1], row[2])

    async def _check_employee_values(
        self, session: AsyncSession, employee: Employee, values: Mapping[str, Any]
    ) -> None:
        """Apply ``values`` to ``employee`` after checking each against the stored state."""
        if "name" in values:
            employee.name = _text(values, "name", max_length=MAX_NAME_LENGTH, required=True) or ""
        if "email" in values:
            email = _text(values, "email", max_length=MAX_EMAIL_LENGTH, required=False)
            if email is not None and not _EMAIL.fullmatch(email):
                raise InvalidField("email", "is not an e-mail address")
            employee.email = email
        if "extension" in values:
            extension = clean_extension(values["extension"])
            if extension is not None and extension != employee.extension:
                holder = await session.scalar(
                    select(Employee.id).where(Employee.extension == extension, Employee.id != employee.id)
                )
                if holder is not None:
                    raise Conflict(f"the extension {extension} belongs to employee {holder!r}")
            employee.extension = extension
        if "team_id" in values:
            team_id = values["team_id"]
            if team_id is not None and await session.get(Team, check_id(team_id, "team_id")) is None:
                raise InvalidField("team_id", f"no team {team_id!r}")
            employee.team_id = team_id
        if "supervisor_id" in values:
            supervisor_id = values["supervisor_id"]
            if supervisor_id is not None:
                await self._check_supervisor(session, employee.id, check_id(supervisor_id, "supervisor_id"))
            employee.supervisor_id = supervisor_id
        if "active" in values:
            employee.active = _bool(values, "active")

    @staticmethod
    async def _check_supervisor(session: AsyncSession, employee_id: str, supervisor_id: str) -> None:
        if supervisor_id == employee_id:
            raise InvalidField("supervisor_id", "an employee cannot be their own supervisor")
        current: str | None = supervisor_id
        for _ in range(MAX_SUPERVISOR_CHAIN):
            if current is None:
                return
            row = (
                await session.execute(
                    select(Employee.supervisor_id, Employee.deleted_at).where(Employee.id == current)
                )
            ).first()
            if row is None or (current == supervisor_id and row.deleted_at is not None):
                raise InvalidField("supervisor_id", f"no employee {supervisor_id!r}")
            if row.supervisor_id == employee_id:
                raise InvalidField("supervisor_id", "would make a circle of supervisors")
            current = row.supervisor_id
        raise InvalidField("supervisor_id", "the chain of supervisors is too long")

    async def create_employee(self, actor: Principal | str, values: Mapping[str, Any]) -> EmployeeView:
        _unknown(values, EMPLOYEE_FIELDS | {"id"})
        employee_id = check_id(values["id"], "id") if values.get("id") is not None else str(uuid.uuid4())
        now = utcnow()
        async with self.db.session() as session:
            if await session.get(Employee, employee_id) is not None:
                raise Conflict(f"an employee {employee_id!r} exists already")
            employee = Employee(id=employee_id, active=True, version=1, created_at=now, updated_at=now)
            if "name" not in values:
                raise InvalidField("name", "required")
            await self._check_employee_values(session, employee, values)
            session.add(employee)
            await self._flush(session, "the employee's id or extension was taken meanwhile")
            view = await self._employee_view(session, employee_id)
            assert view is not None
            await self.audit.record(
                session, actor, "employee", employee_id, "create", diff({}, _employee_fields(employee))
            )
            await outbox.add(session, [employee_event_row("created", view)])
        self._published()
        return view

    async def update_employee(
        self,
        actor: Principal | str,
        employee_id: str,
        values: Mapping[str, Any],
        *,
        expected_version: int | None = None,
    ) -> EmployeeView:
        """Change the fields given; nothing changed changes nothing (no new version, no event)."""
        _unknown(values, EMPLOYEE_FIELDS)
        async with self.db.session() as session:
            employee = await self._live_employee(session, employee_id, lock=True)
            self._check_version("employee", employee.version, expected_version)
            before = _employee_fields(employee)
            await self._check_employee_values(session, employee, values)
            changes = diff(before, _employee_fields(employee))
            if changes:
                employee.version += 1
                employee.updated_at = utcnow()
                await self._flush(session, "the extension was taken meanwhile")
            view = await self._employee_view(session, employee_id)
            assert view is not None
            if changes:
                await self.audit.record(session, actor, "employee", employee_id, "update", changes)
                await outbox.add(session, [employee_event_row("updated", view)])
        if changes:
            self._published()
        return view

    async def delete_employee(
        self, actor: Principal | str, employee_id: str, *, expected_version: int | None = None
    ) -> None:
        """Delete softly: the row stays (history names them), inactive, its extension freed.

        Refused (Conflict) while a user is this employee, they supervise a team, or live employees
        have them as supervisor: those must be changed first, so that nothing points at nobody.
        """
        async with self.db.session() as session:
            employee = await self._live_employee(session, employee_id, lock=True)
            self._check_version("employee", employee.version, expected_version)
            users = (await session.scalars(select(User.login).where(User.employee_id == employee_id))).all()
            teams = (await session.scalars(select(Team.name).where(Team.supervisor_id == employee_id))).all()
            reports = (
                await session.scalars(
                    select(Employee.id)
                    .where(Employee.supervisor_id == employee_id, Employee.deleted_at.is_(None))
                    .limit(5)
                )
            ).all()
            reasons = []
            if users:
                reasons.append(f"the user {users[0]!r} is this employee")
            if teams:
                reasons.append(f"they supervise the team {teams[0]!r}")
            if reports:
                reasons.append(f"they supervise the employee(s) {', '.join(reports)}")
            if reasons:
                raise Conflict(f"employee {employee_id!r} cannot be deleted: {'; '.join(reasons)}")
            before = _employee_fields(employee)
            now = utcnow()
            employee.deleted_at = now
            employee.active = False
            employee.extension = None
            employee.version += 1
            employee.updated_at = now
            await session.flush()
            await self.audit.record(
                session, actor, "employee", employee_id, "delete", diff(before, _employee_fields(employee))
            )
            await outbox.add(session, [employee_event_row("deleted", EmployeeView(employee))])
        self._published()

    # --- teams -------------------------------------------------------------------------------------

    async def list_teams(self, viewer: Principal | None, query: TeamQuery) -> PageResult[Team]:
        """Teams by name: admins (and services) see all, others the teams they belong to or supervise."""
        limit = _limit(query.limit)
        where: list[ColumnElement[bool]] = []
        if viewer is not None and not viewer.sees_all:
            where.append(Team.id.in_(sorted(viewer.team_ids | viewer.supervised_team_ids)))
        if query.q and query.q.strip():
            where.append(_like(Team.name, query.q))
        if query.supervisor_id is not None:
            where.append(Team.supervisor_id == query.supervisor_id)
        statement = select(Team).where(*where)
        if query.cursor:
            key = paging.decode(self._secret, "teams", query.cursor)
            statement = statement.where(_after(Team.name, Team.id, key))
        async with self.db.session() as session:
            rows = list(
                (await session.scalars(statement.order_by(Team.name, Team.id).limit(limit + 1))).all()
            )
            total = None
            if query.include_total:
                total = int(await session.scalar(select(func.count()).select_from(Team).where(*where)) or 0)
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = paging.encode(self._secret, "teams", [rows[-1].name, rows[-1].id])
        return PageResult(rows, next_cursor, total)

    async def get_team(self, viewer: Principal | None, team_id: str) -> Team:
        async with self.db.session() as session:
            team = await session.get(Team, team_id)
        if team is None or (
            viewer is not None
            and not viewer.sees_all
            and team.id not in viewer.team_ids | viewer.supervised_team_ids
        ):
            raise NotFound(f"no team {team_id!r}")
        return team

    async def _check_team_values(self, session: AsyncSession, team: Team, values: Mapping[str, Any]) -> None:
        if "name" in values:
            name = _text(values, "name", max_length=MAX_NAME_LENGTH, required=True) or ""
            same = await session.scalar(
                select(Team.id).where(func.lower(Team.name) == name.lower(), Team.id != team.id)
            )
            if same is not None:
                raise Conflict(f"a team named {name!r} exists already")
            team.name = name
        if "supervisor_id" in values:
            supervisor_id = values["supervisor_id"]
            if supervisor_id is not None:
                supervisor = await session.get(Employee, check_id(supervisor_id, "supervisor_id"))
                if supervisor is None or supervisor.deleted_at is not None:
                    raise InvalidField("supervisor_id", f"no employee {supervisor_id!r}")
            team.supervisor_id = supervisor_id

    async def create_team(self, actor: Principal | str, values: Mapping[str, Any]) -> Team:
        _unknown(values, TEAM_FIELDS | {"id"})
        team_id = check_id(values["id"], "id") if values.get("id") is not None else str(uuid.uuid4())
        now = utcnow()
        async with self.db.session() as session:
            if await session.get(Team, team_id) is not None:
                raise Conflict(f"a team {team_id!r} exists already")
            if "name" not in values:
                raise InvalidField("name", "required")
            team = Team(id=team_id, version=1, created_at=now, updated_at=now)
            await self._check_team_values(session, team, values)
            session.add(team)
            await self._flush(session, "a team with this id or name was created meanwhile")
            await self.audit.record(session, actor, "team", team_id, "create", diff({}, _team_fields(team)))
            await outbox.add(session, [team_event_row("created", team)])
        self._published()
        return team

    async def update_team(
        self,
        actor: Principal | str,
        team_id: str,
        values: Mapping[str, Any],
        *,
        expected_version: int | None = None,
    ) -> Team:
        """Rename a team or change its supervisor; a rename re-publishes each live member."""
        _unknown(values, TEAM_FIELDS)
        async with self.db.session() as session:
            team = (await session.scalars(select(Team).where(Team.id == team_id).with_for_update())).first()
            if team is None:
                raise NotFound(f"no team {team_id!r}")
            self._check_version("team", team.version, expected_version)
            before = _team_fields(team)
            await self._check_team_values(session, team, values)
            changes = diff(before, _team_fields(team))
            if not changes:
                return team
            now = utcnow()
            team.version += 1
            team.updated_at = now
            await self._flush(session, "a team with this name was created meanwhile")
            rows = [team_event_row("updated", team)]
            if "name" in changes:
                members = (
                    await session.scalars(
                        select(Employee)
                        .where(Employee.team_id == team_id, Employee.deleted_at.is_(None))
                        .order_by(Employee.id)
                        .with_for_update()
                    )
                ).all()
                for member in members:
                    member.version += 1
                    member.updated_at = now
                    view = await self._employee_view(session, member.id)
                    assert view is not None
                    rows.append(employee_event_row("updated", view))
            await self.audit.record(session, actor, "team", team_id, "update", changes)
            await outbox.add(session, rows)
        self._published()
        return team

    async def delete_team(
        self, actor: Principal | str, team_id: str, *, expected_version: int | None = None
    ) -> None:
        """Delete a team without live members (Conflict otherwise); deleted members forget it."""
        async with self.db.session() as session:
            team = (await session.scalars(select(Team).where(Team.id == team_id).with_for_update())).first()
            if team is None:
                raise NotFound(f"no team {team_id!r}")
            self._check_version("team", team.version, expected_version)
            members = await session.scalar(
                select(func.count()).where(Employee.team_id == team_id, Employee.deleted_at.is_(None))
            )
            if members:
                raise Conflict(f"the team {team.name!r} still has {members} employee(s): move them first")
            await session.execute(update(Employee).where(Employee.team_id == team_id).values(team_id=None))
            team.version += 1
            team.updated_at = utcnow()
            row = team_event_row("deleted", team)
            await session.delete(team)
            await session.flush()
            await self.audit.record(session, actor, "team", team_id, "delete", diff(_team_fields(team), {}))
            await outbox.add(session, [row])
        self._published()

    # --- users -------------------------------------------------------------------------------------

    async def list_users(self, query: UserQuery) -> PageResult[User]:
        limit = _limit(query.limit)
        where: list[ColumnElement[bool]] = []
        if query.disabled is not None:
            where.append(User.disabled.is_(query.disabled))
        if query.employee_id is not None:
            where.append(User.employee_id == query.employee_id)
        if query.q and query.q.strip():
            where.append(_like(User.login, query.q))
        if query.role is not None:
            # Roles are a JSON list of plain words: its text holds '"admin"' exactly when it has the role.
            where.append(cast(User.roles, String).contains(f'"{query.role}"', autoescape=True))
        statement = select(User).where(*where).order_by(User.login, User.id)
        if query.cursor:
            key = paging.decode(self._secret, "users", query.cursor)
            statement = statement.where(_after(User.login, User.id, key))
        async with self.db.session() as session:
            rows = list((await session.scalars(statement.limit(limit + 1))).all())
            total = None
            if query.include_total:
                total = int(await session.scalar(select(func.count()).select_from(User).where(*where)) or 0)
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = paging.encode(self._secret, "users", [rows[-1].login, rows[-1].id])
        return PageResult(rows, next_cursor, total)

    async def get_user(self, user_id: str) -> User:
        async with self.db.session() as session:
            user = await session.get(User, user_id)
        if user is None:
            raise NotFound(f"no user {user_id!r}")
        return user

    async def _check_user_values(self, session: AsyncSession, user: User, values: Mapping[str, Any]) -> None:
        if "login" in values:
            login = clean_login(values["login"])
            if login != user.login:
                taken = await session.scalar(select(User.id).where(User.login == login))
                if taken is not None:
                    raise Conflict(f"the login {login!r} is taken")
            user.login = login
        if "employee_id" in values:
            employee_id = values["employee_id"]
            if employee_id is not None:
                employee = await session.get(Employee, check_id(employee_id, "employee_id"))
                if employee is None or employee.deleted_at is not None:
                    raise InvalidField("employee_id", f"no employee {employee_id!r}")
                other = await session.scalar(
                    select(User.login).where(User.employee_id == employee_id, User.id != user.id)
                )
                if other is not None:
                    raise Conflict(f"the employee {employee_id!r} is the user {other!r} already")
            user.employee_id = employee_id
        if "roles" in values:
            user.roles = _roles(values["roles"])
        if "visibility" in values:
            user.visibility = _visibility(values["visibility"])
        granted = _rights(values["granted_rights"], "granted_rights") if "granted_rights" in values else None
        revoked = _rights(values["revoked_rights"], "revoked_rights") if "revoked_rights" in values else None
        if granted is not None:
            user.granted_rights = granted
        if revoked is not None:
            user.revoked_rights = revoked
        both = sorted(set(user.granted_rights) & set(user.revoked_rights))
        if both:
            raise InvalidField(
                "revoked_rights" if revoked is not None else "granted_rights",
                f"{both[0]!r} is both granted and revoked",
            )
        if "disabled" in values:
            user.disabled = _bool(values, "disabled")

    @staticmethod
    async def _check_an_admin_remains(session: AsyncSession) -> None:
        """Conflict unless an enabled admin remains (checked after the change, before commit).

        On PostgreSQL such checks take turns (a transaction lock), so two admins disabling each other
        at once cannot both pass: the second sees the first's change once it committed.
        """
        await session.flush()
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('telecrm_crm.last_admin'))"))
        enabled = (await session.scalars(select(User.roles).where(User.disabled.is_(False)))).all()
        if not any(Role.ADMIN in roles for roles in enabled):
            raise Conflict("this would leave no enabled admin: make another user an admin first")

    async def create_user(self, actor: Principal | str, values: Mapping[str, Any]) -> User:
        _unknown(values, USER_FIELDS | {"password"})
        login = clean_login(values.get("login"))
        password = values.get("password")
        if password is not None:
            if not isinstance(password, str):
                raise InvalidField("password", "must be a string")
            self.passwords.check_policy(password, field="password", login=login)
        if "roles" not in values:
            raise InvalidField("roles", "at least one of admin, supervisor, agent")
        password_hash = await self.passwords.hash(password) if password is not None else None
        now = utcnow()
        async with self.db.session() as session:
            user = User(
                id=str(uuid.uuid4()),
                login=login,
                password_hash=password_hash,
                roles=[],
                visibility=str(Visibility.OWN),
                granted_rights=[],
                revoked_rights=[],
                disabled=False,
                failed_logins=0,
                password_changed_at=now if password_hash else None,
                version=1,
                created_at=now,
                updated_at=now,
            )
            await self._check_user_values(session, user, {**values, "login": login})
            session.add(user)
            await self._flush(session, "the login or the employee was taken meanwhile")
            fields = _user_fields(user)
            if password_hash:
                fields["password"] = "(set)"  # noqa: S105 - a marker in the log, never the password
            await self.audit.record(session, actor, "user", user.id, "create", diff({}, fields))
            await outbox.add(session, [user_event_row("created", user)])
        self._published()
        return user

    async def update_user(
        self,
        actor: Principal | str,
        user_id: str,
        values: Mapping[str, Any],
        *,
        expected_version: int | None = None,
    ) -> User:
        """Change a user; disabling one revokes their refresh tokens. At least one enabled admin stays."""
        _unknown(values, USER_FIELDS)
        async with self.db.session() as session:
            user = (await session.scalars(select(User).where(User.id == user_id).with_for_update())).first()
            if user is None:
                raise NotFound(f"no user {user_id!r}")
            self._check_version("user", user.version, expected_version)
            before = _user_fields(user)
            await self._check_user_values(session, user, values)
            changes = diff(before, _user_fields(user))
            if not changes:
                return user
            user.version += 1
            user.updated_at = utcnow()
            if _enabled_admin(before) and not _enabled_admin(_user_fields(user)):
                await self._check_an_admin_remains(session)
            if user.disabled and "disabled" in changes:
                await revoke_refresh_tokens(session, "disabled", user_id=user_id)
            await self._flush(session, "the login or the employee was taken meanwhile")
            await self.audit.record(session, actor, "user", user_id, "update", changes)
            await outbox.add(session, [user_event_row("updated", user)])
        self._published()
        return user

    async def delete_user(
        self, actor: Principal, user_id: str, *, expected_version: int | None = None
    ) -> None:
        if user_id == actor.subject:
            raise Conflict("you cannot delete your own user")
        async with self.db.session() as session:
            user = (await session.scalars(select(User).where(User.id == user_id).with_for_update())).first()
            if user is None:
                raise NotFound(f"no user {user_id!r}")
            self._check_version("user", user.version, expected_version)
            before = _user_fields(user)
            user.version += 1
            user.updated_at = utcnow()
            row = user_event_row("deleted", user)
            await session.execute(delete(RefreshToken).where(RefreshToken.user_id == user_id))
            await session.delete(user)
            if _enabled_admin(before):
                await self._check_an_admin_remains(session)
            await self.audit.record(session, actor, "user", user_id, "delete", diff(before, {}))
            await outbox.add(session, [row])
        self._published()

    async def _set_password(
        self, session: AsyncSession, actor: Principal | str, user: User, password_hash: str
    ) -> None:
        now = utcnow()
        user.password_hash = password_hash
        user.password_changed_at = now
        user.failed_logins = 0
        user.locked_until = None
        user.version += 1
        user.updated_at = now
        await revoke_refresh_tokens(session, "password", user_id=user.id)
        await self.audit.record(session, actor, "user", user.id, "update", {"password": [None, "(changed)"]})
        await outbox.add(session, [user_event_row("updated", user)])

    async def set_password(
        self, actor: Principal | str, user_id: str, password: str, *, expected_version: int | None = None
    ) -> User:
        """An admin sets a user's password: it unlocks them and ends their sessions (refresh tokens)."""
        current = await self.get_user(user_id)
        self.passwords.check_policy(password, field="password", login=current.login)
        password_hash = await self.passwords.hash(password)
        async with self.db.session() as session:
            user = (await session.scalars(select(User).where(User.id == user_id).with_for_update())).first()
            if user is None:
                raise NotFound(f"no user {user_id!r}")
            self._check_version("user", user.version, expected_version)
            await self._set_password(session, actor, user, password_hash)
        self._published()
        return user

    async def change_own_password(self, principal: Principal, current: str, new: str) -> None:
        """The user changes their password: the current one must be right; every session ends."""
        async with self.db.session() as session:
            user = await session.get(User, principal.subject)
        if user is None or user.password_hash is None:
            raise Conflict("this account has no password here: it logs in through the identity provider")
        if not await self.passwords.verify(user.password_hash, current):
            raise InvalidField("current_password", "is not your current password")
        self.passwords.check_policy(new, field="new_password", login=user.login)
        if new == current:
            raise InvalidField("new_password", "must differ from the current password")
        password_hash = await self.passwords.hash(new)
        async with self.db.session() as session:
            user = (
                await session.scalars(select(User).where(User.id == principal.subject).with_for_update())
            ).first()
            if user is None:
                raise NotFound("your user was deleted")
            await self._set_password(session, principal, user, password_hash)
        self._published()

    async def unlock_user(self, actor: Principal | str, user_id: str) -> User:
        """End a lock-out after failed log-ins (and forget the failures)."""
        async with self.db.session() as session:
            user = (await session.scalars(select(User).where(User.id == user_id).with_for_update())).first()
            if user is None:
                raise NotFound(f"no user {user_id!r}")
            if user.locked_until is not None or user.failed_logins:
                await self.audit.record(
                    session, actor, "user", user_id, "unlock", {"locked_until": [user.locked_until, None]}
                )
                user.locked_until = None
                user.failed_logins = 0
        return user

    async def me(self, principal: Principal) -> Me:
        """The asker as the database says now (roles, rights, teams), or as their token says when the
        user is not one of ours (an identity provider's)."""
        async with self.db.session() as session:
            user = await session.get(User, principal.subject)
            current = await principal_of(session, user) if user is not None else principal
            employee = None
            if current.employee_id:
                employee = await self._employee_view(session, current.employee_id)
        return Me(current, user, employee)

    # --- start-up ----------------------------------------------------------------------------------

    async def bootstrap_admin(self, login: str, password: str) -> User | None:
        """Create the first admin when there is no user at all; None when users exist (nothing done).

        Raises :class:`BootstrapError` when a first admin is needed and the password is empty or
        refused by the policy. Replicas starting together create one admin: the login is unique.
        """
        async with self.db.session() as session:
            if await session.scalar(select(func.count()).select_from(User)):
                return None
        if not password:
            raise BootstrapError(
                "no user exists yet: set CRM_BOOTSTRAP_ADMIN_PASSWORD to create the first admin"
            )
        try:
            user = await self.create_user(
                "system:bootstrap", {"login": login, "password": password, "roles": [str(Role.ADMIN)]}
            )
        except InvalidField as exc:
            raise BootstrapError(f"the first admin cannot be created: {exc}") from None
        except Conflict:
            return None  # another replica created it
        log.info("created the first admin user", extra={"login": user.login})
        return user
