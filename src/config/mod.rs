//! What the launcher was told: the environment snapshot, every `PGPOOL_*` setting (one
//! table entry each), the backends from the URLs, and the rule a value must meet to enter
//! pgpool.conf. Pure: values in, values or one-line errors naming the variable out.

pub mod backends;
pub mod conf_value;
pub mod env;
pub mod settings;
pub mod tls;

pub use backends::{Backend, Role};
pub use env::Env;
pub use settings::Settings;
