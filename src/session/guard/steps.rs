//! A simple Query of several statements whose later statements cannot be
//! planned before the earlier ones ran: DDL or `SET search_path` followed by
//! a statement that reads what it changed, or a statement naming something
//! pgveil's catalog lacks. Such a string is run one statement at a time, as
//! one extended-protocol pipeline (Parse, Bind, Describe, Execute, Flush per
//! statement, one Sync at the end): the server runs a pipeline as one
//! transaction up to its Sync, rolled back by any error, as it runs a
//! string of statements as one implicit transaction block. Between two
//! statements the relay reads the transaction's schema changes over the
//! session's connection (inside that transaction), so each statement is
//! planned against the catalog as it then stands.
//!
//! This module decides which strings run so and produces the messages of
//! each step; the relay (`session::steps`) does the I/O. Must not plan
//! statements itself: each step goes through `client_message` like a
//! client's own pipeline.

use bytes::BytesMut;

use super::super::wire;
use super::{CopyIn, Guard};
use crate::analyze::pg_tree::{self, BlockUse};
use crate::analyze::{PlannedStatement, StatementKind};

/// Statements that change what later statements of the same string read.
fn changes_later_reads(kind: &StatementKind) -> bool {
    matches!(
        kind,
        StatementKind::Ddl
            | StatementKind::Unparsed { ddl: true }
            | StatementKind::SetSearchPath { .. }
    )
}

/// Statements that settle alike before and after such a change.
fn reads_nothing_changed(kind: &StatementKind) -> bool {
    matches!(
        kind,
        StatementKind::Ddl
            | StatementKind::Unparsed { ddl: true }
            | StatementKind::Transaction
            | StatementKind::Setting
            | StatementKind::Show
    )
}

impl Guard {
    /// The statements of a simple Query to run one at a time, or None to
    /// plan it as a whole. Only for a masked role, between statements, and
    /// only when every statement runs alike in a pipeline (see
    /// [`BlockUse`]); PostgreSQL's parser must accept the whole string (the
    /// server runs none of it otherwise).
    pub(super) fn stepwise_pieces(
        &self,
        planned: &[PlannedStatement],
        sql: &str,
    ) -> Option<Vec<String>> {
        if planned.len() < 2
            || !self.inputs.view.is_restricted()
            || !self.expect.is_empty()
            || !matches!(self.copy_in, CopyIn::Idle)
            || self.tx_status == b'E'
            // Bytes that were not UTF-8 (the server rejects the whole
            // string) must not run as replacement characters.
            || sql.contains(char::REPLACEMENT_CHARACTER)
        {
            return None;
        }
        // Ending a transaction, or rolling back to a savepoint, can undo
        // its DDL or its search_path.
        let undo_matters = self.ddl_in_transaction || self.search_path_unsure;
        let change_then_read = planned.iter().enumerate().any(|(i, p)| {
            (changes_later_reads(&p.kind)
                || (undo_matters && matches!(p.kind, StatementKind::Transaction)))
                && planned[i + 1..]
                    .iter()
                    .any(|later| !reads_nothing_changed(&later.kind))
        });
        let unknown_name = planned.iter().any(|p| p.analysis.effects.names_unknown());
        if !change_then_read && !unknown_name {
            return None;
        }
        let pieces = pg_tree::split_with_block_use(sql, self.ctx.lexing, 0)?;
        if pieces.len() != planned.len() {
            return None;
        }
        let mut in_block = self.tx_status == b'T';
        for (_, block_use) in &pieces {
            match block_use {
                BlockUse::Any => {}
                BlockUse::Begins => in_block = true,
                BlockUse::Ends if in_block => in_block = false,
                BlockUse::NeedsBlock if in_block => {}
                BlockUse::Ends | BlockUse::NeedsBlock | BlockUse::Unsplittable => return None,
            }
        }
        Some(
            pieces
                .into_iter()
                .map(|(text, _)| text.to_owned())
                .collect(),
        )
    }

    /// The statements of the Query just handled, when the relay must run
    /// them one at a time; nothing of that Query was forwarded.
    pub fn take_stepwise(&mut self) -> Option<Vec<String>> {
        self.stepwise.take()
    }

    /// One statement of a stepwise Query, as the messages a client would
    /// pipeline for it: the unnamed statement and portal (a simple Query
    /// replaces both too), text results, and a Flush so the server answers
    /// before the Sync.
    pub fn step(&mut self, sql: &str, out: &mut BytesMut) {
        let mut msgs = BytesMut::new();
        wire::encode_parse(&mut msgs, b"", sql);
        wire::encode_bind_no_params(&mut msgs, b"", b"");
        wire::encode_describe(&mut msgs, b'P', b"");
        wire::encode_execute(&mut msgs, b"");
        wire::encode_flush(&mut msgs);
        for msg in crate::net::codec::frames(&msgs) {
            self.client_message(msg, out);
        }
    }

    /// A step is answered: DDL whose command tag shows it changed nothing
    /// a catalog holds needs no read before the next step (as at a
    /// ReadyForQuery).
    pub fn step_done(&mut self) {
        if self.ddl_in_transaction && !self.unread_change {
            self.overlay_stale = false;
        }
    }

    /// The end of a stepwise Query: the unnamed statement and portal are
    /// dropped (as after a simple Query), and the Sync ends the pipeline's
    /// transaction. `abort`: make the server roll back what the steps did
    /// (pgveil withheld a result, so the client saw an error).
    pub fn end_steps(&mut self, abort: bool, out: &mut BytesMut) {
        let mut msgs = BytesMut::new();
        if abort {
            // Not through `client_message`: its answers (an error) arrive
            // while the guard withholds everything up to ReadyForQuery.
            let reason = crate::analyze::plan::BlockReason {
                reason: "a result of this query string was withheld".into(),
                rule: "withheld".into(),
                column: None,
                hint: String::new(),
            };
            wire::encode_parse(out, b"", &super::block_sql(&reason));
            wire::encode_bind_no_params(out, b"", b"");
            wire::encode_execute(out, b"");
        }
        wire::encode_close(&mut msgs, b'S', b"");
        wire::encode_close(&mut msgs, b'P', b"");
        wire::encode_sync(&mut msgs);
        for msg in crate::net::codec::frames(&msgs) {
            self.client_message(msg, out);
        }
    }

    /// search_path changed in an earlier step: the relay reads it before
    /// the next one is planned.
    pub fn search_path_pending(&self) -> bool {
        self.search_path_pending
    }

    /// pgveil replaced a result with an error: the rest of the Query must
    /// not run.
    pub fn is_withholding(&self) -> bool {
        self.withholding
    }
}
