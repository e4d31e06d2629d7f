"""SQLAlchemy 2.x async engine per service, SQLite by default and PostgreSQL by URL, with Alembic.

URLs may be given the way people write them (``sqlite:///var/calls.sqlite3``,
``postgresql://user@host/db``); the async driver (aiosqlite, asyncpg) is filled in here.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    JSON,
    ColumnElement,
    DateTime,
    Table,
    TextClause,
    any_,
    bindparam,
    event,
    make_url,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL, Dialect, Result
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from telecrm_common.errors import NotReadyError, TelecrmError

log = logging.getLogger(__name__)

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


class DatabaseUnavailable(TelecrmError):
    """The database could not be reached within the start-up timeout."""


class Base(DeclarativeBase):
    """Declarative base; each service's models derive from their own subclass of it."""


NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores ``timestamptz``; SQLite stores naive UTC text in one fixed format (so text order is
    time order) and gets its UTC tzinfo back on reading. Naive datetimes are refused on the way in.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: give it a timezone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def async_url(url: str | URL) -> URL:
    """The URL with its async driver: sqlite -> sqlite+aiosqlite, postgresql -> postgresql+asyncpg."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    driver = parsed.drivername.partition("+")[2]
    if backend in _ASYNC_DRIVERS and driver not in ("aiosqlite", "asyncpg"):
        parsed = parsed.set(drivername=_ASYNC_DRIVERS[backend])  # postgresql+psycopg2 -> +asyncpg
    return parsed


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def redacted(url: str | URL) -> str:
    """The URL with its password hidden, for logs and error messages."""
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


# A pooled connection unused for longer than this is pinged before it is handed out again.
PING_AFTER_IDLE_SECONDS = 5.0


class Database:
    """An async engine and its session factory.

    Pooled connections that sat idle for ``ping_after_idle`` seconds are pinged when checked out, and
    replaced when the ping fails (the database restarted, or closed them). Not every checkout: the
    asyncpg ping is three round trips (BEGIN, a query, ROLLBACK), which on a busy connection (the
    call log's ingest takes one per batch) cost more than the batch's own statements. A connection
    that died while in use again and again fails its next statement; the pool is then renewed.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        pool_size: int = 10,
        echo: bool = False,
        ping_after_idle: float = PING_AFTER_IDLE_SECONDS,
    ) -> None:
        self.url = async_url(url)
        kwargs: dict[str, Any] = {"echo": echo}
        if is_sqlite(self.url):
            database = self.url.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size)
            # asyncpg prepares every statement, and after five runs of one PostgreSQL may switch it
            # to a generic plan, chosen without the parameters' values: for ``col IN ($1..$n)`` on a
            # table whose statistics lag (a fresh or fast-growing one) that plan is a sequential
            # scan, and each run then costs the whole table (the call log's ingest slowed 5x). The
            # queries here are short and their planning cheap, so every run gets its own plan.
            kwargs["connect_args"] = {"server_settings": {"plan_cache_mode": "force_custom_plan"}}
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if is_sqlite(self.url):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        _ping_when_idle(self.engine, ping_after_idle)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed when the block ends, rolled back when it raises."""
        async with self.sessions() as session, session.begin():
            yield session

    async def check(self) -> None:
        """``SELECT 1`` with a short timeout; raises NotReadyError when the database does not answer."""
        try:
            async with asyncio.timeout(2):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except (OSError, DBAPIError, TimeoutError) as exc:
            raise NotReadyError(f"database {redacted(self.url)} is not reachable: {_short(exc)}") from exc

    async def wait_until_reachable(self, timeout: float) -> None:
        """Retry :meth:`check` with backoff, logging each failure in one line, for up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        delay = 0.5
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.check()
            except NotReadyError as exc:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DatabaseUnavailable(f"{exc} (gave up after {attempt} attempts)") from None
                # The last wait is cut short so that one more attempt is made at the deadline.
                wait = min(delay, remaining)
                log.warning("%s; retrying in %.1fs (attempt %d)", exc, wait, attempt)
                await asyncio.sleep(wait)
                delay = min(delay * 2, 5.0)
                continue
            return

    async def dispose(self) -> None:
        await self.engine.dispose()


# --- batched statements --------------------------------------------------------------------------


def one_of(column: Any, values: Collection[Any], dialect: str) -> ColumnElement[bool]:
    """``column IN values``: on PostgreSQL ``column = ANY(array)``, one parameter whatever the count.

    An expanding ``IN`` renders a statement text per list length, so asyncpg prepares (a round trip,
    and a parse on the server) nearly every run of a batch query whose size varies; the array form is
    one statement, prepared once per connection. SQLite has no arrays: ``IN`` there.
    """
    listed = sorted(values) if not isinstance(values, list | tuple) else list(values)
    if dialect == "postgresql":
        return column == any_(bindparam(None, listed, type_=postgresql.ARRAY(column.type)))  # type: ignore[no-any-return]
    return column.in_(listed)  # type: ignore[no-any-return]


