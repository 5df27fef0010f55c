//! Number masks (`noise`, `bucket`) over int2/int4/int8, numeric and
//! float4/float8 in both wire formats, and the numeric binary codec.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};

use super::catalogue::Args;
use super::crypto::Prf;
use super::{oid, KeyRing, MaskError, WireFormat};

const NUMERIC_NEG: u16 = 0x4000;

/// Encodes a plain decimal (`-123.4500`) as numeric binary: ndigits,
/// weight, sign, dscale, then base-10000 digits.
pub(super) fn text_to_binary(s: &str) -> Option<Vec<u8>> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let dscale = u16::try_from(frac.len()).ok()?;
    let int = int.trim_start_matches('0');
    let pad_left = (4 - int.len() % 4) % 4;
    let pad_right = (4 - frac.len() % 4) % 4;
    let mut weight = i16::try_from((pad_left + int.len()) / 4).ok()? - 1;
    let all = std::iter::repeat_n(0u8, pad_left)
        .chain(int.bytes().chain(frac.bytes()).map(|b| b - b'0'))
        .chain(std::iter::repeat_n(0u8, pad_right))
        .collect::<Vec<u8>>();
    let mut groups: Vec<i16> = all
        .chunks(4)
        .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + i16::from(*d)))
        .collect();
    let lead = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..lead);
    weight -= lead as i16;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    let (weight, sign) = if groups.is_empty() {
        (0, 0)
    } else {
        (weight, if neg { NUMERIC_NEG } else { 0 })
    };
    let mut out = Vec::with_capacity(8 + 2 * groups.len());
    out.extend_from_slice(&i16::try_from(groups.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Some(out)
}

/// A decoded numeric: its value as f64 and its display scale, or a special
/// value (NaN, ±Infinity) that masks pass through.
enum Decoded {
    Finite(f64, usize),
    Special,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn binary_to_f64(b: &[u8]) -> Option<Decoded> {
    let ndigits = usize::from(be16(b, 0)?);
    let weight = be16(b, 2)? as i16;
    let sign = be16(b, 4)?;
    let dscale = usize::from(be16(b, 6)?);
    if b.len() != 8 + 2 * ndigits {
        return None;
    }
    match sign {
        0 | NUMERIC_NEG => {}
        0xC000 | 0xD000 | 0xF000 => return Some(Decoded::Special),
        _ => return None,
    }
    let mut v = 0f64;
    for i in 0..ndigits {
        let d = f64::from(be16(b, 8 + 2 * i)?);
        v += d * 10_000f64.powi(i32::from(weight) - i as i32);
    }
    Some(Decoded::Finite(
        if sign == NUMERIC_NEG { -v } else { v },
        dscale,
    ))
}

fn int_range(type_oid: u32) -> (f64, f64) {
    match type_oid {
        oid::INT2 => (f64::from(i16::MIN), f64::from(i16::MAX)),
        oid::INT4 => (f64::from(i32::MIN), f64::from(i32::MAX)),
        _ => (i64::MIN as f64, i64::MAX as f64),
    }
}

/// Applies `f` to a number value and encodes the result as the same type
/// and format. Integers round and saturate at the type's range; numeric
/// keeps the input's scale; NaN and infinities pass through.
fn map_number(
    v: &[u8],
    type_oid: u32,
    format: WireFormat,
    f: impl Fn(f64) -> f64,
) -> Option<Vec<u8>> {
    let int_out = |x: f64| {
        let (lo, hi) = int_range(type_oid);
        f(x).round().clamp(lo, hi) as i64
    };
    match (type_oid, format) {
        (oid::INT2 | oid::INT4 | oid::INT8, WireFormat::Text) => {
            let n: i64 = std::str::from_utf8(v).ok()?.parse().ok()?;
            Some(int_out(n as f64).to_string().into_bytes())
        }
        (oid::INT2, WireFormat::Binary) => {
            let n = i16::from_be_bytes(v.try_into().ok()?);
            Some((int_out(f64::from(n)) as i16).to_be_bytes().to_vec())
        }
        (oid::INT4, WireFormat::Binary) => {
            let n = i32::from_be_bytes(v.try_into().ok()?);
            Some((int_out(f64::from(n)) as i32).to_be_bytes().to_vec())
        }
        (oid::INT8, WireFormat::Binary) => {
            let n = i64::from_be_bytes(v.try_into().ok()?);
            Some(int_out(n as f64).to_be_bytes().to_vec())
        }
        (oid::FLOAT4 | oid::FLOAT8, WireFormat::Text) => {
            let s = std::str::from_utf8(v).ok()?;
            let x: f64 = s.parse().ok()?;
            if !x.is_finite() {
                return Some(v.to_vec());
            }
            Some(if type_oid == oid::FLOAT4 {
                (f(x) as f32).to_string().into_bytes()
            } else {
                f(x).to_string().into_bytes()
            })
        }
        (oid::FLOAT4, WireFormat::Binary) => {
            let x = f32::from_be_bytes(v.try_into().ok()?);
            if !x.is_finite() {
                return Some(v.to_vec());
            }
            Some((f(f64::from(x)) as f32).to_be_bytes().to_vec())
        }
        (oid::FLOAT8, WireFormat::Binary) => {
            let x = f64::from_be_bytes(v.try_into().ok()?);
            if !x.is_finite() {
                return Some(v.to_vec());
            }
            Some(f(x).to_be_bytes().to_vec())
        }
        (oid::NUMERIC, WireFormat::Text) => {
            let s = std::str::from_utf8(v).ok()?;
            if matches!(s, "NaN" | "Infinity" | "-Infinity") {
                return Some(v.to_vec());
            }
            let x: f64 = s.parse().ok()?;
            let scale = s.split_once('.').map_or(0, |(_, frac)| frac.len());
            let mut out = String::with_capacity(s.len() + 4);
            write!(out, "{:.*}", scale, f(x)).ok()?;
            Some(out.into_bytes())
        }
        (oid::NUMERIC, WireFormat::Binary) => match binary_to_f64(v)? {
            Decoded::Special => Some(v.to_vec()),
            Decoded::Finite(x, scale) => {
                let mut s = String::with_capacity(24);
                write!(s, "{:.*}", scale, f(x)).ok()?;
                text_to_binary(&s)
            }
        },
        _ => None,
    }
}

/// `noise(ratio, key)`.
pub(super) struct Noise {
    prf: Prf,
    ratio: f64,
}

impl Noise {
    pub(super) fn build(a: &Args, keys: &KeyRing) -> Result<Noise, MaskError> {
        let ratio = a.number("ratio")?;
        if !(ratio > 0.0 && ratio <= 1.0) {
            return Err(a.bad(
                "ratio",
                &format!("{ratio} is out of range; use a number above 0 and at most 1, e.g. 0.1"),
            ));
        }
        let key = a.key("key", keys)?;
        Ok(Noise {
            prf: Prf::new(key, "noise"),
            ratio,
        })
    }

    /// Multiplier in [1 - ratio, 1 + ratio], keyed by the value itself so
    /// the same value always gets the same noise (averaging repeated reads
    /// reveals nothing).
    pub(super) fn factor(&self, x: f64) -> f64 {
        let bits = self.prf.u64(x.to_bits());
        let unit = (bits >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        1.0 + self.ratio * (2.0 * unit - 1.0)
    }

    pub(super) fn apply(&self, v: &[u8], type_oid: u32, format: WireFormat) -> Option<Vec<u8>> {
        map_number(v, type_oid, format, |x| x * self.factor(x))
    }
}

/// `bucket(width)`.
pub(super) struct Bucket {
    width: f64,
    /// Decimal places of the width, used for text ranges.
    decimals: usize,
    /// The width as an integer when it is one and small enough for the
    /// integer fast path (see `exact_range`).
    int_width: Option<i64>,
}

impl Bucket {
    pub(super) fn build(a: &Args) -> Result<Bucket, MaskError> {
        let width = a.number("width")?;
        if !(width.is_finite() && width > 0.0) {
            return Err(a.bad(
                "width",
                &format!("{width} is out of range; use a number above 0, e.g. 10"),
            ));
        }
        let shown = width.to_string();
        let decimals = shown.split_once('.').map_or(0, |(_, f)| f.len());
        let int_width =
            (width.fract() == 0.0 && width <= MAX_INT_WIDTH as f64).then_some(width as i64);
        Ok(Bucket {
            width,
            decimals,
            int_width,
        })
    }

    fn lower(&self, x: f64) -> f64 {
        (x / self.width).floor() * self.width
    }

    pub(super) fn apply(&self, v: &[u8], type_oid: u32, format: WireFormat) -> Option<Vec<u8>> {
        if super::TEXT_TYPES.contains(&type_oid) {
            return Some(self.range_text(v));
        }
        map_number(v, type_oid, format, |x| self.lower(x))
    }

    /// `apply` written into the outgoing buffer. Integers and decimals
    /// small enough that f64 cannot misplace them (see `exact_range`) are
    /// bucketed in integer arithmetic, the rest through `apply`; the bytes are
    /// the same either way.
    pub(super) fn apply_into(
        &self,
        v: &[u8],
        type_oid: u32,
        format: WireFormat,
        out: &mut BytesMut,
    ) -> Option<()> {
        if let Some(w) = self.int_width {
            if bucket_exact(v, w, type_oid, format, out).is_some() {
                return Some(());
            }
        }
        out.put_slice(&self.apply(v, type_oid, format)?);
        Some(())
    }

    /// A text column gets `[lo,hi)`; text that is not a number gets `****`
    /// (its content is hidden either way, and failing would end the session).
    fn range_text(&self, v: &[u8]) -> Vec<u8> {
        let x = std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|x| x.is_finite());
        let Some(x) = x else {
            return b"****".to_vec();
        };
        let lo = self.lower(x);
        let mut out = String::with_capacity(16);
        let d = self.decimals;
        // `+ 0.0` turns -0 into 0 so a range never starts with "-0".
        let _ = write!(out, "[{:.*},{:.*})", d, lo + 0.0, d, lo + self.width);
        out.into_bytes()
    }
}

/// Widths up to 2^20 and magnitudes below `EXACT_LIMIT` units of the last
/// decimal place keep f64's floor(x / width) exact: the distance from x/width
/// to the next integer (at least one last-place unit over the width) stays
/// far above f64's rounding error, so integer arithmetic gives what `apply`
/// gives.
const MAX_INT_WIDTH: i64 = 1 << 20;
const EXACT_LIMIT: u64 = 10_000_000_000_000; // 10^13
const INT_EXACT_LIMIT: i64 = 1 << 31;

/// `bucket` in integer arithmetic, or `None` (nothing written) where the
/// value is outside the range where that equals the f64 reference.
fn bucket_exact(
    v: &[u8],
    w: i64,
    type_oid: u32,
    format: WireFormat,
    out: &mut BytesMut,
) -> Option<()> {
    match (type_oid, format) {
        (oid::INT2 | oid::INT4 | oid::INT8, WireFormat::Text) => {
            let n = std::str::from_utf8(v).ok()?.parse::<i64>().ok()?;
            put_int(out, bucket_int(n, w, type_oid)?);
        }
        (oid::INT2, WireFormat::Binary) => {
            let n = i16::from_be_bytes(v.try_into().ok()?);
            out.put_i16(bucket_int(i64::from(n), w, type_oid)? as i16);
        }
        (oid::INT4, WireFormat::Binary) => {
            let n = i32::from_be_bytes(v.try_into().ok()?);
            out.put_i32(bucket_int(i64::from(n), w, type_oid)? as i32);
        }
        (oid::INT8, WireFormat::Binary) => {
            let n = i64::from_be_bytes(v.try_into().ok()?);
            out.put_i64(bucket_int(n, w, type_oid)?);
        }
        (oid::NUMERIC, WireFormat::Text) => numeric_text_bucket(v, w, out)?,
        (oid::NUMERIC, WireFormat::Binary) => numeric_binary_bucket(v, w, out)?,
        _ => return None,
    }
    Some(())
}

/// floor(n / w) * w clamped to the type, as `map_number` computes it.
fn bucket_int(n: i64, w: i64, type_oid: u32) -> Option<i64> {
    if !(-INT_EXACT_LIMIT..=INT_EXACT_LIMIT).contains(&n) {
        return None;
    }
    let lo = n.div_euclid(w) * w;
    let (min, max) = match type_oid {
        oid::INT2 => (i64::from(i16::MIN), i64::from(i16::MAX)),
        oid::INT4 => (i64::from(i32::MIN), i64::from(i32::MAX)),
        _ => (i64::MIN, i64::MAX),
    };
    Some(lo.clamp(min, max))
}

fn put_int(out: &mut BytesMut, n: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut u = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if n < 0 {
        out.put_u8(b'-');
    }
    out.put_slice(&buf[i..]);
}

/// The lower bound of a decimal `±int.frac` for an integer width:
/// floor(x / w) * w, from the integer part and whether a fraction is there.
fn lower_decimal(neg: bool, int: u64, has_frac: bool, w: i64) -> i64 {
    let w = w as u64;
    let q = (int / w) as i64;
    if !neg {
        q * w as i64
    } else if has_frac || int % w != 0 {
        -(q + 1) * w as i64
    } else {
        -q * w as i64
    }
}

/// `bucket` of a text numeric such as `-12345.67`: `-20000.00`.
fn numeric_text_bucket(v: &[u8], w: i64, out: &mut BytesMut) -> Option<()> {
    let (neg, body) = match v.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, v),
    };
    let (int, frac) = match body.iter().position(|&b| b == b'.') {
        Some(dot) => (&body[..dot], &body[dot + 1..]),
        None => (body, &[][..]),
    };
    if int.is_empty()
        || (frac.is_empty() && int.len() < body.len())
        || int.len() + frac.len() > 13
        || !int.iter().all(u8::is_ascii_digit)
        || !frac.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    let n = int.iter().fold(0u64, |a, d| a * 10 + u64::from(d - b'0'));
    let has_frac = frac.iter().any(|&d| d != b'0');
    // "-0" stays "-0" in f64; leave that oddity to the reference path.
    if neg && n == 0 && !has_frac {
        return None;
    }
    put_int(out, lower_decimal(neg, n, has_frac, w));
    if !frac.is_empty() {
        out.put_u8(b'.');
        out.put_bytes(b'0', frac.len());
    }
    Some(())
}

