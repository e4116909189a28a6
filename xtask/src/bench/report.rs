//! Results: the JSON written under `bench/results/`, the table printed (in
//! Markdown, ready for BENCHMARKS.md), and `--compare`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// 2 added `kind` to scenarios and the `points`; files of schema 1 still
/// load (their scenarios are all keep-alive) for `--compare`.
pub const SCHEMA: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub schema: u32,
    /// UTC, RFC 3339.
    pub timestamp: String,
    /// `git describe --always --dirty` of the tree measured.
    pub git: String,
    pub machine: Machine,
    pub versions: BTreeMap<String, String>,
    pub settings: Settings,
    pub scenarios: Vec<Scenario>,
    /// Single figures that are not oha runs: first mint, idle memory, SSE
    /// first byte, eBPF cost per `connect()`.
    #[serde(default)]
    pub points: Vec<Point>,
    /// Observations made during the run (audit rows written, load).
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    /// 1-minute load average when the run started (others' builds).
    pub loadavg_at_start: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub duration_s: f64,
    pub rounds: u32,
    pub connections: Vec<u32>,
    pub http_version: String,
    /// Connections of the new-connection runs (schema 2).
    #[serde(default)]
    pub new_connections: u32,
    /// `CxP` of the HTTP/2 runs (schema 2).
    #[serde(default)]
    pub http2: String,
    /// Explicit connections held for the idle-memory figure (schema 2).
    #[serde(default)]
    pub idle: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scenario {
    /// The route: `direct`, `airlock-explicit`, `airlock-transparent`,
    /// `mitmproxy`, `squid`.
    pub name: String,
    /// `keepalive`, `new-connections` or `http2` ([`super::load::Mode`]).
    #[serde(default = "keepalive")]
    pub kind: String,
    pub connections: u32,
    /// Median of each figure over the rounds, taken figure by figure.
    pub median: Figures,
    pub runs: Vec<Figures>,
    /// Against `direct` at the same connection count, from the medians.
    pub vs_direct: Option<VsDirect>,
}

fn keepalive() -> String {
    "keepalive".to_owned()
}

/// One measured figure of a route, with the same figure measured directly
/// (same run) where there is one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Point {
    /// What: `sse-first-event`, `idle-rss-per-conn`, `first-mint`, ...
    pub measure: String,
    pub route: String,
    pub value: f64,
    pub unit: String,
    pub direct: Option<f64>,
    /// How it was measured, in a few words.
    #[serde(default)]
    pub detail: String,
}

impl Point {
    pub fn added(&self) -> Option<f64> {
        self.direct.map(|d| self.value - d)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Figures {
    pub requests: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// The proxy's user+system CPU per request: the `airlock` process,
    /// mitmproxy, or squid and its helpers.
    pub gateway_cpu_us_per_req: Option<f64>,
    /// The embedded PostgreSQL (postmaster and backends) per request.
    pub postgres_cpu_us_per_req: Option<f64>,
    /// nginx (master and worker) per request.
    pub upstream_cpu_us_per_req: f64,
    /// oha per request.
    pub client_cpu_us_per_req: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VsDirect {
    pub rps_ratio: f64,
    pub p50_added_us: f64,
    pub p99_added_us: f64,
    pub p50_ratio: f64,
    pub p99_ratio: f64,
}

pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The figure-by-figure median of `runs`.
pub fn median_of(runs: &[Figures]) -> Figures {
    let m = |f: &dyn Fn(&Figures) -> f64| median(runs.iter().map(f).collect());
    let mo = |f: &dyn Fn(&Figures) -> Option<f64>| {
        let v: Vec<f64> = runs.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| median(v))
    };
    Figures {
        requests: runs.iter().map(|r| r.requests).sum(),
        rps: m(&|r| r.rps),
        p50_us: m(&|r| r.p50_us),
        p99_us: m(&|r| r.p99_us),
        p999_us: m(&|r| r.p999_us),
        gateway_cpu_us_per_req: mo(&|r| r.gateway_cpu_us_per_req),
        postgres_cpu_us_per_req: mo(&|r| r.postgres_cpu_us_per_req),
        upstream_cpu_us_per_req: m(&|r| r.upstream_cpu_us_per_req),
        client_cpu_us_per_req: m(&|r| r.client_cpu_us_per_req),
    }
}

/// Fills `vs_direct` of every non-direct scenario.
pub fn compare_to_direct(scenarios: &mut [Scenario]) {
    let direct: BTreeMap<(String, u32), Figures> = scenarios
        .iter()
        .filter(|s| s.name == "direct")
        .map(|s| ((s.kind.clone(), s.connections), s.median.clone()))
        .collect();
    for s in scenarios.iter_mut().filter(|s| s.name != "direct") {
        if let Some(d) = direct.get(&(s.kind.clone(), s.connections)) {
            s.vs_direct = Some(VsDirect {
                rps_ratio: s.median.rps / d.rps,
                p50_added_us: s.median.p50_us - d.p50_us,
                p99_added_us: s.median.p99_us - d.p99_us,
                p50_ratio: s.median.p50_us / d.p50_us,
                p99_ratio: s.median.p99_us / d.p99_us,
            });
        }
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
}

/// The results as a Markdown table.
pub fn table(results: &Results) -> String {
    let mut out = String::new();
    out.push_str(
        "| scenario | kind | conns | req/s | p50 µs | p99 µs | p99.9 µs | req/s vs direct | \
         p50 added µs | p99 added µs | proxy CPU µs/req | postgres CPU µs/req | \
         nginx CPU µs/req | oha CPU µs/req |\n",
    );
    out.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for s in &results.scenarios {
        let f = &s.median;
        let v = s.vs_direct.as_ref();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {:.1} | {:.1} |",
            s.name,
            s.kind,
            s.connections,
            f.rps,
            f.p50_us,
            f.p99_us,
            f.p999_us,
            v.map_or_else(|| "1".to_owned(), |v| format!("{:.2}", v.rps_ratio)),
            v.map_or_else(|| "–".to_owned(), |v| format!("{:+.0}", v.p50_added_us)),
            v.map_or_else(|| "–".to_owned(), |v| format!("{:+.0}", v.p99_added_us)),
            opt(f.gateway_cpu_us_per_req, 1),
            opt(f.postgres_cpu_us_per_req, 1),
            f.upstream_cpu_us_per_req,
            f.client_cpu_us_per_req,
        );
    }
    if !results.points.is_empty() {
        out.push_str(
            "\n| measure | route | value | direct | added | how |\n|---|---|--:|--:|--:|---|\n",
        );
        for p in &results.points {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} {} | {} | {} | {} |",
                p.measure,
                p.route,
                p.value,
                p.unit,
                opt(p.direct, 1),
                p.added()
                    .map_or_else(|| "–".to_owned(), |a| format!("{a:+.1}")),
                p.detail,
            );
        }
    }
    out
}

