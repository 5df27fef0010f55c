//! Masking rows of `COPY … TO STDOUT` in PostgreSQL's text format. Pure.
//!
//! The server sends one row per CopyData message: fields separated by a
//! one-byte delimiter, `\N` (or the NULL string) for NULL, backslash escapes
//! for the delimiter, newlines and control characters.

use bytes::{BufMut, BytesMut};
use sqlparser::ast::{CopyLegacyOption, CopyOption, Statement};

use crate::mask::{Mask, MaskApplyError, WireFormat};

/// The text-format options of one COPY statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyText {
    pub delimiter: u8,
    pub null: Vec<u8>,
    pub header: bool,
    /// Columns the analysed statement produces (0 until planned).
    pub columns: usize,
}

/// Reads the options of a `COPY … TO STDOUT` statement. `Ok(None)` when its
/// format is not text (csv, binary) or it re-encodes the output: those rows
/// pgveil does not mask.
pub fn text_options(sql: &str) -> Result<Option<CopyText>, String> {
    // Parsed where a deep statement cannot overflow the stack.
    crate::analyze::with_parsed(sql, |parsed| match parsed {
        Ok(statements) => copy_options(statements),
        Err(e) => Err(format!("{e:?}")),
    })
}

fn copy_options(statements: &[Statement]) -> Result<Option<CopyText>, String> {
    let [Statement::Copy {
        options,
        legacy_options,
        ..
    }] = statements
    else {
        return Err("not a single COPY statement".into());
    };
    let mut fmt = CopyText {
        delimiter: b'\t',
        null: b"\\N".to_vec(),
        header: false,
        columns: 0,
    };
    for o in options {
        match o {
            CopyOption::Format(name) if name.value.eq_ignore_ascii_case("text") => {}
            CopyOption::Encoding(e)
                if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
            CopyOption::Format(_) | CopyOption::Encoding(_) => return Ok(None),
            CopyOption::Delimiter(c) if c.is_ascii() => fmt.delimiter = *c as u8,
            CopyOption::Delimiter(_) => return Ok(None),
            CopyOption::Null(s) => fmt.null = s.as_bytes().to_vec(),
            CopyOption::Header(h) => fmt.header = *h,
            _ => {}
        }
    }
    for o in legacy_options {
        match o {
            CopyLegacyOption::Delimiter(c) if c.is_ascii() => fmt.delimiter = *c as u8,
            CopyLegacyOption::Null(s) => fmt.null = s.as_bytes().to_vec(),
            _ => return Ok(None),
        }
    }
    // The server writes the NULL string as it is while it escapes data: a
    // NULL string with a backslash, the delimiter or a line break would make
    // rows ambiguous, and any other custom one would let a value equal to
    // it pass unmasked. Only `\N` and the empty string are unambiguous.
    if !(fmt.null == b"\\N" || fmt.null.is_empty()) {
        return Ok(None);
    }
    if matches!(fmt.delimiter, b'\\' | b'\n' | b'\r' | b'.' | b'a'..=b'f' | b'A'..=b'F' | b'0'..=b'9')
    {
        return Ok(None);
    }
    Ok(Some(fmt))
}

fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        if b != b'\\' || i + 1 == field.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let c = field[i + 1];
        i += 2;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match field.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            b'x' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 {
                    match field.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                            n += 1;
                        }
                        None => break,
                    }
                }
                if n == 0 {
                    out.push(b'x');
                } else {
                    out.push(v as u8);
                }
            }
            other => out.push(other),
        }
    }
    out
}

fn escape(value: &[u8], delimiter: u8, out: &mut Vec<u8>) {
    for &b in value {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            8 => out.extend_from_slice(b"\\b"),
            12 => out.extend_from_slice(b"\\f"),
            11 => out.extend_from_slice(b"\\v"),
            d if d == delimiter => {
                out.push(b'\\');
                out.push(d);
            }
            other => out.push(other),
        }
    }
}

/// Splits a row on unescaped delimiters.
fn split_fields(row: &[u8], delimiter: u8) -> Vec<&[u8]> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < row.len() {
        if row[i] == b'\\' {
            i += 2;
            continue;
        }
        if row[i] == delimiter {
            fields.push(&row[start..i]);
            start = i + 1;
        }
        i += 1;
    }
    fields.push(&row[start..row.len().min(row.len())]);
    fields
}