/// `bucket` of a binary numeric, re-encoded as `text_to_binary` would.
fn numeric_binary_bucket(v: &[u8], w: i64, out: &mut BytesMut) -> Option<()> {
    let ndigits = usize::from(be16(v, 0)?);
    let weight = be16(v, 2)? as i16;
    let sign = be16(v, 4)?;
    let dscale = be16(v, 6)?;
    if v.len() != 8 + 2 * ndigits || !matches!(sign, 0 | NUMERIC_NEG) || dscale > 6 {
        return None;
    }
    let digit = |i: usize| -> Option<u64> {
        let d = if i < ndigits { be16(v, 8 + 2 * i)? } else { 0 };
        (d < 10_000).then_some(u64::from(d))
    };
    let mut int = 0u64;
    for i in 0..usize::try_from(i32::from(weight) + 1).unwrap_or(0) {
        int = int.checked_mul(10_000)?.checked_add(digit(i)?)?;
    }
    let mut has_frac = false;
    for i in usize::try_from(i32::from(weight) + 1).unwrap_or(0)..ndigits {
        has_frac |= digit(i)? != 0;
    }
    if int >= EXACT_LIMIT / 10u64.pow(u32::from(dscale)) {
        return None;
    }
    let lo = lower_decimal(sign == NUMERIC_NEG, int, has_frac, w);
    // lo is an integer: base-10000 groups of |lo|, trailing zero groups
    // dropped, weight of the first group.
    let mut groups = [0i16; 5];
    let mut n = 0;
    let mut u = lo.unsigned_abs();
    while u > 0 {
        groups[n] = (u % 10_000) as i16;
        u /= 10_000;
        n += 1;
    }
    let weight = n as i16 - 1;
    let trailing = groups[..n].iter().take_while(|g| **g == 0).count();
    let digits = &groups[trailing..n];
    let (weight, sign) = if digits.is_empty() {
        (0, 0)
    } else {
        (weight, if lo < 0 { NUMERIC_NEG } else { 0 })
    };
    out.put_i16(digits.len() as i16);
    out.put_i16(weight);
    out.put_u16(sign);
    out.put_u16(dscale);
    for g in digits.iter().rev() {
        out.put_i16(*g);
    }
    Some(())
}
