"""Pytest fixtures shared by every test in the repository (loaded by the root conftest.py).

Real parts only: a nats-server per test session on a free port with a temporary JetStream store, and
a database per service: PostgreSQL when TEST_DATABASE_URL is set, SQLite otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from telecrm_devstack.databases import create_database, drop_database
from telecrm_devstack.processes import NatsServer


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
