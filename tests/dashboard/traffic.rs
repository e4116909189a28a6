//! The traffic charts in a real browser: a known set of requests through
//! the real gateway (allowed, blocked, an exfiltration attempt, from two
//! agents) and a few older rows put in the trail (inside the day, outside
//! the hour), then the overview's and an agent's charts are read from the
//! SVG in Chromium's DOM, their links followed to the audit page, whose
//! totals must agree, and screenshots saved.

use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::Value;

use crate::harness::*;
use crate::support::browser::{self, Browser};
use crate::support::upstream::{Upstream, UpstreamOpts};
use crate::support::{Daemon, random_hex, run, wait_until};

/// What the charts of the current page say, read from the SVG's data.
const READ_CHARTS: &str = r#"
const all = (s) => [...document.querySelectorAll(s)];
const sum = (s) => all(s).reduce((n, e) => n + Number(e.getAttribute('data-count')), 0);
const rows = (id) => all(`#${id} a.row-label`).map((a) => [
    a.querySelector('title').textContent, Number(a.getAttribute('data-total'))]);
const shown = (id) => all(`#${id} a.row-label text`).map((t) => t.textContent);
const total = (id) => {
    const e = document.getElementById(id);
    return e ? Number(e.getAttribute('data-total')) : null;
};
const count = (id) => Number(document.getElementById(id).getAttribute('data-count'));
return {
    hour: total('traffic-hour'),
    day: total('traffic-day'),
    hour_served: sum('#traffic-hour a.seg[data-outcome=served]'),
    hour_refused: sum('#traffic-hour a.seg[data-outcome=refused]'),
    day_served: sum('#traffic-day a.seg[data-outcome=served]'),
    day_refused: sum('#traffic-day a.seg[data-outcome=refused]'),
    legend: all('#traffic-day .legend a').map((a) => [
        a.getAttribute('data-outcome'), Number(a.getAttribute('data-count'))]),
    agents: rows('top-agents'),
    hosts: rows('top-hosts'),
    hosts_shown: shown('top-hosts'),
    refusals: rows('refusals'),
    exfiltration: rows('exfiltration'),
    refused: count('refused-total'),
    exfiltrations: count('exfiltration-total'),
    inline_scripts: all('script:not([src])').length,
    // Colours come from app.css classes: applied means the CSP let the
    // inline SVG be styled.
    served_fill: (() => {
        const r = document.querySelector('#traffic-hour a.seg.served rect');
        return r ? getComputedStyle(r).fill : null;
    })(),
    empty: all('.empty').map((e) => e.textContent),
};
"#;

async fn charts(c: &Client) -> Value {
    c.execute(READ_CHARTS, vec![])
        .await
        .expect("reading the charts")
}

/// Clicks the element `css` and returns the audit page's event count.
async fn follow(c: &Client, css: &str) -> i64 {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    let heading = c
        .wait()
        .for_element(Locator::Css(".table-head h2"))
        .await
        .expect("the audit page");
    let text = heading.text().await.expect("its heading");
    let url = c.current_url().await.expect("url");
    assert!(url.path().ends_with("/audit"), "{css} led to {url}");
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{css}: heading {text:?} at {url}"))
}

