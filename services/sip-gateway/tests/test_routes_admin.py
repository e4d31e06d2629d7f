"""The telephony admin's API: routes read and replaced at run time, and followed without a restart.

The gateway is the real GatewayService and its REST app as ``main`` builds it, on a routes file in a
temporary directory; the call that follows a new route is a real sipp call to a started gateway.
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.auth import Access, AuthSettings, Principal, Role
from telecrm_devstack.testing import make_principal
from telecrm_gateway.api import create_app
from telecrm_gateway.publisher import GatewayEvent
from telecrm_gateway.routes_admin import to_toml
from telecrm_gateway.routing import Target, TargetKind, load_routes, routes_document
from telecrm_gateway.service import GatewayService
from telecrm_gateway.settings import GatewaySettings
from tests.sipp.runner import arun_uac, environment_ok, free_port, start_uas

SIPP_OK, SIPP_MISSING = environment_ok()
HOST = "127.0.0.1"
LINE = "+15551230000"
ADMIN = make_principal("u-admin", Role.ADMIN)
AGENT = make_principal("u-ada", Role.AGENT, employee_id="e1")
Tokens = Callable[[Principal], dict[str, str]]

HAND_WRITTEN = f"""# Our routes: kept by hand until the admin page.
# (this header survives the API's rewrite)

[extensions."101"]
contact = "sip:101@{HOST}:5070"
name = "Alice"
employee_id = "e1"

[extensions."102"]
contact = "sip:102@{HOST}:5072"
name = "Bob"

