//! Red-team round 3 (issue 11, semantic side): built-in functions that run
//! SQL or look objects up, casts to domains and to shorter types, equality
//! lookups against generated candidates, and materialized views. Written as
//! an attacker would, through tokio-postgres on both protocols: every
//! attempt must be refused by pgveil (42501) and no raw value may show up in
//! anything the client reads. Each test collects every failure and reports
//! them all at once.

mod common;

use std::sync::OnceLock;

use common::bank::{self, *};
use common::probe::*;
use common::{cluster, Proxy};

fn setup() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        bank::create("");
        // What a careless schema owner might leave behind: a domain that
        // shadows a built-in name and runs a lookup on every value, and a
        // materialized view over protected columns, not yet populated.
        cluster()
            .psql_super_db(
                "bank",
                "CREATE DOMAIN public.varchar AS text CHECK (quote_ident(VALUE)::regclass IS NOT NULL);
                 CREATE DOMAIN public.phone_text AS text CHECK (VALUE::int8 > 0);
                 CREATE SCHEMA attack; GRANT ALL ON SCHEMA attack TO PUBLIC;
                 CREATE DOMAIN attack.d AS text CHECK (length(VALUE) < 3);
                 CREATE TYPE public.pair AS (a text, b text);
                 CREATE MATERIALIZED VIEW public.mv_contacts AS
                   SELECT id, mobile, id_number FROM customers WITH NO DATA;
                 GRANT ALL ON public.mv_contacts TO PUBLIC;
                 CREATE ROLE prober LOGIN PASSWORD 'role-pw';
                 -- Server code of the schema owner that puts protected
                 -- values into errors and notices, run by a masked role's
                 -- INSERT (a trigger) or call (an allowed function).
                 CREATE TABLE public.tickets (id int PRIMARY KEY, customer_id int, note text);
                 GRANT ALL ON public.tickets TO PUBLIC;
                 CREATE FUNCTION public.tickets_echo() RETURNS trigger LANGUAGE plpgsql
                 SECURITY DEFINER AS $f$
                 DECLARE c customers; k cards;
                 BEGIN
                   SELECT * INTO c FROM customers WHERE id = NEW.customer_id;
                   SELECT * INTO k FROM cards WHERE customer_id = NEW.customer_id;
                   RAISE NOTICE 'ticket % % % %', c.id_number, c.mobile, k.card_no, c.full_name
                     USING DETAIL = c.id_number, HINT = k.card_no, COLUMN = c.mobile;
                   CASE NEW.note
                   WHEN 'raise' THEN
                     RAISE EXCEPTION 'customer % card %', c.id_number, k.card_no USING
                       ERRCODE = '23505', COLUMN = c.mobile, CONSTRAINT = k.card_no,
                       DATATYPE = c.full_name, TABLE = c.id_number, SCHEMA = c.mobile,
                       HINT = c.mobile;
                   WHEN 'forge' THEN
                     RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'pgveil: ' || k.card_no;
                   WHEN 'cast' THEN PERFORM c.id_number::int;
                   WHEN 'date' THEN PERFORM make_date(substr(c.id_number, 7, 8)::int, 1, 1);
                   WHEN 'chr' THEN PERFORM chr(substr(c.id_number, 7, 8)::int);
                   WHEN 'json' THEN PERFORM ('{\"a\": ' || k.card_no || 'x}')::json;
                   WHEN 'warn' THEN RAISE WARNING '%', c.full_name;
                   ELSE NULL;
                   END CASE;
                   RETURN NEW;
                 END $f$;
                 CREATE TRIGGER tickets_echo BEFORE INSERT ON public.tickets
                   FOR EACH ROW EXECUTE FUNCTION public.tickets_echo();
                 -- User-defined operators whose function keeps and echoes
                 -- its operands: `=` for varchar in a schema only `opsy`'s
                 -- search_path lists (ALTER ROLE … SET), `===` in public.
                 CREATE TABLE attack.loot (v text); GRANT ALL ON attack.loot TO PUBLIC;
                 CREATE FUNCTION attack.keep(varchar, varchar) RETURNS bool LANGUAGE plpgsql AS $f$
                 BEGIN INSERT INTO attack.loot VALUES ($1); RAISE NOTICE '%', $1;
                   RETURN $1::text = $2::text; END $f$;
                 CREATE FUNCTION attack.keep_text(text, text) RETURNS bool LANGUAGE plpgsql AS $f$
                 BEGIN INSERT INTO attack.loot VALUES ($1); RAISE NOTICE '%', $1;
                   RETURN $1 = $2; END $f$;
                 CREATE OPERATOR attack.= (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = attack.keep);
                 CREATE OPERATOR public.=== (LEFTARG = text, RIGHTARG = text, FUNCTION = attack.keep_text);
                 CREATE ROLE opsy LOGIN PASSWORD 'role-pw' IN ROLE call_center;
                 ALTER ROLE opsy SET search_path = attack, public;
                 CREATE FUNCTION public.card_hint(int) RETURNS text LANGUAGE plpgsql
                 SECURITY DEFINER AS $f$
                 DECLARE k cards;
                 BEGIN
                   SELECT * INTO k FROM cards WHERE id = $1;
                   IF k.status = 'active' THEN
                     RAISE EXCEPTION 'card % is active', k.card_no USING DETAIL = k.cvv;
                   END IF;
                   RETURN 'none';
                 END $f$;",
            )
            .unwrap();
        bank::start_proxy(bank::POLICIES)
    })
}

