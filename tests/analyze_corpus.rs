//! Table-driven corpus over a retail-bank schema: leak attempts must be
//! masked or blocked, ordinary application SQL must pass.
//!
//! The catalog is `tests/fixtures/analyze/bank_catalog.json`, written by
//! `pgveil catalog dump` from a real PostgreSQL 15 with the schema in
//! `tests/fixtures/analyze/bank_schema.sql`. The policy is a small
//! in-test `PolicyView` (a table of column -> decision per role).

use std::collections::HashMap;

use pgveil::analyze::policy_view::{
    ColumnAction, ColumnDecision, FilterRight, PolicyView, QualifiedColumn,
};
use pgveil::analyze::{Analyzer, Catalog, SessionContext, StatementKind, StatementPlan};

/// Column -> decision for one role; tables denied; functions allowed.
struct RolePolicy {
    columns: HashMap<(&'static str, &'static str), ColumnDecision>,
    denied_tables: Vec<&'static str>,
    unrestricted: bool,
}

fn mask(id: usize, name: &str, filter: FilterRight, rule: &str) -> ColumnDecision {
    ColumnDecision {
        action: ColumnAction::Mask {
            mask_id: id,
            mask_name: name.to_owned(),
        },
        filter,
        rule: rule.to_owned(),
        class: Some("C3".into()),
        max_candidates: 100,
    }
}

fn allow(rule: &str) -> ColumnDecision {
    ColumnDecision {
        action: ColumnAction::Allow,
        filter: FilterRight::Allow,
        rule: rule.to_owned(),
        class: None,
        max_candidates: 100,
    }
}

fn deny(rule: &str) -> ColumnDecision {
    ColumnDecision {
        action: ColumnAction::Deny,
        filter: FilterRight::Deny,
        rule: rule.to_owned(),
        class: None,
        max_candidates: 100,
    }
}

fn role(name: &str) -> RolePolicy {
    use FilterRight::*;
    let mut columns = HashMap::new();
    let mut denied_tables = Vec::new();
    let rule = |c: &str| format!("public.{c} rule for {name}");
    match name {
        "dba" => {
            return RolePolicy {
                columns,
                denied_tables,
                unrestricted: true,
            }
        }
        "compliance" => {
            for c in [
                "customers.id_number",
                "customers.phone",
                "customers.full_name",
            ] {
                let (t, col) = c.split_once('.').unwrap_or_default();
                columns.insert((leak(t), leak(col)), allow(&rule(c)));
            }
        }
        "call_center" => {
            columns.insert(
                ("customers", "id_number"),
                mask(1, "keep_last4", Equality, &rule("customers.id_number")),
            );
            columns.insert(
                ("customers", "phone"),
                mask(3, "phone", Equality, &rule("customers.phone")),
            );
            columns.insert(
                ("customers", "full_name"),
                allow(&rule("customers.full_name")),
            );
            columns.insert(
                ("customers", "income"),
                mask(6, "round", Deny, &rule("customers.income")),
            );
            columns.insert(
                ("cards", "card_number"),
                mask(5, "pan", Equality, &rule("cards.card_number")),
            );
            columns.insert(
                ("statements", "id_number"),
                mask(1, "keep_last4", Equality, &rule("statements.id_number")),
            );
            denied_tables.push("audit_trail");
        }
        "analyst" => {
            columns.insert(
                ("customers", "id_number"),
                mask(2, "hash", Equality, &rule("customers.id_number")),
            );
            columns.insert(
                ("customers", "phone"),
                mask(3, "phone", Equality, &rule("customers.phone")),
            );
            columns.insert(
                ("customers", "full_name"),
                mask(4, "name", Deny, &rule("customers.full_name")),
            );
            columns.insert(("customers", "income"), allow(&rule("customers.income")));
            columns.insert(
                ("cards", "card_number"),
                mask(5, "pan", Deny, &rule("cards.card_number")),
            );
        }
        _ => {
            // intern and any unnamed role: never clear text.
            columns.insert(
                ("customers", "id_number"),
                deny(&rule("customers.id_number")),
            );
            columns.insert(
                ("customers", "phone"),
                mask(3, "phone", Deny, &rule("customers.phone")),
            );
            columns.insert(
                ("customers", "full_name"),
                mask(4, "name", Deny, &rule("customers.full_name")),
            );
            columns.insert(("customers", "income"), deny(&rule("customers.income")));
            columns.insert(("cards", "card_number"), deny(&rule("cards.card_number")));
        }
    }
    columns.insert(("cards", "cvv"), deny("public.cards.cvv default"));
    RolePolicy {
        columns,
        denied_tables,
        unrestricted: false,
    }
}

