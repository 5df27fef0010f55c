//! config: settings from flags, environment (`PGVEIL_*`) and a TOML file.

/// Arguments of `pgveil serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PGVEIL_LISTEN")]
    pub listen: Option<String>,
}
