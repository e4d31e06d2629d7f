"""REST API of tasks: the register and calendar, the task card and its tabs, group operations.

Rights are checked before anything is read (403, nothing changed): ``task.create`` to create, copy,
multiply or save templates, ``task.modify`` to edit, ``task.delete`` to delete, ``task.status`` to
change statuses. Rows a user may not see answer 404. Refusals carry what the client needs: a forbidden
status change answers 409 with ``allowed`` (the statuses it may go to), a circular dependency 422 naming
the cycle, a stale ``If-Match`` 412 with the current ``version``.

Writes are optimistic the HTTP way: each task answer carries its version as ``ETag`` (``"3"``); send it
back as ``If-Match`` to be refused instead of overwriting someone else's change. ``POST /tasks`` takes an
``Idempotency-Key``: the same key again returns the task made the first time.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Header, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from telecrm_common.auth import Principal
from telecrm_crm.access import Access
from telecrm_crm.attachments import AttachmentError, download, upload_chunks
from telecrm_crm.paging import DEFAULT_LIMIT, MAX_LIMIT, Page
from telecrm_crm.schemas import AttachmentOut, HistoryEntryOut
from telecrm_crm.tasks import (
    MAX_GROUP,
    CalendarView,
    CallInfo,
    DependencyCycle,
    DueReminder,
    ExecutorIn,
    GroupResult,
    Id,
    InvalidTask,
    ReminderIn,
    Sort,
    StatusInfo,
    TaskDraft,
    TaskError,
    TaskPatch,
    TaskQuery,
    TaskService,
    TaskView,
    TemplateFields,
    UTCTime,
    as_utc,
)
from telecrm_crm.tasks_models import (
    EXECUTOR_STATUSES,
    STATUS_GROUPS,
    TaskCall,
    TaskComment,
    TaskReminder,
    TaskTemplate,
)

ExecutorStatus = Literal["set", "in_progress", "done", "suspended"]
StatusGroup = Literal["set", "in_progress", "overdue", "done", "accepted", "suspended"]
PriorityName = Literal["low", "normal", "high"]
StatusCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
# Fields the service may refuse that are query parameters (the others are in the body).
QUERY_FIELDS = frozenset({"status_group", "sort", "tz", "to", "cursor"})

assert set(EXECUTOR_STATUSES) == set(ExecutorStatus.__args__)  # type: ignore[attr-defined]
assert set(STATUS_GROUPS) == set(StatusGroup.__args__)  # type: ignore[attr-defined]


# --- errors --------------------------------------------------------------------------------------


class ErrorOut(BaseModel):
    detail: str


class TransitionErrorOut(BaseModel):
    detail: str
    current_status: str
    allowed: list[str] = Field(description="The statuses the task may move to from its current one")


class VersionErrorOut(BaseModel):
    detail: str
    version: int = Field(description="The task's current version (also the response's ETag)")


def error_response(exc: TaskError | AttachmentError) -> JSONResponse:
    """The answer to a refusal: 422 in FastAPI's shape naming the field, else ``detail`` and details."""
    if isinstance(exc, AttachmentError):
        return JSONResponse(status_code=exc.status, content={"detail": str(exc)})
    if isinstance(exc, InvalidTask | DependencyCycle):
        location = "query" if exc.field in QUERY_FIELDS else "body"
        error: dict[str, Any] = {
            "type": "value_error",
            "loc": [location, exc.field],
            "msg": exc.reason,
            "input": None,
        }
        if exc.details():
            error["ctx"] = exc.details()
        return JSONResponse(status_code=422, content={"detail": [error]})
    headers = {"ETag": etag(exc.details()["version"])} if exc.status == 412 else None
    return JSONResponse(
        status_code=exc.status, content={"detail": exc.message, **exc.details()}, headers=headers
    )


