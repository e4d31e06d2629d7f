"""Tasks: what someone has to do about a contact, a call or a project, and the rules of their workflow.

The service layer of crm's tasks (no web or gRPC here). What it keeps to:

- **Workflow.** A status change follows :data:`~telecrm_crm.tasks_models.TRANSITIONS` over the status
  groups; a forbidden one raises :class:`TransitionForbidden` with the statuses that are allowed next.
  Changing a status needs the ``task.status`` right; only the controller (the author when there is
  none) may accept a finished task; a task is done only when each executor is (or the change sets
  their statuses too); a task waiting for unfinished tasks may not start or finish. "Overdue" is set
  only by the overdue sweep (:mod:`telecrm_crm.task_schedule`), once per deadline; moving the deadline
  brings an overdue task back to the status it had.
- **Every change** bumps the task's ``version`` (checked when the caller sends the one it edited, for
  optimistic concurrency), goes to the operation log (``GET /tasks/{id}/history`` reads it back) and
  publishes one ``crm.task.*`` event through the outbox in the same transaction.
- **Visibility.** A user sees a task they own or whose owner is in a team they see (the suite's rules,
  :meth:`Principal.may_see`), and any task they wrote, control or execute; an invisible task is
  "not found".
- **Repeats.** A recurring task that is done creates its next occurrence once (``next_occurrence_id``).
- Group operations (status, executors) check and apply each task on its own and list what happened to
  each, so one refused task does not hold back the others.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy import ColumnElement, and_, case, delete, exists, func, literal, not_, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from telecrm.crm.v1 import tasks_pb2
from telecrm_common.auth import ALL_RIGHTS, TASK_STATUS_RIGHT, Principal, Visibility
from telecrm_common.db import Database, UTCDateTime, utcnow
from telecrm_common.errors import TelecrmError
from telecrm_common.timestamps import timestamp_message
from telecrm_crm import outbox, paging
from telecrm_crm.access import visible_filter
from telecrm_crm.attachments import AttachmentStore, StoredFile
from telecrm_crm.audit import AuditLog, diff
from telecrm_crm.models import Attachment, AuditEntry
from telecrm_crm.task_schedule import TASK_REMINDER_SUBJECT, Recurrence, next_occurrence
from telecrm_crm.tasks_models import (
    ACCEPTED,
    ACTIVE_GROUPS,
    BLOCKED_BY_DEPENDENCIES,
    BUILTIN_STATUS_NAMES,
    DONE,
    EXECUTOR_STATUSES,
    FINISHED_GROUPS,
    FIXED_GROUPS,
    IN_PROGRESS,
    OPEN_GROUPS,
    OVERDUE,
    PRIORITY_RANK,
    SET,
    STATUS_GROUPS,
    SUSPENDED,
    TRANSITIONS,
    Task,
    TaskCall,
    TaskCallRuleRecord,
    TaskComment,
    TaskDependency,
    TaskExecutor,
    TaskReminder,
    TaskStatus,
    TaskTemplate,
)

# --- bus subjects ---------------------------------------------------------------------------------

TASK_SUBJECT_PREFIX = "crm.task"
TASK_EVENT_KINDS = ("created", "updated", "deleted", "status_changed")
TASK_SUBJECTS = {kind: f"{TASK_SUBJECT_PREFIX}.{kind}" for kind in TASK_EVENT_KINDS}
OUTBOX_FLAG = "tasks_outbox"  # set in a session's info when it wrote to the outbox
ATTACHMENT_KIND = "task"
AUDIT_KIND = "task"
CURSOR_DOMAIN = "tasks"
FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)
FAR_PAST = datetime(1900, 1, 1, tzinfo=UTC)
MAX_GROUP = 500  # tasks in one group operation, contacts in one multiply
CALENDAR_LIMIT = 2000
STATUS_CODE = re.compile(r"[a-z][a-z0-9_]{0,31}")
# Executor status that a task status means for its executors when a change sets theirs too.
EXECUTOR_STATUS_FOR_GROUP = {
    SET: SET,
    IN_PROGRESS: IN_PROGRESS,
    OVERDUE: IN_PROGRESS,
    DONE: DONE,
    ACCEPTED: DONE,
    SUSPENDED: SUSPENDED,
}


# --- errors ---------------------------------------------------------------------------------------


class TaskError(TelecrmError):
    """A refused request; ``status`` is the HTTP answer."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, Any]:
        """Extra fields of the error's answer, besides ``detail``."""
        return {}


class TaskNotFound(TaskError):
    status = 404


class InvalidTask(TaskError):
    """A field's value is not acceptable (422 naming ``field``)."""

    status = 422

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.reason = message


class TaskForbidden(TaskError):
    status = 403


class TransitionForbidden(TaskError):
    status = 409

    def __init__(self, current: str, requested: str, allowed: Sequence[str]) -> None:
        allowed_text = ", ".join(allowed) if allowed else "none (the status is final)"
        super().__init__(
            f"a task in status {current!r} cannot move to {requested!r}; allowed: {allowed_text}"
        )
        self.current = current
        self.requested = requested
        self.allowed = list(allowed)

    def details(self) -> dict[str, Any]:
        return {"current_status": self.current, "allowed": self.allowed}


class TaskConflict(TaskError):
    """The task's state does not allow the change (409), with what stands in the way."""

    status = 409

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.extra = extra

    def details(self) -> dict[str, Any]:
        return dict(self.extra)


class VersionMismatch(TaskError):
    """The task changed since the version the caller edited (412)."""

    status = 412

    def __init__(self, current: int) -> None:
        super().__init__(f"the task changed meanwhile; its version is now {current}")
        self.current = current

    def details(self) -> dict[str, Any]:
        return {"version": self.current}


class DependencyCycle(TaskError):
    """Adding the dependency would make tasks wait for each other (422 naming the cycle)."""

    status = 422

    def __init__(self, cycle: Sequence[str]) -> None:
        super().__init__("depends_on: this would make a cycle: " + " -> ".join(cycle))
        self.field = "depends_on"
        self.reason = "this would make a cycle: " + " -> ".join(cycle)
        self.cycle = list(cycle)

    def details(self) -> dict[str, Any]:
        return {"cycle": self.cycle}


class InvalidCursor(TaskError):
    status = 400


# --- inputs ---------------------------------------------------------------------------------------


def as_utc(value: datetime) -> datetime:
    """Times without an offset are taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (such as Europe/Kyiv)") from None
    return name


UTCTime = Annotated[datetime, AfterValidator(as_utc)]
Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)]
Description = Annotated[str, StringConstraints(max_length=20000)]
ZoneName = Annotated[str, AfterValidator(_zone)]
Priority = Literal["low", "normal", "high"]


class ExecutorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    employee_id: Id
    planned_minutes: int | None = Field(default=None, ge=0, le=1_000_000, description="Time planned for them")


class RecurrenceIn(BaseModel):
    """How a task repeats; the next occurrence is created when one is done."""

    model_config = ConfigDict(extra="forbid")

    freq: Literal["daily", "weekly", "monthly"]
    interval: int = Field(default=1, ge=1, le=366, description="Every N days / weeks / months")
    weekdays: list[int] | None = Field(
        default=None, description="Weekly only: 0 = Monday ... 6 = Sunday; default: the task's weekday"
    )
    until: date | None = Field(default=None, description="Last local date an occurrence may start on")
    count: int | None = Field(default=None, ge=1, le=10000, description="Occurrences in all")
    tz: ZoneName = Field(default="UTC", description="IANA zone the dates are counted in")

    @model_validator(mode="after")
    def _weekdays(self) -> RecurrenceIn:
        if self.weekdays is not None:
            if self.freq != "weekly":
                raise ValueError("weekdays are for a weekly recurrence")
            if not self.weekdays or any(day < 0 or day > 6 for day in self.weekdays):
                raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")
            self.weekdays = sorted(set(self.weekdays))
        return self


class ReminderIn(BaseModel):
    """A reminder at a time, or some minutes before the deadline (it then follows the deadline)."""

    model_config = ConfigDict(extra="forbid")

    remind_at: UTCTime | None = None
    before_end_minutes: int | None = Field(default=None, ge=0, le=525_600)
    email: bool = Field(default=False, description="Also send it by e-mail (through messaging)")
    employee_ids: list[Id] | None = Field(
        default=None, description="Who is reminded; default: the executors and the controller"
    )

    @model_validator(mode="after")
    def _one_time(self) -> ReminderIn:
        if (self.remind_at is None) == (self.before_end_minutes is None):
            raise ValueError("give either remind_at or before_end_minutes")
        return self


class TaskDraft(BaseModel):
    """A new task. Fields left out come from ``template_id`` when one is given."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = Field(default=None, description="Required unless the template gives one")
    description: Description | None = None
    start_at: UTCTime | None = None
    end_at: UTCTime | None = Field(default=None, description="The deadline")
    priority: Priority | None = Field(default=None, description="Default: normal")
    controller_id: Id | None = None
    executors: list[ExecutorIn] | None = None
    contact_id: Id | None = None
    phone: Phone | None = None
    project_id: Id | None = None
    call_id: Id | None = None
    event_id: Id | None = None
    owner_employee_id: Id | None = Field(default=None, description="Default: the author")
    owner_team_id: Id | None = Field(default=None, description="Default: the author's team")
    recurrence: RecurrenceIn | None = None
    reminders: list[ReminderIn] | None = None
    depends_on: list[Id] | None = Field(default=None, description="Tasks this one waits for")
    template_id: Id | None = None