async fn as_role(role: &str) -> Session {
    Session::connect(setup(), role).await
}

// ---------------------------------------------------------------------------
// Class 1: built-in functions are trusted by category, not by a blocklist.

#[tokio::test]
async fn builtins_that_run_sql_or_look_up_names_are_refused() {
    let s = as_role("dev").await;
    for sql in [
        "SELECT ts_rewrite('a'::tsquery, $$SELECT 'a'::tsquery, quote_literal(string_agg(id_number||':'||cvv, ' '))::tsquery FROM customers JOIN cards ON cards.customer_id = customers.id$$)",
        "SELECT pg_catalog.ts_rewrite('x'::tsquery, 'SELECT ''x''::tsquery, quote_literal(mobile)::tsquery FROM customers')",
        "SELECT * FROM ts_stat('SELECT to_tsvector(''simple'', mobile) FROM customers')",
        "SELECT query_to_xml('SELECT mobile FROM customers', true, false, '')",
        "SELECT query_to_xml_and_xmlschema('SELECT id_number FROM customers', true, false, '')",
        "SELECT table_to_xml('customers', true, false, '')",
        "SELECT schema_to_xml('public', true, false, '')",
        "SELECT database_to_xml(true, false, '')",
        "SELECT mobile::regclass FROM customers",
        "SELECT CAST(id_number AS regclass) FROM customers",
        "SELECT 1 FROM customers WHERE to_regclass(mobile) IS NULL",
        "SELECT has_table_privilege(id_number, 'SELECT') FROM customers",
        "SELECT current_setting(mobile) FROM customers",
        "SELECT convert_to('x', mobile) FROM customers",
        "SELECT pg_advisory_lock(hashtext(mobile)) FROM customers",
        "SELECT setval('customers_id_seq', mobile::bigint) FROM customers",
        "SELECT * FROM pg_stat_get_activity(NULL)",
        "SELECT pg_read_file('postgresql.conf')",
        "SELECT textin(mobile::cstring) FROM customers",
        "SELECT lo_from_bytea(0, mobile::bytea) FROM customers",
    ] {
        s.refused(sql).await;
    }
    // Everyday ORM and pg_dump lookups on constants still work.
    for sql in [
        "SELECT 'customers'::regclass::oid > 0",
        "SELECT to_regclass('public.customers') IS NOT NULL",
        "SELECT has_table_privilege('customers', 'SELECT')",
        "SELECT pg_try_advisory_lock(42), pg_advisory_unlock(42)",
        "SELECT current_setting('server_version_num')::int >= 150000",
    ] {
        let (ok, text) = s.attack(sql).await;
        assert!(ok, "ordinary lookup refused: {sql}: {text}");
    }
    s.finish();
}

// ---------------------------------------------------------------------------
// Class 2: cast targets resolved like PostgreSQL does; a domain is code.

