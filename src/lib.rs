//! start-pgpool as a library: `main.rs` calls [`cli::parse`] and [`launch::run`]; the
//! integration tests reach the pure parts (config, render, the app's URL, the error line).
//! docs/ARCHITECTURE.md is the map.
//!
//! Imports only go down this list: `launch` may use everything below it, `os` only the leaves.

pub mod cli;
pub mod config;
pub mod error;
pub mod exit;
pub mod launch;
pub mod log;
mod os;
pub mod pgpool;
pub mod secret;
mod servers;
mod status;
mod watch;
