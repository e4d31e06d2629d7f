"""REST API of projects: the register and card (``/projects``), the work group, the discussion,
attachments and the operation log of a project.

Rights: creating needs ``project.create``, editing the card, the work group and the attachments
``project.modify``, deleting ``project.delete`` (403 before anything is read); anyone who sees a project
may read it and write in its discussion. A project the user may not see is a 404. The schemas of
attachments and of the operation log here are shared with the tickets' API.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Any, Literal, NoReturn

from fastapi import APIRouter, Depends, File, HTTPException, Query, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from telecrm_common.auth import Principal
from telecrm_crm import paging
from telecrm_crm.access import Access
from telecrm_crm.attachments import AttachmentError, download, upload_chunks
from telecrm_crm.models import Attachment
from telecrm_crm.projects import (
    MAX_COMMENT_LENGTH,
    MAX_DESCRIPTION_LENGTH,
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    MAX_WORK_GROUP,
    AttachmentNotFound,
    InvalidField,
    ProjectChanges,
    ProjectError,
    ProjectInput,
    ProjectNotFound,
    ProjectQuery,
    ProjectService,
    ProjectView,
    StaleVersion,
)
from telecrm_crm.projects_models import ProjectComment
from telecrm_crm.schemas import AttachmentOut, HistoryEntryOut

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]


# --- shared schemas and helpers (tickets use them too) -------------------------------------------------


class ErrorOut(BaseModel):
    detail: Any


def invalid(location: str, field: str, message: str, value: Any = None) -> RequestValidationError:
    """A 422 naming the field, shaped like FastAPI's own validation errors."""
    return RequestValidationError(
        [{"type": "value_error", "loc": (location, field), "msg": message, "input": value}]
    )


def attachment_error(exc: AttachmentError) -> HTTPException:
    return HTTPException(status_code=exc.status, detail=str(exc))


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "Not found, or not visible"}
}
FORBIDDEN: dict[int | str, dict[str, Any]] = {403: {"model": ErrorOut, "description": "The right is missing"}}
STALE: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "`version` is not the current one: `detail.version` is"}
}


# --- schemas of projects -------------------------------------------------------------------------------


class ProjectIn(BaseModel):
    """A new project; the manager is the creator's employee unless given."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    description: str = Field(default="", max_length=MAX_DESCRIPTION_LENGTH)
    start_date: date | None = Field(default=None, description="First day of the project's period")
    end_date: date | None = Field(default=None, description="Last day; not before `start_date`")
    manager_id: Id | None = Field(default=None, description="Employee who leads the project")
    controller_id: Id | None = Field(default=None, description="Employee who checks it")
    customer_id: Id | None = Field(default=None, description="The customer (a contact)")
    default_event_type: Id | None = Field(
        default=None, description="Type code new journal events of the project get"
    )
    team_id: Id | None = Field(default=None, description="Its team: their supervisors (and team) see it")
    work_group: list[Id] = Field(default_factory=list, max_length=MAX_WORK_GROUP, description="Employee ids")


class ProjectPatch(BaseModel):
    """The fields to change; those left out stay, null clears an optional one."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="The version you edited: 409 when the project changed since")
    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_LENGTH)
    start_date: date | None = None
    end_date: date | None = None
    manager_id: Id | None = None
    controller_id: Id | None = None
    customer_id: Id | None = None
    default_event_type: Id | None = None
    team_id: Id | None = None
    work_group: list[Id] | None = Field(
        default=None, max_length=MAX_WORK_GROUP, description="The whole group"
    )
    status: Literal["active", "closed"] | None = Field(
        default=None, description="Close or reopen the project"
    )


class MembersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    employee_ids: list[Id] = Field(min_length=1, max_length=MAX_WORK_GROUP)


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_COMMENT_LENGTH)


class CommentOut(BaseModel):
    id: str
    author_subject: str
    author_employee_id: str | None
    author_name: str
    text: str
    created_at: datetime

    @classmethod
    def of(cls, comment: ProjectComment) -> CommentOut:
        return cls(
            id=comment.id,
            author_subject=comment.author_subject,
            author_employee_id=comment.author_employee_id,
            author_name=comment.author_name,
            text=comment.text,
            created_at=comment.created_at,
        )


class ProjectOut(BaseModel):
    id: str
    name: str
    description: str
    start_date: date | None
    end_date: date | None
    manager_id: str | None
    controller_id: str | None
    customer_id: str | None
    default_event_type: str | None
    team_id: str | None
    work_group: list[str]
    status: Literal["active", "closed"]
    closed_at: datetime | None
    version: int = Field(description="Increases with every change; pass it back to edit safely")
    created_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: ProjectView) -> ProjectOut:
        project = view.project
        return cls(
            id=project.id,
            name=project.name,
            description=project.description,
            start_date=project.start_date,
            end_date=project.end_date,
            manager_id=project.manager_id,
            controller_id=project.controller_id,
            customer_id=project.customer_id,
            default_event_type=project.default_event_type,
            team_id=project.team_id,
            work_group=list(view.work_group),
            status="closed" if project.status == "closed" else "active",
            closed_at=project.closed_at,
            version=project.version,
            created_by=project.created_by,
            created_at=project.created_at,
            updated_at=project.updated_at,
        )


