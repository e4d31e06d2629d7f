"""Calls become part of tasks on their own, as Planfix's telephony settings do it.

:class:`TaskCallAutomation` reads the call log's record events (``calls.record.created|updated``,
:class:`CallRecordEvent`) from a durable JetStream consumer of its own (``crm-task-calls`` by default,
shared by every replica so each event is handled once):

- a call dialled from a task carries the task's id in its notes (the click-to-call context): it is
  attached to that task, whatever the rules say;
- otherwise, once per call (:class:`TaskCallRuleRecord` rows are the record), the rule of
  ``CRM_TASK_CALL_RULE`` applies to a call with a known contact: ``last_active_task`` attaches it to the
  contact's most recently created task that is set, in progress or overdue; ``new_task`` creates a task
  for it from ``CRM_TASK_CALL_TEMPLATE_ID`` (or a plain one), with the contact, the customer's number,
  the call's employee as executor and owner; ``off`` does nothing. A call whose contact is not known yet
  is looked at again when a later event of it carries one. Internal calls are left alone.

Attaching a call publishes ``crm.task.updated`` (a new version, ``changed: ["calls"]``); a new task
publishes ``crm.task.created``. Events are applied in delivery order, one transaction per batch;
repeated and late events change nothing. Payloads that do not decode are dead-lettered by the bus
(``dlq.<durable>.<subject>``) with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from telecrm.calls.v1 import call_log_events_pb2 as record_pb
from telecrm.calls.v1 import calls_pb2
from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.bus import Bus, ConsumerSpec, Delivery
from telecrm_common.events import call_records_consumer
from telecrm_common.telephony import DIRECTION_NAMES, DISPOSITION_NAMES
from telecrm_crm.tasks import CallInfo, ExecutorIn, TaskDraft, TaskService, TaskView
from telecrm_crm.tasks_models import Task, TaskCallRuleRecord, TaskTemplate

log = logging.getLogger(__name__)

DEFAULT_DURABLE = "crm-task-calls"
CallRule = Literal["off", "last_active_task", "new_task"]
CALL_RULES: tuple[str, ...] = ("off", "last_active_task", "new_task")
ACTOR = "task-automation"


@dataclass
class AutomationResult:
    """What one batch did."""

    attached: list[tuple[str, str]] = field(default_factory=list)  # (call id, task id)
    created: list[tuple[str, str]] = field(default_factory=list)  # (call id, new task id)
    skipped: int = 0


def call_info(call: calls_pb2.Call) -> CallInfo:
    """The call as a task shows it: direction, the customer's number, start, talk time, disposition."""
    return CallInfo(
        call_id=call.call_id,
        direction=DIRECTION_NAMES.get(call.direction),
        number=customer_number(call) or None,
        started_at=call.started_at.ToDatetime(tzinfo=UTC) if call.HasField("started_at") else None,
        talk_seconds=call.talk_ms // 1000 if call.HasField("answered_at") else None,
        disposition=DISPOSITION_NAMES.get(call.disposition),
    )


def customer_number(call: calls_pb2.Call) -> str:
    """The outside party's number: the caller of an inbound call, the callee of an outbound one."""
    party = call.caller if call.direction == ev.DIRECTION_INBOUND else call.callee
    return party.e164 or party.number


