//! Expressions: the value lineage of scalar expressions and the column uses
//! of boolean conditions (equality versus general), window specifications.

// Guards on operator kinds keep each comparison family on one arm.
#![allow(clippy::redundant_guards)]

use sqlparser::ast::{self, Expr};

use crate::analyze::builtins;

use super::{
    as_derived, ident_name, merge_alternative, merge_into, object_name_parts, truncate, Clause,
    Flow, Guard, HazardRule, Operand, Sources, Walker,
};

impl Walker<'_> {
    /// Records a boolean condition's column uses.
    pub(crate) fn predicate(&mut self, expr: &Expr) {
        self.condition(expr, false)
    }

    /// `predicate` under `negated` NOTs (an odd number): PostgreSQL pushes a
    /// NOT down through AND/OR onto the tests, so `NOT (c IS NULL)` is
    /// `c IS NOT NULL`.
    fn condition(&mut self, expr: &Expr, negated: bool) {
        use ast::BinaryOperator as Op;
        self.operators_of(expr);
        match expr {
            Expr::Nested(inner) => self.condition(inner, negated),
            Expr::UnaryOp {
                op: ast::UnaryOperator::Not,
                expr,
            } => self.condition(expr, !negated),
            Expr::BinaryOp { left, op, right } if matches!(op, Op::And | Op::Or) => {
                self.condition(left, negated);
                self.condition(right, negated);
            }
            Expr::BinaryOp { left, op, right }
                if matches!(op, Op::Eq | Op::NotEq | Op::Spaceship) =>
            {
                self.compare_both(left, right)
            }
            Expr::IsDistinctFrom(left, right) | Expr::IsNotDistinctFrom(left, right) => {
                self.compare_both(left, right)
            }
            Expr::In {
                expr: lhs,
                target,
                negated: _,
                global: _,
            } => {
                let l = self.expr(lhs);
                let lo = self.operand(lhs, &l);
                match target {
                    ast::InTarget::List(list) => {
                        for item in list {
                            let s = self.expr(item);
                            if self.same_row_value(lhs, item, &l, &s) {
                                continue;
                            }
                            let io = self.operand(item, &s);
                            self.compare(&l, &io);
                            self.compare(&s, &lo);
                        }
                    }
                    ast::InTarget::Subquery(query) => {
                        let outputs = self.query(query);
                        let sources = outputs.first().map(|o| o.sources.clone());
                        let sources = sources.unwrap_or_default();
                        // Rows of a query are candidates only when they are
                        // a pure copy of columns (a semi-join).
                        let so = self.subquery_operand(&sources);
                        self.compare(&l, &so);
                        self.compare(&sources, &lo);
                    }
                    ast::InTarget::Unnest(e) => {
                        let s = self.expr(e);
                        self.compare(&l, &Operand::Computed);
                        self.use_sources(&s, false);
                    }
                    ast::InTarget::Table { .. } => {
                        self.hazard(HazardRule::Unanalysable, "IN table");
                    }
                }
            }
            Expr::AnyOp {
                left,
                compare_op,
                right,
                ..
            } if matches!(compare_op, Op::Eq) => {
                let l = self.expr(left);
                let r = self.expr(right);
                let ro = self.array_operand(right, &r);
                if let Some(parameter) = array_parameter(right) {
                    for (column, flow) in &l {
                        if *flow == Flow::Copy {
                            self.effects
                                .array_parameters
                                .entry(column.clone())
                                .or_default()
                                .insert(parameter);
                        }
                    }
                }
                let lo = self.operand(left, &l);
                self.compare(&l, &ro);
                self.compare(&r, &lo);
            }
            // IS NULL matches rows of one "value". IS NOT NULL compares with
            // nothing the caller supplied and matches rows of every value,
            // which an index returns in the column's order: under `filter:
            // equality` the row order would rank the protected values. DDL
            // (CHECK … IS NOT NULL) returns no rows, only whether one fails.
            Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
                let is_null = matches!(expr, Expr::IsNull(_)) != negated;
                let s = self.expr(inner);
                self.use_sources(&s, is_null || self.clause == Clause::Ddl);
            }
            Expr::Exists { subquery, .. } => {
                // PostgreSQL drops an EXISTS subquery's select list only
                // when it can simplify it; with OFFSET, UNION ALL … it
                // computes it, and whether that fails tells something.
                let outputs = self.query(subquery);
                self.use_computed_outputs(outputs.iter().map(|o| &o.sources));
            }
            other => match general_operands(other) {
                // Ranges, LIKE, IS TRUE …: every operand is a general use.
                Some(operands) => {
                    for operand in operands {
                        let s = self.expr(operand);
                        self.use_sources(&s, false);
                    }
                }
                None => {
                    let s = self.expr(other);
                    self.use_sources(&s, false);
                }
            },
        }
    }

    /// The value lineage of an expression; conditions inside it (CASE WHEN,
    /// comparisons, subquery filters) are recorded as uses.
    pub(crate) fn expr(&mut self, expr: &Expr) -> Sources {
        use ast::BinaryOperator as Op;
        self.operators_of(expr);
        match expr {
            Expr::Identifier(ident) => self.identifier(&[ident_name(ident)]),
            Expr::CompoundIdentifier(idents) => {
                let parts: Vec<String> = idents.iter().map(ident_name).collect();
                self.identifier(&parts)
            }
            Expr::QualifiedWildcard(name, _) => {
                let parts = object_name_parts(name);
                match self.find_item(&parts) {
                    Some(item) => item.whole_row(),
                    None => self.identifier(&parts),
                }
            }
            Expr::Wildcard(_) => Sources::new(),
            Expr::Value(_) | Expr::TypedString(_) => Sources::new(),
            Expr::Interval(interval) => as_derived(self.expr(&interval.value)),
            Expr::Nested(inner) => self.expr(inner),
            Expr::Collate { expr, .. } => self.expr(expr),
            Expr::Cast {
                expr, data_type, ..
            } => {
                let sources = self.expr(expr);
                match self.cast_target(data_type) {
                    CastTarget::Copy => sources,
                    CastTarget::Computed => as_derived(sources),
                    CastTarget::Guarded(target, guard) => {
                        self.guard_sources(&sources, &target, guard);
                        as_derived(sources)
                    }
                }
            }
            // Comparisons yield a boolean: record the use, no value flows.
            Expr::BinaryOp { op, .. }
                if matches!(
                    op,
                    Op::Eq
                        | Op::NotEq
                        | Op::Lt
                        | Op::LtEq
                        | Op::Gt
                        | Op::GtEq
                        | Op::Spaceship
                        | Op::And
                        | Op::Or
                ) =>
            {
                self.predicate(expr);
                Sources::new()
            }
            // A nullness result used as a value (`(c IS NULL) = false`) can
            // be turned into IS NOT NULL: a general use (see `condition`).
            Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
                let s = self.expr(inner);
                self.use_sources(&s, self.clause == Clause::Ddl);
                Sources::new()
            }
            Expr::IsFalse(_)
            | Expr::IsNotFalse(_)
            | Expr::IsTrue(_)
            | Expr::IsNotTrue(_)
            | Expr::IsUnknown(_)
            | Expr::IsNotUnknown(_)
            | Expr::IsDistinctFrom(..)
            | Expr::IsNotDistinctFrom(..)
            | Expr::In { .. }
            | Expr::Exists { .. }
            | Expr::AnyOp { .. }
            | Expr::AllOp { .. }
            | Expr::Between { .. }
            | Expr::Like { .. }
            | Expr::ILike { .. }
            | Expr::SimilarTo { .. }
            | Expr::RLike { .. }
            | Expr::IsJson { .. }
            | Expr::IsNormalized { .. } => {
                self.predicate(expr);
                Sources::new()
            }
            Expr::UnaryOp {
                op: ast::UnaryOperator::Not,
                ..
            } => {
                self.predicate(expr);
                Sources::new()
            }
            Expr::BinaryOp { left, right, .. } => {
                let mut s = self.expr(left);
                merge_into(&mut s, &self.expr(right));
                as_derived(s)
            }
            Expr::UnaryOp { expr, .. } => as_derived(self.expr(expr)),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let mut result = Sources::new();
                let operand_sources = operand.as_ref().map(|o| self.expr(o));
                for when in conditions {
                    match &operand_sources {
                        // CASE x WHEN v: an equality test of x against v.
                        Some(op) => {
                            if let Some(operand) = operand.as_deref() {
                                self.operator(None, "=", Some(operand), &when.condition);
                            }
                            let op = op.clone();
                            let v = self.expr(&when.condition);
                            let vo = self.operand(&when.condition, &v);
                            self.compare(&op, &vo);
                            let oo = match operand.as_deref() {
                                Some(o) => self.operand(o, &op),
                                None => Operand::Computed,
                            };
                            self.compare(&v, &oo);
                        }
                        None => self.predicate(&when.condition),
                    }
                    let r = self.expr(&when.result);
                    merge_alternative(&mut result, &r);
                }
                if let Some(else_result) = else_result {
                    let r = self.expr(else_result);
                    merge_alternative(&mut result, &r);
                }
                result
            }
            // `(VALUES (x))` as a scalar subquery: its one value.
            Expr::Function(function) if keyword_call(function, &["values"]).is_some() => {
                let rows = keyword_call(function, &["values"]).unwrap_or_default();
                let mut s = Sources::new();
                for row in &rows {
                    merge_into(&mut s, &self.expr(row));
                }
                match rows.as_slice() {
                    [Expr::Nested(_)] => s,
                    _ => as_derived(s),
                }
            }
            // `x LIKE ALL (array)`: the pattern is each element of the array.
            Expr::Function(function)
                if keyword_call(function, &["all", "any", "some"]).is_some() =>
            {
                let mut s = Sources::new();
                for arg in keyword_call(function, &["all", "any", "some"]).unwrap_or_default() {
                    merge_into(&mut s, &self.expr(arg));
                }
                as_derived(s)
            }
            // `tsquery('a & b')`: with no function of that name, PostgreSQL
            // reads a one-argument call of a type name as a cast to it.
            Expr::Function(function) if self.type_name_call(function).is_some() => {
                match self.type_name_call(function) {
                    Some(cast) => self.expr(&cast),
                    None => Sources::new(),
                }
            }
            Expr::Function(function) => self.function(function),
            Expr::Subquery(query) => {
                let outputs = self.query(query);
                let mut sources = Sources::new();
                for out in &outputs {
                    merge_into(&mut sources, &out.sources);
                }
                if outputs.len() != 1 {
                    sources = as_derived(sources);
                } else {
                    self.made_by_subquery(query, outputs[0].shape.as_ref());
                }
                sources
            }
            Expr::Tuple(items) | Expr::Array(ast::Array { elem: items, .. }) => {
                let mut s = Sources::new();
                for item in items {
                    let e = self.expr(item);
                    merge_into(&mut s, &e);
                }
                as_derived(s)
            }
            Expr::Extract { expr, .. }
            | Expr::Ceil { expr, .. }
            | Expr::Floor { expr, .. }
            | Expr::AtTimeZone {
                timestamp: expr, ..
            } => as_derived(self.expr(expr)),
            Expr::Position { expr, r#in } => {
                let mut s = self.expr(expr);
                merge_into(&mut s, &self.expr(r#in));
                as_derived(s)
            }
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut s = self.expr(expr);
                for e in [substring_from, substring_for].into_iter().flatten() {
                    merge_into(&mut s, &self.expr(e));
                }
                as_derived(s)
            }
            Expr::Trim {
                expr,
                trim_what,
                trim_characters,
                ..
            } => {
                let mut s = self.expr(expr);
                if let Some(what) = trim_what {
                    merge_into(&mut s, &self.expr(what));
                }
                for e in trim_characters.iter().flatten() {
                    merge_into(&mut s, &self.expr(e));
                }
                as_derived(s)
            }
            Expr::Overlay {
                expr,
                overlay_what,
                overlay_from,
                overlay_for,
            } => {
                let mut s = self.expr(expr);
                merge_into(&mut s, &self.expr(overlay_what));
                merge_into(&mut s, &self.expr(overlay_from));
                if let Some(e) = overlay_for {
                    merge_into(&mut s, &self.expr(e));
                }
                as_derived(s)
            }
            Expr::CompoundFieldAccess { root, access_chain } => {
                // `(alias).column` of a whole-row reference is that column.
                if let (Expr::Nested(inner), [ast::AccessExpr::Dot(Expr::Identifier(field))]) =
                    (root.as_ref(), access_chain.as_slice())
                {
                    if let Expr::Identifier(alias) = inner.as_ref() {
                        let alias = ident_name(alias);
                        if self.resolve_column(std::slice::from_ref(&alias)).is_none() {
                            let parts = [alias, ident_name(field)];
                            if let Some(sources) = self.resolve_column(&parts) {
                                return sources;
                            }
                        }
                    }
                }
                // `t.f[1]`: column `t.f`, then its indirection (as
                // PostgreSQL's ColumnRef reads it).
                let dotted = super::dotted_column(root, access_chain);
                let resolved = dotted.as_ref().and_then(|parts| self.resolve_column(parts));
                let (mut s, rest) = match (resolved, &dotted) {
                    (Some(sources), Some(parts)) => (sources, &access_chain[parts.len() - 1..]),
                    _ => (self.expr(root), access_chain.as_slice()),
                };
                for access in rest {
                    match access {
                        ast::AccessExpr::Dot(e) => {
                            // `(row).field`: a field name, not a column.
                            if !matches!(e, Expr::Identifier(_)) {
                                merge_into(&mut s, &self.expr(e));
                            }
                        }
                        ast::AccessExpr::Subscript(sub) => {
                            self.generic_scan_node(sub);
                        }
                    }
                }
                as_derived(s)
            }
            Expr::JsonAccess { value, .. } => as_derived(self.expr(value)),
            Expr::Prefixed { value, .. } => self.expr(value),
            Expr::Named { expr, .. } => self.expr(expr),
            Expr::GroupingSets(sets) | Expr::Cube(sets) | Expr::Rollup(sets) => {
                let mut s = Sources::new();
                for e in sets.iter().flatten() {
                    merge_into(&mut s, &self.expr(e));
                }
                s
            }
            other => {
                self.generic_scan_node(other);
                self.hazard(
                    HazardRule::Unanalysable,
                    format!(
                        "expression form not modelled: {}",
                        truncate(&other.to_string())
                    ),
                );
                Sources::new()
            }
        }
    }

    pub(super) fn window_spec(&mut self, spec: &ast::WindowSpec) {
        // PARTITION BY sorts by its values, as GROUP BY may: a general use.
        self.with_clause(Clause::Window, |w| {
            for e in &spec.partition_by {
                let s = w.expr(e);
                w.use_sources(&s, false);
            }
            for item in &spec.order_by {
                let s = w.expr(&item.expr);
                w.use_sources(&s, false);
            }
        });
        if let Some(frame) = &spec.window_frame {
            // Frame offsets are expressions without column references of
            // their own level (PostgreSQL refuses them); subqueries allowed.
            let bounds = std::iter::once(&frame.start_bound).chain(frame.end_bound.as_ref());
            for bound in bounds {
                if let ast::WindowFrameBound::Preceding(Some(offset))
                | ast::WindowFrameBound::Following(Some(offset)) = bound
                {
                    self.with_clause(Clause::Window, |w| {
                        let s = w.expr(offset);
                        w.use_sources(&s, false);
                    });
                }
            }
        }
    }
}

