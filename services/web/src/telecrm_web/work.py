"""The pages where agents work their tasks, the events journal and projects, and their JSON API.

``/tasks`` is the task register and its day / week / month calendar (a task dragged, or moved by
keyboard, to another day or hour keeps its length: start and deadline shift together), ``/events`` the
journal of crm's events (calls the call log journaled among them), ``/projects`` the projects with
their tasks. The API under ``/api/...`` checks what the pages send (422 naming the field before crm is
asked) and forwards it to crm with the user's own token, so crm alone decides what the user may see and
change; its refusals (403, 404, 409 with the statuses allowed, 412 with the current version) reach the
page as they are. Buttons the user has no right to are left out of the page, and crm refuses anyway.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from telecrm_web.api import PAGE_SIZE_MAX, Forwarder, as_utc_range, passthrough, upstream_path
from telecrm_web.pages import Pages
from telecrm_web.sessions import Session

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Text = Annotated[str, StringConstraints(max_length=20_000)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64, pattern=r"^[0-9+*#()\s.\-]*$")]
TypeCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
ProjectName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Subject = Annotated[str, StringConstraints(max_length=255)]
Content = Annotated[str, StringConstraints(max_length=100_000)]
Priority = Literal["low", "normal", "high"]
StatusGroup = Literal["set", "in_progress", "overdue", "done", "accepted", "suspended"]
TaskSort = Literal["created", "-created", "deadline", "-deadline", "start", "-start", "priority", "-priority"]
Scope = Literal["mine", "team", "all"]
Direction = Literal["inbound", "outbound", "internal"]
IfMatch = Annotated[str | None, Header(alias="If-Match", max_length=32)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=100)]
MAX_EXECUTORS = 50


class TaskIn(BaseModel):
    """A new task as the register's form makes it (times with their offset: a time without one is
    refused rather than guessed)."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Text | None = None
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = Field(default=None, description="The deadline")
    priority: Priority = "normal"
    executor_ids: list[Id] = Field(default_factory=list, max_length=MAX_EXECUTORS)
    contact_id: Id | None = None
    project_id: Id | None = None
    phone: Phone | None = None


class CallTaskIn(BaseModel):
    """A task made from a call on its screen-pop card: a follow-up, or a personal reminder (a task for
    me, due at ``remind_at``, that reminds me then). The call's contact and number come with it."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Text | None = None
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = Field(default=None, description="The deadline")
    priority: Priority = "normal"
    executor_ids: list[Id] = Field(default_factory=list, max_length=MAX_EXECUTORS)
    contact_id: Id | None = None
    phone: Phone | None = None
    remind_at: AwareDatetime | None = Field(default=None, description="Remind me (the signed-in user) then")


class TaskChangesIn(BaseModel):
    """Changes of a task's card, or its move in the calendar (``start_at`` and ``end_at`` only).
    Absent fields stay; null clears."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Text | None = None
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None
    priority: Priority | None = None
    contact_id: Id | None = None
    project_id: Id | None = None
    phone: Phone | None = None


class TaskStatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    executors_too: bool = False


class ExecutorsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    employee_ids: list[Id] = Field(max_length=MAX_EXECUTORS)


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000)]


class ReminderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    remind_at: AwareDatetime
    email: bool = False


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type_code: TypeCode
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None
    contact_id: Id | None = None
    project_id: Id | None = None
    phone: Phone | None = None
    direction: Direction | None = None
    subject: Subject | None = None
    content: Content | None = None


class EventChangesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="The version edited: 409 when the event changed since")
    type_code: TypeCode | None = None
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None
    contact_id: Id | None = None
    project_id: Id | None = None
    phone: Phone | None = None
    direction: Direction | None = None
    subject: Subject | None = None
    content: Content | None = None


class ProjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ProjectName
    description: Annotated[str, StringConstraints(max_length=20_000)] = ""
    start_date: date | None = None
    end_date: date | None = None
    manager_id: Id | None = None
    customer_id: Id | None = None


class ProjectChangesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="The version edited: 409 when the project changed since")
    name: ProjectName | None = None
    description: Annotated[str, StringConstraints(max_length=20_000)] | None = None
    start_date: date | None = None
    end_date: date | None = None
    manager_id: Id | None = None
    customer_id: Id | None = None
    status: Literal["active", "closed"] | None = None


def _invalid(where: str, name: str, message: str) -> HTTPException:
    return HTTPException(422, [{"loc": [where, name], "msg": message, "type": "value_error"}])


def _changes(body: BaseModel) -> dict[str, Any]:
    """The fields the page sent (null included: it clears), as JSON."""
    return body.model_dump(mode="json", include=body.model_fields_set)


def _with_call_link(response: Response, attached: bool) -> Response:
    if response.status_code < 300:
        response.headers["X-Call-Link"] = "attached" if attached else "none"
    return response


def _attached_call(call: dict[str, Any]) -> dict[str, Any]:
    """The call log's call as crm attaches it to a task: the customer's number, when it started."""
    direction = call.get("direction")
    customer = (call.get("callee") if direction == "outbound" else call.get("caller")) or {}
    info = {
        "call_id": call["call_id"],
        "direction": direction,
        "number": (customer.get("e164") or customer.get("number") or "")[:64] or None,
        "started_at": call.get("started_at"),
        "disposition": call.get("disposition"),
    }
    if call.get("talk_seconds") is not None:
        info["talk_seconds"] = int(call["talk_seconds"])
    return {name: value for name, value in info.items() if value is not None}


def executor_filter(session: Session, scope: Scope | None, team_id: str | None) -> dict[str, str | None]:
    """Whose tasks: mine (I execute them), my team's (owned by my team) or all I may see."""
    if scope == "mine":
        if not session.employee_id:
            raise _invalid("query", "scope", "you are not an employee")
        return {"executor_id": session.employee_id}
    if scope == "team":
        p = session.principal
        teams = sorted(p.team_ids | p.supervised_team_ids)
        if team_id is None and len(teams) != 1:
            raise _invalid("query", "team_id", "name the team (you are in none or in several)")
        return {"owner_team_id": team_id or teams[0]}
    return {}


