"""Apps for tests: the shared config, the throwaway MariaDB app, and a live HTTP server.

The write keys and origin here are the ones every test's app accepts (see base_config)."""

from __future__ import annotations

import os
import socket
import threading
from contextlib import contextmanager
from urllib.parse import urlsplit

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

# Database URLs already migrated in this session (the mysql_url fixture clears it).
migrated: set[str] = set()


def base_config(**extra):
    cfg = {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-0123456789",
        "SOURCES": SOURCES,
        "COOKIE_DOMAIN": ".example.com",
        # Tests refuse many requests from 127.0.0.1 and count the rows; the per-address cap
        # (L2) has its own test.
        "REJECTED_PER_IP": "100000/minute",
    }
    cfg.update(extra)
    return cfg


def reachable(url: str, default_port: int) -> bool:
    """Whether something listens at the URL's host and port (a service check, not a login)."""
    parts = urlsplit(url.replace("mysql+pymysql", "mysql"))
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1",
                                       parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def truncate_all(app):
    """Empty every table, children first."""
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
        if mysql_url not in migrated:
            migrate.upgrade()
            migrated.add(mysql_url)
    return app


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
