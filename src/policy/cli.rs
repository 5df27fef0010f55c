//! `pgveil check` and `pgveil schema`.

use std::process::ExitCode;

/// Arguments of `pgveil check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Policy files or directories to validate.
    pub paths: Vec<std::path::PathBuf>,
}

/// Runs `pgveil check`.
pub fn check(args: CheckArgs) -> ExitCode {
    let _ = args;
    ExitCode::SUCCESS
}

/// Runs `pgveil schema`.
pub fn schema() -> ExitCode {
    ExitCode::SUCCESS
}
