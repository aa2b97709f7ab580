//! start-pgpool as a library: `main.rs` calls [`cli::parse`] and [`launch::run`]; integration
//! tests and benchmarks reach the pure parts. docs/ARCHITECTURE.md is the map.
//!
//! Imports only go down this list: `launch` may use everything below it, `os` only the leaves.

pub mod cli;
pub mod config;
pub mod error;
pub mod exit;
pub mod launch;
pub mod log;
pub mod os;
pub mod pgpool;
pub mod secret;
pub mod status;
pub mod watch;

pub mod conf_lexer;
