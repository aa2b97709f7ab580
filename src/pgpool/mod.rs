//! pgpool itself: which release (family, locate), the files it reads (render, runtime_dir),
//! the running process (process, guard, relay), and the two ways the launcher talks to it
//! (sql, pcp).

pub mod family;
pub(crate) mod guard;
pub mod locate;
pub(crate) mod node;
pub(crate) mod pcp;
pub(crate) mod process;
pub(crate) mod relay;
pub mod render;
pub mod runtime_dir;
pub(crate) mod sql;

pub use family::{Family, Release, Version};
pub(crate) use process::Pgpool;
pub use runtime_dir::{File, Files, RuntimeDir};
