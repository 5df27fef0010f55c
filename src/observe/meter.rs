//! What one session counts: plain integers kept in the session while a
//! statement streams, added to the shared metrics once per statement (or per
//! batch of relayed messages). Nothing here is touched per cell, and no
//! shared counter is touched per row.

use std::sync::Arc;

use prometheus::IntCounter;
use serde::{Deserialize, Serialize};

use super::audit::{AuditLog, Entry, Event, SessionIdentity};
use super::fingerprint::Fingerprint;
use super::{Metrics, RoleLabel};
use crate::analyze::policy_view::{ColumnAction, PolicyView, QualifiedColumn};
use crate::analyze::Analysis;

/// How a result set reached the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// No protected column in it, or the role sees them in clear.
    Clear,
    /// At least one column masked.
    Masked,
    /// Refused with 42501 before it ran.
    Blocked,
    /// Replaced by an error because a value could not be masked safely.
    Withheld,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Clear,
        Outcome::Masked,
        Outcome::Blocked,
        Outcome::Withheld,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Clear => "clear",
            Outcome::Masked => "masked",
            Outcome::Blocked => "blocked",
            Outcome::Withheld => "withheld",
        }
    }
}

/// What a role got of one protected column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Clear,
    Masked,
    Denied,
}

impl Decision {
    pub fn label(self) -> &'static str {
        match self {
            Decision::Clear => "clear",
            Decision::Masked => "masked",
            Decision::Denied => "denied",
        }
    }
}

/// One protected column a statement read or filtered on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnTouch {
    /// `schema.table.column`.
    pub column: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    pub decision: Decision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<String>,
    /// Output columns of the result that carry it (0: used only in a filter).
    pub outputs: u32,
    /// Used in WHERE, JOIN, ORDER BY, GROUP BY or a window.
    #[serde(default)]
    pub filter: bool,
}

/// What pgveil learned about a statement when it planned it; shared by
/// every execution of a prepared statement or cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementNote {
    /// Only computed when an audit trail is written.
    pub fingerprint: Option<Fingerprint>,
    pub columns: Vec<ColumnTouch>,
    pub extended: bool,
}

impl StatementNote {
    /// The note of analysed statements for one role, or `None` when they
    /// touch no protected column (the common case costs no allocation).
    pub fn new<'a>(
        fingerprint: impl FnOnce() -> Option<Fingerprint>,
        analyses: impl IntoIterator<Item = &'a Analysis>,
        view: &dyn PolicyView,
        extended: bool,
    ) -> Option<Arc<StatementNote>> {
        let mut columns: Vec<ColumnTouch> = Vec::new();
        for analysis in analyses {
            touches(analysis, view, &mut columns);
        }
        if columns.is_empty() {
            return None;
        }
        columns.sort_by(|a, b| a.column.cmp(&b.column));
        Some(Arc::new(StatementNote {
            fingerprint: fingerprint(),
            columns,
            extended,
        }))
    }
}

fn qualified(c: &QualifiedColumn) -> String {
    format!("{}.{}.{}", c.schema, c.table, c.column)
}

/// Adds the protected columns one analysed statement reads or filters on.
pub fn touches(analysis: &Analysis, view: &dyn PolicyView, into: &mut Vec<ColumnTouch>) {
    let mut touch = |column: &QualifiedColumn, output: bool| {
        let Some(decision) = view.column(column) else {
            return;
        };
        let (d, mask) = match &decision.action {
            ColumnAction::Allow => (Decision::Clear, None),
            ColumnAction::Mask { mask_name, .. } => (Decision::Masked, Some(mask_name.clone())),
            ColumnAction::Deny => (Decision::Denied, None),
        };
        let name = qualified(column);
        let entry = match into.iter_mut().position(|t| t.column == name) {
            Some(i) => &mut into[i],
            None => {
                into.push(ColumnTouch {
                    column: name,
                    class: decision.class.clone(),
                    decision: d,
                    mask,
                    outputs: 0,
                    filter: false,
                });
                let last = into.len() - 1;
                &mut into[last]
            }
        };
        if output {
            entry.outputs += 1;
        } else {
            entry.filter = true;
        }
    };
    for output in &analysis.outputs {
        for column in output.sources.keys() {
            touch(column, true);
        }
    }
    for use_ in &analysis.effects.uses {
        touch(&use_.column, false);
    }
}

/// One finished statement (or one result of it), as the guard saw it.
#[derive(Debug, Clone)]
pub struct StatementEvent {
    pub note: Option<Arc<StatementNote>>,
    pub outcome: Outcome,
    /// Rows forwarded (DataRow or COPY data rows).
    pub rows: u64,
    /// The statement produced a result set (rows, or a row description).
    pub result_set: bool,
    pub rule: Option<String>,
}