def work_router(pages: Pages, forwarder: Forwarder) -> APIRouter:
    router = APIRouter()
    signed_in = Depends(pages.guard.api_session)
    crm = forwarder.upstream.crm
    calls = forwarder.upstream.calls

    def rights(request: Request) -> dict[str, bool]:
        session = pages.guard.session_of(request)
        p = session.principal if session else None
        names = (
            "task.create",
            "task.modify",
            "task.status",
            "event.create",
            "event.modify",
            "project.create",
            "project.modify",
        )
        return {"can_" + name.replace(".", "_"): bool(p and p.has(name)) for name in names}

    # --- the pages -----------------------------------------------------------------------------------

    @router.get("/tasks", include_in_schema=False)
    async def tasks_page(request: Request) -> Response:
        return pages.signed_in_page(request, "tasks.html", "tasks", "tasks_title", **rights(request))

    @router.get("/events", include_in_schema=False)
    async def events_page(request: Request) -> Response:
        return pages.signed_in_page(request, "events.html", "events", "events_title", **rights(request))

    @router.get("/projects", include_in_schema=False)
    async def projects_page(request: Request) -> Response:
        return pages.signed_in_page(request, "projects.html", "projects", "projects_title", **rights(request))

    api = APIRouter(prefix="/api", tags=["work"])

    # --- tasks: the register and the calendar ----------------------------------------------------------

    @api.get("/tasks", summary="The task register (crm's GET /tasks), one page at a time")
    async def list_tasks(
        status_group: Annotated[list[StatusGroup] | None, Query(description="Repeat for several")] = None,
        status: Annotated[list[str] | None, Query(max_length=20, description="Status codes")] = None,
        scope: Annotated[Scope | None, Query(description="mine: I execute; team: my team owns")] = None,
        team_id: Annotated[str | None, Query(max_length=100)] = None,
        from_date: Annotated[date | None, Query(description="Period's first day, in the user's zone")] = None,
        to_date: Annotated[date | None, Query(description="Period's last day (included)")] = None,
        tz: Annotated[str | None, Query(max_length=64)] = None,
        overdue: Annotated[bool | None, Query()] = None,
        contact_id: Annotated[str | None, Query(max_length=100)] = None,
        project_id: Annotated[str | None, Query(max_length=100)] = None,
        q: Annotated[str | None, Query(max_length=200, description="Words in the name")] = None,
        sort: TaskSort = "-created",
        cursor: Annotated[str | None, Query(max_length=2000)] = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX)] = 25,
        session: Session = signed_in,
    ) -> Response:
        if from_date and to_date and to_date < from_date:
            raise _invalid("query", "to_date", "the period ends before it starts")
        period_from, period_to = as_utc_range(from_date, to_date, tz)
        params = {
            "status_group": list(status_group or []),
            "status": list(status or []),
            **executor_filter(session, scope, team_id),
            "from": period_from,
            "to": period_to,
            "overdue": None if overdue is None else str(overdue).lower(),
            "contact_id": contact_id,
            "project_id": project_id,
            "q": (q or "").strip() or None,
            "sort": sort,
            "cursor": cursor,
            "limit": limit,
            "include_total": "true" if not cursor else None,
        }
        return await forwarder.forward(session, crm, "GET", "/tasks", params=params)

    @api.get("/tasks/calendar", summary="Tasks of a day, week or month by local day (crm's calendar)")
    async def task_calendar(
        view: Literal["day", "week", "month"] = "week",
        day: Annotated[date | None, Query(alias="date", description="A day of the period")] = None,
        tz: Annotated[str, Query(max_length=64, description="IANA time zone of the user")] = "UTC",
        scope: Annotated[Scope | None, Query()] = None,
        team_id: Annotated[str | None, Query(max_length=100)] = None,
        status_group: Annotated[list[StatusGroup] | None, Query()] = None,
        contact_id: Annotated[str | None, Query(max_length=100)] = None,
        project_id: Annotated[str | None, Query(max_length=100)] = None,
        session: Session = signed_in,
    ) -> Response:
        whose = executor_filter(session, scope, team_id)
        if "owner_team_id" in whose:
            raise _invalid("query", "scope", "the calendar shows mine or all I see, not a team's")
        params = {
            "view": view,
            "date": day.isoformat() if day else None,
            "tz": tz,
            **whose,
            "status_group": list(status_group or []),
            "contact_id": contact_id,
            "project_id": project_id,
        }
        return await forwarder.forward(session, crm, "GET", "/tasks/calendar", params=params)

    @api.get("/task-statuses", summary="The statuses a task may have (built-in and added)")
    async def task_statuses(session: Session = signed_in) -> Response:
        return await forwarder.forward(session, crm, "GET", "/task-statuses")

    @api.post("/tasks", status_code=201, summary="Create a task (I am its author)")
    async def create_task(
        body: TaskIn, idempotency_key: IdempotencyKey = None, session: Session = signed_in
    ) -> Response:
        if body.start_at and body.end_at and body.end_at < body.start_at:
            raise _invalid("body", "end_at", "the deadline is before the start")
        draft = body.model_dump(mode="json", exclude={"executor_ids"}, exclude_none=True)
        if body.executor_ids:
            draft["executors"] = [{"employee_id": employee} for employee in dict.fromkeys(body.executor_ids)]
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return await forwarder.forward(session, crm, "POST", "/tasks", json=draft, headers=headers)

    # --- a task from a call (the screen-pop card) ------------------------------------------------------

    @api.post(
        "/tasks/from-call/{call_id}",
        status_code=201,
        summary="Create a task from a call: a follow-up, or a personal reminder (`remind_at`)",
        description="The task inherits the call's contact and number, and the call is attached to it "
        "(crm's `POST /tasks/from-call/{call_id}`). A call crm's journal does not have yet (the call log "
        "publishes a call when it ends) gets its task all the same: made with `POST /tasks` (the "
        "`Idempotency-Key` is honoured there) and the call attached to it. `X-Call-Link` says whether "
        "the call is attached (`attached`) or could not be (`none`: no right to change tasks).",
    )
    async def create_task_from_call(
        call_id: Annotated[str, Path(max_length=100)],
        body: CallTaskIn,
        idempotency_key: IdempotencyKey = None,
        session: Session = signed_in,
    ) -> Response:
        draft = call_task_draft(body, session)
        made = await forwarder.send(
            session, crm, "POST", upstream_path("tasks", "from-call", call_id), json=draft
        )
        if made.status_code != 404:
            return _with_call_link(passthrough(made), made.status_code == 201)
        return await task_of_live_call(session, call_id, draft, idempotency_key)

    def call_task_draft(body: CallTaskIn, session: Session) -> dict[str, Any]:
        """crm's task draft of the card's form; a reminder is the signed-in user's own."""
        if body.start_at and body.end_at and body.end_at < body.start_at:
            raise _invalid("body", "end_at", "the deadline is before the start")
        fields = body.model_dump(mode="json", exclude_none=True)
        remind_at = fields.pop("remind_at", None)
        executors = fields.pop("executor_ids", [])
        if executors:
            fields["executors"] = [{"employee_id": employee} for employee in dict.fromkeys(executors)]
        if remind_at is not None:
            if not session.employee_id:
                raise _invalid("body", "remind_at", "you are not an employee: there is nobody to remind")
            fields["reminders"] = [{"remind_at": remind_at, "employee_ids": [session.employee_id]}]
        return fields

    async def task_of_live_call(
        session: Session, call_id: str, draft: dict[str, Any], idempotency_key: str | None
    ) -> Response:
        """The task of a call crm's journal has not got yet: the call log vouches for the call (the
        user must see it), then the task is made and the call attached, as crm does from the journal.
        The call's notes are left alone: a task link there would stop the call log from linking the
        call to a contact created for the number later."""
        seen = await forwarder.send(session, calls, "GET", upstream_path("calls", call_id))
        if seen.status_code != 200:
            return passthrough(seen)
        call = seen.json()
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        made = await forwarder.send(
            session, crm, "POST", "/tasks", json={**draft, "call_id": call_id}, headers=headers
        )
        if made.status_code not in (200, 201):
            return passthrough(made)
        task_id = str(made.json()["id"])
        attached = await forwarder.send(
            session, crm, "POST", upstream_path("tasks", task_id, "calls"), json=_attached_call(call)
        )
        done = attached if attached.status_code == 200 else made  # the task as it is now
        response = passthrough(done)
        response.status_code = made.status_code
        return _with_call_link(response, attached.status_code == 200)

    # --- one task ------------------------------------------------------------------------------------

    def version_header(if_match: str | None) -> dict[str, str] | None:
        return {"If-Match": if_match} if if_match else None

    @api.get("/tasks/{task_id}", summary="A task (its version as ETag)")
    async def get_task(task_id: str, session: Session = signed_in) -> Response:
        return await forwarder.forward(session, crm, "GET", upstream_path("tasks", task_id))

    @api.patch(
        "/tasks/{task_id}",
        summary="Change a task's card, or move its dates",
        description="Send `If-Match` with the ETag edited: 412 (with the current `version`) when the task "
        "changed meanwhile; 403 without the right to modify tasks.",
    )
    async def change_task(
        task_id: str, body: TaskChangesIn, if_match: IfMatch = None, session: Session = signed_in
    ) -> Response:
        changes = _changes(body)
        if not changes:
            raise _invalid("body", "name", "nothing to change")
        if changes.get("name", "") is None:
            raise _invalid("body", "name", "a task needs a name")
        return await forwarder.forward(
            session,
            crm,
            "PATCH",
            upstream_path("tasks", task_id),
            json=changes,
            headers=version_header(if_match),
        )

    @api.post(
        "/tasks/{task_id}/status",
        summary="Move a task along crm's workflow",
        description="409 names the statuses `allowed` from the current one; 412 when the task changed.",
    )
    async def change_task_status(
        task_id: str, body: TaskStatusIn, if_match: IfMatch = None, session: Session = signed_in
    ) -> Response:
        return await forwarder.forward(
            session,
            crm,
            "POST",
            upstream_path("tasks", task_id, "status"),
            json=body.model_dump(),
            headers=version_header(if_match),
        )

    @api.put("/tasks/{task_id}/executors", summary="Set the task's executors")
    async def set_executors(
        task_id: str, body: ExecutorsIn, if_match: IfMatch = None, session: Session = signed_in
    ) -> Response:
        executors = [{"employee_id": employee} for employee in dict.fromkeys(body.employee_ids)]
        return await forwarder.forward(
            session,
            crm,
            "PUT",
            upstream_path("tasks", task_id, "executors"),
            json={"executors": executors, "replace": True},
            headers=version_header(if_match),
        )

    @api.get("/tasks/{task_id}/comments", summary="The task's discussion, oldest first")
    async def task_comments(task_id: str, session: Session = signed_in) -> Response:
        return await forwarder.forward(session, crm, "GET", upstream_path("tasks", task_id, "comments"))

    @api.post("/tasks/{task_id}/comments", status_code=201, summary="Write in the task's discussion")
    async def add_task_comment(task_id: str, body: CommentIn, session: Session = signed_in) -> Response:
        return await forwarder.forward(
            session, crm, "POST", upstream_path("tasks", task_id, "comments"), json=body.model_dump()
        )

    @api.get("/tasks/{task_id}/reminders", summary="The task's reminders")
    async def task_reminders(task_id: str, session: Session = signed_in) -> Response:
        return await forwarder.forward(session, crm, "GET", upstream_path("tasks", task_id, "reminders"))

    @api.post("/tasks/{task_id}/reminders", status_code=201, summary="Remind me of the task at a time")
    async def add_task_reminder(task_id: str, body: ReminderIn, session: Session = signed_in) -> Response:
        if not session.employee_id:
            raise _invalid("body", "remind_at", "you are not an employee: there is nobody to remind")
        reminder = {**body.model_dump(mode="json"), "employee_ids": [session.employee_id]}
        return await forwarder.forward(
            session, crm, "POST", upstream_path("tasks", task_id, "reminders"), json=reminder
        )

    @api.delete("/tasks/{task_id}/reminders/{reminder_id}", status_code=204, summary="Remove a reminder")
    async def delete_task_reminder(task_id: str, reminder_id: str, session: Session = signed_in) -> Response:
        return await forwarder.forward(
            session, crm, "DELETE", upstream_path("tasks", task_id, "reminders", reminder_id)
        )

    @api.get("/tasks/{task_id}/calls", summary="Calls linked to the task")
    async def task_calls(task_id: str, session: Session = signed_in) -> Response:
        return await forwarder.forward(session, crm, "GET", upstream_path("tasks", task_id, "calls"))

    # --- the events journal ------------------------------------------------------------------------

    @api.get("/event-types", summary="The journal's event types")
    async def event_types(session: Session = signed_in) -> Response:
        return await forwarder.forward(session, crm, "GET", "/journal/event-types")

    @api.get("/events", summary="The events journal (crm's GET /journal/events), newest first")
    async def list_events(
        type_code: Annotated[list[str] | None, Query(alias="type", max_length=20)] = None,
        contact_id: Annotated[str | None, Query(max_length=100)] = None,
        project_id: Annotated[str | None, Query(max_length=100)] = None,
        phone: Annotated[str | None, Query(max_length=64, description="A number in any format")] = None,
        from_date: Annotated[date | None, Query()] = None,
        to_date: Annotated[date | None, Query()] = None,
        tz: Annotated[str | None, Query(max_length=64)] = None,
        q: Annotated[str | None, Query(max_length=200)] = None,
        cursor: Annotated[str | None, Query(max_length=1024)] = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX)] = 25,
        session: Session = signed_in,
    ) -> Response:
        if from_date and to_date and to_date < from_date:
            raise _invalid("query", "to_date", "the period ends before it starts")
        start_from, start_to = as_utc_range(from_date, to_date, tz)
        params = {
            "type": list(type_code or []),
            "contact_id": contact_id,
            "project_id": project_id,
            "phone": (phone or "").strip() or None,
            "from": start_from,
            "to": start_to,
            "q": (q or "").strip() or None,
            "cursor": cursor,
            "limit": limit,
            "include_total": "true" if not cursor else None,
        }
        return await forwarder.forward(session, crm, "GET", "/journal/events", params=params)

    @api.post("/events", status_code=201, summary="Add an event to the journal")
    async def create_event(
        body: EventIn, idempotency_key: IdempotencyKey = None, session: Session = signed_in
    ) -> Response:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return await forwarder.forward(
            session,
            crm,
            "POST",
            "/journal/events",
            json=body.model_dump(mode="json", exclude_none=True),
            headers=headers,
        )

    @api.get("/events/{event_id}", summary="One event")
    async def get_event(event_id: str, session: Session = signed_in) -> Response:
        return await forwarder.forward(session, crm, "GET", upstream_path("journal", "events", event_id))

    @api.patch(
        "/events/{event_id}",
        summary="Change an event",
        description="With the `version` edited: 409 when the event changed meanwhile.",
    )
    async def change_event(event_id: str, body: EventChangesIn, session: Session = signed_in) -> Response:
        changes = _changes(body)
        if changes.get("type_code", "") is None:
            raise _invalid("body", "type_code", "an event needs a type")
        return await forwarder.forward(
            session, crm, "PATCH", upstream_path("journal", "events", event_id), json=changes
        )

    # --- projects ------------------------------------------------------------------------------------

    @api.get("/projects", summary="The register of projects (crm's GET /projects)")
    async def list_projects(
        status: Literal["active", "closed"] | None = None,
        name: Annotated[str | None, Query(max_length=200, description="A part of the name")] = None,
        cursor: Annotated[str | None, Query(max_length=1024)] = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX)] = 25,
        session: Session = signed_in,
    ) -> Response:
        params = {
            "status": status,
            "name": (name or "").strip() or None,
            "cursor": cursor,
            "limit": limit,
            "include_total": "true" if not cursor else None,
        }
        return await forwarder.forward(session, crm, "GET", "/projects", params=params)

    @api.post("/projects", status_code=201, summary="Create a project")
    async def create_project(body: ProjectIn, session: Session = signed_in) -> Response:
        if body.start_date and body.end_date and body.end_date < body.start_date:
            raise _invalid("body", "end_date", "the project ends before it starts")
        return await forwarder.forward(
            session, crm, "POST", "/projects", json=body.model_dump(mode="json", exclude_none=True)
        )

    @api.get("/projects/{project_id}", summary="A project's card")
    async def get_project(project_id: str, session: Session = signed_in) -> Response:
        return await forwarder.forward(session, crm, "GET", upstream_path("projects", project_id))

    @api.patch(
        "/projects/{project_id}",
        summary="Change a project",
        description="With the `version` edited: 409 when the project changed meanwhile.",
    )
    async def change_project(
        project_id: str, body: ProjectChangesIn, session: Session = signed_in
    ) -> Response:
        changes = _changes(body)
        for required in ("name", "status"):
            if changes.get(required, "") is None:
                raise _invalid("body", required, "cannot be empty")
        return await forwarder.forward(
            session, crm, "PATCH", upstream_path("projects", project_id), json=changes
        )

    # --- names to show -------------------------------------------------------------------------------

    @api.get(
        "/employees",
        summary="Employees the user sees (crm's GET /employees): to pick executors and name them",
    )
    async def list_employees(
        employee_id: Annotated[list[str] | None, Query(alias="id", max_length=100)] = None,
        q: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX)] = 100,
        session: Session = signed_in,
    ) -> Response:
        params = {"id": list(employee_id or []), "q": (q or "").strip() or None, "limit": limit}
        return await forwarder.forward(session, crm, "GET", "/employees", params=params)

    router.include_router(api)
    return router
