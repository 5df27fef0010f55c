//! Parse-rate measurement (ignored by default; needs a corpus directory):
//! `PGVEIL_PARSE_CORPUS=/usr/share/postgresql/15 cargo test --test
//! analyze_parse_rate -- --ignored --nocapture`
//! Counts statements sqlparser parses, and how many of the rest the
//! token-scan fallback admits for a masked role.

use pgveil::analyze::policy_view::{
    ColumnAction, ColumnDecision, FilterRight, PolicyView, QualifiedColumn,
};
use pgveil::analyze::{Analyzer, Catalog, SessionContext, StatementKind};

struct IdNumberMasked;

impl PolicyView for IdNumberMasked {
    fn column(&self, column: &QualifiedColumn) -> Option<ColumnDecision> {
        (column.table == "customers" && column.column == "id_number").then(|| ColumnDecision {
            action: ColumnAction::Mask {
                mask_id: 1,
                mask_name: "keep_last4".into(),
            },
            filter: FilterRight::Equality,
            rule: "parse-rate".into(),
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

fn sql_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sql_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "sql") {
            out.push(path);
        }
    }
}

#[test]
#[ignore = "needs PGVEIL_PARSE_CORPUS"]
fn parse_rate() {
    let Ok(dir) = std::env::var("PGVEIL_PARSE_CORPUS") else {
        return;
    };
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/analyze/bank_catalog.json"
    );
    let Ok(catalog) = Catalog::from_file(path) else {
        panic!("fixture catalog missing");
    };
    let mut files = Vec::new();
    sql_files(std::path::Path::new(&dir), &mut files);
    let analyzer = Analyzer::new(1_000_000);
    let ctx = SessionContext {
        database: "bank".into(),
        search_path: vec!["public".into()],
        lexing: Default::default(),
    };
    let (mut total, mut parsed, mut admitted) = (0usize, 0usize, 0usize);
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        // psql meta-commands are not SQL.
        let text: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('\\'))
            .collect::<Vec<_>>()
            .join("\n");
        for statement in pgveil::analyze::fallback::split_statements(&text) {
            if statement
                .lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with("--"))
            {
                continue;
            }
            total += 1;
            let plans = analyzer.plan(statement, &ctx, &catalog, &IdNumberMasked, 1);
            if plans
                .iter()
                .all(|p| !matches!(p.kind, StatementKind::Unparsed { .. }))
            {
                parsed += 1;
            } else if plans.iter().all(|p| !p.plan.is_block()) {
                admitted += 1;
            }
        }
    }
    let pct = |n: usize| 100.0 * n as f64 / total.max(1) as f64;
    eprintln!(
        "{} files, {total} statements: parsed {parsed} ({:.1}%), unparsed {} of which fallback admits {admitted} ({:.1}% of all)",
        files.len(),
        pct(parsed),
        total - parsed,
        pct(admitted)
    );
}
