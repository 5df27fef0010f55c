//! Date masks (`date_trunc`, `date_shift`) over date, timestamp and
//! timestamptz in both wire formats. Text is the ISO DateStyle PostgreSQL
//! sends by default (`1985-10-21`, `1985-10-21 13:45:12.5+08`, `… BC`).

use bytes::{BufMut, BytesMut};

use super::catalogue::Args;
use super::crypto::Prf;
use super::{oid, KeyRing, MaskError, WireFormat};

/// Unix day number of 2000-01-01, the PostgreSQL epoch of binary dates.
const PG_EPOCH_DAYS: i64 = 10_957;
const USECS_PER_DAY: i64 = 86_400_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unit {
    Year,
    Month,
    Day,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (astronomical year).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of `days_from_civil`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// A text date/timestamp split into its date and the rest (time, zone).
struct TextDate<'a> {
    /// PostgreSQL day number (0 = 2000-01-01).
    days: i64,
    rest: &'a str,
}

fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_text(s: &str) -> Option<TextDate<'_>> {
    let (body, bc) = match s.strip_suffix(" BC") {
        Some(b) => (b, true),
        None => (s, false),
    };
    let dash = body.find('-')?;
    if dash < 4 {
        return None;
    }
    let year = digits(&body[..dash])?;
    let month = digits(body.get(dash + 1..dash + 3)?)? as u32;
    if body.as_bytes().get(dash + 3) != Some(&b'-') {
        return None;
    }
    let day = digits(body.get(dash + 4..dash + 6)?)? as u32;
    let year = if bc { 1 - year } else { year };
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(TextDate {
        days: days_from_civil(year, month, day) - PG_EPOCH_DAYS,
        rest: &body[dash + 6..],
    })
}

/// PostgreSQL day number of a plain `YYYY-MM-DD` text date.
pub(super) fn parse_plain_date(s: &str) -> Option<i32> {
    let d = parse_text(s)?;
    if !d.rest.is_empty() {
        return None;
    }
    i32::try_from(d.days).ok()
}

fn push2(out: &mut impl BufMut, n: u32) {
    out.put_u8(b'0' + (n / 10 % 10) as u8);
    out.put_u8(b'0' + (n % 10) as u8);
}

/// Writes a date as ISO text followed by `rest` (time, zone) and the era.
fn write_text(days: i64, rest: &[&str], out: &mut impl BufMut) {
    let (y, m, d) = civil_from_days(days + PG_EPOCH_DAYS);
    let (year, bc) = if y <= 0 { (1 - y, true) } else { (y, false) };
    // Digits by hand: `write!` costs more than the rest of the mask.
    if (0..10_000).contains(&year) {
        push2(out, (year / 100) as u32);
        push2(out, (year % 100) as u32);
    } else {
        out.put_slice(format!("{year:04}").as_bytes());
    }
    out.put_u8(b'-');
    push2(out, m);
    out.put_u8(b'-');
    push2(out, d);
    for r in rest {
        out.put_slice(r.as_bytes());
    }
    if bc {
        out.put_slice(b" BC");
    }
}

/// The zone of a timestamptz's time part (" HH:MM:SS[.frac][zone]"): it
/// starts at the first sign.
fn zone_of(rest: &str) -> Option<&str> {
    Some(
        rest.get(1..)?
            .find(['+', '-'])
            .map_or("", |i| &rest[i + 1..]),
    )
}

/// Applies `f` to the day number of a date/timestamp value; `midnight`
/// also sets the time of day to 00:00 (the zone of timestamptz is kept).
fn map_days(
    v: &[u8],
    type_oid: u32,
    format: WireFormat,
    midnight: bool,
    f: impl Fn(i64) -> i64,
) -> Option<Vec<u8>> {
    match format {
        WireFormat::Text => {
            let s = std::str::from_utf8(v).ok()?;
            if s == "infinity" || s == "-infinity" {
                return Some(v.to_vec());
            }
            let d = parse_text(s)?;
            let mut out = Vec::with_capacity(v.len() + 8);
            if midnight && type_oid != oid::DATE {
                let zone = zone_of(d.rest)?;
                write_text(f(d.days), &[" 00:00:00", zone], &mut out);
            } else {
                write_text(f(d.days), &[d.rest], &mut out);
            }
            Some(out)
        }
        WireFormat::Binary if type_oid == oid::DATE => {
            let days = i32::from_be_bytes(v.try_into().ok()?);
            if days == i32::MAX || days == i32::MIN {
                return Some(v.to_vec());
            }
            let new = i32::try_from(f(i64::from(days))).ok()?;
            Some(new.to_be_bytes().to_vec())
        }
        WireFormat::Binary => {
            let us = i64::from_be_bytes(v.try_into().ok()?);
            if us == i64::MAX || us == i64::MIN {
                return Some(v.to_vec());
            }
            let days = us.div_euclid(USECS_PER_DAY);
            let time = if midnight {
                0
            } else {
                us.rem_euclid(USECS_PER_DAY)
            };
            let new = f(days).checked_mul(USECS_PER_DAY)?.checked_add(time)?;
            Some(new.to_be_bytes().to_vec())
        }
    }
}