[lines."{LINE}"]
extension = "101"
name = "Main"
"""


def sales_line(routes: dict[str, Any], **group: Any) -> dict[str, Any]:
    """``routes`` with a ring group "sales" of 101 and 102 that the line rings."""
    return {
        **routes,
        "groups": {"sales": {"members": ["101", "102"], "strategy": "sequential", **group}},
        "lines": {LINE: {"group": "sales", "name": "Sales"}},
    }


def file_routes(path: Path, region: str = "US") -> Any:
    return load_routes(path, region)


def service(path: Path | None, **settings: Any) -> GatewayService:
    """A gateway (not listening: the API needs none) routing from ``path`` as ``main`` loads it."""
    values: dict[str, Any] = {"sip_port": free_port(), "instance_id": "admin-test", "routes_file": path}
    gateway_settings = GatewaySettings(**{**values, **settings})

    async def publish(event: GatewayEvent) -> None:
        return None

    return GatewayService(gateway_settings, load_routes(path), publish)


@asynccontextmanager
async def api(gateway: GatewayService, auth_settings: AuthSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(gateway, {"sip": gateway.check_sip}, access=Access.from_settings(auth_settings))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        yield client


@pytest.fixture
def routes_file(tmp_path: Path) -> Path:
    path = tmp_path / "routes.toml"
    path.write_text(HAND_WRITTEN)
    return path


@pytest.fixture
def writable_again(routes_file: Path) -> Iterator[None]:
    yield
    routes_file.chmod(0o644)


async def wait_until(condition: Callable[[], bool], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def line_target(gateway: GatewayService) -> Target:
    route = gateway.routes.route(LINE)
    assert route is not None
    return route.target


async def unhealthy(client: httpx.AsyncClient, reason: str, timeout: float = 8.0) -> httpx.Response:
    """``/healthz/routes`` once it answers 503 with ``reason`` (the reloader looks every 2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get("/healthz/routes")
        if response.status_code == 503 and reason in response.json()["error"]:
            return response
        assert time.monotonic() < deadline, response.text
        await asyncio.sleep(0.1)


async def test_admin_reads_and_replaces_the_routes_and_the_next_call_takes_them(
    routes_file: Path, auth_settings: AuthSettings, token_for: Tokens
) -> None:
    gateway = service(routes_file)
    async with api(gateway, auth_settings) as client:
        response = await client.get("/admin/routes", headers=token_for(ADMIN))
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["path"], body["writable"], body["error"]) == (str(routes_file), True, None)
        assert response.headers["etag"] == f'"{body["version"]}"'
        assert body["active_version"] == body["version"]
        assert body["max_ring_all"] == 3
        routes = body["routes"]
        assert routes["extensions"]["101"] == {
            "contact": f"sip:101@{HOST}:5070",
            "name": "Alice",
            "employee_id": "e1",
            "ring_timeout": 30.0,
            "overflow": None,
            "record": False,
        }
        assert routes["lines"][LINE]["extension"] == "101"
        # A call in progress keeps the route it was given.
        before = gateway.routes.route(LINE)

        edited = sales_line(routes, member_timeout=5, overflow="extension:102", name="Sales team")
        saved = await client.put(
            "/admin/routes", json=edited, headers={**token_for(ADMIN), "If-Match": response.headers["etag"]}
        )
        assert saved.status_code == 200, saved.text
        assert saved.json()["version"] != body["version"]
        assert saved.headers["etag"] == f'"{saved.json()["version"]}"'
        assert saved.json()["routes"]["groups"]["sales"]["members"] == ["101", "102"]

        # This process routes the next call to the group at once, without a restart...
        after = gateway.routes.route(LINE)
        assert after is not None
        assert after.target == Target(TargetKind.GROUP, "sales")
        assert [m.number for m in after.stages[0].members] == ["101", "102"]
        assert after.stages[0].member_timeout == 5
        assert [str(stage.target) for stage in after.stages] == ["group:sales", "extension:102"]
        assert before is not None
        assert before.target == Target(TargetKind.EXTENSION, "101")
        # ...and the file holds them, with the hand-written header, for the next start.
        text = await asyncio.to_thread(routes_file.read_text)
        assert text.startswith("# Our routes: kept by hand until the admin page.\n# (this header")
        assert routes_document(tomllib.loads(text)) == saved.json()["routes"]
        assert file_routes(routes_file).groups["sales"].display_name == "Sales team"
        again = await client.get("/admin/routes", headers=token_for(ADMIN))
        assert again.json()["routes"] == saved.json()["routes"]
        assert again.headers["etag"] == saved.headers["etag"]

        # The version the edit was made on is stale now: 409, nothing written.
        stale = await client.put(
            "/admin/routes", json=routes, headers={**token_for(ADMIN), "If-Match": response.headers["etag"]}
        )
        assert stale.status_code == 409
        assert stale.json()["code"] == "stale"
        assert stale.json()["version"] == saved.json()["version"]
        assert await asyncio.to_thread(routes_file.read_text) == text
        missing = await client.put("/admin/routes", json=routes, headers=token_for(ADMIN))
        assert missing.status_code == 428
        assert line_target(gateway) == Target(TargetKind.GROUP, "sales")


