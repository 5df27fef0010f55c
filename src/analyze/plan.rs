//! Judging an `Analysis` against one role's policy: the masking plan.
//! Cheap (a few policy look-ups per column) so it runs on every statement,
//! on top of the cached, policy-independent analysis.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::catalog::Catalog;
use super::fallback::FallbackScan;
use super::lineage::{Clause, Flow, Guard, HazardRule, JsonShape, UseKind, Walker};

use super::policy_view::{ColumnAction, ColumnDecision, FilterRight, PolicyView, QualifiedColumn};
use super::{Analysis, StatementKind};

/// One output column the session must mask.
#[derive(Debug, Clone)]
pub struct MaskedColumn {
    /// Field index in the RowDescription / DataRow / COPY row.
    pub index: usize,
    /// The decision whose mask applies (`action` is always `Mask`).
    pub decision: ColumnDecision,
    /// The protected column the value comes from (for a JSON value, of
    /// its first masked part).
    pub source: QualifiedColumn,
    /// For a JSON value the statement builds: the mask of each part.
    pub json: Option<Arc<JsonPlan>>,
}

/// The masks of the parts of a JSON value (see `lineage::JsonShape`).
#[derive(Debug, Clone)]
pub enum JsonPlan {
    /// A part shown as it is, with the columns it comes from.
    Clear(Vec<QualifiedColumn>),
    /// A part holding one value of `source`, masked by `decision`.
    Masked {
        decision: ColumnDecision,
        source: QualifiedColumn,
    },
    Array(Vec<JsonPlan>),
    Object(Vec<(String, JsonPlan)>),
    Elements(Box<JsonPlan>),
}

impl JsonPlan {
    /// Every column some part comes from, and whether it is masked there.
    fn sources(&self, into: &mut BTreeMap<QualifiedColumn, bool>) {
        match self {
            JsonPlan::Clear(columns) => {
                for c in columns {
                    into.entry(c.clone()).or_insert(false);
                }
            }
            JsonPlan::Masked { source, .. } => {
                into.insert(source.clone(), true);
            }
            JsonPlan::Array(items) => items.iter().for_each(|i| i.sources(into)),
            JsonPlan::Object(members) => members.iter().for_each(|(_, m)| m.sources(into)),
            JsonPlan::Elements(inner) => inner.sources(into),
        }
    }

    /// The decision and column of the first masked part, if any.
    fn first_masked(&self) -> Option<(ColumnDecision, QualifiedColumn)> {
        match self {
            JsonPlan::Clear(_) => None,
            JsonPlan::Masked { decision, source } => Some((decision.clone(), source.clone())),
            JsonPlan::Array(items) => items.iter().find_map(JsonPlan::first_masked),
            JsonPlan::Object(members) => members.iter().find_map(|(_, m)| m.first_masked()),
            JsonPlan::Elements(inner) => inner.first_masked(),
        }
    }
}

/// Why a statement is rejected (sent as SQLSTATE 42501).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockReason {
    pub reason: String,
    /// The policy rule or built-in rule (`dynamic-sql`, …) that decided.
    pub rule: String,
    pub column: Option<QualifiedColumn>,
    pub hint: String,
}

/// What the session does with one statement for one role.
#[derive(Debug, Clone)]
pub enum StatementPlan {
    /// Forward everything unchanged.
    Allow,
    /// Forward, masking these output columns.
    Mask { columns: Vec<MaskedColumn> },
    /// Do not forward; answer with an ErrorResponse.
    Block(BlockReason),
}

impl StatementPlan {
    pub fn is_block(&self) -> bool {
        matches!(self, StatementPlan::Block(_))
    }
}

/// Bind parameters holding arrays that a protected column with `filter:
/// equality` is compared with (`= ANY($1)`): their elements together may
/// number at most `max_elements`, checked when the values are bound (a
/// million candidates in one array would be an enumeration oracle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayParameterLimit {
    /// 1-based parameter numbers.
    pub parameters: Vec<usize>,
    pub max_elements: usize,
    pub column: QualifiedColumn,
    pub rule: String,
    /// The column's `max_candidates`, for the error message.
    pub max_candidates: usize,
}

