# A throw-away PostgreSQL server for the tests: `source .ci/postgres.sh; start_postgres`.
# Exports OPENXPU_TEST_PG_URL, which the store and controller tests run against besides SQLite.
PG_PORT=${PG_PORT:-55432}
PG_DIR=${PG_DIR:-/tmp/openxpu-ci-pg}

start_postgres() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  # A server left running from an earlier run on this machine: stop it before wiping its files.
  if [ -f "$PG_DIR/data/postmaster.pid" ]; then
    su postgres -s /bin/sh -c "$bin/pg_ctl -D $PG_DIR/data -m immediate stop >/dev/null" || true
  fi
  # Someone else on the port: take a free one.
  if python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $PG_PORT)) != 0)"; then
    PG_PORT=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
  fi
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