async def test_bad_routes_are_refused_naming_the_entry_and_nothing_changes(
    routes_file: Path, auth_settings: AuthSettings, token_for: Tokens
) -> None:
    gateway = service(routes_file)
    before = await asyncio.to_thread(routes_file.read_text)
    async with api(gateway, auth_settings) as client:
        current = await client.get("/admin/routes", headers=token_for(ADMIN))
        headers = {**token_for(ADMIN), "If-Match": current.headers["etag"]}
        routes = current.json()["routes"]

        async def refused(edited: dict[str, Any]) -> list[dict[str, Any]]:
            response = await client.put("/admin/routes", json=edited, headers=headers)
            assert response.status_code == 422, response.text
            return list(response.json()["detail"])

        [error] = await refused({**routes, "groups": {"sales": {"members": ["101", "109"]}}})
        assert error["loc"] == ["body", "groups", "sales", "members", 1]
        assert "extension 109 is not defined" in error["msg"]

        [error] = await refused(
            {**routes, "groups": {"sales": {"members": ["101"], "overflow": "voicemail"}}}
        )
        assert error["loc"] == ["body", "groups", "sales", "overflow"]
        assert "not a target" in error["msg"]

        looping = {
            **routes,
            "extensions": {
                **routes["extensions"],
                "101": {**routes["extensions"]["101"], "overflow": "extension:102"},
                "102": {**routes["extensions"]["102"], "overflow": "extension:101"},
            },
        }
        errors = await refused(looping)
        assert errors[0]["loc"][:3] == ["body", "lines", LINE]
        assert "overflow loops" in errors[0]["msg"]

        [error] = await refused(
            {**routes, "extensions": {**routes["extensions"], "103": {"contact": "tel:103"}}}
        )
        assert error["loc"] == ["body", "extensions", "103", "contact"]

        # Capacity: one process holds 4 SIP legs, so a ring-all group rings at most 3 members.
        four = {str(n): {"contact": f"sip:{n}@{HOST}:5070"} for n in range(201, 205)}
        [error] = await refused(
            {
                **routes,
                "extensions": {**routes["extensions"], **four},
                "groups": {"big": {"members": [*four]}},
            }
        )
        assert error["loc"] == ["body", "groups", "big"]
        assert "4 members at once" in error["msg"]
        assert "sequential" in error["msg"]

        [error] = await refused({**routes, "groups": {"a:b": {"members": ["101"]}}})
        assert error["loc"] == ["body", "groups", "a:b"]
        [error] = await refused({**routes, "lines": {"+1 555": {"extension": "101"}}})
        assert error["loc"] == ["body", "lines", "+1 555"]
        [error] = await refused({**routes, "registrar": "sip:pbx\nInjected: yes"})
        assert error["loc"] == ["body", "registrar"]
        [error] = await refused({**routes, "groups": [1, 2]})
        assert error["loc"] == ["body", "groups"]

    assert await asyncio.to_thread(routes_file.read_text) == before
    assert line_target(gateway) == Target(TargetKind.EXTENSION, "101")


async def test_capacity_follows_max_calls(
    routes_file: Path, auth_settings: AuthSettings, token_for: Tokens
) -> None:
    # With 2 calls a process, a call has 2 legs: the caller and one agent.
    gateway = service(routes_file, max_calls=2)
    async with api(gateway, auth_settings) as client:
        current = await client.get("/admin/routes", headers=token_for(ADMIN))
        assert current.json()["max_ring_all"] == 1
        headers = {**token_for(ADMIN), "If-Match": current.headers["etag"]}
        ring_all = sales_line(current.json()["routes"], strategy="all")
        refused = await client.put("/admin/routes", json=ring_all, headers=headers)
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["body", "groups", "sales"]
        sequential = sales_line(current.json()["routes"])
        assert (await client.put("/admin/routes", json=sequential, headers=headers)).status_code == 200


async def test_only_admins_see_and_change_the_telephony_set_up(
    routes_file: Path, auth_settings: AuthSettings, token_for: Tokens
) -> None:
    gateway = service(routes_file)
    async with api(gateway, auth_settings) as client:
        current = await client.get("/admin/routes", headers=token_for(ADMIN))
        edited = sales_line(current.json()["routes"])
        headers = {"If-Match": current.headers["etag"]}
        for path in ("/admin/routes", "/admin/telephony"):
            assert (await client.get(path)).status_code == 401
            assert (await client.get(path, headers=token_for(AGENT))).status_code == 403
        put = await client.put("/admin/routes", json=edited, headers={**headers, **token_for(AGENT)})
        assert put.status_code == 403
        assert (await client.put("/admin/routes", json=edited, headers=headers)).status_code == 401
    assert await asyncio.to_thread(routes_file.read_text) == HAND_WRITTEN


