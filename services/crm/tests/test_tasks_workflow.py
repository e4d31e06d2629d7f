"""Tasks over the REST API: creating, editing, the status workflow and its refusals, dependencies,
history, visibility and the events each change publishes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from telecrm.crm.v1 import tasks_pb2
from telecrm_common.auth import Principal, Role, Visibility
from telecrm_common.db import Database
from telecrm_crm.access import Access
from telecrm_crm.attachments import AttachmentStore
from telecrm_crm.audit import AuditLog
from telecrm_crm.models import OutboxMessage
from telecrm_crm.tasks import TaskService
from telecrm_crm.tasks_api import tasks_router

from .conftest import make_principal

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
SECRET = b"tasks-test-cursor-secret"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def new_service(db: Database, files: Path, clock: Clock, **options: Any) -> TaskService:
    return TaskService(
        db,
        audit=AuditLog("changes"),
        attachments=AttachmentStore(files, max_bytes=10_000),
        cursor_secret=SECRET,
        clock=clock,
        **options,
    )


Client = Callable[[Principal], httpx.AsyncClient]


@contextlib.asynccontextmanager
async def api_clients(
    service: TaskService, access: Access, token_for: Callable[[Principal], dict[str, str]]
) -> AsyncIterator[Client]:
    """Clients of an in-process app with the tasks' router, each acting as a user."""
    app = FastAPI()
    app.include_router(tasks_router(service, access))
    clients: list[httpx.AsyncClient] = []

    def for_user(principal: Principal) -> httpx.AsyncClient:
        made = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://crm", headers=token_for(principal)
        )
        clients.append(made)
        return made

    try:
        yield for_user
    finally:
        for made in clients:
            await made.aclose()


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


async def events(db: Database) -> list[tuple[str, tasks_pb2.TaskEvent]]:
    async with db.session() as session:
        rows = (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.seq))).all()
    found = []
    for row in rows:
        if row.message_type == "telecrm.crm.v1.TaskEvent":
            event = tasks_pb2.TaskEvent()
            event.ParseFromString(row.payload)
            assert row.msg_id == event.event_id
            found.append((row.subject, event))
    return found


async def create(api: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "Call the customer back", **fields}
    response = await api.post("/tasks", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def move(api: httpx.AsyncClient, task_id: str, status: str, **extra: Any) -> httpx.Response:
    return await api.post(f"/tasks/{task_id}/status", json={"status": status, **extra})


# --- create, read, edit --------------------------------------------------------------------------


async def test_a_task_is_created_with_its_fields_and_published(
    client: Client, agent: Principal, crm_db: Database
) -> None:
    api = client(agent)
    task = await create(
        api,
        description="Offer the annual plan",
        start_at="2026-03-02T10:00:00+02:00",
        end_at="2026-03-03T18:00:00",  # no offset: UTC
        priority="high",
        controller_id="emp-sup",
        executors=[{"employee_id": "emp-agent", "planned_minutes": 30}, {"employee_id": "emp-2"}],
        contact_id="contact-1",
        phone="+7 (499) 369-04-39",
        project_id="project-1",
    )
    assert task["status"] == task["status_group"] == "set"
    assert task["start_at"] == "2026-03-02T08:00:00Z"
    assert task["end_at"] == "2026-03-03T18:00:00Z"
    assert [(e["employee_id"], e["status"], e["planned_minutes"]) for e in task["executors"]] == [
        ("emp-agent", "set", 30),
        ("emp-2", "set", None),
    ]
    assert (task["author_id"], task["owner_employee_id"], task["owner_team_id"]) == (
        "emp-agent",
        "emp-agent",
        "team-sales",
    )
    assert task["phone"] == "+7 (499) 369-04-39"  # kept as written
    assert task["version"] == 1

    got = await api.get(f"/tasks/{task['id']}")
    assert got.status_code == 200
    assert got.headers["ETag"] == '"1"'
    assert got.json() == task

    [(subject, event)] = await events(crm_db)
    assert subject == "crm.task.created"
    assert event.event_id == f"task:{task['id']}:v1:created"
    assert event.created.name == "Call the customer back"
    assert event.created.priority == "high"
    assert [e.employee_id for e in event.created.executors] == ["emp-agent", "emp-2"]
    assert event.actor == "u-agent"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": "  "}, "name"),
        ({"name": "x", "priority": "urgent"}, "priority"),
        ({"name": "x", "start_at": "2026-03-03T10:00:00Z", "end_at": "2026-03-02T10:00:00Z"}, "end_at"),
        ({"name": "x", "executors": [{"employee_id": "e1"}, {"employee_id": "e1"}]}, "executors"),
        ({"name": "x", "status": "done"}, "status"),
        ({"name": "x", "depends_on": ["no-such-task"]}, "depends_on"),
        ({"name": "x", "recurrence": {"freq": "daily"}}, "recurrence"),
        ({"name": "x", "end_at": "2026-03-03T10:00:00Z", "recurrence": {"freq": "yearly"}}, "recurrence"),
        ({"name": "x", "template_id": "no-such-template"}, "template_id"),
    ],
)
async def test_bad_fields_answer_422_naming_the_field(
    client: Client, agent: Principal, crm_db: Database, body: dict[str, Any], field: str
) -> None:
    response = await client(agent).post("/tasks", json=body)
    assert response.status_code == 422, response.text
    locations = [error["loc"] for error in response.json()["detail"]]
    assert any(field in location for location in locations), locations
    assert await events(crm_db) == []