impl ArrayParameterLimit {
    /// The refusal for `elements` bound elements (`usize::MAX`: a count
    /// pgveil cannot make, as for SQL EXECUTE).
    pub fn refusal(&self, elements: usize) -> BlockReason {
        let parameters = self
            .parameters
            .iter()
            .map(|p| format!("${p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let compared = if elements == usize::MAX {
            format!("arrays bound to {parameters} whose elements pgveil cannot count here")
        } else {
            format!("{elements} array elements bound to {parameters}")
        };
        BlockReason {
            reason: format!(
                "protected column {} is compared with {compared}; this role may compare it \
                 with at most {} constants per statement",
                display(&self.column),
                self.max_candidates
            ),
            rule: self.rule.clone(),
            column: Some(self.column.clone()),
            hint: "look up fewer values per statement, or ask the DBA to raise max_candidates"
                .into(),
        }
    }
}

/// The array parameters of `analysis` whose length the session must check
/// at each Bind for this role.
pub fn array_parameter_limits(
    analysis: &Analysis,
    policy: &dyn PolicyView,
) -> Vec<ArrayParameterLimit> {
    if !policy.is_restricted() {
        return Vec::new();
    }
    let effects = &analysis.effects;
    effects
        .array_parameters
        .iter()
        .filter_map(|(column, parameters)| {
            let decision = policy.column(column)?;
            if decision.filter != FilterRight::Equality {
                return None;
            }
            // Each array was counted as one constant by the analysis.
            let others = effects
                .candidates
                .get(column)
                .copied()
                .unwrap_or(0)
                .saturating_sub(parameters.len());
            Some(ArrayParameterLimit {
                parameters: parameters.iter().copied().collect(),
                max_elements: decision.max_candidates.saturating_sub(others),
                column: column.clone(),
                rule: decision.rule,
                max_candidates: decision.max_candidates,
            })
        })
        .collect()
}

fn block(
    reason: impl Into<String>,
    rule: impl Into<String>,
    column: Option<&QualifiedColumn>,
    hint: impl Into<String>,
) -> StatementPlan {
    StatementPlan::Block(BlockReason {
        reason: reason.into(),
        rule: rule.into(),
        column: column.cloned(),
        hint: hint.into(),
    })
}

/// An equi-join partner under the same protection: the same mask (or both
/// clear) and itself comparable by equality. A partner the role sees more
/// of, or an unprotected column (a table of generated candidates), would
/// turn the join into an oracle.
fn same_protection(
    policy: &dyn PolicyView,
    decision: &ColumnDecision,
    partner: Option<&ColumnDecision>,
) -> bool {
    let Some(partner) = partner else {
        return false;
    };
    // The same function with other arguments (`keep` of more digits, a
    // `hash` under another key) is a partner the role sees more of.
    let same_action = match (&decision.action, &partner.action) {
        (
            ColumnAction::Mask {
                mask_name: a,
                mask_id: x,
            },
            ColumnAction::Mask {
                mask_name: b,
                mask_id: y,
            },
        ) => a == b && policy.same_mask(*x, *y),
        (ColumnAction::Allow, ColumnAction::Allow) => true,
        _ => false,
    };
    same_action && partner.filter != FilterRight::Deny
}

/// Whether the values `column` stands for in an output's lineage are
/// stored values under the mask `mask_id`: the column is under it, is a
/// user view's own column (what its definition reads is in the lineage
/// beside it, and judged there), or inherits a column under it.
fn stored_under(
    catalog: &Catalog,
    policy: &dyn PolicyView,
    column: &QualifiedColumn,
    mask_id: usize,
) -> bool {
    let under = |c: &QualifiedColumn| {
        policy.column(c).is_some_and(
            |d| matches!(d.action, ColumnAction::Mask { mask_id: m, .. } if m == mask_id),
        )
    };
    if under(column) {
        return true;
    }
    let Some(relation) = catalog.relation(&column.schema, &column.table) else {
        return false;
    };
    if relation.has_definition() && !relation.is_system() {
        return true;
    }
    let mut pending: Vec<&(String, String)> = relation.parents.iter().collect();
    let mut seen = 0;
    while let Some((schema, table)) = pending.pop() {
        seen += 1;
        if seen > 64 {
            return false;
        }
        let inherited = QualifiedColumn {
            schema: schema.clone(),
            table: table.clone(),
            column: column.column.clone(),
        };
        if under(&inherited) {
            return true;
        }
        if let Some(parent) = catalog.relation(schema, table) {
            pending.extend(parent.parents.iter());
        }
    }
    false
}

fn is_harmless(decision: &ColumnDecision) -> bool {
    matches!(decision.action, ColumnAction::Allow) && decision.filter == FilterRight::Allow
}

/// A column of a catalog relation, qualified, and whether the policy
/// protects it from this role in any way.
fn protection(
    policy: &dyn PolicyView,
    relation: &super::catalog::Relation,
    column: &str,
) -> (QualifiedColumn, bool) {
    let qualified = QualifiedColumn {
        schema: relation.schema.clone(),
        table: relation.name.clone(),
        column: column.to_owned(),
    };
    let protected = policy.column(&qualified).is_some_and(|d| !is_harmless(&d));
    (qualified, protected)
}

/// System columns holding statement texts (schema, relation, column).
const QUERY_TEXT_COLUMNS: &[(&str, &str, &str)] = &[("pg_catalog", "pg_stat_activity", "query")];

/// Derives the plan of one analysed statement for one role.
pub(crate) fn derive(
    analysis: &Analysis,
    catalog: &Catalog,
    policy: &dyn PolicyView,
) -> StatementPlan {
    if !policy.is_restricted() {
        return StatementPlan::Allow;
    }
    // A hazard found in PostgreSQL's tree counts for unparsed statements
    // too; the functions they attach or define are judged below.
    if let Some(scan) = &analysis.fallback {
        if analysis.effects.hazards.is_empty() {
            let verdict = judge_fallback(scan, catalog, policy);
            if !matches!(verdict, StatementPlan::Allow) {
                return verdict;
            }
        }
    }
    let effects = &analysis.effects;
    // Other sessions' statement texts can quote protected values; the rest
    // of pg_stat_activity (pids, states, databases) cannot.
    let query_text = analysis
        .outputs
        .iter()
        .flat_map(|o| o.sources.keys())
        .chain(effects.uses.iter().map(|u| &u.column))
        .chain(effects.sinks.iter().map(|s| &s.source))
        .find(|c| {
            QUERY_TEXT_COLUMNS.iter().any(|(schema, table, column)| {
                c.schema == *schema && c.table == *table && c.column == *column
            })
        });
    if let Some(column) = query_text {
        return block(
            format!(
                "{}.{}.{} carries other sessions' statement texts, which can quote protected values",
                column.schema, column.table, column.column
            ),
            HazardRule::SensitiveCatalog.as_str(),
            None,
            "select the columns you need without it (pid, state, datname … are fine)",
        );
    }
    if let Some(hazard) = effects.hazards.iter().next() {
        let hint = match hazard.rule {
            HazardRule::UnknownName => {
                "if the object was created recently, the catalog refreshes on DDL or after its TTL"
            }
            HazardRule::SearchPath => {
                "qualify names with their schema instead of changing search_path"
            }
            HazardRule::DynamicSql => "run the query itself so pgveil can analyse it",
            HazardRule::ServerCode => {
                "pgveil does not follow a rule's actions: use a view, or a trigger over a built-in \
                 function or one listed under functions.allow, or run it as a role without masks"
            }
            HazardRule::ServerFile => {
                "server-side files, large objects and WAL are not read through pgveil by roles \
                 with masks; run it as a role without masks"
            }
            HazardRule::Misunderstood => {
                "pgveil reads this statement differently from PostgreSQL (escapes in names or \
                 strings, standard_conforming_strings off, unusual syntax): spell it plainly; \
                 pgveil_statements_misunderstood_total counts these"
            }
            HazardRule::UnlistedFunction => {
                "pgveil trusts only the PostgreSQL 15 built-in functions it lists \
                 (src/analyze/builtins_pg15.tsv); call a listed function instead"
            }
            HazardRule::BuiltinTypeShadow => {
                "give the table, view or type a name no PostgreSQL type has, or create it in a \
                 schema searched after pg_catalog"
            }
            HazardRule::RoleMatching => {
                "policy rules match a login by its role memberships and role names, so a role \
                 with masks may not change them: ask a role without masks (the DBA) to run it"
            }
            _ => "rewrite the statement, or ask the DBA for a policy exception",
        };
        return block(
            format!(
                "pgveil could not prove this statement safe: {}",
                hazard.detail
            ),
            hazard.rule.as_str(),
            None,
            hint,
        );
    }
    for (schema, table) in &effects.relations {
        if let Some(rule) = policy.table_denied(schema, table) {
            return block(
                format!("table {schema}.{table} is denied to this role"),
                rule,
                None,
                "this role may not read that table",
            );
        }
    }
    for (schema, name) in &effects.user_functions {
        if policy.function_allowed(schema, name) {
            continue;
        }
        let refuse = |why: String| {
            block(
                format!(
                    "user-defined function {schema}.{name} is not allowed by the policy, and {why}"
                ),
                "user-defined-function",
                None,
                "ask the DBA to list it under functions.allow in the policy",
            )
        };
        // A function pgveil follows (see `sealed`) may run when nothing it
        // reaches is protected from this role, if this statement runs it.
        // DDL attaches it to a path others run later (a default, CHECK,
        // index, view, trigger …), with whatever body it has by then: only
        // the policy may vouch for that.
        // A cursor or SQL prepared statement runs it later too, and
        // PostgreSQL compiles a replaced body again at its next call.
        let runs_now = !matches!(
            analysis.kind,
            StatementKind::Ddl
                | StatementKind::Other
                | StatementKind::Unparsed { .. }
                | StatementKind::DeclareCursor { .. }
                | StatementKind::Prepare { .. }
        );
        let call = effects
            .sealed_calls
            .get(&(schema.clone(), name.clone()))
            .filter(|_| runs_now);
        let Some(call) = call else {
            return refuse("pgveil cannot see what it reads or returns".into());
        };
        if let Some(why) = &call.opaque {
            return refuse(format!("pgveil cannot see into it: {why}"));
        }
        for ((s, n), why) in &call.unfollowed {
            if !policy.function_allowed(s, n) {
                return refuse(format!(
                    "it calls {s}.{n}, which pgveil cannot see into: {why}"
                ));
            }
        }
        for (s, t) in &call.relations {
            if policy.table_denied(s, t).is_some() {
                return refuse(format!(
                    "it reaches table {s}.{t}, which is denied to this role"
                ));
            }
        }
        for column in &call.columns {
            let protected = policy
                .column(column)
                .is_some_and(|d| !matches!(d.action, ColumnAction::Allow));
            if protected {
                return refuse(format!(
                    "it may read or write protected column {}",
                    display(column)
                ));
            }
        }
    }
    for (schema, name) in &effects.shadows {
        let Some(relation) = catalog.relation(schema, name) else {
            continue;
        };
        let path: Vec<String> = vec!["public".into()];
        let mut walker = Walker::new(catalog, &path);
        let columns = walker.relation_columns(relation);
        let protected = columns
            .iter()
            .flat_map(|c| c.sources.keys())
            .find(|source| policy.column(source).is_some_and(|d| !is_harmless(&d)));
        if let Some(source) = protected {
            return block(
                format!(
                    "temporary {name} would shadow {schema}.{name}, which carries protected \
                     column {}",
                    display(source)
                ),
                HazardRule::Unanalysable.as_str(),
                Some(source),
                "give the temporary table another name",
            );
        }
    }
    for (schema, name) in &effects.defined_functions {
        if policy.function_allowed(schema, name) {
            return block(
                format!("{schema}.{name} is listed under functions.allow, so redefining, renaming or moving it would change what this role may run"),
                "allowed-function-definition",
                None,
                "ask the DBA to change allowed functions, or give the new function another name",
            );
        }
    }
    for column in &effects.written {
        let Some(decision) = policy.column(column) else {
            continue;
        };
        if let ColumnAction::Mask { mask_name, .. } = &decision.action {
            if crate::mask::is_keyed(mask_name) {
                return block(
                    format!(
                        "this role reads protected column {} as keyed tokens ({mask_name}), so \
                         it may not write it: the token of each value it stored would be a \
                         dictionary entry against the stored values' tokens",
                        display(column)
                    ),
                    decision.rule,
                    Some(column),
                    "write the column as a role that reads it in clear or under an unkeyed mask",
                );
            }
        }
    }
    for use_ in &effects.uses {
        let Some(decision) = policy.column(&use_.column) else {
            continue;
        };
        if matches!(decision.action, ColumnAction::Deny) {
            return block(
                format!("column {} is denied to this role", display(&use_.column)),
                decision.rule,
                Some(&use_.column),
                "remove the column from the statement",
            );
        }
        // A role that reads the column in clear could compute the value
        // itself: that the server computes it unreturned tells it nothing.
        if use_.clause == Clause::Evaluated && matches!(decision.action, ColumnAction::Allow) {
            continue;
        }
        let permitted = match decision.filter {
            FilterRight::Allow => true,
            FilterRight::Equality => match use_.kind {
                UseKind::Equality => true,
                // A join of the column with itself (`IN (SELECT c FROM t)`,
                // a self-join, USING) matches every stored value with every
                // other, and a merge join or index returns them in the
                // order of the clear values: with rows the role wrote
                // among them, that ranks each value between chosen ones.
                UseKind::Join => use_.partners.iter().any(|p| {
                    *p != use_.column
                        && same_protection(policy, &decision, policy.column(p).as_ref())
                }),
                UseKind::General => false,
            },
            FilterRight::Deny => false,
        };
        if !permitted {
            let sorts = matches!(
                use_.clause,
                Clause::GroupBy | Clause::Distinct | Clause::Window | Clause::SetOperation
            );
            let what = match (decision.filter, use_.kind) {
                (FilterRight::Equality, _) if sorts => {
                    "the server may sort by the values it groups or de-duplicates and return \
                     the rows in the order of the clear values, so only comparisons with \
                     constants (=, IN) and equi-joins are allowed"
                }
                (FilterRight::Equality, UseKind::Join)
                    if use_.partners.iter().all(|p| *p == use_.column) =>
                {
                    "a join of the column with itself matches every stored value with the \
                     others, and a merge join returns them in the order of the clear values"
                }
                (FilterRight::Equality, UseKind::Join) => {
                    "equi-joins are allowed only with a column under the same protection"
                }
                (FilterRight::Equality, _) => {
                    "only comparisons with constants (=, IN with literals or parameters) \
                     and equi-joins with a column under the same protection are allowed; \
                     generated or computed candidates are not"
                }
                _ => "filtering, joining, grouping or ordering by it is not allowed",
            };
            if use_.clause == Clause::Ddl {
                // A constraint, index or type change over stored rows
                // succeeds, fails or grows depending on the stored values.
                return block(
                    format!(
                        "protected column {} is used in a DDL expression the server evaluates \
                         over stored rows (a CHECK, key, foreign key, NOT NULL, index key or \
                         predicate, type change or row security policy), which is filtering by \
                         it: {what}",
                        display(&use_.column)
                    ),
                    decision.rule,
                    Some(&use_.column),
                    "declare the constraint in CREATE TABLE before rows are loaded, run this DDL \
                     as a role whose rule allows filtering by the column (filter: equality for \
                     plain keys, NOT NULL and IS NULL or = tests; filter: allow for the rest), \
                     or drop the column from it",
                );
            }
            if use_.clause == Clause::KeyCheck {
                return block(
                    format!(
                        "protected column {} is looked up by this write: the server compares \
                         the value written with the values stored in other rows (a unique \
                         index, exclusion constraint or foreign key), so whether the write \
                         conflicts tells whether the value is stored: {what}",
                        display(&use_.column)
                    ),
                    decision.rule,
                    Some(&use_.column),
                    "write literals or parameters (a VALUES list, SET col = $1) as a role whose \
                     rule has filter: equality for the column, or filter: allow for computed or \
                     copied values and COPY FROM",
                );
            }
            // Only a rule with filter: equality admits some comparisons.
            let hint = match decision.filter {
                FilterRight::Equality if sorts => {
                    "group, de-duplicate or partition by an unprotected key (the row's id), or \
                     ask the DBA for filter: allow in the column's rule"
                }
                FilterRight::Equality => "compare the column with = or IN, or drop that clause",
                _ => {
                    "this role may not filter, join, group or order by the column at all: drop \
                     that clause, or ask the DBA for filter: equality (or allow) in its rule"
                }
            };
            return block(
                format!(
                    "protected column {} is used in {}: {what}",
                    display(&use_.column),
                    use_.clause.as_str()
                ),
                decision.rule,
                Some(&use_.column),
                hint,
            );
        }
    }
    if matches!(analysis.kind, super::StatementKind::Prepare { .. }) {
        if let Some(limit) = array_parameter_limits(analysis, policy).first() {
            return block(
                format!(
                    "protected column {} is compared with the array parameter ${} of a SQL \
                     PREPARE, whose length pgveil cannot count at EXECUTE",
                    display(&limit.column),
                    limit.parameters.first().copied().unwrap_or(1)
                ),
                limit.rule.clone(),
                Some(&limit.column),
                "prepare it through the extended protocol (drivers do), or use IN with the values",
            );
        }
    }
    for (column, count) in &effects.candidates {
        let Some(decision) = policy.column(column) else {
            continue;
        };
        if decision.filter == FilterRight::Equality && *count > decision.max_candidates {
            return block(
                format!(
                    "protected column {} is compared with {count} constants; this role may \
                     compare it with at most {} per statement",
                    display(column),
                    decision.max_candidates
                ),
                decision.rule,
                Some(column),
                "look up fewer values per statement, or ask the DBA to raise max_candidates",
            );
        }
    }
    for sink in &effects.sinks {
        let Some(decision) = policy.column(&sink.source) else {
            continue;
        };
        if matches!(decision.action, ColumnAction::Allow) {
            continue;
        }
        // Even a write into the same column is blocked: it can move one
        // row's value into another row and have a unique-violation error
        // quote it.
        return block(
            format!(
                "{} would copy protected column {} somewhere readable",
                sink.via,
                display(&sink.source)
            ),
            decision.rule,
            Some(&sink.source),
            "protected values cannot be copied by this role",
        );
    }
    for guarded in &effects.guarded {
        let Some(decision) = policy.column(&guarded.column) else {
            continue;
        };
        if matches!(decision.action, ColumnAction::Allow) {
            continue;
        }
        if guarded.guard == Guard::UserFunction
            && effects.user_functions.iter().any(|(s, n)| {
                format!("{s}.{n}()") == guarded.target && policy.function_allowed(s, n)
            })
        {
            // The DBA vouches for what a listed function does with it.
            continue;
        }
        let (does, rule) = match guarded.guard {
            Guard::UserFunction => ("may store it where others read it", "user-defined-function"),
            Guard::Lookup => (
                "looks objects up by it, and its errors name what was not found",
                "builtin-function-lookup",
            ),
            Guard::Write => (
                "leaves it where other sessions can read it",
                "builtin-function-write",
            ),
            Guard::UserType => (
                "runs server code pgveil cannot see (a domain CHECK or a type's input function)",
                "user-defined-type",
            ),
        };
        return block(
            format!(
                "protected column {} reaches {}, which {does}",
                display(&guarded.column),
                guarded.target
            ),
            format!("{rule} ({})", decision.rule),
            Some(&guarded.column),
            "pass it constants or unprotected columns only",
        );
    }
    let mut masked = Vec::new();
    for (index, output) in analysis.outputs.iter().enumerate() {
        let what = |part: &str| format!("output column {} (\"{}\"){part}", index + 1, output.name);
        if let Some(shape) = &output.shape {
            match judge_json(shape, &what, catalog, policy) {
                Err(refusal) => return *refusal,
                Ok(json) => {
                    // Every protected column of the output must sit in a
                    // part the shape knows (a column of a USING join or a
                    // view's own column the policy names would not).
                    let mut parts = BTreeMap::new();
                    json.sources(&mut parts);
                    for column in output.sources.keys() {
                        let Some(decision) = policy.column(column) else {
                            continue;
                        };
                        if !matches!(decision.action, ColumnAction::Allow)
                            && !parts.contains_key(column)
                        {
                            return block(
                                format!(
                                    "{} is computed from protected column {}; only the column \
                                     itself can be masked",
                                    what(""),
                                    display(column)
                                ),
                                decision.rule,
                                Some(column),
                                "select the column itself to receive its masked form",
                            );
                        }
                    }
                    if let Some((decision, source)) = json.first_masked() {
                        masked.push(MaskedColumn {
                            index,
                            decision,
                            source,
                            json: Some(Arc::new(json)),
                        });
                    }
                }
            }
            continue;
        }
        match judge_value(&output.sources, &what(""), catalog, policy) {
            Err(refusal) => return *refusal,
            Ok(None) => {}
            Ok(Some((decision, source))) => masked.push(MaskedColumn {
                index,
                decision,
                source,
                json: None,
            }),
        }
    }
    if masked.is_empty() {
        StatementPlan::Allow
    } else {
        StatementPlan::Mask { columns: masked }
    }
}

/// The mask of one value (an output column, or a part of a JSON value one
/// builds) with lineage `sources`, named `what` in refusals: none when no
/// protected column reaches it; a refusal when a protected column is
/// denied, computed, or mixed with values of another mask or with chosen
/// values under a keyed mask.
fn judge_value(
    sources: &super::lineage::Sources,
    what: &str,
    catalog: &Catalog,
    policy: &dyn PolicyView,
) -> Result<Option<(ColumnDecision, QualifiedColumn)>, Box<StatementPlan>> {
    // mask_id -> (decision, source); any Derived flow is fatal.
    let mut masks: BTreeMap<usize, (ColumnDecision, QualifiedColumn)> = BTreeMap::new();
    for (column, flow) in sources {
        let Some(decision) = policy.column(column) else {
            continue;
        };
        match &decision.action {
            ColumnAction::Allow => {}
            ColumnAction::Deny => {
                return Err(Box::new(block(
                    format!(
                        "{what} reads {}, which is denied to this role",
                        display(column)
                    ),
                    decision.rule,
                    Some(column),
                    "remove the column from the select list",
                )));
            }
            ColumnAction::Mask { mask_id, mask_name } => {
                if *flow == Flow::Derived {
                    return Err(Box::new(block(
                        format!(
                            "{what} is computed from protected column {}; only the column \
                             itself can be masked",
                            display(column)
                        ),
                        decision.rule,
                        Some(column),
                        "select the column itself to receive its masked form",
                    )));
                }
                let chosen = || {
                    sources.keys().any(|other| {
                        other != column && !stored_under(catalog, policy, other, *mask_id)
                    })
                };
                if crate::mask::is_keyed(mask_name) && chosen() {
                    // A keyed token of a value the statement chose (a
                    // constant or another column through UNION ALL,
                    // COALESCE, CASE) is a dictionary entry: matched with
                    // the column's tokens, it gives the clear value.
                    return Err(Box::new(block(
                        format!(
                            "{what} may carry values other than protected column {} (a \
                             constant or another column, through UNION ALL, COALESCE or CASE), \
                             and its mask {mask_name} is keyed: masking values the statement \
                             chooses would show their tokens",
                            display(column)
                        ),
                        decision.rule,
                        Some(column),
                        "select the column itself, in an output column of its own",
                    )));
                }
                masks.insert(*mask_id, (decision.clone(), column.clone()));
            }
        }
    }
    let mut masks = masks.into_values();
    match (masks.next(), masks.next()) {
        (None, _) => Ok(None),
        (Some(one), None) => Ok(Some(one)),
        (Some((_, a)), Some((decision, b))) => Err(Box::new(block(
            format!(
                "{what} may carry {} or {}, which have different masks",
                display(&a),
                display(&b)
            ),
            decision.rule,
            Some(&b),
            "select each protected column in its own output column",
        ))),
    }
}

/// The masks of a JSON value an output column builds, part by part.
fn judge_json(
    shape: &JsonShape,
    what: &dyn Fn(&str) -> String,
    catalog: &Catalog,
    policy: &dyn PolicyView,
) -> Result<JsonPlan, Box<StatementPlan>> {
    Ok(match shape {
        JsonShape::Value(sources) => {
            match judge_value(
                sources,
                &what(", a part of its JSON value,"),
                catalog,
                policy,
            )? {
                None => JsonPlan::Clear(sources.keys().cloned().collect()),
                Some((decision, source)) => JsonPlan::Masked { decision, source },
            }
        }
        JsonShape::Array(items) => JsonPlan::Array(
            items
                .iter()
                .map(|item| judge_json(item, what, catalog, policy))
                .collect::<Result<_, _>>()?,
        ),
        JsonShape::Object(members) => JsonPlan::Object(
            members
                .iter()
                .map(|(key, member)| Ok((key.clone(), judge_json(member, what, catalog, policy)?)))
                .collect::<Result<_, Box<StatementPlan>>>()?,
        ),
        JsonShape::Elements(inner) => {
            JsonPlan::Elements(Box::new(judge_json(inner, what, catalog, policy)?))
        }
    })
}

/// PostgreSQL's first OID of objects not created by initdb.
const FIRST_NORMAL_OBJECT_ID: u32 = 16384;

/// A statement sqlparser could not parse is admitted only when none of its
/// words (string literals included) names something protected.
fn judge_fallback(
    scan: &FallbackScan,
    catalog: &Catalog,
    policy: &dyn PolicyView,
) -> StatementPlan {
    let unanalysable = |what: String| {
        block(
            format!("pgveil could not analyse this statement and it {what}"),
            HazardRule::Unanalysable.as_str(),
            None,
            "rewrite the statement in a form pgveil parses, or run it as a role without masks",
        )
    };
    if let Some(kind) = scan.unadmitted_kind {
        return unanalysable(format!(
            "is a {kind}, which pgveil admits only when its own parser reads it"
        ));
    }
    if let Some(word) = &scan.dynamic {
        return unanalysable(format!("runs dynamic SQL or server-side code ({word})"));
    }
    // The values a domain check reads are those of columns of the domain's
    // type or of types built over it: user-defined types all. A column of
    // a built-in type (OID below FirstNormalObjectId) is never checked.
    if scan.checks_domain_values {
        for relation in catalog.relations() {
            for column in &relation.columns {
                let (qualified, protected) = protection(policy, relation, &column.name);
                if protected && column.type_oid >= FIRST_NORMAL_OBJECT_ID {
                    return block(
                        format!(
                            "ALTER DOMAIN checks every stored value of the domain, and protected \
                             column {} has user-defined type {}, which may be or contain it",
                            display(&qualified),
                            column.type_name
                        ),
                        HazardRule::Unanalysable.as_str(),
                        Some(&qualified),
                        "add the constraint as NOT VALID, or run it as a role whose rule allows \
                         filtering by the column",
                    );
                }
            }
        }
    }
    let path: Vec<String> = vec!["public".into()];
    for relation in catalog.relations() {
        let named = scan.words.contains(&relation.name);
        if named {
            if let Some(rule) = policy.table_denied(&relation.schema, &relation.name) {
                let _ = rule;
                return unanalysable(format!(
                    "names denied table {}.{}",
                    relation.schema, relation.name
                ));
            }
        }
        // Views count as protected when what they read is, partitions and
        // inheritance children when their ancestors' columns are.
        let columns = if named && !relation.is_system() {
            let mut walker = Walker::new(catalog, &path);
            walker.relation_columns(relation)
        } else {
            Vec::new()
        };
        for column in &relation.columns {
            let (qualified, protected) = protection(policy, relation, &column.name);
            if protected && (named || scan.words.contains(&column.name)) {
                return unanalysable(format!("names protected column {}", display(&qualified)));
            }
        }
        for column in &columns {
            for source in column.sources.keys() {
                if policy.column(source).is_some_and(|d| !is_harmless(&d)) {
                    return unanalysable(format!(
                        "names {}.{}, which carries protected column {}",
                        relation.schema,
                        relation.name,
                        display(source)
                    ));
                }
            }
        }
    }
    for word in &scan.words {
        for function in catalog.functions_named(word) {
            if !function.is_builtin() && !policy.function_allowed(&function.schema, &function.name)
            {
                return block(
                    format!(
                        "a statement pgveil could not parse names user-defined function {}.{}, \
                         which the policy does not allow",
                        function.schema, function.name
                    ),
                    "user-defined-function",
                    None,
                    "pgveil cannot see what it reads or returns: ask the DBA to list it under functions.allow in the policy",
                );
            }
        }
    }
    StatementPlan::Allow
}

pub(crate) fn display(column: &QualifiedColumn) -> String {
    format!("{}.{}.{}", column.schema, column.table, column.column)
}
