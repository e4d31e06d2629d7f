"""End to end: click-to-call from the desktop through the real sip-gateway.

web (POST /api/calls/dial, the agent's own token) -> sip-gateway (POST /calls/dial) -> the agent's sipp
phone (extension 101, answers after half a second) -> the number dialled: extension 102, a sipp phone
that rings until the call is cancelled. The live calls bar follows the call (the gateway's
/calls/active) and its Hang up button ends it; the call is then in the call log.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from telecrm_devstack.processes import wait_http_ok
from tests.e2e.conftest import Suite, web_service
from tests.e2e.test_web_screen_pop import AGENT_PASSWORD, CHROMIUM, TIMEOUT_MS, _need_chromium
from tests.sipp.runner import Sipp

pytestmark = [pytest.mark.e2e, pytest.mark.sip]

CUSTOMER = "102"  # rings until cancelled: the call stays live until someone hangs up


@pytest.fixture(scope="module")
def gateway(suite: Suite) -> str:
    """The suite's gateway (it checks the users' tokens with the installation's signing key)."""
    url = f"http://127.0.0.1:{suite.gateway_http}"
    wait_http_ok(f"{url}/readyz", 60, suite.gateway_proc)
    return url


@pytest.fixture(scope="module")
def web_url(suite: Suite, gateway: str) -> Iterator[str]:
    """The web service as a real process, with click-to-call through the suite's gateway."""
    with web_service(suite, "web-click-to-call.log", WEB_GATEWAY_URL=gateway) as url:
        yield url


_LOGINS: dict[tuple[int, str], str] = {}


def _user(suite: Suite, employee_id: str, name: str, extension: str | None) -> str:
    """The log-in of a user for the employee (one per employee and suite)."""
    if (known := _LOGINS.get((id(suite), employee_id))) is not None:
        return known
    login = _LOGINS[(id(suite), employee_id)] = f"c2c-{uuid.uuid4().hex[:6]}"
    with suite.crm() as crm:
        body: dict[str, Any] = {"id": employee_id, "name": name}
        if extension:
            body["extension"] = extension
        employee = crm.post("/employees", json=body)
        assert employee.status_code in (201, 409), employee.text
        user = crm.post(
            "/users",
            json={"login": login, "password": AGENT_PASSWORD, "roles": ["agent"], "employee_id": employee_id},
        )
        assert user.status_code == 201, user.text
    return login


def _signed_in(web_url: str, login: str) -> tuple[httpx.Client, dict[str, str]]:
    """A client logged in through the form, and the headers of a state change (CSRF, Origin)."""
    client = httpx.Client(base_url=web_url, timeout=15)
    client.get("/login")
    response = client.post(
        "/login",
        data={
            "login": login,
            "password": AGENT_PASSWORD,
            "csrf_token": client.cookies.get("telecrm_login_csrf") or "",
            "next": "/desktop",
        },
        headers={"Origin": web_url},
    )
    assert response.status_code == 303, response.text
    session = client.get("/api/session").json()
    assert session["click_to_call"] is True
    return client, {"X-CSRF-Token": session["csrf_token"], "Origin": web_url}


def _wait_active(client: httpx.Client, predicate: Any, timeout: float = 15) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    items: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        items = client.get("/api/calls/active").json()["items"]
        if predicate(items):
            return items
        time.sleep(0.2)
    raise AssertionError(f"live calls never matched: {items}")


def test_click_to_call_rings_the_agent_then_the_number_and_hangs_up(suite: Suite, web_url: str) -> None:
    agent = _user(suite, "emp-101", "Alice Agent", "101")
    other = _user(suite, "emp-102", "Bob Agent", "102")
    nobody = _user(suite, "emp-c2c-noext", "No Extension", None)

    client, headers = _signed_in(web_url, agent)
    with contextlib.closing(client):
        key = {"Idempotency-Key": f"test-{uuid.uuid4().hex}"}
        first = client.post("/api/calls/dial", json={"number": CUSTOMER}, headers={**headers, **key})
        assert first.status_code == 201, first.text
        call_id = first.json()["call_id"]
        # A double click (same key): the same call, not a second one.
        again = client.post("/api/calls/dial", json={"number": CUSTOMER}, headers={**headers, **key})
        assert again.status_code == 200, again.text
        assert again.json() == {**first.json(), "repeated": True}

        # The agent's phone answers, then the number rings: one live call of mine.
        live = _wait_active(client, lambda items: any(c["call_id"] == call_id for c in items))
        assert [c["call_id"] for c in live] == [call_id]

        # Another agent does not see it and may not hang it up.
        stranger, stranger_headers = _signed_in(web_url, other)
        with contextlib.closing(stranger):
            assert stranger.get("/api/calls/active").json()["items"] == []
            refused = stranger.post(f"/api/calls/{call_id}/hangup", headers=stranger_headers)
            assert refused.status_code in (403, 404), refused.text

        hung_up = client.post(f"/api/calls/{call_id}/hangup", headers=headers)
        assert hung_up.status_code == 202, hung_up.text
        _wait_active(client, lambda items: not items)
        over = client.post(f"/api/calls/{call_id}/hangup", headers=headers)
        assert over.status_code == 404

        # No CSRF token: refused before reaching the gateway.
        forged = client.post("/api/calls/dial", json={"number": CUSTOMER}, headers={"Origin": web_url})
        assert forged.status_code == 403
        invalid = client.post("/api/calls/dial", json={"number": "<script>"}, headers=headers)
        assert invalid.status_code == 422

    # A user without an extension gets a readable refusal.
    client, headers = _signed_in(web_url, nobody)
    with contextlib.closing(client):
        refused = client.post("/api/calls/dial", json={"number": CUSTOMER}, headers=headers)
        assert refused.status_code == 409, refused.text
        assert refused.json()["detail"]["code"] == "no_extension"

    records = suite.wait_for_calls(lambda items: any(c["call_id"] == call_id for c in items))
    assert any(c["call_id"] == call_id for c in records)


