//! Masks inside a JSON value the statement built (`json_build_object`,
//! `json_agg`, `row_to_json` …): the value's shape says where each
//! protected column's value sits, and each is masked where it sits, with
//! the column's own mask. Everything else is copied byte for byte.
//!
//! Fail-closed: a value whose structure differs from the shape (a member
//! the shape does not name, an element past the end, a masked value that
//! is not a string or number) is an error, and the row is withheld. Parts
//! the shape calls clear are skipped without recursion, so a deep clear
//! value cannot exhaust the stack.

use std::sync::Arc;

use super::{oid, Mask, WireFormat};

/// Where the masks sit in a JSON value.
#[derive(Debug, Clone)]
pub enum JsonMask {
    /// Any JSON value, shown as it is.
    Clear,
    /// A string or number holding one value of a column of type
    /// `type_oid` (its text form), shown masked as a JSON string (`null`
    /// when the mask gives SQL NULL).
    Value { mask: Mask, type_oid: u32 },
    /// An array whose element i is shaped by entry i (`json_build_array`).
    Array(Vec<JsonMask>),
    /// An object whose member named k is shaped by k's entry (keys are
    /// unique); a member not listed is an error.
    Object(Vec<(String, JsonMask)>),
    /// An array whose every element has this shape (`json_agg`).
    Elements(Box<JsonMask>),
}

/// Types a JSON value may arrive as: json and jsonb, or their text.
pub(crate) const JSON_CARRIERS: &[u32] = &[oid::JSON, oid::JSONB, oid::TEXT, oid::VARCHAR];

/// Deepest nesting a clear part may have before it is refused (PostgreSQL
/// itself stops near this depth on a default stack).
const MAX_CLEAR_DEPTH: usize = 10_000;

struct Reader<'a> {
    s: &'a [u8],
    at: usize,
}

impl JsonMask {
    /// Whether any part is masked.
    pub fn masks_anything(&self) -> bool {
        match self {
            JsonMask::Clear => false,
            JsonMask::Value { .. } => true,
            JsonMask::Array(items) => items.iter().any(JsonMask::masks_anything),
            JsonMask::Object(members) => members.iter().any(|(_, m)| m.masks_anything()),
            JsonMask::Elements(inner) => inner.masks_anything(),
        }
    }

    /// The masked form of one value of type `type_oid` (json, jsonb, text
    /// or varchar) in `format`; `None` when it does not have the shape.
    pub(crate) fn apply(&self, v: &[u8], type_oid: u32, format: WireFormat) -> Option<Vec<u8>> {
        let binary_jsonb = type_oid == oid::JSONB && format == WireFormat::Binary;
        let (prefix, text) = if binary_jsonb {
            // jsonb's binary form: a version byte, then the text.
            match v.split_first() {
                Some((1, rest)) => (Some(1u8), rest),
                _ => return None,
            }
        } else {
            (None, v)
        };
        let mut out = Vec::with_capacity(v.len() + 16);
        out.extend(prefix);
        let mut r = Reader { s: text, at: 0 };
        let mut copied = 0;
        r.ws();
        self.walk(&mut r, &mut out, &mut copied)?;
        r.ws();
        if r.at != text.len() {
            return None;
        }
        out.extend_from_slice(&text[copied..]);
        Some(out)
    }

