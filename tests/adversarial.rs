//! Red-team tests: a masked role (`dev`, default masks and filter=deny;
//! `trainee`, denied id_number) tries to read a protected column's raw value
//! through pgveil with real clients against a real PostgreSQL. Every test
//! asserts that no raw value (or its hidden part) reaches the client in any
//! row, command tag, COPY data, error, notice or notification. A failing
//! test here documents a real leak (or a false block, for the last tests).

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::bank;
use common::probe::*;
use common::{cluster, Proxy, DAVE_TRUST};
use futures::StreamExt;

fn setup() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        bank::create("");
        // A view of protected values named `Év` next to a harmless table
        // `év`: PostgreSQL reads unquoted Év as "Év" (it folds A-Z only).
        cluster()
            .psql_super_db(
                "bank",
                "CREATE VIEW \"Év\" AS SELECT id_number AS v FROM customers;
                 CREATE TABLE \"év\" (v text); INSERT INTO \"év\" VALUES ('harmless');
                 GRANT ALL ON \"Év\", \"év\" TO PUBLIC;
                 CREATE ROLE legacy LOGIN PASSWORD 'role-pw';
                 ALTER ROLE legacy SET standard_conforming_strings = off;",
            )
            .unwrap();
        bank::start_proxy(bank::POLICIES)
    })
}

async fn as_role(role: &str) -> Session {
    Session::connect(setup(), role).await
}

/// A raw protocol client of the fixture's pgveil.
fn raw(user: &str) -> Raw {
    Raw::connect(setup(), user)
}

// ---------------------------------------------------------------------------
// Attack families.

/// Values echoed by the server in errors and notices while evaluating a
/// select-list expression whose output pgveil would have masked.
#[tokio::test]
async fn errors_and_notices_do_not_echo_protected_values() {
    let s = as_role("dev").await;
    for sql in [
        "SELECT id_number::int FROM customers",
        "SELECT id_number::numeric FROM customers",
        "SELECT id_number::uuid FROM customers",
        "SELECT id_number::date FROM customers",
        "SELECT id_number::json FROM customers",
        "SELECT ('{' || id_number || '}')::int[] FROM customers",
        "SELECT id_number::regclass FROM customers",
        "SELECT mobile::regclass FROM customers",
        "SELECT card_no::regclass FROM cards",
        "SELECT full_name::regclass FROM customers",
        "SELECT id_number::regtype FROM customers",
        "SELECT id_number::regrole FROM customers",
        "SELECT id_number::regnamespace FROM customers",
        "SELECT id_number::regproc FROM customers",
        "SELECT id_number::regconfig FROM customers",
        "SELECT id_number::regcollation FROM customers",
        "SELECT current_setting(id_number) FROM customers",
        "SELECT nextval(id_number) FROM customers",
        "SELECT has_table_privilege(id_number, 'customers', 'select') FROM customers",
        "SELECT pg_size_bytes(id_number) FROM customers",
        "SELECT date_part(id_number, now()) FROM customers",
        "SELECT convert_to('x', id_number) FROM customers",
        "SELECT id_number::jsonpath FROM customers",
        "SELECT make_date(substr(id_number, 7, 8)::int, 1, 1) FROM customers",
        "SELECT make_date(2000, substr(mobile, 4, 4)::int, 1) FROM customers",
        "SELECT chr(substr(id_number, 7, 8)::int) FROM customers",
        "SELECT set_bit('\\x00'::bytea, substr(id_number, 7, 8)::int, 1) FROM customers",
        "SELECT get_byte('\\x00'::bytea, substr(mobile, 4, 4)::int) FROM customers",
        "SELECT txid_status(substr(id_number, 7, 8)::bigint) FROM customers",
        "SELECT pg_cancel_backend(substr(mobile, 4, 4)::int) FROM customers",
        "SELECT pg_terminate_backend(substr(id_number, 7, 8)::int) FROM customers",
        "SELECT to_timestamp(id_number, 'YYYYMMDD') FROM customers",
        "SELECT xmlparse(document id_number) FROM customers",
        "SELECT repeat('x', -1) || id_number::int FROM customers",
        "SELECT 'a' ~ ('(' || id_number) FROM customers",
        "SELECT pg_get_viewdef(substr(id_number, 7, 8)::oid) FROM customers",
        "SELECT lo_get(substr(id_number, 7, 8)::oid) FROM customers",
        "SELECT pg_describe_object(substr(id_number, 7, 8)::oid, 1, 0) FROM customers",
        "SELECT to_regclass(id_number)::oid::int / 0 FROM customers",
        "SELECT format('%s', mobile)::regclass FROM customers",
        "SELECT (SELECT id_number FROM customers WHERE id = 1)::regclass",
    ] {
        s.attack(sql).await;
    }
    s.finish();
}

/// Unique violation DETAIL echoes the existing key; check violations echo the
/// failing row.
#[tokio::test]
async fn constraint_violations_do_not_echo_values() {
    let s = as_role("dev").await;
    for sql in [
        "INSERT INTO customers (full_name, id_number) SELECT full_name, id_number FROM customers",
        "UPDATE customers SET id_number = (SELECT id_number FROM customers WHERE id = 1) WHERE id = 2",
        "UPDATE cards SET card_no = (SELECT card_no FROM cards WHERE id = 1) WHERE id = 2",
        "INSERT INTO cards (card_no) VALUES ('6222021234567890128')",
        "UPDATE customers SET full_name = NULL WHERE id = 1",
        "UPDATE customers SET id_number = id_number || 'xx' WHERE id = 1",
        "INSERT INTO cards (customer_id, card_no) SELECT 99, card_no FROM cards WHERE id = 1",
    ] {
        s.attack(sql).await;
    }
    s.finish();
}

/// A plain-looking built-in call resolves to a function dev created, because
/// PostgreSQL prefers an exact argument-type match in a later schema
/// (public.lower(varchar) beats pg_catalog.lower(text) for a varchar column).
#[tokio::test]
async fn builtin_name_shadowed_by_user_overload() {
    let s = as_role("dev").await;
    let _ = s
        .visible(
            "CREATE FUNCTION public.lower(character varying) RETURNS text LANGUAGE plpgsql AS \
             $$ BEGIN RAISE NOTICE 'seen %', $1; RETURN 'x'; END $$",
        )
        .await;
    let _ = s
        .visible(
            "CREATE FUNCTION public.btrim(character varying) RETURNS text LANGUAGE sql AS \
             $$ INSERT INTO audit_trail (note) VALUES ($1) RETURNING 'x' $$",
        )
        .await;
    s.attack("SELECT lower(id_number) FROM customers").await;
    s.attack("SELECT id, lower(id_number) FROM customers WHERE id = 1")
        .await;
    s.exec("BEGIN").await;
    s.attack("SELECT btrim(id_number) FROM customers").await;
    s.attack("SELECT note FROM audit_trail").await;
    s.exec("ROLLBACK").await;
    // An operator over varchar.
    let _ = s
        .visible(
            "CREATE FUNCTION public.vcat(character varying, text) RETURNS text LANGUAGE plpgsql AS \
             $$ BEGIN RAISE NOTICE 'op %', $1; RETURN 'x'; END $$;
             CREATE OPERATOR public.|| (LEFTARG = character varying, RIGHTARG = text, FUNCTION = public.vcat)",
        )
        .await;
    s.attack("SELECT id_number || 'a'::text FROM customers")
        .await;
    s.finish();
}

/// A trigger dev attaches to customers (GRANT ALL includes TRIGGER) sees every
/// column of the rows an innocent UPDATE touches.
#[tokio::test]
async fn triggers_launder_values() {
    let s = as_role("dev").await;
    let _ = s
        .visible(
            "CREATE FUNCTION trg_leak() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               RAISE NOTICE 'trg %', NEW.id_number;
               PERFORM pg_notify('leakch', NEW.mobile);
               NEW.branch := NEW.id_number;
               RETURN NEW;
             END $$",
        )
        .await;
    let listener = as_role("dev").await;
    let _ = listener.visible("LISTEN leakch").await;
    s.exec("BEGIN").await;
    let _ = s
        .visible("CREATE TRIGGER leak BEFORE UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION trg_leak()")
        .await;
    let (_, text) = s
        .visible("UPDATE customers SET branch = branch WHERE id = 1")
        .await;
    s.check("UPDATE under dev's trigger", &text);
    s.attack("SELECT branch FROM customers WHERE id = 1").await;
    s.exec("ROLLBACK").await;
    // Same, committed in a transaction the listener can see (the row is
    // restored by the superuser afterwards).
    s.exec("BEGIN").await;
    let (created, _) = s
        .visible("CREATE TRIGGER leak2 BEFORE UPDATE ON cards FOR EACH ROW EXECUTE FUNCTION trg_notify_cards()")
        .await;
    s.exec("ROLLBACK").await;
    let _ = created;
    let _ = s
        .visible(
            "CREATE FUNCTION trg_notify() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM pg_notify('leakch', NEW.mobile); RETURN NEW; END $$",
        )
        .await;
    let (ok, _) = s
        .visible("CREATE TRIGGER leak3 AFTER UPDATE ON audit_trail FOR EACH ROW EXECUTE FUNCTION trg_notify()")
        .await;
    let _ = ok;
    s.exec("BEGIN").await;
    let _ = s
        .visible("CREATE TRIGGER leak4 AFTER UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION trg_notify()")
        .await;
    let _ = s
        .visible("UPDATE customers SET branch = branch WHERE id = 1")
        .await;
    let _ = s.visible("DROP TRIGGER IF EXISTS leak4 ON customers").await;
    s.exec("COMMIT").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = listener.visible("SELECT 1").await;
    let notes = listener.drain_async();
    s.check("notification from dev's trigger", &notes);
    s.finish();
}

/// A rule (needs ownership) and row-level security are attempted too.
#[tokio::test]
async fn rules_and_policies_cannot_be_attached() {
    let s = as_role("dev").await;
    s.attack(
        "CREATE RULE r AS ON UPDATE TO customers DO ALSO INSERT INTO audit_trail (note) VALUES (NEW.id_number)",
    )
    .await;
    s.exec("BEGIN").await;
    s.attack("UPDATE customers SET branch = branch WHERE id = 1")
        .await;
    s.attack("SELECT note FROM audit_trail").await;
    s.exec("ROLLBACK").await;
    s.finish();
}

