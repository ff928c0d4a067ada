"""Every database, Redis and config failure gives the CLI one line and an exit code, never a
traceback (contract §7): 1 when the command ran and failed, 2 when it cannot run as set up."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine

from sst import create_app, migrate
from sst.cli import main
from sst.version import __version__
from support.apps import MYSQL_SERVER_URL, REDIS_URL, base_config


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _clean_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .sst-dev here
    for var in ("SST_DATABASE_URL", "SST_REDIS_URL", "SST_CONFIG", "SST_ENV"):
        monkeypatch.delenv(var, raising=False)
    # A private secret, as on any real database (the published one is refused there, M2).
    monkeypatch.setenv("SST_SECRET_KEY", "cli-errors-test-secret-0123456789")


def run(args, **env):
    result = CliRunner().invoke(main, args, env=env)
    return result


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def migrated_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'ok.sqlite'}"
    app = create_app(base_config(DATABASE_URL=url))
    with app.app_context():
        migrate.upgrade()
    return url


def test_an_unreachable_database_is_one_line_naming_the_url_password_masked():
    port = closed_port()
    result = run(["status"], SST_DATABASE_URL=f"mysql+pymysql://root:hunter2pw@127.0.0.1:{port}/x")
    assert result.exit_code == 1
    line = one_line(result)
    assert line.startswith(f"sst: cannot use the database at mysql+pymysql://root:***@127.0.0.1:"
                           f"{port}/x: Can't connect")
    assert "hunter2pw" not in result.output


def test_an_unknown_database_says_create_it_then_upgrade():
    name = f"sst_nosuch_{secrets.token_hex(3)}"
    result = run(["tracks"], SST_DATABASE_URL=MYSQL_SERVER_URL.rstrip("/") + "/" + name)
    assert result.exit_code == 1
    line = one_line(result)
    assert line == (f"sst: database '{name}' does not exist at "
                    f"{MYSQL_SERVER_URL.rstrip('/')}/{name}: create it (CREATE DATABASE {name} "
                    "CHARACTER SET utf8mb4), then run `sst db upgrade`")


def test_mysql_url_without_its_driver_points_at_pymysql():
    result = run(["status"], SST_DATABASE_URL="mysql://root@127.0.0.1:3306/x")
    assert result.exit_code == 2
    line = one_line(result)
    assert "its driver is not installed" in line and "mysql+pymysql://" in line


def test_an_unreadable_database_url_is_a_setup_error():
    result = run(["status"], SST_DATABASE_URL="not a url")
    assert result.exit_code == 2
    assert "is not a database URL" in one_line(result)


@pytest.mark.parametrize("args", [["status"], ["events", "tail", "-n", "1"], ["tracks"],
                                  ["report"], ["replay", "--dry-run"], ["sweep"]])
def test_no_schema_says_run_db_upgrade(tmp_path, args):
    result = run(args, SST_DATABASE_URL=f"sqlite:///{tmp_path / 'empty.sqlite'}")
    assert result.exit_code == 1
    assert one_line(result) == "sst: the database has no sst schema: run `sst db upgrade`"


def test_a_schema_behind_names_both_revisions(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    app = create_app(base_config(DATABASE_URL=url))
    with app.app_context():
        migrate.upgrade("0007")
    result = run(["status"], SST_DATABASE_URL=url)
    assert result.exit_code == 1
    assert one_line(result).startswith("sst: the database schema is at revision 0007, this "
                                       "sst needs ")
    result = run(["db", "upgrade"], SST_DATABASE_URL=url)
    assert result.exit_code == 0, result.output
    assert run(["status"], SST_DATABASE_URL=url).exit_code == 0


def test_a_mariadb_without_schema_says_run_db_upgrade(mysql_url):
    # A second, empty database next to the test one.
    name = f"sst_empty_{secrets.token_hex(3)}"
    admin = create_engine(MYSQL_SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        result = run(["status"], SST_DATABASE_URL=MYSQL_SERVER_URL.rstrip("/") + "/" + name)
        assert result.exit_code == 1
        assert one_line(result) == "sst: the database has no sst schema: run `sst db upgrade`"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name}")
        admin.dispose()


def test_redis_down_for_the_worker_is_one_line(migrated_sqlite):
    port = closed_port()
    result = run(["worker", "--burst"], SST_DATABASE_URL=migrated_sqlite,
                 SST_REDIS_URL=f"redis://:pw1234@127.0.0.1:{port}/5")
    assert result.exit_code == 1
    line = one_line(result)
    assert line.startswith(f"sst: cannot use Redis at redis://:***@127.0.0.1:{port}/5: ")
    assert "pw1234" not in result.output


def test_redis_down_for_queue_stats_is_one_line(migrated_sqlite):
    result = run(["queue", "stats"], SST_DATABASE_URL=migrated_sqlite,
                 SST_REDIS_URL=f"redis://127.0.0.1:{closed_port()}/5")
    assert result.exit_code == 1
    assert one_line(result).startswith("sst queue stats: cannot use Redis at redis://127.0.0.1:")


@pytest.mark.parametrize("url", ["localhost:6379", "http://127.0.0.1:6379/0"])
def test_a_bad_redis_url_is_a_setup_error(migrated_sqlite, url):
    result = run(["queue", "stats"], SST_DATABASE_URL=migrated_sqlite, SST_REDIS_URL=url)
    assert result.exit_code == 2
    assert one_line(result) == (f"sst: SST_REDIS_URL '{url}' is not a Redis URL: write "
                                "redis://HOST:PORT/DB (or rediss://, unix://)")


def test_without_a_database_url_the_command_says_which_sqlite_it_uses(tmp_path):
    result = run(["status"])
    assert result.exit_code == 1  # that file has no schema: says so too
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("sst: no SST_DATABASE_URL: using SQLite at ")
    assert lines[1] == "sst: the database has no sst schema: run `sst db upgrade`"


def test_without_a_database_url_the_dev_database_of_this_folder_is_used(tmp_path):
    dev = tmp_path / ".sst-dev"
    dev.mkdir()
    url = f"sqlite:///{dev / 'sst.sqlite'}"
    app = create_app(base_config(DATABASE_URL=url))
    with app.app_context():
        migrate.upgrade()
    result = run(["status"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == (f"sst: no SST_DATABASE_URL: using the `sst dev` "
                                             f"database {dev / 'sst.sqlite'}")


def test_version_is_sst_s():
    result = run(["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"sst {__version__}"


def test_env_file_option_loads_settings(tmp_path, migrated_sqlite):
    env = tmp_path / "sst.env"
    env.write_text(f"SST_DATABASE_URL={migrated_sqlite}\n")
    result = run(["-e", str(env), "status"])
    assert result.exit_code == 0, result.output
    assert "no SST_DATABASE_URL" not in result.output
    os.environ.pop("SST_DATABASE_URL", None)  # python-dotenv set it in this process


def test_help_offers_no_flask_options():
    result = run(["--help"])
    assert result.exit_code == 0
    assert "--app" not in result.output and "--debug" not in result.output
    assert "--env-file" in result.output and "--version" in result.output


def test_a_real_process_prints_one_line_not_a_traceback(tmp_path):
    env = {**os.environ, "SST_DATABASE_URL": f"mysql+pymysql://root@127.0.0.1:{closed_port()}/x"}
    done = subprocess.run([str(Path(sys.executable).with_name("sst")), "status"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("sst: cannot use the database at ")
    assert REDIS_URL  # the suite's Redis is not touched here
