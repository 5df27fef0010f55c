//! SELECT and the query around it: WITH (recursive CTEs too), set
//! operations, VALUES, the select list, GROUP BY / HAVING / DISTINCT,
//! ORDER BY and LIMIT.

use std::sync::Arc;

use sqlparser::ast::{
    self, Expr, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Value,
};

use super::expr::keyword_call;
use super::{
    as_derived, constant_source, ident_name, merge_alternative, merge_into, merge_types,
    object_name_parts, rename_columns, Clause, Flow, Frame, HazardRule, OutputColumn, Sink,
    Sources, Walker,
};

impl Walker<'_> {
    /// Lineage of a query's outputs; uses and effects go to `self.effects`.
    pub(crate) fn query(&mut self, query: &Query) -> Vec<OutputColumn> {
        let cte_mark = self.ctes.len();
        if let Some(with) = &query.with {
            for cte in cte_order(with) {
                let name = ident_name(&cte.alias.name);
                let (columns, volatile) = self.query_volatility(|w| {
                    if with.recursive {
                        w.recursive_cte(&name, &cte.query, &cte.alias.columns)
                    } else {
                        w.query(&cte.query)
                    }
                });
                // A CTE PostgreSQL materializes (MATERIALIZED, or read
                // twice, or recursive, or volatile even when NOT
                // MATERIALIZED) computes all its columns, read or not: the
                // computed ones count as uses. So does an inlined one that
                // is a set operation, as any subquery.
                if volatile
                    || super::computes_unread_columns(&cte.query)
                    || !matches!(
                        cte.materialized,
                        Some(ast::CteAsMaterialized::NotMaterialized)
                    )
                {
                    self.use_computed_outputs(columns.iter().map(|c| &c.sources));
                }
                let columns = rename_columns(columns, &cte.alias.columns);
                self.ctes.push((name, Arc::new(columns)));
            }
        }
        if !query.pipe_operators.is_empty() {
            self.hazard(HazardRule::Unanalysable, "pipe operators");
        }
        let outputs = match query.body.as_ref() {
            SetExpr::Select(select) => self.select(select, Some(query)),
            body => {
                let outputs = self.set_expr(body);
                if let Some(order_by) = &query.order_by {
                    self.order_by_outputs(order_by, &outputs, None);
                }
                self.limit(query);
                outputs
            }
        };
        self.ctes.truncate(cte_mark);
        outputs
    }

    /// A recursive CTE's columns can move into each other on every
    /// iteration, so iterate its analysis until the lineage stops growing.
    fn recursive_cte(
        &mut self,
        name: &str,
        query: &Query,
        alias_columns: &[ast::TableAliasColumnDef],
    ) -> Vec<OutputColumn> {
        let seed = match query.body.as_ref() {
            SetExpr::SetOperation { left, .. } => {
                let mut probe = Walker::new(self.catalog, self.search_path);
                probe.ctes = self.ctes.clone();
                probe.frames = std::mem::take(&mut self.frames);
                let seed = probe.set_expr(left);
                self.frames = std::mem::take(&mut probe.frames);
                rename_columns(seed, alias_columns)
            }
            _ => Vec::new(),
        };
        let mut current = seed;
        for _ in 0..8 {
            self.ctes.push((name.to_owned(), Arc::new(current.clone())));
            let next = rename_columns(self.query(query), alias_columns);
            self.ctes.pop();
            let mut merged = next.clone();
            for (out, prev) in merged.iter_mut().zip(current.iter()) {
                merge_into(&mut out.sources, &prev.sources);
                merge_types(&mut out.builtin_type, &prev.builtin_type);
                out.shape = None;
            }
            if merged == current {
                return merged;
            }
            current = merged;
        }
        self.hazard(
            HazardRule::Unanalysable,
            format!("recursive CTE {name} did not converge"),
        );
        current
    }

    fn set_expr(&mut self, body: &SetExpr) -> Vec<OutputColumn> {
        match body {
            SetExpr::Select(select) => self.select(select, None),
            SetExpr::Query(query) => self.query(query),
            SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                let mut outputs = self.set_expr(left);
                let right_outputs = self.set_expr(right);
                // PostgreSQL requires equal numbers; a difference means
                // pgveil miscounted (or the server will reject it), and the
                // columns beyond the shorter branch would lose their lineage.
                if outputs.len() != right_outputs.len() {
                    self.hazard(
                        HazardRule::Unanalysable,
                        format!(
                            "set operation branches with {} and {} columns",
                            outputs.len(),
                            right_outputs.len()
                        ),
                    );
                }
                // INTERSECT/EXCEPT/UNION (distinct) compare values across
                // branches: each column is compared with the other branch's.
                let compares = !matches!(op, ast::SetOperator::Union)
                    || !matches!(set_quantifier, ast::SetQuantifier::All);
                if compares {
                    for (out, other) in outputs.iter().zip(right_outputs.iter()) {
                        let lo = self.subquery_operand(&out.sources);
                        let ro = self.subquery_operand(&other.sources);
                        // Removing duplicates may sort by every column, and
                        // the rows then come back in the order of the clear
                        // values (see `group_by_item`): a general use too.
                        self.with_clause(Clause::SetOperation, |w| {
                            w.compare(&out.sources, &ro);
                            w.compare(&other.sources, &lo);
                            w.use_sources(&out.sources, false);
                            w.use_sources(&other.sources, false);
                        });
                    }
                }
                for (out, other) in outputs.iter_mut().zip(right_outputs.iter()) {
                    if out.sources.is_empty() {
                        out.sources.insert(constant_source(), Flow::Copy);
                    }
                    merge_alternative(&mut out.sources, &other.sources);
                    merge_types(&mut out.builtin_type, &other.builtin_type);
                    // Which branch a row came from is not known.
                    out.shape = None;
                }
                outputs
            }
            SetExpr::Values(values) => self.values(values),
            SetExpr::Insert(statement)
            | SetExpr::Update(statement)
            | SetExpr::Delete(statement)
            | SetExpr::Merge(statement) => self.dml(statement),
            SetExpr::Table(table) => {
                let mut parts = Vec::new();
                if let Some(schema) = &table.schema_name {
                    parts.push(ident_name(schema));
                }
                if let Some(name) = &table.table_name {
                    parts.push(ident_name(name));
                }
                match self.relation_item(&parts, None) {
                    Some(item) => item.columns,
                    None => Vec::new(),
                }
            }
        }
    }

    pub(super) fn values(&mut self, values: &ast::Values) -> Vec<OutputColumn> {
        let mut outputs: Vec<OutputColumn> = Vec::new();
        for row in &values.rows {
            for (i, expr) in row.content.iter().enumerate() {
                let mut sources = self.expr(expr);
                if sources.is_empty() {
                    // A row of constants: see `constant_source`.
                    sources.insert(constant_source(), Flow::Copy);
                }
                match outputs.get_mut(i) {
                    Some(out) => merge_into(&mut out.sources, &sources),
                    None => outputs.push(OutputColumn {
                        name: format!("column{}", i + 1),
                        sources,
                        builtin_type: None,
                        shape: None,
                        name_known: true,
                    }),
                }
            }
        }
        outputs
    }

    fn select(&mut self, select: &Select, query: Option<&Query>) -> Vec<OutputColumn> {
        self.frames.push(Frame::default());
        for table in &select.from {
            let star = self.table_with_joins(table);
            if let Some(frame) = self.frames.last_mut() {
                frame.star.extend(star);
            }
        }
        if !select.lateral_views.is_empty()
            || select.top.is_some()
            || !select.cluster_by.is_empty()
            || !select.distribute_by.is_empty()
            || !select.sort_by.is_empty()
            || select.prewhere.is_some()
            || !select.connect_by.is_empty()
            || select.qualify.is_some()
        {
            self.hazard(HazardRule::Unanalysable, "non-PostgreSQL SELECT clause");
        }
        if let Some(selection) = &select.selection {
            self.with_clause(Clause::Where, |w| w.predicate(selection));
        }
        for window in &select.named_window {
            if let ast::NamedWindowExpr::WindowSpec(spec) = &window.1 {
                self.window_spec(spec);
            }
        }
        let mut outputs = Vec::new();
        self.with_clause(Clause::SelectList, |w| {
            for item in &select.projection {
                w.select_item(item, &mut outputs);
            }
        });
        match &select.group_by {
            ast::GroupByExpr::Expressions(exprs, _) => {
                self.with_clause(Clause::GroupBy, |w| {
                    for expr in exprs {
                        w.group_by_item(expr, &outputs);
                    }
                });
            }
            ast::GroupByExpr::All(_) => {
                let all: Vec<Sources> = outputs.iter().map(|o| o.sources.clone()).collect();
                self.with_clause(Clause::GroupBy, |w| {
                    all.iter().for_each(|s| w.use_sources(s, false))
                });
            }
        }
        if let Some(having) = &select.having {
            self.with_clause(Clause::Having, |w| w.predicate(having));
        }
        // DISTINCT, like GROUP BY, may sort by the values it compares, and
        // the rows then come back in the order of the clear values: a
        // general use (see `group_by_item`).
        match &select.distinct {
            Some(ast::Distinct::Distinct) => {
                let all: Vec<Sources> = outputs.iter().map(|o| o.sources.clone()).collect();
                self.with_clause(Clause::Distinct, |w| {
                    all.iter().for_each(|s| w.use_sources(s, false))
                });
            }
            Some(ast::Distinct::On(exprs)) => {
                self.with_clause(Clause::Distinct, |w| {
                    for expr in exprs {
                        let sources = w.output_reference(expr, &outputs, true);
                        w.use_sources(&sources, false);
                    }
                });
            }
            Some(ast::Distinct::All) | None => {}
        }
        if let Some(query) = query {
            if let Some(order_by) = &query.order_by {
                self.order_by_outputs(order_by, &outputs, Some(()));
            }
            self.limit(query);
        }
        if let Some(into) = &select.into {
            // SELECT … INTO creates a table holding the outputs.
            for output in &outputs {
                for (column, flow) in &output.sources {
                    self.effects.sinks.insert(Sink {
                        source: column.clone(),
                        flow: *flow,
                        target: None,
                        via: "SELECT INTO",
                    });
                }
            }
            let _ = into;
        }
        self.frames.pop();
        outputs
    }

    /// One GROUP BY item: a general use of it. Grouping compares values
    /// for equality, but PostgreSQL may group by sorting (always for
    /// DISTINCT ON, whenever the planner or `work_mem` prefers it), and the
    /// groups then come back in the order of the clear values: with rows
    /// of chosen values among them (a `UNION ALL` of constants, rows the
    /// role inserted) the order places every stored value between two
    /// known ones. ROLLUP, CUBE, GROUPING SETS and their sets hold items of the same
    /// kind, output aliases included (as PostgreSQL resolves them); inside
    /// GROUPING SETS sqlparser reads `rollup(…)` and `cube(…)` as calls.
    fn group_by_item(&mut self, expr: &Expr, outputs: &[OutputColumn]) {
        match expr {
            Expr::Rollup(sets) | Expr::Cube(sets) | Expr::GroupingSets(sets) => {
                for item in sets.iter().flatten() {
                    self.group_by_item(item, outputs);
                }
            }
            Expr::Tuple(items) => {
                for item in items {
                    self.group_by_item(item, outputs);
                }
            }
            Expr::Nested(inner) => self.group_by_item(inner, outputs),
            Expr::Function(function) if keyword_call(function, &["rollup", "cube"]).is_some() => {
                for item in keyword_call(function, &["rollup", "cube"])
                    .into_iter()
                    .flatten()
                {
                    self.group_by_item(item, outputs);
                }
            }
            _ => {
                let sources = self.output_reference(expr, outputs, false);
                self.use_sources(&sources, false);
            }
        }
    }

    /// GROUP BY / DISTINCT ON / ORDER BY items may name an output column by
    /// alias or position; otherwise they are expressions over the FROM list.
    ///
    /// `prefer_output`: ORDER BY and DISTINCT ON resolve a bare name to an
    /// output column first, GROUP BY to an input column first (as PostgreSQL
    /// does); resolving the wrong one would judge the wrong column.
    fn output_reference(
        &mut self,
        expr: &Expr,
        outputs: &[OutputColumn],
        prefer_output: bool,
    ) -> Sources {
        match expr {
            Expr::Value(v) => {
                if let Value::Number(n, _) = &v.value {
                    // The decision depends on this literal's text.
                    self.literal_sensitive = true;
                    if let Some(out) = n
                        .parse::<usize>()
                        .ok()
                        .and_then(|i| i.checked_sub(1))
                        .and_then(|i| outputs.get(i))
                    {
                        return out.sources.clone();
                    }
                }
                Sources::new()
            }
            Expr::Identifier(ident) => {
                let name = ident_name(ident);
                let input_found = self.resolve_column(std::slice::from_ref(&name)).is_some();
                if prefer_output || !input_found {
                    let mut matched: Option<Sources> = None;
                    for out in outputs.iter().filter(|o| o.name == name) {
                        merge_into(matched.get_or_insert_with(Sources::new), &out.sources);
                    }
                    if let Some(sources) = matched {
                        return sources;
                    }
                }
                self.expr(expr)
            }
            _ => self.expr(expr),
        }
    }

    fn order_by_outputs(
        &mut self,
        order_by: &ast::OrderBy,
        outputs: &[OutputColumn],
        frame_visible: Option<()>,
    ) {
        self.with_clause(Clause::OrderBy, |w| match &order_by.kind {
            ast::OrderByKind::Expressions(exprs) => {
                for item in exprs {
                    let sources = if frame_visible.is_some() {
                        w.output_reference(&item.expr, outputs, true)
                    } else {
                        match &item.expr {
                            Expr::Identifier(ident) => {
                                let name = ident_name(ident);
                                outputs.iter().filter(|o| o.name == name).fold(
                                    Sources::new(),
                                    |mut acc, o| {
                                        merge_into(&mut acc, &o.sources);
                                        acc
                                    },
                                )
                            }
                            other => w.output_reference(other, outputs, true),
                        }
                    };
                    w.use_sources(&sources, false);
                }
            }
            ast::OrderByKind::All(_) => {
                for out in outputs {
                    w.use_sources(&out.sources, false);
                }
            }
        });
    }

    fn limit(&mut self, query: &Query) {
        self.with_clause(Clause::Limit, |w| {
            if let Some(limit) = &query.limit_clause {
                match limit {
                    ast::LimitClause::LimitOffset {
                        limit,
                        offset,
                        limit_by,
                    } => {
                        if let Some(limit) = limit {
                            let s = w.expr(limit);
                            w.use_sources(&s, false);
                        }
                        if let Some(offset) = offset {
                            let s = w.expr(&offset.value);
                            w.use_sources(&s, false);
                        }
                        for e in limit_by {
                            let s = w.expr(e);
                            w.use_sources(&s, false);
                        }
                    }
                    ast::LimitClause::OffsetCommaLimit { offset, limit } => {
                        let s = w.expr(offset);
                        w.use_sources(&s, false);
                        let s = w.expr(limit);
                        w.use_sources(&s, false);
                    }
                }
            }
            if let Some(fetch) = &query.fetch {
                if let Some(quantity) = &fetch.quantity {
                    let s = w.expr(quantity);
                    w.use_sources(&s, false);
                }
            }
        });
    }

    pub(super) fn select_item(&mut self, item: &SelectItem, outputs: &mut Vec<OutputColumn>) {
        match item {
            SelectItem::UnnamedExpr(expr) => {
                let sources = self.expr(expr);
                let shape = self.output_shape(expr, &sources);
                // PostgreSQL names a column reference after the column;
                // anything else by rules (FigureColname) pgveil follows
                // only in part.
                let name_known = matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
                outputs.push(OutputColumn {
                    name: default_column_name(expr),
                    sources,
                    builtin_type: self.output_type(expr),
                    shape,
                    name_known,
                });
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                let sources = self.expr(expr);
                let shape = self.output_shape(expr, &sources);
                let name = ident_name(alias);
                outputs.push(OutputColumn {
                    // PostgreSQL cuts identifiers to 63 bytes.
                    name_known: name.len() < 64,
                    name,
                    sources,
                    builtin_type: self.output_type(expr),
                    shape,
                });
            }
            SelectItem::ExprWithAliases { expr, aliases } => {
                let sources = self.expr(expr);
                let builtin_type = self.output_type(expr);
                for alias in aliases {
                    outputs.push(OutputColumn {
                        name: ident_name(alias),
                        sources: sources.clone(),
                        builtin_type: builtin_type.clone(),
                        shape: None,
                        name_known: true,
                    });
                }
            }
            SelectItem::Wildcard(options) => {
                if wildcard_has_options(options) {
                    self.hazard(HazardRule::Unanalysable, "wildcard options");
                }
                let star = self
                    .frames
                    .last()
                    .map(|f| f.star.clone())
                    .unwrap_or_default();
                if self
                    .frames
                    .last()
                    .is_some_and(|f| f.items.iter().any(|i| i.opaque))
                {
                    // Output positions after an item of unknown width are
                    // unknown too: masks could land on the wrong column.
                    self.hazard(
                        HazardRule::Unanalysable,
                        "* over a FROM item whose columns are not known; list the columns",
                    );
                }
                outputs.extend(star);
            }
            SelectItem::QualifiedWildcard(kind, options) => {
                if wildcard_has_options(options) {
                    self.hazard(HazardRule::Unanalysable, "wildcard options");
                }
                match kind {
                    SelectItemQualifiedWildcardKind::ObjectName(name) => {
                        let parts = object_name_parts(name);
                        match self.find_item(&parts) {
                            Some(item) if item.opaque => {
                                self.hazard(
                                    HazardRule::Unanalysable,
                                    format!(
                                        "{}.* has columns pgveil does not know; list them",
                                        parts.join(".")
                                    ),
                                );
                                outputs.extend(item.columns);
                            }
                            Some(item) => outputs.extend(item.columns),
                            None => self.hazard(
                                HazardRule::UnknownName,
                                format!("{}.* does not name a FROM item", parts.join(".")),
                            ),
                        }
                    }
                    SelectItemQualifiedWildcardKind::Expr(expr) => {
                        // (composite).* expands to unknown fields of a value.
                        let sources = as_derived(self.expr(expr));
                        self.hazard(HazardRule::Unanalysable, "(expression).* expansion");
                        outputs.push(OutputColumn {
                            name: "?column?".into(),
                            sources,
                            builtin_type: None,
                            shape: None,
                            name_known: true,
                        });
                    }
                }
            }
        }
    }
}

