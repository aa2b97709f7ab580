//! start-pgpool as a library, so integration tests and benchmarks can reach the pure parts.

pub mod app_env;
pub mod backends;
pub mod cli;
pub mod conf_lexer;
pub mod discover;
pub mod error;
pub mod exit;
pub mod family;
pub mod launch;
pub mod log;
pub mod monitor;
pub mod pcp;
pub mod pgpool;
pub mod ready;
pub mod render;
pub mod runtime_dir;
pub mod secret;
pub mod settings;
pub mod status;
pub mod stuck;
pub mod supervise;
