#!/usr/bin/env bash
# Make sure MariaDB (127.0.0.1:3306, root, empty password) and Redis (127.0.0.1:6379) run.
# Installs them from Debian's packages when missing and this runs as root; otherwise says
# exactly what is missing and exits 1.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
  return 1
}

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "services: $1 is not running on 127.0.0.1 and this is not root: start it yourself" >&2
    exit 1
  fi
}

apt_install() {
  if [ -z "${SST_APT_UPDATED:-}" ]; then apt-get update -qq; export SST_APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! port_open 3306; then
  need_root MariaDB
  command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || apt_install mariadb-server
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
  wait_port 3306 || { echo "services: MariaDB did not start" >&2; exit 1; }
fi
# A fresh Debian MariaDB lets root in only through the socket: allow root from 127.0.0.1.
if command -v mariadb >/dev/null && ! mariadb -h127.0.0.1 -uroot -e 'SELECT 1' >/dev/null 2>&1
then
  if [ "$(id -u)" = 0 ] && mariadb -uroot -e 'SELECT 1' >/dev/null 2>&1; then
    mariadb -uroot -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
      GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES;"
  else
    echo "services: cannot log in to MariaDB as root@127.0.0.1 with an empty password" >&2
    exit 1
  fi
fi

if ! port_open 6379; then
  need_root Redis
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379 || { echo "services: Redis did not start" >&2; exit 1; }
fi
echo "services: MariaDB and Redis are up"