/// Masks the given columns of one text-format row (its trailing newline
/// included). Errors when a value cannot be masked; the caller withholds.
pub fn mask_row(
    row: &[u8],
    fmt: &CopyText,
    columns: &[(usize, Mask, u32)],
) -> Result<Vec<u8>, MaskApplyError> {
    let body = row.strip_suffix(b"\n").unwrap_or(row);
    let fields = split_fields(body, fmt.delimiter);
    let mut out = Vec::with_capacity(row.len() + 16);
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(fmt.delimiter);
        }
        let Some((_, mask, type_oid)) = columns.iter().find(|(idx, ..)| *idx == i) else {
            out.extend_from_slice(field);
            continue;
        };
        if *field == fmt.null.as_slice() {
            out.extend_from_slice(field);
            continue;
        }
        let value = unescape(field);
        match mask.apply(Some(&value), *type_oid, WireFormat::Text)? {
            Some(masked) => escape(&masked, fmt.delimiter, &mut out),
            None => out.extend_from_slice(&fmt.null),
        }
    }
    if body.len() != row.len() {
        out.push(b'\n');
    }
    Ok(out)
}

/// Bytes of a masked value that `escape` would rewrite: backslash, the
/// delimiter, and \b \t \n \v \f \r (8 to 13). Without branches per byte,
/// so that it compiles to vector compares.
fn needs_escape(value: &[u8], delimiter: u8) -> bool {
    value.iter().fold(false, |found, &b| {
        found | (b.wrapping_sub(8) < 6) | (b == b'\\') | (b == delimiter)
    })
}

/// The field boundaries of one row: unescaped delimiters, found with one
/// vector scan of the row for delimiters and backslashes.
struct FieldEnds<'a> {
    hits: memchr::Memchr2<'a>,
    len: usize,
    /// Hits before this offset are escaped bytes.
    skip_to: usize,
}

impl<'a> FieldEnds<'a> {
    fn new(body: &'a [u8], delimiter: u8) -> Self {
        FieldEnds {
            hits: memchr::memchr2_iter(delimiter, b'\\', body),
            len: body.len(),
            skip_to: 0,
        }
    }

    /// The end of the current field (its delimiter, or the end of the
    /// row) and whether the field has a backslash escape.
    fn next_end(&mut self, body: &[u8]) -> (usize, bool) {
        let mut escaped = false;
        for p in self.hits.by_ref() {
            if p < self.skip_to {
                continue;
            }
            if body[p] == b'\\' {
                // The byte after it may be the delimiter: skip it.
                escaped = true;
                self.skip_to = p + 2;
                continue;
            }
            return (p, escaped);
        }
        (self.len, escaped)
    }
}

