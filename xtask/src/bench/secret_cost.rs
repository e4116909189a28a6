//! What the kind of secret costs the gateway per request, through the
//! explicit proxy, with the same keep-alive load for each variant:
//!
//! - `static`: the static header secret on the benchmark path, whose small
//!   JSON answer holds no key (the body is scanned, nothing replaced);
//! - `echoed`: nginx's `/echo-auth`, whose body is the injected
//!   `Authorization` value itself, scanned and replaced by the placeholder
//!   on every request (issue #18, item 5);
//! - `oauth2`: an OAuth2 secret (client credentials) on a host of its own,
//!   its access token cached (fetched once at `secret add`, a day's
//!   lifetime), so what is measured is the cached path: the look-up of
//!   the secret's token and its injection (issue #18, item 1);
//! - `post-plain`: a 300-byte JSON-RPC `tools/call` POSTed (with the static
//!   secret) to a path no body rule concerns: the body is streamed through
//!   unread, so against `static` this is what a small request body costs;
//! - `mcp-judged`: the same POST to the path an MCP rule (`--mcp-tool
//!   delete_*`, blocking) covers: the body is read, parsed as JSON-RPC and
//!   the call judged (and let pass) before it is sent on. Against
//!   `post-plain`, this is what judging a tool call adds (issue #21).
//!
//! The MCP rule is in the daemon for the whole run, so every other figure
//! is also measured with a body rule in the policy that does not concern it.
//!
//! The variants alternate, `ROUNDS` of each (medians), in the same run as
//! everything else.

use std::time::Duration;

use anyhow::{Context, Result};

use super::load::{self, Mode};
use super::report::{Point, median};
use super::route::Route;
use super::runs::sample;
use super::upstream::{self, Upstream};

const ROUNDS: usize = 3;
const CONNECTIONS: u32 = 16;
const DURATION: Duration = Duration::from_secs(3);

/// One variant: the point's name, the host and path it loads, and what it
/// is in words.
struct Variant {
    measure: &'static str,
    host: &'static str,
    path: &'static str,
    /// What each request POSTs (JSON); a GET without.
    body: Option<&'static str>,
    what: &'static str,
}

const VARIANTS: [Variant; 5] = [
    Variant {
        measure: "cpu-per-req-static-secret",
        host: upstream::HOST,
        path: upstream::BENCH_PATH,
        body: None,
        what: "static header secret, answer without the key (body scanned)",
    },
    Variant {
        measure: "cpu-per-req-key-echoed",
        host: upstream::HOST,
        path: upstream::ECHO_PATH,
        body: None,
        what: "the same secret echoed in the body, replaced by its placeholder",
    },
    Variant {
        measure: "cpu-per-req-oauth2-cached",
        host: upstream::OAUTH2_HOST,
        path: upstream::OAUTH2_PATH,
        body: None,
        what: "an OAuth2 secret (client credentials), its access token cached",
    },
    Variant {
        measure: "cpu-per-req-post-no-body-rule",
        host: upstream::HOST,
        path: upstream::MCP_PLAIN_PATH,
        body: Some(upstream::MCP_CALL),
        what: "a 300-byte tools/call POSTed where no body rule applies (body unread)",
    },
    Variant {
        measure: "cpu-per-req-mcp-judged",
        host: upstream::HOST,
        path: upstream::MCP_JUDGED_PATH,
        body: Some(upstream::MCP_CALL),
        what: "the same POST judged by an MCP rule (body read, parsed, let pass)",
    },
];

pub fn measure(oha: &std::path::Path, up: &Upstream, explicit: &Route) -> Result<Vec<Point>> {
    let routes: Vec<Route> = VARIANTS
        .iter()
        .map(|v| explicit.with_host(v.host))
        .collect();
    let mut per_variant: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..ROUNDS {
        let mut order: Vec<usize> = (0..VARIANTS.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let run = load::Run {
                oha,
                route: &routes[i],
                port: up.port,
                mode: Mode::KeepAlive,
                connections: CONNECTIONS,
                duration: DURATION,
            };
            let v = &VARIANTS[i];
            let figures = sample(up, &routes[i], || match v.body {
                Some(body) => run.go_post(v.path, "application/json", body),
                None => run.go_at(v.path),
            })
            .with_context(|| format!("secret cost, {}", VARIANTS[i].measure))?;
            per_variant[i].push(
                figures
                    .gateway_cpu_us_per_req
                    .context("the gateway's CPU time could not be read")?,
            );
        }
    }
    let medians: Vec<f64> = per_variant.into_iter().map(median).collect();
    let baseline = medians[0];
    let mut points: Vec<Point> = VARIANTS
        .iter()
        .zip(&medians)
        .map(|(v, &value)| {
            let ratio = value / baseline;
            eprintln!(
                "bench: gateway CPU per request, {}: {value:.1} µs ({ratio:.2}× the static \
                 secret)",
                v.what
            );
            Point {
                measure: v.measure.into(),
                route: explicit.name.into(),
                value,
                unit: "µs".into(),
                direct: None,
                detail: format!(
                    "gateway CPU per request, {}; keep-alive c={CONNECTIONS}, median of {ROUNDS} \
                     {}s runs alternating; {ratio:.2}× the static secret",
                    v.what,
                    DURATION.as_secs()
                ),
            }
        })
        .collect();
    let (plain, judged) = (medians[3], medians[4]);
    let added = judged - plain;
    eprintln!("bench: judging a tool call by an MCP rule adds {added:.1} µs of gateway CPU");
    points.push(Point {
        measure: "cpu-added-per-req-mcp-judging".into(),
        route: explicit.name.into(),
        value: added,
        unit: "µs".into(),
        direct: None,
        detail: format!(
            "gateway CPU a 300-byte tools/call judged by an MCP rule costs beyond the same POST \
             where no body rule applies ({judged:.1} − {plain:.1} µs, medians)"
        ),
    });
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mcp_variants_post_one_readable_tool_call_of_300_bytes() {
        let call: serde_json::Value =
            serde_json::from_str(upstream::MCP_CALL).expect("MCP_CALL is JSON");
        assert_eq!(upstream::MCP_CALL.len(), 300);
        assert_eq!(call["method"], "tools/call");
        // The rule blocks delete_*: this one is judged and let through.
        assert!(
            !call["params"]["name"]
                .as_str()
                .unwrap_or("delete_")
                .starts_with("delete_")
        );
        assert_eq!(VARIANTS[3].path, upstream::MCP_PLAIN_PATH);
        assert_eq!(VARIANTS[4].path, upstream::MCP_JUDGED_PATH);
        assert!(VARIANTS[3].body.is_some() && VARIANTS[4].body == VARIANTS[3].body);
    }
}
