//! `pgveil explain` as a DBA runs it, against the catalog fixture.

use std::process::Command;

fn explain(args: &[&str]) -> (bool, String, String) {
    let catalog = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/analyze/bank_catalog.json"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_pgveil"))
        .arg("explain")
        .args(["--catalog", catalog])
        .args(args)
        .output();
    match output {
        Ok(o) => (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ),
        Err(e) => panic!("running pgveil: {e}"),
    }
}

#[test]
fn explain_prints_lineage_of_each_output_column() {
    let (ok, out, err) = explain(&["SELECT c.id, upper(c.full_name) AS n, v.phone FROM customers c JOIN customer_contacts v USING (id)"]);
    assert!(ok, "{err}");
    assert!(out.contains("[1] n"), "{out}");
    assert!(
        out.contains("public.customers.full_name (Derived)"),
        "{out}"
    );
    assert!(out.contains("public.customers.phone (Copy)"), "{out}");
    assert!(
        out.contains("use public.customers.id in JOIN (Join with public.customer_contacts.id"),
        "{out}"
    );
}

#[test]
fn explain_json_is_machine_readable() {
    let (ok, out, err) = explain(&[
        "--json",
        "SELECT id_number FROM customers; DO $$ begin end $$",
    ]);
    assert!(ok, "{err}");
    let value: serde_json::Value = match serde_json::from_str(&out) {
        Ok(v) => v,
        Err(e) => panic!("{e}: {out}"),
    };
    let statements = value["statements"].as_array().map(Vec::len);
    assert_eq!(statements, Some(2));
    assert_eq!(
        value["statements"][0]["outputs"][0]["sources"][0]["column"],
        "public.customers.id_number"
    );
    assert_eq!(value["statements"][1]["parsed"], false);
}

#[test]
fn explain_without_catalog_says_what_to_do() {
    let output = Command::new(env!("CARGO_BIN_EXE_pgveil"))
        .args(["explain", "SELECT 1"])
        .output();
    let Ok(output) = output else {
        panic!("running pgveil");
    };
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--catalog FILE"));
}
