#!/usr/bin/env bash
# Throughput of pgveil against direct PostgreSQL and PgBouncer, in one run.
#
# Starts a throwaway PostgreSQL, pgveil (release build) and PgBouncer in
# session mode (installed from Debian if missing), then runs
# `pgbench -S -c 8 -j 2` against each in simple and prepared mode and prints
# TPS with ratios to direct, and each proxy's CPU time per transaction.
# `pgveil+pol` is pgveil with the policy packs
# loaded, so every statement goes through analysis and planning. Timings on a shared machine are noisy: compare the
# ratios of one run, not absolute figures across runs.
#
#   bench/pgbench.sh            # 20 s per measurement
#   DURATION=60 bench/pgbench.sh
#   PGVEIL_BEFORE=/path/to/older/pgveil bench/pgbench.sh   # adds `before+pol`
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20}
CLIENTS=${CLIENTS:-8}
JOBS=${JOBS:-2}
SCALE=${SCALE:-10}

PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL server binaries not found; set PG_BIN" >&2; exit 1; }
if ! command -v pgbouncer >/dev/null 2>&1; then
  echo "installing pgbouncer from Debian..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null
fi
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

WORK=$(mktemp -d /tmp/pgveil-bench.XXXXXX)
chmod 755 "$WORK"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
[ -n "${KEEP_BENCH_LOG:-}" ] && trap 'cp "$WORK"/*.log "$WORK"/pgbench.out /tmp/ 2>/dev/null; cleanup' EXIT

PG_PORT=$(free_port); VEIL_PORT=$(free_port); BOUNCER_PORT=$(free_port); GUARD_PORT=$(free_port)
BEFORE_PORT=$(free_port)

echo "building pgveil (release)..." >&2
cargo build --release --quiet

as_pg "$PG_BIN/initdb" -D "$WORK/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >/dev/null
cat >>"$WORK/data/postgresql.conf" <<EOF
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
max_connections = 100
shared_buffers = 256MB
fsync = off
synchronous_commit = off
EOF
as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w start >/dev/null

target/release/pgveil serve --listen "127.0.0.1:$VEIL_PORT" --upstream "127.0.0.1:$PG_PORT" \
  --metrics-listen "" 2>"$WORK/pgveil.log" &
PIDS+=($!)
# The same with the policy packs loaded: pgbench's role is named by no rule,
# so every statement is analysed and planned (nothing in pgbench's tables is
# protected, so nothing is masked): the cost of the guard itself.
PGVEIL_KEY_PII=bench-key-0123456789abcdef PGVEIL_KEY_PAN_TOKEN=bench-key-0123456789abcdef \
target/release/pgveil serve --listen "127.0.0.1:$GUARD_PORT" --upstream "127.0.0.1:$PG_PORT" \
  --metrics-listen "" --policies policies --catalog-user postgres 2>"$WORK/pgveil-guard.log" &
PIDS+=($!)
TARGETS="direct pgveil pgbouncer pgveil+pol"
if [ -n "${PGVEIL_BEFORE:-}" ]; then
  PGVEIL_KEY_PII=bench-key-0123456789abcdef PGVEIL_KEY_PAN_TOKEN=bench-key-0123456789abcdef \
  "$PGVEIL_BEFORE" serve --listen "127.0.0.1:$BEFORE_PORT" --upstream "127.0.0.1:$PG_PORT" \
    --metrics-listen "" --policies policies --catalog-user postgres 2>"$WORK/pgveil-before.log" &
  PIDS+=($!)
  TARGETS="$TARGETS before+pol"
fi

cat >"$WORK/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=$PG_PORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/userlist.txt
pool_mode = session
max_client_conn = 100
default_pool_size = 20
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
EOF
echo '"postgres" ""' >"$WORK/userlist.txt"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK"/pgbouncer.ini "$WORK"/userlist.txt
as_pg "$PGBOUNCER" "$WORK/pgbouncer.ini" >/dev/null 2>&1 &
PIDS+=($!)

for port in $VEIL_PORT $BOUNCER_PORT $GUARD_PORT ${PGVEIL_BEFORE:+$BEFORE_PORT}; do
  for _ in $(seq 100); do "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" && break; sleep 0.1; done
done
# runuser does not pass the kill on: stop PgBouncer itself on exit.
[ -f "$WORK/pgbouncer.pid" ] && PIDS+=("$(cat "$WORK/pgbouncer.pid")")

"$PG_BIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U postgres postgres >/dev/null 2>&1

tps() { # port mode -> "tps transactions"
  "$PG_BIN/pgbench" -S -M "$2" -c "$CLIENTS" -j "$JOBS" -T "$DURATION" -n \
    -h 127.0.0.1 -p "$1" -U postgres postgres 2>&1 | tee -a "$WORK/pgbench.out" |
    awk '/actually processed/ {n=$NF} /^tps/ {t=int($3)} END {print t, n}'
}
# CPU time of a process (user + system) in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
CLK_TCK=$(getconf CLK_TCK)
failed() { # port mode: zero failed transactions is part of the result
  "$PG_BIN/pgbench" -S -M "$2" -c 2 -t 200 -n -h 127.0.0.1 -p "$1" -U postgres postgres 2>&1 |
    awk -F'[: ]+' '/number of failed transactions/ {print $5}'
}

# cpu/tx: CPU time (user + system) of the proxy process per transaction,
# steadier than tps on a shared machine (the proxies' own cost).
printf '%-10s %-9s %10s %8s %8s %10s\n' target mode tps ratio failed cpu/tx
for mode in simple prepared; do
  read -r direct _ < <(tps "$PG_PORT" "$mode")
  for target in $TARGETS; do
    pid=
    case $target in
      direct) port=$PG_PORT ;;
      pgveil) port=$VEIL_PORT; pid=${PIDS[0]} ;;
      pgbouncer) port=$BOUNCER_PORT; pid=$(cat "$WORK/pgbouncer.pid" 2>/dev/null) ;;
      pgveil+pol) port=$GUARD_PORT; pid=${PIDS[1]} ;;
      before+pol) port=$BEFORE_PORT; pid=${PIDS[2]} ;;
    esac
    cpu=-
    if [ "$target" = direct ]; then
      t=$direct
    else
      before=$(ticks "$pid")
      read -r t n < <(tps "$port" "$mode")
      after=$(ticks "$pid")
      cpu=$(python3 -c "print(f'{($after - $before) * 1e6 / $CLK_TCK / max($n, 1):.1f}us')")
    fi
    ratio=$(python3 -c "print(f'{$t/$direct:.2f}x')")
    printf '%-10s %-9s %10s %8s %8s %10s\n' "$target" "$mode" "$t" "$ratio" "$(failed "$port" "$mode")" "$cpu"
  done
done
