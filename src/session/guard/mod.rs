//! The masking state machine of one session whose role has anything masked
//! or denied. Pure: it turns each client message into the bytes to send
//! upstream and each server message into the bytes to send the client.
//!
//! It pairs every server response with the client message that caused it
//! (a queue of expected responses), so each RowDescription and DataRow is
//! masked with the plan of its own statement or portal. A blocked statement
//! is rewritten into a `DO` block that raises SQLSTATE 42501 on the server:
//! the error then arrives in protocol order and aborts the transaction
//! exactly as a real error would.
//!
//! This module owns the guard's state and the pairing of responses with
//! requests (`Expect`); it dispatches each message to the module owning its
//! concern and must not plan statements, mask values or rewrite texts itself:
//! - `statements`: planning Query/Parse/Bind, cursor and prepared names;
//! - `refusal`: the `DO` block that raises pgveil's errors, audit of blocks;
//! - `rows`: RowDescription/DataRow/COPY OUT masking, withholding results;
//! - `errors`: scrubbing server errors and notices;
//! - `messages`: the fixed texts of PostgreSQL's messages, which is all of
//!   a message's text a restricted role reads;
//! - `fastpath`: which fast-path FunctionCalls a masked role may make;
//! - `notify`: redacting NOTIFY payloads;
//! - `observe`: what each finished statement read, for metrics and audit.

mod errors;
pub mod fastpath;
mod messages;
mod notify;
mod observe;
mod refusal;
mod rows;
mod statements;
mod steps;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::BytesMut;

use super::copy_text::CopyText;
use super::wire::{self, Field};
use crate::analyze::plan::StatementPlan;
use crate::analyze::policy_view::PolicyView;
use crate::analyze::{Analyzer, Catalog, SessionContext};
use crate::observe::meter::{Observations, StatementNote};
use crate::policy::PolicySet;

pub use refusal::block_sql;
use rows::{CopyMasker, RowMasker};

/// Everything a plan is derived from, swapped as a whole when the policy or
/// the catalog changes.
#[derive(Clone)]
pub struct PlanInputs {
    pub analyzer: Arc<Analyzer>,
    pub catalog: Arc<Catalog>,
    pub policy: Arc<PolicySet>,
    pub view: Arc<dyn PolicyView>,
}

impl PlanInputs {
    fn version(&self) -> (u64, u64) {
        (self.policy.version(), self.catalog.generation())
    }
}

/// A cursor or SQL-level prepared statement name, recorded only once the
/// server confirms the DECLARE or PREPARE (a failed one must not replace
/// the plan of an existing name).
#[derive(Clone)]
struct Registration {
    cursor: bool,
    name: String,
    plan: StatementPlan,
    note: Option<Arc<StatementNote>>,
    source: Option<PlanSource>,
}

/// The text a statement was planned from, its index among the text's
/// statements, the inputs' version and the search_path then (see
/// `SqlPrepared`).
type PlanSource = (Arc<str>, usize, (u64, u64), Vec<String>);

/// A statement PREPAREd in SQL. PostgreSQL plans it again when what it
/// reads changes (a view replaced, a function redefined), so pgveil plans
/// it again from its text when the catalog or policy has changed since.
struct SqlPrepared {
    plan: StatementPlan,
    source: Option<PlanSource>,
}

struct Prepared {
    registration: Option<Registration>,
    /// Executing it changes the schema.
    ddl: bool,
    /// The server plans it again at Bind when a relation it reads has
    /// changed: any statement but DDL, transaction control and settings.
    replans: bool,
    /// The search_path it was planned under: PostgreSQL plans a cached
    /// statement again when the search_path differs at Bind.
    search_path: Vec<String>,
    /// It calls a user-defined function the policy does not list, which
    /// pgveil followed (see `analyze::sealed`) as it is now.
    follows: bool,
    /// Executing it changes search_path.
    sets_search_path: bool,
    sql: String,
    plan: StatementPlan,
    /// A constant-raising DO block (see `Guard::verbatim`).
    verbatim: bool,
    copy: Option<CopyText>,
    /// A `COPY … FROM` (see [`CopyIn`]).
    copy_in: bool,
    version: (u64, u64),
    fields: Option<Vec<Field>>,
    /// The masker of the result formats last bound, kept so that binding
    /// again with the same formats costs no look-ups.
    bound: Option<(Vec<i16>, Arc<RowMasker>)>,
    note: Option<Arc<StatementNote>>,
    /// Array parameters whose elements are counted at each Bind.
    array_limits: Vec<crate::analyze::ArrayParameterLimit>,
}

/// What one Bind fixed for the results of its portal. Each Execute's
/// expected response holds the binding it ran with, so a portal bound again
/// later in the same pipeline (the unnamed one, typically) never lends its
/// new plan to rows of the earlier Execute still on their way.
struct Binding {
    registration: Option<Registration>,
    plan: StatementPlan,
    copy: Option<CopyText>,
    note: Option<Arc<StatementNote>>,
    /// Its errors and notices are the client's own text (see `verbatim`).
    verbatim: bool,
}

struct Portal {
    /// Compared by pointer: each Bind makes a new one.
    binding: Arc<Binding>,
    /// Executing it changes the schema.
    ddl: bool,
    /// See `Prepared::follows`: while it may still run, no DDL may change
    /// the functions it calls (PostgreSQL compiles a replaced body again
    /// at the next call).
    follows: bool,
    /// Executing it changes search_path.
    sets_search_path: bool,
    copy_in: bool,
    masker: Option<Arc<RowMasker>>,
    /// The client asked for its description itself: its RowDescription
    /// arrives before any row, so pgveil need not ask again.
    described: bool,
}

