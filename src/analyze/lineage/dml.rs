//! Data-modifying statements: INSERT (ON CONFLICT too), UPDATE, DELETE,
//! MERGE and COPY FROM, the values they write (sinks), what the server
//! compares those values with (keys), and their RETURNING outputs.

use std::collections::{BTreeMap, BTreeSet};

use sqlparser::ast::{self, Expr, Ident, ObjectName, Query, SelectItem, Statement};

use super::{
    constant_source, is_constant, object_name_parts, truncate, Clause, Flow, Frame, HazardRule,
    Operand, OutputColumn, ScopeItem, Sink, Sources, Walker,
};
use crate::analyze::catalog::{Catalog, Relation, RelationKind};
use crate::analyze::policy_view::QualifiedColumn;

/// The stored columns a write into the item's column `name` lands in: the
/// column itself, or the base column an updatable view's column copies.
/// Not the ancestors' columns a partition or inheritance child also
/// carries: their keys are not checked by a write into the child (a
/// partition carries its own copy of a partitioned table's unique index).
fn written_columns(catalog: &Catalog, target: &ScopeItem, name: &str) -> Vec<QualifiedColumn> {
    let sources: Vec<QualifiedColumn> = target
        .columns
        .iter()
        .filter(|c| c.name == name)
        .flat_map(|c| c.sources.iter())
        .filter(|(column, flow)| **flow == Flow::Copy && **column != constant_source())
        .map(|(column, _)| column.clone())
        .collect();
    let mut ancestors: BTreeSet<(String, String)> = BTreeSet::new();
    for column in &sources {
        let mut pending = vec![(column.schema.clone(), column.table.clone())];
        while let Some((schema, table)) = pending.pop() {
            if let Some(relation) = catalog.relation(&schema, &table) {
                for parent in &relation.parents {
                    if ancestors.insert(parent.clone()) {
                        pending.push(parent.clone());
                    }
                }
            }
        }
    }
    sources
        .into_iter()
        .filter(|c| !ancestors.contains(&(c.schema.clone(), c.table.clone())))
        .collect()
}

/// The relations whose keys and CHECKs a write into `relation` meets:
/// itself and, for an UPDATE or DELETE (`all_children`), the rows of its
/// inheritance children and partitions too; an INSERT lands in one
/// partition of a partitioned table (any of them), and in an inheritance
/// parent itself only.
fn checked_relations<'a>(
    catalog: &'a Catalog,
    relation: &'a Relation,
    all_children: bool,
) -> Vec<&'a Relation> {
    let mut relations = vec![relation];
    if all_children || relation.kind == RelationKind::PartitionedTable {
        relations.extend(catalog.descendants(&relation.schema, &relation.name));
    }
    relations
}

/// The relations whose keys and CHECKs a write into the stored columns
/// `written` meets (see `checked_relations`), each once.
fn reached_relations<'a>(
    catalog: &'a Catalog,
    written: impl IntoIterator<Item = &'a QualifiedColumn>,
    all_children: bool,
) -> Vec<&'a Relation> {
    let mut relations: Vec<&Relation> = Vec::new();
    for column in written {
        if let Some(relation) = catalog.relation(&column.schema, &column.table) {
            for r in checked_relations(catalog, relation, all_children) {
                if !relations.iter().any(|x| x.oid == r.oid) {
                    relations.push(r);
                }
            }
        }
    }
    relations
}

/// `relation`'s column `column`.
fn column_of(relation: &Relation, column: &str) -> QualifiedColumn {
    QualifiedColumn {
        schema: relation.schema.clone(),
        table: relation.name.clone(),
        column: column.to_owned(),
    }
}

/// The column at the other end of a foreign key (see `KeyLink`).
fn link_column((schema, table, column): &(String, String, String)) -> QualifiedColumn {
    QualifiedColumn {
        schema: schema.clone(),
        table: table.clone(),
        column: column.clone(),
    }
}

