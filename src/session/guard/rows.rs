//! Masking of result data: RowDescription, DataRow and `COPY … TO STDOUT`
//! rows, with the plan the pairing in `mod.rs` found for them, plus the
//! defence-in-depth check of RowDescription fields; withholds a result that
//! cannot be masked safely. Must not pair messages or plan statements.

use std::sync::Arc;

use bytes::BytesMut;

use super::super::copy_text::{self, CopyText};
use super::super::datarow;
use super::super::wire::{self, Field};
use super::{Binding, Expect, Guard};
use crate::analyze::plan::{JsonPlan, MaskedColumn, StatementPlan};
use crate::analyze::policy_view::{ColumnAction, QualifiedColumn};
use crate::mask::{oid as mask_oid, JsonMask, Mask, WireFormat};

/// Result shapes remembered per session (see `Guard::shapes`).
const MAX_SHAPES: usize = 256;

/// Masks applied to the columns of one result shape.
#[derive(Clone, Default)]
pub(super) struct RowMasker {
    /// Sorted by column index.
    pub(super) columns: Vec<datarow::ColumnMask>,
    /// A denied column the analyzer missed: the result is withheld.
    pub(super) withheld: Option<String>,
}

/// Masks applied to the rows of a running `COPY … TO STDOUT`.
pub(super) struct CopyMasker {
    pub(super) fmt: CopyText,
    pub(super) columns: Vec<(usize, Mask, u32)>,
    pub(super) header_pending: bool,
}

fn format_of(formats: &[i16], i: usize) -> WireFormat {
    let code = match formats.len() {
        0 => 0,
        1 => formats[0],
        _ => formats.get(i).copied().unwrap_or(0),
    };
    if code == 1 {
        WireFormat::Binary
    } else {
        WireFormat::Text
    }
}

impl Guard {
    /// One row of a running `COPY … TO STDOUT`, masked when its statement
    /// was planned with masks.
    pub(super) fn copy_data(&mut self, msg: &[u8], out: &mut BytesMut) {
        match &mut self.copy {
            Some(copy) => {
                let row = msg.get(5..).unwrap_or_default();
                if copy.header_pending {
                    copy.header_pending = false;
                    return out.extend_from_slice(msg);
                }
                match copy_text::mask_row_into(row, &copy.fmt, &copy.columns, out) {
                    Ok(()) => self.result.row(true),
                    Err(e) => self.withhold(&e.to_string(), out),
                }
            }
            None => {
                self.result.row(false);
                out.extend_from_slice(msg)
            }
        }
    }

    /// The protected column behind a RowDescription field, if any.
    pub(super) fn field_source(&mut self, field: &Field) -> Option<QualifiedColumn> {
        if field.table_oid == 0 || field.attnum <= 0 {
            return None;
        }
        let rel = self.inputs.catalog.relation_by_oid(field.table_oid)?;
        let col = rel.columns.iter().find(|c| c.attnum == field.attnum)?;
        Some(QualifiedColumn {
            schema: rel.schema.clone(),
            table: rel.name.clone(),
            column: col.name.clone(),
        })
    }

    /// The type of a catalog column.
    fn column_type(&self, column: &QualifiedColumn) -> Option<u32> {
        self.inputs
            .catalog
            .relation(&column.schema, &column.table)?
            .columns
            .iter()
            .find(|c| c.name == column.column)
            .map(|c| c.type_oid)
    }

