//! `airlock doctor`: the report of `airlock::doctor`, as lines or JSON.

use anyhow::{Context, Result, bail};

use super::serve;
use crate::cli::args::DoctorArgs;
use airlock::config::Overrides;
use airlock::doctor::{self, Report};

pub fn run(overrides: Overrides, args: DoctorArgs) -> Result<()> {
    let settings = serve::settings(overrides, args.serve)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(doctor::run(&settings));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_lines(&report);
    }
    match report.failures() {
        0 => Ok(()),
        1 => bail!("1 check failed (see above)"),
        n => bail!("{n} checks failed (see above)"),
    }
}

fn print_lines(report: &Report) {
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    for c in &report.checks {
        println!("{:<4}  {:<width$}  {}", c.status.as_str(), c.name, c.detail);
        if let Some(fix) = &c.fix {
            println!("{:<4}  {:<width$}  → {fix}", "", "");
        }
    }
}
