"""REST API of people and access: employees, teams, users (admins), ``/me`` and password changes.

Admins manage everything here; other users read the employees and teams they may see (a supervisor
their teams', an agent their own or their team's, as their visibility says) and themselves (``/me``).
A refusal for a missing role answers 403 before the body is read, so nothing changes.

Writes are optimistic: send the ``version`` you read (in the body) or its ``ETag`` (``If-Match``); a
stale one changes nothing and answers 409 (body) or 412 (``If-Match``) with the current version.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal, NoReturn

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from telecrm_common.auth import Principal, Role
from telecrm_crm.access import Access
from telecrm_crm.paging import DEFAULT_LIMIT, MAX_LIMIT, InvalidCursor, Page
from telecrm_crm.people import (
    MAX_EMAIL_LENGTH,
    MAX_ID_LENGTH,
    MAX_LOGIN_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PASSWORD_LENGTH,
    Conflict,
    EmployeeQuery,
    EmployeeView,
    Forbidden,
    InvalidField,
    NotFound,
    PageResult,
    PeopleError,
    PeopleService,
    StaleVersion,
    TeamQuery,
    UserQuery,
    effective_rights,
    user_roles,
)
from telecrm_crm.people_models import Team, User

RoleName = Literal["admin", "supervisor", "agent"]
VisibilityName = Literal["own", "team"]


class ErrorOut(BaseModel):
    detail: str


# --- shapes --------------------------------------------------------------------------------------------


class EmployeeOut(BaseModel):
    id: str
    name: str
    email: str | None
    extension: str | None = Field(description="The internal number the employee answers")
    team_id: str | None
    team_name: str | None
    supervisor_id: str | None = Field(description="The employee's own supervisor (an employee)")
    supervisor_name: str | None
    active: bool
    deleted_at: datetime | None = Field(description="Set when deleted (only admins list deleted ones)")
    version: int = Field(description="Increases with every change; send it back (or If-Match) to edit")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: EmployeeView) -> EmployeeOut:
        employee = view.employee
        return cls(
            id=employee.id,
            name=employee.name,
            email=employee.email,
            extension=employee.extension,
            team_id=employee.team_id,
            team_name=view.team_name,
            supervisor_id=employee.supervisor_id,
            supervisor_name=view.supervisor_name,
            active=employee.active,
            deleted_at=employee.deleted_at,
            version=employee.version,
            created_at=employee.created_at,
            updated_at=employee.updated_at,
        )


_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
IdField = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=_ID_PATTERN)]
ExtensionField = Annotated[str, Field(max_length=15, pattern=r"^\s*[0-9]{0,15}\s*$")]


class EmployeeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: IdField | None = Field(default=None, description="Your id for the employee; a UUID when left out")
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    email: str | None = Field(default=None, max_length=MAX_EMAIL_LENGTH)
    extension: ExtensionField | None = Field(default=None, description="1 to 15 digits, unique")
    team_id: IdField | None = None
    supervisor_id: IdField | None = None
    active: bool = True


class EmployeePatch(BaseModel):
    """The fields to change; those left out stay, null clears an optional one."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)
    email: str | None = Field(default=None, max_length=MAX_EMAIL_LENGTH)
    extension: ExtensionField | None = None
    team_id: IdField | None = None
    supervisor_id: IdField | None = None
    active: bool | None = None
    version: int | None = Field(default=None, ge=1, description="The version you edited: 409 when stale")


class TeamOut(BaseModel):
    id: str
    name: str
    supervisor_id: str | None = Field(description="The employee who supervises the team")
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, team: Team) -> TeamOut:
        return cls(
            id=team.id,
            name=team.name,
            supervisor_id=team.supervisor_id,
            version=team.version,
            created_at=team.created_at,
            updated_at=team.updated_at,
        )


class TeamIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: IdField | None = None
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    supervisor_id: IdField | None = None


class TeamPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)
    supervisor_id: IdField | None = None
    version: int | None = Field(default=None, ge=1)


