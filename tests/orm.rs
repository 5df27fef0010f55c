//! ORM migrations through pgveil as a masked role (tests/orm/run.sh): a
//! Django app and an Alembic/SQLAlchemy app migrate their schema through
//! pgveil, then read masked values and write rows through their ORM; a
//! pg_dump of a realistic schema is restored through pgveil and queried.
//!
//! The ORM steps need the virtualenv of `tests/orm/run.sh install` (.ci/run
//! creates it); without it they are skipped with a message, except under CI,
//! where a missing virtualenv fails.
//!
//! Migration wall times (direct, through pgveil without a policy, through
//! pgveil as the masked role) are printed: `cargo test --test orm -- --nocapture`.
//!
//! The one refusal the restored dump meets is asserted as such: a partial
//! index built over stored rows on a column the role may not filter by.
//! `ddl_over_stored_rows_is_judged_as_a_filter` shows which DDL is a filter
//! use of a protected column.
//!
//! Known false blocks, should any appear, are listed in `KNOWN_FALSE_BLOCKS`
//! (empty now): when a migration stops at one of them, the test says so,
//! applies that migration directly, and goes on with the ORM reads and
//! writes through pgveil. Any other refusal fails. Set PGVEIL_ORM_STRICT=1 to
//! fail on the known ones too.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{client_cmd, cluster, Proxy, SUPERUSER_PASSWORD};

const ROLE: &str = "orm_app";
const PASSWORD: &str = "orm-pw";
const POLICIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/orm");
const SUITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/orm");

/// Refusals that are false blocks of statement kinds other engineers of
/// issue 8 own (pattern in the refusal, what it is). Remove an entry when its
/// fix lands: the test then requires the migration to pass through pgveil.
const KNOWN_FALSE_BLOCKS: &[(&str, &str)] = &[];

fn strict() -> bool {
    std::env::var_os("PGVEIL_ORM_STRICT").is_some_and(|v| v == "1")
}

/// The databases of this binary, one per workload and path.
fn setup() -> &'static (Proxy, Proxy) {
    static PROXIES: OnceLock<(Proxy, Proxy)> = OnceLock::new();
    PROXIES.get_or_init(|| {
        let c = cluster();
        c.psql_super(&format!(
            "CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}';\n\
             CREATE DATABASE shop_direct OWNER {ROLE};\n\
             CREATE DATABASE shop_relay OWNER {ROLE};\n\
             CREATE DATABASE shop_masked OWNER {ROLE};\n\
             CREATE DATABASE crm_direct OWNER {ROLE};\n\
             CREATE DATABASE crm_relay OWNER {ROLE};\n\
             CREATE DATABASE crm_masked OWNER {ROLE};\n\
             CREATE DATABASE dump_source;\n\
             CREATE DATABASE ddl_masked OWNER {ROLE};\n\
             CREATE DATABASE dump_masked OWNER {ROLE};\n"
        ))
        .unwrap();
        let env = [("PGVEIL_CATALOG_PASSWORD", SUPERUSER_PASSWORD)];
        let masked = Proxy::start_with_env(
            &["--policies", POLICIES, "--catalog-user", "postgres"],
            &env,
        );
        let relay = Proxy::start_with_env(&["--catalog-user", "postgres"], &env);
        (masked, relay)
    })
}

fn masked() -> &'static Proxy {
    &setup().0
}

fn relay() -> &'static Proxy {
    &setup().1
}

