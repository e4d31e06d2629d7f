"""The migrations build exactly the models' schema, and go down and up again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import create_async_engine

from telecrm_calls.main import MIGRATIONS
from telecrm_calls.models import CallParty, CallsBase
from telecrm_calls.service import CallLogService
from telecrm_calls.testing import T0, CallScript
from telecrm_common.db import Database, alembic_config, async_url, upgrade_async


def _version_table(url: str) -> str:
    return alembic_config(url, MIGRATIONS).get_main_option("version_table") or "alembic_version"


async def _inspect(url: str, fn: Callable[[Any], Any]) -> Any:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def _diff(url: str) -> Callable[[Any], list[Any]]:
    def run(sync_conn: Any) -> list[Any]:
        context = MigrationContext.configure(
            sync_conn, opts={"compare_type": True, "version_table": _version_table(url)}
        )
        return list(compare_metadata(context, CallsBase.metadata))

    return run


@pytest.fixture
def url(database_factory: Callable[[str], str]) -> str:
    """A fresh empty database (made outside the event loop: the factory runs its own)."""
    return database_factory("calls_migrations")


async def test_migrations_match_the_models(url: str) -> None:
    await upgrade_async(url, MIGRATIONS)
    assert await _inspect(url, _diff(url)) == []

    await _downgrade(url)
    tables = await _inspect(url, lambda conn: set(inspect(conn).get_table_names()))
    assert tables.isdisjoint(CallsBase.metadata.tables)

    await upgrade_async(url, MIGRATIONS)
    assert await _inspect(url, _diff(url)) == []


async def _downgrade(url: str, revision: str = "base") -> None:
    await asyncio.to_thread(command.downgrade, alembic_config(url, MIGRATIONS), revision)


async def _parties(db: Database) -> dict[str, tuple[object, ...]]:
    async with db.session() as session:
        rows = await session.execute(
            select(
                CallParty.call_id,
                CallParty.direction,
                CallParty.disposition,
                CallParty.missed,
                CallParty.talk_ms,
            )
        )
        return {row[0]: tuple(row[1:]) for row in rows}


async def test_calls_logged_before_0004_get_their_columns_on_their_parties(url: str) -> None:
    """0004 copies each call's direction, disposition, missed flag and talk time onto its parties:
    the employee views and reports of calls logged before it read them there."""
    await upgrade_async(url, MIGRATIONS)
    db = Database(url)
    try:
        service = CallLogService(db, cursor_secret="migrations")
        events = CallScript("m-1", start=T0, extension="101", employee_id="emp-1").answered_call(talk=42)
        events += CallScript("m-2", start=T0, extension="102", employee_id="emp-2").missed_call()
        await service.ingest(events)
        expected = {"m-1": ("inbound", "answered", False, 42_000), "m-2": ("inbound", "missed", True, 0)}
        assert await _parties(db) == expected
        await db.dispose()  # SQLite: the migration rebuilds the table

        await _downgrade(url, "0003")
        await upgrade_async(url, MIGRATIONS)
        assert await _parties(db) == expected
        assert await _inspect(url, _diff(url)) == []
    finally:
        await db.dispose()
