#!/usr/bin/env bash
# Memory of many idle sessions: RSS of pgveil (policy packs loaded) before
# and after COUNT client sessions connect through it and each runs one
# statement, then sit idle. PostgreSQL cannot hold that many backends on a
# small machine, so PgBouncer (transaction pooling, installed from Debian if
# missing) sits between pgveil and PostgreSQL, as it would in production;
# PgBouncer's own RSS per client is printed for comparison.
#
#   bench/connections.sh                 # 9,900 sessions (see below)
#   COUNT=10000 bench/connections.sh     # where the open-file limit allows
#   COUNT=2000 bench/connections.sh
#
# Each session holds two sockets in pgveil (client and upstream): with the
# usual hard limit of 20,000 open files per process, 9,900 is about the
# most one pgveil process can hold. The script raises the hard limit to
# 65,536 where it may (CAP_SYS_RESOURCE), and warns when it stays too low.
cd "$(dirname "$0")/.."
source bench/common.sh

COUNT=${COUNT:-9900}
HOLD=${HOLD:-5}
if ! command -v pgbouncer >/dev/null 2>&1; then
  echo "installing pgbouncer from Debian..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null
fi
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
[ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -Hn)" -ge 65536 ] || ulimit -Hn 65536 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((2 * COUNT + 100)) ] ||
  echo "warning: open-file limit $(ulimit -n) is below what $COUNT sessions need" >&2

if [ -z "${NO_BUILD:-}" ]; then # NO_BUILD=1: use the binaries already built
  echo "building pgveil and the bench client (release)..." >&2
  cargo build --release --quiet --bin pgveil --example idle_conns
fi

PG_PORT=$(free_port); BOUNCER_PORT=$(free_port); VEIL_PORT=$(free_port)
start_postgres "$PG_PORT" "max_connections = 60"
"$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres postgres -c "CREATE ROLE app LOGIN"

cat >"$WORK/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=$PG_PORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
listen_backlog = 4096
unix_socket_dir =
auth_type = trust
auth_file = $WORK/userlist.txt
pool_mode = transaction
# pgveil's catalog connection sets its timeouts in the startup options.
ignore_startup_parameters = options
max_client_conn = $((COUNT + 100))
default_pool_size = 20
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
INI
printf '"postgres" ""\n"app" ""\n' >"$WORK/userlist.txt"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK"/pgbouncer.ini "$WORK"/userlist.txt
# PgBouncer keeps the soft open-file limit it starts with (often 1,024 after
# runuser), which refused clients past about a thousand ("accept() failed:
# Too many open files"): raise it to the hard limit.
as_pg sh -c 'ulimit -n "$(ulimit -Hn)" && exec "$0" "$@"' "$PGBOUNCER" "$WORK/pgbouncer.ini" >/dev/null 2>&1 &
PIDS+=($!)
wait_ready "$BOUNCER_PORT"
BOUNCER_PID=$(cat "$WORK/pgbouncer.pid")
# runuser does not pass the kill on: stop PgBouncer itself on exit.
PIDS+=($BOUNCER_PID)

# `app` is named by no rule of the packs: every column they protect is masked
# for it, so each session carries a full guard.
PGVEIL_KEY_PII=bench-key-0123456789abcdef PGVEIL_KEY_PAN_TOKEN=bench-key-0123456789abcdef \
"${PGVEIL:-target/release/pgveil}" serve --listen "127.0.0.1:$VEIL_PORT" --upstream "127.0.0.1:$BOUNCER_PORT" \
  --metrics-listen "" --policies policies --catalog-user postgres \
  --max-connections $((COUNT + 100)) 2>"$WORK/pgveil.log" &
VEIL_PID=$!
PIDS+=($VEIL_PID)
wait_ready "$VEIL_PORT"
"$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$VEIL_PORT" -U app postgres -c "SELECT 1" >/dev/null || { tail -n 5 "$WORK/pgveil.log" "$WORK/pgbouncer.log" >&2; exit 1; }

veil_before=$(rss_kib "$VEIL_PID"); bouncer_before=$(rss_kib "$BOUNCER_PID")
echo "opening $COUNT sessions through pgveil..." >&2
start=$(date +%s.%N)
target/release/examples/idle_conns "127.0.0.1:$VEIL_PORT" app postgres "$COUNT" "$HOLD" \
  "SELECT 1" >"$WORK/client.out" &
CLIENT=$!
for _ in $(seq 600); do grep -q '^ready' "$WORK/client.out" 2>/dev/null && break; sleep 0.5; done
ready=$(awk '/^ready/ {print $2}' "$WORK/client.out")
elapsed=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
sleep 1
veil_after=$(rss_kib "$VEIL_PID"); bouncer_after=$(rss_kib "$BOUNCER_PID")
wait "$CLIENT" || true
grep '^first error' "$WORK/client.out" >&2 || true

per() { python3 -c "print(f'{($2 - $1) / max($3, 1):.1f}')"; }
mib() { python3 -c "print(f'{$1 / 1024:.0f}')"; }
echo "sessions open: $ready of $COUNT (connected and queried in ${elapsed}s)"
printf '%-10s %12s %12s %16s %18s\n' process "RSS before" "RSS after" "KiB per session" "at 10,000 (MiB)"
for p in pgveil pgbouncer; do
  if [ $p = pgveil ]; then b=$veil_before; a=$veil_after; else b=$bouncer_before; a=$bouncer_after; fi
  k=$(per "$b" "$a" "$ready")
  printf '%-10s %9s MiB %9s MiB %16s %18s\n' $p "$(mib "$b")" "$(mib "$a")" "$k" \
    "$(python3 -c "print(f'{($b + $k * 10000) / 1024:.0f}')")"
done
