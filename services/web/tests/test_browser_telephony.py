"""The telephony admin page in a real browser (Debian's Chromium, Playwright) against a real sip-gateway:
an admin edits a ring group (strategy, a member added and moved up) and saves, and a reload shows it
from the gateway's file; a refused edit is shown on its entry; an edit on routes changed meanwhile is
refused and the page shows the new ones. Names with markup stay text.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from .conftest import ADMIN_PASSWORD, RunningDesktop
from .test_telephony import ROUTES, Gateway, desktop_with_gateway, gateway

pytestmark = pytest.mark.browser
__all__ = ["desktop_with_gateway", "gateway"]  # fixtures shared with those modules


def group(page: Any, name: str) -> Any:
    return page.locator(f'fieldset.entry[data-section="groups"][data-key="{name}"]')


async def open_as_admin(page: Any, desktop: RunningDesktop) -> None:
    """By keyboard: the login field has the focus, Tab to the password, Enter; back on the page."""
    from playwright.async_api import expect

    await page.goto(f"{desktop.url}/admin/telephony")
    await expect(page).to_have_url(f"{desktop.url}/login?next=/admin/telephony")
    await page.keyboard.type("admin")
    await page.keyboard.press("Tab")
    await page.keyboard.type(ADMIN_PASSWORD)
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(f"{desktop.url}/admin/telephony")
    await expect(group(page, "sales")).to_be_visible()


async def test_an_admin_edits_a_ring_group_and_a_reload_shows_it(
    page: Any, desktop_with_gateway: RunningDesktop, gateway: Gateway
) -> None:
    from playwright.async_api import expect

    await open_as_admin(page, desktop_with_gateway)
    await expect(page.locator("#deployment-facts")).to_contain_text("cloudpbx")
    sales = group(page, "sales")
    members = sales.locator("li[data-member] > span")
    await expect(members).to_have_text(["201 · Ada Lovelace", "202 · Bob Marley"])

    await sales.get_by_label("Strategy").select_option("sequential")
    await sales.get_by_label("Each member rings (seconds)").fill("12")
    await sales.get_by_label("Extension to add").select_option("203")
    await sales.get_by_role("button", name="Add member").click()
    await sales.get_by_role("button", name="Move 203 up").click()
    await expect(members).to_have_text(["201 · Ada Lovelace", "203 · Nina <b>Simone</b>", "202 · Bob Marley"])
    await page.get_by_role("button", name="Save routes").click()
    await expect(page.locator("#routes-status")).to_have_text(
        "Saved. The gateway uses the new routes for the next call."
    )

    await page.reload()
    sales = group(page, "sales")
    await expect(sales.locator("li[data-member] > span")).to_have_text(
        ["201 · Ada Lovelace", "203 · Nina <b>Simone</b>", "202 · Bob Marley"]
    )
    await expect(sales.get_by_label("Strategy")).to_have_value("sequential")
    await expect(sales.get_by_label("Each member rings (seconds)")).to_have_value("12")
    written = (await asyncio.to_thread(gateway.file_routes))["groups"]["sales"]
    assert (written["members"], written["strategy"], written["member_timeout"]) == (
        ["201", "203", "202"],
        "sequential",
        12,
    )


async def test_a_refused_edit_is_shown_on_its_entry_and_a_stale_one_reloads(
    page: Any, desktop_with_gateway: RunningDesktop, gateway: Gateway
) -> None:
    from playwright.async_api import expect

    await open_as_admin(page, desktop_with_gateway)
    # Extension 202 is still a member of the group: the gateway refuses, naming the group's member.
    extension = page.locator('fieldset.entry[data-section="extensions"][data-key="202"]')
    await extension.get_by_role("button", name="Remove Extension 202").click()
    await page.get_by_role("button", name="Save routes").click()
    sales = group(page, "sales")
    await expect(sales.locator("[data-error]")).to_contain_text("extension 202 is not defined")
    await expect(sales.locator('[data-field="members"]')).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#routes-status")).to_contain_text("Not saved: 1 problem")
    assert await asyncio.to_thread(gateway.routes_file.read_text) == ROUTES

    # Someone changes the file meanwhile: this page's save is refused and it shows theirs.
    await page.get_by_role("button", name="Discard changes and reload").click()
    await expect(sales.locator("li[data-member] > span")).to_have_count(2)
    await asyncio.to_thread(gateway.routes_file.write_text, ROUTES.replace('"201", "202"', '"202"'))
    await sales.get_by_label("Strategy").select_option("sequential")
    await page.get_by_role("button", name="Save routes").click()
    await expect(page.locator("#routes-status")).to_contain_text("Someone else changed the routes meanwhile")
    await expect(group(page, "sales").locator("li[data-member] > span")).to_have_text(["202 · Bob Marley"])
    await expect(group(page, "sales").get_by_label("Strategy")).to_have_value("all")


async def test_a_new_extension_renamed_after_joining_a_group_is_saved_under_its_new_number(
    page: Any, desktop_with_gateway: RunningDesktop, gateway: Gateway
) -> None:
    from playwright.async_api import expect

    await open_as_admin(page, desktop_with_gateway)
    await page.get_by_role("button", name="Add an extension").click()
    added = page.locator('fieldset.entry[data-section="extensions"][data-key="204"]')
    await expect(added.get_by_label("Number")).to_be_focused()
    await added.get_by_label("Contact (SIP URI of the phone)").fill("sip:204@127.0.0.1:5074")
    await added.get_by_label("Name", exact=True).fill("Grace Hopper")
    sales = group(page, "sales")
    await sales.get_by_label("Extension to add").select_option("204")
    await sales.get_by_role("button", name="Add member").click()

    # Renamed: the group's member follows it.
    await added.get_by_label("Number").fill("210")
    await added.get_by_label("Number").press("Tab")
    renamed = page.locator('fieldset.entry[data-section="extensions"][data-key="210"]')
    await expect(renamed.get_by_label("Name", exact=True)).to_be_focused()
    await expect(group(page, "sales").locator("li[data-member] > span")).to_have_text(
        ["201 · Ada Lovelace", "202 · Bob Marley", "210 · Grace Hopper"]
    )
    await page.get_by_role("button", name="Save routes").click()
    await expect(page.locator("#routes-status")).to_have_text(
        "Saved. The gateway uses the new routes for the next call."
    )
    written = await asyncio.to_thread(gateway.file_routes)
    assert written["extensions"]["210"] == {
        "contact": "sip:204@127.0.0.1:5074",
        "name": "Grace Hopper",
        "ring_timeout": 30,
    }
    assert written["groups"]["sales"]["members"] == ["201", "202", "210"]
