"""Employee events on a real nats-server: through the outbox to the CRM stream, decoded by the decoder
the call log's consumer uses, versions growing per employee, a republished row stored once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from argon2 import PasswordHasher

from telecrm.crm.v1 import directory_events_pb2 as directory_pb
from telecrm.crm.v1 import people_pb2
from telecrm_common.auth import Principal
from telecrm_common.bus import Bus
from telecrm_common.db import Database
from telecrm_common.events import STREAMS, decode_directory_event
from telecrm_crm import outbox
from telecrm_crm.audit import AuditLog
from telecrm_crm.outbox import OutboxPublisher
from telecrm_crm.people import EmployeeView, Passwords, PeopleService, employee_event_row
from telecrm_crm.people_models import Employee

SECRET = b"people-events-cursor-secret"


@pytest.fixture
async def bus(nats_server: Any) -> AsyncIterator[Bus]:
    bus = await Bus.connect(nats_server.url, name="crm-people-events-tests", timeout=10)
    await bus.ensure_streams(STREAMS)
    yield bus
    await bus.close()


async def employee_events(bus: Bus, employee_ids: set[str]) -> list[tuple[str, directory_pb.EmployeeEvent]]:
    """The CRM stream's events about these employees, in stream order (an ordered consumer, read until
    nothing comes for half a second)."""
    sub = await bus.js.subscribe("crm.employee.>", stream="CRM", ordered_consumer=True)
    found: list[tuple[str, directory_pb.EmployeeEvent]] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except TimeoutError:
                return found
            event = decode_directory_event(msg.subject, msg.data)
            assert isinstance(event, directory_pb.EmployeeEvent)
            body = getattr(event, event.WhichOneof("kind") or "created")
            if body.employee_id in employee_ids:
                found.append((msg.subject, event))
    finally:
        await sub.unsubscribe()


async def test_employee_changes_reach_the_bus_in_order_with_growing_versions(
    crm_db: Database, bus: Bus, admin: Principal
) -> None:
    publisher = OutboxPublisher(crm_db, bus, interval=0.2)
    people = PeopleService(
        crm_db,
        audit=AuditLog("writes"),
        cursor_secret=SECRET,
        passwords=Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)),
        on_outbox=publisher.wake,
    )
    run = uuid.uuid4().hex[:8]
    ivan, maria = f"emp-ivan-{run}", f"emp-maria-{run}"
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    try:
        team = await people.create_team(admin, {"name": f"Sales {run}"})
        await people.create_employee(
            admin, {"id": ivan, "name": "Ivan", "extension": "701", "team_id": team.id}
        )
        await people.create_employee(admin, {"id": maria, "name": "Maria", "team_id": team.id})
        await people.update_employee(admin, ivan, {"extension": "702"}, expected_version=1)
        await people.update_team(admin, team.id, {"name": f"Sales and care {run}"})
        await people.update_employee(admin, maria, {"team_id": None})
        await people.delete_employee(admin, maria)
        deadline = asyncio.get_running_loop().time() + 10
        while len(published := await employee_events(bus, {ivan, maria})) < 7:
            assert asyncio.get_running_loop().time() < deadline, published
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)

    assert [(subject, event.version) for subject, event in published if subject.endswith("created")] == [
        ("crm.employee.created", 1),
        ("crm.employee.created", 1),
    ]
    per_employee: dict[str, list[tuple[str, int]]] = {}
    for subject, event in published:
        body = getattr(event, event.WhichOneof("kind") or "")
        per_employee.setdefault(body.employee_id, []).append((subject.rsplit(".", 1)[1], event.version))
    assert per_employee[ivan] == [("created", 1), ("updated", 2), ("updated", 3)]
    assert per_employee[maria] == [("created", 1), ("updated", 2), ("updated", 3), ("deleted", 4)]
    last_of_ivan = [
        e for _, e in published if e.WhichOneof("kind") == "updated" and e.updated.employee_id == ivan
    ]
    assert (last_of_ivan[-1].updated.team_name, last_of_ivan[-1].updated.extension) == (
        f"Sales and care {run}",
        "702",
    )
    async with crm_db.session() as session:
        assert await outbox.size(session) == 0  # everything published and removed

    # A publisher that died between publishing and deleting publishes the same rows again: the stream
    # keeps one of each, because the message id is the event id (employee and version).
    async with crm_db.session() as session:
        employee = await session.get(Employee, ivan)
        assert employee is not None
        await outbox.add(
            session, [employee_event_row("updated", EmployeeView(employee, f"Sales and care {run}"))]
        )
    assert await publisher.publish_pending() == 1
    again = await employee_events(bus, {ivan, maria})
    assert [e.event_id for _, e in again] == [e.event_id for _, e in published]


async def test_team_and_user_events_carry_no_secret(crm_db: Database, bus: Bus, admin: Principal) -> None:
    publisher = OutboxPublisher(crm_db, bus, interval=0.2)
    people = PeopleService(
        crm_db,
        audit=AuditLog("none"),
        cursor_secret=SECRET,
        passwords=Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)),
    )
    run = uuid.uuid4().hex[:8]
    user = await people.create_user(
        admin,
        {
            "login": f"user-{run}",
            "password": "a good long password",
            "roles": ["agent"],
            "revoked_rights": ["task.status"],
        },
    )
    assert await publisher.publish_pending() == 1
    sub = await bus.js.subscribe("crm.user.>", stream="CRM", ordered_consumer=True)
    try:
        events = []
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except TimeoutError:
                break
            events.append((msg.subject, msg.data))
    finally:
        await sub.unsubscribe()
    mine = [
        (subject, event)
        for subject, data in events
        if (event := people_pb2.UserEvent.FromString(data)).created.user_id == user.id
    ]
    assert len(mine) == 1
    subject, event = mine[0]
    assert (subject, event.version, event.created.login) == ("crm.user.created", 1, f"user-{run}")
    assert "task.status" not in event.created.rights
    assert all(b"argon2" not in data for _, data in events)  # no password hash ever travels
