//! policy: policy files -> compiled policy set; role -> decision per column;
//! hot reload. Pure except for the file watcher; never touches client sockets.

pub mod cli;
