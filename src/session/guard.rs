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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::BytesMut;

use super::copy_text::{self, CopyText};
use super::wire::{self, Field};
use crate::analyze::plan::{BlockReason, StatementPlan};
use crate::analyze::policy_view::{ColumnAction, PolicyView, QualifiedColumn};
use crate::analyze::{Analyzer, Catalog, PlannedStatement, SessionContext, StatementKind};
use crate::mask::{Mask, WireFormat};
use crate::policy::PolicySet;

/// Name of the server-side statement pgveil uses to raise its errors.
const BLOCK_STATEMENT: &[u8] = b"pgveil_blocked";

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

/// Masks applied to the columns of one result shape.
#[derive(Clone, Default)]
struct RowMasker {
    columns: Vec<(usize, Mask, u32, WireFormat)>,
    /// A denied column the analyzer missed: the result is withheld.
    withheld: Option<String>,
}

impl RowMasker {
    fn is_empty(&self) -> bool {
        self.columns.is_empty() && self.withheld.is_none()
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
}

struct Prepared {
    registration: Option<Registration>,
    sql: String,
    plan: StatementPlan,
    copy: Option<CopyText>,
    version: (u64, u64),
    fields: Option<Vec<Field>>,
}

struct Portal {
    registration: Option<Registration>,
    plan: StatementPlan,
    copy: Option<CopyText>,
    fields: Option<Vec<Field>>,
    masker: Option<RowMasker>,
}

/// A server response the session is waiting for, in order.
enum Expect {
    ParseComplete {
        swallow: bool,
        /// A named statement takes effect only once the server parsed it: a
        /// failed Parse (name already in use) must not replace its plan.
        pending: Option<(Vec<u8>, Box<Prepared>)>,
    },
    BindComplete,
    CloseComplete {
        swallow: bool,
    },
    DescribeStatement {
        name: Vec<u8>,
    },
    DescribePortal {
        portal: Vec<u8>,
        swallow: bool,
    },
    Execute {
        portal: Vec<u8>,
    },
    Sync,
    Query {
        plans: Vec<StatementPlan>,
        at: usize,
        /// Text-format options of a single `COPY … TO STDOUT` to mask.
        copy: Option<CopyText>,
        /// Names to record when statement N completes.
        registrations: Vec<(usize, Registration)>,
    },
}

/// Masks applied to the rows of a running `COPY … TO STDOUT`.
struct CopyMasker {
    fmt: CopyText,
    columns: Vec<(usize, Mask, u32)>,
    header_pending: bool,
}

/// What the relay must do besides forwarding.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Effects {
    /// DDL went through: reload the catalog before the next statement.
    pub catalog_stale: bool,
    /// This session's own DDL committed: its temporary relations may have
    /// changed too.
    pub own_ddl: bool,
}

/// Counters the relay turns into metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub blocked: u64,
    pub masked_values: u64,
    pub masked_results: u64,
    pub withheld_results: u64,
}

