#!/usr/bin/env bash
# Drivers' own test suites, run directly against a throwaway PostgreSQL and
# through pgveil, in two configurations: no policy (sessions relayed), and a
# policy protecting a column the suites never touch (every session masked,
# so every statement is analysed). Prints passed/failed/errors/skipped per
# suite and configuration, then every test whose outcome through pgveil
# differs from its outcome direct. Exits 1 if one of them is not listed,
# with its reason, in tests/drivers/known-differences.txt; 3 if the suites
# cannot be installed.
#
#   tests/drivers/run.sh                 # every suite, every configuration
#   tests/drivers/run.sh --fast          # a few minutes: subsets of psycopg2 and asyncpg, node-postgres
#   tests/drivers/run.sh psycopg2        # one suite
#
# Suites and where their tests come from (the registries, pinned):
#   psycopg2        - tests of the psycopg2 sdist on PyPI, run against the
#                     psycopg2-binary wheel of the same version
#   asyncpg         - tests of the asyncpg sdist on PyPI, run against its wheel
#   tokio-postgres  - the crate's own tests (crates.io; the version in
#                     Cargo.lock), with the hard-coded port 5433 replaced by
#                     the port under test; not in --fast (it compiles for
#                     minutes)
#   node-postgres   - the `pg` package on npm ships without its tests:
#                     tests/drivers/node_pg.js exercises it (simple and
#                     extended protocol, prepared statements, binary results,
#                     COPY, cursors, pipelining, cancel, LISTEN, pools) with
#                     pg, pg-cursor and pg-copy-streams from npm, pinned
# Needs python3 (venv), node and npm, PostgreSQL server binaries (PG_BIN or
# /usr/lib/postgresql/*/bin) and cargo. PGVEIL=path/to/pgveil tests that
# binary (default: a release build of this tree). Work files go to
# $DRIVERS_WORK (default: a temporary directory, removed at exit); downloads
# and builds are cached in $DRIVERS_CACHE (default: target/drivers).
set -euo pipefail
# One compound command, read whole before it runs: editing this file during
# a run cannot change the run.
{

PSYCOPG2_VERSION=2.9.10
ASYNCPG_VERSION=0.30.0
NODE_PACKAGES=(pg@8.23.1 pg-cursor@2.22.0 pg-copy-streams@7.0.0)

FAST=0
SUITES=()
for arg in "$@"; do
    case "$arg" in
        --fast) FAST=1 ;;
        psycopg2 | asyncpg | tokio-postgres | node-postgres) SUITES+=("$arg") ;;
        *) echo "unknown argument: $arg (suites: psycopg2 asyncpg tokio-postgres node-postgres; --fast)" >&2; exit 2 ;;
    esac
