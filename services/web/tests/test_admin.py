"""The numbers registry and the administration pages' JSON API against the real crm and calls: an admin
creates a user (who can then log in), a team, an employee and an extension; an agent reads the registry
but every change is refused (403) and the admin page is closed to them; crm's and calls' 422 name the
field and their 409 reaches the page."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from typing import Any

import httpx

from telecrm_web.admin import roles_and_rights

from .conftest import ADA, ADMIN_PASSWORD, RunningDesktop, Services, unique_number

NEW_PASSWORD = "a-new-users-password-1"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def unique_extension() -> str:
    return f"7{secrets.randbelow(10**6):06d}"


async def as_admin(desktop: RunningDesktop, client: httpx.AsyncClient) -> dict[str, str]:
    return {"X-CSRF-Token": await desktop.log_in(client, "admin", ADMIN_PASSWORD)}


async def register_extension(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]
) -> httpx.Response:
    """POST /api/numbers, waiting for calls to hear of a new employee from crm's events (422 until then)."""
    for _ in range(100):
        response = await client.post("/api/numbers", json=body, headers=headers)
        if response.status_code != 422 or "employee_id" not in response.text:
            return response
        await asyncio.sleep(0.1)
    return response


async def test_an_admin_creates_a_team_an_employee_a_user_who_logs_in_and_an_extension(
    desktop: RunningDesktop,
) -> None:
    async with desktop.client() as client:
        headers = await as_admin(desktop, client)
        team = await client.post("/api/admin/teams", json={"name": unique("Sales")}, headers=headers)
        assert team.status_code == 201, team.text
        team_id = team.json()["id"]
        employee = await client.post(
            "/api/admin/employees",
            json={"name": "Grace Hopper", "team_id": team_id, "extension": unique_extension()[:6]},
            headers=headers,
        )
        assert employee.status_code == 201, employee.text
        employee_id = employee.json()["id"]
        assert employee.json()["team_name"] == team.json()["name"]

        login = unique("grace")
        user = await client.post(
            "/api/admin/users",
            json={
                "login": login,
                "password": NEW_PASSWORD,
                "roles": ["supervisor"],
                "employee_id": employee_id,
            },
            headers=headers,
        )
        assert user.status_code == 201, user.text
        assert user.json()["roles"] == ["supervisor"]
        listed = await client.get("/api/admin/users", params={"q": login})
        assert [u["login"] for u in listed.json()["items"]] == [login]

        supervised = await client.patch(
            f"/api/admin/teams/{team_id}",
            json={"supervisor_id": employee_id, "version": team.json()["version"]},
            headers=headers,
        )
        assert supervised.status_code == 200, supervised.text
        members = await client.get("/api/admin/employees", params={"team_id": team_id})
        assert [m["id"] for m in members.json()["items"]] == [employee_id]

        extension = unique_extension()
        created = await register_extension(
            client, headers, {"number": extension, "label": "Sales desk", "employee_id": employee_id}
        )
        assert created.status_code == 201, created.text
        found = await client.get("/api/numbers", params={"kind": "internal", "number": extension})
        [row] = found.json()["items"]
        assert (row["number"], row["employee_name"], row["team_name"]) == (
            extension,
            "Grace Hopper",
            team.json()["name"],
        )

    async with desktop.client() as other:
        await desktop.log_in(other, login, NEW_PASSWORD)
        me = await other.get("/api/session")
        assert me.json()["employee_id"] == employee_id
        assert me.json()["roles"] == ["supervisor"]


async def test_an_admin_disables_a_user_and_sets_a_new_password(desktop: RunningDesktop) -> None:
    async with desktop.client() as client:
        headers = await as_admin(desktop, client)
        login = unique("temp")
        user = (
            await client.post(
                "/api/admin/users",
                json={"login": login, "password": NEW_PASSWORD, "roles": ["agent"]},
                headers=headers,
            )
        ).json()
        disabled = await client.patch(
            f"/api/admin/users/{user['id']}",
            json={"disabled": True, "version": user["version"]},
            headers=headers,
        )
        assert disabled.status_code == 200, disabled.text
        assert disabled.json()["disabled"] is True
        stale = await client.patch(
            f"/api/admin/users/{user['id']}",
            json={"disabled": False, "version": user["version"]},
            headers=headers,
        )
        assert stale.status_code == 409  # someone changed it since that version
        reset = await client.post(
            f"/api/admin/users/{user['id']}/password",
            json={"password": "another-password-2", "version": disabled.json()["version"]},
            headers=headers,
        )
        assert reset.status_code == 200, reset.text
        assert reset.json()["password_changed_at"]