/// Operands of a boolean test other than equality; `None` for expressions
/// that are not such a test.
fn general_operands(expr: &Expr) -> Option<Vec<&Expr>> {
    Some(match expr {
        Expr::BinaryOp { left, right, .. } => vec![left.as_ref(), right.as_ref()],
        Expr::AnyOp { left, right, .. } | Expr::AllOp { left, right, .. } => {
            vec![left.as_ref(), right.as_ref()]
        }
        Expr::Between {
            expr, low, high, ..
        } => vec![expr.as_ref(), low.as_ref(), high.as_ref()],
        Expr::Like { expr, pattern, .. }
        | Expr::ILike { expr, pattern, .. }
        | Expr::SimilarTo { expr, pattern, .. }
        | Expr::RLike { expr, pattern, .. } => vec![expr.as_ref(), pattern.as_ref()],
        Expr::IsFalse(e)
        | Expr::IsNotFalse(e)
        | Expr::IsTrue(e)
        | Expr::IsNotTrue(e)
        | Expr::IsUnknown(e)
        | Expr::IsNotUnknown(e)
        | Expr::IsJson { expr: e, .. }
        | Expr::IsNormalized { expr: e, .. } => vec![e.as_ref()],
        Expr::UnaryOp { expr, .. } => vec![expr.as_ref()],
        _ => return None,
    })
}

