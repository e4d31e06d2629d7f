"""The migrations build exactly the models' schema, and go down and up again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from telecrm_calls.main import MIGRATIONS
from telecrm_calls.models import CallsBase
from telecrm_common.db import alembic_config, async_url, upgrade_async


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


async def _downgrade(url: str) -> None:
    await asyncio.to_thread(command.downgrade, alembic_config(url, MIGRATIONS), "base")