    /// The masks of a JSON value's parts, each part's value read as its
    /// column's type; None when a column is not in the catalog.
    fn json_mask(&self, plan: &JsonPlan) -> Option<JsonMask> {
        Some(match plan {
            JsonPlan::Clear(_) => JsonMask::Clear,
            JsonPlan::Masked { decision, source } => {
                let ColumnAction::Mask { mask_id, .. } = &decision.action else {
                    return None;
                };
                // Types whose value PostgreSQL writes into JSON as its text
                // form (a string or a number); not timestamps, which JSON
                // spells with a `T`, nor arrays and records.
                let type_oid = self.column_type(source)?;
                let scalar = crate::mask::TEXT_TYPES.contains(&type_oid)
                    || crate::mask::NUMBER_TYPES.contains(&type_oid)
                    || matches!(type_oid, mask_oid::DATE | mask_oid::UUID);
                if !scalar {
                    return None;
                }
                JsonMask::Value {
                    mask: self.inputs.policy.mask(*mask_id).clone(),
                    type_oid,
                }
            }
            JsonPlan::Array(items) => JsonMask::Array(
                items
                    .iter()
                    .map(|i| self.json_mask(i))
                    .collect::<Option<_>>()?,
            ),
            JsonPlan::Object(members) => JsonMask::Object(
                members
                    .iter()
                    .map(|(k, m)| Some((k.clone(), self.json_mask(m)?)))
                    .collect::<Option<_>>()?,
            ),
            JsonPlan::Elements(inner) => JsonMask::Elements(Box::new(self.json_mask(inner)?)),
        })
    }

    /// `birth::text` of a date column under a date mask: the text a cast
    /// to text yields is the column type's output form, in either wire
    /// format, so the mask reads it as that type's text format and its
    /// output is again that form (as PostgreSQL would print the masked
    /// value cast to text). `None` when the field needs no such reading.
    fn text_form_of(&self, mask: &Mask, c: &MaskedColumn, field: &Field) -> Option<u32> {
        if !matches!(field.type_oid, mask_oid::TEXT | mask_oid::VARCHAR)
            || mask.accepts_oid(field.type_oid)
        {
            return None;
        }
        let source_type = self
            .inputs
            .catalog
            .relation(&c.source.schema, &c.source.table)?
            .columns
            .iter()
            .find(|col| col.name == c.source.column)?
            .type_oid;
        mask.accepts_oid(source_type).then_some(source_type)
    }

    /// Builds the masker of one result: the plan's masks, plus any protected
    /// column the RowDescription names that the plan left unmasked.
    pub(super) fn masker_for(
        &mut self,
        plan: &StatementPlan,
        fields: &[Field],
        formats: Option<&[i16]>,
    ) -> RowMasker {
        let mut m = RowMasker::default();
        let format = |i: usize, f: &Field| match formats {
            Some(codes) => format_of(codes, i),
            None if f.format == 1 => WireFormat::Binary,
            None => WireFormat::Text,
        };
        if let StatementPlan::Mask { columns } = plan {
            for c in columns {
                let Some(field) = fields.get(c.index) else {
                    m.withheld = Some(format!(
                        "result has no column {} for {}.{}.{}",
                        c.index, c.source.schema, c.source.table, c.source.column
                    ));
                    continue;
                };
                if let Some(json) = &c.json {
                    match self.json_mask(json) {
                        Some(shape) => m.columns.push((
                            c.index,
                            Mask::json(shape),
                            field.type_oid,
                            format(c.index, field),
                        )),
                        None => m.withheld = Some("a masked part of a JSON value".into()),
                    }
                    continue;
                }
                if let ColumnAction::Mask { mask_id, .. } = &c.decision.action {
                    let mask = self.inputs.policy.mask(*mask_id).clone();
                    let (type_oid, format) = match self.text_form_of(&mask, c, field) {
                        Some(source_type) => (source_type, WireFormat::Text),
                        None => (field.type_oid, format(c.index, field)),
                    };
                    m.columns.push((c.index, mask, type_oid, format));
                }
            }
        }
        // Defence in depth: a field that names a protected column.
        for (i, field) in fields.iter().enumerate() {
            if m.columns.iter().any(|(idx, ..)| *idx == i) {
                continue;
            }
            let Some(source) = self.field_source(field) else {
                continue;
            };
            let Some(decision) = self.inputs.view.column(&source) else {
                continue;
            };
            match decision.action {
                ColumnAction::Allow => {}
                ColumnAction::Mask { mask_id, .. } => {
                    tracing::warn!(
                        column = %format!("{}.{}.{}", source.schema, source.table, source.column),
                        "protected column reached a result unplanned; masking it"
                    );
                    self.observed.rowdescription_overrides += 1;
                    let mask = self.inputs.policy.mask(mask_id).clone();
                    m.columns.push((i, mask, field.type_oid, format(i, field)));
                }
                ColumnAction::Deny => {
                    m.withheld = Some(format!(
                        "column {}.{}.{} is denied by {}",
                        source.schema, source.table, source.column, decision.rule
                    ));
                }
            }
        }
        // The one-pass rewrite walks the row and the columns together.
        m.columns.sort_by_key(|c| c.0);
        m.columns.dedup_by_key(|c| c.0);
        m
    }

