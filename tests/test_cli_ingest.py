"""The ingest side of the `sst` command line: schema, write keys, events tail."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from sst import create_app
from sst.cli import main
from support.apps import MYSQL_SERVER_URL, SERVER_KEY, base_config, make_mysql_app

SST = str(Path(sys.executable).with_name("sst"))


@pytest.fixture
def fresh_mysql_url(mysql_url):
    """An empty database of its own (the session one is already migrated)."""
    name = f"sst_cli_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(MYSQL_SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    yield MYSQL_SERVER_URL.rstrip("/") + "/" + name
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
    admin.dispose()


def test_db_upgrade_creates_the_schema_and_is_idempotent(fresh_mysql_url):
    app = create_app(base_config(DATABASE_URL=fresh_mysql_url))
    runner = app.test_cli_runner()
    first = runner.invoke(main, ["db", "upgrade"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(main, ["db", "upgrade"])
    assert second.exit_code == 0, second.output
    assert first.output == second.output
    assert first.output.startswith("schema at revision ")
    engine = create_engine(fresh_mysql_url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"events", "visitors", "click_ids", "links", "rejected_payloads"} <= tables


def test_db_upgrade_from_the_console_script(fresh_mysql_url, tmp_path):
    env = {**os.environ, "SST_DATABASE_URL": fresh_mysql_url, "SST_INSTANCE_PATH": str(tmp_path),
           "SST_SECRET_KEY": "a-private-random-secret-0123456789"}
    env.pop("SST_CONFIG", None)
    for _ in range(2):
        done = subprocess.run([SST, "db", "upgrade"], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert "schema at revision" in done.stdout


def test_db_upgrade_reports_an_unreachable_database(tmp_path):
    app = create_app(base_config(DATABASE_URL="mysql+pymysql://root@127.0.0.1:1/x"))
    result = app.test_cli_runner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 1
    assert "cannot use the database at mysql+pymysql://root@127.0.0.1:1/x" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_db_current_prints_the_revision(runner):
    result = runner.invoke(main, ["db", "current"])
    assert result.exit_code == 0
    assert result.output.strip() not in ("", "(empty)")


def test_keygen_prints_a_new_usable_write_key(runner):
    keys = {runner.invoke(main, ["keygen"]).output.strip() for _ in range(3)}
    assert len(keys) == 3
    for key in keys:
        assert key.startswith("sk_")
        assert len(key) >= 30
        assert key.replace("sk_", "").replace("-", "").replace("_", "").isalnum()


def test_a_bad_config_exits_with_the_message(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[server]\nnope = 1\n")
    env = {**os.environ, "SST_CONFIG": str(config), "SST_INSTANCE_PATH": str(tmp_path)}
    done = subprocess.run([SST, "db", "current"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert str(config) in done.stderr
    assert "key 'nope'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def app_with_events(mysql_url, redis_url):
    app = make_mysql_app(mysql_url, redis_url)
    from support.apps import truncate_all

    truncate_all(app)
    client = app.test_client()
    for i, name in enumerate(["First", "Second", "Third"]):
        r = client.post("/v1/track", json={"event": name, "userId": f"u{i}", "messageId": f"m-{i}",
                                           "timestamp": f"2026-05-01T10:0{i}:00Z"},
                        auth=(SERVER_KEY, ""))
        assert r.status_code == 200
    return app


def test_events_tail_prints_the_latest_events_oldest_first(app_with_events):
    result = app_with_events.test_cli_runner().invoke(main, ["events", "tail", "-n", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2
    assert "Second" in lines[0] and "m-1" in lines[0] and "u1" in lines[0]
    assert "Third" in lines[1] and "m-2" in lines[1]
    assert lines[1].startswith("2026-05-01T10:02:00.000Z")


def test_events_tail_json_prints_one_object_per_line(app_with_events):
    result = app_with_events.test_cli_runner().invoke(main, ["events", "tail", "--json"])
    assert result.exit_code == 0, result.output
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["messageId"] for o in objects] == ["m-0", "m-1", "m-2"]
    assert objects[0]["event"] == "First"
    assert objects[0]["source"] == "server"
    assert objects[0]["eventTime"] == "2026-05-01T10:00:00.000Z"
    assert objects[0]["message"]["userId"] == "u0"


def test_events_tail_filters_by_source(app_with_events):
    result = app_with_events.test_cli_runner().invoke(main, ["events", "tail", "--source", "web"])
    assert result.exit_code == 0
    assert result.output == ""


def test_sst_help_lists_the_ingest_commands():
    done = subprocess.run([SST, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for command in ("db", "keygen", "events", "serve", "dev"):
        assert command in done.stdout
