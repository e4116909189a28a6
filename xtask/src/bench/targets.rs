//! Issue 7's targets, and issue 19's against nginx doing the same work
//! (`nginx_peer`), against a run's results, as the Markdown table
//! `cargo xtask bench` prints and BENCHMARKS.md holds: each one met, or
//! missed by how much.

use std::fmt::Write as _;

use super::report::{Point, Results, Scenario};

/// A target of issue 7: whether `measured` is within `limit` (at most, or
/// at least when `at_least`).
struct Target {
    what: &'static str,
    route: String,
    measured: f64,
    limit: f64,
    at_least: bool,
    unit: &'static str,
}

impl Target {
    fn verdict(&self) -> String {
        let met = if self.at_least {
            self.measured >= self.limit
        } else {
            self.measured <= self.limit
        };
        if met {
            "met".to_owned()
        } else if self.at_least {
            format!(
                "missed: {:.2}{u} short ({:.0}% of the target)",
                self.limit - self.measured,
                100.0 * self.measured / self.limit,
                u = self.unit
            )
        } else {
            format!(
                "missed by {:.1}{u} ({:.1}× the target)",
                self.measured - self.limit,
                self.measured / self.limit,
                u = self.unit
            )
        }
    }
}

fn scenario<'a>(r: &'a Results, name: &str, kind: &str, conns: u32) -> Option<&'a Scenario> {
    r.scenarios
        .iter()
        .find(|s| s.name == name && s.kind == kind && s.connections == conns)
}

fn point<'a>(r: &'a Results, measure: &str, route: &str) -> Option<&'a Point> {
    r.points
        .iter()
        .find(|p| p.measure == measure && p.route == route)
}

/// Issue 7's targets against this run, as a Markdown table.
pub fn table(r: &Results) -> String {
    let mut t = Vec::new();
    for route in [
        "airlock-explicit",
        "airlock-transparent",
        "airlock-container",
    ] {
        let vs = |kind: &str, c: u32| scenario(r, route, kind, c).and_then(|s| s.vs_direct.clone());
        if let Some(v) = vs("keepalive", 16) {
            t.push(Target {
                what: "req/s ≥ 60% of direct, 16 connections",
                route: route.into(),
                measured: v.rps_ratio,
                limit: 0.6,
                at_least: true,
                unit: "",
            });
        }
        if let (Some(a), Some(m)) = (
            scenario(r, route, "keepalive", 16),
            scenario(r, "mitmproxy", "keepalive", 16),
        ) {
            t.push(Target {
                what: "req/s ≥ 20× mitmproxy's, 16 connections",
                route: route.into(),
                measured: a.median.rps / m.median.rps,
                limit: 20.0,
                at_least: true,
                unit: "×",
            });
        }
        if let Some(v) = vs("keepalive", 1) {
            t.push(Target {
                what: "added p50 ≤ 60 µs, 1 connection",
                route: route.into(),
                measured: v.p50_added_us,
                limit: 60.0,
                at_least: false,
                unit: " µs",
            });
            t.push(Target {
                what: "added p99 ≤ 250 µs, 1 connection",
                route: route.into(),
                measured: v.p99_added_us,
                limit: 250.0,
                at_least: false,
                unit: " µs",
            });
        }
        if let Some(cpu) =
            scenario(r, route, "keepalive", 16).and_then(|s| s.median.gateway_cpu_us_per_req)
        {
            t.push(Target {
                what: "gateway CPU ≤ 20 µs per request, 16 connections",
                route: route.into(),
                measured: cpu,
                limit: 20.0,
                at_least: false,
                unit: " µs",
            });
        }
        if let Some(added) = point(r, "new-connection-cached-leaf", route).and_then(Point::added) {
            t.push(Target {
                what: "≤ 1 ms added for a new connection, cached leaf (handshake)",
                route: route.into(),
                measured: added / 1000.0,
                limit: 1.0,
                at_least: false,
                unit: " ms",
            });
        }
        if let Some(v) = r
            .scenarios
            .iter()
            .find(|s| s.name == route && s.kind == "new-connections")
            .and_then(|s| s.vs_direct.clone())
        {
            t.push(Target {
                what: "≤ 1 ms added for a new connection, cached leaf (oha p50, TLS per request)",
                route: route.into(),
                measured: v.p50_added_us / 1000.0,
                limit: 1.0,
                at_least: false,
                unit: " ms",
            });
        }
        same_work_targets(r, route, &mut t);
        if let Some(p) = point(r, "idle-rss-per-conn", route) {
            t.push(Target {
                what: "≤ 48 KiB per idle connection",
                route: route.into(),
                measured: p.value,
                limit: 48.0,
                at_least: false,
                unit: " KiB",
            });
        }
        if let Some(p) = point(r, "rule-reach-max", route) {
            t.push(Target {
                what: "a rule change reaches the hot path ≤ 100 ms (slowest of the rounds)",
                route: route.into(),
                measured: p.value,
                limit: 100.0,
                at_least: false,
                unit: " ms",
            });
        }
        if let Some(added) = point(r, "sse-first-event", route).and_then(Point::added) {
            t.push(Target {
                what: "SSE first event ≤ 1 ms added",
                route: route.into(),
                measured: added / 1000.0,
                limit: 1.0,
                at_least: false,
                unit: " ms",
            });
        }
    }
    let mut out = String::from("| target | route | measured | |\n|---|---|--:|---|\n");
    for x in &t {
        let _ = writeln!(
            out,
            "| {} | {} | {:.2}{} | {} |",
            x.what,
            x.route,
            x.measured,
            x.unit,
            x.verdict()
        );
    }
    out
}

