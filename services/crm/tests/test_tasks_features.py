"""Tasks' tabs and tools: discussion, files, reminders, overdue marks, repeats, templates, copy and
multiply, group operations, tasks from events and calls, the calendar and the register."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from telecrm.crm.v1 import tasks_pb2
from telecrm_common.auth import Principal, Role
from telecrm_common.db import Database
from telecrm_crm.access import Access
from telecrm_crm.models import OutboxMessage
from telecrm_crm.task_schedule import Recurrence, TaskScheduler, next_occurrence
from telecrm_crm.tasks import TaskService, TaskSource

from .conftest import make_principal
from .test_tasks_workflow import T0, Client, Clock, api_clients, create, events, move, new_service

KYIV = "Europe/Kyiv"


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def service(crm_db: Database, tmp_path: Path, clock: Clock) -> TaskService:
    return new_service(crm_db, tmp_path / "files", clock)


@pytest.fixture
async def client(
    service: TaskService, access: Access, token_for: Callable[[Principal], dict[str, str]]
) -> AsyncIterator[Client]:
    async with api_clients(service, access, token_for) as clients:
        yield clients


async def reminder_requests(db: Database) -> list[tasks_pb2.TaskReminderRequest]:
    async with db.session() as session:
        rows = (
            await session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.subject == "crm.task.reminder")
                .order_by(OutboxMessage.seq)
            )
        ).all()
    found = []
    for row in rows:
        request = tasks_pb2.TaskReminderRequest()
        request.ParseFromString(row.payload)
        assert row.msg_id == request.event_id
        found.append(request)
    return found


# --- discussion and files ------------------------------------------------------------------------


async def test_the_discussion(
    client: Client, agent: Principal, admin: Principal, crm_db: Database, clock: Clock
) -> None:
    api = client(agent)
    task = await create(api)
    url = f"/tasks/{task['id']}/comments"
    first = await api.post(url, json={"body": "  Called, no answer  "})
    clock.now += timedelta(minutes=1)
    assert first.status_code == 201
    assert (first.json()["body"], first.json()["author_employee_id"]) == ("Called, no answer", "emp-agent")
    other = make_principal("u-2", Role.AGENT, employee_id="emp-2")
    assert (await client(other).post(url, json={"body": "hi"})).status_code == 404  # cannot see the task
    await client(admin).post(url, json={"body": "Try again at 15:00"})
    listed = (await api.get(url)).json()
    assert [c["body"] for c in listed] == ["Called, no answer", "Try again at 15:00"]
    assert (await api.delete(f"{url}/{listed[1]['id']}")).status_code == 403  # not its author
    assert (await api.delete(f"{url}/{listed[0]['id']}")).status_code == 204
    assert [c["body"] for c in (await api.get(url)).json()] == ["Try again at 15:00"]
    assert (await api.post(url, json={"body": "   "})).status_code == 422
    updates = [event for subject, event in await events(crm_db) if subject == "crm.task.updated"]
    assert [list(event.changed) for event in updates] == [["comments"]] * 3
    assert (await api.get(f"/tasks/{task['id']}")).json()["version"] == 1  # the task itself did not change


PDF = b"%PDF-1.7\n" + b"x" * 200


async def test_files_are_checked_stored_and_served_as_downloads(
    client: Client, agent: Principal, crm_db: Database
) -> None:
    api = client(agent)
    task = await create(api)
    url = f"/tasks/{task['id']}/attachments"
    saved = await api.post(url, files={"file": ("../offer.pdf", PDF, "application/pdf")})
    assert saved.status_code == 201, saved.text
    assert (saved.json()["filename"], saved.json()["content_type"]) == ("offer.pdf", "application/pdf")
    exe = await api.post(url, files={"file": ("setup.pdf", b"MZ\x90\x00" + b"\x00" * 50, "application/pdf")})
    assert exe.status_code == 415
    big = await api.post(url, files={"file": ("big.pdf", PDF + b"y" * 20_000, "application/pdf")})
    assert big.status_code == 413
    listed = (await api.get(url)).json()
    assert [a["filename"] for a in listed] == ["offer.pdf"]

    download = await api.get(f"{url}/{listed[0]['id']}")
    assert download.status_code == 200
    assert download.content == PDF
    assert download.headers["content-disposition"].startswith("attachment")
    assert download.headers["x-content-type-options"] == "nosniff"

    reader = make_principal("u-agent", Role.AGENT, employee_id="emp-agent", rights=frozenset({"task.create"}))
    assert (
        await client(reader).post(url, files={"file": ("a.pdf", PDF, "application/pdf")})
    ).status_code == 403
    assert (await client(reader).delete(f"{url}/{listed[0]['id']}")).status_code == 403
    assert (await api.delete(f"{url}/{listed[0]['id']}")).status_code == 204
    assert (await api.get(f"{url}/{listed[0]['id']}")).status_code == 404
    history = (await api.get(f"/tasks/{task['id']}/history")).json()
    assert [entry["changes"].get("attachment") for entry in history if entry["action"] == "attachment"] == [
        [None, "offer.pdf"],
        ["offer.pdf", None],
    ]


# --- reminders and the sweeps --------------------------------------------------------------------


async def test_reminders_fall_due_in_the_app_and_go_out_by_email_once(
    client: Client, agent: Principal, service: TaskService, clock: Clock, crm_db: Database
) -> None:
    api = client(agent)
    deadline = T0 + timedelta(days=1)
    task = await create(
        api, end_at=deadline.isoformat(), executors=[{"employee_id": "emp-agent"}], controller_id="emp-sup"
    )
    made = await api.post(f"/tasks/{task['id']}/reminders", json={"before_end_minutes": 60, "email": True})
    assert made.status_code == 201
    assert sorted(r["employee_id"] for r in made.json()) == ["emp-agent", "emp-sup"]
    assert {r["remind_at"] for r in made.json()} == {"2026-03-03T08:00:00Z"}
    mine = await api.post(f"/tasks/{task['id']}/reminders", json={"remind_at": "2026-03-02T12:00:00Z"})
    assert [r["employee_id"] for r in mine.json()] == ["emp-agent", "emp-sup"]  # the default recipients

    assert (await api.get("/reminders/due")).json() == []
    clock.now = T0 + timedelta(hours=4)
    due = (await api.get("/reminders/due")).json()
    assert [(r["task_name"], r["remind_at"]) for r in due] == [
        ("Call the customer back", "2026-03-02T12:00:00Z")
    ]
    dismissed = await api.post(f"/reminders/{due[0]['id']}/dismiss")
    assert dismissed.status_code == 200
    assert (await api.get("/reminders/due")).json() == []
    someone_else = make_principal("u-x", Role.AGENT, employee_id="emp-x")
    assert (await client(someone_else).post(f"/reminders/{due[0]['id']}/dismiss")).status_code == 404

    # The deadline moves: the relative reminders follow it.
    moved = await api.patch(
        f"/tasks/{task['id']}", json={"end_at": (deadline + timedelta(hours=2)).isoformat()}
    )
    assert moved.status_code == 200
    reminders = (await api.get(f"/tasks/{task['id']}/reminders")).json()
    assert sorted({r["remind_at"] for r in reminders}) == ["2026-03-02T12:00:00Z", "2026-03-03T10:00:00Z"]

    async def emails(employees: Any) -> dict[str, str]:
        return {"emp-agent": "agent@example.com"}

    scheduler = TaskScheduler(service, email_lookup=emails)
    assert (await scheduler.sweep()).reminders_emailed == 0
    clock.now = deadline + timedelta(hours=1, minutes=5)
    assert (await scheduler.sweep()).reminders_emailed == 2
    assert (await scheduler.sweep()).reminders_emailed == 0
    requests = await reminder_requests(crm_db)
    assert sorted((r.employee_id, r.email) for r in requests) == [
        ("emp-agent", "agent@example.com"),
        ("emp-sup", ""),
    ]
    assert {r.task_id for r in requests} == {task["id"]}

    # Snoozed: due again later, and e-mailed again.
    due = (await api.get("/reminders/due")).json()
    email_reminder = next(r for r in due if r["email"])
    later = (clock.now + timedelta(minutes=30)).isoformat()
    assert (
        await api.post(f"/reminders/{email_reminder['id']}/snooze", json={"remind_at": later})
    ).status_code == 200
    assert email_reminder["id"] not in {r["id"] for r in (await api.get("/reminders/due")).json()}
    clock.now += timedelta(minutes=31)
    assert (await scheduler.sweep()).reminders_emailed == 1
    assert len(await reminder_requests(crm_db)) == 3

    # Reminding someone else needs task.modify; a finished task reminds nobody.
    creator = make_principal(
        "u-agent", Role.AGENT, employee_id="emp-agent", rights=frozenset({"task.status"})
    )
    refused = await client(creator).post(
        f"/tasks/{task['id']}/reminders", json={"remind_at": later, "employee_ids": ["emp-sup"]}
    )
    assert refused.status_code == 403
    await move(api, task["id"], "done", executors_too=True)
    assert (await api.get("/reminders/due")).json() == []


async def test_the_overdue_sweep_marks_once_per_deadline(
    client: Client, agent: Principal, service: TaskService, clock: Clock, crm_db: Database
) -> None:
    api = client(agent)
    late = await create(api, name="Late", end_at=(T0 + timedelta(hours=1)).isoformat())
    started = await create(api, name="Started", end_at=(T0 + timedelta(hours=1)).isoformat())
    await move(api, started["id"], "in_progress")
    paused = await create(api, name="Paused", end_at=(T0 + timedelta(hours=1)).isoformat())
    await move(api, paused["id"], "suspended")
    await create(api, name="Later", end_at=(T0 + timedelta(days=5)).isoformat())
    scheduler = TaskScheduler(service, batch_size=1)  # several rounds
    assert (await scheduler.sweep()).overdue == 0
    clock.now = T0 + timedelta(hours=2)
    assert (await scheduler.sweep()).overdue == 2
    assert (await scheduler.sweep()).overdue == 0
    statuses = {t["name"]: t["status"] for t in (await api.get("/tasks")).json()["items"]}
    assert statuses == {"Late": "overdue", "Started": "overdue", "Paused": "suspended", "Later": "set"}
    marked = [event for subject, event in await events(crm_db) if event.actor == "system:task-scheduler"]
    assert sorted((e.status_changed.task.name, e.status_changed.from_status) for e in marked) == [
        ("Late", "set"),
        ("Started", "in_progress"),
    ]
    # Taken up again without a new deadline: not marked again; the register still counts it overdue.
    assert (await move(api, late["id"], "in_progress")).json()["overdue"] is True
    assert (await scheduler.sweep()).overdue == 0
    overdue = (await api.get("/tasks", params={"overdue": "true"})).json()["items"]
    assert sorted(t["name"] for t in overdue) == ["Late", "Started"]


async def test_the_scheduler_runs_until_stopped(
    client: Client, agent: Principal, service: TaskService, clock: Clock
) -> None:
    api = client(agent)
    task = await create(api, end_at=(T0 - timedelta(minutes=1)).isoformat())
    stop = asyncio.Event()
    running = asyncio.create_task(TaskScheduler(service, interval=0.05).run(stop))
    try:
        for _ in range(200):
            if (await api.get(f"/tasks/{task['id']}")).json()["status"] == "overdue":
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=5)
    assert (await api.get(f"/tasks/{task['id']}")).json()["status"] == "overdue"


# --- repeats -------------------------------------------------------------------------------------


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("rule", "reference", "index", "expected"),
    [
        # Every other day at 09:00 in Kyiv, across the switch to summer time (29 March 2026).
        (Recurrence("daily", 2, tz=KYIV), "2026-03-28T07:00:00+00:00", 0, "2026-03-30T06:00:00+00:00"),
        (Recurrence("weekly", 1, (0, 3)), "2026-03-02T09:00:00+00:00", 0, "2026-03-05T09:00:00+00:00"),
        (Recurrence("weekly", 1, (0, 3)), "2026-03-05T09:00:00+00:00", 1, "2026-03-09T09:00:00+00:00"),
        (
            Recurrence("weekly", 2, (0, 3), anchor=date(2026, 3, 2)),
            "2026-03-05T09:00:00+00:00",
            1,
            "2026-03-16T09:00:00+00:00",
        ),
        (Recurrence("weekly", 1), "2026-03-02T09:00:00+00:00", 0, "2026-03-09T09:00:00+00:00"),
        # The 31st: the last day of shorter months, the 31st again when there is one.
        (
            Recurrence("monthly", 1, anchor=date(2026, 1, 31)),
            "2026-01-31T09:00:00+00:00",
            0,
            "2026-02-28T09:00:00+00:00",
        ),
        (
            Recurrence("monthly", 1, anchor=date(2026, 1, 31)),
            "2026-02-28T09:00:00+00:00",
            1,
            "2026-03-31T09:00:00+00:00",
        ),
        (Recurrence("daily", count=2), "2026-03-02T09:00:00+00:00", 1, None),
        (Recurrence("daily", until=date(2026, 3, 2)), "2026-03-02T09:00:00+00:00", 0, None),
    ],
)
def test_next_occurrence(rule: Recurrence, reference: str, index: int, expected: str | None) -> None:
    following = next_occurrence(rule, _at(reference), index)
    assert following == (_at(expected) if expected else None)


async def test_a_recurring_task_done_brings_its_next_occurrence_once(
    client: Client, agent: Principal, crm_db: Database
) -> None:
    api = client(agent)
    task = await create(
        api,
        name="Weekly report",
        start_at="2026-03-02T08:00:00Z",
        end_at="2026-03-02T15:00:00Z",
        executors=[{"employee_id": "emp-agent", "planned_minutes": 60}],
        recurrence={"freq": "weekly", "weekdays": [0, 2], "tz": KYIV, "count": 3},
        reminders=[{"before_end_minutes": 30}],
    )
    assert task["recurrence"]["anchor"] == "2026-03-02"
    await api.patch(f"/tasks/{task['id']}/executors/emp-agent", json={"status": "done", "add_minutes": 50})
    done = (await move(api, task["id"], "done")).json()
    following_id = done["next_occurrence_id"]
    following = (await api.get(f"/tasks/{following_id}")).json()
    assert (following["start_at"], following["end_at"]) == ("2026-03-04T08:00:00Z", "2026-03-04T15:00:00Z")
    assert (following["status"], following["series_id"], following["series_index"]) == ("set", task["id"], 1)
    assert [(e["status"], e["time_spent_minutes"], e["planned_minutes"]) for e in following["executors"]] == [
        ("set", 0, 60)
    ]
    reminders = (await api.get(f"/tasks/{following_id}/reminders")).json()
    assert [(r["remind_at"], r["before_end_minutes"]) for r in reminders] == [("2026-03-04T14:30:00Z", 30)]
    # Reopened and done again: still one next occurrence.
    await move(api, task["id"], "in_progress")
    await move(api, task["id"], "done", executors_too=True)
    assert len((await api.get("/tasks")).json()["items"]) == 2
    # The third is the last (count 3).
    await move(api, following_id, "done", executors_too=True)
    third_id = (await api.get(f"/tasks/{following_id}")).json()["next_occurrence_id"]
    assert (await api.get(f"/tasks/{third_id}")).json()["start_at"] == "2026-03-09T08:00:00Z"
    last = (await move(api, third_id, "done", executors_too=True)).json()
    assert last["next_occurrence_id"] is None
    created = [e.created.name for s, e in await events(crm_db) if s == "crm.task.created"]
    assert created == ["Weekly report"] * 3


# --- templates, copy, multiply -------------------------------------------------------------------


async def test_templates_give_new_tasks_their_fields(
    client: Client, agent: Principal, supervisor: Principal
) -> None:
    api = client(agent)
    template = await api.post(
        "/task-templates",
        json={
            "name": "Callback",
            "task": {
                "name": "Call back",
                "priority": "high",
                "executors": [{"employee_id": "emp-agent"}],
                "controller_id": "emp-sup",
                "duration_minutes": 120,
                "reminders": [{"before_end_minutes": 15, "email": True}],
            },
        },
    )
    assert template.status_code == 201, template.text
    template_id = template.json()["id"]
    bad = await api.post(
        "/task-templates", json={"name": "x", "task": {"reminders": [{"remind_at": "2026-03-02T00:00:00Z"}]}}
    )
    assert bad.status_code == 422

    task = await create(api, name="Call back about the order", template_id=template_id, contact_id="c-1")
    assert (task["name"], task["priority"], task["controller_id"]) == (
        "Call back about the order",
        "high",
        "emp-sup",
    )
    assert [e["employee_id"] for e in task["executors"]] == ["emp-agent"]
    assert (task["start_at"], task["end_at"]) == ("2026-03-02T09:00:00Z", "2026-03-02T11:00:00Z")
    assert task["template_id"] == template_id
    reminders = (await api.get(f"/tasks/{task['id']}/reminders")).json()
    assert {(r["remind_at"], r["email"]) for r in reminders} == {("2026-03-02T10:45:00Z", True)}

    saved = await api.post(f"/tasks/{task['id']}/template", json={"name": "From a task"})
    assert saved.status_code == 201
    assert saved.json()["task"]["duration_minutes"] == 120
    assert saved.json()["task"]["executors"] == [{"employee_id": "emp-agent"}]
    names = [t["name"] for t in (await api.get("/task-templates")).json()]
    assert names == ["Callback", "From a task"]
    stale = await api.patch(
        f"/task-templates/{template_id}", json={"name": "Renamed"}, headers={"If-Match": '"7"'}
    )
    assert stale.status_code == 412
    assert (await api.delete(f"/task-templates/{template_id}")).status_code == 403  # agents may not delete
    assert (await client(supervisor).delete(f"/task-templates/{template_id}")).status_code == 204
    assert (await api.get(f"/tasks/{task['id']}")).json()["template_id"] is None


async def test_copy_and_multiply(client: Client, agent: Principal, crm_db: Database) -> None:
    api = client(agent)
    task = await create(
        api,
        name="Offer the new plan",
        contact_id="c-1",
        phone="+359888000001",
        executors=[{"employee_id": "emp-agent"}],
        end_at="2026-03-06T12:00:00Z",
    )
    await api.patch(f"/tasks/{task['id']}/executors/emp-agent", json={"status": "in_progress"})
    await api.post(f"/tasks/{task['id']}/comments", json={"body": "first call done"})
    copied = await api.post(f"/tasks/{task['id']}/copy", json={"name": "Offer the new plan (again)"})
    assert copied.status_code == 201
    copy = copied.json()
    assert copy["id"] != task["id"]
    assert (copy["name"], copy["contact_id"], copy["end_at"]) == (
        "Offer the new plan (again)",
        "c-1",
        "2026-03-06T12:00:00Z",
    )
    assert [(e["employee_id"], e["status"]) for e in copy["executors"]] == [("emp-agent", "set")]
    assert (await api.get(f"/tasks/{copy['id']}/comments")).json() == []
    plain_copy = await api.post(f"/tasks/{task['id']}/copy")
    assert plain_copy.status_code == 201
    assert plain_copy.json()["name"] == "Offer the new plan"

    many = await api.post(
        f"/tasks/{task['id']}/multiply",
        json={"contacts": [{"contact_id": "c-2", "phone": "+359888000002"}, {"contact_id": "c-3"}]},
    )
    assert many.status_code == 201
    assert [(t["contact_id"], t["phone"], t["name"]) for t in many.json()] == [
        ("c-2", "+359888000002", "Offer the new plan"),
        ("c-3", None, "Offer the new plan"),
    ]
    twice = await api.post(
        f"/tasks/{task['id']}/multiply", json={"contacts": [{"contact_id": "c-4"}, {"contact_id": "c-4"}]}
    )
    assert twice.status_code == 422
    assert len((await api.get("/tasks")).json()["items"]) == 5
    assert [s for s, _ in await events(crm_db)].count("crm.task.created") == 5


# --- group operations ----------------------------------------------------------------------------


async def test_group_status_change_lists_each_tasks_outcome(client: Client, agent: Principal) -> None:
    api = client(agent)
    fresh = await create(api, name="Fresh")
    finished = await create(api, name="Finished")
    await move(api, finished["id"], "done")
    await move(api, finished["id"], "accepted")
    busy = await create(api, name="Busy", executors=[{"employee_id": "emp-2"}])
    stranger = make_principal("u-s", Role.AGENT, employee_id="emp-s")
    hidden = await create(client(stranger), name="Hidden")

    ids = [fresh["id"], finished["id"], busy["id"], hidden["id"]]
    answer = await api.post("/tasks/group/status", json={"task_ids": ids, "status": "done"})
    assert answer.status_code == 200
    body = answer.json()
    assert (body["succeeded"], body["failed"]) == (1, 3)
    outcome = {r["task_id"]: r for r in body["results"]}
    assert outcome[fresh["id"]]["ok"] is True
    assert outcome[fresh["id"]]["task"]["status"] == "done"
    assert outcome[finished["id"]]["status"] == 409
    assert outcome[finished["id"]]["details"]["allowed"] == []
    assert outcome[busy["id"]]["status"] == 409
    assert outcome[busy["id"]]["details"]["unfinished_executors"] == ["emp-2"]
    assert outcome[hidden["id"]]["status"] == 404
    assert (await api.get(f"/tasks/{busy['id']}")).json()["status"] == "set"

    again = await api.post(
        "/tasks/group/status", json={"task_ids": [busy["id"]], "status": "done", "executors_too": True}
    )
    assert again.json()["results"][0]["task"]["executors"][0]["status"] == "done"


async def test_group_executor_assignment(client: Client, agent: Principal) -> None:
    api = client(agent)
    tasks = [await create(api, name=f"T{n}", executors=[{"employee_id": "emp-agent"}]) for n in range(3)]
    ids = [task["id"] for task in tasks]
    added = await api.post(
        "/tasks/group/executors", json={"task_ids": ids[:2], "employee_ids": ["emp-2", "emp-3"]}
    )
    assert added.json()["succeeded"] == 2
    assert [e["employee_id"] for e in added.json()["results"][0]["task"]["executors"]] == [
        "emp-agent",
        "emp-2",
        "emp-3",
    ]
    distributed = await api.post(
        "/tasks/group/executors",
        json={"task_ids": ids, "employee_ids": ["emp-4", "emp-5"], "distribute": True, "replace": True},
    )
    assert [[e["employee_id"] for e in r["task"]["executors"]] for r in distributed.json()["results"]] == [
        ["emp-4"],
        ["emp-5"],
        ["emp-4"],
    ]
    # The agent no longer executes them but wrote them: still visible, still theirs to manage.
    unknown = await api.post("/tasks/group/executors", json={"task_ids": ["nope"], "employee_ids": ["emp-4"]})
    assert unknown.json()["results"][0]["status"] == 404
    no_right = make_principal(
        "u-agent", Role.AGENT, employee_id="emp-agent", rights=frozenset({"task.status"})
    )
    refused = await client(no_right).post(
        "/tasks/group/executors", json={"task_ids": ids, "employee_ids": ["x"]}
    )
    assert refused.status_code == 403


# --- tasks from events and calls -----------------------------------------------------------------


async def test_tasks_from_a_call_and_an_event_inherit_their_contact_phone_and_project(
    client: Client,
    agent: Principal,
    crm_db: Database,
    tmp_path: Path,
    clock: Clock,
    access: Access,
    token_for: Callable[[Principal], dict[str, str]],
) -> None:
    api = client(agent)
    from_call = await api.post(
        "/tasks/from-call/call-1", json={"contact_id": "c-1", "phone": "+359888123456", "project_id": "p-1"}
    )
    assert from_call.status_code == 201
    task = from_call.json()
    assert (task["call_id"], task["contact_id"], task["phone"], task["project_id"]) == (
        "call-1",
        "c-1",
        "+359888123456",
        "p-1",
    )
    assert task["name"] == "Follow up the call with +359888123456"
    calls = (await api.get(f"/tasks/{task['id']}/calls")).json()
    assert [(c["call_id"], c["source"]) for c in calls] == [("call-1", "created_from_call")]
    assert task["version"] == 1
    attached = await api.post(
        f"/tasks/{task['id']}/calls",
        json={"call_id": "call-2", "direction": "outbound", "started_at": "2026-03-02T10:00:00Z"},
    )
    assert attached.status_code == 200
    assert attached.json()["version"] == 2
    again = await api.post(f"/tasks/{task['id']}/calls", json={"call_id": "call-2"})
    assert again.json()["version"] == 2
    calls = (await api.get(f"/tasks/{task['id']}/calls")).json()
    # Newest call first; one whose time is not known last.
    assert [(c["call_id"], c["source"], c["direction"]) for c in calls] == [
        ("call-2", "manual", "outbound"),
        ("call-1", "created_from_call", None),
    ]

    # With a look-up of the journal and the call log, the source's values come by themselves.
    sources = {("event", "ev-1"): TaskSource(contact_id="c-9", phone="+380441234567", project_id="p-9")}

    async def lookup(kind: str, source_id: str) -> TaskSource | None:
        return sources.get((kind, source_id))

    looked_up = new_service(crm_db, tmp_path / "files", clock, source_lookup=lookup)
    async with api_clients(looked_up, access, token_for) as clients:
        other = clients(agent)
        inherited = await other.post(
            "/tasks/from-event/ev-1", json={"name": "Send the contract", "phone": "100"}
        )
        assert inherited.status_code == 201
        body = inherited.json()
        assert (body["event_id"], body["contact_id"], body["phone"], body["project_id"]) == (
            "ev-1",
            "c-9",
            "100",  # the request's value wins
            "p-9",
        )
        missing = await other.post("/tasks/from-event/ev-404", json={})
        assert missing.status_code == 404


# --- calendar and register -----------------------------------------------------------------------


async def test_the_calendar_counts_days_in_the_askers_time_zone(client: Client, agent: Principal) -> None:
    api = client(agent)
    late_evening = await create(
        api, name="Late evening", end_at="2026-03-02T22:30:00Z"
    )  # 00:30 on 3 March in Kyiv
    spanning = await create(
        api, name="Spanning", start_at="2026-03-04T08:00:00Z", end_at="2026-03-06T08:00:00Z"
    )
    await create(api, name="Next month", end_at="2026-04-02T10:00:00Z")
    await create(api, name="Undated")

    def days(body: dict[str, Any]) -> dict[str, list[str]]:
        return {day["date"]: day["task_ids"] for day in body["days"] if day["task_ids"]}

    kyiv = (
        await api.get("/tasks/calendar", params={"view": "week", "date": "2026-03-04", "tz": KYIV})
    ).json()
    assert (kyiv["first_day"], kyiv["last_day"], len(kyiv["days"])) == ("2026-03-02", "2026-03-08", 7)
    assert days(kyiv) == {
        "2026-03-03": [late_evening["id"]],
        "2026-03-04": [spanning["id"]],
        "2026-03-05": [spanning["id"]],
        "2026-03-06": [spanning["id"]],
    }
    utc = (await api.get("/tasks/calendar", params={"view": "day", "date": "2026-03-02"})).json()
    assert [t["name"] for t in utc["tasks"]] == ["Late evening"]
    month = (
        await api.get("/tasks/calendar", params={"view": "month", "date": "2026-03-20", "tz": KYIV})
    ).json()
    assert (month["first_day"], month["last_day"]) == ("2026-03-01", "2026-03-31")
    assert sorted(t["name"] for t in month["tasks"]) == ["Late evening", "Spanning"]
    bad = await api.get("/tasks/calendar", params={"tz": "Mars/Olympus"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "tz"]


async def test_the_register_filters_sorts_pages_and_counts(
    client: Client, agent: Principal, admin: Principal, clock: Clock
) -> None:
    api = client(agent)
    made = []
    for n in range(7):
        clock.now += timedelta(seconds=1)
        made.append(
            await create(
                api,
                name=f"Task {n}",
                priority=["low", "normal", "high"][n % 3],
                end_at=(T0 + timedelta(days=n - 2)).isoformat() if n != 3 else None,
                contact_id="c-1" if n % 2 else "c-2",
                project_id="p-1" if n < 4 else None,
                controller_id="emp-sup" if n == 5 else None,
                executors=[{"employee_id": "emp-x"}] if n == 6 else [],
            )
        )
    await move(api, made[4]["id"], "in_progress")

    async def names(**params: Any) -> list[str]:
        response = await api.get("/tasks", params=params)
        assert response.status_code == 200, response.text
        return [item["name"] for item in response.json()["items"]]

    assert await names(sort="created") == [f"Task {n}" for n in range(7)]
    # By deadline: tasks without one last.
    assert await names(sort="deadline") == [
        "Task 0",
        "Task 1",
        "Task 2",
        "Task 4",
        "Task 5",
        "Task 6",
        "Task 3",
    ]
    assert (await names(sort="priority"))[:2] == ["Task 5", "Task 2"]
    assert await names(priority="high", sort="created") == ["Task 2", "Task 5"]
    assert await names(contact_id="c-1", project_id="p-1", sort="created") == ["Task 1", "Task 3"]
    assert await names(status="in_progress") == ["Task 4"]
    assert await names(controller_id="emp-sup") == ["Task 5"]
    assert await names(executor_id="emp-x") == ["Task 6"]
    # Task 2 fell due at T0, a few seconds ago.
    assert await names(overdue="true", sort="created") == ["Task 0", "Task 1", "Task 2"]
    assert await names(q="task 6") == ["Task 6"]
    period = {"from": "2026-03-03T00:00:00Z", "to": "2026-03-05T00:00:00Z", "sort": "deadline"}
    assert await names(**period) == ["Task 4"]  # due 2026-03-04
    assert (
        await api.get("/tasks", params={"from": "2026-03-05T00:00:00Z", "to": "2026-03-04T00:00:00Z"})
    ).status_code == 422

    pages: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"sort": "deadline", "limit": 3, "include_total": "true"}
        if cursor:
            params["cursor"] = cursor
        body = (await api.get("/tasks", params=params)).json()
        assert body["total"] == 7
        assert body["by_status_group"] == {"set": 6, "in_progress": 1}
        assert body["overdue"] == 3
        pages.extend(item["name"] for item in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == await names(sort="deadline")
    other_sort = await api.get(
        "/tasks", params={"sort": "created", "cursor": cursor or body["next_cursor"] or "x.y"}
    )
    assert other_sort.status_code == 400
    first_page = (await api.get("/tasks", params={"sort": "deadline", "limit": 3})).json()
    wrong = await api.get("/tasks", params={"sort": "created", "cursor": first_page["next_cursor"]})
    assert wrong.status_code == 400
    assert len((await client(admin).get("/tasks")).json()["items"]) == 7
