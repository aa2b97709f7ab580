//! `start-pgpool [OPTIONS] [--] COMMAND [ARGS...]`: see README.md.
//!
//! The flow is env -> backends -> rendered files -> pgpool process -> app process -> exit;
//! `launch::run` walks it, and this file only turns its outcome into an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = start_pgpool::cli::parse();
    match start_pgpool::launch::run(cli) {
        Ok(code) => code.into(),
        Err(err) => {
            start_pgpool::error::print(&err);
            start_pgpool::exit::Code::LAUNCH_FAILED.into()
        }
    }
}
