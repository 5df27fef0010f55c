//! Character-level masks for text columns, plus the per-type fixed values of
//! `redact` and `constant`. Text is handled as Unicode characters so that
//! Chinese names and full-width digits keep their length.

use super::{numeric, oid, temporal, ArgValue, WireFormat, TEXT_TYPES};

const FILL: char = '*';

/// The fixed value `redact` sends for a type, valid in the given format.
pub(super) fn redact(type_oid: u32, format: WireFormat) -> Option<&'static [u8]> {
    use WireFormat::{Binary, Text};
    Some(match (type_oid, format) {
        (oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME, _) => b"****",
        (oid::CHAR, _) => b"*",
        (oid::JSON, _) => b"\"****\"",
        (oid::JSONB, Text) => b"\"****\"",
        // jsonb binary: version byte 1, then the JSON text.
        (oid::JSONB, Binary) => b"\x01\"****\"",
        (
            oid::INT2 | oid::INT4 | oid::INT8 | oid::OID | oid::NUMERIC | oid::FLOAT4 | oid::FLOAT8,
            Text,
        ) => b"0",
        (oid::BOOL, Text) => b"f",
        (oid::BYTEA, Text) => b"\\x",
        // The binary zero of date and timestamps is 2000-01-01, so text uses it too.
        (oid::DATE, Text) => b"2000-01-01",
        (oid::TIME, Text) => b"00:00:00",
        (oid::TIMESTAMP, Text) => b"2000-01-01 00:00:00",
        (oid::TIMESTAMPTZ, Text) => b"2000-01-01 00:00:00+00",
        (oid::UUID, Text) => b"00000000-0000-0000-0000-000000000000",
        (oid::BOOL, Binary) => &[0],
        (oid::BYTEA, Binary) => &[],
        (oid::INT2, Binary) => &[0; 2],
        (oid::INT4 | oid::OID | oid::FLOAT4 | oid::DATE, Binary) => &[0; 4],
        (oid::INT8 | oid::FLOAT8 | oid::TIME | oid::TIMESTAMP | oid::TIMESTAMPTZ, Binary) => {
            &[0; 8]
        }
        // numeric zero: ndigits 0, weight 0, sign +, dscale 0.
        (oid::NUMERIC, Binary) => &[0; 8],
        (oid::UUID, Binary) => &[0; 16],
        _ => return None,
    })
}

/// `constant(value)` pre-encoded for every type the value is valid for.
pub(super) struct Constant {
    text: Vec<(u32, Vec<u8>)>,
    binary: Vec<(u32, Vec<u8>)>,
}

