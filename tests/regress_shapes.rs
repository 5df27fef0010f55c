//! Statement shapes from PostgreSQL's regression SQL that pgveil used to
//! refuse for masked roles (issue 8; measured with tools/regress-compare.sh),
//! run through pgveil against a real PostgreSQL: each now passes, and a
//! protected column reached through the same shape is still masked or
//! refused.

mod common;

use std::sync::OnceLock;

use common::bank;
use common::probe::Session;
use common::{cluster, Proxy};

fn setup() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        bank::create("");
        // The regression scripts create their own roles.
        cluster()
            .psql_super("ALTER ROLE dev CREATEROLE; GRANT CREATE ON DATABASE bank TO dev")
            .unwrap();
        bank::start_proxy(bank::POLICIES)
    })
}

/// `dev` is named by no rule: every protected column gets its default mask
/// and may not be filtered by.
async fn dev() -> Session {
    Session::connect(setup(), "dev").await
}

async fn ok(s: &Session, sql: &str) -> String {
    let (ok, text) = s.attack(sql).await;
    assert!(ok, "`{sql}` failed through pgveil: {text}");
    text
}

async fn refused(s: &Session, sql: &str, says: &str) {
    let (ok, text) = s.attack(sql).await;
    assert!(!ok, "`{sql}` passed: {text}");
    assert!(
        text.contains("42501") && text.contains(says),
        "`{sql}` refused, but not saying {says:?}: {text}"
    );
}

#[tokio::test]
async fn zero_column_and_sequence_temp_relations_are_known() {
    let s = dev().await;
    // join.sql's `onerow`: a temporary table without columns.
    ok(&s, "CREATE TEMP TABLE onerow ()").await;
    ok(&s, "INSERT INTO onerow DEFAULT VALUES").await;
    let rows = ok(&s, "SELECT count(*) FROM onerow").await;
    assert!(rows.contains('1'), "{rows}");
    // `*` over it and a protected table: masks land on the right columns.
    let rows = ok(&s, "SELECT * FROM onerow, customers WHERE customers.id = 1").await;
    assert!(rows.contains("139****4321"), "{rows}");
    // create_view.sql's temporary sequence.
    ok(&s, "CREATE TEMP SEQUENCE seq1_temp").await;
    ok(&s, "SELECT seq1_temp.is_called, last_value FROM seq1_temp").await;
    s.finish();
}

#[tokio::test]
async fn partition_bounds_and_attach() {
    let s = dev().await;
    // MINVALUE/MAXVALUE are column references in PostgreSQL's raw tree.
    ok(
        &s,
        "CREATE TABLE rs_parted (a int, b int) PARTITION BY RANGE (a, b)",
    )
    .await;
    ok(
        &s,
        "CREATE TABLE rs_parted_1 PARTITION OF rs_parted FOR VALUES FROM (MINVALUE, MINVALUE) TO (10, MAXVALUE)",
    )
    .await;
    // Attaching a table checks its rows against the bound: a range oracle
    // over protected values when the key is protected.
    ok(
        &s,
        "CREATE TABLE rs_by_id (LIKE customers) PARTITION BY RANGE (id_number)",
    )
    .await;
    refused(
        &s,
        "ALTER TABLE rs_by_id ATTACH PARTITION customers FOR VALUES FROM ('1') TO ('2')",
        "is used in a DDL expression the server evaluates over stored rows",
    )
    .await;
    s.finish();
}

#[tokio::test]
async fn materialized_view_with_no_data() {
    let s = dev().await;
    // pg_dump's form, which sqlparser does not read.
    ok(
        &s,
        "CREATE MATERIALIZED VIEW rs_branches AS SELECT id, branch FROM customers WITH NO DATA",
    )
    .await;
    ok(&s, "REFRESH MATERIALIZED VIEW rs_branches").await;
    let rows = ok(&s, "SELECT count(*) FROM rs_branches").await;
    assert!(rows.contains('2'), "{rows}");
    // Storing a protected column stays refused in this form too.
    refused(
        &s,
        "CREATE MATERIALIZED VIEW rs_ids AS SELECT id, id_number FROM customers WITH NO DATA",
        "CREATE MATERIALIZED VIEW would copy protected column public.customers.id_number",
    )
    .await;
    refused(
        &s,
        "CREATE MATERIALIZED VIEW rs_ids AS SELECT id FROM customers WHERE mobile LIKE '139%' WITH DATA",
        "public.customers.mobile is used in WHERE",
    )
    .await;
    s.finish();
}

