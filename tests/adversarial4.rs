//! Red-team round 4 (issue 11, what was left): names that would be found
//! before pg_catalog's types, functions and operators (temporary objects of
//! every kind, renames, a search_path listing a schema before pg_catalog),
//! domains reached through arrays and record-building functions, bound
//! arrays as equality candidates, and statistics, plans and errors of
//! computations the server runs without returning them. Written as an
//! attacker would, through tokio-postgres on both protocols (and a raw
//! protocol client where the driver would hide the attack): every attempt
//! must be refused by pgveil (42501) and no raw value may show up in
//! anything the client reads. Each test reports all its failures at once.

mod common;

use std::sync::OnceLock;

use common::bank::{self, *};
use common::probe::*;
use common::{cluster, Proxy};

fn setup() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        bank::create("");
        // A schema anyone may write to, domains that answer a question
        // about each value by failing or not, and a schema whose objects
        // take the names of pg_catalog's for a session that lists it first.
        cluster()
            .psql_super_db(
                "bank",
                "CREATE SCHEMA attack; GRANT ALL ON SCHEMA attack TO PUBLIC;
                 CREATE DOMAIN attack.short AS text CHECK (length(VALUE) < 3);
                 CREATE DOMAIN attack.short2 AS attack.short;
                 CREATE DOMAIN attack.starts139 AS text CHECK (VALUE LIKE '139%');
                 CREATE TYPE attack.rec AS (a attack.short);
                 CREATE TABLE attack.holder (a attack.starts139);
                 CREATE TYPE attack.mood AS ENUM ('13987654321', '13800000000');
                 CREATE TABLE attack.loot (v text);
                 GRANT ALL ON ALL TABLES IN SCHEMA attack TO PUBLIC;
                 CREATE SCHEMA shadow; GRANT USAGE ON SCHEMA shadow TO PUBLIC;
                 CREATE DOMAIN shadow.text AS pg_catalog.text CHECK (VALUE NOT LIKE '1398%');
                 CREATE FUNCTION shadow.lower(pg_catalog.text) RETURNS pg_catalog.text
                   LANGUAGE plpgsql SECURITY DEFINER AS $f$
                   BEGIN INSERT INTO attack.loot VALUES ($1); RETURN $1; END $f$;
                 CREATE FUNCTION shadow.same(pg_catalog.text, pg_catalog.text) RETURNS bool
                   LANGUAGE plpgsql SECURITY DEFINER AS $f$
                   BEGIN INSERT INTO attack.loot VALUES ($1); RETURN $1 = $2; END $f$;
                 CREATE OPERATOR shadow.= (LEFTARG = pg_catalog.text, RIGHTARG = pg_catalog.text,
                   FUNCTION = shadow.same);
                 CREATE FUNCTION shadow.same_v(pg_catalog.varchar, pg_catalog.text) RETURNS bool
                   LANGUAGE plpgsql SECURITY DEFINER AS $f$
                   BEGIN INSERT INTO attack.loot VALUES ($1); RETURN $1 = $2; END $f$;
                 CREATE OPERATOR shadow.= (LEFTARG = pg_catalog.varchar, RIGHTARG = pg_catalog.text,
                   FUNCTION = shadow.same_v);
                 CREATE VIEW attack.column_stats AS
                   SELECT tablename, attname, most_common_vals::text AS v FROM pg_stats;
                 GRANT SELECT ON attack.column_stats TO PUBLIC;
                 CREATE ROLE prober LOGIN PASSWORD 'role-pw';
                 CREATE ROLE shifty LOGIN PASSWORD 'role-pw' IN ROLE team_east;
                 CREATE SCHEMA shifty AUTHORIZATION shifty;
                 CREATE TABLE shifty.customers (id int, id_number text, mobile text);
                 INSERT INTO shifty.customers VALUES (1, 'decoy-id', 'decoy-mobile');
                 ALTER TABLE shifty.customers OWNER TO shifty;
                 CREATE SCHEMA decoy; GRANT USAGE ON SCHEMA decoy TO PUBLIC;
                 CREATE TABLE decoy.customers (id int, id_number text, mobile text);
                 INSERT INTO decoy.customers VALUES (1, 'decoy-id', 'decoy-mobile');
                 GRANT SELECT ON decoy.customers TO PUBLIC;
                 CREATE ROLE turncoat LOGIN PASSWORD 'role-pw';",
            )
            .unwrap();
        bank::start_proxy(bank::POLICIES)
    })
}

