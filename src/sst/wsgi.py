"""The WSGI entry point of an installed sst: `gunicorn sst.wsgi:app`, from any folder.

Building the app reads the environment (SST_*) and the config file once, at import, in each
gunicorn worker (or once in the master with --preload)."""

from sst import create_app

app = create_app()
