//! Operators: which function an operator expression runs. PostgreSQL picks
//! among every operator of that name on the search_path by operand types,
//! so a user-defined operator (`CREATE OPERATOR public.= (LEFTARG = varchar,
//! RIGHTARG = varchar, FUNCTION = f)`) can take over `id_number = '…'` and
//! run user code on the protected value. pgveil types operands only where
//! it is certain (table columns, literals, casts to pg_catalog types, a
//! subquery's or CTE's column of such an expression, the elements of an
//! array cast for `= ANY (…)`) and
//! knows where an operand is of a built-in type from a short list (a
//! built-in function's result: its overloads' result types; CASE and
//! COALESCE: their branches') or of *some* built-in type (an operator over
//! built-in operands): an exact match among pg_catalog's operators is
//! PostgreSQL's own (always pure in 15); a user operator is a candidate
//! unless an operand of a built-in type cannot be implicitly coerced to its
//! parameter (the catalog lists, per operator parameter, the built-in types
//! that can), which is PostgreSQL's first cut too; every remaining
//! candidate's function is judged like a call of it.

use std::cell::Cell;

use sqlparser::ast::{self, BinaryOperator as B, Expr, UnaryOperator as U};

use super::{ident_name, object_name_parts, HazardRule, Walker};
use crate::analyze::builtins::{self, BuiltinCategory};
use crate::analyze::catalog::{FunctionResult, RelationKind, FIRST_NORMAL_OBJECT_ID};

/// How many expression nodes typing one operand may look at.
const TYPING_FUEL: u32 = 256;

/// What pgveil knows of an operand's type.
#[derive(Debug, Clone, PartialEq)]
enum OperandType {
    /// A string literal or bind parameter: PostgreSQL takes the other
    /// operand's type.
    Unknown,
    /// A pg_catalog type, by `typname`.
    Known(String),
    /// A type that ships with PostgreSQL, one of these `typname`s (empty:
    /// which one not known): a built-in function's result, an expression
    /// over built-in types. Enough to rule out operators those types are
    /// not implicitly coerced to.
    Builtin(Vec<String>),
    /// Not known (an expression, a view's column, a user type).
    Opaque,
}

impl OperandType {
    fn is_builtin(&self) -> bool {
        matches!(self, OperandType::Known(_) | OperandType::Builtin(_))
    }

    /// Whether PostgreSQL could pass an operand of this type to an operator
    /// parameter that the built-in types `reach` are implicitly coerced to
    /// (None: any may be).
    fn may_reach(&self, reach: Option<&[String]>) -> bool {
        let Some(reach) = reach else {
            return true;
        };
        match self {
            OperandType::Unknown | OperandType::Opaque => true,
            OperandType::Known(t) => reach.contains(t),
            OperandType::Builtin(types) if types.is_empty() => !reach.is_empty(),
            OperandType::Builtin(types) => types.iter().any(|t| reach.contains(t)),
        }
    }
}

