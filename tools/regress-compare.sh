#!/usr/bin/env bash
# Runs a directory of SQL scripts (e.g. PostgreSQL's regression SQL, kept
# outside the repository) with psql as a masked role, once directly against
# PostgreSQL and once through pgveil, and counts per file the statements
# pgveil refused (its own 42501 "pgveil: ..." errors) and every other error
# that happened through pgveil at a line where the direct run had none.
#
#   tools/regress-compare.sh DIR                 # policy protects a column no script touches
#   COLUMNS_POLICY=regress tools/regress-compare.sh DIR   # + text columns of the setup tables
#   KEEP=/tmp/out tools/regress-compare.sh DIR   # keep outputs (FILE.direct / FILE.veil)
#   PROFILE=release ...                          # default: debug build
#   PGVEIL=path/to/pgveil ...                    # a given binary instead of building
#
# PostgreSQL 15's own regression SQL ships in the source distribution of
# pglast 5.x on PyPI (libpg_query/test/sql/postgres_regress/*.sql):
#   pip download --no-deps --no-binary :all: 'pglast>=5,<6'
#
# After the table, the refusals (statements that succeed directly) are
# counted by the rule they name.
#
# Each script runs in a fresh database cloned from a template that holds the
# classic regression tables (onek, tenk1, int4_tbl, ...) filled with
# synthetic rows: the comparison is direct vs pgveil, not against expected
# output. The role `regress` owns the databases, may create roles and
# databases, and is not a superuser.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${1:?usage: tools/regress-compare.sh DIR_OF_SQL_FILES}
DIR=$(cd "$DIR" && pwd)
PROFILE=${PROFILE:-debug}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL server binaries not found; set PG_BIN" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

WORK=$(mktemp -d /tmp/pgveil-regress.XXXXXX)
chmod 755 "$WORK"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK"
VEIL_PID=
cleanup() {
  [ -n "$VEIL_PID" ] && kill "$VEIL_PID" 2>/dev/null || true
  as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ -n "${PGVEIL:-}" ]; then BIN=$PGVEIL
elif [ "$PROFILE" = release ]; then cargo build --release --quiet; BIN=target/release/pgveil
else cargo build --quiet; BIN=target/debug/pgveil; fi

PG_PORT=$(free_port); VEIL_PORT=$(free_port)
as_pg "$PG_BIN/initdb" -D "$WORK/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >/dev/null
cat >>"$WORK/data/postgresql.conf" <<CONF
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
fsync = off
synchronous_commit = off
max_prepared_transactions = 10
CONF
as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w start >/dev/null
PSQL=("$PG_BIN/psql" -X -q -h 127.0.0.1)
"${PSQL[@]}" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
  -c "CREATE ROLE regress LOGIN CREATEDB CREATEROLE" \
  -c "CREATE DATABASE rtmpl OWNER regress"
"${PSQL[@]}" -p "$PG_PORT" -U postgres -d rtmpl -v ON_ERROR_STOP=1 -c "ALTER SCHEMA public OWNER TO regress"

# The shapes of the classic regression tables, with rows made up here.
"${PSQL[@]}" -p "$PG_PORT" -U regress -d rtmpl -v ON_ERROR_STOP=1 <<'SQL'
CREATE TABLE char_tbl(f1 char(4));
INSERT INTO char_tbl VALUES ('a'), ('ab'), ('abcd'), ('abcd    ');
CREATE TABLE float8_tbl(f1 float8);
INSERT INTO float8_tbl VALUES (0.0), (-34.84), (-1004.30), (-1.2345678901234e+200), (-1.2345678901234e-200);
CREATE TABLE int2_tbl(f1 int2);
INSERT INTO int2_tbl VALUES (0), (1234), (-1234), (32767), (-32767);
CREATE TABLE int4_tbl(f1 int4);
INSERT INTO int4_tbl VALUES (0), (123456), (-123456), (2147483647), (-2147483647);
CREATE TABLE int8_tbl(q1 int8, q2 int8);
INSERT INTO int8_tbl VALUES (123, 456), (123, 4567890123456789), (4567890123456789, 123),
  (4567890123456789, 4567890123456789), (4567890123456789, -4567890123456789);
