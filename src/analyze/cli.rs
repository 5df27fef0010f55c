//! `pgveil explain` and `pgveil catalog dump`.

use std::io::Write;
use std::process::ExitCode;

use serde_json::json;

use super::catalog::{Catalog, CatalogError};
use super::plan::{display, StatementPlan};
use super::policy_view::{ColumnAction, PolicyView};
use super::{Analyzer, PlannedStatement, SessionContext};

/// Arguments of `pgveil explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// Login role whose decisions to show.
    #[arg(long)]
    pub role: Option<String>,
    /// Read the catalog from this database (postgres://user@host/db).
    #[arg(long, conflicts_with = "catalog")]
    pub upstream: Option<String>,
    /// Read the catalog from a file written by `pgveil catalog dump`.
    #[arg(long)]
    pub catalog: Option<String>,
    /// Directory of policy files.
    #[arg(long)]
    pub policies: Option<String>,
    /// search_path to resolve unqualified names with (comma-separated).
    #[arg(long, default_value = "public")]
    pub search_path: String,
    /// Print JSON for tools instead of text.
    #[arg(long)]
    pub json: bool,
    /// The SQL to explain.
    pub sql: String,
}

/// Arguments of `pgveil catalog dump`.
#[derive(Debug, clap::Args)]
pub struct CatalogDumpArgs {
    /// Database to read (postgres://user@host/db); password may come from
    /// PGVEIL_CATALOG_PASSWORD.
    #[arg(long, env = "PGVEIL_UPSTREAM")]
    pub upstream: String,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub output: Option<String>,
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("connecting to {url}: {source}")]
    Connect {
        url: String,
        source: tokio_postgres::Error,
    },
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("give --catalog FILE (from `pgveil catalog dump`) or --upstream URL")]
    NoCatalog,
    #[error("--policies needs --role: whose decisions should be shown?")]
    NoRole,
    #[error("{0}")]
    Policy(String),
}

/// The role's view of the policies. Key bytes are not needed to explain a
/// decision, so masks are built with placeholder keys. Role memberships come
/// from --upstream when given; with --catalog only the role itself counts.
fn load_policy_view(
    args: &ExplainArgs,
    dir: &str,
) -> Result<std::sync::Arc<crate::policy::RolePolicy>, CliError> {
    let role = args.role.as_deref().ok_or(CliError::NoRole)?;
    let set = crate::policy::PolicySet::load_with(
        &[std::path::PathBuf::from(dir)],
        crate::policy::KeySource::NamesOnly,
    )
    .map_err(|e| CliError::Policy(e.to_string()))?;
    let memberships = match &args.upstream {
        Some(url) => load_memberships_from(url)?,
        None => crate::policy::RoleMembership::default(),
    };
    Ok(set.for_role(role, &memberships))
}

fn load_memberships_from(url: &str) -> Result<crate::policy::RoleMembership, CliError> {
    with_upstream(url, |client| async move {
        crate::policy::RoleMembership::load(&client)
            .await
            .map_err(|source| CliError::Connect {
                url: url.to_owned(),
                source,
            })
    })
}

/// Runs `work` against a fresh connection to `url` (password from
/// `PGVEIL_CATALOG_PASSWORD` when the URL has none).
fn with_upstream<T, F, Fut>(url: &str, work: F) -> Result<T, CliError>
where
    F: FnOnce(tokio_postgres::Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, CliError>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    runtime.block_on(async {
        let connect_error = |source| CliError::Connect {
            url: url.to_owned(),
            source,
        };
        let mut config: tokio_postgres::Config = url.parse().map_err(connect_error)?;
        if let Ok(password) = std::env::var("PGVEIL_CATALOG_PASSWORD") {
            config.password(password);
        }
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(connect_error)?;
        let driver = tokio::spawn(connection);
        let result = work(client).await;
        let _ = driver.await;
        result
    })
}

fn load_catalog_from(url: &str) -> Result<Catalog, CliError> {
    with_upstream(
        url,
        |client| async move { Ok(Catalog::load(&client).await?) },
    )
}

