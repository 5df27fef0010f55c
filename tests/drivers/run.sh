#!/usr/bin/env bash
# Drivers' own test suites, run directly against a throwaway PostgreSQL and
# through pgveil, in two configurations: no policy (sessions relayed), and a
# policy protecting a column the suites never touch (every session masked,
# so every statement is analysed). Prints pass/fail counts side by side.
#
#   tests/drivers/run.sh                 # every suite, every configuration
#   tests/drivers/run.sh --fast          # a few minutes: a subset of each
#   tests/drivers/run.sh psycopg2        # one suite
#
# Suites and where their tests come from (the registries, pinned):
#   psycopg2  - tests of the psycopg2 sdist on PyPI, run against the
#               psycopg2-binary wheel of the same version
#   asyncpg   - tests of the asyncpg sdist on PyPI, run against its wheel
# node-postgres is not here: the `pg` package on npm ships without tests.
# Needs python3 (venv), PostgreSQL server binaries (PG_BIN or
# /usr/lib/postgresql/*/bin) and cargo (or PGVEIL=path/to/pgveil). Work files go to $DRIVERS_WORK
# (default: a temporary directory, removed at exit).
set -euo pipefail

PSYCOPG2_VERSION=2.9.10
ASYNCPG_VERSION=0.30.0

FAST=0
SUITES=()
for arg in "$@"; do
    case "$arg" in
        --fast) FAST=1 ;;
        psycopg2 | asyncpg) SUITES+=("$arg") ;;
        *) echo "unknown argument: $arg (suites: psycopg2 asyncpg; --fast)" >&2; exit 2 ;;
    esac
