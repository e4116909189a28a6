//! Airlock's developer tasks, run as `cargo xtask <command>`.
//!
//! - `setup`: install what the build needs (Debian packages, nightly with
//!   `rust-src`, `bpf-linker`); idempotent and fast when all is present.
//! - `build-ebpf`: build `gateway-ebpf` with nightly and copy the object to
//!   `target/ebpf/airlock.bpf.o`, where `gateway/build.rs` embeds it.
//! - `build`, `run`, `test`: the above, then the host build of the daemon;
//!   `test` also runs `cargo fmt --check` and clippy with `-D warnings`.
//! - `bench`: keep-alive HTTPS through the gateway against direct (BENCHMARKS.md).
//! - `soak`: a long run through the gateway; memory and descriptors must stay flat.
//! - `profile`: instructions per proxied request under callgrind.
//! - `fuzz`: the cargo-fuzz targets in `fuzz/`, each for a bounded time
//!   (docs/fuzzing.md); `test` also runs each briefly.
// See gateway/src/lib.rs, "Lints".
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::unchecked_time_subtraction
)]

mod bench;
mod cmd;
mod ebpf;
mod fuzz;
mod host;
mod leaks;
mod leftovers;
mod lint;
mod profile;
mod setup;
mod soak;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Airlock's developer tasks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the toolchains and system packages the build needs.
    Setup,
    /// Build the eBPF programs into target/ebpf/airlock.bpf.o.
    BuildEbpf {
        /// Build the eBPF crate's dev profile instead of release.
        #[arg(long)]
        debug: bool,
    },
    /// Build the eBPF programs, then the `airlock` daemon.
    Build {
        /// Build the daemon in release mode.
        #[arg(long)]
        release: bool,
    },
    /// Set up, build (release) and run `airlock serve ARGS...` in the foreground.
    Run {
        /// Arguments passed to `airlock serve`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build the eBPF programs, then `cargo test --workspace ARGS...`;
    /// without ARGS, then each fuzz target briefly.
    Test {
        /// Arguments passed to `cargo test --workspace`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmark the explicit proxy against direct requests to a local nginx.
    Bench(bench::BenchArgs),
    /// Run the end-of-suite leak scan again on evidence kept with
    /// AIRLOCK_TEST_KEEP_DATA=1 (default target/test-evidence).
    LeakScan {
        #[arg(value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
    /// Soak the explicit proxy (default 1,000,000 requests); fail if memory or descriptors grow.
    Soak(soak::SoakArgs),
    /// Count the gateway's instructions per proxied request with callgrind.
    Profile(profile::ProfileArgs),
    /// Build the fuzz targets (nightly, ASan) and run each for a bounded time.
    Fuzz(fuzz::FuzzArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Setup => setup::run()?,
        Command::BuildEbpf { debug } => ebpf::build(debug)?,
        Command::Build { release } => {
            timed("build-ebpf", || ebpf::build(false))?;
            timed("build airlock", || host::build_airlock(release))?;
        }
        Command::Run { args } => {
            timed("setup", setup::run)?;
            timed("build-ebpf", || ebpf::build(false))?;
            timed("build airlock (release)", || host::build_airlock(true))?;
            // Only returns on failure to exec.
            host::exec_serve(&args)?;
        }
        Command::Test { args } => {
            timed("setup", setup::run)?;
            timed("build-ebpf", || ebpf::build(false))?;
            let evidence = cmd::workspace_root()?.join("target").join("test-evidence");
            leaks::prepare(&evidence)?;
            let (mut code, mut totals) = timed("cargo test", || host::test(&args, &evidence))?;
            // fmt and clippy count as tests of their own: CI fails on them.
            // A partial run (test ARGS given) leaves them out, as it does
            // the fuzz targets.
            if args.is_empty() {
                for gate in timed("lint", lint::run)? {
                    println!(
                        "lint: {} ... {}",
                        gate.name,
                        if gate.passed { "ok" } else { "FAILED" }
                    );
                    totals.passed += u64::from(gate.passed);
                    totals.failed += u64::from(!gate.passed);
                    if !gate.passed {
                        code = ExitCode::FAILURE;
                    }
                }
            }
            // The leak scan and the leftovers check count as two more tests.
            let clean = timed("leak scan", || leak_scan(&evidence))?;
            let tidy = leftovers_check();
            for ok in [clean, tidy] {
                totals.passed += u64::from(ok);
                totals.failed += u64::from(!ok);
                if !ok {
                    code = ExitCode::FAILURE;
                }
            }
            // Each fuzz target counts as one test: it passes if it did not
            // crash. A partial run (test ARGS given) leaves them out.
            if args.is_empty() {
                let (passed, failed) = fuzz_briefly();
                totals.passed += passed;
                totals.failed += failed;
                if failed > 0 {
                    code = ExitCode::FAILURE;
                }
            }
            // The whole suite's count, last, in the plain form any reader knows.
            println!(
                "tests: {} passed, {} failed, {} skipped",
                totals.passed, totals.failed, totals.ignored
            );
            return Ok(code);
        }
        Command::Bench(args) => bench::run(&args)?,
        Command::LeakScan { dir } => {
            let dir = match dir {
                Some(d) => d,
                None => cmd::workspace_root()?.join("target").join("test-evidence"),
            };
            let clean = timed("leak scan", || leak_scan(&dir))?;
            return Ok(if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Soak(args) => soak::run(&args)?,
        Command::Profile(args) => profile::run(&args)?,
        Command::Fuzz(args) => fuzz::run(&args)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Scans what the suite left for any test secret; `true` if none is there.
fn leak_scan(evidence: &std::path::Path) -> Result<bool> {
    let scan = leaks::scan(evidence)?;
    println!(
        "leak scan: {} secret values searched in {} files ({:.1} MiB) kept from every daemon: {} hits",
        scan.values,
        scan.files,
        scan.bytes as f64 / f64::from(1 << 20),
        scan.hits.len()
    );
    for (file, value) in &scan.hits {
        println!("leak scan: {value} found in {}", file.display());
    }
    if std::env::var_os("AIRLOCK_TEST_KEEP_DATA").is_none() {
        let _ = std::fs::remove_dir_all(evidence);
    }
    Ok(scan.hits.is_empty())
}

/// Nothing of the tests is left attached, pinned, mounted or running.
fn leftovers_check() -> bool {
    let left = leftovers::find();
    println!(
        "leftovers: {} (cgroups, bpf pins, nft tables, processes, mounts of the tests)",
        if left.is_empty() { "none" } else { "FOUND" }
    );
    for l in &left {
        println!("leftovers: {l}");
    }
    left.is_empty()
}

/// Runs every fuzz target for [`fuzz::CI_SECONDS`]: (passed, failed), a
/// build failure counting as one failure.
fn fuzz_briefly() -> (u64, u64) {
    match timed("fuzz", || fuzz::fuzz(fuzz::CI_SECONDS, None)) {
        Ok(outcomes) => {
            let crashed = outcomes.iter().filter(|o| o.crash.is_some()).count() as u64;
            (outcomes.len() as u64 - crashed, crashed)
        }
        Err(err) => {
            eprintln!("xtask: fuzz: {err:#}");
            (0, 1)
        }
    }
}

/// Runs one step and prints how long it took, whether it succeeded or not.
fn timed<T>(name: &str, step: impl FnOnce() -> Result<T>) -> Result<T> {
    let start = Instant::now();
    let result = step();
    let outcome = if result.is_ok() { "done" } else { "failed" };
    eprintln!(
        "xtask: {name} {outcome} in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_args(argv: &[&str]) -> Vec<String> {
        let cli = Cli::try_parse_from(argv).expect("parses");
        match cli.command {
            Command::Test { args } | Command::Run { args } => args,
            _ => panic!("not test/run"),
        }
    }

    #[test]
    fn trailing_args_pass_through_verbatim() {
        assert_eq!(
            test_args(&["xtask", "test", "--", "-p", "airlock", "--", "--nocapture"]),
            ["-p", "airlock", "--", "--nocapture"]
        );
        assert_eq!(
            test_args(&["xtask", "run", "--", "--listen", "127.0.0.1:1"]),
            ["--listen", "127.0.0.1:1"]
        );
        assert!(test_args(&["xtask", "test"]).is_empty());
    }
}
