"""Shared test helpers, imported by public name (`from support.apps import make_mysql_app`).

pyproject.toml puts tests/ on sys.path (`pythonpath = ["tests"]`), so `support` imports the
same way from `scripts/test`, `.ci/run`, a single file run, or any pytest import mode.
conftest.py holds only fixtures; everything a test module imports lives here:
  apps.py          app configs, the throwaway MariaDB app, truncate_all, live_server
  delivery.py      destinations, ingest calls and worker subprocesses for delivery tests
  otp.py           OTP API apps whose throttle counters are their own
  reports.py       the hand-made data set of test_reports.py
  stub_platform.py a real HTTP server that plays an ad platform
  connectors.py    the connector harness run by every tests/test_connector_<name>.py
  servers.py       real server processes (gunicorn, nginx): free ports, process groups, waits
  nginx.py         deploy/nginx/sst.conf on local ports with a self-signed certificate
"""