CREATE TABLE point_tbl(f1 point);
INSERT INTO point_tbl VALUES ('(0,0)'), ('(-10,0)'), ('(-3,4)'), ('(5.1,34.5)'), ('(-5,-12)'), ('(10,10)');
CREATE TABLE text_tbl(f1 text);
INSERT INTO text_tbl VALUES ('doh!'), ('hi de ho neighbor');
CREATE TABLE varchar_tbl(f1 varchar(4));
INSERT INTO varchar_tbl VALUES ('a'), ('ab'), ('abcd'), ('abcd    ');
CREATE TABLE tenk1 (unique1 int4, unique2 int4, two int4, four int4, ten int4, twenty int4,
  hundred int4, thousand int4, twothousand int4, fivethous int4, tenthous int4, odd int4,
  even int4, stringu1 name, stringu2 name, string4 name);
INSERT INTO tenk1
SELECT u1, u2, u1 % 2, u1 % 4, u1 % 10, u1 % 20, u1 % 100, u1 % 1000, u1 % 2000, u1 % 5000, u1,
       (u1 % 100) * 2, (u1 % 100) * 2 + 1,
       'A' || lpad(u1::text, 6, 'X'), 'B' || lpad(u2::text, 6, 'Y'),
       (ARRAY['AAAAxx','HHHHxx','OOOOxx','VVVVxx'])[u2 % 4 + 1]
FROM (SELECT (g * 7919) % 10000 AS u1, g AS u2 FROM generate_series(0, 9999) g) s;
CREATE INDEX tenk1_unique1 ON tenk1 (unique1);
CREATE INDEX tenk1_unique2 ON tenk1 (unique2);
CREATE INDEX tenk1_hundred ON tenk1 (hundred);
CREATE INDEX tenk1_thous_tenthous ON tenk1 (thousand, tenthous);
CREATE TABLE tenk2 AS SELECT * FROM tenk1;
CREATE TABLE onek AS SELECT * FROM tenk1 WHERE unique1 < 1000;
CREATE INDEX onek_unique1 ON onek (unique1);
CREATE INDEX onek_unique2 ON onek (unique2);
CREATE TABLE onek2 AS SELECT * FROM onek;
CREATE TABLE person (name text, age int4, location point);
INSERT INTO person SELECT 'person' || g, 20 + g % 50, point(g, g) FROM generate_series(1, 50) g;
CREATE TABLE emp (salary int4, manager name) INHERITS (person);
INSERT INTO emp SELECT 'emp' || g, 30 + g, point(g, 0), 1000 * g, 'mgr' FROM generate_series(1, 5) g;
CREATE TABLE student (gpa float8) INHERITS (person);
INSERT INTO student SELECT 'student' || g, 18 + g, point(0, g), 3.0 FROM generate_series(1, 3) g;
CREATE TABLE stud_emp (percent int4) INHERITS (emp, student);
INSERT INTO stud_emp VALUES ('jeff', 23, '(8,7.7)', 600, 'sharon', 3.5, 50);
CREATE TABLE road (name text, thepath path);
INSERT INTO road SELECT 'I- ' || g, path(polygon(box(point(g, g), point(g + 1, g + 1)))) FROM generate_series(1, 20) g;
INSERT INTO road SELECT 'State Hwy ' || g, path(polygon(box(point(g, 0), point(g + 1, 1)))) FROM generate_series(1, 5) g;
CREATE TABLE ihighway () INHERITS (road);
INSERT INTO ihighway SELECT * FROM ONLY road WHERE name ~ 'I- .*';
CREATE TABLE shighway (surface text) INHERITS (road);
INSERT INTO shighway SELECT *, 'asphalt' FROM ONLY road WHERE name ~ 'State Hwy.*';
CREATE TYPE stoplight AS ENUM ('red', 'yellow', 'green');
CREATE TYPE float8range AS RANGE (subtype = float8, subtype_diff = float8mi);
CREATE TYPE textrange AS RANGE (subtype = text, collation = "C");
ANALYZE tenk1, tenk2, onek, onek2;
SQL

