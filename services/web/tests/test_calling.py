"""Click-to-call without a gateway, the missed calls page, and the "Who is it?" box, against real crm,
calls and NATS (the click-to-call through the real sip-gateway and sipp phones is in
tests/e2e/test_web_click_to_call.py).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from telecrm.events.v1 import call_events_pb2 as ev

from .conftest import (
    ADMIN_PASSWORD,
    BOB,
    RunningDesktop,
    Services,
    call_event,
    need_chromium,
    new_call_id,
    unique_number,
)
from .test_browser import log_in


async def missed_call(desktop: RunningDesktop, services: Services, number: str, **fields: Any) -> str:
    """An inbound call that rang (ada's 201 unless told) and was not answered: an open missed call."""
    call_id = new_call_id()
    await desktop.publish(call_event("ringing", call_id, caller=number, leg_id="leg-1", **fields))
    await desktop.publish(
        call_event("ended", call_id, caller=number, sequence=2, disposition=ev.DISPOSITION_MISSED, **fields)
    )
    with services.calls() as calls:
        for _ in range(200):
            items = calls.get("/missed-calls", params={"number": number[-7:]}).json()["items"]
            if items and items[0]["missed_count"] >= 1 and call_id in _calls_of(calls, items[0]["id"]):
                return str(items[0]["id"])
            await asyncio.sleep(0.05)
    raise AssertionError(f"the missed call {call_id} never reached the missed calls")


def _calls_of(calls: Any, item_id: str) -> set[str]:
    return {c["call_id"] for c in calls.get(f"/missed-calls/{item_id}").json()["calls"]}


async def test_without_a_gateway_click_to_call_is_not_offered_and_the_api_says_so(
    desktop: RunningDesktop,
) -> None:
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        headers = {"X-CSRF-Token": csrf, "Origin": desktop.url}
        session = (await client.get("/api/session")).json()
        dial = await client.post("/api/calls/dial", json={"number": "+15550001111"}, headers=headers)
        hold = await client.post("/api/calls/some-call/hold", headers=headers)
        active = await client.get("/api/calls/active")
        bad = await client.post("/api/calls/dial", json={"number": "call me <b>"}, headers=headers)
        unknown_action = await client.post("/api/calls/some-call/explode", headers=headers)
        no_csrf = await client.post("/api/calls/dial", json={"number": "+15550001111"})
    assert session["click_to_call"] is False
    assert dial.status_code == 503
    assert "WEB_GATEWAY_URL" in dial.json()["detail"]
    assert hold.status_code == 503
    assert active.status_code == 503
    assert bad.status_code == 422
    assert unknown_action.status_code == 422
    assert no_csrf.status_code == 403


async def test_missed_calls_are_listed_for_me_or_my_team(desktop: RunningDesktop, services: Services) -> None:
    number = unique_number()
    await missed_call(desktop, services, number)  # rang ada (201)
    bobs = unique_number()
    await missed_call(desktop, services, bobs, extension="202", employee_id=BOB)
    async with desktop.client() as client:
        await desktop.log_in(client, "ada")
        mine = (await client.get("/api/missed-calls", params={"scope": "mine"})).json()
        team = await client.get("/api/missed-calls", params={"scope": "team"})
        page = await client.get("/missed")
    assert number in [item["number"] for item in mine["items"]]
    assert bobs not in [item["number"] for item in mine["items"]]
    assert team.status_code == 200, team.text
    assert page.status_code == 200
    assert 'src="/static/missed.js"' in page.text

    async with desktop.client() as client:
        await desktop.log_in(client, "admin", ADMIN_PASSWORD)
        mine = await client.get("/api/missed-calls", params={"scope": "mine"})
    assert mine.status_code == 422  # the admin is no employee: no calls of theirs
    assert "not an employee" in mine.text


@pytest.mark.browser
async def test_the_missed_calls_page_shows_the_time_since_and_who_is_it_finds_the_number(
    desktop: RunningDesktop,
    services: Services,
    page: Any,
) -> None:
    need_chromium()
    from playwright.async_api import expect

    number = unique_number()
    await missed_call(desktop, services, number)
    services.create_contact("Missed <b>Caller</b>", number)
    await log_in(page, desktop)

    # "Who is it?": the contact (as text) and the calls with the number.
    await page.locator("#who-number").fill(number)
    await page.get_by_role("button", name="Search").click()
    result = page.locator("#who-result")
    await expect(result.locator(".who-contact")).to_have_text("Contact: Missed <b>Caller</b>")
    await expect(result.locator(".who-calls-total")).to_have_text("1 call with this number")
    await expect(result.locator(".who-calls li")).to_have_count(1)
    # No gateway here: the number is shown without a Call button.
    await expect(result.locator("button.call-button")).to_have_count(0)

    await page.get_by_role("link", name="Missed calls").click()
    await page.wait_for_url(f"{desktop.url}/missed")
    await page.get_by_label("Whose calls").select_option("mine")
    await page.get_by_role("button", name="Show").click()
    row = page.locator("#missed-body tr").filter(has_text=number)
    await expect(row).to_have_count(1)
    await expect(row.locator("time")).to_have_text(re.compile(r"ago|now"))  # the time since: "5 seconds ago"
