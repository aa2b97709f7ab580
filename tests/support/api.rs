//! Every item the tests take from the start_pgpool library, each named once, here: when the
//! library's modules move, only the paths in this file change. The modules below carry the
//! library's current module names, so a test reads `backends::resolve`, `render::render`.

pub mod app_env {
    pub use start_pgpool::app_env::database_url;
}

pub mod backends {
    pub use start_pgpool::backends::{Backend, Role, parse, resolve};
}

pub mod error {
    pub use start_pgpool::error::line;
}

pub mod family {
    pub use start_pgpool::family::version;
}

pub mod render {
    pub use start_pgpool::render::{pool_passwd, render};
}

pub mod secret {
    pub use start_pgpool::secret::Secret;
}

pub mod settings {
    pub use start_pgpool::settings::{Env, Settings};
}
