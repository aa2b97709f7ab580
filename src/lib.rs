//! start-pgpool as a library: `main.rs` calls [`cli::parse`] and [`launch::run`]; the
//! integration tests reach the pure parts (config, render, the app's URL, the error line).
//! docs/ARCHITECTURE.md is the map.
//!
//! Imports only go down this list: `launch` may use everything below it, `os` only the leaves.

pub mod launch;
pub mod cli;
mod status;
mod watch;
pub mod pgpool;
pub mod config;
mod os;
mod log;
pub mod error;
pub mod exit;
pub mod secret;

pub mod conf_lexer;
