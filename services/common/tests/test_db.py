"""The database helpers against real databases: SQLite files, and PostgreSQL when TEST_DATABASE_URL is
set (a fresh database per test from the ``database_factory`` fixture)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError

from telecrm_common.db import (
    Database,
    DatabaseUnavailable,
    UTCDateTime,
    async_url,
    insert_unnest,
    is_sqlite,
    one_of,
    redacted,
    upgrade_async,
)
from telecrm_common.errors import NotReadyError
from telecrm_devstack.processes import free_port


@pytest.fixture
def db_url(database_factory: object) -> str:
    """A new empty database (sync fixture: the factory runs its own event loop for PostgreSQL)."""
    return database_factory("common")  # type: ignore[operator]


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    yield database
    await database.dispose()


def unreachable_url() -> str:
    return f"postgresql://postgres@127.0.0.1:{free_port()}/x"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///var/calls.sqlite3", "sqlite+aiosqlite:///var/calls.sqlite3"),
        ("sqlite:////abs/path/calls.sqlite3", "sqlite+aiosqlite:////abs/path/calls.sqlite3"),
        ("sqlite://", "sqlite+aiosqlite://"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://user:pw@db:5432/calls", "postgresql+asyncpg://user:pw@db:5432/calls"),
        ("postgres://user@db/calls", "postgresql+asyncpg://user@db/calls"),
        ("postgresql+asyncpg://db/calls", "postgresql+asyncpg://db/calls"),
        ("postgresql+psycopg2://db/calls", "postgresql+asyncpg://db/calls"),
        ("sqlite+pysqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_async_url_fills_in_the_async_driver(given: str, expected: str) -> None:
    assert async_url(given).render_as_string(hide_password=False) == expected


def test_is_sqlite_and_redacted() -> None:
    assert is_sqlite("sqlite:///x.db")
    assert is_sqlite("sqlite+aiosqlite:///x.db")
    assert not is_sqlite("postgresql://db/x")
    assert redacted("postgresql://user:secret@db/x") == "postgresql://user:***@db/x"


async def test_check_passes_on_a_reachable_database(db: Database) -> None:
    await db.check()
    assert db.dialect == ("sqlite" if is_sqlite(db.url) else "postgresql")


async def test_check_raises_not_ready_when_nothing_listens() -> None:
    url = unreachable_url()
    database = Database(url)
    try:
        with pytest.raises(NotReadyError) as raised:
            await database.check()
    finally:
        await database.dispose()
    message = str(raised.value)
    assert message.startswith(f"database {async_url(url).render_as_string()} is not reachable: ")
    assert "\n" not in message


async def test_check_does_not_leak_the_password() -> None:
    database = Database(f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/x")
    try:
        with pytest.raises(NotReadyError) as raised:
            await database.check()
    finally:
        await database.dispose()
    assert "s3cret" not in str(raised.value)
    assert "***" in str(raised.value)


async def test_wait_until_reachable_gives_up_after_its_timeout_with_one_line() -> None:
    database = Database(unreachable_url())
    started = time.monotonic()
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            await database.wait_until_reachable(timeout=1.2)
    finally:
        await database.dispose()
    elapsed = time.monotonic() - started

    assert 1.1 < elapsed < 4, "it keeps trying until the timeout, then stops"
    message = str(raised.value)
    assert "is not reachable" in message
    assert "gave up after" in message
    assert "\n" not in message
    assert "Traceback" not in message
    assert raised.value.__suppress_context__, "the chained driver traceback is not printed"


async def test_wait_until_reachable_returns_once_reachable(db: Database) -> None:
    started = time.monotonic()
    await db.wait_until_reachable(timeout=5)
    assert time.monotonic() - started < 1


async def test_sqlite_file_parent_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "var" / "deep" / "calls.sqlite3"
    database = Database(f"sqlite:///{path}")
    try:
        assert path.parent.is_dir()
        await database.check()
        assert path.exists()
        async with database.engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
    finally:
        await database.dispose()


async def test_session_commits_at_the_end_and_rolls_back_on_error(db: Database) -> None:
    async with db.session() as session:
        await session.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body VARCHAR(20))"))
    async with db.session() as session:
        await session.execute(text("INSERT INTO notes (id, body) VALUES (1, 'kept')"))

    async def fails_midway() -> None:
        async with db.session() as session:
            await session.execute(text("INSERT INTO notes (id, body) VALUES (2, 'lost')"))
            raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError):
        await fails_midway()
    async with db.session() as session:
        rows = (await session.execute(text("SELECT id, body FROM notes ORDER BY id"))).all()
    assert [tuple(row) for row in rows] == [(1, "kept")]


ENV_PY = """
from telecrm_common.db import run_migrations_env

run_migrations_env(None)
"""

REVISION_PY = """
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("body", sa.String(100), nullable=False),
    )


def downgrade():
    op.drop_table("notes")
