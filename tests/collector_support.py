"""Fixtures for the fleet-server tests: one PostgreSQL server per test session, a fresh database
per test, and ``db_url`` to run a test on SQLite and on PostgreSQL.  Helpers: benchmarks/collectors.py."""

from __future__ import annotations

import pytest

from benchmarks.collectors import (COLLECTOR, CollectorProcess, add_login, make_trace, metric, publish_all,  # noqa: F401
                                   scrape, trace_message, wait_for)
from benchmarks.postgres import PgServer


@pytest.fixture(scope="session")
def pg_server():
    server = PgServer()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def pg_url(pg_server):
    return pg_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Each test using it runs on both databases."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/fleet.db"
    return request.getfixturevalue("pg_url")