/// What a cast does to a value, judged from its target type.
enum CastTarget {
    /// Provably keeps every byte: the output is the input (maskable).
    Copy,
    /// A new value computed from the input.
    Computed,
    /// Computed, and the input reaches code that may quote it or look
    /// something up by it.
    Guarded(String, Guard),
}

impl Walker<'_> {
    /// True when `data_type` names pg_catalog's type as PostgreSQL resolves
    /// it here (not a type or domain of that name in a schema searched
    /// first).
    pub(super) fn is_builtin_type(&self, data_type: &ast::DataType) -> bool {
        !matches!(self.cast_target(data_type), CastTarget::Guarded(..))
    }

    /// Resolves a cast's target type the way PostgreSQL does: keyword types
    /// (VARCHAR(n), NUMERIC …) are pg_catalog's; other names are looked up
    /// with pg_catalog first unless the search_path lists it later; a
    /// qualified name outside pg_catalog is a user-defined type or domain.
    fn cast_target(&self, data_type: &ast::DataType) -> CastTarget {
        use ast::DataType as T;
        let pg_catalog_first = self.pg_catalog_first();
        let keyword = matches!(
            data_type,
            T::Varchar(_) | T::CharVarying(_) | T::CharacterVarying(_)
        );
        if !pg_catalog_first && !keyword {
            // A schema listed before pg_catalog may hold a domain or type
            // of that name.
            return CastTarget::Guarded(format!("a cast to {data_type}"), Guard::UserType);
        }
        let (name, has_modifiers) = match data_type {
            T::Custom(name, modifiers) => {
                let parts = object_name_parts(name);
                let builtin = match parts.as_slice() {
                    [schema, name] if schema == "pg_catalog" => Some(name.clone()),
                    [name] if pg_catalog_first && builtins::is_builtin_type(name) => {
                        Some(name.clone())
                    }
                    _ => None,
                };
                match builtin {
                    Some(name) => (name, !modifiers.is_empty()),
                    None => {
                        return CastTarget::Guarded(
                            format!("a cast to {}", parts.join(".")),
                            Guard::UserType,
                        )
                    }
                }
            }
            // Unquoted type keywords of PostgreSQL's grammar that sqlparser
            // models: a length or precision may cut the value.
            T::Text => ("text".to_owned(), false),
            T::Varchar(len) | T::CharVarying(len) | T::CharacterVarying(len) => {
                ("varchar".to_owned(), len.is_some())
            }
            T::Regclass => ("regclass".to_owned(), false),
            // An array's elements go through the element type's input and
            // checks (`::public.dom[]` runs the domain's CHECK on each).
            T::Array(
                ast::ArrayElemTypeDef::SquareBracket(element, _)
                | ast::ArrayElemTypeDef::AngleBracket(element)
                | ast::ArrayElemTypeDef::Parenthesis(element)
                | ast::ArrayElemTypeDef::ParenthesisNotNull(element)
                | ast::ArrayElemTypeDef::Qualified(element, _),
            ) => {
                return match self.cast_target(element) {
                    CastTarget::Guarded(what, guard) => CastTarget::Guarded(what, guard),
                    _ => CastTarget::Computed,
                }
            }
            _ => return CastTarget::Computed,
        };
        if builtins::LOOKUP_TYPES.contains(&name.as_str()) {
            return CastTarget::Guarded(format!("a cast to {name}"), Guard::Lookup);
        }
        // Only text types without a length keep every byte (varchar(n) and
        // bpchar(n) cut or pad; `name` cuts at 63 bytes).
        match name.as_str() {
            "text" | "varchar" | "bpchar" if !has_modifiers => CastTarget::Copy,
            _ => CastTarget::Computed,
        }
    }
}

