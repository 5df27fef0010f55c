//! The per-row hot path of a masked result: a DataRow rewritten in one pass
//! into the buffer going to the client. Pure; the session decides which
//! columns to mask and what to do when this fails.

use bytes::{BufMut, BytesMut};

use crate::mask::{Mask, MaskApplyError, WireFormat};

/// One masked column of a result: its index, mask, type and wire format.
pub type ColumnMask = (usize, Mask, u32, WireFormat);

/// Why a DataRow could not be rewritten; the session withholds the result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RowError {
    #[error("malformed DataRow from the server")]
    Malformed,
    #[error(transparent)]
    Mask(#[from] MaskApplyError),
}

/// Appends DataRow `msg` to `out` with `columns` masked. Runs of unmasked
/// fields are copied as they arrived; each masked value is written by its
/// mask straight into `out`. `columns` must be sorted by index; indexes past
/// the row's end are ignored. On error nothing is appended.
pub fn mask_data_row(
    msg: &[u8],
    columns: &[ColumnMask],
    out: &mut BytesMut,
) -> Result<(), RowError> {
    debug_assert!(columns.windows(2).all(|w| w[0].0 < w[1].0));
    let start = out.len();
    let written = write_row(msg, columns, out);
    if written.is_err() {
        out.truncate(start);
    }
    written
}

