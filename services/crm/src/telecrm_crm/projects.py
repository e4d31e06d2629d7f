"""Projects: the card (period, manager, controller, customer, default event type, work group), its
discussion and attachments, on one service layer that the REST API (and later gRPC) share.

Why it is built this way:

- Who sees a project is who works on it: its manager, its controller, the employees of its work group,
  and (for supervisors, and agents who see their team's data) the members of its team; admins see all.
  A project someone may not see answers "not found", so its existence does not leak.
  :meth:`ProjectService.may_see_project` is that rule for the parts that serve a project's events and
  tasks, and :func:`visible_projects` its SQL form for their lists.
- ``version`` is the optimistic lock of the card and the work group: a change naming an older version
  changes nothing and raises :class:`StaleVersion` (the API answers 409 with the current version).
- Every change writes its ``crm.project.*`` event to the outbox and its operation-log entry in the
  transaction of the change; comments and attachments publish ``updated`` with the version unchanged
  and ``changed`` naming them, so read models know the card itself did not move.
- Nothing here knows HTTP: errors are :class:`ProjectError` subclasses the API translates.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, false, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from telecrm.crm.v1 import projects_pb2
from telecrm_common.auth import Principal
from telecrm_common.db import Database, utcnow
from telecrm_common.errors import TelecrmError
from telecrm_common.timestamps import timestamp_message
from telecrm_crm import outbox, paging
from telecrm_crm.attachments import AttachmentStore, StoredFile
from telecrm_crm.audit import AuditLog, diff
from telecrm_crm.models import Attachment, AuditEntry
from telecrm_crm.projects_models import (
    ACTIVE,
    CLOSED,
    PROJECT_STATUSES,
    Project,
    ProjectComment,
    ProjectMember,
)

PROJECT_SUBJECTS = {kind: f"crm.project.{kind}" for kind in ("created", "updated", "deleted")}
OWNER_KIND = "project"
CURSOR_DOMAIN = "projects"

MAX_NAME_LENGTH = 300
MAX_DESCRIPTION_LENGTH = 20_000
MAX_COMMENT_LENGTH = 10_000
MAX_WORK_GROUP = 500
MAX_ID_LENGTH = 64
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")

# Fields a client edits; ``status`` and ``work_group`` among them.
EDITABLE_FIELDS = frozenset(
    {
        "name",
        "description",
        "start_date",
        "end_date",
        "manager_id",
        "controller_id",
        "customer_id",
        "default_event_type",
        "team_id",
        "work_group",
        "status",
    }
)
_ID_FIELDS = ("manager_id", "controller_id", "customer_id", "team_id")  # and default_event_type


# --- errors --------------------------------------------------------------------------------------------


class ProjectError(TelecrmError):
    """Base of the errors of projects."""


class ProjectNotFound(ProjectError):
    """No such project, or not one the asker may see."""


class InvalidField(ProjectError):
    """A field's value is refused; ``field`` names it as the client sent it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class StaleVersion(ProjectError):
    """The change named a version the project has moved on from; nothing was changed."""

    def __init__(self, current: int) -> None:
        super().__init__(f"the project was changed meanwhile: its version is now {current}")
        self.current = current


class AttachmentNotFound(ProjectError):
    """No such attachment on this project."""


# --- inputs and views ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectInput:
    name: str
    description: str = ""
    start_date: date | None = None
    end_date: date | None = None
    manager_id: str | None = None  # None: the creator's employee
    controller_id: str | None = None
    customer_id: str | None = None
    default_event_type: str | None = None
    team_id: str | None = None
    work_group: Sequence[str] = ()


@dataclass(frozen=True)
class ProjectChanges:
    """The fields to change (only those in ``values``) of the project at ``version``."""

    version: int
    values: Mapping[str, Any]


@dataclass(frozen=True)
class ProjectView:
    project: Project
    work_group: list[str]


@dataclass(frozen=True)
class ProjectQuery:
    status: str | None = None
    manager_id: str | None = None
    customer_id: str | None = None
    member_id: str | None = None  # in the work group
    team_id: str | None = None
    name: str | None = None  # a part of the name, any case
    active_on: date | None = None  # the period includes this day (open ends included)
    limit: int = paging.DEFAULT_LIMIT
    cursor: str | None = None
    include_total: bool = False


