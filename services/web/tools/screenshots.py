"""`make screenshots`: PNGs of the agent desktop's pages under var/screenshots/.

Starts the suite as `make run` does (its own data under var/screenshots/suite/, made afresh each run,
so a running `make run` is left alone), adds an agent for the demo employee behind extension 101,
logs in with headless Chromium (Debian's, through Playwright), places two real SIP calls at 101 (the
demo customer, then an unknown number) and saves: the log-in page, the desktop with the two stacked
cards, the call log after the calls, the contacts page with the demo customer, a service ticket of
theirs, missed calls, the task register and its week calendar (with a task of Alice's), the events
journal, projects, the numbers registry, the calls report and the desktop in Bulgarian; then, as the
first admin, the administration and telephony pages. Stops everything at the end.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from telecrm_devstack import launcher
from telecrm_devstack.demo_data import CUSTOMER_NUMBER, admin_headers

CHROMIUM = "/usr/bin/chromium"
UNKNOWN_NUMBER = "+15557770123"
log = logging.getLogger("screenshots")


def add_agent(stack: launcher.Stack) -> tuple[str, str]:
    """A crm user for emp-101 (Alice, the demo phone that answers); a new login each run."""
    crm_url = f"http://127.0.0.1:{stack.http_ports['crm']}"
    headers = admin_headers(crm_url, stack.admin_login, stack.admin_password)
    login, password = f"alice-{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    body = {"login": login, "password": password, "roles": ["agent"], "employee_id": "emp-101"}
    response = httpx.post(f"{crm_url}/users", json=body, headers=headers, timeout=10)
    response.raise_for_status()
    return login, password


def add_ticket(stack: launcher.Stack) -> str | None:
    """A service ticket of the demo customer, taken by Alice (emp-101); its id, None if crm refused."""
    crm_url = f"http://127.0.0.1:{stack.http_ports['crm']}"
    headers = admin_headers(crm_url, stack.admin_login, stack.admin_password)
    with httpx.Client(base_url=crm_url, headers=headers, timeout=10) as crm:
        crm.post("/ticket-series", json={"code": "SRV", "name": "Service", "is_default": True})
        found = crm.get("/contacts/lookup", params={"number": CUSTOMER_NUMBER.replace(" ", "")}).json()
        contact = found.get("contact") or {}
        if not contact.get("contact_id"):
            log.warning("the demo customer is not in crm: no ticket on the tickets page")
            return None
        body = {
            "client_id": contact["contact_id"],
            "taken_by_id": "emp-101",
            "product": "Heat pump HP-9",
            "description": "Makes a knocking noise at night; the customer asks for a visit.",
            "priority": "high",
        }
        response = crm.post("/tickets", json=body)
        if response.status_code != 201:
            log.warning("crm did not take the demo ticket: %s %s", response.status_code, response.text[:200])
            return None
        return str(response.json()["id"])


def add_task(stack: launcher.Stack) -> None:
    """A task of Alice's (emp-101) for today at 10:00 for an hour, so the calendar shows something."""
    crm_url = f"http://127.0.0.1:{stack.http_ports['crm']}"
    headers = admin_headers(crm_url, stack.admin_login, stack.admin_password)
    start = datetime.now().astimezone().replace(hour=10, minute=0, second=0, microsecond=0)
    body = {
        "name": "Call back about the heat pump visit",
        "description": "Agree a day for the technician.",
        "start_at": start.isoformat(),
        "end_at": (start + timedelta(hours=1)).isoformat(),
        "priority": "high",
        "executors": [{"employee_id": "emp-101"}],
        "phone": CUSTOMER_NUMBER.replace(" ", ""),
    }
    response = httpx.post(f"{crm_url}/tasks", json=body, headers=headers, timeout=10)
    if response.status_code != 201:
        log.warning("crm did not take the demo task: %s %s", response.status_code, response.text[:200])


def log_in(page: Any, login: str, password: str) -> None:
    page.get_by_label("Login").fill(login)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def call(root: Path, caller: str, seconds: float) -> subprocess.Popen[bytes]:
    """`make call` from ``caller`` in the background."""
    argv = [sys.executable, "-m", "telecrm_devstack.call", "--root", str(root), "--caller", caller]
    argv += ["--extension", "101", "--seconds", str(seconds)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def shoot(page: Any, out: Path, name: str) -> None:
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"  {path}")


