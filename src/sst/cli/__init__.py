"""The `sst` command line (Click): the `main` group and the commands that set sst up (db,
keygen, serve, dev). Every other command group lives in a module of its own and is attached
here with `main.add_command`, as Redash's redash/cli/__init__.py does. `sst --help` lists
every command."""

from __future__ import annotations

import os
from pathlib import Path

import click
from flask import current_app
from flask.cli import FlaskGroup, ScriptInfo, with_appcontext

from sst.cli.common import SETUP, describe_failure, fail, remember_urls, urls
from sst.errors import ConfigError
from sst.version import __version__

# Commands that run without a schema at the head revision: they create it, or need only the
# config (destination test builds a sample payload).
NO_SCHEMA_CHECK = {("db",), ("dev",), ("destination", "test")}
DEV_FOLDER = Path(".sst-dev")


def _command_names(ctx) -> tuple[str, ...]:
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    return tuple(reversed(names))


def _database_overrides() -> tuple[dict, str | None]:
    """Without SST_DATABASE_URL a command would silently open an empty SQLite file: use the
    `sst dev` database of this folder when there is one, and always say which database."""
    if os.environ.get("SST_DATABASE_URL"):
        return {}, None
    dev_db = DEV_FOLDER / "sst.sqlite"
    if dev_db.exists() and not os.environ.get("SST_CONFIG"):
        overrides = {"DATABASE_URL": f"sqlite:///{dev_db.resolve()}"}
        if (DEV_FOLDER / "config.toml").exists():
            overrides["CONFIG"] = str((DEV_FOLDER / "config.toml").resolve())
        return overrides, (f"sst: no SST_DATABASE_URL: using the `sst dev` database "
                           f"{dev_db.resolve()}" + (" and its config" if "CONFIG" in overrides
                                                    else ""))
    return {}, "sst: no SST_DATABASE_URL: using SQLite at {path}"


def _create_app():
    from sst.app import create_app

    names = _command_names(click.get_current_context(silent=True))
    overrides, note = _database_overrides()
    try:
        app = create_app(overrides or None)
    except ConfigError as exc:
        fail(f"sst: {exc}", SETUP)
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    remember_urls(app)
    if note:
        click.echo(note.format(path=url.removeprefix("sqlite:///")), err=True)
    if not any(names[:len(prefix)] == prefix for prefix in NO_SCHEMA_CHECK):
        _check_schema(app)
    return app


def _check_schema(app) -> None:
    """Every command that reads or writes the tables says `sst db upgrade` in one line when
    the schema is missing or behind, instead of failing on the first query."""
    from sst.dbcheck import describe_database_error, schema_problem
    from sst.extensions import db

    with app.app_context():
        try:
            with db.engine.connect() as conn:
                problem = schema_problem(conn)
        except Exception as exc:
            line = describe_database_error(exc, urls.get("database"))
            if line is None:
                raise
            fail(f"sst: {line}")
    if problem:
        fail(f"sst: {problem}")


class SstGroup(FlaskGroup):
    """Flask's group without what means nothing to an operator (-A/--app, --debug, Flask's
    --version, app-provided commands) and with one line, never a traceback, for a database
    or Redis failure inside any command."""

    def __init__(self, **kwargs):
        super().__init__(add_version_option=False, **kwargs)
        self.params = [p for p in self.params if p.name not in ("app", "debug")]

    def get_command(self, ctx, name):
        return click.Group.get_command(self, ctx, name)

    def list_commands(self, ctx):
        return click.Group.list_commands(self, ctx)

    def invoke(self, ctx):
        urls.clear()  # a new command line (tests run many in one process)
        try:
            return super().invoke(ctx)
        except Exception as exc:
            loaded = getattr(ctx.find_object(ScriptInfo), "_loaded_app", None)
            if not urls and loaded is not None:
                remember_urls(loaded)
            line = describe_failure(exc)
            if line is None:
                raise
            fail(f"sst: {line}")


@click.group(cls=SstGroup, create_app=_create_app, add_default_commands=False,
             set_debug_flag=False, load_dotenv=False)
@click.version_option(__version__, "--version", prog_name="sst", message="%(prog)s %(version)s")
def main():
    """sst: self-hosted server-side event tracking."""


# --- schema ---------------------------------------------------------------------------------


@main.group()
def db():
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@with_appcontext
def db_upgrade(revision):
    """Create or migrate the schema; safe to run again."""
    from sst import migrate

    migrate.upgrade(revision)  # a database failure: one line (SstGroup.invoke)
    click.echo(f"schema at revision {migrate.current()}")


@db.command("current")
@with_appcontext
def db_current():
    """Print the schema's revision."""
    from sst import migrate

    click.echo(migrate.current() or "(empty)")


# --- keys and serving -----------------------------------------------------------------------


def new_write_key() -> str:
    from sst.starter import new_write_key as new

    return new()


@main.command(with_appcontext=False)
def keygen():
    """Print a new random write key for a [[source]]."""
    click.echo(new_write_key())


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@with_appcontext
def serve(host, port):
    """Run the development server (production: gunicorn sst.wsgi:app behind nginx, deploy/)."""
    _run_server(current_app._get_current_object(), host, port)


