//! The FROM list: joins (ON, USING, NATURAL), derived tables, table
//! functions, named relations (CTEs, tables, partitions, views) and the
//! lineage of a view's definition.

use std::collections::BTreeMap;
use std::sync::Arc;

use sqlparser::ast::{self, FunctionArg, ObjectName, Statement, TableFactor, TableWithJoins};

use super::functions::set_returning;
use super::{
    as_derived, builtin_typed, ident_name, merge_into, object_name_parts, rename_columns, Clause,
    Effects, Flow, HazardRule, OutputColumn, RelationLineage, ScopeItem, Sources, Walker,
    MAX_VIEW_DEPTH,
};
use crate::analyze::catalog::{Catalog, FunctionResult, Relation};
use crate::analyze::policy_view::QualifiedColumn;

/// System relations that expose raw values of user tables.
pub const SENSITIVE_SYSTEM_RELATIONS: &[&str] = &[
    "pg_stats",
    "pg_stats_ext",
    "pg_stats_ext_exprs",
    "pg_statistic",
    "pg_statistic_ext_data",
    "pg_stat_statements",
    "pg_largeobject",
];

impl Walker<'_> {
    /// Registers the items of one FROM entry; returns its `*` columns.
    pub(super) fn table_with_joins(&mut self, table: &TableWithJoins) -> Vec<OutputColumn> {
        let mut star = self.table_factor(&table.relation);
        for join in &table.joins {
            let right = self.table_factor(&join.relation);
            let constraint = match &join.join_operator {
                ast::JoinOperator::Join(c)
                | ast::JoinOperator::Inner(c)
                | ast::JoinOperator::Left(c)
                | ast::JoinOperator::LeftOuter(c)
                | ast::JoinOperator::Right(c)
                | ast::JoinOperator::RightOuter(c)
                | ast::JoinOperator::FullOuter(c)
                | ast::JoinOperator::CrossJoin(c)
                | ast::JoinOperator::Semi(c)
                | ast::JoinOperator::LeftSemi(c)
                | ast::JoinOperator::RightSemi(c)
                | ast::JoinOperator::Anti(c)
                | ast::JoinOperator::LeftAnti(c)
                | ast::JoinOperator::RightAnti(c)
                | ast::JoinOperator::StraightJoin(c) => Some(c),
                ast::JoinOperator::CrossApply | ast::JoinOperator::OuterApply => None,
                _ => {
                    self.hazard(HazardRule::Unanalysable, "non-PostgreSQL join");
                    None
                }
            };
            star = match constraint {
                Some(ast::JoinConstraint::On(on)) => {
                    self.with_clause(Clause::JoinOn, |w| w.predicate(on));
                    star.into_iter().chain(right).collect()
                }
                Some(ast::JoinConstraint::Using(names)) => {
                    let names: Vec<String> = names
                        .iter()
                        .filter_map(|n| object_name_parts(n).pop())
                        .collect();
                    self.merge_join_columns(star, right, &names)
                }
                Some(ast::JoinConstraint::Natural) => {
                    let names: Vec<String> = star
                        .iter()
                        .filter(|l| right.iter().any(|r| r.name == l.name))
                        .map(|l| l.name.clone())
                        .collect();
                    self.merge_join_columns(star, right, &names)
                }
                Some(ast::JoinConstraint::UsingAlias(names, alias)) => {
                    let names: Vec<String> = names
                        .iter()
                        .filter_map(|n| object_name_parts(n).pop())
                        .collect();
                    let merged = self.merge_join_columns(star, right, &names);
                    // `USING (a) AS x`: x names the merged join columns only.
                    self.push_item(ScopeItem {
                        alias: ident_name(alias),
                        relation: None,
                        columns: merged[..names.len().min(merged.len())].to_vec(),
                        opaque: false,
                        opaque_sources: Sources::new(),
                        builtin_typed: BTreeMap::new(),
                    });
                    merged
                }
                Some(ast::JoinConstraint::None) | None => star.into_iter().chain(right).collect(),
            };
        }
        star
    }

    /// USING / NATURAL: the common columns come first, once, and the join
    /// compares them for equality.
    fn merge_join_columns(
        &mut self,
        left: Vec<OutputColumn>,
        right: Vec<OutputColumn>,
        names: &[String],
    ) -> Vec<OutputColumn> {
        let mut merged = Vec::new();
        for name in names {
            let mut sources = Sources::new();
            let mut sides = Vec::new();
            for side in [&left, &right] {
                let side_sources = side
                    .iter()
                    .find(|c| &c.name == name)
                    .map(|c| c.sources.clone())
                    .unwrap_or_default();
                merge_into(&mut sources, &side_sources);
                sides.push(side_sources);
            }
            // PostgreSQL runs `=` as it resolves it for the two sides.
            let side_type = |side: &[OutputColumn]| {
                side.iter()
                    .find(|c| &c.name == name)
                    .and_then(|c| c.builtin_type.clone())
            };
            self.join_using_operator(side_type(&left), side_type(&right));
            // Each side is compared with the other: a join, unless one side
            // is computed (generated candidates).
            if let [l, r] = sides.as_slice() {
                let lo = self.subquery_operand(l);
                let ro = self.subquery_operand(r);
                self.with_clause(Clause::JoinOn, |w| {
                    w.compare(l, &ro);
                    w.compare(r, &lo);
                });
            }
            merged.push(OutputColumn {
                name: name.clone(),
                sources,
                builtin_type: None,
                shape: None,
                name_known: true,
            });
        }
        merged.extend(left.into_iter().filter(|c| !names.contains(&c.name)));
        merged.extend(right.into_iter().filter(|c| !names.contains(&c.name)));
        merged
    }

    pub(super) fn push_item(&mut self, item: ScopeItem) {
        if let Some(frame) = self.frames.last_mut() {
            frame.items.push(item);
        }
    }

    pub(super) fn table_factor(&mut self, factor: &TableFactor) -> Vec<OutputColumn> {
        match factor {
            TableFactor::Table {
                name,
                alias,
                args,
                sample,
                version,
                with_ordinality,
                ..
            } => {
                if let Some(args) = args {
                    // `FROM f(args)` parsed as a table with arguments.
                    return self.table_function(name, &args.args, *with_ordinality, alias.as_ref());
                }
                if version.is_some() {
                    self.hazard(HazardRule::Unanalysable, "table version");
                }
                if let Some(sample) = sample {
                    self.table_sample(sample);
                }
                let parts = object_name_parts(name);
                match self.relation_item(&parts, alias.as_ref()) {
                    Some(item) => {
                        let columns = item.columns.clone();
                        self.push_item(item);
                        columns
                    }
                    None => Vec::new(),
                }
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                let (columns, volatile) = self.query_volatility(|w| w.query(subquery));
                // PostgreSQL drops a subquery's columns that nobody reads,
                // unless they are volatile (`… + random()`) or it is a set
                // operation: then it computes them, and whether that fails
                // tells something of the values (DISTINCT and grouping are
                // uses already).
                if volatile || super::computes_unread_columns(subquery) {
                    self.use_computed_outputs(columns.iter().map(|c| &c.sources));
                }
                let columns = match alias {
                    Some(alias) => rename_columns(columns, &alias.columns),
                    None => columns,
                };
                self.push_item(ScopeItem {
                    alias: alias
                        .as_ref()
                        .map(|a| ident_name(&a.name))
                        .unwrap_or_default(),
                    relation: None,
                    columns: columns.clone(),
                    opaque: false,
                    opaque_sources: Sources::new(),
                    builtin_typed: builtin_typed(&columns),
                });
                columns
            }
            TableFactor::Function {
                name,
                args,
                alias,
                with_ordinality,
                ..
            } => self.table_function(name, args, *with_ordinality, alias.as_ref()),
            TableFactor::TableFunction { expr, alias } => {
                let sources = as_derived(self.expr(expr));
                self.opaque_function_item(sources, alias.as_ref())
            }
            TableFactor::UNNEST {
                alias,
                array_exprs,
                with_ordinality,
                with_offset,
                ..
            } => {
                if *with_offset {
                    self.hazard(HazardRule::Unanalysable, "UNNEST … WITH OFFSET");
                }
                let mut columns = Vec::new();
                for (i, e) in array_exprs.iter().enumerate() {
                    // unnest hands out the array's elements unchanged.
                    let sources = self.expr(e);
                    // How many rows it makes is the array's length, which
                    // `count(*)` reveals (`unnest(string_to_array(c, NULL))`);
                    // only an ARRAY[…] constructor's length is the caller's.
                    if !matches!(e, ast::Expr::Array(_)) {
                        self.with_clause(Clause::RowCount, |w| w.use_sources(&sources, false));
                    }
                    columns.push(OutputColumn {
                        name: if array_exprs.len() == 1 {
                            "unnest".into()
                        } else {
                            format!("unnest{}", i + 1)
                        },
                        sources,
                        builtin_type: None,
                        shape: None,
                        name_known: true,
                    });
                }
                let alias_columns: &[ast::TableAliasColumnDef] =
                    alias.as_ref().map_or(&[], |a| &a.columns);
                if alias_columns.iter().any(|c| c.data_type.is_some()) {
                    // `unnest(records) AS q(a int, b text)`: a column
                    // definition list names every field of the elements;
                    // which element field feeds which column is not known.
                    let mut fields = Sources::new();
                    for column in &columns {
                        merge_into(&mut fields, &column.sources);
                    }
                    let fields = as_derived(fields);
                    columns = alias_columns
                        .iter()
                        .map(|c| OutputColumn {
                            name: ident_name(&c.name),
                            sources: fields.clone(),
                            builtin_type: None,
                            shape: None,
                            name_known: true,
                        })
                        .collect();
                }
                if *with_ordinality {
                    columns.push(ordinality_column());
                }
                let columns = match alias {
                    Some(a) if !alias_columns.iter().any(|c| c.data_type.is_some()) => {
                        rename_columns(columns, &a.columns)
                    }
                    _ => columns,
                };
                self.push_item(ScopeItem {
                    alias: alias
                        .as_ref()
                        .map(|a| ident_name(&a.name))
                        .unwrap_or_else(|| "unnest".into()),
                    relation: None,
                    columns: columns.clone(),
                    opaque: false,
                    opaque_sources: Sources::new(),
                    builtin_typed: BTreeMap::new(),
                });
                columns
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let columns = self.table_with_joins(table_with_joins);
                if let Some(alias) = alias {
                    let columns = rename_columns(columns, &alias.columns);
                    self.push_item(ScopeItem {
                        alias: ident_name(&alias.name),
                        relation: None,
                        columns: columns.clone(),
                        opaque: false,
                        opaque_sources: Sources::new(),
                        builtin_typed: BTreeMap::new(),
                    });
                    return columns;
                }
                columns
            }
            other => {
                // JSON_TABLE, XMLTABLE and non-PostgreSQL forms: whatever
                // they read flows into columns we cannot name.
                self.generic_scan_node(other);
                self.hazard(
                    HazardRule::Unanalysable,
                    "table expression not modelled (JSON_TABLE/XMLTABLE/…)",
                );
                Vec::new()
            }
        }
    }

    /// `FROM generate_series(…) AS g(x)`: outputs derived from arguments.
    /// The columns are PostgreSQL's: a column definition list names them
    /// all; otherwise the catalog's OUT parameters or composite type give
    /// them (an alias list renames the first ones), a scalar result is one
    /// column named after the alias or the function, and WITH ORDINALITY
    /// adds a last column. A shape pgveil cannot know makes the item opaque.
    fn table_function(
        &mut self,
        name: &ObjectName,
        args: &[FunctionArg],
        with_ordinality: bool,
        alias: Option<&ast::TableAlias>,
    ) -> Vec<OutputColumn> {
        let parts = object_name_parts(name);
        let category = self.check_function(&parts, Some(args.len()));
        let arg_sources: Vec<Sources> = args.iter().map(|arg| self.function_arg(arg)).collect();
        let bare = parts.last().cloned().unwrap_or_default();
        self.guard_arguments(&bare, category, &arg_sources);
        self.guard_user_function(&parts, &arg_sources, None);
        if bare == "set_config" {
            self.set_config_setting(args.first());
        }
        let column_types = alias
            .into_iter()
            .flat_map(|a| a.columns.iter())
            .filter_map(|c| c.data_type.as_ref());
        let populating = if category.is_some() {
            bare.as_str()
        } else {
            ""
        };
        self.guard_record_input(populating, &arg_sources, column_types);
        let mut sources = Sources::new();
        for s in &arg_sources {
            merge_into(&mut sources, s);
        }
        // How many rows a FROM function yields depends on its arguments.
        self.with_clause(Clause::RowCount, |w| w.use_sources(&sources, false));
        // unnest(array) returns the elements themselves.
        let sources = if bare == "unnest" {
            sources
        } else {
            as_derived(sources)
        };
        let alias_name = alias.map(|a| ident_name(&a.name)).unwrap_or(bare.clone());
        let alias_columns: &[ast::TableAliasColumnDef] = alias.map_or(&[], |a| &a.columns);
        let typed_list = alias_columns.iter().any(|c| c.data_type.is_some());
        let names: Option<Vec<String>> = if typed_list {
            // `AS x(a int, b text)`: a column definition list, all columns.
            Some(alias_columns.iter().map(|c| ident_name(&c.name)).collect())
        } else {
            match self.function_result(&parts, args) {
                FunctionResult::Columns(columns) => Some(columns),
                FunctionResult::FirstArgumentType => self.first_argument_row_type(args),
                FunctionResult::Scalar => Some(vec![alias
                    .map(|a| ident_name(&a.name))
                    .unwrap_or(bare.clone())]),
                // Catalog dumps without result shapes: the functions pgveil
                // knows to return one column.
                FunctionResult::Unknown if set_returning(&bare) == Some(true) => {
                    Some(vec![alias.map(|a| ident_name(&a.name)).unwrap_or(bare)])
                }
                FunctionResult::Unknown | FunctionResult::Polymorphic => None,
            }
        };
        let Some(names) = names else {
            // Unknown shape: any name resolves to the arguments' lineage,
            // but `*` over the item cannot be expanded.
            self.push_item(ScopeItem {
                alias: alias_name,
                relation: None,
                columns: Vec::new(),
                opaque: true,
                opaque_sources: sources,
                builtin_typed: BTreeMap::new(),
            });
            return Vec::new();
        };
        let mut columns: Vec<OutputColumn> = names
            .into_iter()
            .map(|name| OutputColumn {
                name,
                sources: sources.clone(),
                builtin_type: None,
                shape: None,
                name_known: true,
            })
            .collect();
        if with_ordinality {
            columns.push(ordinality_column());
        }
        let columns = if typed_list {
            columns
        } else {
            rename_columns(columns, alias_columns)
        };
        // A built-in function's scalar result is of a built-in type (one of
        // its overloads'), and the ordinality is a bigint.
        let scalar_types = (!typed_list
            && self.function_result(&parts, args) == FunctionResult::Scalar)
            .then(|| self.builtin_scalar_types(&parts))
            .flatten();
        let mut builtin_typed = BTreeMap::new();
        for (i, column) in columns.iter().enumerate() {
            if with_ordinality && i + 1 == columns.len() {
                builtin_typed.insert(column.name.clone(), vec!["int8".to_owned()]);
            } else if let Some(types) = &scalar_types {
                builtin_typed.insert(column.name.clone(), types.clone());
            }
        }
        self.push_item(ScopeItem {
            alias: alias_name,
            relation: None,
            columns: columns.clone(),
            opaque: false,
            opaque_sources: Sources::new(),
            builtin_typed,
        });
        columns
    }

    /// The result types of the scalar overloads of the built-in function a
    /// call of `parts` runs (empty: some built-in type, not read), or None
    /// when it is not a built-in one.
    pub(super) fn builtin_scalar_types(&self, parts: &[String]) -> Option<Vec<String>> {
        if !self.resolves_to_builtin(parts) {
            return None;
        }
        let name = parts.last()?;
        let schema = match parts {
            [schema, _] => schema.as_str(),
            _ => "pg_catalog",
        };
        let mut types = Vec::new();
        for overload in self
            .catalog
            .functions_named(name)
            .filter(|f| f.schema == schema && f.result == FunctionResult::Scalar)
        {
            if overload.result_type.is_empty() {
                return Some(Vec::new());
            }
            if !types.contains(&overload.result_type) {
                types.push(overload.result_type.clone());
            }
        }
        Some(types)
    }

    /// Whether a call of `parts` runs a function that ships with
    /// PostgreSQL: no user-defined function of that name is on the path
    /// (`Catalog::resolve_function` prefers those).
    pub(super) fn resolves_to_builtin(&self, parts: &[String]) -> bool {
        let (schema, name) = match parts {
            [name] => (None, name.as_str()),
            [schema, name] => (Some(schema.as_str()), name.as_str()),
            _ => return false,
        };
        self.catalog
            .resolve_function(self.search_path, schema, name)
            .is_some_and(|f| f.is_builtin())
    }

    /// The FROM shape of the function a call resolves to; `Unknown` when
    /// its overloads disagree (pgveil does not resolve argument types).
    /// With only untyped string literals as arguments, polymorphic
    /// overloads cannot match (PostgreSQL cannot infer their type from
    /// `unknown`), so `lower('FOO')` is `lower(text)`.
    fn function_result(&self, parts: &[String], args: &[FunctionArg]) -> FunctionResult {
        let (schema, name) = match parts {
            [name] => (None, name.as_str()),
            [schema, name] => (Some(schema.as_str()), name.as_str()),
            _ => return FunctionResult::Unknown,
        };
        let Some(first) = self
            .catalog
            .resolve_function(self.search_path, schema, name)
        else {
            return FunctionResult::Unknown;
        };
        let only_literals = !args.is_empty()
            && args.iter().all(|a| {
                matches!(
                    a,
                    FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Value(v)))
                        if matches!(v.value, ast::Value::SingleQuotedString(_))
                )
            });
        let mut shapes = self
            .catalog
            .functions_named(name)
            .filter(|f| f.schema == first.schema)
            .map(|f| &f.result)
            .filter(|r| !(only_literals && **r == FunctionResult::Polymorphic));
        let Some(shape) = shapes.next() else {
            return FunctionResult::Unknown;
        };
        if shapes.all(|r| r == shape) {
            shape.clone()
        } else {
            FunctionResult::Unknown
        }
    }

    /// `json_populate_record(NULL::t, …)`: the columns of the table whose
    /// row type the first argument is cast to.
    fn first_argument_row_type(&self, args: &[FunctionArg]) -> Option<Vec<String>> {
        let Some(FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Cast {
            data_type: ast::DataType::Custom(type_name, modifiers),
            ..
        }))) = args.first()
        else {
            return None;
        };
        if !modifiers.is_empty() {
            return None;
        }
        let relation = match object_name_parts(type_name).as_slice() {
            [name] => self.catalog.resolve_relation(self.search_path, name),
            [schema, name] => self.catalog.relation(schema, name),
            _ => None,
        }?;
        Some(relation.columns.iter().map(|c| c.name.clone()).collect())
    }

    /// TABLESAMPLE picks rows by block or tuple position and a seed, never
    /// by their values; its arguments decide how many rows come back.
    fn table_sample(&mut self, sample: &ast::TableSampleKind) {
        let (ast::TableSampleKind::BeforeTableAlias(sample)
        | ast::TableSampleKind::AfterTableAlias(sample)) = sample;
        let method = sample
            .name
            .as_ref()
            .map(|m| m.to_string().to_lowercase())
            .unwrap_or_default();
        // PostgreSQL's methods and those of tsm_system_rows/_time; others
        // are C handlers pgveil knows nothing of.
        if !matches!(
            method.as_str(),
            "system" | "bernoulli" | "system_rows" | "system_time"
        ) || sample.bucket.is_some()
            || sample.offset.is_some()
            || sample.modifier != ast::TableSampleModifier::TableSample
        {
            self.hazard(
                HazardRule::Unanalysable,
                format!("TABLESAMPLE method {method} is not modelled"),
            );
            return;
        }
        let mut sources = Sources::new();
        if let Some(quantity) = &sample.quantity {
            merge_into(&mut sources, &self.expr(&quantity.value));
        }
        self.with_clause(Clause::RowCount, |w| w.use_sources(&sources, false));
    }

    fn opaque_function_item(
        &mut self,
        sources: Sources,
        alias: Option<&ast::TableAlias>,
    ) -> Vec<OutputColumn> {
        let columns: Vec<OutputColumn> = alias
            .map(|a| {
                a.columns
                    .iter()
                    .map(|c| OutputColumn {
                        name: ident_name(&c.name),
                        sources: sources.clone(),
                        builtin_type: None,
                        shape: None,
                        name_known: true,
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.push_item(ScopeItem {
            alias: alias.map(|a| ident_name(&a.name)).unwrap_or_default(),
            relation: None,
            columns: columns.clone(),
            opaque: columns.is_empty(),
            opaque_sources: sources,
            builtin_typed: BTreeMap::new(),
        });
        columns
    }

    /// A named relation: CTE, table, view. Records the relation as read.
    pub(super) fn relation_item(
        &mut self,
        parts: &[String],
        alias: Option<&ast::TableAlias>,
    ) -> Option<ScopeItem> {
        let alias_name = alias.map(|a| ident_name(&a.name));
        if parts.len() == 1 {
            if let Some((_, columns)) = self.ctes.iter().rev().find(|(n, _)| n == &parts[0]) {
                let columns = (**columns).clone();
                let columns = match alias {
                    Some(a) => rename_columns(columns, &a.columns),
                    None => columns,
                };
                return Some(ScopeItem {
                    alias: alias_name.unwrap_or_else(|| parts[0].clone()),
                    relation: None,
                    builtin_typed: builtin_typed(&columns),
                    columns,
                    opaque: false,
                    opaque_sources: Sources::new(),
                });
            }
        }
        let Some(relation) = self.catalog_relation(parts) else {
            self.hazard(
                HazardRule::UnknownName,
                format!("relation {} is not in the catalog", parts.join(".")),
            );
            return Some(ScopeItem {
                alias: alias_name.unwrap_or_else(|| parts.last().cloned().unwrap_or_default()),
                relation: None,
                columns: Vec::new(),
                opaque: true,
                opaque_sources: Sources::new(),
                builtin_typed: BTreeMap::new(),
            });
        };
        self.effects
            .relations
            .insert((relation.schema.clone(), relation.name.clone()));
        if relation.is_system() && SENSITIVE_SYSTEM_RELATIONS.contains(&relation.name.as_str()) {
            self.hazard(
                HazardRule::SensitiveCatalog,
                format!(
                    "{}.{} exposes raw column values",
                    relation.schema, relation.name
                ),
            );
        }
        // pg_stat_statements lives in whatever schema the extension went to.
        if relation.name == "pg_stat_statements" && !relation.is_system() {
            self.hazard(
                HazardRule::SensitiveCatalog,
                "pg_stat_statements exposes query texts",
            );
        }
        let columns = self.relation_columns(relation);
        let columns = match alias {
            Some(a) => rename_columns(columns, &a.columns),
            None => columns,
        };
        Some(ScopeItem {
            alias: alias_name.unwrap_or_else(|| relation.name.clone()),
            relation: Some((relation.schema.clone(), relation.name.clone())),
            columns,
            opaque: false,
            opaque_sources: Sources::new(),
            builtin_typed: BTreeMap::new(),
        })
    }

    /// A relation's columns with their lineage; a view's columns carry both
    /// the view column itself and what its definition reads.
    pub(crate) fn relation_columns(&mut self, relation: &Relation) -> Vec<OutputColumn> {
        let own = |name: &str| QualifiedColumn {
            schema: relation.schema.clone(),
            table: relation.name.clone(),
            column: name.to_owned(),
        };
        let mut columns: Vec<OutputColumn> = relation
            .columns
            .iter()
            .map(|c| OutputColumn {
                name: c.name.clone(),
                sources: Sources::from([(own(&c.name), Flow::Copy)]),
                builtin_type: Walker::table_column_type(relation, c),
                shape: None,
                name_known: true,
            })
            .collect();
        // Partitions and inheritance children carry their ancestors' columns.
        let mut ancestors: Vec<&Relation> = Vec::new();
        let mut pending: Vec<&(String, String)> = relation.parents.iter().collect();
        while let Some((schema, name)) = pending.pop() {
            match self.catalog.relation(schema, name) {
                Some(parent) if ancestors.len() < MAX_VIEW_DEPTH => {
                    pending.extend(parent.parents.iter());
                    ancestors.push(parent);
                }
                Some(_) => {}
                None => self.hazard(
                    HazardRule::UnknownName,
                    format!(
                        "parent {schema}.{name} of {} is not in the catalog",
                        relation.name
                    ),
                ),
            }
        }
        for ancestor in ancestors {
            for column in columns.iter_mut() {
                if ancestor.columns.iter().any(|c| c.name == column.name) {
                    column.sources.insert(
                        QualifiedColumn {
                            schema: ancestor.schema.clone(),
                            table: ancestor.name.clone(),
                            column: column.name.clone(),
                        },
                        Flow::Copy,
                    );
                }
            }
        }
        if relation.has_definition() && !relation.is_system() {
            let lineage = self.view_lineage(relation);
            self.effects.absorb(&lineage.effects);
            for (column, view_column) in columns.iter_mut().zip(lineage.columns.iter()) {
                merge_into(&mut column.sources, &view_column.sources);
                column.shape = view_column.shape.clone();
            }
        }
        columns
    }

    fn view_lineage(&mut self, relation: &Relation) -> Arc<RelationLineage> {
        if let Some(lineage) = relation.view_lineage.get() {
            return Arc::clone(lineage);
        }
        let lineage = if self.view_depth >= MAX_VIEW_DEPTH {
            let mut effects = Effects::default();
            effects.hazard(HazardRule::Unanalysable, "views nested too deeply");
            RelationLineage {
                columns: Vec::new(),
                effects,
            }
        } else {
            analyse_view(self.catalog, relation, self.view_depth + 1)
        };
        let lineage = Arc::new(lineage);
        // Another thread may have won the race; either value is identical.
        let _ = relation.view_lineage.set(Arc::clone(&lineage));
        lineage
    }
}

/// Lineage of a view, analysed like the query it stands for.
fn analyse_view(catalog: &Catalog, relation: &Relation, depth: usize) -> RelationLineage {
    let mut effects = Effects::default();
    let Some(definition) = relation.definition.as_deref() else {
        effects.hazard(
            HazardRule::Unanalysable,
            format!(
                "view {}.{} has no definition in the catalog",
                relation.schema, relation.name
            ),
        );
        return RelationLineage {
            columns: Vec::new(),
            effects,
        };
    };
    // pg_get_viewdef qualifies names not visible on the default path.
    let search_path = vec![relation.schema.clone(), "public".to_owned()];
    // Parsed, walked and dropped on a stack sized for the definition.
    crate::analyze::with_parsed(definition, |parsed| {
        let query = match parsed {
            Ok([Statement::Query(query)]) => query,
            _ => return named_view_lineage(catalog, relation, definition, &search_path, depth),
        };
        let mut walker = Walker::new(catalog, &search_path);
        walker.view_depth = depth;
        // A view is a subquery: its volatile columns are computed unread.
        let (outputs, volatile) = walker.query_volatility(|w| w.query(query));
        if volatile || super::computes_unread_columns(query) {
            walker.use_computed_outputs(outputs.iter().map(|o| &o.sources));
        }
        let columns = relation
            .columns
            .iter()
            .zip(outputs)
            .map(|(c, o)| OutputColumn {
                name: c.name.clone(),
                sources: o.sources,
                builtin_type: None,
                shape: o.shape,
                name_known: true,
            })
            .collect();
        RelationLineage {
            columns,
            effects: walker.effects,
        }
    })
}

/// Lineage of a view whose definition sqlparser cannot read, from what
/// PostgreSQL's tree of it names: every column may carry, computed, any
/// column of any relation it names (views through their own lineage), and
/// each of those counts as filtered by; its functions are judged as calls.
/// A view that names nothing protected is thereby usable, one that does is
/// not (outputs computed from protected columns are refused).
fn named_view_lineage(
    catalog: &Catalog,
    relation: &Relation,
    definition: &str,
    search_path: &[String],
    depth: usize,
) -> RelationLineage {
    let unreadable = || {
        let mut effects = Effects::default();
        effects.hazard(
            HazardRule::Unanalysable,
            format!(
                "definition of view {}.{} could not be parsed",
                relation.schema, relation.name
            ),
        );
        RelationLineage {
            columns: Vec::new(),
            effects,
        }
    };
    let pg = match crate::analyze::pg_tree::parse(
        definition,
        crate::analyze::pg_tree::LexSettings::default(),
        0,
    ) {
        Ok(mut statements) if statements.len() == 1 => statements.remove(0),
        _ => return unreadable(),
    };
    if pg.kind != "SelectStmt" {
        return unreadable();
    }
    let refs = &pg.references;
    let mut walker = Walker::new(catalog, search_path);
    walker.view_depth = depth;
    let mut carried = Sources::new();
    for name in &refs.relations {
        // A WITH query's name, unless a relation has it too: the tree does
        // not say which scope each reference is in, so both count.
        if let [only] = name.as_slice() {
            if refs.cte_names.contains(only)
                && catalog.resolve_relation(search_path, only).is_none()
            {
                continue;
            }
        }
        let parts: Vec<String> = name.iter().rev().take(2).rev().cloned().collect();
        if let Some(item) = walker.relation_item(&parts, None) {
            for column in item.columns {
                for source in column.sources.into_keys() {
                    carried.insert(source, Flow::Derived);
                }
            }
        }
    }
    for function in &refs.functions {
        let _ = walker.check_function(function, None);
    }
    walker.with_clause(Clause::Where, |w| w.use_sources(&carried, false));
    let columns = relation
        .columns
        .iter()
        .map(|c| OutputColumn {
            name: c.name.clone(),
            sources: carried.clone(),
            builtin_type: None,
            shape: None,
            name_known: true,
        })
        .collect();
    RelationLineage {
        columns,
        effects: walker.effects,
    }
}

/// The last column WITH ORDINALITY adds: a row number, no value of anyone.
fn ordinality_column() -> OutputColumn {
    OutputColumn {
        name: "ordinality".into(),
        sources: Sources::new(),
        builtin_type: None,
        shape: None,
        name_known: true,
    }
}
