//! The servers themselves, as the launcher reaches them directly (not through pgpool):
//! `tls.rs`, the check that each one gives the TLS its URL asks for, before pgpool starts;
//! `reach.rs`, which one does not accept a TCP connection, when pgpool was not ready.

pub mod reach;
pub mod tls;