async fn as_role(role: &str) -> Session {
    Session::connect(setup(), role).await
}

/// Runs `sql` (simple protocol) and expects it to work.
async fn works(s: &Session, sql: &str) -> String {
    let (ok, text) = s.attack(sql).await;
    if !ok {
        s.leaks
            .lock()
            .unwrap()
            .push(format!("FALSE BLOCK: `{sql}` -> {text}"));
    }
    text
}

// ---------------------------------------------------------------------------
// Issue 11 class 2: a name found before pg_catalog's type. Every object that
// owns a pg_type row takes part: tables, views, CTAS and SELECT INTO,
// composites, enums, ranges and their multiranges, domains, array names,
// whether created, renamed, or made temporary by PostgreSQL itself.

#[tokio::test]
async fn no_object_can_take_a_builtin_types_name_before_pg_catalog() {
    let s = as_role("dev").await;
    s.exec(
        "CREATE TEMP TABLE scratch (a int);
         CREATE TEMP VIEW scratch_view AS SELECT 1 AS a;
         CREATE TYPE pg_temp.scratch_type AS (a text);
         CREATE DOMAIN pg_temp.scratch_dom AS int;
         CREATE TEMP SEQUENCE scratch_seq",
    )
    .await;
    for sql in [
        // Ranges bring a multirange and two array types with them.
        "CREATE TYPE pg_temp.int4range AS RANGE (subtype = int4)",
        "CREATE TYPE pg_temp.my_span AS RANGE (subtype = int8, multirange_type_name = int8multirange)",
        "CREATE TYPE pg_temp.my_span AS RANGE (subtype = int8, multirange_type_name = pg_temp.datemultirange)",
        "CREATE TYPE pg_temp.numrange AS RANGE (subtype = numeric)",
        "CREATE TYPE pg_temp._int4 AS (a text)",
        "CREATE TYPE pg_temp.numeric AS ENUM ('1')",
        "CREATE TYPE pg_temp.jsonb AS (a int)",
        "CREATE TYPE pg_temp.name",
        // Tables made by queries.
        "SELECT 'x'::text AS a INTO TEMP TABLE int8",
        "SELECT 1 AS a INTO TEMPORARY bytea UNION SELECT 2",
        "CREATE TEMP TABLE text AS SELECT 1 AS a",
        "CREATE TEMP TABLE IF NOT EXISTS uuid AS SELECT 1 AS a WITH NO DATA",
        "EXPLAIN ANALYZE CREATE TEMP TABLE bool AS SELECT 1 AS a",
        "CREATE TEMP TABLE pg_class (a int)",
        "CREATE TEMP TABLE float8 (LIKE scratch)",
        // A view over a temporary table is temporary without saying so.
        "CREATE VIEW text AS SELECT * FROM scratch",
        "CREATE OR REPLACE VIEW interval AS SELECT a FROM scratch",
        "CREATE RECURSIVE VIEW date (n) AS SELECT 1",
        // Renames of every kind (some only PostgreSQL's parser reads).
        "ALTER TYPE pg_temp.scratch_type RENAME TO text",
        "ALTER DOMAIN pg_temp.scratch_dom RENAME TO varchar",
        "ALTER VIEW scratch_view RENAME TO int4",
        "ALTER TABLE IF EXISTS scratch RENAME TO json",
        "ALTER TABLE pg_temp.scratch RENAME TO _text",
        "ALTER MATERIALIZED VIEW IF EXISTS scratch RENAME TO timestamptz",
        "ALTER FOREIGN TABLE IF EXISTS scratch RENAME TO inet",
    ] {
        s.refused(sql).await;
    }
    // With pg_temp listed first, unqualified creation is temporary too.
    s.exec("SET search_path = pg_temp, public").await;
    s.refused("CREATE TYPE int2 AS ENUM ('a')").await;
    s.refused("CREATE TABLE money (a int)").await;
    s.exec("RESET search_path").await;
    // A schema listed before pg_catalog is searched first for types too.
    s.exec("SET search_path = attack, pg_catalog").await;
    s.refused("CREATE DOMAIN text AS pg_catalog.text").await;
    s.refused("CREATE TYPE attack.varchar AS (a int)").await;
    s.refused("CREATE TABLE text (a int)").await;
    s.exec("RESET search_path").await;
    // Ordinary names still work, and the casts stay masked copies.
    for sql in [
        "CREATE TEMP TABLE orders_tmp (a int)",
        "CREATE TYPE pg_temp.my_pair AS (a int, b text)",
        "CREATE TYPE pg_temp.my_range AS RANGE (subtype = int4)",
        "CREATE TYPE pg_temp.status AS ENUM ('new', 'done')",
        "CREATE TEMP TABLE copy_tmp AS SELECT 1 AS a",
        "ALTER TABLE orders_tmp RENAME TO orders_tmp2",
        "CREATE DOMAIN attack.phone_number AS text",
        "ALTER TYPE pg_temp.my_pair RENAME TO my_pair2",
    ] {
        works(&s, sql).await;
    }
    let text = works(&s, "SELECT mobile::text FROM customers WHERE id = 1").await;
    assert!(text.contains("4321"), "{text}");
    s.finish();
}

