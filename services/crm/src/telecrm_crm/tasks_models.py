"""Tables of crm's tasks, and the vocabulary of their workflow (statuses, groups, priorities).

A task's ``status`` is a code: one of the built-in statuses (the ones ISpro users know: set, in
progress, overdue, done, accepted, suspended) or one an admin added, which belongs to one of those
groups. The workflow is a graph over the groups, so a custom status behaves like its group; the group
is stored beside the status for the register's filters and the overdue sweep.

Ids of other parts' documents (employees, contacts, projects, calls, journal events) are plain
indexed strings: those tables belong to other parts of the service (or to other services).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from telecrm_common.db import UTCDateTime, utcnow
from telecrm_crm.models import CRMBase

# --- the workflow ---------------------------------------------------------------------------------

SET, IN_PROGRESS, OVERDUE, DONE, ACCEPTED, SUSPENDED = (
    "set",
    "in_progress",
    "overdue",
    "done",
    "accepted",
    "suspended",
)
STATUS_GROUPS: tuple[str, ...] = (SET, IN_PROGRESS, OVERDUE, DONE, ACCEPTED, SUSPENDED)
BUILTIN_STATUS_NAMES: dict[str, str] = {
    SET: "Set",
    IN_PROGRESS: "In progress",
    OVERDUE: "Overdue",
    DONE: "Done",
    ACCEPTED: "Accepted",
    SUSPENDED: "Suspended",
}
# Group -> the groups a user may move a task to. "overdue" is only ever set by the overdue sweep;
# "accepted" is final. A move inside a group (to another status of the same group) is allowed too,
# except inside "overdue" and "accepted".
TRANSITIONS: dict[str, frozenset[str]] = {
    SET: frozenset({IN_PROGRESS, DONE, SUSPENDED}),
    IN_PROGRESS: frozenset({SET, DONE, SUSPENDED}),
    OVERDUE: frozenset({IN_PROGRESS, DONE, SUSPENDED}),
    SUSPENDED: frozenset({SET, IN_PROGRESS}),
    DONE: frozenset({IN_PROGRESS, ACCEPTED}),
    ACCEPTED: frozenset(),
}
FIXED_GROUPS = frozenset({OVERDUE, ACCEPTED})  # no moves inside these groups
OPEN_GROUPS = frozenset({SET, IN_PROGRESS, OVERDUE, SUSPENDED})  # not finished
ACTIVE_GROUPS = frozenset({SET, IN_PROGRESS, OVERDUE})  # being worked on (a call may attach to these)
FINISHED_GROUPS = frozenset({DONE, ACCEPTED})
# A task waiting for unfinished tasks may not be started or finished.
BLOCKED_BY_DEPENDENCIES = frozenset({IN_PROGRESS, DONE, ACCEPTED})
# Each executor's own progress.
EXECUTOR_STATUSES: tuple[str, ...] = (SET, IN_PROGRESS, DONE, SUSPENDED)
PRIORITIES: tuple[str, ...] = ("low", "normal", "high")
PRIORITY_RANK = {"low": 0, "normal": 1, "high": 2}


# --- tables ---------------------------------------------------------------------------------------


class TaskStatus(CRMBase):
    """An admin-defined status; it behaves as its ``status_group`` in the workflow."""

    __tablename__ = "task_statuses"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    status_group: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TaskTemplate(CRMBase):
    """Saved fields of a task and its executors, to create tasks from (by hand or per call)."""

    __tablename__ = "task_templates"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)


class Task(CRMBase):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_status_group_end_at", "status_group", "end_at"),
        Index("ix_tasks_contact_id_created_at", "contact_id", "created_at"),
        Index("ix_tasks_created_at_id", "created_at", "id"),
        Index("ix_tasks_owner_employee_id", "owner_employee_id"),
        Index("ix_tasks_owner_team_id", "owner_team_id"),
        Index("ix_tasks_author_id", "author_id"),
        Index("ix_tasks_controller_id", "controller_id"),
        Index("ix_tasks_project_id", "project_id"),
        Index("ix_tasks_call_id", "call_id"),
        Index("ix_tasks_event_id", "event_id"),
        Index("ix_tasks_series_id", "series_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(32))
    status_group: Mapped[str] = mapped_column(String(16))
    # The status an overdue task had before the sweep marked it; it returns there when the deadline moves.
    status_before_overdue: Mapped[str | None] = mapped_column(String(32))
    overdue_marked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    priority: Mapped[str] = mapped_column(String(8), default="normal")
    start_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    author_id: Mapped[str | None] = mapped_column(String(100))  # employee
    author_subject: Mapped[str] = mapped_column(String(100))  # user id or "system:<component>"
    controller_id: Mapped[str | None] = mapped_column(String(100))
    contact_id: Mapped[str | None] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(64))
    project_id: Mapped[str | None] = mapped_column(String(100))
    call_id: Mapped[str | None] = mapped_column(String(100))
    event_id: Mapped[str | None] = mapped_column(String(100))
    owner_employee_id: Mapped[str | None] = mapped_column(String(100))
    owner_team_id: Mapped[str | None] = mapped_column(String(100))
    template_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("task_templates.id", ondelete="SET NULL")
    )
    recurrence: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    series_id: Mapped[str | None] = mapped_column(String(36))
    series_index: Mapped[int] = mapped_column(Integer, default=0)
    next_occurrence_id: Mapped[str | None] = mapped_column(String(36))
    request_id: Mapped[str | None] = mapped_column(String(200), unique=True)  # idempotency key of a create
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    executors: Mapped[list[TaskExecutor]] = relationship(
        back_populates="task",
        cascade="all, delete-orphan",
        order_by="TaskExecutor.position",
        lazy="selectin",
        passive_deletes=True,
    )
    dependencies: Mapped[list[TaskDependency]] = relationship(
        foreign_keys="TaskDependency.task_id",
        cascade="all, delete-orphan",
        order_by="TaskDependency.created_at",
        lazy="selectin",
        passive_deletes=True,
    )

    @property
    def depends_on(self) -> list[str]:
        return [dependency.depends_on_id for dependency in self.dependencies]


class TaskExecutor(CRMBase):
    """An employee who works on a task, with their own status and time."""

    __tablename__ = "task_executors"
    __table_args__ = (Index("ix_task_executors_employee_id", "employee_id"),)

    task_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    employee_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default=SET)
    planned_minutes: Mapped[int | None] = mapped_column(Integer)
    time_spent_minutes: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    task: Mapped[Task] = relationship(back_populates="executors")


class TaskDependency(CRMBase):
    """``task_id`` waits for ``depends_on_id``: it may not start or finish before that one is done."""

    __tablename__ = "task_dependencies"
    __table_args__ = (Index("ix_task_dependencies_depends_on_id", "depends_on_id"),)

    task_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    depends_on_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))


class TaskComment(CRMBase):
    """One message of a task's discussion."""

    __tablename__ = "task_comments"
    __table_args__ = (Index("ix_task_comments_task_id_created_at", "task_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(36), ForeignKey("tasks.id", ondelete="CASCADE"))
    author_subject: Mapped[str] = mapped_column(String(100))
    author_employee_id: Mapped[str | None] = mapped_column(String(100))
    author_name: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TaskReminder(CRMBase):
    """A reminder of a task for one employee: in the app when due, and by e-mail when asked.

    ``offset_minutes`` set: the reminder is that many minutes before the deadline and follows it.
    """

    __tablename__ = "task_reminders"
    __table_args__ = (
        Index("ix_task_reminders_employee_id_remind_at", "employee_id", "remind_at"),
        Index("ix_task_reminders_remind_at", "remind_at"),
        Index("ix_task_reminders_task_id", "task_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(36), ForeignKey("tasks.id", ondelete="CASCADE"))
    employee_id: Mapped[str] = mapped_column(String(100))
    remind_at: Mapped[datetime] = mapped_column(UTCDateTime)
    offset_minutes: Mapped[int | None] = mapped_column(Integer)
    email: Mapped[bool] = mapped_column(Boolean, default=False)
    emailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dismissed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100))


class TaskCall(CRMBase):
    """A call attached to a task (dialled from it, attached by a rule, or by hand)."""

    __tablename__ = "task_calls"
    __table_args__ = (Index("ix_task_calls_call_id", "call_id"),)

    task_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    call_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    source: Mapped[str] = mapped_column(String(32))  # dialled_from_task, last_active_task, new_task, manual
    direction: Mapped[str | None] = mapped_column(String(16))
    number: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    talk_seconds: Mapped[int | None] = mapped_column(Integer)
    disposition: Mapped[str | None] = mapped_column(String(16))
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    linked_by: Mapped[str] = mapped_column(String(100))


class TaskCallRuleRecord(CRMBase):
    """The call rules were applied to this call once (the consumer's idempotency record)."""

    __tablename__ = "task_call_automation"

    call_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(32))  # linked, created, no_contact, no_active_task, off...
    task_id: Mapped[str | None] = mapped_column(String(36))
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