# --- errors --------------------------------------------------------------------------------------------


def _fail(exc: ProjectError | AttachmentError | paging.InvalidCursor, location: str = "body") -> NoReturn:
    if isinstance(exc, ProjectNotFound | AttachmentNotFound):
        raise HTTPException(status_code=404, detail=str(exc)) from None
    if isinstance(exc, InvalidField):
        raise invalid(location, exc.field, exc.message) from None
    if isinstance(exc, StaleVersion):
        raise HTTPException(status_code=409, detail={"message": str(exc), "version": exc.current}) from None
    if isinstance(exc, AttachmentError):
        raise attachment_error(exc) from None
    if isinstance(exc, paging.InvalidCursor):
        raise HTTPException(status_code=400, detail=f"cursor: {exc}") from None
    raise HTTPException(status_code=400, detail=str(exc)) from None


# --- the router ----------------------------------------------------------------------------------------


def projects_router(service: ProjectService, access: Access) -> APIRouter:
    router = APIRouter(prefix="/projects", tags=["projects"])
    # Dependencies as defaults: annotations are strings here (resolved in the module's globals, where
    # this function's ``access`` is not).
    signed_in = Depends(access.current)
    creator = Depends(access.require("project.create"))
    editor = Depends(access.require("project.modify"))
    deleter = Depends(access.require("project.delete"))

    @router.post(
        "",
        status_code=201,
        summary="Create a project",
        responses={**FORBIDDEN},
    )
    async def create_project(body: ProjectIn, user: Principal = creator) -> ProjectOut:
        data = ProjectInput(**body.model_dump())
        try:
            view = await service.create(user, data)
        except ProjectError as exc:
            _fail(exc)
        return ProjectOut.of(view)

    @router.get(
        "",
        summary="The register of projects",
        description="The projects the user sees (as manager, controller, work group member, through "
        "their team, or all for admins), newest first, one page at a time: pass `next_cursor` back as "
        "`cursor`.",
        responses={400: {"model": ErrorOut, "description": "The cursor is not one this service issued"}},
    )
    async def list_projects(
        user: Principal = signed_in,
        status: Annotated[Literal["active", "closed"] | None, Query()] = None,
        manager_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH)] = None,
        customer_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH)] = None,
        member_id: Annotated[
            str | None, Query(max_length=MAX_ID_LENGTH, description="Projects whose work group has him")
        ] = None,
        team_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH)] = None,
        name: Annotated[
            str | None, Query(max_length=MAX_NAME_LENGTH, description="A part of the name")
        ] = None,
        active_on: Annotated[
            date | None, Query(description="Projects whose period includes this day")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=paging.MAX_LIMIT)] = paging.DEFAULT_LIMIT,
        cursor: Annotated[str | None, Query(max_length=1024)] = None,
        include_total: Annotated[bool, Query(description="Count all matching projects (`total`)")] = False,
    ) -> paging.Page[ProjectOut]:
        query = ProjectQuery(
            status=status,
            manager_id=manager_id,
            customer_id=customer_id,
            member_id=member_id,
            team_id=team_id,
            name=name,
            active_on=active_on,
            limit=limit,
            cursor=cursor or None,
            include_total=include_total,
        )
        try:
            page = await service.list_projects(user, query)
        except (ProjectError, paging.InvalidCursor) as exc:
            _fail(exc, "query")
        return paging.Page[ProjectOut](
            items=[ProjectOut.of(view) for view in page.items], next_cursor=page.next_cursor, total=page.total
        )

    @router.get("/{project_id}", summary="A project's card", responses={**NOT_FOUND})
    async def get_project(project_id: str, user: Principal = signed_in) -> ProjectOut:
        try:
            return ProjectOut.of(await service.get(user, project_id))
        except ProjectError as exc:
            _fail(exc)

    @router.patch(
        "/{project_id}",
        summary="Change a project (its card, work group or status)",
        responses={**FORBIDDEN, **NOT_FOUND, **STALE},
    )
    async def update_project(project_id: str, body: ProjectPatch, user: Principal = editor) -> ProjectOut:
        values = {name: getattr(body, name) for name in body.model_fields_set if name != "version"}
        for required in ("name", "status"):
            if required in values and values[required] is None:
                raise invalid("body", required, "cannot be null")
        try:
            view = await service.update(user, project_id, ProjectChanges(version=body.version, values=values))
        except ProjectError as exc:
            _fail(exc)
        return ProjectOut.of(view)

    @router.delete(
        "/{project_id}",
        status_code=204,
        summary="Delete a project with its work group, discussion and attachments",
        responses={**FORBIDDEN, **NOT_FOUND, **STALE},
    )
    async def delete_project(
        project_id: str,
        user: Principal = deleter,
        version: Annotated[
            int | None, Query(ge=1, description="409 unless this is the current version")
        ] = None,
    ) -> Response:
        try:
            await service.delete(user, project_id, version=version)
        except ProjectError as exc:
            _fail(exc)
        return Response(status_code=204)

    @router.get("/{project_id}/history", summary="The operation log of a project", responses={**NOT_FOUND})
    async def project_history(project_id: str, user: Principal = signed_in) -> list[HistoryEntryOut]:
        try:
            entries = await service.history(user, project_id)
        except ProjectError as exc:
            _fail(exc)
        return [HistoryEntryOut.of(entry) for entry in entries]

    # --- work group ------------------------------------------------------------------------------------

    @router.post(
        "/{project_id}/members",
        summary="Add employees to the work group",
        responses={**FORBIDDEN, **NOT_FOUND},
    )
    async def add_members(project_id: str, body: MembersIn, user: Principal = editor) -> ProjectOut:
        try:
            return ProjectOut.of(await service.add_members(user, project_id, body.employee_ids))
        except ProjectError as exc:
            _fail(exc)

    @router.delete(
        "/{project_id}/members/{employee_id}",
        summary="Take an employee out of the work group",
        responses={**FORBIDDEN, **NOT_FOUND},
    )
    async def remove_member(project_id: str, employee_id: str, user: Principal = editor) -> ProjectOut:
        try:
            return ProjectOut.of(await service.remove_member(user, project_id, employee_id))
        except ProjectError as exc:
            _fail(exc, "path")

    # --- discussion ------------------------------------------------------------------------------------

    @router.get(
        "/{project_id}/comments", summary="The project's discussion, oldest first", responses={**NOT_FOUND}
    )
    async def list_comments(project_id: str, user: Principal = signed_in) -> list[CommentOut]:
        try:
            comments = await service.comments(user, project_id)
        except ProjectError as exc:
            _fail(exc)
        return [CommentOut.of(comment) for comment in comments]

    @router.post(
        "/{project_id}/comments",
        status_code=201,
        summary="Write in the project's discussion (anyone who sees the project)",
        responses={**NOT_FOUND},
    )
    async def add_comment(project_id: str, body: CommentIn, user: Principal = signed_in) -> CommentOut:
        try:
            return CommentOut.of(await service.add_comment(user, project_id, body.text))
        except ProjectError as exc:
            _fail(exc)

    # --- attachments -----------------------------------------------------------------------------------

    @router.get("/{project_id}/attachments", summary="The project's files", responses={**NOT_FOUND})
    async def list_attachments(project_id: str, user: Principal = signed_in) -> list[AttachmentOut]:
        try:
            attachments: Sequence[Attachment] = await service.attachments(user, project_id)
        except ProjectError as exc:
            _fail(exc)
        return [AttachmentOut.of(attachment) for attachment in attachments]

    @router.post(
        "/{project_id}/attachments",
        status_code=201,
        summary="Attach a file to the project",
        description="Multipart upload (`file`). Refused: larger than the installation's limit (413); "
        "a type not accepted, or bytes that are not the declared type (415).",
        responses={**FORBIDDEN, **NOT_FOUND, 413: {"model": ErrorOut}, 415: {"model": ErrorOut}},
    )
    async def attach(
        project_id: str, file: Annotated[UploadFile, File()], user: Principal = editor
    ) -> AttachmentOut:
        try:
            attachment = await service.attach(
                user,
                project_id,
                filename=file.filename or "attachment",
                declared_type=file.content_type,
                chunks=upload_chunks(file),
            )
        except (ProjectError, AttachmentError) as exc:
            _fail(exc)
        return AttachmentOut.of(attachment)

    @router.get(
        "/{project_id}/attachments/{attachment_id}",
        summary="Download a file of the project",
        response_class=FileResponse,
        responses={**NOT_FOUND},
    )
    async def download_attachment(
        project_id: str, attachment_id: str, user: Principal = signed_in
    ) -> FileResponse:
        try:
            return download(await service.open_attachment(user, project_id, attachment_id))
        except (ProjectError, AttachmentError) as exc:
            _fail(exc)

    @router.delete(
        "/{project_id}/attachments/{attachment_id}",
        status_code=204,
        summary="Remove a file of the project",
        responses={**FORBIDDEN, **NOT_FOUND},
    )
    async def delete_attachment(project_id: str, attachment_id: str, user: Principal = editor) -> Response:
        try:
            await service.delete_attachment(user, project_id, attachment_id)
        except (ProjectError, AttachmentError) as exc:
            _fail(exc)
        return Response(status_code=204)

    return router


__all__ = [
    "ErrorOut",
    "ProjectIn",
    "ProjectOut",
    "ProjectPatch",
    "invalid",
    "projects_router",
]