done
if [ ${#SUITES[@]} -eq 0 ]; then
    if [ "$FAST" = 1 ]; then SUITES=(psycopg2 asyncpg node-postgres); else SUITES=(psycopg2 asyncpg tokio-postgres node-postgres); fi
fi
# Seconds one suite may run in one configuration; a run cut short shows up as
# tests "missing" through pgveil.
if [ "$FAST" = 1 ]; then SUITE_TIMEOUT=${DRIVERS_SUITE_TIMEOUT:-300}; else SUITE_TIMEOUT=${DRIVERS_SUITE_TIMEOUT:-1800}; fi

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
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
# Exit status 3: the suites could not be installed (no python3 venv, PyPI
# unreachable); tests/drivers.rs skips then, except under CI.
cannot_install() { echo "cannot install the drivers' suites: $1" >&2; exit 3; }
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" || cannot_install "python3 -m venv failed"
fi
"$VENV/bin/pip" install -q "psycopg2-binary==$PSYCOPG2_VERSION" "asyncpg==$ASYNCPG_VERSION" \
    pytest==9.2.0 distro==1.9.0 uvloop==0.23.0 >/dev/null || cannot_install "pip install failed"
fetch_sdist() { # name version -> unpacked directory
    local dir=$CACHE/$1-$2
    if [ ! -d "$dir/tests" ]; then
        "$VENV/bin/pip" install -q wheel setuptools >/dev/null || return 1
        # psycopg2's metadata step runs pg_config.
        PATH="$PG_BIN:$PATH" "$VENV/bin/pip" download -q --no-deps --no-binary :all: --no-build-isolation \
            -d "$CACHE" "$1==$2" >/dev/null || return 1
        tar xzf "$CACHE/$1-$2.tar.gz" -C "$CACHE" || return 1
    fi
    echo "$dir"
}
NODE_DIR=$CACHE/node
for suite in "${SUITES[@]}"; do
    case "$suite" in
        psycopg2) fetch_sdist psycopg2 "$PSYCOPG2_VERSION" >/dev/null || cannot_install "psycopg2 sdist" ;;
        asyncpg) fetch_sdist asyncpg "$ASYNCPG_VERSION" >/dev/null || cannot_install "asyncpg sdist" ;;
        node-postgres)
            command -v node >/dev/null && command -v npm >/dev/null || cannot_install "node and npm not found"
            if [ "$(cat "$NODE_DIR/.installed" 2>/dev/null)" != "${NODE_PACKAGES[*]}" ]; then
                mkdir -p "$NODE_DIR" && echo '{"private": true}' >"$NODE_DIR/package.json"
                (cd "$NODE_DIR" && npm install --no-audit --no-fund --silent "${NODE_PACKAGES[@]}") >/dev/null \
                    || cannot_install "npm install ${NODE_PACKAGES[*]} failed"
                echo "${NODE_PACKAGES[*]}" >"$NODE_DIR/.installed"
            fi
            ;;
    esac
done

# --- PostgreSQL -------------------------------------------------------------
chown postgres "$WORK" 2>/dev/null || true
as_pg "$PG_BIN/initdb" -D "$WORK/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >/dev/null
cat >>"$WORK/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
fsync = off
synchronous_commit = off
max_connections = 300
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
max_prepared_transactions = 10
CONF
# tokio-postgres' tests log in as pass_user, md5_user and scram_user with
# those authentication methods; everyone else is trusted.
cat >"$WORK/data/pg_hba.conf" <<CONF
local all all trust
host all pass_user 127.0.0.1/32 password
host all md5_user 127.0.0.1/32 md5
host all scram_user 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
CONF
# A free port can be taken between free_port and the bind: try another.
for attempt in 1 2 3; do
    PGPORT=$(free_port)
    as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -o "-p $PGPORT" -w start >/dev/null && break
    [ "$attempt" = 3 ] && { cat "$WORK/postgres.log" >&2; exit 1; }
