//! Framing of PostgreSQL wire messages over byte buffers. Pure: no I/O.
//!
//! pgveil forwards the bytes a message arrived in; it only needs to know
//! where each message ends and what its type byte is. Messages pgveil writes
//! itself (errors, key data) are encoded with pgwire.

use bytes::{Buf, BufMut, BytesMut};
use pgwire::messages::response::{ErrorResponse, NoticeResponse};
use pgwire::messages::Message;

/// Startup-phase packets (no type byte) may not exceed this, as in
/// PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`.
pub const MAX_STARTUP_PACKET: usize = 10_000;

pub const SSL_REQUEST_CODE: i32 = 80877103;
pub const GSSENC_REQUEST_CODE: i32 = 80877104;
pub const CANCEL_REQUEST_CODE: i32 = 80877102;

/// Why a buffer does not hold a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("invalid message length {0}")]
    BadLength(i64),
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

/// Length in bytes (type byte included) of the typed message at the start of
/// `buf`, once its header is complete. `Ok(None)` means more bytes are needed.
pub fn typed_frame_len(buf: &[u8], limit: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(FrameError::BadLength(len.into()));
    }
    let total = len as usize + 1;
    if total > limit {
        return Err(FrameError::TooLarge { size: total, limit });
    }
    Ok(Some(total))
}

/// Iterates over the typed messages of a buffer already validated by
/// [`typed_frame_len`]; a trailing partial message is not yielded.
pub fn frames(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let len = typed_frame_len(rest, usize::MAX).ok()??;
        if rest.len() < len {
            return None;
        }
        let (msg, tail) = rest.split_at(len);
        rest = tail;
        Some(msg)
    })
}

/// Length of the untyped startup-phase packet at the start of `buf`.
pub fn startup_frame_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 8 {
        return Err(FrameError::BadLength(len.into()));
    }
    let len = len as usize;
    if len > MAX_STARTUP_PACKET {
        return Err(FrameError::TooLarge {
            size: len,
            limit: MAX_STARTUP_PACKET,
        });
    }
    Ok(Some(len))
}

/// A startup-phase packet from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    Ssl,
    GssEnc,
    Cancel {
        pid: i32,
        secret: Vec<u8>,
    },
    Startup {
        version: i32,
        params: Vec<(String, String)>,
    },
}

/// Decodes one complete untyped packet (length prefix included).
pub fn decode_startup_packet(packet: &[u8]) -> Result<StartupPacket, String> {
    if packet.len() < 8 {
        return Err("startup packet too short".into());
    }
    let code = i32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    let body = &packet[8..];
    match code {
        SSL_REQUEST_CODE => Ok(StartupPacket::Ssl),
        GSSENC_REQUEST_CODE => Ok(StartupPacket::GssEnc),
        CANCEL_REQUEST_CODE => {
            if body.len() < 8 {
                return Err("cancel request too short".into());
            }
            let pid = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
            Ok(StartupPacket::Cancel {
                pid,
                secret: body[4..].to_vec(),
            })
        }
        version if version >> 16 == 3 => {
            let mut params = Vec::new();
            let mut rest = body;
            loop {
                let Some(end) = rest.iter().position(|&b| b == 0) else {
                    return Err("startup packet is not null-terminated".into());
                };
                if end == 0 {
                    break;
                }
                let key = String::from_utf8_lossy(&rest[..end]).into_owned();
                rest = &rest[end + 1..];
                let Some(vend) = rest.iter().position(|&b| b == 0) else {
                    return Err(format!("startup parameter `{key}` has no value"));
                };
                let value = String::from_utf8_lossy(&rest[..vend]).into_owned();
                rest = &rest[vend + 1..];
                params.push((key, value));
            }
            Ok(StartupPacket::Startup { version, params })
        }
        other => Err(format!(
            "unsupported frontend protocol {}.{}: server supports 3.0 to 3.2",
            other >> 16,
            other & 0xffff
        )),
    }
}

/// Encodes a CancelRequest packet for the upstream.
pub fn encode_cancel_request(pid: i32, secret: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + secret.len());
    out.put_i32(12 + secret.len() as i32);
    out.put_i32(CANCEL_REQUEST_CODE);
    out.put_i32(pid);
    out.put_slice(secret);
    out
}

/// Encodes BackendKeyData with the given key.
pub fn encode_backend_key_data(pid: i32, secret: &[u8], out: &mut BytesMut) {
    out.put_u8(b'K');
    out.put_i32(8 + secret.len() as i32);
    out.put_i32(pid);
    out.put_slice(secret);
}

/// Reads `(pid, secret)` from a BackendKeyData message (type byte included).
pub fn decode_backend_key_data(msg: &[u8]) -> Option<(i32, Vec<u8>)> {
    if msg.len() < 9 || msg[0] != b'K' {
        return None;
    }
    let pid = i32::from_be_bytes([msg[5], msg[6], msg[7], msg[8]]);
    Some((pid, msg[9..].to_vec()))
}

/// Severity of an error pgveil reports itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
}

/// An error pgveil raises itself, encoded like PostgreSQL's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyError {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl ProxyError {
    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Fatal,
            code,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            ..Self::fatal(code, message)
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    fn fields(&self) -> Vec<(u8, String)> {
        let sev = match self.severity {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        };
        let mut fields = vec![
            (b'S', sev.to_string()),
            (b'V', sev.to_string()),
            (b'C', self.code.to_string()),
            (b'M', self.message.clone()),
        ];
        if let Some(d) = &self.detail {
            fields.push((b'D', d.clone()));
        }
        if let Some(h) = &self.hint {
            fields.push((b'H', h.clone()));
        }
        fields
    }

    /// Appends the ErrorResponse to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        // Encoding a message we built cannot fail short of the 2 GiB limit.
        let _ = ErrorResponse::new(self.fields()).encode(out);
    }

    pub fn to_bytes(&self) -> BytesMut {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out
    }
}

