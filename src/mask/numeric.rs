//! Number masks (`noise`, `bucket`) over int2/int4/int8, numeric and
//! float4/float8 in both wire formats, and the numeric binary codec.

use std::fmt::Write as _;

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
        Ok(Bucket { width, decimals })
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
