"""The numbers registry and the administration page in a real browser (Debian's Chromium, headless,
driven by Playwright) against real crm, calls and NATS: an admin creates a user with a role and that
user logs in; an extension added on /numbers is listed with its employee (its label shown as text, a
duplicate refused next to the field, a deletion asked first); an agent sees neither the admin link
nor any button that changes the registry.

Skipped only when /usr/bin/chromium is missing outside CI, like ``test_browser.py``.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from typing import Any

import pytest

from .conftest import ADA, ADMIN_PASSWORD, PASSWORD, RunningDesktop, Services

pytestmark = pytest.mark.browser


async def log_in(page: Any, desktop: RunningDesktop, login: str, password: str, path: str) -> None:
    from playwright.async_api import expect

    await page.goto(f"{desktop.url}{path}")
    await expect(page).to_have_url(f"{desktop.url}/login?next={path}")
    await page.get_by_label("Login").fill(login)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(f"{desktop.url}{path}")


def unique_extension() -> str:
    return f"8{secrets.randbelow(10**6):06d}"


async def calls_knows(services: Services, employee_id: str) -> None:
    """Wait until calls has crm's employee (from the bus) and takes extensions for them."""
    with services.calls() as calls:
        for _ in range(100):
            probe = calls.post("/numbers", json={"number": unique_extension(), "employee_id": employee_id})
            if probe.status_code == 201:
                calls.delete(f"/numbers/{probe.json()['id']}")
                return
            await asyncio.sleep(0.1)
    pytest.fail(f"calls never heard of employee {employee_id}")


async def test_an_admin_creates_a_user_with_a_role_and_that_user_logs_in(
    new_page: Any, desktop: RunningDesktop, services: Services
) -> None:
    from playwright.async_api import expect

    name = f"Dora Maar {uuid.uuid4().hex[:4]}"
    with services.crm() as crm:
        assert crm.post("/employees", json={"name": name}).status_code == 201
    admin = await new_page()
    await log_in(admin, desktop, "admin", ADMIN_PASSWORD, "/admin")
    await expect(admin.get_by_role("link", name="Telephony")).to_have_attribute("href", "/admin/telephony")
    form = admin.locator("#user-form")
    login = f"sup-{uuid.uuid4().hex[:6]}"
    await form.get_by_label("Login").fill(login)
    await form.get_by_label("Initial password").fill("supervisor-password-1")
    await form.get_by_label("Agent", exact=True).uncheck()
    await form.get_by_label("Supervisor", exact=True).check()
    await form.get_by_label("Employee").select_option(label=name)
    await form.get_by_role("button", name="Create user").click()
    await expect(form.locator(".form-status")).to_have_text(f"User {login} created.")
    row = admin.locator("#users-body tr", has_text=login)
    await expect(row).to_contain_text("Supervisor")
    await expect(row).to_contain_text(name)

    # A second user with the same login is refused next to the field.
    await form.get_by_label("Login").fill(login)
    await form.get_by_role("button", name="Create user").click()
    await expect(form.locator('[data-error-for="login"]')).to_contain_text("taken")
    await expect(form.get_by_label("Login")).to_have_attribute("aria-invalid", "true")

    user = await new_page()
    await log_in(user, desktop, login, "supervisor-password-1", "/numbers")
    await expect(user.locator("#who")).to_have_text(f"Signed in as {name}")
    await expect(user.get_by_role("link", name="Administration")).to_have_count(0)


async def test_an_extension_added_on_the_numbers_page_shows_with_its_employee(
    new_page: Any, desktop: RunningDesktop, services: Services
) -> None:
    from playwright.async_api import expect

    await calls_knows(services, ADA)
    page = await new_page()
    await log_in(page, desktop, "admin", ADMIN_PASSWORD, "/numbers")
    editor = page.locator("#extension-form")
    extension = unique_extension()
    await editor.get_by_label("Extension").fill(extension)
    await editor.get_by_label("Label").fill("<b>Front desk</b>")
    await editor.get_by_label("Employee").select_option(label="Ada Lovelace (201)")
    await editor.get_by_role("button", name="Add extension").click()
    await expect(editor.locator(".form-status")).to_have_text(f"Extension {extension} added.")

    await page.get_by_role("searchbox", name="Number").fill(extension)
    await page.locator("#number-filters").get_by_role("button", name="Show").click()
    row = page.locator("#numbers-body tr")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("Ada Lovelace")
    await expect(row).to_contain_text("Web team")
    await expect(row).to_contain_text("<b>Front desk</b>")  # text, never markup

    await editor.get_by_label("Extension").fill(extension)
    await editor.get_by_role("button", name="Add extension").click()
    await expect(editor.locator('[data-error-for="number"]')).to_contain_text("registered already")

    async def accept(dialog: Any) -> None:
        assert dialog.message.startswith(f"Delete extension {extension}?")
        await dialog.accept()

    page.once("dialog", accept)
    await row.get_by_role("button", name=f"Delete extension {extension}").click()
    await expect(page.locator("#numbers-body")).to_contain_text("No numbers match.")


