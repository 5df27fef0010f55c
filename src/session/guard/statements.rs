//! Planning of the client's statements: Query, Parse and Bind are analysed
//! and settled against the session (cursor and prepared-statement names,
//! search_path, DDL in the transaction), and blocked ones are rewritten into
//! pgveil's refusal. Must not touch server messages or mask values.

use std::collections::HashMap;

use bytes::BytesMut;

use super::super::copy_text::{self, CopyText};
use super::super::wire;
use super::refusal::{block_sql, BLOCK_STATEMENT, PROBE_STATEMENT};
use super::{lossy, Binding, Expect, Guard, Portal, Prepared, Registration, SqlPrepared};
use crate::analyze::plan::{BlockReason, StatementPlan};
use crate::analyze::{Analyzer, PlannedStatement, SessionContext, StatementKind};
use std::sync::Arc;

impl Guard {
    /// Emptying search_path (pg_dump's first statement) only makes name
    /// resolution stricter: unqualified names then resolve to pg_catalog
    /// alone, for pgveil and the server alike. Allowed, and followed at once.
    pub(super) fn allow_empty_search_path(&mut self, planned: &mut [PlannedStatement], sql: &str) {
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

    /// The context names resolve in: the session's search_path, with
    /// `pg_temp` first once the session has temporary relations.
    pub(super) fn analysis_ctx(&self) -> std::borrow::Cow<'_, SessionContext> {
        if self.temp_schema && !self.ctx.search_path.iter().any(|s| s == "pg_temp") {
            let mut path = vec!["pg_temp".to_string()];
            path.extend(self.ctx.search_path.iter().cloned());
            std::borrow::Cow::Owned(SessionContext {
                database: self.ctx.database.clone(),
                search_path: path,
                lexing: self.ctx.lexing,
            })
        } else {
            std::borrow::Cow::Borrowed(&self.ctx)
        }
    }

