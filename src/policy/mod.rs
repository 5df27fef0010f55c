//! policy: policy files -> compiled policy set; role -> decision per column;
//! hot reload. Pure except for the file watcher and the role-membership and
//! `check --upstream` queries; never touches client sockets.

pub mod cli;
mod compile;
pub mod error;
pub mod model;
mod role;
mod source;
mod store;
pub mod upstream;

pub use compile::{read_sources, KeySource, PolicySet};
pub use error::{PolicyError, PolicyErrors, Problem, Severity, SourceLocation};
pub use role::{RoleMembership, RoleMembershipCache, RolePolicy};
pub use source::SourceFile;
pub use store::{PolicyStore, PolicyWatcher};
#[cfg(test)]
mod tests;
