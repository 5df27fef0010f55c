#!/usr/bin/env bash
# Wall time of a migration-like script of DDL statements, run with psql -f
# directly against PostgreSQL and through pgveil as a masked role (the
# policy packs loaded, so every statement is analysed and every DDL
# refreshes the catalog), once in autocommit and once in one transaction
# (psql -1, as migration tools do).
#
#   bench/migration.sh                 # 40 tables, 5 statements each = 200 DDL
#   TABLES=100 bench/migration.sh
#   PROFILE=debug bench/migration.sh   # use a debug build (faster to build)
#   PGVEIL_BIN=path/to/pgveil bench/migration.sh   # that binary, no build
#   PGVEIL_BEFORE=/path/to/older/pgveil bench/migration.sh   # adds its rows
#
# With PGVEIL_BEFORE, each pgveil gets its own database: the two proxies run side
# by side against one server, one measurement after the other.
set -euo pipefail
cd "$(dirname "$0")/.."

TABLES=${TABLES:-40}
PROFILE=${PROFILE:-release}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL server binaries not found; set PG_BIN" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

WORK=$(mktemp -d /tmp/pgveil-migration.XXXXXX)
chmod 755 "$WORK"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK"
VEIL_PIDS=()
cleanup() {
  for pid in "${VEIL_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

PG_PORT=$(free_port)
if [ -n "${PGVEIL_BIN:-}" ]; then
  BIN=$PGVEIL_BIN
elif [ "$PROFILE" = release ]; then
  echo "building pgveil (release)..." >&2
  cargo build --release --quiet
  BIN=target/release/pgveil
else
  cargo build --quiet
  BIN=target/debug/pgveil
fi

as_pg "$PG_BIN/initdb" -D "$WORK/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >/dev/null
cat >>"$WORK/data/postgresql.conf" <<CONF
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
fsync = off
synchronous_commit = off
CONF
as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w start >/dev/null
"$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "CREATE ROLE migrator LOGIN"
for db in mig mig_base; do
  "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "CREATE DATABASE $db OWNER migrator"
done

# migrator is named by no rule of the packs: every column the packs protect
# gets its default mask, so the session is guarded (analysed and planned).
start_pgveil() { # binary; sets VEIL_PORT
  local port; port=$(free_port)
  PGVEIL_KEY_PII=bench-key-0123456789abcdef PGVEIL_KEY_PAN_TOKEN=bench-key-0123456789abcdef \
  "$1" serve --listen "127.0.0.1:$port" --upstream "127.0.0.1:$PG_PORT" \
    --metrics-listen "" --policies policies --catalog-user postgres 2>>"$WORK/pgveil.log" &
  VEIL_PIDS+=($!)
  for _ in $(seq 50); do "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" && break; sleep 0.1; done
  VEIL_PORT=$port
}
start_pgveil "$BIN"; NEW_PORT=$VEIL_PORT
if [ -n "${PGVEIL_BEFORE:-}" ]; then start_pgveil "$PGVEIL_BEFORE"; BASE_PORT=$VEIL_PORT; fi

# One "migration" per table: create, add a column, index, view, comment.
script() {
  local prefix=$1
  for i in $(seq "$TABLES"); do
    echo "CREATE TABLE ${prefix}_t$i (id bigserial PRIMARY KEY, name text NOT NULL, created timestamptz DEFAULT now());"
    echo "ALTER TABLE ${prefix}_t$i ADD COLUMN note text;"
    echo "CREATE INDEX ON ${prefix}_t$i (name);"
    echo "CREATE VIEW ${prefix}_v$i AS SELECT id, name FROM ${prefix}_t$i;"
    echo "COMMENT ON TABLE ${prefix}_t$i IS 'migration $i';"
  done
}
STATEMENTS=$((TABLES * 5))

run() { # label port database prefix [psql options]
  local label=$1 port=$2 db=$3 prefix=$4; shift 4
  script "$prefix" >"$WORK/$prefix.sql"
  local start end
  start=$(date +%s%N)
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U migrator -d "$db" "$@" -f "$WORK/$prefix.sql" >/dev/null
  end=$(date +%s%N)
  local ms=$(( (end - start) / 1000000 ))
  printf '%-36s %6d ms  %6.2f ms/statement\n' "$label" "$ms" "$(echo "$ms / $STATEMENTS" | bc -l)"
}

echo "$STATEMENTS DDL statements, psql -f"
run "direct, autocommit" "$PG_PORT" mig d1
run "pgveil (masked), autocommit" "$NEW_PORT" mig p1
[ -n "${PGVEIL_BEFORE:-}" ] && run "before (masked), autocommit" "$BASE_PORT" mig_base b1
run "direct, one transaction" "$PG_PORT" mig d2 -1
run "pgveil (masked), one transaction" "$NEW_PORT" mig p2 -1
[ -n "${PGVEIL_BEFORE:-}" ] && run "before (masked), one transaction" "$BASE_PORT" mig_base b2 -1
true
