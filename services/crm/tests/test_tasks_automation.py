"""Calls into tasks (the Planfix rules, and the consumer on a real nats-server), the gRPC API other
services use, and the tasks' migration."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from telecrm.calls.v1 import call_log_events_pb2 as record_pb
from telecrm.calls.v1 import calls_pb2
from telecrm.crm.v1 import tasks_pb2, tasks_pb2_grpc
from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.auth import Role, Visibility
from telecrm_common.bus import DLQ_REASON, DLQ_STREAM, Bus
from telecrm_common.db import Database, alembic_config, async_url, upgrade_async
from telecrm_common.events import STREAMS, call_record_subject
from telecrm_common.grpc import GrpcServer, channel
from telecrm_crm import tasks_grpc
from telecrm_crm.all_models import metadata
from telecrm_crm.main import MIGRATIONS
from telecrm_crm.settings import CRMSettings
from telecrm_crm.task_automation import TaskCallAutomation, TaskCallConsumer, task_calls_consumer_spec
from telecrm_crm.tasks import TaskDraft, TaskForbidden, TaskService, TemplateFields, system_principal

from .conftest import make_principal
from .test_tasks_workflow import T0, Clock, events, new_service

NUMBER = "+359888123456"
ACTOR = system_principal("tests")


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def service(crm_db: Database, tmp_path: Path, clock: Clock) -> TaskService:
    return new_service(crm_db, tmp_path / "files", clock)


def record(
    call_id: str,
    *,
    kind: str = "created",
    revision: int = 1,
    direction: ev.Direction.ValueType = ev.DIRECTION_INBOUND,
    number: str = NUMBER,
    contact_id: str = "",
    task_id: str = "",
    employee_id: str = "emp-agent",
) -> record_pb.CallRecordEvent:
    """The call log's record event of an answered call with ``number`` (the caller when inbound)."""
    outside = ev.Party(number=number, e164=number)
    inside = ev.Party(number="101", extension="101")
    inbound = direction == ev.DIRECTION_INBOUND
    call = calls_pb2.Call(
        call_id=call_id,
        direction=direction,
        caller=outside if inbound else inside,
        callee=inside if inbound else outside,
        employee_id=employee_id,
        team_id="team-sales",
        disposition=ev.DISPOSITION_ANSWERED,
        talk_ms=65_400,
        state="ended",
        notes=calls_pb2.CallNotes(contact_id=contact_id, task_id=task_id),
    )
    for name, offset in (("started_at", 0), ("answered_at", 5), ("ended_at", 70)):
        stamp = Timestamp()
        stamp.FromDatetime(T0 + timedelta(seconds=offset))
        getattr(call, name).CopyFrom(stamp)
    event = record_pb.CallRecordEvent(event_id=f"{call_id}:r{revision}", revision=revision)
    getattr(event, kind).CopyFrom(call)
    return event


async def new_task(service: TaskService, clock: Clock, **fields: Any) -> str:
    clock.now += timedelta(seconds=1)
    view = await service.create(ACTOR, TaskDraft(**{"name": "A task", **fields}))
    return view.task.id


async def calls_of(service: TaskService, task_id: str) -> list[tuple[str, str]]:
    return [(call.call_id, call.source) for call in await service.calls_of(ACTOR, task_id)]


# --- the rules -----------------------------------------------------------------------------------


async def test_a_call_dialled_from_a_task_is_attached_to_it_whatever_the_rule(
    service: TaskService, clock: Clock, crm_db: Database
) -> None:
    task_id = await new_task(service, clock, contact_id="c-1")
    automation = TaskCallAutomation(service, rule="off")
    result = await automation.apply([record("call-1", task_id=task_id, contact_id="c-1")])
    assert result.attached == [("call-1", task_id)]
    [call] = await service.calls_of(ACTOR, task_id)
    assert (call.source, call.direction, call.number, call.talk_seconds, call.disposition) == (
        "dialled_from_task",
        "inbound",
        NUMBER,
        65,
        "answered",
    )
    # Delivered again, and updated later: nothing more.
    again = await automation.apply(
        [record("call-1", task_id=task_id), record("call-1", kind="updated", revision=2, task_id=task_id)]
    )
    assert again.attached == []
    view = await service.get(ACTOR, task_id)
    assert view.task.version == 2
    updates = [event for subject, event in await events(crm_db) if subject == "crm.task.updated"]
    assert [(list(e.changed), e.actor) for e in updates] == [(["calls"], "system:task-automation")]
    # A task id that does not exist attaches nothing.
    assert (await automation.apply([record("call-2", task_id="no-such-task")])).attached == []


