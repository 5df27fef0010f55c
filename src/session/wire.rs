//! Reading and writing the few message bodies the session must look inside.
//! Pure functions over complete messages (type byte and length included).

use bytes::{BufMut, BytesMut};

/// A cursor over a message body.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(msg: &'a [u8]) -> Self {
        Reader {
            buf: msg.get(5..).unwrap_or_default(),
        }
    }
    fn cstr(&mut self) -> Option<&'a [u8]> {
        let end = self.buf.iter().position(|&b| b == 0)?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }
    fn i16(&mut self) -> Option<i16> {
        let b = self.buf.get(..2)?;
        let v = i16::from_be_bytes([b[0], b[1]]);
        self.buf = &self.buf[2..];
        Some(v)
    }
    fn i32(&mut self) -> Option<i32> {
        let b = self.buf.get(..4)?;
        let v = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        self.buf = &self.buf[4..];
        Some(v)
    }
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let b = self.buf.get(..n)?;
        self.buf = &self.buf[n..];
        Some(b)
    }
}

/// Writes a typed message: type byte, then the body built by `body`.
pub fn message(out: &mut BytesMut, ty: u8, body: impl FnOnce(&mut BytesMut)) {
    out.put_u8(ty);
    let len_at = out.len();
    out.put_i32(0);
    body(out);
    let len = (out.len() - len_at) as i32;
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_cstr(out: &mut BytesMut, s: &[u8]) {
    out.put_slice(s);
    out.put_u8(0);
}

/// Query ('Q'): the SQL text.
pub fn query_text(msg: &[u8]) -> Option<&[u8]> {
    Reader::new(msg).cstr()
}

pub fn encode_query(out: &mut BytesMut, sql: &str) {
    message(out, b'Q', |o| put_cstr(o, sql.as_bytes()));
}

/// Parse ('P').
pub struct ParseMsg<'a> {
    pub name: &'a [u8],
    pub query: &'a [u8],
}

pub fn parse_msg(msg: &[u8]) -> Option<ParseMsg<'_>> {
    let mut r = Reader::new(msg);
    Some(ParseMsg {
        name: r.cstr()?,
        query: r.cstr()?,
    })
}

pub fn encode_parse(out: &mut BytesMut, name: &[u8], query: &str) {
    message(out, b'P', |o| {
        put_cstr(o, name);
        put_cstr(o, query.as_bytes());
        o.put_i16(0);
    });
}

/// Bind ('B'): names and the result-column format codes.
pub struct BindMsg<'a> {
    pub portal: &'a [u8],
    pub statement: &'a [u8],
    pub result_formats: Vec<i16>,
}

pub fn bind_msg(msg: &[u8]) -> Option<BindMsg<'_>> {
    let mut r = Reader::new(msg);
    let portal = r.cstr()?;
    let statement = r.cstr()?;
    let nfmt = r.i16()?;
    for _ in 0..nfmt.max(0) {
        r.i16()?;
    }
    let nparams = r.i16()?;
    for _ in 0..nparams.max(0) {
        let len = r.i32()?;
        if len > 0 {
            r.bytes(len as usize)?;
        }
    }
    let nres = r.i16()?;
    let mut result_formats = Vec::with_capacity(nres.max(0) as usize);
    for _ in 0..nres.max(0) {
        result_formats.push(r.i16()?);
    }
    Some(BindMsg {
        portal,
        statement,
        result_formats,
    })
}

/// How many array elements a Bind passes in `parameters` (1-based), all
/// together: text (`{a,b,"c,d"}`, nested or with bounds) or binary array
/// format. A NULL counts none; anything unreadable counts as `usize::MAX`
/// (the caller refuses it; the server would reject it too).
pub fn bind_array_elements(msg: &[u8], parameters: &[usize]) -> usize {
    let values = (|| {
        let mut r = Reader::new(msg);
        r.cstr()?;
        r.cstr()?;
        let nfmt = usize::try_from(r.i16()?).ok()?;
        let mut formats = Vec::with_capacity(nfmt);
        for _ in 0..nfmt {
            formats.push(r.i16()?);
        }
        let nparams = usize::try_from(r.i16()?).ok()?;
        let mut values = Vec::with_capacity(nparams);
        for i in 0..nparams {
            let format = match formats.as_slice() {
                [] => 0,
                [one] => *one,
                many => *many.get(i)?,
            };
            let len = r.i32()?;
            let value = match usize::try_from(len) {
                Ok(len) => Some(r.bytes(len)?),
                Err(_) => None,
            };
            values.push((format, value));
        }
        Some(values)
    })();
    let Some(values) = values else {
        return usize::MAX;
    };
    parameters.iter().fold(0usize, |total, &p| {
        let count = match p.checked_sub(1).and_then(|i| values.get(i)) {
            Some((_, None)) => 0,
            Some((0, Some(text))) => text_array_elements(text),
            Some((1, Some(binary))) => binary_array_elements(binary),
            // A parameter the statement names but the Bind lacks: the
            // server rejects the Bind.
            _ => usize::MAX,
        };
        total.saturating_add(count)
    })
}

