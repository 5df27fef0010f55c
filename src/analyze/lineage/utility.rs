//! Utility statements that read columns: COPY's source, ALTER … RENAME
//! (which moves values out from under their rules), and DDL that makes the
//! server read stored rows (constraints, indexes, type changes), judged as
//! filters because its success or size depends on the stored values.

use sqlparser::ast::{self, AlterTableOperation, Expr, Ident, ObjectName, Visit};

use super::{
    ident_name, merge_into, object_name_parts, Clause, Flow, Frame, HazardRule, NameCollector,
    Operand, OutputColumn, Sink, Sources, Walker,
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
                            OutputColumn {
                                name,
                                sources,
                                builtin_type: None,
                                shape: None,
                                name_known: true,
                            }
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

    /// ALTER TABLE. Every operation that makes the server read the rows
    /// already stored is a filter use of the columns it reads, judged as
    /// WHERE is: adding a CHECK, a key, a foreign key or NOT NULL fails iff
    /// some stored row violates it (a one-bit oracle over the values), and
    /// a type change converts every stored value (failing on some). Other
    /// operations are judged by `ddl_on_table`.
    pub(crate) fn alter_table(&mut self, table: &ObjectName, operations: &[AlterTableOperation]) {
        for operation in operations {
            match operation {
                AlterTableOperation::AddConstraint { constraint, .. } => {
                    self.add_constraint(table, constraint, operation)
                }
                AlterTableOperation::AlterColumn { column_name, op } => {
                    self.alter_column(table, column_name, op, operation)
                }
                // The attached table's rows are checked against the bound
                // (fails iff some row is outside: a range oracle over its
                // partition key); which columns form the key is not in the
                // catalog, so every column counts.
                AlterTableOperation::AttachPartitionOf { partition, .. } => {
                    self.on_table(partition, |w| {
                        let columns: Vec<Sources> = w
                            .frames
                            .last()
                            .and_then(|f| f.items.first())
                            .map(|item| item.columns.iter().map(|c| c.sources.clone()).collect())
                            .unwrap_or_default();
                        for sources in &columns {
                            w.use_sources(sources, false);
                        }
                    });
                    self.ddl_on_table(table, operation);
                }
                _ => self.ddl_on_table(table, operation),
            }
        }
    }

    /// Runs `f` with `table`'s columns in scope, in a DDL clause.
    fn on_table(&mut self, table: &ObjectName, f: impl FnOnce(&mut Self)) {
        self.frames.push(Frame::default());
        if let Some(item) = self.relation_item(&object_name_parts(table), None) {
            self.push_item(item);
        }
        self.with_clause(Clause::Ddl, f);
        self.frames.pop();
    }

    /// `ADD CONSTRAINT` on a table that may hold rows.
    fn add_constraint(
        &mut self,
        table: &ObjectName,
        constraint: &ast::TableConstraint,
        operation: &AlterTableOperation,
    ) {
        match constraint {
            // Uniqueness compares the stored values with each other: an
            // equality use, as GROUP BY is.
            ast::TableConstraint::PrimaryKey(ast::PrimaryKeyConstraint { columns, .. })
            | ast::TableConstraint::Unique(ast::UniqueConstraint { columns, .. }) => {
                match plain_columns(columns) {
                    Some(columns) => self.on_table(table, |w| {
                        for column in &columns {
                            if let Some(sources) = w.resolve_column(std::slice::from_ref(column)) {
                                w.use_sources(&sources, true);
                            }
                        }
                    }),
                    None => self.ddl_on_table(table, operation),
                }
            }
            ast::TableConstraint::Check(check) => {
                self.on_table(table, |w| w.predicate(&check.expr))
            }
            ast::TableConstraint::ForeignKey(fk) => self.foreign_key(table, fk),
            _ => self.ddl_on_table(table, operation),
        }
    }

    /// A foreign key is validated by an equi-join of its columns with the
    /// referenced ones: a join use of both sides. With the referenced
    /// columns left to the server (the primary key), the partner is unknown
    /// and the use is general.
    fn foreign_key(&mut self, table: &ObjectName, fk: &ast::ForeignKeyConstraint) {
        let referenced: Vec<Sources> = {
            let mut sources = Vec::new();
            self.on_table(&fk.foreign_table, |w| {
                for column in &fk.referred_columns {
                    let name = ident_name(column);
                    sources.push(
                        w.resolve_column(std::slice::from_ref(&name))
                            .unwrap_or_default(),
                    );
                }
            });
            sources
        };
        let local: Vec<Sources> = {
            let mut sources = Vec::new();
            self.on_table(table, |w| {
                for column in &fk.columns {
                    let name = ident_name(column);
                    sources.push(
                        w.resolve_column(std::slice::from_ref(&name))
                            .unwrap_or_default(),
                    );
                }
            });
            sources
        };
        self.with_clause(Clause::Ddl, |w| {
            for (i, l) in local.iter().enumerate() {
                match referenced.get(i) {
                    Some(r) if !r.is_empty() && !l.is_empty() => {
                        let lo = Operand::Columns(l.keys().cloned().collect());
                        let ro = Operand::Columns(r.keys().cloned().collect());
                        w.compare(l, &ro);
                        w.compare(r, &lo);
                    }
                    _ => w.use_sources(l, false),
                }
            }
        });
    }

    /// `ALTER COLUMN`: SET NOT NULL tests every stored value for NULL (an
    /// equality use, as `IS NULL` is); a type change converts every stored
    /// value, through USING or the cast, and fails on some (a general use),
    /// unless it is one that keeps every value and cannot fail
    /// (`keeps_values`).
    fn alter_column(
        &mut self,
        table: &ObjectName,
        column: &Ident,
        op: &ast::AlterColumnOperation,
        operation: &AlterTableOperation,
    ) {
        let name = ident_name(column);
        match op {
            ast::AlterColumnOperation::SetNotNull => self.on_table(table, |w| {
                if let Some(sources) = w.resolve_column(std::slice::from_ref(&name)) {
                    w.use_sources(&sources, true);
                }
            }),
            ast::AlterColumnOperation::SetDataType {
                data_type, using, ..
            } => {
                let mut keeps_values = false;
                self.on_table(table, |w| {
                    keeps_values = w.keeps_values(&name, data_type, using.as_ref());
                    if keeps_values {
                        return;
                    }
                    let sources = match using {
                        Some(expr) => w.expr(expr),
                        None => w
                            .resolve_column(std::slice::from_ref(&name))
                            .unwrap_or_default(),
                    };
                    w.use_sources(&sources, false);
                });
                if !keeps_values {
                    self.ddl_on_table(table, operation);
                }
            }
            _ => self.ddl_on_table(table, operation),
        }
    }

    /// True when changing column `name` of the table in scope to
    /// `target` (through `using`, if given) gives every stored value
    /// unchanged and cannot fail, so it tells nothing of the values: text
    /// types to `text` or to `varchar` without a length or with one at
    /// least the current one (`varchar(n)` is stored as n + 4), integers to
    /// as wide or wider integers. USING may only be the column itself or
    /// that same cast of it. The target must be pg_catalog's type. Anything
    /// else (narrowing, other types, collations sqlparser does not read)
    /// converts each value through code that may fail on some.
    fn keeps_values(&self, name: &str, target: &ast::DataType, using: Option<&Expr>) -> bool {
        use ast::DataType as T;
        if let Some(mut using) = using {
            while let Expr::Nested(inner) = using {
                using = inner;
            }
            let names_column = |e: &Expr| match e {
                Expr::Identifier(id) => ident_name(id) == name,
                Expr::CompoundIdentifier(parts) => {
                    parts.len() == 2 && parts.last().is_some_and(|p| ident_name(p) == name)
                }
                _ => false,
            };
            let plain = match using {
                Expr::Cast {
                    expr,
                    data_type,
                    format: None,
                    ..
                } => data_type == target && names_column(expr),
                other => names_column(other),
            };
            if !plain {
                return false;
            }
        }
        if !self.is_builtin_type(target) {
            return false;
        }
        let Some(current) = self
            .frames
            .last()
            .and_then(|f| f.items.first())
            .and_then(|item| item.relation.as_ref())
            .and_then(|(schema, relation)| self.catalog.relation(schema, relation))
            .and_then(|r| r.columns.iter().find(|c| c.name == name))
        else {
            return false;
        };
        let text = matches!(current.type_name.as_str(), "text" | "varchar");
        let integer_width = |t: &str| match t {
            "int2" => Some(2),
            "int4" => Some(4),
            "int8" => Some(8),
            _ => None,
        };
        match target {
            T::Text => text,
            T::Varchar(None) | T::CharVarying(None) | T::CharacterVarying(None) => text,
            T::Varchar(Some(length))
            | T::CharVarying(Some(length))
            | T::CharacterVarying(Some(length)) => match length {
                ast::CharacterLength::IntegerLength { length, unit: None } => {
                    current.type_name == "varchar"
                        && current.type_modifier != -1
                        && i64::try_from(*length)
                            .is_ok_and(|n| n + 4 >= i64::from(current.type_modifier))
                }
                _ => false,
            },
            T::SmallInt(None) | T::Int2(None) => integer_width(&current.type_name) == Some(2),
            T::Int(None) | T::Integer(None) | T::Int4(None) => {
                integer_width(&current.type_name).is_some_and(|w| w <= 4)
            }
            T::BigInt(None) | T::Int8(None) => integer_width(&current.type_name).is_some(),
            _ => false,
        }
    }

    /// CREATE INDEX on a table that may hold rows. Its predicate is a
    /// filter (the index's size and the planner's estimates tell how many
    /// rows match), judged as WHERE is; a key expression is computed for
    /// every stored row and may fail on some (a general use); a plain key
    /// column of a UNIQUE index fails on duplicates (an equality use). A
    /// plain key column of a non-unique index is only sorted: built-in
    /// comparisons raise no error and the caller picks no value to test
    /// (operator classes and access methods are superuser-made), so it is
    /// no use.
    pub(crate) fn create_index(&mut self, index: &ast::CreateIndex) {
        self.on_table(&index.table_name, |w| {
            for key in &index.columns {
                match &key.column.expr {
                    Expr::Identifier(ident) => {
                        let name = ident_name(ident);
                        if let Some(sources) = w.resolve_column(std::slice::from_ref(&name)) {
                            if index.unique {
                                w.use_sources(&sources, true);
                            }
                        }
                    }
                    other => {
                        let sources = w.expr(other);
                        w.use_sources(&sources, false);
                    }
                }
            }
            if let Some(predicate) = &index.predicate {
                w.predicate(predicate);
            }
        });
    }

    /// An identity column's ADD/SET/DROP reads and moves no stored value:
    /// only the table is looked up (a missing one is a hazard, as anywhere).
    pub(crate) fn identity_alter(&mut self, table: &[String]) {
        self.frames.push(Frame::default());
        let _ = self.relation_item(table, None);
        self.frames.pop();
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
                w.guard_user_function(function, std::slice::from_ref(&mentioned), None);
            }
        });
        if collector.has_query {
            self.hazard(HazardRule::Unanalysable, "subquery inside DDL");
        }
        self.frames.pop();
    }

    /// A row security policy's USING / WITH CHECK conditions, which the
    /// server evaluates over the table's rows inside every later read or
    /// write, for every role: each column they read, in subqueries too, is
    /// a general use over stored rows (their subqueries' own filters are
    /// judged as in any query besides).
    pub(crate) fn policy_conditions(&mut self, table: &ObjectName, conditions: &[Option<&Expr>]) {
        let parts = object_name_parts(table);
        self.frames.push(Frame::default());
        if let Some(item) = self.relation_item(&parts, None) {
            self.push_item(item);
        }
        let before = self.effects.reads.clone();
        self.with_clause(Clause::Ddl, |w| {
            for condition in conditions.iter().flatten() {
                let sources = w.expr(condition);
                w.use_sources(&sources, false);
            }
            let read: Sources = w
                .effects
                .reads
                .difference(&before)
                .map(|c| (c.clone(), Flow::Derived))
                .collect();
            w.use_sources(&read, false);
        });
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

/// The key columns of `PRIMARY KEY (a, b)` / `UNIQUE (a)` when every key
/// part is a plain column name.
fn plain_columns(columns: &[ast::IndexColumn]) -> Option<Vec<String>> {
    columns
        .iter()
        .map(|c| match &c.column.expr {
            Expr::Identifier(ident) if c.operator_class.is_none() => Some(ident_name(ident)),
            _ => None,
        })
        .collect()
}
