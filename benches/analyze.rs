//! Analyzer benchmarks: cache hit, parse, uncached point query, 10-way join.
//! Run: `cargo bench --bench analyze`.

use std::collections::HashMap;

use criterion::{black_box, criterion_group, Criterion};
use pgveil::analyze::policy_view::{
    ColumnAction, ColumnDecision, FilterRight, PolicyView, QualifiedColumn,
};
use pgveil::analyze::{analyse_uncached, Analyzer, Catalog, SessionContext};

struct MaskedRole(HashMap<(String, String), ColumnDecision>);

impl PolicyView for MaskedRole {
    fn column(&self, column: &QualifiedColumn) -> Option<ColumnDecision> {
        self.0
            .get(&(column.table.clone(), column.column.clone()))
            .cloned()
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

const POINT: &str = "SELECT abalance FROM accounts WHERE aid = 48213";
const JOIN10: &str = "WITH recent AS (SELECT account_id, sum(amount) AS total FROM transactions \
     WHERE created_at > now() - interval '7 days' GROUP BY account_id), \
     big AS (SELECT id FROM accounts WHERE balance > (SELECT avg(balance) FROM accounts)) \
     SELECT c.id, c.full_name, c.id_number, a.account_no, r.total, cd.card_number, b.name, \
            o.\"totalAmount\", d.total, cc.phone \
       FROM customers c \
       JOIN accounts a ON a.customer_id = c.id \
       JOIN recent r ON r.account_id = a.id \
       JOIN big ON big.id = a.id \
       LEFT JOIN cards cd ON cd.account_id = a.id \
       LEFT JOIN branches b ON b.id = c.branch_id \
       LEFT JOIN \"Orders\" o ON o.\"customerId\" = c.id \
       LEFT JOIN reporting.daily_totals d ON d.customer_id = c.id \
       JOIN customer_contacts cc ON cc.id = c.id \
       JOIN active_accounts aa ON aa.id = a.id \
      WHERE c.id = $1 AND EXISTS (SELECT 1 FROM transactions t WHERE t.account_id = a.id AND t.amount > 100) \
      ORDER BY a.opened_at DESC LIMIT 50";

fn bench(c: &mut Criterion) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/analyze/bank_catalog.json"
    );
    let Ok(catalog) = Catalog::from_file(path) else {
        eprintln!("fixture catalog missing: {path}");
        return;
    };
    let ctx = SessionContext {
        database: "bank".into(),
        search_path: vec!["public".into()],
        lexing: Default::default(),
    };
    let mut decisions = HashMap::new();
    decisions.insert(
        ("customers".to_owned(), "id_number".to_owned()),
        ColumnDecision {
            action: ColumnAction::Mask {
                mask_id: 1,
                mask_name: "keep_last4".into(),
            },
            filter: FilterRight::Equality,
            rule: "bench".into(),
            class: None,
            max_candidates: 100,
        },
    );
    let policy = MaskedRole(decisions);
    // pgbench's schema is not in the bank catalog; the point query is
    // analysed against a bank table of the same shape.
    let point = POINT.replace("abalance", "balance").replace("aid", "id");
    let analyzer = Analyzer::default();
    let mut literal = 0u64;
    c.bench_function("cache_hit_point_query_new_literal", |b| {
        b.iter(|| {
            literal += 1;
            let sql = format!("SELECT balance FROM accounts WHERE id = {literal}");
            black_box(analyzer.plan(&sql, &ctx, &catalog, &policy, 1))
        })
    });
    c.bench_function("cache_hit_point_query_same_text", |b| {
        b.iter(|| black_box(analyzer.plan(&point, &ctx, &catalog, &policy, 1)))
    });
    c.bench_function("cache_hit_10_way_join", |b| {
        b.iter(|| black_box(analyzer.plan(JOIN10, &ctx, &catalog, &policy, 1)))
    });
    c.bench_function("normalize_10_way_join", |b| {
        b.iter(|| black_box(pgveil::analyze::fallback::normalize(JOIN10)))
    });
    let analyses = analyzer.analyse(JOIN10, &ctx, &catalog);
    c.bench_function("analyse_lookup_10_way_join", |b| {
        b.iter(|| black_box(analyzer.analyse(JOIN10, &ctx, &catalog)))
    });
    let _ = analyses;
    // Parsing alone, by each of the two parsers the analysis runs.
    let dialect = sqlparser::dialect::PostgreSqlDialect {};
    for (name, sql) in [("point_query", point.as_str()), ("10_way_join", JOIN10)] {
        c.bench_function(&format!("parse_sqlparser_{name}"), |b| {
            b.iter(|| black_box(sqlparser::parser::Parser::parse_sql(&dialect, sql)))
        });
        c.bench_function(&format!("parse_postgres_{name}"), |b| {
            b.iter(|| {
                black_box(pgveil::analyze::pg_tree::parse(
                    sql,
                    Default::default(),
                    1_000,
                ))
            })
        });
    }
    c.bench_function("uncached_point_query", |b| {
        b.iter(|| black_box(analyse_uncached(&point, &ctx.search_path, &catalog)))
    });
    c.bench_function("uncached_10_way_join_ctes_subqueries", |b| {
        b.iter(|| black_box(analyse_uncached(JOIN10, &ctx.search_path, &catalog)))
    });
}

criterion_group!(benches, bench);

/// Runs the benchmarks on a thread with the stack of pgveil's workers,
/// where statements are analysed (PostgreSQL's parser runs there too).
fn main() {
    let worker = std::thread::Builder::new()
        .name("bench-worker".into())
        .stack_size(pgveil::analyze::pg_tree::ANALYSIS_THREAD_STACK)
        .spawn(|| {
            benches();
            Criterion::default().configure_from_args().final_summary();
        })
        .expect("cannot start the benchmark thread");
    if worker.join().is_err() {
        std::process::exit(1);
    }
}
