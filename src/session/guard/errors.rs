//! Scrubbing of server ErrorResponse and NoticeResponse messages for
//! restricted roles (fields and quoted values that may carry row data).
//! Must not change message pairing or the guard's state.

use bytes::BytesMut;

use super::super::wire;
use super::refusal;
use super::Guard;

/// Fields a restricted role receives: severity (S, V), SQLSTATE (C),
/// message and hint (M, H; values redacted, see `redact_values`) and the
/// server's source location (F, L, R). Everything else (DETAIL, CONTEXT,
/// the internal query and positions, fields a newer server adds) is
/// dropped: any of them can quote row values.
const KEPT_FIELDS: &[u8] = b"SVCMHFLR";

/// Object-name fields (schema, table, column, data type, constraint). The
/// server fills them from catalog names, which clients use (a unique
/// violation's constraint name tells an ORM which field clashed); PL/pgSQL's
/// `RAISE … USING COLUMN = …` can set them to anything, so they are kept
/// only when no server-side code was running.
const NAME_FIELDS: &[u8] = b"stcdn";

/// What a restricted role reads instead of a message raised while server
/// code was running.
const HIDDEN_MESSAGE: &[u8] = b"pgveil: the server's message is hidden because it was raised \
inside server-side code (a function, trigger or procedure), which can put any value into it; \
the SQLSTATE is the server's";

impl Guard {
    /// Errors and notices can quote row values (unique violations, bad
    /// casts, RAISE in a trigger): for a restricted role, keep only the
    /// fields that carry no row data and redact quoted text in the rest.
    pub(super) fn scrub(&self, msg: &[u8], out: &mut BytesMut) {
        if !self.inputs.view.is_restricted() {
            return out.extend_from_slice(msg);
        }
        let fields = wire::notice_fields(msg);
        let fields = scrub_fields(fields);
        wire::encode_notice_fields(out, msg[0], &fields);
    }
}

/// The fields a restricted role may receive of one error or notice.
fn scrub_fields(fields: Vec<(u8, Vec<u8>)>) -> Vec<(u8, Vec<u8>)> {
    // pgveil's own refusal quotes only names pgveil wrote.
    if refusal::is_own_refusal(&fields) {
        return fields
            .into_iter()
            .filter(|(t, _)| *t != b'W' && *t != b'D')
            .collect();
    }
    // A CONTEXT field means the message was produced while a function,
    // trigger, SQL function or procedure ran: its text (and the object-name
    // fields) may be whatever that code chose, `RAISE '%', NEW.card_no`.
    let in_server_code = fields.iter().any(|(t, _)| *t == b'W');
    fields
        .into_iter()
        .filter_map(|(t, v)| match t {
            b'M' if in_server_code => Some((t, HIDDEN_MESSAGE.to_vec())),
            b'H' if in_server_code => None,
            b'M' | b'H' => Some((t, redact_values(&v))),
            _ if NAME_FIELDS.contains(&t) => (!in_server_code).then_some((t, v)),
            _ if KEPT_FIELDS.contains(&t) => Some((t, v)),
            _ => None,
        })
        .collect()
}

/// Redacts what PostgreSQL's message style puts values in: quoted text
/// and numbers (`invalid input syntax for type integer: "4111…"`,
/// `requested character too large for encoding: 19491231`). Everything
/// from the first double quote to the last is one redaction, so a value
/// that itself contains quotes cannot split it.
fn redact_values(message: &[u8]) -> Vec<u8> {
    let (head, quoted, tail) = match (
        message.iter().position(|&b| b == b'"'),
        message.iter().rposition(|&b| b == b'"'),
    ) {
        (Some(first), Some(last)) if last > first => {
            (&message[..first], true, &message[last + 1..])
        }
        (Some(first), _) => (&message[..first], true, &[][..]),
        _ => (message, false, &[][..]),
    };
    let mut out = Vec::with_capacity(message.len());
    redact_digits(head, &mut out);
    if quoted {
        out.extend_from_slice(b"\"***\"");
    }
    redact_digits(tail, &mut out);
    out
}

fn redact_digits(text: &[u8], out: &mut Vec<u8>) {
    let mut in_number = false;
    for &b in text {
        if b.is_ascii_digit() {
            if !in_number {
                out.extend_from_slice(b"***");
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(pairs: &[(u8, &str)]) -> Vec<(u8, Vec<u8>)> {
        pairs
            .iter()
            .map(|(t, v)| (*t, v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn quoted_text_and_numbers_are_redacted() {
        let r = |m: &str| String::from_utf8(redact_values(m.as_bytes())).unwrap();
        assert_eq!(
            r("invalid input syntax for type integer: \"11010519\""),
            "invalid input syntax for type integer: \"***\""
        );
        assert_eq!(
            r("requested character too large for encoding: 19491231"),
            "requested character too large for encoding: ***"
        );
        // A value with quotes of its own cannot split the redaction.
        assert_eq!(
            r("invalid input syntax for type integer: \"张\"三\"丰\"\""),
            "invalid input syntax for type integer: \"***\""
        );
        assert_eq!(r("unterminated \"6222"), "unterminated \"***\"");
        assert_eq!(r("no values here"), "no values here");
    }

    #[test]
    fn messages_of_server_code_are_replaced_and_unknown_fields_dropped() {
        let raised = scrub_fields(f(&[
            (b'S', "ERROR"),
            (b'C', "P0001"),
            (b'M', "card 6222021234567890128"),
            (b'H', "6222"),
            (b'c', "6222021234567890128"),
            (b'W', "PL/pgSQL function trg() line 3 at RAISE"),
        ]));
        assert_eq!(
            raised,
            vec![
                (b'S', b"ERROR".to_vec()),
                (b'C', b"P0001".to_vec()),
                (b'M', HIDDEN_MESSAGE.to_vec())
            ]
        );
        let unique = scrub_fields(f(&[
            (b'C', "23505"),
            (b'M', "duplicate key value violates unique constraint \"u\""),
            (b'D', "Key (card_no)=(6222021234567890128) already exists."),
            (b'n', "cards_card_no_key"),
            (b'Z', "a field a newer server might add"),
        ]));
        assert_eq!(
            unique,
            f(&[
                (b'C', "23505"),
                (
                    b'M',
                    "duplicate key value violates unique constraint \"***\""
                ),
                (b'n', "cards_card_no_key"),
            ])
        );
    }

    #[test]
    fn a_forged_refusal_is_scrubbed_like_any_error() {
        let forged = scrub_fields(f(&[
            (b'C', "42501"),
            (b'M', "pgveil: 6222021234567890128"),
            (b'R', "exec_stmt_raise"),
            (b'W', "PL/pgSQL function f(text) line 2 at RAISE"),
        ]));
        assert!(forged.iter().all(|(_, v)| !v.ends_with(b"0128")));
    }
}
