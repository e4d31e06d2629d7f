"""What the screen-pop card makes from a call, through the desktop's API against the real crm and
calls: a task from a call that has ended (crm makes it from its journal) and from one still ringing
(crm's journal has no such call yet: the task is made and the call attached all the same), once
however often it is sent; a personal reminder (a task of mine that reminds me then); refusals
naming the field; and a user without the rights, who is offered nothing and refused by crm."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from telecrm.events.v1 import call_events_pb2 as ev

from .conftest import (
    ADA,
    ADMIN_PASSWORD,
    RunningDesktop,
    Services,
    call_event,
    new_call_id,
    unique_number,
)

CARA = "web-emp-cara"  # may neither create tasks nor events
MOE = "web-emp-moe"  # may create tasks but not change them (so not attach calls to them)


@pytest.fixture(scope="module")
def cara(services: Services) -> str:
    return services.add_agent(
        CARA, "cara", name="Cara", extension="211", revoked=["task.create", "event.create"]
    )


@pytest.fixture(scope="module")
def moe(services: Services) -> str:
    return services.add_agent(MOE, "moe", name="Moe", extension="212", revoked=["task.modify"])


def soon(minutes: int) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).replace(microsecond=0).isoformat()


async def ringing(desktop: RunningDesktop, services: Services, number: str, **fields: Any) -> str:
    """A call ringing now, once the call log has it."""
    call_id = new_call_id()
    await desktop.publish(call_event("ringing", call_id, caller=number, leg_id="l1", **fields))
    with services.calls() as calls:
        for _ in range(200):
            if calls.get(f"/calls/{call_id}").status_code == 200:
                return call_id
            await asyncio.sleep(0.05)
    raise AssertionError("the call never reached the call log")


def calls_of(services: Services, task_id: str) -> list[str]:
    with services.crm() as crm:
        return [call["call_id"] for call in crm.get(f"/tasks/{task_id}/calls").json()]


def tasks_named(services: Services, name: str) -> list[dict[str, Any]]:
    with services.crm() as crm:
        return list(crm.get("/tasks", params={"q": name, "limit": 10}).json()["items"])


async def post_task(
    client: httpx.AsyncClient, csrf: str, call_id: str, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    headers = {"X-CSRF-Token": csrf, **({"Idempotency-Key": key} if key else {})}
    return await client.post(f"/api/tasks/from-call/{call_id}", json=body, headers=headers)


async def test_a_task_from_a_ringing_call_is_made_once_with_the_call_attached(
    desktop: RunningDesktop, services: Services
) -> None:
    number = unique_number()
    contact = services.create_contact("Grace Hopper", number, responsible_employee_id=ADA)
    call_id = await ringing(desktop, services, number)
    name = f"Call back Grace {uuid.uuid4().hex[:6]}"
    body = {
        "name": name,
        "end_at": soon(60),
        "priority": "high",
        "executor_ids": [ADA],
        "contact_id": contact["id"],
        "phone": number,
    }
    key = uuid.uuid4().hex
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        first = await post_task(client, csrf, call_id, body, key)
        again = await post_task(client, csrf, call_id, body, key)
    assert first.status_code == 201, first.text
    assert first.headers["x-call-link"] == "attached"
    task = first.json()
    assert again.json()["id"] == task["id"]  # a double submit is one task
    assert [t["id"] for t in tasks_named(services, name)] == [task["id"]]
    assert (task["contact_id"], task["phone"], task["call_id"]) == (contact["id"], number, call_id)
    assert task["priority"] == "high"
    assert [e["employee_id"] for e in task["executors"]] == [ADA]
    assert calls_of(services, task["id"]) == [call_id]


async def test_a_task_from_an_ended_call_is_made_from_crms_journal(
    desktop: RunningDesktop, services: Services
) -> None:
    number = unique_number()
    call_id = new_call_id()
    await desktop.publish(call_event("ringing", call_id, caller=number, leg_id="l1"))
    await desktop.publish(call_event("answered", call_id, caller=number, sequence=2, leg_id="l1"))
    await desktop.publish(
        call_event("ended", call_id, caller=number, sequence=3, disposition=ev.DISPOSITION_ANSWERED)
    )
    with services.crm() as crm:
        for _ in range(100):
            journal = crm.get("/journal/events", params={"phone": number}).json()["items"]
            if any(event["call_id"] == call_id for event in journal):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the call never reached crm's journal")
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        made = await post_task(client, csrf, call_id, {"name": "After the call", "executor_ids": [ADA]})
    assert made.status_code == 201, made.text
    assert made.headers["x-call-link"] == "attached"
    task = made.json()
    assert task["phone"] == number  # inherited from the journal's event of the call
    assert calls_of(services, task["id"]) == [call_id]


async def test_a_reminder_is_a_task_of_mine_that_reminds_me_then(
    desktop: RunningDesktop, services: Services
) -> None:
    number = unique_number()
    call_id = await ringing(desktop, services, number)
    at = soon(15)
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        made = await post_task(
            client,
            csrf,
            call_id,
            {
                "name": "Send the price list",
                "end_at": at,
                "remind_at": at,
                "executor_ids": [ADA],
                "phone": number,
            },
        )
        task = made.json()
        reminders = (await client.get(f"/api/tasks/{task['id']}/reminders")).json()
    assert made.status_code == 201, made.text
    assert datetime.fromisoformat(task["end_at"]) == datetime.fromisoformat(at)
    assert [(r["employee_id"], datetime.fromisoformat(r["remind_at"])) for r in reminders] == [
        (ADA, datetime.fromisoformat(at))
    ]
    assert calls_of(services, task["id"]) == [call_id]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "  "}, "name"),
        ({"name": "No zone", "remind_at": "2030-05-01T10:00:00"}, "remind_at"),
        (
            {"name": "Backwards", "start_at": "2030-05-02T10:00:00Z", "end_at": "2030-05-01T10:00:00Z"},
            "end_at",
        ),
        ({"name": "Odd", "priority": "urgent"}, "priority"),
        ({"name": "Extra", "call_id": "another"}, "call_id"),
    ],
)
async def test_what_the_card_should_not_send_is_refused_naming_the_field(
    desktop: RunningDesktop, body: dict[str, Any], field: str
) -> None:
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        response = await post_task(client, csrf, new_call_id(), body)
    assert response.status_code == 422
    assert field in [error["loc"][-1] for error in response.json()["detail"]]


async def test_a_call_that_does_not_exist_gets_no_task_and_nobody_is_reminded_who_is_no_employee(
    desktop: RunningDesktop,
) -> None:
    name = f"Orphan {uuid.uuid4().hex[:6]}"
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        missing = await post_task(client, csrf, new_call_id(), {"name": name})
        listed = await client.get("/api/tasks", params={"q": name})
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "admin", ADMIN_PASSWORD)
        nobody = await post_task(client, csrf, new_call_id(), {"name": "Me?", "remind_at": soon(5)})
    assert missing.status_code == 404
    assert listed.json()["items"] == []
    assert nobody.status_code == 422
    assert nobody.json()["detail"][0]["loc"] == ["body", "remind_at"]


async def test_the_card_offers_only_what_the_user_may_do_and_crm_refuses_the_rest(
    desktop: RunningDesktop, services: Services, cara: str, moe: str
) -> None:
    async with desktop.client() as client:
        await desktop.log_in(client, "ada")
        ada_page = await client.get("/desktop")
    number = unique_number()
    cara_call = await ringing(desktop, services, number, extension="211", employee_id=CARA)
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, cara)
        cara_page = await client.get("/desktop")
        task = await post_task(client, csrf, cara_call, {"name": "Not mine to make"})
        event = await client.post(
            "/api/events", json={"type_code": "visit", "phone": number}, headers={"X-CSRF-Token": csrf}
        )
    moe_call = await ringing(desktop, services, unique_number(), extension="212", employee_id=MOE)
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, moe)
        unattached = await post_task(
            client, csrf, moe_call, {"name": "Moe's follow-up", "executor_ids": [MOE]}
        )
    assert 'data-can-create-task="true"' in ada_page.text
    assert 'data-can-create-event="true"' in ada_page.text
    assert 'href="/static/card.css"' in ada_page.text
    assert 'data-can-create-task="false"' in cara_page.text
    assert 'data-can-create-event="false"' in cara_page.text
    assert task.status_code == 403
    assert event.status_code == 403
    # Moe may make the task but not change it: the call could not be attached, and the page is told.
    assert unattached.status_code == 201, unattached.text
    assert unattached.headers["x-call-link"] == "none"
    assert calls_of(services, unattached.json()["id"]) == []