    /// The masker of a query result (no Bind formats: the RowDescription
    /// carries them), from the shape cache when its plan is Allow.
    fn result_masker(
        &mut self,
        plan: &StatementPlan,
        msg: &[u8],
        fields: &[Field],
    ) -> Arc<RowMasker> {
        if !matches!(plan, StatementPlan::Allow) {
            return Arc::new(self.masker_for(plan, fields, None));
        }
        let version = self.inputs.version();
        if self.shapes_version != version {
            self.shapes.clear();
            self.shapes_version = version;
        }
        if let Some(m) = self.shapes.get(msg) {
            return Arc::clone(m);
        }
        let m = Arc::new(self.masker_for(plan, fields, None));
        // Bounded: an application's result shapes are few, ad-hoc ones many.
        if self.shapes.len() >= MAX_SHAPES {
            self.shapes.clear();
        }
        self.shapes.insert(msg.to_vec(), Arc::clone(&m));
        m
    }

    /// Starts masking the rows of a COPY whose statement was planned with
    /// masks; any other COPY out of a masked statement is withheld.
    pub(super) fn copy_out_response(&mut self, msg: &[u8], out: &mut BytesMut) {
        let (plan, fmt) = match self.expect.front() {
            Some(Expect::Query {
                plans, at, copy, ..
            }) => (plans.get(*at).cloned(), copy.clone()),
            Some(Expect::Execute {
                binding: Some(b), ..
            }) => (Some(b.plan.clone()), b.copy.clone()),
            _ => (None, None),
        };
        let restricted = self.inputs.view.is_restricted();
        // The server's column count must be the one the plan was made for
        // (a generated column left out of COPY would shift every mask).
        let server_columns = msg
            .get(6..8)
            .map(|b| i16::from_be_bytes([b[0], b[1]]) as usize);
        if let Some(f) = &fmt {
            if server_columns != Some(f.columns) {
                return self.withhold("COPY columns differ from the analysed statement", out);
            }
        }
        match (plan, fmt) {
            (Some(StatementPlan::Allow), _) => {
                self.result.open(false);
                return out.extend_from_slice(msg);
            }
            (None, _) if !restricted => {
                self.result.open(false);
                return out.extend_from_slice(msg);
            }
            (Some(StatementPlan::Mask { columns }), Some(fmt)) => {
                let mut masks = Vec::with_capacity(columns.len());
                for c in &columns {
                    if let Some(json) = &c.json {
                        let Some(shape) = self.json_mask(json) else {
                            return self.withhold("COPY of a JSON value pgveil cannot mask", out);
                        };
                        masks.push((c.index, Mask::json(shape), mask_oid::JSON));
                        continue;
                    }
                    let ColumnAction::Mask { mask_id, .. } = &c.decision.action else {
                        return self.withhold("COPY column without a mask", out);
                    };
                    let Some(type_oid) = self.column_type(&c.source) else {
                        return self.withhold("COPY column of unknown type", out);
                    };
                    masks.push((c.index, self.inputs.policy.mask(*mask_id).clone(), type_oid));
                }
                self.copy = Some(CopyMasker {
                    header_pending: fmt.header,
                    fmt,
                    columns: masks,
                });
                self.result.open(true);
                return out.extend_from_slice(msg);
            }
            _ => {}
        }
        self.withhold("COPY of a result pgveil cannot mask", out)
    }

