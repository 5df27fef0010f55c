//! Detectors: whether a text value is of a sensitive kind, checked with the
//! kind's checksum where one exists, and column-name hints for secrets that
//! must be denied rather than masked. Used by discovery and policy packs.
//! Full-width digits (０-９) count as digits, as in hand-typed data.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A kind of sensitive value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    CnIdCard,
    BankCard,
    CnMobile,
    CnUscc,
    Email,
    Iban,
    UsSsn,
    Ipv4,
    Ipv6,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::CnIdCard,
        Kind::BankCard,
        Kind::CnMobile,
        Kind::CnUscc,
        Kind::Email,
        Kind::Iban,
        Kind::UsSsn,
        Kind::Ipv4,
        Kind::Ipv6,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::CnIdCard => "cn_id_card",
            Kind::BankCard => "bank_card",
            Kind::CnMobile => "cn_mobile",
            Kind::CnUscc => "cn_uscc",
            Kind::Email => "email",
            Kind::Iban => "iban",
            Kind::UsSsn => "us_ssn",
            Kind::Ipv4 => "ipv4",
            Kind::Ipv6 => "ipv6",
        }
    }
}

/// How sure a detector is: `High` when a checksum or strict syntax passed,
/// `Low` for forms without one (15-digit ID numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Confidence {
    Low,
    High,
}

/// Whether `value` is of `kind`, and how sure that is.
pub fn check(kind: Kind, value: &str) -> Option<Confidence> {
    let high = |ok: bool| ok.then_some(Confidence::High);
    let v = value.trim();
    match kind {
        Kind::CnIdCard => cn_id_card(v),
        Kind::BankCard => high(bank_card(v)),
        Kind::CnMobile => high(cn_mobile(v)),
        Kind::CnUscc => high(cn_uscc(v)),
        Kind::Email => high(email(v)),
        Kind::Iban => high(iban(v)),
        Kind::UsSsn => high(us_ssn(v)),
        Kind::Ipv4 => high(v.parse::<Ipv4Addr>().is_ok()),
        Kind::Ipv6 => high(v.parse::<Ipv6Addr>().is_ok()),
    }
}

/// Every kind `value` matches, most confident first.
pub fn detect(value: &str) -> Vec<(Kind, Confidence)> {
    let mut found: Vec<_> = Kind::ALL
        .iter()
        .filter_map(|k| check(*k, value).map(|c| (*k, c)))
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.1));
    found
}

/// ASCII or full-width digit value.
fn digit(c: char) -> Option<u32> {
    match c {
        '0'..='9' => Some(c as u32 - '0' as u32),
        '０'..='９' => Some(c as u32 - '０' as u32),
        _ => None,
    }
}

/// Digits of `s` when it is only digits and the allowed separators.
fn digits_of(s: &str, separators: &[char]) -> Option<Vec<u32>> {
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        if let Some(d) = digit(c) {
            out.push(d);
        } else if !separators.contains(&c) {
            return None;
        }
    }
    Some(out)
}

fn valid_date(y: u32, m: u32, d: u32) -> bool {
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let max = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=max).contains(&d)
}

fn number(ds: &[u32]) -> u32 {
    ds.iter().fold(0, |acc, d| acc * 10 + d)
}

/// GB 11643-1999: 17 digits with a valid birth date, then the ISO 7064
/// MOD 11-2 check character (0-9 or X). The 15-digit pre-1999 form has no
/// check character and is reported with low confidence.
fn cn_id_card(v: &str) -> Option<Confidence> {
    let chars: Vec<char> = v.chars().collect();
    match chars.len() {
        18 => {
            let ds: Vec<u32> = chars[..17]
                .iter()
                .map(|c| digit(*c))
                .collect::<Option<_>>()?;
            let (y, m, d) = (number(&ds[6..10]), number(&ds[10..12]), number(&ds[12..14]));
            if !(1800..=2100).contains(&y) || !valid_date(y, m, d) {
                return None;
            }
            const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
            let sum: u32 = ds.iter().zip(WEIGHTS).map(|(d, w)| d * w).sum();
            let expected = b"10X98765432"[(sum % 11) as usize] as char;
            let last = match chars[17] {
                'x' | 'Ｘ' | 'ｘ' => 'X',
                c => digit(c).and_then(|d| char::from_digit(d, 10)).unwrap_or(c),
            };
            (last == expected).then_some(Confidence::High)
        }
        15 => {
            let ds: Vec<u32> = chars.iter().map(|c| digit(*c)).collect::<Option<_>>()?;
            let (y, m, d) = (
                1900 + number(&ds[6..8]),
                number(&ds[8..10]),
                number(&ds[10..12]),
            );
            valid_date(y, m, d).then_some(Confidence::Low)
        }
        _ => None,
    }
}

/// 13-19 digits (spaces and dashes allowed) passing the Luhn check.
fn bank_card(v: &str) -> bool {
    let Some(ds) = digits_of(v, &[' ', '-']) else {
        return false;
    };
    (13..=19).contains(&ds.len()) && luhn(&ds)
}

