//! What the guard tells `observe`: each finished statement with its
//! outcome, rows and the protected columns it touched, for metrics and the
//! audit trail. Rows are counted in a plain integer of the current result;
//! the statement is handed over once, when it completes. Must not change
//! what is forwarded.

use std::collections::HashMap;
use std::sync::Arc;

use crate::analyze::plan::{BlockReason, StatementPlan};
use crate::analyze::{Analysis, PlannedStatement, StatementKind};
use crate::observe::fingerprint::fingerprint;
use crate::observe::meter::{Outcome, StatementEvent, StatementNote};

use super::{Expect, Guard};

/// The result set streaming now.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ResultTally {
    open: bool,
    /// Some column of it is masked.
    masked: bool,
    rows: u64,
}

impl ResultTally {
    /// A RowDescription or CopyOutResponse opened a result.
    pub(super) fn open(&mut self, masked: bool) {
        if !self.open {
            *self = ResultTally {
                open: true,
                masked,
                rows: 0,
            };
        }
    }

    /// One row forwarded (a portal's first row opens its result).
    #[inline]
    pub(super) fn row(&mut self, masked: bool) {
        self.open(masked);
        self.rows += 1;
    }
}

/// Notes of lone statements by their analysis, so a statement run again
/// with other values (the simple protocol's everyday case) costs no
/// fingerprint and no column walk. An analysis is shared only by texts
/// PostgreSQL lexes alike, literal values aside, so they share the note.
/// Holding the analysis keeps its address from being reused. Valid for
/// one policy view and fingerprint setting: cleared when either changes.
#[derive(Default)]
pub(super) struct NoteCache {
    /// By the analysis' address and the protocol.
    by_analysis: HashMap<(usize, bool), CachedNote>,
}

struct CachedNote {
    /// Keeps the address of the key taken.
    _analysis: Arc<Analysis>,
    note: Option<Arc<StatementNote>>,
}

/// Bound on cached notes; a session that exceeds it starts over.
const NOTE_CACHE_ENTRIES: usize = 256;

impl NoteCache {
    pub(super) fn clear(&mut self) {
        self.by_analysis.clear();
    }
}

impl Guard {
    /// The note of one planned statement: what it touches, from its own
    /// analysis, or from the DECLARE / PREPARE behind a FETCH / EXECUTE.
    /// `None` when it touches no protected column. `lone`: `sql` is this
    /// statement alone (its fingerprint is the statement's, so the note
    /// may be cached).
    pub(super) fn note_of(
        &mut self,
        p: &PlannedStatement,
        sql: &str,
        extended: bool,
        lone: bool,
    ) -> Option<Arc<StatementNote>> {
        match &p.kind {
            StatementKind::Fetch { cursor } => return self.named_note(true, cursor),
            StatementKind::Execute { name } => return self.named_note(false, name),
            _ => {}
        }
        let key = (Arc::as_ptr(&p.analysis) as usize, extended);
        if lone {
            if let Some(cached) = self.notes.by_analysis.get(&key) {
                return cached.note.clone();
            }
        }
        let note = StatementNote::new(
            || self.observed.fingerprints.then(|| fingerprint(sql)),
            [p.analysis.as_ref()],
            self.inputs.view.as_ref(),
            extended,
        );
        if lone {
            if self.notes.by_analysis.len() >= NOTE_CACHE_ENTRIES {
                self.notes.clear();
            }
            let cached = CachedNote {
                _analysis: Arc::clone(&p.analysis),
                note: note.clone(),
            };
            self.notes.by_analysis.insert(key, cached);
        }
        note
    }

    /// The note of a statement that was refused: always one, so the audit
    /// trail records every block with its fingerprint.
    pub(super) fn blocked_note(
        &self,
        planned: &[PlannedStatement],
        sql: &str,
        extended: bool,
    ) -> Arc<StatementNote> {
        let fp = || self.observed.fingerprints.then(|| fingerprint(sql));
        StatementNote::new(
            fp,
            planned.iter().map(|p| p.analysis.as_ref()),
            self.inputs.view.as_ref(),
            extended,
        )
        .unwrap_or_else(|| {
            Arc::new(StatementNote {
                fingerprint: fp(),
                columns: Vec::new(),
                extended,
            })
        })
    }

