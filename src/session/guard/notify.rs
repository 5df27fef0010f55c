//! Redaction of NOTIFY payloads for restricted roles: values a detector
//! recognises, long digit runs and JSON keys named like protected columns.
//! Must not change message pairing or the guard's state.

use bytes::BytesMut;

use super::super::wire;
use super::{lossy, Guard};

impl Guard {
    /// A notification may have been sent by a trigger or another session
    /// with protected values in its payload, which pgveil cannot trace: for
    /// a restricted role, values a detector recognises are starred out.
    pub(super) fn notification(&mut self, msg: &[u8], out: &mut BytesMut) {
        if !self.inputs.view.is_restricted() {
            return out.extend_from_slice(msg);
        }
        let body = msg.get(5..).unwrap_or_default();
        let parsed = body.get(4..).and_then(|rest| {
            let end = rest.iter().position(|&b| b == 0)?;
            let channel = &rest[..end];
            let payload_bytes = &rest[end + 1..];
            let pend = payload_bytes.iter().position(|&b| b == 0)?;
            Some((channel, &payload_bytes[..pend]))
        });
        let Some((channel, payload)) = parsed else {
            return out.extend_from_slice(msg);
        };
        // JSON payloads (row_to_json in a trigger) lose the values under
        // keys named like protected columns, names included, which no
        // detector can recognise.
        let text = lossy(payload);
        let protected: std::collections::HashSet<&str> = self
            .inputs
            .policy
            .protected_columns()
            .map(|c| c.column.as_str())
            .collect();
        let json_scrubbed = redact_json_keys(&text, &protected);
        let input = json_scrubbed.as_deref().unwrap_or(&text);
        let redacted = match redact_detected(input) {
            Some(r) => Some(r),
            None => json_scrubbed.clone(),
        };
        match redacted {
            None => out.extend_from_slice(msg),
            Some(redacted) => {
                self.observed.notifications_redacted += 1;
                wire::message(out, b'A', |o| {
                    o.extend_from_slice(&body[..4]);
                    o.extend_from_slice(channel);
                    o.extend_from_slice(&[0]);
                    o.extend_from_slice(redacted.as_bytes());
                    o.extend_from_slice(&[0]);
                });
            }
        }
    }
}

/// Replaces every token of a notification payload that a detector
/// recognises (e-mail, IBAN …) and every run of seven or more digits (ID,
/// card, mobile and account numbers, whatever surrounds them) with `*`s.
fn redact_detected(payload: &str) -> Option<String> {
    let tokens = redact_tokens(payload);
    let (starred, digits) = star_digit_runs(tokens.as_deref().unwrap_or(payload));
    (tokens.is_some() || digits).then_some(starred)
}

/// A JSON payload with the values of protected-column keys replaced.
fn redact_json_keys(payload: &str, protected: &std::collections::HashSet<&str>) -> Option<String> {
    fn walk(v: &mut serde_json::Value, protected: &std::collections::HashSet<&str>) -> bool {
        match v {
            serde_json::Value::Object(map) => {
                let mut changed = false;
                for (k, val) in map.iter_mut() {
                    if protected.contains(k.as_str()) && !val.is_null() {
                        *val = serde_json::Value::String("***".into());
                        changed = true;
                    } else {
                        changed |= walk(val, protected);
                    }
                }
                changed
            }
            serde_json::Value::Array(items) => {
                let mut changed = false;
                for item in items {
                    changed |= walk(item, protected);
                }
                changed
            }
            _ => false,
        }
    }
    let trimmed = payload.trim_start();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        return None;
    }
    let mut value: serde_json::Value = serde_json::from_str(payload).ok()?;
    walk(&mut value, protected).then(|| value.to_string())
}

fn star_digit_runs(payload: &str) -> (String, bool) {
    let chars: Vec<char> = payload.chars().collect();
    let is_digit = |c: char| c.is_ascii_digit() || ('０'..='９').contains(&c);
    let mut out = String::with_capacity(payload.len());
    let mut changed = false;
    let mut i = 0;
    while i < chars.len() {
        if is_digit(chars[i]) {
            let start = i;
            while i < chars.len() && is_digit(chars[i]) {
                i += 1;
            }
            if i - start >= 7 {
                changed = true;
                out.extend(std::iter::repeat_n('*', i - start));
            } else {
                out.extend(&chars[start..i]);
            }
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    (out, changed)
}

fn redact_tokens(payload: &str) -> Option<String> {
    let is_token_char = |c: char| c.is_alphanumeric() || "+-@._".contains(c);
    let mut out = String::with_capacity(payload.len());
    let mut changed = false;
    let mut token = String::new();
    let mut flush = |token: &mut String, out: &mut String| {
        if !token.is_empty() {
            if crate::mask::detect::detect(token).is_empty() {
                out.push_str(token);
            } else {
                changed = true;
                out.extend(std::iter::repeat_n('*', token.chars().count()));
            }
            token.clear();
        }
    };
    for c in payload.chars() {
        if is_token_char(c) {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_payloads_lose_detected_values() {
        assert_eq!(
            redact_detected("changed:11010519491231002X,6222021234567890128").as_deref(),
            Some("changed:******************,*******************")
        );
        assert_eq!(
            redact_detected("mail zhangsan@example.com now").as_deref(),
            Some("mail ******************** now")
        );
        assert_eq!(redact_detected("job:42 done"), None);
        assert_eq!(
            redact_detected("cust-13987654321-updated tel13987654321").as_deref(),
            Some("cust-***********-updated tel***********")
        );
    }
}
