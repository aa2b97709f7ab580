//! The command line: options, then the app's command. Nothing here reads the environment; its
//! `--help` lists every setting the environment may hold, from their one definition.

use std::ffi::OsString;

use clap::{CommandFactory as _, FromArgMatches as _, Parser};

use crate::config::settings;

/// Run Pgpool-II beside COMMAND so its reads spread over a PostgreSQL primary and its
/// followers. Configured by environment variables (listed below; see README.md);
/// DATABASE_URL is pointed at pgpool for COMMAND.
#[derive(Debug, Parser)]
#[command(
    name = "start-pgpool",
    version,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub sub: Option<Sub>,

    /// Render pgpool.conf for the current environment to stdout and exit, starting nothing.
    /// It holds no passwords.
    #[arg(long)]
    pub print_config: bool,

    /// The app's command and its arguments.
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required_unless_present = "print_config"
    )]
    pub command: Vec<OsString>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Print the nodes of the start-pgpool running in this dyno or container (found through
    /// its runtime directory for PGPOOL_PORT): role, up/down, lag and reads served. To run an
    /// app that is itself called `status`, write `start-pgpool -- status`.
    Status,
}

pub fn parse() -> Cli {
    try_parse_from(std::env::args_os()).unwrap_or_else(|e| crate::error::usage_exit(e))
}

pub fn try_parse_from(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
) -> Result<Cli, clap::Error> {
    let matches = Cli::command()
        .after_help(environment_help())
        .try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

/// The "Environment:" section of `--help`: every `PGPOOL_*` setting with its default.
pub fn environment_help() -> String {
    let width = settings::ALL
        .iter()
        .map(|a| a.name.len())
        .max()
        .unwrap_or(0);
    let mut s = String::from("Environment:\n");
    for a in settings::ALL {
        s.push_str(&format!(
            "  {:width$}  {} [default: {}]\n",
            a.name,
            a.doc,
            a.shown_default().replace('`', "")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_after_options_keeps_its_own_flags() {
        let c =
            Cli::try_parse_from(["start-pgpool", "bundle", "exec", "puma", "-p", "5000"]).unwrap();
        assert_eq!(c.command.len(), 5);
        let c = Cli::try_parse_from(["start-pgpool", "--", "--weird", "-x"]).unwrap();
        assert_eq!(
            c.command,
            vec![OsString::from("--weird"), OsString::from("-x")]
        );
    }

    #[test]
    fn status_is_a_subcommand_unless_after_double_dash() {
        let c = Cli::try_parse_from(["start-pgpool", "status"]).unwrap();
        assert!(matches!(c.sub, Some(Sub::Status)));
        let c = Cli::try_parse_from(["start-pgpool", "--", "status"]).unwrap();
        assert!(c.sub.is_none());
        assert_eq!(c.command, vec![OsString::from("status")]);
    }

    #[test]
    fn help_lists_every_setting() {
        let e = try_parse_from(["start-pgpool", "--help"]).unwrap_err();
        let help = e.render().to_string();
        assert!(help.contains("Environment:"), "{help}");
        for a in settings::ALL {
            assert!(help.contains(a.name), "{} missing from --help", a.name);
        }
        assert!(help.contains("PGPOOL_PORT") && help.contains("[default: 5432]"));
    }

    #[test]
    fn usage_errors_are_one_line() {
        let e = Cli::try_parse_from(["start-pgpool"]).unwrap_err();
        assert_eq!(
            crate::error::usage_line(&e),
            "start-pgpool: error: COMMAND: no command given. Usage: start-pgpool [OPTIONS] [--] COMMAND [ARGS...]"
        );
        let e = Cli::try_parse_from(["start-pgpool", "--print-config=x"]).unwrap_err();
        let l = crate::error::usage_line(&e);
        assert!(
            l.starts_with("start-pgpool: error: ") && !l.contains('\n'),
            "{l}"
        );
    }

    #[test]
    fn no_command_is_a_usage_error() {
        let e = Cli::try_parse_from(["start-pgpool"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(Cli::try_parse_from(["start-pgpool", "--print-config"]).is_ok());
    }
}