class TaskPatch(BaseModel):
    """Changes of a task's fields: absent fields are unchanged, null clears (name excepted)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description | None = None
    start_at: UTCTime | None = None
    end_at: UTCTime | None = None
    priority: Priority | None = None
    controller_id: Id | None = None
    contact_id: Id | None = None
    phone: Phone | None = None
    project_id: Id | None = None
    owner_employee_id: Id | None = None
    owner_team_id: Id | None = None
    recurrence: RecurrenceIn | None = None

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class TemplateFields(BaseModel):
    """What a template gives a new task: its fields, executors, length and relative reminders."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description | None = None
    priority: Priority | None = None
    controller_id: Id | None = None
    executors: list[ExecutorIn] = Field(default_factory=list)
    project_id: Id | None = None
    owner_team_id: Id | None = None
    duration_minutes: int | None = Field(default=None, ge=0, le=525_600, description="Start to deadline")
    recurrence: RecurrenceIn | None = None
    reminders: list[ReminderIn] = Field(default_factory=list)

    @model_validator(mode="after")
    def _relative_reminders(self) -> TemplateFields:
        if any(reminder.before_end_minutes is None for reminder in self.reminders):
            raise ValueError("a template's reminders are before_end_minutes (before each task's deadline)")
        return self


@dataclass(frozen=True)
class TaskSource:
    """What a task created from a journal event or a call inherits from it."""

    contact_id: str | None = None
    phone: str | None = None
    project_id: str | None = None
    name: str | None = None
    description: str | None = None
    employee_id: str | None = None
    team_id: str | None = None


# ("event" | "call", id) -> what it carries, or None when there is no such event / call.
SourceLookup = Callable[[str, str], Awaitable[TaskSource | None]]


@dataclass(frozen=True)
class CallInfo:
    """A call as attached to a task."""

    call_id: str
    direction: str | None = None
    number: str | None = None
    started_at: datetime | None = None
    talk_seconds: int | None = None
    disposition: str | None = None


# --- outputs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskView:
    task: Task
    waiting_for: list[str] = field(default_factory=list)  # unfinished tasks it waits for
    overdue: bool = False


@dataclass(frozen=True)
class StatusInfo:
    code: str
    name: str
    group: str
    builtin: bool
    active: bool


@dataclass(frozen=True)
class GroupResult:
    """What a group operation did to one task."""

    task_id: str
    ok: bool
    status: int  # HTTP status of this task's part: 200, 403, 404, 409, 412, 422
    detail: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    task: TaskView | None = None


@dataclass(frozen=True)
class TaskPage:
    items: list[TaskView]
    next_cursor: str | None
    total: int | None = None
    by_status_group: dict[str, int] | None = None
    overdue: int | None = None


@dataclass(frozen=True)
class CalendarDay:
    day: date
    task_ids: list[str]


@dataclass(frozen=True)
class CalendarView:
    view: str
    tz: str
    first_day: date
    last_day: date  # inclusive
    starts: datetime  # UTC bounds of the period
    ends: datetime
    tasks: list[TaskView]
    days: list[CalendarDay]
    truncated: bool


@dataclass(frozen=True)
class DueReminder:
    reminder: TaskReminder
    task: Task


Sort = Literal["created", "-created", "deadline", "-deadline", "start", "-start", "priority", "-priority"]


@dataclass(frozen=True)
class TaskQuery:
    """Filters of the register; ``None`` / empty: no filter."""

    statuses: tuple[str, ...] = ()
    status_groups: tuple[str, ...] = ()
    priorities: tuple[str, ...] = ()
    executor_id: str | None = None
    controller_id: str | None = None
    author_id: str | None = None
    contact_id: str | None = None
    project_id: str | None = None
    owner_employee_id: str | None = None
    owner_team_id: str | None = None
    period_from: datetime | None = None
    period_to: datetime | None = None
    overdue: bool | None = None
    text: str | None = None
    sort: Sort = "-created"
    limit: int = paging.DEFAULT_LIMIT
    cursor: str | None = None
    include_total: bool = False


# --- helpers --------------------------------------------------------------------------------------


def system_principal(component: str) -> Principal:
    """The actor of changes a component makes on its own (sweeps, automation): sees and may do all."""
    return Principal(
        subject=f"system:{component}", name=component, rights=ALL_RIGHTS, visibility=Visibility.ALL
    )


def _new_id() -> str:
    return str(uuid.uuid4())


def is_overdue(task: Task, now: datetime) -> bool:
    if task.status_group == OVERDUE:
        return True
    return task.end_at is not None and task.end_at < now and task.status_group in (SET, IN_PROGRESS)


def _overdue_clause(now: datetime) -> ColumnElement[bool]:
    return or_(
        Task.status_group == OVERDUE,
        and_(Task.end_at.is_not(None), Task.end_at < now, Task.status_group.in_([SET, IN_PROGRESS])),
    )


def acceptor_of(task: Task) -> tuple[str | None, str]:
    """Who may accept the task when it is done: its controller; without one its author; for a task a
    component made (no author either), its owner."""
    if task.controller_id:
        return task.controller_id, "its controller"
    if task.author_id:
        return task.author_id, "its author (it has no controller)"
    return task.owner_employee_id, "its owner (it has no controller or author)"


def visible_tasks(actor: Principal) -> ColumnElement[bool]:
    """The tasks ``actor`` sees: owned within their visibility, or written, controlled or executed."""
    if actor.sees_all:
        return true()
    clauses = [visible_filter(actor, Task.owner_employee_id, Task.owner_team_id)]
    employee = actor.employee_id
    if employee is not None:
        clauses += [
            Task.author_id == employee,
            Task.controller_id == employee,
            exists().where(TaskExecutor.task_id == Task.id, TaskExecutor.employee_id == employee),
        ]
    return or_(*clauses)


def may_see(actor: Principal, task: Task) -> bool:
    if actor.may_see(task.owner_employee_id, task.owner_team_id):
        return True
    employee = actor.employee_id
    if employee is None:
        return False
    return employee in (task.author_id, task.controller_id) or any(
        executor.employee_id == employee for executor in task.executors
    )


AUDITED_FIELDS = (
    "name",
    "description",
    "status",
    "priority",
    "start_at",
    "end_at",
    "controller_id",
    "contact_id",
    "phone",
    "project_id",
    "call_id",
    "event_id",
    "owner_employee_id",
    "owner_team_id",
    "recurrence",
    "template_id",
)


def snapshot(task: Task) -> dict[str, Any]:
    """The task's fields as the operation log records them."""
    data: dict[str, Any] = {name: getattr(task, name) for name in AUDITED_FIELDS}
    data["executors"] = [
        {
            "employee_id": executor.employee_id,
            "status": executor.status,
            "planned_minutes": executor.planned_minutes,
            "time_spent_minutes": executor.time_spent_minutes,
        }
        for executor in task.executors
    ]
    data["depends_on"] = task.depends_on
    return data


def _recurrence_json(rule: RecurrenceIn, reference: datetime | None) -> dict[str, Any]:
    data = rule.model_dump(mode="json", exclude_none=True)
    if reference is not None:
        data["anchor"] = reference.astimezone(ZoneInfo(rule.tz)).date().isoformat()
    return data


def task_message(view: TaskView) -> tasks_pb2.Task:
    """The protobuf of a task: the one conversion, for events and gRPC."""
    task = view.task
    message = tasks_pb2.Task(
        task_id=task.id,
        name=task.name,
        description=task.description,
        status=task.status,
        status_group=task.status_group,
        priority=task.priority,
        author_id=task.author_id or "",
        controller_id=task.controller_id or "",
        executors=[
            tasks_pb2.TaskExecutor(
                employee_id=executor.employee_id,
                status=executor.status,
                planned_minutes=executor.planned_minutes or 0,
                time_spent_minutes=executor.time_spent_minutes,
            )
            for executor in task.executors
        ],
        contact_id=task.contact_id or "",
        phone=task.phone or "",
        project_id=task.project_id or "",
        call_id=task.call_id or "",
        event_id=task.event_id or "",
        owner_employee_id=task.owner_employee_id or "",
        owner_team_id=task.owner_team_id or "",
        depends_on=task.depends_on,
        version=task.version,
        created_at=timestamp_message(task.created_at),
        updated_at=timestamp_message(task.updated_at),
        series_id=task.series_id or "",
        template_id=task.template_id or "",
        overdue=view.overdue,
    )
    for name in ("start_at", "end_at", "done_at"):
        value = getattr(task, name)
        if value is not None:
            getattr(message, name).CopyFrom(timestamp_message(value))
    if task.recurrence:
        rule = task.recurrence
        message.recurrence.CopyFrom(
            tasks_pb2.TaskRecurrence(
                freq=str(rule.get("freq", "")),
                interval=int(rule.get("interval", 1)),
                weekdays=[int(day) for day in rule.get("weekdays") or []],
                until=str(rule.get("until") or ""),
                count=int(rule.get("count") or 0),
                tz=str(rule.get("tz") or "UTC"),
            )
        )
    return message


@dataclass(frozen=True)
class _SortSpec:
    descending: bool
    columns: Callable[[], list[Any]]
    values: Callable[[Task], list[Any]]
    kinds: tuple[str, ...]  # "dt", "int" or "str": how cursor values decode


def _rank() -> ColumnElement[int]:
    return case(PRIORITY_RANK, value=Task.priority, else_=1)


def _dt_or(column: Any, default: datetime) -> ColumnElement[datetime]:
    return func.coalesce(column, literal(default, UTCDateTime()))


SORTS: dict[str, _SortSpec] = {
    "created": _SortSpec(
        False, lambda: [Task.created_at, Task.id], lambda t: [t.created_at, t.id], ("dt", "str")
    ),
    "-created": _SortSpec(
        True, lambda: [Task.created_at, Task.id], lambda t: [t.created_at, t.id], ("dt", "str")
    ),
    "deadline": _SortSpec(
        False,
        lambda: [_dt_or(Task.end_at, FAR_FUTURE), Task.id],
        lambda t: [t.end_at or FAR_FUTURE, t.id],
        ("dt", "str"),
    ),
    "-deadline": _SortSpec(
        True,
        lambda: [_dt_or(Task.end_at, FAR_PAST), Task.id],
        lambda t: [t.end_at or FAR_PAST, t.id],
        ("dt", "str"),
    ),
    "start": _SortSpec(
        False,
        lambda: [_dt_or(Task.start_at, FAR_FUTURE), Task.id],
        lambda t: [t.start_at or FAR_FUTURE, t.id],
        ("dt", "str"),
    ),
    "-start": _SortSpec(
        True,
        lambda: [_dt_or(Task.start_at, FAR_PAST), Task.id],
        lambda t: [t.start_at or FAR_PAST, t.id],
        ("dt", "str"),
    ),
    "priority": _SortSpec(
        True,
        lambda: [_rank(), Task.created_at, Task.id],
        lambda t: [PRIORITY_RANK.get(t.priority, 1), t.created_at, t.id],
        ("int", "dt", "str"),
    ),
    "-priority": _SortSpec(
        False,
        lambda: [_rank(), Task.created_at, Task.id],
        lambda t: [PRIORITY_RANK.get(t.priority, 1), t.created_at, t.id],
        ("int", "dt", "str"),
    ),
}


