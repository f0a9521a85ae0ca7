# A throw-away PostgreSQL server for the tests: `source .ci/postgres.sh; start_postgres`.
# Exports OPENXPU_TEST_PG_URL, which the store and controller tests run against besides SQLite.
PG_PORT=${PG_PORT:-55432}
PG_DIR=${PG_DIR:-/tmp/openxpu-ci-pg}

start_postgres() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  rm -rf "$PG_DIR"
  mkdir -p "$PG_DIR"
  chown postgres:postgres "$PG_DIR"
  su postgres -s /bin/sh -c "$bin/initdb -D $PG_DIR/data --auth=trust -U postgres >/dev/null"
  su postgres -s /bin/sh -c "$bin/pg_ctl -D $PG_DIR/data -l $PG_DIR/log -w -o '-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off' start >/dev/null"
  su postgres -s /bin/sh -c "$bin/createdb -h 127.0.0.1 -p $PG_PORT -U postgres openxpu_test"
  export OPENXPU_TEST_PG_URL="postgresql://postgres@127.0.0.1:$PG_PORT/openxpu_test"
  echo "PostgreSQL up: $OPENXPU_TEST_PG_URL"
}

stop_postgres() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  su postgres -s /bin/sh -c "$bin/pg_ctl -D $PG_DIR/data -m fast stop >/dev/null" || true
}