#[tokio::test]
async fn casts_to_domains_and_user_types_are_refused() {
    let s = as_role("dev").await;
    for sql in [
        "SELECT id_number::public.varchar FROM customers WHERE id = 1",
        "SELECT mobile::public.varchar FROM customers",
        "SELECT CAST(mobile AS public.varchar) FROM customers",
        "SELECT 1 FROM customers WHERE id_number::public.varchar IS NOT NULL",
        "SELECT mobile::public.phone_text FROM customers",
        "SELECT (mobile || '')::public.phone_text FROM customers",
        "SELECT mobile::attack.d FROM customers",
        "SELECT ARRAY[mobile]::public.varchar[] FROM customers",
        "SELECT ROW(mobile, id_number)::public.pair FROM customers",
        "SELECT count(*) FROM customers GROUP BY mobile::public.varchar",
        "SELECT (SELECT mobile::public.varchar FROM customers LIMIT 1)",
        "WITH c AS (SELECT mobile FROM customers) SELECT mobile::\"public\".\"varchar\" FROM c",
    ] {
        s.refused(sql).await;
    }
    s.finish();
}

/// PostgreSQL finds unqualified type names in the session's temporary schema
/// before pg_catalog, and every table or view has a row type of its name: a
/// temporary `text` would turn `mobile::text` into input of the attacker's
/// type. Each creation is refused, and the cast afterwards stays masked.
#[tokio::test]
async fn temporary_objects_cannot_take_a_builtin_types_name() {
    let s = as_role("dev").await;
    for sql in [
        "CREATE TEMP TABLE text (a public.varchar)",
        "CREATE TEMPORARY TABLE int8 (a int)",
        "CREATE TABLE pg_temp.varchar (a text)",
        "CREATE TEMP VIEW bpchar AS SELECT 1 AS a",
        "CREATE VIEW pg_temp.text AS SELECT 1 AS a",
        "CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (VALUE <> '')",
        "CREATE DOMAIN pg_temp._text AS pg_catalog.text[]",
        "CREATE TYPE pg_temp.int4 AS (a text)",
        "CREATE TYPE pg_temp.date AS ENUM ('a')",
    ] {
        s.refused(sql).await;
    }
    s.exec("CREATE TEMP TABLE scratch_rows (a int)").await;
    s.refused("ALTER TABLE scratch_rows RENAME TO text").await;
    // A search_path that puts pg_temp first makes unqualified creation
    // temporary too.
    s.exec("SET search_path = pg_temp, public").await;
    s.refused("CREATE DOMAIN text AS pg_catalog.text").await;
    s.exec("RESET search_path").await;
    // Ordinary temporary objects still work, and the cast stays masked.
    s.exec("CREATE TEMP TABLE scratch_more (a int)").await;
    let (_, text) = s.attack("SELECT mobile::text FROM customers").await;
    s.check("SELECT mobile::text FROM customers", &text);
    s.finish();
}

// ---------------------------------------------------------------------------
// Issue 11 item 3: casts that cut a value are computations, not copies.

#[tokio::test]
async fn length_changing_casts_are_not_copies() {
    let s = as_role("agent").await;
    for sql in [
        "SELECT id_number::varchar(10) FROM customers",
        "SELECT id_number::varchar(14) FROM customers",
        "SELECT CAST(id_number AS character varying(12)) FROM customers",
        "SELECT id_number::char(8) FROM customers",
        "SELECT id_number::character(10) FROM customers",
        "SELECT id_number::bpchar(6) FROM customers",
        "SELECT card_no::varchar(12) FROM cards",
        "SELECT card_no::char(16) FROM cards",
        "SELECT mobile::varchar(7) FROM customers",
        "SELECT id_number::name FROM customers",
        "SELECT (id_number::varchar(10))::text FROM customers",
        "SELECT k.id FROM cards k WHERE k.card_no::varchar(7) = '6222021'",
        "SELECT d FROM cards k JOIN generate_series(0, 9) d ON k.card_no::varchar(7) = '622202' || d",
    ] {
        s.refused(sql).await;
    }
    // Casts that keep every byte stay copies and get the column's mask.
    let (ok, text) = s
        .attack("SELECT id_number::text, id_number::varchar, card_no::varchar FROM customers JOIN cards ON cards.customer_id = customers.id WHERE customers.id = 1")
        .await;
    assert!(ok, "{text}");
    s.finish();
}

// ---------------------------------------------------------------------------
// Issue 11 item 4: `filter: equality` means constants the caller supplies.