#[tokio::test]
async fn populate_record_with_a_composite_type() {
    let s = dev().await;
    // json.sql's `jpop`: the result's columns are the type's attributes.
    ok(&s, "CREATE TYPE rs_pop AS (a text, b int, c timestamp)").await;
    let rows = ok(
        &s,
        r#"SELECT * FROM json_populate_record(null::rs_pop, '{"a":"blurfl","b":3}') q"#,
    )
    .await;
    assert!(rows.contains("blurfl") && rows.contains('3'), "{rows}");
    ok(
        &s,
        r#"SELECT q.a, q.* FROM jsonb_populate_recordset(row('x', 1, null)::rs_pop, '[{"b":2}]') q"#,
    )
    .await;
    // A protected value poured into the record stays protected.
    let (passed, text) = s
        .attack(
            "SELECT * FROM json_populate_record(null::rs_pop, \
             json_build_object('a', (SELECT id_number FROM customers WHERE id = 1))) q",
        )
        .await;
    assert!(!passed, "a protected value left through a record: {text}");
    s.finish();
}

#[tokio::test]
async fn table_in_set_operations_and_select_into() {
    let s = dev().await;
    // select.sql: `… UNION ALL TABLE int8_tbl`; the table's columns are
    // masked in the branch that reads them.
    let rows = ok(
        &s,
        "SELECT * FROM customers WHERE id = 2 UNION ALL TABLE customers",
    )
    .await;
    assert!(rows.contains("139****4321"), "{rows}");
    // create_view.sql: `SELECT * INTO TABLE ramp FROM …`.
    ok(&s, "SELECT id, branch INTO TABLE rs_into FROM customers").await;
    refused(
        &s,
        "SELECT id, mobile INTO TABLE rs_into_mobile FROM customers",
        "public.customers.mobile",
    )
    .await;
    s.finish();
}

#[tokio::test]
async fn window_frame_exclusion() {
    let s = dev().await;
    // window.sql's views with EXCLUDE frames; the view is read back too.
    ok(
        &s,
        "CREATE TEMP VIEW rs_excl AS SELECT id, first_value(mobile) OVER (ORDER BY id \
         ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING EXCLUDE CURRENT ROW) AS next_mobile FROM customers",
    )
    .await;
    let rows = ok(&s, "SELECT * FROM rs_excl ORDER BY id").await;
    assert!(rows.contains("138****0000"), "{rows}");
    refused(
        &s,
        "SELECT id, count(*) OVER (ORDER BY mobile ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING EXCLUDE TIES) FROM customers",
        "public.customers.mobile is used in window clause",
    )
    .await;
    s.finish();
}

#[tokio::test]
async fn roles_and_memberships_move_no_data() {
    let s = dev().await;
    // rowsecurity.sql / privileges.sql: forms sqlparser does not read
    // (CREATE USER … NOLOGIN, ALTER GROUP … DROP USER) and role revokes.
    ok(&s, "CREATE USER rs_user1 NOLOGIN").await;
    ok(&s, "CREATE ROLE rs_group1 NOLOGIN").await;
    ok(&s, "REVOKE rs_group1 FROM rs_user1").await;
    ok(&s, "ALTER GROUP rs_group1 DROP USER rs_user1").await;
    ok(&s, "DROP USER rs_user1").await;
    ok(&s, "DROP ROLE rs_group1").await;
    s.finish();
}