@pytest.mark.browser
def test_the_agent_clicks_a_number_sees_ringing_and_hangs_up_in_the_browser(
    suite: Suite, web_url: str
) -> None:
    _need_chromium()
    from playwright.sync_api import expect, sync_playwright

    agent = _user(suite, "emp-101", "Alice Agent", "101")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True
        )
        try:
            page: Any = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{web_url}/desktop")
            page.get_by_label("Login").fill(agent)
            page.get_by_label("Password").fill(AGENT_PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page).to_have_url(f"{web_url}/desktop")

            # "Who is it?": the number, its (missing) contact, its calls, and a Call button.
            page.locator("#who-number").fill(CUSTOMER)
            page.get_by_role("button", name="Search").click()
            result = page.locator("#who-result")
            expect(result).to_contain_text("No contact has this number.")
            call = result.get_by_role("button", name=f"Call {CUSTOMER}")
            call.dblclick()  # a double click places one call
            expect(page.locator("#dial-status")).to_contain_text("Ringing your phone")
            live = page.locator("#live-calls li")
            expect(live).to_have_count(1)
            expect(live).to_contain_text(CUSTOMER)
            live.get_by_role("button", name="Hang up").click()
            expect(page.locator("#dial-status")).to_have_text("Hung up.")
            expect(live).to_have_count(0)
        finally:
            browser.close()

    records = suite.wait_for_calls(lambda items: len(items) >= 1, number=CUSTOMER)
    assert records


def _browser_signed_in(playwright: Any, web_url: str, login: str) -> tuple[Any, Any]:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
    page: Any = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{web_url}/desktop")
    page.get_by_label("Login").fill(login)
    page.get_by_label("Password").fill(AGENT_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    return browser, page


@pytest.mark.browser
def test_a_customer_answers_and_the_agent_holds_sends_tones_and_hangs_up_in_the_browser(
    suite: Suite, web_url: str
) -> None:
    """Click-to-call to an external number: the agent's phone answers, then the customer behind the trunk
    (a sipp phone); the live call's buttons reach the customer's phone as SIP."""
    _need_chromium()
    from playwright.sync_api import expect, sync_playwright

    agent = _user(suite, "emp-101", "Alice Agent", "101")
    customer = f"+1555{uuid.uuid4().int % 10**7:07d}"
    with sync_playwright() as playwright:
        browser, page = _browser_signed_in(playwright, web_url, agent)
        try:
            expect(page).to_have_url(f"{web_url}/desktop")
            page.locator("#who-number").fill(customer)
            page.get_by_role("button", name="Search").click()
            page.locator("#who-result").get_by_role("button", name=f"Call {customer}").click()
            live = page.locator("#live-calls li")
            expect(live).to_have_count(1)
            expect(live.locator(".live-state")).to_have_text("Talking", timeout=20_000)
            expect(page.locator("#dial-status")).to_have_text("Connected.")

            live.get_by_role("button", name="Hold").click()
            expect(live.locator(".live-state")).to_have_text("On hold")
            live.get_by_role("button", name="Resume").click()
            expect(live.locator(".live-state")).to_have_text("Talking")
            live.get_by_label("Tones").fill("12#")
            live.get_by_role("button", name="Send tones").click()
            expect(live.get_by_label("Tones")).to_have_value("")
            # A click-to-call is not transferred (only routed calls are): no such button.
            expect(live.get_by_role("button", name="Transfer")).to_have_count(0)

            live.get_by_role("button", name="Hang up").click()
            expect(page.locator("#dial-status")).to_have_text("Hung up.")
            expect(live).to_have_count(0)
        finally:
            browser.close()

    [record] = suite.wait_for_calls(lambda items: any(c["state"] == "ended" for c in items), number=customer)
    assert record["disposition"] == "answered"


@pytest.mark.browser
def test_the_agent_consults_a_colleague_on_an_incoming_call_and_takes_the_customer_back(
    suite: Suite, web_url: str
) -> None:
    """An inbound call that Alice's phone answered: she consults extension 102 (it rings), goes back to
    the customer, and hangs up, all from the live call's buttons."""
    _need_chromium()
    from playwright.sync_api import expect, sync_playwright

    agent = _user(suite, "emp-101", "Alice Agent", "101")
    customer = f"+1555{uuid.uuid4().int % 10**7:07d}"
    caller = Sipp(
        "uac_controlled.xml",
        remote=f"127.0.0.1:{suite.sip_port}",
        service="101",
        keys={"caller": customer, "caller_name": "Customer"},
    ).start()
    with sync_playwright() as playwright:
        browser, page = _browser_signed_in(playwright, web_url, agent)
        try:
            live = page.locator("#live-calls li")
            expect(live).to_have_count(1, timeout=20_000)
            expect(live.locator(".live-state")).to_have_text("Talking", timeout=20_000)
            live.get_by_label("Extension").fill("102")
            live.get_by_role("button", name="Consult first").click()
            expect(live.locator(".live-state")).to_have_text("Talking to 102 (the customer waits)")
            expect(live.get_by_role("button", name="Complete transfer")).to_be_visible()
            live.get_by_role("button", name="Back to the customer").click()
            expect(live.locator(".live-state")).to_have_text("Talking")
            live.get_by_role("button", name="Hang up").click()
            expect(live).to_have_count(0)
        finally:
            browser.close()
    result = caller.wait(30)
    assert result.ok, result.explain()
    [record] = suite.wait_for_calls(lambda items: any(c["state"] == "ended" for c in items), number=customer)
    assert record["disposition"] == "answered"