mkdir -p "$WORK/policies"
# A protected column that no script uses: every session is analysed.
cat >"$WORK/policies/untouched.yaml" <<'YAML'
version: 1
columns:
  public.pgveil_untouched.secret:
    mask: redact
YAML
if [ "${COLUMNS_POLICY:-}" = regress ]; then
  cat >"$WORK/policies/regress.yaml" <<'YAML'
version: 1
columns:
  public.text_tbl.f1:
    mask: redact
  public.person.name:
    mask: redact
YAML
fi

"$BIN" serve --listen "127.0.0.1:$VEIL_PORT" --upstream "127.0.0.1:$PG_PORT" \
  --metrics-listen "" --policies "$WORK/policies" --catalog-user postgres 2>"$WORK/pgveil.log" &
VEIL_PID=$!
for _ in $(seq 100); do "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$VEIL_PORT" && break; sleep 0.1; done

OUT=${KEEP:-$WORK/out}
mkdir -p "$OUT"
run_file() { # port database file output
  PGOPTIONS='-c statement_timeout=20s' timeout 600 "${PSQL[@]}" -a -p "$1" -U regress -d "$2" -f "$3" >"$4" 2>&1 || true
}
errors_at() { # output -> "line message" of every error psql reported
  grep -aoE '^psql:[^:]+:[0-9]+: ERROR: .*' "$1" | sed -E 's/^psql:[^:]+:([0-9]+): /\1 /' || true
}

printf '%-28s %9s %9s %9s %9s\n' file direct-err veil-err refused follow-on
total_refused=0; total_follow=0; n=0
for f in "$DIR"/*.sql; do
  n=$((n + 1))
  name=$(basename "$f" .sql)
  for side in direct veil; do
    "${PSQL[@]}" -p "$PG_PORT" -U regress -d postgres -c "CREATE DATABASE r${n}_$side TEMPLATE rtmpl" 2>/dev/null
  done
  (cd "$DIR" && run_file "$PG_PORT" "r${n}_direct" "$f" "$OUT/$name.direct")
  (cd "$DIR" && run_file "$VEIL_PORT" "r${n}_veil" "$f" "$OUT/$name.veil")
  errors_at "$OUT/$name.direct" >"$WORK/d.err"
  errors_at "$OUT/$name.veil" >"$WORK/v.err"
  cut -d' ' -f1 "$WORK/d.err" | sort -u >"$WORK/d.lines"
  # pgveil's refusals of statements that succeed directly
  refused=$({ grep ' ERROR:  pgveil' "$WORK/v.err" || true; } | cut -d' ' -f1 | sort -u | comm -23 - "$WORK/d.lines" | wc -l)
  { grep ' ERROR:  pgveil' "$WORK/v.err" || true; } | sort -t' ' -k1,1 -u | while read -r line rest; do
    grep -qx "$line" "$WORK/d.lines" || printf '%s\n' "$rest" | grep -oE '\[rule: [^]]+\]' || echo '[rule: ?]'
  done >>"$WORK/rules"
  # other errors at lines where the direct run had none
  { grep -v ' ERROR:  pgveil' "$WORK/v.err" || true; } | cut -d' ' -f1 | sort -u >"$WORK/v.lines"
  follow=$(comm -23 "$WORK/v.lines" "$WORK/d.lines" | wc -l)
  printf '%-28s %9d %9d %9d %9d\n' "$name" "$(wc -l <"$WORK/d.err")" "$(wc -l <"$WORK/v.err")" "$refused" "$follow"
  total_refused=$((total_refused + refused)); total_follow=$((total_follow + follow))
  for side in direct veil; do
    "${PSQL[@]}" -p "$PG_PORT" -U postgres -d postgres -c "DROP DATABASE IF EXISTS r${n}_$side WITH (FORCE)" 2>/dev/null || true
  done
done
printf '%-28s %9s %9s %9d %9d\n' TOTAL "" "" "$total_refused" "$total_follow"
echo
echo "refusals by rule:"
if [ -s "$WORK/rules" ]; then sort "$WORK/rules" | uniq -c | sort -rn; fi