@functools.cache
def _unnest_insert(
    table: Table, columns: tuple[str, ...], computed: tuple[tuple[str, str], ...], suffix: str
) -> TextClause:
    pg_dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    casts = []
    selected = []
    for name in columns:
        column_type = table.c[name].type
        if isinstance(column_type, JSON):
            casts.append(f"CAST(:u_{name} AS TEXT[])")
            selected.append(f"CAST(t.{name} AS JSON)")
        else:
            casts.append(f"CAST(:u_{name} AS {column_type.compile(dialect=pg_dialect)}[])")
            selected.append(f"t.{name}")
    names = [*columns, *(name for name, _ in computed)]
    selected += [expression for _, expression in computed]
    # Names from the table's metadata and the caller's SQL, never from data: the values are parameters.
    sql = (
        f"INSERT INTO {table.name} ({', '.join(names)}) SELECT {', '.join(selected)} "  # noqa: S608
        f"FROM unnest({', '.join(casts)}) WITH ORDINALITY AS t({', '.join(columns)}, _n) "
        f"ORDER BY t._n {suffix}"
    )
    return text(sql)


async def insert_unnest(
    session: AsyncSession,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    computed: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    suffix: str = "",
) -> Result[Any]:
    """Insert ``rows`` in one statement on PostgreSQL: each column one array, ``unnest``-ed server-side.

    The statement text is the same whatever the number of rows (prepared once per connection), and
    asyncpg encodes the arrays itself, where an executemany or a multi-row VALUES went through the
    ORM's per-row parameter processing. Rows keep their order (``seq`` columns count in it). The rows
    give the columns of the first row; ``computed`` adds columns as SQL expressions (over ``t.<column>``
    and the ``params``), ``suffix`` an ``ON CONFLICT`` or ``RETURNING`` clause. JSON columns are
    serialized here. PostgreSQL only: callers keep their portable statement for SQLite.
    """
    columns = tuple(rows[0])
    stmt = _unnest_insert(table, columns, tuple((computed or {}).items()), suffix)
    values: dict[str, Any] = dict(params or {})
    for name in columns:
        column = [row[name] for row in rows]
        if isinstance(table.c[name].type, JSON):
            column = [json.dumps(value) for value in column]
        values[f"u_{name}"] = column
    return await session.execute(stmt, values)


def _ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Ping a pooled connection on checkout when it was idle for ``idle_seconds`` (see Database)."""
    dialect = engine.dialect
    sync_engine = engine.sync_engine

    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["telecrm_idle_since"] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("telecrm_idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return  # a new connection, or one in use a moment ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool drops this connection and checks out another (a new one if need be).
            raise DisconnectionError(f"pooled connection did not answer a ping: {_short(exc)}") from exc

    event.listen(sync_engine, "checkin", checked_in)
    event.listen(sync_engine, "checkout", checked_out)


def _short(exc: BaseException) -> str:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return str(exc.orig).splitlines()[0] if str(exc.orig) else type(exc.orig).__name__
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# --- migrations ----------------------------------------------------------------------------------


def alembic_config(url: str | URL, script_location: str) -> Config:
    """An Alembic configuration for a service (``script_location`` like ``telecrm_calls:migrations``)."""
    config = Config()
    config.set_main_option("script_location", script_location)
    # One version table per service, so that services may share one database (DATABASE_URL).
    service = script_location.split(":", 1)[0].removeprefix("telecrm_")
    config.set_main_option("version_table", f"alembic_version_{service}")
    config.set_main_option(
        "sqlalchemy.url", async_url(url).render_as_string(hide_password=False).replace("%", "%%")
    )
    return config


def upgrade(url: str | URL, script_location: str, revision: str = "head") -> None:
    """Run the service's migrations up to ``revision`` (synchronously; call before serving)."""
    command.upgrade(alembic_config(url, script_location), revision)


async def upgrade_async(url: str | URL, script_location: str, revision: str = "head") -> None:
    """:func:`upgrade` from async code: Alembic's async env runs its own event loop in a thread."""
    await asyncio.to_thread(upgrade, url, script_location, revision)


def run_migrations_env(target_metadata: Any) -> None:
    """The body of every service's ``migrations/env.py``: online migrations over the async engine."""
    from alembic import context

    config = context.config
    url = config.get_main_option("sqlalchemy.url")
    version_table = config.get_main_option("version_table") or "alembic_version"
    if url is None:
        raise TelecrmError("alembic: sqlalchemy.url is not set")

    def do_run(connection: Any) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            version_table=version_table,
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Replicas starting together (init containers, migrate-on-start) take turns: the
                # first migrates, the others wait and then find nothing to do. Released at commit.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": version_table}
                )
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(async_url(url))
        try:
            async with engine.connect() as connection:
                await connection.run_sync(do_run)
                await connection.commit()
        finally:
            await engine.dispose()

    if context.is_offline_mode():
        context.configure(
            url=url, target_metadata=target_metadata, literal_binds=True, version_table=version_table
        )
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(run())


__all__ = [
    "Base",
    "Database",
    "DatabaseUnavailable",
    "OperationalError",
    "async_url",
    "insert_unnest",
    "is_sqlite",
    "one_of",
    "redacted",
    "upgrade",
    "upgrade_async",
]
