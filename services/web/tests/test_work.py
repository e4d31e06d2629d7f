"""The pages of tasks, the events journal and projects, and their JSON API, against the real crm:
what the pages send is checked before crm is asked (422 naming the field), crm's own refusals reach
the page as they are (403 without the right, 409 with the allowed statuses, 412 with the current
version), and the buttons a user has no right to are not on the page."""

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

WENDY = "web-emp-wendy"  # an agent who may read tasks but not change them nor their statuses


@pytest.fixture(scope="module")
def wendy(services: Services) -> str:
    return services.add_agent(
        WENDY,
        "wendy",
        name="Wendy Carlos",
        extension="209",
        revoked=["task.modify", "task.status", "event.modify"],
    )


def at(days: int, hour: int = 10) -> datetime:
    """A time ``days`` from today, at ``hour`` UTC."""
    today = datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days)


async def new_task(client: httpx.AsyncClient, csrf: str, **fields: Any) -> dict[str, Any]:
    body = {"name": f"Call back {uuid.uuid4().hex[:6]}", "executor_ids": [ADA], **fields}
    response = await client.post("/api/tasks", json=body, headers={"X-CSRF-Token": csrf})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_the_pages_offer_only_what_the_user_may_do(desktop: RunningDesktop, wendy: str) -> None:
    async with desktop.client() as client:
        signed_out = await client.get("/tasks")
        await desktop.log_in(client, "ada")
        tasks = await client.get("/tasks")
        events = await client.get("/events")
        projects = await client.get("/projects")
    async with desktop.client() as client:
        await desktop.log_in(client, wendy)
        read_only = await client.get("/tasks")
    assert signed_out.headers["location"] == "/login?next=/tasks"
    assert tasks.status_code == 200
    assert 'aria-current="page">Tasks' in tasks.text
    assert 'id="new-task"' in tasks.text
    assert 'id="task-move-form"' in tasks.text
    assert 'data-can-modify="true"' in tasks.text
    assert "script-src 'self'" in tasks.headers["content-security-policy"]
    assert 'id="new-event"' in events.text
    assert 'src="/static/events.js"' in events.text
    assert 'id="new-project"' not in projects.text  # agents do not create projects
    assert 'data-can-modify="false"' in read_only.text
    assert 'id="task-move-form"' not in read_only.text
    assert 'id="task-status-form"' not in read_only.text
    assert "You may not change tasks" in read_only.text


async def test_a_task_is_created_once_listed_and_found_in_the_calendar(desktop: RunningDesktop) -> None:
    start, end = at(2, 9), at(2, 11)
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        key = {"Idempotency-Key": uuid.uuid4().hex, "X-CSRF-Token": csrf}
        body = {
            "name": "Send the <b>offer</b>",
            "description": "Two boxes",
            "start_at": start.isoformat(),
            "end_at": end.isoformat(),
            "priority": "high",
            "executor_ids": [ADA, ADA],
        }
        first = await client.post("/api/tasks", json=body, headers=key)
        again = await client.post("/api/tasks", json=body, headers=key)
        task = first.json()
        mine = await client.get(
            "/api/tasks",
            params={
                "scope": "mine",
                "status_group": ["set", "in_progress"],
                "from_date": start.date().isoformat(),
                "to_date": start.date().isoformat(),
                "tz": "UTC",
                "sort": "deadline",
            },
        )
        high = await client.get("/api/tasks", params={"q": "offer", "scope": "team"})
        week = await client.get(
            "/api/tasks/calendar",
            params={"view": "week", "date": start.date().isoformat(), "tz": "Europe/Sofia", "scope": "mine"},
        )
        statuses = await client.get("/api/task-statuses")
    assert first.status_code == 201, first.text
    assert again.json()["id"] == task["id"]  # the same key is the same task
    assert task["executors"] == [
        {"employee_id": ADA, "status": "set", "planned_minutes": None, "time_spent_minutes": 0}
    ]
    assert task["name"] == "Send the <b>offer</b>"
    listed = mine.json()
    assert task["id"] in [item["id"] for item in listed["items"]]
    assert listed["total"] >= 1
    assert task["id"] in [item["id"] for item in high.json()["items"]]
    calendar = week.json()
    assert week.status_code == 200, week.text
    assert calendar["view"] == "week"
    assert task["id"] in [item["id"] for item in calendar["tasks"]]
    day = next(d for d in calendar["days"] if d["date"] == start.date().isoformat())
    assert task["id"] in day["task_ids"]
    assert "in_progress" in [s["code"] for s in statuses.json()]