impl Walker<'_> {
    /// Records what the operators at the top of `expr` run (not those of
    /// its operands, which `expr`/`predicate` reach on their own).
    pub(super) fn operators_of(&mut self, expr: &Expr) {
        match expr {
            Expr::BinaryOp { left, op, right } => {
                if let Some((schema, name)) = binary_operator(op) {
                    self.operator(schema.as_deref(), &name, Some(left), right);
                }
            }
            Expr::UnaryOp { op, expr } => {
                if let Some(name) = unary_operator(op) {
                    self.operator(None, name, None, expr);
                }
            }
            Expr::AnyOp {
                left,
                compare_op,
                right,
                ..
            }
            | Expr::AllOp {
                left,
                compare_op,
                right,
            } => {
                if let Some((schema, name)) = binary_operator(compare_op) {
                    // The right side is an array: PostgreSQL resolves the
                    // operator against its element type.
                    let element = array_element_type(right, self.pg_catalog_first());
                    let left = Some(self.operand_type(left));
                    self.operator_typed(schema.as_deref(), &name, left, element);
                }
            }
            Expr::Like {
                negated,
                expr,
                pattern,
                ..
            } => {
                let name = if *negated { "!~~" } else { "~~" };
                self.operator(None, name, Some(expr), pattern);
            }
            Expr::ILike {
                negated,
                expr,
                pattern,
                ..
            } => {
                let name = if *negated { "!~~*" } else { "~~*" };
                self.operator(None, name, Some(expr), pattern);
            }
            Expr::SimilarTo {
                negated,
                expr,
                pattern,
                ..
            } => {
                let name = if *negated { "!~" } else { "~" };
                self.operator(None, name, Some(expr), pattern);
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                self.operator(None, ">=", Some(expr), low);
                self.operator(None, "<=", Some(expr), high);
            }
            Expr::In {
                expr,
                target: ast::InTarget::List(list),
                negated,
                ..
            } => {
                let name = if *negated { "<>" } else { "=" };
                for item in list {
                    self.operator(None, name, Some(expr), item);
                }
            }
            Expr::IsDistinctFrom(left, right) | Expr::IsNotDistinctFrom(left, right) => {
                self.operator(None, "=", Some(left), right);
            }
            // `x [NOT] IN (SELECT …)` is `x = ANY (SELECT …)`, NOT-ed: the
            // subquery's column type is not known here.
            Expr::In {
                expr,
                target: ast::InTarget::Subquery(_),
                ..
            } => {
                let left = Some(self.operand_type(expr));
                self.operator_typed(None, "=", left, OperandType::Opaque);
            }
            // NULLIF(a, b) compares with `=` (syntax, not a function).
            Expr::Function(f)
                if matches!(object_name_parts(&f.name).as_slice(), [n] if n == "nullif")
                    || matches!(object_name_parts(&f.name).as_slice(), [s, n] if s == "pg_catalog" && n == "nullif") =>
            {
                if let ast::FunctionArguments::List(list) = &f.args {
                    if let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a)), ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(b))] =
                        list.args.as_slice()
                    {
                        self.operator(None, "=", Some(a), b);
                    }
                }
            }
            _ => {}
        }
    }

    /// The `=` of a USING or NATURAL join column, with each side's type when
    /// its select list or table gives it (`OutputColumn::builtin_type`).
    pub(super) fn join_using_operator(
        &mut self,
        left: Option<Vec<String>>,
        right: Option<Vec<String>>,
    ) {
        let typed = |t: Option<Vec<String>>| match t {
            Some(mut one) if one.len() == 1 => OperandType::Known(one.remove(0)),
            Some(types) => OperandType::Builtin(types),
            None => OperandType::Opaque,
        };
        self.operator_typed(None, "=", Some(typed(left)), typed(right));
    }

    /// The type of a table's column as `column_type` trusts it: pg_catalog's
    /// own type (not a domain, an extension's or a user's of that name).
    pub(super) fn table_column_type(
        relation: &crate::analyze::catalog::Relation,
        column: &crate::analyze::catalog::CatalogColumn,
    ) -> Option<Vec<String>> {
        let table = matches!(
            relation.kind,
            RelationKind::Table | RelationKind::PartitionedTable | RelationKind::ForeignTable
        );
        (table
            && builtins::is_builtin_type(&column.type_name)
            && column.type_name != "unknown"
            && (1..FIRST_NORMAL_OBJECT_ID).contains(&column.type_oid))
        .then(|| vec![column.type_name.clone()])
    }

    /// Judges one operator: pg_catalog's by its function's category, a
    /// user-defined one (or one that may be) as a call of its function.
    pub(super) fn operator(
        &mut self,
        schema: Option<&str>,
        name: &str,
        left: Option<&Expr>,
        right: &Expr,
    ) {
        let left = left.map(|l| self.operand_type(l));
        let right = self.operand_type(right);
        self.operator_typed(schema, name, left, right);
    }

    fn operator_typed(
        &mut self,
        schema: Option<&str>,
        name: &str,
        left_type: Option<OperandType>,
        right_type: OperandType,
    ) {
        let prefix = left_type.is_none();
        let shown = match schema {
            Some(s) => format!("OPERATOR({s}.{name})"),
            None => format!("operator {name}"),
        };
        if let Some(schema) = schema.filter(|s| *s != "pg_catalog") {
            let mut found = false;
            let functions: Vec<(String, String)> = self
                .catalog
                .operators_named(name)
                .filter(|o| o.schema == schema && o.left.is_empty() == prefix)
                .map(|o| (o.function_schema.clone(), o.function_name.clone()))
                .collect();
            for function in functions {
                found = true;
                self.user_operator_function(function);
            }
            if !found {
                self.hazard(
                    HazardRule::UnknownName,
                    format!("{shown} is not in the catalog"),
                );
            }
            return;
        }
        if self.exact_builtin(name, left_type.as_ref(), &right_type) {
            // An exact match in pg_catalog, which is searched first.
            if let Some(category) = self.exact_category(name, left_type.as_ref(), &right_type) {
                self.builtin_operator_category(&shown, category);
                return;
            }
        }
        let functions =
            self.user_operator_candidates(schema, name, left_type.as_ref(), &right_type);
        let user_defined = !functions.is_empty();
        for function in functions {
            self.user_operator_function(function);
        }
        match builtins::operator_category(name, prefix) {
            Some(category) => self.builtin_operator_category(&shown, category),
            None if user_defined => {}
            None => self.hazard(
                HazardRule::UnlistedFunction,
                format!("{shown} is neither a PostgreSQL 15 built-in operator nor in the catalog"),
            ),
        }
    }

    /// The pg_catalog signature PostgreSQL takes first for these operands,
    /// when both are known (an untyped literal or parameter takes the
    /// other's type).
    fn exact_signature(
        left: Option<&OperandType>,
        right: &OperandType,
    ) -> Option<(String, String)> {
        match (left, right) {
            (None, OperandType::Known(r)) => Some((String::new(), r.clone())),
            (Some(OperandType::Known(l)), OperandType::Known(r)) => Some((l.clone(), r.clone())),
            (Some(OperandType::Unknown), OperandType::Known(r)) => Some((r.clone(), r.clone())),
            (Some(OperandType::Known(l)), OperandType::Unknown) => Some((l.clone(), l.clone())),
            // Only untyped operands: PostgreSQL settles on the string
            // category and its preferred type, text, at each position
            // (func_select_candidate), so `'a' || 'b'` is text || text when
            // pg_catalog has that operator.
            (None | Some(OperandType::Unknown), OperandType::Unknown) => {
                let left = if left.is_some() { "text" } else { "" };
                Some((left.to_owned(), "text".to_owned()))
            }
            _ => None,
        }
    }

    fn exact_category(
        &self,
        name: &str,
        left: Option<&OperandType>,
        right: &OperandType,
    ) -> Option<BuiltinCategory> {
        let (l, r) = Self::exact_signature(left, right)?;
        builtins::operator_exact(name, &l, &r)
    }

    /// PostgreSQL takes pg_catalog's operator of exactly the operands'
    /// types before looking at any other, when pg_catalog is searched first.
    fn exact_builtin(&self, name: &str, left: Option<&OperandType>, right: &OperandType) -> bool {
        self.pg_catalog_first() && self.exact_category(name, left, right).is_some()
    }

    /// The functions of the user-defined operators PostgreSQL may pick for
    /// `left name right` (schema: `OPERATOR(pg_catalog.name)`): those of
    /// that name on the path, minus those a pg_catalog operator of the
    /// same signature earlier on the path hides, minus those an operand
    /// of a built-in type cannot reach (PostgreSQL drops a candidate whose
    /// parameter an argument cannot be implicitly coerced to before it
    /// ranks the others).
    fn user_operator_candidates(
        &self,
        schema: Option<&str>,
        name: &str,
        left: Option<&OperandType>,
        right: &OperandType,
    ) -> Vec<(String, String)> {
        let prefix = left.is_none();
        let path = self.operator_path();
        let catalog_position = path.iter().position(|s| s == "pg_catalog");
        self.catalog
            .operators_named(name)
            .filter(|o| o.left.is_empty() == prefix)
            .filter(|o| schema.is_none() || o.schema == "pg_catalog")
            .filter(|o| {
                left.is_none_or(|l| l.may_reach(o.left_reach.as_deref()))
                    && right.may_reach(o.right_reach.as_deref())
            })
            .filter(|o| {
                let Some(position) = path.iter().position(|s| *s == o.schema) else {
                    return false;
                };
                // pg_catalog's operator of the same signature, earlier on
                // the path, always wins over it.
                let shadowed = catalog_position.is_some_and(|c| c < position)
                    && builtins::operator_exact(name, &o.left, &o.right).is_some();
                !shadowed
            })
            .map(|o| (o.function_schema.clone(), o.function_name.clone()))
            .collect()
    }

    /// The type of `left name right`: built-in when PostgreSQL can only
    /// pick a pg_catalog operator (whose result, polymorphic ones over
    /// built-in operands included, is a built-in type).
    fn operator_result_type(
        &self,
        schema: Option<&str>,
        name: &str,
        left: Option<&OperandType>,
        right: &OperandType,
    ) -> OperandType {
        if schema.is_some_and(|s| s != "pg_catalog") {
            return OperandType::Opaque;
        }
        let typed = |t: &OperandType| t.is_builtin() || *t == OperandType::Unknown;
        if !left.is_none_or(typed) || !typed(right) {
            return OperandType::Opaque;
        }
        if self.exact_builtin(name, left, right)
            || self
                .user_operator_candidates(schema, name, left, right)
                .is_empty()
        {
            OperandType::Builtin(Vec::new())
        } else {
            OperandType::Opaque
        }
    }

    fn user_operator_function(&mut self, function: (String, String)) {
        if crate::analyze::catalog::SYSTEM_SCHEMAS.contains(&function.0.as_str()) {
            // A user operator over a built-in function: judged by the
            // function's category like a call of it.
            if let Some(category) = builtins::category(&function.0, &function.1, None) {
                let shown = format!("{}.{}()", function.0, function.1);
                self.builtin_operator_category(&shown, category);
                return;
            }
        }
        self.effects.user_functions.insert(function);
    }

    fn builtin_operator_category(&mut self, shown: &str, category: BuiltinCategory) {
        match category {
            BuiltinCategory::Pure | BuiltinCategory::Context => {}
            // No PostgreSQL 15 operator runs anything else; a newer
            // release's that did would be refused until reviewed.
            other => self.hazard(
                HazardRule::UnlistedFunction,
                format!("{shown} runs a function of category {}", other.as_str()),
            ),
        }
    }

    /// Whether a call of `call` may run the user function `candidate`, by
    /// PostgreSQL's first cut (func_get_detail): its parameters take that
    /// many positional arguments, and each argument of a built-in type can
    /// be implicitly coerced to its parameter; a function without
    /// parameters is hidden by pg_catalog's of the same name when
    /// pg_catalog is searched first (`gen_random_uuid()` of pgcrypto).
    /// Named arguments, or a catalog that did not record the parameters:
    /// it may.
    pub(super) fn call_may_run(
        &self,
        call: &ast::Function,
        candidate: &crate::analyze::catalog::CatalogFunction,
    ) -> bool {
        self.call_may_run_within(call, candidate, &Cell::new(TYPING_FUEL))
    }

    /// `call_may_run`, typing the arguments within `fuel`.
    fn call_may_run_within(
        &self,
        call: &ast::Function,
        candidate: &crate::analyze::catalog::CatalogFunction,
        fuel: &Cell<u32>,
    ) -> bool {
        let Some(parameters) = &candidate.parameters else {
            return true;
        };
        let types: Vec<OperandType> = match &call.args {
            ast::FunctionArguments::None => Vec::new(),
            ast::FunctionArguments::Subquery(_) => return true,
            ast::FunctionArguments::List(list) => {
                let mut types = Vec::with_capacity(list.args.len());
                for arg in &list.args {
                    match arg {
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => {
                            types.push(self.typed(e, fuel))
                        }
                        _ => return true,
                    }
                }
                types
            }
        };
        if !parameters.takes(types.len()) {
            return false;
        }
        if types.is_empty()
            && parameters.reach.is_empty()
            && call.name.0.len() == 1
            && self.pg_catalog_first()
            && builtins::category("pg_catalog", &candidate.name, Some(0)).is_some()
        {
            return false;
        }
        types
            .iter()
            .zip(&parameters.reach)
            .all(|(t, reach)| t.may_reach(reach.as_deref()))
    }

    /// A call of a name both pg_catalog and user schemas define runs
    /// pg_catalog's when no user overload can take its arguments (see
    /// `call_may_run`): `replace(text_column, 'a', 'b')` beside citext's
    /// `replace(citext, …)`.
    fn runs_builtin(&self, call: &ast::Function, parts: &[String], fuel: &Cell<u32>) -> bool {
        let (schema, name) = match parts {
            [name] => (None, name.as_str()),
            [schema, name] if schema == "pg_catalog" => (Some(schema.as_str()), name.as_str()),
            _ => return false,
        };
        let builtin = self
            .catalog
            .resolve_function(&[], Some("pg_catalog"), name)
            .is_some_and(|f| f.is_builtin());
        builtin
            && super::functions::user_candidates(self.catalog, self.search_path, schema, name)
                .iter()
                .all(|c| {
                    !self
                        .catalog
                        .functions_named(name)
                        .filter(|f| f.schema == c.schema && !f.is_builtin())
                        .any(|f| self.call_may_run_within(call, f, fuel))
                })
    }

    pub(super) fn pg_catalog_first(&self) -> bool {
        self.search_path
            .iter()
            .position(|s| s == "pg_catalog")
            .is_none_or(|i| i == 0)
    }

    /// Schemas searched for operators, in order: pg_catalog first unless
    /// listed; pg_temp never (PostgreSQL does not search it for operators).
    fn operator_path(&self) -> Vec<String> {
        let mut path = Vec::new();
        if !self.search_path.iter().any(|s| s == "pg_catalog") {
            path.push("pg_catalog".to_owned());
        }
        path.extend(
            self.search_path
                .iter()
                .filter(|s| !s.starts_with("pg_temp"))
                .cloned(),
        );
        path
    }

    fn operand_type(&self, expr: &Expr) -> OperandType {
        self.typed(expr, &Cell::new(TYPING_FUEL))
    }

    /// The built-in types of a select-list expression, which a subquery's
    /// or CTE's column keeps (`OutputColumn::builtin_type`); None when not
    /// known, an untyped literal or parameter too (PostgreSQL makes a
    /// literal text, or takes another set-operation branch's type, and a
    /// parameter may have been declared of any type).
    pub(super) fn output_type(&self, expr: &Expr) -> Option<Vec<String>> {
        match self.operand_type(expr) {
            OperandType::Known(t) => Some(vec![t]),
            OperandType::Builtin(types) => Some(types),
            OperandType::Unknown | OperandType::Opaque => None,
        }
    }

    /// `operand_type` within `fuel` nodes: typing looks into operands, and
    /// every operator of a deep expression is typed, so without a bound a
    /// chain of n operators costs n² (past it: not known).
    fn typed(&self, expr: &Expr, fuel: &Cell<u32>) -> OperandType {
        if fuel.get() == 0 {
            return OperandType::Opaque;
        }
        fuel.set(fuel.get() - 1);
        match expr {
            Expr::Nested(inner) => self.typed(inner, fuel),
            Expr::Value(v) => match &v.value {
                ast::Value::SingleQuotedString(_)
                | ast::Value::EscapedStringLiteral(_)
                | ast::Value::DollarQuotedString(_)
                | ast::Value::Placeholder(_)
                | ast::Value::Null => OperandType::Unknown,
                ast::Value::Boolean(_) => OperandType::Known("bool".into()),
                ast::Value::Number(n, _) => {
                    let typname = if n.parse::<i32>().is_ok() {
                        "int4"
                    } else if n.parse::<i64>().is_ok() {
                        "int8"
                    } else {
                        "numeric"
                    };
                    OperandType::Known(typname.into())
                }
                _ => OperandType::Opaque,
            },
            Expr::Cast { data_type, .. } => cast_type(data_type, self.pg_catalog_first()),
            Expr::Identifier(ident) => self.column_type(&[ident_name(ident)]),
            Expr::CompoundIdentifier(idents) => {
                let parts: Vec<String> = idents.iter().map(ident_name).collect();
                self.column_type(&parts)
            }
            // Boolean by construction: PostgreSQL coerces AND/OR/NOT
            // operands to boolean and requires = ANY, IN, BETWEEN and IS
            // DISTINCT FROM to yield it.
            Expr::BinaryOp {
                op: B::And | B::Or, ..
            }
            | Expr::UnaryOp { op: U::Not, .. }
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::IsTrue(_)
            | Expr::IsNotTrue(_)
            | Expr::IsFalse(_)
            | Expr::IsNotFalse(_)
            | Expr::IsUnknown(_)
            | Expr::IsNotUnknown(_)
            | Expr::IsDistinctFrom(..)
            | Expr::IsNotDistinctFrom(..)
            | Expr::Exists { .. }
            | Expr::In { .. }
            | Expr::Between { .. }
            | Expr::AnyOp { .. }
            | Expr::AllOp { .. } => OperandType::Known("bool".into()),
            Expr::BinaryOp { left, op, right } => match binary_operator(op) {
                Some((schema, name)) => {
                    let left = self.typed(left, fuel);
                    let right = self.typed(right, fuel);
                    self.operator_result_type(schema.as_deref(), &name, Some(&left), &right)
                }
                None => OperandType::Opaque,
            },
            Expr::UnaryOp { op, expr } => match unary_operator(op) {
                Some(name) => {
                    let operand = self.typed(expr, fuel);
                    self.operator_result_type(None, name, None, &operand)
                }
                None => OperandType::Opaque,
            },
            Expr::Case {
                conditions,
                else_result,
                ..
            } => {
                let branches: Vec<&Expr> = conditions
                    .iter()
                    .map(|c| &c.result)
                    .chain(else_result.as_deref())
                    .collect();
                self.common_type(&branches, fuel)
            }
            Expr::Function(function) => self.function_type(function, fuel),
            // SQL syntax PostgreSQL's grammar maps to pg_catalog functions
            // whatever the search_path: extract() is numeric since 14,
            // position() an integer; substring(… FROM …) and trim() return
            // text, bytea or bit. (`substring(a, b)` with commas is a plain
            // call, looked up on the search_path.)
            Expr::Extract { .. } => OperandType::Known("numeric".into()),
            Expr::Position { .. } => OperandType::Known("int4".into()),
            Expr::Substring { special: false, .. } | Expr::Trim { .. } => {
                OperandType::Builtin(vec!["bit".into(), "bytea".into(), "text".into()])
            }
            // ARRAY[…] of built-in (or untyped) elements: a built-in array.
            Expr::Array(array) => {
                let builtin = array.elem.iter().all(|e| {
                    matches!(
                        self.typed(e, fuel),
                        OperandType::Known(_) | OperandType::Builtin(_) | OperandType::Unknown
                    )
                });
                if builtin && !array.elem.is_empty() {
                    OperandType::Builtin(Vec::new())
                } else {
                    OperandType::Opaque
                }
            }
            _ => OperandType::Opaque,
        }
    }

    /// The common type of CASE branches or COALESCE arguments: one of theirs
    /// (PostgreSQL's select_common_type picks among them), text when all
    /// are untyped literals; not known when one is not.
    fn common_type(&self, exprs: &[&Expr], fuel: &Cell<u32>) -> OperandType {
        let mut types: Vec<String> = Vec::new();
        let mut any = false;
        for e in exprs {
            match self.typed(e, fuel) {
                OperandType::Unknown => {}
                OperandType::Known(t) => {
                    if !types.contains(&t) {
                        types.push(t);
                    }
                }
                OperandType::Builtin(list) if list.is_empty() => any = true,
                OperandType::Builtin(list) => {
                    for t in list {
                        if !types.contains(&t) {
                            types.push(t);
                        }
                    }
                }
                OperandType::Opaque => return OperandType::Opaque,
            }
        }
        match types.as_slice() {
            _ if any => OperandType::Builtin(Vec::new()),
            [] => OperandType::Known("text".into()),
            [one] => OperandType::Known(one.clone()),
            _ => OperandType::Builtin(types),
        }
    }

    /// The type of a function call: built-in when it runs a function that
    /// ships with PostgreSQL whose overloads all return a scalar (their
    /// result types are then pg_catalog's), or a polymorphic one whose
    /// arguments are all of built-in types; COALESCE, GREATEST, LEAST and
    /// NULLIF (syntax, not functions) when their arguments are.
    fn function_type(&self, function: &ast::Function, fuel: &Cell<u32>) -> OperandType {
        let parts = object_name_parts(&function.name);
        let args: Option<Vec<&Expr>> = match &function.args {
            ast::FunctionArguments::None => Some(Vec::new()),
            ast::FunctionArguments::List(list) => list
                .args
                .iter()
                .map(|a| match a {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Some(e),
                    _ => None,
                })
                .collect(),
            ast::FunctionArguments::Subquery(_) => None,
        };
        let args_typed = || {
            args.as_ref().is_some_and(|args| {
                args.iter().all(|a| {
                    let t = self.typed(a, fuel);
                    t.is_builtin() || t == OperandType::Unknown
                })
            })
        };
        if let [name] = parts.as_slice() {
            if matches!(name.as_str(), "coalesce" | "greatest" | "least" | "nullif") {
                return match &args {
                    Some(args) => self.common_type(args, fuel),
                    None => OperandType::Opaque,
                };
            }
        }
        if !self.resolves_to_builtin(&parts) && !self.runs_builtin(function, &parts, fuel) {
            return OperandType::Opaque;
        }
        let Some(name) = parts.last() else {
            return OperandType::Opaque;
        };
        let schema = match parts.as_slice() {
            [schema, _] => schema.as_str(),
            _ => "pg_catalog",
        };
        let mut scalar = true;
        let mut any = false;
        for overload in self
            .catalog
            .functions_named(name)
            .filter(|f| f.schema == schema)
        {
            any = true;
            match overload.result {
                FunctionResult::Scalar => {}
                FunctionResult::Polymorphic | FunctionResult::FirstArgumentType => {
                    scalar = false;
                }
                _ => return OperandType::Opaque,
            }
        }
        if any && scalar {
            OperandType::Builtin(self.builtin_scalar_types(&parts).unwrap_or_default())
        } else if any && args_typed() {
            OperandType::Builtin(Vec::new())
        } else {
            OperandType::Opaque
        }
    }

    /// The type of a column reference, when it is a column of a table (not
    /// a view, whose columns may have been cast), or of a subquery or CTE
    /// whose select list gives it (`builtin_typed`).
    fn column_type(&self, parts: &[String]) -> OperandType {
        let (qualifier, name) = match parts.split_last() {
            Some((name, qualifier)) => (qualifier, name),
            None => return OperandType::Opaque,
        };
        // The FROM item must be that table itself.
        let item = if qualifier.is_empty() {
            let frame = self.frames.iter().rev().find(|f| {
                f.items
                    .iter()
                    .any(|i| i.opaque || i.columns.iter().any(|c| &c.name == name))
            });
            let mut items = frame
                .into_iter()
                .flat_map(|f| f.items.iter())
                .filter(|i| i.opaque || i.columns.iter().any(|c| &c.name == name));
            match (items.next(), items.next()) {
                (Some(item), None) => Some(item.clone()),
                _ => None,
            }
        } else {
            self.find_item(qualifier)
        };
        let Some(item) = item.filter(|i| !i.opaque) else {
            return OperandType::Opaque;
        };
        if let Some(types) = item.builtin_typed.get(name) {
            if item.columns.iter().any(|c| &c.name == name) {
                return match types.as_slice() {
                    [one] => OperandType::Known(one.clone()),
                    _ => OperandType::Builtin(types.clone()),
                };
            }
        }
        let Some(sources) = self.resolve_column(parts) else {
            return OperandType::Opaque;
        };
        let mut sources = sources.iter();
        let (Some((column, super::Flow::Copy)), None) = (sources.next(), sources.next()) else {
            return OperandType::Opaque;
        };
        if item.relation.as_ref() != Some(&(column.schema.clone(), column.table.clone())) {
            return OperandType::Opaque;
        }
        let Some(relation) = self.catalog.relation(&column.schema, &column.table) else {
            return OperandType::Opaque;
        };
        if !matches!(
            relation.kind,
            RelationKind::Table | RelationKind::PartitionedTable | RelationKind::ForeignTable
        ) {
            return OperandType::Opaque;
        }
        match relation.columns.iter().find(|c| c.name == column.column) {
            // A domain or extension type is not pg_catalog's.
            // The oid tells pg_catalog's `int4` from a user's `public.int4`.
            Some(c)
                if builtins::is_builtin_type(&c.type_name)
                    && c.type_name != "unknown"
                    && (1..FIRST_NORMAL_OBJECT_ID).contains(&c.type_oid) =>
            {
                OperandType::Known(c.type_name.clone())
            }
            _ => OperandType::Opaque,
        }
    }
}

