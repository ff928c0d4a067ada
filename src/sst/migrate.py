"""Alembic, driven from the app: `sst db upgrade` and the tests use these."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(revision: str = "head") -> None:
    """Create or migrate the schema of the current app's database; idempotent."""
    command.upgrade(alembic_config(), revision)


@functools.cache
def head_revision() -> str:
    """The revision the code's models need: the last Alembic migration."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(conn) -> str | None:
    """The revision the database on `conn` is at (None: no schema at all)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def current() -> str | None:
    """The revision of the current app's database."""
    from sst.extensions import db

    with db.engine.connect() as conn:
        return current_revision(conn)


def revision(message: str, autogenerate: bool = True) -> None:
    command.revision(alembic_config(), message=message, autogenerate=autogenerate)