/// `date_trunc(unit)`. Timestamptz in text is truncated in the zone it is
/// displayed in; in binary, in UTC (the binary value carries no zone).
pub(super) fn trunc(unit: Unit, v: &[u8], type_oid: u32, format: WireFormat) -> Option<Vec<u8>> {
    map_days(v, type_oid, format, true, |days| {
        let (y, m, d) = civil_from_days(days + PG_EPOCH_DAYS);
        let (m, d) = match unit {
            Unit::Year => (1, 1),
            Unit::Month => (m, 1),
            Unit::Day => (m, d),
        };
        days_from_civil(y, m, d) - PG_EPOCH_DAYS
    })
}

/// `trunc` written into the outgoing buffer: the same bytes, no allocation.
pub(super) fn trunc_into(
    unit: Unit,
    v: &[u8],
    type_oid: u32,
    format: WireFormat,
    out: &mut BytesMut,
) -> Option<()> {
    let f = |days: i64| {
        let (y, m, d) = civil_from_days(days + PG_EPOCH_DAYS);
        let (m, d) = match unit {
            Unit::Year => (1, 1),
            Unit::Month => (m, 1),
            Unit::Day => (m, d),
        };
        days_from_civil(y, m, d) - PG_EPOCH_DAYS
    };
    match format {
        WireFormat::Text => {
            if trunc_plain_date(unit, v, type_oid, out) {
                return Some(());
            }
            let s = std::str::from_utf8(v).ok()?;
            if s == "infinity" || s == "-infinity" {
                out.put_slice(v);
                return Some(());
            }
            let d = parse_text(s)?;
            if type_oid == oid::DATE {
                write_text(f(d.days), &[d.rest], out);
            } else {
                write_text(f(d.days), &[" 00:00:00", zone_of(d.rest)?], out);
            }
        }
        WireFormat::Binary if type_oid == oid::DATE => {
            let days = i32::from_be_bytes(v.try_into().ok()?);
            if days == i32::MAX || days == i32::MIN {
                out.put_slice(v);
            } else {
                out.put_i32(i32::try_from(f(i64::from(days))).ok()?);
            }
        }
        WireFormat::Binary => {
            let us = i64::from_be_bytes(v.try_into().ok()?);
            if us == i64::MAX || us == i64::MIN {
                out.put_slice(v);
            } else {
                let days = us.div_euclid(USECS_PER_DAY);
                out.put_i64(f(days).checked_mul(USECS_PER_DAY)?);
            }
        }
    }
    Some(())
}

/// `trunc_into` of a text date `YYYY-MM-DD` with a year from 1 to 9999
/// (the usual one), done on its bytes: the year's digits are written back
/// as they are, which is what `write_text` makes of them. `false`, with
/// nothing written, for anything else.
fn trunc_plain_date(unit: Unit, v: &[u8], type_oid: u32, out: &mut BytesMut) -> bool {
    let &[y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = v else {
        return false;
    };
    if type_oid != oid::DATE
        || ![y0, y1, y2, y3, m0, m1, d0, d1]
            .iter()
            .all(u8::is_ascii_digit)
    {
        return false;
    }
    let num = |a: u8, b: u8| u32::from(a - b'0') * 10 + u32::from(b - b'0');
    let year = i64::from(num(y0, y1) * 100 + num(y2, y3));
    let (month, day) = (num(m0, m1), num(d0, d1));
    if year == 0 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return false;
    }
    out.put_slice(&v[..5]);
    match unit {
        Unit::Year => out.put_slice(b"01-01"),
        Unit::Month => {
            out.put_slice(&v[5..8]);
            out.put_slice(b"01");
        }
        Unit::Day => out.put_slice(&v[5..]),
    }
    true
}

/// `date_shift(key, max_days)`.
pub(super) struct Shift {
    prf: Prf,
    max_days: i64,
}

impl Shift {
    pub(super) fn build(a: &Args, keys: &KeyRing) -> Result<Shift, MaskError> {
        let key = a.key("key", keys)?;
        let max_days = a.int("max_days")?;
        if !(1..=3650).contains(&max_days) {
            return Err(a.bad(
                "max_days",
                &format!("{max_days} is out of range; use 1 to 3650"),
            ));
        }
        Ok(Shift {
            prf: Prf::new(key, "date_shift"),
            max_days,
        })
    }

    /// Days to add to a date: keyed by the date itself, in ±[1, max_days]
    /// (never 0, which would pass the true date through).
    pub(super) fn offset(&self, days: i64) -> i64 {
        let span = 2 * self.max_days as u64;
        let r = (self.prf.u64(days as u64) % span) as i64;
        if r < self.max_days {
            r - self.max_days
        } else {
            r - self.max_days + 1
        }
    }

    pub(super) fn apply(&self, v: &[u8], type_oid: u32, format: WireFormat) -> Option<Vec<u8>> {
        map_days(v, type_oid, format, false, |days| days + self.offset(days))
    }
}

#[cfg(test)]
pub(super) fn civil(days: i64) -> (i64, u32, u32) {
    civil_from_days(days + PG_EPOCH_DAYS)
}
