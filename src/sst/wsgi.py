"""The WSGI entry point of an installed sst: `gunicorn sst.wsgi:app`, from any folder.

Building the app reads the environment (SST_*) and the config file once, at import, in each
gunicorn worker (or once in the master with --preload)."""

import sys

from sst import create_app
from sst.errors import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    # One line, as the CLI prints it, not the worker's 50-line traceback. Exit status 4 is
    # gunicorn's "App failed to load": the master stops instead of booting workers in a loop
    # (and sst-web.service does not restart on it: RestartPreventExitStatus=4).
    print(f"sst: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(4) from None
