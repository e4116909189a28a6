//! The `airlock` binary: the daemon (`airlock serve`) and the CLI that
//! manages it. The library (`airlock`) does the work; this is its edge,
//! where errors become one line on standard error and an exit status.
// See lib.rs, "Lints".
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::unchecked_time_subtraction
)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