fn wildcard_has_options(options: &ast::WildcardAdditionalOptions) -> bool {
    options.opt_ilike.is_some()
        || options.opt_exclude.is_some()
        || options.opt_except.is_some()
        || options.opt_replace.is_some()
        || options.opt_rename.is_some()
}

/// PostgreSQL's default output column name for an unaliased expression.
fn default_column_name(expr: &Expr) -> String {
    match expr {
        Expr::Identifier(ident) => ident_name(ident),
        Expr::CompoundIdentifier(idents) => idents.last().map(ident_name).unwrap_or_default(),
        Expr::Function(f) => object_name_parts(&f.name).pop().unwrap_or_default(),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => default_column_name(expr),
        Expr::CompoundFieldAccess { access_chain, .. } => match access_chain.last() {
            Some(ast::AccessExpr::Dot(Expr::Identifier(field))) => ident_name(field),
            _ => "?column?".to_owned(),
        },
        // A scalar subquery is named after its one output.
        Expr::Subquery(query) => match query.body.as_ref() {
            SetExpr::Select(select) => match select.projection.as_slice() {
                [SelectItem::UnnamedExpr(e)] => default_column_name(e),
                [SelectItem::ExprWithAlias { alias, .. }] => ident_name(alias),
                _ => "?column?".to_owned(),
            },
            _ => "?column?".to_owned(),
        },
        Expr::Case { .. } => "case".to_owned(),
        _ => "?column?".to_owned(),
    }
}

