//! Fast-path FunctionCall ('F') of masked roles. A fast-path call names a
//! function by OID and bypasses SQL, so no analysis sees it: only libpq's
//! large-object API is let through (psycopg2's `lobject`, libpq's `lo_*`),
//! unless the policy denies `pg_catalog.pg_largeobject` to the role. Large
//! objects hold no column a policy can name, and what a masked role writes
//! into one through SQL is analysed like any write; reading one is like
//! reading a table the policy does not name. `lo_import`/`lo_export`
//! (server files) and every other function stay refused. Must not touch
//! message pairing (mod.rs owns it).

use super::Guard;
use crate::analyze::plan::BlockReason;

/// The functions libpq's large-object API calls (fe-lobj.c looks them up
/// by name in pg_catalog). Built-in OIDs are fixed across releases;
/// `tests/masking.rs` checks them against the server's pg_proc.
pub const LARGE_OBJECT_API: &[(u32, &str)] = &[
    (715, "lo_create"),
    (952, "lo_open"),
    (953, "lo_close"),
    (954, "loread"),
    (955, "lowrite"),
    (956, "lo_lseek"),
    (957, "lo_creat"),
    (958, "lo_tell"),
    (964, "lo_unlink"),
    (1004, "lo_truncate"),
    (3170, "lo_lseek64"),
    (3171, "lo_tell64"),
    (3172, "lo_truncate64"),
];

impl Guard {
    /// Why a FunctionCall of a masked role is refused, if it is.
    pub(super) fn fast_path_refusal(&self, msg: &[u8]) -> Option<BlockReason> {
        if !self.inputs.view.is_restricted() {
            return None;
        }
        let oid = msg
            .get(5..9)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let api = oid.and_then(|o| LARGE_OBJECT_API.iter().find(|(f, _)| *f == o));
        match api {
            Some((_, name)) => self
                .inputs
                .view
                .table_denied("pg_catalog", "pg_largeobject")
                .map(|rule| BlockReason {
                    reason: format!("large objects are denied to this role (fast-path {name})"),
                    rule,
                    column: None,
                    hint: "Ask the DBA to allow pg_catalog.pg_largeobject for this role.".into(),
                }),
            None => Some(BlockReason {
                reason: format!(
                    "fast-path call of function OID {}: masked roles may call only libpq's large-object functions this way",
                    oid.map_or_else(|| "?".to_string(), |o| o.to_string())
                ),
                rule: "function-call".into(),
                column: None,
                hint: "Call the function with SELECT.".into(),
            }),
        }
    }
}