/// Built-ins that build a row of the type their first argument names,
/// running each column type's input (and a domain's CHECK) on the values.
const ROW_POPULATING_FUNCTIONS: &[&str] = &[
    "json_populate_record",
    "json_populate_recordset",
    "jsonb_populate_record",
    "jsonb_populate_recordset",
];

impl Walker<'_> {
    /// Record-building calls convert values like casts do: the column types
    /// of `json_populate_record(NULL::t, …)` (user row types, whose columns
    /// may be domains or enums) and of a column definition list
    /// (`json_to_record(…) AS x(a public.dom)`). A type outside pg_catalog
    /// there is server code run on the arguments, as for a cast to it.
    pub(super) fn guard_record_input<'t>(
        &mut self,
        name: &str,
        arg_sources: &[Sources],
        column_types: impl Iterator<Item = &'t ast::DataType>,
    ) {
        let mut targets: Vec<(String, Guard)> = column_types
            .filter_map(|t| match self.cast_target(t) {
                CastTarget::Guarded(what, guard) => Some((what, guard)),
                _ => None,
            })
            .collect();
        if ROW_POPULATING_FUNCTIONS.contains(&name) {
            targets.push((format!("{name}() into a row type"), Guard::UserType));
        }
        for (target, guard) in targets {
            for sources in arg_sources {
                self.guard_sources(sources, &target, guard);
            }
        }
    }

    /// The other side of `= ANY(…)`: an ARRAY of constants or an array
    /// literal counts its elements; a subquery is a semi-join.
    fn array_operand(&mut self, expr: &Expr, sources: &Sources) -> Operand {
        match expr {
            Expr::Nested(inner) => self.array_operand(inner, sources),
            Expr::Array(ast::Array { elem, .. }) if elem.iter().all(is_constant_item) => {
                Operand::Constants(elem.len().max(1))
            }
            Expr::Cast { expr: inner, .. } => match inner.as_ref() {
                Expr::Value(ast::ValueWithSpan {
                    value: ast::Value::Placeholder(_),
                    ..
                }) => Operand::Constants(1),
                Expr::Value(v) => self.array_literal_operand(&v.value),
                _ => Operand::Computed,
            },
            // A bind parameter holding an array (`= ANY($1)`, as ORMs send
            // IN lists): caller-supplied constants, counted as one here;
            // its length is only known at Bind.
            Expr::Value(ast::ValueWithSpan {
                value: ast::Value::Placeholder(_),
                ..
            }) => Operand::Constants(1),
            Expr::Value(v) => self.array_literal_operand(&v.value),
            Expr::Subquery(_) => self.subquery_operand(sources),
            _ => Operand::Computed,
        }
    }

    /// `'{a,b,c}'`: at most one candidate per comma plus one.
    fn array_literal_operand(&mut self, value: &ast::Value) -> Operand {
        match value {
            ast::Value::SingleQuotedString(text) | ast::Value::EscapedStringLiteral(text) => {
                // The decision depends on this literal's text.
                self.literal_sensitive = true;
                Operand::Constants(text.matches(',').count() + 1)
            }
            _ => Operand::Computed,
        }
    }

    /// Rows of a subquery compared with a column: candidates only when they
    /// are a pure copy of columns.
    pub(super) fn subquery_operand(&self, sources: &Sources) -> Operand {
        let pure_copy = !sources.is_empty()
            && sources
                .iter()
                .all(|(c, f)| *f == Flow::Copy && *c != super::constant_source());
        if pure_copy {
            Operand::Columns(sources.keys().cloned().collect())
        } else {
            Operand::Computed
        }
    }
}