/// `SET search_path = shadow, pg_catalog` puts a schema before pg_catalog
/// for types, functions and operators alike: `::text`, `lower()` and `=`
/// then run the schema's code on the clear value.
#[tokio::test]
async fn a_schema_before_pg_catalog_cannot_redirect_casts_functions_or_operators() {
    for role in ["dev", "agent", "prober"] {
        let s = as_role(role).await;
        s.exec("SET search_path = shadow, pg_catalog, public").await;
        for sql in [
            "SELECT mobile::text FROM customers",
            "SELECT count(*) FROM customers WHERE mobile::text IS NOT NULL",
            "SELECT CAST(id_number AS text) FROM customers",
            "SELECT lower(mobile) FROM customers",
            "SELECT count(*) FROM customers WHERE lower(id_number) IS NULL",
            "SELECT id FROM customers WHERE mobile = '13987654321'",
            "SELECT id FROM customers WHERE id_number = '11010519491231002X'",
            "SELECT id FROM customers WHERE id_number IN ('1', '2')",
            "SELECT id FROM customers WHERE id_number = $$x$$::text",
            "SELECT a.id FROM customers a JOIN customers b ON a.id_number = b.id_number",
        ] {
            s.refused(sql).await;
        }
        s.exec("RESET search_path").await;
        let loot = cluster()
            .psql_super_db("bank", "SELECT count(*) FROM attack.loot")
            .unwrap_or_default();
        assert!(
            loot.lines().any(|l| l.trim() == "0"),
            "shadow code ran for {role}: {loot}"
        );
        s.finish();
    }
    // The same statements under the default path are everyday SQL.
    let s = as_role("agent").await;
    works(
        &s,
        "SELECT id FROM customers WHERE id_number = '11010519491231002X'",
    )
    .await;
    works(&s, "SELECT lower(branch) FROM customers").await;
    s.finish();
}

// ---------------------------------------------------------------------------
// Issue 11 class 2: a domain is code, also inside arrays, domains over
// domains, enums, and the row types record-building functions fill.

#[tokio::test]
async fn domains_run_on_values_only_through_casts_pgveil_refuses() {
    // prober may filter by anything, so only the domain's code decides.
    for role in ["prober", "dev"] {
        let s = as_role(role).await;
        for sql in [
            "SELECT count(*) FROM customers WHERE ARRAY[mobile]::attack.short[] IS NOT NULL",
            "SELECT count(*) FROM customers WHERE (ARRAY[mobile]::attack.short2[])[1] IS NULL",
            "SELECT count(*) FROM customers WHERE CAST(ARRAY[ARRAY[mobile]] AS attack.starts139[][]) IS NOT NULL",
            "SELECT count(*) FROM customers WHERE mobile::attack.short2 IS NOT NULL",
            "SELECT count(*) FROM customers WHERE mobile::attack.mood IS NOT NULL",
            "SELECT count(*) FROM customers WHERE ROW(mobile)::attack.rec IS NOT NULL",
            "SELECT count(*) FROM customers c, json_populate_record(NULL::attack.holder, json_build_object('a', c.mobile)) r",
            "SELECT (jsonb_populate_record(NULL::attack.holder, jsonb_build_object('a', mobile))).a IS NULL FROM customers",
            "SELECT count(*) FROM customers c, json_to_record(json_build_object('a', c.mobile)) AS x(a attack.starts139)",
            "SELECT count(*) FROM customers c, jsonb_to_recordset(jsonb_build_array(jsonb_build_object('a', c.id_number))) AS x(a attack.short2)",
            "SELECT count(*) FROM customers c, json_populate_recordset(NULL::attack.holder, json_build_array(json_build_object('a', c.mobile))) r",
            "SELECT count(*) FROM (SELECT mobile FROM customers) s WHERE s.mobile::attack.starts139 IS NOT NULL",
        ] {
            s.refused(sql).await;
        }
        s.finish();
    }
}

