"""Pytest fixtures shared by every test in the repository (loaded by the root conftest.py).

Real parts only: a nats-server per test session on a free port with a temporary JetStream store, and
a database per service: PostgreSQL when TEST_DATABASE_URL is set, SQLite otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from telecrm_common.auth import AuthSettings, Principal, Role, TokenIssuer, Visibility, default_rights
from telecrm_devstack.databases import create_database, drop_database
from telecrm_devstack.processes import NatsServer

TEST_AUTH_SECRET = "test-auth-secret-of-at-least-32-bytes!"  # noqa: S105 - the tests' own key


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A real nats-server with JetStream for the whole session."""
    root = tmp_path_factory.mktemp("nats")
    server = NatsServer(data_dir=root / "js", log_path=root / "nats.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], str]]:
    """Makes fresh databases (``factory("calls")`` -> URL); all are dropped at the end of the session."""
    made: list[str] = []
    sqlite_dir = tmp_path_factory.mktemp("db")

    def factory(prefix: str) -> str:
        url = create_database(prefix, sqlite_dir)
        made.append(url)
        return url

    yield factory
    for url in made:
        drop_database(url)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(scope="session")
def auth_settings() -> AuthSettings:
    """The suite's token settings as every service under test shares them (a test key)."""
    return AuthSettings(secret=TEST_AUTH_SECRET)


@pytest.fixture(scope="session")
def token_for(auth_settings: AuthSettings) -> Callable[[Principal], dict[str, str]]:
    """Authorization headers of a signed access token for ``principal``."""
    issuer = TokenIssuer(auth_settings)

    def headers(principal: Principal) -> dict[str, str]:
        token, _ = issuer.issue(principal)
        return {"Authorization": f"Bearer {token}"}

    return headers


def make_principal(
    subject: str,
    *roles: Role,
    employee_id: str | None = None,
    teams: tuple[str, ...] = (),
    supervised: tuple[str, ...] = (),
    rights: frozenset[str] | None = None,
    visibility: Visibility = Visibility.OWN,
) -> Principal:
    """A user as crm would describe them in a token (the role's default rights unless given)."""
    return Principal(
        subject=subject,
        employee_id=employee_id,
        name=subject,
        roles=frozenset(roles),
        team_ids=frozenset(teams),
        supervised_team_ids=frozenset(supervised),
        rights=default_rights(roles) if rights is None else rights,
        visibility=visibility,
    )
