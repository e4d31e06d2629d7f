"""gRPC API of tasks for the other services: the ``telecrm.crm.v1.Tasks`` servicer.

Callers are services inside the installation (the queue hands a walk-in ticket to an operator as a
task, the web backend shows a caller's open tasks in the screen pop), so no user token is checked here;
``created_by`` names who a task is from (an employee id, or ``system:<service>``) and ``request_id``
makes a retried CreateTask return the task the first attempt made. Bad fields answer INVALID_ARGUMENT
naming the field, unknown tasks NOT_FOUND.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NoReturn

import grpc
from pydantic import ValidationError

from telecrm.crm.v1 import tasks_pb2, tasks_pb2_grpc
from telecrm_common.auth import ALL_RIGHTS, Principal, Visibility
from telecrm_crm.tasks import (
    ExecutorIn,
    TaskDraft,
    TaskError,
    TaskNotFound,
    TaskService,
    system_principal,
    task_message,
)

SERVICE_NAME = tasks_pb2.DESCRIPTOR.services_by_name["Tasks"].full_name
DEFAULT_OPEN_LIMIT = 20
MAX_OPEN_LIMIT = 100


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("context.abort returned")  # it raises; this tells the type checker


def _time(request: tasks_pb2.CreateTaskRequest, name: str) -> datetime | None:
    if not request.HasField(name):  # type: ignore[arg-type]
        return None
    value: datetime = getattr(request, name).ToDatetime(tzinfo=UTC)
    return value


def _author(created_by: str) -> Principal:
    """Who a task over gRPC is from: a component (``system:<name>``) or an employee."""
    if not created_by or created_by.startswith("system:"):
        return system_principal(created_by.removeprefix("system:") or "grpc")
    return Principal(subject=created_by, employee_id=created_by, rights=ALL_RIGHTS, visibility=Visibility.ALL)


_GRPC_CODES = {
    404: grpc.StatusCode.NOT_FOUND,
    403: grpc.StatusCode.PERMISSION_DENIED,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    412: grpc.StatusCode.FAILED_PRECONDITION,
    422: grpc.StatusCode.INVALID_ARGUMENT,
}


class TasksServicer(tasks_pb2_grpc.TasksServicer):
    def __init__(self, service: TaskService) -> None:
        self._service = service

    async def CreateTask(
        self, request: tasks_pb2.CreateTaskRequest, context: grpc.aio.ServicerContext
    ) -> tasks_pb2.Task:
        fields = {
            "name": request.name or None,
            "description": request.description or None,
            "start_at": _time(request, "start_at"),
            "end_at": _time(request, "end_at"),
            "priority": request.priority or None,
            "controller_id": request.controller_id or None,
            "executors": [ExecutorIn(employee_id=e) for e in request.executor_ids] or None,
            "contact_id": request.contact_id or None,
            "phone": request.phone or None,
            "project_id": request.project_id or None,
            "call_id": request.call_id or None,
            "event_id": request.event_id or None,
            "owner_employee_id": request.owner_employee_id or None,
            "owner_team_id": request.owner_team_id or None,
            "template_id": request.template_id or None,
        }
        try:
            draft = TaskDraft(**{name: value for name, value in fields.items() if value is not None})
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{where}: {error['msg']}")
        request_id = f"grpc:{request.request_id}" if request.request_id else None
        try:
            view = await self._service.create(_author(request.created_by), draft, request_id=request_id)
        except TaskError as exc:
            await _abort(context, _GRPC_CODES.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT), str(exc))
        return task_message(view)

    async def GetTask(
        self, request: tasks_pb2.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> tasks_pb2.Task:
        if not request.task_id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "task_id: required")
        try:
            view = await self._service.get_any(request.task_id)
        except TaskNotFound as exc:
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        return task_message(view)

    async def ListOpenTasksForContact(
        self, request: tasks_pb2.ListOpenTasksForContactRequest, context: grpc.aio.ServicerContext
    ) -> tasks_pb2.ListOpenTasksForContactResponse:
        if not request.contact_id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "contact_id: required")
        limit = min(request.limit or DEFAULT_OPEN_LIMIT, MAX_OPEN_LIMIT)
        views, total = await self._service.open_for_contact(request.contact_id, limit)
        return tasks_pb2.ListOpenTasksForContactResponse(
            tasks=[task_message(view) for view in views], total_open=total
        )


def add_to_server(server: grpc.aio.Server, service: TaskService) -> None:
    tasks_pb2_grpc.add_TasksServicer_to_server(TasksServicer(service), server)
