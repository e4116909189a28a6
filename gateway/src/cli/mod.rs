//! The `airlock` command line: `serve` runs the daemon; every other
//! command is a client of the daemon's admin API.

mod args;
mod commands;
mod output;
mod value;

use std::process::ExitCode;

use clap::Parser;

pub use args::Cli;

/// Parses the command line and runs it. Every failure is one message on
/// standard error and exit status 1; nothing panics on bad input.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("airlock: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, leaving out a cause whose text the
/// message already carries (many of our errors quote their cause).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn causes_are_not_repeated() {
        let io = std::io::Error::other("disk full");
        let e = anyhow::Error::new(io).context("writing x: disk full (free some space)");
        assert_eq!(one_line(&e), "writing x: disk full (free some space)");
        let e = anyhow::Error::new(std::io::Error::other("boom")).context("reading y");
        assert_eq!(one_line(&e), "reading y: boom");
    }
}
