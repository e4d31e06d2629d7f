"""Tasks, the events journal and projects in a real browser (Debian's Chromium, headless, driven by
Playwright) against the real crm: a task made in the form shows in the week calendar, is dragged to
another day and stays there after a reload, moves by keyboard, and goes back with the reason when
someone changed it meanwhile; the journal shows an event and takes a new one; a project's card lists
its task. Times are the browser's (Europe/Sofia).

Skipped only when /usr/bin/chromium is missing outside CI (``make test-deps`` installs it).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from .conftest import ADA, PASSWORD, RunningDesktop, Services, unique_number

pytestmark = pytest.mark.browser

SOFIA = ZoneInfo("Europe/Sofia")


async def log_in(page: Any, desktop: RunningDesktop, path: str, login: str = "ada") -> None:
    from playwright.async_api import expect

    await page.goto(f"{desktop.url}{path}")
    await expect(page.get_by_label("Login")).to_be_focused()
    await page.keyboard.type(login)
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(f"{desktop.url}{path}")


def next_week_tuesday() -> date:
    today = datetime.now(SOFIA).date()
    return today + timedelta(days=7 - today.weekday() + 1)


def slot(page: Any, day: date, hour: int) -> Any:
    return page.locator(f'#calendar td[data-date="{day.isoformat()}"][data-hour="{hour}"]')


def task_in_crm(services: Services, task_id: str) -> dict[str, Any]:
    with services.crm() as crm:
        return dict(crm.get(f"/tasks/{task_id}").json())


def local(iso: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone(SOFIA)


async def test_a_new_task_is_dragged_in_the_week_calendar_moved_by_keyboard_and_put_back_when_stale(
    page: Any, desktop: RunningDesktop, services: Services
) -> None:
    from playwright.async_api import expect

    day = next_week_tuesday()
    await log_in(page, desktop, "/tasks")
    await page.get_by_role("button", name="New task").click()
    editor = page.locator("#task-editor")
    await editor.get_by_label("Task").fill("Quote for <b>Ivy</b>")
    await editor.get_by_label("Start").fill(f"{day.isoformat()}T10:00")
    await editor.get_by_label("Deadline").fill(f"{day.isoformat()}T11:30")
    await editor.get_by_role("button", name="Save").click()
    card = page.locator("#task-detail")
    await expect(card.locator("#task-title")).to_have_text("Quote for <b>Ivy</b>")
    task_id = await card.get_attribute("data-task-id")
    assert task_id
    await expect(page.locator("#tasks-body")).to_contain_text("Quote for <b>Ivy</b>")

    await page.get_by_role("button", name="Calendar").click()
    await page.get_by_role("button", name="Next").click()
    chip = page.locator(f'.cal-task[data-task-id="{task_id}"]')
    await expect(slot(page, day, 10).locator(chip)).to_have_count(1)

    thursday = day + timedelta(days=2)
    await chip.drag_to(slot(page, thursday, 14))
    await expect(page.locator("#cal-status")).to_contain_text("moved to")
    await page.reload()
    await expect(slot(page, thursday, 14).locator(chip)).to_have_count(1)
    moved = task_in_crm(services, task_id)
    assert local(moved["start_at"]) == datetime(
        thursday.year, thursday.month, thursday.day, 14, 0, tzinfo=SOFIA
    )
    assert local(moved["end_at"]) - local(moved["start_at"]) == timedelta(minutes=90)  # its length is kept

    # The keyboard alternative: a focused task moves a day right and an hour down.
    await chip.focus()
    await page.keyboard.press("ArrowRight")
    await expect(slot(page, thursday + timedelta(days=1), 14).locator(chip)).to_have_count(1)
    await expect(chip).to_be_focused()
    await page.keyboard.press("ArrowDown")
    await expect(slot(page, thursday + timedelta(days=1), 15).locator(chip)).to_have_count(1)
    friday = task_in_crm(services, task_id)
    assert local(friday["start_at"]).date() == thursday + timedelta(days=1)
    assert local(friday["start_at"]).hour == 15

    # Someone else changes the task: the next move is refused, the task stays, and the page says why.
    with services.crm() as crm:
        assert crm.patch(f"/tasks/{task_id}", json={"description": "changed elsewhere"}).status_code == 200
    await chip.focus()
    await page.keyboard.press("ArrowLeft")
    await expect(page.locator("#cal-status")).to_have_text(
        "Someone changed this task meanwhile: it is shown as it is now. Try again."
    )
    await expect(slot(page, thursday + timedelta(days=1), 15).locator(chip)).to_have_count(1)
    assert task_in_crm(services, task_id)["start_at"] == friday["start_at"]

    # The card's "move to" form does the same without a pointer (once the card shows the task as it is
    # now: a move from the card as it was before the change elsewhere is refused like the drag above).
    await chip.click()
    await expect(card).to_have_attribute("data-version", str(task_in_crm(services, task_id)["version"]))
    await expect(card.locator("#task-title")).to_have_text("Quote for <b>Ivy</b>")
    await expect(card.get_by_label("Day", exact=True)).to_have_value(
        (thursday + timedelta(days=1)).isoformat()
    )
    await card.get_by_label("Day", exact=True).fill(day.isoformat())
    await card.get_by_label("Time", exact=True).fill("09:15")
    await card.get_by_role("button", name="Move", exact=True).click()
    await expect(slot(page, day, 9).locator(chip)).to_have_count(1)
    assert local(task_in_crm(services, task_id)["start_at"]).time().isoformat() == "09:15:00"


async def test_the_events_journal_shows_an_event_and_takes_a_new_one(
    page: Any, desktop: RunningDesktop, services: Services
) -> None:
    from playwright.async_api import expect

    contact = services.create_contact("Ivy <img src=x>", unique_number(), responsible_employee_id=ADA)
    with services.crm() as crm:
        made = crm.post(
            "/journal/events",
            json={
                "type_code": "visit",
                "subject": "Showroom <script>visit</script>",
                "contact_id": contact["id"],
                "responsible_employee_id": ADA,
            },
        )
        assert made.status_code == 201, made.text
    await log_in(page, desktop, "/events")
    rows = page.locator("#events-body tr")
    row = rows.filter(has_text="Showroom <script>visit</script>")
    await expect(row).to_contain_text("Ivy <img src=x>")
    await expect(row).to_contain_text("Ada Lovelace")
    await row.locator("a.event-link").click()
    detail = page.locator("#event-detail")
    await expect(detail.get_by_label("Subject")).to_have_value("Showroom <script>visit</script>")

    await page.get_by_role("button", name="New event").click()
    await detail.get_by_label("Type").select_option("letter_out")
    await detail.get_by_label("Subject").fill("Sent the price list")
    await detail.get_by_role("button", name="Save").click()
    await expect(detail.locator("#event-form-status")).to_have_text("Saved.")
    await expect(page.locator("#events-body")).to_contain_text("Sent the price list")


async def test_a_projects_card_shows_its_task(page: Any, desktop: RunningDesktop, services: Services) -> None:
    from playwright.async_api import expect

    with services.crm() as crm:
        project = crm.post("/projects", json={"name": "Heating <i>2027</i>", "manager_id": ADA}).json()
        task = crm.post(
            "/tasks",
            json={
                "name": "Order the boilers",
                "project_id": project["id"],
                "executors": [{"employee_id": ADA}],
                "owner_employee_id": ADA,
            },
        )
        assert task.status_code == 201, task.text
    await log_in(page, desktop, "/projects")
    await page.locator("#projects-body a", has_text="Heating <i>2027</i>").click()
    detail = page.locator("#project-detail")
    await expect(detail.locator("#project-title")).to_have_text("Heating <i>2027</i>")
    await expect(detail.locator("#project-fields")).to_contain_text("Ada Lovelace")
    await expect(detail.locator("#project-tasks-body")).to_contain_text("Order the boilers")
    await expect(page.get_by_role("button", name="New project")).to_have_count(0)  # agents do not create them
    await detail.get_by_role("link", name="New task in this project").click()
    await expect(page.locator("#task-form-project")).to_have_value(project["id"])
