"""The screen-pop card's actions in a real browser (Debian's Chromium, headless, driven by Playwright)
against real crm, calls and NATS: a call rings, its card pops, and from it the agent makes a task
(once, however often the button is pressed; crm has it with the call attached), an event in the
journal (starting from the call registration's comment) and a personal reminder, by keyboard where a
user would; a missing name is said next to its field; a user without the rights sees no buttons.
Times are the browser's (Europe/Sofia).

Skipped only when /usr/bin/chromium is missing outside CI (``make test-deps`` installs it).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from telecrm.events.v1 import call_events_pb2 as ev

from .conftest import ADA, PASSWORD, RunningDesktop, Services, call_event, new_call_id, unique_number

pytestmark = pytest.mark.browser

CARA = "web-emp-cara-browser"  # may neither create tasks nor events


async def log_in(page: Any, desktop: RunningDesktop, login: str = "ada") -> None:
    from playwright.async_api import expect

    await page.goto(f"{desktop.url}/desktop")
    await page.get_by_label("Login").fill(login)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(f"{desktop.url}/desktop")
    await expect(page.locator("#live-status")).to_have_text("Live: connected")


async def ring(page: Any, desktop: RunningDesktop, number: str, **fields: Any) -> tuple[str, Any]:
    """A call rings: its id and its card, once the card shows who calls."""
    from playwright.async_api import expect

    call_id = new_call_id()
    await desktop.publish(call_event("ringing", call_id, caller=number, leg_id="l1", **fields))
    card = page.locator(f'article.card[data-call-id="{call_id}"]')
    await expect(card.locator(".card-contact")).not_to_contain_text("Looking up")
    return call_id, card


def crm_get(services: Services, path: str, **params: Any) -> Any:
    with services.crm() as crm:
        response = crm.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()


async def test_a_task_made_on_the_card_is_in_crm_once_with_the_call_attached(
    page: Any, desktop: RunningDesktop, services: Services
) -> None:
    from playwright.async_api import expect

    number = unique_number()
    contact = services.create_contact("Grace Hopper", number, responsible_employee_id=ADA)
    await log_in(page, desktop)
    call_id, card = await ring(page, desktop, number)
    await expect(card.locator(".contact-name")).to_have_text("Grace Hopper")

    # By keyboard: the button opens the form with the name ready and the focus in it.
    opener = card.get_by_role("button", name="New task")
    await opener.focus()
    await page.keyboard.press("Enter")
    await expect(opener).to_have_attribute("aria-expanded", "true")
    name = card.get_by_label("Task", exact=True)
    await expect(name).to_be_focused()
    await expect(name).to_have_value("Call back Grace Hopper")
    await page.keyboard.press("Escape")
    await expect(name).to_be_hidden()
    await expect(opener).to_be_focused()
    await page.keyboard.press("Enter")

    # A missing name is said next to the field, and nothing is sent.
    await name.fill("  ")
    await card.get_by_role("button", name="Create task").click()
    await expect(name).to_have_attribute("aria-invalid", "true")
    await expect(card.locator(".field-error", has_text="Give it a name.")).to_be_visible()
    await expect(name).to_be_focused()

    title = f"Send Grace the offer {uuid.uuid4().hex[:6]}"
    await name.fill(title)
    await expect(name).not_to_have_attribute("aria-invalid", "true")  # corrected, the error goes
    await card.get_by_label("Priority").select_option("high")
    await expect(card.get_by_label("Assign to me")).to_be_checked()
    await card.get_by_role("button", name="Create task").dblclick()
    link = card.locator(".card-made").get_by_role("link", name=title)
    await expect(link).to_be_visible()
    await expect(card.locator(".card-made")).to_contain_text("Task created:")
    await expect(link).to_be_focused()
    href = await link.get_attribute("href")
    assert href is not None

    found = crm_get(services, "/tasks", q=title)["items"]
    assert len(found) == 1  # the double click made one task
    task = found[0]
    assert href == f"/tasks?id={task['id']}"
    assert (task["contact_id"], task["phone"], task["call_id"]) == (contact["id"], number, call_id)
    assert task["priority"] == "high"
    assert [e["employee_id"] for e in task["executors"]] == [ADA]
    assert [c["call_id"] for c in crm_get(services, f"/tasks/{task['id']}/calls")] == [call_id]
    # The deadline the form offered: an hour from now, on the hour.
    assert datetime.fromisoformat(task["end_at"]) > datetime.now(UTC) + timedelta(minutes=58)


async def test_an_event_starts_from_the_calls_comment_and_goes_to_the_journal(
    page: Any, desktop: RunningDesktop, services: Services
) -> None:
    from playwright.async_api import expect

    number = unique_number()
    contact = services.create_contact("Ivy Bell", number, responsible_employee_id=ADA)
    await log_in(page, desktop)
    _, card = await ring(page, desktop, number)
    await expect(card.locator(".contact-name")).to_have_text("Ivy Bell")
    await card.get_by_label("Comment").fill("Wants <b>two</b> boxes")
    await card.get_by_role("button", name="New event").click()
    await expect(card.get_by_label("Content")).to_have_value("Wants <b>two</b> boxes")
    types = card.get_by_label("Type", exact=True)
    await expect(types.locator("option[value=visit]")).to_have_count(1)
    assert await types.locator("option[value=incoming_call]").count() == 0  # the call log's own
    await types.select_option("visit")
    await card.get_by_label("Subject").fill("Showroom visit agreed")
    await card.get_by_role("button", name="Add event").click()
    await expect(card.locator(".card-made")).to_contain_text("Event added:")
    await expect(card.locator(".card-made").get_by_role("link", name="Showroom visit agreed")).to_be_visible()

    events = crm_get(services, "/journal/events", contact_id=contact["id"], type="visit")["items"]
    assert [(e["subject"], e["content"], e["phone"]) for e in events] == [
        ("Showroom visit agreed", "Wants <b>two</b> boxes", number)
    ]
    assert events[0]["responsible_employee_id"] == ADA
    assert await page.locator("#cards b").count() == 0  # the comment stayed text


async def test_a_reminder_from_an_unknown_numbers_card_is_a_task_of_mine_that_reminds_me(
    page: Any, desktop: RunningDesktop, services: Services
) -> None:
    from playwright.async_api import expect

    number = unique_number()
    await log_in(page, desktop)
    call_id, card = await ring(page, desktop, number)
    await expect(card.locator(".unknown")).to_have_text("Unknown number")
    await card.get_by_role("button", name="Remind me", exact=True).click()
    await expect(card.get_by_label("In 15 minutes")).to_be_focused()
    await expect(card.get_by_label(re.compile(r"Tomorrow at 9:00\sAM"))).to_be_visible()
    await card.get_by_label("In 1 hour").check()
    text = f"Call {number} back {uuid.uuid4().hex[:6]}"
    await card.get_by_label("Remind me of").fill(text)
    before = datetime.now(UTC)
    await card.get_by_role("button", name="Set reminder").click()
    await expect(card.locator(".card-made")).to_contain_text("Reminder set for")
    await expect(card.locator(".card-made").get_by_role("link", name=text)).to_be_visible()

    (task,) = crm_get(services, "/tasks", q=text)["items"]
    assert (task["phone"], task["contact_id"], task["call_id"]) == (number, None, call_id)
    assert [e["employee_id"] for e in task["executors"]] == [ADA]
    (reminder,) = crm_get(services, f"/tasks/{task['id']}/reminders")
    remind_at = datetime.fromisoformat(reminder["remind_at"])
    assert reminder["employee_id"] == ADA
    assert before + timedelta(minutes=59) < remind_at < datetime.now(UTC) + timedelta(minutes=61)
    assert datetime.fromisoformat(task["end_at"]) == remind_at

    # A chosen time in the past is refused next to it.
    await card.get_by_role("button", name="Remind me", exact=True).click()
    await card.get_by_label("At a time I choose").check()
    chosen = card.get_by_label("Reminder time")
    await expect(chosen).to_be_enabled()
    await chosen.fill("2020-01-01T09:00")
    await card.get_by_role("button", name="Set reminder").click()
    await expect(chosen).to_have_attribute("aria-invalid", "true")
    await expect(card.locator(".field-error", has_text="Choose a time in the future.")).to_be_visible()


async def test_a_user_without_the_rights_gets_no_buttons_on_the_card(
    page: Any, desktop: RunningDesktop, services: Services
) -> None:
    from playwright.async_api import expect

    services.add_agent(
        CARA, "cara-browser", name="Cara Bell", extension="213", revoked=["task.create", "event.create"]
    )
    await log_in(page, desktop, "cara-browser")
    _, card = await ring(page, desktop, unique_number(), extension="213", employee_id=CARA)
    await expect(card.get_by_role("button", name="Save")).to_be_visible()  # the call registration stays
    assert await card.locator(".card-actions").count() == 0
    assert await card.get_by_role("button", name="New task").count() == 0


async def test_a_task_made_after_the_call_ended_is_made_from_crms_journal(
    page: Any, desktop: RunningDesktop, services: Services
) -> None:
    from playwright.async_api import expect

    number = unique_number()
    await log_in(page, desktop)
    call_id, card = await ring(page, desktop, number)
    await desktop.publish(
        call_event("ended", call_id, caller=number, sequence=2, disposition=ev.DISPOSITION_MISSED)
    )
    await expect(card).to_contain_text("Ended: Missed")
    for _ in range(100):  # the call log publishes the call when it ends; crm's journal takes it
        if any(e["call_id"] == call_id for e in crm_get(services, "/journal/events", phone=number)["items"]):
            break
        await asyncio.sleep(0.1)
    await card.get_by_role("button", name="New task").click()
    await card.get_by_role("button", name="Create task").click()
    await expect(card.locator(".card-made")).to_contain_text("Task created:")
    link = card.locator(".card-made a")
    task_id = (await link.get_attribute("href") or "").removeprefix("/tasks?id=")
    assert [c["call_id"] for c in crm_get(services, f"/tasks/{task_id}/calls")] == [call_id]
    assert crm_get(services, f"/tasks/{task_id}")["name"] == f"Call back {number}"