async def test_each_call_goes_to_the_contacts_last_active_task(service: TaskService, clock: Clock) -> None:
    older = await new_task(service, clock, contact_id="c-1")
    newest_active = await new_task(service, clock, contact_id="c-1")
    finished = await new_task(service, clock, contact_id="c-1")
    await service.change_status(ACTOR, finished, "done")
    someone_elses = await new_task(service, clock, contact_id="c-2")
    automation = TaskCallAutomation(service, rule="last_active_task")

    result = await automation.apply(
        [
            record("call-1", contact_id="c-1"),
            record("call-1", contact_id="c-1", kind="updated", revision=2),
            record("call-2", contact_id="c-3"),  # no task
            record("call-3", direction=ev.DIRECTION_INTERNAL, contact_id="c-1"),
            record("call-4", direction=ev.DIRECTION_OUTBOUND, contact_id="c-1"),
        ]
    )
    assert result.attached == [("call-1", newest_active), ("call-4", newest_active)]
    assert sorted(await calls_of(service, newest_active)) == [
        ("call-1", "last_active_task"),
        ("call-4", "last_active_task"),
    ]
    assert await calls_of(service, older) == []
    assert await calls_of(service, someone_elses) == []
    # Replayed: still once.
    assert (await automation.apply([record("call-1", contact_id="c-1")])).attached == []
    # A task for c-3 now exists, but call-2 was decided already.
    await new_task(service, clock, contact_id="c-3")
    assert (
        await automation.apply([record("call-2", contact_id="c-3", kind="updated", revision=2)])
    ).attached == []


async def test_a_new_task_per_call_from_the_template(
    service: TaskService, clock: Clock, crm_db: Database
) -> None:
    template = await service.create_template(
        ACTOR,
        "Per call",
        TemplateFields(
            name="Process the call", priority="high", duration_minutes=60, controller_id="emp-sup"
        ),
    )
    automation = TaskCallAutomation(service, rule="new_task", template_id=template.id)
    result = await automation.apply(
        [
            record("call-1", contact_id="c-1"),
            record("call-1", contact_id="c-1"),  # delivered twice
            record("call-2", direction=ev.DIRECTION_INTERNAL, contact_id="c-1"),
            record("call-3"),  # contact not known yet
        ]
    )
    assert [call for call, _ in result.created] == ["call-1"]
    task = (await service.get(ACTOR, result.created[0][1])).task
    assert (task.name, task.priority, task.controller_id) == ("Process the call", "high", "emp-sup")
    assert (task.contact_id, task.phone, task.call_id) == ("c-1", NUMBER, "call-1")
    assert (task.start_at, task.end_at) == (T0, T0 + timedelta(hours=1))
    assert (task.owner_employee_id, task.owner_team_id) == ("emp-agent", "team-sales")
    assert [e.employee_id for e in task.executors] == ["emp-agent"]
    assert task.template_id == template.id
    assert await calls_of(service, task.id) == [("call-1", "new_task")]

    # The contact of call-3 becomes known later: its task is made then, once.
    later = await automation.apply([record("call-3", kind="updated", revision=2, contact_id="c-9")])
    assert [call for call, _ in later.created] == ["call-3"]
    assert (
        await automation.apply([record("call-3", kind="updated", revision=3, contact_id="c-9")])
    ).created == []
    created = [
        e for s, e in await events(crm_db) if s == "crm.task.created" and e.actor == "system:task-automation"
    ]
    assert len(created) == 2

    # A call a user already made a task from gets no second one.
    await service.create_from(ACTOR, "call", "call-5", TaskDraft(contact_id="c-1"))
    assert (await automation.apply([record("call-5", contact_id="c-1")])).created == []

    # Without a template (or with one that is gone) the task is a plain one named after the call.
    plain = TaskCallAutomation(service, rule="new_task", template_id="gone")
    made = await plain.apply([record("call-6", contact_id="c-1", direction=ev.DIRECTION_OUTBOUND)])
    assert (await service.get(ACTOR, made.created[0][1])).task.name == f"Outgoing call {NUMBER}"
    # Made by a component, without controller or author: its owner (the call's employee) accepts it.
    plain_id = made.created[0][1]
    await service.change_status(ACTOR, plain_id, "done", executors_too=True)
    with pytest.raises(TaskForbidden, match="its owner"):
        await service.change_status(
            make_principal("u-x", Role.SUPERVISOR, employee_id="emp-x", visibility=Visibility.ALL),
            plain_id,
            "accepted",
        )
    owner = make_principal("u-agent", Role.AGENT, employee_id="emp-agent", visibility=Visibility.OWN)
    assert (await service.change_status(owner, plain_id, "accepted")).task.status == "accepted"