class TaskCallAutomation:
    """Applies the call rules to the call log's record events (see the module's docstring)."""

    def __init__(
        self, service: TaskService, *, rule: CallRule = "off", template_id: str | None = None
    ) -> None:
        if rule not in CALL_RULES:
            raise ValueError(f"unknown task call rule {rule!r}; one of {', '.join(CALL_RULES)}")
        self.service = service
        self.rule = rule
        self.template_id = template_id or None
        self._actor = service.system_actor(ACTOR)

    async def apply(self, events: Sequence[record_pb.CallRecordEvent]) -> AutomationResult:
        """Apply a batch of record events in one transaction, in their order."""
        result = AutomationResult()
        async with self.service.transaction() as session:
            for event in events:
                kind = event.WhichOneof("kind")
                if kind is None:
                    result.skipped += 1
                    continue
                await self._call(session, getattr(event, kind), result)
                await session.flush()
        return result

    async def _call(self, session: AsyncSession, call: calls_pb2.Call, result: AutomationResult) -> None:
        info = call_info(call)
        notes = call.notes
        if notes.task_id:
            task = await session.get(Task, notes.task_id, with_for_update=True)
            if task is None:
                log.info("call %s names task %s, which does not exist", call.call_id, notes.task_id)
            else:
                if await self.service.attach_call_in(session, self._actor, task, info, "dialled_from_task"):
                    result.attached.append((call.call_id, task.id))
                await self._mark(session, call.call_id, "dialled_from_task", task.id)
                return
        if self.rule == "off" or await session.get(TaskCallRuleRecord, call.call_id) is not None:
            result.skipped += 1
            return
        if call.direction not in (ev.DIRECTION_INBOUND, ev.DIRECTION_OUTBOUND):
            await self._mark(session, call.call_id, "internal", None)
            result.skipped += 1
            return
        if not notes.contact_id:
            result.skipped += 1  # looked at again when an event of the call brings its contact
            return
        if self.rule == "last_active_task":
            task = await self.service.last_active_task(session, notes.contact_id)
            if task is None:
                await self._mark(session, call.call_id, "no_active_task", None)
                result.skipped += 1
                return
            await self._mark(session, call.call_id, "last_active_task", task.id)
            if await self.service.attach_call_in(session, self._actor, task, info, "last_active_task"):
                result.attached.append((call.call_id, task.id))
            return
        view = await self._new_task(session, call, info)
        await self._mark(session, call.call_id, "new_task", view.task.id)
        result.created.append((call.call_id, view.task.id))

    async def _new_task(self, session: AsyncSession, call: calls_pb2.Call, info: CallInfo) -> TaskView:
        template_id = self.template_id
        if template_id is not None and await session.get(TaskTemplate, template_id) is None:
            log.warning("the task template %s of CRM_TASK_CALL_TEMPLATE_ID does not exist", template_id)
            template_id = None
        number = info.number or call.call_id
        word = "Incoming" if call.direction == ev.DIRECTION_INBOUND else "Outgoing"
        given: dict[str, Any] = {
            "contact_id": call.notes.contact_id,
            "phone": info.number,
            "call_id": call.call_id,
            "start_at": info.started_at,
            "owner_employee_id": call.employee_id or None,
            "owner_team_id": call.team_id or None,
            "template_id": template_id,
        }
        if template_id is None:
            given["name"] = f"{word} call {number}"
        template = await session.get(TaskTemplate, template_id) if template_id else None
        if call.employee_id and (template is None or not template.fields.get("executors")):
            given["executors"] = [ExecutorIn(employee_id=call.employee_id)]
        draft = TaskDraft(**{name: value for name, value in given.items() if value is not None})
        task = await self.service.create_in(session, self._actor, draft)
        await self.service.attach_call_in(session, self._actor, task, info, "new_task", announce=False)
        return TaskView(task)

    @staticmethod
    async def _mark(session: AsyncSession, call_id: str, outcome: str, task_id: str | None) -> None:
        if await session.get(TaskCallRuleRecord, call_id) is None:
            session.add(TaskCallRuleRecord(call_id=call_id, outcome=outcome, task_id=task_id))


# --- the consumer --------------------------------------------------------------------------------


def task_calls_consumer_spec(
    durable: str, automation: TaskCallAutomation, **overrides: Any
) -> ConsumerSpec[record_pb.CallRecordEvent]:
    """The durable consumer of ``calls.record.*`` for the call rules (held while the database is down)."""
    return call_records_consumer(durable, dependencies_ready=automation.service.db.check, **overrides)


class TaskCallConsumer:
    """Feeds the call log's record events of the bus to :class:`TaskCallAutomation`."""

    def __init__(
        self, bus: Bus, automation: TaskCallAutomation, spec: ConsumerSpec[record_pb.CallRecordEvent]
    ) -> None:
        self._bus = bus
        self._automation = automation
        self.spec = spec

    async def handle(self, deliveries: Sequence[Delivery[record_pb.CallRecordEvent]]) -> None:
        result = await self._automation.apply([delivery.message for delivery in deliveries])
        log.debug(
            "call records applied to tasks",
            extra={
                "events": len(deliveries),
                "attached": len(result.attached),
                "created": len(result.created),
                "skipped": result.skipped,
            },
        )

    async def consume_call_records(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set (a ServiceRunner background task)."""
        await self._bus.consume(self.spec, self.handle, stop)
