#!/usr/bin/env bash
# Bulk masked reads: direct PostgreSQL vs an in-database masking view vs
# pgveil (a role with nothing masked, and a masked role), in one run.
#
# Table big(id, name, id_number, phone, email, income, birth, branch) with
# ROWS synthetic rows; six columns masked (cn_name, cn_id_card, cn_mobile,
# email, bucket, date_trunc). The view `big_masked` computes the same masks
# in SQL, as in-database masking does; the script checks that its rows equal
# pgveil's masked rows before timing. Each figure is the best of REPEATS
# reads by bench/bulk_read.rs:
#   copy    COPY (SELECT * FROM …) TO STDOUT, text format
#   text    SELECT * FROM …, simple protocol, text rows
#   binary  SELECT * FROM …, extended protocol, binary rows
# Ratios are to direct in the same mode (the first of TARGETS). Timings on
# a shared machine are noisy: compare the ratios of one run. The last
# column is the CPU time (user + system) pgveil spent per read, which load
# from other processes disturbs far less than wall time.
#
#   bench/bulk.sh
#   ROWS=200000 REPEATS=5 bench/bulk.sh
#   PGVEIL_BEFORE=/path/to/older/pgveil bench/bulk.sh   # adds its rows
#   PGVEIL=/path/to/pgveil bench/bulk.sh                 # another build
#   PERF_DIR=/tmp/prof bench/bulk.sh   # also `perf record -g` pgveil during
#                                      # each masked read (one file a mode)
#   NO_BUILD=1 TARGETS="direct pgveil-masked" MODES=copy bench/bulk.sh
cd "$(dirname "$0")/.."
source bench/common.sh

ROWS=${ROWS:-1000000}
REPEATS=${REPEATS:-3}
MODES=${MODES:-"copy text binary"}

if [ -z "${NO_BUILD:-}" ]; then
  echo "building pgveil and the bench client (release)..." >&2
  cargo build --release --quiet --bin pgveil --example bulk_read
fi
CLIENT=target/release/examples/bulk_read

PG_PORT=$(free_port)
start_postgres "$PG_PORT" "max_connections = 50"

psql_pg() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }
echo "loading $ROWS rows..." >&2
psql_pg postgres >/dev/null <<SQL
CREATE ROLE bulk_clear LOGIN;
CREATE ROLE bulk_masked LOGIN;
CREATE TABLE big (
  id bigint PRIMARY KEY, name text, id_number text, phone text, email text,
  income numeric(12,2), birth date, branch text);
INSERT INTO big
SELECT i,
  (ARRAY['王','李','张','刘','陈','杨','赵','黄','周','吴'])[1 + i % 10]
    || (ARRAY['伟','芳','娜','敏','静','丽','强','磊','军','洋'])[1 + (i / 10) % 10]
    || CASE WHEN i % 3 = 0 THEN '' ELSE (ARRAY['明','华','平','红','玲'])[1 + (i / 100) % 5] END,
  lpad((110000 + i % 600000)::text, 6, '0')
    || to_char(date '1950-01-01' + (i % 20000), 'YYYYMMDD')
    || lpad((i % 1000)::text, 3, '0')
    || (ARRAY['0','1','2','3','4','5','6','7','8','9','X'])[1 + i % 11],
  '1' || (ARRAY['3','5','8'])[1 + i % 3] || lpad((i::bigint * 7919 % 1000000000)::text, 9, '0'),
  'user' || i || '@example.com',
  (i::bigint * 3701 % 100000000)::numeric / 100,
  date '1950-01-01' + (i % 20000),
  'branch-' || (i % 200)
FROM generate_series(1, $ROWS) i;
VACUUM ANALYZE big;
-- The same masks computed in the database.
CREATE VIEW big_masked AS SELECT id,
  left(name, 1) || repeat('*', char_length(name) - 1) AS name,
  left(id_number, 6) || repeat('*', char_length(id_number) - 10) || right(id_number, 4) AS id_number,
  left(phone, 3) || '****' || right(phone, 4) AS phone,
  left(email, 1) || repeat('*', strpos(email, '@') - 2) || substr(email, strpos(email, '@')) AS email,
  (floor(income / 10000) * 10000)::numeric(12,2) AS income,
  date_trunc('year', birth)::date AS birth,
  branch
FROM big;
GRANT SELECT ON big, big_masked TO bulk_clear, bulk_masked;
SQL

mkdir -p "$WORK/policies"
{
  echo "version: 1"
  echo "columns:"
  for col in "name: cn_name" "id_number: cn_id_card" "phone: cn_mobile" "email: email" \
             "income: { fn: bucket, width: 10000 }" "birth: { fn: date_trunc, unit: year }"; do
    echo "  public.big.${col%%:*}:"
    echo "    mask: ${col#*: }"
    echo "    rules:"
    echo "      - roles: [bulk_clear]"
    echo "        action: allow"
  done
} >"$WORK/policies/big.yaml"