RightsField = Annotated[list[Annotated[str, Field(max_length=32)]], Field(max_length=64)]


class UserOut(BaseModel):
    id: str
    login: str
    employee_id: str | None = Field(description="The employee the user is")
    roles: list[RoleName]
    visibility: Literal["own", "team", "all"] = Field(description="What an agent sees; admins see all")
    granted_rights: list[str] = Field(description="Rights beyond the roles' defaults")
    revoked_rights: list[str] = Field(description="Default rights taken away (e.g. task.status)")
    rights: list[str] = Field(description="Effective: the roles' defaults + granted - revoked")
    disabled: bool
    has_password: bool = Field(description="False for a user who logs in only through the identity provider")
    locked_until: datetime | None = Field(description="Locked after failed log-ins until then")
    last_login_at: datetime | None
    password_changed_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        roles = user_roles(user)
        return cls(
            id=user.id,
            login=user.login,
            employee_id=user.employee_id,
            roles=[str(role) for role in sorted(roles)],
            visibility="all" if Role.ADMIN in roles else user.visibility,
            granted_rights=list(user.granted_rights),
            revoked_rights=list(user.revoked_rights),
            rights=sorted(effective_rights(roles, user.granted_rights, user.revoked_rights)),
            disabled=user.disabled,
            has_password=user.password_hash is not None,
            locked_until=user.locked_until,
            last_login_at=user.last_login_at,
            password_changed_at=user.password_changed_at,
            version=user.version,
            created_at=user.created_at,
            updated_at=user.updated_at,
        )


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    login: str = Field(min_length=1, max_length=MAX_LOGIN_LENGTH, description="Case-insensitive, unique")
    password: str | None = Field(
        default=None,
        max_length=MAX_PASSWORD_LENGTH,
        description="Left out: the user cannot log in with a password (identity provider only)",
    )
    employee_id: IdField | None = None
    roles: list[RoleName] = Field(min_length=1)
    visibility: VisibilityName = "own"
    granted_rights: RightsField = Field(default_factory=list)
    revoked_rights: RightsField = Field(
        default_factory=list, description='e.g. ["task.status"]: the user may not change task status'
    )
    disabled: bool = False


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    login: str | None = Field(default=None, min_length=1, max_length=MAX_LOGIN_LENGTH)
    employee_id: IdField | None = None
    roles: list[RoleName] | None = Field(default=None, min_length=1)
    visibility: VisibilityName | None = None
    granted_rights: RightsField | None = None
    revoked_rights: RightsField | None = None
    disabled: bool | None = None
    version: int | None = Field(default=None, ge=1)


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = Field(max_length=MAX_PASSWORD_LENGTH)
    version: int | None = Field(default=None, ge=1)


class OwnPasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(max_length=MAX_PASSWORD_LENGTH)
    new_password: str = Field(max_length=MAX_PASSWORD_LENGTH)


class MeOut(BaseModel):
    user_id: str
    login: str | None = Field(description="Null for a user of the identity provider")
    name: str
    employee: EmployeeOut | None
    roles: list[RoleName]
    rights: list[str]
    visibility: Literal["own", "team", "all"]
    team_ids: list[str]
    supervised_team_ids: list[str]
    has_password: bool


# --- errors and versions -------------------------------------------------------------------------------

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "Unknown (or not yours)"}
}
_WRITE: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorOut, "description": "Only admins manage people and access"},
    404: {"model": ErrorOut, "description": "Unknown id"},
    409: {"model": ErrorOut, "description": "A duplicate, still in use, or `version` is stale"},
    412: {"model": ErrorOut, "description": "`If-Match` is not the current ETag"},
}