/// Appends a NoticeResponse carrying a warning.
pub fn encode_notice(code: &str, message: &str, out: &mut BytesMut) {
    let fields = vec![
        (b'S', "WARNING".to_string()),
        (b'V', "WARNING".to_string()),
        (b'C', code.to_string()),
        (b'M', message.to_string()),
    ];
    let _ = NoticeResponse::new(fields).encode(out);
}

/// Reads the SQLSTATE and severity (`V`, else `S`) of an ErrorResponse or
/// NoticeResponse (type byte included).
pub fn error_fields(msg: &[u8]) -> (Option<String>, Option<String>) {
    let mut body = msg.get(5..).unwrap_or_default();
    let (mut code, mut sev, mut sev_local) = (None, None, None);
    while let Some((&tag, rest)) = body.split_first() {
        if tag == 0 {
            break;
        }
        let Some(end) = rest.iter().position(|&b| b == 0) else {
            break;
        };
        let value = String::from_utf8_lossy(&rest[..end]).into_owned();
        match tag {
            b'C' => code = Some(value),
            b'V' => sev = Some(value),
            b'S' => sev_local = Some(value),
            _ => {}
        }
        body = &rest[end + 1..];
    }
    (code, sev.or(sev_local))
}

/// Rewrites an AuthenticationSASL message so that it no longer offers
/// `SCRAM-SHA-256-PLUS`: channel binding would bind the client to pgveil's
/// TLS certificate, which the upstream cannot verify. Returns `None` when the
/// message is not AuthenticationSASL.
pub fn strip_channel_binding(msg: &[u8]) -> Option<BytesMut> {
    if msg.len() < 9 || msg[0] != b'R' {
        return None;
    }
    let mut code = &msg[5..9];
    if code.get_i32() != 10 {
        return None;
    }
    let mechanisms: Vec<&[u8]> = msg[9..]
        .split(|&b| b == 0)
        .filter(|m| !m.is_empty() && *m != b"SCRAM-SHA-256-PLUS")
        .collect();
    let body_len: usize = mechanisms.iter().map(|m| m.len() + 1).sum::<usize>() + 1;
    let mut out = BytesMut::with_capacity(9 + body_len);
    out.put_u8(b'R');
    out.put_i32((8 + body_len) as i32);
    out.put_i32(10);
    for m in mechanisms {
        out.put_slice(m);
        out.put_u8(0);
    }
    out.put_u8(0);
    Some(out)
}

/// Authentication request code of an 'R' message.
pub fn auth_code(msg: &[u8]) -> Option<i32> {
    if msg.len() < 9 || msg[0] != b'R' {
        return None;
    }
    Some(i32::from_be_bytes([msg[5], msg[6], msg[7], msg[8]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_frames() {
        assert_eq!(typed_frame_len(b"Q\0\0", 100), Ok(None));
        assert_eq!(typed_frame_len(b"Q\0\0\0\x05x", 100), Ok(Some(6)));
        assert_eq!(
            typed_frame_len(b"Q\0\0\0\x03", 100),
            Err(FrameError::BadLength(3))
        );
        assert_eq!(
            typed_frame_len(b"Q\0\0\x01\0", 100),
            Err(FrameError::TooLarge {
                size: 257,
                limit: 100
            })
        );
        assert!(typed_frame_len(b"Q\xff\xff\xff\xff", 100).is_err());
    }

    #[test]
    fn startup_packets() {
        let mut p = Vec::new();
        p.put_i32(0);
        p.put_i32(196608);
        p.extend_from_slice(b"user\0alice\0database\0bank\0\0");
        let len = p.len() as i32;
        p[..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(startup_frame_len(&p), Ok(Some(p.len())));
        assert_eq!(
            decode_startup_packet(&p),
            Ok(StartupPacket::Startup {
                version: 196608,
                params: vec![
                    ("user".into(), "alice".into()),
                    ("database".into(), "bank".into())
                ]
            })
        );
        let cancel = encode_cancel_request(7, &[1, 2, 3, 4]);
        assert_eq!(
            decode_startup_packet(&cancel),
            Ok(StartupPacket::Cancel {
                pid: 7,
                secret: vec![1, 2, 3, 4]
            })
        );
        assert!(startup_frame_len(&[0, 0, 0x27, 0x11]).is_err());
        assert!(decode_startup_packet(&[0, 0, 0, 8, 0, 1, 0, 0]).is_err());
    }

    #[test]
    fn error_response_round_trip() {
        let bytes = ProxyError::fatal("08006", "upstream closed").to_bytes();
        assert_eq!(bytes[0], b'E');
        let (code, sev) = error_fields(&bytes);
        assert_eq!(code.as_deref(), Some("08006"));
        assert_eq!(sev.as_deref(), Some("FATAL"));
    }

    #[test]
    fn channel_binding_is_not_offered() {
        let mut msg = BytesMut::new();
        let body = b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0";
        msg.put_u8(b'R');
        msg.put_i32(8 + body.len() as i32);
        msg.put_i32(10);
        msg.put_slice(body);
        let out = strip_channel_binding(&msg).unwrap();
        assert_eq!(&out[9..], b"SCRAM-SHA-256\0\0");
        assert_eq!(typed_frame_len(&out, 1000), Ok(Some(out.len())));
    }
}
