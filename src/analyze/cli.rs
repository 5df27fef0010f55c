//! `pgveil explain` and `pgveil catalog dump`.

use std::process::ExitCode;

/// Arguments of `pgveil explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The SQL to explain.
    pub sql: String,
}

/// Runs `pgveil explain`.
pub fn explain(args: ExplainArgs) -> ExitCode {
    let _ = args;
    ExitCode::SUCCESS
}

/// Arguments of `pgveil catalog dump`.
#[derive(Debug, clap::Args)]
pub struct CatalogDumpArgs {}

/// Runs `pgveil catalog dump`.
pub fn catalog_dump(args: CatalogDumpArgs) -> ExitCode {
    let _ = args;
    ExitCode::SUCCESS
}