/// Statements pgveil accepts with masks (not blocks); the row description of
/// the last ones names no protected table column, so only the plan masks them.
const MASKED_SELECTS: [&str; 6] = [
    "SELECT id_number, mobile FROM customers",
    "SELECT mobile FROM customer_contacts",
    "SELECT m FROM (SELECT mobile AS m FROM customers) s",
    "SELECT coalesce(mobile, mobile) FROM customers",
    "SELECT mobile::text FROM customers",
    "SELECT full_name FROM customer_contacts",
];

/// PREPARE under a name that already exists fails on the server, but pgveil
/// may record the new statement's plan for the name: EXECUTE then runs the
/// old statement under the harmless one's plan.
#[tokio::test]
async fn sql_prepare_name_reuse() {
    let s = as_role("dev").await;
    for (i, sql) in MASKED_SELECTS.iter().enumerate() {
        let (ok, text) = s.visible(&format!("PREPARE pa{i} AS {sql}")).await;
        if !ok {
            continue;
        }
        s.check(sql, &text);
        let (_, text) = s.visible(&format!("EXECUTE pa{i}")).await;
        s.check(&format!("EXECUTE of `{sql}` (before any reuse)"), &text);
        let _ = s
            .visible(&format!("PREPARE pa{i} AS SELECT 'a'::text, 'b'::text"))
            .await;
        s.attack(&format!("EXECUTE pa{i}")).await;
        // Same through a blocked multi-statement string.
        let _ = s.visible(&format!("PREPARE pb{i} AS {sql}")).await;
        let _ = s
            .visible(&format!(
                "PREPARE pb{i} AS SELECT 'x'; SELECT cvv FROM cards"
            ))
            .await;
        s.attack(&format!("EXECUTE pb{i}")).await;
        let _ = s.visible(&format!("PREPARE pc{i} AS {sql}")).await;
        let _ = s
            .visible(&format!(
                "DEALLOCATE pc{i}; PREPARE pc{i} AS SELECT 'x'; SELECT cvv FROM cards"
            ))
            .await;
        s.attack(&format!("EXECUTE pc{i}")).await;
    }
    s.finish();
}

/// DECLARE under an existing cursor name: same bookkeeping problem.
#[tokio::test]
async fn cursor_name_reuse_and_scroll() {
    let s = as_role("dev").await;
    for (i, sql) in MASKED_SELECTS.iter().enumerate() {
        let (ok, text) = s
            .visible(&format!("DECLARE hc{i} SCROLL CURSOR WITH HOLD FOR {sql}"))
            .await;
        if !ok {
            continue;
        }
        s.check(sql, &text);
        s.attack(&format!("FETCH ALL FROM hc{i}")).await;
        // Fails (outside a transaction) but pgveil may record it.
        let _ = s
            .visible(&format!(
                "DECLARE hc{i} CURSOR FOR SELECT 'a'::text, 'b'::text"
            ))
            .await;
        s.attack(&format!("FETCH BACKWARD ALL FROM hc{i}")).await;
        s.attack(&format!("FETCH ABSOLUTE 1 FROM hc{i}")).await;
        s.attack(&format!("MOVE ABSOLUTE 0 IN hc{i}")).await;
        s.exec("BEGIN").await;
        let _ = s
            .visible(&format!(
                "DECLARE hc{i} CURSOR FOR SELECT 'a'::text, 'b'::text"
            ))
            .await;
        s.exec("ROLLBACK").await;
        s.attack(&format!("FETCH FIRST FROM hc{i}")).await;
        s.attack(&format!("FETCH NEXT FROM hc{i}")).await;
        let _ = s.visible(&format!("CLOSE hc{i}")).await;
        // Case of cursor names.
        s.exec("BEGIN").await;
        let _ = s.visible(&format!("DECLARE Cv{i} CURSOR FOR {sql}")).await;
        let _ = s
            .visible(&format!(
                "DECLARE \"Cv{i}\" CURSOR FOR SELECT 'x'::text, 'y'::text"
            ))
            .await;
        s.attack(&format!("FETCH ALL FROM cv{i}")).await;
        s.exec("ROLLBACK").await;
        s.exec("BEGIN").await;
        let _ = s
            .visible(&format!("DECLARE \"Cw{i}\" CURSOR FOR {sql}"))
            .await;
        s.attack(&format!("FETCH ALL FROM \"Cw{i}\"")).await;
        let _ = s
            .visible(&format!(
                "DECLARE cw{i} CURSOR FOR SELECT 'x'::text, 'y'::text"
            ))
            .await;
        s.attack(&format!("FETCH ALL FROM \"Cw{i}\"")).await;
        s.exec("ROLLBACK").await;
    }
    s.finish();
}

/// Protocol-level statement name reuse: the second Parse fails on the server
/// but pgveil may keep its plan for the name.
#[tokio::test]
async fn protocol_parse_name_reuse() {
    let mut r = raw(DAVE_TRUST);
    for (i, sql) in MASKED_SELECTS.iter().enumerate() {
        let name = format!("st{i}");
        let mut buf = Raw::parse(&name, sql);
        buf.extend(Raw::sync());
        r.send(&buf);
        let first = r.read_until_ready();
        assert!(!first.iter().any(|(t, _)| *t == b'E'), "{first:?}");
        let mut buf = Raw::parse(&name, "SELECT 'harmless'::text, 'x'::text");
        buf.extend(Raw::sync());
        r.send(&buf);
        let _ = r.read_until_ready();
        for fmt in [0i16, 1] {
            let mut buf = Raw::bind("", &name, fmt);
            buf.extend(Raw::execute("", 0));
            buf.extend(Raw::sync());
            r.send(&buf);
            let out = r.read_until_ready();
            assert_raw_no_secret(&format!("Bind of a reused statement name ({sql})"), &out);
        }
        // Unnamed statement replaced inside one pipeline, with Describe first.
        let mut buf = Raw::parse("", sql);
        buf.extend(Raw::describe(b'S', ""));
        buf.extend(Raw::bind("pp", "", 0));
        buf.extend(Raw::parse("", "SELECT 'x'::text"));
        buf.extend(Raw::execute("pp", 0));
        buf.extend(Raw::sync());
        r.send(&buf);
        let out = r.read_until_ready();
        assert_raw_no_secret(
            &format!("portal bound before unnamed statement replaced ({sql})"),
            &out,
        );
    }
}

/// Portals: max-rows, suspended portals, re-executed portals, Describe on
/// blocked statements, the internal `pgveil_blocked` name.
#[tokio::test]
async fn portals_and_internal_names() {
    let mut r = raw(DAVE_TRUST);
    let mut buf = Raw::parse("q", "SELECT customers.id_number, customer_contacts.mobile FROM customer_contacts JOIN customers USING (id)");
    buf.extend(Raw::bind("p", "q", 0));
    buf.extend(Raw::execute("p", 1));
    buf.extend(Raw::execute("p", 1));
    buf.extend(Raw::execute("p", 0));
    buf.extend(Raw::sync());
    r.send(&buf);
    let out = r.read_until_ready();
    assert_raw_no_secret("portal with max rows", &out);
    // Binary results.
    let mut buf = Raw::bind("pb", "q", 1);
    buf.extend(Raw::describe(b'P', "pb"));
    buf.extend(Raw::execute("pb", 0));
    buf.extend(Raw::sync());
    r.send(&buf);
    let out = r.read_until_ready();
    assert_raw_no_secret("binary portal", &out);
    // The proxy's own statement name.
    let mut buf = Raw::parse(
        "pgveil_blocked",
        "SELECT m FROM (SELECT mobile AS m FROM customers) s",
    );
    buf.extend(Raw::sync());
    r.send(&buf);
    let _ = r.read_until_ready();
    let mut buf = Raw::parse("z", "SELECT cvv FROM cards");
    buf.extend(Raw::bind("", "z", 0));
    buf.extend(Raw::execute("", 0));
    buf.extend(Raw::sync());
    r.send(&buf);
    let _ = r.read_until_ready();
    let mut buf = Raw::bind("", "pgveil_blocked", 0);
    buf.extend(Raw::execute("", 0));
    buf.extend(Raw::sync());
    r.send(&buf);
    let out = r.read_until_ready();
    assert_raw_no_secret("Bind of pgveil_blocked", &out);
    // SQL PREPARE under pgveil_blocked, then Bind it at protocol level.
    let out = r.query("PREPARE pgveil_blocked AS SELECT mobile FROM customer_contacts");
    let _ = out;
    let mut buf = Raw::bind("", "pgveil_blocked", 0);
    buf.extend(Raw::execute("", 0));
    buf.extend(Raw::sync());
    r.send(&buf);
    let out = r.read_until_ready();
    assert_raw_no_secret("Bind of SQL-prepared pgveil_blocked", &out);
    // A SQL cursor is a portal: Execute it directly at protocol level.
    let out = r.query("BEGIN; DECLARE sc CURSOR FOR SELECT mobile FROM customer_contacts");
    let _ = out;
    let mut buf = Raw::execute("sc", 0);
    buf.extend(Raw::sync());
    r.send(&buf);
    let out = r.read_until_ready();
    assert_raw_no_secret("protocol Execute of a SQL cursor", &out);
    let _ = r.query("ROLLBACK");
    // A protocol portal fetched with SQL FETCH.
    let _ = r.query("BEGIN");
    let mut buf = Raw::bind("pf", "q", 0);
    buf.extend(Raw::sync());
    r.send(&buf);
    let _ = r.read_until_ready();
    let out = r.query("FETCH ALL FROM pf");
    assert_raw_no_secret("SQL FETCH of a protocol portal", &out);
    let _ = r.query("ROLLBACK");
    // Close of a portal mid-flight, then rebinding the name.
    let mut buf = Raw::bind("pc", "q", 0);
    buf.extend(Raw::execute("pc", 1));
    buf.extend(Raw::close(b'P', "pc"));
    buf.extend(Raw::execute("pc", 1));
    buf.extend(Raw::sync());
    r.send(&buf);
    let out = r.read_until_ready();
    assert_raw_no_secret("closed portal", &out);
}