def take(stack: launcher.Stack, root: Path, out: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # a call placed by a fresh process takes a while on a busy machine
    login, password = add_agent(stack)
    url = f"http://127.0.0.1:{stack.http_ports['web']}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport={"width": 1366, "height": 820}, locale="en-US")
        page.set_default_timeout(20_000)
        page.goto(f"{url}/desktop")
        shoot(page, out, "01-login")
        log_in(page, login, password)
        expect(page.locator("#live-status")).to_have_text("Live: connected")
        # One call after the other (the demo phone takes one at a time); both cards stay on the page.
        known = call(root, CUSTOMER_NUMBER.replace(" ", ""), 3)
        expect(page.locator("article.card .contact-name")).to_be_visible()
        known.wait(60)
        unknown = call(root, UNKNOWN_NUMBER, 3)
        expect(page.locator("article.card .unknown")).to_be_visible()
        shoot(page, out, "02-screen-pops")
        unknown.wait(60)
        time.sleep(1)
        page.get_by_role("button", name="Show").click()
        expect(page.locator("#calls-body tr")).not_to_have_count(0)
        shoot(page, out, "03-call-log")
        page.get_by_role("link", name="Contacts").click()
        page.get_by_role("button", name="Search").click()
        expect(page.locator("#contacts-body tr")).not_to_have_count(0)
        page.locator("#contacts-body a").first.click()
        expect(page.locator("#contact-fields")).not_to_be_empty()
        shoot(page, out, "04-contacts")
        ticket_id = add_ticket(stack)
        page.goto(f"{url}/tickets" + (f"?id={ticket_id}" if ticket_id else ""))
        expect(page.locator("#tickets-body tr")).not_to_have_count(0)
        if ticket_id:
            expect(page.locator("#ticket-notes li")).not_to_have_count(0)
        shoot(page, out, "05-tickets")
        page.goto(f"{url}/missed")
        expect(page.locator("#missed-total")).not_to_be_empty()
        shoot(page, out, "05b-missed-calls")
        add_task(stack)
        page.goto(f"{url}/tasks")
        expect(page.locator("#tasks-body")).to_contain_text("Alice")  # executors named, not ids
        shoot(page, out, "07-tasks")
        page.locator("#show-calendar").click()
        page.locator('#calendar-view button[data-view="week"]').click()
        expect(page.locator("#cal-title")).not_to_be_empty()
        time.sleep(0.5)  # the week's tasks are drawn after the title
        shoot(page, out, "08-tasks-calendar")
        page.goto(f"{url}/events")
        expect(page.locator("#events-total")).not_to_be_empty()
        shoot(page, out, "09-events")
        page.goto(f"{url}/projects")
        expect(page.locator("#projects-total")).not_to_be_empty()
        shoot(page, out, "10-projects")
        page.goto(f"{url}/numbers")
        expect(page.locator("#numbers-total")).not_to_be_empty()
        shoot(page, out, "11-numbers")
        page.goto(f"{url}/reports")
        page.locator("#report-form").get_by_role("button", name="Show").click()
        expect(page.locator("#report-result")).to_be_visible()
        shoot(page, out, "12-reports")
        page.get_by_role("link", name="Desktop").click()
        page.get_by_label("Language").select_option("bg")
        expect(page.locator("html")).to_have_attribute("lang", "bg")
        shoot(page, out, "15-desktop-bg")
        browser.close()
        # The administration pages, as the first admin (the password `make run` prints).
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport={"width": 1366, "height": 820}, locale="en-US")
        page.set_default_timeout(20_000)
        page.goto(f"{url}/admin")
        log_in(page, stack.admin_login, stack.admin_password)
        expect(page.locator("#users-total")).not_to_be_empty()
        shoot(page, out, "13-admin")
        page.goto(f"{url}/admin/telephony")
        expect(page.locator("#telephony-main")).to_be_visible()
        time.sleep(1)  # the gateway's facts arrive after the page
        shoot(page, out, "14-admin-telephony")
        browser.close()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    out = Path.cwd() / "var" / "screenshots"
    root = out / "suite"
    shutil.rmtree(root, ignore_errors=True)  # a fresh suite each run (one user per employee in crm)
    root.mkdir(parents=True, exist_ok=True)
    stack = launcher.start(root, env={})  # its own NATS and SQLite files, whatever the shell says
    try:
        print(f"saving screenshots under {out}:")
        take(stack, root, out)
    finally:
        launcher.stop(stack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
