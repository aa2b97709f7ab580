//! Every item the tests take from the start_pgpool library, each named once, here: when the
//! library's modules move, only the paths in this file change. A test reads
//! `backends::resolve`, `render::render`.
//!
//! What the tests use of these beyond their names: `Backend`'s fields `host`, `port`, `user`,
//! `dbname`, `password` (and struct update syntax on it), `Role::Primary`, `Settings::from_env`
//! and `Settings::url_vars`, `Env` collected from `(String, String)` pairs, the fields
//! `pgpool_conf` and `pool_passwd` of what `render` returns, `Secret::new` and `expose`, and
//! that the release `family::release` returns parses from and prints as `4.3.5`, with its
//! `backend_tls` field (whether it holds a TLS mode per server).

pub mod app_env {
    pub use start_pgpool::launch::app_env::database_url;
}

pub mod backends {
    pub use start_pgpool::config::backends::{Backend, Role, parse, resolve};
}

pub mod error {
    pub use start_pgpool::error::line;
}

/// The catalogue of log events: `events::NODE_DOWN.name` is `node-down`.
pub use start_pgpool::log::events;

pub mod family {
    pub use start_pgpool::pgpool::Release;
    pub use start_pgpool::pgpool::locate::release;
}

pub mod render {
    pub use start_pgpool::pgpool::Files;
    pub use start_pgpool::pgpool::render::{pool_passwd, render};
}

pub mod secret {
    pub use start_pgpool::secret::Secret;
}

pub mod settings {
    pub use start_pgpool::config::{Env, Settings};
}