/// The `typname` a cast produces, for pg_catalog types named without a
/// schema other than pg_catalog. A name that is not one of the grammar's
/// type keywords (`text`, `int4`, `date` …) is looked up on the
/// search_path: pg_catalog's only while pg_catalog comes first.
fn cast_type(data_type: &ast::DataType, pg_catalog_first: bool) -> OperandType {
    use ast::DataType as T;
    let keyword = matches!(
        data_type,
        T::Varchar(_)
            | T::CharVarying(_)
            | T::CharacterVarying(_)
            | T::Char(_)
            | T::Character(_)
            | T::Int(_)
            | T::Integer(_)
            | T::SmallInt(_)
            | T::BigInt(_)
            | T::Numeric(_)
            | T::Decimal(_)
            | T::Real
            | T::DoublePrecision
            | T::Boolean
            | T::Time(..)
            | T::Timestamp(..)
            | T::Interval { .. }
            | T::Bit(_)
            | T::BitVarying(_)
    );
    let qualified = matches!(data_type, T::Custom(name, _) if name.0.len() > 1);
    if !pg_catalog_first && !keyword && !qualified {
        return OperandType::Opaque;
    }
    let name = match data_type {
        T::Custom(name, _) => match object_name_parts(name).as_slice() {
            [name] => name.clone(),
            [schema, name] if schema == "pg_catalog" => name.clone(),
            _ => return OperandType::Opaque,
        },
        T::Text => "text".into(),
        T::Varchar(_) | T::CharVarying(_) | T::CharacterVarying(_) => "varchar".into(),
        T::Char(_) | T::Character(_) => "bpchar".into(),
        T::Int(_) | T::Integer(_) | T::Int4(_) => "int4".into(),
        T::BigInt(_) | T::Int8(_) => "int8".into(),
        T::SmallInt(_) | T::Int2(_) => "int2".into(),
        T::Numeric(_) | T::Decimal(_) => "numeric".into(),
        T::Real | T::Float4 => "float4".into(),
        T::DoublePrecision | T::Float8 => "float8".into(),
        T::Boolean | T::Bool => "bool".into(),
        T::Date => "date".into(),
        T::Bytea => "bytea".into(),
        T::Uuid => "uuid".into(),
        T::JSON => "json".into(),
        T::JSONB => "jsonb".into(),
        T::Time(_, ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz) => "timetz".into(),
        T::Time(..) => "time".into(),
        T::Timestamp(_, ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz) => {
            "timestamptz".into()
        }
        T::Timestamp(..) => "timestamp".into(),
        T::Interval { .. } => "interval".into(),
        T::Bit(_) => "bit".into(),
        T::BitVarying(_) => "varbit".into(),
        // `integer[]`: the array type of a built-in element type.
        T::Array(
            ast::ArrayElemTypeDef::SquareBracket(element, _)
            | ast::ArrayElemTypeDef::Qualified(element, _),
        ) => match cast_type(element, pg_catalog_first) {
            OperandType::Known(element) => format!("_{element}"),
            _ => return OperandType::Opaque,
        },
        _ => return OperandType::Opaque,
    };
    if name == "unknown" {
        // `'x'::unknown` is still coerced to any parameter type.
        OperandType::Unknown
    } else if builtins::is_builtin_type(&name) {
        OperandType::Known(name)
    } else {
        OperandType::Opaque
    }
}

