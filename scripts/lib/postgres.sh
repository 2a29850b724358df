# Throwaway PostgreSQL for tests. Sourced by scripts/test.
#
# If GENROUTE_TEST_POSTGRES_URL is already set, it is used as is. Otherwise a fresh cluster is created in a
# temporary directory, started on 127.0.0.1 at a free port, and stopped when the calling script exits.
# Missing PostgreSQL binaries are an error, never a silent skip: the ledger's shared backend must be tested.

pg_bin_dir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

ensure_postgres() {
  if [ -n "${GENROUTE_TEST_POSTGRES_URL:-}" ]; then
    echo "postgres: using GENROUTE_TEST_POSTGRES_URL from the environment"
    return 0
  fi
  local bin
  if ! bin=$(pg_bin_dir); then
    echo "error: PostgreSQL server binaries not found (initdb). Install them (Debian: apt-get install postgresql)" >&2
    echo "       or set GENROUTE_TEST_POSTGRES_URL to a database the tests may create tables in." >&2
    return 1
  fi
  local dir port run_as=()
  dir=$(mktemp -d /tmp/genroute-pg.XXXXXX)
  chmod 755 "$dir"
  mkdir "$dir/pg"
  port=$(free_port)
  # PostgreSQL refuses to run as root: run it as the postgres user in a directory it owns.
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" postgres
    chown postgres "$dir/pg"
    run_as=(su postgres -s /bin/sh -c)
  else
    run_as=(sh -c)
  fi
  "${run_as[@]}" "'$bin/initdb' -D '$dir/pg/data' -U postgres --auth=trust -E UTF8 --no-locale >'$dir/pg/initdb.log' 2>&1" \
    || { cat "$dir/pg/initdb.log" >&2; return 1; }
  "${run_as[@]}" "'$bin/pg_ctl' -D '$dir/pg/data' -l '$dir/pg/log' -w -o \"-c listen_addresses=127.0.0.1 -p $port -k '$dir/pg' -c max_connections=200 -c fsync=on\" start >/dev/null" \
    || { cat "$dir/pg/log" >&2; return 1; }
  export GENROUTE_PG_DIR="$dir" GENROUTE_PG_BIN="$bin"
  "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -q -c "CREATE DATABASE genroute_test;" >/dev/null
  export GENROUTE_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/genroute_test"
  echo "postgres: throwaway cluster at 127.0.0.1:$port ($dir)"
}

stop_postgres() {
  if [ -n "${GENROUTE_PG_DIR:-}" ]; then
    su postgres -s /bin/sh -c "'$GENROUTE_PG_BIN/pg_ctl' -D '$GENROUTE_PG_DIR/pg/data' -m fast -w stop" >/dev/null 2>&1 \
      || "$GENROUTE_PG_BIN/pg_ctl" -D "$GENROUTE_PG_DIR/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$GENROUTE_PG_DIR"
  fi
}