def test_an_unknown_rule_is_refused(service: TaskService) -> None:
    with pytest.raises(ValueError, match="unknown task call rule"):
        TaskCallAutomation(service, rule="sometimes")  # type: ignore[arg-type]


# --- the consumer on a real nats-server ----------------------------------------------------------


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout:.0f}s")
        await asyncio.sleep(0.05)


@pytest.fixture
async def bus(nats_server: Any) -> AsyncIterator[Bus]:
    bus = await Bus.connect(nats_server.url, name="crm-task-calls-tests", timeout=10)
    await bus.ensure_streams(STREAMS)
    yield bus
    await bus.close()


async def test_the_consumer_attaches_calls_and_dead_letters_garbage(
    bus: Bus, service: TaskService, clock: Clock
) -> None:
    tag = uuid.uuid4().hex[:8]
    durable = f"crm-task-calls-test-{tag}"
    task_id = await new_task(service, clock, contact_id=f"c-{tag}")
    first, second = f"call-{tag}-1", f"call-{tag}-2"
    good = record(first, contact_id=f"c-{tag}")
    await bus.publish(call_record_subject(good), good, msg_id=good.event_id)
    await bus.js.publish(
        "calls.record.created", b"\x0a\xff\xff\xff not a protobuf", headers={"Nats-Msg-Id": f"g-{tag}"}
    )
    automation = TaskCallAutomation(service, rule="last_active_task")
    spec = task_calls_consumer_spec(durable, automation, batch_size=10, fetch_timeout_seconds=0.2)
    consumer = TaskCallConsumer(bus, automation, spec)
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.consume_call_records(stop))
    try:

        async def attached(count: int) -> bool:
            return len(await calls_of(service, task_id)) == count

        await eventually(lambda: attached(1))
        dead_sub = await bus.js.subscribe(
            f"dlq.{durable}.calls.record.created", stream=DLQ_STREAM, ordered_consumer=True
        )
        try:
            dead = await dead_sub.next_msg(timeout=15)
        finally:
            await dead_sub.unsubscribe()
        assert dead.headers is not None
        assert "undecodable payload" in dead.headers[DLQ_REASON]
        # Still consuming after the dead letter.
        dialled = record(second, task_id=task_id)
        await bus.publish(call_record_subject(dialled), dialled, msg_id=dialled.event_id)
        await eventually(lambda: attached(2))
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=10)
    assert sorted(await calls_of(service, task_id)) == [
        (first, "last_active_task"),
        (second, "dialled_from_task"),
    ]


# --- gRPC ----------------------------------------------------------------------------------------


@pytest.fixture
async def stub(service: TaskService) -> AsyncIterator[tasks_pb2_grpc.TasksStub]:
    async def ok() -> None:
        return None

    server = GrpcServer(CRMSettings(grpc_port=0), service_names=[tasks_grpc.SERVICE_NAME], checks={"db": ok})
    tasks_grpc.add_to_server(server.server, service)
    await server.start()
    async with channel(f"127.0.0.1:{server.port}") as chan:
        yield tasks_pb2_grpc.TasksStub(chan)
    await server.stop(0)