/// `$n` (or `$n::text[]`) as the array of `= ANY(…)`: its number.
fn array_parameter(expr: &Expr) -> Option<usize> {
    match expr {
        Expr::Nested(inner) => array_parameter(inner),
        Expr::Cast { expr: inner, .. } => array_parameter(inner),
        Expr::Value(ast::ValueWithSpan {
            value: ast::Value::Placeholder(p),
            ..
        }) => p.strip_prefix('$')?.parse().ok(),
        _ => None,
    }
}

fn is_constant_item(expr: &Expr) -> bool {
    super::is_constant(expr)
}

impl Walker<'_> {
    /// The cast a call like `tsquery('a & b')` stands for: one plain
    /// argument, a built-in type's name, and no function of that name.
    fn type_name_call(&self, function: &ast::Function) -> Option<Expr> {
        let parts = object_name_parts(&function.name);
        let (schema, name) = match parts.as_slice() {
            [name] => (None, name.as_str()),
            [schema, name] if schema == "pg_catalog" => (Some("pg_catalog"), name.as_str()),
            _ => return None,
        };
        if function.over.is_some()
            || function.filter.is_some()
            || !function.within_group.is_empty()
            || !matches!(function.parameters, ast::FunctionArguments::None)
            || !builtins::is_builtin_type(name)
            || self
                .catalog
                .resolve_function(self.search_path, schema, name)
                .is_some()
        {
            return None;
        }
        let ast::FunctionArguments::List(list) = &function.args else {
            return None;
        };
        let ([ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(arg))], None, true) = (
            list.args.as_slice(),
            &list.duplicate_treatment,
            list.clauses.is_empty(),
        ) else {
            return None;
        };
        Some(Expr::Cast {
            kind: ast::CastKind::DoubleColon,
            expr: Box::new(arg.clone()),
            data_type: ast::DataType::Custom(function.name.clone(), Vec::new()),
            format: None,
        })
    }
}

/// SQL syntax that sqlparser reads as a call of a function named after a
/// keyword (`rollup(a)` in GROUPING SETS, `(VALUES (1))`, `LIKE ALL (…)`):
/// its arguments when `function` is an unquoted, unqualified call of one of
/// `keywords` with plain arguments. A quoted name is a real function.
pub(super) fn keyword_call<'a>(
    function: &'a ast::Function,
    keywords: &[&str],
) -> Option<Vec<&'a Expr>> {
    let [ast::ObjectNamePart::Identifier(name)] = function.name.0.as_slice() else {
        return None;
    };
    if name.quote_style.is_some()
        || !keywords.contains(&name.value.to_lowercase().as_str())
        || function.over.is_some()
        || function.filter.is_some()
        || !function.within_group.is_empty()
        || !matches!(function.parameters, ast::FunctionArguments::None)
    {
        return None;
    }
    match &function.args {
        ast::FunctionArguments::None => Some(Vec::new()),
        ast::FunctionArguments::List(list)
            if list.duplicate_treatment.is_none() && list.clauses.is_empty() =>
        {
            list.args
                .iter()
                .map(|arg| match arg {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Some(e),
                    _ => None,
                })
                .collect()
        }
        _ => None,
    }
}
