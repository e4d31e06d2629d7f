"""How crm's parts answer each other's questions (wired together in :mod:`telecrm_crm.main`).

- the screen pop's card (:class:`telecrm_crm.lookup.NumberLookup`): the responsible employee from
  people, open tasks from tasks, the last calls from the call log's gRPC API; asked with a short
  deadline, and what does not answer in time is left out, so a slow call log never delays a card;
- a task made from a journal event or a call inherits its contact, phone and project (the journal
  keeps one event per call, with the call's contact and number);
- reminders by e-mail go to the employees' addresses in people.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC

import grpc
from sqlalchemy import select

from telecrm.calls.v1 import calls_pb2, calls_pb2_grpc
from telecrm_common.db import Database
from telecrm_common.telephony import DIRECTION_NAMES, DISPOSITION_NAMES
from telecrm_crm.journal_models import JournalEvent
from telecrm_crm.lookup import CallsSummary, OpenTask, RecentCall
from telecrm_crm.people import NotFound, PeopleService
from telecrm_crm.people_models import Employee
from telecrm_crm.tasks import TaskService, TaskSource


class PeopleDirectory:
    """The responsible employee's name and extension, from people."""

    def __init__(self, people: PeopleService) -> None:
        self._people = people

    async def get(self, employee_id: str) -> tuple[str, str | None] | None:
        try:
            view = await self._people.get_employee(None, employee_id)
        except NotFound:
            return None
        return view.employee.name, view.employee.extension


class ContactOpenTasks:
    """A contact's unfinished tasks, from tasks."""

    def __init__(self, tasks: TaskService) -> None:
        self._tasks = tasks

    async def open_tasks(self, contact_id: str, limit: int) -> tuple[list[OpenTask], int]:
        views, total = await self._tasks.open_for_contact(contact_id, limit)
        return [
            OpenTask(task_id=v.task.id, title=v.task.name, status=v.task.status, due_at=v.task.end_at)
            for v in views
        ], total


class CallLogHistory:
    """The last calls with a contact (or a number no contact has), over the call log's gRPC API."""

    def __init__(self, target: str) -> None:
        self._channel = grpc.aio.insecure_channel(target)
        self._stub = calls_pb2_grpc.CallLogStub(self._channel)

    async def recent_calls(self, *, contact_id: str | None, e164: str | None, limit: int) -> CallsSummary:
        if not contact_id and not e164:
            return CallsSummary()
        request = calls_pb2.ListCallsRequest(page_size=limit, include_total=True)
        if contact_id:
            request.contact_id = contact_id
        else:
            request.number = e164 or ""
        missed_request = calls_pb2.ListCallsRequest()
        missed_request.CopyFrom(request)
        missed_request.page_size, missed_request.missed = 1, True
        # Both at once: the card waits for the slower answer, not for the two in a row.
        answer, missed = await asyncio.gather(
            self._stub.ListCalls(request), self._stub.ListCalls(missed_request)
        )
        return CallsSummary(
            total=answer.total_size,
            missed=missed.total_size,
            recent=tuple(
                RecentCall(
                    call_id=call.call_id,
                    started_at=call.started_at.ToDatetime(tzinfo=UTC),
                    direction=DIRECTION_NAMES.get(call.direction, "inbound"),
                    disposition=DISPOSITION_NAMES.get(call.disposition, "")
                    or ("missed" if call.missed else ""),
                    talk_seconds=call.talk_ms // 1000,
                    employee_id=call.employee_id or None,
                )
                for call in answer.calls
            ),
        )

    async def close(self) -> None:
        await self._channel.close()


class TaskSources:
    """What a task made from a journal event (``kind`` "event") or a call ("call") inherits."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def __call__(self, kind: str, source_id: str) -> TaskSource | None:
        column = JournalEvent.id if kind == "event" else JournalEvent.call_id
        async with self._db.session() as session:
            event = await session.scalar(select(JournalEvent).where(column == source_id))
        if event is None:
            return None
        return TaskSource(
            contact_id=event.contact_id,
            phone=event.phone_e164 or event.phone,
            project_id=event.project_id,
            name=event.subject,
        )


class EmployeeEmails:
    """The e-mail addresses of employees (task reminders)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def __call__(self, employee_ids: Sequence[str]) -> Mapping[str, str]:
        if not employee_ids:
            return {}
        async with self._db.session() as session:
            rows = await session.execute(
                select(Employee.id, Employee.email).where(Employee.id.in_(sorted(set(employee_ids))))
            )
        return {employee_id: email for employee_id, email in rows if email}


__all__ = ["CallLogHistory", "ContactOpenTasks", "EmployeeEmails", "PeopleDirectory", "TaskSources"]