async def test_moving_a_task_shifts_its_dates_and_a_stale_move_is_refused(desktop: RunningDesktop) -> None:
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        task = await new_task(client, csrf, start_at=at(1, 9).isoformat(), end_at=at(1, 10).isoformat())
        path = f"/api/tasks/{task['id']}"
        version = {"X-CSRF-Token": csrf, "If-Match": f'"{task["version"]}"'}
        moved = await client.patch(
            path,
            json={"start_at": at(3, 14).isoformat(), "end_at": at(3, 15).isoformat()},
            headers=version,
        )
        stale = await client.patch(
            path, json={"start_at": at(4, 9).isoformat(), "end_at": at(4, 10).isoformat()}, headers=version
        )
        again = (await client.get(path)).json()
    assert moved.status_code == 200, moved.text
    assert moved.headers["etag"] == f'"{task["version"] + 1}"'
    assert datetime.fromisoformat(again["start_at"]) == at(3, 14)
    assert datetime.fromisoformat(again["end_at"]) == at(3, 15)
    assert stale.status_code == 412
    assert stale.json()["version"] == again["version"]


async def test_a_status_moves_along_crms_workflow_and_a_forbidden_move_names_the_allowed(
    desktop: RunningDesktop,
) -> None:
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        task = await new_task(client, csrf)
        path = f"/api/tasks/{task['id']}/status"
        started = await client.post(path, json={"status": "in_progress"}, headers={"X-CSRF-Token": csrf})
        accepted = await client.post(path, json={"status": "accepted"}, headers={"X-CSRF-Token": csrf})
        bogus = await client.post(path, json={"status": "Done!"}, headers={"X-CSRF-Token": csrf})
    assert started.status_code == 200, started.text
    assert started.json()["status_group"] == "in_progress"
    assert accepted.status_code == 409
    assert set(accepted.json()["allowed"]) >= {"done", "suspended"}
    assert bogus.status_code == 422


async def test_the_card_keeps_comments_reminders_and_executors(desktop: RunningDesktop) -> None:
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        task = await new_task(client, csrf, end_at=at(5).isoformat())
        path = f"/api/tasks/{task['id']}"
        headers = {"X-CSRF-Token": csrf}
        comment = await client.post(f"{path}/comments", json={"body": "<i>asked</i> twice"}, headers=headers)
        blank = await client.post(f"{path}/comments", json={"body": "   "}, headers=headers)
        comments = (await client.get(f"{path}/comments")).json()
        reminder = await client.post(
            f"{path}/reminders", json={"remind_at": at(4).isoformat()}, headers=headers
        )
        reminders = (await client.get(f"{path}/reminders")).json()
        removed = await client.delete(f"{path}/reminders/{reminders[0]['id']}", headers=headers)
        executors = await client.put(
            f"{path}/executors",
            json={"employee_ids": [ADA, "web-emp-bob"]},
            headers={**headers, "If-Match": f'"{task["version"]}"'},
        )
        calls = await client.get(f"{path}/calls")
    assert comment.status_code == 201, comment.text
    assert blank.status_code == 422
    assert [c["body"] for c in comments] == ["<i>asked</i> twice"]
    assert reminder.status_code == 201, reminder.text
    assert [r["employee_id"] for r in reminders] == [ADA]
    assert removed.status_code == 204
    assert executors.status_code == 200, executors.text
    assert {e["employee_id"] for e in executors.json()["executors"]} == {ADA, "web-emp-bob"}
    assert calls.json() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "No zone", "start_at": "2026-05-01T10:00:00"}, "start_at"),
        (
            {"name": "Backwards", "start_at": "2026-05-02T10:00:00Z", "end_at": "2026-05-01T10:00:00Z"},
            "end_at",
        ),
        ({"name": "  "}, "name"),
        ({"name": "Odd", "priority": "urgent"}, "priority"),
        ({"name": "Extra", "owner": "me"}, "owner"),
    ],
)
async def test_a_task_the_page_should_not_send_is_refused_naming_the_field(
    desktop: RunningDesktop, body: dict[str, Any], field: str
) -> None:
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        response = await client.post("/api/tasks", json=body, headers={"X-CSRF-Token": csrf})
    assert response.status_code == 422
    assert field in [error["loc"][-1] for error in response.json()["detail"]]


