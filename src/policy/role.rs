//! Role resolution: which roles a login role belongs to (transitively, from
//! `pg_auth_members`), and the per-role view of a `PolicySet` the analyzer
//! asks for decisions.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::compile::PolicySet;
use crate::analyze::policy_view::{
    ColumnAction, ColumnDecision, FilterRight, PolicyView, QualifiedColumn,
};

/// Distinguishes membership snapshots so per-role views built from an old
/// snapshot are rebuilt.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// Every role each role is a member of, directly or through other roles.
#[derive(Debug, Clone)]
pub struct RoleMembership {
    member_of: HashMap<String, BTreeSet<String>>,
    generation: u64,
}

impl Default for RoleMembership {
    fn default() -> Self {
        Self::from_edges(std::iter::empty::<(String, String)>())
    }
}

impl RoleMembership {
    /// Builds the transitive closure of `(member, group)` edges.
    pub fn from_edges<S: Into<String>>(edges: impl IntoIterator<Item = (S, S)>) -> Self {
        let mut direct: HashMap<String, Vec<String>> = HashMap::new();
        for (member, group) in edges {
            direct.entry(member.into()).or_default().push(group.into());
        }
        let mut member_of = HashMap::new();
        for member in direct.keys() {
            let mut reached = BTreeSet::new();
            let mut pending: Vec<&String> = direct[member].iter().collect();
            while let Some(group) = pending.pop() {
                // Membership cycles are impossible in PostgreSQL, but a
                // visited set keeps a hand-built graph from looping.
                if reached.insert(group.clone()) {
                    if let Some(next) = direct.get(group) {
                        pending.extend(next);
                    }
                }
            }
            member_of.insert(member.clone(), reached);
        }
        Self {
            member_of,
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Reads every membership edge of the upstream cluster.
    pub async fn load(client: &tokio_postgres::Client) -> Result<Self, tokio_postgres::Error> {
        let rows = client
            .query(
                "SELECT m.rolname::text, g.rolname::text \
                 FROM pg_catalog.pg_auth_members a \
                 JOIN pg_catalog.pg_roles m ON m.oid = a.member \
                 JOIN pg_catalog.pg_roles g ON g.oid = a.roleid",
                &[],
            )
            .await?;
        let mut edges = Vec::with_capacity(rows.len());
        for row in rows {
            edges.push((row.try_get::<_, String>(0)?, row.try_get::<_, String>(1)?));
        }
        Ok(Self::from_edges(edges))
    }

    /// The login role itself and every role it is a member of.
    pub fn effective_roles(&self, login_role: &str) -> BTreeSet<String> {
        let mut roles = self.member_of.get(login_role).cloned().unwrap_or_default();
        roles.insert(login_role.to_string());
        roles
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// Role memberships cached for a TTL; the proxy refreshes them when stale
/// and on every policy reload.
pub struct RoleMembershipCache {
    current: ArcSwap<RoleMembership>,
    fetched_at: Mutex<Option<Instant>>,
    ttl: Duration,
}

impl RoleMembershipCache {
    /// An empty cache: until the first refresh every login role is only
    /// itself, which can only narrow what it sees.
    pub fn new(ttl: Duration) -> Self {
        Self {
            current: ArcSwap::from_pointee(RoleMembership::default()),
            fetched_at: Mutex::new(None),
            ttl,
        }
    }

    pub fn current(&self) -> Arc<RoleMembership> {
        self.current.load_full()
    }

    /// Marks the snapshot stale so the next use refreshes it (SIGHUP).
    pub fn expire(&self) {
        if let Ok(mut at) = self.fetched_at.lock() {
            *at = None;
        }
    }

    /// Restarts the TTL without new data, so a failing upstream is not
    /// asked again on every statement.
    pub fn mark_fetched(&self) {
        if let Ok(mut at) = self.fetched_at.lock() {
            *at = Some(Instant::now());
        }
    }

    /// True when never fetched or older than the TTL.
    pub fn is_stale(&self) -> bool {
        match self.fetched_at.lock() {
            Ok(at) => at.is_none_or(|at| at.elapsed() >= self.ttl),
            Err(_) => true,
        }
    }

    /// Reloads from the upstream; on error the previous snapshot stays.
    pub async fn refresh(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<Arc<RoleMembership>, tokio_postgres::Error> {
        let fresh = Arc::new(RoleMembership::load(client).await?);
        self.current.store(Arc::clone(&fresh));
        if let Ok(mut at) = self.fetched_at.lock() {
            *at = Some(Instant::now());
        }
        Ok(fresh)
    }

    /// Refreshes only when stale.
    pub async fn get(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<Arc<RoleMembership>, tokio_postgres::Error> {
        if self.is_stale() {
            self.refresh(client).await
        } else {
            Ok(self.current())
        }
    }
}

/// One login role's decisions, precomputed from a `PolicySet`.
#[derive(Debug)]
pub struct RolePolicy {
    login_role: String,
    columns: HashMap<QualifiedColumn, ColumnDecision>,
    denied_tables: HashMap<(String, String), String>,
    functions: HashSet<(String, String)>,
    unrestricted: bool,
    /// Roles the policy names that this login role is or belongs to, in
    /// the order the policy first names them.
    matched_roles: Vec<String>,
    /// The set's mask specs, by mask id (see `PolicySet::mask_specs`).
    mask_specs: Vec<String>,
}

impl RolePolicy {
    pub(crate) fn build(set: &PolicySet, login_role: &str, memberships: &RoleMembership) -> Self {
        let roles = memberships.effective_roles(login_role);
        let matches = |named: &[String]| named.iter().any(|r| roles.contains(r));
        let mut columns = HashMap::with_capacity(set.columns.len());
        for (name, column) in &set.columns {
            let (outcome, rule) = column
                .rules
                .iter()
                .find(|rule| matches(&rule.roles))
                .map(|rule| (&rule.outcome, rule.label.clone()))
                .unwrap_or((&column.default, column.default_label.clone()));
            columns.insert(
                name.clone(),
                ColumnDecision {
                    action: outcome.action.clone(),
                    filter: outcome.filter,
                    rule,
                    class: column.class.clone(),
                    max_candidates: outcome.max_candidates,
                },
            );
        }
        let denied_tables: HashMap<(String, String), String> = set
            .tables
            .iter()
            .filter(|(_, table)| matches(&table.denied_roles))
            .map(|(key, table)| (key.clone(), table.label.clone()))
            .collect();
        let unrestricted = denied_tables.is_empty()
            && columns
                .values()
                .all(|d| matches!(d.action, ColumnAction::Allow) && d.filter == FilterRight::Allow);
        let mut matched: Vec<(&super::error::SourceLocation, &String)> = set
            .role_locations
            .iter()
            .filter(|(role, _)| roles.contains(*role))
            .map(|(role, at)| (at, role))
            .collect();
        matched.sort_by(|a, b| {
            (&a.0.file, a.0.line, a.0.column).cmp(&(&b.0.file, b.0.line, b.0.column))
        });
        Self {
            matched_roles: matched.into_iter().map(|(_, r)| r.clone()).collect(),
            login_role: login_role.to_string(),
            columns,
            denied_tables,
            functions: set.functions.clone(),
            unrestricted,
            mask_specs: set.mask_specs.clone(),
        }
    }

    /// The login role this view was built for.
    pub fn login_role(&self) -> &str {
        &self.login_role
    }

    /// Roles the policy names that this login matched, first-named first.
    pub fn matched_roles(&self) -> &[String] {
        &self.matched_roles
    }
}

impl PolicyView for RolePolicy {
    fn column(&self, column: &QualifiedColumn) -> Option<ColumnDecision> {
        self.columns.get(column).cloned()
    }

    fn table_denied(&self, schema: &str, table: &str) -> Option<String> {
        self.denied_tables
            .get(&(schema.to_string(), table.to_string()))
            .cloned()
    }

    fn function_allowed(&self, schema: &str, name: &str) -> bool {
        self.unrestricted
            || self
                .functions
                .contains(&(schema.to_string(), name.to_string()))
    }

    fn is_unrestricted(&self) -> bool {
        self.unrestricted
    }

    fn same_mask(&self, a: usize, b: usize) -> bool {
        a == b
            || matches!((self.mask_specs.get(a), self.mask_specs.get(b)), (Some(x), Some(y)) if x == y)
    }
}
