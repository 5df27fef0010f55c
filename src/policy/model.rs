//! The policy file format as DBAs write it. The loader deserializes these
//! types and `pgveil schema` derives the JSON Schema from them, so the two
//! cannot drift apart.

use std::collections::BTreeMap;
use std::fmt;

use schemars::gen::SchemaGenerator;
use schemars::schema::{InstanceType, Metadata, ObjectValidation, Schema, SchemaObject};
use schemars::JsonSchema;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::mask::{self, ArgValue, MaskArgs};

/// One policy file. All files of the policy directory are merged.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "pgveil policy file")]
pub struct PolicyFile {
    /// Format version; must be 1.
    pub version: u32,
    /// Names of keys that masks may use (`key: NAME`). The key bytes never
    /// live here: they come from `PGVEIL_KEY_<NAME>` or the key directory.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Protected columns, by `schema.table.column` (a view's columns too).
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnPolicy>,
    /// Whole tables or views denied to roles, by `schema.table`.
    #[serde(default)]
    pub tables: BTreeMap<String, TablePolicy>,
    /// User-defined functions that roles with masks may call.
    #[serde(default)]
    pub functions: FunctionPolicy,
}

/// What each role sees of one column.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnPolicy {
    /// Free classification label (JR/T 0171 C1/C2/C3, PCI, GDPR …), shown in
    /// metrics and audit events.
    #[serde(default)]
    pub class: Option<String>,
    /// Default mask for every role that no rule matches.
    #[serde(default)]
    pub mask: Option<MaskSpec>,
    /// `deny` makes the default "reject any statement reading the column".
    /// Use instead of `mask`. A default can never be clear text.
    #[serde(default)]
    pub action: Option<DefaultAction>,
    /// How roles without a matching rule may use the column outside the
    /// select list. Defaults to `deny`.
    #[serde(default)]
    pub filter: Option<Filter>,
    /// With `filter: equality`: how many constants one statement may compare
    /// the column with (IN lists, `= ANY(ARRAY[…])`, OR chains). Default 100.
    #[serde(default)]
    pub max_candidates: Option<usize>,
    /// Tried in order; the first rule whose roles match wins.
    #[serde(default)]
    pub rules: Vec<RulePolicy>,
}

/// One rule of a column.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RulePolicy {
    /// Roles this rule applies to: the login role or any role it is a member
    /// of, directly or through other roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// `allow` (clear text) or `deny`. Use instead of `mask`.
    #[serde(default)]
    pub action: Option<RuleAction>,
    /// The mask these roles see. Without `action` and `mask`, the column's
    /// default applies with this rule's `filter`.
    #[serde(default)]
    pub mask: Option<MaskSpec>,
    /// How these roles may use the column outside the select list.
    /// Defaults to `deny`.
    #[serde(default)]
    pub filter: Option<Filter>,
    /// With `filter: equality`: how many constants one statement may compare
    /// the column with (IN lists, `= ANY(ARRAY[…])`, OR chains). Defaults
    /// to the column's `max_candidates`, else 100.
    #[serde(default)]
    pub max_candidates: Option<usize>,
}

/// The only default action a column may have besides a mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    /// Any statement that reads the column is rejected.
    Deny,
}

/// What a rule gives its roles when it has no mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Clear text.
    Allow,
    /// Any statement that reads the column is rejected.
    Deny,
}

/// How a protected column may be used outside the select list (WHERE, JOIN
/// ON, ORDER BY, GROUP BY, windows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    /// Any such use is rejected.
    Deny,
    /// `=` and `IN` comparisons with constants the caller supplies
    /// (literals, bind parameters; at most `max_candidates` per statement)
    /// and equi-joins with a column under the same protection.
    Equality,
    /// Any use.
    Allow,
}

/// Roles denied a whole table or view.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TablePolicy {
    /// Roles that may not read the table at all.
    #[serde(default)]
    pub deny: Vec<String>,
}

/// User-defined functions roles with masks may call.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionPolicy {
    /// Functions by `schema.name`.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// A mask: a catalogue function name, or `{ fn: NAME, ...arguments }`.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskSpec {
    pub function: String,
    pub args: MaskArgs,
}

impl<'de> Deserialize<'de> for MaskSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MaskSpecVisitor)
    }
}

struct MaskSpecVisitor;

impl<'de> Visitor<'de> for MaskSpecVisitor {
    type Value = MaskSpec;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mask function name or `{ fn: NAME, ...arguments }`")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<MaskSpec, E> {
        Ok(MaskSpec {
            function: name.to_string(),
            args: MaskArgs::new(),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MaskSpec, A::Error> {
        let mut function = None;
        let mut args = MaskArgs::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "fn" {
                function = Some(map.next_value::<String>()?);
            } else {
                let value = map.next_value::<ScalarArg>()?;
                args.insert(key, value.0);
            }
        }
        let function = function.ok_or_else(|| {
            de::Error::custom("mask needs `fn:` naming a function of the masking catalogue")
        })?;
        Ok(MaskSpec { function, args })
    }
}

/// A mask argument: only scalars are meaningful.
struct ScalarArg(ArgValue);

impl<'de> Deserialize<'de> for ScalarArg {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarArgVisitor)
    }
}

struct ScalarArgVisitor;

impl Visitor<'_> for ScalarArgVisitor {
    type Value = ScalarArg;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, string or boolean mask argument")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarArg, E> {
        Ok(ScalarArg(ArgValue::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarArg, E> {
        Ok(ScalarArg(ArgValue::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarArg, E> {
        i64::try_from(v)
            .map(|v| ScalarArg(ArgValue::Int(v)))
            .map_err(|_| E::custom(format!("mask argument {v} is too large")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<ScalarArg, E> {
        Ok(ScalarArg(ArgValue::Float(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarArg, E> {
        Ok(ScalarArg(ArgValue::Str(v.to_string())))
    }
}

impl JsonSchema for MaskSpec {
    fn schema_name() -> String {
        "MaskSpec".to_string()
    }

    fn json_schema(_gen: &mut SchemaGenerator) -> Schema {
        let names: Vec<serde_json::Value> = mask::function_names()
            .into_iter()
            .map(serde_json::Value::from)
            .collect();
        let function_name = SchemaObject {
            instance_type: Some(InstanceType::String.into()),
            enum_values: Some(names),
            ..Default::default()
        };
        let scalar = SchemaObject {
            instance_type: Some(
                vec![
                    InstanceType::String,
                    InstanceType::Number,
                    InstanceType::Integer,
                    InstanceType::Boolean,
                ]
                .into(),
            ),
            ..Default::default()
        };
        let mut call = SchemaObject {
            instance_type: Some(InstanceType::Object.into()),
            ..Default::default()
        };
        call.object = Some(Box::new(ObjectValidation {
            required: ["fn".to_string()].into_iter().collect(),
            properties: [("fn".to_string(), Schema::Object(function_name.clone()))]
                .into_iter()
                .collect(),
            additional_properties: Some(Box::new(Schema::Object(scalar))),
            ..Default::default()
        }));
        let mut spec = SchemaObject {
            metadata: Some(Box::new(Metadata {
                description: Some(
                    "A mask function name, or `{ fn: NAME, ...arguments }`.".to_string(),
                ),
                ..Default::default()
            })),
            ..Default::default()
        };
        spec.subschemas().one_of = Some(vec![Schema::Object(function_name), Schema::Object(call)]);
        Schema::Object(spec)
    }
}