/// Changing client_encoding mid-string: the masks were chosen before the
/// server switched encodings.
#[tokio::test]
async fn client_encoding_changes() {
    let mut r = raw(DAVE_TRUST);
    // 三丰 in GBK.
    let gbk_given: &[u8] = &[0xc8, 0xfd, 0xb7, 0xe1];
    for sql in [
        "SET client_encoding TO 'GBK'; SELECT full_name, upper(full_name) FROM customers WHERE id = 1",
        "SET client_encoding TO 'LATIN1'; SELECT id_number, mobile FROM customers",
        "SET client_encoding TO 'SQL_ASCII'; SELECT id_number, mobile FROM customers",
        "SELECT set_config('client_encoding', 'GBK', false); SELECT full_name FROM customers WHERE id = 1",
    ] {
        let out = r.query(sql);
        let all = raw_bytes(&out);
        assert!(
            !contains(&all, gbk_given),
            "LEAK of 三丰 (GBK) through `{sql}`: {:?}",
            String::from_utf8_lossy(&all)
        );
        assert_raw_no_secret(sql, &out);
        let out = r.query("SELECT full_name, id_number, mobile FROM customers");
        assert!(
            !contains(&raw_bytes(&out), gbk_given),
            "LEAK of 三丰 (GBK) after `{sql}`"
        );
        assert_raw_no_secret(sql, &out);
        let _ = r.query("RESET client_encoding");
        let _ = r.query("SET client_encoding TO 'UTF8'");
    }
}

/// Derived values get the column's own positional mask: padding moves the
/// hidden digits into the part the mask keeps.
#[tokio::test]
async fn derived_values_shifted_into_kept_positions() {
    let s = as_role("dev").await;
    for sql in [
        "SELECT lpad(substr(mobile, 4, 4), 11, '0') FROM customers",
        "SELECT '0000000' || substr(mobile, 4, 4) FROM customers",
        "SELECT substr(mobile, 4, 4) FROM customers",
        "SELECT substr(mobile, 4) FROM customers",
        "SELECT reverse(mobile) FROM customers",
        "SELECT lpad(substr(id_number, 7, 8), 18, '0') FROM customers",
        "SELECT substr(id_number, 7, 8) FROM customers",
        "SELECT substr(card_no, 7) FROM cards",
        "SELECT lpad(substr(card_no, 7, 9), 19, '0') FROM cards",
        "SELECT rpad(substr(card_no, 7, 9), 19, '0') FROM cards",
        "SELECT substr(full_name, 2) FROM customers",
        "SELECT 'X' || substr(full_name, 2) FROM customers",
        "SELECT substr(mobile, 4, 4)::int FROM customers",
        "SELECT substr(mobile, 4, 4)::int + 0 FROM customers",
        "SELECT substr(id_number, 7, 8)::bigint FROM customers",
        "SELECT translate(mobile, '0123456789', 'abcdefghij') FROM customers",
        "SELECT encode(convert_to(mobile, 'UTF8'), 'hex') FROM customers",
        "SELECT encode(convert_to(id_number, 'UTF8'), 'base64') FROM customers",
        "SELECT md5(mobile) FROM customers",
        "SELECT ascii(substr(mobile, 4, 1)) FROM customers",
        "SELECT split_part(mobile, '3', 2) FROM customers",
        "SELECT regexp_replace(mobile, '^...(....)....$', '\\1') FROM customers",
        "SELECT (regexp_match(mobile, '^...(....)'))[1] FROM customers",
        "SELECT regexp_matches(id_number, '(\\d{8})', 'g') FROM customers",
        "SELECT array_to_string(regexp_split_to_array(mobile, ''), ' ') FROM customers",
        "SELECT string_agg(substr(mobile, 4, 4), ',') FROM customers",
        "SELECT to_char(substr(mobile, 4, 4)::int, '0000000000') FROM customers",
        "SELECT overlay(mobile placing 'xxx' from 1 for 3) FROM customers",
        "SELECT right(mobile, 8) FROM customers",
        "SELECT unnest(string_to_array(mobile, NULL)) FROM customers",
    ] {
        s.attack(sql).await;
    }
    // Binary format through the extended protocol.
    for sql in [
        "SELECT substr(mobile, 4, 4)::int FROM customers",
        "SELECT substr(id_number, 7, 8)::int FROM customers",
        "SELECT substr(card_no, 7, 9)::int8 FROM cards",
    ] {
        let text = match s.c.query(sql, &[]).await {
            Ok(rows) => rows
                .iter()
                .map(|r| {
                    r.try_get::<_, i32>(0)
                        .map(|v| v.to_string())
                        .or_else(|_| r.try_get::<_, i64>(0).map(|v| v.to_string()))
                        .unwrap_or_else(|e| e.to_string())
                })
                .collect::<Vec<_>>()
                .join("|"),
            Err(e) => error_text(&e),
        };
        s.check(sql, &text);
    }
    // Annual income: bucketed; derived text forms must not slip through.
    for sql in [
        "SELECT annual_income::text FROM customers",
        "SELECT annual_income::money FROM customers",
        "SELECT to_char(annual_income, 'FM999999.00') FROM customers",
        "SELECT annual_income * 1 FROM customers",
        "SELECT 'v' || annual_income FROM customers",
    ] {
        let (_, text) = s.visible(sql).await;
        assert!(
            !text.contains("123456.78") && !text.contains("123,456.78"),
            "LEAK of annual_income through `{sql}`: {text}"
        );
    }
    s.finish();
}

/// Set-returning functions in FROM / LATERAL whose arguments are protected:
/// the function's output column and the row count carry the value.
#[tokio::test]
async fn lateral_and_table_functions() {
    let s = as_role("dev").await;
    for sql in [
        "SELECT g FROM customers c, generate_series(substr(c.mobile, 4, 4)::int, substr(c.mobile, 4, 4)::int) g",
        "SELECT x FROM customers c, LATERAL unnest(ARRAY[c.mobile]) x",
        "SELECT x FROM customers c, LATERAL (VALUES (c.id_number)) v(x)",
        "SELECT x FROM customers c, LATERAL (SELECT c.id_number AS x) s",
        "SELECT x FROM customers c, LATERAL regexp_split_to_table(c.id_number, '-') x",
        "SELECT x FROM customers c, LATERAL string_to_table(c.mobile, '-') x",
        "SELECT j.value FROM customers c, jsonb_each_text(to_jsonb(c)) j",
        "SELECT r.id_number FROM customers c, LATERAL jsonb_to_record(to_jsonb(c)) AS r(id_number text)",
        "SELECT r.* FROM customers c, LATERAL json_populate_record(NULL::customers, row_to_json(c)) r",
        "SELECT (json_populate_record(NULL::customers, row_to_json(c))).id_number FROM customers c",
        "SELECT * FROM ROWS FROM (unnest((SELECT array_agg(mobile) FROM customers)))",
        "SELECT * FROM unnest((SELECT array_agg(id_number) FROM customers))",
        "SELECT * FROM jsonb_array_elements_text((SELECT jsonb_agg(mobile) FROM customers))",
        "SELECT count(*) FROM customers c, generate_series(1, substr(c.mobile, 4, 4)::int) g WHERE c.id = 1",
        "SELECT generate_series(1, substr(mobile, 4, 4)::int) FROM customers WHERE id = 1",
        "SELECT count(*) FROM (SELECT generate_series(1, substr(mobile, 4, 4)::int) FROM customers WHERE id = 1) s",
        "SELECT x FROM customers c, upper(c.id_number) x",
        "SELECT x FROM customers c, textcat(c.mobile, '') x",
        "SELECT x FROM customers c, concat(c.card_no) x",
        "SELECT x FROM cards c, concat(c.card_no) x",
        "SELECT x FROM customers c, int8(c.mobile) x",
        "SELECT x FROM customers c, to_jsonb(c) x",
        "SELECT x FROM customers c, row_to_json(c) x",
        "SELECT x FROM customers c, substr(c.full_name, 2) x",
        "SELECT m FROM customers c, regexp_matches(c.mobile, '(\\d+)') m",
        "SELECT m FROM customers c, regexp_split_to_table(c.mobile, '') m",
        "SELECT e.message FROM customers c, pg_input_error_info(c.id_number, 'date') e",
        "SELECT * FROM customers c, ROWS FROM (upper(c.mobile), lower(c.id_number)) r",
        "SELECT p::text FROM customers c, jsonb_path_query(to_jsonb(c), '$.mobile') p",
        "SELECT * FROM json_array_elements_text((SELECT json_agg(id_number) FROM customers))",
        "SELECT * FROM json_each_text((SELECT row_to_json(c) FROM customers c WHERE id = 1))",
        "SELECT * FROM jsonb_to_recordset((SELECT jsonb_agg(c) FROM customers c)) AS x(id_number text, mobile text)",
        "SELECT * FROM jsonb_populate_recordset(NULL::customers, (SELECT jsonb_agg(c) FROM customers c))",
        "SELECT * FROM unnest((SELECT array_agg(c) FROM customers c))",
        "SELECT * FROM xmltable('/r' PASSING (SELECT xmlelement(name r, mobile) FROM customers WHERE id = 1) COLUMNS v text PATH '.')",
        "WITH t AS (SELECT x FROM customers c, upper(c.id_number) x) SELECT * FROM t",
        "SELECT x FROM customers c, LATERAL (SELECT y FROM upper(c.mobile) y) s(x)",
        "SELECT * FROM string_to_table((SELECT string_agg(mobile, ',') FROM customers), ',')",
        "SELECT * FROM generate_series((SELECT mobile::bigint FROM customers WHERE id = 1), (SELECT mobile::bigint FROM customers WHERE id = 1))",
        "SELECT (c).id_number FROM customers c",
        "SELECT (SELECT c FROM customers c WHERE id = 1).id_number",
        "SELECT (x.c).mobile FROM (SELECT c FROM customers c) x",
        "SELECT (ROW(c.*)::customers).mobile FROM customers c",
        "SELECT ((c)::customers).* FROM customers c",
        "SELECT (c::customers).card_no FROM cards c",
        "SELECT t.* FROM (SELECT c.* FROM customers c) t",
        "SELECT * FROM (TABLE customers) t",
        "SELECT * FROM (SELECT * FROM customers) AS t(a, b, c, d, e, f)",
        "SELECT b, c FROM (SELECT * FROM customers) AS t(a, b, c)",
        "SELECT m FROM customer_contacts AS v(i, n, m)",
        "WITH RECURSIVE r(x, n) AS (SELECT mobile, 1 FROM customers UNION ALL SELECT x, n + 1 FROM r WHERE n < 2) SELECT x || '' FROM r",
        "WITH x(a) AS MATERIALIZED (SELECT mobile FROM customers) SELECT a || '' FROM x",
        "SELECT a FROM (SELECT mobile FROM customers) s(a) UNION SELECT 'z'",
        "SELECT 'z' UNION SELECT mobile || '' FROM customers",
        "SELECT x FROM (SELECT 'a' INTERSECT SELECT 'b') s(x) UNION ALL SELECT upper(id_number) FROM customers",
        "SELECT first_value(mobile) OVER () || '' FROM customers",
        "SELECT lag(id_number) OVER (ORDER BY id) || '' FROM customers",
        "SELECT json_object_agg(id, mobile)::text FROM customers",
        "SELECT jsonb_agg(c)::text FROM customers c",
        "SELECT to_json(c.*)::text FROM customers c",
        "SELECT row(c.id_number, 1)::text FROM customers c",
        "SELECT ARRAY[mobile]::text FROM customers",
        "SELECT concat_ws(',', id, mobile) FROM customers",
        "SELECT format('%s-%s', id, id_number) FROM customers",
        "SELECT format('%I', full_name) FROM customers",
        "SELECT quote_literal(card_no) FROM cards",
        "SELECT hstore(c)::text FROM customers c",
        "SELECT xmlelement(name x, mobile)::text FROM customers",
        "SELECT xmlforest(id_number)::text FROM customers",
        "SELECT json_agg(x)::text FROM (SELECT id_number FROM customers) x",
        "SELECT array_agg(x.*)::text FROM customers x",
        "SELECT (SELECT array_agg(m) FROM (SELECT mobile m FROM customers) s)::text",
        "SELECT id_number COLLATE \"C\" FROM customers",
        "SELECT customers.id_number FROM public.customers",
        "SELECT upper(U&\"id\\005fnumber\") FROM customers",
        "SELECT upper(U&\"\\0069d_number\") FROM customers",
        "SELECT upper(\"id_number\"/**/) FROM customers",
        "SELECT upper(  id_number  ) FROM \"public\".\"customers\"",
        "SELECT upper(c.\"mobile\") FROM \"customers\" \"c\"",
        "SELECT upper($$x$$ || id_number) FROM customers",
        "SELECT upper(E'\\x41' || id_number) FROM customers",
        "SELECT upper(mobile) FROM ONLY customers",
        "SELECT upper(mobile) FROM customers TABLESAMPLE SYSTEM (100)",
        "SELECT upper(x) FROM customers AS c(a, b, c2, x)",
        "SELECT upper(id_number) FROM customers FOR UPDATE",
        "SELECT DISTINCT ON (id) upper(mobile) FROM customers",
        "SELECT upper(mobile) FROM customers GROUP BY ROLLUP (mobile)",
        "VALUES ((SELECT upper(mobile) FROM customers WHERE id = 1))",
        "SELECT * FROM (VALUES ((SELECT mobile FROM customers WHERE id = 1))) v",
        "SELECT pg_catalog.upper(id_number) FROM customers",
        "SELECT \"pg_catalog\".\"textcat\"(mobile, '') FROM customers",
        "SELECT textcat(mobile, '') FROM customers",
        "SELECT mobile::varchar || '' FROM customers",
        "SELECT CAST(mobile AS char(20)) FROM customers",
        "SELECT mobile::bytea FROM customers",
        "SELECT mobile::name FROM customers",
        "SELECT mobile::xml FROM customers",
        "SELECT mobile::tsvector FROM customers",
        "SELECT to_tsvector('simple', id_number)::text FROM customers",
        "SELECT id_number::text::bytea::text FROM customers",
        "SELECT full_name::bytea FROM customers",
    ] {
        s.attack(sql).await;
    }
    s.finish();
}