async def test_filters_that_make_no_sense_are_refused_and_changes_need_the_pages_token(
    desktop: RunningDesktop,
) -> None:
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        task = await new_task(client, csrf)
        backwards = await client.get(
            "/api/tasks", params={"from_date": "2026-05-02", "to_date": "2026-05-01"}
        )
        zone = await client.get("/api/tasks", params={"from_date": "2026-05-02", "tz": "Mars/Olympus"})
        team_calendar = await client.get("/api/tasks/calendar", params={"scope": "team"})
        no_token = await client.patch(f"/api/tasks/{task['id']}", json={"name": "Renamed"})
        nothing = await client.patch(f"/api/tasks/{task['id']}", json={}, headers={"X-CSRF-Token": csrf})
        unnamed = await client.patch(
            f"/api/tasks/{task['id']}", json={"name": None}, headers={"X-CSRF-Token": csrf}
        )
        missing = await client.get("/api/tasks/no-such-task")
    assert backwards.status_code == 422
    assert backwards.json()["detail"][0]["loc"] == ["query", "to_date"]
    assert zone.status_code == 422
    assert zone.json()["detail"][0]["loc"] == ["query", "tz"]
    assert team_calendar.status_code == 422
    assert no_token.status_code == 403
    assert nothing.status_code == 422
    assert unnamed.status_code == 422
    assert missing.status_code == 404


async def test_a_user_without_the_rights_is_refused_by_crm(desktop: RunningDesktop, wendy: str) -> None:
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        task = await new_task(client, csrf, executor_ids=[WENDY], end_at=at(1).isoformat())
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, wendy)
        seen = await client.get(f"/api/tasks/{task['id']}")
        moved = await client.patch(
            f"/api/tasks/{task['id']}", json={"end_at": at(2).isoformat()}, headers={"X-CSRF-Token": csrf}
        )
        status = await client.post(
            f"/api/tasks/{task['id']}/status", json={"status": "in_progress"}, headers={"X-CSRF-Token": csrf}
        )
        project = await client.post("/api/projects", json={"name": "Mine"}, headers={"X-CSRF-Token": csrf})
    assert seen.status_code == 200  # she executes it
    assert moved.status_code == 403
    assert status.status_code == 403
    assert project.status_code == 403


