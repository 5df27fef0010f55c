//! The shape of JSON values a statement builds: `json_build_object` with
//! constant keys, `json_build_array`, `json_agg`, `row_to_json` and
//! `to_json` of a row, their jsonb twins, `json_strip_nulls`, and
//! `COALESCE(…, '[]')`, nested, through subqueries, CTEs and views.
//! ORMs load related rows this way (Drizzle, Prisma, PostgREST): with the
//! shape, a protected column's value inside the JSON is masked where it
//! sits instead of the whole statement being refused.
//!
//! Only PostgreSQL's own functions build shapes (a user function of the
//! same name anywhere on the search_path leaves the value unshaped); any
//! other expression is a part whose columns are judged as an output
//! column's are. Merging alternatives (UNION, USING, recursion) drops the
//! shape: the column is then judged as computed, as before.

use std::sync::Arc;

use sqlparser::ast::{self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments};

use super::functions::user_candidates;
use super::{ident_name, object_name_parts, JsonShape, ScopeItem, Sources, Walker};

/// Built-in functions whose result's shape follows from their arguments.
const SHAPED_FUNCTIONS: &[&str] = &[
    "json_build_object",
    "jsonb_build_object",
    "json_build_array",
    "jsonb_build_array",
    "json_agg",
    "jsonb_agg",
    "to_json",
    "to_jsonb",
    "row_to_json",
    "json_strip_nulls",
    "jsonb_strip_nulls",
    "coalesce",
];

/// Whether a call of `name` may build a shape (so its arguments' shapes
/// are worth recording).
pub(super) fn shapes_arguments(name: &str) -> bool {
    SHAPED_FUNCTIONS.contains(&name)
}

fn key_of<T>(node: &T) -> usize {
    node as *const T as usize
}

impl Walker<'_> {
    /// The shape of one argument just walked (its lineage `sources`).
    pub(super) fn json_argument(&mut self, arg: &FunctionArg, sources: &Sources) -> JsonShape {
        let made = self.made_shape.take();
        match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => {
                self.json_part(e, sources, made.as_ref(), true)
            }
            FunctionArg::Unnamed(FunctionArgExpr::QualifiedWildcard(name)) => {
                match self.find_item(&object_name_parts(name)) {
                    Some(item) => row_shape(&item),
                    None => JsonShape::Value(sources.clone()),
                }
            }
            _ => JsonShape::Value(sources.clone()),
        }
    }

    /// The shape of a select-list expression just walked, when it builds
    /// a JSON value (a constructor call, a scalar subquery or a column
    /// holding one, or a cast of those to json, jsonb or text).
    pub(super) fn output_shape(
        &mut self,
        expr: &Expr,
        sources: &Sources,
    ) -> Option<Arc<JsonShape>> {
        let made = self.made_shape.take();
        match self.json_part(expr, sources, made.as_ref(), false) {
            JsonShape::Value(_) => None,
            shape => Some(Arc::new(shape)),
        }
    }

    /// Records the shape a scalar subquery's single column has.
    pub(super) fn made_by_subquery(&mut self, query: &ast::Query, shape: Option<&Arc<JsonShape>>) {
        if let Some(shape) = shape {
            self.made_shape = Some((key_of(query), Arc::clone(shape)));
        }
    }

    /// The shape of `e`, walked with lineage `sources`; `made` is what the
    /// walk of `e` built. Inside a JSON constructor (`in_json`) a bare FROM
    /// item name is the row as an object; elsewhere it is a record.
    fn json_part(
        &self,
        e: &Expr,
        sources: &Sources,
        made: Option<&(usize, Arc<JsonShape>)>,
        in_json: bool,
    ) -> JsonShape {
        let value = || JsonShape::Value(sources.clone());
        let built = |key: usize| match made {
            Some((k, shape)) if *k == key => shape.as_ref().clone(),
            _ => value(),
        };
        match e {
            Expr::Nested(inner) => self.json_part(inner, sources, made, in_json),
            Expr::Cast {
                kind: ast::CastKind::Cast | ast::CastKind::DoubleColon,
                expr,
                data_type,
                format: None,
            } if keeps_json_text(data_type) && self.is_builtin_type(data_type) => {
                match self.json_part(expr, sources, made, in_json) {
                    JsonShape::Value(_) => value(),
                    shape => shape,
                }
            }
            Expr::Function(function) => built(key_of(function)),
            Expr::Subquery(query) => built(key_of(query.as_ref())),
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
                let parts: Vec<String> = match e {
                    Expr::Identifier(ident) => vec![ident_name(ident)],
                    Expr::CompoundIdentifier(idents) => idents.iter().map(ident_name).collect(),
                    _ => Vec::new(),
                };
                if self.resolve_column(&parts).is_some() {
                    // A column: its own shape, when it holds a built value.
                    return self
                        .column_reference(e)
                        .and_then(|(frame, item, name)| {
                            self.frames[frame].items[item]
                                .columns
                                .iter()
                                .find(|c| c.name == name)
                                .and_then(|c| c.shape.clone())
                        })
                        .map_or_else(value, |shape| shape.as_ref().clone());
                }
                match self.find_item(&parts) {
                    Some(item) if in_json => row_shape(&item),
                    _ => value(),
                }
            }
            _ => value(),
        }
    }

    /// The shape a call of a built-in JSON constructor builds from its
    /// arguments' shapes; None for anything else.
    pub(super) fn json_call_shape(
        &self,
        function: &ast::Function,
        parts: &[String],
        shapes: Vec<JsonShape>,
    ) -> Option<JsonShape> {
        let name = parts.last()?.as_str();
        let builtin = match parts {
            [_] if name == "coalesce" => true,
            [_] | [_, _] if name != "coalesce" => {
                let schema = parts
                    .first()
                    .filter(|_| parts.len() == 2)
                    .map(String::as_str);
                schema.is_none_or(|s| s == "pg_catalog")
                    && self
                        .catalog
                        .resolve_function(self.search_path, schema, name)
                        .is_some_and(|f| f.is_builtin() && f.schema == "pg_catalog")
                    && user_candidates(self.catalog, self.search_path, schema, name).is_empty()
            }
            _ => false,
        };
        if !builtin || !matches!(function.parameters, FunctionArguments::None) {
            return None;
        }
        let FunctionArguments::List(list) = &function.args else {
            return None;
        };
        let plain = list
            .clauses
            .iter()
            .all(|c| matches!(c, ast::FunctionArgumentClause::OrderBy(_)));
        if !plain || !function.within_group.is_empty() || shapes.len() != list.args.len() {
            return None;
        }
        let arg_expr = |i: usize| match list.args.get(i) {
            Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) => Some(e),
            _ => None,
        };
        let mut shapes = shapes.into_iter();
        match name {
            "json_build_object" | "jsonb_build_object" => {
                if list.args.len() % 2 != 0 {
                    return None;
                }
                let mut members: Vec<(String, JsonShape)> = Vec::new();
                for i in (0..list.args.len()).step_by(2) {
                    let key = constant_key(arg_expr(i)?)?;
                    if members.iter().any(|(k, _)| *k == key) {
                        return None;
                    }
                    shapes.next();
                    members.push((key, shapes.next()?));
                }
                Some(JsonShape::Object(members))
            }
            "json_build_array" | "jsonb_build_array" => Some(JsonShape::Array(shapes.collect())),
            "json_agg" | "jsonb_agg" if list.args.len() == 1 => {
                Some(JsonShape::Elements(Box::new(shapes.next()?)))
            }
            "to_json" | "to_jsonb" | "json_strip_nulls" | "jsonb_strip_nulls"
                if list.args.len() == 1 =>
            {
                shapes.next()
            }
            "row_to_json" if list.args.len() == 1 => shapes.next(),
            "row_to_json" if list.args.len() == 2 => {
                let pretty = arg_expr(1)?;
                matches!(pretty, Expr::Value(v) if matches!(v.value, ast::Value::Boolean(_)))
                    .then(|| shapes.next())?
            }
            // COALESCE(json_agg(…), '[]'): the built value, or a constant.
            "coalesce" if list.args.len() >= 2 => {
                let first = shapes.next()?;
                let constants = (1..list.args.len()).all(|i| arg_expr(i).is_some_and(is_constant));
                (!matches!(first, JsonShape::Value(_)) && constants).then_some(first)
            }
            _ => None,
        }
    }

    /// Marks `function` as having built `shape`.
    pub(super) fn made_by_call(&mut self, function: &ast::Function, shape: JsonShape) {
        self.made_shape = Some((key_of(function), Arc::new(shape)));
    }
}

