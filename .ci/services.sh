#!/usr/bin/env bash
# The services the replica tests need: a real PostgreSQL on loopback (Debian's package).
# The S3-API server (moto) is started by the tests themselves (tests/replicas_support.py).
#
#   source .ci/services.sh && services_start   # exports MCPI_TEST_DATABASE_URL
#   services_stop                              # (.ci/run traps it on EXIT)
#
# MCPI_PG_OPTIONS adds server options (benchmarks/replicas.py: -c shared_preload_libraries=pg_stat_statements).
#
# Run on its own, `.ci/services.sh start` prints the export line and leaves the server running
# until `.ci/services.sh stop`.

_pg_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
  done
  return 1
}

_as_pg() {
  # initdb and postgres refuse to run as root: run them as the postgres user then.
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

services_start() {
  local bin sudo="" port dir
  if ! bin="$(_pg_bin)"; then
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql
    bin="$(_pg_bin)"
  fi
  dir="$(mktemp -d /tmp/mcpi-pg.XXXXXX)"
  chmod 755 "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  echo "mcp-test-password" > "$dir/pw"
  _as_pg "$bin/initdb" -D "$dir/data" -U mcp --pwfile="$dir/pw" --auth=scram-sha-256 -E UTF8 >/dev/null
  _as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=300 ${MCPI_PG_OPTIONS:-}" start >/dev/null
  PGPASSWORD=mcp-test-password "$bin/createdb" -h 127.0.0.1 -p "$port" -U mcp mcp_test
  export MCPI_PG_DIR="$dir" MCPI_PG_BIN="$bin"
  export MCPI_TEST_DATABASE_URL="postgresql://mcp:mcp-test-password@127.0.0.1:$port/mcp_test"
  echo "PostgreSQL on 127.0.0.1:$port (data in $dir)" >&2
}

services_stop() {
  [ -n "${MCPI_PG_DIR:-}" ] || return 0
  _as_pg "$MCPI_PG_BIN/pg_ctl" -D "$MCPI_PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$MCPI_PG_DIR"
  unset MCPI_PG_DIR
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    start) services_start; echo "export MCPI_TEST_DATABASE_URL='$MCPI_TEST_DATABASE_URL' MCPI_PG_DIR='$MCPI_PG_DIR' MCPI_PG_BIN='$MCPI_PG_BIN'" ;;
    stop) services_stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
  esac
fi