async def test_other_services_create_and_read_tasks_over_grpc(
    stub: tasks_pb2_grpc.TasksStub, service: TaskService, clock: Clock
) -> None:
    deadline = Timestamp()
    deadline.FromDatetime(T0 + timedelta(hours=2))
    request = tasks_pb2.CreateTaskRequest(
        name="Serve ticket A-017",
        end_at=deadline,
        priority="high",
        executor_ids=["emp-op"],
        contact_id="c-1",
        created_by="system:queue",
        request_id="ticket-A-017",
    )
    task = await stub.CreateTask(request)
    assert (task.name, task.status, task.priority, task.contact_id) == (
        "Serve ticket A-017",
        "set",
        "high",
        "c-1",
    )
    assert [e.employee_id for e in task.executors] == ["emp-op"]
    assert task.end_at.ToDatetime().isoformat() == "2026-03-02T11:00:00"
    assert (await stub.CreateTask(request)).task_id == task.task_id  # retried: the same task

    by_employee = await stub.CreateTask(
        tasks_pb2.CreateTaskRequest(name="Mine", created_by="emp-7", contact_id="c-1")
    )
    assert (by_employee.author_id, by_employee.owner_employee_id) == ("emp-7", "emp-7")
    assert (await stub.GetTask(tasks_pb2.GetTaskRequest(task_id=task.task_id))).name == "Serve ticket A-017"

    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetTask(tasks_pb2.GetTaskRequest(task_id="nope"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.CreateTask(tasks_pb2.CreateTaskRequest(name="x", priority="urgent"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "priority" in (bad.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as nameless:
        await stub.CreateTask(tasks_pb2.CreateTaskRequest(contact_id="c-1"))
    assert nameless.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "name" in (nameless.value.details() or "")


async def test_the_screen_pop_gets_a_contacts_open_tasks(
    stub: tasks_pb2_grpc.TasksStub, service: TaskService, clock: Clock
) -> None:
    soon = await new_task(service, clock, name="Soon", contact_id="c-1", end_at=T0 + timedelta(hours=1))
    undated = await new_task(service, clock, name="Undated", contact_id="c-1")
    later = await new_task(service, clock, name="Later", contact_id="c-1", end_at=T0 + timedelta(days=3))
    paused = await new_task(service, clock, name="Paused", contact_id="c-1", end_at=T0 + timedelta(days=1))
    await service.change_status(ACTOR, paused, "suspended")
    finished = await new_task(service, clock, name="Finished", contact_id="c-1")
    await service.change_status(ACTOR, finished, "done")
    await new_task(service, clock, name="Another contact's", contact_id="c-2")

    answer = await stub.ListOpenTasksForContact(tasks_pb2.ListOpenTasksForContactRequest(contact_id="c-1"))
    assert [t.name for t in answer.tasks] == ["Soon", "Paused", "Later", "Undated"]
    assert answer.total_open == 4
    limited = await stub.ListOpenTasksForContact(
        tasks_pb2.ListOpenTasksForContactRequest(contact_id="c-1", limit=1)
    )
    assert ([t.task_id for t in limited.tasks], limited.total_open) == ([soon], 4)
    assert {undated, later} <= {t.task_id for t in answer.tasks}
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.ListOpenTasksForContact(tasks_pb2.ListOpenTasksForContactRequest())
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- the migration -------------------------------------------------------------------------------

TASK_TABLES = frozenset(
    {
        "task_statuses",
        "task_templates",
        "tasks",
        "task_executors",
        "task_dependencies",
        "task_comments",
        "task_reminders",
        "task_calls",
        "task_call_automation",
    }
)


def _tables_named(change: Any) -> set[str]:
    """The tables an Alembic comparison entry is about."""
    parts = change if isinstance(change, list) else [change]
    names: set[str] = set()
    for part in parts:
        for item in part:
            if isinstance(item, str):
                names.add(item)
            table = getattr(item, "table", None)
            if table is not None:
                names.add(table.name)
            if getattr(item, "name", None) in metadata.tables and hasattr(item, "columns"):
                names.add(item.name)
    return names


async def _on(url: str, fn: Callable[[Any], Any]) -> Any:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def _task_diffs(url: str) -> Callable[[Any], list[Any]]:
    version_table = alembic_config(url, MIGRATIONS).get_main_option("version_table")

    def run(sync_conn: Any) -> list[Any]:
        context = MigrationContext.configure(
            sync_conn, opts={"compare_type": True, "version_table": version_table}
        )
        return [
            change for change in compare_metadata(context, metadata) if _tables_named(change) & TASK_TABLES
        ]

    return run


@pytest.fixture
def fresh_url(database_factory: Callable[[str], str]) -> str:
    return database_factory("crm_tasks_migrations")


async def test_the_migration_builds_the_models_tables_and_goes_down_again(fresh_url: str) -> None:
    assert set(metadata.tables) >= TASK_TABLES
    await upgrade_async(fresh_url, MIGRATIONS)
    assert await _on(fresh_url, _task_diffs(fresh_url)) == []
    await asyncio.to_thread(command.downgrade, alembic_config(fresh_url, MIGRATIONS), "0005")
    tables = await _on(fresh_url, lambda conn: set(inspect(conn).get_table_names()))
    assert tables.isdisjoint(TASK_TABLES)
    await upgrade_async(fresh_url, MIGRATIONS)
    assert await _on(fresh_url, _task_diffs(fresh_url)) == []
