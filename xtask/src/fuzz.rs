//! `cargo xtask fuzz`: build the cargo-fuzz targets in `fuzz/` (nightly,
//! AddressSanitizer, debug assertions) and run each for a bounded time.
//!
//! Each target starts from its committed seeds (`fuzz/corpus/<target>/`,
//! read only) plus what earlier runs found (`fuzz/target/corpus/<target>/`,
//! not committed). A crash leaves its input in `fuzz/artifacts/<target>/`
//! and fails the command with that path and the command that replays it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{cmd, setup};

/// How long `cargo xtask test` runs each target: enough to replay the
/// seeds and regressions and explore a little, not to search.
pub const CI_SECONDS: u64 = 10;
/// libFuzzer's memory bound per target; a leak or blow-up beyond it is a
/// finding like a crash.
const RSS_LIMIT_MB: u64 = 2048;
/// One input taking longer than this is reported as a hang.
const INPUT_TIMEOUT_SECS: u64 = 10;
/// Grace beyond `--seconds` before a fuzzer that ignores its time limit is
/// killed (loading a large corpus, a final merge).
const GRACE: Duration = Duration::from_secs(60);

#[derive(Args, Debug)]
pub struct FuzzArgs {
    /// Seconds each target runs.
    #[arg(long, default_value_t = 60, value_name = "N")]
    seconds: u64,
    /// Run only this target (see `fuzz/Cargo.toml`).
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
}

/// How one target's run ended.
#[derive(Debug)]
pub struct Outcome {
    pub target: String,
    /// Where it was stopped, if it crashed: the reproducer.
    pub crash: Option<PathBuf>,
}

/// `cargo xtask fuzz`: fails when any target crashed.
pub fn run(args: &FuzzArgs) -> Result<()> {
    let outcomes = fuzz(args.seconds, args.target.as_deref())?;
    let crashed: Vec<&Outcome> = outcomes.iter().filter(|o| o.crash.is_some()).collect();
    if !crashed.is_empty() {
        let names: Vec<&str> = crashed.iter().map(|o| o.target.as_str()).collect();
        bail!("fuzz targets crashed: {}", names.join(", "));
    }
    Ok(())
}

/// Installs cargo-fuzz if needed, builds every target and runs the chosen
/// ones (all by default) one after the other, `seconds` each.
pub fn fuzz(seconds: u64, only: Option<&str>) -> Result<Vec<Outcome>> {
    setup::cargo_fuzz()?;
    let root = cmd::workspace_root()?;
    let fuzz_dir = root.join("fuzz");
    let all = list_targets(&root)?;
    let targets: Vec<String> = match only {
        Some(name) if all.iter().any(|t| t == name) => vec![name.to_owned()],
        Some(name) => bail!(
            "no fuzz target {name:?}; the targets are: {}",
            all.join(", ")
        ),
        None => all,
    };
    let mut build = cmd::nightly_cargo()?;
    build
        .current_dir(&root)
        .args(["fuzz", "build", "--sanitizer", "address"]);
    cmd::run(&mut build)
        .context("building the fuzz targets (`cargo xtask setup` installs nightly)")?;
    let bin_dir = fuzz_dir.join("target").join(host_triple()?).join("release");
    targets
        .iter()
        .map(|t| run_target(&fuzz_dir, &bin_dir, t, seconds))
        .collect()
}

/// The targets `fuzz/Cargo.toml` declares, as `cargo fuzz list` prints them.
fn list_targets(root: &Path) -> Result<Vec<String>> {
    let mut list = cmd::nightly_cargo()?;
    list.current_dir(root).args(["fuzz", "list"]);
    let out = cmd::probe(&mut list).with_context(|| format!("`{}` failed", cmd::display(&list)))?;
    let targets: Vec<String> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if targets.is_empty() {
        bail!("`{}` listed no fuzz targets", cmd::display(&list));
    }
    Ok(targets)
}

/// The nightly compiler's host triple: where cargo-fuzz puts the binaries.
fn host_triple() -> Result<String> {
    let mut rustc = Command::new("rustc");
    rustc.args(["+nightly", "-vV"]);
    let out = cmd::probe(&mut rustc).context("`rustc +nightly -vV` failed")?;
    out.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("`rustc +nightly -vV` printed no host triple")
}

