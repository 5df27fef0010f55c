//! Data-modifying statements: INSERT (ON CONFLICT too), UPDATE, DELETE and
//! MERGE, the values they write (sinks) and their RETURNING outputs.

use std::collections::BTreeMap;

use sqlparser::ast::{self, Ident, ObjectName, SelectItem, Statement};

use super::{
    object_name_parts, truncate, Clause, Frame, HazardRule, OutputColumn, ScopeItem, Sink, Sources,
    Walker,
};
use crate::analyze::policy_view::QualifiedColumn;

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

    fn write_sinks(
        &mut self,
        target: &ScopeItem,
        column: &str,
        sources: &Sources,
        via: &'static str,
    ) {
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
                                }
                            })
                            .collect();
                        self.push_item(ScopeItem {
                            alias: "excluded".into(),
                            relation: None,
                            columns: excluded_columns,
                            opaque: false,
                            opaque_sources: Sources::new(),
                            builtin_typed: BTreeMap::new(),
                        });
                        self.assignments(&target, &update.assignments, "ON CONFLICT DO UPDATE");
                        if let Some(selection) = &update.selection {
                            self.with_clause(Clause::Where, |w| w.predicate(selection));
                        }
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
    ) {
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
        }
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
        self.assignments(&target, &update.assignments, "UPDATE … SET");
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
        if let Some(frame) = self.frames.last_mut() {
            frame.star = star;
        }
        if let Some(selection) = &delete.selection {
            self.with_clause(Clause::Where, |w| w.predicate(selection));
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
                        self.assignments(target, assignments, "MERGE UPDATE")
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
                    }
                    _ => self.hazard(HazardRule::Unanalysable, "MERGE INSERT form"),
                },
                ast::MergeAction::Delete { .. } | ast::MergeAction::DoNothing { .. } => {}
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
