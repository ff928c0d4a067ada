#!/usr/bin/env bash
# Make sure nginx is installed for the deployment tests (tests/test_deploy*.py run
# deploy/nginx/sst.conf through `nginx -t` and in front of a real gunicorn) and for
# scripts/bench_slow_clients. Installs Debian's nginx with apt when missing and this runs as
# root; otherwise says so and exits 1. Only the binary is used: the tests run their own nginx
# on free ports with a temporary prefix; Debian's own nginx service is never started.
set -euo pipefail

NGINX="${SST_TEST_NGINX:-/usr/sbin/nginx}"
if [ ! -x "$NGINX" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deploy_deps: $NGINX is missing and this is not root: apt-get install nginx-light" >&2
    exit 1
  fi
  if [ -z "${SST_APT_UPDATED:-}" ]; then apt-get update -qq; export SST_APT_UPDATED=1; fi
  # policy-rc.d: the package must not start (or fail to start) a system nginx on port 80.
  policy=/usr/sbin/policy-rc.d
  had_policy=0; [ -e "$policy" ] && had_policy=1
  [ "$had_policy" = 1 ] || { printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null || status=$?
  [ "$had_policy" = 1 ] || rm -f "$policy"
  [ "${status:-0}" = 0 ] || { echo "deploy_deps: apt-get install nginx-light failed" >&2; exit 1; }
  [ -x "$NGINX" ] || { echo "deploy_deps: nginx installed, but not at $NGINX" >&2; exit 1; }
fi
echo "deploy_deps: $("$NGINX" -v 2>&1)"