#[tokio::test]
async fn masked_roles_may_not_change_the_memberships_rules_match_on() {
    // `dev` (masked, with CREATEROLE here) could otherwise make itself, or
    // a login it creates, a member of `compliance`, which the policy shows
    // clear ID numbers to: rules match a login by its memberships.
    let s = dev().await;
    ok(&s, "CREATE ROLE rs_login2 NOLOGIN").await;
    for sql in [
        "GRANT compliance TO dev",
        "GRANT compliance TO rs_login2",
        "CREATE ROLE rs_login3 LOGIN IN ROLE compliance",
        "CREATE USER rs_login3 IN GROUP compliance",
        "CREATE ROLE rs_group3 ROLE dev",
        "CREATE ROLE rs_group3 ADMIN dev",
        "ALTER GROUP compliance ADD USER dev",
        "ALTER ROLE rs_login2 RENAME TO rs_login4",
        "ALTER USER rs_login2 RENAME TO rs_login4",
    ] {
        refused(&s, sql, "role-membership-change").await;
    }
    // Nothing changed on the server.
    let rows = ok(
        &s,
        "SELECT 100 + count(*) FILTER (WHERE member) FROM (VALUES \
         (pg_has_role('dev', 'compliance', 'MEMBER')), \
         (pg_has_role('rs_login2', 'compliance', 'MEMBER'))) v(member)",
    )
    .await;
    assert!(rows.contains("100"), "{rows}");
    ok(&s, "DROP ROLE rs_login2").await;
    s.finish();
}

#[tokio::test]
async fn set_constraints_keeps_the_transaction() {
    let s = dev().await;
    // constraints.sql / foreign_key.sql: refusing SET CONSTRAINTS aborted
    // the transaction, and its COMMIT became a ROLLBACK.
    ok(
        &s,
        "CREATE TABLE rs_deferred (id int PRIMARY KEY DEFERRABLE INITIALLY IMMEDIATE)",
    )
    .await;
    ok(&s, "BEGIN").await;
    ok(&s, "SET CONSTRAINTS ALL DEFERRED").await;
    ok(&s, "INSERT INTO rs_deferred VALUES (1)").await;
    ok(&s, "COMMIT").await;
    let rows = ok(&s, "SELECT count(*) FROM rs_deferred").await;
    assert!(rows.contains('1'), "the COMMIT did not commit: {rows}");
    s.finish();
}

#[tokio::test]
async fn definitions_sqlparser_does_not_read() {
    let s = dev().await;
    // rowsecurity.sql's f_leak: COST with a fraction is PostgreSQL-only.
    ok(
        &s,
        "CREATE FUNCTION rs_leak(text) RETURNS bool COST 0.0000001 LANGUAGE plpgsql \
         AS 'BEGIN RAISE NOTICE ''rs_leak => %'', $1; RETURN true; END'",
    )
    .await;
    // Calling it with a protected value, or making the server call it,
    // stays refused (its body reaches nothing protected, so pgveil follows
    // it; the argument is what it must not get).
    refused(
        &s,
        "SELECT rs_leak(mobile) FROM customers",
        "protected column public.customers.mobile reaches public.rs_leak()",
    )
    .await;
    ok(&s, "CREATE TABLE rs_trig (a int)").await;
    refused(
        &s,
        "CREATE TRIGGER rs_t BEFORE INSERT ON rs_trig FOR EACH ROW EXECUTE PROCEDURE rs_leak('x')",
        "[rule: user-defined-function]",
    )
    .await;
    // An allowed function may not be redefined in this form either.
    refused(
        &s,
        "CREATE OR REPLACE FUNCTION public.card_hint(text) RETURNS text COST 0.5 \
         LANGUAGE sql AS 'SELECT $1'",
        "[rule: allowed-function-definition]",
    )
    .await;
    // create_aggregate.sql's old-style aggregate over built-in functions.
    ok(
        &s,
        "CREATE AGGREGATE rs_sum (sfunc1 = int4pl, basetype = int4, stype1 = int4, initcond1 = '0')",
    )
    .await;
    refused(
        &s,
        "CREATE AGGREGATE rs_leaky (sfunc1 = rs_leak, basetype = text, stype1 = bool)",
        "[rule: user-defined-function]",
    )
    .await;
    s.finish();
}

