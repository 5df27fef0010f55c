//! analyze: SQL text -> lineage of every output column and every use of a
//! protected column -> plan. Pure: no sockets, no tokio.

pub mod cli;
pub mod policy_view;
