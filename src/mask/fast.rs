//! The text masks of the hot path, written straight into the outgoing
//! message buffer: no allocation per value, and ASCII values (digits, e-mail
//! addresses) handled as bytes without decoding UTF-8. They give the same
//! bytes as the reference functions in `text`, which the tests hold them to.

use bytes::{BufMut, BytesMut};

use super::text::{is_compound_surname, is_name_separator, is_separator};

const FILL: u8 = b'*';

fn put_char(out: &mut BytesMut, c: char) {
    let mut b = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
}

#[inline]
fn put_fill_char(out: &mut BytesMut, fill: char, n: usize) {
    if fill.is_ascii() {
        out.put_bytes(fill as u8, n);
    } else {
        for _ in 0..n {
            put_char(out, fill);
        }
    }
}

/// Byte offset of character `k` of `s` (its length when it has fewer).
fn char_offset(s: &str, k: usize) -> usize {
    if s.is_ascii() {
        return k.min(s.len());
    }
    s.char_indices().nth(k).map_or(s.len(), |(i, _)| i)
}

/// Characters `first` and `last` of `n` kept, the rest filled one for one.
fn keep_ends(s: &str, n: usize, first: usize, last: usize, fill: char, out: &mut BytesMut) {
    if n <= first + last {
        put_fill_char(out, fill, n);
        return;
    }
    out.extend_from_slice(&s.as_bytes()[..char_offset(s, first)]);
    put_fill_char(out, fill, n - first - last);
    out.extend_from_slice(&s.as_bytes()[char_offset(s, n - last)..]);
}

pub(super) fn keep(s: &str, first: usize, last: usize, fill: char, out: &mut BytesMut) {
    keep_ends(s, s.chars().count(), first, last, fill, out);
}

/// Characters that count as digit positions (separators do not).
fn positions(s: &str) -> usize {
    if s.is_ascii() {
        s.len() - s.bytes().filter(|&b| b == b' ' || b == b'-').count()
    } else {
        s.chars().filter(|c| !is_separator(*c)).count()
    }
}

/// `keep` over the `n` non-separator characters; separators stay in place.
fn keep_positions(s: &str, n: usize, first: usize, last: usize, out: &mut BytesMut) {
    if n == s.len() {
        // ASCII without separators: the usual ID, card and phone number.
        return keep_ends(s, n, first, last, '*', out);
    }
    let all = n <= first + last;
    let mut i = 0;
    if s.is_ascii() {
        for &b in s.as_bytes() {
            if b == b' ' || b == b'-' {
                out.put_u8(b);
                continue;
            }
            let kept = !all && (i < first || i >= n - last);
            out.put_u8(if kept { b } else { FILL });
            i += 1;
        }
        return;
    }
    for c in s.chars() {
        if is_separator(c) {
            put_char(out, c);
            continue;
        }
        if !all && (i < first || i >= n - last) {
            put_char(out, c);
        } else {
            out.put_u8(FILL);
        }
        i += 1;
    }
}

pub(super) fn bank_card(s: &str, first: usize, last: usize, out: &mut BytesMut) {
    let n = positions(s);
    let first = if n < 16 { first.min(6) } else { first };
    keep_positions(s, n, first, last, out);
}

pub(super) fn cn_id_card(s: &str, first: usize, last: usize, out: &mut BytesMut) {
    let n = positions(s);
    let last = if n == 15 { last.min(3) } else { last };
    keep_positions(s, n, first, last, out);
}

pub(super) fn cn_mobile(s: &str, out: &mut BytesMut) {
    let n = positions(s);
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
    out.extend_from_slice(prefix.as_bytes());
    // The prefix is digits and '+', never separators.
    keep_positions(rest, n - prefix_len, 3, 4, out);
}

pub(super) fn cn_name(s: &str, out: &mut BytesMut) {
    let mut letters = 0;
    let mut separated = false;
    // Byte ends of the first two characters.
    let mut ends = [0usize; 2];
    for (k, (i, c)) in s.char_indices().enumerate() {
        if k < 2 {
            ends[k] = i + c.len_utf8();
        }
        if is_name_separator(c) {
            separated = true;
        } else {
            letters += 1;
        }
    }
    let mut keep = 1;
    if letters >= 3 && is_compound_surname(&s[..ends[1]]) {
        keep = 2;
    }
    if letters <= 1 {
        keep = 0;
    }
    if !separated {
        // Every character is a letter: the kept ones are the first `keep`.
        let cut = if keep == 0 { 0 } else { ends[keep - 1] };
        out.extend_from_slice(&s.as_bytes()[..cut]);
        out.put_bytes(FILL, letters - keep);
        return;
    }
    let mut i = 0;
    for c in s.chars() {
        if is_name_separator(c) {
            put_char(out, c);
            continue;
        }
        if i < keep {
            put_char(out, c);
        } else {
            out.put_u8(FILL);
        }
        i += 1;
    }
}