/// What a guard observed since the relay last looked: finished statements
/// and a few counters. Plain values, owned by the session.
#[derive(Debug, Default)]
pub struct Observations {
    pub events: Vec<StatementEvent>,
    /// Seconds per analysed statement, and whether the cache answered.
    pub analyses: Vec<(f64, bool)>,
    pub rowdescription_overrides: u64,
    pub notifications_redacted: u64,
    /// Statement notes carry fingerprints (only the audit trail needs them).
    pub fingerprints: bool,
}

/// Result sets and rows counted while framing server messages of a session
/// relayed without a guard.
#[derive(Debug, Default, Clone, Copy)]
pub struct FrameCount {
    /// Rows of the result set streaming now.
    rows_pending: u64,
    /// A RowDescription or CopyOutResponse opened a result set.
    open: bool,
    pub result_sets: u64,
    pub rows: u64,
}

impl FrameCount {
    /// One complete server message. Cheap: a byte match, a tag prefix on
    /// CommandComplete.
    #[inline]
    pub fn server_message(&mut self, msg: &[u8]) {
        match msg[0] {
            b'D' | b'd' => self.rows_pending += 1,
            b'T' | b'H' => self.open = true,
            b'C' => {
                let tag = msg.get(5..).unwrap_or_default();
                // A SELECT or FETCH of zero rows is a result set too, even
                // without a RowDescription (prepared statements).
                if self.open
                    || self.rows_pending > 0
                    || tag.starts_with(b"SELECT ")
                    || tag.starts_with(b"FETCH ")
                {
                    self.close();
                }
            }
            b's' | b'E' if self.open || self.rows_pending > 0 => self.close(),
            _ => {}
        }
    }

    fn close(&mut self) {
        self.result_sets += 1;
        self.rows += self.rows_pending;
        self.rows_pending = 0;
        self.open = false;
    }

    /// Counted totals since the last take, leaving a streaming result open.
    pub fn take(&mut self) -> (u64, u64) {
        let done = (self.result_sets, self.rows);
        self.result_sets = 0;
        self.rows = 0;
        done
    }
}

/// The series of one protected column for this session's role.
struct ColumnCounters {
    column: String,
    class: Option<String>,
    decision: Decision,
    mask: Option<String>,
    read: IntCounter,
    cells: Option<IntCounter>,
}

/// The metric handles and labels of one session, resolved once.
pub struct SessionMeter {
    columns: Vec<ColumnCounters>,
    metrics: Arc<Metrics>,
    database: String,
    role: String,
    result_sets: [IntCounter; 4],
    rows: [IntCounter; 4],
    /// `pgveil_analysis_duration_seconds` for cache misses, then hits.
    analysis: [prometheus::Histogram; 2],
    identity: Arc<SessionIdentity>,
    audit: Option<AuditLog>,
    /// Statements seen, for the session_end record.
    pub statements: u64,
}