async def test_without_a_writable_routes_file_the_routes_are_read_only(
    routes_file: Path, writable_again: None, auth_settings: AuthSettings, token_for: Tokens
) -> None:
    for gateway in (service(None), service(routes_file)):
        if gateway.settings.routes_file is not None:
            await asyncio.to_thread(routes_file.chmod, 0o444)  # as a read-only mount would be
        async with api(gateway, auth_settings) as client:
            current = await client.get("/admin/routes", headers=token_for(ADMIN))
            assert current.status_code == 200
            assert current.json()["writable"] is False
            edited = sales_line(current.json()["routes"])
            response = await client.put(
                "/admin/routes",
                json=edited,
                headers={**token_for(ADMIN), "If-Match": current.headers["etag"]},
            )
            assert response.status_code == 409, response.text
            assert response.json()["code"] == "read_only"
        assert line_target(gateway) == Target(TargetKind.EXTENSION, "101")
    assert await asyncio.to_thread(routes_file.read_text) == HAND_WRITTEN


async def test_a_hand_edit_is_followed_and_a_broken_one_keeps_the_old_routes(
    routes_file: Path, auth_settings: AuthSettings, token_for: Tokens
) -> None:
    gateway = service(routes_file)
    async with api(gateway, auth_settings) as client:
        assert (await client.get("/healthz/routes")).status_code == 200
        # A valid edit by hand is picked up within the reload interval, with no request to this process.
        await asyncio.to_thread(
            routes_file.write_text, HAND_WRITTEN.replace('extension = "101"', 'extension = "102"')
        )
        await wait_until(lambda: line_target(gateway) == Target(TargetKind.EXTENSION, "102"))

        # A broken one is not: the previous routes stay, and health says why.
        await asyncio.to_thread(
            routes_file.write_text, HAND_WRITTEN.replace('extension = "101"', 'extension = "109"')
        )
        health = await unhealthy(client, "extension 109 is not defined")
        assert health.json()["path"] == str(routes_file)
        assert line_target(gateway) == Target(TargetKind.EXTENSION, "102")
        shown = await client.get("/admin/routes", headers=token_for(ADMIN))
        assert "extension 109 is not defined" in shown.json()["error"]

        await asyncio.to_thread(routes_file.write_text, "[extensions.101\ncontact = ")  # not even TOML
        await unhealthy(client, "not a TOML file")
        assert line_target(gateway) == Target(TargetKind.EXTENSION, "102")
        # The admin page shows the routes in use then, and saving them over the broken file mends it.
        shown = await client.get("/admin/routes", headers=token_for(ADMIN))
        assert "not a TOML file" in shown.json()["error"]
        assert shown.json()["routes"]["lines"][LINE]["extension"] == "102"
        saved = await client.put(
            "/admin/routes",
            json=shown.json()["routes"],
            headers={**token_for(ADMIN), "If-Match": shown.headers["etag"]},
        )
        assert saved.status_code == 200, saved.text
        assert saved.json()["error"] is None
        assert (await client.get("/healthz/routes")).status_code == 200
        assert file_routes(routes_file).lines[LINE].target == Target(TargetKind.EXTENSION, "102")


async def test_every_process_sharing_the_file_follows_a_change(
    routes_file: Path, auth_settings: AuthSettings, token_for: Tokens
) -> None:
    # Two gateway processes of a pool, one routes file: a change through one reaches the other.
    first, second = service(routes_file), service(routes_file)
    async with api(first, auth_settings) as one, api(second, auth_settings) as _two:
        current = await one.get("/admin/routes", headers=token_for(ADMIN))
        saved = await one.put(
            "/admin/routes",
            json=sales_line(current.json()["routes"]),
            headers={**token_for(ADMIN), "If-Match": current.headers["etag"]},
        )
        assert saved.status_code == 200
        await wait_until(lambda: line_target(second) == Target(TargetKind.GROUP, "sales"))


