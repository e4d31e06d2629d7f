"""The suite as real processes for the end-to-end tests.

A nats-server of its own (so no other test's consumers take its events), the calls and crm services
on fresh databases (PostgreSQL when TEST_DATABASE_URL is set, SQLite otherwise), the SIP gateway, and
sipp agent phones behind the extensions:

| extension | phone (sipp)                         |
|-----------|--------------------------------------|
| 101       | rings 0.5 s, answers, waits for BYE  |
| 102       | rings until the call is cancelled    |
| 103       | busy (486)                           |
| 999       | not configured: the gateway says 404 |

The line +15551230009 rings a group of 101, 102 and 103 at once.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from telecrm_devstack.processes import ManagedProcess, NatsServer, free_port, free_sip_port, wait_http_ok
from tests.sipp.runner import Sipp, environment_ok, start_uas

RING_MS = 500
ADMIN_PASSWORD = "e2e-admin-password"
PHONE_CALLS = 50  # calls each sipp phone takes before it exits (more than any test places)


@dataclass
class Suite:
    root: Path
    nats: NatsServer
    database_url: str
    sip_port: int
    calls_http: int
    calls_grpc: int
    gateway_http: int
    phones: dict[str, Sipp]
    calls_proc: ManagedProcess
    gateway_proc: ManagedProcess
    crm_proc: ManagedProcess
    crm_http: int
    calls_env: dict[str, str] = field(default_factory=dict)

    @property
    def calls_url(self) -> str:
        return f"http://127.0.0.1:{self.calls_http}"

    @property
    def crm_url(self) -> str:
        return f"http://127.0.0.1:{self.crm_http}"

    @functools.cached_property
    def admin_token(self) -> str:
        """An access token of the suite's admin, from a real log-in to crm (valid 15 minutes)."""
        login = httpx.post(
            f"{self.crm_url}/auth/login", json={"login": "admin", "password": ADMIN_PASSWORD}, timeout=10
        )
        return str(login.raise_for_status().json()["access_token"])

    def crm(self) -> httpx.Client:
        """A client of crm's REST API logged in as the suite's admin."""
        return httpx.Client(
            base_url=self.crm_url, timeout=10, headers={"Authorization": f"Bearer {self.admin_token}"}
        )

    def calls(self) -> httpx.Client:
        """A client of the call log's REST API with the admin's crm token (the services share the key)."""
        return httpx.Client(
            base_url=self.calls_url, timeout=10, headers={"Authorization": f"Bearer {self.admin_token}"}
        )

    def list_calls(self, **params: Any) -> list[dict[str, Any]]:
        """Every record of the call log (all pages)."""
        items: list[dict[str, Any]] = []
        cursor = None
        with self.calls() as client:
            while True:
                query = {"limit": 500, **params, **({"cursor": cursor} if cursor else {})}
                page = client.get("/calls", params=query).raise_for_status().json()
                items += page["items"]
                cursor = page["next_cursor"]
                if not cursor:
                    return items

    def wait_for_calls(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0, **params: Any
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        items: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            items = self.list_calls(**params)
            if predicate(items):
                return items
            time.sleep(0.2)
        raise AssertionError(f"call log never matched; last seen {len(items)} records: {items}")

    def restart_calls(self) -> None:
        self.calls_proc = _calls_process(self.root, self.calls_env)
        wait_http_ok(f"{self.calls_url}/readyz", 60, self.calls_proc)


@contextlib.contextmanager
def web_service(suite: Suite, log_name: str, **env: str) -> Iterator[str]:
    """The web service as a real process next to the suite's crm and calls (``env`` adds settings,
    WEB_GATEWAY_URL for click-to-call); yields its base URL."""
    port = free_port()
    web = ManagedProcess(
        "web",
        [sys.executable, "-m", "telecrm_web"],
        env={
            "TELECRM_AUTH_SECRET": suite.calls_env["TELECRM_AUTH_SECRET"],
            "WEB_NATS_URL": suite.nats.url,
            "WEB_CRM_URL": suite.crm_url,
            "WEB_CALLS_URL": suite.calls_url,
            "WEB_HTTP_PORT": str(port),
            "WEB_GRPC_PORT": str(free_port()),
            "WEB_COOKIE_SECURE": "false",
            "WEB_LOG_FORMAT": "text",
            **env,
        },
        log_path=suite.root / log_name,
    ).start()
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/readyz", 60, web)
        yield f"http://127.0.0.1:{port}"
    finally:
        web.stop()


def _calls_process(root: Path, env: dict[str, str]) -> ManagedProcess:
    return ManagedProcess(
        "calls", [sys.executable, "-m", "telecrm_calls"], env=env, log_path=root / "calls.log"
    ).start()


ROUTES = """
[extensions."101"]
contact = "sip:101@127.0.0.1:{p101}"
name = "Alice"
employee_id = "emp-101"
ring_timeout = 20

[extensions."102"]
contact = "sip:102@127.0.0.1:{p102}"
name = "Bob"
employee_id = "emp-102"
ring_timeout = 20

[extensions."103"]
contact = "sip:103@127.0.0.1:{p103}"
name = "Carol"
employee_id = "emp-103"
ring_timeout = 20

[lines."+15551230000"]
extension = "101"
name = "Main line"

# Every answered call on this line is recorded.
[lines."+15551230007"]
extension = "101"
name = "Recorded line"
record = true

# A ring group of all three phones: 101 answers, 102 is cancelled, 103 is busy.
[groups.everyone]
strategy = "all"
members = ["101", "102", "103"]
timeout = 20

[lines."+15551230009"]
group = "everyone"
name = "Group line"
"""


@pytest.fixture(scope="module")
def suite(
    tmp_path_factory: pytest.TempPathFactory, database_factory: Callable[[str], str]
) -> Iterator[Suite]:
    ok, why = environment_ok()
    if not ok:
        pytest.fail(f"the end-to-end tests need sipp: {why} (make test installs Debian's sip-tester)")
    root = tmp_path_factory.mktemp("suite")
    nats = NatsServer(data_dir=root / "nats", log_path=root / "nats.log").start()
    phones = {
        "101": start_uas("uas_answer.xml", duration_ms=RING_MS, calls=PHONE_CALLS),
        "102": start_uas("uas_ring_forever.xml", calls=PHONE_CALLS),
        "103": start_uas("uas_busy.xml", calls=PHONE_CALLS),
        # The provider behind the trunk: every external number answers there, and takes hold and tones.
        "trunk": start_uas("uas_answer_controlled.xml", duration_ms=RING_MS, calls=PHONE_CALLS),
    }
    routes = root / "routes.toml"
    routes.write_text(
        ROUTES.format(p101=phones["101"].port, p102=phones["102"].port, p103=phones["103"].port)
    )
    database_url = database_factory("e2e-calls")
    calls_http, calls_grpc, gateway_http, sip_port = free_port(), free_port(), free_port(), free_sip_port()
    # One signing key for the installation, as deploy/ sets it: crm signs, calls checks.
    auth_secret = {"TELECRM_AUTH_SECRET": secrets.token_urlsafe(32)}
    calls_env = {
        **auth_secret,
        "CALLS_NATS_URL": nats.url,
        "CALLS_DATABASE_URL": database_url,
        "CALLS_HTTP_PORT": str(calls_http),
        "CALLS_GRPC_PORT": str(calls_grpc),
        "CALLS_LOG_FORMAT": "text",
        # The gateway writes recordings here; RecordingReady names them relative to it.
        "CALLS_RECORDINGS_DIR": str(root / "recordings"),
    }
    gateway_env = {
        **auth_secret,  # agents' REST calls (click-to-call, hangup) carry crm's tokens
        "GATEWAY_NATS_URL": nats.url,
        "GATEWAY_HTTP_PORT": str(gateway_http),
        "GATEWAY_GRPC_PORT": str(free_port()),
        "GATEWAY_SIP_PORT": str(sip_port),
        "GATEWAY_ROUTES_FILE": str(routes),
        "GATEWAY_LOG_FORMAT": "text",
        "GATEWAY_RECORDINGS_DIR": str(root / "recordings"),
        "GATEWAY_TRUNK_URI": f"sip:127.0.0.1:{phones['trunk'].port}",  # click-to-call's external numbers
    }
    crm_http = free_port()
    crm_env = {
        **auth_secret,
        "CRM_NATS_URL": nats.url,
        "CRM_DATABASE_URL": database_factory("e2e-crm"),
        "CRM_HTTP_PORT": str(crm_http),
        "CRM_GRPC_PORT": str(free_port()),
        "CRM_LOG_FORMAT": "text",
        "CRM_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "CRM_ATTACHMENTS_DIR": str(root / "crm-attachments"),
        "CRM_CALLS_GRPC_TARGET": f"127.0.0.1:{calls_grpc}",
    }
    calls_proc = _calls_process(root, calls_env)
    crm_proc = ManagedProcess(
        "crm", [sys.executable, "-m", "telecrm_crm"], env=crm_env, log_path=root / "crm.log"
    ).start()
    gateway_proc = ManagedProcess(
        "sip-gateway",
        [sys.executable, "-m", "telecrm_gateway"],
        env=gateway_env,
        log_path=root / "gateway.log",
    ).start()
    suite = Suite(
        root=root,
        nats=nats,
        database_url=database_url,
        sip_port=sip_port,
        calls_http=calls_http,
        calls_grpc=calls_grpc,
        gateway_http=gateway_http,
        phones=phones,
        calls_proc=calls_proc,
        gateway_proc=gateway_proc,
        crm_proc=crm_proc,
        crm_http=crm_http,
        calls_env=calls_env,
    )
    try:
        wait_http_ok(f"{suite.calls_url}/readyz", 60, calls_proc)
        wait_http_ok(f"http://127.0.0.1:{gateway_http}/readyz", 60, gateway_proc)
        wait_http_ok(f"{suite.crm_url}/readyz", 60, crm_proc)
        yield suite
    finally:
        suite.crm_proc.stop()
        suite.gateway_proc.stop()
        suite.calls_proc.stop()
        for phone in phones.values():
            phone.stop()
        nats.stop()
