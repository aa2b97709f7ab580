//! The one way a launcher error reaches the user: one line on stderr, prefixed, whole context
//! chain on that line. Messages name variables, never values (see config/backends.rs).

pub fn print(err: &anyhow::Error) {
    eprintln!("{}", line(err));
}

pub fn line(err: &anyhow::Error) -> String {
    let text = format!("{err:#}");
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("start-pgpool: error: {one_line}")
}

/// clap's own errors take several lines (message, usage, hint). `--help` and `--version` stay
/// as clap prints them; a real usage error becomes our one line, with clap's exit code 2.
#[expect(
    clippy::exit,
    reason = "a usage error comes before anything is started, so there is nothing to clean up"
)]
pub fn usage_exit(e: clap::Error) -> ! {
    use clap::error::ErrorKind as K;
    if matches!(
        e.kind(),
        K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit()
    }
    eprintln!("{}", usage_line(&e));
    std::process::exit(crate::exit::Code::USAGE.0.into())
}

pub fn usage_line(e: &clap::Error) -> String {
    let what = if e.kind() == clap::error::ErrorKind::MissingRequiredArgument {
        "COMMAND: no command given. Usage: start-pgpool [OPTIONS] [--] COMMAND [ARGS...]"
            .to_string()
    } else {
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or_default();
        first.strip_prefix("error: ").unwrap_or(first).to_string()
    };
    line(&anyhow::anyhow!(what))
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_line_with_the_context_chain() {
        let e = anyhow::anyhow!("inner\nproblem").context("PGPOOL_PORT: bad");
        assert_eq!(
            super::line(&e),
            "start-pgpool: error: PGPOOL_PORT: bad: inner problem"
        );
    }
}
