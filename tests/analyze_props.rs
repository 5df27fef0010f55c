//! Generated expressions over protected columns: whatever wraps a protected
//! column in the select list, its output is never forwarded in clear; in
//! WHERE, anything but a bare equality is refused to an equality-only role.

use proptest::prelude::*;

use pgveil::analyze::pg_tree::{self, LexSettings};
use pgveil::analyze::policy_view::{
    ColumnAction, ColumnDecision, FilterRight, PolicyView, QualifiedColumn,
};
use pgveil::analyze::{Analyzer, Catalog, SessionContext, StatementPlan};

/// id_number and phone masked with different masks, equality filters.
struct CallCenter;

impl PolicyView for CallCenter {
    fn column(&self, column: &QualifiedColumn) -> Option<ColumnDecision> {
        let mask_id = match (column.table.as_str(), column.column.as_str()) {
            ("customers", "id_number") => 1,
            ("customers", "phone") => 2,
            _ => return None,
        };
        Some(ColumnDecision {
            action: ColumnAction::Mask {
                mask_id,
                mask_name: format!("m{mask_id}"),
            },
            filter: FilterRight::Equality,
            rule: format!("rule {mask_id}"),
            class: None,
            max_candidates: 100,
        })
    }
    fn table_denied(&self, _: &str, _: &str) -> Option<String> {
        None
    }
    fn function_allowed(&self, _: &str, _: &str) -> bool {
        false
    }
    fn is_unrestricted(&self) -> bool {
        false
    }
}

/// Value-carrying wrappers: each keeps (some of) its argument's bytes.
fn wrap(inner: BoxedStrategy<String>) -> BoxedStrategy<String> {
    (inner, 0..14u8)
        .prop_map(|(e, k)| match k {
            0 => format!("upper({e})"),
            1 => format!("({e} || 'x')"),
            2 => format!("concat('a', {e})"),
            3 => format!("substr({e}, 2)"),
            4 => format!("COALESCE({e}, 'n/a')"),
            5 => format!("CASE WHEN c.id > 0 THEN {e} ELSE 'z' END"),
            6 => format!("({e})::text"),
            7 => format!("(SELECT {e})"),
            8 => format!("trim({e})"),
            9 => format!("md5({e})"),
            10 => format!("({e})::varchar"),
            11 => format!("NULLIF({e}, 'q')"),
            12 => format!("lower({e})"),
            _ => format!("replace({e}, '1', '2')"),
        })
        .boxed()
}

fn protected_expr() -> BoxedStrategy<String> {
    let leaf = prop_oneof![Just("c.id_number".to_owned()), Just("c.phone".to_owned())].boxed();
    leaf.prop_recursive(4, 16, 1, wrap).boxed()
}