impl SessionMeter {
    pub fn new(metrics: Arc<Metrics>, identity: SessionIdentity, audit: Option<AuditLog>) -> Self {
        let role = role_label(metrics.role_label, &identity.role, &identity.policy_roles);
        let database = identity.database.clone();
        let of = |vec: &prometheus::IntCounterVec, o: Outcome| {
            vec.with_label_values(&[&database, &role, o.label()])
        };
        let result_sets = Outcome::ALL.map(|o| of(&metrics.result_sets, o));
        let rows = Outcome::ALL.map(|o| of(&metrics.rows, o));
        let analysis = ["miss", "hit"].map(|c| metrics.analysis_duration.with_label_values(&[c]));
        SessionMeter {
            columns: Vec::new(),
            result_sets,
            rows,
            analysis,
            database,
            role,
            metrics,
            identity: Arc::new(identity),
            audit,
            statements: 0,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The policy roles the login role matched changed (policy reload or
    /// membership refresh).
    pub fn set_policy_roles(&mut self, roles: Vec<String>) {
        if roles != self.identity.policy_roles {
            let mut identity = (*self.identity).clone();
            identity.policy_roles = roles;
            self.identity = Arc::new(identity);
        }
    }

    /// Adds what framing counted (sessions relayed without a guard).
    pub fn add_framed(&mut self, count: &mut FrameCount) {
        let (sets, rows) = count.take();
        if sets > 0 {
            self.result_sets[0].inc_by(sets);
        }
        if rows > 0 {
            self.rows[0].inc_by(rows);
        }
    }

    fn index(o: Outcome) -> usize {
        match o {
            Outcome::Clear => 0,
            Outcome::Masked => 1,
            Outcome::Blocked => 2,
            Outcome::Withheld => 3,
        }
    }

    /// Counts one finished statement and returns its audit record, if the
    /// audit trail wants one (a protected column touched, or a block).
    pub fn statement(&mut self, ev: StatementEvent) -> Option<Entry> {
        self.statements += 1;
        let m = &self.metrics;
        let i = Self::index(ev.outcome);
        if ev.result_set || matches!(ev.outcome, Outcome::Blocked | Outcome::Withheld) {
            self.result_sets[i].inc();
        }
        if ev.rows > 0 {
            self.rows[i].inc_by(ev.rows);
        }
        if let (Outcome::Blocked, Some(rule)) = (ev.outcome, &ev.rule) {
            m.statements_blocked
                .with_label_values(&[&self.database, &self.role, rule])
                .inc();
            if rule == crate::analyze::lineage::MISUNDERSTOOD_RULE {
                m.statements_misunderstood.inc();
            }
        }
        let note = ev.note.as_ref()?;
        if matches!(ev.outcome, Outcome::Clear | Outcome::Masked) && ev.rows > 0 {
            for c in note.columns.iter().filter(|c| c.outputs > 0) {
                if c.decision == Decision::Denied {
                    continue;
                }
                let counters = self.column_counters(c);
                counters.read.inc_by(ev.rows);
                if let Some(cells) = &counters.cells {
                    cells.inc_by(ev.rows * u64::from(c.outputs));
                }
            }
        }
        self.audit.as_ref()?;
        if note.columns.is_empty() && ev.outcome != Outcome::Blocked {
            return None;
        }
        let mut r = self.record(Event::Statement);
        r.note = ev.note;
        r.rows = Some(ev.rows);
        r.outcome = Some(ev.outcome);
        r.rule = ev.rule;
        Some(r)
    }

    /// The series of one protected column, resolved once per session: the
    /// shared label map is not consulted per statement.
    fn column_counters(&mut self, c: &ColumnTouch) -> &ColumnCounters {
        let found = self.columns.iter().position(|k| {
            k.column == c.column
                && k.decision == c.decision
                && k.mask == c.mask
                && k.class == c.class
        });
        let i = match found {
            Some(i) => i,
            None => {
                let m = &self.metrics;
                let class = c.class.as_deref().unwrap_or("");
                let read = m.protected_rows_read.with_label_values(&[
                    &self.role,
                    &c.column,
                    class,
                    c.decision.label(),
                ]);
                let cells = (c.decision == Decision::Masked).then(|| {
                    m.cells_masked.with_label_values(&[
                        &c.column,
                        c.mask.as_deref().unwrap_or(""),
                        class,
                    ])
                });
                // Bounded by the policy's columns and masks; a reload that
                // changes many masks only adds a few entries.
                if self.columns.len() >= 1024 {
                    self.columns.clear();
                }
                self.columns.push(ColumnCounters {
                    column: c.column.clone(),
                    class: c.class.clone(),
                    decision: c.decision,
                    mask: c.mask.clone(),
                    read,
                    cells,
                });
                self.columns.len() - 1
            }
        };
        &self.columns[i]
    }

    /// An audit entry of this session, stamped now.
    pub fn record(&self, event: Event) -> Entry {
        Entry::new(event, &self.identity)
    }

    pub fn audit(&self) -> Option<&AuditLog> {
        self.audit.as_ref()
    }

    /// Publishes what a guard observed and returns the audit records it
    /// produced, in order.
    pub fn drain(&mut self, seen: &mut Observations) -> Vec<Entry> {
        let m = self.metrics.clone();
        for (seconds, hit) in seen.analyses.drain(..) {
            self.analysis[usize::from(hit)].observe(seconds);
        }
        if seen.rowdescription_overrides > 0 {
            m.rowdescription_overrides
                .inc_by(std::mem::take(&mut seen.rowdescription_overrides));
        }
        if seen.notifications_redacted > 0 {
            m.notifications_redacted
                .inc_by(std::mem::take(&mut seen.notifications_redacted));
        }
        let events: Vec<StatementEvent> = seen.events.drain(..).collect();
        events
            .into_iter()
            .filter_map(|ev| self.statement(ev))
            .collect()
    }
}

/// The `role` label value of a session.
pub fn role_label(mode: RoleLabel, login: &str, policy_roles: &[String]) -> String {
    match mode {
        RoleLabel::Login => login.to_string(),
        RoleLabel::Rule => policy_roles
            .first()
            .cloned()
            .unwrap_or_else(|| "unmatched".into()),
        RoleLabel::None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![ty];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn framing_counts_result_sets_and_rows() {
        let mut f = FrameCount::default();
        for m in [
            msg(b'T', b""),
            msg(b'D', b""),
            msg(b'D', b""),
            msg(b'C', b"SELECT 2\0"),
            msg(b'C', b"INSERT 0 1\0"),
            msg(b'C', b"SELECT 0\0"),
            msg(b'H', b""),
            msg(b'd', b""),
            msg(b'c', b""),
            msg(b'C', b"COPY 1\0"),
            msg(b'D', b""),
        ] {
            f.server_message(&m);
        }
        assert_eq!(f.take(), (3, 3));
        // The open result set's row is kept for its CommandComplete.
        f.server_message(&msg(b's', b""));
        assert_eq!(f.take(), (1, 1));
    }
}