/// The suite's Python, or None (with a message) when `run.sh install` has
/// not been run; under CI that is a failure.
fn python_suite() -> Option<PathBuf> {
    let dir = std::env::var_os("PGVEIL_ORM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/orm"));
    let python = dir.join("venv/bin/python");
    if python.exists() {
        return Some(python);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} missing: .ci/run must run `tests/orm/run.sh install`",
            python.display()
        );
    }
    eprintln!(
        "SKIPPED: {} missing; run `tests/orm/run.sh install` first",
        python.display()
    );
    None
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// One step of tests/orm/run.sh against `port` (the server or a pgveil).
fn step(port: u16, db: &str, args: &[&str]) -> Run {
    let started = Instant::now();
    let out = Command::new(Path::new(SUITE).join("run.sh"))
        .args(args)
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", port.to_string())
        .env("PGUSER", ROLE)
        .env("PGPASSWORD", PASSWORD)
        .env("PGDATABASE", db)
        .env_remove("PGSERVICE")
        .output()
        .unwrap_or_else(|e| panic!("run.sh {args:?}: {e}"));
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// psql through `port` as the application role; ON_ERROR_STOP.
fn psql(port: u16, db: &str, input: &str) -> Run {
    psql_with(port, db, input, true)
}

/// psql through `port` as the application role, stopping at the first
/// error or going on past errors.
fn psql_with(port: u16, db: &str, input: &str, stop_on_error: bool) -> Run {
    use std::io::Write;
    let started = Instant::now();
    let stop = if stop_on_error {
        "ON_ERROR_STOP=1"
    } else {
        "ON_ERROR_STOP=0"
    };
    let mut child = client_cmd("psql")
        .args(["-X", "-q", "-At", "-v", stop, "-f", "-"])
        .arg(format!(
            "host=127.0.0.1 port={port} user={ROLE} password={PASSWORD} dbname={db}"
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).expect("psql stdin");
    }
    let out = child.wait_with_output().expect("psql");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// A workload that must pass through pgveil as the masked role. Returns
/// whether it did; when it stopped at a known false block, `fallback`
/// applies it directly so the test can go on.
fn through_masked(what: &str, run: Run, fallback: impl FnOnce() -> Run) -> bool {
    if run.ok {
        return true;
    }
    let refusal = run
        .stderr
        .lines()
        .find(|l| l.contains("pgveil"))
        .unwrap_or("")
        .to_owned();
    let known = KNOWN_FALSE_BLOCKS
        .iter()
        .find(|(pattern, _)| run.stderr.contains(pattern));
    match known {
        Some((_, why)) if !strict() => {
            eprintln!("KNOWN FALSE BLOCK in {what}: {why}\n  {refusal}");
            let direct = fallback();
            assert!(
                direct.ok,
                "{what} directly: {}{}",
                direct.stdout, direct.stderr
            );
            false
        }
        _ => panic!(
            "{what} through pgveil as a masked role failed:\n{}\n{}",
            run.stdout, run.stderr
        ),
    }
}

/// Makes pgveil drop its cached catalogs (as a DBA does after a migration
/// applied directly) and waits until `probe` resolves through it.
fn reload_catalog(db: &str, probe: &str) {
    masked().signal(libc::SIGHUP);
    let mut last = String::new();
    for _ in 0..100 {
        let r = psql(masked().port, db, probe);
        if r.ok {
            return;
        }
        last = r.stderr;
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("pgveil did not pick up the schema of {db}: {last}");
}

fn timings(what: &str, direct: &Run, relayed: &Run, masked: Option<&Run>) {
    let ms = |r: &Run| r.elapsed.as_secs_f64() * 1000.0;
    eprintln!(
        "{what}: direct {:.0} ms, through pgveil without policy {:.0} ms, through pgveil as masked role {}",
        ms(direct),
        ms(relayed),
        masked.map_or("blocked (see above)".to_owned(), |m| format!("{:.0} ms", ms(m)))
    );
}

fn json(run: &Run) -> serde_json::Value {
    assert!(run.ok, "ORM step failed:\n{}\n{}", run.stdout, run.stderr);
    let line = run.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// No raw value of `secrets` in anything the client printed.
fn assert_hidden(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !text.contains(s),
            "{what}: {s} reached the masked role: {text}"
        );
    }
}

#[test]
fn django_migrates_then_reads_masked_and_writes_through_pgveil() {
    let Some(_) = python_suite() else { return };
    setup();
    let (id_number, mobile) = ("110105198510210018", "13912345678");
    let direct = step(cluster().port, "shop_direct", &["django-migrate"]);
    assert!(direct.ok, "migrate directly: {}", direct.stderr);
    let relayed = step(relay().port, "shop_relay", &["django-migrate"]);
    assert!(
        relayed.ok,
        "migrate through pgveil without policy: {}",
        relayed.stderr
    );
    let run = step(masked().port, "shop_masked", &["django-migrate"]);
    let elapsed = run.elapsed;
    let passed = through_masked("django migrate", run, || {
        step(cluster().port, "shop_masked", &["django-migrate"])
    });
    timings(
        "django migrate",
        &direct,
        &relayed,
        passed
            .then_some(Run {
                ok: true,
                stdout: String::new(),
                stderr: String::new(),
                elapsed,
            })
            .as_ref(),
    );
    if !passed {
        reload_catalog("shop_masked", "SELECT 1 FROM shop_customer LIMIT 0");
    }
    // Migrated as the masked role: nothing left to apply.
    let again = step(masked().port, "shop_masked", &["django-migrate"]);
    assert!(again.ok, "second migrate: {}", again.stderr);

    let out = json(&step(
        masked().port,
        "shop_masked",
        &["django-app", id_number, mobile],
    ));
    let read = &out["read"];
    assert_eq!(read["id_number"], "**************0018", "{out}");
    assert_eq!(read["mobile"], "139****5678", "{out}");
    assert_eq!(read["birth"], "1985-01-01", "{out}");
    assert_eq!(read["full_name"], "王小明", "{out}");
    assert_eq!(out["found_by_id_number"], true, "{out}");
    assert_eq!(out["values_list"][0], "**************0018", "{out}");
    assert_eq!(out["orders"][0]["customer_mobile"], "139****5678", "{out}");
    assert_eq!(out["total"], "109.50", "{out}");
    assert_eq!(out["orders_left"], 1, "{out}");
    assert_hidden(
        "django app",
        &out.to_string(),
        &[id_number, mobile, "1985-10-21"],
    );
    // The rows the ORM wrote hold the real values.
    let stored = cluster()
        .psql_super_db(
            "shop_masked",
            "SELECT id_number, mobile, birth, tier, email FROM shop_customer",
        )
        .unwrap();
    assert_eq!(
        stored.trim(),
        format!("{id_number}|{mobile}|1985-10-21|platinum|wang@example.com")
    );
}

#[test]
fn alembic_migrates_then_reads_masked_and_writes_through_pgveil() {
    let Some(_) = python_suite() else { return };
    setup();
    let (id_number, phone) = ("310101199007150022", "13811112222");
    let direct = step(cluster().port, "crm_direct", &["alembic-upgrade"]);
    assert!(direct.ok, "upgrade directly: {}", direct.stderr);
    let relayed = step(relay().port, "crm_relay", &["alembic-upgrade"]);
    assert!(
        relayed.ok,
        "upgrade through pgveil without policy: {}",
        relayed.stderr
    );
    let run = step(masked().port, "crm_masked", &["alembic-upgrade"]);
    let elapsed = run.elapsed;
    let passed = through_masked("alembic upgrade", run, || {
        step(cluster().port, "crm_masked", &["alembic-upgrade"])
    });
    timings(
        "alembic upgrade",
        &direct,
        &relayed,
        passed
            .then_some(Run {
                ok: true,
                stdout: String::new(),
                stderr: String::new(),
                elapsed,
            })
            .as_ref(),
    );
    if !passed {
        reload_catalog("crm_masked", "SELECT 1 FROM crm_client LIMIT 0");
    }
    let out = json(&step(
        masked().port,
        "crm_masked",
        &["alembic-app", id_number, phone],
    ));
    let read = &out["read"];
    assert_eq!(read["id_number"], "**************0022", "{out}");
    assert_eq!(read["phone"], "138****2222", "{out}");
    assert_eq!(read["birth"], "1990-01-01", "{out}");
    assert_eq!(read["segment"], "private", "{out}");
    assert_eq!(read["accounts"][0], "1200.50", "{out}");
    assert_eq!(out["found_by_id_number"], 1, "{out}");
    assert_eq!(out["balance_after"], "1201.50", "{out}");
    assert_hidden(
        "alembic app",
        &out.to_string(),
        &[id_number, phone, "1990-07-15"],
    );
    let stored = cluster()
        .psql_super_db(
            "crm_masked",
            &format!(
                "SELECT phone, attrs->>'checked' FROM crm_client WHERE id_number = '{id_number}'"
            ),
        )
        .unwrap();
    assert_eq!(stored.trim(), format!("{phone}|true"));
}

#[test]
fn pg_dump_restores_through_pgveil_and_is_queried_masked() {
    setup();
    let c = cluster();
    let schema = std::fs::read_to_string(Path::new(SUITE).join("dump/bank.sql")).unwrap();
    c.psql_super_db("dump_source", &schema).unwrap();
    let out = client_cmd("pg_dump")
        .args(["--no-owner", "--no-privileges", "-h"])
        .arg(&c.dir)
        .args(["-p", &c.port.to_string(), "-U", "postgres", "dump_source"])
        .output()
        .expect("pg_dump");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = String::from_utf8(out.stdout).expect("dump is UTF-8");

    // The restore goes on past errors, as `psql -f dump.sql` does. Two
    // statements are refused, each naming its rule and what to do, and the
    // DBA runs them: the partial index on mobile (`WHERE mobile IS NOT
    // NULL`, built after the rows are copied) counts the rows with a mobile,
    // and orm_app may not filter by mobile; the trigger attaches a function
    // the policy does not allow to other roles' writes.
    let run = psql_with(masked().port, "dump_masked", &dump, false);
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("ERROR:"))
        .collect();
    let expected = [
        (
            "pgveil: protected column bank.customer.mobile is used in a DDL expression the server \
             evaluates over stored rows",
            "[rule: bank.customer.mobile default]",
            "CREATE INDEX customer_mobile_idx ",
        ),
        (
            "pgveil: user-defined function bank.touch_updated_at is not allowed by the policy",
            "[rule: user-defined-function]",
            "CREATE TRIGGER customer_touch ",
        ),
    ];
    assert_eq!(
        errors.len(),
        expected.len(),
        "restore through pgveil as a masked role:\n{}",
        run.stderr
    );
    for ((reason, rule, statement), error) in expected.iter().zip(&errors) {
        assert!(
            error.contains(reason) && error.contains(rule),
            "expected {reason} {rule}, got {error}"
        );
        let sql = dump
            .lines()
            .find(|l| l.starts_with(statement))
            .unwrap_or_else(|| panic!("the dump has no {statement}"));
        c.psql_super_db("dump_masked", sql).unwrap();
    }
    assert!(
        run.stderr.contains(
            "HINT:  declare the constraint in CREATE TABLE before rows are loaded, run this DDL \
             as a role whose rule allows filtering"
        ),
        "{}",
        run.stderr
    );
    let secrets = [
        "330106197703030036",
        "13566667777",
        "6222020000000000018",
        "6222020000000000026",
    ];
    let q = psql(
        masked().port,
        "dump_masked",
        "SELECT id_number, mobile, full_name FROM bank.customer ORDER BY id;\n\
         SELECT full_name, mobile, city FROM bank.customer_directory ORDER BY id;\n\
         SELECT pan, status, limit_amount FROM bank.card ORDER BY customer_id;\n\
         SELECT count(*), sum(amount) FROM bank.txn;\n\
         SELECT month, n, total FROM bank.monthly_spend ORDER BY month;\n\
         SELECT c.full_name, count(t.id) FROM bank.customer c JOIN bank.card k ON k.customer_id = c.id \
           JOIN bank.txn t ON t.pan = k.pan GROUP BY c.full_name ORDER BY 1;\n\
         UPDATE bank.customer SET email = 'zhao6@example.com' WHERE id_number = '330106197703030036';\n\
         INSERT INTO bank.customer (branch_id, full_name, id_number, mobile) \
           VALUES (1, 'New Person', '330106200001010011', '13700002222');\n\
         SELECT id_number FROM bank.customer WHERE full_name = 'New Person';\n",
    );
    assert!(q.ok, "queries through pgveil: {}", q.stderr);
    let lines: Vec<&str> = q.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "**************0036|135****7777|赵六",
            "**************0047|136****1111|Maria Garcia",
            "赵六|135****7777|Hangzhou",
            "Maria Garcia|136****1111|Shenzhen",
            "622202*********0018|active|50000.00",
            "622202*********0026|blocked|8000.00",
            "3|1304.30",
            "2025-11-01|1|88.80",
            "2026-01-01|1|1200.00",
            "2026-02-01|1|15.50",
            "Maria Garcia|1",
            "赵六|2",
            "**************0011",
        ],
        "{}",
        q.stderr
    );
    assert_hidden("restored dump", &q.stdout, &secrets);

    // Built-ins in FROM, WITH ORDINALITY, and text casts of a masked date
    // (masked as a date, then printed as PostgreSQL prints the masked date).
    let q = psql(
        masked().port,
        "dump_masked",
        "SELECT * FROM json_each_text('{\"a\": \"b\"}');\n\
         SELECT * FROM lower('FOO');\n\
         SELECT birth::text, CAST(birth AS varchar), birth FROM bank.customer WHERE id = 1;\n\
         SELECT * FROM unnest(ARRAY['x']) WITH ORDINALITY, \
           (SELECT coalesce(full_name, '') AS f, coalesce(id_number, '') AS i FROM bank.customer WHERE id = 1) s;\n",
    );
    assert!(q.ok, "queries through pgveil: {}", q.stderr);
    assert_eq!(
        q.stdout.lines().collect::<Vec<_>>(),
        [
            "a|b",
            "foo",
            "1977-01-01|1977-01-01|1977-01-01",
            "x|1|赵六|**************0036",
        ]
    );
    // The same text cast in binary format (tokio-postgres asks for binary).
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client = common::connect(&masked().conn_str(ROLE, PASSWORD, "dump_masked"))
            .await
            .expect("connect through pgveil");
        let row = client
            .query_one(
                "SELECT birth::text FROM bank.customer WHERE id = $1",
                &[&1i64],
            )
            .await
            .expect("text cast of a masked date");
        let text: String = row.get(0);
        assert_eq!(text, "1977-01-01");
    });
    let stored = c
        .psql_super_db(
            "dump_masked",
            "SELECT email, updated_at > now() - interval '1 hour' FROM bank.customer \
             WHERE id_number = '330106197703030036'",
        )
        .unwrap();
    assert_eq!(stored.trim(), "zhao6@example.com|t");
}