// ---------------------------------------------------------------------------
// Issue 11 class 4: a bound array is as many candidates as it has elements.

#[tokio::test]
async fn bound_arrays_count_as_candidates() {
    let s = as_role("agent").await;
    let candidates = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| format!("110105194912310{i:03}"))
            .chain(std::iter::once(ID_NUMBER.to_owned()))
            .collect()
    };
    let mut failures = Vec::new();
    for (sql, n) in [
        ("SELECT id FROM customers WHERE id_number = ANY($1)", 100),
        (
            "SELECT id FROM customers WHERE id_number = ANY($1::text[])",
            150,
        ),
        ("SELECT id FROM customers WHERE id_number = ANY(($1))", 1000),
        (
            "SELECT id FROM customers WHERE id_number = ANY($1) AND id > 0",
            100_000,
        ),
    ] {
        let values = candidates(n);
        match s.c.query(sql, &[&values]).await {
            Ok(rows) => failures.push(format!(
                "{n} candidates accepted: {sql} -> {} rows",
                rows.len()
            )),
            Err(e) => {
                let text = error_text(&e);
                s.check(sql, &text);
                if e.code().map(|c| c.code()) != Some("42501") || !text.contains("pgveil") {
                    failures.push(format!("{sql}: {text}"));
                }
            }
        }
    }
    // Two arrays for one column add up.
    let half = candidates(60);
    match s
        .c
        .query(
            "SELECT id FROM customers WHERE id_number = ANY($1) OR id_number = ANY($2)",
            &[&half, &half],
        )
        .await
    {
        Ok(_) => failures.push("two arrays of 61 accepted".into()),
        Err(e) if e.code().map(|c| c.code()) == Some("42501") => {}
        Err(e) => failures.push(format!("two arrays: {}", error_text(&e))),
    }
    // (Arrays in text format are counted by the same code: unit test
    // `bound_arrays_are_counted_in_text_and_binary_form` in session/wire.rs.)
    // SQL-level PREPARE/EXECUTE passes the array as text pgveil would
    // have to count in the EXECUTE: refused at PREPARE.
    s.refused("PREPARE lookup(text[]) AS SELECT id FROM customers WHERE id_number = ANY($1)")
        .await;
    // Within the bound, the lookup ORMs send works, in binary and text.
    let rows =
        s.c.query(
            "SELECT id FROM customers WHERE id_number = ANY($1)",
            &[&candidates(99)],
        )
        .await;
    match rows {
        Ok(rows) if rows.len() == 1 => {}
        other => failures.push(format!("100 candidates refused: {other:?}")),
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    s.finish();
}

// ---------------------------------------------------------------------------
// Statistics, plans and computations the server runs without returning
// them: each would answer a question about protected values.

