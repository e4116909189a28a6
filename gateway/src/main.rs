//! The `airlock` binary: the daemon (`airlock serve`) and the CLI that
//! manages it. The library (`airlock`) does the work; this is its edge,
//! where errors become one line on standard error and an exit status.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
