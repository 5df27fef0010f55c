//! Policy against a real PostgreSQL: role membership read from
//! `pg_auth_members`, and `pgveil check --upstream` against the live catalog.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{cluster, connect, SUPERUSER, SUPERUSER_PASSWORD};
use pgveil::analyze::policy_view::{ColumnAction, PolicyView, QualifiedColumn};
use pgveil::policy::{KeySource, PolicySet, RoleMembership};

fn superuser_url(db: &str) -> String {
    format!(
        "postgresql://{SUPERUSER}:{SUPERUSER_PASSWORD}@127.0.0.1:{}/{db}",
        cluster().port
    )
}

fn write_policy(dir: &std::path::Path, text: &str) -> PathBuf {
    let path = dir.join("policy.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn nested_membership_is_read_from_the_database() {
    cluster()
        .psql_super(
            "CREATE ROLE pol_call_center NOLOGIN;\n\
             CREATE ROLE pol_support_team NOLOGIN IN ROLE pol_call_center;\n\
             CREATE ROLE pol_erin LOGIN IN ROLE pol_support_team;\n\
             CREATE ROLE pol_frank LOGIN;\n",
        )
        .unwrap();
    let client = connect(&superuser_url("postgres")).await.unwrap();
    let members = RoleMembership::load(&client).await.unwrap();
    let erin = members.effective_roles("pol_erin");
    assert!(erin.contains("pol_support_team"), "{erin:?}");
    assert!(erin.contains("pol_call_center"), "{erin:?}");

    let dir = tempfile::tempdir().unwrap();
    write_policy(
        dir.path(),
        "version: 1\ncolumns:\n  public.customers.phone:\n    mask: cn_mobile\n    rules:\n      - roles: [pol_call_center]\n        action: allow\n",
    );
    let set = PolicySet::load_with(&[dir.path().to_path_buf()], KeySource::NamesOnly).unwrap();
    let phone = QualifiedColumn {
        schema: "public".into(),
        table: "customers".into(),
        column: "phone".into(),
    };
    let erin_view = set.for_role("pol_erin", &members);
    assert!(matches!(
        erin_view.column(&phone).unwrap().action,
        ColumnAction::Allow
    ));
    // A login role no rule names (directly or through membership) is masked.
    let frank_view = set.for_role("pol_frank", &members);
    assert!(matches!(
        frank_view.column(&phone).unwrap().action,
        ColumnAction::Mask { .. }
    ));
}

#[test]
fn check_upstream_catches_missing_column_type_mismatch_and_unknown_role() {
    cluster()
        .psql_super(
            "CREATE DATABASE policy_check;\n\
             \\c policy_check\n\
             CREATE TABLE public.customers (id bigint, phone text, birth_date date,\n\
               phone_prefix text GENERATED ALWAYS AS (left(phone, 3)) STORED);\n",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write_policy(
        dir.path(),
        "version: 1\n\
         columns:\n\
         \x20 public.customers.phone:\n\
         \x20   mask: cn_mobile\n\
         \x20   rules:\n\
         \x20     - roles: [nobody_has_this_role]\n\
         \x20       action: allow\n\
         \x20 public.customers.mobile:\n\
         \x20   mask: cn_mobile\n\
         \x20 public.customers.birth_date:\n\
         \x20   mask: cn_mobile\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_pgveil"))
        .args(["check", "--skip-key-bytes", "--upstream"])
        .arg(superuser_url("policy_check"))
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let at = |line: usize, column: usize| format!("{}:{line}:{column}:", file.display());
    assert!(
        stderr.contains(&format!(
            "{} error: column `public.customers.mobile` does not exist in the upstream database",
            at(8, 3)
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{} warning: role `nobody_has_this_role` does not exist",
            at(6, 17)
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{} warning: generated column `public.customers.phone_prefix` is computed from \
             protected column `public.customers.phone` and has no rule of its own",
            at(3, 3)
        )),
        "{stderr}"
    );
    // The type check relies on the masking catalogue knowing which types
    // cn_mobile takes; the interface stub of `mask` accepts every type.
    let mask = pgveil::mask::build(
        "cn_mobile",
        &Default::default(),
        &pgveil::mask::KeyRing::new(),
    )
    .unwrap();
    if !mask.accepts_type("date") {
        assert!(
            stderr.contains(&format!(
                "{} error: mask `cn_mobile` cannot be applied to column `public.customers.birth_date` of type `date`",
                at(11, 11)
            )),
            "{stderr}"
        );
    }
}