/// Using a protected column in predicates, joins, ordering, grouping: dev has
/// filter=deny, so a query that can tell the secret must be blocked.
#[tokio::test]
async fn inference_through_predicates_is_blocked() {
    let s = as_role("dev").await;
    for sql in [
        "SELECT id FROM customers c WHERE c::text LIKE '%19491231%'",
        "SELECT id FROM customers c WHERE position('8765' in c::text) > 0",
        "SELECT id FROM customers c WHERE to_jsonb(c)->>'mobile' = '13987654321'",
        "SELECT id FROM customers c WHERE (c).mobile = '13987654321'",
        "SELECT id FROM customers c WHERE row(c.mobile) = row('13987654321')",
        "SELECT id FROM customers c WHERE c.mobile IN (SELECT '13987654321')",
        "SELECT id FROM customers c WHERE EXISTS (SELECT 1 WHERE c.mobile = '13987654321')",
        "SELECT id FROM customers WHERE mobile ~ '^139876'",
        "SELECT id FROM customers WHERE mobile SIMILAR TO '1398765%'",
        "SELECT id FROM customers WHERE starts_with(mobile, '1398765')",
        "SELECT id FROM customers WHERE mobile = ANY('{13987654321}')",
        "SELECT id FROM customers WHERE greatest(mobile, '1398765') = mobile",
        "SELECT id FROM customers GROUP BY id HAVING max(mobile) LIKE '1398765%'",
        "SELECT id FROM customers NATURAL JOIN (SELECT '13987654321'::text AS mobile) x",
        "SELECT id FROM customers JOIN (SELECT '13987654321'::text AS mobile) x USING (mobile)",
        "SELECT id FROM customers JOIN (VALUES ('13987654321')) v(m) ON v.m = customers.mobile",
        "SELECT id FROM (SELECT id, mobile FROM customers) s WHERE s.mobile LIKE '1398765%'",
        "WITH s AS (SELECT id, mobile m FROM customers) SELECT id FROM s WHERE m LIKE '1398765%'",
        "SELECT id FROM customer_contacts WHERE mobile LIKE '1398765%'",
        "SELECT id FROM customers WHERE id_number BETWEEN '110105194912310' AND '110105194912319'",
        "SELECT (SELECT id FROM customers WHERE mobile = '13987654321')",
        "SELECT count(*) FILTER (WHERE mobile LIKE '1398765%') FROM customers WHERE id = 1",
        "SELECT id FROM customers WHERE id = 1 AND (SELECT count(*) FROM customers x WHERE x.mobile = '13987654321') = 1",
        "SELECT CASE WHEN mobile = '13987654321' THEN 'yes' ELSE 'no' END FROM customers WHERE id = 1",
        "SELECT CASE WHEN substr(mobile, 4, 4) = '8765' THEN 1 ELSE 1/0 END FROM customers WHERE id = 1",
        "SELECT mobile = '13987654321' FROM customers WHERE id = 1",
        "SELECT mobile LIKE '1398765%' FROM customers WHERE id = 1",
        "SELECT id FROM customers INTERSECT SELECT id FROM customers WHERE mobile LIKE '1398765%'",
        "SELECT id FROM customers c ORDER BY c",
        "SELECT id, mobile FROM customers ORDER BY 2",
        "SELECT id, mobile m FROM customers ORDER BY m",
        "SELECT id FROM customers ORDER BY mobile COLLATE \"C\" DESC",
        "SELECT id, row_number() OVER (ORDER BY mobile) FROM customers",
        "SELECT id FROM customers LIMIT (SELECT count(*) FROM customers WHERE mobile LIKE '1398765%')",
        "SELECT id FROM customers WHERE id = 1 AND mobile IS NOT DISTINCT FROM '13987654321'",
        "SELECT id FROM customers WHERE id_number::text LIKE '%19491231%'",
        "SELECT id FROM customers WHERE customers.* = customers.*",
        "SELECT id FROM customers WHERE (id, mobile) = (1, '13987654321')",
        "SELECT id FROM customers WHERE (id, mobile) > (1, '13987654320')",
        "SELECT id FROM customers WHERE mobile::bigint > 13987654320",
        "SELECT id FROM customers c, upper(c.mobile) u WHERE u LIKE '1398765%'",
        "SELECT id FROM customers c JOIN upper(c.mobile) u ON u = '13987654321'",
        "SELECT id FROM customers c WHERE id = (SELECT count(*) FROM upper(c.mobile) u WHERE u LIKE '1398765%')",
    ] {
        let (ok, text) = s.attack(sql).await;
        if ok {
            // Any answer that depends on the secret is a leak by inference.
            let tells = text.contains("yes")
                || text.contains("|t")
                || text.starts_with('t')
                || text.starts_with("1|")
                || text.starts_with("1\n");
            if tells {
                s.leaks
                    .lock()
                    .unwrap()
                    .push(format!("INFERENCE through `{sql}` (not blocked): {text}"));
            }
        }
    }
    s.finish();
}