#[tokio::test]
async fn statistics_plans_and_unreturned_computations_are_refused() {
    let s = as_role("dev").await;
    s.exec("ANALYZE customers").await;
    for sql in [
        "SELECT most_common_vals::text FROM pg_stats WHERE tablename = 'customers'",
        "SELECT histogram_bounds FROM pg_catalog.pg_stats WHERE attname = 'mobile'",
        "SELECT * FROM pg_stats_ext",
        "SELECT most_common_vals FROM pg_stats_ext_exprs",
        "SELECT stxdmcv FROM pg_statistic_ext_data",
        "SELECT stavalues1::text FROM pg_statistic",
        "SELECT s.n FROM (SELECT most_common_vals::text AS n FROM pg_stats) s",
        "SELECT v FROM attack.column_stats WHERE tablename = 'customers'",
        "CREATE TEMP VIEW my_stats AS SELECT * FROM pg_stats",
        "EXPLAIN SELECT id FROM customers WHERE mobile < '1390'",
        "EXPLAIN (FORMAT JSON) SELECT id FROM customers WHERE id_number LIKE '1101%'",
        "CREATE INDEX ON customers (id) WHERE mobile LIKE '139%'",
        "CREATE INDEX ON customers ((substr(mobile, 1, 3)))",
        // Computed, not returned: whether it fails tells a digit.
        "EXPLAIN ANALYZE SELECT 1 / (substr(mobile, 2, 1)::int - 3) FROM customers",
        "EXPLAIN (ANALYZE, TIMING off) SELECT 1 / (substr(id_number, 7, 1)::int - 1) FROM customers",
        "EXPLAIN (analyse true) SELECT mobile::int FROM customers",
        "WITH c AS MATERIALIZED (SELECT 1 / (substr(mobile, 2, 1)::int - 3) AS x FROM customers) SELECT count(*) FROM c",
        "WITH c AS (SELECT 1 / (substr(mobile, 2, 1)::int - 3) AS x FROM customers) SELECT count(*) FROM c a, c b",
        "WITH c AS (SELECT id, length(id_number) / 0 AS x FROM customers) SELECT id FROM c",
    ] {
        s.refused(sql).await;
    }
    // A denied column is no more usable there.
    let t = as_role("trainee").await;
    for sql in [
        "EXPLAIN ANALYZE SELECT 1 / (length(id_number) - 18) FROM customers",
        "WITH c AS MATERIALIZED (SELECT id_number::int AS x FROM customers) SELECT count(*) FROM c",
    ] {
        t.refused(sql).await;
    }
    // Plans of ordinary statements, and CTEs that only copy, still work.
    for sql in [
        "EXPLAIN SELECT id, mobile FROM customers WHERE id = 1",
        "EXPLAIN ANALYZE SELECT id, mobile FROM customers WHERE id = 1",
        "WITH c AS MATERIALIZED (SELECT id, mobile FROM customers) SELECT id, mobile FROM c",
        "WITH c AS (SELECT id, upper(branch) AS b FROM customers) SELECT id, b FROM c",
        "SELECT reltuples FROM pg_class WHERE relname = 'customers'",
    ] {
        works(&s, sql).await;
    }
    s.finish();
    t.finish();
}

// ---------------------------------------------------------------------------
// Issue 11 class 5: lexing. Spellings whose tokens end elsewhere for a lexer
// that is not PostgreSQL's. Whatever pgveil answers (masked rows or a
// refusal), no raw value may come back on either protocol.

#[tokio::test]
async fn spellings_that_lex_differently_never_reveal_a_value() {
    let s = as_role("agent").await;
    // Plans cached under these texts' neighbours first.
    for warm in ["SELECT 1", "SELECT 0 AS x", "SELECT 'a'"] {
        let _ = s.visible(warm).await;
    }
    let tricks = [
        "SELECT U&\"\\0069d_number\" FROM customers",
        "SELECT U&\"!0069d_number\" UESCAPE '!' FROM customers",
        "SELECT 0x, id_number FROM customers",
        "SELECT 1.e, id_number FROM customers",
        "SELECT 'a'\n'b', id_number FROM customers",
        "SELECT E'\\'', id_number FROM customers",
        "SELECT $a$ $$ $a$, id_number FROM customers",
        "SELECT $x$;$x$, id_number FROM customers",
        "SELECT 1 /* /* */ , id_number FROM customers */",
        "SELECT 1 --\u{c}, id_number FROM customers",
        "SELECT 1 -- \u{b}\n, mobile FROM customers",
        "SELECT \"customers\".\"id_number\" FROM \"customers\"",
        "SELECT c.id_number FROM customers c WHERE 'x' = 'x' --\r AND false",
        "SELECT b'1', id_number FROM customers",
    ];
    for sql in tricks {
        let (_, text) = s.attack(sql).await;
        let _ = text;
        match s.c.query(sql, &[]).await {
            Ok(rows) => {
                for row in rows {
                    for i in 0..row.len() {
                        let v: Option<String> = row.try_get(i).ok().flatten();
                        s.check(&format!("{sql:?} (extended)"), &v.unwrap_or_default());
                    }
                }
            }
            Err(e) => s.check(&format!("{sql:?} (extended)"), &error_text(&e)),
        }
    }
    s.finish();
}

