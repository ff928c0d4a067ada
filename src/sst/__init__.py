"""sst: self-hosted server-side event tracking."""

__version__ = "0.1.0"


def create_app(overrides=None):
    """Build a configured Flask app (see sst.app.create_app)."""
    from sst.app import create_app as _create_app

    return _create_app(overrides)