/// Where a `COPY … FROM STDIN` stands. In copy-in mode the server ignores
/// Sync (and Flush) until CopyDone or CopyFail, so a Sync the client sent
/// after the COPY's Execute gets no ReadyForQuery, unless the COPY failed
/// before the server read it. Whether it did cannot be seen from outside,
/// so pgveil decides it: the Sync waits until the server answered the
/// Execute, and is dropped if that answer is CopyInResponse. Every COPY then
/// ends in exactly one ReadyForQuery, from the Sync after CopyDone/CopyFail.
enum CopyIn {
    Idle,
    /// The Execute of a COPY FROM went out: later client messages wait for
    /// its first answer (a Flush sent in their place makes the server send
    /// that answer even when it is not CopyInResponse).
    Awaiting {
        held: BytesMut,
    },
    /// The server is reading COPY data: the client's Syncs are dropped.
    Active,
}

/// The analyses `needs_fresh_catalog` looked up for a statement of the
/// batch being prepared. Reused by `plan` only for the same text, context
/// and catalog object (held here, so its address cannot be reused): the
/// analysis is a function of exactly those, so reuse equals a fresh look-up.
struct LookedUp {
    sql: String,
    ctx: SessionContext,
    catalog: Arc<Catalog>,
    analyses: Arc<Vec<Arc<crate::analyze::Analysis>>>,
    /// Whether the cache answered, and the seconds the look-up took.
    cached: bool,
    seconds: f64,
}

/// A server response the session is waiting for, in order.
enum Expect {
    ParseComplete {
        swallow: bool,
        /// The statement takes effect only once the server parsed it: a
        /// failed Parse (name already in use) must not replace its plan,
        /// and one the server skipped (an earlier message of its pipeline
        /// failed) replaced nothing.
        pending: Option<(Vec<u8>, Box<Prepared>)>,
    },
    BindComplete {
        /// Likewise, the portal a Bind makes.
        pending: Option<(Vec<u8>, Box<Portal>)>,
    },
    /// The BindComplete of a statement pgveil sent itself: not forwarded.
    OwnBindComplete,
    CloseComplete {
        swallow: bool,
        /// The statement (`S`) or portal (`P`) it closes once answered.
        target: Option<(u8, Vec<u8>)>,
    },
    DescribeStatement {
        name: Vec<u8>,
    },
    DescribePortal {
        portal: Vec<u8>,
        /// The Bind being described (none for a portal pgveil never saw).
        binding: Option<Arc<Binding>>,
        swallow: bool,
    },
    Execute {
        binding: Option<Arc<Binding>>,
        /// Known at Execute, or installed by the binding's RowDescription
        /// before its rows arrive.
        masker: Option<Arc<RowMasker>>,
    },
    Sync,
    Query {
        plans: Vec<StatementPlan>,
        at: usize,
        /// Text-format options of a single `COPY … TO STDOUT` to mask.
        copy: Option<CopyText>,
        /// Names to record when statement N completes.
        registrations: Vec<(usize, Registration)>,
        /// What statement N touches, for metrics and audit.
        notes: Vec<Option<Arc<StatementNote>>>,
        /// Statement N only raises constant messages (see `verbatim`).
        verbatim: Vec<bool>,
    },
}

/// What the relay must do besides forwarding.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Effects {
    /// DDL went through: reload the catalog before the next statement.
    pub catalog_stale: bool,
    /// This session's own DDL committed: its temporary relations may have
    /// changed too.
    pub own_ddl: bool,
    /// A statement whose text says `temp` (`CREATE TEMP TABLE`,
    /// `pg_temp.x`, a DO block …) went to the server since the session
    /// last read its temporary relations. Without it, and with no
    /// temporary relation known, that read can be skipped after DDL: a
    /// temporary relation pgveil missed is unknown, and a statement naming
    /// it is refused or resolves to a permanent relation's rules, never to
    /// fewer masks.
    pub temp_mentioned: bool,
}

