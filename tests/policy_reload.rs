//! Hot reload while readers use the policy continuously: every reader always
//! sees one complete set (never a half-applied one, never an error), a
//! broken file never takes effect, and the new policy becomes visible.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgveil::analyze::policy_view::{ColumnAction, PolicyView, QualifiedColumn};
use pgveil::policy::{PolicyStore, RoleMembership};

fn policy(analyst_mask: &str) -> String {
    format!(
        "version: 1\nkeys: [pii]\ncolumns:\n  public.customers.id_number:\n    mask: cn_id_card\n    rules:\n      - roles: [analyst]\n        mask: {analyst_mask}\n        filter: equality\n"
    )
}

#[test]
fn reload_under_load_never_fails_a_reader() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    std::fs::write(keys.path().join("pii"), b"0123456789abcdef0123456789abcdef").unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, policy("{ fn: hash, key: pii }")).unwrap();

    let store = PolicyStore::load(dir.path(), Some(keys.path())).unwrap();
    let registry = prometheus::Registry::new();
    store.register_metrics(&registry).unwrap();
    let _watcher = store.watch().unwrap();

    let members = Arc::new(RoleMembership::from_edges([("ann", "analyst")]));
    let column = QualifiedColumn {
        schema: "public".into(),
        table: "customers".into(),
        column: "id_number".into(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let lookups = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (store, members, column) = (store.clone(), Arc::clone(&members), column.clone());
            let (stop, failures, lookups) = (
                Arc::clone(&stop),
                Arc::clone(&failures),
                Arc::clone(&lookups),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // One "statement": the set it starts with is the set it uses.
                    let set = store.current();
                    let view = set.for_role("ann", &members);
                    let consistent = match view.column(&column).map(|d| d.action) {
                        Some(ColumnAction::Mask { mask_id, mask_name }) => {
                            set.mask(mask_id).name() == mask_name
                                && (mask_name == "hash" || mask_name == "keep")
                        }
                        _ => false,
                    };
                    if !consistent {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    lookups.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    for round in 0..10 {
        let text = if round % 2 == 0 {
            policy("{ fn: keep, first: 0, last: 4 }")
        } else {
            policy("{ fn: hash, key: pii }")
        };
        std::fs::write(&file, text).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        if round == 5 {
            // A broken edit, then an explicit reload as SIGHUP would do.
            std::fs::write(&file, "version: 1\ncolumns: [\n").unwrap();
            assert!(store.reload().is_err());
        }
    }
    std::fs::write(&file, policy("{ fn: keep, first: 0, last: 4 }")).unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let analyst_mask = || {
        let set = store.current();
        match set
            .for_role("ann", &members)
            .column(&column)
            .map(|d| d.action)
        {
            Some(ColumnAction::Mask { mask_name, .. }) => mask_name,
            _ => String::new(),
        }
    };
    while analyst_mask() != "keep" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.join().unwrap();
    }

    assert_eq!(analyst_mask(), "keep", "the last edit must take effect");
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert!(lookups.load(Ordering::Relaxed) > 100);
    assert!(store.current().version() >= 2);
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains("pgveil_policy_reload_failures_total"),
        "{text}"
    );
    let failures_metric = registry
        .gather()
        .into_iter()
        .find(|f| f.name() == "pgveil_policy_reload_failures_total")
        .map(|f| f.get_metric()[0].get_counter().get_value())
        .unwrap_or_default();
    assert!(failures_metric >= 1.0, "{text}");
}
