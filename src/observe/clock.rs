//! Wall-clock times as RFC 3339 UTC text, and the time arguments of
//! `pgveil audit report` (absolute dates or "7d ago"), without a date crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `2026-12-01T17:03:04.123456Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let mut s = String::with_capacity(27);
    write_rfc3339(t, &mut s);
    s
}

/// [`rfc3339`] appended to a string the caller keeps.
pub fn write_rfc3339(t: SystemTime, out: &mut String) {
    use std::fmt::Write;
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86400));
    let rem = secs.rem_euclid(86400);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    );
}

/// Seconds since the epoch (with fraction) of an RFC 3339 timestamp or a
/// bare date (midnight UTC). Offsets other than `Z` are honoured.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let s = s.trim();
    let num = |a: usize, b: usize| -> Option<i64> {
        let part = s.get(a..b)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    if s.get(4..5) != Some("-") || s.get(7..8) != Some("-") || !(1..=12).contains(&m) {
        return None;
    }
    if !(1..=31).contains(&d) {
        return None;
    }
    let mut secs = days_from_civil(y, m as u32, d as u32) as f64 * 86400.0;
    if s.len() == 10 {
        return Some(secs);
    }
    if !matches!(s.get(10..11), Some("T" | "t" | " ")) {
        return None;
    }
    let (h, mi) = (num(11, 13)?, num(14, 16)?);
    let mut rest = s.get(16..)?;
    let mut sec = 0.0;
    if let Some(r) = rest.strip_prefix(':') {
        let end = r
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(r.len());
        sec = r[..end].parse::<f64>().ok()?;
        rest = &r[end..];
    }
    secs += (h * 3600 + mi * 60) as f64 + sec;
    match rest {
        "" | "Z" | "z" => Some(secs),
        offset => {
            let sign = match offset.as_bytes().first()? {
                b'+' => 1.0,
                b'-' => -1.0,
                _ => return None,
            };
            let o = offset.get(1..)?.replace(':', "");
            if o.len() != 4 || !o.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let oh: f64 = o[..2].parse().ok()?;
            let om: f64 = o[2..].parse().ok()?;
            Some(secs - sign * (oh * 3600.0 + om * 60.0))
        }
    }
}

/// A time argument: RFC 3339, a date, or a duration ago (`90m`, `24h`, `7d`).
pub fn parse_time_arg(s: &str, now: SystemTime) -> Result<f64, String> {
    let s = s.trim();
    if let Some(t) = parse_rfc3339(s) {
        return Ok(t);
    }
    let unit = match s.chars().last() {
        Some('s') => 1.0,
        Some('m') => 60.0,
        Some('h') => 3600.0,
        Some('d') => 86400.0,
        Some('w') => 7.0 * 86400.0,
        _ => 0.0,
    };
    let amount = s
        .get(..s.len().saturating_sub(1))
        .and_then(|n| n.parse::<f64>().ok());
    match amount {
        Some(n) if unit > 0.0 && n >= 0.0 => {
            let now = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
            Ok(now.as_secs_f64() - n * unit)
        }
        _ => Err(format!(
            "`{s}` is not a time: use 2026-11-24, 2026-11-24T09:00:00Z, or a duration ago like 7d or 12h"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = UNIX_EPOCH + Duration::from_micros(1_764_608_584_123_456);
        let s = rfc3339(t);
        assert_eq!(s, "2025-12-01T17:03:04.123456Z");
        let back = parse_rfc3339(&s).unwrap();
        assert!((back - 1_764_608_584.123456).abs() < 1e-6);
        assert_eq!(parse_rfc3339("1970-01-02"), Some(86400.0));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0.0));
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800.0));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn relative_times() {
        let now = UNIX_EPOCH + Duration::from_secs(10 * 86400);
        assert_eq!(parse_time_arg("7d", now), Ok(3.0 * 86400.0));
        assert_eq!(parse_time_arg("12h", now), Ok(10.0 * 86400.0 - 43200.0));
        assert!(parse_time_arg("lastweek", now).is_err());
    }
}
