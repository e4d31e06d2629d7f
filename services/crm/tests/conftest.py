"""Fixtures of the crm tests: a migrated database (PostgreSQL or SQLite), tokens for test users."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from telecrm_common.auth import AuthSettings, Principal, Role, TokenVerifier, Visibility
from telecrm_common.db import Database, upgrade
from telecrm_crm.access import Access
from telecrm_crm.all_models import metadata
from telecrm_crm.main import MIGRATIONS
from telecrm_devstack.testing import make_principal

__all__ = ["CURSOR_SECRET", "make_principal"]

CURSOR_SECRET = b"test-crm-cursor-secret"


@pytest.fixture(scope="session")
def crm_migrated_url(database_factory: Callable[[str], str]) -> str:
    url = database_factory("crm")
    upgrade(url, MIGRATIONS)
    return url


@pytest.fixture(scope="session")
async def crm_database(crm_migrated_url: str) -> AsyncIterator[Database]:
    db = Database(crm_migrated_url)
    yield db
    await db.dispose()


@pytest.fixture
async def crm_db(crm_database: Database) -> Database:
    """The session's crm database, every table emptied for this test."""
    async with crm_database.session() as session:
        for table in reversed(metadata.sorted_tables):
            await session.execute(table.delete())
    return crm_database


@pytest.fixture(scope="session")
def access(auth_settings: AuthSettings) -> Access:
    return Access(TokenVerifier(auth_settings))


@pytest.fixture
def admin() -> Principal:
    return make_principal("u-admin", Role.ADMIN, employee_id="emp-admin", visibility=Visibility.ALL)


@pytest.fixture
def supervisor() -> Principal:
    return make_principal(
        "u-sup", Role.SUPERVISOR, employee_id="emp-sup", teams=("team-sales",), supervised=("team-sales",)
    )


@pytest.fixture
def agent() -> Principal:
    return make_principal("u-agent", Role.AGENT, employee_id="emp-agent", teams=("team-sales",))
