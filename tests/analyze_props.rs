//! Generated expressions over protected columns: whatever wraps a protected
//! column in the select list, its output is never forwarded in clear; in
//! WHERE, anything but a bare equality is refused to an equality-only role.

use proptest::prelude::*;

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