async def test_telephony_settings_are_shown_without_secrets(
    routes_file: Path, auth_settings: AuthSettings, token_for: Tokens
) -> None:
    gateway = service(
        routes_file,
        trunk_uri="sip:pbx.example.com:5060",
        trunk_username="acme",
        trunk_password="trunk-password-not-to-show",
        provider_keys={"cloudpbx": "provider-key-not-to-show-0123"},
        provider_pbxs={
            "cloudpbx": {
                "extensions": ["300-399"],
                "make_call_url": "https://pbx.example.com/call",
                "make_call_secret": "make-call-secret-not-to-show",
            }
        },
    )
    async with api(gateway, auth_settings) as client:
        response = await client.get("/admin/telephony", headers=token_for(ADMIN))
    assert response.status_code == 200
    assert "not-to-show" not in response.text
    body = response.json()
    trunk = body["trunk"]
    assert (trunk["uri"], trunk["username"], trunk["password_set"]) == (
        "sip:pbx.example.com:5060",
        "acme",
        True,
    )
    assert (trunk["registration"], trunk["registered"]) == (True, False)
    assert body["provider"]["api_keys"] == ["cloudpbx"]
    assert body["provider"]["pbxs"] == [{"name": "cloudpbx", "extensions": ["300-399"], "secret_set": True}]
    assert body["capacity"] == {"max_calls": 1, "legs_per_process": 4, "legs_per_call": 4, "max_ring_all": 3}
    assert body["routes"]["path"] == str(routes_file)


def test_the_toml_written_reads_back_as_the_routes_given() -> None:
    document = routes_document(
        {
            "registrar": "sip:10.0.0.2:5060;transport=tcp",
            "extensions": {
                "101": {"name": 'Ann "the boss" \\ Ли', "ring_timeout": 12.5, "record": True},
                "102": {"contact": "sip:102@127.0.0.1:5072;transport=tcp", "overflow": "queue:support"},
            },
            "groups": {"sales": {"members": ["102", "101"], "timeout": 40, "overflow": "missed"}},
            "queues": {"support": {"members": ["101"], "name": "Support"}},
            "lines": {LINE: {"group": "sales", "name": "Sales line", "overflow": "missed"}},
        }
    )
    text = to_toml(document)
    assert routes_document(tomllib.loads(text)) == document
    assert '[lines."+15551230000"]' in text


@pytest.mark.sip
@pytest.mark.skipif(not SIPP_OK, reason=SIPP_MISSING)
async def test_a_real_call_follows_the_route_saved_a_moment_before(
    tmp_path: Path, gateway_factory: Any, auth_settings: AuthSettings, token_for: Tokens
) -> None:
    with start_uas("uas_busy.xml") as alice, start_uas("uas_answer.xml", duration_ms=300) as bob:
        extensions = {
            "101": {"contact": f"sip:101@{HOST}:{alice.port}", "name": "Alice"},
            "102": {"contact": f"sip:102@{HOST}:{bob.port}", "name": "Bob"},
        }
        lines = {LINE: {"extension": "101"}}
        path = tmp_path / "routes.toml"
        path.write_text(to_toml(routes_document({"extensions": extensions, "lines": lines})))
        gw = await gateway_factory(extensions=extensions, lines=lines, routes_file=path)
        async with api(gw.service, auth_settings) as client:
            current = await client.get("/admin/routes", headers=token_for(ADMIN))
            routes = current.json()["routes"]
            routes["lines"][LINE] = {"extension": "102", "name": "Moved to Bob"}
            saved = await client.put(
                "/admin/routes",
                json=routes,
                headers={**token_for(ADMIN), "If-Match": current.headers["etag"]},
            )
            assert saved.status_code == 200, saved.text
        caller = await arun_uac("uac_answered.xml", HOST, gw.port, service=LINE, duration_ms=500)
        assert caller.ok, caller.explain()
        phone = await bob.wait_async(10)
        assert phone.ok, phone.explain()
        [ended] = await gw.wait_ended()
    assert ended.ended.disposition == ev.DISPOSITION_ANSWERED
    assert ended.ended.answered_extension == "102"