#[tokio::test]
async fn views_tables_and_publications_over_unprotected_data() {
    let s = dev().await;
    // select_into.sql / inherit.sql: CREATE TABLE … (columns) AS …
    ok(
        &s,
        "CREATE TEMP TABLE rs_ctas (id, x) AS SELECT x, x FROM generate_series(0, 10) x",
    )
    .await;
    // with.sql: a recursive view.
    ok(
        &s,
        "CREATE RECURSIVE VIEW rs_nums (n) AS VALUES (1) UNION ALL SELECT n+1 FROM rs_nums WHERE n < 5",
    )
    .await;
    let rows = ok(&s, "SELECT max(n) FROM rs_nums").await;
    assert!(rows.contains('5'), "{rows}");
    // publication.sql: a publication of a table without protected columns.
    ok(&s, "CREATE TABLE rs_pub_t (a int)").await;
    ok(
        &s,
        "CREATE PUBLICATION rs_pub FOR TABLE rs_pub_t WHERE (a > 1)",
    )
    .await;
    ok(
        &s,
        "ALTER PUBLICATION rs_pub SET TABLE rs_pub_t WHERE (a > 2)",
    )
    .await;
    // The same shapes over a protected column stay refused, through a view
    // too.
    refused(
        &s,
        "CREATE TABLE rs_ids (a) AS SELECT id_number FROM customers",
        "names protected column public.customers.",
    )
    .await;
    refused(
        &s,
        "CREATE RECURSIVE VIEW rs_mobiles (m) AS SELECT id FROM customer_contacts",
        "carries protected column public.customers.",
    )
    .await;
    // Statistics views hold stored values of every column.
    refused(
        &s,
        "CREATE TABLE rs_stats (a) AS SELECT most_common_vals::text FROM pg_stats",
        "[rule: sensitive-system-catalog]",
    )
    .await;
    refused(
        &s,
        "CREATE PUBLICATION rs_pub2 FOR TABLE customers",
        "protected column public.customers",
    )
    .await;
    s.finish();
}

#[tokio::test]
async fn fetch_forms_sqlparser_does_not_read() {
    let s = dev().await;
    // portals.sql: FETCH FROM c / FETCH BACKWARD FROM c are read with the
    // cursor's plan: its protected column is masked.
    ok(&s, "BEGIN").await;
    ok(
        &s,
        "DECLARE rs_cur SCROLL CURSOR FOR SELECT id, mobile FROM customers ORDER BY id",
    )
    .await;
    let rows = ok(&s, "FETCH FROM rs_cur").await;
    assert!(rows.contains("139****4321"), "{rows}");
    ok(&s, "FETCH FROM rs_cur").await;
    let rows = ok(&s, "FETCH BACKWARD FROM rs_cur").await;
    assert!(rows.contains("139****4321"), "{rows}");
    ok(&s, "COMMIT").await;
    s.finish();
}

#[tokio::test]
async fn alter_domain_checks_only_unprotected_values() {
    let s = dev().await;
    // domain.sql: checks over a domain no protected column uses.
    ok(&s, "CREATE DOMAIN rs_code AS char(3)").await;
    ok(&s, "CREATE DOMAIN rs_pos AS int").await;
    ok(
        &s,
        "ALTER DOMAIN rs_pos ADD CONSTRAINT rs_pos_c CHECK (VALUE > 0)",
    )
    .await;
    ok(&s, "ALTER DOMAIN rs_pos SET NOT NULL").await;
    // A protected column of the domain's type: the check would be a
    // one-bit oracle over its stored values.
    cluster()
        .psql_super_db("bank", "ALTER TABLE cards ALTER COLUMN cvv TYPE rs_code")
        .unwrap();
    // Any DDL through pgveil reads the catalog again.
    ok(&s, "CREATE TABLE rs_after_domain ()").await;
    refused(
        &s,
        "ALTER DOMAIN rs_code ADD CONSTRAINT rs_code_c CHECK (VALUE <> '987')",
        "protected column public.cards.cvv has user-defined type",
    )
    .await;
    refused(&s, "ALTER DOMAIN rs_code SET NOT NULL", "public.cards.cvv").await;
    // NOT VALID checks only later writes; dropping checks nothing.
    ok(
        &s,
        "ALTER DOMAIN rs_code ADD CONSTRAINT rs_code_c CHECK (VALUE <> '987') NOT VALID",
    )
    .await;
    refused(
        &s,
        "ALTER DOMAIN rs_code VALIDATE CONSTRAINT rs_code_c",
        "public.cards.cvv",
    )
    .await;
    ok(&s, "ALTER DOMAIN rs_code DROP CONSTRAINT rs_code_c").await;
    cluster()
        .psql_super_db("bank", "ALTER TABLE cards ALTER COLUMN cvv TYPE char(3)")
        .unwrap();
    s.finish();
}

