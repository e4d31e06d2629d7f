"""The numbers registry page (``/numbers``, every user) and the administration page (``/admin``, admins),
with the JSON API they use (``/api/numbers``, ``/api/directory/...``, ``/api/admin/...``).

The registry is the calls service's (extensions with their employee, contacts' numbers read from crm);
people and access are crm's (users, teams, employees). Every route forwards to them with the user's
own token, so they decide and validate: their 403, 404, 409 and 422 (naming the field) reach the page
as they are. ``/api/admin/...`` also answers 403 itself to a user who is not an admin, before anything
is forwarded: those routes are the admin page's, and a non-admin never gets that far in the page.

Roles are fixed (admin, supervisor, agent) and their default rights are the suite's own
(:data:`telecrm_common.auth.ROLE_DEFAULT_RIGHTS`); crm grants or revokes rights per user on top.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request, Response

from telecrm_common.auth import ALL_RIGHTS, DOCUMENT_KINDS, ROLE_DEFAULT_RIGHTS, TASK_STATUS_RIGHT, Role
from telecrm_web.api import PAGE_SIZE_MAX, Forwarder, upstream_path
from telecrm_web.pages import Pages
from telecrm_web.sessions import Session

EMPLOYEES_PAGE_MAX = 500  # crm's largest page: the choosers of an employee load one page of them
Json = Annotated[dict[str, Any], Body()]
Cursor = Annotated[str | None, Query(max_length=1024)]


def roles_and_rights() -> dict[str, Any]:
    """Every right there is, and each role's defaults, in a stable order for the page's table."""
    ordered = [f"{kind}.{action}" for kind in DOCUMENT_KINDS for action in ("create", "modify", "delete")]
    ordered.append(TASK_STATUS_RIGHT)
    assert set(ordered) == ALL_RIGHTS
    return {
        "rights": ordered,
        "roles": [
            {"name": str(role), "rights": [r for r in ordered if r in ROLE_DEFAULT_RIGHTS[role]]}
            for role in (Role.ADMIN, Role.SUPERVISOR, Role.AGENT)
        ],
    }


def admin_router(pages: Pages, forwarder: Forwarder) -> APIRouter:
    router = APIRouter()
    guard = pages.guard
    upstream = forwarder.upstream
    signed_in = Depends(guard.api_session)

    is_admin = Depends(guard.admin_session)

    # --- pages -----------------------------------------------------------------------------------------

    @router.get("/numbers", include_in_schema=False)
    async def numbers_page(request: Request) -> Response:
        return pages.signed_in_page(request, "numbers.html", "numbers", "num_title")

    @router.get("/admin", include_in_schema=False)
    async def admin_page(request: Request) -> Response:
        return pages.signed_in_page(
            request, "admin.html", "admin", "adm_title", admins_only=True, rights=roles_and_rights()
        )

    # --- the numbers registry (calls) ---------------------------------------------------------------

    @router.get("/api/numbers", tags=["numbers"], summary="The numbers registry (calls' GET /numbers)")
    async def list_numbers(
        kind: Annotated[Literal["internal", "contact"] | None, Query()] = None,
        employee_id: Annotated[str | None, Query(max_length=128)] = None,
        contact_id: Annotated[str | None, Query(max_length=128)] = None,
        number: Annotated[str | None, Query(max_length=64, description="Digits anywhere in it")] = None,
        cursor: Cursor = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX)] = 25,
        session: Session = signed_in,
    ) -> Response:
        params = {
            "kind": kind,
            "employee_id": employee_id,
            "contact_id": contact_id,
            "number": (number or "").strip() or None,
            "cursor": cursor,
            "limit": limit,
        }
        return await forwarder.forward(session, upstream.calls, "GET", "/numbers", params=params)

    @router.post(
        "/api/numbers",
        tags=["numbers"],
        status_code=201,
        summary="Register an extension (admins; calls' POST /numbers)",
        description="`{number, label?, employee_id?}`; 409 when the extension is registered already.",
    )
    async def create_extension(body: Json, session: Session = signed_in) -> Response:
        return await forwarder.forward(session, upstream.calls, "POST", "/numbers", json=body)

    @router.patch(
        "/api/numbers/{number_id}",
        tags=["numbers"],
        summary="Edit an extension (admins)",
        description="`{number?, label?, employee_id?, version}`: 409 when it changed since you read it.",
    )
    async def update_extension(number_id: str, body: Json, session: Session = signed_in) -> Response:
        return await forwarder.forward(
            session, upstream.calls, "PATCH", upstream_path("numbers", number_id), json=body
        )

    @router.delete(
        "/api/numbers/{number_id}", tags=["numbers"], status_code=204, summary="Delete an extension (admins)"
    )
    async def delete_extension(
        number_id: str,
        version: Annotated[int | None, Query(ge=1)] = None,
        session: Session = signed_in,
    ) -> Response:
        return await forwarder.forward(
            session,
            upstream.calls,
            "DELETE",
            upstream_path("numbers", number_id),
            params={"version": version},
        )

    @router.get(
        "/api/directory/employees",
        tags=["numbers"],
        summary="The employees the user may see, by name (crm's GET /employees)",
    )
    async def directory_employees(
        q: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=EMPLOYEES_PAGE_MAX)] = EMPLOYEES_PAGE_MAX,
        session: Session = signed_in,
    ) -> Response:
        params = {"q": (q or "").strip() or None, "active": "true", "limit": limit}
        return await forwarder.forward(session, upstream.crm, "GET", "/employees", params=params)

    # --- users (crm) -----------------------------------------------------------------------------------

    @router.get("/api/admin/users", tags=["admin"], summary="Users, by login (crm's GET /users)")
    async def list_users(
        q: Annotated[str | None, Query(max_length=200, description="Part of the login")] = None,
        role: Annotated[Literal["admin", "supervisor", "agent"] | None, Query()] = None,
        disabled: Annotated[bool | None, Query()] = None,
        cursor: Cursor = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX)] = 25,
        session: Session = is_admin,
    ) -> Response:
        params = {
            "q": (q or "").strip() or None,
            "role": role,
            "disabled": None if disabled is None else str(disabled).lower(),
            "cursor": cursor,
            "limit": limit,
            "include_total": "true" if not cursor else None,
        }
        return await forwarder.forward(session, upstream.crm, "GET", "/users", params=params)

    @router.post(
        "/api/admin/users",
        tags=["admin"],
        status_code=201,
        summary="Add a user (crm's POST /users)",
        description="`{login, password, roles, employee_id?, visibility?, granted_rights?, "
        "revoked_rights?}`; 409 when the login is taken or the employee is another user already.",
    )
    async def create_user(body: Json, session: Session = is_admin) -> Response:
        return await forwarder.forward(session, upstream.crm, "POST", "/users", json=body)

    @router.patch(
        "/api/admin/users/{user_id}",
        tags=["admin"],
        summary="Change a user's roles, rights, employee, or disable / enable them (crm's PATCH /users/{id})",
        description="Send the `version` you read: 409 when someone changed the user since. Disabling ends "
        "the user's sessions; the last enabled admin cannot be disabled or demoted (409).",
    )
    async def update_user(user_id: str, body: Json, session: Session = is_admin) -> Response:
        return await forwarder.forward(
            session, upstream.crm, "PATCH", upstream_path("users", user_id), json=body
        )

    @router.post(
        "/api/admin/users/{user_id}/password",
        tags=["admin"],
        summary="Set a new password for a user (crm's POST /users/{id}/password)",
        description="Also lifts a lock-out and ends the user's sessions.",
    )
    async def set_password(user_id: str, body: Json, session: Session = is_admin) -> Response:
        return await forwarder.forward(
            session, upstream.crm, "POST", upstream_path("users", user_id, "password"), json=body
        )

    @router.post(
        "/api/admin/users/{user_id}/unlock",
        tags=["admin"],
        summary="Lift a lock-out after failed log-ins (crm's POST /users/{id}/unlock)",
    )
    async def unlock_user(user_id: str, session: Session = is_admin) -> Response:
        return await forwarder.forward(
            session, upstream.crm, "POST", upstream_path("users", user_id, "unlock")
        )

    @router.get("/api/admin/roles", tags=["admin"], summary="The roles and the rights each has by default")
    async def roles(_session: Session = is_admin) -> dict[str, Any]:
        return roles_and_rights()

    # --- teams (crm) -----------------------------------------------------------------------------------

    @router.get("/api/admin/teams", tags=["admin"], summary="Teams, by name (crm's GET /teams)")
    async def list_teams(
        q: Annotated[str | None, Query(max_length=200)] = None,
        cursor: Cursor = None,
        limit: Annotated[int, Query(ge=1, le=EMPLOYEES_PAGE_MAX)] = 25,
        session: Session = is_admin,
    ) -> Response:
        params = {
            "q": (q or "").strip() or None,
            "cursor": cursor,
            "limit": limit,
            "include_total": "true" if not cursor else None,
        }
        return await forwarder.forward(session, upstream.crm, "GET", "/teams", params=params)

    @router.post(
        "/api/admin/teams",
        tags=["admin"],
        status_code=201,
        summary="Add a team (crm's POST /teams)",
        description="`{name, supervisor_id?}`; 409 when a team has the name already.",
    )
    async def create_team(body: Json, session: Session = is_admin) -> Response:
        return await forwarder.forward(session, upstream.crm, "POST", "/teams", json=body)

    @router.patch(
        "/api/admin/teams/{team_id}",
        tags=["admin"],
        summary="Rename a team or change its supervisor (crm's PATCH /teams/{id})",
    )
    async def update_team(team_id: str, body: Json, session: Session = is_admin) -> Response:
        return await forwarder.forward(
            session, upstream.crm, "PATCH", upstream_path("teams", team_id), json=body
        )

    @router.delete(
        "/api/admin/teams/{team_id}",
        tags=["admin"],
        status_code=204,
        summary="Delete a team without members (crm's DELETE /teams/{id}; 409 while it has some)",
    )
    async def delete_team(team_id: str, session: Session = is_admin) -> Response:
        return await forwarder.forward(session, upstream.crm, "DELETE", upstream_path("teams", team_id))

    # --- employees (crm) -------------------------------------------------------------------------------

    @router.get("/api/admin/employees", tags=["admin"], summary="Employees, by name (crm's GET /employees)")
    async def list_employees(
        q: Annotated[str | None, Query(max_length=200)] = None,
        team_id: Annotated[str | None, Query(max_length=128)] = None,
        cursor: Cursor = None,
        limit: Annotated[int, Query(ge=1, le=EMPLOYEES_PAGE_MAX)] = 25,
        session: Session = is_admin,
    ) -> Response:
        params = {
            "q": (q or "").strip() or None,
            "team_id": team_id,
            "cursor": cursor,
            "limit": limit,
            "include_total": "true" if not cursor else None,
        }
        return await forwarder.forward(session, upstream.crm, "GET", "/employees", params=params)

    @router.post(
        "/api/admin/employees",
        tags=["admin"],
        status_code=201,
        summary="Add an employee (crm's POST /employees)",
        description="`{name, email?, extension?, team_id?, supervisor_id?}`; 409 when the extension is "
        "another employee's.",
    )
    async def create_employee(body: Json, session: Session = is_admin) -> Response:
        return await forwarder.forward(session, upstream.crm, "POST", "/employees", json=body)

    @router.patch(
        "/api/admin/employees/{employee_id}",
        tags=["admin"],
        summary="Change an employee: name, extension, team... (crm's PATCH /employees/{id})",
    )
    async def update_employee(employee_id: str, body: Json, session: Session = is_admin) -> Response:
        return await forwarder.forward(
            session, upstream.crm, "PATCH", upstream_path("employees", employee_id), json=body
        )

    @router.delete(
        "/api/admin/employees/{employee_id}",
        tags=["admin"],
        status_code=204,
        summary="Delete an employee (crm's DELETE /employees/{id}; 409 while a user is them)",
    )
    async def delete_employee(employee_id: str, session: Session = is_admin) -> Response:
        return await forwarder.forward(
            session, upstream.crm, "DELETE", upstream_path("employees", employee_id)
        )

    return router
