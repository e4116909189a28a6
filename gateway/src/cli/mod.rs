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
            eprintln!("airlock: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
