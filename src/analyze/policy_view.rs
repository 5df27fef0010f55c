//! The contract between `analyze` and `policy`: what the analyzer needs to
//! know about one login role's rights. `policy` implements it; the analyzer
//! never reads policy files itself.

/// A fully qualified column: `schema.table.column` (table may be a view).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QualifiedColumn {
    pub schema: String,
    pub table: String,
    pub column: String,
}

/// How a protected column may be used outside the select list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterRight {
    /// Any use outside the select list is rejected.
    Deny,
    /// `col = value`, `col IN (...)` and equi-joins between columns only.
    Equality,
    /// Any use.
    Allow,
}

/// What one role gets for one protected column.
#[derive(Debug, Clone)]
pub enum ColumnAction {
    /// Clear text.
    Allow,
    /// The named mask from the masking catalogue, with its compiled form
    /// identified by `mask_id` (an index the policy understands).
    Mask { mask_id: usize, mask_name: String },
    /// Any statement that reads the column is rejected.
    Deny,
}

/// The decision for one protected column and one role.
#[derive(Debug, Clone)]
pub struct ColumnDecision {
    pub action: ColumnAction,
    pub filter: FilterRight,
    /// Human-readable name of the rule that matched, for error messages,
    /// e.g. `public.customers.id_number rule 2 (roles: call_center)` or
    /// `public.customers.id_number default`.
    pub rule: String,
    /// Free classification label (`C2`, `PCI` ...), for metrics and audit.
    pub class: Option<String>,
    /// With `FilterRight::Equality`: how many constants one statement may
    /// compare the column with (`IN` lists, `= ANY(ARRAY[…])`, OR chains).
    pub max_candidates: usize,
}

/// `max_candidates` when the policy does not say.
pub const DEFAULT_MAX_CANDIDATES: usize = 100;

/// One login role's view of the compiled policy.
pub trait PolicyView: Send + Sync {
    /// `None` when the column is not protected at all.
    fn column(&self, column: &QualifiedColumn) -> Option<ColumnDecision>;
    /// `Some(rule name)` when the whole table/view is denied to this role.
    fn table_denied(&self, schema: &str, table: &str) -> Option<String>;
    /// Whether a user-defined function may be called by this role.
    fn function_allowed(&self, schema: &str, name: &str) -> bool;
    /// True when every rule that applies to this role is `allow` and no table
    /// is denied: the analyzer may skip analysis entirely (fast path).
    fn is_unrestricted(&self) -> bool;
    /// True when this role has any mask or deny: the fail-closed rules
    /// (dynamic SQL, unknown functions, search_path changes) apply.
    fn is_restricted(&self) -> bool {
        !self.is_unrestricted()
    }
    /// Whether the masks `a` and `b` (of one mask function) hide the same
    /// parts: the same arguments and key. Views without that knowledge
    /// (tests) say yes.
    fn same_mask(&self, _a: usize, _b: usize) -> bool {
        true
    }
}
