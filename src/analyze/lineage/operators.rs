//! Operators: which function an operator expression runs. PostgreSQL picks
//! among every operator of that name on the search_path by operand types,
//! so a user-defined operator (`CREATE OPERATOR public.= (LEFTARG = varchar,
//! RIGHTARG = varchar, FUNCTION = f)`) can take over `id_number = '…'` and
//! run user code on the protected value. pgveil types operands only where
//! it is certain (table columns, literals, casts to pg_catalog types): an
//! exact match among pg_catalog's operators is PostgreSQL's own (always
//! pure in 15); anything else may be any user operator of that name on the
//! path, whose function is then judged like a call of it.

use sqlparser::ast::{self, BinaryOperator as B, Expr, UnaryOperator as U};

use super::{ident_name, object_name_parts, HazardRule, Walker};
use crate::analyze::builtins::{self, BuiltinCategory};
use crate::analyze::catalog::RelationKind;

/// What pgveil knows of an operand's type.
#[derive(Debug, Clone, PartialEq)]
enum OperandType {
    /// A string literal or bind parameter: PostgreSQL takes the other
    /// operand's type.
    Unknown,
    /// A pg_catalog type, by `typname`.
    Known(String),
    /// Not known (an expression, a view or CTE column, a user type).
    Opaque,
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
                    // The right side is an array: its element type is not
                    // known from the syntax unless it is a parameter.
                    let element = match right.as_ref() {
                        Expr::Value(_) => OperandType::Unknown,
                        _ => OperandType::Opaque,
                    };
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
            _ => {}
        }
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
        let signature = match (left_type, right_type) {
            (None, OperandType::Known(r)) => Some((String::new(), r)),
            (Some(OperandType::Known(l)), OperandType::Known(r)) => Some((l, r)),
            (Some(OperandType::Unknown), OperandType::Known(r)) => Some((r.clone(), r)),
            (Some(OperandType::Known(l)), OperandType::Unknown) => Some((l.clone(), l)),
            _ => None,
        };
        if let Some((l, r)) = &signature {
            // An exact match in pg_catalog, which is searched first.
            if self.pg_catalog_first() {
                if let Some(category) = builtins::operator_exact(name, l, r) {
                    self.builtin_operator_category(&shown, category);
                    return;
                }
            }
        }
        let path = self.operator_path();
        let catalog_position = path.iter().position(|s| s == "pg_catalog");
        let functions: Vec<(String, String)> = self
            .catalog
            .operators_named(name)
            .filter(|o| o.left.is_empty() == prefix)
            .filter(|o| schema.is_none() || o.schema == "pg_catalog")
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
            .collect();
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

    fn pg_catalog_first(&self) -> bool {
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
        match expr {
            Expr::Nested(inner) => self.operand_type(inner),
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
            Expr::Cast { data_type, .. } => cast_type(data_type),
            Expr::Identifier(ident) => self.column_type(&[ident_name(ident)]),
            Expr::CompoundIdentifier(idents) => {
                let parts: Vec<String> = idents.iter().map(ident_name).collect();
                self.column_type(&parts)
            }
            _ => OperandType::Opaque,
        }
    }

    /// The type of a column reference, when it is a column of a table (not
    /// a view, CTE or subquery, whose columns may have been cast).
    fn column_type(&self, parts: &[String]) -> OperandType {
        let Some(sources) = self.resolve_column(parts) else {
            return OperandType::Opaque;
        };
        let mut sources = sources.iter();
        let (Some((column, super::Flow::Copy)), None) = (sources.next(), sources.next()) else {
            return OperandType::Opaque;
        };
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
            Some(c) if builtins::is_builtin_type(&c.type_name) && c.type_name != "unknown" => {
                OperandType::Known(c.type_name.clone())
            }
            _ => OperandType::Opaque,
        }
    }
}

/// The `typname` a cast produces, for pg_catalog types named without a
/// schema other than pg_catalog.
fn cast_type(data_type: &ast::DataType) -> OperandType {
    use ast::DataType as T;
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
        _ => return OperandType::Opaque,
    };
    if builtins::is_builtin_type(&name) {
        OperandType::Known(name)
    } else {
        OperandType::Opaque
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