    pub(super) fn row_description(&mut self, msg: &[u8], out: &mut BytesMut) {
        let Some(fields) = wire::row_description(msg) else {
            return self.withhold("malformed RowDescription from the server", out);
        };
        match self.expect.front() {
            Some(Expect::DescribeStatement { name }) => {
                let name = name.clone();
                self.expect.pop_front();
                if let Some(s) = self.statement_mut(&name) {
                    s.fields = Some(fields);
                    s.bound = None;
                }
                out.extend_from_slice(msg);
            }
            Some(Expect::DescribePortal {
                portal,
                binding,
                swallow,
            }) => {
                let (portal, binding, swallow) = (portal.clone(), binding.clone(), *swallow);
                self.expect.pop_front();
                // A portal's RowDescription carries its real formats.
                let masker = match &binding {
                    Some(b) => self.result_masker(&b.plan, msg, &fields),
                    None => self.result_masker(&StatementPlan::Allow, msg, &fields),
                };
                self.install_masker(&portal, binding.as_ref(), masker);
                if !swallow {
                    out.extend_from_slice(msg);
                }
            }
            Some(Expect::Query { plans, at, .. }) => {
                let plan = plans.get(*at).cloned();
                let plan = match plan {
                    Some(p) => p,
                    None => {
                        return self.withhold("more results than statements pgveil analysed", out)
                    }
                };
                let masker = self.result_masker(&plan, msg, &fields);
                self.result.open(!masker.columns.is_empty());
                self.rows = Some(masker);
                out.extend_from_slice(msg);
            }
            _ => out.extend_from_slice(msg),
        }
    }

    /// The masker a described Bind's rows get: on its portal while the name
    /// still stands for that Bind, and on every Execute of it queued.
    pub(super) fn install_masker(
        &mut self,
        portal: &[u8],
        binding: Option<&Arc<Binding>>,
        masker: Arc<RowMasker>,
    ) {
        let Some(binding) = binding else {
            return;
        };
        if let Some(p) = self.portal_mut(portal) {
            if Arc::ptr_eq(&p.binding, binding) {
                p.masker = Some(Arc::clone(&masker));
            }
        }
        for e in self.expect.iter_mut() {
            if let Expect::Execute {
                binding: Some(b),
                masker: m,
            } = e
            {
                if Arc::ptr_eq(b, binding) {
                    *m = Some(Arc::clone(&masker));
                }
            }
        }
    }

    pub(super) fn data_row(&mut self, msg: &[u8], out: &mut BytesMut) {
        // The masker of the response's own statement or Bind, never looked
        // up by portal name (the name may be bound again by now).
        let masker = match self.expect.front() {
            Some(Expect::Query { .. }) => self.rows.as_deref(),
            Some(Expect::Execute { masker, .. }) => masker.as_deref(),
            _ => None,
        };
        let restricted = self.inputs.view.is_restricted();
        let Some(masker) = masker else {
            if restricted {
                return self.withhold("rows arrived for a result pgveil has no plan for", out);
            }
            self.result.row(false);
            return out.extend_from_slice(msg);
        };
        if let Some(why) = masker.withheld.clone() {
            return self.withhold(&why, out);
        }
        if masker.columns.is_empty() {
            self.result.row(false);
            return out.extend_from_slice(msg);
        }
        match datarow::mask_data_row(msg, &masker.columns, out) {
            Ok(()) => self.result.row(true),
            Err(e) => self.withhold(&e.to_string(), out),
        }
    }

    /// Replaces the rest of the current response with an error: used when a
    /// value cannot be masked safely. Nothing more is forwarded until
    /// ReadyForQuery.
    pub(super) fn withhold(&mut self, why: &str, out: &mut BytesMut) {
        tracing::error!(reason = why, "withholding a result to protect a column");
        self.result_withheld();
        crate::net::codec::ProxyError::error("42501", format!("pgveil: result withheld: {why}"))
            .with_hint("pgveil could not mask this result safely; ask the DBA to check the policy.")
            .encode(out);
        self.withholding = true;
        self.rows = None;
    }
}