#[tokio::test]
async fn qualified_array_subscripts() {
    let s = dev().await;
    // arrays.sql / opr_sanity.sql: `t.col[1]` is column t.col subscripted.
    ok(&s, "CREATE TABLE rs_arr (a int[], b text[])").await;
    ok(&s, "INSERT INTO rs_arr VALUES ('{1,2}', '{x,y}')").await;
    let rows = ok(&s, "SELECT rs_arr.a[2], rs_arr.b[1] FROM rs_arr").await;
    assert!(rows.contains('2') && rows.contains('x'), "{rows}");
    ok(
        &s,
        "SELECT DISTINCT p1.proargtypes[0]::regtype FROM pg_proc AS p1 WHERE p1.pronargs = 1 LIMIT 1",
    )
    .await;
    // An element of an array built from a protected column is computed
    // from it.
    refused(
        &s,
        "SELECT t.m[1] FROM (SELECT ARRAY[mobile] AS m FROM customers) AS t",
        "computed from protected column public.customers.mobile",
    )
    .await;
    s.finish();
}

#[tokio::test]
async fn temporary_tables_shadowing_unprotected_ones() {
    let s = dev().await;
    // float8.sql / temp.sql: a temporary table over a permanent one of the
    // same name; it holds only what later (judged) writes put in it.
    ok(&s, "CREATE TABLE rs_shadowed (a int)").await;
    ok(&s, "CREATE TEMP TABLE rs_shadowed (f1 text)").await;
    ok(&s, "INSERT INTO rs_shadowed VALUES ('temp')").await;
    let rows = ok(&s, "SELECT f1 FROM rs_shadowed").await;
    assert!(rows.contains("temp"), "{rows}");
    // Over a table with protected columns, or with rows of its own, the
    // shadow stays refused.
    refused(
        &s,
        "CREATE TEMP TABLE customers (id int, mobile text)",
        "would shadow public.customers, which carries protected column",
    )
    .await;
    refused(
        &s,
        "CREATE TEMP TABLE cards AS SELECT 1 AS id",
        "temporary cards would shadow public.cards",
    )
    .await;
    s.finish();
}

#[tokio::test]
async fn row_security_policies_with_subqueries() {
    let s = dev().await;
    // rowsecurity.sql: conditions that read other tables.
    ok(
        &s,
        "CREATE TABLE rs_doc (did int, dlevel int, dtitle text); \
         CREATE TABLE rs_uaccount (pguser name, seclv int)",
    )
    .await;
    ok(
        &s,
        "CREATE POLICY rs_p1 ON rs_doc USING \
         (dlevel <= (SELECT seclv FROM rs_uaccount WHERE pguser = current_user))",
    )
    .await;
    ok(
        &s,
        "ALTER POLICY rs_p1 ON rs_doc USING (did IN (SELECT x.did FROM rs_doc x WHERE x.dtitle LIKE '%2f%'))",
    )
    .await;
    // Every reader's rows would depend on the protected values.
    refused(
        &s,
        "CREATE POLICY rs_p2 ON rs_doc USING (dtitle IN (SELECT mobile FROM customers))",
        "public.customers.mobile is used in a DDL expression",
    )
    .await;
    refused(
        &s,
        "CREATE POLICY rs_p3 ON rs_doc USING ((SELECT c FROM customers c WHERE c.id = did) IS NULL)",
        "is used in a DDL expression",
    )
    .await;
    s.finish();
}