impl Constant {
    pub(super) fn new(value: ArgValue) -> Constant {
        let s = match &value {
            ArgValue::Str(s) => s.clone(),
            ArgValue::Int(n) => n.to_string(),
            ArgValue::Float(f) => f.to_string(),
            ArgValue::Bool(b) => b.to_string(),
        };
        let mut c = Constant {
            text: Vec::new(),
            binary: Vec::new(),
        };
        let mut add = |o: u32, text: Vec<u8>, binary: Vec<u8>| {
            c.text.push((o, text));
            c.binary.push((o, binary));
        };
        for &o in TEXT_TYPES {
            add(o, s.clone().into_bytes(), s.clone().into_bytes());
        }
        if let Ok(n) = s.trim().parse::<i64>() {
            if let Ok(v) = i16::try_from(n) {
                add(
                    oid::INT2,
                    n.to_string().into_bytes(),
                    v.to_be_bytes().to_vec(),
                );
            }
            if let Ok(v) = i32::try_from(n) {
                add(
                    oid::INT4,
                    n.to_string().into_bytes(),
                    v.to_be_bytes().to_vec(),
                );
            }
            add(
                oid::INT8,
                n.to_string().into_bytes(),
                n.to_be_bytes().to_vec(),
            );
        }
        if let Ok(f) = s.trim().parse::<f64>() {
            if f.is_finite() {
                add(
                    oid::FLOAT8,
                    f.to_string().into_bytes(),
                    f.to_be_bytes().to_vec(),
                );
                let f4 = f as f32;
                add(
                    oid::FLOAT4,
                    f4.to_string().into_bytes(),
                    f4.to_be_bytes().to_vec(),
                );
            }
        }
        if let Some(bin) = numeric::text_to_binary(s.trim()) {
            add(oid::NUMERIC, s.trim().as_bytes().to_vec(), bin);
        }
        let as_bool = match (&value, s.trim().to_ascii_lowercase().as_str()) {
            (ArgValue::Bool(b), _) => Some(*b),
            (_, "t" | "true" | "yes" | "on") => Some(true),
            (_, "f" | "false" | "no" | "off") => Some(false),
            _ => None,
        };
        if let Some(b) = as_bool {
            add(
                oid::BOOL,
                if b { b"t".to_vec() } else { b"f".to_vec() },
                vec![u8::from(b)],
            );
        }
        if let Some(d) = temporal::parse_plain_date(s.trim()) {
            add(
                oid::DATE,
                s.trim().as_bytes().to_vec(),
                d.to_be_bytes().to_vec(),
            );
        }
        if serde_json::from_str::<serde_json::Value>(&s).is_ok() {
            let mut jsonb = vec![1u8];
            jsonb.extend_from_slice(s.as_bytes());
            add(oid::JSON, s.clone().into_bytes(), s.clone().into_bytes());
            add(oid::JSONB, s.clone().into_bytes(), jsonb);
        }
        c
    }

    pub(super) fn accepts(&self, type_oid: u32) -> bool {
        self.text.iter().any(|(o, _)| *o == type_oid)
    }

    pub(super) fn encode(&self, type_oid: u32, format: WireFormat) -> Option<Vec<u8>> {
        self.encoded(type_oid, format).map(<[u8]>::to_vec)
    }

    pub(super) fn encoded(&self, type_oid: u32, format: WireFormat) -> Option<&[u8]> {
        let table = match format {
            WireFormat::Text => &self.text,
            WireFormat::Binary => &self.binary,
        };
        table
            .iter()
            .find(|(o, _)| *o == type_oid)
            .map(|(_, v)| v.as_slice())
    }
}

fn push_fill(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(FILL, n));
}

/// Keeps `first` and `last` characters, fills the rest one for one. A value
/// too short to hide anything is filled entirely.
pub(super) fn keep(s: &str, first: usize, last: usize, fill: char) -> String {
    let n = s.chars().count();
    let mut out = String::with_capacity(s.len() + n * fill.len_utf8());
    if n <= first + last {
        out.extend(std::iter::repeat_n(fill, n));
        return out;
    }
    for (i, c) in s.chars().enumerate() {
        out.push(if i < first || i >= n - last { c } else { fill });
    }
    out
}

/// Separators skipped when counting digit positions and kept in place.
pub(super) fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '-' | '\u{3000}' | '\u{FF0D}')
}

/// `keep` over the non-separator characters; separators stay where they are.
fn keep_positions(s: &str, first: usize, last: usize, out: &mut String) {
    let n = s.chars().filter(|c| !is_separator(*c)).count();
    let all = n <= first + last;
    let mut i = 0;
    for c in s.chars() {
        if is_separator(c) {
            out.push(c);
            continue;
        }
        let kept = !all && (i < first || i >= n - last);
        out.push(if kept { c } else { FILL });
        i += 1;
    }
}

pub(super) fn bank_card(s: &str, first: usize, last: usize) -> String {
    let digits = s.chars().filter(|c| !is_separator(*c)).count();
    // An 8-digit BIN may only be shown on PANs of 16 digits or more.
    let first = if digits < 16 { first.min(6) } else { first };
    let mut out = String::with_capacity(s.len());
    keep_positions(s, first, last, &mut out);
    out
}