done
[ ${#SUITES[@]} -eq 0 ] && SUITES=(psycopg2 asyncpg)

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL server binaries not found: set PG_BIN" >&2; exit 2; }
CACHE=${DRIVERS_CACHE:-$ROOT/target/drivers}
WORK=${DRIVERS_WORK:-$(mktemp -d /tmp/pgveil-drivers.XXXXXX)}
mkdir -p "$CACHE" "$WORK"
chmod 755 "$WORK"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -d "$WORK/data" ] && as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
    if [ -z "${DRIVERS_WORK:-}" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- sources and clients --------------------------------------------------
VENV=$CACHE/venv
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q "psycopg2-binary==$PSYCOPG2_VERSION" "asyncpg==$ASYNCPG_VERSION" \
    pytest distro uvloop >/dev/null
fetch_sdist() { # name version -> unpacked directory
    local dir=$CACHE/$1-$2
    if [ ! -d "$dir/tests" ]; then
        "$VENV/bin/pip" install -q wheel setuptools >/dev/null
        "$VENV/bin/pip" download -q --no-deps --no-binary :all: --no-build-isolation \
            -d "$CACHE" "$1==$2" >/dev/null
        tar xzf "$CACHE/$1-$2.tar.gz" -C "$CACHE"
    fi
    echo "$dir"
}

# --- PostgreSQL -------------------------------------------------------------
PGPORT=$(free_port)
chown postgres "$WORK" 2>/dev/null || true
as_pg "$PG_BIN/initdb" -D "$WORK/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >/dev/null
cat >>"$WORK/data/postgresql.conf" <<EOF
port = $PGPORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
fsync = off
synchronous_commit = off
max_connections = 300
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
max_prepared_transactions = 10
EOF
cat >"$WORK/data/pg_hba.conf" <<EOF
local all all trust
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
EOF
as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w start >/dev/null
psql_su() { "$PG_BIN/psql" -X -q -h "$WORK" -p "$PGPORT" -U postgres "$@"; }
psql_su -d postgres -c "CREATE DATABASE psycopg2_test" -c "CREATE DATABASE asyncpg_test"

# --- pgveil -----------------------------------------------------------------
# PGVEIL: a pgveil binary to test (default: a release build of this tree).
if [ -z "${PGVEIL:-}" ]; then
    (cd "$ROOT" && cargo build --release -q)
    PGVEIL=$ROOT/target/release/pgveil
fi
mkdir -p "$WORK/policy"
cat >"$WORK/policy/canary.yaml" <<'EOF'
# Protects a column no suite touches: every role gets its default mask, so
# every session is masked and every statement analysed.
version: 1
columns:
  public.pgveil_canary.secret:
    class: C3
    mask: redact
EOF
for db in postgres psycopg2_test asyncpg_test; do
    psql_su -d "$db" -c "CREATE TABLE IF NOT EXISTS pgveil_canary (id int, secret text)"
done
start_pgveil() { # port [policy dir]
    local args=(serve --listen "127.0.0.1:$1" --upstream "127.0.0.1:$PGPORT" --metrics-listen "")
    [ -n "${2:-}" ] && args+=(--policies "$2" --catalog-user postgres)
    PGVEIL_LOG=warn "$PGVEIL" "${args[@]}" >>"$WORK/pgveil-$1.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" && return 0
        sleep 0.1
    done
    echo "pgveil did not start: $(cat "$WORK/pgveil-$1.log")" >&2
    exit 1
}
PLAIN_PORT=$(free_port)
start_pgveil "$PLAIN_PORT"
MASKED_PORT=$(free_port)
start_pgveil "$MASKED_PORT" "$WORK/policy"

# --- suites -----------------------------------------------------------------
# Each run prints one line "passed failed" (errors count as failed) to stdout
# and leaves its log in $WORK/logs.
mkdir -p "$WORK/logs"

run_psycopg2() { # port label
    local src
    src=$(fetch_sdist psycopg2 "$PSYCOPG2_VERSION")
    local log=$WORK/logs/psycopg2-$2.log
    local tests="tests.test_suite"
    # The fast subset: connection, cursor, transaction, notify, COPY,
    # large objects, replication.
    [ "$FAST" = 1 ] && tests="tests.test_connection tests.test_cursor tests.test_transaction tests.test_notify tests.test_copy tests.test_lobject tests.test_replication"
    (cd "$src" && PSYCOPG2_TESTDB=psycopg2_test PSYCOPG2_TESTDB_HOST=127.0.0.1 \
        PSYCOPG2_TESTDB_PORT="$1" PSYCOPG2_TESTDB_USER=postgres \
        PSYCOPG2_TEST_REPL_DSN="host=127.0.0.1 port=$1 user=postgres dbname=psycopg2_test replication=database" \
        timeout 1800 "$VENV/bin/python" -m unittest -v $tests) >"$log" 2>&1 || true
    python3 - "$log" <<'EOF'
import re, sys
text = open(sys.argv[1], errors="replace").read()
ran = re.findall(r"^Ran (\d+) tests?", text, re.M)
ran = int(ran[-1]) if ran else 0
def count(word):
    m = re.findall(rf"{word}=(\d+)", text.splitlines()[-1] if text.strip() else "")
    return int(m[0]) if m else 0
failed = count("failures") + count("errors")
skipped = count("skipped")
print(ran - failed - skipped, failed)
EOF
}

run_asyncpg() { # port label
    local src
    src=$(fetch_sdist asyncpg "$ASYNCPG_VERSION")
    local log=$WORK/logs/asyncpg-$2.log
    # Outside the source tree, so the installed wheel is what is imported.
    rm -rf "$WORK/asyncpg-tests" && mkdir -p "$WORK/asyncpg-tests"
    cp -r "$src/tests" "$WORK/asyncpg-tests/"
    local sel=(tests)
    [ "$FAST" = 1 ] && sel=(tests/test_execute.py tests/test_prepare.py tests/test_copy.py tests/test_listeners.py tests/test_transaction.py)
    (cd "$WORK/asyncpg-tests" && PGHOST=127.0.0.1 PGPORT="$1" PGUSER=postgres PGDATABASE=postgres \
        timeout 1800 "$VENV/bin/python" -m pytest -q -p no:cacheprovider "${sel[@]}") >"$log" 2>&1 || true
    python3 - "$log" <<'EOF'
import re, sys
text = open(sys.argv[1], errors="replace").read()
tail = text.strip().splitlines()[-1] if text.strip() else ""
def count(word):
    m = re.search(rf"(\d+) {word}", tail)
    return int(m.group(1)) if m else 0
print(count("passed"), count("failed") + count("errors?"))
EOF
}

printf '%-10s %-16s %-16s %-16s\n' suite direct "pgveil no policy" "pgveil masked"
TOTAL_FAILED_EXTRA=0
for suite in "${SUITES[@]}"; do
    read -r dp df < <(run_"$suite" "$PGPORT" direct)
    read -r pp pf < <(run_"$suite" "$PLAIN_PORT" plain)
    read -r mp mf < <(run_"$suite" "$MASKED_PORT" masked)
    printf '%-10s %-16s %-16s %-16s\n' "$suite" "$dp ok / $df bad" "$pp ok / $pf bad" "$mp ok / $mf bad"
    TOTAL_FAILED_EXTRA=$((TOTAL_FAILED_EXTRA + (pf > df ? pf - df : 0)))
done
echo "logs: $WORK/logs (set DRIVERS_WORK to keep them)"
[ "$TOTAL_FAILED_EXTRA" = 0 ]