fn proxied(daemon: &Daemon, agent: &str, token: &str, url: &str) -> u16 {
    let mut cmd = proxy_curl(daemon, agent, token);
    cmd.arg(url);
    let out = run(&mut cmd, None, HTTP_TIMEOUT);
    out.stdout
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("curl {url}: {out:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_charts_count_what_went_through_and_link_to_it() {
    assert!(
        browser::available(),
        "chromium and chromium-driver are not installed: run `cargo xtask setup`"
    );
    let up = Upstream::start(UpstreamOpts::default());
    let daemon = tokio::task::block_in_place(|| daemon_with_upstream(&up));
    let host = format!("api.test.local:{}", up.port());
    let hostile = "<script>alert(1)</script>\"onload=alert(2)";
    tokio::task::block_in_place(|| {
        set_password(&daemon, PASSWORD);
        let value = format!("sk-traffic-{}", random_hex(12));
        let added = daemon.cli_stdin(
            &[
                "secret",
                "add",
                "up",
                "--host",
                &host,
                "--header",
                "Authorization",
            ],
            &value,
        );
        assert!(added.success(), "{added:#?}");
        daemon.cli_ok(&[
            "rule",
            "add",
            "--host",
            &host,
            "--path",
            "/echo/admin/**",
            "--block",
        ]);
        let bot = daemon.cli_ok(&["agent", "add", "bot", "--grant", "up"]);
        let other = daemon.cli_ok(&["agent", "add", "other"]);
        daemon.cli_ok(&["agent", "add", "idle"]);
        let (bot, other) = (bot.trim(), other.trim());
        for _ in 0..3 {
            assert_eq!(proxied(&daemon, "bot", bot, &up.url("/echo/ok")), 200);
        }
        for _ in 0..2 {
            assert_eq!(proxied(&daemon, "bot", bot, &up.url("/echo/admin/x")), 403);
        }
        // The placeholder where no secret says it goes.
        assert_eq!(
            proxied(&daemon, "bot", bot, &up.url("/echo/airlock:up")),
            403
        );
        assert_eq!(proxied(&daemon, "other", other, &up.url("/echo/ok")), 200);
        // A peer gateway's row with a hostile host (the gateway itself
        // refuses such a request), straight into the trail.
        daemon.db().psql(&format!(
            "INSERT INTO audit_events (kind, agent, method, host, path, decision, status) \
             VALUES ('request', 'evil', 'GET', '{}', '/', 'blocked', 403)",
            hostile.replace('\'', "''")
        ));
        // Older traffic, inside the day but not the hour: three served
        // for bot three hours ago, two failed for other seven hours ago.
        daemon.db().psql(&format!(
            "INSERT INTO audit_events (at, kind, agent, method, host, path, decision, status) \
             SELECT now() - interval '3 hours', 'request', 'bot', 'GET', '{host}', '/old', \
                    'allowed', 200 FROM generate_series(1, 3); \
             INSERT INTO audit_events (at, kind, agent, method, host, path, decision, status) \
             SELECT now() - interval '7 hours', 'request', 'other', 'GET', '{host}', '/old', \
                    'upstream_error', 502 FROM generate_series(1, 2)"
        ));
        wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
            let n = daemon
                .db()
                .psql("SELECT count(*) FROM audit_events WHERE kind = 'request'");
            (n.trim() == "13").then_some(())
        })
        .expect("13 request rows in the audit trail");
    });

    let b = Browser::start_with(&["--window-size=1400,1900"]).await;
    let c = &b.client;
    let shots = screenshot_dir();
    let dash = tokio::task::block_in_place(|| Web::of(&daemon)).base;
    c.goto(&format!("{dash}/login")).await.expect("login page");
    let home = b.sign_in(PASSWORD).await;
    let base = home.as_str().trim_end_matches('/').to_owned();

    // The overview: everyone's traffic.
    let seen = charts(c).await;
    let path = b.screenshot(&shots, "10-traffic-overview").await;
    println!("screenshot: {}", path.display());
    assert_eq!(seen["inline_scripts"], 0, "an injected script: {seen:#}");
    assert_eq!(seen["served_fill"], "rgb(46, 157, 99)", "{seen:#}");
    assert_eq!(seen["hour"], 8, "{seen:#}");
    assert_eq!(seen["day"], 13, "{seen:#}");
    assert_eq!(
        (seen["hour_served"].as_i64(), seen["hour_refused"].as_i64()),
        (Some(4), Some(4))
    );
    assert_eq!(
        (seen["day_served"].as_i64(), seen["day_refused"].as_i64()),
        (Some(7), Some(4))
    );
    assert_eq!(
        seen["legend"],
        serde_json::json!([["served", 7], ["refused", 4], ["failed", 2]])
    );
    assert_eq!(
        seen["agents"],
        serde_json::json!([["bot", 9], ["other", 3], ["evil", 1]])
    );
    assert_eq!(seen["hosts"][0], serde_json::json!([host, 12]), "{seen:#}");
    // The hostile host is text in the SVG: whole in the tooltip, cut to
    // fit on the bar's label.
    assert_eq!(
        seen["hosts"][1],
        serde_json::json!([hostile, 1]),
        "{seen:#}"
    );
    let shown = seen["hosts_shown"][1].as_str().unwrap_or_default();
    assert!(
        shown.starts_with("<script>alert(1)") && shown.ends_with('…'),
        "{seen:#}"
    );
    assert_eq!(
        seen["refusals"],
        serde_json::json!([["blocked", 3], ["exfiltration", 1]])
    );
    assert_eq!(
        seen["exfiltration"],
        serde_json::json!([[format!("bot → {host}"), 1]])
    );
    assert_eq!(
        (seen["refused"].as_i64(), seen["exfiltrations"].as_i64()),
        (Some(4), Some(1))
    );
    let source = c.source().await.expect("html");
    assert!(
        !source.contains("<script>alert"),
        "unescaped host in the page"
    );

    // Every kind of element links to the audit of exactly its requests.
    let links = [
        ("#traffic-day .legend a[data-outcome=served]", 7),
        ("#traffic-day .legend a[data-outcome=failed]", 2),
        ("#traffic-hour .legend a[data-outcome=refused]", 4),
        ("#traffic-hour figcaption a", 8),
        ("#top-agents a.row-label", 9),
        ("#top-hosts a.row-label", 12),
        ("#top-agents a.seg[data-outcome=refused]", 3),
        ("#refusals a.seg.exfiltration", 1),
        ("#exfiltration a.row-label", 1),
        ("#refused-total", 4),
    ];
    for (css, want) in links {
        c.goto(&format!("{base}/")).await.expect("overview");
        assert_eq!(follow(c, css).await, want, "{css}");
    }
    // A single bar: its segment's figure is its minute's audit.
    c.goto(&format!("{base}/")).await.expect("overview");
    let bar = c
        .find(Locator::Css("#traffic-hour a.seg[data-outcome=served]"))
        .await
        .expect("a served bar");
    let want: i64 = bar
        .attr("data-count")
        .await
        .expect("attr")
        .and_then(|n| n.parse().ok())
        .expect("data-count");
    assert_eq!(
        follow(c, "#traffic-hour a.seg[data-outcome=served]").await,
        want
    );
    let path = b.screenshot(&shots, "11-traffic-audit-from-a-bar").await;
    println!("screenshot: {}", path.display());

    // An agent's page: its own traffic only.
    c.goto(&format!("{base}/agents")).await.expect("agents");
    c.find(Locator::Css("a[href='agents/bot']"))
        .await
        .expect("the agent's link")
        .click()
        .await
        .expect("click");
    c.wait()
        .for_element(Locator::Id("traffic-hour"))
        .await
        .expect("the agent's page");
    let seen = charts(c).await;
    let path = b.screenshot(&shots, "12-traffic-agent").await;
    println!("screenshot: {}", path.display());
    assert_eq!(seen["hour"], 6, "{seen:#}");
    assert_eq!(
        (seen["day_served"].as_i64(), seen["day_refused"].as_i64()),
        (Some(6), Some(3))
    );
    assert_eq!(
        seen["agents"],
        serde_json::json!([]),
        "no ranking of one agent"
    );
    assert_eq!(seen["hosts"], serde_json::json!([[host, 9]]));
    assert_eq!(seen["exfiltration"], serde_json::json!([[host, 1]]));
    assert_eq!(follow(c, "#top-hosts a.seg[data-outcome=served]").await, 6);

    // An agent with no traffic: said, not drawn.
    c.goto(&format!("{base}/agents/idle"))
        .await
        .expect("idle agent");
    let seen = charts(c).await;
    let path = b.screenshot(&shots, "13-traffic-empty").await;
    println!("screenshot: {}", path.display());
    assert_eq!(
        (seen["hour"].as_i64(), seen["day"].as_i64()),
        (Some(0), Some(0))
    );
    let empty = seen["empty"].to_string();
    assert!(empty.contains("No traffic yet"), "{seen:#}");
    assert!(
        c.find(Locator::Css("svg.timechart")).await.is_err(),
        "no empty chart"
    );
    let _ = b.client.clone().close().await;
}
