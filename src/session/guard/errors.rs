//! Scrubbing of server ErrorResponse and NoticeResponse messages for
//! restricted roles (fields and quoted values that may carry row data).
//! Must not change message pairing or the guard's state.

use bytes::BytesMut;

use super::super::wire;
use super::Guard;

impl Guard {
    /// Errors and notices can quote row values (unique violations, bad
    /// casts): for a restricted role, drop DETAIL and CONTEXT and redact
    /// quoted text in messages of data and integrity errors.
    pub(super) fn scrub(&self, msg: &[u8], out: &mut BytesMut) {
        if !self.inputs.view.is_restricted() {
            return out.extend_from_slice(msg);
        }
        let mut fields = wire::notice_fields(msg);
        let code = fields
            .iter()
            .find(|(t, _)| *t == b'C')
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        // Any SQLSTATE may quote a value (`relation "<value>" does not
        // exist` from a lookup, a domain CHECK …): quoted text is redacted
        // whatever the code, except in pgveil's own refusals, which quote
        // only names pgveil wrote.
        let own_refusal = code == b"42501"
            && fields
                .iter()
                .any(|(t, v)| *t == b'M' && v.starts_with(b"pgveil: "));
        fields.retain(|(t, _)| !matches!(t, b'D' | b'W' | b'q' | b'P' | b'p'));
        if !own_refusal {
            for (t, v) in fields.iter_mut() {
                if matches!(t, b'M' | b'H') {
                    *v = redact_quoted(v);
                }
            }
        }
        wire::encode_notice_fields(out, msg[0], &fields);
    }
}

/// `invalid input syntax for type integer: "4111..."` -> `... "***"`.
fn redact_quoted(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut inside = false;
    for &b in message {
        if b == b'"' {
            if inside {
                out.extend_from_slice(b"***");
            }
            inside = !inside;
            out.push(b);
        } else if !inside {
            out.push(b);
        }
    }
    if inside {
        out.extend_from_slice(b"***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_redacted() {
        assert_eq!(
            redact_quoted(b"invalid input syntax for type integer: \"11010519\""),
            b"invalid input syntax for type integer: \"***\"".to_vec()
        );
        assert_eq!(redact_quoted(b"no quotes"), b"no quotes".to_vec());
    }
}
