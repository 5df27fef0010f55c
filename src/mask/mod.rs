//! mask: pure functions from a column value's wire bytes to masked bytes,
//! per type and format. No I/O, no tokio.
