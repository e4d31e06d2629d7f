"""End to end in a browser: a real SIP call rings an agent and their open desktop shows the caller's card.

sipp (caller) -> sip-gateway (pjsua2) -> sipp (the agent's phone, extension 101);
gateway -> tel.call.* on NATS -> web (screen pops) -> WebSocket -> headless Chromium (Playwright);
web -> crm (log-in, the caller's look-up, the new contact) and calls (the call log), with the agent's
own token.

The agent logs in through the page; a call from a known number shows the contact's name on a card; a
call from an unknown number shows the "new person / new company / add to existing" form with the number
filled in, and creating the contact from it turns the card into the contact's.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Suite, web_service
from tests.sipp.runner import SippResult, run_uac

pytestmark = [pytest.mark.e2e, pytest.mark.sip, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
AGENT_PASSWORD = "e2e-agent-password"
TIMEOUT_MS = 15_000


def _need_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: `make test-deps` installs Debian's chromium")
    pytest.skip(f"needs Debian's chromium at {CHROMIUM} (`make test-deps` installs it)")


@pytest.fixture(scope="module")
def web_url(suite: Suite) -> Iterator[str]:
    """The web service as a real process, next to the suite's crm, calls and gateway."""
    _need_chromium()
    with web_service(suite, "web.log") as url:
        yield url


@pytest.fixture(scope="module")
def agent_login(suite: Suite) -> str:
    """A user of crm for emp-101, the employee behind extension 101 in the gateway's routes."""
    login = f"alice-{uuid.uuid4().hex[:6]}"
    with suite.crm() as crm:
        employee = crm.post("/employees", json={"id": "emp-101", "name": "Alice Agent", "extension": "101"})
        assert employee.status_code in (201, 409), employee.text
        user = crm.post(
            "/users",
            json={"login": login, "password": AGENT_PASSWORD, "roles": ["agent"], "employee_id": "emp-101"},
        )
        assert user.status_code == 201, user.text
    return login


def _caller() -> str:
    return f"+1555{uuid.uuid4().int % 10_000_000:07d}"


class Call(threading.Thread):
    """A sipp call to extension 101 in the background (the phone answers after half a second)."""

    def __init__(self, suite: Suite, caller: str, talk_ms: int = 4000) -> None:
        super().__init__(daemon=True)
        self.suite, self.caller, self.talk_ms = suite, caller, talk_ms
        self.result: SippResult | None = None

    def run(self) -> None:
        self.result = run_uac(
            "uac_answered.xml",
            "127.0.0.1",
            self.suite.sip_port,
            service="101",
            keys={"caller": self.caller, "caller_name": "E2E Caller"},
            duration_ms=self.talk_ms,
            timeout=60,
        )

    def finish(self) -> None:
        self.join(70)
        assert self.result is not None, "sipp did not finish"
        assert self.result.ok, self.result.explain()


def test_a_call_to_an_agents_extension_pops_the_card_in_their_browser(
    suite: Suite, web_url: str, agent_login: str
) -> None:
    from playwright.sync_api import expect, sync_playwright

    known = _caller()
    with suite.crm() as crm:
        created = crm.post(
            "/contacts",
            json={"kind": "person", "name": "Known Customer", "phones": [{"number": known}]},
            params={"allow_duplicate": "true"},
        )
        assert created.status_code == 201, created.text

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True
        )
        try:
            page: Any = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{web_url}/desktop")
            page.get_by_label("Login").fill(agent_login)
            page.get_by_label("Password").fill(AGENT_PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page).to_have_url(f"{web_url}/desktop")
            expect(page.locator("#live-status")).to_have_text("Live: connected")

            # A known caller: the card names the contact.
            call = Call(suite, known)
            call.start()
            card = page.locator("article.card").filter(has_text=known)
            expect(card.get_by_role("heading", name=f"Call from {known}")).to_be_visible()
            expect(card.locator(".contact-name")).to_have_text("Known Customer")
            call.finish()
            expect(card).to_contain_text("Answered")

            # An unknown caller: the form with the number filled in, and the contact made from it.
            unknown = _caller()
            call = Call(suite, unknown, talk_ms=2000)
            call.start()
            card = page.locator("article.card").filter(has_text=unknown)
            expect(card.locator(".unknown")).to_have_text("Unknown number")
            expect(card.get_by_label("Phone number")).to_have_value(unknown)
            card.get_by_label("Name", exact=True).fill("New Customer")
            card.get_by_role("button", name="Create contact").click()
            expect(card.locator(".contact-name")).to_have_text("New Customer")
            call.finish()
            expect(page.locator("article.card")).to_have_count(2)  # stacked, neither lost
        finally:
            browser.close()

    looked_up = httpx.get(
        f"{suite.crm_url}/contacts/lookup",
        params={"number": unknown},
        headers={"Authorization": f"Bearer {suite.admin_token}"},
        timeout=10,
    ).json()
    assert looked_up["contact"]["name"] == "New Customer"
    records = suite.wait_for_calls(
        lambda items: len(items) == 1 and items[0]["state"] == "ended", number=unknown
    )
    assert records[0]["disposition"] == "answered"
    assert records[0]["employee_id"] == "emp-101"