done
psql_su() { PGOPTIONS="-c client_min_messages=warning" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK" -p "$PGPORT" -U postgres "$@"; }
psql_su -d postgres -c "CREATE DATABASE psycopg2_test" -c "CREATE DATABASE asyncpg_test"
psql_su -d postgres <<'SQL'
CREATE ROLE pass_user LOGIN PASSWORD 'password';
SET password_encryption = 'md5';
CREATE ROLE md5_user LOGIN PASSWORD 'password';
SET password_encryption = 'scram-sha-256';
CREATE ROLE scram_user LOGIN PASSWORD 'password';
SQL

# --- pgveil -----------------------------------------------------------------
if [ -z "${PGVEIL:-}" ]; then
    (cd "$ROOT" && cargo build --release -q)
    PGVEIL=$ROOT/target/release/pgveil
fi
mkdir -p "$WORK/policy"
cat >"$WORK/policy/canary.yaml" <<'YAML'
# Protects a column no suite touches: every role gets its default mask, so
# every session is masked and every statement analysed.
version: 1
columns:
  public.pgveil_canary.secret:
    class: C3
    mask: redact
YAML
for db in postgres psycopg2_test asyncpg_test; do
    psql_su -d "$db" -c "CREATE TABLE IF NOT EXISTS pgveil_canary (id int, secret text)"
done
start_pgveil() { # variable [policy dir]: sets the variable to pgveil's port
    local attempt port pid args
    for attempt in 1 2 3; do
        port=$(free_port)
        args=(serve --listen "127.0.0.1:$port" --upstream "127.0.0.1:$PGPORT" --metrics-listen "")
        [ -n "${2:-}" ] && args+=(--policies "$2" --catalog-user postgres)
        PGVEIL_LOG=warn "$PGVEIL" "${args[@]}" >>"$WORK/pgveil-$1.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        for _ in $(seq 300); do
            # Alive, so the port answering is this pgveil's.
            kill -0 "$pid" 2>/dev/null || break
            if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port"; then
                printf -v "$1" '%s' "$port"
                return 0
            fi
            sleep 0.1
        done
        kill "$pid" 2>/dev/null || true
    done
    echo "pgveil did not start: $(cat "$WORK/pgveil-$1.log")" >&2
    exit 1
}
start_pgveil PLAIN_PORT
start_pgveil MASKED_PORT "$WORK/policy"

# --- suites -----------------------------------------------------------------
# run_SUITE PORT LABEL writes one line "ID<TAB>OUTCOME" per test to
# $WORK/results/SUITE-LABEL.txt and leaves its output in $WORK/logs.
mkdir -p "$WORK/logs" "$WORK/results"

run_psycopg2() { # port label
    local src
    src=$(fetch_sdist psycopg2 "$PSYCOPG2_VERSION")
    local tests=tests.test_suite
    # The fast subset: connection, cursor, transaction, notify, COPY,
    # large objects, replication.
    [ "$FAST" = 1 ] && tests="tests.test_connection tests.test_cursor tests.test_transaction tests.test_notify tests.test_copy tests.test_lobject tests.test_replication"
    # PSYCOPG2_TEST_FAST=1 (psycopg2's own switch) skips the tests it marks
    # slow: sleeps and wall-clock bounds.
    # shellcheck disable=SC2086
    (cd "$src" && PSYCOPG2_TEST_FAST=$FAST PSYCOPG2_TESTDB=psycopg2_test PSYCOPG2_TESTDB_HOST=127.0.0.1 \
        PSYCOPG2_TESTDB_PORT="$1" PSYCOPG2_TESTDB_USER=postgres \
        PSYCOPG2_TEST_REPL_DSN="host=127.0.0.1 port=$1 user=postgres dbname=psycopg2_test replication=database" \
        timeout -k 10 "$SUITE_TIMEOUT" "$VENV/bin/python" "$HERE/record_unittest.py" \
        "$WORK/results/psycopg2-$2.txt" $tests) >"$WORK/logs/psycopg2-$2.log" 2>&1 || true
}

run_asyncpg() { # port label
    local src
    src=$(fetch_sdist asyncpg "$ASYNCPG_VERSION")
    # Outside the source tree, so the installed wheel is what is imported.
    rm -rf "$WORK/asyncpg-tests" && mkdir -p "$WORK/asyncpg-tests"
    cp -r "$src/tests" "$WORK/asyncpg-tests/"
    local sel=(tests)
    [ "$FAST" = 1 ] && sel=(tests/test_execute.py tests/test_prepare.py tests/test_copy.py tests/test_cursor.py tests/test_listeners.py tests/test_transaction.py)
    (cd "$WORK/asyncpg-tests" && PGHOST=127.0.0.1 PGPORT="$1" PGUSER=postgres PGDATABASE=postgres \
        DRIVERS_RESULTS="$WORK/results/asyncpg-$2.txt" PYTHONPATH="$HERE" \
        timeout -k 10 "$SUITE_TIMEOUT" "$VENV/bin/python" -m pytest -v -p no:cacheprovider -p record_pytest \
        "${sel[@]}") >"$WORK/logs/asyncpg-$2.log" 2>&1 || true
}

# tokio-postgres: the crate's sources as cargo fetched them for this tree,
# copied, with each hard-coded "…5433…" connection string read through
# pgveil_port(), which puts $DRIVERS_PORT in its place. Built once.
TP_FEATURES=array-impls,runtime,with-bit-vec-0_6,with-bit-vec-0_7,with-bit-vec-0_8,with-bit-vec-0_9,with-chrono-0_4,with-eui48-1,with-geo-types-0_6,with-geo-types-0_7,with-jiff-0_1,with-jiff-0_2,with-serde_json-1,with-smol_str-01,with-time-0_2,with-time-0_3,with-uuid-0_8,with-uuid-1
tokio_postgres_src() {
    local version dir src
    version=$(awk '/^name = "tokio-postgres"$/ { getline; gsub(/"/, "", $3); print $3 }' "$ROOT/Cargo.lock")
    dir=$CACHE/tokio-postgres-$version
    if [ ! -f "$dir/.pgveil-patched" ]; then
        (cd "$ROOT" && cargo fetch -q)
        src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"tokio-postgres-$version" | head -1)
        rm -rf "$dir" && cp -r "$src" "$dir" && chmod -R u+w "$dir"
        for f in "$dir/tests/test/main.rs" "$dir/tests/test/runtime.rs"; do
            perl -0pi -e 's/"([^"]*?5433[^"]*?)"/&pgveil_port("$1")/g' "$f"
            printf '\nfn pgveil_port(s: &str) -> String {\n    s.replace("5433", &std::env::var("DRIVERS_PORT").expect("DRIVERS_PORT"))\n}\n' >>"$f"
        done
        touch "$dir/.pgveil-patched"
    fi
    echo "$dir"
}

