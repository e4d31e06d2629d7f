"""The telephony admin page and its JSON API against a real sip-gateway process (and real crm, calls and
NATS): an admin reads and replaces the gateway's routes with their version, a stale edit is refused, the
gateway's 422 names the entry, an agent is refused everything, secrets never reach the page.

The gateway runs from a routes file in a temporary directory; each test starts from the same file.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from telecrm_devstack.processes import ManagedProcess, free_port, free_sip_port, wait_http_ok
from telecrm_devstack.testing import TEST_AUTH_SECRET

from .conftest import ADMIN_PASSWORD, RunningDesktop, Services, running_desktop

PROVIDER_KEY = "provider-key-never-shown-0123456789"
ROUTES = """# The web tests' routes.

[extensions."201"]
contact = "sip:201@127.0.0.1:5071"
name = "Ada Lovelace"
employee_id = "web-emp-ada"

[extensions."202"]
contact = "sip:202@127.0.0.1:5072"
name = "Bob Marley"

[extensions."203"]
contact = "sip:203@127.0.0.1:5073"
name = "Nina <b>Simone</b>"

[groups."sales"]
strategy = "all"
members = ["201", "202"]
name = "Sales"

[lines."+15551230000"]
group = "sales"
name = "Sales line"
"""


@dataclass
class Gateway:
    url: str
    routes_file: Path

    def reset(self) -> None:
        """The routes of ROUTES again (what each test starts from)."""
        self.routes_file.write_text(ROUTES)

    def file_routes(self) -> dict[str, Any]:
        return tomllib.loads(self.routes_file.read_text())


def start_gateway(services: Services, root: Path) -> Iterator[Gateway]:
    """A real sip-gateway on the suite's NATS and auth key, routing from ``root / "routes.toml"``."""
    routes = root / "routes.toml"
    routes.write_text(ROUTES)
    http_port = free_port()
    proc = ManagedProcess(
        "sip-gateway",
        [sys.executable, "-m", "telecrm_gateway"],
        env={
            "TELECRM_AUTH_SECRET": TEST_AUTH_SECRET,
            "GATEWAY_NATS_URL": services.nats.url,
            "GATEWAY_HTTP_PORT": str(http_port),
            "GATEWAY_GRPC_PORT": str(free_port()),
            "GATEWAY_SIP_PORT": str(free_sip_port()),
            "GATEWAY_ROUTES_FILE": str(routes),
            "GATEWAY_INSTANCE_ID": "web-telephony",
            "GATEWAY_LOG_FORMAT": "text",
            "GATEWAY_RECORDINGS_DIR": str(root / "recordings"),
            "GATEWAY_PROVIDER_KEYS": json.dumps({"cloudpbx": PROVIDER_KEY}),
        },
        log_path=root / "gateway.log",
    ).start()
    try:
        wait_http_ok(f"http://127.0.0.1:{http_port}/readyz", 60, proc)
        yield Gateway(url=f"http://127.0.0.1:{http_port}", routes_file=routes)
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def gateway(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from start_gateway(services, tmp_path_factory.mktemp("telephony"))


@pytest.fixture
async def desktop_with_gateway(services: Services, gateway: Gateway) -> Any:
    await asyncio.to_thread(gateway.reset)
    async with running_desktop(services, gateway_url=gateway.url) as running:
        yield running


async def as_admin(desktop: RunningDesktop, client: httpx.AsyncClient) -> dict[str, str]:
    return {"X-CSRF-Token": await desktop.log_in(client, "admin", ADMIN_PASSWORD)}


async def test_an_admin_replaces_the_routes_and_the_gateway_writes_them(
    desktop_with_gateway: RunningDesktop, gateway: Gateway
) -> None:
    desktop = desktop_with_gateway
    async with desktop.client() as client:
        headers = await as_admin(desktop, client)
        page = await client.get("/admin/telephony")
        assert page.status_code == 200
        assert 'id="routes-form"' in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]

        loaded = await client.get("/api/admin/telephony/routes")
        assert loaded.status_code == 200, loaded.text
        body = loaded.json()
        assert (body["path"], body["writable"], body["error"]) == (str(gateway.routes_file), True, None)
        assert loaded.headers["etag"] == f'"{body["version"]}"'
        routes = body["routes"]
        assert routes["groups"]["sales"]["members"] == ["201", "202"]
        assert routes["extensions"]["203"]["name"] == "Nina <b>Simone</b>"

        routes["groups"]["sales"].update(members=["203", "201"], strategy="sequential", member_timeout=8)
        saved = await client.put(
            "/api/admin/telephony/routes",
            json=routes,
            headers={**headers, "If-Match": loaded.headers["etag"]},
        )
        assert saved.status_code == 200, saved.text
        assert saved.headers["etag"] != loaded.headers["etag"]
        written = (await asyncio.to_thread(gateway.file_routes))["groups"]["sales"]
        assert (written["members"], written["strategy"], written["member_timeout"]) == (
            ["203", "201"],
            "sequential",
            8,
        )

        # An edit made on the version before is refused, and the file keeps the saved routes.
        stale = await client.put(
            "/api/admin/telephony/routes",
            json=body["routes"],
            headers={**headers, "If-Match": loaded.headers["etag"]},
        )
        assert stale.status_code == 409
        assert stale.json()["code"] == "stale"
        assert (await asyncio.to_thread(gateway.file_routes))["groups"]["sales"]["members"] == ["203", "201"]

        # Without the page's CSRF token nothing is forwarded.
        forged = await client.put(
            "/api/admin/telephony/routes", json=routes, headers={"If-Match": saved.headers["etag"]}
        )
        assert forged.status_code == 403