pub(super) fn email(s: &str, out: &mut BytesMut) {
    // '@' is one byte in UTF-8 and no other character contains that byte.
    let Some(at) = memchr::memrchr(b'@', s.as_bytes()) else {
        out.put_bytes(FILL, s.chars().count());
        return;
    };
    let (local, domain) = s.split_at(at);
    let n = local.chars().count();
    if n <= 1 {
        out.put_bytes(FILL, n);
    } else {
        out.extend_from_slice(&local.as_bytes()[..char_offset(local, 1)]);
        out.put_bytes(FILL, n - 1);
    }
    out.extend_from_slice(domain.as_bytes());
}

/// The same masks for values that are all ASCII (checked by the caller),
/// on bytes: one character is one byte, and the only separators are the
/// ASCII ones of `is_separator` and `is_name_separator`.
pub(super) mod ascii {
    use bytes::{BufMut, BytesMut};

    use super::{put_fill_char, FILL};

    fn is_separator(b: u8) -> bool {
        b == b' ' || b == b'-'
    }

    fn is_name_separator(b: u8) -> bool {
        matches!(b, b' ' | b'.' | b'-' | b'\'')
    }

    fn keep_ends(s: &[u8], first: usize, last: usize, fill: char, out: &mut BytesMut) {
        let n = s.len();
        if n <= first + last {
            return put_fill_char(out, fill, n);
        }
        out.put_slice(&s[..first]);
        put_fill_char(out, fill, n - first - last);
        out.put_slice(&s[n - last..]);
    }

    pub(in crate::mask) fn keep(
        s: &[u8],
        first: usize,
        last: usize,
        fill: char,
        out: &mut BytesMut,
    ) {
        keep_ends(s, first, last, fill, out);
    }

    fn positions(s: &[u8]) -> usize {
        s.len() - s.iter().filter(|&&b| is_separator(b)).count()
    }

    fn keep_positions(s: &[u8], n: usize, first: usize, last: usize, out: &mut BytesMut) {
        if n == s.len() {
            return keep_ends(s, first, last, '*', out);
        }
        let all = n <= first + last;
        let mut i = 0;
        for &b in s {
            if is_separator(b) {
                out.put_u8(b);
                continue;
            }
            let kept = !all && (i < first || i >= n - last);
            out.put_u8(if kept { b } else { FILL });
            i += 1;
        }
    }

    pub(in crate::mask) fn bank_card(s: &[u8], first: usize, last: usize, out: &mut BytesMut) {
        let n = positions(s);
        let first = if n < 16 { first.min(6) } else { first };
        keep_positions(s, n, first, last, out);
    }

    pub(in crate::mask) fn cn_id_card(s: &[u8], first: usize, last: usize, out: &mut BytesMut) {
        let n = positions(s);
        let last = if n == 15 { last.min(3) } else { last };
        keep_positions(s, n, first, last, out);
    }

    pub(in crate::mask) fn cn_mobile(s: &[u8], out: &mut BytesMut) {
        let n = positions(s);
        let prefix_len = if s.starts_with(b"+86") {
            3
        } else if s.starts_with(b"0086") && n == 15 {
            4
        } else if s.starts_with(b"86") && n == 13 {
            2
        } else {
            0
        };
        out.put_slice(&s[..prefix_len]);
        keep_positions(&s[prefix_len..], n - prefix_len, 3, 4, out);
    }

    /// Latin-script names: compound surnames are Chinese, so one initial.
    pub(in crate::mask) fn cn_name(s: &[u8], out: &mut BytesMut) {
        let letters = s.iter().filter(|&&b| !is_name_separator(b)).count();
        let keep = usize::from(letters > 1);
        if letters == s.len() {
            out.put_slice(&s[..keep]);
            out.put_bytes(FILL, letters - keep);
            return;
        }
        let mut i = 0;
        for &b in s {
            if is_name_separator(b) {
                out.put_u8(b);
                continue;
            }
            out.put_u8(if i < keep { b } else { FILL });
            i += 1;
        }
    }

    pub(in crate::mask) fn email(s: &[u8], out: &mut BytesMut) {
        // Addresses are short: a plain loop beats a vector search's setup.
        let Some(at) = s.iter().rposition(|&b| b == b'@') else {
            return out.put_bytes(FILL, s.len());
        };
        if at <= 1 {
            out.put_bytes(FILL, at);
        } else {
            out.put_u8(s[0]);
            out.put_bytes(FILL, at - 1);
        }
        out.put_slice(&s[at..]);
    }
}
