//! `pgveil audit report`: who read which protected columns, in clear or
//! masked, how many rows, when; and who was blocked. Built from the audit
//! files alone, as a table for people or as JSON.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::audit::{Event, Record};
use super::clock::parse_rfc3339;
use super::meter::{Decision, Outcome};

/// Which statement records count.
#[derive(Debug, Default, Clone)]
pub struct ReportFilter {
    /// Seconds since the epoch, inclusive.
    pub since: Option<f64>,
    /// Seconds since the epoch, exclusive.
    pub until: Option<f64>,
    /// Login role or a policy role it matched.
    pub role: Option<String>,
    /// `schema.table.column`, `table.column` or `column`.
    pub column: Option<String>,
}

/// One role's reads of one column with one decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadRow {
    pub role: String,
    pub column: String,
    pub class: String,
    pub decision: Decision,
    pub statements: u64,
    pub rows: u64,
    pub sessions: u64,
    pub first: String,
    pub last: String,
}

/// One role's blocked statements under one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockedRow {
    pub role: String,
    pub rule: String,
    pub statements: u64,
    pub first: String,
    pub last: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub reads: Vec<ReadRow>,
    pub blocked: Vec<BlockedRow>,
    /// Lines that were not audit records (see `pgveil audit verify`).
    pub skipped_lines: u64,
    /// Records the proxy dropped in the period (`--audit-on-full drop`): the
    /// figures above may miss that many statements.
    pub dropped_records: u64,
}

fn column_matches(filter: &str, column: &str) -> bool {
    column == filter || column.ends_with(&format!(".{filter}"))
}

impl ReportFilter {
    fn admits(&self, r: &Record) -> bool {
        if let Some(t) = parse_rfc3339(&r.time) {
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t >= u) {
                return false;
            }
        }
        match &self.role {
            Some(role) => &r.role == role || r.policy_roles.iter().any(|p| p == role),
            None => true,
        }
    }
}

/// Builds the report from the lines of the audit files.
pub fn build(files: &[PathBuf], filter: &ReportFilter) -> Result<Report, String> {
    #[derive(Default)]
    struct Acc {
        class: String,
        statements: u64,
        rows: u64,
        sessions: std::collections::BTreeSet<String>,
        first: String,
        last: String,
    }
    let mut reads: BTreeMap<(String, String, Decision), Acc> = BTreeMap::new();
    let mut blocked: BTreeMap<(String, String), Acc> = BTreeMap::new();
    let mut report = Report::default();
    let span = |acc: &mut Acc, time: &str| {
        if acc.first.is_empty() || time < acc.first.as_str() {
            acc.first = time.to_string();
        }
        if time > acc.last.as_str() {
            acc.last = time.to_string();
        }
    };
    for path in files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(r) = serde_json::from_str::<Record>(line) else {
                report.skipped_lines += 1;
                continue;
            };
            if r.event == Event::RecordsDropped {
                // Whose records were lost is unknown: counted whatever the
                // role or column filter, within the time filter.
                let within = ReportFilter {
                    role: None,
                    column: None,
                    ..filter.clone()
                };
                if within.admits(&r) {
                    report.dropped_records += r.dropped.unwrap_or(0);
                }
                continue;
            }
            if r.event != Event::Statement || !filter.admits(&r) {
                continue;
            }
            if r.outcome == Some(Outcome::Blocked) {
                let touched = filter
                    .column
                    .as_ref()
                    .is_none_or(|c| r.columns.iter().any(|t| column_matches(c, &t.column)));
                if touched {
                    let key = (r.role.clone(), r.rule.clone().unwrap_or_default());
                    let acc = blocked.entry(key).or_default();
                    acc.statements += 1;
                    span(acc, &r.time);
                }
                continue;
            }
            for t in &r.columns {
                if t.outputs == 0 || t.decision == Decision::Denied {
                    continue;
                }
                if filter
                    .column
                    .as_ref()
                    .is_some_and(|c| !column_matches(c, &t.column))
                {
                    continue;
                }
                // A masked decision in a result pgveil withheld delivered no
                // value; the rows still count as attempted reads.
                let acc = reads
                    .entry((r.role.clone(), t.column.clone(), t.decision))
                    .or_default();
                acc.class = t.class.clone().unwrap_or_default();
                acc.statements += 1;
                acc.rows += r.rows.unwrap_or(0);
                acc.sessions.insert(r.session.clone());
                span(acc, &r.time);
            }
        }
    }
    report.reads = reads
        .into_iter()
        .map(|((role, column, decision), a)| ReadRow {
            role,
            column,
            class: a.class,
            decision,
            statements: a.statements,
            rows: a.rows,
            sessions: a.sessions.len() as u64,
            first: a.first,
            last: a.last,
        })
        .collect();
    report.blocked = blocked
        .into_iter()
        .map(|((role, rule), a)| BlockedRow {
            role,
            rule,
            statements: a.statements,
            first: a.first,
            last: a.last,
        })
        .collect();
    Ok(report)
}

/// Left-aligned columns, widths from the content.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// The report as text a person reads.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    out.push_str("Protected columns read\n");
    if report.reads.is_empty() {
        out.push_str("(none)\n");
    } else {
        let rows: Vec<Vec<String>> = report
            .reads
            .iter()
            .map(|r| {
                vec![
                    r.role.clone(),
                    r.column.clone(),
                    r.class.clone(),
                    r.decision.label().to_string(),
                    r.statements.to_string(),
                    r.rows.to_string(),
                    r.sessions.to_string(),
                    r.first.clone(),
                    r.last.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "ROLE",
                "COLUMN",
                "CLASS",
                "DECISION",
                "STATEMENTS",
                "ROWS",
                "SESSIONS",
                "FIRST",
                "LAST",
            ],
            &rows,
        ));
    }
    out.push_str("\nBlocked statements\n");
    if report.blocked.is_empty() {
        out.push_str("(none)\n");
    } else {
        let rows: Vec<Vec<String>> = report
            .blocked
            .iter()
            .map(|b| {
                vec![
                    b.role.clone(),
                    b.rule.clone(),
                    b.statements.to_string(),
                    b.first.clone(),
                    b.last.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["ROLE", "RULE", "STATEMENTS", "FIRST", "LAST"],
            &rows,
        ));
    }
    if report.dropped_records > 0 {
        out.push_str(&format!(
            "\nWARNING: {} audit record(s) were dropped in this period (--audit-on-full drop); \
             the figures above may miss that many statements.\n",
            report.dropped_records
        ));
    }
    if report.skipped_lines > 0 {
        out.push_str(&format!(
            "\n{} line(s) were not audit records; run `pgveil audit verify` on these files.\n",
            report.skipped_lines
        ));
    }
    out
}
