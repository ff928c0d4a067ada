"""Extension objects, bound to an app in init_app; importing this module touches nothing."""

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData

# Explicit constraint names so Alembic migrations are the same on MySQL and SQLite.
naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=naming_convention))


def state():
    """The running app's SstState (sst.app): engine, sources, destinations, connectors.

    The one accessor; every blueprint, CLI command and job reads the state through it.
    """
    from flask import current_app

    return current_app.extensions["sst"]
