//! Name lookup: which column, FROM item or whole row a (qualified) name
//! refers to in the current scope.

use sqlparser::ast::Expr;

use super::{as_derived, ident_name, merge_into, HazardRule, ScopeItem, Sources, Walker};

/// Bare identifiers that are SQL value keywords, not columns.
pub(super) const VALUE_KEYWORDS: &[&str] = &[
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "current_user",
    "current_role",
    "session_user",
    "user",
    "current_schema",
    "current_catalog",
    "default",
];

impl Walker<'_> {
    pub(super) fn find_item(&self, qualifier: &[String]) -> Option<ScopeItem> {
        for frame in self.frames.iter().rev() {
            for item in frame.items.iter().rev() {
                if item.is_named(qualifier) {
                    return Some(item.clone());
                }
            }
        }
        None
    }

    /// The FROM item (frame and item index) and column a plain column
    /// reference names, seen through parentheses and casts; None for
    /// anything else or a name that is ambiguous or not found.
    pub(super) fn column_reference(&self, expr: &Expr) -> Option<(usize, usize, String)> {
        let parts: Vec<String> = match expr {
            Expr::Nested(inner) => return self.column_reference(inner),
            Expr::Cast { expr, .. } => return self.column_reference(expr),
            Expr::Identifier(ident) => vec![ident_name(ident)],
            Expr::CompoundIdentifier(idents) => idents.iter().map(ident_name).collect(),
            _ => return None,
        };
        let (column, qualifier) = parts.split_last()?;
        for (f, frame) in self.frames.iter().enumerate().rev() {
            let mut found = frame.items.iter().enumerate().filter(|(_, item)| {
                let named = qualifier.is_empty() || item.is_named(qualifier);
                named && item.columns.iter().any(|c| &c.name == column)
            });
            match (found.next(), found.next()) {
                (Some((i, _)), None) => return Some((f, i, column.clone())),
                (Some(_), Some(_)) => return None,
                (None, _) => {}
            }
        }
        None
    }

    /// `ctid`, `t.xmin` …: a system column of a catalog relation in scope.
    fn is_system_column(&self, parts: &[String]) -> bool {
        const SYSTEM_COLUMNS: [&str; 6] = ["tableoid", "ctid", "xmin", "xmax", "cmin", "cmax"];
        let Some((column, qualifier)) = parts.split_last() else {
            return false;
        };
        if !SYSTEM_COLUMNS.contains(&column.as_str()) {
            return false;
        }
        if qualifier.is_empty() {
            // Unqualified: PostgreSQL finds it on a table of the nearest
            // level that has one (a VALUES list or subquery beside it has no
            // system columns; their real columns were tried first).
            self.frames
                .iter()
                .rev()
                .find(|f| f.items.iter().any(|i| i.relation.is_some()))
                .is_some_and(|f| f.items.iter().any(|i| i.relation.is_some() && !i.opaque))
        } else {
            self.find_item(qualifier)
                .is_some_and(|i| i.relation.is_some() && !i.opaque)
        }
    }

    /// Resolves `col`, `t.col`, `s.t.col`; `None` when nothing matches.
    pub(super) fn resolve_column(&self, parts: &[String]) -> Option<Sources> {
        let (qualifier, column) = parts.split_last().map(|(c, q)| (q, c))?;
        if qualifier.is_empty() {
            for frame in self.frames.iter().rev() {
                let mut found: Option<Sources> = None;
                for item in &frame.items {
                    if let Some(col) = item.columns.iter().find(|c| &c.name == column) {
                        let acc = found.get_or_insert_with(Sources::new);
                        merge_into(acc, &col.sources);
                    } else if item.opaque {
                        let acc = found.get_or_insert_with(Sources::new);
                        merge_into(acc, &item.opaque_sources);
                    }
                }
                if found.is_some() {
                    return found;
                }
            }
            return None;
        }
        let item = self.find_item(qualifier)?;
        match item.columns.iter().find(|c| &c.name == column) {
            Some(col) => Some(col.sources.clone()),
            None if item.opaque => Some(item.opaque_sources.clone()),
            None => None,
        }
    }

    pub(super) fn identifier(&mut self, parts: &[String]) -> Sources {
        if let Some(sources) = self.resolve_column(parts) {
            for column in sources.keys() {
                if !self.effects.reads.contains(column) {
                    self.effects.reads.insert(column.clone());
                }
            }
            return sources;
        }
        // System columns of a table (ctid, xmin …) hold no row data; only
        // when no FROM item has a real column of that name.
        if self.is_system_column(parts) {
            return Sources::new();
        }
        // A bare FROM-item name is a whole-row reference.
        if let Some(item) = self.find_item(parts) {
            return item.whole_row();
        }
        // `t.col.field` — a field of a composite column.
        if parts.len() >= 2 {
            if let Some(sources) = self.resolve_column(&parts[..parts.len() - 1]) {
                return as_derived(sources);
            }
        }
        if let [name] = parts {
            if VALUE_KEYWORDS.contains(&name.as_str()) {
                return Sources::new();
            }
        }
        self.hazard(
            HazardRule::UnknownName,
            format!("column {} could not be resolved", parts.join(".")),
        );
        Sources::new()
    }
}
