"""Fixtures: SQLite apps for unit tests, a throwaway MariaDB database and a real Redis for
integration tests. Integration tests fail loudly, never skip, when a service is missing."""

from __future__ import annotations

import os
import secrets
import socket
import threading
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, text
from werkzeug.serving import make_server

from sst import create_app
from sst.extensions import db

MYSQL_SERVER_URL = os.environ.get("SST_TEST_DATABASE_URL",
                                  "mysql+pymysql://root@127.0.0.1:3306/")
REDIS_URL = os.environ.get("SST_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

WRITE_KEY = "wk_test_web_0123456789"
SERVER_KEY = "wk_test_server_0123456789"
ORIGIN = "https://www.example.com"

SOURCES = [
    {"name": "web", "write_key": WRITE_KEY, "origins": [ORIGIN]},
    {"name": "server", "write_key": SERVER_KEY, "origins": []},
]


def base_config(**extra):
    cfg = {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-0123456789",
        "SOURCES": SOURCES,
        "COOKIE_DOMAIN": ".example.com",
    }
    cfg.update(extra)
    return cfg


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url.replace("mysql+pymysql", "mysql"))
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1",
                                       parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def mysql_url():
    """A fresh utf8mb4 database on the real MariaDB/MySQL, dropped after the session."""
    if not _reachable(MYSQL_SERVER_URL, 3306):
        pytest.fail(f"MariaDB/MySQL is not reachable at {MYSQL_SERVER_URL} "
                    "(start it: see README, 'Tests'); integration tests need it", pytrace=False)
    name = f"sst_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(MYSQL_SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    url = MYSQL_SERVER_URL.rstrip("/") + "/" + name
    _migrated.clear()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
    admin.dispose()


_migrated: set = set()


@pytest.fixture(scope="session")
def redis_url():
    import redis

    if not _reachable(REDIS_URL, 6379):
        pytest.fail(f"Redis is not reachable at {REDIS_URL} (start it: see README, 'Tests')",
                    pytrace=False)
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


def _truncate_all(app):
    with app.app_context():
        with db.engine.begin() as conn:
            for table in reversed(db.metadata.sorted_tables):
                conn.execute(table.delete())


def make_mysql_app(mysql_url, redis_url=None, **extra):
    """An app on the throwaway MariaDB database, schema migrated with Alembic."""
    from sst import migrate

    cfg = base_config(DATABASE_URL=mysql_url, **extra)
    if redis_url:
        cfg["REDIS_URL"] = redis_url
    app = create_app(cfg)
    with app.app_context():
        if mysql_url not in _migrated:
            migrate.upgrade()
            _migrated.add(mysql_url)
    return app


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
    _truncate_all(app)
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def mysql_client(mysql_app):
    return mysql_app.test_client()


@contextmanager
def live_server(app):
    """Serve the app over real HTTP on a free loopback port, in a thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