def _fail(exc: PeopleError, *, where: str = "body", precondition: bool = False) -> NoReturn:
    """Raise the HTTP answer of a service error."""
    if isinstance(exc, InvalidField):
        raise RequestValidationError(
            [{"type": "value_error", "loc": (where, exc.field), "msg": exc.message, "input": None}]
        ) from None
    if isinstance(exc, NotFound):
        raise HTTPException(status_code=404, detail=str(exc)) from None
    if isinstance(exc, Forbidden):
        raise HTTPException(status_code=403, detail=str(exc)) from None
    if isinstance(exc, StaleVersion):
        raise HTTPException(
            status_code=412 if precondition else 409, detail=str(exc), headers={"ETag": f'"{exc.current}"'}
        ) from None
    if isinstance(exc, Conflict):
        raise HTTPException(status_code=409, detail=str(exc)) from None
    raise HTTPException(status_code=400, detail=str(exc)) from None


def _bad_cursor(exc: InvalidCursor) -> NoReturn:
    raise HTTPException(status_code=400, detail=f"cursor: {exc}") from None


def expected_version(if_match: str | None, body_version: int | None) -> tuple[int | None, bool]:
    """The version a write expects, and whether it came from ``If-Match`` (412) or the body (409)."""
    if if_match is None:
        return body_version, False
    value = if_match.strip()
    if value == "*":
        return None, True
    value = value.removeprefix("W/").strip('"')
    if not value.isdigit():
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("header", "If-Match"),
                    "msg": 'must be an ETag of this API ("3")',
                    "input": if_match,
                }
            ]
        )
    version = int(value)
    if body_version is not None and body_version != version:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body", "version"),
                    "msg": "disagrees with If-Match",
                    "input": body_version,
                }
            ]
        )
    return version, True


def _etag(response: Response, version: int) -> None:
    response.headers["ETag"] = f'"{version}"'


def _page(result: PageResult[Any], convert: Callable[[Any], Any]) -> dict[str, Any]:
    return {
        "items": [convert(item) for item in result.items],
        "next_cursor": result.next_cursor,
        "total": result.total,
    }


def require_admin(access: Access) -> Callable[..., Awaitable[Principal]]:
    """A dependency answering 403 unless the user is an admin (before anything is read or changed)."""

    signed_in = Depends(access.current)  # a default: see people_router

    async def admin(principal: Principal = signed_in) -> Principal:
        if not principal.is_admin:
            raise HTTPException(status_code=403, detail="only admins manage people and access")
        return principal

    return admin