pub(crate) fn luhn(ds: &[u32]) -> bool {
    let sum: u32 = ds
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                *d
            }
        })
        .sum();
    sum % 10 == 0
}

/// `(+86)?1[3-9]` and 9 more digits; spaces and dashes allowed.
fn cn_mobile(v: &str) -> bool {
    let rest = v
        .strip_prefix("+86")
        .or_else(|| v.strip_prefix("0086"))
        .unwrap_or(v);
    let Some(ds) = digits_of(rest, &[' ', '-']) else {
        return false;
    };
    let ds = match ds.len() {
        13 if ds[..2] == [8, 6] && rest.len() == v.len() => &ds[2..],
        _ => &ds[..],
    };
    ds.len() == 11 && ds[0] == 1 && (3..=9).contains(&ds[1])
}

/// GB 32100-2015 unified social credit code: 18 characters of the
/// 31-character set (no I, O, Z, S, V) with a MOD 31 check character.
fn cn_uscc(v: &str) -> bool {
    const SET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    const WEIGHTS: [u32; 17] = [
        1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
    ];
    let b = v.as_bytes();
    if b.len() != 18 {
        return false;
    }
    let mut vals = [0u32; 18];
    for (i, c) in b.iter().enumerate() {
        match SET.iter().position(|s| *s == c.to_ascii_uppercase()) {
            Some(p) => vals[i] = p as u32,
            None => return false,
        }
    }
    let sum: u32 = vals[..17].iter().zip(WEIGHTS).map(|(v, w)| v * w).sum();
    let check = (31 - sum % 31) % 31;
    vals[17] == check
}

/// A pragmatic address check: one `@`, a dot-atom local part, and a domain
/// of at least two labels ending in a letter TLD.
fn email(v: &str) -> bool {
    let Some((local, domain)) = v.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|t| t.chars().count() >= 2 && t.chars().all(char::is_alphabetic));
    local_ok && domain_ok
}

/// ISO 13616: country code, two check digits, up to 30 alphanumerics; the
/// rearranged number mod 97 is 1. Spaces are allowed between groups.
fn iban(v: &str) -> bool {
    let s: Vec<u8> = v
        .bytes()
        .filter(|b| *b != b' ')
        .map(|b| b.to_ascii_uppercase())
        .collect();
    if !(15..=34).contains(&s.len())
        || !s[..2].iter().all(u8::is_ascii_uppercase)
        || !s[2..4].iter().all(u8::is_ascii_digit)
        || !s.iter().all(u8::is_ascii_alphanumeric)
    {
        return false;
    }
    let mut rem: u32 = 0;
    for b in s[4..].iter().chain(&s[..4]) {
        if b.is_ascii_digit() {
            rem = (rem * 10 + u32::from(b - b'0')) % 97;
        } else {
            rem = (rem * 100 + u32::from(b - b'A' + 10)) % 97;
        }
    }
    rem == 1
}

/// AAA-GG-SSSS (or 9 digits) with the SSA's never-issued ranges excluded.
fn us_ssn(v: &str) -> bool {
    let b = v.as_bytes();
    let ds: Vec<u32> = match b.len() {
        11 if b[3] == b'-' && b[6] == b'-' => match digits_of(v, &['-']) {
            Some(d) => d,
            None => return false,
        },
        9 => match digits_of(v, &[]) {
            Some(d) => d,
            None => return false,
        },
        _ => return false,
    };
    if ds.len() != 9 || !v.is_ascii() {
        return false;
    }
    let (area, group, serial) = (number(&ds[..3]), number(&ds[3..5]), number(&ds[5..]));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// Words in a column name that mark a secret to deny, not mask (SAD under
/// PCI DSS 3.3, credentials). Short words only match as whole tokens so
/// that `shipping` is not `pin`.
const SECRET_SUBSTRINGS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "private_key",
    "privatekey",
    "api_key",
    "apikey",
    "密码",
    "口令",
    "验证码",
    "校验码",
    "安全码",
    "磁道",
    "pin码",
];
const SECRET_TOKENS: &[&str] = &[
    "pwd", "pin", "pinblock", "cvv", "cvv2", "cvc", "cvc2", "cvn", "cvn2", "cav2", "track",
    "track1", "track2", "track3", "otp", "totp", "token", "pswd",
];

/// The hint word when a column name looks like a secret that must be
/// denied (never shown, even masked).
pub fn secret_column_hint(column: &str) -> Option<&'static str> {
    let lower = column.to_lowercase();
    if let Some(s) = SECRET_SUBSTRINGS.iter().find(|s| lower.contains(*s)) {
        return Some(s);
    }
    // Split snake_case, kebab-case and camelCase into tokens.
    let mut tokens: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in column.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                tokens.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            tokens.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        tokens.push(cur);
    }
    tokens
        .iter()
        .find_map(|t| SECRET_TOKENS.iter().find(|s| **s == t.as_str()).copied())
}
