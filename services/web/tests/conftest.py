"""Fixtures of the web service's tests: real crm and calls processes, and the desktop served in-process.

crm and calls run as real processes on fresh databases with a nats-server of their own (so no other
test's consumers take their events); the desktop is built with the service's own ``build`` and served
by uvicorn on a free port inside the test's event loop, so the tests can talk to it over real HTTP and
WebSockets (and drive a browser at it) while reaching into its session store and screen pops.

Users (crm): ``admin``; ``ada``, an agent behind extension 201 (employee ``web-emp-ada``); ``bob``, an
agent behind 202; ``nina``, an agent who may not create contacts nor change tickets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.app import http_app
from telecrm_common.auth import AuthSettings
from telecrm_common.bus import Bus
from telecrm_common.events import STREAMS, call_event_subject
from telecrm_devstack.processes import ManagedProcess, NatsServer, free_port, wait_http_ok
from telecrm_devstack.testing import TEST_AUTH_SECRET
from telecrm_web.main import Desktop, build
from telecrm_web.settings import WebSettings

ADMIN_PASSWORD = "web-tests-admin-password"
PASSWORD = "web-tests-agent-password"
ADA = "web-emp-ada"
BOB = "web-emp-bob"
NINA = "web-emp-nina"


@dataclass
class Services:
    root: Path  # the calls service's recordings are under root / "recordings"
    nats: NatsServer
    crm_url: str
    calls_url: str
    crm_grpc: str
    admin_token: str

    def crm(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.crm_url, timeout=10, headers={"Authorization": f"Bearer {self.admin_token}"}
        )

    def calls(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.calls_url, timeout=10, headers={"Authorization": f"Bearer {self.admin_token}"}
        )

    def add_agent(
        self, employee_id: str, login: str, *, name: str, extension: str, revoked: list[str]
    ) -> str:
        """An employee of web-team and their agent user without the ``revoked`` rights (both kept when
        a module made them already); the login."""
        with self.crm() as crm:
            employee = crm.post(
                "/employees",
                json={"id": employee_id, "name": name, "extension": extension, "team_id": "web-team"},
            )
            assert employee.status_code in (201, 409), employee.text
            user = crm.post(
                "/users",
                json={
                    "login": login,
                    "password": PASSWORD,
                    "roles": ["agent"],
                    "employee_id": employee_id,
                    "revoked_rights": revoked,
                },
            )
            assert user.status_code in (201, 409), user.text
        return login

    def create_contact(self, name: str, number: str, **fields: Any) -> dict[str, Any]:
        with self.crm() as crm:
            body = {
                "kind": "person",
                "name": name,
                "phones": [{"number": number, "kind": "mobile"}],
                **fields,
            }
            response = crm.post("/contacts", json=body, params={"allow_duplicate": "true"})
            assert response.status_code == 201, response.text
            return dict(response.json())

    def create_ticket(self, client_id: str, **fields: Any) -> dict[str, Any]:
        """A service ticket of ``client_id`` (status ``taken``), made by the admin."""
        with self.crm() as crm:
            response = crm.post("/tickets", json={"client_id": client_id, **fields})
            assert response.status_code == 201, response.text
            return dict(response.json())


def _ok(response: httpx.Response) -> None:
    assert response.status_code in (200, 201, 409), response.text


def _seed(crm_url: str, admin_token: str) -> None:
    with httpx.Client(
        base_url=crm_url, timeout=10, headers={"Authorization": f"Bearer {admin_token}"}
    ) as crm:
        _ok(crm.post("/teams", json={"id": "web-team", "name": "Web team"}))
        _ok(crm.post("/ticket-series", json={"code": "SRV", "name": "Service", "is_default": True}))
        for employee_id, name, extension in (
            (ADA, "Ada Lovelace", "201"),
            (BOB, "Bob Marley", "202"),
            (NINA, "Nina Simone", "203"),
        ):
            _ok(
                crm.post(
                    "/employees",
                    json={"id": employee_id, "name": name, "extension": extension, "team_id": "web-team"},
                )
            )
        for login, employee_id, revoked in (
            ("ada", ADA, []),
            ("bob", BOB, []),
            ("nina", NINA, ["contact.create", "ticket.modify"]),
        ):
            _ok(
                crm.post(
                    "/users",
                    json={
                        "login": login,
                        "password": PASSWORD,
                        "roles": ["agent"],
                        "employee_id": employee_id,
                        "revoked_rights": revoked,
                    },
                )
            )


@pytest.fixture(scope="session")
def services(
    tmp_path_factory: pytest.TempPathFactory, database_factory: Callable[[str], str]
) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("web-services")
    nats = NatsServer(data_dir=root / "nats", log_path=root / "nats.log").start()
    calls_http, calls_grpc, crm_http, crm_grpc = free_port(), free_port(), free_port(), free_port()
    common = {"TELECRM_AUTH_SECRET": TEST_AUTH_SECRET}
    calls = ManagedProcess(
        "calls",
        [sys.executable, "-m", "telecrm_calls"],
        env={
            **common,
            "CALLS_NATS_URL": nats.url,
            "CALLS_DATABASE_URL": database_factory("web-calls"),
            "CALLS_HTTP_PORT": str(calls_http),
            "CALLS_GRPC_PORT": str(calls_grpc),
            "CALLS_LOG_FORMAT": "text",
            "CALLS_RECORDINGS_DIR": str(root / "recordings"),
        },
        log_path=root / "calls.log",
    ).start()
    crm = ManagedProcess(
        "crm",
        [sys.executable, "-m", "telecrm_crm"],
        env={
            **common,
            "CRM_NATS_URL": nats.url,
            "CRM_DATABASE_URL": database_factory("web-crm"),
            "CRM_HTTP_PORT": str(crm_http),
            "CRM_GRPC_PORT": str(crm_grpc),
            "CRM_LOG_FORMAT": "text",
            "CRM_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "CRM_ATTACHMENTS_DIR": str(root / "attachments"),
            "CRM_CALLS_GRPC_TARGET": f"127.0.0.1:{calls_grpc}",
        },
        log_path=root / "crm.log",
    ).start()
    try:
        crm_url, calls_url = f"http://127.0.0.1:{crm_http}", f"http://127.0.0.1:{calls_http}"
        wait_http_ok(f"{calls_url}/readyz", 90, calls)
        wait_http_ok(f"{crm_url}/readyz", 90, crm)
        login = httpx.post(
            f"{crm_url}/auth/login", json={"login": "admin", "password": ADMIN_PASSWORD}, timeout=10
        )
        admin_token = str(login.raise_for_status().json()["access_token"])
        _seed(crm_url, admin_token)
        yield Services(
            root=root,
            nats=nats,
            crm_url=crm_url,
            calls_url=calls_url,
            crm_grpc=f"127.0.0.1:{crm_grpc}",
            admin_token=admin_token,
        )
    finally:
        crm.stop()
        calls.stop()
        nats.stop()


@dataclass
class RunningDesktop:
    """The desktop served on ``url``, with its parts."""

    url: str
    parts: Desktop
    bus: Bus

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=15, follow_redirects=False, **kwargs)

    async def log_in(self, client: httpx.AsyncClient, login: str, password: str = PASSWORD) -> str:
        """Log in through the form as a browser would; the session's CSRF token."""
        form = await client.get("/login")
        token = form.cookies.get("telecrm_login_csrf") or client.cookies.get("telecrm_login_csrf")
        response = await client.post(
            "/login",
            data={"login": login, "password": password, "csrf_token": token or "", "next": "/desktop"},
            headers={"Origin": self.url},
        )
        assert response.status_code == 303, response.text
        session = self.parts.store.get(client.cookies.get("telecrm_session"), touch=False)
        assert session is not None
        return session.csrf_token

    async def publish(self, event: ev.CallEvent) -> None:
        await self.bus.publish(call_event_subject(event), event, msg_id=event.event_id)