/// DDL that makes the server evaluate a protected column over stored rows
/// is a filter use of it (issue 8): a CHECK fails iff some row violates it,
/// an index expression is computed per row, a partial index counts the
/// rows its predicate matches. It passes where the role's rule permits that
/// filter and is refused, naming the rule and what to do, where it does not;
/// constraints declared in CREATE TABLE (no rows yet) and identity changes
/// (no value read) pass.
#[test]
fn ddl_over_stored_rows_is_judged_as_a_filter() {
    setup();
    let port = masked().port;
    let db = "ddl_masked";
    let ok = |sql: &str| {
        let r = psql(port, db, sql);
        assert!(r.ok, "{sql}: {}", r.stderr);
        r.stdout
    };
    // A new table: its own CHECK on a column whose rule denies filtering
    // (mobile) probes nothing.
    ok(
        "CREATE TABLE shop_customer (id bigint NOT NULL, full_name text, \
        id_number varchar(18) NOT NULL, mobile text CHECK (mobile LIKE '1%'), birth date)",
    );
    ok("INSERT INTO shop_customer VALUES (1, 'A', '110105198510210018', '13912345678', '1985-10-21'), \
        (2, 'B', '510105199001010027', '13800001111', '1990-01-01')");

    let refused = |sql: &str, column: &str| {
        let r = psql(port, db, sql);
        assert!(!r.ok, "{sql} passed through pgveil");
        assert!(
            r.stderr.contains("ERROR:  pgveil")
                && r.stderr.contains(column)
                && r.stderr.contains("which is filtering by it")
                && r.stderr.contains("declare the constraint in CREATE TABLE"),
            "{sql}: {}",
            r.stderr
        );
    };
    // filter: equality on id_number: a prefix test is more than equality.
    refused(
        "ALTER TABLE shop_customer ADD CONSTRAINT probe CHECK (id_number NOT LIKE '5%')",
        "public.shop_customer.id_number",
    );
    refused(
        "CREATE INDEX probe ON shop_customer ((1 / (length(id_number) - 18)))",
        "public.shop_customer.id_number",
    );
    // mobile has no filter right at all, not even IS NOT NULL.
    refused(
        "CREATE INDEX probe ON shop_customer (full_name) WHERE mobile IS NOT NULL",
        "public.shop_customer.mobile",
    );
    refused(
        "ALTER TABLE shop_customer ALTER COLUMN mobile SET NOT NULL",
        "public.shop_customer.mobile",
    );
    refused(
        "ALTER TABLE shop_customer ALTER COLUMN id_number TYPE varchar(10)",
        "public.shop_customer.id_number",
    );
    let made = cluster()
        .psql_super_db(
            db,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'probe' \
             UNION ALL SELECT count(*) FROM pg_class WHERE relname = 'probe'",
        )
        .unwrap();
    assert_eq!(made.trim(), "0\n0", "a refused DDL reached the server");

    // What filter: equality permits: keys and pattern indexes on the column
    // itself, and pg_dump's identity form.
    ok("CREATE INDEX shop_customer_id_number_like ON shop_customer (id_number varchar_pattern_ops)");
    ok("ALTER TABLE shop_customer ADD CONSTRAINT shop_customer_id_number_key UNIQUE (id_number)");
    ok("ALTER TABLE shop_customer ADD CONSTRAINT shop_customer_pkey PRIMARY KEY (id)");
    ok("ALTER TABLE shop_customer ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (\
        SEQUENCE NAME public.shop_customer_id_seq START WITH 10 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1)");
    ok("INSERT INTO shop_customer (full_name, id_number, mobile) VALUES ('C', '330106197703030036', '13566667777')");
    // Still masked after all of it.
    let rows = ok("SELECT id, id_number, mobile FROM shop_customer ORDER BY id");
    assert_eq!(
        rows.lines().collect::<Vec<_>>(),
        [
            "1|**************0018|139****5678",
            "2|**************0027|138****1111",
            "10|**************0036|135****7777",
        ]
    );
    assert_hidden(
        "ddl test",
        &rows,
        &["110105198510210018", "13912345678", "330106197703030036"],
    );
}
