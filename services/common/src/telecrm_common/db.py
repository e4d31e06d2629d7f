"""SQLAlchemy 2.x async engine per service, SQLite by default and PostgreSQL by URL, with Alembic.

URLs may be given the way people write them (``sqlite:///var/calls.sqlite3``,
``postgresql://user@host/db``); the async driver (aiosqlite, asyncpg) is filled in here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import DateTime, event, make_url, text
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.exc import DBAPIError, OperationalError
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


class Database:
    """An async engine and its session factory."""

    def __init__(self, url: str | URL, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = async_url(url)
        kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": True}
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
    "is_sqlite",
    "redacted",
    "upgrade",
    "upgrade_async",
]
