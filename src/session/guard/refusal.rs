//! pgveil's refusals: the `DO` block that makes the server raise a blocked
//! statement's 42501 error in protocol order, and the audit line of each
//! block. Must not decide what is blocked (that is `statements`).

use std::sync::Arc;

use bytes::BytesMut;

use super::super::wire;
use super::Guard;
use crate::analyze::plan::BlockReason;
use crate::observe::meter::StatementNote;

/// Name of the server-side statement pgveil uses to raise its errors.
pub(super) const BLOCK_STATEMENT: &[u8] = b"pgveil_blocked";

/// Name of the statement pgveil has the server parse (never execute) to
/// learn whether a refused statement is valid at all.
pub(super) const PROBE_STATEMENT: &[u8] = b"pgveil_probe";

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
    pub(super) fn audit_block(&mut self, reason: &BlockReason, note: Arc<StatementNote>) {
        self.statement_blocked(reason, note);
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

/// The CONTEXT of pgveil's one-line `DO` block. Masked roles cannot run DO
/// blocks, so server code that raises a look-alike 42501 (`RAISE USING
/// MESSAGE = 'pgveil: ' || NEW.card_no` in a trigger) has another CONTEXT
/// (its own function, or more lines) and is scrubbed like any error.
const OWN_CONTEXT: &[u8] = b"PL/pgSQL function inline_code_block line 1 at RAISE";

/// True for the fields of pgveil's refusal as raised by the server.
pub(super) fn is_own_refusal(fields: &[(u8, Vec<u8>)]) -> bool {
    let get = |tag: u8| {
        fields
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.as_slice())
    };
    get(b'C') == Some(b"42501".as_slice())
        && get(b'M').is_some_and(|m| m.starts_with(b"pgveil: "))
        && get(b'R') == Some(b"exec_stmt_raise".as_slice())
        && get(b'W') == Some(OWN_CONTEXT)
}

/// pgveil's refusal as raised by the server: the `DO` block makes its
/// source fields name PL/pgSQL (`pl_exec.c`, `exec_stmt_raise`) and its
/// CONTEXT an inline code block. They are rewritten to say the error is
/// pgveil's; SQLSTATE, message and hint stay as raised.
pub(super) fn own_refusal(msg: &[u8]) -> Option<BytesMut> {
    let fields = wire::notice_fields(msg);
    if !is_own_refusal(&fields) {
        return None;
    }
    let fields: Vec<(u8, Vec<u8>)> = fields
        .into_iter()
        .filter_map(|(t, v)| match t {
            b'W' => None,
            b'F' => Some((t, b"pgveil".to_vec())),
            b'L' => Some((t, b"0".to_vec())),
            b'R' => Some((t, b"pgveil_refusal".to_vec())),
            _ => Some((t, v)),
        })
        .collect();
    let mut out = BytesMut::new();
    wire::encode_notice_fields(&mut out, b'E', &fields);
    Some(out)
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