/// The element type of the array `= ANY (…)` and `= ALL (…)` compare with:
/// an untyped literal or parameter (PostgreSQL resolves the operator with
/// it untyped), a cast to an array of a pg_catalog type (`$1::oid[]`);
/// otherwise not known.
fn array_element_type(array: &Expr, pg_catalog_first: bool) -> OperandType {
    use ast::{ArrayElemTypeDef as A, DataType as T};
    fn element(data_type: &T, pg_catalog_first: bool) -> OperandType {
        match data_type {
            T::Array(A::SquareBracket(inner, _) | A::Qualified(inner, _)) => match inner.as_ref() {
                // `oid[][]`: the elements are still oids.
                T::Array(_) => element(inner, pg_catalog_first),
                inner => cast_type(inner, pg_catalog_first),
            },
            _ => OperandType::Opaque,
        }
    }
    match array {
        Expr::Nested(inner) => array_element_type(inner, pg_catalog_first),
        Expr::Value(_) => OperandType::Unknown,
        Expr::Cast { data_type, .. } => element(data_type, pg_catalog_first),
        _ => OperandType::Opaque,
    }
}

/// PostgreSQL's name of a binary operator, with its schema when written
/// `OPERATOR(schema.op)`; `None` for AND/OR and non-PostgreSQL forms.
fn binary_operator(op: &B) -> Option<(Option<String>, String)> {
    let name = match op {
        B::Plus => "+",
        B::Minus => "-",
        B::Multiply => "*",
        B::Divide => "/",
        B::Modulo => "%",
        B::StringConcat => "||",
        B::Gt => ">",
        B::Lt => "<",
        B::GtEq => ">=",
        B::LtEq => "<=",
        B::Eq => "=",
        B::NotEq => "<>",
        B::BitwiseOr => "|",
        B::BitwiseAnd => "&",
        B::BitwiseXor | B::PGBitwiseXor => "#",
        B::PGBitwiseShiftLeft => "<<",
        B::PGBitwiseShiftRight => ">>",
        B::PGExp => "^",
        B::PGOverlap => "&&",
        B::PGRegexMatch => "~",
        B::PGRegexIMatch => "~*",
        B::PGRegexNotMatch => "!~",
        B::PGRegexNotIMatch => "!~*",
        B::PGLikeMatch => "~~",
        B::PGILikeMatch => "~~*",
        B::PGNotLikeMatch => "!~~",
        B::PGNotILikeMatch => "!~~*",
        B::PGStartsWith => "^@",
        B::Arrow => "->",
        B::LongArrow => "->>",
        B::HashArrow => "#>",
        B::HashLongArrow => "#>>",
        B::AtAt => "@@",
        B::AtArrow => "@>",
        B::ArrowAt => "<@",
        B::HashMinus => "#-",
        B::AtQuestion => "@?",
        B::Question => "?",
        B::QuestionAnd => "?&",
        B::QuestionPipe => "?|",
        B::DoubleHash => "##",
        B::LtDashGt => "<->",
        B::AndLt => "&<",
        B::AndGt => "&>",
        B::LtLtPipe => "<<|",
        B::PipeGtGt => "|>>",
        B::AndLtPipe => "&<|",
        B::PipeAndGt => "|&>",
        B::LtCaret => "<^",
        B::GtCaret => ">^",
        B::QuestionHash => "?#",
        B::QuestionDash => "?-",
        B::QuestionDashPipe => "?-|",
        B::QuestionDoublePipe => "?||",
        B::At => "@",
        B::TildeEq => "~=",
        B::Custom(name) => return Some((None, name.clone())),
        B::PGCustomBinaryOperator(parts) => {
            return match parts.as_slice() {
                [name] => Some((None, name.clone())),
                [schema, name] => Some((Some(schema.to_lowercase()), name.clone())),
                // `OPERATOR(db.schema.op)`: not resolvable here.
                _ => Some((Some(parts.join(".")), String::new())),
            };
        }
        _ => return None,
    };
    Some((None, name.to_owned()))
}

fn unary_operator(op: &U) -> Option<&'static str> {
    Some(match op {
        U::Plus => "+",
        U::Minus => "-",
        U::BitwiseNot => "~",
        U::PGSquareRoot => "|/",
        U::PGCubeRoot => "||/",
        U::PGPrefixFactorial => "!!",
        U::PGAbs => "@",
        U::AtDashAt => "@-@",
        U::DoubleAt => "@@",
        U::Hash => "#",
        U::QuestionDash => "?-",
        U::QuestionPipe => "?|",
        _ => return None,
    })
}