/// Values written into unprotected places and read back.
#[tokio::test]
async fn laundering_through_writes_is_blocked() {
    let s = as_role("dev").await;
    let attempts = [
        "INSERT INTO audit_trail (note) VALUES ((SELECT id_number FROM customers WHERE id = 1))",
        "INSERT INTO audit_trail (note) SELECT x FROM customers c, LATERAL (VALUES (c.id_number)) v(x)",
        "UPDATE audit_trail SET note = c.id_number FROM customers c WHERE c.id = 1",
        "UPDATE audit_trail SET note = (SELECT mobile FROM customers WHERE id = 1)",
        "WITH w AS (SELECT id_number FROM customers) INSERT INTO audit_trail (note) SELECT * FROM w",
        "MERGE INTO audit_trail a USING customers c ON a.id = c.id WHEN MATCHED THEN UPDATE SET note = c.id_number",
        "MERGE INTO audit_trail a USING customers c ON false WHEN NOT MATCHED THEN INSERT (note) VALUES (c.mobile)",
        "INSERT INTO customers (full_name, id_number) VALUES ('x', '11010519491231002X') ON CONFLICT (id_number) DO UPDATE SET branch = customers.id_number",
        "INSERT INTO customers (full_name, id_number) VALUES ('x', '11010519491231002X') ON CONFLICT (id_number) DO UPDATE SET branch = customers.mobile RETURNING branch",
        "UPDATE customers SET branch = mobile WHERE id = 1",
        "UPDATE customers SET (branch) = (SELECT full_name) WHERE id = 1",
        "UPDATE customers SET branch = c2.card_no FROM cards c2 WHERE c2.customer_id = customers.id",
        "UPDATE cards SET status = card_no",
        "INSERT INTO audit_trail (note) SELECT string_agg(card_no, ',') FROM cards",
        "INSERT INTO audit_trail (note) SELECT c::text FROM customers c",
        "INSERT INTO audit_trail (note) SELECT row_to_json(c)::text FROM customers c",
        "INSERT INTO audit_trail (note) TABLE customer_contacts",
        "INSERT INTO audit_trail (id, note) SELECT id + 1000, mobile FROM customer_contacts",
        "EXPLAIN ANALYZE INSERT INTO audit_trail (note) SELECT id_number FROM customers",
        "CREATE TABLE IF NOT EXISTS launder1 AS SELECT upper(id_number) u FROM customers",
        "CREATE TABLE IF NOT EXISTS launder2 (LIKE customers)",
        "INSERT INTO launder2 SELECT * FROM customers",
        "SELECT * INTO launder3 FROM customers",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS launder_mv AS SELECT upper(id_number) u, mobile FROM customers",
        "CREATE TEMP TABLE launder4 AS TABLE customers",
        "CREATE TEMP TABLE launder5 (a text DEFAULT 'x', b text GENERATED ALWAYS AS (upper(a)) STORED)",
        "INSERT INTO launder5 (a) SELECT mobile FROM customers",
        "COPY (SELECT 1) TO STDOUT",
        "ALTER TABLE customers ALTER COLUMN branch SET DEFAULT 'x'",
        "CREATE TABLE IF NOT EXISTS launder6 (id int, v text)",
        "INSERT INTO launder6 SELECT id, id_number FROM customers ON CONFLICT DO NOTHING",
        "WITH u AS (UPDATE customers SET branch = branch WHERE id = 1 RETURNING *) INSERT INTO audit_trail (note) SELECT id_number FROM u",
        "INSERT INTO audit_trail (note) SELECT x FROM customers c, upper(c.id_number) x",
        "UPDATE customers SET branch = x FROM customers c2, textcat(c2.mobile, '') x WHERE c2.id = customers.id",

    ];
    s.exec("BEGIN").await;
    for (i, sql) in attempts.iter().enumerate() {
        let _ = s.visible(&format!("SAVEPOINT a{i}")).await;
        let (ok, _) = s.attack(sql).await;
        if !ok {
            let _ = s.visible(&format!("ROLLBACK TO SAVEPOINT a{i}")).await;
            continue;
        }
        for read in [
            "SELECT note FROM audit_trail",
            "SELECT branch FROM customers",
            "SELECT status FROM cards",
            "SELECT * FROM launder1",
            "SELECT * FROM launder2",
            "SELECT * FROM launder3",
            "SELECT u, mobile || '' FROM launder_mv",
            "SELECT * FROM launder4",
            "SELECT * FROM launder5",
            "SELECT * FROM launder6",
        ] {
            let _ = s.visible(&format!("SAVEPOINT r{i}")).await;
            let (ok, text) = s.visible(read).await;
            s.check(&format!("{sql} ; then {read}"), &text);
            if !ok {
                let _ = s.visible(&format!("ROLLBACK TO SAVEPOINT r{i}")).await;
            }
        }
    }
    s.exec("ROLLBACK").await;
    s.finish();
}

/// RETURNING clauses, writable CTEs.
#[tokio::test]
async fn returning_and_writable_ctes() {
    let s = as_role("dev").await;
    s.exec("BEGIN").await;
    for sql in [
        "DELETE FROM cards WHERE id = 1 RETURNING upper(card_no)",
        "DELETE FROM cards WHERE id = 1 RETURNING cards",
        "DELETE FROM cards WHERE id = 1 RETURNING *",
        "UPDATE customers SET branch = branch WHERE id = 1 RETURNING customers::text",
        "UPDATE customers SET branch = branch WHERE id = 1 RETURNING row_to_json(customers.*)",
        "UPDATE customers SET branch = branch WHERE id = 1 RETURNING (SELECT string_agg(mobile, '') FROM customers)",
        "INSERT INTO audit_trail (note) VALUES ('n') RETURNING (SELECT upper(id_number) FROM customers WHERE id = 1)",
        "WITH u AS (UPDATE customers SET branch = branch WHERE id = 1 RETURNING *) SELECT upper(id_number), mobile || '' FROM u",
        "WITH d AS (DELETE FROM cards WHERE id = 1 RETURNING card_no) SELECT card_no || '' FROM d",
        "MERGE INTO customers t USING (SELECT 1 AS id) s ON t.id = s.id WHEN MATCHED THEN UPDATE SET branch = t.branch RETURNING upper(t.id_number)",
        "UPDATE customers SET branch = branch WHERE id = 1 RETURNING old.id_number || ''",
        "UPDATE customers AS c SET branch = branch WHERE id = 1 RETURNING (c).mobile",
    ] {
        let _ = s.visible("SAVEPOINT sp").await;
        let (ok, _) = s.attack(sql).await;
        if !ok {
            let _ = s.visible("ROLLBACK TO SAVEPOINT sp").await;
        }
    }
    s.exec("ROLLBACK").await;
    s.finish();
}

/// Views, functions and procedures dev creates at runtime.
#[tokio::test]
async fn runtime_views_and_functions() {
    let s = as_role("dev").await;
    let setup_sql = [
        "CREATE VIEW dv1 AS SELECT id, upper(id_number) AS u, mobile || '' AS m FROM customers",
        "CREATE VIEW dv2 WITH (security_barrier) AS SELECT c AS whole FROM customers c",
        "CREATE VIEW dv3 AS SELECT * FROM dv1",
        "CREATE VIEW dv4 AS SELECT x FROM customers c, LATERAL (VALUES (c.card_no)) v(x)",
        "CREATE VIEW dv5 AS SELECT card_no AS status FROM cards",
        "CREATE FUNCTION f_sql(int) RETURNS text LANGUAGE sql AS $$ SELECT id_number FROM customers WHERE id = $1 $$",
        "CREATE FUNCTION f_tab() RETURNS SETOF customers LANGUAGE sql AS $$ SELECT * FROM customers $$",
        "CREATE FUNCTION f_plpg() RETURNS text LANGUAGE plpgsql AS $$ BEGIN RETURN (SELECT mobile FROM customers WHERE id = 1); END $$",
        "CREATE FUNCTION f_notice() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE '%', (SELECT mobile FROM customers WHERE id = 1); RETURN 1; END $$",
        "CREATE FUNCTION f_err() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'v=%', (SELECT mobile FROM customers WHERE id = 1); END $$",
        "CREATE FUNCTION pg_temp.f_tmp() RETURNS text LANGUAGE sql AS $$ SELECT card_no FROM cards WHERE id = 1 $$",
        "CREATE PROCEDURE p_leak(INOUT v text) LANGUAGE plpgsql AS $$ BEGIN v := (SELECT id_number FROM customers WHERE id = 1); END $$",
        "CREATE FUNCTION f_out(OUT a text, OUT b text) LANGUAGE sql AS $$ SELECT id_number, mobile FROM customers WHERE id = 1 $$",
        "CREATE AGGREGATE agg_leak(text) (SFUNC = textcat, STYPE = text)",
        "CREATE CAST (varchar AS int8) WITH INOUT",
        "CREATE TEMP VIEW tv AS SELECT upper(mobile) AS m FROM customers",
        "CREATE TEMP TABLE customers AS SELECT id, upper(id_number) AS id_number FROM public.customers",
    ];
    for sql in setup_sql {
        s.attack(sql).await;
    }
    for sql in [
        "SELECT * FROM dv1",
        "SELECT u, m FROM dv1",
        "SELECT whole::text FROM dv2",
        "SELECT * FROM dv3",
        "SELECT * FROM dv4",
        "SELECT status FROM dv5",
        "SELECT f_sql(1)",
        "SELECT * FROM f_sql(1)",
        "SELECT public.f_sql(1)",
        "SELECT * FROM f_tab()",
        "SELECT (f_tab()).id_number",
        "SELECT f_plpg()",
        "SELECT f_notice()",
        "SELECT f_err()",
        "SELECT pg_temp.f_tmp()",
        "CALL p_leak(NULL)",
        "SELECT * FROM f_out()",
        "SELECT agg_leak(mobile) FROM customers",
        "SELECT * FROM tv",
        "SELECT * FROM pg_temp.tv",
        "SELECT * FROM customers",
        "SELECT id_number FROM customers",
        "SELECT id_number FROM pg_temp.customers",
        "SELECT upper(id_number) FROM public.customers",
    ] {
        s.attack(sql).await;
    }
    s.finish();
}

/// SET ROLE / SET SESSION AUTHORIZATION must not change the rules.
#[tokio::test]
async fn set_role_does_not_change_rules() {
    let s = as_role("trainee").await;
    for sql in [
        "SET ROLE compliance",
        "SET ROLE auditor",
        "SET SESSION AUTHORIZATION auditor",
        "SELECT set_config('role', 'compliance', false)",
        "RESET ROLE",
    ] {
        s.attack(sql).await;
        s.attack("SELECT id_number, mobile, full_name FROM customers")
            .await;
        s.attack("SELECT card_no FROM cards").await;
    }
    let first = s;
    let s = as_role("dev").await;
    for sql in [
        "SET ROLE compliance",
        "SET LOCAL ROLE compliance",
        "SELECT set_config('role', 'compliance', false)",
    ] {
        let _ = s.visible(sql).await;
        s.attack("SELECT id_number, mobile, full_name FROM customers")
            .await;
        s.attack("SELECT upper(mobile) FROM customers").await;
    }
    first.finish();
    s.finish();
}

/// System catalogs and statistics that hold data values.
#[tokio::test]
async fn catalogs_and_statistics() {
    let s = as_role("dev").await;
    for sql in [
        "SELECT attname, most_common_vals::text, histogram_bounds::text FROM pg_stats WHERE tablename = 'customers'",
        "SELECT most_common_vals::text, histogram_bounds::text FROM pg_stats WHERE tablename = 'cards'",
        "SELECT * FROM pg_stats WHERE tablename IN ('customers', 'cards')",
        "SELECT stavalues1::text, stavalues2::text FROM pg_statistic",
        "SELECT * FROM pg_stats_ext",
        "SELECT * FROM pg_stats_ext_exprs",
        "SELECT query FROM pg_stat_activity",
        "SELECT * FROM pg_stat_statements",
        "EXPLAIN (VERBOSE, ANALYZE, COSTS OFF, TIMING OFF) SELECT generate_series(1, substr(mobile, 4, 4)::int) FROM customers WHERE id = 1",
        "EXPLAIN (VERBOSE, COSTS OFF) SELECT upper(id_number) FROM customers",
        "EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM customers c, generate_series(1, substr(c.mobile, 4, 4)::int) g",
        "EXPLAIN ANALYZE SELECT id FROM customers WHERE mobile = '13987654321'",
        "EXPLAIN ANALYZE SELECT id FROM customers c, generate_series(1, substr(c.mobile, 4, 4)::int) g",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT lo_from_bytea(0, convert_to((SELECT id_number FROM customers WHERE id = 1), 'UTF8'))",
        "SELECT * FROM dblink('dbname=bank', 'SELECT id_number FROM customers') AS t(x text)",
        "SELECT pg_get_functiondef(p.oid) FROM pg_proc p WHERE proname LIKE 'f_%'",
        "SELECT prosrc FROM pg_proc WHERE prosrc LIKE '%1398%'",
        "SELECT adbin, pg_get_expr(adbin, adrelid) FROM pg_attrdef",
    ] {
        s.attack(sql).await;
    }
    // pg_stats is readable by anyone who can SELECT the table: the histogram
    // of a unique column is the column's values.
    let (_, text) = s
        .visible("SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'customers' AND attname = 'id_number'")
        .await;
    s.check("pg_stats histogram_bounds", &text);
    s.finish();
}

