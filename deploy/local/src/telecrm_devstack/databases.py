"""Throw-away databases for the tests: a fresh PostgreSQL database per service when
TEST_DATABASE_URL is set (CI), a SQLite file otherwise."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy import make_url

TEST_DATABASE_URL_ENV = "TEST_DATABASE_URL"


def test_postgres_url() -> str | None:
    """TEST_DATABASE_URL when it names a PostgreSQL server, else None."""
    url = os.environ.get(TEST_DATABASE_URL_ENV, "").strip()
    return url or None


def _plain(url: str) -> str:
    """asyncpg wants postgresql://, without SQLAlchemy's +driver."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(_plain(url), timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(prefix: str, sqlite_dir: Path) -> str:
    """A new empty database named after ``prefix``; returns its URL."""
    admin = test_postgres_url()
    if admin is None:
        sqlite_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{sqlite_dir / f'{prefix}-{uuid.uuid4().hex[:8]}.sqlite3'}"
    name = f"tcrm_{prefix.replace('-', '_')}_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    return make_url(admin).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    """Drop a database made by :func:`create_database` (SQLite files go with their temp dir)."""
    parsed = make_url(url)
    admin = test_postgres_url()
    if parsed.get_backend_name() != "postgresql" or admin is None:
        return
    asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))


def service_database_url(url: str, service: str) -> str:
    """The database of one service on the server of ``url``: services never share tables (each has
    its own ``outbox``, and calls keeps read models named like crm's tables), so ``make run`` with a
    PostgreSQL DATABASE_URL gives each service ``<database>_<service>``, as deploy/ does."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url
    base = parsed.database or "telecrm"
    return parsed.set(database=f"{base}_{service.replace('-', '_')}").render_as_string(hide_password=False)


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database of ``url`` unless it exists (SQLite files create themselves)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql" or not parsed.database:
        return

    async def create() -> None:
        admin = parsed.set(database="postgres").render_as_string(hide_password=False)
        conn = await asyncpg.connect(_plain(admin), timeout=10)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", parsed.database):
                await conn.execute(f'CREATE DATABASE "{parsed.database}"')
        finally:
            await conn.close()

    asyncio.run(create())