start_pgveil() { # binary port
  "$1" serve --listen "127.0.0.1:$2" --upstream "127.0.0.1:$PG_PORT" --metrics-listen "" \
    --policies "$WORK/policies" --catalog-user postgres 2>>"$WORK/pgveil-$2.log" &
  PIDS+=($!)
  VEIL_PIDS[$2]=$!
  wait_ready "$2"
}
declare -A VEIL_PIDS
VEIL_PORT=$(free_port)
start_pgveil "${PGVEIL:-target/release/pgveil}" "$VEIL_PORT"
ALL_TARGETS="direct view pgveil-clear pgveil-masked"
if [ -n "${PGVEIL_BEFORE:-}" ]; then
  BEFORE_PORT=$(free_port)
  start_pgveil "$PGVEIL_BEFORE" "$BEFORE_PORT"
  ALL_TARGETS="$ALL_TARGETS before-clear before-masked"
fi
TARGETS=${TARGETS:-$ALL_TARGETS}

conn() { echo "host=127.0.0.1 port=$1 user=$2 dbname=postgres"; }
target_conn() {
  case $1 in
    direct) conn "$PG_PORT" postgres ;;
    view) conn "$PG_PORT" bulk_masked ;;
    pgveil-clear) conn "$VEIL_PORT" bulk_clear ;;
    pgveil-masked) conn "$VEIL_PORT" bulk_masked ;;
    before-clear) conn "$BEFORE_PORT" bulk_clear ;;
    before-masked) conn "$BEFORE_PORT" bulk_masked ;;
  esac
}
target_sql() { if [ "$1" = view ]; then echo "SELECT * FROM big_masked"; else echo "SELECT * FROM big"; fi; }

# The masked rows through pgveil must be the view's rows, or the comparison
# is not of the same work.
check="SELECT * FROM big WHERE id <= 2000"
a=$("$PG_BIN/psql" -X -At -h 127.0.0.1 -p "$VEIL_PORT" -U bulk_masked postgres -c "COPY ($check ORDER BY id) TO STDOUT")
b=$(psql_pg -At -U bulk_masked postgres -c "COPY (SELECT * FROM big_masked WHERE id <= 2000 ORDER BY id) TO STDOUT")
if [ "$a" != "$b" ]; then
  echo "pgveil's masked rows differ from the view's:" >&2
  diff <(echo "$a") <(echo "$b") | head -5 >&2
  exit 1
fi
c=$("$PG_BIN/psql" -X -At -h 127.0.0.1 -p "$VEIL_PORT" -U bulk_clear postgres -c "$check LIMIT 1")
echo "masked rows equal the view's (first 2000); sample: $(echo "$a" | head -1)"
echo "clear sample: $c"
echo

# CPU seconds (user + system) a pgveil process has used: less noisy than
# wall time on a shared machine.
cpu_secs() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
target_pid() {
  case $1 in
    pgveil-*) echo "${VEIL_PIDS[$VEIL_PORT]}" ;;
    before-*) echo "${VEIL_PIDS[$BEFORE_PORT]}" ;;
  esac
}

printf '%-8s %-14s %9s %8s %10s %14s\n' mode target seconds ratio rows "pgveil cpu/read"
for mode in $MODES; do
  direct=""
  for target in $TARGETS; do
    perf_pid=""
    if [ -n "${PERF_DIR:-}" ] && [ "${target#*-}" = masked ]; then
      mkdir -p "$PERF_DIR"
      port=$VEIL_PORT; [ "$target" = before-masked ] && port=$BEFORE_PORT
      perf record -q -g -p "${VEIL_PIDS[$port]}" -o "$PERF_DIR/$mode-$target.data" 2>/dev/null &
      perf_pid=$!
      sleep 0.5
    fi
    pid=$(target_pid "$target")
    [ -n "$pid" ] && cpu0=$(cpu_secs "$pid")
    read -r secs rows _ < <("$CLIENT" "$(target_conn "$target")" "$mode" "$(target_sql "$target")" "$REPEATS")
    cpu=-
    [ -n "$pid" ] && cpu=$(python3 -c "print(f'{($(cpu_secs "$pid") - $cpu0) / $REPEATS:.3f} s')")
    if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
    [ -z "$direct" ] && direct=$secs
    printf '%-8s %-14s %9s %8s %10s %14s\n' "$mode" "$target" "$secs" "$(ratio "$secs" "$direct")" "$rows" "$cpu"
  done
done
