"""Demo people for `make run`: the employees behind the demo phones, and their extensions in the registry.

Until the crm service publishes its employees (issue 5), `make run` plays crm's part for the four demo
employees: it publishes their ``crm.employee.created`` events on the bus, exactly as crm will, and
registers extensions 101-104 in the call log's numbers registry through its REST API. Running it again
changes nothing (the events carry the same ids and versions; a registered extension answers 409).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from telecrm.crm.v1 import directory_events_pb2 as directory_pb
from telecrm_common.bus import Bus
from telecrm_common.events import STREAMS, directory_event_subject


@dataclass(frozen=True)
class DemoEmployee:
    employee_id: str
    name: str
    extension: str
    team_id: str
    team_name: str


# The same ids as the gateway's demo routes (launcher.ROUTES_TEMPLATE).
EMPLOYEES = (
    DemoEmployee("emp-101", "Alice Ivanova", "101", "team-sales", "Sales"),
    DemoEmployee("emp-102", "Bob Petrov", "102", "team-sales", "Sales"),
    DemoEmployee("emp-103", "Carol Popescu", "103", "team-support", "Support"),
    DemoEmployee("emp-104", "Dave Shevchenko", "104", "team-support", "Support"),
)


async def publish_employees(nats_url: str) -> None:
    bus = await Bus.connect(nats_url, name="devstack-demo-data", timeout=30)
    try:
        await bus.ensure_streams(STREAMS)
        for employee in EMPLOYEES:
            event = directory_pb.EmployeeEvent(event_id=f"demo-{employee.employee_id}-1", version=1)
            event.occurred_at.GetCurrentTime()
            event.created.CopyFrom(
                directory_pb.Employee(
                    employee_id=employee.employee_id,
                    name=employee.name,
                    extension=employee.extension,
                    team_id=employee.team_id,
                    team_name=employee.team_name,
                    active=True,
                )
            )
            await bus.publish(directory_event_subject(event), event, msg_id=event.event_id)
    finally:
        await bus.close()


def register_extensions(calls_url: str, *, timeout: float = 30.0) -> None:
    """POST each extension; the employees reach the registry through the bus, so retry a while."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=calls_url, timeout=5.0) as client:
        for employee in EMPLOYEES:
            body = {"number": employee.extension, "employee_id": employee.employee_id, "label": employee.name}
            while True:
                response = client.post("/numbers", json=body)
                if response.status_code in (201, 409):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"registering extension {employee.extension}: {response.text}")
                time.sleep(0.3)  # the employee has not reached the read model yet


def seed(nats_url: str, calls_url: str) -> None:
    asyncio.run(publish_employees(nats_url))
    register_extensions(calls_url)