pub struct Guard {
    /// Login role, for the audit log.
    role: String,
    inputs: PlanInputs,
    ctx: SessionContext,
    statements: HashMap<Vec<u8>, Prepared>,
    portals: HashMap<Vec<u8>, Portal>,
    sql_prepared: HashMap<String, StatementPlan>,
    cursors: HashMap<String, StatementPlan>,
    /// Names declared by the message being planned, not yet confirmed.
    staged: Vec<(usize, Registration)>,
    expect: VecDeque<Expect>,
    rows: Option<RowMasker>,
    copy: Option<CopyMasker>,
    /// After pgveil withheld a result: drop responses until ReadyForQuery.
    withholding: bool,
    /// DDL ran in the open transaction: pgveil's catalog (read over its own
    /// connection) cannot see it until commit, so later statements of the
    /// transaction are refused.
    ddl_in_transaction: bool,
    /// The session created temporary relations (see `set_temp_schema`).
    temp_schema: bool,
    /// search_path was changed in a way the server may undo.
    search_path_unsure: bool,
    relation_index: HashMap<u32, usize>,
    relation_index_generation: Option<u64>,
    utf8: bool,
    pub effects: Effects,
    pub tally: Tally,
}

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

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn format_of(formats: &[i16], i: usize) -> WireFormat {
    let code = match formats.len() {
        0 => 0,
        1 => formats[0],
        _ => formats.get(i).copied().unwrap_or(0),
    };
    if code == 1 {
        WireFormat::Binary
    } else {
        WireFormat::Text
    }
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
            cursors: HashMap::new(),
            staged: Vec::new(),
            expect: VecDeque::new(),
            rows: None,
            copy: None,
            withholding: false,
            ddl_in_transaction: false,
            temp_schema: false,
            search_path_unsure: false,
            relation_index: HashMap::new(),
            relation_index_generation: None,
            utf8: true,
            effects: Effects::default(),
            tally: Tally::default(),
        }
    }

    /// One audit line per rejected statement: who, where, which rule.
    fn audit_block(&mut self, reason: &BlockReason) {
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

    /// New policy or catalog for statements that start from now on.
    pub fn update_inputs(&mut self, inputs: PlanInputs) {
        self.inputs = inputs;
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
        if outside_transaction {
            self.search_path_unsure = false;
        }
    }

    /// Tracks `client_encoding`: masks work on UTF-8 text only.
    pub fn set_client_encoding(&mut self, value: &[u8]) {
        let v = lossy(value).to_ascii_uppercase().replace(['-', '_'], "");
        self.utf8 = v == "UTF8" || v == "UNICODE";
    }

    /// True when a Query or Parse in `buf` names something the catalog lacks
    /// (a table created since it was read): worth one catalog reload.
    pub fn needs_fresh_catalog(&self, buf: &[u8]) -> bool {
        crate::net::codec::frames(buf).any(|msg| {
            let sql = match msg[0] {
                b'Q' => wire::query_text(msg),
                b'P' => wire::parse_msg(msg).map(|p| p.query),
                _ => None,
            };
            // The cached analysis alone tells (no plan derivation).
            sql.is_some_and(|sql| {
                self.inputs
                    .analyzer
                    .analyse(&lossy(sql), &self.analysis_ctx(), &self.inputs.catalog)
                    .iter()
                    .any(|a| {
                        a.effects
                            .hazards
                            .iter()
                            .any(|h| h.rule == crate::analyze::lineage::HazardRule::UnknownName)
                    })
            })
        })
    }

    /// DDL of the open transaction is not visible to pgveil's catalog
    /// connection yet (and reading it could wait on this session's locks).
    pub fn holds_uncommitted_ddl(&self) -> bool {
        self.ddl_in_transaction
    }

    /// True when the guard owes the client nothing: safe to swap inputs.
    pub fn is_quiet(&self) -> bool {
        self.expect.is_empty()
    }

    /// Emptying search_path (pg_dump's first statement) only makes name
    /// resolution stricter: unqualified names then resolve to pg_catalog
    /// alone, for pgveil and the server alike. Allowed, and followed at once.
    fn allow_empty_search_path(&mut self, planned: &mut [PlannedStatement], sql: &str) {
        let [p] = planned else { return };
        let StatementPlan::Block(reason) = &p.plan else {
            return;
        };
        if reason.rule != "search-path-change" {
            return;
        }
        let empties = match &p.kind {
            StatementKind::SetSearchPath {
                schemas: Some(schemas),
            } => schemas.iter().all(|s| s.is_empty()),
            _ => {
                // Only the exact call, whitespace and case aside.
                let squeezed: String = sql
                    .trim()
                    .trim_end_matches(';')
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect::<String>()
                    .to_ascii_lowercase();
                matches!(
                    squeezed.as_str(),
                    "selectpg_catalog.set_config('search_path','',false)"
                        | "selectset_config('search_path','',false)"
                        // pg_dump 15.8+ / 16.4+: forbids reading views and
                        // foreign tables, which only narrows what it can do.
                        | "selectset_config(name,'view,foreign-table',false)frompg_settingswherename='restrict_nonsystem_relation_kind'"
                )
            }
        };
        if empties {
            p.plan = StatementPlan::Allow;
            self.ctx.search_path = Vec::new();
            // ROLLBACK, SET LOCAL or a failed transaction can undo it on the
            // server: ask the server again until a transaction boundary.
            self.search_path_unsure = true;
        }
    }

    /// The session has temporary relations: `pg_temp` is searched first,
    /// as PostgreSQL does for relations.
    pub fn set_temp_schema(&mut self, present: bool) {
        self.temp_schema = present;
    }

    /// The context names resolve in: the session's search_path, with
    /// `pg_temp` first once the session has temporary relations.
    fn analysis_ctx(&self) -> std::borrow::Cow<'_, SessionContext> {
        if self.temp_schema && !self.ctx.search_path.iter().any(|s| s == "pg_temp") {
            let mut path = vec!["pg_temp".to_string()];
            path.extend(self.ctx.search_path.iter().cloned());
            std::borrow::Cow::Owned(SessionContext {
                database: self.ctx.database.clone(),
                search_path: path,
            })
        } else {
            std::borrow::Cow::Borrowed(&self.ctx)
        }
    }

    fn plan(&self, sql: &str) -> Vec<PlannedStatement> {
        let inputs = &self.inputs;
        let ctx = self.analysis_ctx();
        let mut planned = inputs.analyzer.plan(
            sql,
            &ctx,
            &inputs.catalog,
            inputs.view.as_ref(),
            inputs.policy.version(),
        );
        if !self.utf8 && inputs.view.is_restricted() {
            for p in &mut planned {
                if !matches!(p.plan, StatementPlan::Allow) {
                    p.plan = StatementPlan::Block(BlockReason {
                        reason: "masked roles must use client_encoding UTF8".into(),
                        rule: "client-encoding".into(),
                        column: None,
                        hint:
                            "SET client_encoding TO 'UTF8' (or connect with client_encoding=UTF8)."
                                .into(),
                    });
                }
            }
        }
        planned
    }

    /// A prepared statement by name: one whose Parse is still in flight
    /// first (later messages of the same pipeline use it), then the parsed.
    fn statement(&self, name: &[u8]) -> Option<&Prepared> {
        self.expect
            .iter()
            .rev()
            .find_map(|e| match e {
                Expect::ParseComplete {
                    pending: Some((n, p)),
                    ..
                } if n.as_slice() == name => Some(p.as_ref()),
                _ => None,
            })
            .or_else(|| self.statements.get(name))
    }

    fn statement_mut(&mut self, name: &[u8]) -> Option<&mut Prepared> {
        let in_flight = self.expect.iter().rposition(|e| {
            matches!(e, Expect::ParseComplete { pending: Some((n, _)), .. } if n.as_slice() == name)
        });
        match in_flight {
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

    fn stage(&mut self, index: usize, cursor: bool, name: &str, plan: &StatementPlan) {
        self.staged.push((
            index,
            Registration {
                cursor,
                name: name.to_string(),
                plan: plan.clone(),
            },
        ));
    }

    /// The plan behind a cursor or prepared-statement name: one declared
    /// earlier in the same message first, then the confirmed ones.
    fn lookup(&self, cursor: bool, name: &str) -> Option<StatementPlan> {
        if let Some((_, r)) = self
            .staged
            .iter()
            .rev()
            .find(|(_, r)| r.cursor == cursor && r.name == name)
        {
            return Some(r.plan.clone());
        }
        let map = if cursor {
            &self.cursors
        } else {
            &self.sql_prepared
        };
        map.get(name).cloned()
    }

    /// The server confirmed a DECLARE or PREPARE: its name now stands for
    /// this plan.
    fn commit(&mut self, r: Registration) {
        let map = if r.cursor {
            &mut self.cursors
        } else {
            &mut self.sql_prepared
        };
        map.insert(r.name, r.plan);
    }

    /// Applies the session bookkeeping of one planned statement and returns
    /// the plan that governs its rows.
    fn settle(&mut self, p: &PlannedStatement, index: usize) -> StatementPlan {
        let restricted = self.inputs.view.is_restricted();
        let unknown = |what: &str, name: &str| {
            StatementPlan::Block(BlockReason {
                reason: format!("{what} \"{name}\" was not declared through pgveil"),
                rule: "unknown-origin".into(),
                column: None,
                hint: "Declare it in this session so pgveil can see its query.".into(),
            })
        };
        match &p.kind {
            StatementKind::DeclareCursor { name } => {
                self.stage(index, true, name, &p.plan);
                p.plan.clone()
            }
            StatementKind::Fetch { cursor } => match self.lookup(true, cursor) {
                Some(plan) => plan,
                None if restricted => unknown("cursor", cursor),
                None => StatementPlan::Allow,
            },
            StatementKind::Close { cursor } => {
                forget(&mut self.cursors, cursor.as_ref());
                p.plan.clone()
            }
            StatementKind::Prepare { name } => {
                self.stage(index, false, name, &p.plan);
                // PREPARE itself returns no rows.
                match &p.plan {
                    StatementPlan::Block(b) => StatementPlan::Block(b.clone()),
                    _ => StatementPlan::Allow,
                }
            }
            StatementKind::Execute { name } => match self.lookup(false, name) {
                Some(plan) => plan,
                None if restricted => unknown("prepared statement", name),
                None => StatementPlan::Allow,
            },
            StatementKind::Deallocate { name } => {
                forget(&mut self.sql_prepared, name.as_ref());
                p.plan.clone()
            }
            StatementKind::SetSearchPath { schemas } => {
                if !p.plan.is_block() {
                    if let Some(s) = schemas {
                        self.ctx.search_path = s.iter().filter(|x| !x.is_empty()).cloned().collect();
                    }
                }
                p.plan.clone()
            }
            StatementKind::Ddl | StatementKind::Unparsed { ddl: true } => {
                if !p.plan.is_block() {
                    self.ddl_in_transaction = true;
                }
                p.plan.clone()
            }
            StatementKind::Transaction | StatementKind::Setting | StatementKind::Show => {
                p.plan.clone()
            }
            _ if restricted && self.ddl_in_transaction => StatementPlan::Block(BlockReason {
                reason: "the schema changed in this transaction, and pgveil sees the change only once it is committed".into(),
                rule: "uncommitted-ddl".into(),
                column: None,
                hint: "Commit the schema change first, then run the statement.".into(),
            }),
            StatementKind::CopyTo { to_client: true } => match &p.plan {
                StatementPlan::Mask { columns } if !columns.is_empty() => {
                    StatementPlan::Block(BlockReason {
                        reason: "COPY TO STDOUT of masked columns is masked only in text format, as a statement of its own in the simple protocol".into(),
                        rule: "copy-masked".into(),
                        column: columns.first().map(|c| c.source.clone()),
                        hint: "Use COPY … TO STDOUT in text format on its own, or SELECT.".into(),
                    })
                }
                other => other.clone(),
            },
            _ => p.plan.clone(),
        }
    }

    /// Handles one complete client message, appending what to send upstream.
    pub fn client_message(&mut self, msg: &[u8], out: &mut BytesMut) {
        match msg[0] {
            b'Q' => self.client_query(msg, out),
            b'P' => self.client_parse(msg, out),
            b'B' => self.client_bind(msg, out),
            b'D' => {
                match wire::target_msg(msg) {
                    Some((b'S', name)) => self.expect.push_back(Expect::DescribeStatement {
                        name: name.to_vec(),
                    }),
                    Some((_, name)) => self.expect.push_back(Expect::DescribePortal {
                        portal: name.to_vec(),
                        swallow: false,
                    }),
                    None => {}
                }
                out.extend_from_slice(msg);
            }
            b'E' => {
                let portal = wire::execute_portal(msg).unwrap_or_default().to_vec();
                // Rows of a portal whose shape pgveil has not seen need a
                // description first: ask for one and keep it to ourselves.
                // Every result a restricted role receives is checked against
                // its RowDescription (defence in depth), so even an Allow plan
                // needs one.
                let needs_shape = self.inputs.view.is_restricted()
                    && self
                        .portals
                        .get(&portal)
                        .is_some_and(|p| p.masker.is_none());
                if needs_shape {
                    wire::encode_describe(out, b'P', &portal);
                    self.expect.push_back(Expect::DescribePortal {
                        portal: portal.clone(),
                        swallow: true,
                    });
                }
                self.expect.push_back(Expect::Execute { portal });
                out.extend_from_slice(msg);
            }
            b'C' => {
                match wire::target_msg(msg) {
                    Some((b'S', name)) => {
                        self.statements.remove(name);
                    }
                    Some((_, name)) => {
                        self.portals.remove(name);
                    }
                    None => {}
                }
                self.expect
                    .push_back(Expect::CloseComplete { swallow: false });
                out.extend_from_slice(msg);
            }
            b'S' => {
                self.expect.push_back(Expect::Sync);
                out.extend_from_slice(msg);
            }
            b'F' => {
                // Fast-path function calls name a function by OID and bypass
                // SQL entirely: never for a restricted role.
                if self.inputs.view.is_restricted() {
                    let reason = BlockReason {
                        reason: "fast-path function calls are not allowed for masked roles".into(),
                        rule: "function-call".into(),
                        column: None,
                        hint: "Call the function with SELECT.".into(),
                    };
                    self.audit_block(&reason);
                    wire::encode_query(out, &block_sql(&reason));
                } else {
                    out.extend_from_slice(msg);
                }
                self.expect.push_back(Expect::Query {
                    plans: vec![StatementPlan::Allow],
                    at: 0,
                    copy: None,
                    registrations: Vec::new(),
                });
            }
            _ => out.extend_from_slice(msg),
        }
    }

    /// A lone `COPY … TO STDOUT` in text format with masks: its plan and
    /// options, so its rows are masked one by one.
    fn lone_copy(
        &self,
        planned: &[PlannedStatement],
        sql: &str,
    ) -> Option<(StatementPlan, CopyText)> {
        if self.ddl_in_transaction {
            return None;
        }
        let [p] = planned else { return None };
        if p.kind != (StatementKind::CopyTo { to_client: true })
            || !matches!(p.plan, StatementPlan::Mask { .. })
        {
            return None;
        }
        let fmt = copy_text::text_options(sql).ok()??;
        Some((
            p.plan.clone(),
            CopyText {
                columns: p.analysis.outputs.len(),
                ..fmt
            },
        ))
    }

    fn client_query(&mut self, msg: &[u8], out: &mut BytesMut) {
        let sql = lossy(wire::query_text(msg).unwrap_or_default());
        let mut planned = self.plan(&sql);
        self.allow_empty_search_path(&mut planned, &sql);
        if let Some((plan, fmt)) = self.lone_copy(&planned, &sql) {
            out.extend_from_slice(msg);
            self.expect.push_back(Expect::Query {
                plans: vec![plan],
                at: 0,
                copy: Some(fmt),
                registrations: Vec::new(),
            });
            return;
        }
        let mut plans = Vec::with_capacity(planned.len());
        let mut blocked = None;
        self.staged.clear();
        for (i, p) in planned.iter().enumerate() {
            let plan = self.settle(p, i);
            if let StatementPlan::Block(b) = &plan {
                blocked.get_or_insert_with(|| b.clone());
            }
            plans.push(plan);
        }
        match blocked {
            Some(reason) => {
                // Nothing of a blocked string runs, so nothing is recorded.
                self.staged.clear();
                self.audit_block(&reason);
                wire::encode_query(out, &block_sql(&reason));
                self.expect.push_back(Expect::Query {
                    plans: vec![StatementPlan::Allow],
                    at: 0,
                    copy: None,
                    registrations: Vec::new(),
                });
            }
            None => {
                out.extend_from_slice(msg);
                let registrations = std::mem::take(&mut self.staged);
                self.expect.push_back(Expect::Query {
                    plans,
                    at: 0,
                    copy: None,
                    registrations,
                });
            }
        }
    }

    fn client_parse(&mut self, msg: &[u8], out: &mut BytesMut) {
        let Some(parse) = wire::parse_msg(msg) else {
            out.extend_from_slice(msg);
            self.expect.push_back(Expect::ParseComplete {
                swallow: false,
                pending: None,
            });
            return;
        };
        let name = parse.name.to_vec();
        let sql = lossy(parse.query);
        let mut planned = self.plan(&sql);
        self.allow_empty_search_path(&mut planned, &sql);
        let copy = self.lone_copy(&planned, &sql);
        self.staged.clear();
        let plan = match planned.as_slice() {
            _ if copy.is_some() => copy
                .as_ref()
                .map(|c| c.0.clone())
                .unwrap_or(StatementPlan::Allow),
            [one] => self.settle(one, 0),
            // The server rejects several statements in one Parse itself.
            [] => StatementPlan::Allow,
            many => {
                let mut plan = StatementPlan::Allow;
                for (i, p) in many.iter().enumerate() {
                    let settled = self.settle(p, i);
                    if settled.is_block() || matches!(plan, StatementPlan::Allow) {
                        plan = settled;
                    }
                }
                plan
            }
        };
        // Even a blocked statement is parsed as sent: parsing executes
        // nothing, and the client gets the parameter and row descriptions it
        // expects. The block takes effect at Bind.
        out.extend_from_slice(msg);
        let prepared = Prepared {
            registration: self.staged.drain(..).map(|(_, r)| r).next(),
            sql,
            plan,
            copy: copy.map(|c| c.1),
            version: self.inputs.version(),
            fields: None,
        };
        // The unnamed statement is replaced even by a failed Parse.
        let pending = if name.is_empty() {
            self.statements.insert(name, prepared);
            None
        } else {
            Some((name, Box::new(prepared)))
        };
        self.expect.push_back(Expect::ParseComplete {
            swallow: false,
            pending,
        });
    }

    fn client_bind(&mut self, msg: &[u8], out: &mut BytesMut) {
        let Some(bind) = wire::bind_msg(msg) else {
            out.extend_from_slice(msg);
            self.expect.push_back(Expect::BindComplete);
            return;
        };
        let restricted = self.inputs.view.is_restricted();
        let version = self.inputs.version();
        // A statement planned under an older policy or catalog is planned again.
        let stale_sql = self
            .statement(bind.statement)
            .filter(|s| s.version != version)
            .map(|s| s.sql.clone());
        if let Some(sql) = stale_sql {
            let planned = self.plan(&sql);
            let copy = self.lone_copy(&planned, &sql);
            self.staged.clear();
            let plan = match planned.as_slice() {
                _ if copy.is_some() => copy
                    .as_ref()
                    .map(|c| c.0.clone())
                    .unwrap_or(StatementPlan::Allow),
                [one] => self.settle(one, 0),
                _ => StatementPlan::Block(BlockReason {
                    reason: "statement could not be planned again after a policy change".into(),
                    rule: "replan".into(),
                    column: None,
                    hint: "Prepare the statement again.".into(),
                }),
            };
            let registration = self.staged.drain(..).map(|(_, r)| r).next();
            if let Some(s) = self.statement_mut(bind.statement) {
                s.plan = plan;
                s.registration = registration;
                s.copy = copy.map(|c| c.1);
                s.version = version;
            }
        }
        let registration = self
            .statement(bind.statement)
            .and_then(|s| s.registration.clone());
        let (plan, fields, copy) = match self.statement(bind.statement) {
            Some(s) => (s.plan.clone(), s.fields.clone(), s.copy.clone()),
            None if restricted => (
                StatementPlan::Block(BlockReason {
                    reason: "prepared statement was not parsed through pgveil".into(),
                    rule: "unknown-origin".into(),
                    column: None,
                    hint: "Prepare the statement on this connection.".into(),
                }),
                None,
                None,
            ),
            None => (StatementPlan::Allow, None, None),
        };
        let portal = bind.portal.to_vec();
        let result_formats = bind.result_formats.clone();
        if let StatementPlan::Block(reason) = &plan {
            // Bind the portal to a statement that raises pgveil's error.
            self.audit_block(&reason.clone());
            wire::encode_close(out, b'S', BLOCK_STATEMENT);
            wire::encode_parse(out, BLOCK_STATEMENT, &block_sql(reason));
            wire::encode_bind_no_params(out, &portal, BLOCK_STATEMENT);
            self.expect
                .push_back(Expect::CloseComplete { swallow: true });
            self.expect.push_back(Expect::ParseComplete {
                swallow: true,
                pending: None,
            });
            self.expect.push_back(Expect::BindComplete);
            self.portals.insert(
                portal,
                Portal {
                    registration: None,
                    plan: StatementPlan::Allow,
                    copy: None,
                    fields: None,
                    masker: Some(RowMasker::default()),
                },
            );
            return;
        }
        let masker = fields
            .as_ref()
            .map(|f| self.masker_for(&plan, f, Some(&result_formats)));
        self.portals.insert(
            portal,
            Portal {
                registration,
                plan,
                copy,
                fields,
                masker,
            },
        );
        out.extend_from_slice(msg);
        self.expect.push_back(Expect::BindComplete);
    }

    fn ensure_relation_index(&mut self) {
        let generation = self.inputs.catalog.generation();
        if self.relation_index_generation == Some(generation) {
            return;
        }
        self.relation_index = self
            .inputs
            .catalog
            .relations()
            .iter()
            .enumerate()
            .map(|(i, r)| (r.oid, i))
            .collect();
        self.relation_index_generation = Some(generation);
    }

    /// The protected column behind a RowDescription field, if any.
    fn field_source(&mut self, field: &Field) -> Option<QualifiedColumn> {
        if field.table_oid == 0 || field.attnum <= 0 {
            return None;
        }
        self.ensure_relation_index();
        let rel = &self.inputs.catalog.relations()[*self.relation_index.get(&field.table_oid)?];
        let col = rel.columns.iter().find(|c| c.attnum == field.attnum)?;
        Some(QualifiedColumn {
            schema: rel.schema.clone(),
            table: rel.name.clone(),
            column: col.name.clone(),
        })
    }

    /// Builds the masker of one result: the plan's masks, plus any protected
    /// column the RowDescription names that the plan left unmasked.
    fn masker_for(
        &mut self,
        plan: &StatementPlan,
        fields: &[Field],
        formats: Option<&[i16]>,
    ) -> RowMasker {
        let mut m = RowMasker::default();
        let format = |i: usize, f: &Field| match formats {
            Some(codes) => format_of(codes, i),
            None if f.format == 1 => WireFormat::Binary,
            None => WireFormat::Text,
        };
        if let StatementPlan::Mask { columns } = plan {
            for c in columns {
                let Some(field) = fields.get(c.index) else {
                    m.withheld = Some(format!(
                        "result has no column {} for {}.{}.{}",
                        c.index, c.source.schema, c.source.table, c.source.column
                    ));
                    continue;
                };
                if let ColumnAction::Mask { mask_id, .. } = &c.decision.action {
                    let mask = self.inputs.policy.mask(*mask_id).clone();
                    m.columns
                        .push((c.index, mask, field.type_oid, format(c.index, field)));
                }
            }
        }
        // Defence in depth: a field that names a protected column.
        for (i, field) in fields.iter().enumerate() {
            if m.columns.iter().any(|(idx, ..)| *idx == i) {
                continue;
            }
            let Some(source) = self.field_source(field) else {
                continue;
            };
            let Some(decision) = self.inputs.view.column(&source) else {
                continue;
            };
            match decision.action {
                ColumnAction::Allow => {}
                ColumnAction::Mask { mask_id, .. } => {
                    tracing::warn!(
                        column = %format!("{}.{}.{}", source.schema, source.table, source.column),
                        "protected column reached a result unplanned; masking it"
                    );
                    let mask = self.inputs.policy.mask(mask_id).clone();
                    m.columns.push((i, mask, field.type_oid, format(i, field)));
                }
                ColumnAction::Deny => {
                    m.withheld = Some(format!(
                        "column {}.{}.{} is denied by {}",
                        source.schema, source.table, source.column, decision.rule
                    ));
                }
            }
        }
        m
    }

    /// Handles one complete server message, appending what to send the client.
    pub fn server_message(&mut self, msg: &[u8], out: &mut BytesMut) {
        let ty = msg[0];
        match ty {
            b'N' => return self.scrub(msg, out),
            b'A' => return self.notification(msg, out),
            b'S' => {
                if let Some(value) = parameter_status(msg, b"client_encoding") {
                    self.set_client_encoding(value);
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
                self.rows = None;
                self.copy = None;
                self.withholding = false;
                if msg.get(5) == Some(&b'I') && self.ddl_in_transaction {
                    // The schema change is committed (or rolled back): every
                    // session's catalog must be read again.
                    self.ddl_in_transaction = false;
                    self.effects.catalog_stale = true;
                    self.effects.own_ddl = true;
                }
                return out.extend_from_slice(msg);
            }
            b'E' => {
                self.rows = None;
                match self.expect.front() {
                    Some(Expect::Query { .. }) => {}
                    _ => {
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
                if let Some(Expect::BindComplete) = self.expect.front() {
                    self.expect.pop_front();
                }
                out.extend_from_slice(msg);
            }
            b'3' => {
                if let Some(Expect::CloseComplete { swallow }) = self.expect.front() {
                    let swallow = *swallow;
                    self.expect.pop_front();
                    if swallow {
                        return;
                    }
                }
                out.extend_from_slice(msg);
            }
            b't' => out.extend_from_slice(msg),
            b'T' => self.row_description(msg, out),
            b'n' => {
                let swallow = match self.expect.front() {
                    Some(Expect::DescribeStatement { .. }) => false,
                    Some(Expect::DescribePortal { portal, swallow }) => {
                        if let Some(p) = self.portals.get_mut(portal) {
                            p.masker = Some(RowMasker::default());
                        }
                        *swallow
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
            b'd' => match &mut self.copy {
                Some(copy) => {
                    let row = msg.get(5..).unwrap_or_default();
                    if copy.header_pending {
                        copy.header_pending = false;
                        return out.extend_from_slice(msg);
                    }
                    match copy_text::mask_row(row, &copy.fmt, &copy.columns) {
                        Ok(masked) => {
                            self.tally.masked_values += copy.columns.len() as u64;
                            wire::message(out, b'd', |o| o.extend_from_slice(&masked));
                        }
                        Err(e) => self.withhold(&e.to_string(), out),
                    }
                }
                None => out.extend_from_slice(msg),
            },
            b'c' => {
                self.copy = None;
                out.extend_from_slice(msg);
            }
            b'C' | b'I' => {
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
                    Some(Expect::Execute { portal }) => {
                        if let Some(r) = self
                            .portals
                            .get(portal)
                            .and_then(|p| p.registration.clone())
                        {
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
                if let Some(Expect::Execute { .. }) = self.expect.front() {
                    self.expect.pop_front();
                }
                out.extend_from_slice(msg);
            }
            _ => out.extend_from_slice(msg),
        }
    }

    /// Starts masking the rows of a COPY whose statement was planned with
    /// masks; any other COPY out of a masked statement is withheld.
    fn copy_out_response(&mut self, msg: &[u8], out: &mut BytesMut) {
        let (plan, fmt) = match self.expect.front() {
            Some(Expect::Query {
                plans, at, copy, ..
            }) => (plans.get(*at).cloned(), copy.clone()),
            Some(Expect::Execute { portal }) => match self.portals.get(portal) {
                Some(p) => (Some(p.plan.clone()), p.copy.clone()),
                None => (None, None),
            },
            _ => (None, None),
        };
        let restricted = self.inputs.view.is_restricted();
        // The server's column count must be the one the plan was made for
        // (a generated column left out of COPY would shift every mask).
        let server_columns = msg
            .get(6..8)
            .map(|b| i16::from_be_bytes([b[0], b[1]]) as usize);
        if let Some(f) = &fmt {
            if server_columns != Some(f.columns) {
                return self.withhold("COPY columns differ from the analysed statement", out);
            }
        }
        match (plan, fmt) {
            (Some(StatementPlan::Allow), _) => return out.extend_from_slice(msg),
            (None, _) if !restricted => return out.extend_from_slice(msg),
            (Some(StatementPlan::Mask { columns }), Some(fmt)) => {
                let mut masks = Vec::with_capacity(columns.len());
                for c in &columns {
                    let ColumnAction::Mask { mask_id, .. } = &c.decision.action else {
                        return self.withhold("COPY column without a mask", out);
                    };
                    let type_oid = self
                        .inputs
                        .catalog
                        .relation(&c.source.schema, &c.source.table)
                        .and_then(|r| r.columns.iter().find(|col| col.name == c.source.column))
                        .map(|col| col.type_oid);
                    let Some(type_oid) = type_oid else {
                        return self.withhold("COPY column of unknown type", out);
                    };
                    masks.push((c.index, self.inputs.policy.mask(*mask_id).clone(), type_oid));
                }
                self.copy = Some(CopyMasker {
                    header_pending: fmt.header,
                    fmt,
                    columns: masks,
                });
                self.tally.masked_results += 1;
                return out.extend_from_slice(msg);
            }
            _ => {}
        }
        self.withhold("COPY of a result pgveil cannot mask", out)
    }

    fn row_description(&mut self, msg: &[u8], out: &mut BytesMut) {
        let Some(fields) = wire::row_description(msg) else {
            return self.withhold("malformed RowDescription from the server", out);
        };
        match self.expect.front() {
            Some(Expect::DescribeStatement { name }) => {
                let name = name.clone();
                self.expect.pop_front();
                if let Some(s) = self.statement_mut(&name) {
                    s.fields = Some(fields);
                }
                out.extend_from_slice(msg);
            }
            Some(Expect::DescribePortal { portal, swallow }) => {
                let (portal, swallow) = (portal.clone(), *swallow);
                self.expect.pop_front();
                let plan = self
                    .portals
                    .get(&portal)
                    .map(|p| p.plan.clone())
                    .unwrap_or(StatementPlan::Allow);
                // A portal's RowDescription carries its real formats.
                let masker = self.masker_for(&plan, &fields, None);
                if let Some(p) = self.portals.get_mut(&portal) {
                    p.fields = Some(fields);
                    p.masker = Some(masker);
                }
                if !swallow {
                    out.extend_from_slice(msg);
                }
            }
            Some(Expect::Query { plans, at, .. }) => {
                let plan = plans.get(*at).cloned();
                let plan = match plan {
                    Some(p) => p,
                    None => {
                        return self.withhold("more results than statements pgveil analysed", out)
                    }
                };
                let masker = self.masker_for(&plan, &fields, None);
                if !masker.is_empty() {
                    self.tally.masked_results += 1;
                }
                self.rows = Some(masker);
                out.extend_from_slice(msg);
            }
            _ => out.extend_from_slice(msg),
        }
    }

    fn data_row(&mut self, msg: &[u8], out: &mut BytesMut) {
        let masker = match self.expect.front() {
            Some(Expect::Query { .. }) => self.rows.as_ref(),
            Some(Expect::Execute { portal }) => {
                self.portals.get(portal).and_then(|p| p.masker.as_ref())
            }
            _ => None,
        };
        let restricted = self.inputs.view.is_restricted();
        let Some(masker) = masker else {
            if restricted {
                return self.withhold("rows arrived for a result pgveil has no plan for", out);
            }
            return out.extend_from_slice(msg);
        };
        if let Some(why) = masker.withheld.clone() {
            return self.withhold(&why, out);
        }
        if masker.columns.is_empty() {
            return out.extend_from_slice(msg);
        }
        let Some(values) = wire::data_row(msg) else {
            return self.withhold("malformed DataRow from the server", out);
        };
        let mut masked: Vec<Option<Option<Vec<u8>>>> = vec![None; values.len()];
        for (index, mask, type_oid, format) in &masker.columns {
            let Some(value) = values.get(*index) else {
                continue;
            };
            match mask.apply(*value, *type_oid, *format) {
                Ok(v) => masked[*index] = Some(v),
                Err(e) => {
                    let why = e.to_string();
                    return self.withhold(&why, out);
                }
            }
        }
        self.tally.masked_values += masker.columns.len() as u64;
        wire::encode_data_row(
            out,
            values.iter().enumerate().map(|(i, v)| match &masked[i] {
                Some(m) => m.as_deref(),
                None => *v,
            }),
        );
    }

    /// Replaces the rest of the current response with an error: used when a
    /// value cannot be masked safely. Nothing more is forwarded until
    /// ReadyForQuery.
    fn withhold(&mut self, why: &str, out: &mut BytesMut) {
        tracing::error!(reason = why, "withholding a result to protect a column");
        self.tally.withheld_results += 1;
        crate::net::codec::ProxyError::error("42501", format!("pgveil: result withheld: {why}"))
            .with_hint("pgveil could not mask this result safely; ask the DBA to check the policy.")
            .encode(out);
        self.withholding = true;
        self.rows = None;
    }

    /// A notification may have been sent by a trigger or another session
    /// with protected values in its payload, which pgveil cannot trace: for
    /// a restricted role, values a detector recognises are starred out.
    fn notification(&mut self, msg: &[u8], out: &mut BytesMut) {
        if !self.inputs.view.is_restricted() {
            return out.extend_from_slice(msg);
        }
        let body = msg.get(5..).unwrap_or_default();
        let parsed = body.get(4..).and_then(|rest| {
            let end = rest.iter().position(|&b| b == 0)?;
            let channel = &rest[..end];
            let payload_bytes = &rest[end + 1..];
            let pend = payload_bytes.iter().position(|&b| b == 0)?;
            Some((channel, &payload_bytes[..pend]))
        });
        let Some((channel, payload)) = parsed else {
            return out.extend_from_slice(msg);
        };
        // JSON payloads (row_to_json in a trigger) lose the values under
        // keys named like protected columns, names included, which no
        // detector can recognise.
        let text = lossy(payload);
        let protected: std::collections::HashSet<&str> = self
            .inputs
            .policy
            .protected_columns()
            .map(|c| c.column.as_str())
            .collect();
        let json_scrubbed = redact_json_keys(&text, &protected);
        let input = json_scrubbed.as_deref().unwrap_or(&text);
        let redacted = match redact_detected(input) {
            Some(r) => Some(r),
            None => json_scrubbed.clone(),
        };
        match redacted {
            None => out.extend_from_slice(msg),
            Some(redacted) => {
                self.tally.masked_values += 1;
                wire::message(out, b'A', |o| {
                    o.extend_from_slice(&body[..4]);
                    o.extend_from_slice(channel);
                    o.extend_from_slice(&[0]);
                    o.extend_from_slice(redacted.as_bytes());
                    o.extend_from_slice(&[0]);
                });
            }
        }
    }

    /// Errors and notices can quote row values (unique violations, bad
    /// casts): for a restricted role, drop DETAIL and CONTEXT and redact
    /// quoted text in messages of data and integrity errors.
    fn scrub(&self, msg: &[u8], out: &mut BytesMut) {
        if !self.inputs.view.is_restricted() {
            return out.extend_from_slice(msg);
        }
        let mut fields = wire::notice_fields(msg);
        let code = fields
            .iter()
            .find(|(t, _)| *t == b'C')
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let quotes_values = code.starts_with(b"22")
            || code.starts_with(b"23")
            || code.starts_with(b"P0")
            || code.starts_with(b"XX");
        fields.retain(|(t, _)| !matches!(t, b'D' | b'W' | b'q' | b'P' | b'p'));
        if quotes_values {
            for (t, v) in fields.iter_mut() {
                if *t == b'M' {
                    *v = redact_quoted(v);
                }
            }
        }
        wire::encode_notice_fields(out, msg[0], &fields);
    }
}

/// Replaces every token of a notification payload that a detector
/// recognises (e-mail, IBAN …) and every run of seven or more digits (ID,
/// card, mobile and account numbers, whatever surrounds them) with `*`s.
fn redact_detected(payload: &str) -> Option<String> {
    let tokens = redact_tokens(payload);
    let (starred, digits) = star_digit_runs(tokens.as_deref().unwrap_or(payload));
    (tokens.is_some() || digits).then_some(starred)
}

/// A JSON payload with the values of protected-column keys replaced.
fn redact_json_keys(payload: &str, protected: &std::collections::HashSet<&str>) -> Option<String> {
    fn walk(v: &mut serde_json::Value, protected: &std::collections::HashSet<&str>) -> bool {
        match v {
            serde_json::Value::Object(map) => {
                let mut changed = false;
                for (k, val) in map.iter_mut() {
                    if protected.contains(k.as_str()) && !val.is_null() {
                        *val = serde_json::Value::String("***".into());
                        changed = true;
                    } else {
                        changed |= walk(val, protected);
                    }
                }
                changed
            }
            serde_json::Value::Array(items) => {
                let mut changed = false;
                for item in items {
                    changed |= walk(item, protected);
                }
                changed
            }
            _ => false,
        }
    }
    let trimmed = payload.trim_start();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        return None;
    }
    let mut value: serde_json::Value = serde_json::from_str(payload).ok()?;
    walk(&mut value, protected).then(|| value.to_string())
}

fn star_digit_runs(payload: &str) -> (String, bool) {
    let chars: Vec<char> = payload.chars().collect();
    let is_digit = |c: char| c.is_ascii_digit() || ('０'..='９').contains(&c);
    let mut out = String::with_capacity(payload.len());
    let mut changed = false;
    let mut i = 0;
    while i < chars.len() {
        if is_digit(chars[i]) {
            let start = i;
            while i < chars.len() && is_digit(chars[i]) {
                i += 1;
            }
            if i - start >= 7 {
                changed = true;
                out.extend(std::iter::repeat_n('*', i - start));
            } else {
                out.extend(&chars[start..i]);
            }
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    (out, changed)
}

fn redact_tokens(payload: &str) -> Option<String> {
    let is_token_char = |c: char| c.is_alphanumeric() || "+-@._".contains(c);
    let mut out = String::with_capacity(payload.len());
    let mut changed = false;
    let mut token = String::new();
    let mut flush = |token: &mut String, out: &mut String| {
        if !token.is_empty() {
            if crate::mask::detect::detect(token).is_empty() {
                out.push_str(token);
            } else {
                changed = true;
                out.extend(std::iter::repeat_n('*', token.chars().count()));
            }
            token.clear();
        }
    };
    for c in payload.chars() {
        if is_token_char(c) {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    changed.then_some(out)
}

/// CLOSE name / DEALLOCATE name forget one entry; the ALL forms forget all.
fn forget(map: &mut HashMap<String, StatementPlan>, name: Option<&String>) {
    match name {
        Some(n) => {
            map.remove(n);
        }
        None => map.clear(),
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

/// `invalid input syntax for type integer: "4111..."` -> `... "***"`.
fn redact_quoted(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut inside = false;
    for &b in message {
        if b == b'"' {
            if inside {
                out.extend_from_slice(b"***");
            }
            inside = !inside;
            out.push(b);
        } else if !inside {
            out.push(b);
        }
    }
    if inside {
        out.extend_from_slice(b"***");
    }
    out
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

    #[test]
    fn notification_payloads_lose_detected_values() {
        assert_eq!(
            redact_detected("changed:11010519491231002X,6222021234567890128").as_deref(),
            Some("changed:******************,*******************")
        );
        assert_eq!(
            redact_detected("mail zhangsan@example.com now").as_deref(),
            Some("mail ******************** now")
        );
        assert_eq!(redact_detected("job:42 done"), None);
        assert_eq!(
            redact_detected("cust-13987654321-updated tel13987654321").as_deref(),
            Some("cust-***********-updated tel***********")
        );
    }

    #[test]
    fn quoted_values_are_redacted() {
        assert_eq!(
            redact_quoted(b"invalid input syntax for type integer: \"11010519\""),
            b"invalid input syntax for type integer: \"***\"".to_vec()
        );
        assert_eq!(redact_quoted(b"no quotes"), b"no quotes".to_vec());
    }
}
