"""Projects over the REST API: who sees a project, who may change it, versions, work group, discussion,
attachments and the events each change publishes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from telecrm.crm.v1 import projects_pb2
from telecrm_common.auth import Principal, Role, Visibility
from telecrm_common.db import Database
from telecrm_crm.access import Access
from telecrm_crm.attachments import AttachmentStore
from telecrm_crm.audit import AuditLog
from telecrm_crm.models import OutboxMessage
from telecrm_crm.projects import ProjectService
from telecrm_crm.projects_api import projects_router
from telecrm_crm.projects_models import Project

from .conftest import CURSOR_SECRET, make_principal

Headers = Callable[[Principal], dict[str, str]]
PDF = b"%PDF-1.7\n" + b"x" * 200


@pytest.fixture
def service(crm_db: Database, tmp_path: Path) -> ProjectService:
    return ProjectService(
        crm_db,
        audit=AuditLog("changes"),
        attachments=AttachmentStore(tmp_path / "files", max_bytes=10_000),
        cursor_secret=CURSOR_SECRET,
    )


@pytest.fixture
async def client(service: ProjectService, access: Access) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(projects_router(service, access))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://crm") as http:
        yield http


@pytest.fixture
def outsider() -> Principal:
    return make_principal(
        "u-out", Role.AGENT, employee_id="emp-out", teams=("team-sales",), visibility=Visibility.TEAM
    )


async def _events(db: Database) -> list[tuple[str, projects_pb2.ProjectEvent]]:
    async with db.session() as session:
        rows = (await session.execute(select(OutboxMessage).order_by(OutboxMessage.seq))).scalars().all()
    events = []
    for row in rows:
        event = projects_pb2.ProjectEvent()
        event.ParseFromString(row.payload)
        assert row.msg_id == event.event_id
        events.append((row.subject, event))
    return events


async def _create(client: httpx.AsyncClient, headers: dict[str, str], **fields: object) -> dict[str, object]:
    body: dict[str, object] = {"name": "Kiev office PBX migration", **fields}
    response = await client.post("/projects", json=body, headers=headers)
    assert response.status_code == 201, response.text
    result: dict[str, object] = response.json()
    return result


async def test_a_project_is_seen_by_its_manager_controller_work_group_and_team_only(
    client: httpx.AsyncClient,
    service: ProjectService,
    token_for: Headers,
    admin: Principal,
    supervisor: Principal,
    agent: Principal,
    outsider: Principal,
) -> None:
    project = await _create(
        client,
        token_for(admin),
        start_date="2026-01-01",
        end_date="2026-06-30",
        manager_id="emp-manager",
        controller_id="emp-controller",
        customer_id="contact-42",
        default_event_type="visit",
        team_id="team-support",
        work_group=["emp-agent", "emp-agent", "emp-b"],
    )
    assert project["work_group"] == ["emp-agent", "emp-b"]
    assert (project["status"], project["version"], project["default_event_type"]) == ("active", 1, "visit")
    pid = str(project["id"])

    manager = make_principal("u-m", Role.AGENT, employee_id="emp-manager")
    controller = make_principal("u-c", Role.AGENT, employee_id="emp-controller")
    team_lead = make_principal("u-t", Role.SUPERVISOR, employee_id="emp-t", supervised=("team-support",))
    for who in (admin, agent, manager, controller, team_lead):
        response = await client.get(f"/projects/{pid}", headers=token_for(who))
        assert response.status_code == 200, who.subject
        assert await service.may_see_project(who, pid)
        listed = (await client.get("/projects", headers=token_for(who))).json()
        assert [item["id"] for item in listed["items"]] == [pid]
    # Same team as the agent, but not on the project: it does not exist for them.
    for who in (outsider, supervisor):
        assert (await client.get(f"/projects/{pid}", headers=token_for(who))).status_code == 404
        assert (await client.get("/projects", headers=token_for(who))).json()["items"] == []
        assert not await service.may_see_project(who, pid)
    assert not await service.may_see_project(admin, "no-such-project")
    assert (await client.get(f"/projects/{pid}")).status_code == 401


async def test_without_the_right_nothing_changes(
    client: httpx.AsyncClient, crm_db: Database, token_for: Headers, admin: Principal, agent: Principal
) -> None:
    project = await _create(client, token_for(admin), work_group=["emp-agent"])
    pid = project["id"]
    refused = [
        await client.post("/projects", json={"name": "Mine"}, headers=token_for(agent)),
        await client.patch(f"/projects/{pid}", json={"version": 1, "name": "x"}, headers=token_for(agent)),
        await client.post(
            f"/projects/{pid}/members", json={"employee_ids": ["e9"]}, headers=token_for(agent)
        ),
        await client.delete(f"/projects/{pid}", headers=token_for(agent)),
        await client.post(
            f"/projects/{pid}/attachments", files={"file": ("a.pdf", PDF)}, headers=token_for(agent)
        ),
    ]
    assert [r.status_code for r in refused] == [403] * 5
    assert "project.create" in refused[0].json()["detail"]
    current = (await client.get(f"/projects/{pid}", headers=token_for(agent))).json()
    assert current == project
    async with crm_db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Project)) == 1
    assert [subject for subject, _ in await _events(crm_db)] == ["crm.project.created"]


async def test_changes_need_the_current_version_and_are_logged_and_published(
    client: httpx.AsyncClient, crm_db: Database, token_for: Headers, supervisor: Principal
) -> None:
    headers = token_for(supervisor)
    project = await _create(client, headers, team_id="team-sales")
    assert project["manager_id"] == "emp-sup"  # the creator's employee unless given
    pid = project["id"]
    changed = await client.patch(
        f"/projects/{pid}",
        json={
            "version": 1,
            "name": "Sofia office PBX migration",
            "controller_id": "emp-c",
            "work_group": ["e1"],
        },
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["version"], changed.json()["work_group"]) == (2, ["e1"])
    stale = await client.patch(
        f"/projects/{pid}", json={"version": 1, "name": "Lost update"}, headers=headers
    )
    assert stale.status_code == 409
    assert stale.json()["detail"]["version"] == 2
    closed = await client.patch(f"/projects/{pid}", json={"version": 2, "status": "closed"}, headers=headers)
    assert (closed.json()["status"], closed.json()["version"]) == ("closed", 3)
    assert closed.json()["closed_at"] is not None
    same = await client.patch(f"/projects/{pid}", json={"version": 3, "status": "closed"}, headers=headers)
    assert same.json()["version"] == 3  # nothing changed, nothing published

    history = (await client.get(f"/projects/{pid}/history", headers=headers)).json()
    assert [entry["action"] for entry in history] == ["create", "update", "status"]
    assert history[1]["changes"]["name"] == ["Kiev office PBX migration", "Sofia office PBX migration"]
    assert history[1]["changes"]["work_group"] == [[], ["e1"]]
    assert history[2]["actor_subject"] == "u-sup"

    events = await _events(crm_db)
    assert [(subject, event.version) for subject, event in events] == [
        ("crm.project.created", 1),
        ("crm.project.updated", 2),
        ("crm.project.updated", 3),
    ]
    assert list(events[1][1].changed) == ["controller_id", "name", "work_group"]
    assert events[2][1].updated.status == "closed"
    assert events[1][1].event_id == f"project:{pid}:2"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "P", "start_date": "2026-05-01", "end_date": "2026-04-30"}, "end_date"),
        ({"name": ""}, "name"),
        ({}, "name"),
        ({"name": "P", "manager_id": "has space"}, "manager_id"),
        ({"name": "P", "status": "closed"}, "status"),  # a new project is active
    ],
)
async def test_bad_fields_are_named(
    client: httpx.AsyncClient, token_for: Headers, admin: Principal, body: dict[str, object], field: str
) -> None:
    response = await client.post("/projects", json=body, headers=token_for(admin))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == field


async def test_period_checked_against_the_stored_dates(
    client: httpx.AsyncClient, token_for: Headers, admin: Principal
) -> None:
    project = await _create(client, token_for(admin), start_date="2026-03-01")
    response = await client.patch(
        f"/projects/{project['id']}", json={"version": 1, "end_date": "2026-02-01"}, headers=token_for(admin)
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "end_date"]
    null_name = await client.patch(
        f"/projects/{project['id']}", json={"version": 1, "name": None}, headers=token_for(admin)
    )
    assert null_name.status_code == 422


async def test_work_group_members_come_and_go_and_see_the_project(
    client: httpx.AsyncClient, service: ProjectService, token_for: Headers, admin: Principal, agent: Principal
) -> None:
    project = await _create(client, token_for(admin))
    pid = str(project["id"])
    assert not await service.may_see_project(agent, pid)
    added = await client.post(
        f"/projects/{pid}/members", json={"employee_ids": ["emp-agent", "emp-x"]}, headers=token_for(admin)
    )
    assert added.json()["work_group"] == ["emp-agent", "emp-x"]
    assert await service.may_see_project(agent, pid)
    removed = await client.delete(f"/projects/{pid}/members/emp-agent", headers=token_for(admin))
    assert (removed.json()["work_group"], removed.json()["version"]) == (["emp-x"], 3)
    assert not await service.may_see_project(agent, pid)
    missing = await client.delete(f"/projects/{pid}/members/emp-agent", headers=token_for(admin))
    assert missing.status_code == 422


async def test_the_discussion_is_open_to_whoever_sees_the_project(
    client: httpx.AsyncClient,
    crm_db: Database,
    token_for: Headers,
    admin: Principal,
    agent: Principal,
    outsider: Principal,
) -> None:
    project = await _create(client, token_for(admin), work_group=["emp-agent"])
    pid = project["id"]
    posted = await client.post(
        f"/projects/{pid}/comments", json={"text": "Trunk cut-over on Friday?"}, headers=token_for(agent)
    )
    assert posted.status_code == 201
    await client.post(f"/projects/{pid}/comments", json={"text": "Yes, 18:00."}, headers=token_for(admin))
    refused = await client.post(f"/projects/{pid}/comments", json={"text": "hi"}, headers=token_for(outsider))
    assert refused.status_code == 404
    comments = (await client.get(f"/projects/{pid}/comments", headers=token_for(agent))).json()
    assert [(c["author_employee_id"], c["text"]) for c in comments] == [
        ("emp-agent", "Trunk cut-over on Friday?"),
        ("emp-admin", "Yes, 18:00."),
    ]
    events = await _events(crm_db)
    assert [list(event.changed) for _, event in events[1:]] == [["comments"], ["comments"]]
    assert {event.version for _, event in events} == {1}  # the card did not change


async def test_attachments_are_checked_stored_and_served_as_downloads(
    client: httpx.AsyncClient, token_for: Headers, admin: Principal, outsider: Principal
) -> None:
    headers = token_for(admin)
    pid = (await _create(client, headers))["id"]
    uploaded = await client.post(
        f"/projects/{pid}/attachments",
        files={"file": ("../../plan.pdf", PDF, "application/pdf")},
        headers=headers,
    )
    assert uploaded.status_code == 201, uploaded.text
    attachment = uploaded.json()
    assert (attachment["filename"], attachment["content_type"], attachment["size"]) == (
        "plan.pdf",
        "application/pdf",
        len(PDF),
    )
    exe = await client.post(
        f"/projects/{pid}/attachments",
        files={"file": ("setup.pdf", b"MZ\x90\x00" + b"\x00" * 50)},
        headers=headers,
    )
    assert exe.status_code == 415
    big = await client.post(
        f"/projects/{pid}/attachments", files={"file": ("big.pdf", PDF * 100)}, headers=headers
    )
    assert big.status_code == 413
    listed = (await client.get(f"/projects/{pid}/attachments", headers=headers)).json()
    assert [a["id"] for a in listed] == [attachment["id"]]

    url = f"/projects/{pid}/attachments/{attachment['id']}"
    downloaded = await client.get(url, headers=headers)
    assert downloaded.status_code == 200
    assert downloaded.content == PDF
    assert downloaded.headers["content-disposition"].startswith("attachment;")
    assert downloaded.headers["x-content-type-options"] == "nosniff"
    assert (await client.get(url, headers=token_for(outsider))).status_code == 404
    other = (await _create(client, headers, name="Other"))["id"]
    assert (
        await client.get(f"/projects/{other}/attachments/{attachment['id']}", headers=headers)
    ).status_code == 404

    assert (await client.delete(url, headers=headers)).status_code == 204
    assert (await client.get(url, headers=headers)).status_code == 404


async def test_deleting_a_project_removes_it_and_says_so(
    client: httpx.AsyncClient, crm_db: Database, service: ProjectService, token_for: Headers, admin: Principal
) -> None:
    headers = token_for(admin)
    pid = str((await _create(client, headers, work_group=["e1"]))["id"])
    await client.post(f"/projects/{pid}/comments", json={"text": "note"}, headers=headers)
    await client.post(f"/projects/{pid}/attachments", files={"file": ("a.pdf", PDF)}, headers=headers)
    assert (await client.delete(f"/projects/{pid}?version=7", headers=headers)).status_code == 409
    assert (await client.delete(f"/projects/{pid}?version=1", headers=headers)).status_code == 204
    assert (await client.get(f"/projects/{pid}", headers=headers)).status_code == 404
    assert not await service.may_see_project(admin, pid)
    subject, event = (await _events(crm_db))[-1]
    assert (subject, event.deleted.project_id, event.event_id) == (
        "crm.project.deleted",
        pid,
        f"project:{pid}:deleted",
    )
    assert (await client.delete(f"/projects/{pid}", headers=headers)).status_code == 404


async def test_the_register_filters_and_pages(
    client: httpx.AsyncClient, token_for: Headers, admin: Principal
) -> None:
    headers = token_for(admin)
    old = await _create(
        client, headers, name="Old call centre", start_date="2025-01-01", end_date="2025-12-31"
    )
    await _create(
        client, headers, name="New IVR", start_date="2026-01-01", work_group=["emp-7"], customer_id="c1"
    )
    await _create(client, headers, name="Callback rules")
    closed = await client.patch(
        f"/projects/{old['id']}", json={"version": 1, "status": "closed"}, headers=headers
    )
    assert closed.status_code == 200

    async def names(**params: object) -> list[str]:
        response = await client.get("/projects", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return [item["name"] for item in response.json()["items"]]

    assert await names() == ["Callback rules", "New IVR", "Old call centre"]
    assert await names(status="active") == ["Callback rules", "New IVR"]
    assert await names(member_id="emp-7") == ["New IVR"]
    assert await names(customer_id="c1") == ["New IVR"]
    assert await names(name="CALL") == ["Callback rules", "Old call centre"]
    assert await names(active_on="2026-02-01") == ["Callback rules", "New IVR"]
    assert await names(manager_id="emp-admin") == ["Callback rules", "New IVR", "Old call centre"]

    first = (
        await client.get("/projects", params={"limit": 2, "include_total": True}, headers=headers)
    ).json()
    assert ([p["name"] for p in first["items"]], first["total"]) == (["Callback rules", "New IVR"], 3)
    second = (
        await client.get("/projects", params={"limit": 2, "cursor": first["next_cursor"]}, headers=headers)
    ).json()
    assert ([p["name"] for p in second["items"]], second["next_cursor"]) == (["Old call centre"], None)
    tampered = await client.get("/projects", params={"cursor": "x" + first["next_cursor"]}, headers=headers)
    assert tampered.status_code == 400