/// A row of a FROM item as a JSON object: one member per column, named as
/// the column (PostgreSQL's `row_to_json`). Columns not known, or two of
/// one name, leave it a plain value.
fn row_shape(item: &ScopeItem) -> JsonShape {
    let whole = || JsonShape::Value(item.whole_row());
    if item.opaque {
        return whole();
    }
    let mut members: Vec<(String, JsonShape)> = Vec::new();
    for column in &item.columns {
        // A member pgveil might name otherwise than PostgreSQL could take
        // another member's mask (`SELECT 'x' AS m, m COLLATE "C"`).
        if !column.name_known || members.iter().any(|(k, _)| *k == column.name) {
            return whole();
        }
        let shape = column.shape.as_ref().map_or_else(
            || JsonShape::Value(column.sources.clone()),
            |s| s.as_ref().clone(),
        );
        members.push((column.name.clone(), shape));
    }
    JsonShape::Object(members)
}

/// Types whose text is a JSON value's text unchanged: json, jsonb, text
/// and varchar without a length.
fn keeps_json_text(data_type: &ast::DataType) -> bool {
    use ast::DataType as T;
    matches!(
        data_type,
        T::JSON | T::JSONB | T::Text | T::Varchar(None) | T::CharacterVarying(None)
    )
}

/// A key written as a plain string constant. Backslashes are refused: how
/// they read depends on standard_conforming_strings.
fn constant_key(e: &Expr) -> Option<String> {
    match e {
        Expr::Nested(inner) => constant_key(inner),
        Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) if !s.contains('\\') => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// An empty constant COALESCE falls back to (`'[]'`, `'{}'::json`, NULL):
/// it holds no value to mask. A constant with values would be masked as
/// the shape says, and under a keyed mask that shows the tokens of values
/// the statement chose.
fn is_constant(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) => is_constant(inner),
        Expr::Cast {
            expr,
            data_type,
            format: None,
            ..
        } => keeps_json_text(data_type) && is_constant(expr),
        Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) => {
                matches!(
                    s.split_whitespace().collect::<String>().as_str(),
                    "[]" | "{}" | "null"
                )
            }
            ast::Value::Null => true,
            _ => false,
        },
        _ => false,
    }
}