async def test_the_gateways_refusal_names_the_entry(
    desktop_with_gateway: RunningDesktop, gateway: Gateway
) -> None:
    desktop = desktop_with_gateway
    async with desktop.client() as client:
        headers = await as_admin(desktop, client)
        loaded = await client.get("/api/admin/telephony/routes")
        routes = loaded.json()["routes"]
        routes["groups"]["sales"]["members"] = ["201", "299"]
        refused = await client.put(
            "/api/admin/telephony/routes",
            json=routes,
            headers={**headers, "If-Match": loaded.headers["etag"]},
        )
        assert refused.status_code == 422
        [error] = refused.json()["detail"]
        assert error["loc"] == ["body", "groups", "sales", "members", 1]
        assert "extension 299 is not defined" in error["msg"]

        # Four members rung at once do not fit one gateway process (4 SIP legs: the caller and 3).
        routes["groups"]["sales"]["members"] = ["201", "202", "203"]
        routes["extensions"]["204"] = {"contact": "sip:204@127.0.0.1:5074"}
        routes["groups"]["sales"]["members"].append("204")
        refused = await client.put(
            "/api/admin/telephony/routes",
            json=routes,
            headers={**headers, "If-Match": loaded.headers["etag"]},
        )
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["body", "groups", "sales"]
        assert (
            await client.put("/api/admin/telephony/routes", json=routes, headers=headers)
        ).status_code == 428
    assert await asyncio.to_thread(gateway.routes_file.read_text) == ROUTES


async def test_the_deployments_settings_are_shown_without_secrets(
    desktop_with_gateway: RunningDesktop,
) -> None:
    desktop = desktop_with_gateway
    async with desktop.client() as client:
        await as_admin(desktop, client)
        response = await client.get("/api/admin/telephony")
        page = await client.get("/admin/telephony")
    assert response.status_code == 200
    body = response.json()
    assert body["provider"]["api_keys"] == ["cloudpbx"]
    assert (body["trunk"]["uri"], body["trunk"]["registration"]) == (None, False)
    assert body["capacity"]["max_ring_all"] == 3
    assert PROVIDER_KEY not in response.text
    assert PROVIDER_KEY not in page.text
    assert "GATEWAY_TRUNK_URI" in page.text  # where these are set


async def test_an_agent_gets_neither_the_page_nor_the_routes(
    desktop_with_gateway: RunningDesktop, gateway: Gateway
) -> None:
    desktop = desktop_with_gateway
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        page = await client.get("/admin/telephony")
        assert page.status_code == 403
        assert 'id="routes-form"' not in page.text
        assert "telephony.js" not in page.text
        assert (await client.get("/api/admin/telephony/routes")).status_code == 403
        assert (await client.get("/api/admin/telephony")).status_code == 403
        # Straight at the gateway with the agent's own token, too.
        session = desktop.parts.store.get(client.cookies.get("telecrm_session"), touch=False)
        assert session is not None
        token = await desktop.parts.store.access_token(session)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as direct:
            refused = await direct.get("/admin/routes", headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 403
        put = await client.put(
            "/api/admin/telephony/routes", json={}, headers={"X-CSRF-Token": csrf, "If-Match": '"x"'}
        )
        assert put.status_code == 403
    assert await asyncio.to_thread(gateway.routes_file.read_text) == ROUTES


async def test_without_a_gateway_the_page_says_where_to_set_one(desktop: RunningDesktop) -> None:
    async with desktop.client() as client:
        await as_admin(desktop, client)
        page = await client.get("/admin/telephony")
        api = await client.get("/api/admin/telephony/routes")
    assert page.status_code == 200
    assert "WEB_GATEWAY_URL" in page.text
    assert 'id="routes-form"' not in page.text
    assert api.status_code == 503
