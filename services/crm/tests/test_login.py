"""Log-in and refresh over REST: tokens whose claims come from the database, the same 401 for every
refusal, lock-out after failed attempts, refresh rotation with reuse detection, disabled users shut out,
rights changes reaching the token at the next refresh, argon2 rehash, and the first admin."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from sqlalchemy import select, update

from telecrm_common.auth import AuthSettings, Principal, Role, Visibility, default_rights
from telecrm_common.db import Database, utcnow
from telecrm_crm.access import Access
from telecrm_crm.audit import AuditLog
from telecrm_crm.login import LoginService, RefreshFailed, TokenPair
from telecrm_crm.login_api import login_router
from telecrm_crm.models import AuditEntry
from telecrm_crm.people import BootstrapError, Passwords, PeopleService
from telecrm_crm.people_api import people_router
from telecrm_crm.people_models import RefreshToken, User

SECRET = b"login-test-cursor-secret"
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "correct horse battery"
REFUSED = "log-in failed: the login or the password is wrong, or the account may not log in now"
Headers = Callable[[Principal], dict[str, str]]


@pytest.fixture
def people(crm_db: Database) -> PeopleService:
    return PeopleService(
        crm_db, audit=AuditLog("changes"), cursor_secret=SECRET, passwords=Passwords(FAST_HASHER)
    )


@pytest.fixture
def logins(crm_db: Database, auth_settings: AuthSettings) -> LoginService:
    return LoginService(
        crm_db,
        auth_settings=auth_settings,
        passwords=Passwords(FAST_HASHER),
        audit=AuditLog("changes"),
        max_failures=3,
        lockout=timedelta(minutes=10),
    )


@pytest.fixture
async def client(
    people: PeopleService, logins: LoginService, access: Access
) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(people_router(people, access))
    app.include_router(login_router(logins))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://crm") as client:
        yield client


@pytest.fixture
async def ada(people: PeopleService, admin: Principal) -> User:
    """An agent of the sales team (supervised by Sam), who may not change task status."""
    await people.create_team(admin, {"id": "team-sales", "name": "Sales"})
    await people.create_team(admin, {"id": "team-care", "name": "Care"})
    await people.create_employee(admin, {"id": "emp-sam", "name": "Sam", "team_id": "team-sales"})
    await people.update_team(admin, "team-care", {"supervisor_id": "emp-sam"})
    await people.update_team(admin, "team-sales", {"supervisor_id": "emp-sam"})
    await people.create_employee(
        admin, {"id": "emp-ada", "name": "Ada", "extension": "101", "team_id": "team-sales"}
    )
    return await people.create_user(
        admin,
        {
            "login": "ada",
            "password": PASSWORD,
            "roles": ["agent"],
            "employee_id": "emp-ada",
            "visibility": "team",
            "revoked_rights": ["task.status"],
        },
    )


async def log_in(client: httpx.AsyncClient, login: str = "ada", password: str = PASSWORD) -> httpx.Response:
    return await client.post("/auth/login", json={"login": login, "password": password})


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/auth/refresh", json={"refresh_token": token})


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def test_a_log_in_issues_tokens_whose_claims_come_from_the_database(
    client: httpx.AsyncClient, access: Access, people: PeopleService, admin: Principal, ada: User
) -> None:
    sam = await people.create_user(
        admin, {"login": "sam", "password": PASSWORD, "roles": ["supervisor"], "employee_id": "emp-sam"}
    )
    response = await log_in(client, " ADA ")  # logins are case-insensitive
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    tokens = response.json()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900
    assert tokens["refresh_expires_in"] == 14 * 24 * 3600

    principal = access.verifier.verify(tokens["access_token"])
    assert (principal.subject, principal.employee_id, principal.name) == (ada.id, "emp-ada", "Ada")
    assert principal.roles == {Role.AGENT}
    assert principal.team_ids == {"team-sales"}
    assert principal.visibility is Visibility.TEAM
    assert principal.rights == default_rights([Role.AGENT]) - {"task.status"}
    assert not principal.has("task.status")

    supervisor = access.verifier.verify((await log_in(client, "sam")).json()["access_token"])
    assert supervisor.supervised_team_ids == {"team-sales", "team-care"}
    assert supervisor.subject == sam.id

    me = await client.get("/me", headers=bearer(tokens))
    assert me.status_code == 200
    body = me.json()
    assert (body["login"], body["name"], body["employee"]["extension"]) == ("ada", "Ada", "101")
    assert "task.status" not in body["rights"]
    assert (body["visibility"], body["team_ids"], body["has_password"]) == ("team", ["team-sales"], True)
    async with people.db.session() as session:
        stored = await session.get(User, ada.id)
    assert stored is not None
    assert stored.last_login_at is not None


async def test_every_refusal_looks_the_same(
    client: httpx.AsyncClient, people: PeopleService, admin: Principal, ada: User
) -> None:
    await people.create_user(admin, {"login": "nopass", "roles": ["agent"]})  # identity provider only
    await people.create_user(
        admin, {"login": "gone", "password": PASSWORD, "roles": ["agent"], "disabled": True}
    )
    attempts = [
        ("ada", "wrong password!"),
        ("nobody", PASSWORD),
        ("nopass", PASSWORD),
        ("gone", PASSWORD),  # disabled, with the right password
        ("not a login!", PASSWORD),
    ]
    for login, password in attempts:
        response = await log_in(client, login, password)
        assert response.status_code == 401, login
        assert response.json() == {"detail": REFUSED}
    missing = await client.post("/auth/login", json={"login": "ada"})
    assert missing.status_code == 422
    assert [e["loc"] for e in missing.json()["detail"]] == [["body", "password"]]


async def test_failed_log_ins_lock_the_account_for_a_while(
    client: httpx.AsyncClient, crm_db: Database, admin: Principal, token_for: Headers, ada: User
) -> None:
    for _ in range(2):
        assert (await log_in(client, password="guess")).status_code == 401
    assert (await log_in(client)).status_code == 200  # a success forgets the failures
    for _ in range(3):
        assert (await log_in(client, password="guess")).status_code == 401
    locked = await log_in(client)  # the right password, but locked
    assert (locked.status_code, locked.json()["detail"]) == (401, REFUSED)
    async with crm_db.session() as session:
        user = await session.get(User, ada.id)
        assert user is not None
        assert user.locked_until is not None
        assert timedelta(minutes=9) < user.locked_until - utcnow() <= timedelta(minutes=10)
        lock = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "lock"))).one()
        assert lock.entity_id == ada.id

    # The lock ends by itself...
    async with crm_db.session() as session:
        await session.execute(
            update(User).where(User.id == ada.id).values(locked_until=utcnow() - timedelta(seconds=1))
        )
    assert (await log_in(client)).status_code == 200
    # ... or when an admin lifts it.
    for _ in range(3):
        await log_in(client, password="guess")
    assert (await log_in(client)).status_code == 401
    unlocked = await client.post(f"/users/{ada.id}/unlock", headers=token_for(admin))
    assert (unlocked.status_code, unlocked.json()["locked_until"]) == (200, None)
    assert (await log_in(client)).status_code == 200


async def test_a_refresh_token_is_used_once_and_its_reuse_ends_the_session(
    client: httpx.AsyncClient, crm_db: Database, ada: User
) -> None:
    first = (await log_in(client)).json()
    other_session = (await log_in(client)).json()
    second = await refresh(client, first["refresh_token"])
    assert second.status_code == 200, second.text
    second_tokens = second.json()
    assert second_tokens["refresh_token"] != first["refresh_token"]
    assert second_tokens["access_token"] != first["access_token"]
    third = (await refresh(client, second_tokens["refresh_token"])).json()

    # The first token again: someone copied it. The whole family ends, the latest token too.
    reused = await refresh(client, first["refresh_token"])
    assert reused.status_code == 401
    assert (await refresh(client, third["refresh_token"])).status_code == 401
    # The other log-in is another family and lives on.
    assert (await refresh(client, other_session["refresh_token"])).status_code == 200
    async with crm_db.session() as session:
        reasons = (
            await session.scalars(select(RefreshToken.revoked_reason).where(RefreshToken.user_id == ada.id))
        ).all()
    assert reasons.count("reuse") == 3  # the family's three tokens; the other log-in's two live on
    assert reasons.count(None) == 2
    assert (await refresh(client, "never-issued")).status_code == 401

    # Log-out ends a session; an expired token is refused.
    session_tokens = (await log_in(client)).json()
    assert (
        await client.post("/auth/logout", json={"refresh_token": session_tokens["refresh_token"]})
    ).status_code == 204
    assert (await refresh(client, session_tokens["refresh_token"])).status_code == 401
    assert (await client.post("/auth/logout", json={"refresh_token": "unknown"})).status_code == 204
    expiring = (await log_in(client)).json()
    async with crm_db.session() as session:
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.used_at.is_(None), RefreshToken.revoked_at.is_(None))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert (await refresh(client, expiring["refresh_token"])).status_code == 401


async def test_two_refreshes_racing_with_one_token_have_one_winner(
    client: httpx.AsyncClient, logins: LoginService, ada: User
) -> None:
    tokens = (await log_in(client)).json()
    results = await asyncio.gather(
        *(logins.refresh(tokens["refresh_token"]) for _ in range(2)), return_exceptions=True
    )
    winners = [result for result in results if isinstance(result, TokenPair)]
    assert len(winners) == 1, results
    assert [type(result) for result in results if not isinstance(result, TokenPair)] == [RefreshFailed]
    # The loser looked like a copied token: the session ended, the winner's new token included.
    assert (await refresh(client, winners[0].refresh_token)).status_code == 401


async def test_rights_changes_reach_the_token_at_the_next_refresh(
    client: httpx.AsyncClient, access: Access, admin: Principal, token_for: Headers, ada: User
) -> None:
    tokens = (await log_in(client)).json()
    assert not access.verifier.verify(tokens["access_token"]).has("task.status")
    response = await client.patch(
        f"/users/{ada.id}",
        json={"revoked_rights": ["task.modify"], "granted_rights": ["contact.delete"], "visibility": "own"},
        headers=token_for(admin),
    )
    assert response.status_code == 200, response.text
    refreshed = (await refresh(client, tokens["refresh_token"])).json()
    principal = access.verifier.verify(refreshed["access_token"])
    assert principal.has("task.status")
    assert principal.has("contact.delete")
    assert not principal.has("task.modify")
    assert principal.visibility is Visibility.OWN

    promoted = await client.patch(
        f"/users/{ada.id}", json={"roles": ["supervisor"]}, headers=token_for(admin)
    )
    assert promoted.status_code == 200
    principal = access.verifier.verify(
        (await refresh(client, refreshed["refresh_token"])).json()["access_token"]
    )
    assert principal.roles == {Role.SUPERVISOR}
    assert principal.has("task.delete")


async def test_a_disabled_user_can_neither_log_in_nor_refresh(
    client: httpx.AsyncClient, crm_db: Database, admin: Principal, token_for: Headers, ada: User
) -> None:
    tokens = (await log_in(client)).json()
    response = await client.patch(f"/users/{ada.id}", json={"disabled": True}, headers=token_for(admin))
    assert (response.status_code, response.json()["disabled"]) == (200, True)
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401
    assert (await log_in(client)).status_code == 401
    async with crm_db.session() as session:
        reasons = set((await session.scalars(select(RefreshToken.revoked_reason))).all())
    assert reasons == {"disabled"}
    await client.patch(f"/users/{ada.id}", json={"disabled": False}, headers=token_for(admin))
    assert (await log_in(client)).status_code == 200


async def test_changing_a_password_ends_the_sessions(client: httpx.AsyncClient, ada: User) -> None:
    tokens = (await log_in(client)).json()
    wrong = await client.post(
        "/me/password",
        json={"current_password": "not it at all", "new_password": "a brand new secret"},
        headers=bearer(tokens),
    )
    assert wrong.status_code == 422
    assert wrong.json()["detail"][0]["loc"] == ["body", "current_password"]
    weak = await client.post(
        "/me/password", json={"current_password": PASSWORD, "new_password": "short"}, headers=bearer(tokens)
    )
    assert weak.json()["detail"][0]["loc"] == ["body", "new_password"]
    changed = await client.post(
        "/me/password",
        json={"current_password": PASSWORD, "new_password": "a brand new secret"},
        headers=bearer(tokens),
    )
    assert changed.status_code == 204
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401
    assert (await log_in(client)).status_code == 401
    assert (await log_in(client, password="a brand new secret")).status_code == 200


async def test_a_hash_of_older_parameters_is_replaced_at_log_in(
    crm_db: Database, auth_settings: AuthSettings, people: PeopleService, ada: User
) -> None:
    stronger = Passwords(PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1))
    assert ada.password_hash is not None
    assert stronger.needs_rehash(ada.password_hash)
    service = LoginService(crm_db, auth_settings=auth_settings, passwords=stronger)
    pair = await service.login("ada", PASSWORD)
    assert pair.principal.employee_id == "emp-ada"
    async with crm_db.session() as session:
        user = await session.get(User, ada.id)
    assert user is not None
    assert user.password_hash is not None
    assert user.password_hash != ada.password_hash
    assert "t=2" in user.password_hash
    assert not stronger.needs_rehash(user.password_hash)
    assert (await service.login("ada", PASSWORD)).principal.subject == ada.id


async def test_the_first_admin_is_created_from_the_settings_once(
    client: httpx.AsyncClient, people: PeopleService, access: Access
) -> None:
    with pytest.raises(BootstrapError, match="CRM_BOOTSTRAP_ADMIN_PASSWORD"):
        await people.bootstrap_admin("admin", "")
    with pytest.raises(BootstrapError, match="at least 10 characters"):
        await people.bootstrap_admin("admin", "short")
    created = await people.bootstrap_admin("Admin", "the first admin's password")
    assert created is not None
    assert created.roles == ["admin"]
    assert await people.bootstrap_admin("admin", "another password!") is None
    assert await people.bootstrap_admin("admin", "") is None  # users exist: nothing is needed
    tokens = (await log_in(client, "admin", "the first admin's password")).json()
    principal = access.verifier.verify(tokens["access_token"])
    assert principal.is_admin
    assert principal.visibility is Visibility.ALL
    users = await client.get("/users", headers=bearer(tokens))
    assert [user["login"] for user in users.json()["items"]] == ["admin"]


async def test_the_api_documents_itself_without_leaking_dependencies(
    client: httpx.AsyncClient, crm_db: Database, ada: User
) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert {"/auth/login", "/auth/refresh", "/auth/logout", "/me", "/me/password", "/users/{user_id}"} <= set(
        spec["paths"]
    )
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            names = {parameter["name"] for parameter in operation.get("parameters", [])}
            assert not names & {"admin", "user", "principal", "user_agent"}, path
    # The user agent that logged in is kept with the session (to show and end sessions later).
    await client.post(
        "/auth/login", json={"login": "ada", "password": PASSWORD}, headers={"User-Agent": "softphone/2"}
    )
    async with crm_db.session() as session:
        clients = (await session.scalars(select(RefreshToken.client))).all()
    assert clients == ["softphone/2"]
