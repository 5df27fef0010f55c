//! `pgveil check` and `pgveil schema`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::compile::{KeySource, PolicySet};
use super::error::{PolicyErrors, Severity};
use super::model::PolicyFile;

/// Arguments of `pgveil check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Policy files or directories to validate (default: `policies/`).
    pub paths: Vec<PathBuf>,
    /// Also check against a live database: tables, columns, types and roles
    /// must exist (postgres://user@host/db).
    #[arg(long, env = "PGVEIL_CHECK_UPSTREAM")]
    pub upstream: Option<String>,
    /// Directory holding key files named after the keys of `keys:`
    /// (`PGVEIL_KEY_<NAME>` variables take precedence).
    #[arg(long, env = "PGVEIL_KEYS_DIR")]
    pub keys_dir: Option<PathBuf>,
    /// Check key names only, not that their bytes are available (for CI
    /// without the production secrets).
    #[arg(long, conflicts_with = "keys_dir")]
    pub skip_key_bytes: bool,
}

/// Runs `pgveil check`: prints every finding to stderr and exits non-zero
/// when any is an error.
pub fn check(args: CheckArgs) -> ExitCode {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("policies")]
    } else {
        args.paths
    };
    let keys = if args.skip_key_bytes {
        KeySource::NamesOnly
    } else {
        KeySource::Load {
            dir: args.keys_dir.as_deref(),
        }
    };
    let findings = match check_paths(&paths, keys, args.upstream.as_deref()) {
        Ok((set, findings)) => {
            println!(
                "{} file(s), {} protected column(s), {} mask(s)",
                set.files().len(),
                set.protected_columns().count(),
                set.masks().len()
            );
            findings
        }
        Err(errors) => errors,
    };
    for finding in findings.iter() {
        eprintln!("{finding}");
    }
    if findings.has_errors() {
        let count = findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        eprintln!("check failed: {count} error(s)");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Compiles the paths and, with an upstream URL, checks the set against the
/// live catalog. `Ok` carries warnings only.
pub fn check_paths(
    paths: &[PathBuf],
    keys: KeySource<'_>,
    upstream: Option<&str>,
) -> Result<(PolicySet, PolicyErrors), PolicyErrors> {
    let set = PolicySet::load_with(paths, keys)?;
    let Some(url) = upstream else {
        return Ok((set, PolicyErrors::default()));
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| upstream_failure(paths, e.to_string()))?;
    let findings = runtime
        .block_on(super::upstream::check_against(&set, url))
        .map_err(|e| upstream_failure(paths, with_causes(&e)))?;
    if findings.has_errors() {
        Err(findings)
    } else {
        Ok((set, findings))
    }
}

/// tokio-postgres keeps the useful part ("connection refused", "password
/// authentication failed") in the error's source.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn upstream_failure(paths: &[PathBuf], message: String) -> PolicyErrors {
    PolicyErrors(vec![super::PolicyError::new(
        super::SourceLocation {
            file: paths.first().cloned().unwrap_or_default(),
            line: 1,
            column: 1,
        },
        super::Problem::UpstreamUnreachable(message),
    )])
}

/// The JSON Schema of a policy file, from the types the loader uses.
pub fn schema_json() -> serde_json::Value {
    let schema = schemars::schema_for!(PolicyFile);
    serde_json::to_value(schema).unwrap_or_default()
}

/// Runs `pgveil schema`.
pub fn schema() -> ExitCode {
    match serde_json::to_string_pretty(&schema_json()) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot print the schema: {e}");
            ExitCode::FAILURE
        }
    }
}
