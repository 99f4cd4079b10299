#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster on loopback for tests and benchmarks; sourced by
# tests/run and tests/bench. Installs Debian's postgresql if no server binaries are found.
# After `pg_up [durable]`: DATABASE_URL points at it; `pg_down` (run on EXIT) removes it.
# "durable" keeps PostgreSQL's default fsync/synchronous_commit (benchmarks); tests turn them off.

pg_bindir() {
  local dir
  if command -v pg_config >/dev/null 2>&1; then
    dir=$(pg_config --bindir)
    [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
  fi
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
  return 1
}

pg_install() {
  echo "pg.sh: no PostgreSQL server binaries found; installing Debian's postgresql" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
}

# As root, PostgreSQL must run as an unprivileged user (initdb refuses root).
pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pg_up() {
  local mode=${1:-fast} bindir
  bindir=$(pg_bindir) || { pg_install && bindir=$(pg_bindir); } || {
    echo "pg.sh: PostgreSQL is not installed and could not be installed" >&2; return 1; }
  PG_TMP=$(mktemp -d /tmp/dashclaw-pg.XXXXXX)
  chmod 755 "$PG_TMP"
  [ "$(id -u)" = 0 ] && chown postgres: "$PG_TMP"
  PG_PORT=$(pg_free_port)
  pg_as_owner "$bindir/initdb" -D "$PG_TMP/data" -U postgres --auth=trust -E UTF8 \
    --no-instructions >"$PG_TMP/initdb.log" 2>&1 || { cat "$PG_TMP/initdb.log" >&2; return 1; }
  local opts="-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_TMP -c max_connections=300"
  opts="$opts -c shared_buffers=256MB"
  [ "$mode" = durable ] || opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  pg_as_owner "$bindir/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/server.log" -o "$opts" -w start >/dev/null \
    || { cat "$PG_TMP/server.log" >&2; return 1; }
  PG_BINDIR=$bindir
  export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  echo "pg.sh: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') ($mode) at $DATABASE_URL" >&2
  trap pg_down EXIT
}

pg_down() {
  [ -n "${PG_TMP:-}" ] || return 0
  pg_as_owner "$PG_BINDIR/pg_ctl" -D "$PG_TMP/data" -m immediate -w stop >/dev/null 2>&1
  rm -rf "$PG_TMP"
  PG_TMP=
}
