"""`gunicorn wsgi:app` in a checkout; an installed sst serves `sst.wsgi:app` (same app)."""

from sst.wsgi import app

__all__ = ["app"]