/// What a written value is, from its lineage alone: a copy of columns, or
/// computed (its expression is not at hand to tell a constant).
fn operand_of(sources: &Sources) -> Operand {
    let columns: Vec<QualifiedColumn> = sources
        .iter()
        .filter(|(c, f)| **f == Flow::Copy && **c != constant_source())
        .map(|(c, _)| c.clone())
        .collect();
    if !columns.is_empty() && columns.len() == sources.len() {
        Operand::Columns(columns)
    } else {
        Operand::Computed
    }
}

/// `DEFAULT` in a VALUES row or SET: the column's default, not a value the
/// writer chose.
fn is_default(expr: &Expr) -> bool {
    matches!(expr, Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

/// The rows of a VALUES list.
fn values_rows(values: &ast::Values) -> Vec<Vec<&Expr>> {
    values
        .rows
        .iter()
        .map(|row| row.content.iter().collect())
        .collect()
}

/// The rows an INSERT's source spells out: a VALUES list, or the one row of
/// a SELECT without FROM; None for any other query.
fn literal_rows(source: Option<&Query>) -> Option<Vec<Vec<&Expr>>> {
    match source?.body.as_ref() {
        ast::SetExpr::Values(values) => Some(values_rows(values)),
        ast::SetExpr::Select(select) if select.from.is_empty() => {
            let row = select
                .projection
                .iter()
                .map(|item| match item {
                    SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                        Some(e)
                    }
                    _ => None,
                })
                .collect::<Option<Vec<&Expr>>>()?;
            Some(vec![row])
        }
        _ => None,
    }
}

/// What each column of an INSERT's rows is (see `Walker::key_checks`):
/// constants when every row of `rows` gives a literal or parameter there
/// (one candidate a row); None when every row gives DEFAULT; else what the
/// lineage says.
fn inserted_operands(
    rows: Option<&[Vec<&Expr>]>,
    outputs: &[OutputColumn],
) -> Vec<Option<Operand>> {
    outputs
        .iter()
        .enumerate()
        .map(|(i, output)| {
            let Some(rows) = rows else {
                return Some(operand_of(&output.sources));
            };
            let given: Vec<&Expr> = rows
                .iter()
                .filter_map(|row| row.get(i).copied())
                .filter(|e| !is_default(e))
                .collect();
            if given.is_empty() {
                None
            } else if given.iter().all(|e| is_constant(e)) {
                Some(Operand::Constants(given.len()))
            } else {
                Some(operand_of(&output.sources))
            }
        })
        .collect()
}

impl Walker<'_> {
    /// Analyses INSERT/UPDATE/DELETE/MERGE; returns RETURNING outputs.
    pub(crate) fn dml(&mut self, statement: &Statement) -> Vec<OutputColumn> {
        match statement {
            Statement::Insert(insert) => self.insert(insert),
            Statement::Update(update) => self.update(update),
            Statement::Delete(delete) => self.delete(delete),
            Statement::Merge(merge) => self.merge(merge),
            other => {
                self.hazard(
                    HazardRule::Unanalysable,
                    format!("statement in a CTE: {}", truncate(&other.to_string())),
                );
                Vec::new()
            }
        }
    }

    fn target_item(&mut self, name: &ObjectName, alias: Option<Ident>) -> Option<ScopeItem> {
        let parts = object_name_parts(name);
        let alias = alias.map(|a| ast::TableAlias {
            explicit: true,
            name: a,
            columns: Vec::new(),
            at: None,
        });
        self.relation_item(&parts, alias.as_ref())
    }

    /// Records the item's column `name`, and every stored column it stands
    /// for, as written (see `Effects::written`).
    fn record_written(&mut self, target: &ScopeItem, name: &str) {
        let stored = target
            .columns
            .iter()
            .filter(|c| c.name == name)
            .flat_map(|c| c.sources.iter())
            .filter(|(column, flow)| **flow == Flow::Copy && **column != constant_source());
        for (column, _) in stored {
            self.effects.written.insert(column.clone());
        }
    }

    fn write_sinks(
        &mut self,
        target: &ScopeItem,
        column: &str,
        sources: &Sources,
        via: &'static str,
    ) {
        self.record_written(target, column);
        let target_column = target.relation.as_ref().map(|(s, t)| QualifiedColumn {
            schema: s.clone(),
            table: t.clone(),
            column: column.to_owned(),
        });
        for (source, flow) in sources {
            self.effects.sinks.insert(Sink {
                source: source.clone(),
                flow: *flow,
                target: target_column.clone(),
                via,
            });
        }
    }

    /// Writing `value` into the item's column `name`: where the server
    /// compares it with values stored in other rows (the column under a
    /// unique index or exclusion constraint, the column a foreign key
    /// references), whether the write conflicts answers "is this value
    /// stored", as `column = value` would: a use of the compared column,
    /// an equality use only where the key compares with `=`.
    fn key_checks(&mut self, target: &ScopeItem, name: &str, value: &Operand, all_children: bool) {
        let catalog = self.catalog;
        for written in written_columns(catalog, target, name) {
            let Some(relation) = catalog.relation(&written.schema, &written.table) else {
                continue;
            };
            for checked in checked_relations(catalog, relation, all_children) {
                let own = column_of(checked, &written.column);
                let mut compared = Vec::new();
                let mut computed = false;
                for key in &checked.keys.unique {
                    if key.equal.contains(&written.column) {
                        compared.push(own.clone());
                    }
                    computed |= key.computed.contains(&written.column);
                }
                for link in checked.keys.references.iter().flatten() {
                    if link.column == written.column {
                        compared.push(link_column(&link.other));
                    }
                }
                // A stored generated column computed from it that a key or
                // CHECK reads compares a function of the value with a
                // function of the stored ones.
                computed |= checked.keys.generated.iter().any(|(generated, reads)| {
                    reads.contains(&written.column) && checked.keys.reads(generated)
                });
                if computed {
                    let sources = self.stored_column(&own);
                    self.with_clause(Clause::KeyCheck, |w| w.use_sources(&sources, false));
                }
                for checked in compared {
                    // A row's own value written back (`SET c = c`) finds itself.
                    if matches!(value, Operand::Columns(c) if c.as_slice() == std::slice::from_ref(&checked))
                    {
                        continue;
                    }
                    let sources = self.stored_column(&checked);
                    self.with_clause(Clause::KeyCheck, |w| w.compare(&sources, value));
                }
            }
        }
    }

    /// An INSERT that gives some key columns of a NULLS NOT DISTINCT unique
    /// index and leaves others out: their NULL conflicts with a stored
    /// NULL, an `IS NULL` test of the stored values (one candidate).
    fn omitted_key_columns(&mut self, target: &ScopeItem, given: &[String]) {
        let catalog = self.catalog;
        let written: Vec<QualifiedColumn> = given
            .iter()
            .flat_map(|name| written_columns(catalog, target, name))
            .collect();
        // The stored columns' names (a view may rename them).
        let stored: BTreeSet<&str> = written.iter().map(|c| c.column.as_str()).collect();
        for relation in reached_relations(catalog, &written, false) {
            for key in relation.keys.unique.iter().filter(|k| k.nulls_not_distinct) {
                if !key.equal.iter().any(|c| stored.contains(c.as_str())) {
                    continue;
                }
                for omitted in key.equal.iter().filter(|c| !stored.contains(c.as_str())) {
                    let sources = self.stored_column(&column_of(relation, omitted));
                    self.with_clause(Clause::KeyCheck, |w| {
                        w.compare(&sources, &Operand::Constants(1))
                    });
                }
            }
        }
    }

    /// A stored column with the same-named columns of its relation's
    /// ancestors (a partition's or inheritance child's rows are theirs, and
    /// so are their rules).
    fn stored_column(&mut self, column: &QualifiedColumn) -> Sources {
        let catalog = self.catalog;
        catalog
            .relation(&column.schema, &column.table)
            .and_then(|relation| {
                self.relation_columns(relation)
                    .into_iter()
                    .find(|c| c.name == column.column)
            })
            .map(|c| c.sources)
            .unwrap_or_else(|| Sources::from([(column.clone(), Flow::Copy)]))
    }

    /// What the server checks about the rows a DELETE (`changed` None) or
    /// an UPDATE of the columns `changed` leaves or removes, beyond the
    /// values written (`key_checks`), in the target and in the rows of its
    /// children and partitions it reaches:
    /// - other relations' foreign keys that reference a deleted row, or a
    ///   changed key: the old key is looked up in the referencing columns
    ///   (an error, or the rows a cascade changes, tell whether one holds
    ///   it), a join of those columns with the target's;
    /// - a unique index or foreign key over a changed column and columns
    ///   left as they are: the row's stored values of those are compared
    ///   with other rows' (or looked up), a join, or a general use where
    ///   the key does not compare them with `=`;
    /// - a CHECK constraint over a changed column and columns left as they
    ///   are, or any CHECK added NOT VALID: whether it holds depends on the
    ///   stored values, a general use.
    fn row_checks(
        &mut self,
        target: &ScopeItem,
        changed: Option<&BTreeSet<String>>,
        all_children: bool,
    ) {
        let catalog = self.catalog;
        let written: BTreeSet<QualifiedColumn> = target
            .columns
            .iter()
            .filter(|c| changed.is_none_or(|names| names.contains(&c.name)))
            .flat_map(|c| written_columns(catalog, target, &c.name))
            .collect();
        let written_names: BTreeSet<&str> = written.iter().map(|c| c.column.as_str()).collect();
        let is_written = |column: &str| written_names.contains(column);
        for relation in reached_relations(catalog, &written, all_children) {
            let own = |column: &str| column_of(relation, column);
            let mut joins: Vec<(QualifiedColumn, QualifiedColumn)> = Vec::new();
            // Deleting a referenced row, or changing its key, looks its
            // stored key up in the referencing column: a join both ways,
            // as a foreign key's own check is.
            for key in &relation.keys.referenced_by {
                if key.iter().any(|link| is_written(&link.column)) {
                    for link in key {
                        joins.push((link_column(&link.other), own(&link.column)));
                        joins.push((own(&link.column), link_column(&link.other)));
                    }
                }
            }
            let mut general: Vec<QualifiedColumn> = Vec::new();
            if changed.is_some() {
                for key in &relation.keys.unique {
                    if key.equal.iter().chain(&key.computed).any(|c| is_written(c)) {
                        for kept in key.equal.iter().filter(|c| !is_written(c)) {
                            joins.push((own(kept), own(kept)));
                        }
                        general.extend(
                            key.computed
                                .iter()
                                .filter(|c| !is_written(c))
                                .map(|c| own(c)),
                        );
                    }
                }
                for key in &relation.keys.references {
                    if key.iter().any(|link| is_written(&link.column)) {
                        for link in key.iter().filter(|l| !is_written(&l.column)) {
                            joins.push((own(&link.column), link_column(&link.other)));
                            joins.push((link_column(&link.other), own(&link.column)));
                        }
                    }
                }
                for set in &relation.keys.checks {
                    if set.iter().any(|c| is_written(c)) {
                        general.extend(set.iter().filter(|c| !is_written(c)).map(|c| own(c)));
                    }
                }
                for set in &relation.keys.unvalidated_checks {
                    general.extend(set.iter().filter(|c| !is_written(c)).map(|c| own(c)));
                }
            }
            for (column, partner) in joins {
                let sources = self.stored_column(&column);
                let partner = Operand::Columns(vec![partner]);
                self.with_clause(Clause::KeyCheck, |w| w.compare(&sources, &partner));
            }
            for column in general {
                let sources = self.stored_column(&column);
                self.with_clause(Clause::KeyCheck, |w| w.use_sources(&sources, false));
            }
        }
    }

    /// `COPY table [(columns)] FROM …`: the rows it loads are values the
    /// caller chose, any number of them, written into the listed (or all)
    /// columns (see `key_checks`).
    pub(crate) fn copy_into(&mut self, table: &[String], columns: &[String]) {
        // A table not in the catalog is the server's to reject (42P01),
        // once the catalog is read again.
        if self.catalog_relation(table).is_none() {
            self.effects.absent.insert(table.join("."));
            return;
        }
        let Some(target) = self.relation_item(table, None) else {
            return;
        };
        let names: Vec<String> = if columns.is_empty() {
            target.columns.iter().map(|c| c.name.clone()).collect()
        } else {
            columns.to_vec()
        };
        for name in &names {
            self.record_written(&target, name);
            self.key_checks(&target, name, &Operand::Computed, false);
        }
    }

    fn returning(&mut self, items: Option<&Vec<SelectItem>>) -> Vec<OutputColumn> {
        let mut outputs = Vec::new();
        if let Some(items) = items {
            self.with_clause(Clause::Returning, |w| {
                for item in items {
                    w.select_item(item, &mut outputs);
                }
            });
        }
        outputs
    }

    fn insert(&mut self, insert: &ast::Insert) -> Vec<OutputColumn> {
        let ast::TableObject::TableName(name) = &insert.table else {
            self.hazard(HazardRule::Unanalysable, "INSERT into a table function");
            return Vec::new();
        };
        let alias = insert.table_alias.as_ref().map(|a| a.alias.clone());
        let Some(target) = self.target_item(name, alias) else {
            return Vec::new();
        };
        let target_columns: Vec<String> = if insert.columns.is_empty() {
            target.columns.iter().map(|c| c.name.clone()).collect()
        } else {
            insert
                .columns
                .iter()
                .filter_map(|c| object_name_parts(c).pop())
                .collect()
        };
        let source_outputs = match &insert.source {
            Some(query) => {
                self.frames.push(Frame::default());
                let outputs = self.query(query);
                self.frames.pop();
                outputs
            }
            None => Vec::new(),
        };
        for (column, output) in target_columns.iter().zip(source_outputs.iter()) {
            self.write_sinks(&target, column, &output.sources, "INSERT");
        }
        let rows = literal_rows(insert.source.as_deref());
        let operands = inserted_operands(rows.as_deref(), &source_outputs);
        for (column, operand) in target_columns.iter().zip(operands.iter()) {
            if let Some(operand) = operand {
                self.key_checks(&target, column, operand, false);
            }
        }
        let given: Vec<String> = target_columns
            .iter()
            .zip(operands.iter())
            .filter(|(_, o)| o.is_some())
            .map(|(c, _)| c.clone())
            .collect();
        self.omitted_key_columns(&target, &given);
        if !insert.assignments.is_empty() {
            self.hazard(HazardRule::Unanalysable, "INSERT … SET");
        }
        self.frames.push(Frame {
            // RETURNING * lists the target's columns.
            star: target.columns.clone(),
            ..Frame::default()
        });
        self.push_item(target.clone());
        if let Some(on) = &insert.on {
            match on {
                ast::OnInsert::OnConflict(conflict) => {
                    if let ast::OnConflictAction::DoUpdate(update) = &conflict.action {
                        // EXCLUDED holds the row that was proposed for insertion.
                        let excluded_columns = target
                            .columns
                            .iter()
                            .map(|c| {
                                let sources = target_columns
                                    .iter()
                                    .position(|t| t == &c.name)
                                    .and_then(|i| source_outputs.get(i))
                                    .map(|o| o.sources.clone())
                                    .unwrap_or_default();
                                OutputColumn {
                                    name: c.name.clone(),
                                    sources,
                                    builtin_type: None,
                                    shape: None,
                                    name_known: true,
                                }
                            })
                            .collect();
                        let at = (
                            self.frames.len().saturating_sub(1),
                            self.frames.last().map_or(0, |f| f.items.len()),
                        );
                        self.push_item(ScopeItem {
                            alias: "excluded".into(),
                            relation: None,
                            columns: excluded_columns,
                            opaque: false,
                            opaque_sources: Sources::new(),
                            builtin_typed: BTreeMap::new(),
                        });
                        let inserted: Vec<(String, Option<Operand>)> = target_columns
                            .iter()
                            .cloned()
                            .zip(operands.iter().cloned())
                            .collect();
                        let outer = self.excluded.replace((at, inserted.clone()));
                        self.assignments(
                            &target,
                            &update.assignments,
                            "ON CONFLICT DO UPDATE",
                            Some(&inserted),
                        );
                        if let Some(selection) = &update.selection {
                            self.with_clause(Clause::Where, |w| w.predicate(selection));
                        }
                        self.excluded = outer;
                        // EXCLUDED is not in scope for RETURNING.
                        if let Some(frame) = self.frames.last_mut() {
                            frame.items.pop();
                        }
                    }
                }
                _ => {
                    self.hazard(
                        HazardRule::Unanalysable,
                        "non-PostgreSQL ON clause of INSERT",
                    );
                }
            }
        }
        let outputs = self.returning(insert.returning.as_ref());
        self.frames.pop();
        outputs
    }

    fn assignments(
        &mut self,
        target: &ScopeItem,
        assignments: &[ast::Assignment],
        via: &'static str,
        excluded: Option<&[(String, Option<Operand>)]>,
    ) {
        // ON CONFLICT updates the conflicting row of the INSERT's target;
        // UPDATE and MERGE reach its children's rows too.
        let all_children = excluded.is_none();
        let mut changed: BTreeSet<String> = BTreeSet::new();
        for assignment in assignments {
            let columns: Vec<String> = match &assignment.target {
                ast::AssignmentTarget::ColumnName(name) => {
                    object_name_parts(name).pop().into_iter().collect()
                }
                ast::AssignmentTarget::Tuple(names) => names
                    .iter()
                    .filter_map(|n| object_name_parts(n).pop())
                    .collect(),
            };
            let sources = self.with_clause(Clause::Assignment, |w| w.expr(&assignment.value));
            for column in &columns {
                self.write_sinks(target, column, &sources, via);
            }
            // What each column is given, for `key_checks`.
            // `EXCLUDED.c` is the value the INSERT proposed for `c`, whose
            // key checks the INSERT made: what that value was.
            let proposed = excluded.and(self.excluded_operand(&assignment.value));
            let values: Vec<Option<Operand>> = match (&assignment.value, columns.len()) {
                (value, 1) if is_default(value) => vec![None],
                (_, 1) if proposed.is_some() => vec![proposed.flatten()],
                (value, 1) => vec![Some(self.operand(value, &sources))],
                (Expr::Tuple(values), n) if values.len() == n => values
                    .iter()
                    .map(|v| {
                        if is_default(v) {
                            None
                        } else if is_constant(v) {
                            Some(Operand::Constants(1))
                        } else {
                            Some(Operand::Computed)
                        }
                    })
                    .collect(),
                _ => vec![Some(Operand::Computed); columns.len()],
            };
            for (column, value) in columns.iter().zip(values.iter()) {
                if let Some(value) = value {
                    self.key_checks(target, column, value, all_children);
                }
            }
            changed.extend(columns);
        }
        self.row_checks(target, Some(&changed), all_children);
    }

    /// What a plain reference to `EXCLUDED.c` stands for while an ON
    /// CONFLICT DO UPDATE is walked: the operand the INSERT proposed for
    /// `c` (None inside: DEFAULT). None when the INSERT does not name `c`
    /// (its default's value, judged as computed) and when `expr` is
    /// anything else, a FROM item of a subquery named `excluded` included.
    pub(super) fn excluded_operand(&self, expr: &Expr) -> Option<Option<Operand>> {
        let (at, proposed) = self.excluded.as_ref()?;
        let mut plain = expr;
        while let Expr::Nested(inner) = plain {
            plain = inner;
        }
        if !matches!(plain, Expr::CompoundIdentifier(_)) {
            return None;
        }
        let (frame, item, column) = self.column_reference(plain)?;
        if (frame, item) != *at {
            return None;
        }
        proposed
            .iter()
            .find(|(name, _)| *name == column)
            .map(|(_, operand)| operand.clone())
    }

    fn update(&mut self, update: &ast::Update) -> Vec<OutputColumn> {
        self.frames.push(Frame::default());
        let mut star = self.table_with_joins(&update.table);
        let target = self
            .frames
            .last()
            .and_then(|f| f.items.first().cloned())
            .unwrap_or(ScopeItem {
                alias: String::new(),
                relation: None,
                columns: star.clone(),
                opaque: true,
                opaque_sources: Sources::new(),
                builtin_typed: BTreeMap::new(),
            });
        if let Some(from) = &update.from {
            let tables = match from {
                ast::UpdateTableFromKind::BeforeSet(t) | ast::UpdateTableFromKind::AfterSet(t) => t,
            };
            for table in tables {
                let from_star = self.table_with_joins(table);
                star.extend(from_star);
            }
        }
        // RETURNING * lists the target's columns, then those of FROM.
        if let Some(frame) = self.frames.last_mut() {
            frame.star = star;
        }
        if let Some(selection) = &update.selection {
            self.with_clause(Clause::Where, |w| w.predicate(selection));
        }
        self.assignments(&target, &update.assignments, "UPDATE … SET", None);
        let outputs = self.returning(update.returning.as_ref());
        self.frames.pop();
        outputs
    }

    fn delete(&mut self, delete: &ast::Delete) -> Vec<OutputColumn> {
        self.frames.push(Frame::default());
        let tables = match &delete.from {
            ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
        };
        // RETURNING * lists the target's columns, then those of USING.
        let mut star = Vec::new();
        for table in tables.iter().chain(delete.using.iter().flatten()) {
            star.extend(self.table_with_joins(table));
        }
        let target = self.frames.last().and_then(|f| f.items.first().cloned());
        if let Some(frame) = self.frames.last_mut() {
            frame.star = star;
        }
        if let Some(selection) = &delete.selection {
            self.with_clause(Clause::Where, |w| w.predicate(selection));
        }
        if let Some(target) = &target {
            self.row_checks(target, None, true);
        }
        let outputs = self.returning(delete.returning.as_ref());
        self.frames.pop();
        outputs
    }

    fn merge(&mut self, merge: &ast::Merge) -> Vec<OutputColumn> {
        self.frames.push(Frame::default());
        self.table_factor(&merge.table);
        let target = self.frames.last().and_then(|f| f.items.first().cloned());
        self.table_factor(&merge.source);
        self.with_clause(Clause::JoinOn, |w| w.predicate(&merge.on));
        for clause in &merge.clauses {
            if let Some(predicate) = &clause.predicate {
                self.with_clause(Clause::Where, |w| w.predicate(predicate));
            }
            match &clause.action {
                ast::MergeAction::Update(update) => match (&update.kind, &target) {
                    (ast::MergeUpdateKind::Set(assignments), Some(target)) => {
                        self.assignments(target, assignments, "MERGE UPDATE", None)
                    }
                    _ => self.hazard(HazardRule::Unanalysable, "MERGE UPDATE form"),
                },
                ast::MergeAction::Insert(insert) => match (&insert.kind, &target) {
                    (ast::MergeInsertKind::Values(values), Some(target)) => {
                        let outputs = self.values(values);
                        let columns: Vec<String> = if insert.columns.is_empty() {
                            target.columns.iter().map(|c| c.name.clone()).collect()
                        } else {
                            insert
                                .columns
                                .iter()
                                .filter_map(|c| object_name_parts(c).pop())
                                .collect()
                        };
                        for (column, out) in columns.iter().zip(outputs.iter()) {
                            self.write_sinks(target, column, &out.sources, "MERGE INSERT");
                        }
                        let rows = values_rows(values);
                        let operands = inserted_operands(Some(&rows), &outputs);
                        for (column, operand) in columns.iter().zip(operands.iter()) {
                            if let Some(operand) = operand {
                                self.key_checks(target, column, operand, false);
                            }
                        }
                    }
                    _ => self.hazard(HazardRule::Unanalysable, "MERGE INSERT form"),
                },
                ast::MergeAction::Delete { .. } => {
                    if let Some(target) = &target {
                        self.row_checks(target, None, true);
                    }
                }
                ast::MergeAction::DoNothing { .. } => {}
            }
        }
        let outputs = match &merge.output {
            Some(ast::OutputClause::Returning { select_items, .. }) => {
                self.returning(Some(select_items))
            }
            Some(ast::OutputClause::Output { .. }) => {
                self.hazard(HazardRule::Unanalysable, "MERGE OUTPUT");
                Vec::new()
            }
            None => Vec::new(),
        };
        self.frames.pop();
        outputs
    }
}
