#!/usr/bin/env bash
# Make sure Debian's Chromium is at /usr/bin/chromium for the browser tests (tests/test_*_browser.py
# drives it with Playwright's executable_path; we never download Playwright's own browsers).
# Installs it with apt when missing and this runs as root; otherwise says so and exits 1.
# The playwright Python package comes with the dev extra (pip install -e '.[dev]').
set -euo pipefail

CHROMIUM="${SST_TEST_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "browser_deps: $CHROMIUM is missing and this is not root: apt-get install chromium" >&2
    exit 1
  fi
  if [ -z "${SST_APT_UPDATED:-}" ]; then apt-get update -qq; export SST_APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  [ -x "$CHROMIUM" ] || { echo "browser_deps: chromium installed, but not at $CHROMIUM" >&2; exit 1; }
fi
echo "browser_deps: $("$CHROMIUM" --version 2>/dev/null | head -1)"