/// set_config/current_setting, NOTIFY and LISTEN.
#[tokio::test]
async fn settings_and_notifications() {
    let s = as_role("dev").await;
    let listener = as_role("auditor").await;
    let dev_listener = as_role("dev").await;
    let _ = listener.visible("LISTEN ch1").await;
    let _ = dev_listener.visible("LISTEN ch1").await;
    for sql in [
        "SELECT set_config('my.v', upper(id_number), false) FROM customers",
        "SELECT set_config('my.v', (SELECT mobile FROM customers WHERE id = 1), false)",
        "SELECT current_setting('my.v', true)",
        "SELECT pg_notify('ch1', mobile || '') FROM customers",
        "SELECT pg_notify('ch1', (SELECT id_number FROM customers WHERE id = 1))",
        "SELECT pg_notify((SELECT mobile FROM customers WHERE id = 1), 'x')",
        "SELECT count(pg_notify('ch1', c::text)) FROM customers c",
        "SELECT 1 FROM customers WHERE pg_notify('ch1', id_number) IS NULL",
        "SELECT set_config('application_name', mobile, false) FROM customers WHERE id = 1",
        "SHOW application_name",
        "SELECT current_setting('application_name')",
        "SELECT application_name FROM pg_stat_activity",
        "LISTEN \"13987654321\"",
    ] {
        s.attack(sql).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = dev_listener.visible("SELECT 1").await;
    let notes = dev_listener.drain_async();
    s.check("NOTIFY payload seen by dev", &notes);
    s.finish();
}

/// COPY TO STDOUT in every format, with queries.
#[tokio::test]
async fn copy_to_stdout() {
    let s = as_role("dev").await;
    for sql in [
        "COPY customers TO STDOUT",
        "COPY customers (id_number) TO STDOUT WITH (FORMAT csv)",
        "COPY customers TO STDOUT WITH (FORMAT binary)",
        "COPY (SELECT upper(id_number) FROM customers) TO STDOUT",
        "COPY (SELECT c FROM customers c) TO STDOUT",
        "COPY (SELECT * FROM customer_contacts) TO STDOUT (FORMAT csv, HEADER)",
        "COPY (SELECT x FROM customers c, LATERAL (VALUES (c.mobile)) v(x)) TO STDOUT",
        "COPY (SELECT g FROM customers c, generate_series(substr(c.mobile,4,4)::int, substr(c.mobile,4,4)::int) g) TO STDOUT",
        "COPY (SELECT x FROM customers c, upper(c.id_number) x) TO STDOUT",
        "COPY (SELECT * FROM jsonb_array_elements_text((SELECT jsonb_agg(mobile) FROM customers))) TO STDOUT",
        "COPY cards TO STDOUT",
        "COPY (TABLE cards) TO STDOUT",
        "COPY customer_contacts TO STDOUT",
        "COPY (SELECT id FROM customers WHERE mobile LIKE '1398765%') TO STDOUT",
        "COPY (WITH u AS (UPDATE customers SET branch = branch WHERE id = 1 RETURNING *) SELECT mobile FROM u) TO STDOUT",
        "COPY (SELECT upper(id_number) FROM customers) TO PROGRAM 'cat'",
        "COPY (SELECT upper(id_number) FROM customers) TO '/tmp/pgveil-leak'",
    ] {
        let text = match s.c.copy_out(sql).await {
            Ok(stream) => {
                let chunks: Vec<_> = stream.collect().await;
                chunks
                    .into_iter()
                    .map(|r| match r {
                        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                        Err(e) => error_text(&e),
                    })
                    .collect::<String>()
            }
            Err(e) => error_text(&e),
        };
        s.check(sql, &text);
        // Simple protocol too.
        let (_, text) = s.visible(sql).await;
        s.check(sql, &text);
    }
    s.finish();
}

/// Multi-statement strings and pipelining through the extended protocol.
#[tokio::test]
async fn multi_statement_and_pipelining() {
    let s = as_role("dev").await;
    for sql in [
        "SELECT 1; SELECT upper(id_number) FROM customers",
        "SELECT upper(mobile) FROM customers; SELECT 'x'; SELECT card_no || '' FROM cards",
        "SET application_name = 'a'; SELECT upper(id_number) FROM customers",
        "BEGIN; DECLARE m CURSOR FOR SELECT upper(id_number) FROM customers; FETCH ALL FROM m; COMMIT",
        "PREPARE mp AS SELECT upper(mobile) FROM customers; EXECUTE mp; DEALLOCATE mp",
        "SELECT 1 \\; SELECT upper(id_number) FROM customers",
        "/* ; */ SELECT upper(id_number) FROM customers -- ;",
        "SELECT ';'; SELECT upper(mobile) FROM customers",
        "SELECT $x$;$x$, upper(id_number) FROM customers",
        "SELECT E'\\';', upper(id_number) FROM customers",
    ] {
        s.attack(sql).await;
    }
    // Pipelined extended queries on one connection.
    let q1 = s.c.prepare("SELECT id_number FROM customers");
    let q2 = s.c.prepare("SELECT 'x'::text");
    let q3 = s.c.prepare("SELECT mobile FROM customer_contacts");
    let (a, b, c) = futures::join!(q1, q2, q3);
    let stmts: Vec<_> = [a, b, c].into_iter().filter_map(Result::ok).collect();
    let futs = stmts.iter().map(|st| s.c.query(st, &[]));
    let results = futures::future::join_all(futs).await;
    for r in results {
        let text = match r {
            Ok(rows) => rows
                .iter()
                .map(|r| r.try_get::<_, String>(0).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("|"),
            Err(e) => error_text(&e),
        };
        s.check("pipelined extended query", &text);
    }
    // Portal with max rows through tokio-postgres.
    let mut s = s;
    let tx = s.c.transaction().await.unwrap();
    let st = tx
        .prepare("SELECT id_number, mobile FROM customers")
        .await
        .unwrap();
    let portal = tx.bind(&st, &[]).await.unwrap();
    for _ in 0..3 {
        let rows = tx.query_portal(&portal, 1).await.unwrap();
        for r in rows {
            let a: String = r.get(0);
            let b: String = r.get(1);
            assert_no_secret("query_portal", &format!("{a} {b}"));
        }
    }
    tx.commit().await.unwrap();
    s.finish();
}

/// search_path and name-resolution tricks.
#[tokio::test]
async fn search_path_and_shadowing() {
    let s = as_role("dev").await;
    for sql in [
        "SET search_path TO pg_temp, public",
        "SET search_path = \"$user\", public, pg_catalog",
        "SELECT set_config('search_path', 'pg_temp,public', false)",
        "SELECT pg_catalog.set_config('search_path', 'pg_temp', false)",
        "SELECT set_config('SEARCH_PATH', 'pg_temp', false)",
        "SELECT set_config(' search_path', 'pg_temp', false)",
        "SET LOCAL search_path = pg_temp",
        "ALTER ROLE dev SET search_path = pg_temp, public",
        "CREATE SCHEMA IF NOT EXISTS dev",
        "CREATE TABLE IF NOT EXISTS dev.customers AS SELECT id, upper(id_number) AS id_number, mobile || '' AS mobile FROM public.customers",
        "SELECT * FROM customers",
        "SELECT id_number, mobile FROM customers",
        "SELECT * FROM dev.customers",
        "SELECT * FROM \"CUSTOMERS\"",
        "SELECT \"Id_Number\" FROM customers",
        "SELECT upper(id_number) FROM bank.public.customers",
        "SELECT upper(id_number) FROM \"public\".customers",
    ] {
        s.attack(sql).await;
    }
    s.finish();
}

/// Large objects.
#[tokio::test]
async fn large_objects() {
    let s = as_role("dev").await;
    s.exec("BEGIN").await;
    for sql in [
        "SELECT lo_from_bytea(424242, convert_to((SELECT id_number FROM customers WHERE id = 1), 'UTF8'))",
        "SELECT convert_from(lo_get(424242), 'UTF8')",
        "SELECT lo_put(424242, 0, convert_to(mobile, 'UTF8')) FROM customers",
        "SELECT encode(data, 'escape') FROM pg_largeobject",
        "SELECT loread(lo_open(424242, 262144), 100)",
    ] {
        let _ = s.visible("SAVEPOINT lo").await;
        let (ok, _) = s.attack(sql).await;
        if !ok {
            let _ = s.visible("ROLLBACK TO SAVEPOINT lo").await;
        }
    }
    s.exec("ROLLBACK").await;
    s.finish();
}

/// Denied columns for `trainee` stay unreadable in any shape.
#[tokio::test]
async fn trainee_denied_column_in_any_shape() {
    let s = as_role("trainee").await;
    for sql in [
        "SELECT c FROM customers c",
        "SELECT row_to_json(c) FROM customers c",
        "SELECT (c).id_number FROM customers c",
        "SELECT x FROM customers c, LATERAL (VALUES (c.id_number)) v(x)",
        "SELECT upper(id_number) FROM customers",
        "SELECT id_number::regclass FROM customers",
        "SELECT make_date(substr(id_number, 7, 8)::int, 1, 1) FROM customers",
        "SELECT * FROM customer_contacts",
        "SELECT jsonb_agg(c)::text FROM customers c",
        "SELECT x FROM customers c, textcat(c.id_number, '') x",
        "SELECT x FROM customers c, to_jsonb(c) x",
        "SELECT * FROM json_array_elements_text((SELECT json_agg(id_number) FROM customers))",
    ] {
        s.attack(sql).await;
    }
    let text = match s
        .c
        .query("SELECT (c).id_number FROM customers c", &[])
        .await
    {
        Ok(rows) => rows
            .iter()
            .map(|r| r.try_get::<_, String>(0).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("|"),
        Err(e) => error_text(&e),
    };
    s.check("trainee extended", &text);
    s.finish();
}

/// Ordinary application SQL that must not be blocked for `dev`.
#[tokio::test]
async fn ordinary_application_sql_is_not_blocked() {
    let s = as_role("dev").await;
    let mut blocked = Vec::new();
    for sql in [
        "SELECT count(*) FROM customers",
        "SELECT id, branch FROM customers ORDER BY id",
        "SELECT \"customers\".\"id\", \"customers\".\"branch\" FROM \"customers\" WHERE \"customers\".\"id\" = 1",
        "SELECT c.id, k.status FROM customers c JOIN cards k ON k.customer_id = c.id",
        "SELECT c.id, k.status FROM customers c LEFT JOIN cards k ON k.customer_id = c.id WHERE c.branch = 'Hangzhou'",
        "SELECT branch, count(*) FROM customers GROUP BY branch ORDER BY 2 DESC",
        "SELECT id, full_name, mobile FROM customers WHERE id = 1",
        "SELECT * FROM customer_contacts WHERE id = 1",
        "SELECT id FROM customers WHERE id IN (SELECT customer_id FROM cards WHERE status = 'active')",
        "SELECT EXISTS (SELECT 1 FROM customers WHERE id = 1)",
        "SELECT now(), current_user, version()",
        "SELECT 1",
        "SHOW server_version",
        "SET statement_timeout = '5s'",
        "SET application_name = 'app'",
        "SELECT t.id FROM (SELECT id FROM customers) t",
        "WITH x AS (SELECT id, branch FROM customers) SELECT * FROM x",
        "SELECT id, row_number() OVER (ORDER BY id) FROM customers",
        "SELECT count(DISTINCT branch) FROM customers",
        "SELECT max(id), min(id) FROM customers",
        "SELECT id FROM customers ORDER BY id LIMIT 1 OFFSET 0",
        "SELECT status FROM cards WHERE customer_id = 1",
        "SELECT * FROM audit_trail ORDER BY id LIMIT 1",
        "SELECT id, branch FROM customers FOR UPDATE",
        "SELECT pg_catalog.count(*) FROM public.customers",
        "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = 'customers'",
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'customers'",
        "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = 'customers'::regclass AND a.attnum > 0",
        "SELECT * FROM customers ORDER BY id",
        "SELECT id, branch FROM customers WHERE branch ILIKE 'hang%'",
        "SELECT nextval('customers_id_seq') > 0",
        "SELECT pg_backend_pid() > 0",
        "SELECT pg_advisory_lock(42), pg_advisory_unlock(42)",
        "SELECT set_config('app.tenant', '42', false)",
        "SELECT current_setting('app.tenant')",
        "SET TIME ZONE 'UTC'",
        "SHOW search_path",
        "BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT count(*) FROM cards; COMMIT",
        "LISTEN app_events",
        "NOTIFY app_events, 'hello'",
        "UNLISTEN *",
        "DISCARD ALL",
        "RESET ALL",
        "DEALLOCATE ALL",
        "CREATE TABLE IF NOT EXISTS dev_notes (id serial PRIMARY KEY, body text)",
        "INSERT INTO dev_notes (body) VALUES ('n') RETURNING *",
        "SELECT id, body FROM dev_notes",
        "CREATE INDEX IF NOT EXISTS dev_notes_body ON dev_notes (body)",
        "TRUNCATE dev_notes",
        "SELECT c.id, c.branch, count(k.id) FROM customers c LEFT JOIN cards k ON k.customer_id = c.id GROUP BY c.id, c.branch",
        "SELECT id FROM customers WHERE id = ANY('{1,2}'::int[])",
        "SELECT id FROM customers c WHERE EXISTS (SELECT 1 FROM cards k WHERE k.customer_id = c.id AND k.status = 'active')",
        "SELECT CASE WHEN branch = 'Hangzhou' THEN 'east' ELSE 'south' END FROM customers",
    ] {
        let (ok, text) = s.visible(sql).await;
        if !ok {
            blocked.push(format!("{sql} => {text}"));
        }
    }
    // Transactions, savepoints, upserts of unprotected columns.
    for sql in [
        "BEGIN",
        "SAVEPOINT s1",
        "INSERT INTO audit_trail (note) VALUES ('hello') RETURNING id",
        "RELEASE SAVEPOINT s1",
        "SAVEPOINT s2",
        "UPDATE customers SET branch = 'Suzhou' WHERE id = 2 RETURNING id, branch",
        "ROLLBACK TO SAVEPOINT s2",
        "INSERT INTO audit_trail (id, note) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET note = EXCLUDED.note",
        "INSERT INTO audit_trail (id, note) VALUES (1, 'x') ON CONFLICT (id) DO NOTHING",
        "INSERT INTO cards (customer_id, status) VALUES (2, 'new') RETURNING id, status",
        "UPDATE cards SET status = 'blocked' WHERE customer_id = 2",
        "DELETE FROM cards WHERE status = 'new'",
        // (Not INSERT INTO customers: its id_number is unique, so writing
        // one asks whether it is stored, which dev's rule does not allow;
        // see tests/adversarial5.rs.)
        "UPDATE customers SET full_name = '李四', annual_income = 1000 WHERE id = 2",
        "UPDATE customers SET mobile = '13700000002' WHERE id = 2",
        "UPDATE customers SET branch = 'Ningbo' WHERE id = 2",
        "SELECT id, branch FROM customers WHERE id = 2",
        "ROLLBACK",
    ] {
        let (ok, text) = s.visible(sql).await;
        if !ok {
            blocked.push(format!("{sql} => {text}"));
        }
    }
    let _ = s.visible("ROLLBACK").await;
    // Extended protocol, ORM-style parameters.
    for (sql, id) in [
        (
            "SELECT \"c\".\"id\", \"c\".\"branch\" FROM \"public\".\"customers\" AS \"c\" WHERE \"c\".\"id\" = $1",
            1i32,
        ),
        ("SELECT count(*) FROM cards WHERE customer_id = $1", 1),
        (
            "SELECT c.id, k.status FROM customers c JOIN cards k ON k.customer_id = c.id WHERE c.id = $1",
            1,
        ),
        ("SELECT id, full_name, mobile FROM customers WHERE id = $1", 1),
        ("SELECT * FROM customers WHERE id = $1 FOR UPDATE", 1),
        ("UPDATE customers SET branch = branch WHERE id = $1 RETURNING *", 1),
        ("SELECT id FROM customers WHERE id = $1 AND branch IS NOT NULL", 1),
    ] {
        if let Err(e) = s.c.query(sql, &[&id]).await {
            blocked.push(format!("{sql} => {}", error_text(&e)));
        }
    }
    // COPY of unprotected columns.
    for sql in [
        "COPY (SELECT id, branch FROM customers) TO STDOUT",
        "COPY audit_trail (id) TO STDOUT WITH (FORMAT csv)",
    ] {
        match s.c.copy_out(sql).await {
            Ok(stream) => {
                let chunks: Vec<_> = stream.collect().await;
                if let Some(Err(e)) = chunks.into_iter().find(Result::is_err) {
                    blocked.push(format!("{sql} => {}", error_text(&e)));
                }
            }
            Err(e) => blocked.push(format!("{sql} => {}", error_text(&e))),
        }
    }
    // Read-back of a dev-owned table and a cursor over unprotected columns.
    // (A masked role's own TEMP tables are a known false block: pgveil's
    // catalog connection cannot see another session's temporary schema. See
    // `temp_tables_of_masked_roles`, ignored until that is solved.)
    for sql in [
        "BEGIN",
        "DECLARE oc CURSOR FOR SELECT id, branch FROM customers",
        "FETCH 1 FROM oc",
        "CLOSE oc",
        "COMMIT",
        "PREPARE okp AS SELECT id, branch FROM customers WHERE id = $1",
        "EXECUTE okp(1)",
        "DEALLOCATE okp",
    ] {
        let (ok, text) = s.visible(sql).await;
        if !ok {
            blocked.push(format!("{sql} => {text}"));
        }
    }
    assert!(
        blocked.is_empty(),
        "FALSE BLOCKS for dev:\n{}",
        blocked.join("\n")
    );
    s.finish();
}

/// Exploration helper: `ADV_ROLE=dev ADV_SQL='...;;...' cargo test --test
/// adversarial explore -- --ignored --nocapture` prints what each statement
/// (separated by `;;`) shows the role.
#[tokio::test]
#[ignore]
async fn explore() {
    let role = std::env::var("ADV_ROLE").unwrap_or_else(|_| "dev".into());
    let s = as_role(&role).await;
    for sql in std::env::var("ADV_SQL").unwrap_or_default().split(";;") {
        let (ok, text) = s.visible(sql.trim()).await;
        println!("== {sql}\n   ok={ok} {text}");
    }
    s.finish();
}

/// Object definitions changed inside an open transaction: the catalog pgveil
/// reads on another connection still shows the committed definition (and
/// may wait on the transaction's locks).
#[tokio::test]
async fn uncommitted_ddl_changes_lineage() {
    let s = as_role("dev").await;
    let t = |sql: &'static str| {
        let s = &s;
        async move {
            match tokio::time::timeout(Duration::from_secs(5), s.visible(sql)).await {
                Ok((ok, text)) => {
                    s.check(sql, &text);
                    Some(ok)
                }
                Err(_) => {
                    s.leaks.lock().unwrap().push(format!(
                        "HANG: `{sql}` got no answer in 5s (pgveil waits for a catalog refresh \
                         that waits for this session's own lock)"
                    ));
                    None
                }
            }
        }
    };
    let _ = t("CREATE TABLE IF NOT EXISTS rt1 (id int, m text)").await;
    let _ = t("SELECT m FROM rt1").await;
    // A view replaced by one table rename plus a new view, uncommitted.
    let _ = t("BEGIN").await;
    let _ = t("ALTER TABLE rt1 RENAME TO rt1_old").await;
    let _ = t("CREATE VIEW rt1 AS SELECT id, full_name AS m FROM customers").await;
    let _ = t("SELECT m FROM rt1").await;
    let _ = t("SELECT * FROM rt1").await;
    let _ = t("ROLLBACK").await;
    // Another session replaces a view; this one reads it.
    let other = as_role("dev").await;
    let _ = other
        .visible("CREATE OR REPLACE VIEW rv2 AS SELECT id, 'x'::text AS m FROM customers")
        .await;
    let _ = t("SELECT m FROM rv2").await;
    let _ = other
        .visible("CREATE OR REPLACE VIEW rv2 AS SELECT id, mobile AS m FROM customers")
        .await;
    let _ = t("SELECT m FROM rv2").await;
    // A migration run directly on the database (not through pgveil).
    let _ = t("CREATE OR REPLACE VIEW rv4 AS SELECT id, 'x'::text AS m FROM customers").await;
    let _ = t("SELECT m FROM rv4").await;
    cluster()
        .psql_super_db(
            "bank",
            "CREATE OR REPLACE VIEW rv4 AS SELECT id, card_no AS m FROM cards",
        )
        .unwrap();
    // DDL that bypasses pgveil is seen after --catalog-ttl, or at once after
    // the reload a DBA sends after a migration (README).
    setup().signal(libc::SIGHUP);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = t("SELECT m FROM rv4").await;
    // OR REPLACE of a view inside an open transaction.
    let _ = t("CREATE OR REPLACE VIEW rv1 AS SELECT id, 'x'::text AS m FROM customers").await;
    let _ = t("SELECT m FROM rv1").await;
    let _ = t("BEGIN").await;
    let _ = t("CREATE OR REPLACE VIEW rv1 AS SELECT id, mobile AS m FROM customers").await;
    let _ = t("SELECT m FROM rv1").await;
    let _ = t("ROLLBACK").await;
    // Unblock the server side (if pgveil hung) so the rest of the binary can
    // go on.
    let _ = cluster().psql_super_db(
        "bank",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE usename = 'dev' AND state = 'idle in transaction' AND query LIKE '%rv1%'",
    );
    s.finish();
}

/// A masked role's TEMP tables are invisible to pgveil's catalog
/// connection; pgveil reads them over the session's own connection after the
/// session's DDL, so they work, and temp views over protected columns stay
/// masked.
#[tokio::test]
async fn temp_tables_of_masked_roles() {
    let s = as_role("dev").await;
    for sql in [
        "CREATE TEMP TABLE IF NOT EXISTS scratch (id int PRIMARY KEY, v text)",
        "INSERT INTO scratch VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v",
        "SELECT * FROM scratch",
        "SELECT s.v FROM pg_temp.scratch s JOIN customers c ON c.id = s.id",
    ] {
        let (ok, text) = s.visible(sql).await;
        assert!(ok, "{sql}: {text}");
    }
    let (_, text) = s
        .visible("CREATE TEMP VIEW tv AS SELECT id, mobile, full_name FROM customers")
        .await;
    s.check("CREATE TEMP VIEW", &text);
    for sql in [
        "SELECT * FROM tv",
        "SELECT mobile FROM tv WHERE id = 1",
        "SELECT upper(full_name) FROM tv",
    ] {
        let (_, text) = s.visible(sql).await;
        s.check(sql, &text);
    }
    s.finish();
}

// ---------------------------------------------------------------------------
// Lexing as PostgreSQL lexes: the analysis cache is keyed by the server's own
// tokens (a `--` comment ends at `\r`), and unquoted names fold A-Z only.

#[tokio::test]
async fn a_comment_ended_by_carriage_return_does_not_reuse_a_cached_plan() {
    let s = as_role("agent").await;
    for cached in ["SELECT 1", "SELECT 1 ", "select 1"] {
        let (ok, _) = s.visible(cached).await;
        assert!(ok);
        for trick in [
            "SELECT 1 --\r, id_number FROM customers",
            "SELECT 1 --x\r, id_number, mobile FROM customers",
            "SELECT 1 --\r\n, id_number FROM customers",
            "SELECT 1 /* a /* nested */ b */ , id_number FROM customers",
        ] {
            s.attack(trick).await;
        }
    }
    // The same tricks through the extended protocol (Parse with the text).
    for trick in ["SELECT 1 --\r, id_number FROM customers"] {
        if let Ok(rows) = s.c.query(trick, &[]).await {
            for row in rows {
                let v: Option<String> = row.get(1);
                s.check(trick, &v.unwrap_or_default());
            }
        }
    }
    s.finish();
}

#[tokio::test]
async fn unquoted_non_ascii_names_are_not_lower_cased() {
    let s = as_role("agent").await;
    for sql in [
        "SELECT * FROM Év",
        "SELECT v FROM Év",
        "SELECT v FROM public.Év",
        "SELECT x.v FROM Év x",
        "SELECT v FROM \"Év\"",
    ] {
        let (_, text) = s.attack(sql).await;
        assert!(
            !text.contains("harmless"),
            "{sql} read the wrong relation: {text}"
        );
    }
    // The lower-case table is still readable under its own name.
    let (ok, text) = s.visible("SELECT v FROM év").await;
    assert!(ok && text.contains("harmless"), "{text}");
    s.finish();
}

// ---------------------------------------------------------------------------
// standard_conforming_strings = off changes where a string ends. pgveil lexes
// every statement under the server's current value (read when the guard
// starts, then followed in ParameterStatus), however it was set: SET,
// startup options, ALTER ROLE … SET.

/// Texts that read as constants with the setting on, and as reads of
/// protected columns with it off.
const BACKSLASH_TRICKS: &[&str] = &[
    "SELECT '\\', ' , id_number FROM customers --'",
    "SELECT 'x\\'' , id_number FROM customers --'",
    "SELECT '\\', ' , mobile, id_number FROM customers WHERE id > 0 --'",
    "SELECT 1 AS a, '\\' || ' , id_number AS b FROM customers --' AS c",
    "SELECT '\\\\\\', ' , id_number FROM customers --'",
    "SELECT * FROM (SELECT '\\', ' , id_number AS v FROM customers) s --'",
    "SELECT '\\';' , id_number FROM customers --'",
    "SELECT '\\', '; SELECT id_number FROM customers --'",
    "SELECT concat('\\'), ' , id_number) FROM customers --')",
    "SELECT full_name FROM customers UNION ALL SELECT '\\', ' || id_number FROM customers --'",
];

/// psql with `setup` run first, then `sql`, as `user`: what it printed.
fn psql_as(user: &str, options: &str, setup: &str, sql: &str) -> String {
    let out = common::client_cmd("psql")
        .args(["-X", "-At", "-c", setup, "-c", sql])
        .arg(format!(
            "host=127.0.0.1 port={} user={user} password={} dbname=bank options='{options}'",
            setup_port(),
            bank::PASSWORD
        ))
        .output()
        .expect("psql");
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn setup_port() -> u16 {
    setup().port
}

#[tokio::test]
async fn standard_conforming_strings_off_cannot_hide_a_column() {
    let proxy = setup();
    // Each trick really reads the column when the setting is off: straight
    // to PostgreSQL, the superuser gets the raw value. (Not through
    // pgveil: another test here makes a user-defined `||` over varchar,
    // which pgveil refuses for every masked role while it exists.)
    let direct = common::connect(&format!(
        "host=127.0.0.1 port={} user=postgres password={} dbname=bank",
        cluster().port,
        common::SUPERUSER_PASSWORD
    ))
    .await
    .unwrap();
    direct
        .batch_execute("SET standard_conforming_strings = off")
        .await
        .unwrap();
    for trick in BACKSLASH_TRICKS {
        let text = match direct.simple_query(trick).await {
            Ok(msgs) => simple_text(&msgs),
            Err(e) => error_text(&e),
        };
        assert!(
            text.contains(bank::ID_NUMBER),
            "{trick} reads nothing: {text}"
        );
    }
    // SET in the session, simple and extended protocol.
    let s = as_role("agent").await;
    s.exec("SET standard_conforming_strings = off").await;
    for trick in BACKSLASH_TRICKS {
        s.attack(trick).await;
        if let Ok(rows) = s.c.query(*trick, &[]).await {
            s.check(trick, &format!("{rows:?}"));
        }
    }
    // Back on (RESET is reported too): the same texts are constants again.
    s.exec("RESET standard_conforming_strings").await;
    let (ok, text) = s.visible(BACKSLASH_TRICKS[0]).await;
    assert!(ok, "{text}");
    s.finish();
    // Set at startup (options=-c) and by ALTER ROLE … SET.
    let conn = format!(
        "{} options='-c standard_conforming_strings=off'",
        proxy.conn_str("agent", bank::PASSWORD, "bank")
    );
    let c = common::connect(&conn).await.unwrap();
    for trick in BACKSLASH_TRICKS {
        match c.simple_query(trick).await {
            Ok(msgs) => assert_no_secret(trick, &simple_text(&msgs)),
            Err(e) => assert_no_secret(trick, &error_text(&e)),
        }
    }
    let legacy = as_role("legacy").await;
    let (_, text) = legacy.visible("SHOW standard_conforming_strings").await;
    assert!(text.contains("off"), "{text}");
    for trick in BACKSLASH_TRICKS {
        legacy.attack(trick).await;
    }
    legacy.finish();
    // psql, which lexes backslashes itself, as a real client would.
    for trick in BACKSLASH_TRICKS {
        let text = psql_as("agent", "", "SET standard_conforming_strings = off", trick);
        assert_no_secret(trick, &text);
        let text = psql_as(
            "dev",
            "-c standard_conforming_strings=off",
            "SELECT 1",
            trick,
        );
        assert_no_secret(trick, &text);
    }
}

/// Ordinary statements of a session with the setting off still work:
/// backslashes in strings are read as the server reads them.
#[tokio::test]
async fn standard_conforming_strings_off_keeps_ordinary_statements_working() {
    let s = as_role("agent").await;
    s.exec("SET standard_conforming_strings = off").await;
    for (sql, expected) in [
        ("SELECT 'it\\'s' AS v", "it's"),
        (
            "SELECT branch FROM customers WHERE branch = 'Hang\\zhou'",
            "Hangzhou",
        ),
        ("SELECT 'a\\\\b' AS v", "a\\b"),
        (
            "SELECT count(*) FROM customers WHERE full_name <> 'x\\'y'",
            "2",
        ),
    ] {
        let (ok, text) = s.visible(sql).await;
        assert!(ok && text.contains(expected), "{sql}: {text}");
    }
    // A masked column is still masked, not refused.
    let (ok, text) = s
        .visible("SELECT id_number FROM customers WHERE branch = 'Hang\\zhou'")
        .await;
    assert!(ok, "{text}");
    s.check("masked read", &text);
    s.finish();
}
