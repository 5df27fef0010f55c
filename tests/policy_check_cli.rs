//! `pgveil check` and `pgveil schema` as a DBA runs them: exit status and
//! what is printed. No database needed.

use std::path::PathBuf;
use std::process::Command;

fn pgveil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pgveil"))
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn the_shipped_packs_pass_check() {
    let out = pgveil()
        .arg("check")
        .arg("--skip-key-bytes")
        .arg(repo("policies"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 file(s)"), "{stdout}");
}

#[test]
fn the_issue_example_passes_check_with_its_key() {
    let keys = tempfile::tempdir().unwrap();
    std::fs::write(keys.path().join("pii"), b"0123456789abcdef0123").unwrap();
    let out = pgveil()
        .arg("check")
        .arg("--keys-dir")
        .arg(keys.path())
        .arg(repo("tests/fixtures/policy/example.yaml"))
        .env_remove("PGVEIL_KEY_PII")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_missing_key_fails_check() {
    let empty = tempfile::tempdir().unwrap();
    let out = pgveil()
        .arg("check")
        .arg("--keys-dir")
        .arg(empty.path())
        .arg(repo("tests/fixtures/policy/example.yaml"))
        .env_remove("PGVEIL_KEY_PII")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("example.yaml:3:5: error: key `pii` is not available"),
        "{stderr}"
    );
}

#[test]
fn a_broken_file_fails_check_with_file_line_and_fix() {
    let out = pgveil()
        .arg("check")
        .arg(repo("tests/fixtures/policy/broken"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "typo.yaml:5:5: error: columns.public.customers.phone: unknown field `rulez`"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("help: did you mean `rules`?"), "{stderr}");
    assert!(stderr.contains("check failed: 1 error(s)"), "{stderr}");
}

#[test]
fn schema_prints_json_schema() {
    let out = pgveil().arg("schema").output().unwrap();
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["title"], "pgveil policy file");
    assert!(schema["properties"]["columns"].is_object());
}