pub(super) fn cn_id_card(s: &str, first: usize, last: usize) -> String {
    let n = s.chars().filter(|c| !is_separator(*c)).count();
    // The 15-digit form ends in a 3-digit sequence right after the birth date.
    let last = if n == 15 { last.min(3) } else { last };
    let mut out = String::with_capacity(s.len());
    keep_positions(s, first, last, &mut out);
    out
}

/// Keeps 3 + 4 digits of the subscriber number; a +86 / 0086 / 86 country
/// prefix is kept in clear and not counted.
pub(super) fn cn_mobile(s: &str) -> String {
    let n = s.chars().filter(|c| !is_separator(*c)).count();
    let prefix_len = if s.starts_with("+86") {
        3
    } else if s.starts_with("0086") && n == 15 {
        4
    } else if s.starts_with("86") && n == 13 {
        2
    } else {
        0
    };
    let (prefix, rest) = s.split_at(prefix_len);
    let mut out = String::with_capacity(s.len());
    out.push_str(prefix);
    keep_positions(rest, 3, 4, &mut out);
    out
}

/// Two-character surnames of the Hundred Family Surnames and common usage.
const COMPOUND_SURNAMES: &[&str] = &[
    "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒",
    "令狐", "夏侯", "轩辕", "端木", "独孤", "南宫", "西门", "百里", "呼延", "万俟", "闻人", "澹台",
    "公冶", "太史", "申屠", "濮阳", "钟离", "宗政", "仲孙", "赫连", "拓跋", "第五", "谷梁", "淳于",
    "单于", "司空", "鲜于", "闾丘", "子车", "亓官", "羊舌", "梁丘", "左丘", "东郭", "公羊", "巫马",
    "微生", "段干", "壤驷", "乐正", "漆雕", "公西", "颛孙", "公良", "东门", "归海", "司寇", "夹谷",
    "宰父", "完颜", "叱干", "歐陽", "司馬", "諸葛",
];

