//! Scrubbing of server ErrorResponse and NoticeResponse messages for
//! restricted roles (fields and quoted values that may carry row data).
//! Must not change message pairing or the guard's state.

use bytes::BytesMut;

use super::super::wire;
use super::messages;
use super::refusal;
use super::Guard;

/// Fields a restricted role receives: severity (S, V), SQLSTATE (C),
/// message and hint (M, H; only PostgreSQL's fixed words, see
/// `redact_values`), the position in the client's own statement text (P)
/// and the server's source location (F, L, R). Everything else (DETAIL,
/// CONTEXT, the internal query and its position, fields a newer server
/// adds) is dropped: any of them can quote row values.
const KEPT_FIELDS: &[u8] = b"SVCMHPFLR";

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
        // Scanned only when a message has a conversion to compare.
        let said = std::cell::OnceCell::new();
        let fields = scrub_fields(fields, &|span| {
            said.get_or_init(|| self.said_names())
                .iter()
                .any(|n| n.as_bytes() == span)
        });
        wire::encode_notice_fields(out, msg[0], &fields);
    }
}

/// The fields a restricted role may receive of one error or notice; a
/// conversion in its message is shown when it is a name the client wrote
/// (`said`) or the value of an object-name field shown with it.
fn scrub_fields(fields: Vec<(u8, Vec<u8>)>, said: &dyn Fn(&[u8]) -> bool) -> Vec<(u8, Vec<u8>)> {
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
    let names: Vec<Vec<u8>> = fields
        .iter()
        .filter(|(t, _)| NAME_FIELDS.contains(t) && !in_server_code)
        .map(|(_, v)| v.clone())
        .collect();
    let known = |span: &[u8]| said(span) || names.iter().any(|n| n.as_slice() == span);
    fields
        .into_iter()
        .filter_map(|(t, v)| match t {
            b'M' if in_server_code => Some((t, HIDDEN_MESSAGE.to_vec())),
            b'H' if in_server_code => None,
            b'M' => Some((
                t,
                redact_values(&v, &known).unwrap_or_else(|| UNKNOWN_MESSAGE.to_vec()),
            )),
            b'H' => redact_values(&v, &known).map(|v| (t, v)),
            _ if NAME_FIELDS.contains(&t) => (!in_server_code).then_some((t, v)),
            _ if KEPT_FIELDS.contains(&t) => Some((t, v)),
            _ => None,
        })
        .collect()
}

/// What replaces a message that is an instance of none of PostgreSQL's
/// message texts: pgveil cannot tell its fixed words from values in it.
const UNKNOWN_MESSAGE: &[u8] = b"pgveil: the server's message is hidden because it is none of \
PostgreSQL 15's message texts, so pgveil cannot tell its words from values in it; the SQLSTATE is \
the server's";

/// A message or hint as a restricted role may read it: the fixed words of
/// the PostgreSQL message it is an instance of, every value the server put
/// into it (quoted, numeric, hex bytes, bare text) replaced by `***`.
fn redact_values(message: &[u8], known: &dyn Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    messages::fixed_text(message, known)
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
    fn quoted_text_numbers_and_bare_values_are_redacted() {
        let r =
            |m: &str| String::from_utf8(redact_values(m.as_bytes(), &|_| false).unwrap()).unwrap();
        assert_eq!(
            r("invalid input syntax for type integer: \"11010519\""),
            "invalid input syntax for type ***: \"***\""
        );
        assert_eq!(
            r("requested character too large for encoding: 19491231"),
            "requested character too large for encoding: ***"
        );
        // PostgreSQL quotes some values and not others.
        assert_eq!(
            r("invalid normalization form: 张三丰"),
            "invalid normalization form: ***"
        );
        assert_eq!(
            r("张三丰 is not a valid encoding name"),
            "*** is not a valid encoding name"
        );
        assert_eq!(r("division by zero"), "division by zero");
        let unknown = scrub_fields(f(&[(b'M', "张三丰"), (b'H', "6222")]), &|_| false);
        assert_eq!(unknown, vec![(b'M', UNKNOWN_MESSAGE.to_vec())]);
    }

    #[test]
    fn messages_of_server_code_are_replaced_and_unknown_fields_dropped() {
        let raised = scrub_fields(
            f(&[
                (b'S', "ERROR"),
                (b'C', "P0001"),
                (b'M', "card 6222021234567890128"),
                (b'H', "6222"),
                (b'c', "6222021234567890128"),
                (b'W', "PL/pgSQL function trg() line 3 at RAISE"),
            ]),
            &|_| false,
        );
        assert_eq!(
            raised,
            vec![
                (b'S', b"ERROR".to_vec()),
                (b'C', b"P0001".to_vec()),
                (b'M', HIDDEN_MESSAGE.to_vec())
            ]
        );
        let unique = scrub_fields(
            f(&[
                (b'C', "23505"),
                (
                    b'M',
                    "duplicate key value violates unique constraint \"cards_card_no_key\"",
                ),
                (b'D', "Key (card_no)=(6222021234567890128) already exists."),
                (b'n', "cards_card_no_key"),
                (b'Z', "a field a newer server might add"),
            ]),
            &|_| false,
        );
        assert_eq!(
            unique,
            f(&[
                (b'C', "23505"),
                // The constraint's name is shown in its own field too.
                (
                    b'M',
                    "duplicate key value violates unique constraint \"cards_card_no_key\""
                ),
                (b'n', "cards_card_no_key"),
            ])
        );
    }

    #[test]
    fn names_the_client_wrote_are_shown_and_nothing_else() {
        let said = |span: &[u8]| span == b"__dne__";
        let missing = scrub_fields(
            f(&[(b'M', "relation \"__dne__\" does not exist"), (b'P', "15")]),
            &said,
        );
        assert_eq!(
            missing,
            f(&[(b'M', "relation \"__dne__\" does not exist"), (b'P', "15")])
        );
        let cast = scrub_fields(
            f(&[(b'M', "invalid input syntax for type integer: \"11010519\"")]),
            &said,
        );
        assert_eq!(
            cast,
            f(&[(b'M', "invalid input syntax for type ***: \"***\"")])
        );
        // Inside server code a name field proves nothing.
        let raised = scrub_fields(
            f(&[
                (b'M', "relation \"6222\" does not exist"),
                (b't', "6222"),
                (b'W', "PL/pgSQL function f() line 2 at RAISE"),
            ]),
            &said,
        );
        assert_eq!(raised, vec![(b'M', HIDDEN_MESSAGE.to_vec())]);
    }

    #[test]
    fn a_forged_refusal_is_scrubbed_like_any_error() {
        let forged = scrub_fields(
            f(&[
                (b'C', "42501"),
                (b'M', "pgveil: 6222021234567890128"),
                (b'R', "exec_stmt_raise"),
                (b'W', "PL/pgSQL function f(text) line 2 at RAISE"),
            ]),
            &|_| false,
        );
        assert!(forged.iter().all(|(_, v)| !v.ends_with(b"0128")));
    }
}