async def serve(parts: Desktop, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    wiring = parts.wiring
    app = http_app(wiring.title, wiring.description, wiring.routers, {})
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            # The browser's page may still hold a WebSocket or a keep-alive connection when the desktop
            # stops (its fixture ends first): without a bound, uvicorn waits for them for ever.
            timeout_graceful_shutdown=5,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return server, task


def web_settings(services: Services, **overrides: Any) -> WebSettings:
    values: dict[str, Any] = {
        "crm_url": services.crm_url,
        "calls_url": services.calls_url,
        "crm_grpc_target": services.crm_grpc,
        "cookie_secure": False,
        "ping_interval_seconds": 1.0,
        **overrides,
    }
    return WebSettings(**values)


@contextlib.asynccontextmanager
async def running_desktop(services: Services, **overrides: Any) -> AsyncIterator[RunningDesktop]:
    bus = await Bus.connect(services.nats.url, name=f"web-tests-{uuid.uuid4().hex[:6]}", timeout=10)
    await bus.ensure_streams(STREAMS)
    parts = build(web_settings(services, **overrides), bus, auth=AuthSettings(secret=TEST_AUTH_SECRET))
    stop = asyncio.Event()
    background = [asyncio.create_task(task(stop)) for task in parts.wiring.background]
    port = free_port()
    server, serving = await serve(parts, port)
    try:
        # The screen pops' subscription is in place once NATS has seen it (a flush round trip).
        await asyncio.sleep(0)
        await bus.nc.flush()
        yield RunningDesktop(url=f"http://127.0.0.1:{port}", parts=parts, bus=bus)
    finally:
        server.should_exit = True
        await serving
        stop.set()
        await asyncio.gather(*background, return_exceptions=True)
        for shutdown in parts.wiring.on_shutdown:
            await shutdown()
        await bus.close()


@pytest.fixture
async def desktop(services: Services) -> AsyncIterator[RunningDesktop]:
    async with running_desktop(services) as running:
        yield running


def call_event(
    kind: str,
    call_id: str,
    *,
    caller: str = "+15550001111",
    caller_name: str = "",
    extension: str = "201",
    employee_id: str = ADA,
    sequence: int = 1,
    direction: int = ev.DIRECTION_INBOUND,
    **fields: Any,
) -> ev.CallEvent:
    """A call event as the gateway publishes it (``kind`` names the member of the oneof)."""
    event = ev.CallEvent(
        event_id=f"{call_id}-{sequence}-{kind}",
        call_id=call_id,
        sequence=sequence,
        direction=direction,  # type: ignore[arg-type]
        caller=ev.Party(
            number=caller, e164=caller if caller.startswith("+") else "", display_name=caller_name
        ),
        callee=ev.Party(number=extension, extension=extension),
        extension=extension,
        employee_id=employee_id,
        source="web-tests",
    )
    event.occurred_at.FromDatetime(datetime.now(UTC))
    getattr(event, kind).CopyFrom(getattr(ev, _MESSAGES[kind])(**fields))
    return event


_MESSAGES = {
    "offered": "CallOffered",
    "ringing": "CallRinging",
    "answered": "CallAnswered",
    "ended": "CallEnded",
    "leg_ended": "CallLegEnded",
}


def new_call_id() -> str:
    return f"web-{uuid.uuid4().hex[:12]}"


def unique_number() -> str:
    return f"+1555{secrets.randbelow(10**7):07d}"


# --- the browser tests' Chromium (Debian's, through Playwright) --------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 10_000


def need_chromium() -> None:
    """Skip without Debian's chromium, except in CI, where a missing browser is a failure."""
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: `make test-deps` installs Debian's chromium")
    pytest.skip(f"needs Debian's chromium at {CHROMIUM} (`make test-deps` installs it)")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    """One headless Chromium for the whole run; each page gets its own context (its own cookies)."""
    need_chromium()
    from playwright.async_api import async_playwright, expect

    # Assertions wait as long as actions do: a 2-core CI machine running the whole suite is slow.
    expect.set_options(timeout=TIMEOUT_MS)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True
        )
        yield chromium
        await chromium.close()


@pytest.fixture
async def new_page(browser: Any) -> AsyncIterator[Callable[[], Awaitable[Any]]]:
    """A page factory: each page in its own browser context (a user of their own), in Sofia's time zone
    on a laptop-sized window; a script error on any of them fails the test."""
    contexts: list[Any] = []
    errors: list[str] = []

    async def make() -> Any:
        context = await browser.new_context(
            locale="en-US", timezone_id="Europe/Sofia", viewport={"width": 1440, "height": 900}
        )
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    yield make
    for context in contexts:
        await context.close()
    assert errors == [], f"script errors on the page: {errors}"


@pytest.fixture
async def page(new_page: Callable[[], Awaitable[Any]]) -> Any:
    return await new_page()