#[tokio::test]
async fn equality_against_generated_candidates_is_refused() {
    let s = as_role("agent").await;
    // Candidates that include the real card number 6222021234567890128.
    let gen =
        "SELECT '62220212345678901' || lpad(x::text, 2, '0') AS p, x FROM generate_series(0, 99) x";
    s.exec(&format!("CREATE TEMP TABLE cand AS {gen}")).await;
    for sql in [
        format!("SELECT g.p FROM cards k JOIN ({gen}) g ON k.card_no = g.p"),
        "SELECT g.p FROM cards k JOIN (VALUES ('6222021234567890128'), ('4111')) g(p) ON k.card_no = g.p".into(),
        "SELECT x FROM cards k JOIN unnest(ARRAY['6222021234567890128', '1']) x ON k.card_no = x".into(),
        "SELECT x FROM cards k, generate_series(0, 99) x WHERE k.card_no = '62220212345678901' || lpad(x::text, 2, '0')".into(),
        format!("SELECT count(*) FROM cards WHERE card_no IN (SELECT p FROM ({gen}) g)"),
        format!("SELECT count(*) FROM cards WHERE card_no = ANY (SELECT p FROM ({gen}) g)"),
        format!("SELECT card_no FROM cards INTERSECT SELECT p FROM ({gen}) g"),
        format!("SELECT count(*) FROM (SELECT card_no FROM cards UNION SELECT p FROM ({gen}) g) u"),
        format!("SELECT g.x FROM cards k JOIN (SELECT card_no AS p, -1 AS x FROM cards UNION ALL {gen}) g ON k.card_no = g.p"),
        format!("SELECT g.x FROM cards JOIN (SELECT p AS card_no, x FROM ({gen}) c) g USING (card_no)"),
        "SELECT c.p FROM cards k JOIN cand c ON k.card_no = c.p".into(),
        "SELECT c.x FROM cards k JOIN cand c ON c.p = k.card_no".into(),
        "SELECT max(CASE card_no WHEN '62220212345678901' || '28' THEN 1 END) FROM cards".into(),
        format!(
            "SELECT id FROM cards WHERE card_no IN ({})",
            (0..101)
                .map(|i| format!("'62220212345678901{i:02}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "SELECT id FROM cards WHERE {}",
            (0..101)
                .map(|i| format!("card_no = '62220212345678901{i:02}'"))
                .collect::<Vec<_>>()
                .join(" OR ")
        ),
    ] {
        s.refused(&sql).await;
    }
    // A lookup with the caller's own constants is what the rule is for.
    let (ok, text) = s
        .attack("SELECT id FROM cards WHERE card_no IN ('6222021234567890128', '4111111111111111')")
        .await;
    assert!(ok && text.contains('1'), "{text}");
    let row =
        s.c.query_one(
            "SELECT count(*) FROM customers WHERE id_number = $1",
            &[&ID_NUMBER],
        )
        .await;
    assert!(row.is_ok(), "bind-parameter lookup refused: {row:?}");
    s.finish();
}

// ---------------------------------------------------------------------------
// Issue 11 item 6: materialized views store derived clear values.

#[tokio::test]
async fn materialized_views_of_protected_values_are_refused() {
    let s = as_role("dev").await;
    for sql in [
        "CREATE MATERIALIZED VIEW m1 AS SELECT mobile || '' AS p FROM customers",
        "CREATE MATERIALIZED VIEW m2 AS SELECT mobile FROM customers",
        "CREATE MATERIALIZED VIEW m3 AS SELECT mobile FROM customers WITH NO DATA",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS m4 (a, b) AS SELECT id, id_number FROM customers",
        "CREATE MATERIALIZED VIEW m5 AS WITH c AS (SELECT upper(id_number) u FROM customers) SELECT u FROM c",
        "CREATE MATERIALIZED VIEW m6 AS SELECT * FROM customer_contacts",
        "CREATE MATERIALIZED VIEW m7 AS SELECT k.card_no, c.full_name FROM cards k JOIN customers c ON c.id = k.customer_id",
        "CREATE MATERIALIZED VIEW attack.m8 AS SELECT (SELECT max(mobile) FROM customers) AS p",
        "CREATE MATERIALIZED VIEW m9 AS SELECT string_agg(id_number, ',') FROM customers",
        "REFRESH MATERIALIZED VIEW mv_contacts",
        "REFRESH MATERIALIZED VIEW public.mv_contacts WITH DATA",
        "REFRESH MATERIALIZED VIEW CONCURRENTLY mv_contacts",
    ] {
        s.refused(sql).await;
    }
    s.finish();
}

// ---------------------------------------------------------------------------
// Issue 11 item 4 (first step): errors of any SQLSTATE lose quoted values.

#[tokio::test]
async fn errors_of_any_sqlstate_lose_quoted_values() {
    let s = as_role("dev").await;
    // Lookups of constants are allowed, but their errors quote the
    // constant: a masked session gets them without it, whatever the code.
    for sql in [
        format!("SELECT '{MOBILE}'::regclass"),
        format!("SELECT '{ID_NUMBER}'::regtype"),
        format!("SELECT to_regclass('x') FROM customers WHERE id_number = '{ID_NUMBER}' AND 'x{CARD}'::regproc IS NULL"),
    ] {
        let (ok, text) = s.attack(&sql).await;
        assert!(!ok, "{sql}: {text}");
    }
    s.finish();
}

// ---------------------------------------------------------------------------
// Issue 11: errors and notices, every field, whatever their SQLSTATE.

impl Session {
    /// Runs `sql` through the simple and the extended protocol; whatever
    /// happens (refused, failed, answered), nothing visible may carry a raw
    /// value. Returns the simple protocol's outcome.
    async fn no_leak(&self, sql: &str) -> (bool, String) {
        let simple = self.attack(sql).await;
        let _ = self.c.simple_query("ROLLBACK").await;
        let text = match self.c.query(sql, &[]).await {
            Ok(rows) => rows
                .iter()
                .flat_map(|row| {
                    (0..row.len()).map(move |i| {
                        row.try_get::<_, Option<String>>(i)
                            .ok()
                            .flatten()
                            .unwrap_or_default()
                    })
                })
                .collect::<Vec<_>>()
                .join("|"),
            Err(e) => error_text(&e),
        };
        // Notices that arrive late are caught by the next statement's check.
        let notices = self.drain_async();
        self.check(&format!("{sql} (extended)"), &format!("{text}\n{notices}"));
        let _ = self.c.simple_query("ROLLBACK").await;
        simple
    }
}

#[tokio::test]
async fn errors_and_notices_of_server_code_carry_no_values() {
    for role in ["dev", "agent", "prober"] {
        let s = as_role(role).await;
        for (i, note) in [
            "raise", "forge", "cast", "date", "chr", "json", "warn", "ok",
        ]
        .iter()
        .enumerate()
        {
            for customer in [1, 2] {
                let id = i * 10 + customer + 100 * role.len();
                s.no_leak(&format!(
                    "INSERT INTO tickets (id, customer_id, note) VALUES ({id}, {customer}, '{note}')"
                ))
                .await;
            }
        }
        for sql in [
            "SELECT card_hint(1)",
            "SELECT public.card_hint(id) FROM cards",
            "SELECT card_hint(2) AS h",
            "WITH t AS (SELECT card_hint(1) h) SELECT h FROM t",
            "INSERT INTO tickets SELECT 900 + id, id, 'raise' FROM cards",
            "INSERT INTO tickets VALUES (990, 1, 'forge') ON CONFLICT DO NOTHING",
            "BEGIN; INSERT INTO tickets VALUES (991, 1, 'warn'); COMMIT",
            "COPY (SELECT card_hint(1)) TO STDOUT",
            "PREPARE p AS SELECT card_hint($1); EXECUTE p(1)",
            "DECLARE c CURSOR WITH HOLD FOR SELECT card_hint(1); FETCH c",
        ] {
            s.no_leak(sql).await;
        }
        s.finish();
    }
    // The server's own object names still reach clients that rely on them
    // (an ORM maps a unique violation to a field by its constraint name).
    let s = as_role("dev").await;
    let err =
        s.c.batch_execute(
            "INSERT INTO tickets VALUES (5000, 2, 'x'); INSERT INTO tickets VALUES (5000, 2, 'x')",
        )
        .await
        .expect_err("duplicate key");
    let db = err.as_db_error().expect("server error");
    assert_eq!(db.code().code(), "23505");
    assert_eq!(db.constraint(), Some("tickets_pkey"));
    assert_eq!(db.table(), Some("tickets"));
}

/// Built-in types whose input function rejects (and may quote) a value.
const INPUT_TYPES: &[&str] = &[
    "int2",
    "int4",
    "int8",
    "numeric",
    "float4",
    "float8",
    "money",
    "bool",
    "date",
    "time",
    "timetz",
    "timestamp",
    "timestamptz",
    "interval",
    "uuid",
    "json",
    "jsonb",
    "jsonpath",
    "xml",
    "inet",
    "cidr",
    "macaddr",
    "macaddr8",
    "bit(4)",
    "varbit",
    "bytea",
    "point",
    "line",
    "box",
    "circle",
    "tsquery",
    "tsvector",
    "int4range",
    "numrange",
    "daterange",
    "oid",
    "tid",
    "xid",
    "pg_lsn",
    "txid_snapshot",
    "\"char\"",
    "int4[]",
    "text[]",
    "boolean[]",
    "record",
    "int2vector",
    "oidvector",
    "aclitem",
    "regclass",
    "regtype",
    "regproc",
    "regnamespace",
    "regrole",
    "regconfig",
];

/// Protected values of the fixture: (table, expression).
const PROTECTED: &[(&str, &str)] = &[
    ("customers", "id_number"),
    ("customers", "mobile"),
    ("customers", "full_name"),
    ("customers", "annual_income::text"),
    ("cards", "card_no"),
    ("cards", "cvv"),
    ("customers", "substr(id_number, 7, 8)"),
    ("cards", "substr(card_no, 7, 9)"),
];

#[tokio::test]
async fn no_error_path_returns_a_protected_value() {
    // `prober` may filter freely, so its statements reach the server's error
    // paths; `dev` may not, so pgveil refuses them first.
    for role in ["prober", "dev"] {
        let s = as_role(role).await;
        for (table, value) in PROTECTED {
            for ty in INPUT_TYPES {
                // In WHERE, so `prober` (free filtering) reaches the server.
                s.no_leak(&format!(
                    "SELECT count(*) FROM {table} WHERE ({value})::{ty} IS NOT NULL"
                ))
                .await;
            }
            for sql in [
                format!("SELECT count(*) FROM {table} WHERE chr(({value})::int) IS NOT NULL"),
                format!("SELECT count(*) FROM {table} WHERE make_date(({value})::int, 1, 1) IS NOT NULL"),
                format!("SELECT count(*) FROM {table} WHERE to_timestamp(({value})::float8 * 1e9) IS NOT NULL"),
                format!("SELECT count(*) FROM {table} WHERE set_bit('0'::bit(1), ({value})::int, 1) IS NOT NULL"),
                format!("SELECT count(*) FROM {table} WHERE get_byte('\\x00'::bytea, ({value})::int) > 0"),
                format!("SELECT count(*) FROM {table} WHERE setseed(({value})::float8) IS NULL"),
                format!("SELECT count(*) FROM {table} WHERE repeat('x', ({value})::int) > ''"),
                format!("SELECT count(*) FROM {table} WHERE to_date({value}, 'YYYYMMDD') IS NULL"),
                format!("SELECT count(*) FROM {table} WHERE ({value}) ~ ({value} || '(')"),
                format!("SELECT count(*) FROM {table} WHERE format({value} || '%z') > ''"),
                format!("SELECT count(*) FROM {table} WHERE convert_from(({value})::bytea, {value}) > ''"),
                format!("SELECT count(*) FROM {table} WHERE to_regclass({value}) IS NULL"),
                format!("SELECT count(*) FROM {table} WHERE current_setting({value}) > ''"),
                format!("SELECT count(*) FROM {table} WHERE ({value})::int / 0 > 0"),
                format!("SELECT count(*) FROM {table} WHERE (ARRAY[1])[({value})::int] > 0"),
                format!("SELECT count(*) FROM {table} WHERE jsonb_path_query_first('{{}}', ({value})::jsonpath) IS NULL"),
                format!("SELECT count(*) FROM {table} WHERE xmlparse(document {value}) IS NULL"),
                format!("SELECT count(*) FROM {table} WHERE ({value})::int::int2 > 0"),
                format!("UPDATE cards SET customer_id = (SELECT ({value})::int FROM {table} LIMIT 1) WHERE id = 2"),
                format!("INSERT INTO tickets SELECT ({value})::int, 1, 'x' FROM {table}"),
                format!("INSERT INTO tickets (id, note) SELECT 7000, {value} FROM {table}"),
            ] {
                s.no_leak(&sql).await;
            }
        }
        // Unique, check and foreign-key violations of the protected columns.
        for sql in [
            "UPDATE cards SET card_no = (SELECT card_no FROM cards WHERE id = 1) WHERE id = 2",
            "UPDATE customers SET id_number = (SELECT id_number FROM customers WHERE id = 1) WHERE id = 2",
            "INSERT INTO cards (customer_id, card_no) SELECT id, card_no FROM cards",
            "INSERT INTO customers (full_name, id_number) SELECT full_name, id_number FROM customers",
            "INSERT INTO cards (customer_id) SELECT substr(id_number, 7, 8)::int FROM customers",
            "UPDATE cards SET customer_id = substr(card_no, 7, 9)::int",
            "UPDATE tickets SET note = (SELECT mobile FROM customers WHERE id = 1)",
        ] {
            s.no_leak(sql).await;
        }
        s.finish();
    }
}

// ---------------------------------------------------------------------------
// Issue 11: operators run functions; a user-defined one is user code.

#[tokio::test]
async fn user_defined_operators_are_judged_as_calls_of_their_function() {
    // `opsy` may look ID numbers up by equality, and its search_path puts
    // a user-defined `=` for varchar first.
    let opsy = as_role("opsy").await;
    for sql in [
        format!("SELECT count(*) FROM customers WHERE id_number = '{ID_NUMBER}'"),
        "SELECT id FROM customers WHERE id_number IN ('1', '2')".into(),
        "SELECT count(*) FROM customers WHERE id_number IS NOT DISTINCT FROM 'x'".into(),
        "SELECT CASE id_number WHEN 'x' THEN 1 END FROM customers".into(),
        "SELECT count(*) FROM customers WHERE id_number::varchar = 'x'".into(),
        "SELECT count(*) FROM customers a JOIN customers b ON a.id_number = b.id_number".into(),
    ] {
        opsy.refused(&sql).await;
    }
    opsy.finish();
    let agent = as_role("agent").await;
    for sql in [
        "SELECT count(*) FROM customers WHERE id_number OPERATOR(attack.=) 'x'",
        "SELECT count(*) FROM customers WHERE id_number OPERATOR(\"attack\".=) 'x'",
    ] {
        agent.refused(sql).await;
    }
    // Without the schema on its path, `=` is PostgreSQL's.
    let (ok, text) = agent
        .attack(&format!(
            "SELECT count(*) FROM customers WHERE id_number = '{ID_NUMBER}'"
        ))
        .await;
    assert!(ok && text.starts_with('1'), "{text}");
    agent.finish();
    // `prober` may filter freely, but not run user code on the values.
    let prober = as_role("prober").await;
    for sql in [
        "SELECT count(*) FROM customers WHERE mobile === '1'",
        "SELECT count(*) FROM customers WHERE mobile OPERATOR(public.===) '1'",
        "SELECT count(*) FROM cards WHERE card_no === ANY (ARRAY['1'])",
        "SELECT count(*) FROM customers c JOIN cards k ON k.card_no === c.mobile",
        "SELECT count(*) FROM customers WHERE NOT (full_name === '1')",
        "SELECT count(*) FROM (SELECT mobile m FROM customers) s WHERE s.m === '1'",
        "SELECT count(*) FROM customers WHERE (mobile || '') === 'x'",
        "SELECT count(*) FROM customers GROUP BY mobile HAVING max(mobile) === 'x'",
    ] {
        prober.refused(sql).await;
    }
    let (ok, text) = prober
        .attack("SELECT count(*) FROM customers WHERE mobile = '1' OR mobile LIKE '139%'")
        .await;
    assert!(ok, "{text}");
    prober.finish();
    let loot = cluster()
        .psql_super_db("bank", "SELECT count(*) FROM attack.loot")
        .unwrap();
    assert_eq!(loot.trim(), "0", "a user operator ran on protected values");
}