/// Elements of an array in PostgreSQL's text form: one more than the
/// commas outside quotes (each separates two siblings, at any depth).
fn text_array_elements(text: &[u8]) -> usize {
    let body = match text.iter().position(|&b| b == b'{') {
        Some(start) => &text[start..],
        None => return usize::MAX,
    };
    let mut commas = 0usize;
    let mut content = false;
    let mut quoted = false;
    let mut escaped = false;
    for &b in body {
        if escaped {
            escaped = false;
            content = true;
            continue;
        }
        match b {
            b'\\' => escaped = true,
            b'"' => {
                quoted = !quoted;
                content = true;
            }
            b',' if !quoted => commas += 1,
            b'{' | b'}' if !quoted => {}
            b' ' | b'\t' | b'\n' | b'\r' if !quoted => {}
            _ => content = true,
        }
    }
    if content || commas > 0 {
        commas.saturating_add(1)
    } else {
        0
    }
}

/// Elements of an array in binary form: the product of its dimensions.
fn binary_array_elements(binary: &[u8]) -> usize {
    let int = |at: usize| -> Option<i32> {
        let b = binary.get(at..at + 4)?;
        Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let Some(ndim) = int(0).and_then(|n| usize::try_from(n).ok()) else {
        return usize::MAX;
    };
    let mut elements = if ndim == 0 { 0usize } else { 1 };
    for d in 0..ndim {
        match int(12 + d * 8).and_then(|n| usize::try_from(n).ok()) {
            Some(size) => elements = elements.saturating_mul(size),
            None => return usize::MAX,
        }
    }
    elements
}

pub fn encode_bind_no_params(out: &mut BytesMut, portal: &[u8], statement: &[u8]) {
    message(out, b'B', |o| {
        put_cstr(o, portal);
        put_cstr(o, statement);
        o.put_i16(0);
        o.put_i16(0);
        o.put_i16(0);
    });
}

pub fn encode_close(out: &mut BytesMut, kind: u8, name: &[u8]) {
    message(out, b'C', |o| {
        o.put_u8(kind);
        put_cstr(o, name);
    });
}

/// Flush: the server sends what it has buffered, and answers nothing.
pub fn encode_execute(out: &mut BytesMut, portal: &[u8]) {
    message(out, b'E', |o| {
        put_cstr(o, portal);
        o.put_i32(0);
    });
}

pub fn encode_sync(out: &mut BytesMut) {
    message(out, b'S', |_| {});
}

pub fn encode_flush(out: &mut BytesMut) {
    message(out, b'H', |_| {});
}

pub fn encode_describe(out: &mut BytesMut, kind: u8, name: &[u8]) {
    message(out, b'D', |o| {
        o.put_u8(kind);
        put_cstr(o, name);
    });
}

/// Describe ('D') and Close ('C'): 'S' or 'P' and a name.
pub fn target_msg(msg: &[u8]) -> Option<(u8, &[u8])> {
    let mut r = Reader::new(msg);
    Some((r.u8()?, r.cstr()?))
}

/// Execute ('E'): the portal name.
pub fn execute_portal(msg: &[u8]) -> Option<&[u8]> {
    Reader::new(msg).cstr()
}

/// The row limit of an Execute (0: run the portal to completion).
pub fn execute_max_rows(msg: &[u8]) -> Option<i32> {
    let mut r = Reader::new(msg);
    r.cstr()?;
    r.i32()
}

/// One field of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub table_oid: u32,
    pub attnum: i16,
    pub type_oid: u32,
    pub format: i16,
}

pub fn row_description(msg: &[u8]) -> Option<Vec<Field>> {
    let mut r = Reader::new(msg);
    let n = r.i16()?;
    let mut fields = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n.max(0) {
        let name = String::from_utf8_lossy(r.cstr()?).into_owned();
        let table_oid = r.i32()? as u32;
        let attnum = r.i16()?;
        let type_oid = r.i32()? as u32;
        r.i16()?;
        r.i32()?;
        let format = r.i16()?;
        fields.push(Field {
            name,
            table_oid,
            attnum,
            type_oid,
            format,
        });
    }
    Some(fields)
}

/// The values of a DataRow; `None` is SQL NULL.
pub fn data_row(msg: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    let mut r = Reader::new(msg);
    let n = r.i16()?;
    let mut values = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n.max(0) {
        let len = r.i32()?;
        if len < 0 {
            values.push(None);
        } else {
            values.push(Some(r.bytes(len as usize)?));
        }
    }
    Some(values)
}