/// Issue 19: the same run's nginx doing the same work is the floor, so
/// each of these is a ratio to it (≤ 1× or ≥ 1×), plus PostgreSQL's share
/// and the 256-connection collapse.
fn same_work_targets(r: &Results, route: &str, t: &mut Vec<Target>) {
    let peer = super::nginx_peer::ROUTE;
    let keepalive = |name: &str, c: u32| scenario(r, name, "keepalive", c);
    if let (Some(a), Some(n)) = (keepalive(route, 16), keepalive(peer, 16)) {
        if let (Some(gw), Some(nginx)) = (
            a.median.gateway_cpu_us_per_req,
            n.median.gateway_cpu_us_per_req,
        ) {
            let pg = a.median.postgres_cpu_us_per_req.unwrap_or(0.0);
            t.push(Target {
                what: "CPU per request (gateway + PostgreSQL) ≤ nginx same work, 16 connections",
                route: route.into(),
                measured: (gw + pg) / nginx,
                limit: 1.0,
                at_least: false,
                unit: "×",
            });
        }
        if let (Some(av), Some(nv)) = (&a.vs_direct, &n.vs_direct) {
            t.push(Target {
                what: "req/s vs direct ≥ nginx same work's, 16 connections",
                route: route.into(),
                measured: av.rps_ratio / nv.rps_ratio,
                limit: 1.0,
                at_least: true,
                unit: "×",
            });
        }
        if let Some(pg) = a.median.postgres_cpu_us_per_req {
            t.push(Target {
                what: "PostgreSQL CPU ≤ 2 µs per request, 16 connections",
                route: route.into(),
                measured: pg,
                limit: 2.0,
                at_least: false,
                unit: " µs",
            });
        }
    }
    let added = |name: &str| {
        keepalive(name, 1)
            .and_then(|s| s.vs_direct.as_ref())
            .map(|v| v.p50_added_us)
    };
    // A run where nginx's added p50 came out at or below zero (direct's
    // own p50 swung more than nginx adds) has no floor to compare with.
    if let (Some(a), Some(n)) = (added(route), added(peer).filter(|n| *n > 0.0)) {
        t.push(Target {
            what: "added p50 ≤ nginx same work's, 1 connection",
            route: route.into(),
            measured: a,
            limit: n,
            at_least: false,
            unit: " µs",
        });
    }
    let ratio = |c: u32| {
        keepalive(route, c)
            .and_then(|s| s.vs_direct.as_ref())
            .map(|v| v.rps_ratio)
    };
    if let (Some(r256), Some(r16)) = (ratio(256), ratio(16)) {
        t.push(Target {
            what: "req/s vs direct at 256 connections ≥ at 16",
            route: route.into(),
            measured: r256 / r16,
            limit: 1.0,
            at_least: true,
            unit: "×",
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missed_target_says_by_how_much() {
        let t = |measured, limit, at_least| Target {
            what: "",
            route: String::new(),
            measured,
            limit,
            at_least,
            unit: " µs",
        };
        assert_eq!(t(40.0, 60.0, false).verdict(), "met");
        assert_eq!(
            t(90.0, 60.0, false).verdict(),
            "missed by 30.0 µs (1.5× the target)"
        );
        assert_eq!(t(0.7, 0.6, true).verdict(), "met");
        assert!(t(0.3, 0.6, true).verdict().contains("50% of the target"));
    }
}