/// Test-only: the fixture's static keys.
fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

impl PolicyView for RolePolicy {
    fn column(&self, column: &QualifiedColumn) -> Option<ColumnDecision> {
        if column.schema != "public" {
            return None;
        }
        self.columns
            .get(&(column.table.as_str(), column.column.as_str()))
            .cloned()
    }
    fn table_denied(&self, schema: &str, table: &str) -> Option<String> {
        (schema == "public" && self.denied_tables.contains(&table))
            .then(|| format!("public.{table} table rule"))
    }
    fn function_allowed(&self, schema: &str, name: &str) -> bool {
        schema == "public" && name == "risk_score"
    }
    fn is_unrestricted(&self) -> bool {
        self.unrestricted
    }
}

fn catalog() -> Catalog {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/analyze/bank_catalog.json"
    );
    match Catalog::from_file(path) {
        Ok(c) => c,
        Err(e) => panic!("fixture catalog: {e}"),
    }
}

fn ctx() -> SessionContext {
    SessionContext {
        database: "bank".into(),
        search_path: vec!["public".into()],
        lexing: Default::default(),
    }
}

fn role_name(short: &str) -> &'static str {
    match short {
        "cc" => "call_center",
        "an" => "analyst",
        "in" => "intern",
        "co" => "compliance",
        _ => "dba",
    }
}

