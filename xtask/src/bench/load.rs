//! Load generation with `oha` (JSON output), one bounded run at a time.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::procs;
use super::route::Route;
use super::upstream;

/// How oha talks to the upstream in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// HTTP/1.1, one keep-alive connection per concurrent client.
    KeepAlive,
    /// HTTP/1.1 with a new connection (TCP and TLS) for every request.
    NewConnections,
    /// HTTP/2, `parallel` streams in flight on each connection.
    Http2 { parallel: u32 },
}

impl Mode {
    /// The scenario kind in the results.
    pub fn kind(self) -> &'static str {
        match self {
            Mode::KeepAlive => "keepalive",
            Mode::NewConnections => "new-connections",
            Mode::Http2 { .. } => "http2",
        }
    }
}

pub struct Run<'a> {
    pub oha: &'a Path,
    pub route: &'a Route,
    pub port: u16,
    pub mode: Mode,
    pub connections: u32,
    pub duration: Duration,
}

/// What one `oha` run measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Requests answered 200 (the upstream checks the key, so each proves
    /// the injection).
    pub ok: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

impl Run<'_> {
    fn command(&self, path: &str) -> Command {
        self.command_bounded(&self.timed(), path)
    }

    /// oha's bound for a run of `duration`.
    fn timed(&self) -> [String; 2] {
        ["-z".to_owned(), format!("{}ms", self.duration.as_millis())]
    }

    /// The same run bounded by a request count (`-n`) instead of its
    /// duration (oha ignores `-n` when `-z` is given): for the soak and the
    /// profile, which enforce their own time limits.
    pub fn counted_command(&self, requests: u64) -> Command {
        self.command_bounded(
            &["-n".to_owned(), requests.to_string()],
            upstream::BENCH_PATH,
        )
    }

    fn command_bounded(&self, bound: &[String], path: &str) -> Command {
        self.command_sending(bound, path, &[])
    }

    /// The command with `request` (oha's method, body and header options)
    /// before the URL.
    fn command_sending(&self, bound: &[String], path: &str, request: &[String]) -> Command {
        let mut c = self.route.command(self.oha);
        c.args(["--no-tui", "--output-format", "json"]);
        c.args(request);
        match self.mode {
            Mode::KeepAlive => {
                c.args(["--http-version", "1.1"]);
            }
            Mode::NewConnections => {
                c.args(["--http-version", "1.1", "--disable-keepalive"]);
            }
            Mode::Http2 { parallel } => {
                c.args(["--http2", "-p"]).arg(parallel.to_string());
            }
        }
        c.arg("-c")
            .arg(self.connections.to_string())
            .args(bound)
            .args(self.route.oha_args(self.port))
            .arg(self.route.url(self.port, path));
        c
    }

    pub fn go(&self) -> Result<Measured> {
        self.go_at(upstream::BENCH_PATH)
    }

    /// The run against another of the upstream's paths (one answering 200).
    pub fn go_at(&self, path: &str) -> Result<Measured> {
        self.finish(self.command(path))
    }

    /// The run POSTing `body` (of `content_type`) to `path`, every request.
    pub fn go_post(&self, path: &str, content_type: &str, body: &str) -> Result<Measured> {
        let request = [
            "-m".to_owned(),
            "POST".to_owned(),
            "-T".to_owned(),
            content_type.to_owned(),
            "-d".to_owned(),
            body.to_owned(),
        ];
        self.finish(self.command_sending(&self.timed(), path, &request))
    }

    fn finish(&self, mut c: Command) -> Result<Measured> {
        // oha stops itself at -z; the margin covers its start and the
        // requests in flight at the deadline.
        let out = procs::output_within(&mut c, self.duration + Duration::from_secs(30))?;
        if !out.status.success() {
            bail!(
                "`{}` failed ({}): {}",
                procs::shown(&c),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let json: Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "`{}` printed no JSON: {}",
                procs::shown(&c),
                String::from_utf8_lossy(&out.stdout)
            )
        })?;
        parse(&json).with_context(|| format!("in the results of `{}`", procs::shown(&c)))
    }
}

/// A run in which no request was answered before the deadline, and none
/// failed either: a peer too slow for the load (mitmproxy opening 256 TLS
/// connections), reported as such rather than failing the whole benchmark.
#[derive(Debug, thiserror::Error)]
#[error("no request was answered within the run")]
pub struct NothingAnswered;

/// Errors oha reports for requests cut off by `-z`: not failures.
fn is_deadline_error(message: &str) -> bool {
    message.contains("deadline")
}

pub fn parse(json: &Value) -> Result<Measured> {
    let statuses = json["statusCodeDistribution"]
        .as_object()
        .context("no statusCodeDistribution")?;
    let mut ok = 0;
    let mut other = Vec::new();
    for (code, count) in statuses {
        let count = count.as_u64().unwrap_or(0);
        if code == "200" {
            ok += count;
        } else {
            other.push(format!("{count}× {code}"));
        }
    }
    let errors: Vec<String> = json["errorDistribution"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !is_deadline_error(k))
                .map(|(k, v)| format!("{v}× {k}"))
                .collect()
        })
        .unwrap_or_default();
    if !other.is_empty() || !errors.is_empty() {
        bail!(
            "requests failed: statuses [{}], errors [{}] (a 401 means the key was not injected)",
            other.join(", "),
            errors.join(", ")
        );
    }
    if ok == 0 {
        return Err(NothingAnswered.into());
    }
    let wall_s = json["summary"]["total"]
        .as_f64()
        .context("no summary.total")?;
    let pct = |key: &str| -> Result<f64> {
        json["latencyPercentiles"][key]
            .as_f64()
            .map(|s| s * 1e6)
            .with_context(|| format!("no latencyPercentiles.{key}"))
    };
    Ok(Measured {
        ok,
        rps: ok as f64 / wall_s,
        p50_us: pct("p50")?,
        p99_us: pct("p99")?,
        p999_us: pct("p99.9")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_oha_json_and_ignores_deadline_aborts() {
        let json: Value = serde_json::from_str(
            r#"{"summary":{"total":2.0},
                "latencyPercentiles":{"p50":0.0001,"p99":0.0005,"p99.9":0.001},
                "statusCodeDistribution":{"200":1000},
                "errorDistribution":{"aborted due to deadline":3}}"#,
        )
        .unwrap();
        let m = parse(&json).unwrap();
        assert_eq!(m.ok, 1000);
        assert!((m.rps - 500.0).abs() < 1e-9);
        assert!((m.p50_us - 100.0).abs() < 1e-6);
        assert!((m.p999_us - 1000.0).abs() < 1e-6);
    }

    #[test]
    fn a_401_fails_the_run() {
        let json: Value = serde_json::from_str(
            r#"{"summary":{"total":1.0},
                "latencyPercentiles":{"p50":0.0001,"p99":0.0005,"p99.9":0.001},
                "statusCodeDistribution":{"200":10,"401":1},
                "errorDistribution":{}}"#,
        )
        .unwrap();
        assert!(parse(&json).unwrap_err().to_string().contains("401"));
    }
}
