//! `pgveil audit verify` and `pgveil audit report`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use super::clock::parse_time_arg;
use super::report::{self, ReportFilter};
use super::verify::verify_files;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of audit files (rotated files too, in any order);
    /// name the first record that was edited, inserted or removed.
    Verify(VerifyArgs),
    /// Who read which protected columns, in clear or masked, how many rows,
    /// when; and which statements were blocked.
    Report(ReportArgs),
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Audit files: the current one and its rotated predecessors.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// From this time on: 2026-11-24, 2026-11-24T09:00:00Z, or ago (7d, 12h).
    #[arg(long)]
    pub since: Option<String>,
    /// Before this time (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Only this login role, or the login roles that matched this policy role.
    #[arg(long)]
    pub role: Option<String>,
    /// Only this column: schema.table.column, table.column or column.
    #[arg(long)]
    pub column: Option<String>,
    /// JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify(args) => match verify_files(&args.files) {
            Ok(v) => {
                println!(
                    "ok: {} records (seq {}-{}), chain intact; last record sha256 {}",
                    v.records, v.first_seq, v.last_seq, v.last_hash
                );
                if v.starts_mid_chain {
                    println!(
                        "note: record {} chains to a record in a file not given; pass the older rotated files to check from the start",
                        v.first_seq
                    );
                }
                ExitCode::SUCCESS
            }
            Err(broken) => {
                eprintln!("pgveil: audit chain broken: {broken}");
                ExitCode::FAILURE
            }
        },
        AuditCommand::Report(args) => {
            let now = SystemTime::now();
            let time =
                |v: &Option<String>| v.as_deref().map(|s| parse_time_arg(s, now)).transpose();
            let filter = match (time(&args.since), time(&args.until)) {
                (Ok(since), Ok(until)) => ReportFilter {
                    since,
                    until,
                    role: args.role,
                    column: args.column,
                },
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("pgveil: {e}");
                    return ExitCode::from(2);
                }
            };
            match report::build(&args.files, &filter) {
                Ok(r) if args.json => {
                    match serde_json::to_string_pretty(&r) {
                        Ok(text) => println!("{text}"),
                        Err(e) => {
                            eprintln!("pgveil: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                    ExitCode::SUCCESS
                }
                Ok(r) => {
                    print!("{}", report::render_text(&r));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("pgveil: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
