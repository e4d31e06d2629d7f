"""Fixtures of the calls tests: a migrated database (PostgreSQL or SQLite), the service, call scripts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from sqlalchemy import delete

from telecrm_calls.api import create_app
from telecrm_calls.main import MIGRATIONS
from telecrm_calls.models import (
    Call,
    CallEventRow,
    CallParty,
    Contact,
    Employee,
    MissedCall,
    MissedCallMember,
    MissedCallTarget,
    Number,
    OutboxMessage,
    Recording,
)
from telecrm_calls.service import CallLogService
from telecrm_common.db import Database, upgrade

SECRET = "test-cursor-secret"


@pytest.fixture(scope="session")
def migrated_url(database_factory: Callable[[str], str]) -> str:
    """A database of the session with the migrations applied."""
    url = database_factory("calls")
    upgrade(url, MIGRATIONS)
    return url


@pytest.fixture(scope="session")
async def database(migrated_url: str) -> AsyncIterator[Database]:
    db = Database(migrated_url)
    yield db
    await db.dispose()


@pytest.fixture
async def db(database: Database) -> Database:
    """The session's database, emptied for this test."""
    async with database.session() as session:
        for model in (Call, CallEventRow, CallParty, Recording, Employee, Contact, Number):
            await session.execute(delete(model))
        for model in (MissedCallMember, MissedCallTarget, MissedCall, OutboxMessage):
            await session.execute(delete(model))
    return database


@pytest.fixture
def cursor_secret() -> bytes:
    return SECRET.encode()


@pytest.fixture
def service(db: Database) -> CallLogService:
    return CallLogService(db, cursor_secret=SECRET)


@pytest.fixture
async def client(service: CallLogService) -> AsyncIterator[httpx.AsyncClient]:
    """The call log's REST API in-process (ASGI), its health checks always passing."""

    async def ok() -> None:
        return None

    app = create_app(service, {"database": ok})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://calls") as client:
        yield client