fn parse_indexes(spec: &str) -> Vec<usize> {
    spec.split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn describe(plans: &[StatementPlan]) -> String {
    plans
        .iter()
        .map(|p| match p {
            StatementPlan::Allow => "allow".to_owned(),
            StatementPlan::Mask { columns } => format!(
                "mask:{}",
                columns
                    .iter()
                    .map(|c| c.index.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            StatementPlan::Block(b) => format!("block({}: {})", b.rule, b.reason),
        })
        .collect::<Vec<_>>()
        .join(" ; ")
}

/// Checks one expectation against the plans of every statement in `sql`.
fn check(expect: &str, plans: &[StatementPlan]) -> bool {
    let (what, spec) = expect.split_once(':').unwrap_or((expect, ""));
    let masked = |p: &StatementPlan| match p {
        StatementPlan::Mask { columns } => {
            Some(columns.iter().map(|c| c.index).collect::<Vec<_>>())
        }
        _ => None,
    };
    match what {
        "block" => plans.iter().any(StatementPlan::is_block),
        "allow" => plans.iter().all(|p| matches!(p, StatementPlan::Allow)),
        "pass" => !plans.iter().any(StatementPlan::is_block),
        "mask" => plans.len() == 1 && masked(&plans[0]) == Some(parse_indexes(spec)),
        "either" => plans.iter().all(|p| match p {
            StatementPlan::Block(_) => true,
            StatementPlan::Mask { columns } => parse_indexes(spec)
                .iter()
                .all(|i| columns.iter().any(|c| c.index == *i)),
            StatementPlan::Allow => false,
        }),
        _ => false,
    }
}

fn lines(file: &str) -> Vec<String> {
    let path = format!(
        "{}/tests/fixtures/analyze/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect(),
        Err(e) => panic!("{path}: {e}"),
    }
}

#[test]
fn leak_attempts_are_masked_or_blocked() {
    let catalog = catalog();
    let analyzer = Analyzer::default();
    let mut failures = Vec::new();
    let (mut statements, mut attempts, mut masked, mut blocked) = (0, 0, 0, 0);
    for line in lines("leaks.txt") {
        let mut parts = line.splitn(3, '|');
        let (Some(roles), Some(expect), Some(sql)) = (parts.next(), parts.next(), parts.next())
        else {
            panic!("bad corpus line: {line}");
        };
        statements += 1;
        for short in roles.split(',') {
            attempts += 1;
            let policy = role(role_name(short));
            let plans: Vec<StatementPlan> = analyzer
                .plan(sql, &ctx(), &catalog, &policy, 1)
                .into_iter()
                .map(|p| p.plan)
                .collect();
            if plans.iter().any(StatementPlan::is_block) {
                blocked += 1;
            } else if plans
                .iter()
                .any(|p| matches!(p, StatementPlan::Mask { .. }))
            {
                masked += 1;
            }
            if !check(expect, &plans) {
                failures.push(format!(
                    "[{short}] expected {expect}, got {}: {sql}",
                    describe(&plans)
                ));
            }
        }
    }
    eprintln!(
        "leak corpus: {statements} statements, {attempts} (statement, role) attempts: \
         {blocked} blocked, {masked} masked"
    );
    assert!(attempts >= 150, "corpus too small: {attempts}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn ordinary_statements_pass_for_call_center() {
    let catalog = catalog();
    let analyzer = Analyzer::default();
    let policy = role("call_center");
    let mut failures = Vec::new();
    let mut count = 0;
    for line in lines("ordinary.txt") {
        let Some((expect, sql)) = line.split_once('|') else {
            panic!("bad corpus line: {line}");
        };
        count += 1;
        let plans: Vec<StatementPlan> = analyzer
            .plan(sql, &ctx(), &catalog, &policy, 1)
            .into_iter()
            .map(|p| p.plan)
            .collect();
        if plans.is_empty() || !check(expect, &plans) {
            failures.push(format!(
                "expected {expect}, got {}: {sql}",
                describe(&plans)
            ));
        }
    }
    eprintln!("ordinary corpus: {count} statements");
    assert!(count >= 100);
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn unrestricted_role_takes_the_fast_path() {
    let catalog = catalog();
    let analyzer = Analyzer::default();
    let plans = analyzer.plan(
        "SELECT upper(id_number), cvv FROM customers, cards",
        &ctx(),
        &catalog,
        &role("dba"),
        1,
    );
    assert!(matches!(plans[0].plan, StatementPlan::Allow));
}

#[test]
fn session_kinds_are_reported() {
    let catalog = catalog();
    let analyzer = Analyzer::default();
    let policy = role("call_center");
    let kinds = |sql: &str| -> Vec<StatementKind> {
        analyzer
            .plan(sql, &ctx(), &catalog, &policy, 1)
            .into_iter()
            .map(|p| p.kind)
            .collect()
    };
    assert_eq!(
        kinds("DECLARE c1 CURSOR FOR SELECT 1"),
        vec![StatementKind::DeclareCursor { name: "c1".into() }]
    );
    assert_eq!(
        kinds("FETCH 10 FROM c1"),
        vec![StatementKind::Fetch {
            cursor: "c1".into()
        }]
    );
    assert_eq!(
        kinds("CLOSE c1"),
        vec![StatementKind::Close {
            cursor: Some("c1".into())
        }]
    );
    assert_eq!(
        kinds("EXECUTE q1(5)"),
        vec![StatementKind::Execute { name: "q1".into() }]
    );
    assert_eq!(
        kinds("PREPARE q1 AS SELECT 1"),
        vec![StatementKind::Prepare { name: "q1".into() }]
    );
    assert_eq!(
        kinds("BEGIN; COMMIT"),
        vec![StatementKind::Transaction, StatementKind::Transaction]
    );
    assert_eq!(
        kinds("SET search_path TO reporting, public"),
        vec![StatementKind::SetSearchPath {
            schemas: Some(vec!["reporting".into(), "public".into()])
        }]
    );
    // What "$user" in search_path stands for changes: read it again.
    for sql in [
        "SET ROLE team_east",
        "SET LOCAL ROLE team_east",
        "SET role = team_east",
        "SET role TO DEFAULT",
        "RESET ROLE",
        "SET SESSION AUTHORIZATION agent",
        "SET session_authorization = agent",
        "RESET SESSION AUTHORIZATION",
        "RESET ALL",
        "RESET search_path",
        "DISCARD ALL",
    ] {
        assert_eq!(
            kinds(sql),
            vec![StatementKind::SetSearchPath { schemas: None }],
            "{sql}"
        );
    }
    assert_eq!(kinds("SET work_mem = '8MB'"), vec![StatementKind::Setting]);
    assert_eq!(kinds("DISCARD PLANS"), vec![StatementKind::Discard]);
    for sql in [
        "SELECT set_config('role', 'team_east', false)",
        "SELECT set_config('session_authorization', 'agent', false)",
    ] {
        let plans = analyzer.plan(sql, &ctx(), &catalog, &policy, 1);
        assert!(plans[0].plan.is_block(), "{sql}");
    }
    assert_eq!(kinds("CREATE TABLE x (a int)"), vec![StatementKind::Ddl]);
    assert_eq!(
        kinds("COPY branches TO STDOUT"),
        vec![StatementKind::CopyTo { to_client: true }]
    );
    // FETCH/EXECUTE plans are placeholders the session replaces.
    let fetch = analyzer.plan("FETCH 10 FROM c1", &ctx(), &catalog, &policy, 1);
    assert!(fetch[0].plan.is_block());
}

#[test]
fn select_star_follows_catalog_order_without_dropped_columns() {
    let catalog = catalog();
    let analyzer = Analyzer::default();
    let analyses = analyzer.analyse("SELECT * FROM customers", &ctx(), &catalog);
    let names: Vec<&str> = analyses[0]
        .outputs
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "id",
            "full_name",
            "id_number",
            "phone",
            "email",
            "address",
            "income",
            "birth_date",
            "created_at",
            "segmentCode",
            "notes",
            "branch_id"
        ]
    );
}

#[test]
fn literals_share_a_cache_entry_but_positional_order_by_does_not() {
    let catalog = catalog();
    let analyzer = Analyzer::default();
    let policy = role("call_center");
    let a = analyzer.analyse("SELECT id FROM accounts WHERE id = 1", &ctx(), &catalog);
    let b = analyzer.analyse("SELECT id FROM accounts WHERE id = 2", &ctx(), &catalog);
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    let ok = analyzer.plan(
        "SELECT id, id_number FROM customers ORDER BY 1",
        &ctx(),
        &catalog,
        &policy,
        1,
    );
    let leak = analyzer.plan(
        "SELECT id, id_number FROM customers ORDER BY 2",
        &ctx(),
        &catalog,
        &policy,
        1,
    );
    assert!(!ok[0].plan.is_block());
    assert!(leak[0].plan.is_block());
}

#[test]
fn writes_are_judged_as_lookups_only_where_a_key_compares_them() {
    let catalog = catalog();
    let analyzer = Analyzer::default();
    let plan = |role_short: &str, sql: &str| -> Vec<StatementPlan> {
        analyzer
            .plan(sql, &ctx(), &catalog, &role(role_name(role_short)), 1)
            .into_iter()
            .map(|p| p.plan)
            .collect()
    };
    // The analyst may not filter by card_number: writes that leave it out,
    // or give it its default, compare nothing the analyst may not compare.
    for sql in [
        "INSERT INTO cards (account_id, status) VALUES (1, 'new')",
        "INSERT INTO cards (account_id, card_number) VALUES (1, DEFAULT)",
        "UPDATE cards SET status = 'blocked' WHERE id = 1",
        "DELETE FROM cards WHERE id = 1",
        "UPDATE customers SET phone = $1 WHERE id = $2",
    ] {
        let plans = plan("an", sql);
        assert!(
            !plans.iter().any(StatementPlan::is_block),
            "false block: {sql}: {}",
            describe(&plans)
        );
    }
    let plans = plan(
        "an",
        "INSERT INTO cards (account_id, card_number) VALUES (1, '4111111111111111')",
    );
    let text = describe(&plans);
    assert!(
        text.contains("looked up by this write") && text.contains("public.cards.card_number"),
        "{text}"
    );
    // Each VALUES row is one candidate: the call centre's 100 per statement
    // hold for writes as for WHERE … IN.
    let rows = |n: usize| {
        (0..n)
            .map(|i| format!("('x', '{i:018}')"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sql = format!(
        "INSERT INTO customers (full_name, id_number) VALUES {}",
        rows(100)
    );
    assert!(!plan("cc", &sql).iter().any(StatementPlan::is_block));
    let sql = format!(
        "INSERT INTO customers (full_name, id_number) VALUES {}",
        rows(101)
    );
    let text = describe(&plan("cc", &sql));
    assert!(text.contains("compared with 101 constants"), "{text}");
}