fn fixture() -> Catalog {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/analyze/bank_catalog.json"
    );
    match Catalog::from_file(path) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn ctx() -> SessionContext {
    SessionContext {
        database: "bank".into(),
        search_path: vec!["public".into()],
        lexing: Default::default(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn protected_outputs_are_never_clear(expr in protected_expr(), shape in 0..4u8) {
        let catalog = fixture();
        let analyzer = Analyzer::new(100);
        let sql = match shape {
            0 => format!("SELECT c.id, {expr} FROM customers c"),
            1 => format!("SELECT s.id, s.v FROM (SELECT c.id, {expr} AS v FROM customers c) s"),
            2 => format!("WITH w AS (SELECT c.id, {expr} AS v FROM customers c) SELECT id, v FROM w"),
            _ => format!("SELECT 1 AS id, 'x' AS v UNION ALL SELECT c.id, {expr} FROM customers c"),
        };
        let plans = analyzer.plan(&sql, &ctx(), &catalog, &CallCenter, 1);
        prop_assert_eq!(plans.len(), 1);
        match &plans[0].plan {
            StatementPlan::Block(_) => {}
            StatementPlan::Mask { columns } => prop_assert!(columns.iter().any(|c| c.index == 1), "{sql}"),
            StatementPlan::Allow => prop_assert!(false, "clear output: {sql}"),
        }
    }

    #[test]
    fn non_equality_filters_are_refused(expr in protected_expr(), op in 0..5u8) {
        let catalog = fixture();
        let analyzer = Analyzer::new(100);
        // A wrapped column compared with anything is not a bare equality.
        let wrapped = format!("upper({expr})");
        let predicate = match op {
            0 => format!("{wrapped} = 'x'"),
            1 => format!("{expr} LIKE 'x%'"),
            2 => format!("{expr} > 'x'"),
            3 => format!("{wrapped} IN ('a', 'b')"),
            _ => format!("EXISTS (SELECT 1 FROM customers d WHERE d.id = c.id AND {expr} < 'm')"),
        };
        let sql = format!("SELECT c.id FROM customers c WHERE {predicate}");
        let plans = analyzer.plan(&sql, &ctx(), &catalog, &CallCenter, 1);
        prop_assert!(plans.iter().all(|p| p.plan.is_block()), "{sql}");
    }
}

// ---------------------------------------------------------------------------
// Fuzz targets (stable toolchain: proptest generates and shrinks). Each runs
// PROPTEST_CASES cases (256 by default, so `cargo test` runs them briefly);
// a long run of all three:
//   PROPTEST_CASES=2000000 cargo test --release --test analyze_props fuzz_
// No panic, no abort, and no leak oracle hit.

/// Pieces an attacker splices into statements: quotes and escapes, comment
/// starts and ends, statement breaks, other spellings of the same names.
const SPLICES: &[&str] = &[
    "'",
    "\\",
    "\\'",
    "''",
    "--",
    "\r",
    "\n",
    "/*",
    "*/",
    "$$",
    "$q$",
    "E'",
    "U&'",
    "U&\"",
    "\"",
    ";",
    ",",
    "(",
    ")",
    " c.id_number ",
    " c.phone ",
    "::text",
    "::varchar(4)",
    "::public.varchar",
    " FROM customers c ",
    " UNION ALL SELECT ",
    " N'",
    "\\\\",
    "é",
    "\"ID_NUMBER\"",
    "\\0069",
    " OR ",
    "*",
    " AS ",
];

fn shaped(expr: &str, shape: u8) -> String {
    match shape {
        0 => format!("SELECT c.id, {expr} FROM customers c"),
        1 => format!("SELECT s.id, s.v FROM (SELECT c.id, {expr} AS v FROM customers c) s"),
        2 => format!("WITH w AS (SELECT c.id, {expr} AS v FROM customers c) SELECT id, v FROM w"),
        3 => format!("SELECT c.id FROM customers c WHERE {expr} = 'x'"),
        _ => format!("SELECT 1 AS id, 'x' AS v UNION ALL SELECT c.id, {expr} FROM customers c"),
    }
}

/// A generated statement around protected columns, then spliced.
fn mutated_statement() -> BoxedStrategy<String> {
    let edit = (
        any::<prop::sample::Index>(),
        prop::sample::select(SPLICES),
        0..3u8,
    );
    (protected_expr(), 0..5u8, prop::collection::vec(edit, 0..6))
        .prop_map(|(expr, shape, edits)| {
            let mut sql = shaped(&expr, shape);
            for (at, piece, how) in edits {
                let bounds: Vec<usize> = sql
                    .char_indices()
                    .map(|(i, _)| i)
                    .chain([sql.len()])
                    .collect();
                let i = bounds[at.index(bounds.len())];
                let next = bounds.iter().copied().find(|&b| b > i).unwrap_or(sql.len());
                match how {
                    0 => sql.insert_str(i, piece),
                    1 => sql.replace_range(i..next, piece),
                    _ => sql.replace_range(i..next, ""),
                }
            }
            sql
        })
        .boxed()
}

/// Whether the walker read a protected column anywhere: in an output, a
/// use, a write, or a subquery column nobody selects (`SELECT x FROM (SELECT
/// id_number, 1 AS x …) s`: read, then dropped, so nothing of it is sent). A
/// name PostgreSQL reads and the walker never resolved is the hole.
fn saw_protected(analysis: &pgveil::analyze::Analysis) -> bool {
    let protected = |c: &QualifiedColumn| c.column == "id_number" || c.column == "phone";
    analysis
        .outputs
        .iter()
        .any(|o| o.sources.keys().any(protected))
        || analysis.effects.uses.iter().any(|u| protected(&u.column))
        || analysis.effects.sinks.iter().any(|s| protected(&s.source))
        || analysis.effects.reads.iter().any(protected)
}

/// The oracle's false alarm of the last long run: a protected column only in
/// a subquery column nobody selects is read (the oracle is satisfied) and
/// leaks nothing (the statement is allowed, not a false block). Used in any
/// way that reveals it (whole row, ordering, grouping), it is refused.
#[test]
fn unused_subquery_column_is_read_and_allowed() {
    let catalog = fixture();
    let analyzer = Analyzer::new(100);
    for sql in [
        "SELECT x FROM (SELECT id_number, 1 AS x FROM customers) s",
        "WITH w AS (SELECT c.phone, 1 AS x FROM customers c) SELECT x FROM w",
        "SELECT x FROM (SELECT upper(c.id_number) AS u, c.id AS x FROM customers c) s",
    ] {
        let plans = analyzer.plan(sql, &ctx(), &catalog, &CallCenter, 1);
        assert_eq!(plans.len(), 1, "{sql}");
        assert!(
            matches!(plans[0].plan, StatementPlan::Allow),
            "{sql}: {:?}",
            plans[0].plan
        );
        assert!(saw_protected(&plans[0].analysis), "{sql}");
    }
    for sql in [
        "SELECT s FROM (SELECT id_number, 1 AS x FROM customers) s",
        "SELECT x FROM (SELECT id_number, 1 AS x FROM customers) s ORDER BY s",
        "SELECT x FROM (SELECT id_number, 1 AS x FROM customers) s GROUP BY s",
        "SELECT x FROM (SELECT CASE WHEN id_number LIKE '51%' THEN 1/0 END AS y, 1 AS x FROM customers) s",
        "SELECT x FROM (SELECT id_number::regclass AS y, 1 AS x FROM customers) s",
    ] {
        let plans = analyzer.plan(sql, &ctx(), &catalog, &CallCenter, 1);
        assert!(plans.iter().all(|p| p.plan.is_block()), "{sql}");
    }
}

proptest! {
    /// The analyzer on spliced statements, under both settings of
    /// standard_conforming_strings. Oracle: where PostgreSQL's own parser
    /// reads a protected column, pgveil either saw it or refuses.
    #[test]
    fn fuzz_analyzer_reads_what_postgres_reads(sql in mutated_statement(), off in any::<bool>()) {
        let catalog = fixture();
        let analyzer = Analyzer::new(100);
        let lexing = LexSettings { standard_conforming_strings: !off };
        let ctx = SessionContext { lexing, ..ctx() };
        let plans = analyzer.plan(&sql, &ctx, &catalog, &CallCenter, 1);
        if let Ok(pg) = pg_tree::parse(&sql, lexing, 1_000) {
            let names_protected = |s: &pg_tree::PgStatement| {
                s.references.columns.iter().any(|c| {
                    matches!(c.last().map(String::as_str), Some("id_number" | "phone"))
                })
            };
            if pg.len() == plans.len() {
                for (p, planned) in pg.iter().zip(&plans) {
                    if names_protected(p) && matches!(planned.plan, StatementPlan::Allow) {
                        prop_assert!(saw_protected(&planned.analysis), "{sql:?} off={off}");
                    }
                }
            } else if pg.iter().any(names_protected) {
                prop_assert!(
                    plans.iter().all(|p| !matches!(p.plan, StatementPlan::Allow)),
                    "{sql:?} off={off}: {} statements for PostgreSQL, {} for pgveil",
                    pg.len(),
                    plans.len()
                );
            }
        }
    }

    /// The startup and message decoders on arbitrary bytes: an answer,
    /// never a panic.
    #[test]
    fn fuzz_message_decoders(bytes in prop::collection::vec(any::<u8>(), 0..512), limit in 0usize..4096) {
        use pgveil::net::codec;
        let _ = codec::startup_frame_len(&bytes);
        let _ = codec::decode_startup_packet(&bytes);
        if let Ok(Some(len)) = codec::typed_frame_len(&bytes, limit) {
            prop_assert!(len >= 5);
        }
        let framed: usize = codec::frames(&bytes).map(|f| f.len()).sum();
        prop_assert!(framed <= bytes.len());
        let _ = codec::decode_backend_key_data(&bytes);
        let _ = codec::error_fields(&bytes);
        let _ = codec::strip_channel_binding(&bytes);
        let _ = codec::auth_code(&bytes);
    }

    /// The policy loader on spliced policy files: a policy or an error that
    /// names the file, never a panic.
    #[test]
    fn fuzz_policy_loader(edits in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(POLICY_SPLICES), 0..3u8), 0..8)) {
        use pgveil::policy::{KeySource, PolicySet, SourceFile};
        let mut text = POLICY_SEED.to_owned();
        for (at, piece, how) in edits {
            let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
            let i = bounds[at.index(bounds.len())];
            let next = bounds.iter().copied().find(|&b| b > i).unwrap_or(text.len());
            match how {
                0 => text.insert_str(i, piece),
                1 => text.replace_range(i..next, piece),
                _ => text.replace_range(i..next, ""),
            }
        }
        let path = std::path::Path::new("fuzz.yaml");
        if let Ok(file) = SourceFile::parse(path, &text) {
            let _ = PolicySet::compile(&[file], KeySource::NamesOnly);
        }
    }
}

const POLICY_SEED: &str = include_str!("fixtures/masking/bank.yaml");

const POLICY_SPLICES: &[&str] = &[
    "\n",
    "  ",
    ":",
    "- ",
    "[",
    "]",
    "{",
    "}",
    "'",
    "\"",
    "&a",
    "*a",
    "!!str",
    "~",
    "null",
    "mask: ",
    "hash(pii)",
    "partial(3, 4)",
    "action: ",
    "filter: ",
    "roles: ",
    "1e99",
    "-1",
    "é",
    "\t",
    "#",
    "---",
    "...",
    "max_candidates: 99999999999999999999",
];