/// Whether `two` (the first two characters of a name) is a compound
/// surname. Looked up for every masked name, so by an integer key: a
/// 1024-bit filter answers no for almost every other name, then a binary
/// search of the sorted keys.
pub(super) fn is_compound_surname(two: &str) -> bool {
    struct Keys {
        filter: [u64; 16],
        sorted: Vec<u64>,
    }
    static KEYS: std::sync::LazyLock<Keys> = std::sync::LazyLock::new(|| {
        let mut sorted: Vec<u64> = COMPOUND_SURNAMES.iter().filter_map(|s| key(s)).collect();
        sorted.sort_unstable();
        let mut filter = [0u64; 16];
        for &k in &sorted {
            let bit = slot(k);
            filter[bit / 64] |= 1 << (bit % 64);
        }
        Keys { filter, sorted }
    });
    // Every entry is two CJK characters of three UTF-8 bytes each.
    fn key(two: &str) -> Option<u64> {
        let b: &[u8; 6] = two.as_bytes().try_into().ok()?;
        Some(u64::from_be_bytes([
            0, 0, b[0], b[1], b[2], b[3], b[4], b[5],
        ]))
    }
    fn slot(k: u64) -> usize {
        (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize
    }
    let Some(k) = key(two) else { return false };
    let bit = slot(k);
    KEYS.filter[bit / 64] & (1 << (bit % 64)) != 0 && KEYS.sorted.binary_search(&k).is_ok()
}

pub(super) fn is_name_separator(c: char) -> bool {
    matches!(c, ' ' | '·' | '•' | '・' | '.' | '-' | '\'')
}

/// Keeps the surname (Chinese) or the initial (Latin script).
pub(super) fn cn_name(s: &str) -> String {
    let letters = s.chars().filter(|c| !is_name_separator(*c)).count();
    let mut keep = 1;
    if letters >= 3 {
        let mut it = s.char_indices();
        if let (Some(_), Some((i, c))) = (it.next(), it.next()) {
            if is_compound_surname(&s[..i + c.len_utf8()]) {
                keep = 2;
            }
        }
    }
    // A one-letter name has nothing but the hidden part.
    if letters <= 1 {
        keep = 0;
    }
    let mut out = String::with_capacity(s.len() + letters);
    let mut i = 0;
    for c in s.chars() {
        if is_name_separator(c) {
            out.push(c);
            continue;
        }
        out.push(if i < keep { c } else { FILL });
        i += 1;
    }
    out
}

/// Keeps the first character of the local part and the whole domain.
pub(super) fn email(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let Some(at) = s.rfind('@') else {
        push_fill(&mut out, s.chars().count());
        return out;
    };
    let (local, domain) = s.split_at(at);
    let n = local.chars().count();
    if n <= 1 {
        push_fill(&mut out, n);
    } else {
        let mut chars = local.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        push_fill(&mut out, n - 1);
    }
    out.push_str(domain);
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum AdminLevel {
    Province = 0,
    City = 1,
    District = 2,
}

/// Finds a token that ends in one of `suffixes` within `max` characters of
/// the start of `s`; returns its byte length. Tokens ending in an excluded
/// word (小区 is a housing estate, not a district) do not count.
fn admin_token(s: &str, max: usize, suffixes: &[&str], exclude: &[&str]) -> Option<usize> {
    for (n, (i, c)) in s.char_indices().enumerate().skip(1) {
        if n > max {
            return None;
        }
        // Every suffix starts with one of these; skip the rest cheaply.
        if !matches!(
            c,
            '特' | '自' | '省' | '地' | '市' | '盟' | '新' | '区' | '县' | '旗'
        ) {
            continue;
        }
        let rest = &s[i..];
        for suf in suffixes {
            if rest.starts_with(suf) {
                let end = i + suf.len();
                if !exclude.iter().any(|e| s[..end].ends_with(e)) {
                    return Some(end);
                }
            }
        }
    }
    None
}

/// Byte ends of the province, city and district of a mainland address.
fn admin_levels(s: &str) -> [Option<usize>; 3] {
    for m in ["北京", "上海", "天津", "重庆"] {
        if let Some(rest) = s.strip_prefix(m) {
            let p = m.len()
                + if rest.starts_with('市') {
                    '市'.len_utf8()
                } else {
                    0
                };
            let d = admin_token(
                &s[p..],
                8,
                &["新区", "区", "县"],
                &["小区", "社区", "校区", "园区", "景区"],
            )
            .map(|e| p + e);
            return [Some(p), Some(p), d];
        }
    }
    let province = admin_token(s, 8, &["特别行政区", "自治区", "省"], &[]);
    let p = province.unwrap_or(0);
    let city = admin_token(&s[p..], 11, &["自治州", "地区", "市", "盟"], &[]).map(|e| p + e);
    let c = city.unwrap_or(p);
    let district = admin_token(
        &s[c..],
        10,
        &["自治县", "自治旗", "新区", "区", "县", "市", "旗"],
        &["小区", "社区", "校区", "园区", "景区"],
    )
    .map(|e| c + e);
    [province, city, district]
}

/// Keeps administrative levels down to `level`; without any, keeps the
/// first `first` characters but never more than half of the address.
pub(super) fn address(s: &str, level: AdminLevel, first: usize) -> String {
    let levels = admin_levels(s);
    let end = levels[..=level as usize].iter().rev().find_map(|e| *e);
    let end = end.unwrap_or_else(|| {
        let n = s.chars().count();
        let k = first.min(n / 2);
        s.char_indices().nth(k).map_or(s.len(), |(i, _)| i)
    });
    let (kept, hidden) = s.split_at(end);
    let mut out = String::with_capacity(s.len());
    out.push_str(kept);
    push_fill(&mut out, hidden.chars().count());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compound_surname_is_found() {
        for two in COMPOUND_SURNAMES {
            assert_eq!(two.len(), 6, "{two}");
            assert!(is_compound_surname(two), "{two}");
        }
        for other in ["王伟", "李伟", "欧", "欧阳明", "阳欧", "ab", "abcdef", ""] {
            assert!(!is_compound_surname(other), "{other}");
        }
    }
}