    /// Walks the value at `r` along `self`, writing the text before each
    /// masked part and the part masked; `copied` is where the unwritten
    /// text starts.
    fn walk(&self, r: &mut Reader<'_>, out: &mut Vec<u8>, copied: &mut usize) -> Option<()> {
        if !matches!(self, JsonMask::Clear) && r.literal(b"null") {
            return Some(());
        }
        match self {
            JsonMask::Clear => r.skip_value(),
            JsonMask::Value { mask, type_oid } => {
                let start = r.at;
                let value = match r.peek()? {
                    b'"' => r.string()?,
                    b'-' | b'0'..=b'9' => r.number()?.to_vec(),
                    _ => return None,
                };
                out.extend_from_slice(&r.s[*copied..start]);
                *copied = r.at;
                match mask.apply(Some(&value), *type_oid, WireFormat::Text).ok()? {
                    Some(masked) => quote(std::str::from_utf8(&masked).ok()?, out),
                    None => out.extend_from_slice(b"null"),
                }
                Some(())
            }
            JsonMask::Array(items) => {
                let mut n = 0;
                r.elements(|r| {
                    let item = items.get(n)?;
                    n += 1;
                    item.walk(r, out, copied)
                })?;
                (n == items.len()).then_some(())
            }
            JsonMask::Elements(inner) => r.elements(|r| inner.walk(r, out, copied)),
            JsonMask::Object(members) => {
                // A key twice (json keeps both) means PostgreSQL named two
                // members alike where the shape has one of each.
                let mut seen: Vec<Vec<u8>> = Vec::new();
                r.members(|r, key| {
                    if seen.iter().any(|k| k == key) {
                        return None;
                    }
                    seen.push(key.to_vec());
                    let (_, member) = members.iter().find(|(k, _)| k.as_bytes() == key)?;
                    member.walk(r, out, copied)
                })
            }
        }
    }
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.ws();
        if self.peek() == Some(byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        self.ws();
        if self.s[self.at..].starts_with(word) {
            self.at += word.len();
            true
        } else {
            false
        }
    }