@main.command(with_appcontext=False)
@click.argument("path", default="sst.toml", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite the file if it exists.")
def init(path, force):
    """Write a commented starter config (sources with new write keys, a webhook, the ad
    platforms commented out) and print the next commands."""
    from sst.starter import render_init_config

    if path.exists() and not force:
        fail(f"sst init: {path} exists; pass --force to overwrite it", SETUP)
    path.write_text(render_init_config())
    path.chmod(0o600)  # it holds write keys and the webhook secret
    full = path.resolve()
    click.echo(f"wrote {full}: two sources with new write keys, a webhook destination, "
               "the ad platforms commented out")
    click.echo("next:")
    click.echo(f"  1. edit {path}: cookie_domain, the web source's origins, the webhook url")
    click.echo(f"  2. export SST_CONFIG={full}")
    click.echo("     export SST_DATABASE_URL=mysql+pymysql://USER:PASSWORD@HOST:3306/sst")
    click.echo("     export SST_REDIS_URL=redis://127.0.0.1:6379/0")
    click.echo('     export SST_SECRET_KEY="$(python3 -c \'import secrets; '
               'print(secrets.token_urlsafe(32))\')"  SST_ENV=production')
    click.echo("  3. sst db upgrade")
    click.echo("  4. sst destination test hook          (add --send to really send one)")
    click.echo("  5. gunicorn 'sst.wsgi:app'  and  sst worker   (README, 'Production')")
    click.echo("  trying it locally first? `sst dev` needs none of this")


def dev_app(folder: Path, host: str, port: int):
    """The app `sst dev` serves, and its config's path (written on the first run)."""
    from sst.app import create_app
    from sst.starter import render_dev_config

    base = folder.resolve()
    base.mkdir(parents=True, exist_ok=True)
    config_path = base / "config.toml"
    if not config_path.exists():
        config_path.write_text(render_dev_config(host, port))
    app = create_app({"CONFIG": str(config_path), "INSTANCE_PATH": str(base),
                      "DATABASE_URL": "sqlite:///" + str(base / "sst.sqlite"),
                      "COOKIE_SECURE": False, "SERVE_EXAMPLES": True, "DEV_INBOX": True})
    from sst import migrate

    with app.app_context():
        migrate.upgrade()
    return app, config_path


# A browser's user agent and a landing URL with an ad click id, so the quickstart's event
# is neither a bot's nor anonymous to Meta (it carries fbc).
DEV_CURL_BODY = ('{"event":"Signed Up","userId":"u1","properties":{"plan":"pro"},'
                 '"context":{"userAgent":"Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",'
                 '"page":{"url":"http://localhost/?fbclid=IwAR-dev"}}}')


@main.command(with_appcontext=False)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--dir", "folder", default=".sst-dev", show_default=True,
              help="Where the embedded database, config and OTP outbox live.")
def dev(host, port, folder):
    """Start a working sst on SQLite with an embedded queue; no servers needed."""
    for var in ("SST_DATABASE_URL", "SST_REDIS_URL"):
        if os.environ.get(var):
            fail(f"sst dev is the embedded mode: unset {var} (or use sst serve)", SETUP)
    base = Path(folder).resolve()
    try:
        app, config_path = dev_app(base, host, port)
    except ConfigError as exc:
        fail(f"sst: {exc}", SETUP)
    write_key = next(iter(app.extensions["sst"].sources))
    url = f"http://{host}:{port}"
    click.echo(f"sst (embedded: SQLite at {base / 'sst.sqlite'}, in-process queue)")
    click.echo(f"config:    {config_path}")
    click.echo(f"write key: {write_key}")
    click.echo(f"example:   {url}/example/  (the form's codes go to "
               f"{base / 'otp-outbox.jsonl'})")
    click.echo(f"inbox:     {url}/dev/inbox  (what each destination received)")
    click.echo("try:")
    click.echo(f"  curl -s -u '{write_key}:' -H 'Content-Type: application/json' "
               f"-d '{DEV_CURL_BODY}' {url}/v1/track")
    click.echo(f"  then open {url}/dev/inbox, or run `sst status` and `sst tracks` here")
    from sst.delivery.worker import start_embedded_worker

    start_embedded_worker(app)  # the in-process queue of embedded mode
    _run_server(app, host, port)


def _run_server(app, host, port):
    # app.run() refuses to start under the flask CLI machinery; werkzeug's server does.
    from werkzeug.serving import run_simple

    run_simple(host, port, app, threaded=True, use_reloader=False)


# --- the other command groups, one module each ------------------------------------------------

from sst.cli.audiences import audience  # noqa: E402
from sst.cli.delivery import (  # noqa: E402
    destination,
    preview,
    queue,
    replay,
    sweep,
    tracks,
    worker,
)
from sst.cli.events import events  # noqa: E402
from sst.cli.identity import identity  # noqa: E402
from sst.cli.ops import alerts, status  # noqa: E402
from sst.cli.privacy import forget, purge  # noqa: E402
from sst.cli.reports import report, rollups  # noqa: E402

for _command in (events, worker, sweep, tracks, preview, replay, destination, queue, identity,
                 status, alerts, audience, forget, purge, report, rollups):
    main.add_command(_command)


if __name__ == "__main__":
    main()