"""


async def test_migrations_run_with_the_async_engine_and_are_idempotent(
    db: Database, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service's migrations package ("telecrm_<service>:migrations") with the shared env.py body."""
    package = f"telecrm_mig{uuid.uuid4().hex[:8]}"
    migrations = tmp_path / package / "migrations"
    (migrations / "versions").mkdir(parents=True)
    (tmp_path / package / "__init__.py").touch()
    (migrations / "env.py").write_text(ENV_PY)
    (migrations / "versions" / "0001_notes.py").write_text(REVISION_PY)
    monkeypatch.syspath_prepend(str(tmp_path))

    await upgrade_async(db_url, f"{package}:migrations")
    await upgrade_async(db_url, f"{package}:migrations")  # already at head: nothing to do

    version_table = f"alembic_version_{package.removeprefix('telecrm_')}"
    async with db.session() as session:
        await session.execute(text("INSERT INTO notes (id, body) VALUES (1, 'x')"))
        version = (await session.execute(text(f"SELECT version_num FROM {version_table}"))).scalar_one()
    assert version == "0001"


# --- pooled connections and batched statements ----------------------------------------------------


async def _backend_pid(database: Database) -> int:
    async with database.session() as session:
        return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _terminate(db_url: str, pid: int) -> None:
    """Close a server connection from another one, and wait until it is gone."""
    other = Database(db_url)
    try:
        async with other.session() as session:
            await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        for _ in range(100):
            async with other.session() as session:
                gone = not (
                    await session.execute(
                        text("SELECT 1 FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
                    )
                ).first()
            if gone:
                return
            await asyncio.sleep(0.02)
    finally:
        await other.dispose()


async def test_an_idle_pooled_connection_the_server_closed_is_replaced(db_url: str) -> None:
    if is_sqlite(db_url):
        pytest.skip("PostgreSQL closes a client's connection; SQLite has none to close")
    database = Database(db_url, ping_after_idle=0.0)  # every reused connection is pinged
    try:
        first = await _backend_pid(database)
        await _terminate(db_url, first)
        # The ping on checkout finds it dead: the session gets a new connection and nothing fails.
        assert await _backend_pid(database) != first
    finally:
        await database.dispose()


async def test_a_busy_pooled_connection_is_not_pinged_and_the_pool_recovers(db_url: str) -> None:
    if is_sqlite(db_url):
        pytest.skip("PostgreSQL closes a client's connection; SQLite has none to close")
    database = Database(db_url, ping_after_idle=3600.0)
    try:
        first = await _backend_pid(database)
        await _terminate(db_url, first)
        # Used a moment ago, so handed out without a ping: its next statement fails, with an error
        # that says so, and the pool is renewed for the next session (the bus retries a batch).
        with pytest.raises(DBAPIError) as failed:
            await _backend_pid(database)
        assert failed.value.connection_invalidated
        assert await _backend_pid(database) != first
    finally:
        await database.dispose()


async def test_one_of_filters_like_in_on_every_backend(db: Database) -> None:
    notes = Table("notes_one_of", MetaData(), Column("id", Integer, primary_key=True), Column("tag", String))
    async with db.session() as session:
        await session.run_sync(lambda s: notes.create(s.connection()))
        await session.execute(notes.insert(), [{"id": i, "tag": f"t{i % 3}"} for i in range(9)])
    async with db.session() as session:
        picked = await session.scalars(
            select(notes.c.id).where(one_of(notes.c.tag, {"t1", "t2"}, db.dialect)).order_by(notes.c.id)
        )
        assert list(picked) == [1, 2, 4, 5, 7, 8]
        none = await session.scalars(select(notes.c.id).where(one_of(notes.c.tag, [], db.dialect)))
        assert list(none) == []


async def test_insert_unnest_writes_every_row_in_order_with_its_types(db_url: str) -> None:
    if is_sqlite(db_url):
        pytest.skip("insert_unnest is the PostgreSQL path (arrays); SQLite keeps its executemany")
    database = Database(db_url)
    rows = Table(
        "unnest_rows",
        MetaData(),
        Column("seq", BigInteger, primary_key=True, autoincrement=True),
        Column("name", String(16)),
        Column("size", BigInteger),
        Column("payload", LargeBinary),
        Column("extra", JSON),
        Column("flag", Boolean),
        Column("at", UTCDateTime),
        Column("written_at", UTCDateTime),
    )
    moment = datetime(2025, 3, 14, 9, 30, 1, 123456, tzinfo=UTC)
    given = [
        {
            "name": f"row-{i}",
            "size": i * 10**10,
            "payload": bytes([i, 0, 255]),
            "extra": {"i": [i, "x"]},
            "flag": i % 2 == 0,
            "at": moment + timedelta(seconds=i) if i != 3 else None,
        }
        for i in range(250)
    ]
    try:
        async with database.session() as session:
            await session.run_sync(lambda s: rows.create(s.connection()))
        async with database.session() as session:
            result = await insert_unnest(
                session,
                rows,
                given,
                computed={"written_at": ":now"},
                params={"now": moment},
                suffix="RETURNING seq",
            )
            assert len(result.all()) == 250
        async with database.session() as session:
            stored = (await session.execute(select(rows).order_by(rows.c.seq))).all()
        assert [
            {key: value for key, value in row._mapping.items() if key not in ("seq", "written_at")}
            for row in stored
        ] == given
        assert {row.written_at for row in stored} == {moment}
    finally:
        await database.dispose()