async def test_creating_needs_the_right_and_changes_nothing_without_it(
    client: Client, crm_db: Database
) -> None:
    reader = make_principal("u-reader", Role.AGENT, employee_id="emp-r", rights=frozenset())
    response = await client(reader).post("/tasks", json={"name": "x"})
    assert response.status_code == 403
    assert "task.create" in response.json()["detail"]
    assert await events(crm_db) == []


async def test_an_idempotency_key_returns_the_first_task(client: Client, agent: Principal) -> None:
    api = client(agent)
    first = await api.post("/tasks", json={"name": "Once"}, headers={"Idempotency-Key": "k-1"})
    again = await api.post("/tasks", json={"name": "Once"}, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    listed = await api.get("/tasks")
    assert len(listed.json()["items"]) == 1


async def test_edits_are_optimistic_and_logged(client: Client, agent: Principal, crm_db: Database) -> None:
    api = client(agent)
    task = await create(api, end_at="2026-03-05T12:00:00Z")
    url = f"/tasks/{task['id']}"
    changed = await api.patch(url, json={"name": "Call back about the invoice", "phone": "0888 123 456"})
    assert changed.status_code == 200
    assert changed.json()["version"] == 2
    assert changed.headers["ETag"] == '"2"'

    stale = await api.patch(url, json={"priority": "low"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.json()["version"] == 2
    assert (await api.get(url)).json()["priority"] == "normal"

    fresh = await api.patch(url, json={"priority": "low", "end_at": None}, headers={"If-Match": '"2"'})
    assert fresh.status_code == 200
    assert (fresh.json()["priority"], fresh.json()["end_at"]) == ("low", None)

    status_in_patch = await api.patch(url, json={"status": "done"})
    assert status_in_patch.status_code == 422

    history = (await api.get(f"{url}/history")).json()
    assert [entry["action"] for entry in history] == ["create", "update", "update"]
    assert history[1]["changes"]["name"] == ["Call the customer back", "Call back about the invoice"]
    assert history[2]["changes"]["end_at"] == ["2026-03-05T12:00:00+00:00", None]
    assert history[1]["actor_subject"] == "u-agent"
    kinds = [(subject, event.version) for subject, event in await events(crm_db)]
    assert kinds == [("crm.task.created", 1), ("crm.task.updated", 2), ("crm.task.updated", 3)]


async def test_delete_needs_its_right_and_removes_the_task(
    client: Client, agent: Principal, supervisor: Principal, crm_db: Database
) -> None:
    task = await create(client(agent))
    refused = await client(agent).delete(f"/tasks/{task['id']}")  # agents may not delete by default
    assert refused.status_code == 403
    assert (await client(agent).get(f"/tasks/{task['id']}")).status_code == 200
    deleted = await client(supervisor).delete(f"/tasks/{task['id']}")
    assert deleted.status_code == 204
    assert (await client(supervisor).get(f"/tasks/{task['id']}")).status_code == 404
    subjects = [subject for subject, _ in await events(crm_db)]
    assert subjects == ["crm.task.created", "crm.task.deleted"]


# --- visibility ----------------------------------------------------------------------------------


async def test_users_see_their_own_their_teams_and_what_they_work_on(
    client: Client, agent: Principal, supervisor: Principal, admin: Principal
) -> None:
    other_agent = make_principal("u-other", Role.AGENT, employee_id="emp-other", teams=("team-support",))
    mine = await create(client(agent), name="Mine")
    theirs = await create(client(other_agent), name="Theirs")
    assigned = await create(
        client(other_agent), name="Assigned to me", executors=[{"employee_id": "emp-agent"}]
    )

    def names(response: httpx.Response) -> set[str]:
        return {item["name"] for item in response.json()["items"]}

    assert names(await client(agent).get("/tasks")) == {"Mine", "Assigned to me"}
    assert (await client(agent).get(f"/tasks/{theirs['id']}")).status_code == 404
    assert (await client(agent).patch(f"/tasks/{theirs['id']}", json={"name": "x"})).status_code == 404
    # The supervisor sees the sales team's task (the agent's), not the support team's.
    assert names(await client(supervisor).get("/tasks")) == {"Mine"}
    team_mate = make_principal("u-mate", Role.AGENT, employee_id="emp-mate", teams=("team-sales",))
    assert names(await client(team_mate).get("/tasks")) == set()
    team_view = make_principal(
        "u-mate", Role.AGENT, employee_id="emp-mate", teams=("team-sales",), visibility=Visibility.TEAM
    )
    assert names(await client(team_view).get("/tasks")) == {"Mine"}
    assert names(await client(admin).get("/tasks")) == {"Mine", "Theirs", "Assigned to me"}
    assert mine["id"]
    assert assigned["id"]


# --- the status workflow -------------------------------------------------------------------------


async def test_the_workflow_moves_a_task_and_refuses_forbidden_steps_with_the_allowed_ones(
    client: Client, agent: Principal, crm_db: Database
) -> None:
    api = client(agent)
    task = await create(api, controller_id="emp-agent")
    url = f"/tasks/{task['id']}"
    assert (await move(api, task["id"], "in_progress")).json()["status"] == "in_progress"
    assert (await move(api, task["id"], "suspended")).json()["status"] == "suspended"

    refused = await move(api, task["id"], "done")
    assert refused.status_code == 409
    body = refused.json()
    assert body["current_status"] == "suspended"
    assert sorted(body["allowed"]) == ["in_progress", "set"]
    assert "suspended" in body["detail"]
    assert "done" in body["detail"]
    assert (await api.get(url)).json()["status"] == "suspended"

    overdue = await move(api, task["id"], "overdue")  # only the sweep marks overdue
    assert overdue.status_code == 409
    unknown = await move(api, task["id"], "finished")
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "status"]

    await move(api, task["id"], "in_progress")
    done = await move(api, task["id"], "done")
    assert done.json()["status"] == "done"
    assert done.json()["done_at"] == "2026-03-02T09:00:00Z"
    accepted = await move(api, task["id"], "accepted")
    assert accepted.json()["status"] == "accepted"
    final = await move(api, task["id"], "in_progress")
    assert final.status_code == 409
    assert final.json()["allowed"] == []
    # The same status again changes nothing.
    same = await move(api, task["id"], "accepted")
    assert same.status_code == 200
    assert same.json()["version"] == accepted.json()["version"]

    changes = [
        (event.status_changed.from_status, event.status_changed.to_status)
        for subject, event in await events(crm_db)
        if subject == "crm.task.status_changed"
    ]
    assert changes == [
        ("set", "in_progress"),
        ("in_progress", "suspended"),
        ("suspended", "in_progress"),
        ("in_progress", "done"),
        ("done", "accepted"),
    ]
    history = (await api.get(f"{url}/history")).json()
    assert [entry["changes"]["status"] for entry in history if entry["action"] == "status"][-1] == [
        "done",
        "accepted",
    ]


async def test_without_the_status_right_nothing_changes(client: Client, crm_db: Database) -> None:
    no_status = make_principal(
        "u-ns", Role.AGENT, employee_id="emp-ns", rights=frozenset({"task.create", "task.modify"})
    )
    api = client(no_status)
    task = await create(api)
    before = await events(crm_db)
    refused = await move(api, task["id"], "in_progress")
    assert refused.status_code == 403
    assert "task.status" in refused.json()["detail"]
    group = await api.post("/tasks/group/status", json={"task_ids": [task["id"]], "status": "in_progress"})
    assert group.status_code == 403
    got = (await api.get(f"/tasks/{task['id']}")).json()
    assert (got["status"], got["version"]) == ("set", 1)
    assert await events(crm_db) == before


async def test_only_the_controller_accepts_or_the_author_when_there_is_none(
    client: Client, agent: Principal, supervisor: Principal
) -> None:
    controlled = await create(client(agent), controller_id="emp-sup")
    await move(client(agent), controlled["id"], "done")
    refused = await move(client(agent), controlled["id"], "accepted")
    assert refused.status_code == 403
    assert "emp-sup" in refused.json()["detail"]
    assert (await client(agent).get(f"/tasks/{controlled['id']}")).json()["status"] == "done"
    assert (await move(client(supervisor), controlled["id"], "accepted")).json()["status"] == "accepted"

    uncontrolled = await create(client(agent))
    await move(client(agent), uncontrolled["id"], "done")
    assert (await move(client(supervisor), uncontrolled["id"], "accepted")).status_code == 403
    assert (await move(client(agent), uncontrolled["id"], "accepted")).status_code == 200


async def test_a_task_is_done_only_when_its_executors_are(client: Client, agent: Principal) -> None:
    api = client(agent)
    task = await create(api, executors=[{"employee_id": "emp-agent"}, {"employee_id": "emp-2"}])
    url = f"/tasks/{task['id']}"
    mine = await api.patch(f"{url}/executors/emp-agent", json={"status": "done", "add_minutes": 25})
    assert mine.status_code == 200
    refused = await move(api, task["id"], "done")
    assert refused.status_code == 409
    assert refused.json()["unfinished_executors"] == ["emp-2"]

    # Another executor's line needs task.modify; an executor may change their own without it.
    helper = make_principal("u-2", Role.AGENT, employee_id="emp-2", rights=frozenset({"task.status"}))
    assert (
        await client(helper).patch(f"{url}/executors/emp-agent", json={"status": "set"})
    ).status_code == 403
    own = await client(helper).patch(f"{url}/executors/emp-2", json={"time_spent_minutes": 40})
    assert own.status_code == 200
    executors = {e["employee_id"]: e for e in own.json()["executors"]}
    assert (executors["emp-agent"]["time_spent_minutes"], executors["emp-2"]["time_spent_minutes"]) == (
        25,
        40,
    )

    done = await move(api, task["id"], "done", executors_too=True)
    assert done.status_code == 200
    assert [e["status"] for e in done.json()["executors"]] == ["done", "done"]


async def test_custom_statuses_behave_as_their_group(
    client: Client, admin: Principal, agent: Principal
) -> None:
    refused = await client(agent).post(
        "/task-statuses",
        json={"code": "waiting_client", "name": "Waiting for the client", "group": "suspended"},
    )
    assert refused.status_code == 403
    made = await client(admin).post(
        "/task-statuses",
        json={"code": "waiting_client", "name": "Waiting for the client", "group": "suspended"},
    )
    assert made.status_code == 201
    again = await client(admin).post(
        "/task-statuses", json={"code": "waiting_client", "name": "Again", "group": "set"}
    )
    assert again.status_code == 409
    assert (
        await client(admin).post("/task-statuses", json={"code": "late", "name": "Late", "group": "overdue"})
    ).status_code == 422
    statuses = {s["code"]: s for s in (await client(agent).get("/task-statuses")).json()}
    assert statuses["waiting_client"]["group"] == "suspended"
    assert statuses["done"]["builtin"] is True

    api = client(agent)
    task = await create(api)
    waiting = await move(api, task["id"], "waiting_client")
    assert (waiting.json()["status"], waiting.json()["status_group"]) == ("waiting_client", "suspended")
    refused_done = await move(api, task["id"], "done")
    assert refused_done.status_code == 409
    assert sorted(refused_done.json()["allowed"]) == ["in_progress", "set", "suspended"]
    filtered = await api.get("/tasks", params={"status_group": "suspended"})
    assert [item["id"] for item in filtered.json()["items"]] == [task["id"]]

    await client(admin).patch("/task-statuses/waiting_client", json={"active": False})
    await move(api, task["id"], "set")
    assert "waiting_client" not in (await move(api, task["id"], "accepted")).json()["allowed"]


# --- dependencies --------------------------------------------------------------------------------


async def test_a_task_waits_for_its_dependencies_and_cycles_are_refused(
    client: Client, agent: Principal, crm_db: Database
) -> None:
    api = client(agent)
    first = await create(api, name="Prepare the offer")
    second = await create(api, name="Send the offer", depends_on=[first["id"]])
    third = await create(api, name="Call about the offer")
    assert second["depends_on"] == second["waiting_for"] == [first["id"]]
    added = await api.post(f"/tasks/{third['id']}/dependencies", json={"depends_on": second["id"]})
    assert added.status_code == 200
    assert added.json()["depends_on"] == [second["id"]]

    cycle = await api.post(f"/tasks/{first['id']}/dependencies", json={"depends_on": third["id"]})
    assert cycle.status_code == 422
    error = cycle.json()["detail"][0]
    assert error["loc"] == ["body", "depends_on"]
    assert error["ctx"]["cycle"] == [first["id"], third["id"], second["id"], first["id"]]
    assert (await api.get(f"/tasks/{first['id']}")).json()["depends_on"] == []
    itself = await api.post(f"/tasks/{first['id']}/dependencies", json={"depends_on": first["id"]})
    assert itself.status_code == 422

    blocked = await move(api, second["id"], "in_progress")
    assert blocked.status_code == 409
    assert blocked.json()["waiting_for"] == [first["id"]]
    assert (await move(api, second["id"], "suspended")).status_code == 200  # not blocked

    await move(api, first["id"], "done")
    unblocked = await api.get(f"/tasks/{second['id']}")
    assert unblocked.json()["waiting_for"] == []
    assert (await move(api, second["id"], "in_progress")).status_code == 200

    removed = await api.delete(f"/tasks/{third['id']}/dependencies/{second['id']}")
    assert removed.status_code == 200
    assert removed.json()["depends_on"] == []
    assert (await api.delete(f"/tasks/{third['id']}/dependencies/{second['id']}")).status_code == 404
    # Deleting a task frees the tasks that waited for it.
    admin_like = make_principal("u-boss", Role.ADMIN, employee_id="emp-boss", visibility=Visibility.ALL)
    await api.post(f"/tasks/{third['id']}/dependencies", json={"depends_on": second["id"]})
    assert (await client(admin_like).delete(f"/tasks/{second['id']}")).status_code == 204
    assert (await api.get(f"/tasks/{third['id']}")).json()["depends_on"] == []


async def test_moving_the_deadline_brings_an_overdue_task_back(
    client: Client, agent: Principal, service: TaskService, clock: Clock
) -> None:
    from telecrm_crm.task_schedule import TaskScheduler

    api = client(agent)
    task = await create(api, end_at=(T0 + timedelta(hours=2)).isoformat())
    await move(api, task["id"], "in_progress")
    clock.now = T0 + timedelta(hours=3)
    assert (await TaskScheduler(service).sweep()).overdue == 1
    overdue = (await api.get(f"/tasks/{task['id']}")).json()
    assert (overdue["status"], overdue["overdue"]) == ("overdue", True)
    allowed = (await move(api, task["id"], "set")).json()["allowed"]
    assert sorted(allowed) == ["done", "in_progress", "suspended"]

    moved = await api.patch(f"/tasks/{task['id']}", json={"end_at": (T0 + timedelta(days=1)).isoformat()})
    assert (moved.json()["status"], moved.json()["overdue"]) == ("in_progress", False)


def test_the_openapi_document_describes_every_endpoint(service: TaskService, access: Access) -> None:
    app = FastAPI()
    app.include_router(tasks_router(service, access))
    paths = app.openapi()["paths"]
    assert {
        "/tasks",
        "/tasks/calendar",
        "/tasks/{task_id}/status",
        "/reminders/due",
        "/task-templates",
    } <= set(paths)
    assert "409" in paths["/tasks/{task_id}/status"]["post"]["responses"]
