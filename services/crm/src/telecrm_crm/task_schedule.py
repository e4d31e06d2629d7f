"""What happens to tasks as time passes: repeats, the overdue mark and reminders by e-mail.

- :func:`next_occurrence` computes when a recurring task comes back (daily, weekly on chosen weekdays,
  monthly on the first occurrence's day, clamped to short months), counted in the rule's time zone so a
  task at 09:00 in Kyiv stays at 09:00 across daylight-saving changes. The service creates the next
  occurrence when one is done.
- :class:`TaskScheduler` (a background task of each replica) sweeps every ``interval`` seconds: tasks
  set or in progress whose deadline passed are marked "overdue" (once per deadline, with their
  ``crm.task.status_changed`` event), and e-mail reminders that fell due are handed to messaging as
  ``crm.task.reminder`` requests through the outbox (once per reminder and due time: ``emailed_at``).
  Rows are claimed with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so replicas sweeping together share
  the work instead of doing it twice.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from telecrm.crm.v1 import tasks_pb2
from telecrm_common.timestamps import timestamp_message
from telecrm_crm.outbox import row
from telecrm_crm.tasks_models import IN_PROGRESS, OPEN_GROUPS, SET, Task, TaskReminder

if TYPE_CHECKING:
    from telecrm_crm.tasks import TaskService

log = logging.getLogger(__name__)

FREQUENCIES = ("daily", "weekly", "monthly")
TASK_REMINDER_SUBJECT = "crm.task.reminder"  # TaskReminderRequest: an e-mail for messaging to send
# Employee ids -> their e-mail addresses (those it knows); wired to the people part by main.
EmailLookup = Callable[[Sequence[str]], Awaitable[Mapping[str, str]]]


@dataclass(frozen=True)
class Recurrence:
    """A stored recurrence rule (see :class:`telecrm_crm.tasks.RecurrenceIn` for its fields)."""

    freq: str
    interval: int = 1
    weekdays: tuple[int, ...] = ()
    until: date | None = None
    count: int | None = None
    tz: str = "UTC"
    anchor: date | None = None  # local date of the series' first occurrence

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Recurrence:
        until, anchor = data.get("until"), data.get("anchor")
        return cls(
            freq=str(data["freq"]),
            interval=max(1, int(data.get("interval") or 1)),
            weekdays=tuple(sorted({int(day) for day in data.get("weekdays") or []})),
            until=date.fromisoformat(until) if until else None,
            count=int(data["count"]) if data.get("count") else None,
            tz=str(data.get("tz") or "UTC"),
            anchor=date.fromisoformat(anchor) if anchor else None,
        )


def _add_months(day: date, months: int, day_of_month: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day_of_month, calendar.monthrange(year, month)[1]))


def next_occurrence(rule: Recurrence, reference: datetime, index: int) -> datetime | None:
    """When the occurrence after ``reference`` (occurrence number ``index``, the first is 0) falls, at
    the same local wall-clock time; None when the rule's ``count`` or ``until`` ends the series."""
    if rule.freq not in FREQUENCIES:
        raise ValueError(f"unknown recurrence frequency {rule.freq!r}")
    if rule.count is not None and index + 1 >= rule.count:
        return None
    zone = ZoneInfo(rule.tz)
    local = reference.astimezone(zone)
    current = local.date()
    anchor = rule.anchor or current
    if rule.freq == "daily":
        following = current + timedelta(days=rule.interval)
    elif rule.freq == "monthly":
        following = _add_months(current, rule.interval, anchor.day)
    elif not rule.weekdays:
        following = current + timedelta(weeks=rule.interval)
    else:
        # The chosen weekdays of every interval-th week, counted from the week of the first occurrence.
        first_monday = anchor - timedelta(days=anchor.weekday())
        following = current + timedelta(days=1)
        while not (
            following.weekday() in rule.weekdays
            and ((following - first_monday).days // 7) % rule.interval == 0
        ):
            following += timedelta(days=1)
    if rule.until is not None and following > rule.until:
        return None
    return datetime.combine(following, local.time(), zone).astimezone(UTC)


# --- the sweeps -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    overdue: int
    reminders_emailed: int


class TaskScheduler:
    """Marks overdue tasks and sends due e-mail reminders, every ``interval`` seconds until stopped."""

    def __init__(
        self,
        service: TaskService,
        *,
        interval: float = 60.0,
        batch_size: int = 200,
        email_lookup: EmailLookup | None = None,
    ) -> None:
        self._service = service
        self._interval = interval
        self._batch = batch_size
        self._email_lookup = email_lookup

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep until ``stop`` is set (a ServiceRunner background task); a failed sweep is retried."""
        while not stop.is_set():
            try:
                result = await self.sweep()
            except Exception as exc:
                log.warning("the task sweep failed (%s); retrying in %.0fs", exc, self._interval)
            else:
                if result.overdue or result.reminders_emailed:
                    log.info(
                        "task sweep",
                        extra={"overdue": result.overdue, "reminders_emailed": result.reminders_emailed},
                    )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)

    async def sweep(self) -> SweepResult:
        return SweepResult(await self.mark_overdue(), await self.send_reminders())

    async def mark_overdue(self) -> int:
        """Mark the tasks whose deadline passed while set or in progress; returns how many."""
        actor = self._service.system_actor("task-scheduler")
        total = 0
        while True:
            async with self._service.transaction() as session:
                now = self._service.clock()
                tasks = (
                    await session.scalars(
                        select(Task)
                        .where(
                            Task.status_group.in_([SET, IN_PROGRESS]),
                            Task.end_at < now,
                            Task.overdue_marked_at.is_(None),
                        )
                        .order_by(Task.end_at, Task.id)
                        .limit(self._batch)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
                for task in tasks:
                    await self._service.mark_overdue_in(session, task, actor)
            total += len(tasks)
            if len(tasks) < self._batch:
                return total

    async def send_reminders(self) -> int:
        """Publish ``crm.task.reminder`` for each due e-mail reminder of an open task; returns how many."""
        total = 0
        while True:
            async with self._service.transaction() as session:
                now = self._service.clock()
                rows = (
                    await session.execute(
                        select(TaskReminder, Task)
                        .join(Task, Task.id == TaskReminder.task_id)
                        .where(
                            TaskReminder.email.is_(True),
                            TaskReminder.emailed_at.is_(None),
                            TaskReminder.dismissed_at.is_(None),
                            TaskReminder.remind_at <= now,
                            Task.status_group.in_(sorted(OPEN_GROUPS)),
                        )
                        .order_by(TaskReminder.remind_at, TaskReminder.id)
                        .limit(self._batch)
                        .with_for_update(skip_locked=True, of=TaskReminder)
                    )
                ).all()
                emails: Mapping[str, str] = {}
                if rows and self._email_lookup is not None:
                    emails = await self._email_lookup(sorted({reminder.employee_id for reminder, _ in rows}))
                messages = []
                for reminder, task in rows:
                    event_id = f"task-reminder:{reminder.id}:{reminder.remind_at.isoformat()}"
                    request = tasks_pb2.TaskReminderRequest(
                        event_id=event_id,
                        reminder_id=reminder.id,
                        task_id=task.id,
                        task_name=task.name,
                        employee_id=reminder.employee_id,
                        email=emails.get(reminder.employee_id, ""),
                        remind_at=timestamp_message(reminder.remind_at),
                        priority=task.priority,
                        status=task.status,
                        contact_id=task.contact_id or "",
                        phone=task.phone or "",
                    )
                    if task.end_at is not None:
                        request.end_at.CopyFrom(timestamp_message(task.end_at))
                    messages.append(row(TASK_REMINDER_SUBJECT, request, event_id))
                    reminder.emailed_at = now
                await self._service.write_outbox(session, messages)
            total += len(rows)
            if len(rows) < self._batch:
                return total
