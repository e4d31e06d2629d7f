"""Fixtures of the calls tests: a migrated database (PostgreSQL or SQLite), the service, call scripts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from sqlalchemy import delete

from telecrm_calls.access import CallsAccess
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
from telecrm_common.auth import Access, AuthSettings, Principal, Role, TokenVerifier, Visibility
from telecrm_common.db import Database, upgrade
from telecrm_devstack.testing import make_principal

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
def access(service: CallLogService, auth_settings: AuthSettings) -> CallsAccess:
    """What the REST routes check tokens and visibility with (the tests' signing key)."""
    return CallsAccess(Access(TokenVerifier(auth_settings)), service)


ADMIN = make_principal("u-admin", Role.ADMIN, visibility=Visibility.ALL)  # no employee: no "mine"


@pytest.fixture
def admin_headers(token_for: Callable[[Principal], dict[str, str]]) -> dict[str, str]:
    """An administrator's token: sees every call (the default of the test clients)."""
    return token_for(ADMIN)


@pytest.fixture
async def client(
    service: CallLogService, access: CallsAccess, admin_headers: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    """The call log's REST API in-process (ASGI) as an administrator, its health checks passing."""

    async def ok() -> None:
        return None

    app = create_app(service, {"database": ok}, access)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://calls", headers=admin_headers
    ) as client:
        yield client
