"""gRPC People over a real grpc.aio server on a free port: the gateway resolving an extension, a card
naming an employee, a service listing employees page by page."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from argon2 import PasswordHasher

from telecrm.crm.v1 import people_pb2, people_pb2_grpc
from telecrm_common.auth import Principal
from telecrm_common.db import Database
from telecrm_common.grpc import GrpcServer, channel
from telecrm_crm import people_grpc
from telecrm_crm.audit import AuditLog
from telecrm_crm.people import Passwords, PeopleService
from telecrm_crm.settings import CRMSettings

SECRET = b"people-grpc-cursor-secret"


@pytest.fixture
async def people(crm_db: Database, admin: Principal) -> PeopleService:
    service = PeopleService(
        crm_db,
        audit=AuditLog("none"),
        cursor_secret=SECRET,
        passwords=Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)),
    )
    await service.create_team(admin, {"id": "team-sales", "name": "Sales"})
    await service.create_employee(admin, {"id": "emp-boss", "name": "Boris Boss", "extension": "100"})
    for n in range(5):
        await service.create_employee(
            admin,
            {
                "id": f"emp-{n}",
                "name": f"Agent {n}",
                "extension": f"10{n + 1}",
                "team_id": "team-sales",
                "supervisor_id": "emp-boss",
                "email": f"agent{n}@example.com",
            },
        )
    await service.update_employee(admin, "emp-4", {"active": False})
    await service.delete_employee(admin, "emp-3")
    return service


@pytest.fixture
async def stub(people: PeopleService) -> AsyncIterator[people_pb2_grpc.PeopleStub]:
    async def ok() -> None:
        return None

    server = GrpcServer(
        CRMSettings(grpc_port=0), service_names=[people_grpc.SERVICE_NAME], checks={"database": ok}
    )
    people_grpc.add_to_server(server.server, people)
    await server.start()
    async with channel(f"127.0.0.1:{server.port}") as chan:
        yield people_pb2_grpc.PeopleStub(chan)
    await server.stop(0)


async def test_resolve_extension_names_the_employee_who_answers(stub: people_pb2_grpc.PeopleStub) -> None:
    employee = await stub.ResolveExtension(people_pb2.ResolveExtensionRequest(extension=" 102 "), timeout=5)
    assert (employee.employee_id, employee.name, employee.team_name, employee.supervisor_name) == (
        "emp-1",
        "Agent 1",
        "Sales",
        "Boris Boss",
    )
    assert (employee.active, employee.deleted, employee.version) == (True, False, 1)
    inactive = await stub.ResolveExtension(people_pb2.ResolveExtensionRequest(extension="105"), timeout=5)
    assert (inactive.employee_id, inactive.active) == ("emp-4", False)

    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.ResolveExtension(people_pb2.ResolveExtensionRequest(extension="104"), timeout=5)  # deleted
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await stub.ResolveExtension(people_pb2.ResolveExtensionRequest(extension="10x"), timeout=5)
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert invalid.value.details() == "extension: must be 1 to 15 digits"


async def test_get_employee_names_deleted_ones_too(stub: people_pb2_grpc.PeopleStub) -> None:
    boss = await stub.GetEmployee(people_pb2.GetEmployeeRequest(employee_id="emp-boss"), timeout=5)
    assert (boss.name, boss.extension, boss.team_id) == ("Boris Boss", "100", "")
    gone = await stub.GetEmployee(people_pb2.GetEmployeeRequest(employee_id="emp-3"), timeout=5)
    assert (gone.name, gone.deleted, gone.active, gone.extension, gone.version) == (
        "Agent 3",
        True,
        False,
        "",
        2,
    )
    for request, code in (
        (people_pb2.GetEmployeeRequest(employee_id="nobody"), grpc.StatusCode.NOT_FOUND),
        (people_pb2.GetEmployeeRequest(), grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetEmployee(request, timeout=5)
        assert caught.value.code() == code


async def test_list_employees_pages_and_filters(stub: people_pb2_grpc.PeopleStub) -> None:
    names: list[str] = []
    token = ""
    while True:
        page = await stub.ListEmployees(
            people_pb2.ListEmployeesRequest(page_size=2, page_token=token), timeout=5
        )
        names += [employee.name for employee in page.employees]
        token = page.next_page_token
        if not token:
            break
    assert names == ["Agent 0", "Agent 1", "Agent 2", "Boris Boss"]  # active ones by default

    everyone = await stub.ListEmployees(
        people_pb2.ListEmployeesRequest(include_deleted=True, team_id="team-sales"), timeout=5
    )
    assert [e.employee_id for e in everyone.employees] == ["emp-0", "emp-1", "emp-2", "emp-3", "emp-4"]
    chosen = await stub.ListEmployees(
        people_pb2.ListEmployeesRequest(employee_ids=["emp-4", "emp-1"], include_inactive=True), timeout=5
    )
    assert [e.employee_id for e in chosen.employees] == ["emp-1", "emp-4"]
    found = await stub.ListEmployees(people_pb2.ListEmployeesRequest(query="AGENT2@"), timeout=5)
    assert [e.employee_id for e in found.employees] == ["emp-2"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListEmployees(people_pb2.ListEmployeesRequest(page_token="forged"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("page_token:")