IfMatch = Annotated[
    str | None, Header(alias="If-Match", description="The ETag you read: 412 when the document changed since")
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size")]
Cursor = Annotated[str | None, Query(max_length=1024, description="`next_cursor` of the previous page")]
IncludeTotal = Annotated[bool, Query(description="Also count the matches of every page (slower)")]


# --- the router ----------------------------------------------------------------------------------------


def people_router(service: PeopleService, access: Access) -> APIRouter:
    router = APIRouter()
    # Dependencies as defaults: annotations are strings here, which FastAPI resolves in the module's
    # globals, where this function's ``access`` is not.
    is_admin = Depends(require_admin(access))
    signed_in = Depends(access.current)

    # --- employees -------------------------------------------------------------------------------------

    @router.get(
        "/employees",
        tags=["people"],
        summary="List employees",
        description="By name, one page at a time. Admins see everyone; a supervisor the employees of the "
        "teams they supervise or belong to; an agent themselves (and their team with visibility `team`).",
        responses={400: {"model": ErrorOut, "description": "A cursor this service did not issue"}},
    )
    async def list_employees(
        user: Principal = signed_in,
        team_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH)] = None,
        supervisor_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH)] = None,
        active: Annotated[bool | None, Query(description="Only active (true) or inactive (false)")] = None,
        extension: Annotated[str | None, Query(max_length=15)] = None,
        q: Annotated[
            str | None, Query(max_length=200, description="Part of the name, e-mail or extension")
        ] = None,
        employee_id: Annotated[
            list[str] | None, Query(alias="id", description="Repeat for several ids (at most 500)")
        ] = None,
        include_deleted: Annotated[bool, Query(description="Deleted employees too (admins)")] = False,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        include_total: IncludeTotal = False,
    ) -> Page[EmployeeOut]:
        query = EmployeeQuery(
            team_id=team_id,
            supervisor_id=supervisor_id,
            active=active,
            extension=extension,
            q=q,
            ids=tuple(employee_id or ()),
            include_deleted=include_deleted,
            limit=limit,
            cursor=cursor,
            include_total=include_total,
        )
        try:
            result = await service.list_employees(user, query)
        except InvalidCursor as exc:
            _bad_cursor(exc)
        except PeopleError as exc:
            _fail(exc, where="query")
        return Page[EmployeeOut](**_page(result, EmployeeOut.of))

    @router.get("/employees/{employee_id}", tags=["people"], summary="One employee", responses=_NOT_FOUND)
    async def get_employee(
        employee_id: str,
        response: Response,
        user: Principal = signed_in,
        include_deleted: Annotated[bool, Query(description="Also when deleted (admins)")] = False,
    ) -> EmployeeOut:
        try:
            view = await service.get_employee(
                user, employee_id, include_deleted=include_deleted and user.is_admin
            )
        except PeopleError as exc:
            _fail(exc)
        _etag(response, view.employee.version)
        return EmployeeOut.of(view)

    @router.post(
        "/employees",
        tags=["people"],
        status_code=201,
        summary="Add an employee",
        description="Publishes `crm.employee.created`.",
        responses=_WRITE,
    )
    async def create_employee(
        body: EmployeeIn, response: Response, admin: Principal = is_admin
    ) -> EmployeeOut:
        try:
            view = await service.create_employee(admin, body.model_dump(exclude_unset=True))
        except PeopleError as exc:
            _fail(exc)
        response.headers["Location"] = f"/employees/{view.employee.id}"
        _etag(response, view.employee.version)
        return EmployeeOut.of(view)

    @router.patch(
        "/employees/{employee_id}",
        tags=["people"],
        summary="Change an employee",
        description="Publishes `crm.employee.updated` when something changed.",
        responses=_WRITE,
    )
    async def update_employee(
        employee_id: str,
        body: EmployeePatch,
        response: Response,
        if_match: IfMatch = None,
        admin: Principal = is_admin,
    ) -> EmployeeOut:
        version, precondition = expected_version(if_match, body.version)
        values = body.model_dump(exclude_unset=True, exclude={"version"})
        try:
            view = await service.update_employee(admin, employee_id, values, expected_version=version)
        except PeopleError as exc:
            _fail(exc, precondition=precondition)
        _etag(response, view.employee.version)
        return EmployeeOut.of(view)

    @router.delete(
        "/employees/{employee_id}",
        tags=["people"],
        status_code=204,
        summary="Delete an employee",
        description="Soft: the employee stays named in history, inactive, the extension freed. Refused "
        "(409) while a user is this employee or they supervise a team or employees. Publishes "
        "`crm.employee.deleted`.",
        responses=_WRITE,
    )
    async def delete_employee(
        employee_id: str, if_match: IfMatch = None, admin: Principal = is_admin
    ) -> Response:
        version, precondition = expected_version(if_match, None)
        try:
            await service.delete_employee(admin, employee_id, expected_version=version)
        except PeopleError as exc:
            _fail(exc, precondition=precondition)
        return Response(status_code=204)

    # --- teams -----------------------------------------------------------------------------------------

    @router.get("/teams", tags=["people"], summary="List teams", description="Admins see all, others theirs.")
    async def list_teams(
        user: Principal = signed_in,
        q: Annotated[str | None, Query(max_length=200, description="Part of the name")] = None,
        supervisor_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH)] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        include_total: IncludeTotal = False,
    ) -> Page[TeamOut]:
        query = TeamQuery(
            q=q, supervisor_id=supervisor_id, limit=limit, cursor=cursor, include_total=include_total
        )
        try:
            result = await service.list_teams(user, query)
        except InvalidCursor as exc:
            _bad_cursor(exc)
        except PeopleError as exc:
            _fail(exc, where="query")
        return Page[TeamOut](**_page(result, TeamOut.of))

    @router.get("/teams/{team_id}", tags=["people"], summary="One team", responses=_NOT_FOUND)
    async def get_team(team_id: str, response: Response, user: Principal = signed_in) -> TeamOut:
        try:
            team = await service.get_team(user, team_id)
        except PeopleError as exc:
            _fail(exc)
        _etag(response, team.version)
        return TeamOut.of(team)

    @router.post(
        "/teams",
        tags=["people"],
        status_code=201,
        summary="Add a team",
        description="Publishes `crm.team.created`.",
        responses=_WRITE,
    )
    async def create_team(body: TeamIn, response: Response, admin: Principal = is_admin) -> TeamOut:
        try:
            team = await service.create_team(admin, body.model_dump(exclude_unset=True))
        except PeopleError as exc:
            _fail(exc)
        response.headers["Location"] = f"/teams/{team.id}"
        _etag(response, team.version)
        return TeamOut.of(team)

    @router.patch(
        "/teams/{team_id}",
        tags=["people"],
        summary="Rename a team or change its supervisor",
        description="Publishes `crm.team.updated`; a rename also `crm.employee.updated` for every member "
        "(their team name changed).",
        responses=_WRITE,
    )
    async def update_team(
        team_id: str,
        body: TeamPatch,
        response: Response,
        if_match: IfMatch = None,
        admin: Principal = is_admin,
    ) -> TeamOut:
        version, precondition = expected_version(if_match, body.version)
        values = body.model_dump(exclude_unset=True, exclude={"version"})
        try:
            team = await service.update_team(admin, team_id, values, expected_version=version)
        except PeopleError as exc:
            _fail(exc, precondition=precondition)
        _etag(response, team.version)
        return TeamOut.of(team)

    @router.delete(
        "/teams/{team_id}",
        tags=["people"],
        status_code=204,
        summary="Delete a team without members",
        responses=_WRITE,
    )
    async def delete_team(team_id: str, if_match: IfMatch = None, admin: Principal = is_admin) -> Response:
        version, precondition = expected_version(if_match, None)
        try:
            await service.delete_team(admin, team_id, expected_version=version)
        except PeopleError as exc:
            _fail(exc, precondition=precondition)
        return Response(status_code=204)

    # --- users -----------------------------------------------------------------------------------------

    @router.get("/users", tags=["access"], summary="List users (admins)", responses=_WRITE)
    async def list_users(
        admin: Principal = is_admin,
        role: Annotated[RoleName | None, Query()] = None,
        disabled: Annotated[bool | None, Query()] = None,
        employee_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH)] = None,
        q: Annotated[str | None, Query(max_length=MAX_LOGIN_LENGTH, description="Part of the login")] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        include_total: IncludeTotal = False,
    ) -> Page[UserOut]:
        query = UserQuery(
            role=Role(role) if role else None,
            disabled=disabled,
            employee_id=employee_id,
            q=q,
            limit=limit,
            cursor=cursor,
            include_total=include_total,
        )
        try:
            result = await service.list_users(query)
        except InvalidCursor as exc:
            _bad_cursor(exc)
        except PeopleError as exc:
            _fail(exc, where="query")
        return Page[UserOut](**_page(result, UserOut.of))

    @router.get("/users/{user_id}", tags=["access"], summary="One user (admins)", responses=_WRITE)
    async def get_user(user_id: str, response: Response, admin: Principal = is_admin) -> UserOut:
        try:
            user = await service.get_user(user_id)
        except PeopleError as exc:
            _fail(exc)
        _etag(response, user.version)
        return UserOut.of(user)

    @router.post(
        "/users",
        tags=["access"],
        status_code=201,
        summary="Add a user (admins)",
        description="Roles give default rights; `granted_rights` add to them and `revoked_rights` take "
        'away (an agent who may not change task status: `revoked_rights: ["task.status"]`).',
        responses=_WRITE,
    )
    async def create_user(body: UserIn, response: Response, admin: Principal = is_admin) -> UserOut:
        try:
            user = await service.create_user(admin, body.model_dump(exclude_unset=True))
        except PeopleError as exc:
            _fail(exc)
        response.headers["Location"] = f"/users/{user.id}"
        _etag(response, user.version)
        return UserOut.of(user)

    @router.patch(
        "/users/{user_id}",
        tags=["access"],
        summary="Change a user's roles, rights, employee or state (admins)",
        description="Disabling a user ends their sessions (their refresh tokens); new rights reach the "
        "user's token at its next refresh. The last enabled admin cannot be disabled or demoted (409).",
        responses=_WRITE,
    )
    async def update_user(
        user_id: str,
        body: UserPatch,
        response: Response,
        if_match: IfMatch = None,
        admin: Principal = is_admin,
    ) -> UserOut:
        version, precondition = expected_version(if_match, body.version)
        values = body.model_dump(exclude_unset=True, exclude={"version"})
        try:
            user = await service.update_user(admin, user_id, values, expected_version=version)
        except PeopleError as exc:
            _fail(exc, precondition=precondition)
        _etag(response, user.version)
        return UserOut.of(user)

    @router.delete(
        "/users/{user_id}", tags=["access"], status_code=204, summary="Delete a user", responses=_WRITE
    )
    async def delete_user(user_id: str, if_match: IfMatch = None, admin: Principal = is_admin) -> Response:
        version, precondition = expected_version(if_match, None)
        try:
            await service.delete_user(admin, user_id, expected_version=version)
        except PeopleError as exc:
            _fail(exc, precondition=precondition)
        return Response(status_code=204)

    @router.post(
        "/users/{user_id}/password",
        tags=["access"],
        summary="Set a user's password (admins)",
        description="Also lifts a lock-out and ends the user's sessions.",
        responses=_WRITE,
    )
    async def set_password(
        user_id: str,
        body: PasswordIn,
        response: Response,
        if_match: IfMatch = None,
        admin: Principal = is_admin,
    ) -> UserOut:
        version, precondition = expected_version(if_match, body.version)
        try:
            user = await service.set_password(admin, user_id, body.password, expected_version=version)
        except PeopleError as exc:
            _fail(exc, precondition=precondition)
        _etag(response, user.version)
        return UserOut.of(user)

    @router.post(
        "/users/{user_id}/unlock",
        tags=["access"],
        summary="Lift a lock-out after failed log-ins (admins)",
        responses=_WRITE,
    )
    async def unlock_user(user_id: str, admin: Principal = is_admin) -> UserOut:
        try:
            return UserOut.of(await service.unlock_user(admin, user_id))
        except PeopleError as exc:
            _fail(exc)

    # --- me --------------------------------------------------------------------------------------------

    @router.get("/me", tags=["access"], summary="Who I am: my user, employee, roles and rights")
    async def me(user: Principal = signed_in) -> MeOut:
        found = await service.me(user)
        principal = found.principal
        return MeOut(
            user_id=principal.subject,
            login=found.user.login if found.user is not None else None,
            name=principal.name,
            employee=EmployeeOut.of(found.employee) if found.employee is not None else None,
            roles=[str(role) for role in sorted(principal.roles)],
            rights=sorted(principal.rights),
            visibility=principal.visibility.value,
            team_ids=sorted(principal.team_ids),
            supervised_team_ids=sorted(principal.supervised_team_ids),
            has_password=found.user is not None and found.user.password_hash is not None,
        )

    @router.post(
        "/me/password",
        tags=["access"],
        status_code=204,
        summary="Change my password",
        description="The current password must be right (422 naming `current_password` otherwise). Every "
        "session of the user ends: log in again with the new password.",
        responses={
            409: {"model": ErrorOut, "description": "The account logs in through the identity provider"}
        },
    )
    async def change_password(body: OwnPasswordIn, user: Principal = signed_in) -> Response:
        try:
            await service.change_own_password(user, body.current_password, body.new_password)
        except PeopleError as exc:
            _fail(exc)
        return Response(status_code=204)

    return router