async def test_an_agent_sees_no_admin_link_and_no_edit_buttons_on_the_numbers_page(
    new_page: Any, desktop: RunningDesktop, services: Services
) -> None:
    from playwright.async_api import expect

    await calls_knows(services, ADA)
    extension = unique_extension()
    with services.calls() as calls:
        created = calls.post("/numbers", json={"number": extension, "employee_id": ADA})
        assert created.status_code == 201, created.text
    page = await new_page()
    await log_in(page, desktop, "ada", PASSWORD, "/numbers")
    await expect(page.locator("#numbers-body tr", has_text=extension)).to_contain_text("Ada Lovelace")
    await expect(page.get_by_role("link", name="Numbers")).to_have_attribute("aria-current", "page")
    await expect(page.get_by_role("link", name="Administration")).to_have_count(0)
    await expect(page.locator("#extension-form")).to_have_count(0)
    await expect(page.get_by_role("button", name="Edit")).to_have_count(0)
    await expect(page.get_by_role("button", name="Delete")).to_have_count(0)

    response = await page.goto(f"{desktop.url}/admin")
    assert response.status == 403
    await expect(page.get_by_text("Only administrators may open this page.")).to_be_visible()


async def test_an_admin_builds_a_team_with_a_new_employee_and_takes_them_out_again(
    new_page: Any, desktop: RunningDesktop, services: Services
) -> None:
    from playwright.async_api import expect

    page = await new_page()
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await log_in(page, desktop, "admin", ADMIN_PASSWORD, "/admin")
    suffix = uuid.uuid4().hex[:4]
    people = page.locator("#employee-form")
    await people.get_by_label("Name").fill(f"Kim {suffix}")
    await people.get_by_label("Extension").fill("20x")
    await people.get_by_role("button", name="Create employee").click()
    await expect(people.locator('[data-error-for="extension"]')).not_to_be_empty()  # crm's 422, by the field
    await people.get_by_label("Extension").fill("")
    await people.get_by_role("button", name="Create employee").click()
    await expect(people.locator(".form-status")).to_have_text(f"Employee Kim {suffix} created.")

    teams = page.locator("#team-form")
    await teams.get_by_label("Name").fill(f"Night shift {suffix}")
    await teams.get_by_label("Supervisor").select_option(label="Ada Lovelace (201)")
    await teams.get_by_role("button", name="Create team").click()
    await expect(teams.locator(".form-status")).to_have_text(f"Team Night shift {suffix} created.")
    row = page.locator("#teams-body tr", has_text=f"Night shift {suffix}")
    await expect(row).to_contain_text("Ada Lovelace")
    await row.get_by_role("button", name=f"Edit team Night shift {suffix}").click()
    members = page.locator("#team-member-form")
    await members.get_by_label("Add a member").select_option(label=f"Kim {suffix}")
    await members.get_by_role("button", name="Add").click()
    await expect(page.locator("#team-member-list")).to_contain_text(f"Kim {suffix}")
    await expect(page.locator("#employees-body tr", has_text=f"Kim {suffix}")).to_contain_text(
        f"Night shift {suffix}"
    )
    await page.get_by_role("button", name=f"Remove Kim {suffix} from the team").click()
    await expect(page.locator("#team-member-list")).to_have_text("No members yet.")
    await page.get_by_role("button", name="Delete team").click()
    await expect(page.locator("#teams-body")).not_to_contain_text(f"Night shift {suffix}")
    with services.crm() as crm:
        found = crm.get("/teams", params={"q": f"Night shift {suffix}"}).json()["items"]
    assert found == []
