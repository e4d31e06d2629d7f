"""/healthz and /readyz check NATS and the database for real and answer 503 naming what failed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from telecrm_common.bus import Bus
from telecrm_common.db import Database
from telecrm_common.health import health_router, run_checks
from telecrm_devstack.processes import NatsServer, free_port

PATHS = ["/healthz", "/readyz"]


@pytest.fixture
async def database(database_factory: Any) -> AsyncIterator[Database]:
    db = Database(await asyncio.to_thread(database_factory, "health"))
    yield db
    await db.dispose()


async def get(app: FastAPI, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        return await client.get(path)


def app_with(checks: dict[str, Any]) -> FastAPI:
    app = FastAPI()
    app.include_router(health_router(checks))
    return app


@pytest.mark.parametrize("path", PATHS)
async def test_ok_when_every_check_passes(path: str, bus: Bus, database: Database) -> None:
    response = await get(app_with({"nats": bus.check, "database": database.check}), path)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"nats": "ok", "database": "ok"}}


async def test_503_naming_nats_when_the_server_is_down(
    own_nats: NatsServer, database: Database, eventually: Any
) -> None:
    bus = await Bus.connect(own_nats.url, name="health", timeout=5)
    try:
        app = app_with({"nats": bus.check, "database": database.check})
        assert (await get(app, "/healthz")).status_code == 200

        await asyncio.to_thread(own_nats.stop)
        await eventually(lambda: not bus.is_connected, what="the client to notice")
        for path in PATHS:
            response = await get(app, path)
            assert response.status_code == 503
            body = response.json()
            assert body["status"] == "unavailable"
            assert body["checks"]["database"] == "ok"
            assert "NATS" in body["checks"]["nats"]
    finally:
        await bus.close()


@pytest.mark.parametrize("path", PATHS)
async def test_503_naming_the_database_when_it_is_unreachable(path: str, bus: Bus) -> None:
    database = Database(f"postgresql://postgres:pw@127.0.0.1:{free_port()}/calls")
    try:
        response = await get(app_with({"nats": bus.check, "database": database.check}), path)
    finally:
        await database.dispose()
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["nats"] == "ok"
    assert "is not reachable" in body["checks"]["database"]
    assert ":pw@" not in body["checks"]["database"]


async def test_a_check_that_hangs_is_reported_after_the_timeout() -> None:
    async def hangs() -> None:
        await asyncio.sleep(10)

    async def ok() -> None:
        return None

    results = await asyncio.wait_for(run_checks({"slow": hangs, "fine": ok}, timeout=0.2), 2)
    assert results["fine"] == "ok"
    assert results["slow"].startswith("no answer within")
