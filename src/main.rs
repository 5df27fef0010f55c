//! The `pgveil` binary: parses arguments and calls into the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "pgveil",
    version,
    about = "Inline data-masking proxy for PostgreSQL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy.
    Serve(Box<pgveil::config::ServeArgs>),
    /// Start a throwaway PostgreSQL with synthetic bank data behind pgveil.
    Demo(pgveil::demo::DemoArgs),
    /// Validate policy files.
    Check(pgveil::policy::cli::CheckArgs),
    /// Print the JSON Schema of the policy format.
    Schema,
    /// Show what pgveil would do with a statement for a role.
    Explain(pgveil::analyze::cli::ExplainArgs),
    /// Catalog tools.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Audit trail tools: verify the hash chain, report who read what.
    #[command(subcommand)]
    Audit(pgveil::observe::cli::AuditCommand),
}

#[derive(Debug, Subcommand)]
enum CatalogCommand {
    /// Write the upstream catalog as JSON.
    Dump(pgveil::analyze::cli::CatalogDumpArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => pgveil::net::serve_main(*args),
        Command::Demo(args) => pgveil::demo::demo(args),
        Command::Check(args) => pgveil::policy::cli::check(args),
        Command::Schema => pgveil::policy::cli::schema(),
        Command::Explain(args) => pgveil::analyze::cli::explain(args),
        Command::Catalog(CatalogCommand::Dump(args)) => pgveil::analyze::cli::catalog_dump(args),
        Command::Audit(command) => pgveil::observe::cli::run(command),
    }
}