pub struct Guard {
    /// Login role, for the audit log.
    role: String,
    inputs: PlanInputs,
    ctx: SessionContext,
    statements: HashMap<Vec<u8>, Prepared>,
    portals: HashMap<Vec<u8>, Portal>,
    sql_prepared: HashMap<String, SqlPrepared>,
    /// The text being planned (see `Registration::source`).
    planning_text: Option<Arc<str>>,
    cursors: HashMap<String, StatementPlan>,
    /// Notes of confirmed cursor (true) and prepared-statement names.
    named_notes: HashMap<(bool, String), Option<Arc<StatementNote>>>,
    /// Names declared by the message being planned, not yet confirmed.
    staged: Vec<(usize, Registration)>,
    /// Analyses `needs_fresh_catalog` looked up for this batch, in order.
    looked_up: Vec<LookedUp>,
    expect: VecDeque<Expect>,
    rows: Option<Arc<RowMasker>>,
    copy: Option<CopyMasker>,
    /// Maskers of results whose plan is Allow, by RowDescription bytes:
    /// such a masker depends on nothing else (the defence-in-depth check),
    /// and the same statements return the same descriptions again and
    /// again. Valid for `shapes_version` only.
    shapes: HashMap<Vec<u8>, Arc<RowMasker>>,
    shapes_version: (u64, u64),
    /// After pgveil withheld a result: drop responses until ReadyForQuery.
    withholding: bool,
    copy_in: CopyIn,
    /// Client messages released while handling server messages (see
    /// [`CopyIn`]): the relay sends them upstream.
    pub to_server: BytesMut,
    /// DDL ran in the open transaction: pgveil's shared catalog (read over
    /// its own connection) cannot see it until commit, so the session reads
    /// what changed over its own connection (see `overlay_due`).
    ddl_in_transaction: bool,
    /// DDL ran (or a savepoint was rolled back) since the session last read
    /// the transaction's changes: statements planned now are refused.
    overlay_stale: bool,
    /// A savepoint was set, released or rolled back since the
    /// transaction's changes were last read: rows it undid are not marked
    /// as changed, so the next read starts again from the shared catalog.
    overlay_rebase: bool,
    /// A statement that may have changed the catalog completed (any tag
    /// but a catalog-neutral DDL's) since the transaction's changes were
    /// last read: the next read cannot be skipped.
    unread_change: bool,
    /// The same since the transaction began: its commit needs a refresh.
    tx_change: bool,
    /// A statement in flight mentions UNIQUE (see `may_make_key`).
    key_ddl: bool,
    /// The session created temporary relations (see `set_temp_schema`).
    temp_schema: bool,
    /// search_path was changed in a way the server may undo.
    search_path_unsure: bool,
    /// search_path was changed since the server was last asked for it:
    /// statements planned now are refused.
    search_path_pending: bool,
    /// The client's latest statement texts and statement or portal names
    /// (see `said_names`).
    said: VecDeque<Vec<u8>>,
    utf8: bool,
    /// Status byte of the last ReadyForQuery.
    tx_status: u8,
    /// A Query whose statements the relay must run one at a time (see
    /// `steps`), taken by it right after the Query was handled.
    stepwise: Option<Vec<String>>,
    pub effects: Effects,
    result: observe::ResultTally,
    notes: observe::NoteCache,
    /// Drained by the relay after each batch of messages.
    pub observed: Observations,
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Guard {
    pub fn new(role: String, inputs: PlanInputs, ctx: SessionContext) -> Guard {
        Guard {
            role,
            inputs,
            ctx,
            statements: HashMap::new(),
            portals: HashMap::new(),
            sql_prepared: HashMap::new(),
            planning_text: None,
            cursors: HashMap::new(),
            named_notes: HashMap::new(),
            staged: Vec::new(),
            looked_up: Vec::new(),
            expect: VecDeque::new(),
            rows: None,
            copy: None,
            shapes: HashMap::new(),
            shapes_version: (0, 0),
            withholding: false,
            copy_in: CopyIn::Idle,
            to_server: BytesMut::new(),
            ddl_in_transaction: false,
            overlay_stale: false,
            overlay_rebase: false,
            unread_change: false,
            tx_change: false,
            key_ddl: false,
            temp_schema: false,
            search_path_unsure: false,
            search_path_pending: false,
            said: VecDeque::new(),
            utf8: true,
            tx_status: b'I',
            stepwise: None,
            effects: Effects::default(),
            result: observe::ResultTally::default(),
            notes: observe::NoteCache::default(),
            observed: Observations::default(),
        }
    }

    /// The server is reading COPY data: what the client sends now is data,
    /// not statements to analyse.
    pub fn copying_in(&self) -> bool {
        matches!(self.copy_in, CopyIn::Active)
    }

    /// Statement notes carry fingerprints for the audit trail.
    pub fn record_fingerprints(&mut self, on: bool) {
        self.observed.fingerprints = on;
        self.notes.clear();
    }

    /// New policy or catalog for statements that start from now on.
    pub fn update_inputs(&mut self, inputs: PlanInputs) {
        self.inputs = inputs;
        self.notes.clear();
    }

    pub fn inputs(&self) -> &PlanInputs {
        &self.inputs
    }

    /// True when the session should ask the server for its search_path
    /// before the next statement.
    pub fn search_path_unsure(&self) -> bool {
        self.search_path_unsure
    }

    /// The server's search_path; settled for good outside a transaction.
    pub fn set_search_path(&mut self, path: Vec<String>, outside_transaction: bool) {
        self.ctx.search_path = path;
        self.search_path_pending = false;
        if outside_transaction {
            self.search_path_unsure = false;
        }
    }

    /// Tracks `client_encoding`: masks work on UTF-8 text only.
    pub fn set_client_encoding(&mut self, value: &[u8]) {
        let v = lossy(value).to_ascii_uppercase().replace(['-', '_'], "");
        self.utf8 = v == "UTF8" || v == "UNICODE";
    }

    /// Tracks `standard_conforming_strings`: it decides where a string
    /// ends, so statements are lexed under the server's value.
    pub fn set_standard_conforming_strings(&mut self, value: &[u8]) {
        // The server reports exactly `on` or `off`.
        self.ctx.lexing.standard_conforming_strings = value != b"off";
    }

    /// True when a Query or Parse in `buf` names something the catalog lacks
    /// (a table created since it was read): worth one catalog reload.
    ///
    /// The analyses it looks up are kept for `plan` of the same messages
    /// (one cache look-up, and one tokenisation of the text, per statement
    /// instead of two) until `end_of_batch`.
    pub fn needs_fresh_catalog(&mut self, buf: &[u8]) -> bool {
        self.looked_up.clear();
        for msg in crate::net::codec::frames(buf) {
            let sql = match msg[0] {
                b'Q' => wire::query_text(msg),
                b'P' => wire::parse_msg(msg).map(|p| p.query),
                _ => None,
            };
            let Some(sql) = sql else { continue };
            let sql = lossy(sql);
            let started = std::time::Instant::now();
            let ctx = self.analysis_ctx().into_owned();
            let (analyses, cached) =
                self.inputs
                    .analyzer
                    .analyse_traced(&sql, &ctx, &self.inputs.catalog);
            let seconds = started.elapsed().as_secs_f64();
            // The cached analysis alone tells (no plan derivation). Names
            // after DDL in the same string may be what that DDL creates: a
            // string run one statement at a time reads those itself.
            let mut after_ddl = false;
            let stale = analyses.iter().any(|a| {
                let unknown = !after_ddl && a.effects.names_unknown();
                after_ddl |= matches!(
                    a.kind,
                    crate::analyze::StatementKind::Ddl
                        | crate::analyze::StatementKind::Unparsed { ddl: true }
                );
                unknown
            });
            // Kept even when stale: a reload installs another catalog, which
            // no entry matches; without one (at most one a second) it is
            // still the analysis `plan` would look up.
            self.looked_up.push(LookedUp {
                sql,
                ctx,
                catalog: Arc::clone(&self.inputs.catalog),
                analyses,
                cached,
                seconds,
            });
            if stale {
                return true;
            }
        }
        false
    }

    /// A statement in flight mentions UNIQUE, so a CREATE INDEX that
    /// completes may have made a key (see `RelationKeys`); otherwise the
    /// index changes nothing a catalog holds, and no read follows it.
    pub fn may_make_key(&self) -> bool {
        self.key_ddl
    }

    /// The client's batch is planned: the analyses looked up for it are
    /// dropped (with the catalog they hold).
    pub fn end_of_batch(&mut self) {
        self.looked_up.clear();
    }

    /// DDL of the open transaction is not visible to pgveil's catalog
    /// connection yet (and reading it could wait on this session's locks).
    pub fn holds_uncommitted_ddl(&self) -> bool {
        self.ddl_in_transaction
    }

    /// The transaction's schema changes must be read over the session's own
    /// connection before the next statement is planned.
    pub fn overlay_due(&self) -> bool {
        self.ddl_in_transaction && self.overlay_stale
    }

    /// The catalog now includes the transaction's own changes (the caller
    /// installed it with `update_inputs`).
    pub fn overlay_read(&mut self) {
        self.overlay_stale = false;
        self.overlay_rebase = false;
        self.unread_change = false;
    }

    /// The next read of the transaction's changes may build on the last
    /// one (only rows written since; see `CatalogRead::after_command`).
    pub fn overlay_builds_on_last(&self) -> bool {
        !self.overlay_rebase
    }

    /// True when the guard owes the client nothing: safe to swap inputs.
    pub fn is_quiet(&self) -> bool {
        self.expect.is_empty()
    }

    /// The session has temporary relations: `pg_temp` is searched first,
    /// as PostgreSQL does for relations.
    pub fn set_temp_schema(&mut self, present: bool) {
        self.temp_schema = present;
    }

    /// Keeps what the client wrote that an error may name back: the text
    /// of a Query or Parse (its first `SAID_BYTES`), the names of a Parse,
    /// Bind, Describe, Close or Execute. Kept until the session is idle.
    fn remember_said(&mut self, msg: &[u8]) {
        let (text, names): (Option<&[u8]>, [&[u8]; 2]) = match msg[0] {
            b'Q' => (wire::query_text(msg), [b"", b""]),
            b'P' => match wire::parse_msg(msg) {
                Some(p) => (Some(p.query), [p.name, b""]),
                None => (None, [b"", b""]),
            },
            b'B' => match wire::bind_msg(msg) {
                Some(b) => (None, [b.statement, b.portal]),
                None => (None, [b"", b""]),
            },
            b'D' | b'C' => (
                None,
                [wire::target_msg(msg).map_or(&b""[..], |(_, n)| n), b""],
            ),
            b'E' => (None, [wire::execute_portal(msg).unwrap_or_default(), b""]),
            _ => return,
        };
        let mut keep = |write: &dyn Fn(&mut Vec<u8>)| {
            let mut kept = match self.said.len() {
                SAID_KEPT => self.said.pop_front().unwrap_or_default(),
                _ => Vec::new(),
            };
            kept.clear();
            write(&mut kept);
            self.said.push_back(kept);
        };
        if let Some(text) = text {
            keep(&|kept| kept.extend_from_slice(&text[..text.len().min(SAID_BYTES)]));
        }
        for name in names.into_iter().filter(|n| !n.is_empty()) {
            // Quoted, so the scanner reads it as one name.
            keep(&|kept| {
                kept.push(b'"');
                for &b in name.iter().take(SAID_BYTES) {
                    kept.push(b);
                    if b == b'"' {
                        kept.push(b'"');
                    }
                }
                kept.push(b'"');
            });
        }
    }

    /// The names in what the client recently wrote, as the server reads
    /// them: an error or notice may show these back (`relation "t" does
    /// not exist`), since the client knows them.
    fn said_names(&self) -> Vec<String> {
        self.said
            .iter()
            .flat_map(|text| crate::analyze::pg_lex::names(&String::from_utf8_lossy(text)))
            .collect()
    }

    /// The last message in flight that makes or closes the statement
    /// (`S`) or portal (`P`) of this name: its expectation's index.
    fn last_change(&self, kind: u8, name: &[u8]) -> Option<usize> {
        self.expect.iter().rposition(|e| match e {
            Expect::ParseComplete {
                pending: Some((n, _)),
                ..
            } => kind == b'S' && n.as_slice() == name,
            Expect::BindComplete {
                pending: Some((n, _)),
            } => kind == b'P' && n.as_slice() == name,
            Expect::CloseComplete {
                target: Some((k, n)),
                ..
            } => *k == kind && n.as_slice() == name,
            _ => false,
        })
    }

    /// A message that makes or closes this name is in an earlier segment
    /// of the pipeline (a Sync lies between it and now) and is not
    /// answered yet: whether the server ran it, skipped it (after an
    /// earlier error of its segment) or failed it is not known, so neither
    /// its statement nor the one before it can be taken for the name.
    fn unsettled(&self, kind: u8, name: &[u8]) -> bool {
        self.last_change(kind, name).is_some_and(|i| {
            self.expect
                .iter()
                .skip(i)
                .any(|e| matches!(e, Expect::Sync))
        })
    }

    /// The client message uses a statement or portal whose last change is
    /// unsettled (see `unsettled`): the relay sends nothing more until the
    /// server has answered the pipeline's earlier segments
    /// (`awaits_earlier_segments`), then hands the message over again.
    /// Messages that make or close a name need not wait: their own answer
    /// settles them in order.
    pub fn waits_for_answers(&self, msg: &[u8]) -> bool {
        if !matches!(self.copy_in, CopyIn::Idle) {
            // The guard holds them itself until COPY's first answer; those
            // it then takes up are judged as unsettled (refused or
            // withheld), never by a guess.
            return false;
        }
        match msg.first() {
            Some(b'B') => wire::bind_msg(msg).is_some_and(|b| self.unsettled(b'S', b.statement)),
            Some(b'D') => wire::target_msg(msg).is_some_and(|(k, n)| self.unsettled(k, n)),
            Some(b'E') => wire::execute_portal(msg).is_some_and(|p| self.unsettled(b'P', p)),
            _ => false,
        }
    }

    /// A Sync the client sent is not answered yet.
    pub fn awaits_earlier_segments(&self) -> bool {
        self.expect.iter().any(|e| matches!(e, Expect::Sync))
    }

    /// A prepared statement by name: as the last message in flight that
    /// makes or closes it leaves it (later messages of the same pipeline
    /// segment run only if that one did), else as parsed.
    fn statement(&self, name: &[u8]) -> Option<&Prepared> {
        match self.last_change(b'S', name) {
            Some(i) => match self.expect.get(i) {
                Some(Expect::ParseComplete {
                    pending: Some((_, p)),
                    ..
                }) => Some(p.as_ref()),
                _ => None,
            },
            None => self.statements.get(name),
        }
    }

    fn statement_mut(&mut self, name: &[u8]) -> Option<&mut Prepared> {
        match self.last_change(b'S', name) {
            Some(i) => match self.expect.get_mut(i) {
                Some(Expect::ParseComplete {
                    pending: Some((_, p)),
                    ..
                }) => Some(p.as_mut()),
                _ => None,
            },
            None => self.statements.get_mut(name),
        }
    }

    /// A portal by name, as `statement` finds statements.
    fn portal(&self, name: &[u8]) -> Option<&Portal> {
        match self.last_change(b'P', name) {
            Some(i) => match self.expect.get(i) {
                Some(Expect::BindComplete {
                    pending: Some((_, p)),
                }) => Some(p.as_ref()),
                _ => None,
            },
            None => self.portals.get(name),
        }
    }

    fn portal_mut(&mut self, name: &[u8]) -> Option<&mut Portal> {
        match self.last_change(b'P', name) {
            Some(i) => match self.expect.get_mut(i) {
                Some(Expect::BindComplete {
                    pending: Some((_, p)),
                }) => Some(p.as_mut()),
                _ => None,
            },
            None => self.portals.get_mut(name),
        }
    }

    /// What Execute or Describe of a portal runs when the name is a cursor
    /// DECLAREd in SQL (cursors are portals): the cursor's plan.
    fn cursor_binding(&self, name: &[u8]) -> Option<Arc<Binding>> {
        let name = lossy(name);
        let plan = self.cursors.get(&name)?.clone();
        Some(Arc::new(Binding {
            registration: None,
            plan,
            copy: None,
            note: self.named_notes.get(&(true, name)).cloned().flatten(),
            verbatim: false,
        }))
    }

    /// Every portal the session has or is making.
    fn all_portals(&self) -> impl Iterator<Item = &Portal> {
        let in_flight = self.expect.iter().filter_map(|e| match e {
            Expect::BindComplete {
                pending: Some((_, p)),
            } => Some(p.as_ref()),
            _ => None,
        });
        self.portals.values().chain(in_flight)
    }

    /// Handles one complete client message, appending what to send upstream.
    pub fn client_message(&mut self, msg: &[u8], out: &mut BytesMut) {
        match &mut self.copy_in {
            CopyIn::Awaiting { held } => return held.extend_from_slice(msg),
            CopyIn::Active => match msg[0] {
                b'S' => return,
                b'c' | b'f' => {
                    self.copy_in = CopyIn::Idle;
                    return out.extend_from_slice(msg);
                }
                _ => {}
            },
            CopyIn::Idle => {}
        }
        self.remember_said(msg);
        if matches!(msg[0], b'Q' | b'P') && mentions_temp(msg) {
            self.effects.temp_mentioned = true;
        }
        if matches!(msg[0], b'Q' | b'P') && mentions_unique(msg) {
            self.key_ddl = true;
        }
        if msg[0] == b'B' {
            // Only a DDL statement can make an index: its text is read
            // again, not that of every statement bound.
            let bound = wire::bind_msg(msg).and_then(|b| self.statement(b.statement));
            if bound.is_some_and(|s| s.ddl && mentions_unique(s.sql.as_bytes())) {
                self.key_ddl = true;
            }
        }
        match msg[0] {
            b'Q' => self.client_query(msg, out),
            b'P' => self.client_parse(msg, out),
            b'B' => self.client_bind(msg, out),
            b'D' => {
                match wire::target_msg(msg) {
                    Some((b'S', name)) => self.expect.push_back(Expect::DescribeStatement {
                        name: name.to_vec(),
                    }),
                    Some((_, name)) => {
                        let binding = match self.portal_mut(name) {
                            Some(p) => {
                                p.described = true;
                                Some(Arc::clone(&p.binding))
                            }
                            None => self.cursor_binding(name),
                        };
                        self.expect.push_back(Expect::DescribePortal {
                            portal: name.to_vec(),
                            binding,
                            swallow: false,
                        })
                    }
                    None => {}
                }
                out.extend_from_slice(msg);
            }
            b'E' => {
                let name = wire::execute_portal(msg).unwrap_or_default();
                let restricted = self.inputs.view.is_restricted();
                let runs_to_end = wire::execute_max_rows(msg) == Some(0);
                let mut changes = (false, false);
                // Unsettled only when the relay could not wait (see
                // `waits_for_answers`): no plan, so its rows are withheld.
                let unsettled = self.unsettled(b'P', name);
                let portal = self.portal_mut(name).filter(|_| !unsettled);
                let (binding, masker, copy_in, needs_shape) = match portal {
                    Some(p) => {
                        // Run to completion, it runs nothing more later.
                        if runs_to_end {
                            p.follows = false;
                        }
                        changes = (p.ddl, p.sets_search_path);
                        // Rows of a portal whose shape pgveil has not seen
                        // need a description first: ask for one and keep it
                        // to ourselves. Every result a restricted role
                        // receives is checked against its RowDescription
                        // (defence in depth), so even an Allow plan needs one.
                        let needs_shape = restricted && p.masker.is_none() && !p.described;
                        (
                            Some(Arc::clone(&p.binding)),
                            p.masker.clone(),
                            p.copy_in,
                            needs_shape,
                        )
                    }
                    // A cursor DECLAREd in SQL is a portal too.
                    None => match self.cursor_binding(name).filter(|_| !unsettled) {
                        Some(b) => (Some(b), None, false, restricted),
                        None => (None, None, false, false),
                    },
                };
                let (ddl, sets_search_path) = changes;
                // Parse only planned the DDL; it takes effect here.
                if ddl {
                    self.ddl_in_transaction = true;
                    self.overlay_stale = true;
                }
                if sets_search_path {
                    self.search_path_unsure = true;
                    self.search_path_pending = true;
                }
                if needs_shape {
                    wire::encode_describe(out, b'P', name);
                    self.expect.push_back(Expect::DescribePortal {
                        portal: name.to_vec(),
                        binding: binding.clone(),
                        swallow: true,
                    });
                }
                self.expect.push_back(Expect::Execute { binding, masker });
                out.extend_from_slice(msg);
                if copy_in {
                    wire::encode_flush(out);
                    self.copy_in = CopyIn::Awaiting {
                        held: BytesMut::new(),
                    };
                }
            }
            b'C' => {
                // Closed once the server answers (it skips a Close after
                // an error of its pipeline segment).
                let target = wire::target_msg(msg).map(|(k, n)| (k, n.to_vec()));
                self.expect.push_back(Expect::CloseComplete {
                    swallow: false,
                    target,
                });
                out.extend_from_slice(msg);
            }
            b'S' => {
                self.expect.push_back(Expect::Sync);
                out.extend_from_slice(msg);
            }
            b'F' => {
                // Fast-path function calls name a function by OID and bypass
                // SQL entirely (see `fastpath`).
                if let Some(reason) = self.fast_path_refusal(msg) {
                    let note = Arc::new(StatementNote {
                        fingerprint: self.observed.fingerprints.then(|| {
                            crate::observe::fingerprint::fingerprint("<fast-path function call>")
                        }),
                        columns: Vec::new(),
                        extended: true,
                    });
                    self.audit_block(&reason, note);
                    wire::encode_query(out, &block_sql(&reason));
                } else {
                    out.extend_from_slice(msg);
                }
                self.expect.push_back(Expect::Query {
                    plans: vec![StatementPlan::Allow],
                    at: 0,
                    copy: None,
                    registrations: Vec::new(),
                    notes: Vec::new(),
                    verbatim: Vec::new(),
                });
            }
            _ => out.extend_from_slice(msg),
        }
    }

    /// Handles one complete server message, appending what to send the client.
    pub fn server_message(&mut self, msg: &[u8], out: &mut BytesMut) {
        let ty = msg[0];
        // The first answer to the Execute of a COPY FROM: CopyInResponse,
        // or an error, or CommandComplete (COPY FROM a file), or any error
        // before it (the pipeline is then skipped up to the Sync).
        let copy_answer = match (&self.copy_in, ty) {
            (CopyIn::Awaiting { .. }, b'G' | b'E') => true,
            (CopyIn::Awaiting { .. }, b'C' | b'I') => {
                matches!(self.expect.front(), Some(Expect::Execute { .. }))
                    && self.expect.len() == 1
            }
            _ => false,
        };
        self.server_message_paired(msg, out);
        if copy_answer {
            let held = match std::mem::replace(&mut self.copy_in, CopyIn::Idle) {
                CopyIn::Awaiting { held } => held,
                _ => BytesMut::new(),
            };
            if ty == b'G' {
                self.copy_in = CopyIn::Active;
            }
            let mut released = BytesMut::new();
            for m in crate::net::codec::frames(&held) {
                self.client_message(m, &mut released);
            }
            self.to_server.extend_from_slice(&released);
        } else if ty == b'G' {
            // COPY FROM STDIN of a simple Query.
            self.copy_in = CopyIn::Active;
        } else if matches!(ty, b'E' | b'Z') && matches!(self.copy_in, CopyIn::Active) {
            // The server left copy-in mode on an error: the next Sync counts.
            self.copy_in = CopyIn::Idle;
        }
    }

    fn server_message_paired(&mut self, msg: &[u8], out: &mut BytesMut) {
        let ty = msg[0];
        if ty == b'C' {
            let tag = wire::command_tag(msg);
            if tag.starts_with(b"DISCARD ALL") || tag.starts_with(b"DISCARD TEMP") {
                // The session's temporary relations are gone: read them
                // again (and the catalog) before the next statement.
                self.effects.own_ddl = true;
                self.effects.temp_mentioned = true;
                self.effects.catalog_stale = true;
            }
            if !crate::analyze::catalog::command_is_catalog_neutral(tag)
                && !crate::analyze::catalog::is_plain_index(tag, self.key_ddl)
            {
                self.unread_change = true;
                self.tx_change = true;
            }
        }
        match ty {
            b'N' if self.verbatim() => return out.extend_from_slice(msg),
            b'N' => return self.scrub(msg, out),
            b'A' => return self.notification(msg, out),
            b'S' => {
                if let Some(value) = parameter_status(msg, b"client_encoding") {
                    self.set_client_encoding(value);
                }
                // Every change of it (SET, RESET, a function's SET clause,
                // the end of a transaction) is reported here.
                if let Some(value) = parameter_status(msg, b"standard_conforming_strings") {
                    self.set_standard_conforming_strings(value);
                }
                return out.extend_from_slice(msg);
            }
            b'Z' => {
                // Everything up to the Sync or Query this answers is done.
                while let Some(e) = self.expect.pop_front() {
                    if matches!(e, Expect::Sync | Expect::Query { .. }) {
                        break;
                    }
                }
                if self.expect.is_empty() {
                    self.key_ddl = false;
                    self.said.clear();
                }
                self.rows = None;
                self.copy = None;
                self.withholding = false;
                self.result = observe::ResultTally::default();
                self.tx_status = msg.get(5).copied().unwrap_or(b'I');
                if self.tx_status == b'I' {
                    // Portals end with their transaction (cursors WITH HOLD
                    // are cursors).
                    self.portals.clear();
                }
                // DDL that changed nothing the catalog holds (CREATE INDEX,
                // COMMENT, GRANT …) needs no read of the catalog.
                if self.ddl_in_transaction && !self.unread_change {
                    self.overlay_stale = false;
                }
                if msg.get(5) == Some(&b'I') && self.ddl_in_transaction {
                    // The schema change is committed (or rolled back): every
                    // session's catalog must be read again, and this one's
                    // view of its transaction is dropped.
                    self.ddl_in_transaction = false;
                    self.overlay_stale = false;
                    self.overlay_rebase = false;
                    if self.tx_change {
                        self.effects.catalog_stale = true;
                        self.effects.own_ddl = true;
                    }
                }
                if msg.get(5) == Some(&b'I') {
                    self.unread_change = false;
                    self.tx_change = false;
                }
                return out.extend_from_slice(msg);
            }
            b'E' => {
                // Decided before the expectations move on.
                let verbatim = self.verbatim();
                self.rows = None;
                if !self.withholding {
                    self.statement_failed();
                }
                match self.expect.front() {
                    Some(Expect::Query { .. }) => {}
                    front => {
                        // A failed Parse of the unnamed statement dropped the
                        // one before it; a failed Bind may have dropped the
                        // portal of its name. The messages after it are
                        // skipped and change nothing.
                        match front {
                            Some(Expect::ParseComplete {
                                pending: Some((name, _)),
                                ..
                            }) if name.is_empty() => {
                                self.statements.remove(name);
                            }
                            Some(Expect::BindComplete {
                                pending: Some((name, _)),
                            }) => {
                                self.portals.remove(name);
                            }
                            _ => {}
                        }
                        // Extended protocol: the server skips to the next Sync.
                        while let Some(e) = self.expect.front() {
                            if matches!(e, Expect::Sync) {
                                break;
                            }
                            self.expect.pop_front();
                        }
                    }
                }
                if self.withholding {
                    return;
                }
                if let Some(own) = refusal::own_refusal(msg) {
                    return out.extend_from_slice(&own);
                }
                if verbatim {
                    return out.extend_from_slice(msg);
                }
                return self.scrub(msg, out);
            }
            _ => {}
        }
        if self.withholding {
            return;
        }
        match ty {
            b'1' => {
                if let Some(Expect::ParseComplete { .. }) = self.expect.front() {
                    if let Some(Expect::ParseComplete { swallow, pending }) =
                        self.expect.pop_front()
                    {
                        if let Some((name, prepared)) = pending {
                            // It replaced any SQL PREPARE of that name.
                            self.sql_prepared.remove(&lossy(&name));
                            self.statements.insert(name, *prepared);
                        }
                        if swallow {
                            return;
                        }
                    }
                }
                out.extend_from_slice(msg);
            }
            b'2' => {
                if let Some(Expect::OwnBindComplete) = self.expect.front() {
                    self.expect.pop_front();
                    return;
                }
                if let Some(Expect::BindComplete { .. }) = self.expect.front() {
                    if let Some(Expect::BindComplete {
                        pending: Some((name, portal)),
                    }) = self.expect.pop_front()
                    {
                        // A portal is also a cursor's name: it replaced it.
                        self.cursors.remove(&lossy(&name));
                        self.portals.insert(name, *portal);
                    }
                }
                out.extend_from_slice(msg);
            }
            b'3' => {
                if let Some(Expect::CloseComplete { .. }) = self.expect.front() {
                    if let Some(Expect::CloseComplete { swallow, target }) = self.expect.pop_front()
                    {
                        match target {
                            Some((b'S', name)) => {
                                self.sql_prepared.remove(&lossy(&name));
                                self.statements.remove(&name);
                            }
                            Some((_, name)) => {
                                self.cursors.remove(&lossy(&name));
                                self.portals.remove(&name);
                            }
                            None => {}
                        }
                        if swallow {
                            return;
                        }
                    }
                }
                out.extend_from_slice(msg);
            }
            b't' => out.extend_from_slice(msg),
            b'T' => self.row_description(msg, out),
            b'n' => {
                let swallow = match self.expect.front() {
                    Some(Expect::DescribeStatement { .. }) => false,
                    Some(Expect::DescribePortal {
                        portal,
                        binding,
                        swallow,
                    }) => {
                        let (portal, binding, swallow) =
                            (portal.clone(), binding.clone(), *swallow);
                        self.install_masker(&portal, binding.as_ref(), Arc::default());
                        swallow
                    }
                    _ => false,
                };
                if matches!(
                    self.expect.front(),
                    Some(Expect::DescribeStatement { .. } | Expect::DescribePortal { .. })
                ) {
                    self.expect.pop_front();
                }
                if !swallow {
                    out.extend_from_slice(msg);
                }
            }
            b'D' => self.data_row(msg, out),
            b'H' => self.copy_out_response(msg, out),
            b'd' => self.copy_data(msg, out),
            b'c' => {
                self.copy = None;
                out.extend_from_slice(msg);
            }
            b'C' | b'I' => {
                self.statement_done(msg);
                self.rows = None;
                let mut confirmed = Vec::new();
                match self.expect.front_mut() {
                    Some(Expect::Query {
                        at, registrations, ..
                    }) => {
                        let done = *at;
                        registrations.retain(|(i, r)| {
                            if *i == done {
                                confirmed.push(r.clone());
                            }
                            *i != done
                        });
                        *at += 1;
                    }
                    Some(Expect::Execute { binding, .. }) => {
                        if let Some(r) = binding.as_ref().and_then(|b| b.registration.clone()) {
                            confirmed.push(r);
                        }
                        self.expect.pop_front();
                    }
                    _ => {}
                }
                for r in confirmed {
                    self.commit(r);
                }
                out.extend_from_slice(msg);
            }
            b's' => {
                self.statement_done(msg);
                if let Some(Expect::Execute { .. }) = self.expect.front() {
                    self.expect.pop_front();
                }
                out.extend_from_slice(msg);
            }
            _ => out.extend_from_slice(msg),
        }
    }
}

impl Guard {
    /// The statement the server is running only raises constant messages
    /// (a DO block of `RAISE … 'text'`, see `pg_tree::raise_only`): its
    /// errors and notices carry the client's own text and a fixed CONTEXT,
    /// so they reach the client as the server sent them.
    fn verbatim(&self) -> bool {
        match self.expect.front() {
            Some(Expect::Query { at, verbatim, .. }) => verbatim.get(*at).copied().unwrap_or(false),
            Some(Expect::Execute {
                binding: Some(b), ..
            }) => b.verbatim,
            _ => false,
        }
    }
}

fn parameter_status<'a>(msg: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let body = msg.get(5..)?;
    let end = body.iter().position(|&b| b == 0)?;
    if &body[..end] != name {
        return None;
    }
    let rest = &body[end + 1..];
    let vend = rest.iter().position(|&b| b == 0)?;
    Some(&rest[..vend])
}

/// How many texts and names `said` keeps, and of how many bytes each: a
/// statement's error names what the client wrote for it or just before.
const SAID_KEPT: usize = 8;
const SAID_BYTES: usize = 4096;

/// True when `msg` holds `temp` in any letter case.
fn mentions_temp(msg: &[u8]) -> bool {
    msg.windows(4).any(|w| w.eq_ignore_ascii_case(b"temp"))
}

/// Whether a statement's text could make a unique index: CREATE INDEX
/// spells it UNIQUE (keywords cannot be escaped), so text without the word
/// makes a plain index, which changes no key.
fn mentions_unique(msg: &[u8]) -> bool {
    msg.windows(6).any(|w| w.eq_ignore_ascii_case(b"unique"))
}
