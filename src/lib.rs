//! pgveil: an inline data-masking proxy for PostgreSQL.
//!
//! The crate is split into the rooms of DESIGN.md. `analyze`, `policy` and
//! `mask` are pure (no sockets, no tokio); `net` and `session` own all I/O.

pub mod analyze;
pub mod config;
pub mod demo;
pub mod mask;
pub mod net;
pub mod observe;
pub mod policy;
pub mod session;
