"""The desktop in a real browser (Debian's Chromium, headless, driven by Playwright) against real crm,
calls and NATS: log-in by keyboard, a ringing call's card with the contact, the unknown-number form
that creates the contact, stacked cards, the call registration saved, text with markup shown as text,
an ended session that comes back with what was typed, a dropped WebSocket that catches up, and an
action the user has no right to that is not offered.

Skipped only when /usr/bin/chromium is missing outside CI (``make test-deps`` installs it); in CI a
missing browser is a failure.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from .conftest import ADA, NINA, PASSWORD, RunningDesktop, Services, call_event, new_call_id, unique_number

pytestmark = pytest.mark.browser


async def log_in(page: Any, desktop: RunningDesktop, login: str = "ada") -> None:
    """By keyboard, as a user would: the login field has the focus, Tab to the password, Enter."""
    from playwright.async_api import expect

    await page.goto(f"{desktop.url}/desktop")
    await expect(page).to_have_url(f"{desktop.url}/login?next=/desktop")
    await page.keyboard.type(login)
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(f"{desktop.url}/desktop")
    await expect(page.locator("#live-status")).to_have_text("Live: connected")


def card(page: Any, call_id: str) -> Any:
    return page.locator(f'article.card[data-call-id="{call_id}"]')


async def test_a_ringing_call_pops_the_contacts_card_and_the_call_is_registered(
    page: Any, desktop: RunningDesktop, services: Services
) -> None:
    from playwright.async_api import expect

    number = unique_number()
    services.create_contact("Grace Hopper", number, responsible_employee_id=ADA)
    await log_in(page, desktop)
    await expect(page.locator("#who")).to_have_text("Signed in as Ada Lovelace")
    call_id = new_call_id()
    await desktop.publish(call_event("ringing", call_id, caller=number, leg_id="l1"))
    shown = card(page, call_id)
    await expect(shown.get_by_role("heading", name=f"Call from {number}")).to_be_visible()
    await expect(shown.locator(".contact-name")).to_have_text("Grace Hopper")
    await expect(shown).to_contain_text("Ringing on extension 201")
    await expect(shown).to_contain_text("Ada Lovelace")  # the responsible employee

    await desktop.publish(
        call_event("answered", call_id, caller=number, sequence=2, extension="201", leg_id="l1")
    )
    await expect(shown).to_contain_text("Answered")
    await shown.get_by_label("Reason").fill("Order")
    await shown.get_by_label("Result").fill("Sold")
    await shown.get_by_label("Comment").fill("Wants <b>two</b> boxes")
    await shown.get_by_role("button", name="Save").click()
    await expect(shown.locator(".notes-form .form-status")).to_have_text("Saved.")
    with services.calls() as calls:
        notes = calls.get(f"/calls/{call_id}/notes").json()
    assert (notes["reason"], notes["result"], notes["comment"]) == ("Order", "Sold", "Wants <b>two</b> boxes")
    assert notes["contact_id"]  # linked to the contact the card showed

    # The call log lists it, in the user's time zone and language.
    await page.get_by_role("searchbox", name="Number", exact=True).fill(number[-7:])
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#calls-body tr")).to_have_count(1)
    await expect(page.locator("#calls-body")).to_contain_text("Wants <b>two</b> boxes")


async def test_an_unknown_number_offers_the_create_form_and_names_are_never_markup(
    page: Any, desktop: RunningDesktop, services: Services
) -> None:
    from playwright.async_api import expect

    await log_in(page, desktop)
    number = unique_number()
    call_id = new_call_id()
    hostile = '<img src=x onerror="window.__xss=1">Eve'
    await desktop.publish(call_event("ringing", call_id, caller=number, caller_name=hostile, leg_id="l1"))
    shown = card(page, call_id)
    await expect(shown.locator(".unknown")).to_have_text("Unknown number")
    await expect(shown.get_by_label("New person")).to_be_checked()
    await expect(shown.get_by_label("Phone number")).to_have_value(number)
    await shown.get_by_label("Name", exact=True).fill(hostile)
    await shown.get_by_role("button", name="Create contact").click()
    await expect(shown.locator(".contact-name")).to_have_text(hostile)
    with services.crm() as crm:
        found = crm.get("/contacts/lookup", params={"number": number}).json()
    assert found["contact"]["name"] == hostile

    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#calls-body")).to_contain_text(hostile)  # the caller's display name
    assert await page.evaluate("window.__xss") is None
    assert await page.locator("#cards img, #calls-body img").count() == 0


async def test_a_second_call_stacks_a_second_card_and_cards_close_by_keyboard(
    page: Any, desktop: RunningDesktop
) -> None:
    from playwright.async_api import expect

    await log_in(page, desktop)
    first, second = new_call_id(), new_call_id()
    await desktop.publish(call_event("ringing", first, caller=unique_number(), leg_id="l1"))
    await expect(card(page, first)).to_be_visible()
    await desktop.publish(call_event("ringing", second, caller=unique_number(), leg_id="l2"))
    await expect(page.locator("article.card")).to_have_count(2)
    assert await page.locator("article.card").first.get_attribute("data-call-id") == second
    await card(page, second).get_by_role("button", name="Close card").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("article.card")).to_have_count(1)
    await expect(card(page, first)).to_be_visible()


async def test_an_ended_session_goes_to_log_in_and_comes_back_with_what_was_typed(
    page: Any, desktop: RunningDesktop
) -> None:
    from playwright.async_api import expect

    await log_in(page, desktop)
    call_id = new_call_id()
    await desktop.publish(call_event("ringing", call_id, caller=unique_number(), leg_id="l1"))
    shown = card(page, call_id)
    await shown.get_by_label("Comment").fill("Call back on Monday")
    await page.get_by_role("searchbox", name="Number", exact=True).fill("0888")
    for session in list(desktop.parts.store):
        desktop.parts.store.expire(session)
    await shown.get_by_role("button", name="Save").click()
    await expect(page).to_have_url(f"{desktop.url}/login?expired=1&next=%2Fdesktop")
    await expect(page.locator("#login-notice")).to_contain_text("Your session has ended")
    await page.get_by_label("Login").fill("ada")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(f"{desktop.url}/desktop")
    await expect(card(page, call_id).get_by_label("Comment")).to_have_value("Call back on Monday")
    await expect(page.get_by_role("searchbox", name="Number", exact=True)).to_have_value("0888")


async def test_a_dropped_websocket_reconnects_and_shows_the_call_that_rang_meanwhile(
    page: Any, desktop: RunningDesktop
) -> None:
    from playwright.async_api import expect

    await log_in(page, desktop)
    assert desktop.parts.pops.close_all() == 1  # the connection drops...
    call_id = new_call_id()
    await desktop.publish(call_event("ringing", call_id, caller=unique_number(), leg_id="l1"))
    await expect(card(page, call_id)).to_be_visible()  # ...and the page catches up
    await expect(page.locator("#live-status")).to_have_text("Live: connected")


async def test_a_user_without_the_right_to_create_contacts_is_not_offered_it(
    page: Any, desktop: RunningDesktop
) -> None:
    from playwright.async_api import expect

    await log_in(page, desktop, "nina")
    call_id = new_call_id()
    await desktop.publish(
        call_event("ringing", call_id, caller=unique_number(), extension="203", employee_id="web-emp-nina")
    )
    shown = card(page, call_id)
    await expect(shown.locator(".unknown")).to_be_visible()
    await expect(shown.get_by_label("Add to existing contact")).to_be_checked()
    assert await shown.get_by_label("New person").count() == 0
    assert await shown.get_by_role("button", name="Create contact").count() == 0


async def test_the_language_menu_switches_the_desktop_to_bulgarian(
    page: Any, desktop: RunningDesktop
) -> None:
    from playwright.async_api import expect

    await log_in(page, desktop)
    await page.get_by_label("Language").select_option("bg")
    await expect(page.locator("h1")).to_have_text("Работно място на оператора")
    await expect(page.locator("html")).to_have_attribute("lang", "bg")
    await page.keyboard.press("Tab")  # the first stop of the keyboard is the skip link
    await expect(page.get_by_role("link", name="Към разговорите")).to_be_focused()


async def test_counts_on_the_page_agree_with_their_number_in_russian(
    page: Any, desktop: RunningDesktop
) -> None:
    from playwright.async_api import expect

    await log_in(page, desktop)
    await page.get_by_label("Language").select_option("ru")
    await expect(page.locator("html")).to_have_attribute("lang", "ru")
    texts = await page.evaluate(
        """async () => {
            const { t } = await import("/static/common.js");
            return [1, 3, 11, 22, 25].map((n) => t("total_contacts", { total: n }))
                .concat([t("total_contacts", { total: "1 001", count: 1001 })]);
        }"""
    )
    assert texts == [
        "1 контакт",
        "3 контакта",
        "11 контактов",
        "22 контакта",
        "25 контактов",
        "1 001 контакт",
    ]


async def test_call_log_pages_forward_and_back(
    page: Any, desktop: RunningDesktop, services: Services
) -> None:
    from playwright.async_api import expect

    number = unique_number()
    call_ids = [new_call_id() for _ in range(30)]
    await asyncio.gather(
        *(desktop.publish(call_event("ringing", c, caller=number, leg_id="l1")) for c in call_ids)
    )
    with services.calls() as calls:
        for _ in range(200):
            if calls.get("/calls", params={"number": number, "scope": "all"}).json()["total"] == 30:
                break
            await asyncio.sleep(0.05)
    await log_in(page, desktop)
    await page.get_by_role("searchbox", name="Number", exact=True).fill(number)
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#calls-total")).to_have_text("30 calls")
    pager = page.get_by_role("navigation", name="Call log")
    await expect(page.locator("#calls-body tr")).to_have_count(25)
    await pager.get_by_role("button", name="Next page").click()
    await expect(page.locator("#calls-body tr")).to_have_count(5)
    await expect(page.locator("#calls-page")).to_have_text("Page 2")
    await expect(pager.get_by_role("button", name="Next page")).to_be_disabled()
    await pager.get_by_role("button", name="Previous page").click()
    await expect(page.locator("#calls-body tr")).to_have_count(25)


async def test_the_call_log_downloads_as_csv_with_the_filters_on_screen(
    page: Any, desktop: RunningDesktop, services: Services
) -> None:
    from playwright.async_api import expect

    number = unique_number()
    call_id = new_call_id()
    await desktop.publish(call_event("ringing", call_id, caller=number, leg_id="l1"))
    with services.calls() as calls:
        for _ in range(200):
            if calls.get(f"/calls/{call_id}").status_code == 200:
                break
            await asyncio.sleep(0.05)
    await log_in(page, desktop)
    await page.get_by_role("searchbox", name="Number", exact=True).fill(number)
    await page.get_by_label("Direction").select_option("inbound")
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#calls-body tr")).to_have_count(1)
    async with page.expect_download() as downloading:
        await page.get_by_role("link", name="Export CSV").click()
    download = await downloading.value
    saved = await download.path()
    text = await asyncio.to_thread(Path(saved).read_text, encoding="utf-8")
    lines = text.strip().splitlines()
    assert lines[0].startswith("call_id,")
    assert len(lines) == 2
    assert lines[1].startswith(call_id)


async def test_contacts_are_found_and_one_opens_with_its_calls_names_shown_as_text(
    page: Any, desktop: RunningDesktop, services: Services
) -> None:
    from playwright.async_api import expect

    number = unique_number()
    hostile = f"<script>window.__xss=1</script>Mallory {number[-5:]}"
    contact = services.create_contact(hostile, number, responsible_employee_id=ADA)
    call_id = new_call_id()
    await desktop.publish(call_event("ringing", call_id, caller=number, leg_id="l1"))
    await log_in(page, desktop)
    await page.get_by_role("link", name="Contacts").click()
    await expect(page).to_have_url(f"{desktop.url}/contacts")
    await page.get_by_role("searchbox", name="Name or number").fill(number)
    await page.get_by_role("button", name="Search").click()
    await expect(page.locator("#contacts-body tr")).to_have_count(1)
    await page.get_by_role("link", name=hostile).click()
    await expect(page).to_have_url(f"{desktop.url}/contacts?id={contact['id']}")
    await expect(page.locator("#contact-title")).to_have_text(hostile)
    await expect(page.locator("#contact-fields")).to_contain_text(number)
    # The call of this contact's number is in its list once the call log has linked it.
    for _ in range(50):
        await page.reload()
        if await page.locator("#contact-calls-body tr td time").count():
            break
        await asyncio.sleep(0.2)
    await expect(page.locator("#contact-calls-body tr")).to_have_count(1)
    await expect(page.locator("#contact-calls-body")).to_contain_text(number)
    assert await page.evaluate("window.__xss") is None


async def ticket_for(services: Services, description: str, employee_id: str = ADA) -> dict[str, Any]:
    contact = services.create_contact("Ticket Owner", unique_number(), responsible_employee_id=employee_id)
    return services.create_ticket(
        contact["id"],
        taken_by_id=employee_id,
        product="Heat pump",
        description=description,
        scheduled_start="2030-01-07T08:00:00Z",
        scheduled_end="2030-01-07T10:00:00Z",
        team_id="web-team",
    )


async def test_a_tickets_status_is_changed_in_the_page_once_however_often_it_is_clicked(
    page: Any, desktop: RunningDesktop, services: Services
) -> None:
    from playwright.async_api import expect

    hostile = '<img src=x onerror="window.__xss=1">leaks'
    ticket = await ticket_for(services, hostile)
    await log_in(page, desktop)
    await page.get_by_role("link", name="Tickets").click()
    await page.get_by_label("Status").select_option("taken")
    await page.get_by_role("button", name="Show").click()
    await page.get_by_role("link", name=ticket["code"]).click()
    detail = page.locator("#ticket-detail")
    await expect(detail.locator("#ticket-status-text")).to_have_text("Status: Taken")
    await expect(detail.locator("#ticket-description")).to_have_text(hostile)
    await detail.get_by_role("button", name="Allocate").dblclick()
    await expect(detail.locator("#ticket-status-text")).to_have_text("Status: Allocated")
    await expect(detail.get_by_role("button", name="Confirm")).to_be_visible()
    with services.crm() as crm:
        history = crm.get(f"/tickets/{ticket['id']}/history").json()
        now = crm.get(f"/tickets/{ticket['id']}").json()
    assert now["status"] == "allocated"
    assert now["version"] == ticket["version"] + 1  # the double click moved it once
    assert history  # crm logged the move
    await detail.get_by_label("New note").fill("Customer <b>agrees</b>")
    await detail.get_by_role("button", name="Add note").click()
    await expect(detail.locator("#ticket-notes")).to_contain_text("Customer <b>agrees</b>")
    assert await page.evaluate("window.__xss") is None
    assert await page.locator("#ticket-detail img, #ticket-detail b").count() == 0


async def test_a_user_without_the_right_to_change_tickets_sees_no_workflow_buttons(
    page: Any, desktop: RunningDesktop, services: Services
) -> None:
    from playwright.async_api import expect

    ticket = await ticket_for(services, "Read only for Nina", NINA)
    await log_in(page, desktop, "nina")
    await page.goto(f"{desktop.url}/tickets?id={ticket['id']}")
    await expect(page.locator("#ticket-status-text")).to_have_text("Status: Taken")
    assert await page.locator("#ticket-actions button").count() == 0
    assert await page.locator("#ticket-note-form").count() == 0