    /// The note of a Parse: its statement's (several only when the server
    /// will reject the Parse anyway).
    pub(super) fn parse_note(
        &mut self,
        planned: &[PlannedStatement],
        sql: &str,
    ) -> Option<Arc<StatementNote>> {
        match planned {
            [one] => self.note_of(one, sql, true, true),
            _ => None,
        }
    }

    /// A DECLARE or PREPARE staged by statement `index` keeps its note, so
    /// each FETCH or EXECUTE of the name reports what the query reads.
    pub(super) fn note_registration(&mut self, index: usize, note: &Option<Arc<StatementNote>>) {
        if let Some((_, r)) = self.staged.iter_mut().rev().find(|(i, _)| *i == index) {
            r.note = note.clone();
        }
    }

    /// A DECLARE or PREPARE staged in this message, or a confirmed one.
    fn named_note(&self, cursor: bool, name: &str) -> Option<Arc<StatementNote>> {
        if let Some((_, r)) = self
            .staged
            .iter()
            .rev()
            .find(|(_, r)| r.cursor == cursor && r.name == name)
        {
            return r.note.clone();
        }
        self.named_notes
            .get(&(cursor, name.to_string()))
            .cloned()
            .flatten()
    }

    /// The note and plan of the statement the front response belongs to.
    fn front_statement(&self) -> (Option<Arc<StatementNote>>, bool) {
        let masked =
            |plan: Option<&StatementPlan>| matches!(plan, Some(StatementPlan::Mask { .. }));
        match self.expect.front() {
            Some(Expect::Query {
                plans, at, notes, ..
            }) => (notes.get(*at).cloned().flatten(), masked(plans.get(*at))),
            Some(Expect::Execute {
                binding: Some(b), ..
            }) => (b.note.clone(), masked(Some(&b.plan))),
            _ => (None, false),
        }
    }

    /// CommandComplete, PortalSuspended or EmptyQueryResponse of the front
    /// statement (before the pairing moves on).
    pub(super) fn statement_done(&mut self, msg: &[u8]) {
        let r = std::mem::take(&mut self.result);
        let tag = msg.get(5..).unwrap_or_default();
        let result_set = r.open
            || r.rows > 0
            || (msg[0] == b'C' && (tag.starts_with(b"SELECT ") || tag.starts_with(b"FETCH ")));
        let (note, plan_masked) = self.front_statement();
        if note.is_none() && !result_set {
            return;
        }
        let outcome = if r.masked || (!r.open && plan_masked) {
            Outcome::Masked
        } else {
            Outcome::Clear
        };
        self.observed.events.push(StatementEvent {
            note,
            outcome,
            rows: r.rows,
            result_set,
            rule: None,
        });
    }

    /// The server failed the statement: rows already forwarded still count.
    pub(super) fn statement_failed(&mut self) {
        if self.result.open || self.result.rows > 0 {
            let err = [b'E'];
            self.statement_done(&err);
        }
        self.result = ResultTally::default();
    }

    /// pgveil replaced the rest of a result with an error.
    pub(super) fn result_withheld(&mut self) {
        let r = std::mem::take(&mut self.result);
        let (note, _) = self.front_statement();
        self.observed.events.push(StatementEvent {
            note,
            outcome: Outcome::Withheld,
            rows: r.rows,
            result_set: true,
            rule: None,
        });
    }

    /// A statement refused before it ran.
    pub(super) fn statement_blocked(&mut self, reason: &BlockReason, note: Arc<StatementNote>) {
        self.observed.events.push(StatementEvent {
            note: Some(note),
            outcome: Outcome::Blocked,
            rows: 0,
            result_set: false,
            rule: Some(reason.rule.clone()),
        });
    }

    /// Seconds spent planning one statement, and whether the analysis
    /// cache answered.
    pub(super) fn analysed(&mut self, seconds: f64, cached: bool) {
        self.observed.analyses.push((seconds, cached));
    }
}