async def test_events_are_added_listed_by_type_and_contact_and_a_stale_edit_is_refused(
    desktop: RunningDesktop, services: Services
) -> None:
    contact = services.create_contact("Ivy <script>", unique_number(), responsible_employee_id=ADA)
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        types = (await client.get("/api/event-types")).json()
        body = {"type_code": "visit", "subject": "Showroom visit", "contact_id": contact["id"]}
        made = await client.post("/api/events", json=body, headers={"X-CSRF-Token": csrf})
        event = made.json()
        listed = await client.get("/api/events", params={"type": "visit", "contact_id": contact["id"]})
        other_type = await client.get(
            "/api/events", params={"type": "letter_out", "contact_id": contact["id"]}
        )
        edited = await client.patch(
            f"/api/events/{event['id']}",
            json={"version": event["version"], "content": "Liked the blue one"},
            headers={"X-CSRF-Token": csrf},
        )
        stale = await client.patch(
            f"/api/events/{event['id']}",
            json={"version": event["version"], "subject": "Late"},
            headers={"X-CSRF-Token": csrf},
        )
        no_type = await client.post("/api/events", json={"subject": "?"}, headers={"X-CSRF-Token": csrf})
        no_version = await client.patch(
            f"/api/events/{event['id']}", json={"subject": "x"}, headers={"X-CSRF-Token": csrf}
        )
    assert "visit" in [t["code"] for t in types]
    assert made.status_code == 201, made.text
    assert [e["id"] for e in listed.json()["items"]] == [event["id"]]
    assert listed.json()["total"] == 1
    assert other_type.json()["items"] == []
    assert edited.status_code == 200, edited.text
    assert edited.json()["content"] == "Liked the blue one"
    assert stale.status_code == 409
    assert no_type.status_code == 422
    assert no_type.json()["detail"][0]["loc"] == ["body", "type_code"]
    assert no_version.status_code == 422


async def test_a_call_the_call_log_journaled_is_in_the_events_journal(desktop: RunningDesktop) -> None:
    number = unique_number()
    call_id = new_call_id()
    await desktop.publish(call_event("ringing", call_id, caller=number, leg_id="l1"))
    await desktop.publish(call_event("answered", call_id, caller=number, sequence=2, leg_id="l1"))
    await desktop.publish(
        call_event("ended", call_id, caller=number, sequence=3, disposition=ev.DISPOSITION_ANSWERED)
    )
    async with desktop.client() as client:
        await desktop.log_in(client, "ada")
        found: list[dict[str, Any]] = []
        for _ in range(60):
            page = (await client.get("/api/events", params={"phone": number[-7:]})).json()
            found = [e for e in page["items"] if e["call_id"] == call_id]
            if found:
                break
            await asyncio.sleep(0.25)
    assert found, "the call never reached the journal"
    assert found[0]["source"] == "calls"
    assert (found[0]["type_code"], found[0]["disposition"]) == ("incoming_call", "answered")


async def test_a_project_is_made_by_those_who_may_and_its_card_lists_its_tasks(
    desktop: RunningDesktop,
) -> None:
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "admin", ADMIN_PASSWORD)
        made = await client.post(
            "/api/projects",
            json={"name": "Boiler rollout", "manager_id": ADA, "start_date": "2026-01-01"},
            headers={"X-CSRF-Token": csrf},
        )
        project = made.json()
        backwards = await client.post(
            "/api/projects",
            json={"name": "Odd", "start_date": "2026-02-01", "end_date": "2026-01-01"},
            headers={"X-CSRF-Token": csrf},
        )
        closed = await client.patch(
            f"/api/projects/{project['id']}",
            json={"version": project["version"], "status": "closed"},
            headers={"X-CSRF-Token": csrf},
        )
        stale = await client.patch(
            f"/api/projects/{project['id']}",
            json={"version": project["version"], "name": "Late"},
            headers={"X-CSRF-Token": csrf},
        )
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        task = await new_task(client, csrf, project_id=project["id"])
        card = await client.get(f"/api/projects/{project['id']}")
        tasks = await client.get("/api/tasks", params={"project_id": project["id"], "scope": "all"})
        listed = await client.get("/api/projects", params={"status": "closed", "name": "Boiler"})
    assert made.status_code == 201, made.text
    assert backwards.status_code == 422
    assert backwards.json()["detail"][0]["loc"] == ["body", "end_date"]
    assert closed.status_code == 200, closed.text
    assert stale.status_code == 409
    assert card.json()["name"] == "Boiler rollout"
    assert [t["id"] for t in tasks.json()["items"]] == [task["id"]]
    assert project["id"] in [p["id"] for p in listed.json()["items"]]
