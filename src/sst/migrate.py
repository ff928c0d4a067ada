"""Alembic, driven from the app: `sst db upgrade` and the tests use these."""

from __future__ import annotations

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


def current() -> str | None:
    from alembic.runtime.migration import MigrationContext

    from sst.extensions import db

    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def revision(message: str, autogenerate: bool = True) -> None:
    command.revision(alembic_config(), message=message, autogenerate=autogenerate)