async def test_an_agent_reads_the_registry_but_every_change_and_the_admin_area_answer_403(
    desktop: RunningDesktop, services: Services
) -> None:
    number = unique_number()
    contact = services.create_contact("Registry Person", number)
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        headers = {"X-CSRF-Token": csrf}
        for _ in range(100):  # calls reads contacts' numbers from crm's events
            listed = await client.get("/api/numbers", params={"contact_id": contact["id"]})
            if listed.json()["items"]:
                break
            await asyncio.sleep(0.1)
        [row] = listed.json()["items"]
        assert (row["kind"], row["contact_name"]) == ("contact", "Registry Person")

        refused = {
            "create extension": await client.post("/api/numbers", json={"number": "555"}, headers=headers),
            "edit extension": await client.patch("/api/numbers/any", json={"label": "x"}, headers=headers),
            "delete extension": await client.delete("/api/numbers/any", headers=headers),
            "list users": await client.get("/api/admin/users"),
            "create user": await client.post(
                "/api/admin/users",
                json={"login": unique("x"), "password": NEW_PASSWORD, "roles": ["admin"]},
                headers=headers,
            ),
            "disable user": await client.patch(
                "/api/admin/users/any", json={"disabled": True}, headers=headers
            ),
            "set password": await client.post(
                "/api/admin/users/any/password", json={"password": "x"}, headers=headers
            ),
            "create team": await client.post("/api/admin/teams", json={"name": unique("T")}, headers=headers),
            "rename team": await client.patch(
                "/api/admin/teams/web-team", json={"name": "x"}, headers=headers
            ),
            "delete team": await client.delete("/api/admin/teams/web-team", headers=headers),
            "create employee": await client.post("/api/admin/employees", json={"name": "X"}, headers=headers),
            "edit employee": await client.patch(
                f"/api/admin/employees/{ADA}", json={"extension": "999"}, headers=headers
            ),
            "roles": await client.get("/api/admin/roles"),
        }
        assert {what: r.status_code for what, r in refused.items()} == dict.fromkeys(refused, 403)

        page = await client.get("/admin")
        assert page.status_code == 403
        assert "Only administrators may open this page." in page.text
        assert 'href="/admin"' not in page.text  # the navigation hides it
        assert "/static/admin.js" not in page.text
        numbers = await client.get("/numbers")
        assert numbers.status_code == 200
        assert 'data-is-admin="false"' in numbers.text
        assert 'id="extension-form"' not in numbers.text
    with services.crm() as crm:
        assert crm.get(f"/employees/{ADA}").json()["extension"] == "201"  # nothing changed


async def test_the_admin_page_has_its_sections_and_links_the_telephony_settings(
    desktop: RunningDesktop,
) -> None:
    async with desktop.client() as client:
        assert (await client.get("/admin")).headers["location"] == "/login?next=/admin"
        assert (await client.get("/numbers")).headers["location"] == "/login?next=/numbers"
        await as_admin(desktop, client)
        page = await client.get("/admin")
        roles = await client.get("/api/admin/roles")
    assert page.status_code == 200
    for part in ('id="users"', 'id="teams"', 'id="employees"', 'id="roles"', 'href="/admin/telephony"'):
        assert part in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert roles.json() == roles_and_rights()
    agent = next(role for role in roles.json()["roles"] if role["name"] == "agent")
    assert "contact.delete" not in agent["rights"]
    assert "task.status" in agent["rights"]


async def test_refusals_name_the_field_422_and_duplicates_answer_409(desktop: RunningDesktop) -> None:
    async with desktop.client() as client:
        headers = await as_admin(desktop, client)
        cases = {
            "roles": await client.post(
                "/api/admin/users",
                json={"login": unique("x"), "password": NEW_PASSWORD, "roles": []},
                headers=headers,
            ),
            "granted_rights": await client.post(
                "/api/admin/users",
                json={"login": unique("x"), "roles": ["agent"], "granted_rights": ["everything"]},
                headers=headers,
            ),
            "extension": await client.post(
                "/api/admin/employees", json={"name": "Bad Extension", "extension": "12ab"}, headers=headers
            ),
            "name": await client.post("/api/admin/teams", json={"name": ""}, headers=headers),
            "number": await client.post("/api/numbers", json={"number": "12-ab"}, headers=headers),
        }
        for field, response in cases.items():
            assert response.status_code == 422, (field, response.text)
            assert [field] == [item["loc"][1] for item in response.json()["detail"]], (field, response.text)

        duplicate = await client.post(
            "/api/admin/users",
            json={"login": "ada", "password": NEW_PASSWORD, "roles": ["agent"]},
            headers=headers,
        )
        assert duplicate.status_code == 409
        assert "login" in duplicate.json()["detail"]
        extension = unique_extension()
        assert (
            await client.post("/api/numbers", json={"number": extension}, headers=headers)
        ).status_code == 201
        again = await client.post("/api/numbers", json={"number": extension}, headers=headers)
        assert again.status_code == 409
        assert "registered already" in again.json()["detail"]
