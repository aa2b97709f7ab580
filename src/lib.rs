//! start-pgpool as a library: `main.rs` calls [`cli::parse`] and [`launch::run`]; the
//! integration tests reach the pure parts (config, render, the app's URL, the error line).
//! docs/ARCHITECTURE.md is the map.
//!
//! The modules in docs/ARCHITECTURE.md's layer order, top first: each imports only from those
//! below it (tests/suite/map.rs holds this list, and every `use crate::`, to that table). One
//! layer per group, so that rustfmt keeps the order.

pub mod launch;

mod status;

pub mod cli;

mod watch;

pub mod pgpool;

mod servers;

pub mod config;

mod os;

pub mod error;
pub mod exit;
pub mod log;
pub mod secret;
