//! Utility statements that read columns: COPY's source, ALTER … RENAME
//! (which moves values out from under their rules) and DDL expressions.

use sqlparser::ast::{self, AlterTableOperation, Ident, ObjectName, Visit};

use super::{
    ident_name, merge_into, object_name_parts, Clause, Flow, Frame, HazardRule, NameCollector,
    OutputColumn, Sink, Sources, Walker,
};

impl Walker<'_> {
    /// COPY's outputs: the listed (or all) columns of a table, or a query's.
    pub(crate) fn copy_source(&mut self, source: &ast::CopySource) -> Vec<OutputColumn> {
        match source {
            ast::CopySource::Table {
                table_name,
                columns,
            } => {
                let parts = object_name_parts(table_name);
                let Some(item) = self.relation_item(&parts, None) else {
                    return Vec::new();
                };
                if columns.is_empty() {
                    item.columns
                } else {
                    columns
                        .iter()
                        .map(|c| {
                            let name = ident_name(c);
                            let sources = item
                                .columns
                                .iter()
                                .find(|col| col.name == name)
                                .map(|col| col.sources.clone())
                                .unwrap_or_default();
                            OutputColumn { name, sources }
                        })
                        .collect()
                }
            }
            ast::CopySource::Query(query) => self.query(query),
        }
    }

    /// Renaming a table or column moves its values out from under the
    /// policy rules that name it: a write of every affected column.
    pub(crate) fn rename(&mut self, table: &ObjectName, column: Option<&Ident>) {
        let parts = object_name_parts(table);
        let Some(item) = self.relation_item(&parts, None) else {
            return;
        };
        let renamed = column.map(ident_name);
        for col in &item.columns {
            if renamed.as_ref().is_some_and(|r| r != &col.name) {
                continue;
            }
            for source in col.sources.keys() {
                self.effects.sinks.insert(Sink {
                    source: source.clone(),
                    flow: Flow::Derived,
                    target: None,
                    via: "ALTER … RENAME",
                });
            }
        }
    }

    /// ALTER TABLE. A PRIMARY KEY or UNIQUE constraint over plain columns
    /// compares their values with each other (adding it fails on a
    /// duplicate): an equality use, as an equi-join is. Every other
    /// operation is judged by `ddl_on_table`.
    pub(crate) fn alter_table(&mut self, table: &ObjectName, operations: &[AlterTableOperation]) {
        for operation in operations {
            let Some(columns) = plain_key_columns(operation) else {
                self.ddl_on_table(table, operation);
                continue;
            };
            self.frames.push(Frame::default());
            if let Some(item) = self.relation_item(&object_name_parts(table), None) {
                self.push_item(item);
            }
            self.with_clause(Clause::Ddl, |w| {
                for column in &columns {
                    if let Some(sources) = w.resolve_column(std::slice::from_ref(column)) {
                        w.use_sources(&sources, true);
                    }
                }
            });
            self.frames.pop();
        }
    }

    /// DDL on `table` whose expressions (CHECK, USING, policies) read its
    /// columns: every column they mention is a general use.
    pub(crate) fn ddl_on_table<T: Visit>(&mut self, table: &ObjectName, node: &T) {
        let parts = object_name_parts(table);
        self.frames.push(Frame::default());
        if let Some(item) = self.relation_item(&parts, None) {
            self.push_item(item);
        }
        let mut collector = NameCollector::default();
        let _ = node.visit(&mut collector);
        self.with_clause(Clause::Ddl, |w| {
            let mut mentioned = Sources::new();
            for parts in &collector.columns {
                // Unresolvable names in DDL are new column names; harmless.
                if let Some(sources) = w.resolve_column(parts) {
                    w.use_sources(&sources, false);
                    merge_into(&mut mentioned, &sources);
                }
            }
            for function in &collector.functions {
                let category = w.check_function(function, None);
                let name = function.last().map(String::as_str).unwrap_or_default();
                w.guard_arguments(name, category, std::slice::from_ref(&mentioned));
            }
        });
        if collector.has_query {
            self.hazard(HazardRule::Unanalysable, "subquery inside DDL");
        }
        self.frames.pop();
    }

    /// Rows stored by the statement (a materialized view): every value of
    /// the outputs is written somewhere readable.
    pub(crate) fn store_outputs(&mut self, outputs: &[OutputColumn], via: &'static str) {
        for output in outputs {
            for (column, flow) in &output.sources {
                self.effects.sinks.insert(Sink {
                    source: column.clone(),
                    flow: *flow,
                    target: None,
                    via,
                });
            }
        }
    }

    /// REFRESH MATERIALIZED VIEW stores its definition's rows again.
    pub(crate) fn refresh_materialized_view(&mut self, name: &ObjectName) {
        let parts = object_name_parts(name);
        let Some(item) = self.relation_item(&parts, None) else {
            return;
        };
        let own = item.relation.clone();
        let mut outputs = item.columns;
        // The view's own columns are what is being overwritten, not a source.
        for output in &mut outputs {
            output.sources.retain(|c, _| {
                own.as_ref()
                    .is_none_or(|(s, t)| &c.schema != s || &c.table != t)
            });
        }
        self.store_outputs(&outputs, "REFRESH MATERIALIZED VIEW");
    }
}

/// The columns of `ADD PRIMARY KEY (a, b)` / `ADD UNIQUE (a)` when every key
/// part is a plain column name.
fn plain_key_columns(operation: &AlterTableOperation) -> Option<Vec<String>> {
    let AlterTableOperation::AddConstraint { constraint, .. } = operation else {
        return None;
    };
    let columns = match constraint {
        ast::TableConstraint::PrimaryKey(key) => &key.columns,
        ast::TableConstraint::Unique(key) => &key.columns,
        _ => return None,
    };
    columns
        .iter()
        .map(|c| match &c.column.expr {
            ast::Expr::Identifier(ident) if c.operator_class.is_none() => Some(ident_name(ident)),
            _ => None,
        })
        .collect()
}
