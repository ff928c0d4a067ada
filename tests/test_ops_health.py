"""/readyz and a schema that is missing or behind (contract §7): not ready, and ingest
answers 503 storage_unavailable naming `sst db upgrade`, never a 500."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import create_engine, text

from sst import create_app, migrate
from sst.extensions import db
from sst.migrate import head_revision
from support.apps import MYSQL_SERVER_URL, WRITE_KEY, base_config


def _basic():
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}


@pytest.fixture
def bare_mysql_url(mysql_url):
    """An empty MariaDB database of its own (no schema), dropped afterwards."""
    name = f"sst_bare_{secrets.token_hex(4)}"
    admin = create_engine(MYSQL_SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    yield MYSQL_SERVER_URL.rstrip("/") + "/" + name
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
    admin.dispose()


def _app(url):
    return create_app(base_config(DATABASE_URL=url))


def test_readyz_is_ready_at_the_head_revision(app):
    r = app.test_client().get("/readyz")
    assert r.status_code == 200
    assert r.get_json() == {"status": "ready",
                            "checks": {"database": "ok", "schema": "ok", "queue": "embedded"}}


@pytest.mark.parametrize("path, body", [
    ("/v1/track", {"event": "Signed Up", "userId": "u1"}),
    ("/v1/batch", {"batch": [{"type": "track", "event": "E", "userId": "u1"}]}),
    ("/v1/identify", {"userId": "u1"}),
])
def test_no_schema_on_mariadb_is_not_ready_and_ingest_names_the_fix(bare_mysql_url, path,
                                                                     body):
    app = _app(bare_mysql_url)
    client = app.test_client()
    r = client.get("/readyz")
    assert r.status_code == 503
    doc = r.get_json()
    assert doc["checks"]["schema"] == "behind"
    assert "sst db upgrade" in doc["reason"]
    r = client.post(path, json=body, headers=_basic())
    assert r.status_code == 503, r.data
    assert r.get_json()["error"] == "storage_unavailable"
    assert "sst db upgrade" in r.get_json()["message"]
    assert int(r.headers["Retry-After"]) > 0
    with app.app_context():
        db.engine.dispose()


def test_a_schema_one_revision_behind_is_not_ready_until_upgraded(bare_mysql_url):
    app = _app(bare_mysql_url)
    with app.app_context():
        migrate.upgrade("0007")
    client = app.test_client()
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.get_json()["reason"] == (f"the database schema is at revision 0007, this sst "
                                      f"needs {head_revision()}: run `sst db upgrade`")
    with app.app_context():
        migrate.upgrade()
    r = client.get("/readyz")
    assert r.status_code == 200
    r = client.post("/v1/track", json={"event": "E", "userId": "u1"}, headers=_basic())
    assert r.status_code == 200
    with app.app_context():
        db.engine.dispose()


def test_no_schema_on_sqlite_answers_503_naming_the_fix(tmp_path):
    client = _app(f"sqlite:///{tmp_path / 'empty.sqlite'}").test_client()
    r = client.post("/v1/track", json={"event": "E", "userId": "u1"}, headers=_basic())
    assert r.status_code == 503
    assert "sst db upgrade" in r.get_json()["message"]
    assert client.get("/readyz").status_code == 503