fn run_target(fuzz_dir: &Path, bin_dir: &Path, target: &str, seconds: u64) -> Result<Outcome> {
    let seeds = fuzz_dir.join("corpus").join(target);
    let grown = fuzz_dir.join("target").join("corpus").join(target);
    let artifacts = fuzz_dir.join("artifacts").join(target);
    let log_path = fuzz_dir
        .join("target")
        .join("logs")
        .join(format!("{target}.log"));
    for dir in [&grown, &artifacts] {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let log_dir = log_path.parent().context("log path has no parent")?;
    fs::create_dir_all(log_dir).with_context(|| format!("cannot create {}", log_dir.display()))?;
    let log = fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;

    let mut fuzzer = Command::new(bin_dir.join(target));
    // New inputs go to the first directory; the seeds stay as committed.
    fuzzer.arg(&grown).arg(&seeds).args([
        format!("-max_total_time={seconds}"),
        format!("-rss_limit_mb={RSS_LIMIT_MB}"),
        format!("-timeout={INPUT_TIMEOUT_SECS}"),
        "-print_final_stats=1".to_owned(),
    ]);
    fuzzer.arg(format!("-artifact_prefix={}/", artifacts.display()));
    let dict = fuzz_dir.join("dicts").join(format!("{target}.dict"));
    if dict.is_file() {
        fuzzer.arg(format!("-dict={}", dict.display()));
    }
    fuzzer.stdout(Stdio::null()).stderr(log);
    let started = Instant::now();
    let ended = wait_bounded(&mut fuzzer, Duration::from_secs(seconds) + GRACE)?;
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    let stats = Stats::from_log(&text);
    let crash = match ended {
        Ended::Exited(status) if status.success() => None,
        // A hang past the limit has no reproducer of its own: the log says
        // which input was running.
        _ => Some(stats.reproducer.clone().unwrap_or_else(|| log_path.clone())),
    };
    let result = match &crash {
        None => "ok".to_owned(),
        Some(path) => format!(
            "CRASH: reproducer {} (replay: cargo +nightly fuzz run {target} {}; log {})",
            path.display(),
            path.display(),
            log_path.display()
        ),
    };
    println!(
        "fuzz: {target}: {} runs in {:.0}s, corpus {} inputs, {result}",
        stats.runs.map_or("?".to_owned(), |r| r.to_string()),
        started.elapsed().as_secs_f64(),
        stats.corpus.map_or("?".to_owned(), |c| c.to_string()),
    );
    if let Ended::Killed = ended {
        println!(
            "fuzz: {target}: killed {}s past its time limit",
            GRACE.as_secs()
        );
    }
    Ok(Outcome {
        target: target.to_owned(),
        crash,
    })
}

/// How a bounded child process ended.
enum Ended {
    Exited(ExitStatus),
    /// It outlived its limit and was killed.
    Killed,
}

/// Runs `command` to completion, killing it (by its PID) if it outlives
/// `limit`.
fn wait_bounded(command: &mut Command, limit: Duration) -> Result<Ended> {
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start `{}`", cmd::display(command)))?;
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().context("waiting for the fuzzer")? {
            return Ok(Ended::Exited(status));
        }
        if Instant::now() >= deadline {
            // Best effort: it may have exited just now.
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Ended::Killed);
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// What a libFuzzer log says about a run.
#[derive(Debug, Default, PartialEq, Eq)]
struct Stats {
    runs: Option<u64>,
    corpus: Option<u64>,
    reproducer: Option<PathBuf>,
}

impl Stats {
    fn from_log(log: &str) -> Stats {
        let mut stats = Stats::default();
        for line in log.lines() {
            if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
                stats.runs = n.trim().parse().ok();
            }
            // `#1234  NEW    cov: 56 ft: 78 corp: 9/1024b ...`: the last one wins.
            if let Some(n) = line
                .split_once(" corp: ")
                .and_then(|(_, rest)| rest.split('/').next())
                .and_then(|n| n.trim().parse().ok())
            {
                stats.corpus = Some(n);
            }
            if let Some((_, path)) = line.split_once("Test unit written to ") {
                stats.reproducer = Some(PathBuf::from(path.trim()));
            }
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_runs_corpus_and_reproducer_from_a_log() {
        let log = "INFO: Seed: 1\n\
            #2\tINITED cov: 10 ft: 11 corp: 3/120b exec/s: 0 rss: 30Mb\n\
            #900\tNEW    cov: 12 ft: 15 corp: 4/130b lim: 4 exec/s: 0 rss: 31Mb L: 1/4 MS: 1 ChangeBit-\n\
            thread '<unnamed>' panicked at fuzz_targets/sni.rs:1:1:\n\
            ==1== ERROR: libFuzzer: deadly signal\n\
            artifact_prefix='fuzz/artifacts/sni/'; Test unit written to fuzz/artifacts/sni/crash-abc\n\
            stat::number_of_executed_units: 901\n";
        assert_eq!(
            Stats::from_log(log),
            Stats {
                runs: Some(901),
                corpus: Some(4),
                reproducer: Some(PathBuf::from("fuzz/artifacts/sni/crash-abc")),
            }
        );
        assert_eq!(Stats::from_log("no libFuzzer here"), Stats::default());
    }
}
