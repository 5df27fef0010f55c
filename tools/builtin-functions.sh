#!/usr/bin/env bash
# Regenerates src/analyze/builtins_pg15.tsv (and builtin_types_pg15.txt,
# builtin_operators_pg15.tsv, builtin_volatile_pg15.txt):
# every function PostgreSQL ships
# (pg_catalog and information_schema of a fresh cluster) with the category
# that decides how pgveil treats it for masked roles (see
# src/analyze/builtins.rs). The categories come from the rules below, in
# order; review the diff of the output before committing it.
#
#   tools/builtin-functions.sh            # uses /usr/lib/postgresql/15/bin
#   PG_BIN=/path/to/bin tools/builtin-functions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
OUT=src/analyze/builtins_pg15.tsv
DIR=$(mktemp -d)
PORT=$((20000 + RANDOM % 20000))
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$DIR"
cleanup() { as_pg "$PG_BIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$DIR"; }
trap cleanup EXIT
as_pg "$PG_BIN/initdb" -D "$DIR/data" -U postgres -A trust >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w \
  -o "-k $DIR -c listen_addresses='' -p $PORT" start >/dev/null

# Categories (first rule that matches wins):
#   internal  takes or returns internal/cstring or a handler type: type I/O,
#             planner support, index/table access methods, triggers. Not
#             meant to be called from SQL.
#   sql       runs SQL given as text, or reads whole relations or cursors
#             the statement does not name (query_to_xml, ts_stat,
#             ts_rewrite(tsquery, text), table_to_xml …).
#   server    server files, large objects, WAL and replication, backups,
#             server administration, other sessions' query texts and the
#             planner's sampled values (pg_mcv_list_items).
#   write     leaves its arguments where other sessions or later statements
#             can read them (sequences, advisory locks, NOTIFY, settings).
#   lookup    turns an argument into an object by name or OID (reg* and oid
#             arguments, privileges, settings, encodings …): an error names
#             what was not found, so it is an oracle for its argument.
#   pure      output derives from the inputs only (immutable, or stable only
#             because of TimeZone/DateStyle/locale settings).
#   context   no arguments; reads the session or server state (now(),
#             version(), pg_backend_pid() …).
as_pg "$PG_BIN/psql" -X -q -h "$DIR" -p "$PORT" -U postgres -d postgres -At -F $'\t' >"$OUT.body" <<'SQL'
WITH f AS (
  SELECT p.oid, n.nspname, p.proname, p.pronargs, p.pronargdefaults,
         p.provariadic <> 0 AS is_variadic, p.provolatile, p.prokind,
         pg_catalog.pg_get_function_identity_arguments(p.oid) AS args,
         p.proargtypes::oid[] AS argtypes, p.prorettype
    FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname IN ('pg_catalog', 'information_schema')
)
SELECT nspname, proname, pronargs, pronargdefaults,
       CASE WHEN is_variadic THEN 't' ELSE 'f' END,
       CASE
         WHEN prorettype IN ('internal'::regtype, 'cstring'::regtype, 'trigger'::regtype,
                             'event_trigger'::regtype, 'language_handler'::regtype,
                             'fdw_handler'::regtype, 'index_am_handler'::regtype,
                             'table_am_handler'::regtype, 'tsm_handler'::regtype)
           OR argtypes && ARRAY['internal'::regtype, 'cstring'::regtype]::oid[]
           THEN 'internal'
         WHEN proname ~ '^(query|cursor|table|schema|database)_to_xml'
           OR proname = 'ts_stat'
           OR (proname = 'ts_rewrite' AND pronargs = 2)
           THEN 'sql'
         WHEN proname ~ '^(lo_|lo(read|write|open|close|creat|import|export)$)'
           OR proname ~ '^pg_(read_file|read_binary_file|read_file_old|ls_|stat_file)'
           OR proname ~ '^pg_(logical_|replication_|copy_.*_replication_slot|create_.*_replication_slot|drop_replication_slot|get_replication_slots)'
           OR proname ~ '^pg_(backup_|start_backup|stop_backup|switch_wal|create_restore_point|promote|reload_conf|rotate_logfile|wal_replay_|current_logfile|import_system_collations|nextoid|stop_making_pinned_objects|extension_config_dump|hba_file_rules|ident_file_mappings|show_all_file_settings|get_shmem_allocations|get_backend_memory_contexts|log_backend_memory_contexts|control_)'
           OR proname ~ '^binary_upgrade_'
           OR proname IN ('pg_stat_get_activity', 'pg_stat_get_backend_activity',
                          'pg_stat_get_wal_receiver', 'pg_mcv_list_items',
                          'pg_prepared_xact', 'pg_get_publication_tables', 'pg_lock_status')
           THEN 'server'
         WHEN proname IN ('nextval', 'setval', 'pg_notify', 'set_config', 'setseed',
                          'pg_cancel_backend', 'pg_terminate_backend', 'pg_export_snapshot',
                          'brin_summarize_new_values', 'brin_summarize_range',
                          'brin_desummarize_range', 'gin_clean_pending_list',
                          'pg_stat_clear_snapshot', 'pg_stat_force_next_flush')
           OR proname ~ '^pg_(try_)?advisory_' OR proname ~ '^pg_stat_reset'
           THEN 'write'
         WHEN proname ~ '^(has_.*_privilege|pg_has_role|to_reg.*|pg_get_.*|.*_is_visible|.*description|pg_describe_object|pg_identify_object.*|format_type|current_setting|pg_settings_get_flags|row_security_active|currval|currtid2|regclass|pg_.*_size|pg_relation_.*|pg_sequence_.*|pg_partition_.*|pg_index.*_has_property|pg_filenode_relation|pg_tablespace_.*|pg_column_is_updatable|pg_collation_actual_version|pg_database_collation_actual_version|pg_is_other_temp_schema|pg_stat_get_.*|pg_stat_have_stats|amvalidate|.*_validator|pg_event_trigger_.*)$'
           OR (provolatile <> 'i'
               AND argtypes && ARRAY['oid', 'name', 'regclass', 'regproc', 'regprocedure',
                                     'regoper', 'regoperator', 'regtype', 'regconfig',
                                     'regdictionary', 'regnamespace', 'regrole',
                                     'regcollation']::regtype[]::oid[])
           THEN 'lookup'
         WHEN provolatile = 'i' THEN 'pure'
         WHEN pronargs = 0 THEN 'context'
         ELSE 'pure'
       END,
       args
  FROM f
 ORDER BY nspname, proname, pronargs, args;
