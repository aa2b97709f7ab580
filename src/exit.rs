//! Every exit code the launcher can return, in one place.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code(pub u8);

impl Code {
    /// Bad configuration, pgpool failed to start or died: anything that is the launcher's fault.
    pub const LAUNCH_FAILED: Code = Code(1);
    /// clap's own code for a usage error.
    pub const USAGE: Code = Code(2);
    /// The command exists but could not be executed (shell convention).
    pub const NOT_EXECUTABLE: Code = Code(126);
    /// The command was not found (shell convention).
    pub const NOT_FOUND: Code = Code(127);

    /// The app's status as a shell would report it: its exit code, or 128+N for signal N.
    pub fn from_status(status: ExitStatus) -> Code {
        if let Some(code) = status.code() {
            Code((code & 0xff) as u8)
        } else if let Some(sig) = status.signal() {
            Code::from_signal(sig)
        } else {
            Code::LAUNCH_FAILED
        }
    }

    pub fn from_signal(sig: i32) -> Code {
        Code((128 + sig).clamp(0, 255) as u8)
    }

    /// What a failed spawn of the app means, by the shell's rules.
    pub fn from_spawn_error(err: &std::io::Error) -> Code {
        match err.kind() {
            std::io::ErrorKind::NotFound => Code::NOT_FOUND,
            _ => Code::NOT_EXECUTABLE,
        }
    }
}

impl From<Code> for std::process::ExitCode {
    fn from(code: Code) -> Self {
        std::process::ExitCode::from(code.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_and_signals_map_like_a_shell() {
        assert_eq!(Code::from_status(ExitStatus::from_raw(3 << 8)), Code(3));
        assert_eq!(Code::from_status(ExitStatus::from_raw(0)), Code(0));
        // raw wait status 15 = killed by SIGTERM
        assert_eq!(Code::from_status(ExitStatus::from_raw(15)), Code(143));
        assert_eq!(Code::from_status(ExitStatus::from_raw(9)), Code(137));
    }

    #[test]
    fn spawn_errors_map_to_126_and_127() {
        let nf = std::io::Error::from(std::io::ErrorKind::NotFound);
        let pd = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(Code::from_spawn_error(&nf), Code::NOT_FOUND);
        assert_eq!(Code::from_spawn_error(&pd), Code::NOT_EXECUTABLE);
    }
}
