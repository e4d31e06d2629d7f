"""People and access over REST: admins manage employees, teams and users; every employee change is one
event with a growing version; others are refused with nothing changed; stale writes and bad bodies are
answered plainly."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from sqlalchemy import func, select

from telecrm.crm.v1 import directory_events_pb2 as directory_pb
from telecrm.crm.v1 import people_pb2
from telecrm_common.auth import Principal, Role, Visibility
from telecrm_common.db import Database
from telecrm_common.events import decode_directory_event
from telecrm_crm.access import Access
from telecrm_crm.audit import AuditLog
from telecrm_crm.models import AuditEntry, OutboxMessage
from telecrm_crm.people import Passwords, PeopleService
from telecrm_crm.people_api import people_router
from telecrm_crm.people_models import Employee, Team, User

SECRET = b"people-test-cursor-secret"
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
Headers = Callable[[Principal], dict[str, str]]


@pytest.fixture
def people(crm_db: Database) -> PeopleService:
    return PeopleService(
        crm_db, audit=AuditLog("changes"), cursor_secret=SECRET, passwords=Passwords(FAST_HASHER)
    )


@pytest.fixture
async def client(people: PeopleService, access: Access) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(people_router(people, access))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://crm") as client:
        yield client


@pytest.fixture
def as_admin(admin: Principal, token_for: Headers) -> dict[str, str]:
    return token_for(admin)


async def employee_events(db: Database) -> list[tuple[str, directory_pb.EmployeeEvent]]:
    """The employee events in the outbox, in the order they were written, decoded as consumers do."""
    async with db.session() as session:
        rows = (
            await session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.subject.like("crm.employee.%"))
                .order_by(OutboxMessage.seq)
            )
        ).all()
    found = []
    for row in rows:
        event = decode_directory_event(row.subject, row.payload)
        assert isinstance(event, directory_pb.EmployeeEvent)
        assert row.msg_id == event.event_id
        found.append((row.subject, event))
    return found


async def counts(db: Database) -> dict[str, int]:
    async with db.session() as session:
        return {
            model.__tablename__: int(await session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Employee, Team, User, OutboxMessage, AuditEntry)
        }


async def create(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], **body: Any
) -> dict[str, Any]:
    response = await client.post(path, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def field_errors(response: httpx.Response) -> list[tuple[str, ...]]:
    assert response.status_code == 422, response.text
    # (where, field): a list's item adds its index after the field ("roles", 0).
    return [tuple(str(part) for part in error["loc"][:2]) for error in response.json()["detail"]]


async def test_an_admin_manages_an_employee_and_each_change_is_one_event(
    client: httpx.AsyncClient, crm_db: Database, as_admin: dict[str, str]
) -> None:
    team = await create(client, "/teams", as_admin, name="Sales")
    response = await client.post(
        "/employees",
        json={
            "name": "Ivana Petrova",
            "email": "ivana@example.bg",
            "extension": "101",
            "team_id": team["id"],
        },
        headers=as_admin,
    )
    assert response.status_code == 201, response.text
    ivana = response.json()
    assert response.headers["Location"] == f"/employees/{ivana['id']}"
    assert response.headers["ETag"] == '"1"'
    assert (ivana["team_name"], ivana["extension"], ivana["active"], ivana["version"]) == (
        "Sales",
        "101",
        True,
        1,
    )

    response = await client.patch(
        f"/employees/{ivana['id']}", json={"name": "Ivana Georgieva", "version": 1}, headers=as_admin
    )
    assert response.status_code == 200, response.text
    assert (response.json()["name"], response.json()["version"]) == ("Ivana Georgieva", 2)
    # The same values again change nothing: no new version, no event.
    response = await client.patch(
        f"/employees/{ivana['id']}", json={"name": "Ivana Georgieva"}, headers=as_admin
    )
    assert response.json()["version"] == 2

    response = await client.delete(f"/employees/{ivana['id']}", headers={**as_admin, "If-Match": '"2"'})
    assert response.status_code == 204
    assert (await client.get(f"/employees/{ivana['id']}", headers=as_admin)).status_code == 404
    deleted = await client.get(f"/employees/{ivana['id']}?include_deleted=true", headers=as_admin)
    assert deleted.json()["deleted_at"] is not None
    assert (deleted.json()["active"], deleted.json()["extension"]) == (False, None)
    # Her extension is free for the next person.
    await create(client, "/employees", as_admin, name="Petar", extension="101")

    events = await employee_events(crm_db)
    assert [(subject, event.version) for subject, event in events[:3]] == [
        ("crm.employee.created", 1),
        ("crm.employee.updated", 2),
        ("crm.employee.deleted", 3),
    ]
    created = events[0][1].created
    assert (created.name, created.extension, created.team_id, created.team_name, created.active) == (
        "Ivana Petrova",
        "101",
        team["id"],
        "Sales",
        True,
    )
    assert created.email == "ivana@example.bg"
    assert events[2][1].deleted.employee_id == ivana["id"]
    assert len({event.event_id for _, event in events}) == len(events)

    async with crm_db.session() as session:
        actions = (
            await session.scalars(
                select(AuditEntry.action).where(AuditEntry.entity_id == ivana["id"]).order_by(AuditEntry.id)
            )
        ).all()
    assert actions == ["create", "update", "delete"]


async def test_a_stale_write_changes_nothing(
    client: httpx.AsyncClient, crm_db: Database, as_admin: dict[str, str]
) -> None:
    employee = await create(client, "/employees", as_admin, name="Olena", extension="205")
    path = f"/employees/{employee['id']}"
    assert (
        await client.patch(path, json={"extension": "206", "version": 1}, headers=as_admin)
    ).status_code == 200
    before = await counts(crm_db)

    stale_body = await client.patch(path, json={"name": "Someone else", "version": 1}, headers=as_admin)
    assert stale_body.status_code == 409
    assert "version is now 2" in stale_body.json()["detail"]
    assert stale_body.headers["ETag"] == '"2"'
    stale_header = await client.patch(
        path, json={"name": "Someone else"}, headers={**as_admin, "If-Match": '"1"'}
    )
    assert stale_header.status_code == 412
    stale_delete = await client.delete(path, headers={**as_admin, "If-Match": 'W/"1"'})
    assert stale_delete.status_code == 412

    assert await counts(crm_db) == before
    current = await client.get(path, headers=as_admin)
    assert (current.json()["name"], current.headers["ETag"]) == ("Olena", '"2"')
    ok = await client.patch(
        path, json={"active": False}, headers={**as_admin, "If-Match": current.headers["ETag"]}
    )
    assert (ok.status_code, ok.json()["active"], ok.json()["version"]) == (200, False, 3)

    # The team of an employee follows the same rule.
    team = await create(client, "/teams", as_admin, name="Support")
    await client.patch(f"/teams/{team['id']}", json={"name": "Care"}, headers=as_admin)
    response = await client.patch(
        f"/teams/{team['id']}", json={"name": "Help", "version": 1}, headers=as_admin
    )
    assert response.status_code == 409


async def test_a_team_rename_republishes_its_members_with_new_versions(
    client: httpx.AsyncClient, crm_db: Database, as_admin: dict[str, str]
) -> None:
    team = await create(client, "/teams", as_admin, name="Sales")
    anna = await create(client, "/employees", as_admin, name="Anna", team_id=team["id"])
    boris = await create(client, "/employees", as_admin, name="Boris", team_id=team["id"])
    await client.patch(f"/employees/{boris['id']}", json={"email": "boris@example.com"}, headers=as_admin)
    gone = await create(client, "/employees", as_admin, name="Gone", team_id=team["id"])
    assert (await client.delete(f"/employees/{gone['id']}", headers=as_admin)).status_code == 204
    outsider = await create(client, "/employees", as_admin, name="Outsider")

    response = await client.patch(f"/teams/{team['id']}", json={"name": "Sales & Care"}, headers=as_admin)
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2

    renamed = [
        (s, e)
        for s, e in await employee_events(crm_db)
        if s == "crm.employee.updated" and e.updated.team_name
    ]
    latest = {
        event.updated.employee_id: event for _, event in renamed if event.updated.team_name == "Sales & Care"
    }
    assert set(latest) == {anna["id"], boris["id"]}  # not the deleted one, not the outsider
    assert latest[anna["id"]].version == 2
    assert latest[boris["id"]].version == 3
    member = await client.get(f"/employees/{boris['id']}", headers=as_admin)
    assert (member.json()["team_name"], member.json()["version"]) == ("Sales & Care", 3)
    assert outsider["id"] not in latest

    # A change of supervisor only is the team's own event.
    before = len(await employee_events(crm_db))
    response = await client.patch(
        f"/teams/{team['id']}", json={"supervisor_id": anna["id"]}, headers=as_admin
    )
    assert response.json()["supervisor_id"] == anna["id"]
    assert len(await employee_events(crm_db)) == before
    async with crm_db.session() as session:
        team_rows = (
            await session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.subject.like("crm.team.%"))
                .order_by(OutboxMessage.seq)
            )
        ).all()
    versions = []
    for row in team_rows:
        event = people_pb2.TeamEvent.FromString(row.payload)
        versions.append((row.subject, event.version))
    assert versions == [("crm.team.created", 1), ("crm.team.updated", 2), ("crm.team.updated", 3)]

    # A team with members cannot be deleted; once empty it can, and deleted members forget it.
    refused = await client.delete(f"/teams/{team['id']}", headers=as_admin)
    assert refused.status_code == 409
    assert "2 employee(s)" in refused.json()["detail"]
    for member in (anna, boris):
        moved = await client.patch(f"/employees/{member['id']}", json={"team_id": None}, headers=as_admin)
        assert moved.json()["team_name"] is None
    # Anna supervises the team, which does not keep the team alive.
    assert (await client.delete(f"/teams/{team['id']}", headers=as_admin)).status_code == 204
    assert (await client.get(f"/teams/{team['id']}", headers=as_admin)).status_code == 404
    former = await client.get(f"/employees/{gone['id']}?include_deleted=true", headers=as_admin)
    assert former.json()["team_id"] is None
    async with crm_db.session() as session:
        last = (
            await session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.subject.like("crm.team.%"))
                .order_by(OutboxMessage.seq.desc())
            )
        ).first()
    assert last is not None
    assert (last.subject, people_pb2.TeamEvent.FromString(last.payload).version) == ("crm.team.deleted", 4)


async def test_non_admins_are_refused_and_nothing_changes(
    client: httpx.AsyncClient,
    crm_db: Database,
    as_admin: dict[str, str],
    supervisor: Principal,
    agent: Principal,
    token_for: Headers,
) -> None:
    employee = await create(client, "/employees", as_admin, name="Maria", extension="300")
    user = await create(
        client, "/users", as_admin, login="maria", roles=["agent"], employee_id=employee["id"]
    )
    team = await create(client, "/teams", as_admin, name="Ops")
    before = await counts(crm_db)
    for principal in (supervisor, agent):
        headers = token_for(principal)
        attempts = [
            client.post("/employees", json={"name": "Intruder"}, headers=headers),
            client.post("/employees", json={"name": ""}, headers=headers),  # invalid as well: still 403
            client.patch(f"/employees/{employee['id']}", json={"extension": "999"}, headers=headers),
            client.delete(f"/employees/{employee['id']}", headers=headers),
            client.post("/teams", json={"name": "Mine"}, headers=headers),
            client.patch(f"/teams/{team['id']}", json={"name": "Mine"}, headers=headers),
            client.delete(f"/teams/{team['id']}", headers=headers),
            client.get("/users", headers=headers),
            client.get(f"/users/{user['id']}", headers=headers),
            client.post("/users", json={"login": "x", "roles": ["admin"]}, headers=headers),
            client.patch(f"/users/{user['id']}", json={"roles": ["admin"]}, headers=headers),
            client.patch(f"/users/{user['id']}", json={"revoked_rights": []}, headers=headers),
            client.post(
                f"/users/{user['id']}/password", json={"password": "a-new-password-1"}, headers=headers
            ),
            client.post(f"/users/{user['id']}/unlock", headers=headers),
            client.delete(f"/users/{user['id']}", headers=headers),
        ]
        for attempt in attempts:
            response = await attempt
            assert response.status_code == 403, (response.request.method, response.request.url, response.text)
            assert response.json()["detail"] == "only admins manage people and access"
    assert (await client.post("/employees", json={"name": "Anonymous"})).status_code == 401
    assert await counts(crm_db) == before
    current = await client.get(f"/users/{user['id']}", headers=as_admin)
    assert (current.json()["roles"], current.json()["version"]) == (["agent"], 1)


async def test_invalid_bodies_are_answered_naming_the_field(
    client: httpx.AsyncClient, crm_db: Database, as_admin: dict[str, str]
) -> None:
    boss = await create(client, "/employees", as_admin, name="Boss")
    deputy = await create(client, "/employees", as_admin, name="Deputy", supervisor_id=boss["id"])
    await create(client, "/employees", as_admin, name="Holder", extension="100")
    before = await counts(crm_db)

    async def errors(method: str, path: str, body: dict[str, Any]) -> list[tuple[str, ...]]:
        return field_errors(await client.request(method, path, json=body, headers=as_admin))

    assert ("body", "name") in await errors("POST", "/employees", {"name": ""})
    assert ("body", "name") in await errors("POST", "/employees", {})
    assert ("body", "name") in await errors("POST", "/employees", {"name": "   "})
    assert ("body", "extension") in await errors("POST", "/employees", {"name": "A", "extension": "10a"})
    assert ("body", "email") in await errors("POST", "/employees", {"name": "A", "email": "not-an-address"})
    assert ("body", "team_id") in await errors("POST", "/employees", {"name": "A", "team_id": "no-such-team"})
    assert ("body", "supervisor_id") in await errors(
        "POST", "/employees", {"name": "A", "supervisor_id": "nobody"}
    )
    assert ("body", "nickname") in await errors("POST", "/employees", {"name": "A", "nickname": "x"})
    assert ("body", "id") in await errors("POST", "/employees", {"id": "../etc", "name": "A"})
    # Boss under Deputy would make a circle; nobody supervises themselves.
    assert ("body", "supervisor_id") in await errors(
        "PATCH", f"/employees/{boss['id']}", {"supervisor_id": deputy["id"]}
    )
    assert ("body", "supervisor_id") in await errors(
        "PATCH", f"/employees/{boss['id']}", {"supervisor_id": boss["id"]}
    )
    assert ("body", "name") in await errors("PATCH", f"/employees/{boss['id']}", {"name": None})
    assert ("body", "active") in await errors("PATCH", f"/employees/{boss['id']}", {"active": None})

    user = {"login": "ivan", "roles": ["agent"]}
    assert ("body", "roles") in await errors("POST", "/users", {**user, "roles": ["root"]})
    assert ("body", "roles") in await errors("POST", "/users", {**user, "roles": []})
    assert ("body", "revoked_rights") in await errors(
        "POST", "/users", {**user, "revoked_rights": ["task.fly"]}
    )
    assert ("body", "granted_rights") in await errors("POST", "/users", {**user, "granted_rights": ["x"]})
    assert ("body", "visibility") in await errors("POST", "/users", {**user, "visibility": "all"})
    assert ("body", "password") in await errors("POST", "/users", {**user, "password": "short"})
    assert ("body", "password") in await errors("POST", "/users", {**user, "password": "Ivan"})
    assert ("body", "login") in await errors("POST", "/users", {**user, "login": "has space"})
    assert ("body", "employee_id") in await errors("POST", "/users", {**user, "employee_id": "nobody"})
    both = {**user, "granted_rights": ["contact.delete"], "revoked_rights": ["contact.delete"]}
    assert ("body", "revoked_rights") in await errors("POST", "/users", both)

    # Duplicates are conflicts, not field errors.
    taken = await client.post("/employees", json={"name": "B", "extension": "100"}, headers=as_admin)
    assert taken.status_code == 409
    assert "belongs to employee" in taken.json()["detail"]
    assert (
        await client.post("/employees", json={"id": boss["id"], "name": "B"}, headers=as_admin)
    ).status_code == 409
    assert await counts(crm_db) == before

    bad_if_match = await client.patch(
        f"/employees/{boss['id']}", json={"name": "X"}, headers={**as_admin, "If-Match": "yesterday"}
    )
    assert field_errors(bad_if_match) == [("header", "If-Match")]


async def test_supervisors_list_their_teams_and_agents_what_their_visibility_allows(
    client: httpx.AsyncClient, as_admin: dict[str, str], token_for: Headers
) -> None:
    sales = await create(client, "/teams", as_admin, id="team-sales", name="Sales")
    await create(client, "/teams", as_admin, id="team-care", name="Care")
    for employee_id, name, team in (
        ("emp-sup", "Sam Supervisor", "team-sales"),
        ("emp-agent", "Ada Agent", "team-sales"),
        ("emp-colleague", "Cole Colleague", "team-sales"),
        ("emp-other", "Olga Other", "team-care"),
    ):
        await create(client, "/employees", as_admin, id=employee_id, name=name, team_id=team)
    supervisor = Principal(
        subject="u-sup",
        employee_id="emp-sup",
        roles=frozenset({Role.SUPERVISOR}),
        supervised_team_ids=frozenset({sales["id"]}),
    )
    own_agent = Principal(
        subject="u-a",
        employee_id="emp-agent",
        roles=frozenset({Role.AGENT}),
        team_ids=frozenset({"team-sales"}),
    )
    team_agent = Principal(
        subject="u-a",
        employee_id="emp-agent",
        roles=frozenset({Role.AGENT}),
        team_ids=frozenset({"team-sales"}),
        visibility=Visibility.TEAM,
    )

    async def names(principal: Principal, path: str = "/employees") -> list[str]:
        response = await client.get(path, headers=token_for(principal))
        assert response.status_code == 200, response.text
        return [item["name"] for item in response.json()["items"]]

    assert await names(supervisor) == ["Ada Agent", "Cole Colleague", "Sam Supervisor"]
    assert await names(own_agent) == ["Ada Agent"]
    assert await names(team_agent) == ["Ada Agent", "Cole Colleague", "Sam Supervisor"]
    assert await names(supervisor, "/teams") == ["Sales"]
    assert (await client.get("/employees/emp-other", headers=token_for(supervisor))).status_code == 404
    assert (await client.get("/employees/emp-colleague", headers=token_for(own_agent))).status_code == 404
    assert (await client.get("/employees/emp-colleague", headers=token_for(team_agent))).status_code == 200
    assert (
        await client.get("/employees?include_deleted=true", headers=token_for(supervisor))
    ).status_code == 403


async def test_lists_are_paged_filtered_and_counted(
    client: httpx.AsyncClient, as_admin: dict[str, str]
) -> None:
    team = await create(client, "/teams", as_admin, name="Night shift")
    for n in range(7):
        await create(
            client,
            "/employees",
            as_admin,
            name=f"Agent {n}",
            extension=f"40{n}",
            team_id=team["id"] if n % 2 else None,
        )
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, "include_total": True}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/employees", params=params, headers=as_admin)).json()
        assert page["total"] == 7
        seen += [item["name"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"Agent {n}" for n in range(7)]

    def query(**params: Any) -> Any:
        return client.get("/employees", params=params, headers=as_admin)

    assert [i["name"] for i in (await query(team_id=team["id"])).json()["items"]] == [
        "Agent 1",
        "Agent 3",
        "Agent 5",
    ]
    assert [i["name"] for i in (await query(extension="404")).json()["items"]] == ["Agent 4"]
    assert [i["name"] for i in (await query(q="NT 6")).json()["items"]] == ["Agent 6"]
    assert (await query(cursor="forged")).status_code == 400
    assert field_errors(await query(limit=0)) == [("query", "limit")]


async def test_users_rights_and_the_admins_that_must_remain(
    client: httpx.AsyncClient,
    crm_db: Database,
    admin: Principal,
    as_admin: dict[str, str],
    token_for: Headers,
) -> None:
    employee = await create(client, "/employees", as_admin, name="Taras", extension="510")
    agent = await create(
        client,
        "/users",
        as_admin,
        login="Taras.K",
        password="correct horse battery",
        roles=["agent"],
        employee_id=employee["id"],
        visibility="team",
        revoked_rights=["task.status"],
        granted_rights=["contact.delete"],
    )
    assert agent["login"] == "taras.k"
    assert "task.status" not in agent["rights"]
    assert {"contact.delete", "task.create", "task.modify"} <= set(agent["rights"])
    assert (agent["visibility"], agent["has_password"]) == ("team", True)

    duplicate = await client.post("/users", json={"login": "TARAS.k", "roles": ["agent"]}, headers=as_admin)
    assert duplicate.status_code == 409
    same_employee = await client.post(
        "/users",
        json={"login": "taras2", "roles": ["agent"], "employee_id": employee["id"]},
        headers=as_admin,
    )
    assert same_employee.status_code == 409
    linked = await client.delete(f"/employees/{employee['id']}", headers=as_admin)
    assert linked.status_code == 409
    assert "the user 'taras.k' is this employee" in linked.json()["detail"]

    filtered = await client.get("/users", params={"role": "agent"}, headers=as_admin)
    assert [u["login"] for u in filtered.json()["items"]] == ["taras.k"]

    # The only enabled admin can be neither disabled, demoted nor deleted.
    only_admin = await create(
        client, "/users", as_admin, login="root", password="a-long-admin-pass", roles=["admin"]
    )
    root = Principal(subject=only_admin["id"], roles=frozenset({Role.ADMIN}))
    for body in ({"disabled": True}, {"roles": ["supervisor"]}):
        response = await client.patch(f"/users/{only_admin['id']}", json=body, headers=token_for(root))
        assert response.status_code == 409, response.text
        assert "no enabled admin" in response.json()["detail"]
    own = await client.delete(f"/users/{only_admin['id']}", headers=token_for(root))
    assert own.status_code == 409
    # With a second admin, the first may go.
    await create(client, "/users", as_admin, login="second", roles=["admin", "supervisor"])
    assert (await client.delete(f"/users/{only_admin['id']}", headers=as_admin)).status_code == 204
    assert (await client.get(f"/users/{only_admin['id']}", headers=as_admin)).status_code == 404

    async with crm_db.session() as session:
        subjects = (
            await session.scalars(
                select(OutboxMessage.subject).where(OutboxMessage.subject.like("crm.user.%"))
            )
        ).all()
        audit = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.entity_kind == "user", AuditEntry.action == "create")
            )
        ).all()
    assert sorted(subjects) == ["crm.user.created"] * 3 + ["crm.user.deleted"]
    assert all("password_hash" not in entry.changes for entry in audit)
    assert any(entry.changes.get("password") == [None, "(set)"] for entry in audit)
    assert admin.subject != only_admin["id"]