@dataclass(frozen=True)
class ProjectPage:
    items: list[ProjectView]
    next_cursor: str | None
    total: int | None


# --- visibility ----------------------------------------------------------------------------------------


def visible_projects(principal: Principal) -> ColumnElement[bool]:
    """A WHERE clause over ``projects`` keeping those ``principal`` may see (for lists of any part)."""
    if principal.sees_all:
        return true()
    clauses: list[ColumnElement[bool]] = []
    employee = principal.employee_id
    if employee is not None:
        clauses += [
            Project.manager_id == employee,
            Project.controller_id == employee,
            exists(
                select(ProjectMember.project_id).where(
                    ProjectMember.project_id == Project.id, ProjectMember.employee_id == employee
                )
            ),
        ]
    teams = principal.visible_team_ids
    if teams:
        clauses.append(Project.team_id.in_(sorted(teams)))
    return or_(*clauses) if clauses else false()


# --- validation ----------------------------------------------------------------------------------------


def _text(field_name: str, value: Any, *, max_length: int, required: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidField(field_name, "must be text")
    text: str = value.strip()
    if required and not text:
        raise InvalidField(field_name, "required")
    if len(text) > max_length:
        raise InvalidField(field_name, f"at most {max_length} characters")
    return text


def _optional_id(field_name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidField(field_name, f"not an id (letters, digits, . _ : @ -, up to {MAX_ID_LENGTH})")
    return value


def _work_group(value: Iterable[Any]) -> list[str]:
    members: list[str] = []
    for item in value:
        member = _optional_id("work_group", item)
        if member is not None and member not in members:
            members.append(member)
    if len(members) > MAX_WORK_GROUP:
        raise InvalidField("work_group", f"at most {MAX_WORK_GROUP} employees")
    return sorted(members)


def _check_period(start: date | None, end: date | None) -> None:
    if start is not None and end is not None and end < start:
        raise InvalidField("end_date", "the project cannot end before it starts")


def _normalized(values: Mapping[str, Any]) -> dict[str, Any]:
    """Checked and cleaned values of the editable fields given."""
    clean: dict[str, Any] = {}
    for name, value in values.items():
        if name not in EDITABLE_FIELDS:
            raise InvalidField(name, "not a field of a project")
        if name == "name":
            clean[name] = _text(name, value, max_length=MAX_NAME_LENGTH, required=True)
        elif name == "description":
            clean[name] = _text(name, value or "", max_length=MAX_DESCRIPTION_LENGTH)
        elif name in _ID_FIELDS or name == "default_event_type":
            clean[name] = _optional_id(name, value)
        elif name == "work_group":
            if value is None:
                value = []
            clean[name] = _work_group(value)
        elif name == "status":
            if value not in PROJECT_STATUSES:
                raise InvalidField(name, f"one of {', '.join(PROJECT_STATUSES)}")
            clean[name] = value
        else:  # start_date, end_date
            if value is not None and not isinstance(value, date):
                raise InvalidField(name, "a date (YYYY-MM-DD)")
            clean[name] = value
    return clean


# --- messages ------------------------------------------------------------------------------------------


def project_message(view: ProjectView) -> projects_pb2.Project:
    project = view.project
    return projects_pb2.Project(
        project_id=project.id,
        name=project.name,
        description=project.description,
        start_date=project.start_date.isoformat() if project.start_date else "",
        end_date=project.end_date.isoformat() if project.end_date else "",
        manager_id=project.manager_id or "",
        controller_id=project.controller_id or "",
        customer_id=project.customer_id or "",
        default_event_type=project.default_event_type or "",
        team_id=project.team_id or "",
        work_group=view.work_group,
        status=project.status,
        version=project.version,
        created_at=timestamp_message(project.created_at),
        updated_at=timestamp_message(project.updated_at),
        closed_at=timestamp_message(project.closed_at),
        created_by=project.created_by,
    )


def _snapshot(view: ProjectView) -> dict[str, Any]:
    project = view.project
    return {
        "name": project.name,
        "description": project.description,
        "start_date": project.start_date,
        "end_date": project.end_date,
        "manager_id": project.manager_id,
        "controller_id": project.controller_id,
        "customer_id": project.customer_id,
        "default_event_type": project.default_event_type,
        "team_id": project.team_id,
        "work_group": list(view.work_group),
        "status": project.status,
    }


def _actor(actor: Principal | str) -> str:
    return actor if isinstance(actor, str) else actor.subject


# --- the service ---------------------------------------------------------------------------------------


class ProjectService:
    """Projects over the crm database; every method takes the asking user (a :class:`Principal`)."""

    def __init__(
        self,
        db: Database,
        *,
        audit: AuditLog,
        attachments: AttachmentStore,
        cursor_secret: bytes,
        on_outbox: Callable[[], None] | None = None,
    ) -> None:
        self._db = db
        self._audit = audit
        self._attachments = attachments
        self._cursor_secret = cursor_secret
        self._on_outbox = on_outbox or (lambda: None)

    # --- reading ---------------------------------------------------------------------------------------

    async def may_see_project(
        self, principal: Principal, project_id: str, *, session: AsyncSession | None = None
    ) -> bool:
        """Whether ``project_id`` exists and ``principal`` may see it (manager, controller, work group,
        team, or a user who sees everything). Pass ``session`` to ask inside a transaction of your own."""
        query = select(Project.id).where(Project.id == project_id, visible_projects(principal))
        if session is not None:
            return (await session.scalar(query)) is not None
        async with self._db.session() as own:
            return (await own.scalar(query)) is not None

    async def get(self, principal: Principal, project_id: str) -> ProjectView:
        async with self._db.session() as session:
            return await self._visible(session, principal, project_id)

    async def list_projects(self, principal: Principal, query: ProjectQuery) -> ProjectPage:
        conditions: list[ColumnElement[bool]] = [visible_projects(principal)]
        if query.status is not None:
            if query.status not in PROJECT_STATUSES:
                raise InvalidField("status", f"one of {', '.join(PROJECT_STATUSES)}")
            conditions.append(Project.status == query.status)
        if query.manager_id:
            conditions.append(Project.manager_id == query.manager_id)
        if query.customer_id:
            conditions.append(Project.customer_id == query.customer_id)
        if query.team_id:
            conditions.append(Project.team_id == query.team_id)
        if query.member_id:
            conditions.append(
                exists(
                    select(ProjectMember.project_id).where(
                        ProjectMember.project_id == Project.id, ProjectMember.employee_id == query.member_id
                    )
                )
            )
        if query.name:
            pattern = "%" + query.name.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conditions.append(func.lower(Project.name).like(pattern + "%", escape="\\"))
        if query.active_on is not None:
            day = query.active_on
            conditions.append(or_(Project.start_date.is_(None), Project.start_date <= day))
            conditions.append(or_(Project.end_date.is_(None), Project.end_date >= day))
        page_conditions = list(conditions)
        if query.cursor:
            created, last_id = _cursor_key(paging.decode(self._cursor_secret, CURSOR_DOMAIN, query.cursor))
            page_conditions.append(
                or_(Project.created_at < created, and_(Project.created_at == created, Project.id < last_id))
            )
        async with self._db.session() as session:
            rows = (
                await session.scalars(
                    select(Project)
                    .where(*page_conditions)
                    .order_by(Project.created_at.desc(), Project.id.desc())
                    .limit(query.limit + 1)
                )
            ).all()
            total = None
            if query.include_total:
                total = int(
                    await session.scalar(select(func.count()).select_from(Project).where(*conditions)) or 0
                )
            items = rows[: query.limit]
            groups = await self._work_groups(session, [p.id for p in items])
        next_cursor = None
        if len(rows) > query.limit:
            last = items[-1]
            next_cursor = paging.encode(
                self._cursor_secret, CURSOR_DOMAIN, [last.created_at.isoformat(), last.id]
            )
        return ProjectPage(
            items=[ProjectView(p, groups.get(p.id, [])) for p in items], next_cursor=next_cursor, total=total
        )

    async def history(self, principal: Principal, project_id: str) -> Sequence[AuditEntry]:
        async with self._db.session() as session:
            await self._visible(session, principal, project_id)
            return await AuditLog.history(session, OWNER_KIND, project_id)

    # --- writing ---------------------------------------------------------------------------------------

    async def create(self, principal: Principal, data: ProjectInput) -> ProjectView:
        values = _normalized(
            {
                "name": data.name,
                "description": data.description,
                "start_date": data.start_date,
                "end_date": data.end_date,
                "manager_id": data.manager_id if data.manager_id is not None else principal.employee_id,
                "controller_id": data.controller_id,
                "customer_id": data.customer_id,
                "default_event_type": data.default_event_type,
                "team_id": data.team_id,
                "work_group": data.work_group,
            }
        )
        _check_period(values["start_date"], values["end_date"])
        now = utcnow()
        project = Project(
            id=str(uuid.uuid4()),
            name=values["name"],
            description=values["description"],
            start_date=values["start_date"],
            end_date=values["end_date"],
            manager_id=values["manager_id"],
            controller_id=values["controller_id"],
            customer_id=values["customer_id"],
            default_event_type=values["default_event_type"],
            team_id=values["team_id"],
            status=ACTIVE,
            closed_at=None,
            version=1,
            created_by=principal.subject,
            created_at=now,
            updated_at=now,
        )
        view = ProjectView(project, values["work_group"])
        async with self._db.session() as session:
            session.add(project)
            await session.flush()
            for member in view.work_group:
                session.add(
                    ProjectMember(
                        project_id=project.id, employee_id=member, added_at=now, added_by=principal.subject
                    )
                )
            await self._audit.record(
                session, principal, OWNER_KIND, project.id, "create", diff({}, _snapshot(view))
            )
            await self._publish(session, principal, view, "created", [])
        self._on_outbox()
        return view

    async def update(self, principal: Principal, project_id: str, changes: ProjectChanges) -> ProjectView:
        values = _normalized(changes.values)
        async with self._db.session() as session:
            view = await self._visible(session, principal, project_id, for_update=True)
            if view.project.version != changes.version:
                raise StaleVersion(view.project.version)
            view, published = await self._change(session, principal, view, values)
        if published:
            self._on_outbox()
        return view

    async def add_members(
        self, principal: Principal, project_id: str, employee_ids: Sequence[str]
    ) -> ProjectView:
        """Add employees to the work group (those already in it stay); no version needed."""
        async with self._db.session() as session:
            view = await self._visible(session, principal, project_id, for_update=True)
            wanted = _work_group([*view.work_group, *employee_ids])
            view, published = await self._change(session, principal, view, {"work_group": wanted})
        if published:
            self._on_outbox()
        return view

    async def remove_member(self, principal: Principal, project_id: str, employee_id: str) -> ProjectView:
        """Take an employee out of the work group; no version needed."""
        async with self._db.session() as session:
            view = await self._visible(session, principal, project_id, for_update=True)
            if employee_id not in view.work_group:
                raise InvalidField("employee_id", "not in the project's work group")
            wanted = [member for member in view.work_group if member != employee_id]
            view, published = await self._change(session, principal, view, {"work_group": wanted})
        if published:
            self._on_outbox()
        return view

    async def _change(
        self, session: AsyncSession, principal: Principal, view: ProjectView, values: Mapping[str, Any]
    ) -> tuple[ProjectView, bool]:
        """Apply checked values to a locked project; (the new view, whether anything changed)."""
        project = view.project
        before = _snapshot(view)
        after = {**before, **values}
        _check_period(after["start_date"], after["end_date"])
        changed = diff(before, after)
        if not changed:
            return view, False
        now = utcnow()
        for name in changed:
            if name == "work_group":
                await self._set_work_group(session, principal, project.id, view.work_group, after[name], now)
            else:
                setattr(project, name, after[name])
        if "status" in changed:
            project.closed_at = now if after["status"] == CLOSED else None
        project.version += 1
        project.updated_at = now
        view = ProjectView(project, list(after["work_group"]))
        action = "status" if "status" in changed else "update"
        await self._audit.record(session, principal, OWNER_KIND, project.id, action, changed)
        await self._publish(session, principal, view, "updated", sorted(changed))
        return view, True

    async def delete(self, principal: Principal, project_id: str, *, version: int | None = None) -> None:
        """Delete the project, its work group, discussion and attachments (its events and tasks keep
        their project id: the journal and tasks decide what a missing project means for them)."""
        async with self._db.session() as session:
            view = await self._visible(session, principal, project_id, for_update=True)
            project = view.project
            if version is not None and project.version != version:
                raise StaleVersion(project.version)
            attachments = await AttachmentStore.list(session, OWNER_KIND, project.id)
            for attachment in attachments:
                await self._attachments.delete(session, attachment.id)
            await session.execute(delete(ProjectComment).where(ProjectComment.project_id == project.id))
            await session.execute(delete(ProjectMember).where(ProjectMember.project_id == project.id))
            await session.execute(delete(Project).where(Project.id == project.id))
            await self._audit.record(
                session, principal, OWNER_KIND, project.id, "delete", diff(_snapshot(view), {})
            )
            event = projects_pb2.ProjectEvent(
                event_id=f"project:{project.id}:deleted",
                occurred_at=timestamp_message(utcnow()),
                version=project.version,
                actor=principal.subject,
                deleted=projects_pb2.ProjectDeleted(project_id=project.id),
            )
            await outbox.add(session, [outbox.row(PROJECT_SUBJECTS["deleted"], event, event.event_id)])
        self._on_outbox()

    # --- discussion ------------------------------------------------------------------------------------

    async def comments(self, principal: Principal, project_id: str) -> Sequence[ProjectComment]:
        async with self._db.session() as session:
            await self._visible(session, principal, project_id)
            rows = await session.scalars(
                select(ProjectComment)
                .where(ProjectComment.project_id == project_id)
                .order_by(ProjectComment.created_at, ProjectComment.id)
            )
            return rows.all()

    async def add_comment(self, principal: Principal, project_id: str, text: str) -> ProjectComment:
        """A message in the project's discussion: anyone who sees the project may write one."""
        body = _text("text", text, max_length=MAX_COMMENT_LENGTH, required=True)
        async with self._db.session() as session:
            view = await self._visible(session, principal, project_id)
            comment = ProjectComment(
                id=str(uuid.uuid4()),
                project_id=project_id,
                author_subject=principal.subject,
                author_employee_id=principal.employee_id,
                author_name=principal.name[:200],
                text=body,
                created_at=utcnow(),
            )
            session.add(comment)
            await self._audit.record(
                session, principal, OWNER_KIND, project_id, "comment", {"comment": [None, comment.id]}
            )
            await self._publish(
                session, principal, view, "updated", ["comments"], suffix=f"comment:{comment.id}"
            )
        self._on_outbox()
        return comment

    # --- attachments -----------------------------------------------------------------------------------

    async def attachments(self, principal: Principal, project_id: str) -> Sequence[Attachment]:
        async with self._db.session() as session:
            await self._visible(session, principal, project_id)
            return await AttachmentStore.list(session, OWNER_KIND, project_id)

    async def attach(
        self,
        principal: Principal,
        project_id: str,
        *,
        filename: str,
        declared_type: str | None,
        chunks: AsyncIterator[bytes],
    ) -> Attachment:
        """Store a file on the project (size and type checked by the store: AttachmentError)."""
        async with self._db.session() as session:
            view = await self._visible(session, principal, project_id)
            attachment = await self._attachments.save(
                session,
                owner_kind=OWNER_KIND,
                owner_id=project_id,
                filename=filename,
                declared_type=declared_type,
                chunks=chunks,
                created_by=principal.subject,
            )
            await self._audit.record(
                session,
                principal,
                OWNER_KIND,
                project_id,
                "attach",
                {"attachment": [None, attachment.filename]},
            )
            await self._publish(
                session,
                principal,
                view,
                "updated",
                ["attachments"],
                suffix=f"attachment:{attachment.id}:added",
            )
        self._on_outbox()
        return attachment

    async def open_attachment(self, principal: Principal, project_id: str, attachment_id: str) -> StoredFile:
        async with self._db.session() as session:
            await self._visible(session, principal, project_id)
            await self._own_attachment(session, project_id, attachment_id)
            return await self._attachments.open(session, attachment_id)

    async def delete_attachment(self, principal: Principal, project_id: str, attachment_id: str) -> None:
        async with self._db.session() as session:
            view = await self._visible(session, principal, project_id)
            attachment = await self._own_attachment(session, project_id, attachment_id)
            await self._attachments.delete(session, attachment_id)
            await self._audit.record(
                session,
                principal,
                OWNER_KIND,
                project_id,
                "detach",
                {"attachment": [attachment.filename, None]},
            )
            await self._publish(
                session,
                principal,
                view,
                "updated",
                ["attachments"],
                suffix=f"attachment:{attachment_id}:removed",
            )
        self._on_outbox()

    # --- internals -------------------------------------------------------------------------------------

    async def _own_attachment(self, session: AsyncSession, project_id: str, attachment_id: str) -> Attachment:
        attachment = await session.get(Attachment, attachment_id)
        if attachment is None or attachment.owner_kind != OWNER_KIND or attachment.owner_id != project_id:
            raise AttachmentNotFound(f"the project has no attachment {attachment_id}")
        return attachment

    async def _visible(
        self, session: AsyncSession, principal: Principal, project_id: str, *, for_update: bool = False
    ) -> ProjectView:
        query = select(Project).where(Project.id == project_id, visible_projects(principal))
        if for_update:
            query = query.with_for_update(of=Project)
        project = await session.scalar(query)
        if project is None:
            raise ProjectNotFound(f"no project {project_id}")
        groups = await self._work_groups(session, [project.id])
        return ProjectView(project, groups.get(project.id, []))

    @staticmethod
    async def _work_groups(session: AsyncSession, project_ids: Sequence[str]) -> dict[str, list[str]]:
        if not project_ids:
            return {}
        rows = await session.execute(
            select(ProjectMember.project_id, ProjectMember.employee_id)
            .where(ProjectMember.project_id.in_(list(project_ids)))
            .order_by(ProjectMember.project_id, ProjectMember.employee_id)
        )
        groups: dict[str, list[str]] = {}
        for project_id, employee_id in rows:
            groups.setdefault(project_id, []).append(employee_id)
        return groups

    @staticmethod
    async def _set_work_group(
        session: AsyncSession,
        principal: Principal,
        project_id: str,
        before: Sequence[str],
        after: Sequence[str],
        now: datetime,
    ) -> None:
        removed = sorted(set(before) - set(after))
        if removed:
            await session.execute(
                delete(ProjectMember).where(
                    ProjectMember.project_id == project_id, ProjectMember.employee_id.in_(removed)
                )
            )
        for member in sorted(set(after) - set(before)):
            session.add(
                ProjectMember(
                    project_id=project_id, employee_id=member, added_at=now, added_by=principal.subject
                )
            )

    async def _publish(
        self,
        session: AsyncSession,
        actor: Principal | str,
        view: ProjectView,
        kind: str,
        changed: list[str],
        *,
        suffix: str | None = None,
    ) -> None:
        project = view.project
        event_id = f"project:{project.id}:{suffix}" if suffix else f"project:{project.id}:{project.version}"
        event = projects_pb2.ProjectEvent(
            event_id=event_id,
            occurred_at=timestamp_message(utcnow()),
            version=project.version,
            actor=_actor(actor),
            changed=changed,
        )
        getattr(event, kind).CopyFrom(project_message(view))
        await outbox.add(session, [outbox.row(PROJECT_SUBJECTS[kind], event, event_id)])


def _cursor_key(key: list[Any]) -> tuple[datetime, str]:
    try:
        created, last_id = key
        return datetime.fromisoformat(str(created)), str(last_id)
    except (TypeError, ValueError):
        raise paging.InvalidCursor("page cursor is malformed") from None


__all__ = [
    "PROJECT_SUBJECTS",
    "AttachmentNotFound",
    "InvalidField",
    "ProjectChanges",
    "ProjectError",
    "ProjectInput",
    "ProjectNotFound",
    "ProjectPage",
    "ProjectQuery",
    "ProjectService",
    "ProjectView",
    "StaleVersion",
    "project_message",
    "visible_projects",
]
