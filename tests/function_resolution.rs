//! Which function an unqualified call runs when an extension installed in
//! public shares a built-in's name: citext's `max(citext)`, `replace`,
//! `strpos`, pgcrypto's `gen_random_uuid()`. PostgreSQL drops a candidate
//! whose parameter an argument cannot be implicitly coerced to, and takes
//! pg_catalog's function of exactly the same signature first, so
//! `max(id)` runs pg_catalog's `max(bigint)`: a masked role must not be
//! refused it (Django's test-database setup runs exactly that). A call the
//! extension's function can take is still judged as a call of it. The same
//! for operators: hstore's `=` and `@>` are no candidates where pgveil can
//! tell an operand's built-in type (extract(), casts to time, interval,
//! bit or arrays, trim(), substring(… FROM …), ARRAY[…]).

mod common;

use std::sync::OnceLock;

use common::bank;
use common::probe::*;
use common::{cluster, Proxy};

fn setup() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        bank::create("");
        cluster()
            .psql_super_db(
                "bank",
                "CREATE EXTENSION citext SCHEMA public;
                 CREATE EXTENSION pgcrypto SCHEMA public;
                 CREATE EXTENSION hstore SCHEMA public;
                 CREATE TABLE kv (id int, h hstore); GRANT ALL ON kv TO PUBLIC;
                 CREATE TABLE loot (v text); GRANT ALL ON loot TO PUBLIC;
                 CREATE FUNCTION public.stash(a text, b text) RETURNS bool LANGUAGE plpgsql AS
                   $f$ BEGIN INSERT INTO loot VALUES (a); RETURN true; END $f$;
                 CREATE ROLE prober LOGIN PASSWORD 'role-pw';
                 CREATE TABLE tags (id serial PRIMARY KEY, label citext);
                 INSERT INTO tags (label) VALUES ('Alpha'), ('beta');
                 GRANT ALL ON tags TO PUBLIC;",
            )
            .unwrap();
        bank::start_proxy(bank::POLICIES)
    })
}

#[tokio::test]
async fn builtins_run_where_an_extensions_function_cannot_take_the_arguments() {
    let s = Session::connect(setup(), "dev").await;
    for sql in [
        "SELECT max(id), min(id) FROM customers",
        "SELECT setval(pg_get_serial_sequence('customers', 'id'), coalesce(max(id), 1), \
         max(id) IS NOT null) FROM customers",
        "SELECT gen_random_uuid()",
        "SELECT replace(branch, 'a', 'b'), strpos(branch, 'a') FROM customers",
        "SELECT max(branch) FROM customers",
        "SELECT max(branch::varchar), max(upper(branch::varchar)) FROM customers",
    ] {
        let (ok, text) = s.attack(sql).await;
        assert!(ok, "{sql}: {text}");
    }
    for sql in [
        "SELECT 1 FROM customers WHERE extract(day FROM now()) = extract(day FROM now())",
        "SELECT 1 WHERE now()::time = '00:00' AND now()::timestamp = now()::timestamp",
        "SELECT 1 WHERE '1 day'::interval = '1 day' AND B'101'::bit(3) = B'101'",
        "SELECT 1 FROM customers WHERE trim(branch) = 'x' OR substring(branch FROM 1 FOR 1) = 'x'",
        "SELECT ARRAY[1, 2] = ARRAY[1, 2], '{1}'::integer[] = ARRAY[1]",
        "SELECT 1 AS _check WHERE COALESCE(('{}'::integer[] @> (ARRAY[1])::integer[]), TRUE)",
        // The result of pg_catalog's replace(text, …) is text, so neither
        // hstore's || nor citext's = is a candidate over it (Django's
        // LIKE escaping).
        "SELECT 1 FROM customers WHERE branch LIKE replace(replace(branch, '\\', '\\\\'), '%', '\\%') || '%'",
        "SELECT 1 FROM customers WHERE replace(branch, 'a', 'b') = 'x'",
    ] {
        let (ok, text) = s.attack(sql).await;
        assert!(ok, "{sql}: {text}");
    }
    // A function no built-in shares a name with is judged whatever pgveil
    // makes of the arguments' types (`'x'::unknown` reaches any type).
    let prober = Session::connect(setup(), "prober").await;
    for sql in [
        "SELECT id FROM customers WHERE stash(mobile, 'x'::unknown)",
        "SELECT stash(mobile, 'x') FROM customers",
        "SELECT id FROM customers WHERE stash(mobile, NULL::unknown)",
    ] {
        prober.refused(sql).await;
    }
    prober.finish();
    for sql in [
        "SELECT id FROM kv WHERE h = 'a=>1'::hstore",
        "SELECT id FROM kv WHERE h @> 'a=>1'",
        "SELECT h -> 'a' FROM kv",
    ] {
        s.refused(sql).await;
    }
    // Typing a deep nest of such calls stays bounded.
    let deep = format!(
        "SELECT 1 FROM customers WHERE {}branch{} = 'x'",
        "replace(".repeat(60),
        ", 'a', 'b')".repeat(60)
    );
    let (ok, text) = s.attack(&deep).await;
    assert!(ok || text.contains("pgveil"), "{text}");
    // Ordering a protected column stays an ordering use.
    s.refused("SELECT max(mobile) FROM customers").await;
    // citext's own functions run C code the policy does not list.
    for sql in [
        "SELECT max(label) FROM tags",
        "SELECT replace(label, 'a', 'b') FROM tags",
        "SELECT public.gen_random_uuid()",
    ] {
        s.refused(sql).await;
    }
    s.finish();
}