pub fn encode_data_row<'a>(out: &mut BytesMut, values: impl Iterator<Item = Option<&'a [u8]>>) {
    message(out, b'D', |o| {
        let count_at = o.len();
        o.put_i16(0);
        let mut n: i16 = 0;
        for v in values {
            n = n.saturating_add(1);
            match v {
                None => o.put_i32(-1),
                Some(b) => {
                    o.put_i32(b.len() as i32);
                    o.put_slice(b);
                }
            }
        }
        o[count_at..count_at + 2].copy_from_slice(&n.to_be_bytes());
    });
}

/// The fields of an ErrorResponse or NoticeResponse.
pub fn notice_fields(msg: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut r = Reader::new(msg);
    let mut fields = Vec::new();
    while let Some(tag) = r.u8() {
        if tag == 0 {
            break;
        }
        let Some(value) = r.cstr() else { break };
        fields.push((tag, value.to_vec()));
    }
    fields
}

pub fn encode_notice_fields(out: &mut BytesMut, ty: u8, fields: &[(u8, Vec<u8>)]) {
    message(out, ty, |o| {
        for (tag, value) in fields {
            o.put_u8(*tag);
            put_cstr(o, value);
        }
        o.put_u8(0);
    });
}

/// The command tag of a CommandComplete message ("CREATE TABLE", "INSERT 0 1").
pub fn command_tag(msg: &[u8]) -> &[u8] {
    let body = msg.get(5..).unwrap_or_default();
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    &body[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_arrays_are_counted_in_text_and_binary_form() {
        let bind = |formats: &[i16], values: &[Option<&[u8]>]| {
            let mut m = BytesMut::new();
            message(&mut m, b'B', |o| {
                o.put_slice(b"\0s\0");
                o.put_i16(formats.len() as i16);
                for f in formats {
                    o.put_i16(*f);
                }
                o.put_i16(values.len() as i16);
                for v in values {
                    match v {
                        Some(v) => {
                            o.put_i32(v.len() as i32);
                            o.put_slice(v);
                        }
                        None => o.put_i32(-1),
                    }
                }
                o.put_i16(0);
            });
            m
        };
        let m = bind(&[], &[Some(b"{a,b,\"c,d\"}"), Some(b"{}"), None]);
        assert_eq!(bind_array_elements(&m, &[1]), 3);
        assert_eq!(bind_array_elements(&m, &[2]), 0);
        assert_eq!(bind_array_elements(&m, &[3]), 0);
        assert_eq!(bind_array_elements(&m, &[1, 2]), 3);
        assert_eq!(bind_array_elements(&m, &[4]), usize::MAX);
        let m = bind(&[0], &[Some(b"[1:2][1:2]={{1,2},{\"\\\",\",4}}")]);
        assert_eq!(bind_array_elements(&m, &[1]), 4);
        let many = format!("{{{}}}", vec!["x"; 1000].join(","));
        let m = bind(&[0], &[Some(many.as_bytes())]);
        assert_eq!(bind_array_elements(&m, &[1]), 1000);
        // Binary: 1 dimension of 500 text elements (header only matters).
        let mut binary = Vec::new();
        for v in [1i32, 0, 25, 500, 1] {
            binary.extend_from_slice(&v.to_be_bytes());
        }
        let m = bind(&[1], &[Some(&binary)]);
        assert_eq!(bind_array_elements(&m, &[1]), 500);
        let m = bind(&[1], &[Some(&binary[..10])]);
        assert_eq!(bind_array_elements(&m, &[1]), usize::MAX);
        assert_eq!(bind_array_elements(&m[..8], &[1]), usize::MAX);
    }

    #[test]
    fn bind_round_trip_reads_result_formats() {
        let mut m = BytesMut::new();
        message(&mut m, b'B', |o| {
            put_cstr(o, b"p1");
            put_cstr(o, b"s1");
            o.put_i16(1);
            o.put_i16(1);
            o.put_i16(2);
            o.put_i32(3);
            o.put_slice(b"abc");
            o.put_i32(-1);
            o.put_i16(2);
            o.put_i16(0);
            o.put_i16(1);
        });
        let b = bind_msg(&m).unwrap();
        assert_eq!((b.portal, b.statement), (&b"p1"[..], &b"s1"[..]));
        assert_eq!(b.result_formats, vec![0, 1]);
        assert!(bind_msg(&m[..m.len() - 1]).is_none());
    }

    #[test]
    fn data_rows_round_trip() {
        let mut m = BytesMut::new();
        encode_data_row(&mut m, [Some(&b"x"[..]), None, Some(&b""[..])].into_iter());
        let v = data_row(&m).unwrap();
        assert_eq!(v, vec![Some(&b"x"[..]), None, Some(&b""[..])]);
        assert_eq!(
            crate::net::codec::typed_frame_len(&m, 100),
            Ok(Some(m.len()))
        );
    }
}