def _after(
    columns: Sequence[ColumnElement[Any]], values: Sequence[Any], descending: bool
) -> ColumnElement[bool]:
    """Rows after the key ``values`` in the order of ``columns`` (all in one direction)."""
    clause: ColumnElement[bool] | None = None
    for column, value in reversed(list(zip(columns, values, strict=True))):
        beyond = column < value if descending else column > value
        clause = beyond if clause is None else or_(beyond, and_(column == value, clause))
    assert clause is not None
    return clause


def _encode_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _decode_values(kinds: Sequence[str], values: Sequence[Any]) -> list[Any]:
    if len(values) != len(kinds):
        raise InvalidCursor("cursor: not a cursor of this sort order")
    decoded: list[Any] = []
    try:
        for kind, value in zip(kinds, values, strict=True):
            if kind == "dt":
                decoded.append(as_utc(datetime.fromisoformat(str(value))))
            elif kind == "int":
                decoded.append(int(value))
            else:
                decoded.append(str(value))
    except (TypeError, ValueError):
        raise InvalidCursor("cursor: malformed") from None
    return decoded


# --- the service ----------------------------------------------------------------------------------


class TaskService:
    """Tasks, their workflow, executors, dependencies, discussion, files, reminders, templates and views."""

    def __init__(
        self,
        db: Database,
        *,
        audit: AuditLog,
        attachments: AttachmentStore,
        cursor_secret: bytes | str,
        on_outbox: Callable[[], None] | None = None,
        source_lookup: SourceLookup | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.audit = audit
        self.attachments = attachments
        self._secret = cursor_secret.encode() if isinstance(cursor_secret, str) else cursor_secret
        self._on_outbox = on_outbox
        self._source_lookup = source_lookup
        self.clock = clock

    # --- transactions and events -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction; wakes the outbox publisher after a commit that wrote to it."""
        async with self.db.session() as session:
            yield session
            wrote = bool(session.info.pop(OUTBOX_FLAG, False))
        if wrote and self._on_outbox is not None:
            self._on_outbox()

    @staticmethod
    def system_actor(component: str) -> Principal:
        return system_principal(component)

    @staticmethod
    async def write_outbox(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
        """Add rows (``outbox.row``) to the outbox in the caller's transaction; the publisher is woken
        after the commit."""
        if rows:
            await outbox.add(session, rows)
            session.info[OUTBOX_FLAG] = True

    async def publish(
        self,
        session: AsyncSession,
        task: Task,
        kind: str,
        actor: Principal,
        *,
        changed: Iterable[str] = (),
        from_status: str | None = None,
        suffix: str | None = None,
    ) -> None:
        """Write the task's ``crm.task.<kind>`` event to the outbox (in the caller's transaction)."""
        event_id = f"task:{task.id}:v{task.version}:{kind}" + (f":{suffix}" if suffix else "")
        now = self.clock()
        event = tasks_pb2.TaskEvent(
            event_id=event_id,
            occurred_at=timestamp_message(now),
            version=task.version,
            actor=actor.subject,
            changed=sorted(set(changed)),
        )
        if kind == "deleted":
            event.deleted.CopyFrom(tasks_pb2.TaskDeleted(task_id=task.id))
        else:
            message = task_message(TaskView(task, overdue=is_overdue(task, now)))
            if kind == "status_changed":
                event.status_changed.CopyFrom(
                    tasks_pb2.TaskStatusChange(
                        task=message, from_status=from_status or "", to_status=task.status
                    )
                )
            else:
                getattr(event, kind).CopyFrom(message)
        await self.write_outbox(session, [outbox.row(TASK_SUBJECTS[kind], event, event_id)])

    def _touch(self, task: Task) -> None:
        task.version += 1
        task.updated_at = self.clock()

    @staticmethod
    def _check_version(task: Task, expected: int | None) -> None:
        if expected is not None and expected != task.version:
            raise VersionMismatch(task.version)

    async def _load(
        self, session: AsyncSession, actor: Principal, task_id: str, *, lock: bool = True
    ) -> Task:
        statement = select(Task).where(Task.id == task_id).execution_options(populate_existing=True)
        if lock:
            statement = statement.with_for_update()
        task = (await session.scalars(statement)).one_or_none()
        if task is None or not may_see(actor, task):
            raise TaskNotFound(f"task {task_id} not found")
        return task

    async def _views(self, session: AsyncSession, tasks: Sequence[Task]) -> list[TaskView]:
        waiting = await self._waiting_for(session, [task.id for task in tasks])
        now = self.clock()
        return [TaskView(task, waiting.get(task.id, []), is_overdue(task, now)) for task in tasks]

    async def _view(self, session: AsyncSession, task: Task) -> TaskView:
        return (await self._views(session, [task]))[0]

    @staticmethod
    async def _waiting_for(session: AsyncSession, task_ids: Sequence[str]) -> dict[str, list[str]]:
        if not task_ids:
            return {}
        predecessor = aliased(Task)
        rows = await session.execute(
            select(TaskDependency.task_id, TaskDependency.depends_on_id)
            .join(predecessor, predecessor.id == TaskDependency.depends_on_id)
            .where(
                TaskDependency.task_id.in_(list(task_ids)),
                predecessor.status_group.not_in(sorted(FINISHED_GROUPS)),
            )
            .order_by(TaskDependency.created_at, TaskDependency.depends_on_id)
        )
        waiting: dict[str, list[str]] = {}
        for task_id, depends_on_id in rows:
            waiting.setdefault(task_id, []).append(depends_on_id)
        return waiting

    # --- statuses ----------------------------------------------------------------------------------

    @staticmethod
    async def _status_table(session: AsyncSession) -> dict[str, StatusInfo]:
        statuses = {
            code: StatusInfo(code, name, code, builtin=True, active=True)
            for code, name in BUILTIN_STATUS_NAMES.items()
        }
        for row in await session.scalars(select(TaskStatus).order_by(TaskStatus.created_at, TaskStatus.code)):
            statuses[row.code] = StatusInfo(
                row.code, row.name, row.status_group, builtin=False, active=row.active
            )
        return statuses

    async def list_statuses(self) -> list[StatusInfo]:
        async with self.db.session() as session:
            return list((await self._status_table(session)).values())

    @staticmethod
    def _require_admin(actor: Principal) -> None:
        if not actor.is_admin:
            raise TaskForbidden("only an administrator may define task statuses")

    async def create_status(self, actor: Principal, code: str, name: str, group: str) -> StatusInfo:
        """Add a custom status in ``group`` (admins only); 409 when the code is taken."""
        self._require_admin(actor)
        if not STATUS_CODE.fullmatch(code) or code in BUILTIN_STATUS_NAMES:
            raise InvalidTask(
                "code", "lower-case letters, digits and _, starting with a letter, not a built-in"
            )
        if not name.strip():
            raise InvalidTask("name", "a status needs a name")
        if group not in STATUS_GROUPS:
            raise InvalidTask("group", f"one of {', '.join(STATUS_GROUPS)}")
        if group == OVERDUE:
            raise InvalidTask("group", "overdue is set only by the overdue sweep; choose another group")
        async with self.transaction() as session:
            if await session.get(TaskStatus, code) is not None:
                raise TaskConflict(f"a status {code!r} exists already")
            now = self.clock()
            row = TaskStatus(
                code=code, name=name, status_group=group, active=True, created_at=now, updated_at=now
            )
            session.add(row)
            await self.audit.record(session, actor, "task_status", code, "create", {"name": [None, name]})
        return StatusInfo(code, name, group, builtin=False, active=True)

    async def update_status(
        self, actor: Principal, code: str, *, name: str | None = None, active: bool | None = None
    ) -> StatusInfo:
        """Rename or (de)activate a custom status; an inactive one is no longer offered as a next status."""
        self._require_admin(actor)
        async with self.transaction() as session:
            if code in BUILTIN_STATUS_NAMES:
                raise TaskConflict(f"{code!r} is a built-in status and cannot be changed")
            row = await session.get(TaskStatus, code)
            if row is None:
                raise TaskNotFound(f"status {code!r} not found")
            before = {"name": row.name, "active": row.active}
            if name is not None:
                row.name = name
            if active is not None:
                row.active = active
            row.updated_at = self.clock()
            changes = diff(before, {"name": row.name, "active": row.active})
            await self.audit.record(session, actor, "task_status", code, "update", changes)
            return StatusInfo(row.code, row.name, row.status_group, builtin=False, active=row.active)

    @staticmethod
    def allowed_next(current: str, current_group: str, statuses: Mapping[str, StatusInfo]) -> list[str]:
        """The statuses a task in ``current`` may be moved to by a user."""
        groups = TRANSITIONS.get(current_group, frozenset())
        return [
            info.code
            for info in statuses.values()
            if info.active
            and info.code != current
            and (info.group in groups or (info.group == current_group and current_group not in FIXED_GROUPS))
        ]

    # --- create ------------------------------------------------------------------------------------

    async def create(self, actor: Principal, draft: TaskDraft, *, request_id: str | None = None) -> TaskView:
        """A new task in status "set"; the same ``request_id`` again returns the task made the first time."""
        if request_id is not None:
            existing = await self._by_request(request_id)
            if existing is not None:
                return existing
        try:
            async with self.transaction() as session:
                task = await self.create_in(session, actor, draft, request_id=request_id)
                return await self._view(session, task)
        except IntegrityError:
            if request_id is None:
                raise
            existing = await self._by_request(request_id)
            if existing is None:
                raise
            return existing

    async def _by_request(self, request_id: str) -> TaskView | None:
        async with self.db.session() as session:
            task = (await session.scalars(select(Task).where(Task.request_id == request_id))).one_or_none()
            return None if task is None else await self._view(session, task)

    async def create_from(
        self, actor: Principal, kind: Literal["event", "call"], source_id: str, draft: TaskDraft
    ) -> TaskView:
        """A task from a journal event or a call: it inherits the contact, phone and project (the
        source's, when a look-up is configured; the request's values win), and a call is attached."""
        source = TaskSource()
        if self._source_lookup is not None:
            found = await self._source_lookup(kind, source_id)
            if found is None:
                raise TaskNotFound(f"{kind} {source_id} not found")
            source = found
        given = draft.model_fields_set
        inherited: dict[str, Any] = {
            name: value
            for name, value in (
                ("contact_id", source.contact_id),
                ("phone", source.phone),
                ("project_id", source.project_id),
                ("description", source.description),
            )
            if value and name not in given
        }
        if "name" not in given and draft.template_id is None:
            subject = source.phone or draft.phone or source_id
            inherited["name"] = source.name or (
                f"Follow up the call with {subject}" if kind == "call" else f"Follow up event {source_id}"
            )
        inherited[f"{kind}_id"] = source_id
        if source.employee_id and "owner_employee_id" not in given and actor.employee_id is None:
            inherited["owner_employee_id"] = source.employee_id
        if source.team_id and "owner_team_id" not in given and actor.employee_id is None:
            inherited["owner_team_id"] = source.team_id
        complete = draft.model_copy(update=inherited)
        async with self.transaction() as session:
            task = await self.create_in(session, actor, complete)
            if kind == "call":
                await self.attach_call_in(
                    session, actor, task, CallInfo(call_id=source_id), "created_from_call", announce=False
                )
                if await session.get(TaskCallRuleRecord, source_id) is None:
                    session.add(
                        TaskCallRuleRecord(
                            call_id=source_id,
                            outcome="created_by_user",
                            task_id=task.id,
                            applied_at=self.clock(),
                        )
                    )
            return await self._view(session, task)

    async def _template(self, session: AsyncSession, template_id: str) -> TemplateFields:
        row = await session.get(TaskTemplate, template_id)
        if row is None:
            raise InvalidTask("template_id", f"no template {template_id}")
        return TemplateFields.model_validate(row.fields)

    async def create_in(
        self,
        session: AsyncSession,
        actor: Principal,
        draft: TaskDraft,
        *,
        request_id: str | None = None,
        series: tuple[str, int] | None = None,
        recurrence_json: dict[str, Any] | None = None,
        template_of_record: str | None = None,
    ) -> Task:
        """Insert a task (and its executors, reminders, dependencies) in the caller's transaction."""
        now = self.clock()
        given = {name for name in draft.model_fields_set if getattr(draft, name) is not None}
        template = await self._template(session, draft.template_id) if draft.template_id else None
        values = draft.model_dump(
            exclude={"executors", "recurrence", "reminders", "depends_on", "template_id"}
        )
        executors = draft.executors if "executors" in given else None
        recurrence = draft.recurrence
        reminders = list(draft.reminders or [])
        if template is not None:
            for name in ("name", "description", "priority", "controller_id", "project_id", "owner_team_id"):
                if name not in given and getattr(template, name) is not None:
                    values[name] = getattr(template, name)
            if executors is None:
                executors = template.executors
            if recurrence is None and recurrence_json is None:
                recurrence = template.recurrence
            if not reminders:
                reminders = list(template.reminders)
            if template.duration_minutes is not None and values["end_at"] is None:
                values["start_at"] = values["start_at"] or now
                values["end_at"] = values["start_at"] + timedelta(minutes=template.duration_minutes)
        if not values.get("name"):
            raise InvalidTask("name", "a task needs a name (or a template that gives one)")
        start_at, end_at = values["start_at"], values["end_at"]
        if start_at is not None and end_at is not None and end_at < start_at:
            raise InvalidTask("end_at", "the deadline is before the start")
        if recurrence is not None and recurrence_json is None:
            if start_at is None and end_at is None:
                raise InvalidTask("recurrence", "a recurring task needs a start or a deadline")
            recurrence_json = _recurrence_json(recurrence, start_at or end_at)
        executor_rows = self._executor_rows(executors or [], now)
        task_id = _new_id()
        task = Task(
            id=task_id,
            name=values["name"],
            description=values["description"] or "",
            status=SET,
            status_group=SET,
            priority=values["priority"] or "normal",
            start_at=start_at,
            end_at=end_at,
            author_id=actor.employee_id,
            author_subject=actor.subject,
            controller_id=values["controller_id"],
            contact_id=values["contact_id"],
            phone=values["phone"] or None,
            project_id=values["project_id"],
            call_id=values["call_id"],
            event_id=values["event_id"],
            owner_employee_id=values["owner_employee_id"] or actor.employee_id,
            owner_team_id=values["owner_team_id"] or (sorted(actor.team_ids)[0] if actor.team_ids else None),
            template_id=draft.template_id or template_of_record,
            recurrence=recurrence_json,
            series_id=series[0] if series else (task_id if recurrence_json else None),
            series_index=series[1] if series else 0,
            request_id=request_id,
            created_at=now,
            updated_at=now,
            version=1,
            executors=executor_rows,
            dependencies=[],
        )
        session.add(task)
        await session.flush()
        for depends_on_id in dict.fromkeys(draft.depends_on or []):
            predecessor = await session.get(Task, depends_on_id)
            if predecessor is None or not may_see(actor, predecessor):
                raise InvalidTask("depends_on", f"no task {depends_on_id}")
            task.dependencies.append(
                TaskDependency(
                    task_id=task.id, depends_on_id=depends_on_id, created_at=now, created_by=actor.subject
                )
            )
        for reminder in reminders:
            await self._add_reminders_in(session, actor, task, reminder, check_rights=False)
        await session.flush()
        await self.audit.record(session, actor, AUDIT_KIND, task.id, "create", diff({}, snapshot(task)))
        await self.publish(session, task, "created", actor)
        return task

    @staticmethod
    def _executor_rows(executors: Sequence[ExecutorIn], now: datetime) -> list[TaskExecutor]:
        rows: dict[str, TaskExecutor] = {}
        for executor in executors:
            if executor.employee_id in rows:
                raise InvalidTask("executors", f"{executor.employee_id} is listed twice")
            rows[executor.employee_id] = TaskExecutor(
                employee_id=executor.employee_id,
                position=len(rows),
                status=SET,
                planned_minutes=executor.planned_minutes,
                time_spent_minutes=0,
                updated_at=now,
            )
        return list(rows.values())

    # --- read --------------------------------------------------------------------------------------

    async def get(self, actor: Principal, task_id: str) -> TaskView:
        async with self.db.session() as session:
            task = await self._load(session, actor, task_id, lock=False)
            return await self._view(session, task)

    async def get_any(self, task_id: str) -> TaskView:
        """A task whoever owns it (for other services over gRPC)."""
        return await self.get(system_principal("grpc"), task_id)

    async def open_for_contact(self, contact_id: str, limit: int = 20) -> tuple[list[TaskView], int]:
        """A contact's unfinished tasks, nearest deadline first, and how many there are."""
        async with self.db.session() as session:
            where = (Task.contact_id == contact_id, Task.status_group.in_(sorted(OPEN_GROUPS)))
            total = int(await session.scalar(select(func.count()).select_from(Task).where(*where)) or 0)
            tasks = (
                await session.scalars(
                    select(Task)
                    .where(*where)
                    .order_by(_dt_or(Task.end_at, FAR_FUTURE), Task.created_at.desc(), Task.id)
                    .limit(limit)
                )
            ).all()
            return await self._views(session, tasks), total

    async def history(self, actor: Principal, task_id: str) -> Sequence[AuditEntry]:
        async with self.db.session() as session:
            await self._load(session, actor, task_id, lock=False)
            return await self.audit.history(session, AUDIT_KIND, task_id)

    # --- update / delete ---------------------------------------------------------------------------

    async def update(
        self, actor: Principal, task_id: str, patch: TaskPatch, *, expected_version: int | None = None
    ) -> TaskView:
        """Change the fields of ``patch``; moving the deadline of an overdue task to the future brings it
        back to the status it had, and relative reminders follow the deadline."""
        changes = patch.changes()
        if "name" in changes and changes["name"] is None:
            raise InvalidTask("name", "a task needs a name")
        async with self.transaction() as session:
            task = await self._load(session, actor, task_id)
            self._check_version(task, expected_version)
            before = snapshot(task)
            now = self.clock()
            recurrence = changes.pop("recurrence", task.recurrence)
            for name, value in changes.items():
                if name == "description":
                    value = value or ""
                elif isinstance(value, str) and not value:
                    value = None
                setattr(task, name, value)
            if task.start_at is not None and task.end_at is not None and task.end_at < task.start_at:
                raise InvalidTask("end_at", "the deadline is before the start")
            if isinstance(recurrence, RecurrenceIn) or "recurrence" in patch.model_fields_set:
                if isinstance(recurrence, RecurrenceIn):
                    if task.start_at is None and task.end_at is None:
                        raise InvalidTask("recurrence", "a recurring task needs a start or a deadline")
                    task.recurrence = _recurrence_json(recurrence, task.start_at or task.end_at)
                    task.series_id = task.series_id or task.id
                else:
                    task.recurrence = None
            after = snapshot(task)
            changed = diff(before, after)
            if not changed:
                return await self._view(session, task)
            from_status = task.status
            if "end_at" in changed:
                await self._deadline_moved(session, task, now)
            self._touch(task)
            changed = diff(before, snapshot(task))
            await self.audit.record(session, actor, AUDIT_KIND, task.id, "update", changed)
            await self.publish(session, task, "updated", actor, changed=changed)
            if task.status != from_status:
                await self.publish(session, task, "status_changed", actor, from_status=from_status)
            return await self._view(session, task)

    async def _deadline_moved(self, session: AsyncSession, task: Task, now: datetime) -> None:
        if task.status_group == OVERDUE and (task.end_at is None or task.end_at > now):
            statuses = await self._status_table(session)
            previous = statuses.get(task.status_before_overdue or SET) or statuses[SET]
            task.status, task.status_group = previous.code, previous.group
            task.status_before_overdue = None
        if task.status_group != OVERDUE:
            task.overdue_marked_at = None
        reminders = await session.scalars(
            select(TaskReminder).where(
                TaskReminder.task_id == task.id, TaskReminder.offset_minutes.is_not(None)
            )
        )
        for reminder in reminders:
            if task.end_at is None:
                await session.delete(reminder)
                continue
            remind_at = task.end_at - timedelta(minutes=reminder.offset_minutes or 0)
            if remind_at != reminder.remind_at:
                reminder.remind_at = remind_at
                reminder.emailed_at = None
                reminder.dismissed_at = None

    async def delete(self, actor: Principal, task_id: str, *, expected_version: int | None = None) -> None:
        """Delete a task with its executors, discussion, reminders, links and files."""
        async with self.transaction() as session:
            task = await self._load(session, actor, task_id)
            self._check_version(task, expected_version)
            for attachment in await self.attachments.list(session, ATTACHMENT_KIND, task.id):
                await self.attachments.delete(session, attachment.id)
            await self.audit.record(session, actor, AUDIT_KIND, task.id, "delete", diff(snapshot(task), {}))
            task.version += 1
            await self.publish(session, task, "deleted", actor)
            await session.execute(delete(TaskDependency).where(TaskDependency.depends_on_id == task.id))
            await session.delete(task)

    # --- status ------------------------------------------------------------------------------------

    async def change_status(
        self,
        actor: Principal,
        task_id: str,
        status: str,
        *,
        executors_too: bool = False,
        expected_version: int | None = None,
    ) -> TaskView:
        async with self.transaction() as session:
            task = await self._load(session, actor, task_id)
            self._check_version(task, expected_version)
            await self.change_status_in(session, actor, task, status, executors_too=executors_too)
            return await self._view(session, task)

    async def change_status_in(
        self, session: AsyncSession, actor: Principal, task: Task, status: str, *, executors_too: bool = False
    ) -> bool:
        """Move ``task`` to ``status`` under the workflow's rules; False when it is there already."""
        if not actor.has(TASK_STATUS_RIGHT):
            raise TaskForbidden(f"the right {TASK_STATUS_RIGHT!r} is needed to change a task's status")
        statuses = await self._status_table(session)
        target = statuses.get(status)
        if target is None:
            raise InvalidTask("status", f"unknown status {status!r}; known: {', '.join(statuses)}")
        if status == task.status:
            return False
        allowed = self.allowed_next(task.status, task.status_group, statuses)
        if status not in allowed:
            raise TransitionForbidden(task.status, status, allowed)
        if target.group == ACCEPTED:
            acceptor, who = acceptor_of(task)
            if actor.employee_id is None or actor.employee_id != acceptor:
                raise TaskForbidden(f"only {who}, {acceptor or 'nobody'}, may accept the task")
        if target.group in BLOCKED_BY_DEPENDENCIES:
            waiting = (await self._waiting_for(session, [task.id])).get(task.id, [])
            if waiting:
                raise TaskConflict(
                    f"the task waits for unfinished tasks: {', '.join(waiting)}", waiting_for=waiting
                )
        executor_status = EXECUTOR_STATUS_FOR_GROUP[target.group]
        if target.group == DONE and not executors_too:
            unfinished = [executor.employee_id for executor in task.executors if executor.status != DONE]
            if unfinished:
                raise TaskConflict(
                    f"executors have not finished: {', '.join(unfinished)} (or set their statuses too)",
                    unfinished_executors=unfinished,
                )
        before = snapshot(task)
        now = self.clock()
        if executors_too:
            for executor in task.executors:
                if executor.status != executor_status:
                    executor.status = executor_status
                    executor.updated_at = now
        from_status = task.status
        task.status, task.status_group = target.code, target.group
        task.status_before_overdue = None
        if target.group == DONE:
            task.done_at = now
        elif target.group == ACCEPTED:
            task.accepted_at = now
        else:
            task.done_at = None
        self._touch(task)
        await self.audit.record(session, actor, AUDIT_KIND, task.id, "status", diff(before, snapshot(task)))
        await self.publish(session, task, "status_changed", actor, from_status=from_status)
        if target.group == DONE and task.recurrence and task.next_occurrence_id is None:
            await self._next_occurrence(session, actor, task)
        return True

    async def mark_overdue_in(self, session: AsyncSession, task: Task, actor: Principal) -> None:
        """The overdue sweep's change: the task's deadline passed while it was set or in progress."""
        before = snapshot(task)
        from_status = task.status
        task.status_before_overdue = task.status
        task.status, task.status_group = OVERDUE, OVERDUE
        task.overdue_marked_at = self.clock()
        self._touch(task)
        await self.audit.record(session, actor, AUDIT_KIND, task.id, "status", diff(before, snapshot(task)))
        await self.publish(session, task, "status_changed", actor, from_status=from_status)

    async def _next_occurrence(self, session: AsyncSession, actor: Principal, task: Task) -> Task | None:
        assert task.recurrence is not None
        rule = Recurrence.from_json(task.recurrence)
        reference = task.start_at or task.end_at
        if reference is None:
            return None
        following = next_occurrence(rule, reference, task.series_index)
        if following is None:
            return None
        shift = following - reference
        draft = TaskDraft(
            name=task.name,
            description=task.description,
            start_at=task.start_at + shift if task.start_at else None,
            end_at=task.end_at + shift if task.end_at else None,
            priority=cast(Priority, task.priority),
            controller_id=task.controller_id,
            executors=[
                ExecutorIn(employee_id=executor.employee_id, planned_minutes=executor.planned_minutes)
                for executor in task.executors
            ],
            contact_id=task.contact_id,
            phone=task.phone,
            project_id=task.project_id,
            owner_employee_id=task.owner_employee_id,
            owner_team_id=task.owner_team_id,
        )
        author = Principal(
            subject=task.author_subject,
            employee_id=task.author_id,
            rights=ALL_RIGHTS,
            visibility=Visibility.ALL,
        )
        following_task = await self.create_in(
            session,
            author,
            draft,
            series=(task.series_id or task.id, task.series_index + 1),
            recurrence_json=dict(task.recurrence),
            template_of_record=task.template_id,
        )
        reminders = await session.scalars(select(TaskReminder).where(TaskReminder.task_id == task.id))
        for reminder in reminders:
            if reminder.offset_minutes is not None and following_task.end_at is not None:
                remind_at = following_task.end_at - timedelta(minutes=reminder.offset_minutes)
            else:
                remind_at = reminder.remind_at + shift
            session.add(
                TaskReminder(
                    id=_new_id(),
                    task_id=following_task.id,
                    employee_id=reminder.employee_id,
                    remind_at=remind_at,
                    offset_minutes=reminder.offset_minutes,
                    email=reminder.email,
                    created_at=self.clock(),
                    created_by=reminder.created_by,
                )
            )
        task.next_occurrence_id = following_task.id
        await session.flush()
        return following_task

    # --- executors ---------------------------------------------------------------------------------

    async def set_executors(
        self,
        actor: Principal,
        task_id: str,
        executors: Sequence[ExecutorIn],
        *,
        replace: bool = True,
        expected_version: int | None = None,
    ) -> TaskView:
        """Make ``executors`` the task's executors (``replace``) or add them to those it has; an executor
        who stays keeps their status and time."""
        async with self.transaction() as session:
            task = await self._load(session, actor, task_id)
            self._check_version(task, expected_version)
            await self.set_executors_in(session, actor, task, executors, replace=replace)
            return await self._view(session, task)

    async def set_executors_in(
        self,
        session: AsyncSession,
        actor: Principal,
        task: Task,
        executors: Sequence[ExecutorIn],
        *,
        replace: bool,
    ) -> bool:
        now = self.clock()
        wanted = self._executor_rows(executors, now)  # refuses duplicates
        before = snapshot(task)
        current = {executor.employee_id: executor for executor in task.executors}
        keep: list[TaskExecutor] = [] if replace else list(task.executors)
        for row in wanted:
            existing = current.get(row.employee_id)
            if existing is not None:
                if row.planned_minutes is not None and existing.planned_minutes != row.planned_minutes:
                    existing.planned_minutes = row.planned_minutes
                    existing.updated_at = now
                if replace:
                    keep.append(existing)
            else:
                keep.append(row)
        for position, executor in enumerate(keep):
            executor.position = position
        task.executors = keep
        after = snapshot(task)
        changed = diff(before, after)
        if not changed:
            return False
        self._touch(task)
        await self.audit.record(session, actor, AUDIT_KIND, task.id, "executors", changed)
        await self.publish(session, task, "updated", actor, changed=["executors"])
        return True

    async def update_executor(
        self,
        actor: Principal,
        task_id: str,
        employee_id: str,
        *,
        status: str | None = None,
        time_spent_minutes: int | None = None,
        add_minutes: int | None = None,
        planned_minutes: int | None = None,
        may_modify: bool = False,
        expected_version: int | None = None,
    ) -> TaskView:
        """An executor's own status and time: changed by that executor, or by a user who may modify tasks."""
        if status is not None and status not in EXECUTOR_STATUSES:
            raise InvalidTask("status", f"one of {', '.join(EXECUTOR_STATUSES)}")
        async with self.transaction() as session:
            task = await self._load(session, actor, task_id)
            self._check_version(task, expected_version)
            executor = next((row for row in task.executors if row.employee_id == employee_id), None)
            if executor is None:
                raise TaskNotFound(f"{employee_id} is not an executor of task {task_id}")
            if not may_modify and actor.employee_id != employee_id:
                raise TaskForbidden(
                    "only the executor, or a user with the right 'task.modify', may change this"
                )
            before = snapshot(task)
            if status is not None:
                executor.status = status
            if time_spent_minutes is not None:
                executor.time_spent_minutes = time_spent_minutes
            if add_minutes:
                executor.time_spent_minutes = max(0, executor.time_spent_minutes + add_minutes)
            if planned_minutes is not None:
                executor.planned_minutes = planned_minutes
            changed = diff(before, snapshot(task))
            if changed:
                executor.updated_at = self.clock()
                self._touch(task)
                await self.audit.record(session, actor, AUDIT_KIND, task.id, "executors", changed)
                await self.publish(session, task, "updated", actor, changed=["executors"])
            return await self._view(session, task)

    # --- dependencies ------------------------------------------------------------------------------

    async def add_dependency(
        self, actor: Principal, task_id: str, depends_on_id: str, *, expected_version: int | None = None
    ) -> TaskView:
        """``task_id`` waits for ``depends_on_id``; refused (422 naming the cycle) when that one waits,
        directly or not, for ``task_id``."""
        async with self.transaction() as session:
            task = await self._load(session, actor, task_id)
            self._check_version(task, expected_version)
            predecessor = await session.get(Task, depends_on_id)
            if predecessor is None or not may_see(actor, predecessor):
                raise InvalidTask("depends_on", f"no task {depends_on_id}")
            if depends_on_id in task.depends_on:
                return await self._view(session, task)
            cycle = await self._path(session, depends_on_id, task_id)
            if cycle is not None:
                raise DependencyCycle([task_id, *cycle])
            before = snapshot(task)
            task.dependencies.append(
                TaskDependency(
                    task_id=task.id,
                    depends_on_id=depends_on_id,
                    created_at=self.clock(),
                    created_by=actor.subject,
                )
            )
            self._touch(task)
            await self.audit.record(
                session, actor, AUDIT_KIND, task.id, "dependency", diff(before, snapshot(task))
            )
            await self.publish(session, task, "updated", actor, changed=["depends_on"])
            return await self._view(session, task)

    @staticmethod
    async def _path(session: AsyncSession, start: str, goal: str) -> list[str] | None:
        """The chain of waits from ``start`` to ``goal`` (both included), or None when there is none."""
        parents: dict[str, str | None] = {start: None}
        frontier = [start]
        while frontier:
            if goal in parents:
                break
            rows = await session.execute(
                select(TaskDependency.task_id, TaskDependency.depends_on_id).where(
                    TaskDependency.task_id.in_(frontier)
                )
            )
            frontier = []
            for waiting, predecessor in rows:
                if predecessor not in parents:
                    parents[predecessor] = waiting
                    frontier.append(predecessor)
        if goal not in parents:
            return None
        path: list[str] = []
        node: str | None = goal
        while node is not None:
            path.append(node)
            node = parents[node]
        return list(reversed(path))

    async def remove_dependency(
        self, actor: Principal, task_id: str, depends_on_id: str, *, expected_version: int | None = None
    ) -> TaskView:
        async with self.transaction() as session:
            task = await self._load(session, actor, task_id)
            self._check_version(task, expected_version)
            dependency = next((d for d in task.dependencies if d.depends_on_id == depends_on_id), None)
            if dependency is None:
                raise TaskNotFound(f"task {task_id} does not wait for {depends_on_id}")
            before = snapshot(task)
            task.dependencies.remove(dependency)
            self._touch(task)
            await self.audit.record(
                session, actor, AUDIT_KIND, task.id, "dependency", diff(before, snapshot(task))
            )
            await self.publish(session, task, "updated", actor, changed=["depends_on"])
            return await self._view(session, task)

    # --- discussion --------------------------------------------------------------------------------

    async def comments(self, actor: Principal, task_id: str) -> Sequence[TaskComment]:
        async with self.db.session() as session:
            await self._load(session, actor, task_id, lock=False)
            rows = await session.scalars(
                select(TaskComment)
                .where(TaskComment.task_id == task_id)
                .order_by(TaskComment.created_at, TaskComment.id)
            )
            return rows.all()

    async def add_comment(self, actor: Principal, task_id: str, body: str) -> TaskComment:
        """A message in the task's discussion (anyone who sees the task may write)."""
        text = body.strip()
        if not text:
            raise InvalidTask("body", "a comment needs some text")
        async with self.transaction() as session:
            task = await self._load(session, actor, task_id, lock=False)
            comment = TaskComment(
                id=_new_id(),
                task_id=task.id,
                author_subject=actor.subject,
                author_employee_id=actor.employee_id,
                author_name=actor.name[:200],
                body=text,
                created_at=self.clock(),
            )
            session.add(comment)
            await self.audit.record(
                session, actor, AUDIT_KIND, task.id, "comment", {"comment": [None, comment.id]}
            )
            await self.publish(
                session, task, "updated", actor, changed=["comments"], suffix=f"comment:{comment.id}"
            )
            return comment

    async def delete_comment(self, actor: Principal, task_id: str, comment_id: str) -> None:
        """Its author or an administrator may delete a comment."""
        async with self.transaction() as session:
            task = await self._load(session, actor, task_id, lock=False)
            comment = await session.get(TaskComment, comment_id)
            if comment is None or comment.task_id != task.id:
                raise TaskNotFound(f"comment {comment_id} not found")
            if comment.author_subject != actor.subject and not actor.is_admin:
                raise TaskForbidden("only its author or an administrator may delete a comment")
            await session.delete(comment)
            await self.audit.record(
                session, actor, AUDIT_KIND, task.id, "comment", {"comment": [comment.id, None]}
            )
            await self.publish(
                session, task, "updated", actor, changed=["comments"], suffix=f"comment:{comment.id}:deleted"
            )

    # --- attachments -------------------------------------------------------------------------------

    async def attachments_of(self, actor: Principal, task_id: str) -> Sequence[Attachment]:
        async with self.db.session() as session:
            await self._load(session, actor, task_id, lock=False)
            return await self.attachments.list(session, ATTACHMENT_KIND, task_id)

    async def add_attachment(
        self,
        actor: Principal,
        task_id: str,
        *,
        filename: str,
        content_type: str | None,
        chunks: AsyncIterator[bytes],
    ) -> Attachment:
        """Store a file on the task (size and type checked by the store: 413, 415)."""
        async with self.transaction() as session:
            task = await self._load(session, actor, task_id, lock=False)
            attachment = await self.attachments.save(
                session,
                owner_kind=ATTACHMENT_KIND,
                owner_id=task.id,
                filename=filename,
                declared_type=content_type,
                chunks=chunks,
                created_by=actor.subject,
            )
            await self.audit.record(
                session, actor, AUDIT_KIND, task.id, "attachment", {"attachment": [None, attachment.filename]}
            )
            await self.publish(
                session, task, "updated", actor, changed=["attachments"], suffix=f"attachment:{attachment.id}"
            )
            return attachment

    async def open_attachment(self, actor: Principal, task_id: str, attachment_id: str) -> StoredFile:
        async with self.db.session() as session:
            await self._load(session, actor, task_id, lock=False)
            stored = await self.attachments.open(session, attachment_id)
            if stored.attachment.owner_kind != ATTACHMENT_KIND or stored.attachment.owner_id != task_id:
                raise TaskNotFound(f"attachment {attachment_id} not found")
            return stored

    async def delete_attachment(self, actor: Principal, task_id: str, attachment_id: str) -> None:
        async with self.transaction() as session:
            task = await self._load(session, actor, task_id, lock=False)
            attachment = await session.get(Attachment, attachment_id)
            if (
                attachment is None
                or attachment.owner_kind != ATTACHMENT_KIND
                or attachment.owner_id != task_id
            ):
                raise TaskNotFound(f"attachment {attachment_id} not found")
            await self.attachments.delete(session, attachment_id)
            await self.audit.record(
                session, actor, AUDIT_KIND, task.id, "attachment", {"attachment": [attachment.filename, None]}
            )
            await self.publish(
                session,
                task,
                "updated",
                actor,
                changed=["attachments"],
                suffix=f"attachment:{attachment.id}:deleted",
            )

    # --- reminders ---------------------------------------------------------------------------------

    async def add_reminders(self, actor: Principal, task_id: str, reminder: ReminderIn) -> list[TaskReminder]:
        """Reminders of the task, one per employee reminded (by default its executors and controller)."""
        async with self.transaction() as session:
            task = await self._load(session, actor, task_id, lock=False)
            rows = await self._add_reminders_in(session, actor, task, reminder)
            await self.audit.record(
                session,
                actor,
                AUDIT_KIND,
                task.id,
                "reminder",
                {"reminders": [None, [f"{row.employee_id}@{row.remind_at.isoformat()}" for row in rows]]},
            )
            return rows

    async def _add_reminders_in(
        self,
        session: AsyncSession,
        actor: Principal,
        task: Task,
        reminder: ReminderIn,
        *,
        check_rights: bool = True,
    ) -> list[TaskReminder]:
        if reminder.before_end_minutes is not None:
            if task.end_at is None:
                raise InvalidTask("before_end_minutes", "the task has no deadline to count from")
            remind_at = task.end_at - timedelta(minutes=reminder.before_end_minutes)
        else:
            assert reminder.remind_at is not None
            remind_at = reminder.remind_at
        employees = list(dict.fromkeys(reminder.employee_ids or []))
        if not employees:
            employees = [executor.employee_id for executor in task.executors]
            if task.controller_id:
                employees.append(task.controller_id)
            employees = (
                list(dict.fromkeys(employees)) or [e for e in (task.author_id, actor.employee_id) if e][:1]
            )
        if not employees:
            raise InvalidTask(
                "employee_ids", "nobody to remind: the task has no executors, controller or author"
            )
        others = [employee for employee in employees if employee != actor.employee_id]
        if check_rights and others and not actor.has("task.modify"):
            raise TaskForbidden("the right 'task.modify' is needed to remind other employees")
        now = self.clock()
        rows = [
            TaskReminder(
                id=_new_id(),
                task_id=task.id,
                employee_id=employee,
                remind_at=remind_at,
                offset_minutes=reminder.before_end_minutes,
                email=reminder.email,
                created_at=now,
                created_by=actor.subject,
            )
            for employee in employees
        ]
        session.add_all(rows)
        await session.flush()
        return rows

    async def reminders_of(self, actor: Principal, task_id: str) -> Sequence[TaskReminder]:
        async with self.db.session() as session:
            await self._load(session, actor, task_id, lock=False)
            rows = await session.scalars(
                select(TaskReminder)
                .where(TaskReminder.task_id == task_id)
                .order_by(TaskReminder.remind_at, TaskReminder.employee_id)
            )
            return rows.all()

    async def delete_reminder(self, actor: Principal, task_id: str, reminder_id: str) -> None:
        async with self.transaction() as session:
            task = await self._load(session, actor, task_id, lock=False)
            reminder = await session.get(TaskReminder, reminder_id)
            if reminder is None or reminder.task_id != task.id:
                raise TaskNotFound(f"reminder {reminder_id} not found")
            mine = actor.employee_id == reminder.employee_id or actor.subject == reminder.created_by
            if not mine and not actor.has("task.modify"):
                raise TaskForbidden("the right 'task.modify' is needed to remove another employee's reminder")
            await session.delete(reminder)
            await self.audit.record(
                session, actor, AUDIT_KIND, task.id, "reminder", {"reminders": [reminder.employee_id, None]}
            )

    async def due_reminders(self, actor: Principal, *, limit: int = 200) -> list[DueReminder]:
        """The user's reminders that are due, not dismissed, of unfinished tasks; oldest first."""
        if actor.employee_id is None:
            return []
        async with self.db.session() as session:
            rows = await session.execute(
                select(TaskReminder, Task)
                .join(Task, Task.id == TaskReminder.task_id)
                .where(
                    TaskReminder.employee_id == actor.employee_id,
                    TaskReminder.remind_at <= self.clock(),
                    TaskReminder.dismissed_at.is_(None),
                    Task.status_group.in_(sorted(OPEN_GROUPS)),
                )
                .order_by(TaskReminder.remind_at, TaskReminder.id)
                .limit(limit)
            )
            return [DueReminder(reminder, task) for reminder, task in rows.all()]

    async def _own_reminder(self, session: AsyncSession, actor: Principal, reminder_id: str) -> TaskReminder:
        reminder = await session.get(TaskReminder, reminder_id, with_for_update=True)
        if reminder is None or reminder.employee_id != actor.employee_id:
            raise TaskNotFound(f"reminder {reminder_id} not found")
        return reminder

    async def dismiss_reminder(self, actor: Principal, reminder_id: str) -> TaskReminder:
        async with self.transaction() as session:
            reminder = await self._own_reminder(session, actor, reminder_id)
            reminder.dismissed_at = reminder.dismissed_at or self.clock()
            return reminder

    async def snooze_reminder(self, actor: Principal, reminder_id: str, until: datetime) -> TaskReminder:
        """Remind again at ``until`` (by e-mail again too when the reminder has it)."""
        if until <= self.clock():
            raise InvalidTask("remind_at", "give a time in the future")
        async with self.transaction() as session:
            reminder = await self._own_reminder(session, actor, reminder_id)
            reminder.remind_at = until
            reminder.offset_minutes = None
            reminder.dismissed_at = None
            reminder.emailed_at = None
            return reminder

    # --- templates ---------------------------------------------------------------------------------

    async def create_template(self, actor: Principal, name: str, fields: TemplateFields) -> TaskTemplate:
        async with self.transaction() as session:
            now = self.clock()
            row = TaskTemplate(
                id=_new_id(),
                name=name,
                fields=fields.model_dump(mode="json", exclude_none=True),
                created_by=actor.subject,
                created_at=now,
                updated_at=now,
                version=1,
            )
            session.add(row)
            await self.audit.record(session, actor, "task_template", row.id, "create", {"name": [None, name]})
            return row

    async def template_from_task(self, actor: Principal, task_id: str, name: str) -> TaskTemplate:
        """Save a task's fields and executors as a template (its reminders before the deadline too)."""
        async with self.db.session() as session:
            task = await self._load(session, actor, task_id, lock=False)
            reminders = (
                await session.scalars(
                    select(TaskReminder).where(
                        TaskReminder.task_id == task.id, TaskReminder.offset_minutes.is_not(None)
                    )
                )
            ).all()
            duration = None
            if task.start_at is not None and task.end_at is not None:
                duration = int((task.end_at - task.start_at).total_seconds() // 60)
            offsets: dict[tuple[int, bool], None] = {
                (r.offset_minutes or 0, r.email): None for r in reminders
            }
            fields = TemplateFields(
                name=task.name,
                description=task.description or None,
                priority=cast(Priority, task.priority),
                controller_id=task.controller_id,
                executors=[
                    ExecutorIn(employee_id=e.employee_id, planned_minutes=e.planned_minutes)
                    for e in task.executors
                ],
                project_id=task.project_id,
                owner_team_id=task.owner_team_id,
                duration_minutes=duration,
                recurrence=RecurrenceIn.model_validate(
                    {k: v for k, v in task.recurrence.items() if k != "anchor"}
                )
                if task.recurrence
                else None,
                reminders=[ReminderIn(before_end_minutes=offset, email=email) for offset, email in offsets],
            )
        return await self.create_template(actor, name, fields)

    async def templates(self) -> Sequence[TaskTemplate]:
        async with self.db.session() as session:
            rows = await session.scalars(select(TaskTemplate).order_by(TaskTemplate.name, TaskTemplate.id))
            return rows.all()

    async def template(self, template_id: str) -> TaskTemplate:
        async with self.db.session() as session:
            row = await session.get(TaskTemplate, template_id)
            if row is None:
                raise TaskNotFound(f"template {template_id} not found")
            return row

    async def update_template(
        self,
        actor: Principal,
        template_id: str,
        *,
        name: str | None,
        fields: TemplateFields | None,
        expected_version: int | None = None,
    ) -> TaskTemplate:
        async with self.transaction() as session:
            row = await session.get(TaskTemplate, template_id, with_for_update=True)
            if row is None:
                raise TaskNotFound(f"template {template_id} not found")
            if expected_version is not None and expected_version != row.version:
                raise VersionMismatch(row.version)
            before = {"name": row.name, "fields": row.fields}
            if name is not None:
                row.name = name
            if fields is not None:
                row.fields = fields.model_dump(mode="json", exclude_none=True)
            changes = diff(before, {"name": row.name, "fields": row.fields})
            if changes:
                row.version += 1
                row.updated_at = self.clock()
                await self.audit.record(session, actor, "task_template", row.id, "update", changes)
            return row

    async def delete_template(self, actor: Principal, template_id: str) -> None:
        async with self.transaction() as session:
            row = await session.get(TaskTemplate, template_id)
            if row is None:
                raise TaskNotFound(f"template {template_id} not found")
            await session.delete(row)
            await self.audit.record(
                session, actor, "task_template", template_id, "delete", {"name": [row.name, None]}
            )

    # --- copy and multiply -------------------------------------------------------------------------

    @staticmethod
    def _copy_draft(task: Task, overrides: Mapping[str, Any]) -> TaskDraft:
        data: dict[str, Any] = {
            "name": task.name,
            "description": task.description,
            "start_at": task.start_at,
            "end_at": task.end_at,
            "priority": task.priority,
            "controller_id": task.controller_id,
            "executors": [
                {"employee_id": e.employee_id, "planned_minutes": e.planned_minutes} for e in task.executors
            ],
            "contact_id": task.contact_id,
            "phone": task.phone,
            "project_id": task.project_id,
            "owner_employee_id": task.owner_employee_id,
            "owner_team_id": task.owner_team_id,
        }
        data.update(overrides)
        return TaskDraft.model_validate(data)

    async def copy(self, actor: Principal, task_id: str, overrides: TaskPatch | None = None) -> TaskView:
        """A new task (status "set") with the fields and executors of ``task_id``, changed by ``overrides``
        (its discussion, files, calls, dependencies and repeats stay with the original)."""
        changes = overrides.changes() if overrides is not None else {}
        if "recurrence" in changes:
            recurrence = changes.pop("recurrence")
            changes["recurrence"] = recurrence.model_dump() if recurrence is not None else None
        async with self.transaction() as session:
            source = await self._load(session, actor, task_id, lock=False)
            draft = self._copy_draft(source, changes)
            task = await self.create_in(session, actor, draft, template_of_record=source.template_id)
            return await self._view(session, task)

    async def multiply(
        self, actor: Principal, task_id: str, contacts: Sequence[tuple[str, str | None]]
    ) -> list[TaskView]:
        """One copy of the task per (contact id, phone); all are made or none."""
        if not contacts:
            raise InvalidTask("contacts", "choose at least one contact")
        if len(contacts) > MAX_GROUP:
            raise InvalidTask("contacts", f"at most {MAX_GROUP} at once")
        seen: set[str] = set()
        for contact_id, _ in contacts:
            if contact_id in seen:
                raise InvalidTask("contacts", f"{contact_id} is listed twice")
            seen.add(contact_id)
        async with self.transaction() as session:
            source = await self._load(session, actor, task_id, lock=False)
            made: list[Task] = []
            for contact_id, phone in contacts:
                draft = self._copy_draft(source, {"contact_id": contact_id, "phone": phone})
                made.append(
                    await self.create_in(session, actor, draft, template_of_record=source.template_id)
                )
            return await self._views(session, made)

    # --- group operations --------------------------------------------------------------------------

    async def _each(
        self,
        actor: Principal,
        task_ids: Sequence[str],
        apply: Callable[[AsyncSession, Task, int], Awaitable[object]],
    ) -> list[GroupResult]:
        """Apply ``apply`` to each task in a transaction of its own; list each one's outcome."""
        ids = list(dict.fromkeys(task_ids))
        if not ids:
            raise InvalidTask("task_ids", "choose at least one task")
        if len(ids) > MAX_GROUP:
            raise InvalidTask("task_ids", f"at most {MAX_GROUP} at once")
        results: list[GroupResult] = []
        for index, task_id in enumerate(ids):
            try:
                async with self.transaction() as session:
                    task = await self._load(session, actor, task_id)
                    await apply(session, task, index)
                    view = await self._view(session, task)
            except TaskError as exc:
                results.append(GroupResult(task_id, False, exc.status, exc.message, exc.details()))
            else:
                results.append(GroupResult(task_id, True, 200, task=view))
        return results

    async def group_status(
        self, actor: Principal, task_ids: Sequence[str], status: str, *, executors_too: bool = False
    ) -> list[GroupResult]:
        """Move each task to ``status``; each is checked on its own (rights, workflow, executors)."""

        async def apply(session: AsyncSession, task: Task, _: int) -> None:
            await self.change_status_in(session, actor, task, status, executors_too=executors_too)

        return await self._each(actor, task_ids, apply)

    async def group_executors(
        self,
        actor: Principal,
        task_ids: Sequence[str],
        employee_ids: Sequence[str],
        *,
        replace: bool = False,
        distribute: bool = False,
    ) -> list[GroupResult]:
        """Give the tasks executors: all of ``employee_ids`` to each task, or (``distribute``) one each in
        turn; added to the executors a task has, or replacing them (``replace``)."""
        employees = list(dict.fromkeys(employee_ids))
        if not employees:
            raise InvalidTask("employee_ids", "choose at least one employee")

        async def apply(session: AsyncSession, task: Task, index: int) -> None:
            chosen = [employees[index % len(employees)]] if distribute else employees
            executors = [ExecutorIn(employee_id=employee) for employee in chosen]
            await self.set_executors_in(session, actor, task, executors, replace=replace)

        return await self._each(actor, task_ids, apply)

    # --- calls -------------------------------------------------------------------------------------

    async def attach_call_in(
        self,
        session: AsyncSession,
        actor: Principal,
        task: Task,
        call: CallInfo,
        source: str,
        *,
        announce: bool = True,
    ) -> bool:
        """Attach a call to the task (False when it is attached already): a new version and event, unless
        the task is being created with it (``announce=False``)."""
        existing = await session.get(TaskCall, (task.id, call.call_id))
        if existing is not None:
            return False
        session.add(
            TaskCall(
                task_id=task.id,
                call_id=call.call_id,
                source=source,
                direction=call.direction,
                number=call.number,
                started_at=call.started_at,
                talk_seconds=call.talk_seconds,
                disposition=call.disposition,
                linked_at=self.clock(),
                linked_by=actor.subject,
            )
        )
        await self.audit.record(session, actor, AUDIT_KIND, task.id, "call", {"calls": [None, call.call_id]})
        if announce:
            self._touch(task)
            await self.publish(session, task, "updated", actor, changed=["calls"])
        return True

    async def attach_call(self, actor: Principal, task_id: str, call: CallInfo) -> TaskView:
        async with self.transaction() as session:
            task = await self._load(session, actor, task_id)
            await self.attach_call_in(session, actor, task, call, "manual")
            return await self._view(session, task)

    async def calls_of(self, actor: Principal, task_id: str) -> Sequence[TaskCall]:
        async with self.db.session() as session:
            await self._load(session, actor, task_id, lock=False)
            rows = await session.scalars(
                select(TaskCall)
                .where(TaskCall.task_id == task_id)
                .order_by(
                    _dt_or(TaskCall.started_at, FAR_PAST).desc(), TaskCall.linked_at.desc(), TaskCall.call_id
                )
            )
            return rows.all()

    @staticmethod
    async def last_active_task(session: AsyncSession, contact_id: str) -> Task | None:
        """The contact's most recently created task that is being worked on (set, in progress, overdue)."""
        return (
            await session.scalars(
                select(Task)
                .where(Task.contact_id == contact_id, Task.status_group.in_(sorted(ACTIVE_GROUPS)))
                .order_by(Task.created_at.desc(), Task.id.desc())
                .limit(1)
                .with_for_update()
            )
        ).one_or_none()

    # --- register ----------------------------------------------------------------------------------

    def _filters(self, actor: Principal, query: TaskQuery) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = [visible_tasks(actor)]
        if query.statuses:
            clauses.append(Task.status.in_(query.statuses))
        if query.status_groups:
            unknown = [group for group in query.status_groups if group not in STATUS_GROUPS]
            if unknown:
                raise InvalidTask(
                    "status_group", f"unknown {unknown[0]!r}; one of {', '.join(STATUS_GROUPS)}"
                )
            clauses.append(Task.status_group.in_(query.status_groups))
        if query.priorities:
            clauses.append(Task.priority.in_(query.priorities))
        if query.executor_id:
            clauses.append(
                exists().where(TaskExecutor.task_id == Task.id, TaskExecutor.employee_id == query.executor_id)
            )
        for name in (
            "controller_id",
            "author_id",
            "contact_id",
            "project_id",
            "owner_employee_id",
            "owner_team_id",
        ):
            value = getattr(query, name)
            if value:
                clauses.append(getattr(Task, name) == value)
        if (
            query.period_from is not None
            and query.period_to is not None
            and query.period_to <= query.period_from
        ):
            raise InvalidTask("to", "the end of the period is not after its start")
        clauses.extend(self._period(query.period_from, query.period_to))
        if query.overdue is not None:
            overdue = _overdue_clause(self.clock())
            clauses.append(overdue if query.overdue else not_(overdue))
        if query.text:
            words = query.text.strip()
            if words:
                clauses.append(Task.name.icontains(words, autoescape=True))
        return clauses

    @staticmethod
    def _period(starts: datetime | None, ends: datetime | None) -> list[ColumnElement[bool]]:
        """Tasks whose [start, deadline] overlaps [starts, ends) (a task with one of them is that instant)."""
        if starts is None and ends is None:
            return []
        low = func.coalesce(Task.start_at, Task.end_at)
        high = func.coalesce(Task.end_at, Task.start_at)
        clauses: list[ColumnElement[bool]] = [low.is_not(None)]
        if starts is not None:
            clauses.append(high >= starts)
        if ends is not None:
            clauses.append(low < ends)
        return clauses

    async def register(self, actor: Principal, query: TaskQuery) -> TaskPage:
        """The register: filtered, sorted, a page at a time (keyset), with totals on request."""
        spec = SORTS.get(query.sort)
        if spec is None:
            raise InvalidTask("sort", f"one of {', '.join(SORTS)}")
        limit = max(1, min(query.limit, paging.MAX_LIMIT))
        clauses = self._filters(actor, query)
        columns = spec.columns()
        page_clauses = list(clauses)
        if query.cursor:
            try:
                key = paging.decode(self._secret, CURSOR_DOMAIN, query.cursor)
            except paging.InvalidCursor as exc:
                raise InvalidCursor(f"cursor: {exc}") from None
            if not key or key[0] != query.sort:
                raise InvalidCursor("cursor: it belongs to another sort order")
            page_clauses.append(_after(columns, _decode_values(spec.kinds, key[1:]), spec.descending))
        order = [column.desc() if spec.descending else column.asc() for column in columns]
        async with self.db.session() as session:
            rows = (
                await session.scalars(select(Task).where(*page_clauses).order_by(*order).limit(limit + 1))
            ).all()
            tasks = list(rows[:limit])
            next_cursor = None
            if len(rows) > limit:
                values = [_encode_value(value) for value in spec.values(tasks[-1])]
                next_cursor = paging.encode(self._secret, CURSOR_DOMAIN, [query.sort, *values])
            total = by_group = overdue = None
            if query.include_total:
                counts = await session.execute(
                    select(Task.status_group, func.count()).where(*clauses).group_by(Task.status_group)
                )
                by_group = {group: int(count) for group, count in counts.all()}
                total = sum(by_group.values())
                overdue = int(
                    await session.scalar(
                        select(func.count()).select_from(Task).where(*clauses, _overdue_clause(self.clock()))
                    )
                    or 0
                )
            return TaskPage(await self._views(session, tasks), next_cursor, total, by_group, overdue)

    async def calendar(
        self,
        actor: Principal,
        *,
        view: Literal["day", "week", "month"],
        day: date | None,
        tz: str,
        query: TaskQuery | None = None,
    ) -> CalendarView:
        """The tasks of a day, a week (Monday first) or a month in the asker's time zone, by local day
        (``day`` None: today there)."""
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidTask("tz", f"{tz!r} is not an IANA time zone (such as Europe/Kyiv)") from None
        day = day or self.clock().astimezone(zone).date()
        if view == "day":
            first, after = day, day + timedelta(days=1)
        elif view == "week":
            first = day - timedelta(days=day.weekday())
            after = first + timedelta(days=7)
        else:
            first = day.replace(day=1)
            after = (first + timedelta(days=32)).replace(day=1)

        def bound(value: date) -> datetime:
            return datetime.combine(value, time(), zone).astimezone(UTC)

        starts, ends = bound(first), bound(after)
        base = query or TaskQuery()
        clauses = [*self._filters(actor, base), *self._period(starts, ends)]
        async with self.db.session() as session:
            rows = (
                await session.scalars(
                    select(Task)
                    .where(*clauses)
                    .order_by(_dt_or(Task.start_at, FAR_PAST), _dt_or(Task.end_at, FAR_PAST), Task.id)
                    .limit(CALENDAR_LIMIT + 1)
                )
            ).all()
            tasks = list(rows[:CALENDAR_LIMIT])
            views = await self._views(session, tasks)
        days: list[CalendarDay] = []
        current = first
        while current < after:
            day_start, day_end = bound(current), bound(current + timedelta(days=1))
            ids = []
            for task in tasks:
                low = task.start_at or task.end_at
                high = task.end_at or task.start_at
                if low is not None and high is not None and low < day_end and high >= day_start:
                    ids.append(task.id)
            days.append(CalendarDay(current, ids))
            current += timedelta(days=1)
        return CalendarView(
            view=view,
            tz=tz,
            first_day=first,
            last_day=after - timedelta(days=1),
            starts=starts,
            ends=ends,
            tasks=views,
            days=days,
            truncated=len(rows) > CALENDAR_LIMIT,
        )


__all__ = [
    "TASK_REMINDER_SUBJECT",
    "TASK_SUBJECTS",
    "CallInfo",
    "DependencyCycle",
    "InvalidTask",
    "TaskConflict",
    "TaskDraft",
    "TaskError",
    "TaskForbidden",
    "TaskNotFound",
    "TaskPatch",
    "TaskService",
    "TaskSource",
    "TaskView",
    "TransitionForbidden",
    "VersionMismatch",
]