/// Runs `pgveil catalog dump`.
pub fn catalog_dump(args: CatalogDumpArgs) -> ExitCode {
    let result = load_catalog_from(&args.upstream).and_then(|catalog| {
        let text = catalog.to_json()?;
        match &args.output {
            Some(path) => std::fs::write(path, text).map_err(|source| CliError::Write {
                path: path.clone(),
                source,
            }),
            None => {
                let _ = writeln!(std::io::stdout(), "{text}");
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgveil catalog dump: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `pgveil explain`.
pub fn explain(args: ExplainArgs) -> ExitCode {
    let catalog = match (&args.catalog, &args.upstream) {
        (Some(path), _) => Catalog::from_file(path).map_err(CliError::from),
        (None, Some(url)) => load_catalog_from(url),
        (None, None) => Err(CliError::NoCatalog),
    };
    let catalog = match catalog {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pgveil explain: {e}");
            return ExitCode::from(2);
        }
    };
    let policy = match &args.policies {
        None => None,
        Some(dir) => match load_policy_view(&args, dir) {
            Ok(view) => Some(view),
            Err(e) => {
                eprintln!("pgveil explain: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let out = explain_with(
        &args,
        &catalog,
        policy.as_deref().map(|v| v as &dyn PolicyView),
    );
    let _ = writeln!(std::io::stdout(), "{out}");
    ExitCode::SUCCESS
}

/// Renders the explanation of `args.sql`; with `policy`, also each
/// decision. Separate from `explain` so a policy loader can call it.
pub fn explain_with(
    args: &ExplainArgs,
    catalog: &Catalog,
    policy: Option<&dyn PolicyView>,
) -> String {
    let ctx = SessionContext {
        database: catalog.database().to_owned(),
        search_path: args
            .search_path
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        lexing: Default::default(),
    };
    let analyzer = Analyzer::new(16);
    let planned: Vec<PlannedStatement> = match policy {
        Some(policy) => analyzer.plan(&args.sql, &ctx, catalog, policy, 0),
        None => analyzer
            .analyse(&args.sql, &ctx, catalog)
            .iter()
            .map(|a| PlannedStatement {
                kind: a.kind.clone(),
                plan: StatementPlan::Allow,
                analysis: a.clone(),
            })
            .collect(),
    };
    if args.json {
        render_json(&planned, policy, args.role.as_deref()).to_string()
    } else {
        render_text(&planned, policy, args.role.as_deref())
    }
}

fn decision_text(
    policy: Option<&dyn PolicyView>,
    column: &super::policy_view::QualifiedColumn,
) -> String {
    match policy.and_then(|p| p.column(column)) {
        None if policy.is_none() => String::new(),
        None => "not protected".into(),
        Some(d) => match d.action {
            ColumnAction::Allow => format!("allow ({})", d.rule),
            ColumnAction::Deny => format!("deny ({})", d.rule),
            ColumnAction::Mask { mask_name, .. } => format!("mask {mask_name} ({})", d.rule),
        },
    }
}

fn render_text(
    planned: &[PlannedStatement],
    policy: Option<&dyn PolicyView>,
    role: Option<&str>,
) -> String {
    let mut out = String::new();
    if let Some(role) = role {
        out.push_str(&format!("role: {role}\n"));
    }
    if policy.is_none() {
        out.push_str("(no policy loaded: lineage only)\n");
    }
    for (n, statement) in planned.iter().enumerate() {
        out.push_str(&format!("statement {}: {:?}\n", n + 1, statement.kind));
        for (i, output) in statement.analysis.outputs.iter().enumerate() {
            out.push_str(&format!("  [{i}] {}\n", output.name));
            let marker = crate::analyze::lineage::constant_source();
            for (column, flow) in output.sources.iter().filter(|(c, _)| **c != marker) {
                out.push_str(&format!(
                    "      <- {} ({:?}) {}\n",
                    display(column),
                    flow,
                    decision_text(policy, column)
                ));
            }
        }
        let effects = &statement.analysis.effects;
        for u in &effects.uses {
            let partners: Vec<String> = u.partners.iter().map(display).collect();
            let with = if partners.is_empty() {
                String::new()
            } else {
                format!(" with {}", partners.join(", "))
            };
            out.push_str(&format!(
                "  use {} in {} ({:?}{with})\n",
                display(&u.column),
                u.clause.as_str(),
                u.kind
            ));
        }
        for s in &effects.sinks {
            out.push_str(&format!("  write {} via {}\n", display(&s.source), s.via));
        }
        for h in &effects.hazards {
            out.push_str(&format!("  hazard {}: {}\n", h.rule.as_str(), h.detail));
        }
        if statement.analysis.fallback.is_some() {
            out.push_str("  not parsed: judged by token scan\n");
        }
        if policy.is_some() {
            match &statement.plan {
                StatementPlan::Allow => out.push_str("  plan: allow\n"),
                StatementPlan::Mask { columns } => {
                    out.push_str("  plan: mask\n");
                    for c in columns {
                        let mask = match &c.decision.action {
                            ColumnAction::Mask { mask_name, .. } => mask_name.as_str(),
                            _ => "?",
                        };
                        out.push_str(&format!(
                            "    [{}] {mask} from {} ({})\n",
                            c.index,
                            display(&c.source),
                            c.decision.rule
                        ));
                    }
                }
                StatementPlan::Block(b) => out.push_str(&format!(
                    "  plan: BLOCK ({}) {}\n    hint: {}\n",
                    b.rule, b.reason, b.hint
                )),
            }
        }
    }
    out
}

fn render_json(
    planned: &[PlannedStatement],
    policy: Option<&dyn PolicyView>,
    role: Option<&str>,
) -> serde_json::Value {
    let statements: Vec<serde_json::Value> = planned
        .iter()
        .map(|s| {
            let outputs: Vec<serde_json::Value> = s
                .analysis
                .outputs
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    json!({
                        "index": i,
                        "name": o.name,
                        "sources": o.sources.iter()
                            .filter(|(c, _)| **c != crate::analyze::lineage::constant_source())
                            .map(|(c, f)| json!({
                            "column": display(c),
                            "flow": format!("{f:?}").to_lowercase(),
                            "decision": decision_text(policy, c),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let plan = match (&s.plan, policy) {
                (_, None) => json!(null),
                (StatementPlan::Allow, _) => json!({"action": "allow"}),
                (StatementPlan::Mask { columns }, _) => json!({
                    "action": "mask",
                    "columns": columns.iter().map(|c| json!({
                        "index": c.index,
                        "source": display(&c.source),
                        "rule": c.decision.rule,
                        "mask": match &c.decision.action {
                            ColumnAction::Mask { mask_name, .. } => mask_name.clone(),
                            _ => String::new(),
                        },
                    })).collect::<Vec<_>>(),
                }),
                (StatementPlan::Block(b), _) => json!({
                    "action": "block",
                    "reason": b.reason,
                    "rule": b.rule,
                    "column": b.column.as_ref().map(display),
                    "hint": b.hint,
                }),
            };
            let effects = &s.analysis.effects;
            json!({
                "kind": format!("{:?}", s.kind),
                "outputs": outputs,
                "uses": effects.uses.iter().map(|u| json!({
                    "column": display(&u.column),
                    "clause": u.clause.as_str(),
                    "kind": format!("{:?}", u.kind).to_lowercase(),
                })).collect::<Vec<_>>(),
                "writes": effects.sinks.iter().map(|w| json!({
                    "source": display(&w.source), "via": w.via,
                })).collect::<Vec<_>>(),
                "hazards": effects.hazards.iter().map(|h| json!({
                    "rule": h.rule.as_str(), "detail": h.detail,
                })).collect::<Vec<_>>(),
                "parsed": s.analysis.fallback.is_none(),
                "plan": plan,
            })
        })
        .collect();
    json!({ "role": role, "statements": statements })
}
