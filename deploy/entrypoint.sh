#!/bin/sh
# Container entrypoint. For each SST_<NAME>_FILE in the environment (Docker or compose
# secrets), SST_<NAME> gets that file's content. Then the command runs in this process, so
# it receives the stop signal: `gunicorn …`, `sst worker`, `sst db upgrade` or any `sst …`.
set -eu
for name in $(env | sed -n 's/^\(SST_[A-Z0-9_]*\)_FILE=.*/\1/p'); do
  file=$(printenv "${name}_FILE")
  [ -r "$file" ] || { echo "entrypoint: ${name}_FILE=$file is not readable" >&2; exit 1; }
  value=$(cat "$file")
  export "$name=$value"
  unset "${name}_FILE"
done
# The image sets PROMETHEUS_MULTIPROC_DIR under /tmp (a tmpfs in compose): make sure it
# exists for every command. gunicorn.conf.py empties it when the web server starts.
[ -z "${PROMETHEUS_MULTIPROC_DIR:-}" ] || mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
[ "$#" -gt 0 ] || set -- gunicorn --config /etc/sst/gunicorn.conf.py sst.wsgi:app
exec "$@"