class TaskRoute(APIRoute):
    """Turns the service's refusals into answers, so the endpoints only say what succeeds."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except (TaskError, AttachmentError) as exc:
                return error_response(exc)

        return handle


def etag(version: int) -> str:
    return f'"{version}"'


def expected_version(if_match: str | None) -> int | None:
    """The version an ``If-Match`` asks for: None without one (or ``*``), -1 (no version is) when it
    names none of ours, such as a weak tag."""
    if if_match is None or if_match.strip() == "*":
        return None
    tag = if_match.strip()
    if len(tag) >= 2 and tag[0] == tag[-1] == '"':
        tag = tag[1:-1]
    return int(tag) if tag.isascii() and tag.isdigit() and len(tag) < 10 else -1


IfMatch = Annotated[
    str | None,
    Header(description='The ETag of the task the change was made on (`"3"`); 412 when it moved on'),
]


# --- shapes --------------------------------------------------------------------------------------


class ExecutorOut(BaseModel):
    employee_id: str
    status: ExecutorStatus
    planned_minutes: int | None
    time_spent_minutes: int


class TaskOut(BaseModel):
    id: str
    name: str
    description: str
    status: str
    status_group: StatusGroup
    priority: PriorityName
    start_at: datetime | None
    end_at: datetime | None = Field(description="The deadline")
    overdue: bool = Field(description="The deadline passed and the task is not finished")
    author_id: str | None
    author_subject: str
    controller_id: str | None
    executors: list[ExecutorOut]
    contact_id: str | None
    phone: str | None
    project_id: str | None
    call_id: str | None
    event_id: str | None
    owner_employee_id: str | None
    owner_team_id: str | None
    depends_on: list[str]
    waiting_for: list[str] = Field(description="Tasks of depends_on that are not finished")
    recurrence: dict[str, Any] | None
    series_id: str | None
    series_index: int
    next_occurrence_id: str | None
    template_id: str | None
    done_at: datetime | None
    accepted_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, view: TaskView) -> TaskOut:
        task = view.task
        return cls(
            id=task.id,
            name=task.name,
            description=task.description,
            status=task.status,
            status_group=task.status_group,
            priority=task.priority,
            start_at=task.start_at,
            end_at=task.end_at,
            overdue=view.overdue,
            author_id=task.author_id,
            author_subject=task.author_subject,
            controller_id=task.controller_id,
            executors=[
                ExecutorOut(
                    employee_id=e.employee_id,
                    status=e.status,
                    planned_minutes=e.planned_minutes,
                    time_spent_minutes=e.time_spent_minutes,
                )
                for e in task.executors
            ],
            contact_id=task.contact_id,
            phone=task.phone,
            project_id=task.project_id,
            call_id=task.call_id,
            event_id=task.event_id,
            owner_employee_id=task.owner_employee_id,
            owner_team_id=task.owner_team_id,
            depends_on=task.depends_on,
            waiting_for=view.waiting_for,
            recurrence=task.recurrence,
            series_id=task.series_id,
            series_index=task.series_index,
            next_occurrence_id=task.next_occurrence_id,
            template_id=task.template_id,
            done_at=task.done_at,
            accepted_at=task.accepted_at,
            created_at=task.created_at,
            updated_at=task.updated_at,
            version=task.version,
        )


class TaskPageOut(Page[TaskOut]):
    by_status_group: dict[str, int] | None = Field(
        default=None, description="With include_total: how many match in each status group"
    )
    overdue: int | None = Field(default=None, description="With include_total: how many of them are overdue")


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: StatusCode
    executors_too: bool = Field(
        default=False, description="Set the executors' statuses too (needed to finish a task they have not)"
    )


class GroupStatusIn(StatusIn):
    task_ids: list[Id] = Field(min_length=1, max_length=MAX_GROUP)


class GroupExecutorsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_ids: list[Id] = Field(min_length=1, max_length=MAX_GROUP)
    employee_ids: list[Id] = Field(min_length=1, max_length=MAX_GROUP)
    replace: bool = Field(default=False, description="Replace the executors a task has (else add to them)")
    distribute: bool = Field(
        default=False, description="One employee per task in turn (else every employee on every task)"
    )


class GroupResultOut(BaseModel):
    task_id: str
    ok: bool
    status: int = Field(description="What this task's part answered: 200, 403, 404, 409, 422...")
    detail: str = ""
    details: dict[str, Any] = Field(default_factory=dict)
    task: TaskOut | None = None

    @classmethod
    def of(cls, result: GroupResult) -> GroupResultOut:
        return cls(
            task_id=result.task_id,
            ok=result.ok,
            status=result.status,
            detail=result.detail,
            details=result.details,
            task=TaskOut.of(result.task) if result.task else None,
        )


class GroupOut(BaseModel):
    succeeded: int
    failed: int
    results: list[GroupResultOut]

    @classmethod
    def of(cls, results: list[GroupResult]) -> GroupOut:
        ok = sum(result.ok for result in results)
        return cls(succeeded=ok, failed=len(results) - ok, results=[GroupResultOut.of(r) for r in results])


class ExecutorsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    executors: list[ExecutorIn] = Field(max_length=MAX_GROUP)
    replace: bool = Field(default=True, description="Replace the executors (else add to them)")


class ExecutorPatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: ExecutorStatus | None = None
    time_spent_minutes: int | None = Field(default=None, ge=0, le=10_000_000)
    add_minutes: int | None = Field(
        default=None, ge=-10_000_000, le=10_000_000, description="Minutes to add to the time spent"
    )
    planned_minutes: int | None = Field(default=None, ge=0, le=1_000_000)


class DependencyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depends_on: Id


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: str = Field(min_length=1, max_length=10_000)


class CommentOut(BaseModel):
    id: str
    task_id: str
    author_subject: str
    author_employee_id: str | None
    author_name: str
    body: str
    created_at: datetime

    @classmethod
    def of(cls, comment: TaskComment) -> CommentOut:
        return cls.model_validate(comment, from_attributes=True)


class ReminderOut(BaseModel):
    id: str
    task_id: str
    employee_id: str
    remind_at: datetime
    before_end_minutes: int | None
    email: bool
    emailed_at: datetime | None
    dismissed_at: datetime | None

    @classmethod
    def of(cls, reminder: TaskReminder) -> ReminderOut:
        return cls(
            id=reminder.id,
            task_id=reminder.task_id,
            employee_id=reminder.employee_id,
            remind_at=reminder.remind_at,
            before_end_minutes=reminder.offset_minutes,
            email=reminder.email,
            emailed_at=reminder.emailed_at,
            dismissed_at=reminder.dismissed_at,
        )


class DueReminderOut(ReminderOut):
    task_name: str
    task_status: str
    task_priority: str
    task_end_at: datetime | None

    @classmethod
    def of_due(cls, due: DueReminder) -> DueReminderOut:
        return cls(
            **ReminderOut.of(due.reminder).model_dump(),
            task_name=due.task.name,
            task_status=due.task.status,
            task_priority=due.task.priority,
            task_end_at=due.task.end_at,
        )


class SnoozeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    remind_at: UTCTime


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    task: TemplateFields


class TemplatePatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    task: TemplateFields | None = None


class SaveTemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)


class TemplateOut(BaseModel):
    id: str
    name: str
    task: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, template: TaskTemplate) -> TemplateOut:
        return cls(
            id=template.id,
            name=template.name,
            task=template.fields,
            created_by=template.created_by,
            created_at=template.created_at,
            updated_at=template.updated_at,
            version=template.version,
        )


class ContactTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_id: Id
    phone: str | None = Field(default=None, max_length=64)


class MultiplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contacts: list[ContactTarget] = Field(min_length=1, max_length=MAX_GROUP)


class CallAttachIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    call_id: Id
    direction: Literal["inbound", "outbound", "internal"] | None = None
    number: str | None = Field(default=None, max_length=64)
    started_at: UTCTime | None = None
    talk_seconds: int | None = Field(default=None, ge=0)
    disposition: str | None = Field(default=None, max_length=16)


class TaskCallOut(BaseModel):
    call_id: str
    source: str
    direction: str | None
    number: str | None
    started_at: datetime | None
    talk_seconds: int | None
    disposition: str | None
    linked_at: datetime
    linked_by: str

    @classmethod
    def of(cls, call: TaskCall) -> TaskCallOut:
        return cls.model_validate(call, from_attributes=True)


class StatusOut(BaseModel):
    code: str
    name: str
    group: StatusGroup
    builtin: bool
    active: bool

    @classmethod
    def of(cls, info: StatusInfo) -> StatusOut:
        return cls(code=info.code, name=info.name, group=info.group, builtin=info.builtin, active=info.active)


class StatusCreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="Lower-case letters, digits and _")
    name: str = Field(min_length=1, max_length=100)
    group: StatusGroup = Field(description="The built-in status it behaves as")


class StatusPatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=100)
    active: bool | None = None


class CalendarDayOut(BaseModel):
    date: date
    task_ids: list[str]


class CalendarOut(BaseModel):
    view: Literal["day", "week", "month"]
    tz: str
    first_day: date
    last_day: date
    starts: datetime = Field(description="The period's start, UTC")
    ends: datetime = Field(description="The period's end (exclusive), UTC")
    days: list[CalendarDayOut] = Field(description="Each local day with the tasks that run on it")
    tasks: list[TaskOut]
    truncated: bool = Field(description="More tasks matched than one answer holds; narrow the filters")

    @classmethod
    def of(cls, calendar: CalendarView) -> CalendarOut:
        return cls(
            view=calendar.view,
            tz=calendar.tz,
            first_day=calendar.first_day,
            last_day=calendar.last_day,
            starts=calendar.starts,
            ends=calendar.ends,
            days=[CalendarDayOut(date=day.day, task_ids=day.task_ids) for day in calendar.days],
            tasks=[TaskOut.of(view) for view in calendar.tasks],
            truncated=calendar.truncated,
        )


# --- the router ----------------------------------------------------------------------------------

_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorOut, "description": "The right is missing; nothing changed"},
    404: {"model": ErrorOut, "description": "No such task (or not one this user sees)"},
}
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    412: {"model": VersionErrorOut, "description": "The task changed since the If-Match version"},
}


def tasks_router(service: TaskService, access: Access) -> APIRouter:
    """The tasks' endpoints; ``access`` checks tokens and rights."""
    router = APIRouter(tags=["tasks"], route_class=TaskRoute)
    # Dependencies as defaults: annotations are strings here, which FastAPI resolves in the module's
    # globals, where this function's ``access`` is not.
    signed_in = Depends(access.current)
    may_create = Depends(access.require("task.create"))
    may_modify = Depends(access.require("task.modify"))
    may_delete = Depends(access.require("task.delete"))
    may_change_status = Depends(access.require("task.status"))

    def answer(response: Response, view: TaskView) -> TaskOut:
        response.headers["ETag"] = etag(view.task.version)
        return TaskOut.of(view)

    # --- statuses ------------------------------------------------------------------------------

    @router.get("/task-statuses", summary="Task statuses: the built-in ones and those an admin added")
    async def list_statuses(user: Principal = signed_in) -> list[StatusOut]:
        return [StatusOut.of(info) for info in await service.list_statuses()]

    @router.post(
        "/task-statuses",
        status_code=201,
        summary="Add a status (administrators)",
        responses={403: {"model": ErrorOut}, 409: {"model": ErrorOut, "description": "The code is taken"}},
    )
    async def create_status(body: StatusCreateIn, user: Principal = signed_in) -> StatusOut:
        return StatusOut.of(await service.create_status(user, body.code, body.name, body.group))

    @router.patch(
        "/task-statuses/{code}",
        summary="Rename or (de)activate a status (administrators)",
        responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
    )
    async def update_status(code: str, body: StatusPatchIn, user: Principal = signed_in) -> StatusOut:
        return StatusOut.of(await service.update_status(user, code, name=body.name, active=body.active))

    # --- templates -----------------------------------------------------------------------------

    @router.get("/task-templates", summary="Task templates")
    async def list_templates(user: Principal = signed_in) -> list[TemplateOut]:
        return [TemplateOut.of(template) for template in await service.templates()]

    @router.post("/task-templates", status_code=201, summary="Save a template", responses=_ERRORS)
    async def create_template(body: TemplateIn, user: Principal = may_create) -> TemplateOut:
        return TemplateOut.of(await service.create_template(user, body.name, body.task))

    @router.get("/task-templates/{template_id}", summary="A template", responses=_ERRORS)
    async def get_template(template_id: str, user: Principal = signed_in) -> TemplateOut:
        return TemplateOut.of(await service.template(template_id))

    @router.patch("/task-templates/{template_id}", summary="Change a template", responses=_WRITE_ERRORS)
    async def update_template(
        template_id: str, body: TemplatePatchIn, user: Principal = may_create, if_match: IfMatch = None
    ) -> TemplateOut:
        template = await service.update_template(
            user, template_id, name=body.name, fields=body.task, expected_version=expected_version(if_match)
        )
        return TemplateOut.of(template)

    @router.delete(
        "/task-templates/{template_id}", status_code=204, summary="Delete a template", responses=_ERRORS
    )
    async def delete_template(template_id: str, user: Principal = may_delete) -> Response:
        await service.delete_template(user, template_id)
        return Response(status_code=204)

    # --- reminders of the user -----------------------------------------------------------------

    @router.get("/reminders/due", summary="My reminders that are due (of unfinished tasks)")
    async def due_reminders(user: Principal = signed_in) -> list[DueReminderOut]:
        return [DueReminderOut.of_due(due) for due in await service.due_reminders(user)]

    @router.post("/reminders/{reminder_id}/dismiss", summary="Dismiss one of my reminders", responses=_ERRORS)
    async def dismiss_reminder(reminder_id: str, user: Principal = signed_in) -> ReminderOut:
        return ReminderOut.of(await service.dismiss_reminder(user, reminder_id))

    @router.post("/reminders/{reminder_id}/snooze", summary="Remind me again later", responses=_ERRORS)
    async def snooze_reminder(reminder_id: str, body: SnoozeIn, user: Principal = signed_in) -> ReminderOut:
        return ReminderOut.of(await service.snooze_reminder(user, reminder_id, body.remind_at))

    # --- the register and the calendar ---------------------------------------------------------

    @router.get(
        "/tasks",
        summary="The task register",
        description="Filters combine with AND; repeat `status`, `status_group` or `priority` to match any "
        "of several. A period matches the tasks whose start-to-deadline overlaps it. Pages are keyset: "
        "pass `next_cursor` back as `cursor`.",
        responses={400: {"model": ErrorOut, "description": "A cursor not of this list"}},
    )
    async def register(
        user: Principal = signed_in,
        status: Annotated[list[StatusCode] | None, Query(description="Status codes")] = None,
        status_group: Annotated[list[StatusGroup] | None, Query()] = None,
        priority: Annotated[list[PriorityName] | None, Query()] = None,
        executor_id: Annotated[str | None, Query(max_length=100)] = None,
        controller_id: Annotated[str | None, Query(max_length=100)] = None,
        author_id: Annotated[str | None, Query(max_length=100)] = None,
        contact_id: Annotated[str | None, Query(max_length=100)] = None,
        project_id: Annotated[str | None, Query(max_length=100)] = None,
        owner_employee_id: Annotated[str | None, Query(max_length=100)] = None,
        owner_team_id: Annotated[str | None, Query(max_length=100)] = None,
        period_from: Annotated[
            datetime | None, Query(alias="from", description="Period start (ISO 8601; UTC if no offset)")
        ] = None,
        period_to: Annotated[datetime | None, Query(alias="to", description="Period end, exclusive")] = None,
        overdue: Annotated[bool | None, Query(description="Only overdue (true) or only not overdue")] = None,
        q: Annotated[str | None, Query(max_length=200, description="Words in the name")] = None,
        sort: Annotated[Sort, Query(description="Field, `-` for descending")] = "-created",
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        cursor: Annotated[str | None, Query(max_length=2000)] = None,
        include_total: Annotated[bool, Query(description="Count the matches, by status group too")] = False,
    ) -> TaskPageOut:
        query = TaskQuery(
            statuses=tuple(status or ()),
            status_groups=tuple(status_group or ()),
            priorities=tuple(priority or ()),
            executor_id=executor_id,
            controller_id=controller_id,
            author_id=author_id,
            contact_id=contact_id,
            project_id=project_id,
            owner_employee_id=owner_employee_id,
            owner_team_id=owner_team_id,
            period_from=_as_utc(period_from),
            period_to=_as_utc(period_to),
            overdue=overdue,
            text=q,
            sort=sort,
            limit=limit,
            cursor=cursor,
            include_total=include_total,
        )
        page = await service.register(user, query)
        return TaskPageOut(
            items=[TaskOut.of(view) for view in page.items],
            next_cursor=page.next_cursor,
            total=page.total,
            by_status_group=page.by_status_group,
            overdue=page.overdue,
        )

    @router.get(
        "/tasks/calendar",
        summary="Tasks of a day, week or month, by local day",
        description="The period is counted in `tz` (IANA, such as Europe/Kyiv): a week starts on Monday. "
        "A task runs on each day its start-to-deadline touches (a task with only a deadline, on that day).",
    )
    async def calendar(
        user: Principal = signed_in,
        view: Annotated[Literal["day", "week", "month"], Query()] = "week",
        day: Annotated[
            date | None, Query(alias="date", description="A day in the period; default: today in `tz`")
        ] = None,
        tz: Annotated[str, Query(max_length=64, description="IANA time zone of the asker")] = "UTC",
        executor_id: Annotated[str | None, Query(max_length=100)] = None,
        contact_id: Annotated[str | None, Query(max_length=100)] = None,
        project_id: Annotated[str | None, Query(max_length=100)] = None,
        status_group: Annotated[list[StatusGroup] | None, Query()] = None,
    ) -> CalendarOut:
        query = TaskQuery(
            executor_id=executor_id,
            contact_id=contact_id,
            project_id=project_id,
            status_groups=tuple(status_group or ()),
        )
        result = await service.calendar(user, view=view, day=day, tz=tz, query=query)
        return CalendarOut.of(result)

    # --- group operations (before /tasks/{task_id}/...) ----------------------------------------

    @router.post(
        "/tasks/group/status",
        summary="Change the status of several tasks",
        description="Each task is checked on its own (visibility, workflow, executors, acceptance); the "
        "answer lists what happened to each.",
        responses={403: {"model": ErrorOut}},
    )
    async def group_status(body: GroupStatusIn, user: Principal = may_change_status) -> GroupOut:
        results = await service.group_status(
            user, body.task_ids, body.status, executors_too=body.executors_too
        )
        return GroupOut.of(results)

    @router.post(
        "/tasks/group/executors",
        summary="Assign executors to several tasks",
        responses={403: {"model": ErrorOut}},
    )
    async def group_executors(body: GroupExecutorsIn, user: Principal = may_modify) -> GroupOut:
        results = await service.group_executors(
            user, body.task_ids, body.employee_ids, replace=body.replace, distribute=body.distribute
        )
        return GroupOut.of(results)

    # --- create --------------------------------------------------------------------------------

    @router.post("/tasks", status_code=201, summary="Create a task", responses=_ERRORS)
    async def create(
        body: TaskDraft,
        response: Response,
        user: Principal = may_create,
        idempotency_key: Annotated[
            str | None,
            Header(max_length=100, description="The same key again returns the task made the first time"),
        ] = None,
    ) -> TaskOut:
        request_id = f"rest:{user.subject}:{idempotency_key}" if idempotency_key else None
        return answer(response, await service.create(user, body, request_id=request_id))

    @router.post(
        "/tasks/from-event/{event_id}",
        status_code=201,
        summary="Create a task from a journal event",
        description="The task inherits the event's contact, phone and project; values in the body win.",
        responses=_ERRORS,
    )
    async def create_from_event(
        event_id: str, body: TaskDraft, response: Response, user: Principal = may_create
    ) -> TaskOut:
        return answer(response, await service.create_from(user, "event", event_id, body))

    @router.post(
        "/tasks/from-call/{call_id}",
        status_code=201,
        summary="Create a task from a call",
        description="The task inherits the call's contact, phone and project (values in the body win) and "
        "the call is attached to it.",
        responses=_ERRORS,
    )
    async def create_from_call(
        call_id: str, body: TaskDraft, response: Response, user: Principal = may_create
    ) -> TaskOut:
        return answer(response, await service.create_from(user, "call", call_id, body))

    # --- one task ------------------------------------------------------------------------------

    @router.get("/tasks/{task_id}", summary="A task", responses=_ERRORS)
    async def get_task(task_id: str, response: Response, user: Principal = signed_in) -> TaskOut:
        return answer(response, await service.get(user, task_id))

    @router.patch(
        "/tasks/{task_id}",
        summary="Change a task's fields",
        description="Absent fields stay; null clears. The status changes through `POST .../status`.",
        responses=_WRITE_ERRORS,
    )
    async def update_task(
        task_id: str,
        body: TaskPatch,
        response: Response,
        user: Principal = may_modify,
        if_match: IfMatch = None,
    ) -> TaskOut:
        view = await service.update(user, task_id, body, expected_version=expected_version(if_match))
        return answer(response, view)

    @router.delete("/tasks/{task_id}", status_code=204, summary="Delete a task", responses=_WRITE_ERRORS)
    async def delete_task(task_id: str, user: Principal = may_delete, if_match: IfMatch = None) -> Response:
        await service.delete(user, task_id, expected_version=expected_version(if_match))
        return Response(status_code=204)

    @router.post(
        "/tasks/{task_id}/status",
        summary="Change a task's status",
        responses={
            **_WRITE_ERRORS,
            409: {
                "model": TransitionErrorOut,
                "description": "The workflow does not allow it (with the allowed next statuses), executors "
                "have not finished, or the task waits for unfinished tasks",
            },
        },
    )
    async def change_status(
        task_id: str,
        body: StatusIn,
        response: Response,
        user: Principal = may_change_status,
        if_match: IfMatch = None,
    ) -> TaskOut:
        view = await service.change_status(
            user,
            task_id,
            body.status,
            executors_too=body.executors_too,
            expected_version=expected_version(if_match),
        )
        return answer(response, view)

    @router.get("/tasks/{task_id}/history", summary="Every change of the task", responses=_ERRORS)
    async def history(task_id: str, user: Principal = signed_in) -> list[HistoryEntryOut]:
        return [HistoryEntryOut.of(entry) for entry in await service.history(user, task_id)]

    @router.post("/tasks/{task_id}/copy", status_code=201, summary="Copy a task", responses=_ERRORS)
    async def copy_task(
        task_id: str, response: Response, user: Principal = may_create, body: TaskPatch | None = None
    ) -> TaskOut:
        return answer(response, await service.copy(user, task_id, body))

    @router.post(
        "/tasks/{task_id}/multiply",
        status_code=201,
        summary="One copy of the task per contact",
        responses=_ERRORS,
    )
    async def multiply_task(task_id: str, body: MultiplyIn, user: Principal = may_create) -> list[TaskOut]:
        targets = [(target.contact_id, target.phone) for target in body.contacts]
        return [TaskOut.of(view) for view in await service.multiply(user, task_id, targets)]

    @router.post(
        "/tasks/{task_id}/template",
        status_code=201,
        summary="Save the task as a template",
        responses=_ERRORS,
    )
    async def save_template(task_id: str, body: SaveTemplateIn, user: Principal = may_create) -> TemplateOut:
        return TemplateOut.of(await service.template_from_task(user, task_id, body.name))

    # --- executors -----------------------------------------------------------------------------

    @router.put("/tasks/{task_id}/executors", summary="Set the executors", responses=_WRITE_ERRORS)
    async def set_executors(
        task_id: str,
        body: ExecutorsIn,
        response: Response,
        user: Principal = may_modify,
        if_match: IfMatch = None,
    ) -> TaskOut:
        view = await service.set_executors(
            user, task_id, body.executors, replace=body.replace, expected_version=expected_version(if_match)
        )
        return answer(response, view)

    @router.patch(
        "/tasks/{task_id}/executors/{employee_id}",
        summary="An executor's status and time",
        description="The executor changes their own; others need the right `task.modify`.",
        responses=_WRITE_ERRORS,
    )
    async def update_executor(
        task_id: str,
        employee_id: str,
        body: ExecutorPatchIn,
        response: Response,
        user: Principal = signed_in,
        if_match: IfMatch = None,
    ) -> TaskOut:
        view = await service.update_executor(
            user,
            task_id,
            employee_id,
            status=body.status,
            time_spent_minutes=body.time_spent_minutes,
            add_minutes=body.add_minutes,
            planned_minutes=body.planned_minutes,
            may_modify=user.has("task.modify"),
            expected_version=expected_version(if_match),
        )
        return answer(response, view)

    # --- dependencies --------------------------------------------------------------------------

    @router.post(
        "/tasks/{task_id}/dependencies",
        summary="Make the task wait for another",
        responses={**_WRITE_ERRORS, 422: {"description": "Unknown task, or a cycle (named in ctx.cycle)"}},
    )
    async def add_dependency(
        task_id: str,
        body: DependencyIn,
        response: Response,
        user: Principal = may_modify,
        if_match: IfMatch = None,
    ) -> TaskOut:
        view = await service.add_dependency(
            user, task_id, body.depends_on, expected_version=expected_version(if_match)
        )
        return answer(response, view)

    @router.delete(
        "/tasks/{task_id}/dependencies/{depends_on_id}",
        summary="Stop waiting for a task",
        responses=_WRITE_ERRORS,
    )
    async def remove_dependency(
        task_id: str,
        depends_on_id: str,
        response: Response,
        user: Principal = may_modify,
        if_match: IfMatch = None,
    ) -> TaskOut:
        view = await service.remove_dependency(
            user, task_id, depends_on_id, expected_version=expected_version(if_match)
        )
        return answer(response, view)

    # --- discussion ----------------------------------------------------------------------------

    @router.get("/tasks/{task_id}/comments", summary="The discussion", responses=_ERRORS)
    async def list_comments(task_id: str, user: Principal = signed_in) -> list[CommentOut]:
        return [CommentOut.of(comment) for comment in await service.comments(user, task_id)]

    @router.post(
        "/tasks/{task_id}/comments", status_code=201, summary="Write in the discussion", responses=_ERRORS
    )
    async def add_comment(task_id: str, body: CommentIn, user: Principal = signed_in) -> CommentOut:
        return CommentOut.of(await service.add_comment(user, task_id, body.body))

    @router.delete(
        "/tasks/{task_id}/comments/{comment_id}",
        status_code=204,
        summary="Delete a comment (its author or an administrator)",
        responses=_ERRORS,
    )
    async def delete_comment(task_id: str, comment_id: str, user: Principal = signed_in) -> Response:
        await service.delete_comment(user, task_id, comment_id)
        return Response(status_code=204)

    # --- attachments ---------------------------------------------------------------------------

    @router.get("/tasks/{task_id}/attachments", summary="Files of the task", responses=_ERRORS)
    async def list_attachments(task_id: str, user: Principal = signed_in) -> list[AttachmentOut]:
        return [AttachmentOut.of(a) for a in await service.attachments_of(user, task_id)]

    @router.post(
        "/tasks/{task_id}/attachments",
        status_code=201,
        summary="Attach a file",
        responses={
            **_ERRORS,
            413: {"model": ErrorOut, "description": "Larger than the limit"},
            415: {"model": ErrorOut, "description": "A type of file that is not accepted"},
        },
    )
    async def add_attachment(
        task_id: str, file: Annotated[UploadFile, File(description="The file")], user: Principal = may_modify
    ) -> AttachmentOut:
        attachment = await service.add_attachment(
            user,
            task_id,
            filename=file.filename or "attachment",
            content_type=file.content_type,
            chunks=upload_chunks(file),
        )
        return AttachmentOut.of(attachment)

    @router.get(
        "/tasks/{task_id}/attachments/{attachment_id}",
        summary="Download a file",
        response_class=FileResponse,
        responses=_ERRORS,
    )
    async def download_attachment(
        task_id: str, attachment_id: str, user: Principal = signed_in
    ) -> FileResponse:
        stored = await service.open_attachment(user, task_id, attachment_id)
        return download(stored)

    @router.delete(
        "/tasks/{task_id}/attachments/{attachment_id}",
        status_code=204,
        summary="Remove a file",
        responses=_ERRORS,
    )
    async def delete_attachment(task_id: str, attachment_id: str, user: Principal = may_modify) -> Response:
        await service.delete_attachment(user, task_id, attachment_id)
        return Response(status_code=204)

    # --- reminders of a task -------------------------------------------------------------------

    @router.get("/tasks/{task_id}/reminders", summary="Reminders of the task", responses=_ERRORS)
    async def list_reminders(task_id: str, user: Principal = signed_in) -> list[ReminderOut]:
        return [ReminderOut.of(r) for r in await service.reminders_of(user, task_id)]

    @router.post(
        "/tasks/{task_id}/reminders",
        status_code=201,
        summary="Remind employees of the task",
        description="One reminder per employee (default: the executors and the controller). Reminding "
        "others than oneself needs the right `task.modify`.",
        responses=_ERRORS,
    )
    async def add_reminder(task_id: str, body: ReminderIn, user: Principal = signed_in) -> list[ReminderOut]:
        return [ReminderOut.of(r) for r in await service.add_reminders(user, task_id, body)]

    @router.delete(
        "/tasks/{task_id}/reminders/{reminder_id}",
        status_code=204,
        summary="Remove a reminder",
        responses=_ERRORS,
    )
    async def delete_reminder(task_id: str, reminder_id: str, user: Principal = signed_in) -> Response:
        await service.delete_reminder(user, task_id, reminder_id)
        return Response(status_code=204)

    # --- calls ---------------------------------------------------------------------------------

    @router.get("/tasks/{task_id}/calls", summary="Calls attached to the task", responses=_ERRORS)
    async def list_calls(task_id: str, user: Principal = signed_in) -> list[TaskCallOut]:
        return [TaskCallOut.of(call) for call in await service.calls_of(user, task_id)]

    @router.post("/tasks/{task_id}/calls", summary="Attach a call to the task", responses=_WRITE_ERRORS)
    async def attach_call(
        task_id: str, body: CallAttachIn, response: Response, user: Principal = may_modify
    ) -> TaskOut:
        call = CallInfo(**body.model_dump())
        return answer(response, await service.attach_call(user, task_id, call))

    return router


def _as_utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)
