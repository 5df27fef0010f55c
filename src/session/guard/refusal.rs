//! pgveil's refusals: the `DO` block that makes the server raise a blocked
//! statement's 42501 error in protocol order, and the audit line of each
//! block. Must not decide what is blocked (that is `statements`).

use super::Guard;
use crate::analyze::plan::BlockReason;

/// Name of the server-side statement pgveil uses to raise its errors.
pub(super) const BLOCK_STATEMENT: &[u8] = b"pgveil_blocked";

/// The `DO` block that makes the server raise pgveil's error.
pub fn block_sql(reason: &BlockReason) -> String {
    let quote = |s: &str| {
        let s = s.replace('\\', "\\\\").replace('\'', "''");
        format!("E'{s}'")
    };
    let mut message = format!("pgveil: {}", reason.reason);
    if let Some(c) = &reason.column {
        message.push_str(&format!(" (column {}.{}.{})", c.schema, c.table, c.column));
    }
    message.push_str(&format!(" [rule: {}]", reason.rule));
    let body = format!(
        "BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = {}, HINT = {}; END",
        quote(&message),
        quote(&reason.hint)
    )
    .replace("$pgveil$", "$ pgveil $");
    format!("DO $pgveil${body}$pgveil$")
}

impl Guard {
    /// One audit line per rejected statement: who, where, which rule.
    pub(super) fn audit_block(&mut self, reason: &BlockReason) {
        self.tally.blocked += 1;
        let column = reason
            .column
            .as_ref()
            .map(|c| format!("{}.{}.{}", c.schema, c.table, c.column))
            .unwrap_or_default();
        tracing::info!(
            target: "pgveil::audit",
            role = %self.role,
            database = %self.ctx.database,
            rule = %reason.rule,
            column = %column,
            reason = %reason.reason,
            "statement blocked"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sql_quotes_everything() {
        let sql = block_sql(&BlockReason {
            reason: "it's $pgveil$ \\ bad".into(),
            rule: "r".into(),
            column: None,
            hint: "h'".into(),
        });
        assert!(sql.starts_with("DO $pgveil$BEGIN RAISE EXCEPTION USING ERRCODE = '42501'"));
        assert_eq!(sql.matches("$pgveil$").count(), 2);
        assert!(sql.contains("it''s"));
        assert!(sql.contains("\\\\ bad"));
    }
}