/// The CTEs of a WITH in the order to analyse them: under RECURSIVE any CTE
/// may name a later one, so each comes after those it reads (PostgreSQL
/// refuses mutual recursion, so the order exists for valid statements).
fn cte_order(with: &ast::With) -> Vec<&ast::Cte> {
    let ctes: Vec<&ast::Cte> = with.cte_tables.iter().collect();
    if !with.recursive {
        return ctes;
    }
    let names: Vec<String> = ctes.iter().map(|c| ident_name(&c.alias.name)).collect();
    let reads: Vec<Vec<usize>> = ctes
        .iter()
        .enumerate()
        .map(|(i, cte)| {
            let mut read = Vec::new();
            let _ = ast::visit_relations(&cte.query, |relation| {
                if let [ast::ObjectNamePart::Identifier(ident)] = relation.0.as_slice() {
                    let name = ident_name(ident);
                    if let Some(j) = names.iter().position(|n| *n == name) {
                        if j != i && !read.contains(&j) {
                            read.push(j);
                        }
                    }
                }
                std::ops::ControlFlow::<()>::Continue(())
            });
            read
        })
        .collect();
    let mut order = Vec::with_capacity(ctes.len());
    let mut placed = vec![false; ctes.len()];
    while order.len() < ctes.len() {
        let next = (0..ctes.len())
            .find(|&i| !placed[i] && reads[i].iter().all(|&j| placed[j]))
            // A cycle: keep the written order; the server will refuse it.
            .or_else(|| (0..ctes.len()).find(|&i| !placed[i]));
        let Some(i) = next else { break };
        placed[i] = true;
        order.push(ctes[i]);
    }
    order
}
