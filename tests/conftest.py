"""Fixtures: SQLite apps for unit tests, a throwaway MariaDB database and a real Redis for
integration tests. Integration tests fail loudly, never skip, when a service is missing.

Only fixtures live here; helpers that tests import are in the `support` package."""

from __future__ import annotations

import os
import secrets

import pytest
from sqlalchemy import create_engine, text

from sst import create_app
from sst.extensions import db
from support.apps import (
    MYSQL_SERVER_URL,
    REDIS_URL,
    base_config,
    make_mysql_app,
    migrated,
    reachable,
    truncate_all,
)


@pytest.fixture(scope="session")
def mysql_url():
    """A fresh utf8mb4 database on the real MariaDB/MySQL, dropped after the session."""
    if not reachable(MYSQL_SERVER_URL, 3306):
        pytest.fail(f"MariaDB/MySQL is not reachable at {MYSQL_SERVER_URL} "
                    "(start it: see README, 'Tests'); integration tests need it", pytrace=False)
    name = f"sst_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(MYSQL_SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    url = MYSQL_SERVER_URL.rstrip("/") + "/" + name
    migrated.clear()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_url():
    import redis

    if not reachable(REDIS_URL, 6379):
        pytest.fail(f"Redis is not reachable at {REDIS_URL} (start it: see README, 'Tests')",
                    pytrace=False)
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


@pytest.fixture
def app(tmp_path):
    """A unit-test app on SQLite in a temporary folder, schema from the migrations."""
    from sst import migrate

    app = create_app(base_config(DATABASE_URL=f"sqlite:///{tmp_path / 'sst.sqlite'}"))
    with app.app_context():
        migrate.upgrade()
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def mysql_app(mysql_url, redis_url):
    """An app on MariaDB and Redis, with empty tables."""
    app = make_mysql_app(mysql_url, redis_url)
    truncate_all(app)
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def mysql_client(mysql_app):
    return mysql_app.test_client()
