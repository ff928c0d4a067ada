"""sst: self-hosted server-side event tracking."""

from sst.version import __version__

__all__ = ["__version__", "create_app"]


def create_app(overrides=None):
    """Build a configured Flask app (see sst.app.create_app)."""
    from sst.app import create_app as _create_app

    return _create_app(overrides)