// ---------------------------------------------------------------------------
// Issue 11 class 7: no input aborts pgveil. Deep shapes tests/deep_input.rs
// does not build, on both protocols; after each the session and a new one
// still answer.

fn deep_shapes(n: usize) -> Vec<String> {
    vec![
        format!(
            "SELECT {}id_number{} FROM customers",
            "lower(".repeat(n),
            ")".repeat(n)
        ),
        format!(
            "SELECT {}id_number{} FROM customers",
            "coalesce(".repeat(n),
            ", 'x')".repeat(n)
        ),
        format!(
            "SELECT {}1{}",
            "CASE WHEN true THEN ".repeat(n),
            " END".repeat(n)
        ),
        format!("SELECT '{{}}'::jsonb{}", "->'a'".repeat(n)),
        format!("SELECT (ARRAY[1]){}", "[1]".repeat(n)),
        format!("SELECT {}1", "- ".repeat(n)),
        format!("SELECT {}1{}", "ROW(".repeat(n), ")".repeat(n)),
        format!(
            "SELECT count(*) FROM {}customers{}",
            "(".repeat(n),
            ")".repeat(n)
        ),
        format!("SELECT id_number{} FROM customers", " || 'x'".repeat(n)),
        format!(
            "SELECT count(*) FROM customers WHERE {}",
            vec!["id_number IS NOT NULL"; n].join(" AND ")
        ),
        format!(
            "SELECT {}1{}",
            "(SELECT ".repeat(n.min(5_000)),
            ")".repeat(n.min(5_000))
        ),
        format!(
            "SELECT 1 FROM customers WHERE id = {}1{}",
            "abs(".repeat(n),
            ")".repeat(n)
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_shapes_of_every_kind_never_abort_the_proxy() {
    let s = as_role("agent").await;
    for n in [200, 3_000, 40_000] {
        for sql in deep_shapes(n) {
            let _ = s.attack(&sql).await;
            if let Err(e) = s.c.query(sql.as_str(), &[]).await {
                s.check("deep shape (extended)", &error_text(&e));
            }
            let (ok, text) = s.visible("SELECT 41 + 1").await;
            assert!(
                ok && text.contains("42"),
                "session unusable after {}: {text}",
                &sql[..60]
            );
        }
    }
    let fresh = Session::connect(setup(), "dev").await;
    let (ok, text) = fresh.visible("SELECT 1 + 1").await;
    assert!(ok && text.contains('2'), "new session refused: {text}");
    s.finish();
}

// ---------------------------------------------------------------------------
// What `"$user"` in search_path stands for: the current role, which SET ROLE,
// SET SESSION AUTHORIZATION, RESET and DISCARD ALL change. A login role that
// owns a schema of its own name, holding a `customers` of its own, switches
// to a role without one: the server now reads public.customers, and so must
// pgveil (which then refuses the computed read).

/// The extended-protocol values of `sql`, or its error, all as one text.
async fn extended_text(s: &Session, sql: &str) -> String {
    match s.c.query(sql, &[]).await {
        Ok(rows) => rows
            .iter()
            .flat_map(|r| (0..r.len()).map(move |i| r.try_get::<_, Option<String>>(i)))
            .map(|v| v.ok().flatten().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("|"),
        Err(e) => error_text(&e),
    }
}

#[tokio::test]
async fn search_path_follows_the_role_user_stands_for() {
    let s = as_role("shifty").await;
    // Computed, so the result carries no table column pgveil's check of
    // RowDescription would mask by itself: only the analysis guards it.
    let read = "SELECT id_number || '' AS v FROM customers WHERE id = 1";
    let own = |text: &str| text.contains("decoy-id");
    let text = works(&s, read).await;
    assert!(
        own(&text),
        "the login role's own schema comes first: {text}"
    );
    let mut failures = Vec::new();
    for (switch, back) in [
        ("SET ROLE team_east", "RESET ROLE"),
        ("SET role = team_east", "SET ROLE NONE"),
        ("SET SESSION ROLE team_east", "RESET role"),
        ("SET ROLE team_east", "DISCARD ALL"),
    ] {
        works(&s, switch).await;
        let text = s.attack(read).await.1;
        if own(&text) || text.trim().is_empty() {
            failures.push(format!("after `{switch}`: {text}"));
        }
        let text = extended_text(&s, read).await;
        s.check(&format!("{read} after {switch} (extended)"), &text);
        if own(&text) {
            failures.push(format!("after `{switch}` (extended): {text}"));
        }
        works(&s, back).await;
        let text = works(&s, read).await;
        if !own(&text) {
            failures.push(format!("after `{back}`: {text}"));
        }
    }
    // SET LOCAL ROLE lasts until the transaction ends, either way.
    for end in ["COMMIT", "ROLLBACK"] {
        works(&s, "BEGIN").await;
        works(&s, "SET LOCAL ROLE team_east").await;
        let text = s.attack(read).await.1;
        if own(&text) {
            failures.push(format!("inside SET LOCAL ROLE: {text}"));
        }
        works(&s, end).await;
        let text = works(&s, read).await;
        if !own(&text) {
            failures.push(format!("after {end}: {text}"));
        }
    }
    // Spellings only PostgreSQL's parser reads (refused today; read again
    // like the others if they pass): never the clear value.
    for sql in ["SET role TO 'team_east'", "SET role TO DEFAULT"] {
        let _ = s.attack(sql).await;
        let _ = s.attack(read).await;
        works(&s, "RESET ROLE").await;
    }
    // In the same string as the read: refused or masked, never clear.
    let _ = s
        .attack("SET ROLE team_east; SELECT id_number FROM customers WHERE id = 1")
        .await;
    works(&s, "RESET ROLE").await;
    // set_config changes the role inside any statement: refused.
    for sql in [
        "SELECT set_config('role', 'team_east', false)",
        "SELECT id_number FROM customers, set_config('role', 'team_east', false) WHERE id = 1",
        "SELECT set_config('ROLE', 'team_east', true), 1",
        "SELECT set_config(name, 'team_east', false) FROM pg_settings WHERE name = 'role'",
    ] {
        s.refused(sql).await;
    }
    let text = works(&s, read).await;
    assert!(
        own(&text),
        "the role never changed: {text}\n{}",
        s.leaks.lock().unwrap().join("\n")
    );
    // DISCARD ALL also puts back the server's default search_path.
    let a = as_role("agent").await;
    works(&a, "SET search_path = decoy, public").await;
    let text = works(&a, read).await;
    assert!(own(&text), "{text}");
    works(&a, "DISCARD ALL").await;
    let text = a.attack(read).await.1;
    if own(&text) || text.trim().is_empty() {
        failures.push(format!("after DISCARD ALL: {text}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    s.finish();
    a.finish();
}

// ---------------------------------------------------------------------------
// A session that was unrestricted could create what a masked one may not: a
// temporary type named like a built-in one, which the server finds before
// pg_catalog's (a varchar domain whose CHECK then runs on every value cast to
// varchar). When a policy reload makes that session masked, it is closed.

#[tokio::test]
async fn a_session_that_becomes_masked_with_a_shadowing_temporary_type_is_closed() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("turncoat.yaml");
    let policy = |who: &str| {
        format!(
            "version: 1\ncolumns:\n  public.customers.id_number:\n    mask: cn_id_card\n    \
             rules:\n      - roles: [{who}]\n        action: allow\n"
        )
    };
    std::fs::write(&file, policy("turncoat")).unwrap();
    let p = bank::start_proxy(&dir.path().to_string_lossy());
    let shadowing = Session::connect(&p, "turncoat").await;
    let ordinary = Session::connect(&p, "turncoat").await;
    let read = "SELECT id_number FROM customers WHERE id = 1";
    let (ok, text) = shadowing.visible(read).await;
    assert!(
        ok && text.contains(ID_NUMBER),
        "unrestricted at first: {text}"
    );
    shadowing
        .exec("CREATE DOMAIN pg_temp.varchar AS text CHECK (VALUE NOT LIKE '1101%')")
        .await;
    ordinary
        .exec("CREATE TYPE pg_temp.mood AS ENUM ('calm'); CREATE TEMP TABLE notes (a int)")
        .await;
    std::fs::write(&file, policy("compliance")).unwrap();
    let mut masked = false;
    for _ in 0..100 {
        let fresh = Session::connect(&p, "turncoat").await;
        let (ok, text) = fresh.visible(read).await;
        if ok && !text.contains(ID_NUMBER) {
            masked = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(masked, "the reload never took effect");
    let (ok, text) = shadowing
        .visible("SELECT count(*) FROM customers WHERE id_number::varchar IS NULL")
        .await;
    assert!(
        !ok && text.contains("42501") && text.contains("temporary types"),
        "the session with a temporary varchar went on: {text}"
    );
    let (ok, text) = ordinary.attack(read).await;
    assert!(
        ok && !text.contains(ID_NUMBER),
        "ordinary temp types: {text}"
    );
    ordinary.finish();
}

// ---------------------------------------------------------------------------
// A name in a schema that does not exist reveals nothing protected: the
// server's own error (3F000 and the like), on both protocols alike.

#[tokio::test]
async fn an_operator_of_a_missing_schema_gets_the_servers_error_on_both_protocols() {
    let s = as_role("agent").await;
    let mut failures = Vec::new();
    for sql in [
        "SELECT count(*) FROM customers WHERE id_number OPERATOR(nowhere.=) 'x'",
        "SELECT id FROM customers WHERE id OPERATOR(nowhere.=) 1",
        "SELECT 1 OPERATOR(nowhere.+) 1",
        "SELECT nowhere.f(id_number) FROM customers",
        "SELECT id_number::nowhere.t FROM customers",
    ] {
        let (ok, simple) = s.attack(sql).await;
        let _ = s.c.simple_query("ROLLBACK").await;
        let extended = extended_text(&s, sql).await;
        s.check(&format!("{sql} (extended)"), &extended);
        // error_text puts the SQLSTATE after the driver's message.
        let code = |t: &str| {
            ["3F000", "42704", "42883", "42501"]
                .into_iter()
                .find(|c| t.contains(&format!(" {c} ")))
        };
        if ok
            || code(&simple).is_none()
            || code(&simple) != code(&extended)
            || code(&simple) == Some("42501")
        {
            failures.push(format!("{sql}\n  simple: {simple}\n  extended: {extended}"));
        }
        let _ = s.c.simple_query("ROLLBACK").await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    s.finish();
}

// ---------------------------------------------------------------------------
// Under `filter: equality`, IS NOT NULL compares with nothing the caller
// supplied and matches rows of every value: an index scan returns them in
// the protected column's order, so the row order would rank the values.
// Every spelling of it is refused; IS NULL (rows of one "value") is not.

#[tokio::test]
async fn is_not_null_is_not_an_equality_filter_however_spelled() {
    let s = as_role("agent").await;
    s.exec("SET enable_seqscan = off").await;
    for sql in [
        "SELECT id FROM customers WHERE id_number IS NOT NULL",
        "SELECT id FROM customers WHERE NOT (id_number IS NULL)",
        "SELECT id FROM customers WHERE NOT (id_number IS NULL OR id < 0)",
        "SELECT id FROM customers WHERE NOT NOT NOT (id_number IS NULL)",
        "SELECT id FROM customers WHERE (id_number IS NULL) = false",
        "SELECT id FROM customers WHERE (id_number IS NULL) IS FALSE",
        "SELECT id FROM customers WHERE id_number NOTNULL",
        "SELECT c.id FROM customers c JOIN cards k ON k.customer_id = c.id AND c.id_number IS NOT NULL",
        "SELECT id FROM customers WHERE id IN (SELECT id FROM customers WHERE id_number IS NOT NULL)",
        "SELECT count(*) FILTER (WHERE id_number IS NOT NULL) FROM customers",
    ] {
        s.refused(sql).await;
    }
    for sql in [
        "SELECT id FROM customers WHERE id_number IS NULL",
        "SELECT id FROM customers WHERE NOT (id_number IS NOT NULL)",
        "SELECT id FROM customers WHERE id_number = '440301199001011234'",
    ] {
        works(&s, sql).await;
    }
    s.finish();
}
