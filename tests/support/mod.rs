//! What the integration tests share. The suite binary (`tests/suite/main.rs`) uses all of it;
//! `tests/failures.rs` takes the modules it needs (see there why it is a binary of its own).
//!
//! * [`launcher`]: the one launcher harness (a cleared environment, the built binary, output
//!   shown when an assertion fails; watched, on a terminal, in the background).
//! * [`cluster`]: real PostgreSQL primaries with followers (`etc/test-cluster`); [`certs`]:
//!   certificates for their servers.
//! * [`load`]: the app's load through pgpool, for the failure scenarios.
//! * [`proc`]: the one /proc/PID/stat reader, process trees, argv, sockets.
//! * Oracles that read back what the launcher writes: [`l2met`] log lines, [`conf_lexer`]
//!   (pgpool.conf as pgpool lexes it), [`pool_passwd`].
//! * [`release`]: a release location of this build, and both buildpacks as a platform runs them.
//! * [`pcp`]: a pcp client of the tests' own, to detach a node and read pgpool's own view of it.
//! * [`api`]: every item taken from the start_pgpool library, named in that one place.

pub mod api;
pub mod certs;
pub mod cluster;
pub mod conf_lexer;
pub mod l2met;
pub mod launcher;
pub mod load;
pub mod pcp;
pub mod pool_passwd;
pub mod proc;
pub mod release;