#[tokio::test]
async fn views_sqlparser_cannot_read_are_judged_by_their_names() {
    let s = dev().await;
    // with.sql: SEARCH/CYCLE clauses, which sqlparser reads neither in the
    // statement nor in pg_get_viewdef's text of the view.
    ok(
        &s,
        "CREATE VIEW rs_search AS WITH RECURSIVE sg(f, t) AS \
         (SELECT 1, 2 UNION ALL SELECT t, t + 1 FROM sg WHERE t < 5) \
         SEARCH DEPTH FIRST BY f SET seq SELECT f, t FROM sg",
    )
    .await;
    let rows = ok(&s, "SELECT t FROM rs_search ORDER BY t DESC LIMIT 1").await;
    assert!(rows.contains('5'), "{rows}");
    // One over a protected table (made by its owner): its columns may carry
    // any value of what it names.
    cluster()
        .psql_super_db(
            "bank",
            "CREATE VIEW rs_search_customers AS WITH RECURSIVE sg(id, m) AS \
             (SELECT id, mobile FROM customers UNION ALL SELECT id, m FROM sg WHERE false) \
             SEARCH DEPTH FIRST BY id SET seq SELECT id, m FROM sg; \
             GRANT SELECT ON rs_search_customers TO PUBLIC",
        )
        .unwrap();
    // A WITH query named like a table does not hide the table itself.
    cluster()
        .psql_super_db(
            "bank",
            "CREATE VIEW rs_search_named AS SELECT c.mobile, s.f FROM customers c, LATERAL \
             (WITH RECURSIVE customers(f) AS (SELECT 1 UNION ALL SELECT f + 1 FROM customers WHERE f < 2) \
             SEARCH DEPTH FIRST BY f SET seq SELECT f FROM customers) s; \
             GRANT SELECT ON rs_search_named TO PUBLIC",
        )
        .unwrap();
    ok(&s, "CREATE TABLE rs_after_view ()").await;
    refused(
        &s,
        "SELECT m FROM rs_search_customers",
        "protected column public.customers.",
    )
    .await;
    refused(
        &s,
        "SELECT f FROM rs_search_named",
        "protected column public.customers.",
    )
    .await;
    s.finish();
}

#[tokio::test]
async fn conversions_text_search_and_normal_forms() {
    let s = dev().await;
    // conversion.sql / alter_generic.sql: a conversion over PostgreSQL's own
    // procedure.
    ok(
        &s,
        "CREATE CONVERSION rs_conv FOR 'LATIN1' TO 'UTF8' FROM iso8859_1_to_utf8",
    )
    .await;
    // tsdicts.sql: mappings of a configuration.
    ok(
        &s,
        "CREATE TEXT SEARCH CONFIGURATION rs_ts (COPY = english)",
    )
    .await;
    ok(
        &s,
        "ALTER TEXT SEARCH CONFIGURATION rs_ts ALTER MAPPING FOR word, asciiword WITH simple",
    )
    .await;
    // unicode.sql: NFC is a keyword of normalize(), not a column.
    let rows = ok(
        &s,
        "SELECT normalize(U&'\\0061\\0308\\24D1c', NFC) = U&'\\00E4\\24D1c' COLLATE \"C\" AS test_nfc",
    )
    .await;
    assert!(rows.contains('t'), "{rows}");
    refused(
        &s,
        "SELECT normalize(mobile, NFKD) FROM customers",
        "computed from protected column public.customers.mobile",
    )
    .await;
    s.finish();
}

#[tokio::test]
async fn operators_end_where_postgresql_ends_them() {
    let s = dev().await;
    // create_operator.sql: a comment ends an operator, and a trailing `-`
    // of an operator made of SQL characters is a sign.
    let rows = ok(&s, "SELECT 2<=/**/3, 3>=/**/2, 2<>/**/3").await;
    assert!(!rows.contains('f'), "{rows}");
    ok(&s, "SELECT false>=-1 BETWEEN 1 AND 1").await;
    ok(&s, "SELECT id FROM customers WHERE id<>-1").await;
    refused(
        &s,
        "SELECT id FROM customers WHERE mobile<>/**/'x'",
        "public.customers.mobile is used in WHERE",
    )
    .await;
    s.finish();
}

/// alter_table.sql's `ALTER TABLE IF EXISTS` of a table that does not
/// exist: the server skips it with a notice. A table made since pgveil
/// read the catalog is read before the statement is judged.
#[tokio::test]
async fn alter_table_if_exists_of_a_missing_table_is_the_servers_to_skip() {
    let s = dev().await;
    let text = ok(&s, "ALTER TABLE IF EXISTS no_such_table ADD COLUMN f int").await;
    assert!(text.contains("does not exist, skipping"), "{text}");
    ok(
        &s,
        "ALTER TABLE IF EXISTS ONLY no_such_table RENAME COLUMN a TO b",
    )
    .await;
    // Made directly, not through pgveil: an inheritance child, whose
    // columns carry customers' rules.
    cluster()
        .psql_super_db(
            "bank",
            "CREATE TABLE late_child () INHERITS (customers); GRANT ALL ON late_child TO dev",
        )
        .unwrap();
    refused(
        &s,
        "ALTER TABLE IF EXISTS late_child ADD CHECK (length(id_number) = 18)",
        "id_number",
    )
    .await;
    s.finish();
}