/// Appends the CopyData message of one text-format row (its trailing
/// newline included) with the given columns masked: `mask_row` in one pass
/// into `out`, unmasked fields copied as they are, values without escapes
/// masked in place, the fields after the last masked one copied without
/// being looked at. On error nothing is appended.
pub fn mask_row_into(
    row: &[u8],
    fmt: &CopyText,
    columns: &[(usize, Mask, u32)],
    out: &mut BytesMut,
) -> Result<(), MaskApplyError> {
    let start = out.len();
    out.reserve(row.len() + 5 + 8 * columns.len());
    out.put_u8(b'd');
    out.put_i32(0);
    let body = row.strip_suffix(b"\n").unwrap_or(row);
    let last_masked = columns.iter().map(|c| c.0).max();
    let mut ends = FieldEnds::new(body, fmt.delimiter);
    let mut unescaped;
    let mut field_at = 0;
    let mut index = 0;
    loop {
        if last_masked.is_none_or(|last| index > last) {
            // The rest of the row, from the delimiter before this field.
            out.put_slice(&body[field_at - usize::from(index > 0)..]);
            break;
        }
        let (end, escaped) = ends.next_end(body);
        let field = &body[field_at..end];
        if index > 0 {
            out.put_u8(fmt.delimiter);
        }
        match columns.iter().find(|(idx, ..)| *idx == index) {
            Some((_, mask, type_oid)) if field != fmt.null.as_slice() => {
                let value = if escaped {
                    unescaped = unescape(field);
                    unescaped.as_slice()
                } else {
                    field
                };
                let at = out.len();
                match mask.apply_into(value, *type_oid, WireFormat::Text, out) {
                    Ok(true) if needs_escape(&out[at..], fmt.delimiter) => {
                        let masked = out[at..].to_vec();
                        out.truncate(at);
                        let mut escaped = Vec::with_capacity(masked.len() + 8);
                        escape(&masked, fmt.delimiter, &mut escaped);
                        out.put_slice(&escaped);
                    }
                    Ok(true) => {}
                    Ok(false) => out.put_slice(&fmt.null),
                    Err(e) => {
                        out.truncate(start);
                        return Err(e);
                    }
                }
            }
            _ => out.put_slice(field),
        }
        if end >= body.len() {
            break;
        }
        field_at = end + 1;
        index += 1;
    }
    if body.len() != row.len() {
        out.put_u8(b'\n');
    }
    let n = (out.len() - start - 1) as i32;
    out[start + 1..start + 5].copy_from_slice(&n.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::{build, ArgValue, KeyRing, MaskArgs};

    #[test]
    fn options_are_read_and_other_formats_refused() {
        let t = text_options("COPY t TO STDOUT").unwrap().unwrap();
        assert_eq!((t.delimiter, t.null.as_slice()), (b'\t', &b"\\N"[..]));
        let t = text_options("COPY t TO STDOUT WITH (DELIMITER '|', NULL '', HEADER)")
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.delimiter, t.null.as_slice(), t.header),
            (b'|', &b""[..], true)
        );
        // NULL strings the server writes unescaped could shift fields or
        // equal a value: refused.
        assert_eq!(text_options("COPY t TO STDOUT NULL 'z\\'").unwrap(), None);
        assert_eq!(
            text_options("COPY t TO STDOUT (NULL '13987654321')").unwrap(),
            None
        );
        assert_eq!(text_options("COPY t TO STDOUT (FORMAT csv)").unwrap(), None);
        assert_eq!(
            text_options("COPY t TO STDOUT (FORMAT binary)").unwrap(),
            None
        );
        assert_eq!(text_options("COPY t TO STDOUT CSV").unwrap(), None);
        assert_eq!(
            text_options("COPY t TO STDOUT (ENCODING 'LATIN1')").unwrap(),
            None
        );
    }

    #[test]
    fn masks_the_right_field_and_keeps_escapes() {
        let mut args = MaskArgs::new();
        args.insert("first".into(), ArgValue::Int(1));
        args.insert("last".into(), ArgValue::Int(1));
        let keep = build("keep", &args, &KeyRing::new()).unwrap();
        let fmt = text_options("COPY t TO STDOUT").unwrap().unwrap();
        let row = b"1\ta\\tb\\\\cd\t\\N\tx\\ty\n";
        let out = mask_row(row, &fmt, &[(1, keep.clone(), 25), (2, keep.clone(), 25)]).unwrap();
        // "a\tb\\cd" (6 chars) -> "a****d"; NULL stays NULL; field 3 untouched.
        assert_eq!(out, b"1\ta****d\t\\N\tx\\ty\n".to_vec());
        let redact = build("redact", &MaskArgs::new(), &KeyRing::new()).unwrap();
        let out = mask_row(b"\\x41\\101z\n", &fmt, &[(0, redact, 25)]).unwrap();
        assert_eq!(out, b"****\n".to_vec());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
        /// The one-pass CopyData rewrite gives `mask_row`'s bytes.
        #[test]
        fn one_pass_copy_row_equals_reference(
            fields in proptest::collection::vec("(\\\\N|[0-9a-z@. |\\\\\t-]{0,12}|\\PC{0,6})", 1..7),
            delimiter in proptest::sample::select(vec![b'\t', b'|', b',']),
            newline: bool,
        ) {
            let mut args = MaskArgs::new();
            args.insert("first".into(), ArgValue::Int(1));
            args.insert("last".into(), ArgValue::Int(1));
            args.insert("fill".into(), ArgValue::Str("\\".into()));
            let keys = KeyRing::new();
            let columns = vec![
                (0, build("cn_name", &MaskArgs::new(), &keys).unwrap(), 25),
                (1, build("keep", &args, &keys).unwrap(), 25),
                (3, build("email", &MaskArgs::new(), &keys).unwrap(), 25),
                (4, build("null", &MaskArgs::new(), &keys).unwrap(), 25),
            ];
            let fmt = CopyText { delimiter, null: b"\\N".to_vec(), header: false, columns: 0 };
            let mut row = fields.join(&(delimiter as char).to_string()).into_bytes();
            if newline {
                row.push(b'\n');
            }
            let mut fast = BytesMut::new();
            let got = mask_row_into(&row, &fmt, &columns, &mut fast);
            match mask_row(&row, &fmt, &columns) {
                Ok(expected) => {
                    let mut framed = BytesMut::new();
                    crate::session::wire::message(&mut framed, b'd', |o| o.extend_from_slice(&expected));
                    proptest::prop_assert_eq!(got, Ok(()));
                    proptest::prop_assert_eq!(&fast[..], &framed[..]);
                }
                Err(e) => {
                    proptest::prop_assert_eq!(got, Err(e));
                    proptest::prop_assert!(fast.is_empty());
                }
            }
        }
    }
}