SQL
VERSION=$(as_pg "$PG_BIN/psql" -X -h "$DIR" -p "$PORT" -U postgres -d postgres -Atc 'SHOW server_version')
{
  echo "# Built-in functions of PostgreSQL $VERSION and how pgveil treats them."
  echo "# Generated by tools/builtin-functions.sh; review the diff before committing."
  echo "# schema	name	nargs	ndefaults	variadic	category	identity arguments"
  cat "$OUT.body"
} >"$OUT"
rm -f "$OUT.body"
# Type names of pg_catalog: an unqualified cast target with one of these
# names is PostgreSQL's own type (pg_catalog is searched first).
TYPES=src/analyze/builtin_types_pg15.txt
{
  echo "# Type names of pg_catalog in PostgreSQL $VERSION. Generated by tools/builtin-functions.sh."
  as_pg "$PG_BIN/psql" -X -h "$DIR" -p "$PORT" -U postgres -d postgres -At -c \
    "SELECT t.typname FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
      WHERE n.nspname = 'pg_catalog' ORDER BY 1"
} >"$TYPES"
# Functions with a volatile overload: PostgreSQL computes a volatile
# column of a subquery or view even where nobody reads it.
VOLATILE=src/analyze/builtin_volatile_pg15.txt
{
  echo "# Built-in functions of PostgreSQL $VERSION with a volatile overload (schema, name). Generated by tools/builtin-functions.sh."
  as_pg "$PG_BIN/psql" -X -h "$DIR" -p "$PORT" -U postgres -d postgres -At -F $'\t' -c \
    "SELECT DISTINCT n.nspname, p.proname FROM pg_catalog.pg_proc p
       JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname IN ('pg_catalog', 'information_schema') AND p.provolatile = 'v'
      ORDER BY 1, 2"
} >"$VOLATILE"
# Operators of pg_catalog with the function each runs; pgveil judges an
# operator by that function's category (all are pure in PostgreSQL 15) and
# uses the operand types to tell a built-in operator from a user-defined one
# of the same name.
OPS=src/analyze/builtin_operators_pg15.tsv
{
  echo "# Operators of pg_catalog in PostgreSQL $VERSION. Generated by tools/builtin-functions.sh."
  echo "# name	left type (empty: prefix)	right type	function schema	function	function nargs"
  as_pg "$PG_BIN/psql" -X -h "$DIR" -p "$PORT" -U postgres -d postgres -At -F $'\t' -c \
    "SELECT o.oprname, coalesce(lt.typname, ''), rt.typname, pn.nspname, p.proname, p.pronargs
       FROM pg_catalog.pg_operator o
       JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
       JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode
       JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
       LEFT JOIN pg_catalog.pg_type lt ON lt.oid = o.oprleft
       JOIN pg_catalog.pg_type rt ON rt.oid = o.oprright
      WHERE n.nspname = 'pg_catalog'
      ORDER BY 1, 2, 3"
} >"$OPS"
echo "wrote $OUT: $(grep -vc '^#' "$OUT") functions; $TYPES: $(grep -vc '^#' "$TYPES") types; $OPS: $(grep -vc '^# ' "$OPS") operators"