    /// `[ v, v … ]`, calling `each` at every element.
    fn elements(&mut self, mut each: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if !self.eat(b'[') {
            return None;
        }
        if self.eat(b']') {
            return Some(());
        }
        loop {
            self.ws();
            each(self)?;
            if self.eat(b']') {
                return Some(());
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    /// `{ "k": v, … }`, calling `each` with every decoded key.
    fn members(&mut self, mut each: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        if !self.eat(b'{') {
            return None;
        }
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return None;
            }
            let key = self.string()?;
            if !self.eat(b':') {
                return None;
            }
            self.ws();
            each(self, &key)?;
            if self.eat(b'}') {
                return Some(());
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    /// A JSON string at the cursor, decoded.
    fn string(&mut self) -> Option<Vec<u8>> {
        if self.peek() != Some(b'"') {
            return None;
        }
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let b = self.peek()?;
            self.at += 1;
            match b {
                b'"' => return Some(out),
                b'\\' => {
                    let e = self.peek()?;
                    self.at += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut c = self.hex4()?;
                            if (0xD800..0xDC00).contains(&c) {
                                if !self.s[self.at..].starts_with(b"\\u") {
                                    return None;
                                }
                                self.at += 2;
                                let low = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return None;
                                }
                                c = 0x10000 + ((c - 0xD800) << 10) + (low - 0xDC00);
                            }
                            let ch = char::from_u32(c)?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => out.push(b),
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.s.get(self.at..self.at + 4)?;
        let text = std::str::from_utf8(digits).ok()?;
        let value = u32::from_str_radix(text, 16).ok()?;
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        self.at += 4;
        Some(value)
    }

    /// A JSON number at the cursor, as written.
    fn number(&mut self) -> Option<&[u8]> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let digits = |r: &mut Self| {
            let from = r.at;
            while r.peek().is_some_and(|b| b.is_ascii_digit()) {
                r.at += 1;
            }
            r.at > from
        };
        if !digits(self) {
            return None;
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if !digits(self) {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if !digits(self) {
                return None;
            }
        }
        Some(&self.s[start..self.at])
    }

    /// Skips one value of any kind without recursion.
    fn skip_value(&mut self) -> Option<()> {
        // Open containers, innermost last: true for an object.
        let mut open: Vec<bool> = Vec::new();
        loop {
            self.ws();
            // A value.
            match self.peek()? {
                b'{' => {
                    self.at += 1;
                    if !self.eat(b'}') {
                        open.push(true);
                        if open.len() > MAX_CLEAR_DEPTH {
                            return None;
                        }
                        self.ws();
                        self.string()?;
                        if !self.eat(b':') {
                            return None;
                        }
                        continue;
                    }
                }
                b'[' => {
                    self.at += 1;
                    if !self.eat(b']') {
                        open.push(false);
                        if open.len() > MAX_CLEAR_DEPTH {
                            return None;
                        }
                        continue;
                    }
                }
                b'"' => {
                    self.string()?;
                }
                b'-' | b'0'..=b'9' => {
                    self.number()?;
                }
                _ => {
                    if !(self.literal(b"true") || self.literal(b"false") || self.literal(b"null")) {
                        return None;
                    }
                }
            }
            // After a value: close what ends here, or go on to the next.
            loop {
                let Some(&object) = open.last() else {
                    return Some(());
                };
                if self.eat(if object { b'}' } else { b']' }) {
                    open.pop();
                    continue;
                }
                if !self.eat(b',') {
                    return None;
                }
                if object {
                    self.ws();
                    self.string()?;
                    if !self.eat(b':') {
                        return None;
                    }
                }
                break;
            }
        }
    }
}

/// `s` as a JSON string, escaped as PostgreSQL's `escape_json` does.
fn quote(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

impl Mask {
    /// A mask that masks inside JSON values along `shape`.
    pub fn json(shape: JsonMask) -> Mask {
        Mask {
            inner: Arc::new(super::MaskInner {
                name: "json",
                kind: super::Kind::Json(Box::new(shape)),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::{build, KeyRing, MaskArgs};

    fn mobile() -> JsonMask {
        let mask = build("cn_mobile", &MaskArgs::new(), &KeyRing::default()).unwrap();
        JsonMask::Value {
            mask,
            type_oid: oid::TEXT,
        }
    }

    fn masked(shape: JsonMask, v: &str) -> Option<String> {
        shape
            .apply(v.as_bytes(), oid::JSON, WireFormat::Text)
            .map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn masks_members_elements_and_aggregates_where_they_sit() {
        let object =
            || JsonMask::Object(vec![("id".into(), JsonMask::Clear), ("m".into(), mobile())]);
        assert_eq!(
            masked(object(), r#"{"id" : 1, "m" : "13987654321"}"#).as_deref(),
            Some(r#"{"id" : 1, "m" : "139****4321"}"#)
        );
        // jsonb orders keys its own way; members are found by name.
        assert_eq!(
            masked(
                object(),
                r#"{"m": "13987654321", "id": {"m": "13987654321"}}"#
            )
            .as_deref(),
            Some(r#"{"m": "139****4321", "id": {"m": "13987654321"}}"#)
        );
        let rows = JsonMask::Elements(Box::new(JsonMask::Array(vec![JsonMask::Clear, mobile()])));
        assert_eq!(
            masked(
                rows,
                "[[1, \"13987654321\"], \n [null, 13800000000], [2, null]]"
            )
            .as_deref(),
            Some("[[1, \"139****4321\"], \n [null, \"138****0000\"], [2, null]]")
        );
        assert_eq!(masked(object(), "null").as_deref(), Some("null"));
    }

    #[test]
    fn anything_but_the_shape_is_refused() {
        let object =
            || JsonMask::Object(vec![("id".into(), JsonMask::Clear), ("m".into(), mobile())]);
        for v in [
            r#"{"id": 1, "m": "13987654321", "m": "13987654321"}"#,
            r#"{"id": 1, "x": "13987654321"}"#,
            r#"{"m": ["13987654321"]}"#,
            r#"{"m": {"a": "13987654321"}}"#,
            r#"{"m": true}"#,
            r#"["13987654321"]"#,
            r#"{"m": "13987654321"} x"#,
            r#"{"m": "13987654321""#,
            r#"{"id": [1, 2}"#,
        ] {
            assert_eq!(masked(object(), v), None, "{v}");
        }
        let pair = JsonMask::Array(vec![JsonMask::Clear, mobile()]);
        assert_eq!(masked(pair.clone(), r#"[1, "13987654321", 3]"#), None);
        assert_eq!(masked(pair, "[1]"), None);
    }

    #[test]
    fn escapes_are_read_and_written_as_postgresql_does() {
        let m = JsonMask::Array(vec![mobile(), JsonMask::Clear]);
        // An escaped digit is still the digit: masked like any other.
        assert_eq!(
            masked(m.clone(), r#"["\u0031\u0033987654321", "a\"b\\"]"#).as_deref(),
            Some(r#"["139****4321", "a\"b\\"]"#)
        );
        let deep = format!(
            "[\"13987654321\", {}1{}]",
            "[".repeat(50_000),
            "]".repeat(50_000)
        );
        assert_eq!(masked(m, &deep), None);
    }
}