/// Each figure of `new` divided by the same figure of `old` (> 1 means
/// larger now: better for req/s, worse for latency and CPU).
pub fn compare(new: &Results, old: &Results) -> String {
    let mut out = format!(
        "Compared with {} ({}): each figure now / then.\n\n\
         | scenario | kind | conns | req/s | p50 | p99 | p99.9 | req/s vs direct | proxy CPU/req | postgres CPU/req |\n\
         |---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n",
        old.timestamp, old.git
    );
    let ratio = |a: f64, b: f64| -> String {
        if b == 0.0 || !a.is_finite() || !b.is_finite() {
            "–".to_owned()
        } else {
            format!("{:.2}", a / b)
        }
    };
    let ratio_opt = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => ratio(a, b),
        _ => "–".to_owned(),
    };
    for s in &new.scenarios {
        let Some(o) = old
            .scenarios
            .iter()
            .find(|o| o.name == s.name && o.kind == s.kind && o.connections == s.connections)
        else {
            let _ = writeln!(
                out,
                "| {} | {} | {} | (not in the old file) |",
                s.name, s.kind, s.connections
            );
            continue;
        };
        let (n, p) = (&s.median, &o.median);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.name,
            s.kind,
            s.connections,
            ratio(n.rps, p.rps),
            ratio(n.p50_us, p.p50_us),
            ratio(n.p99_us, p.p99_us),
            ratio(n.p999_us, p.p999_us),
            ratio_opt(
                s.vs_direct.as_ref().map(|v| v.rps_ratio),
                o.vs_direct.as_ref().map(|v| v.rps_ratio)
            ),
            ratio_opt(n.gateway_cpu_us_per_req, p.gateway_cpu_us_per_req),
            ratio_opt(n.postgres_cpu_us_per_req, p.postgres_cpu_us_per_req),
        );
    }
    let points: Vec<(&Point, &Point)> = new
        .points
        .iter()
        .filter_map(|p| {
            old.points
                .iter()
                .find(|o| o.measure == p.measure && o.route == p.route)
                .map(|o| (p, o))
        })
        .collect();
    if !points.is_empty() {
        out.push_str("\n| measure | route | now | then | now / then |\n|---|---|--:|--:|--:|\n");
        for (p, o) in points {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} {} | {:.1} {} | {} |",
                p.measure,
                p.route,
                p.value,
                p.unit,
                o.value,
                o.unit,
                ratio(p.value, o.value)
            );
        }
    }
    out
}

pub fn load(path: &Path) -> Result<Results> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a bench results file", path.display()))
}

/// (RFC 3339, file-name form) of the current UTC time.
pub fn utc_now() -> (String, String) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc(secs)
}

fn utc(secs: u64) -> (String, String) {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
        format!("{y:04}{m:02}{d:02}T{h:02}{mi:02}{s:02}Z"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0).0, "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400).0, "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_767_225_599).1, "20251231T235959Z");
    }

    #[test]
    fn schema_1_files_load_as_keep_alive() {
        let old = r#"{"schema":1,"timestamp":"t","git":"g",
            "machine":{"nproc":2,"cpu_model":"c","kernel":"k","loadavg_at_start":"1"},
            "versions":{},"settings":{"duration_s":1,"rounds":1,"connections":[1],"http_version":"1.1"},
            "scenarios":[{"name":"direct","connections":1,"median":{"requests":1,"rps":1,"p50_us":1,
              "p99_us":1,"p999_us":1,"upstream_cpu_us_per_req":1,"client_cpu_us_per_req":1},
              "runs":[],"vs_direct":null}]}"#;
        let r: Results = serde_json::from_str(old).unwrap();
        assert_eq!(r.scenarios[0].kind, "keepalive");
        assert!(r.points.is_empty());
    }

    #[test]
    fn median_is_figure_by_figure() {
        let f = |rps: f64, p50: f64| Figures {
            requests: 10,
            rps,
            p50_us: p50,
            ..Figures::default()
        };
        let m = median_of(&[f(1.0, 30.0), f(3.0, 10.0), f(2.0, 20.0)]);
        assert_eq!((m.rps, m.p50_us, m.requests), (2.0, 20.0, 30));
        assert_eq!(median(vec![1.0, 2.0, 3.0, 4.0]), 2.5);
    }
}
