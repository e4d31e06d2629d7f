"""Recordings and reports in a real browser (Debian's Chromium, headless, driven by Playwright) against
real crm, calls and NATS: the call log shows a recorded call, the user plays it in the page and seeks
(the player's range requests answered 206), and the reports page draws bars for the calls published.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import ADA, RunningDesktop, Services
from .test_browser import log_in
from .test_insight import a_quiet_day, calls_on, recorded_call, tone_wav

pytestmark = pytest.mark.browser


async def test_the_user_plays_a_recorded_call_in_the_call_log_and_seeks(
    page: Any,
    desktop: RunningDesktop,
    services: Services,
) -> None:
    from playwright.async_api import expect

    number, _, recording_id = await recorded_call(desktop, services, tone_wav(3.0))
    audio_answers: list[tuple[int, str]] = []
    page.on(
        "response",
        lambda response: (
            audio_answers.append((response.status, response.headers.get("content-range", "")))
            if f"/api/recordings/{recording_id}/audio" in response.url
            else None
        ),
    )
    await log_in(page, desktop)
    await page.get_by_role("searchbox", name="Number", exact=True).fill(number[-7:])
    await page.get_by_role("button", name="Show").click()
    rows = page.locator("#calls-body tr")
    await expect(rows).to_have_count(1)
    await rows.get_by_role("button", name="Play recording").click()

    player = rows.locator("audio")
    await expect(player).to_have_attribute("src", f"/api/recordings/{recording_id}/audio")
    await expect(rows.get_by_role("link", name="Download")).to_have_attribute(
        "href", f"/api/recordings/{recording_id}/audio?download=true"
    )
    await expect(rows.get_by_role("button", name="Delete recording")).to_have_count(0)  # not an admin
    # It plays: the position moves on (or it reached the end).
    await page.wait_for_function(
        "el => el.ended || el.currentTime > 0.2", arg=await player.element_handle(), timeout=10_000
    )
    # It seeks: the whole length is seekable (the server answers ranges) and a jump lands there.
    seekable_end = await player.evaluate("el => el.seekable.length ? el.seekable.end(0) : 0")
    assert seekable_end == pytest.approx(3.0, abs=0.1)
    landed = await player.evaluate(
        """el => new Promise((resolve) => {
             el.addEventListener("seeked", () => resolve(el.currentTime), { once: true });
             el.currentTime = 2.5;
           })"""
    )
    assert landed == pytest.approx(2.5, abs=0.2)
    await page.wait_for_function("el => el.ended || el.currentTime > 2.6", arg=await player.element_handle())
    assert any(
        status == 206 and content_range.startswith("bytes ") for status, content_range in audio_answers
    ), audio_answers


async def test_the_reports_page_draws_bars_for_the_calls_of_the_chosen_days(
    page: Any,
    desktop: RunningDesktop,
    services: Services,
) -> None:
    from playwright.async_api import expect

    day = a_quiet_day()
    await calls_on(desktop, services, day)  # 10:15 and 10:40 answered, 14:05 missed (Sofia time)
    await log_in(page, desktop)
    await page.get_by_role("link", name="Reports").click()
    await expect(page.get_by_role("heading", name="Calls report")).to_be_visible()
    await expect(page.get_by_label("Whose calls")).to_have_value("employee")
    await expect(page.get_by_label("Employee", exact=True)).to_have_value(ADA)
    await page.get_by_label("Period").select_option("custom")
    await page.get_by_label("From").fill(day.isoformat())
    await page.get_by_label("To").fill(day.isoformat())
    await page.get_by_role("button", name="Show", exact=True).click()

    title = page.locator("#report-title")
    await expect(title).to_contain_text("Ada Lovelace")
    await expect(title).to_contain_text(str(day.year))
    figures = page.locator("#report-figures-body")
    await expect(figures.locator('tr[data-figure="reports_calls"] td')).to_have_text("3")
    await expect(figures.locator('tr[data-figure="reports_answered"] td')).to_have_text("2")
    await expect(figures.locator('tr[data-figure="reports_missed"] td')).to_have_text("1")
    await expect(figures.locator('tr[data-figure="reports_talk_total"] td')).to_have_text("2:00")

    hours = page.locator("#report-hours svg")
    await expect(hours).to_have_attribute("aria-label", "Busiest hour: 10:00")
    bars = hours.locator("g.bar")
    await expect(bars).to_have_count(24)
    await expect(bars.nth(10).locator("rect.bar-answered")).to_have_count(1)
    await expect(bars.nth(10).locator("title")).to_have_text("10:00: 2 calls, 2 answered, 0 missed")
    await expect(bars.nth(14).locator("rect.bar-missed")).to_have_count(1)
    assert await bars.nth(9).locator("rect").count() == 0
    tall = float(await bars.nth(10).locator("rect").get_attribute("height") or 0)
    short = float(await bars.nth(14).locator("rect").get_attribute("height") or 0)
    assert tall == pytest.approx(2 * short)

    # calls' own chart, as an image of this site.
    await page.get_by_text("Chart for printing").click()
    chart = page.locator("#report-chart")
    await expect(chart).to_be_visible()
    await page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=await chart.element_handle()
    )
