#!/usr/bin/env bash
# Cost of metrics and the audit trail: pgbench through pgveil (one release
# build, the same policy) without them and with them, and PostgreSQL direct,
# in one run, runs interleaved so drift on a shared machine hits all alike.
#
#   direct: pgbench straight to PostgreSQL
#   off:  --metrics-listen "" and no audit trail
#   on:   /metrics served and scraped every second, --audit-log FILE (block)
#   base: optional, BASE_BIN=/path/to/pgveil built from a commit without
#         the observability code, same flags as off
#
# Workloads: pgbench's built-in select-only (nothing protected: counting
# only) and a select of a masked column (one audit record per statement).
#
#   bench/observe-overhead.sh                 # 15 s per run, 3 rounds
#   DURATION=30 ROUNDS=5 bench/observe-overhead.sh
#   PGVEIL=/path/to/pgveil bench/observe-overhead.sh   # a given build
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-8}
JOBS=${JOBS:-2}
SCALE=${SCALE:-10}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL server binaries not found; set PG_BIN" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

WORK=$(mktemp -d /tmp/pgveil-obs-bench.XXXXXX)
chmod 755 "$WORK"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ -n "${PGVEIL:-}" ]; then
  BIN=$PGVEIL
else
  echo "building pgveil (release)..." >&2
  cargo build --release --quiet
  BIN=target/release/pgveil
fi

PG_PORT=$(free_port)
as_pg "$PG_BIN/initdb" -D "$WORK/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >/dev/null
cat >>"$WORK/data/postgresql.conf" <<CONF
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
max_connections = 100
shared_buffers = 256MB
fsync = off
synchronous_commit = off
CONF
as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w start >/dev/null
"$PG_BIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U postgres postgres >/dev/null 2>&1

# pgbench's role is named by no rule: it gets the default mask of filler.
mkdir -p "$WORK/policies"
cat >"$WORK/policies/bench.yaml" <<YAML
version: 1
columns:
  public.pgbench_accounts.filler:
    class: C2
    mask: { fn: keep, first: 0, last: 4 }
YAML
cat >"$WORK/masked.sql" <<'SQL'
\set aid random(1, 100000 * :scale)
SELECT aid, filler FROM pgbench_accounts WHERE aid = :aid;
SQL

declare -A PORT
declare -A PID
start() { # name binary extra-args...
  local name=$1 bin=$2; shift 2
  local port; port=$(free_port)
  "$bin" serve --listen "127.0.0.1:$port" --upstream "127.0.0.1:$PG_PORT" \
    --policies "$WORK/policies" --catalog-user postgres "$@" >/dev/null 2>"$WORK/$name.log" &
  PIDS+=($!)
  PID[$name]=$!
  for _ in $(seq 100); do "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" && break; sleep 0.1; done
  PORT[$name]=$port
}
METRICS_PORT=$(free_port)
start off "$BIN" --metrics-listen ""
start on "$BIN" --metrics-listen "127.0.0.1:$METRICS_PORT" --audit-log "$WORK/audit.log"
PORT[direct]=$PG_PORT
TARGETS="direct off on"
if [ -n "${BASE_BIN:-}" ]; then
  start base "$BASE_BIN" --metrics-listen ""
  TARGETS="direct base off on"
fi
# Prometheus-like scraping of the instrumented one during its runs.
( while sleep 1; do curl -s "127.0.0.1:$METRICS_PORT/metrics" >/dev/null || true; done ) >/dev/null 2>&1 &
PIDS+=($!)

# CPU time (clock ticks, user + system, all threads) of a process.
ticks() { [ -n "${1:-}" ] && awk '{print $14 + $15}' "/proc/$1/stat" || echo 0; }
TICK_US=$(python3 -c 'import os; print(1e6 / os.sysconf("SC_CLK_TCK"))')
# One pgbench run: "<tps> <pgveil CPU µs per transaction>" (0 for direct).
run() { # target workload mode
  local script=(-S) out t0 t1
  [ "$2" = masked ] && script=(-f "$WORK/masked.sql")
  t0=$(ticks "${PID[$1]:-}")
  out=$("$PG_BIN/pgbench" "${script[@]}" -M "$3" -c "$CLIENTS" -j "$JOBS" -T "$DURATION" -n \
    -h 127.0.0.1 -p "${PORT[$1]}" -U postgres postgres 2>&1)
  t1=$(ticks "${PID[$1]:-}")
  awk -v t0="$t0" -v t1="$t1" -v us="$TICK_US" '
    /^number of transactions actually processed/ { split($NF, a, "/"); tx = a[1] }
    /^tps/ { tps = $3 }
    END { printf "%s %.1f\n", tps, (tx > 0 ? (t1 - t0) * us / tx : 0) }' <<<"$out"
}

# Mean TPS per target over the rounds; on/off is the ratio of the means,
# with the per-round ratios after it. Then pgveil's own CPU per transaction
# (all threads, the audit writer included), which drifts less than TPS on a
# shared machine: on - off is what metrics and audit cost each statement.
printf '%-12s %-9s' workload mode
for t in $TARGETS; do printf ' %10s' "$t"; done
printf ' %8s %8s %8s  %s\n' "off/dir" "on/dir" "on/off" "on/off per round"
CPU_LINES=()
for workload in select-only masked; do
  for mode in simple prepared; do
    declare -A SUM=() CPU=()
    rounds=()
    for _ in $(seq "$ROUNDS"); do
      declare -A ROUND=()
      for t in $TARGETS; do
        read -r v cpu < <(run "$t" "$workload" "$mode")
        ROUND[$t]=$v
        SUM[$t]=$(python3 -c "print(${SUM[$t]:-0} + $v)")
        CPU[$t]=$(python3 -c "print(${CPU[$t]:-0} + $cpu)")
      done
      rounds+=("$(python3 -c "print(f'{${ROUND[on]} / ${ROUND[off]}:.3f}')")")
      unset ROUND
    done
    printf '%-12s %-9s' "$workload" "$mode"
    for t in $TARGETS; do printf ' %10.0f' "$(python3 -c "print(${SUM[$t]} / $ROUNDS)")"; done
    printf ' %8s %8s %8s  %s\n' \
      "$(python3 -c "print(f'{${SUM[off]} / ${SUM[direct]}:.3f}')")" \
      "$(python3 -c "print(f'{${SUM[on]} / ${SUM[direct]}:.3f}')")" \
      "$(python3 -c "print(f'{${SUM[on]} / ${SUM[off]}:.3f}')")" \
      "${rounds[*]}"
    CPU_LINES+=("$(printf '%-12s %-9s' "$workload" "$mode"
      for t in $TARGETS; do [ "$t" = direct ] || printf ' %8.1f' "$(python3 -c "print(${CPU[$t]} / $ROUNDS)")"; done
      printf ' %8s' "$(python3 -c "print(f'{(${CPU[on]} - ${CPU[off]}) / $ROUNDS:+.1f}')")")")
    unset SUM CPU
  done
done
echo
printf '%-12s %-9s' "pgveil CPU" "µs/tx"
for t in $TARGETS; do [ "$t" = direct ] || printf ' %8s' "$t"; done
printf ' %8s\n' "on-off"
printf '%s\n' "${CPU_LINES[@]}"
records=$(cat "$WORK"/audit.log* | wc -l)
dropped=$(curl -s "127.0.0.1:$METRICS_PORT/metrics" | awk '/^pgveil_audit_records_total\{outcome="dropped"\}/ {print $2}')
echo "audit records written by 'on': $records, dropped: ${dropped:-?}; chain: $("$BIN" audit verify "$WORK"/audit.log* | head -1)"