run_tokio-postgres() { # port label
    local src
    src=$(tokio_postgres_src)
    # Its tests expect these in database postgres. Created here, not at
    # start: asyncpg's tests create and drop hstore and citext themselves.
    psql_su -d postgres -c "CREATE EXTENSION IF NOT EXISTS hstore" \
        -c "CREATE EXTENSION IF NOT EXISTS citext" -c "CREATE EXTENSION IF NOT EXISTS ltree"
    export CARGO_TARGET_DIR=$CACHE/tokio-postgres-target
    (cd "$src" && nice -n 10 cargo test -q --features "$TP_FEATURES" --test test --no-run) \
        >"$WORK/logs/tokio-postgres-build.log" 2>&1 || { cat "$WORK/logs/tokio-postgres-build.log" >&2; return 0; }
    (cd "$src" && DRIVERS_PORT=$1 timeout -k 10 "$SUITE_TIMEOUT" \
        cargo test --features "$TP_FEATURES" --test test -- --test-threads 4) \
        >"$WORK/logs/tokio-postgres-$2.log" 2>&1 || true
    perl -ne 'print "$1\t", ($2 eq "ok" ? "pass" : $2 eq "FAILED" ? "fail" : "skip"), "\n" if /^test (\S+) \.\.\. (ok|FAILED|ignored)/' \
        "$WORK/logs/tokio-postgres-$2.log" >"$WORK/results/tokio-postgres-$2.txt"
}

# DRIVERS_CONFIGS="direct masked" skips the run through pgveil with no
# policy (while iterating on the analyser).
export DRIVERS_CONFIGS=${DRIVERS_CONFIGS:-direct plain masked}
run_node-postgres() { # port label
    (cd "$NODE_DIR" && NODE_PATH="$NODE_DIR/node_modules" PGHOST=127.0.0.1 PGPORT="$1" \
        timeout -k 10 "$SUITE_TIMEOUT" node "$HERE/node_pg.js" "$WORK/results/node-postgres-$2.txt") \
        >"$WORK/logs/node-postgres-$2.log" 2>&1 || true
}

for suite in "${SUITES[@]}"; do
    echo "running $suite: $DRIVERS_CONFIGS" >&2
    for config in $DRIVERS_CONFIGS; do
        case "$config" in
            direct) run_"$suite" "$PGPORT" direct ;;
            plain) run_"$suite" "$PLAIN_PORT" plain ;;
            masked) run_"$suite" "$MASKED_PORT" masked ;;
            *) echo "unknown configuration in DRIVERS_CONFIGS: $config" >&2; exit 2 ;;
        esac
    done
done
status=0
python3 "$HERE/compare.py" "$WORK/results" "$HERE/known-differences.txt" "${SUITES[@]}" || status=1
echo "logs: $WORK/logs (set DRIVERS_WORK to keep them)"
exit "$status"
}