fn write_row(msg: &[u8], columns: &[ColumnMask], out: &mut BytesMut) -> Result<(), RowError> {
    let body = msg.get(5..).ok_or(RowError::Malformed)?;
    let count = body.get(..2).ok_or(RowError::Malformed)?;
    let count = i16::from_be_bytes([count[0], count[1]]);
    let count = usize::try_from(count).map_err(|_| RowError::Malformed)?;
    // Masked values are rarely longer than the originals: one reservation.
    out.reserve(msg.len() + 8 * columns.len());
    let msg_at = out.len();
    out.put_u8(b'D');
    out.put_i32(0);
    let mut pos = 0;
    let mut copied = 0;
    let mut next = columns.iter().peekable();
    for i in 0..count {
        let len = body.get(2 + pos..6 + pos).ok_or(RowError::Malformed)?;
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        let value_at = 6 + pos;
        let end = value_at + usize::try_from(len).unwrap_or(0);
        if end > body.len() {
            return Err(RowError::Malformed);
        }
        if let Some((_, mask, type_oid, format)) = next.next_if(|c| c.0 == i) {
            out.put_slice(&body[copied..2 + pos]);
            copied = end;
            if len < 0 {
                out.put_i32(-1);
            } else {
                let len_at = out.len();
                out.put_i32(0);
                if mask.apply_into(&body[value_at..end], *type_oid, *format, out)? {
                    let n = (out.len() - len_at - 4) as i32;
                    out[len_at..len_at + 4].copy_from_slice(&n.to_be_bytes());
                } else {
                    out.truncate(len_at);
                    out.put_i32(-1);
                }
            }
        }
        pos = end - 2;
    }
    if 2 + pos != body.len() {
        return Err(RowError::Malformed);
    }
    out.put_slice(&body[copied..]);
    let n = (out.len() - msg_at - 1) as i32;
    out[msg_at + 1..msg_at + 5].copy_from_slice(&n.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::{build, oid, ArgValue, KeyRing, MaskArgs};
    use crate::session::wire;
    use proptest::prelude::*;

    fn mask(name: &str, args: &[(&str, ArgValue)]) -> Mask {
        let args: MaskArgs = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        build(name, &args, &KeyRing::new()).unwrap()
    }

    fn row(values: &[Option<&[u8]>]) -> BytesMut {
        let mut m = BytesMut::new();
        wire::encode_data_row(&mut m, values.iter().copied());
        m
    }

    /// The row as the reference path builds it: every value through `apply`.
    fn reference(msg: &[u8], columns: &[ColumnMask]) -> Result<BytesMut, MaskApplyError> {
        let values = wire::data_row(msg).unwrap();
        let mut masked = Vec::new();
        for (i, v) in values.iter().enumerate() {
            masked.push(match columns.iter().find(|c| c.0 == i) {
                Some((_, m, o, f)) => m.apply(*v, *o, *f)?,
                None => v.map(<[u8]>::to_vec),
            });
        }
        let mut out = BytesMut::new();
        wire::encode_data_row(&mut out, masked.iter().map(|v| v.as_deref()));
        Ok(out)
    }

    #[test]
    fn masks_the_named_columns_and_copies_the_rest() {
        let msg = row(&[
            Some(b"1"),
            Some("王小明".as_bytes()),
            None,
            Some(b"13812345678"),
            Some(b""),
        ]);
        let cols = vec![
            (1, mask("cn_name", &[]), oid::TEXT, WireFormat::Text),
            (2, mask("cn_mobile", &[]), oid::TEXT, WireFormat::Text),
            (3, mask("cn_mobile", &[]), oid::TEXT, WireFormat::Text),
            (9, mask("redact", &[]), oid::TEXT, WireFormat::Text),
        ];
        let mut out = BytesMut::from(&b"prefix"[..]);
        mask_data_row(&msg, &cols, &mut out).unwrap();
        assert_eq!(&out[..6], b"prefix");
        let values = wire::data_row(&out[6..]).unwrap();
        assert_eq!(
            values,
            vec![
                Some(&b"1"[..]),
                Some("王**".as_bytes()),
                None,
                Some(&b"138****5678"[..]),
                Some(&b""[..]),
            ]
        );
        assert_eq!(out[6..], reference(&msg, &cols).unwrap()[..]);
    }

    #[test]
    fn a_null_mask_writes_null() {
        let msg = row(&[Some(b"secret"), Some(b"x")]);
        let cols = vec![(0, mask("null", &[]), oid::TEXT, WireFormat::Text)];
        let mut out = BytesMut::new();
        mask_data_row(&msg, &cols, &mut out).unwrap();
        assert_eq!(wire::data_row(&out).unwrap(), vec![None, Some(&b"x"[..])]);
    }

    #[test]
    fn errors_leave_the_buffer_as_it_was() {
        let cols = vec![(0, mask("date_trunc", &[]), oid::DATE, WireFormat::Binary)];
        let mut out = BytesMut::from(&b"kept"[..]);
        // A binary date of 3 bytes cannot be masked.
        let bad = row(&[Some(b"abc")]);
        assert!(matches!(
            mask_data_row(&bad, &cols, &mut out),
            Err(RowError::Mask(_))
        ));
        // Truncated and overlong rows are malformed.
        let good = row(&[Some(&[0, 0, 0, 1][..]), Some(b"tail")]);
        for cut in [good.len() - 1, 9, 6] {
            assert_eq!(
                mask_data_row(&good[..cut], &cols, &mut out),
                Err(RowError::Malformed)
            );
        }
        let mut long = good.clone();
        long.extend_from_slice(b"!");
        assert_eq!(
            mask_data_row(&long, &cols, &mut out),
            Err(RowError::Malformed)
        );
        assert_eq!(&out[..], b"kept");
    }

    fn any_value() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop_oneof![
            1 => Just(None),
            4 => "[0-9 -]{0,20}".prop_map(|s| Some(s.into_bytes())),
            4 => "\\PC{0,12}".prop_map(|s| Some(s.into_bytes())),
            2 => "[a-z.]{0,8}@[a-z.]{0,8}".prop_map(|s| Some(s.into_bytes())),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// The one-pass rewrite gives the reference path's bytes, or fails
        /// where it fails.
        #[test]
        fn one_pass_rewrite_equals_reference(
            values in proptest::collection::vec(any_value(), 0..8),
            picks in proptest::collection::vec(0usize..6, 0..8),
        ) {
            let pool = [
                mask("cn_name", &[]),
                mask("cn_id_card", &[]),
                mask("cn_mobile", &[]),
                mask("email", &[]),
                mask("keep", &[("first", ArgValue::Int(1)), ("last", ArgValue::Int(2))]),
                mask("null", &[]),
            ];
            let mut cols: Vec<ColumnMask> = picks
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 2 == 0)
                .map(|(i, p)| (i, pool[*p].clone(), oid::TEXT, WireFormat::Text))
                .collect();
            cols.dedup_by_key(|c| c.0);
            let msg = row(&values.iter().map(|v| v.as_deref()).collect::<Vec<_>>());
            let mut out = BytesMut::new();
            let fast = mask_data_row(&msg, &cols, &mut out);
            match reference(&msg, &cols) {
                Ok(expected) => {
                    prop_assert_eq!(fast, Ok(()));
                    prop_assert_eq!(&out[..], &expected[..]);
                }
                Err(e) => {
                    prop_assert_eq!(fast, Err(RowError::Mask(e)));
                    prop_assert!(out.is_empty());
                }
            }
        }
    }
}
