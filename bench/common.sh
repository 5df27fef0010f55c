# Shared setup of the bench/ scripts: a throwaway PostgreSQL cluster owned by
# the calling script, torn down on exit. Source it, then call start_postgres.
set -euo pipefail

PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL server binaries not found; set PG_BIN" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
ratio() { python3 -c "print(f'{$1/$2:.2f}x')"; }

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

# start_postgres PORT [extra postgresql.conf lines...]
start_postgres() {
  local port=$1; shift
  as_pg "$PG_BIN/initdb" -D "$WORK/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >/dev/null
  {
    echo "port = $port"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$WORK'"
    echo "shared_buffers = 256MB"
    echo "fsync = off"
    echo "synchronous_commit = off"
    for line in "$@"; do echo "$line"; done
  } >>"$WORK/data/postgresql.conf"
  as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w start >/dev/null
}

wait_ready() { # port
  for _ in $(seq 200); do "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" && return 0; sleep 0.1; done
  echo "nothing answers on port $1" >&2; return 1
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