    pub(super) fn plan(&mut self, sql: &str) -> Vec<PlannedStatement> {
        self.planning_text = Some(Arc::from(sql));
        let started = std::time::Instant::now();
        let inputs = &self.inputs;
        let ctx = self.analysis_ctx();
        // The analyses `needs_fresh_catalog` looked up for this batch, when
        // looked up for this text in this context against this catalog.
        let looked_up = self.looked_up.iter().position(|l| {
            l.sql == sql && l.ctx == *ctx && Arc::ptr_eq(&l.catalog, &inputs.catalog)
        });
        let (mut planned, cached, earlier) = match looked_up {
            Some(i) => {
                let l = &self.looked_up[i];
                let planned =
                    Analyzer::plan_analysed(&l.analyses, &inputs.catalog, inputs.view.as_ref());
                (planned, l.cached, l.seconds)
            }
            None => {
                let (planned, cached) = inputs.analyzer.plan_traced(
                    sql,
                    &ctx,
                    &inputs.catalog,
                    inputs.view.as_ref(),
                    inputs.policy.version(),
                );
                (planned, cached, 0.0)
            }
        };
        drop(ctx);
        if let Some(i) = looked_up {
            // Each entry serves one message (the same text may come again).
            self.looked_up.remove(i);
        }
        self.analysed(earlier + started.elapsed().as_secs_f64(), cached);
        let inputs = &self.inputs;
        // In a client encoding other than UTF-8 a byte below 0x80 can be
        // the second half of a character (GBK, SJIS, BIG5 …): the server,
        // which converts the text first, would end strings elsewhere.
        // Text of ASCII only reads alike in every encoding.
        if !self.utf8 && inputs.view.is_restricted() && !sql.is_ascii() {
            for p in &mut planned {
                p.plan = StatementPlan::Block(BlockReason {
                    reason: "masked roles may send non-ASCII statement text only in client_encoding UTF8".into(),
                    rule: "client-encoding".into(),
                    column: None,
                    hint:
                        "SET client_encoding TO 'UTF8' (or connect with client_encoding=UTF8)."
                            .into(),
                });
            }
        }
        // A followed function's body with a backslash in a plain string
        // was read as standard_conforming_strings = on reads it.
        if !self.ctx.lexing.standard_conforming_strings && inputs.view.is_restricted() {
            for p in &mut planned {
                let backslash =
                    p.analysis
                        .effects
                        .sealed_calls
                        .iter()
                        .any(|((schema, name), c)| {
                            c.plain_backslash && !inputs.view.function_allowed(schema, name)
                        });
                if backslash && !p.plan.is_block() {
                    p.plan = StatementPlan::Block(BlockReason {
                        reason: "a user-defined function this calls has a backslash in a plain \
                                 string, which standard_conforming_strings = off reads otherwise \
                                 than pgveil did"
                            .into(),
                        rule: "user-defined-function".into(),
                        column: None,
                        hint: "SET standard_conforming_strings = on, or write the string as E'…'"
                            .into(),
                    });
                }
            }
        }
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

    pub(super) fn stage(&mut self, index: usize, cursor: bool, name: &str, plan: &StatementPlan) {
        self.staged.push((
            index,
            Registration {
                cursor,
                name: name.to_string(),
                plan: plan.clone(),
                note: None,
                source: self.planning_text.clone().map(|text| {
                    (
                        text,
                        index,
                        self.inputs.version(),
                        self.ctx.search_path.clone(),
                    )
                }),
            },
        ));
    }

    /// The plan behind a cursor or prepared-statement name: one declared
    /// earlier in the same message first, then the confirmed ones.
    pub(super) fn lookup(&mut self, cursor: bool, name: &str) -> Option<StatementPlan> {
        if let Some((_, r)) = self
            .staged
            .iter()
            .rev()
            .find(|(_, r)| r.cursor == cursor && r.name == name)
        {
            return Some(r.plan.clone());
        }
        if cursor {
            // A protocol portal may be fetched by name like a cursor.
            return match self.cursors.get(name) {
                Some(plan) => Some(plan.clone()),
                None if self.unsettled(b'P', name.as_bytes()) => None,
                None => self.portal(name.as_bytes()).map(|p| p.binding.plan.clone()),
            };
        }
        if let Some(plan) = self.sql_prepared_plan(name) {
            return Some(plan);
        }
        // SQL EXECUTE and protocol-level Parse share one namespace. A name
        // an unanswered earlier pipeline segment parses or closes may stand
        // for either statement (see `unsettled`): not known.
        if self.unsettled(b'S', name.as_bytes()) {
            return None;
        }
        let s = self.statement(name.as_bytes())?;
        if let Some(limit) = s.array_limits.first() {
            // EXECUTE passes the arrays as text pgveil does not count.
            return Some(StatementPlan::Block(limit.refusal(usize::MAX)));
        }
        if s.version == self.inputs.version() && s.search_path == self.ctx.search_path {
            return Some(s.plan.clone());
        }
        let sql = s.sql.clone();
        Some(match self.plan_again(&sql).as_slice() {
            [one] => one.plan.clone(),
            _ => StatementPlan::Block(BlockReason {
                reason: "statement could not be planned again after a policy change".into(),
                rule: "replan".into(),
                column: None,
                hint: "Prepare the statement again.".into(),
            }),
        })
    }

    /// Plans a stored statement's text again while another text is being
    /// settled: that text stays the one its registrations come from.
    fn plan_again(&mut self, sql: &str) -> Vec<PlannedStatement> {
        let settling = self.planning_text.take();
        let planned = self.plan(sql);
        self.planning_text = settling;
        planned
    }

    /// The plan of a statement PREPAREd in SQL, planned again from its
    /// text when the catalog or policy changed since (see `SqlPrepared`).
    pub(super) fn sql_prepared_plan(&mut self, name: &str) -> Option<StatementPlan> {
        let prepared = self.sql_prepared.get(name)?;
        let Some((text, index, version, path)) = prepared.source.clone() else {
            return Some(prepared.plan.clone());
        };
        if version == self.inputs.version() && path == self.ctx.search_path {
            return Some(prepared.plan.clone());
        }
        let planned = self.plan_again(&text);
        let plan = match planned.get(index) {
            Some(p) if matches!(&p.kind, StatementKind::Prepare { name: n } if n == name) => {
                p.plan.clone()
            }
            _ => StatementPlan::Block(BlockReason {
                reason: "prepared statement could not be planned again after a schema or policy \
                         change"
                    .into(),
                rule: "replan".into(),
                column: None,
                hint: "DEALLOCATE it and PREPARE it again.".into(),
            }),
        };
        let version = self.inputs.version();
        let path = self.ctx.search_path.clone();
        if let Some(prepared) = self.sql_prepared.get_mut(name) {
            prepared.plan = plan.clone();
            prepared.source = Some((text, index, version, path));
        }
        Some(plan)
    }

    /// The server confirmed a DECLARE or PREPARE: its name now stands for
    /// this plan.
    pub(super) fn commit(&mut self, r: Registration) {
        if r.cursor {
            // A cursor is a portal: it replaced any of that name.
            self.portals.remove(r.name.as_bytes());
        } else {
            // It replaced any protocol-level statement of that name.
            self.statements.remove(r.name.as_bytes());
        }
        self.named_notes.insert((r.cursor, r.name.clone()), r.note);
        if r.cursor {
            self.cursors.insert(r.name, r.plan);
        } else {
            self.sql_prepared.insert(
                r.name,
                SqlPrepared {
                    plan: r.plan,
                    source: r.source,
                },
            );
        }
    }

    /// Applies the session bookkeeping of one planned statement and returns
    /// the plan that governs its rows.
    pub(super) fn settle(&mut self, p: &PlannedStatement, index: usize) -> StatementPlan {
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
                // Cursors and protocol portals are one namespace.
                forget(&mut self.cursors, cursor.as_ref());
                match cursor {
                    Some(name) => {
                        self.portals.remove(name.as_bytes());
                    }
                    None => self.portals.clear(),
                }
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
            // The server plans a prepared statement again when what it reads
            // has changed: after DDL still unread, its plan is a guess.
            StatementKind::Execute { .. }
                if restricted && (self.overlay_stale || self.search_path_pending) =>
            {
                StatementPlan::Block(replanned_after_ddl())
            }
            StatementKind::Execute { name } => match self.lookup(false, name) {
                Some(plan) => plan,
                None if restricted => unknown("prepared statement", name),
                None => StatementPlan::Allow,
            },
            StatementKind::Deallocate { name } => {
                forget(&mut self.sql_prepared, name.as_ref());
                // DEALLOCATE removes protocol-level statements too.
                match name {
                    Some(n) => {
                        self.statements.remove(n.as_bytes());
                    }
                    None => self.statements.clear(),
                }
                p.plan.clone()
            }
            StatementKind::SetSearchPath { schemas } => {
                if !p.plan.is_block() {
                    if let Some(s) = schemas {
                        self.ctx.search_path = s.iter().filter(|x| !x.is_empty()).cloned().collect();
                    }
                    // The server's own value ("$user", SET LOCAL, a later
                    // ROLLBACK) is read before the next statement is planned.
                    self.search_path_unsure = true;
                    self.search_path_pending = true;
                }
                p.plan.clone()
            }
            StatementKind::Ddl | StatementKind::Unparsed { ddl: true } => {
                if restricted && !p.plan.is_block() {
                    if let Some(reason) = self.open_followed_portal() {
                        return StatementPlan::Block(reason);
                    }
                }
                if !p.plan.is_block() {
                    self.ddl_in_transaction = true;
                    self.overlay_stale = true;
                }
                p.plan.clone()
            }
            // DISCARD TEMP drops the session's temporary relations: later
            // statements of the same string or pipeline would be planned
            // over ones that are gone (see `server_message_paired`).
            StatementKind::Discard => {
                if !p.plan.is_block() {
                    self.ddl_in_transaction = true;
                    self.overlay_stale = true;
                }
                p.plan.clone()
            }
            StatementKind::Transaction => {
                // ROLLBACK TO SAVEPOINT can undo part of the transaction's DDL.
                if self.ddl_in_transaction {
                    self.overlay_stale = true;
                    self.overlay_rebase = true;
                }
                // COMMIT, ROLLBACK and ROLLBACK TO can undo a SET LOCAL or a
                // SET of the transaction: read search_path again before the
                // next statement is planned.
                if self.search_path_unsure {
                    self.search_path_pending = true;
                }
                p.plan.clone()
            }
            StatementKind::Setting | StatementKind::Show => p.plan.clone(),
            _ if restricted && self.search_path_pending => StatementPlan::Block(BlockReason {
                reason: "search_path changed earlier in this same query string or pipeline, and pgveil reads the new one only between statements".into(),
                rule: "search-path-change".into(),
                column: None,
                hint: "Send the statement after SET search_path on its own (a separate query, or after a Sync).".into(),
            }),
            _ if restricted && self.overlay_stale => StatementPlan::Block(BlockReason {
                reason: "the schema changed earlier in this same query string or pipeline, and pgveil reads a transaction's schema changes only between statements".into(),
                rule: "uncommitted-ddl".into(),
                column: None,
                hint: "Send the statement after the schema change on its own (a separate query, or after a Sync).".into(),
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

    /// A lone `COPY … TO STDOUT` in text format with masks: its plan and
    /// options, so its rows are masked one by one.
    pub(super) fn lone_copy(
        &self,
        planned: &[PlannedStatement],
        sql: &str,
    ) -> Option<(StatementPlan, CopyText)> {
        if self.overlay_stale {
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

    pub(super) fn client_query(&mut self, msg: &[u8], out: &mut BytesMut) {
        let sql = lossy(wire::query_text(msg).unwrap_or_default());
        let mut planned = self.plan(&sql);
        self.allow_empty_search_path(&mut planned, &sql);
        if let Some(pieces) = self.stepwise_pieces(&planned, &sql) {
            // Run by the relay, one statement at a time (see `steps`).
            self.stepwise = Some(pieces);
            return;
        }
        if let Some((plan, fmt)) = self.lone_copy(&planned, &sql) {
            out.extend_from_slice(msg);
            let note = self.note_of(&planned[0], &sql, false, true);
            self.expect.push_back(Expect::Query {
                plans: vec![plan],
                at: 0,
                copy: Some(fmt),
                registrations: Vec::new(),
                notes: vec![note],
                verbatim: Vec::new(),
            });
            return;
        }
        let mut plans = Vec::with_capacity(planned.len());
        let mut notes = Vec::with_capacity(planned.len());
        let mut blocked = None;
        self.staged.clear();
        let lone = planned.len() == 1;
        for (i, p) in planned.iter().enumerate() {
            let plan = self.settle(p, i);
            let note = self.note_of(p, &sql, false, lone);
            self.note_registration(i, &note);
            if let StatementPlan::Block(b) = &plan {
                blocked.get_or_insert_with(|| b.clone());
            }
            plans.push(plan);
            notes.push(note);
        }
        match blocked {
            Some(reason) => {
                // Nothing of a blocked string runs, so nothing is recorded.
                self.staged.clear();
                let note = self.blocked_note(&planned, &sql, false);
                self.audit_block(&reason, note);
                if self.server_may_reject(&planned, &sql) {
                    return self.probe_then_refuse(&sql, &reason, out);
                }
                wire::encode_query(out, &block_sql(&reason));
                self.expect.push_back(Expect::Query {
                    plans: vec![StatementPlan::Allow],
                    at: 0,
                    copy: None,
                    registrations: Vec::new(),
                    notes: Vec::new(),
                    verbatim: Vec::new(),
                });
            }
            None => {
                out.extend_from_slice(msg);
                let registrations = std::mem::take(&mut self.staged);
                let verbatim = planned
                    .iter()
                    .map(|p| p.kind == StatementKind::Raise)
                    .collect();
                self.expect.push_back(Expect::Query {
                    plans,
                    at: 0,
                    copy: None,
                    registrations,
                    notes,
                    verbatim,
                });
            }
        }
    }

    /// A lone statement pgveil refuses may be one the server rejects when it
    /// parses it (a schema, type or operator that does not exist, a syntax
    /// error): then PostgreSQL's own error (3F000, 42P01, 42883, 42601 …) is
    /// what the client sees, as on the extended protocol, where the client's
    /// Parse reaches the server before pgveil refuses at Bind. ORMs and
    /// migration tools branch on it. Only when nothing else of the client's
    /// is waiting for a Sync.
    fn server_may_reject(&self, planned: &[PlannedStatement], sql: &str) -> bool {
        let [p] = planned else { return false };
        let synced = match self.expect.back() {
            None | Some(Expect::Sync) | Some(Expect::Query { .. }) => true,
            Some(_) => false,
        };
        // Text pgveil could not parse may hold several statements, which
        // a Parse rejects for that alone.
        let lone = !sql.trim().trim_end_matches(';').contains(';');
        synced && lone && !too_deep(p)
    }

    /// Has the server parse the statement as one of pgveil's own (Parse
    /// resolves every name and type but runs nothing, so its error cannot
    /// carry a stored value), then raise the refusal in the same pipeline:
    /// after a failed Parse the server skips to the Sync, so the client
    /// sees the server's error or pgveil's, then one ReadyForQuery.
    fn probe_then_refuse(&mut self, sql: &str, reason: &BlockReason, out: &mut BytesMut) {
        // A COPY's Parse resolves nothing: its table and columns are
        // probed as a SELECT of them.
        let copy_probe = crate::analyze::pg_tree::name_probe(sql, self.ctx.lexing);
        wire::encode_close(out, b'S', PROBE_STATEMENT);
        wire::encode_parse(out, PROBE_STATEMENT, copy_probe.as_deref().unwrap_or(sql));
        wire::encode_close(out, b'S', PROBE_STATEMENT);
        wire::encode_close(out, b'S', BLOCK_STATEMENT);
        wire::encode_parse(out, BLOCK_STATEMENT, &block_sql(reason));
        wire::encode_bind_no_params(out, b"", BLOCK_STATEMENT);
        wire::encode_execute(out, b"");
        wire::encode_sync(out);
        for parse in [false, true, false, false, true] {
            self.expect.push_back(if parse {
                Expect::ParseComplete {
                    swallow: true,
                    pending: None,
                }
            } else {
                Expect::CloseComplete {
                    swallow: true,
                    target: None,
                }
            });
        }
        self.expect.push_back(Expect::OwnBindComplete);
        self.expect.push_back(Expect::Sync);
    }

    pub(super) fn client_parse(&mut self, msg: &[u8], out: &mut BytesMut) {
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
        let note = self.parse_note(&planned, &sql);
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
        self.note_registration(0, &note);
        let array_limits = match planned.as_slice() {
            [one] => crate::analyze::array_parameter_limits(&one.analysis, &*self.inputs.view),
            _ => Vec::new(),
        };
        let follows = self.follows(&planned);
        let prepared = Prepared {
            array_limits,
            registration: self.staged.drain(..).map(|(_, r)| r).next(),
            copy_in: starts_copy_in(&planned, &sql),
            ddl: planned.iter().any(|p| {
                matches!(
                    p.kind,
                    StatementKind::Ddl | StatementKind::Unparsed { ddl: true }
                )
            }),
            search_path: self.ctx.search_path.clone(),
            replans: planned.iter().any(|p| {
                !matches!(
                    p.kind,
                    StatementKind::Ddl
                        | StatementKind::Unparsed { ddl: true }
                        | StatementKind::Transaction
                        | StatementKind::Setting
                        | StatementKind::SetSearchPath { .. }
                        | StatementKind::Show
                        | StatementKind::Listen
                        | StatementKind::Discard
                        | StatementKind::Deallocate { .. }
                )
            }),
            follows,
            sets_search_path: planned
                .iter()
                .any(|p| matches!(p.kind, StatementKind::SetSearchPath { .. })),
            verbatim: matches!(planned.as_slice(), [one] if one.kind == StatementKind::Raise),
            sql,
            plan,
            copy: copy.map(|c| c.1),
            version: self.inputs.version(),
            fields: None,
            bound: None,
            note,
        };
        // Takes effect once the server confirms it (see `Expect::ParseComplete`).
        self.expect.push_back(Expect::ParseComplete {
            swallow: false,
            pending: Some((name, Box::new(prepared))),
        });
    }

    pub(super) fn client_bind(&mut self, msg: &[u8], out: &mut BytesMut) {
        let Some(bind) = wire::bind_msg(msg) else {
            out.extend_from_slice(msg);
            self.expect
                .push_back(Expect::BindComplete { pending: None });
            return;
        };
        let restricted = self.inputs.view.is_restricted();
        let version = self.inputs.version();
        // A statement planned under an older policy or catalog is planned again.
        // PostgreSQL plans it again under another search_path too.
        let stale_sql = self
            .statement(bind.statement)
            .filter(|s| s.version != version || s.search_path != self.ctx.search_path)
            .map(|s| s.sql.clone());
        if let Some(sql) = stale_sql {
            let planned = self.plan(&sql);
            let copy = self.lone_copy(&planned, &sql);
            self.staged.clear();
            let note = self.parse_note(&planned, &sql);
            let array_limits = match planned.as_slice() {
                [one] => crate::analyze::array_parameter_limits(&one.analysis, &*self.inputs.view),
                _ => Vec::new(),
            };
            let plan = match planned.as_slice() {
                _ if copy.is_some() => copy
                    .as_ref()
                    .map(|c| c.0.clone())
                    .unwrap_or(StatementPlan::Allow),
                [one] => self.settle(one, 0),
                // An empty statement (the server answers EmptyQueryResponse).
                [] => StatementPlan::Allow,
                _ => StatementPlan::Block(BlockReason {
                    reason: "statement could not be planned again after a policy change".into(),
                    rule: "replan".into(),
                    column: None,
                    hint: "Prepare the statement again.".into(),
                }),
            };
            self.note_registration(0, &note);
            let registration = self.staged.drain(..).map(|(_, r)| r).next();
            let follows = self.follows(&planned);
            let path = self.ctx.search_path.clone();
            if let Some(s) = self.statement_mut(bind.statement) {
                s.search_path = path;
                s.follows = follows;
                s.plan = plan;
                s.registration = registration;
                s.copy = copy.map(|c| c.1);
                s.version = version;
                s.bound = None;
                s.note = note;
                s.array_limits = array_limits;
            }
        }
        // One look-up of what Parse (or the replan above) settled: nothing
        // is planned or resolved again per Bind.
        // Only when the relay could not wait (see `waits_for_answers`):
        // the name may stand for either of two statements.
        let unsettled = self.unsettled(b'S', bind.statement);
        // DDL of this pipeline the catalog does not show yet: the server
        // plans the statement again at this Bind, against the new schema
        // (a view made in place of the table the statement was parsed
        // over), so the plan pgveil made at Parse no longer says what it
        // returns.
        let after_ddl = restricted && (self.overlay_stale || self.search_path_pending);
        let found = self
            .statement(bind.statement)
            .filter(|_| !unsettled)
            .map(|s| {
                let masker = s
                    .bound
                    .as_ref()
                    .filter(|(formats, _)| *formats == bind.result_formats)
                    .map(|(_, m)| Arc::clone(m));
                // `= ANY($1)`: the bound arrays' elements are candidates too.
                let over_limit = s.array_limits.iter().find_map(|limit| {
                    let elements = wire::bind_array_elements(msg, &limit.parameters);
                    (elements > limit.max_elements).then(|| limit.refusal(elements))
                });
                let plan = match over_limit {
                    _ if after_ddl && s.replans => StatementPlan::Block(replanned_after_ddl()),
                    Some(reason) if !s.plan.is_block() => StatementPlan::Block(reason),
                    _ => s.plan.clone(),
                };
                let binding = Binding {
                    verbatim: s.verbatim && !plan.is_block(),
                    registration: s.registration.clone(),
                    plan,
                    copy: s.copy.clone(),
                    note: s.note.clone(),
                };
                (
                    binding,
                    masker,
                    s.copy_in,
                    s.ddl,
                    s.follows,
                    s.sets_search_path,
                )
            });
        let (mut binding, masker, copy_in, ddl, follows, sets_search_path) = match found {
            Some(found) => found,
            None => {
                let plan = match self.sql_prepared_plan(&lossy(bind.statement)) {
                    _ if unsettled && restricted => StatementPlan::Block(BlockReason {
                        reason: "the prepared statement is parsed or closed in an earlier \
                                 segment of this pipeline that the server has not answered yet"
                            .into(),
                        rule: "unknown-origin".into(),
                        column: None,
                        hint: "Wait for the ReadyForQuery of that segment before binding it."
                            .into(),
                    }),
                    _ if after_ddl => StatementPlan::Block(replanned_after_ddl()),
                    // A statement PREPAREd in SQL, bound through the protocol.
                    Some(plan) => plan,
                    None if restricted => StatementPlan::Block(BlockReason {
                        reason: "prepared statement was not parsed through pgveil".into(),
                        rule: "unknown-origin".into(),
                        column: None,
                        hint: "Prepare the statement on this connection.".into(),
                    }),
                    None => StatementPlan::Allow,
                };
                let binding = Binding {
                    registration: None,
                    plan,
                    copy: None,
                    note: None,
                    verbatim: false,
                };
                (binding, None, false, false, false, false)
            }
        };
        if ddl && restricted && !binding.plan.is_block() {
            if let Some(reason) = self.open_followed_portal() {
                binding.plan = StatementPlan::Block(reason);
            }
        }
        let portal = bind.portal.to_vec();
        let result_formats = bind.result_formats.clone();
        if let StatementPlan::Block(reason) = &binding.plan {
            // Bind the portal to a statement that raises pgveil's error.
            let note = binding.note.clone().unwrap_or_else(|| {
                let sql = self.statement(bind.statement).map(|s| s.sql.clone());
                self.blocked_note(&[], sql.as_deref().unwrap_or("<unknown statement>"), true)
            });
            self.audit_block(&reason.clone(), note);
            wire::encode_close(out, b'S', BLOCK_STATEMENT);
            wire::encode_parse(out, BLOCK_STATEMENT, &block_sql(reason));
            wire::encode_bind_no_params(out, &portal, BLOCK_STATEMENT);
            self.expect.push_back(Expect::CloseComplete {
                swallow: true,
                target: None,
            });
            self.expect.push_back(Expect::ParseComplete {
                swallow: true,
                pending: None,
            });
            let blocked = Portal {
                binding: Arc::new(Binding {
                    registration: None,
                    plan: StatementPlan::Allow,
                    copy: None,
                    note: None,
                    verbatim: false,
                }),
                ddl: false,
                follows: false,
                sets_search_path: false,
                copy_in: false,
                masker: Some(Arc::default()),
                described: false,
            };
            self.expect.push_back(Expect::BindComplete {
                pending: Some((portal, Box::new(blocked))),
            });
            return;
        }
        // Built once per statement and result formats, not per Bind.
        let masker = match masker {
            Some(m) => Some(m),
            None => {
                let fields = self
                    .statement(bind.statement)
                    .and_then(|s| s.fields.clone());
                let masker = fields
                    .map(|f| Arc::new(self.masker_for(&binding.plan, &f, Some(&result_formats))));
                if let (Some(m), Some(s)) = (&masker, self.statement_mut(bind.statement)) {
                    s.bound = Some((result_formats, Arc::clone(m)));
                }
                masker
            }
        };
        let made = Portal {
            binding: Arc::new(binding),
            ddl,
            follows,
            sets_search_path,
            copy_in,
            masker,
            described: false,
        };
        out.extend_from_slice(msg);
        // The portal is made once the server confirms the Bind.
        self.expect.push_back(Expect::BindComplete {
            pending: Some((portal, Box::new(made))),
        });
    }
}

impl Guard {
    /// True when a statement calls a user-defined function the policy
    /// does not list (so pgveil followed it as it is now).
    fn follows(&self, planned: &[PlannedStatement]) -> bool {
        planned.iter().any(|p| {
            p.analysis
                .effects
                .user_functions
                .iter()
                .any(|(s, n)| !self.inputs.view.function_allowed(s, n))
        })
    }

    /// Why DDL must wait: a portal that calls a user-defined function
    /// pgveil followed may still run, and would run the function's body as
    /// the DDL leaves it.
    fn open_followed_portal(&self) -> Option<BlockReason> {
        self.all_portals().any(|p| p.follows).then(|| BlockReason {
            reason: "a portal of this transaction calls a user-defined function pgveil \
                     followed, and DDL now could change what it runs"
                .into(),
            rule: "user-defined-function".into(),
            column: None,
            hint: "close the portal (or end the transaction) before changing the schema".into(),
        })
    }
}

/// True for a `COPY … FROM` (also one the parser could not read): its
/// Execute may put the server in copy-in mode.
fn starts_copy_in(planned: &[PlannedStatement], sql: &str) -> bool {
    planned.iter().any(|p| match p.kind {
        StatementKind::CopyFrom => true,
        StatementKind::Unparsed { .. } => first_keyword(sql).eq_ignore_ascii_case("copy"),
        _ => false,
    })
}

/// The first word of a statement, after blanks, comments and parentheses.
fn first_keyword(sql: &str) -> &str {
    let mut rest = sql;
    loop {
        let trimmed = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
        if let Some(line) = trimmed.strip_prefix("--") {
            rest = line.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(block) = trimmed.strip_prefix("/*") {
            rest = block.split_once("*/").map_or("", |(_, r)| r);
        } else {
            let end = trimmed
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(trimmed.len());
            return &trimmed[..end];
        }
    }
}

/// CLOSE name / DEALLOCATE name forget one entry; the ALL forms forget all.
fn forget<V>(map: &mut HashMap<String, V>, name: Option<&String>) {
    match name {
        Some(n) => {
            map.remove(n);
        }
        None => map.clear(),
    }
}

/// A statement nested beyond the depth bound keeps pgveil's clear refusal
/// (the server's Parse of it may run out of stack instead).
fn too_deep(p: &PlannedStatement) -> bool {
    p.analysis
        .effects
        .hazards
        .iter()
        .any(|h| h.detail.contains("nested too deeply"))
}

/// The refusal of a prepared statement run after DDL of the same pipeline
/// that pgveil has not read yet (see `client_bind`).
fn replanned_after_ddl() -> BlockReason {
    BlockReason {
        reason: "the schema or search_path changed earlier in this same query string or \
                 pipeline, and the server plans this prepared statement again against the new \
                 one, which pgveil reads only between statements"
            .into(),
        rule: "uncommitted-ddl".into(),
        column: None,
        hint: "Run it after the schema change has been answered (a separate query, or after \
               the ReadyForQuery of its Sync)."
            .into(),
    }
}
