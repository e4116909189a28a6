//! eBPF map occupancy in `/metrics` (#20, item 1): the gauges report the
//! maps the programs really use, as the kernel sees them, and say when
//! connection records stay behind.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aya::maps::{HashMap as BpfHashMap, Map, MapData, MapInfo};
use gateway_common::{
    EVENT_RATE_CGROUPS, MAP_BY_COOKIE, MAP_BY_TUPLE, MAP_EVENT_RATE, MAP_NETNS, MAP_PORTS,
    MAX_CONNECTIONS, MAX_NETNS, MAX_PORTS, OrigInfo, TupleKey,
};

use crate::harness::*;
use crate::support;
use crate::support::metrics::{get, sample, scrape};
use crate::support::prometheus::{self, Prometheus};
use crate::support::upstream::{Upstream, UpstreamOpts};
use crate::support::wait_until;

fn entries(text: &str, map: &str) -> Option<f64> {
    sample(text, &format!(r#"airlock_ebpf_map_entries{{map="{map}"}}"#))
}

fn capacity(text: &str, map: &str) -> Option<f64> {
    sample(
        text,
        &format!(r#"airlock_ebpf_map_capacity{{map="{map}"}}"#),
    )
}

/// The cookie map's keys as the kernel has them, read from the test's pin.
fn kernel_cookie_records(iso: &Isolation) -> usize {
    let data = MapData::from_pin(iso.pin_dir.join(MAP_BY_COOKIE)).expect("the pinned cookie map");
    let map = Map::from_map_data(data).expect("a map aya knows");
    let map =
        BpfHashMap::<&MapData, u64, OrigInfo>::try_from(&map).expect("the cookie map's layout");
    map.keys().filter_map(Result::ok).count()
}

/// Connects `n` IPv6-only sockets to the IPv4-mapped address of the
/// upstream: connect6 records each one and rewrites it to
/// `::ffff:127.0.0.1`, then the kernel fails the connect (ENETUNREACH,
/// an IPv6-only socket cannot reach a mapped address), so the record is
/// never moved on by sock_ops nor read by the gateway: it stays.
fn v6only_mapped_connects(port: u16, n: usize) -> String {
    format!(
        "import errno, socket\n\
         for _ in range({n}):\n\
         \x20   s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)\n\
         \x20   s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)\n\
         \x20   s.settimeout(10)\n\
         \x20   try:\n\
         \x20       s.connect(('::ffff:127.0.0.1', {port}))\n\
         \x20       print('connected')\n\
         \x20   except OSError as e:\n\
         \x20       print(errno.errorcode.get(e.errno, e.errno))\n\
         \x20   s.close()\n"
    )
}

/// After an agent's requests through the transparent path, the capacities
/// are the programs' `max_entries` (the kernel's own figure too) and
/// every connection took its record with it (the record maps are empty);
/// connects the kernel fails after connect6 recorded them leave records
/// in the cookie map, and the gauge counts exactly what the kernel holds.
#[test]
fn ebpf_metrics_report_the_maps_occupancy_and_capacity() {
    require!(Mode::Ebpf);
    let iso = Isolation::new(Mode::Ebpf);
    let up = Upstream::start(UpstreamOpts::https());
    let daemon = start_daemon(&iso, &up, &[]);
    add_agent(&daemon, &iso, "bot");
    let value = format!("sk-maps-{}", support::random_hex(12));
    let authority = format!("{}:{}", up.host(), up.port());
    add_secret(&daemon, "up", &authority, &value, "bot");
    for i in 0..3 {
        let path = format!("/echo/maps-{i}");
        let out = agent_run(
            &daemon,
            "bot",
            &as_strs(&curl_args(up.host(), up.port(), "127.0.0.1", &path)),
        );
        assert!(out.success(), "{out:#?}\n{}", daemon.log());
        assert_eq!(up.requests_to(&path).len(), 1, "{}", daemon.log());
    }

    let text = scrape(&daemon, "prometheus");
    assert!(
        text.contains(r#"airlock_interception_mode{mode="ebpf"} 1"#),
        "{text}"
    );
    let kernel_max = |map: &str| {
        MapInfo::from_pin(iso.pin_dir.join(map))
            .expect("the pinned map")
            .max_entries()
    };
    for (map, max) in [
        (MAP_PORTS, MAX_PORTS),
        (MAP_BY_COOKIE, MAX_CONNECTIONS),
        (MAP_BY_TUPLE, MAX_CONNECTIONS),
        (MAP_NETNS, MAX_NETNS),
        (MAP_EVENT_RATE, EVENT_RATE_CGROUPS),
    ] {
        assert_eq!(kernel_max(map), max, "{map}: the kernel's max_entries");
        assert_eq!(capacity(&text, map), Some(f64::from(max)), "{map}\n{text}");
        let n = entries(&text, map).unwrap_or_else(|| panic!("no entries of {map}\n{text}"));
        assert!(n >= 0.0 && n <= f64::from(max), "{map}: {n}\n{text}");
    }
    let ports: BTreeSet<u16> = [up.port()]
        .into_iter()
        .chain(up.addr_v6().map(|a| a.port()))
        .collect();
    assert_eq!(
        entries(&text, MAP_PORTS),
        Some(ports.len() as f64),
        "{text}"
    );
    assert!(entries(&text, MAP_NETNS) >= Some(1.0), "the host's: {text}");
    // Every connection was accepted and identified: sock_ops moved its
    // record out of the cookie map, the gateway's getsockopt took it out
    // of the tuple map.
    assert_eq!(entries(&text, MAP_BY_COOKIE), Some(0.0), "{text}");
    assert_eq!(entries(&text, MAP_BY_TUPLE), Some(0.0), "{text}");

    const LEFT: usize = 5;
    let py = v6only_mapped_connects(up.port(), LEFT);
    let out = agent_run(&daemon, "bot", &["python3", "-c", &py]);
    assert!(out.success(), "{out:#?}");
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        vec!["ENETUNREACH"; LEFT],
        "{out:#?}"
    );
    let text = scrape(&daemon, "prometheus-2");
    let held = kernel_cookie_records(&iso);
    assert_eq!(held, LEFT, "the kernel's cookie map");
    assert_eq!(entries(&text, MAP_BY_COOKIE), Some(LEFT as f64), "{text}");
    assert_eq!(entries(&text, MAP_BY_TUPLE), Some(0.0), "{text}");
    eprintln!(
        "figures: {}",
        text.lines()
            .filter(|l| l.starts_with("airlock_ebpf_map_"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    assert!(!text.contains(&value), "a secret is in /metrics");

    if !prometheus::available() {
        eprintln!("SKIPPED: the Prometheus part needs /usr/bin/prometheus (cargo xtask setup)");
        return;
    }
    // The alert docs/metrics.md suggests, evaluated by a real Prometheus.
    let token = daemon
        .cli_ok(&["admin", "token", "create", "prometheus-3"])
        .trim()
        .to_owned();
    let dash = daemon.status_json()["dashboard_addr"]
        .as_str()
        .expect("dashboard_addr")
        .to_owned();
    let prom = Prometheus::start(&dash, "/metrics", &token);
    let query = format!(
        r#"airlock_ebpf_map_entries{{map="{MAP_BY_COOKIE}"}} / airlock_ebpf_map_capacity{{map="{MAP_BY_COOKIE}"}}"#
    );
    let expected = LEFT as f64 / f64::from(MAX_CONNECTIONS);
    let seen = wait_until(Duration::from_secs(30), Duration::from_millis(500), || {
        let result = prom.query(&query);
        let value: f64 = result.first()?["value"][1].as_str()?.parse().ok()?;
        ((value - expected).abs() < 1e-12).then_some(value)
    });
    assert!(
        seen.is_some(),
        "Prometheus never had the cookie map at {expected}: target {:?}, result {:?}, log {}",
        prom.target_health(),
        prom.query(&query),
        prom.log()
    );
}

/// The nftables fallback has no maps: no occupancy series at all.
#[test]
fn nftables_metrics_have_no_ebpf_maps() {
    require!(Mode::Nftables);
    let iso = Isolation::new(Mode::Nftables);
    let up = Upstream::start(UpstreamOpts::https());
    let daemon = start_daemon(&iso, &up, &[]);
    let text = scrape(&daemon, "prometheus");
    assert!(
        text.contains(r#"airlock_interception_mode{mode="nftables"} 1"#),
        "{text}"
    );
    assert!(!text.contains("airlock_ebpf_map_"), "{text}");
}

/// Fills both record maps past their capacity with records no connection
/// can match (socket cookies far above any this boot hands out, 4-tuples
/// in no network namespace: cookie 0), as the kernel's own LRU would hold
/// records left behind.
fn flood_record_maps(iso: &Isolation, n: u32) {
    let open = |name: &str| {
        Map::from_map_data(MapData::from_pin(iso.pin_dir.join(name)).expect("a pinned map"))
            .expect("a map aya knows")
    };
    let mut cookies = open(MAP_BY_COOKIE);
    let mut cookies =
        BpfHashMap::<&mut MapData, u64, OrigInfo>::try_from(&mut cookies).expect("layout");
    let mut tuples = open(MAP_BY_TUPLE);
    let mut tuples =
        BpfHashMap::<&mut MapData, TupleKey, OrigInfo>::try_from(&mut tuples).expect("layout");
    for i in 0..n {
        cookies
            .insert(u64::MAX - u64::from(i), OrigInfo::default(), 0)
            .expect("an LRU insert evicts, it does not fail");
        let key = TupleKey {
            client_port: (i & 0xffff) as u16,
            server_port: (i >> 16) as u16 + 1,
            ..TupleKey::default()
        };
        tuples
            .insert(key, OrigInfo::default(), 0)
            .expect("an LRU insert evicts, it does not fail");
    }
}

/// Record maps at (and past) capacity: the gauges stay at most the
/// capacity, a scrape that walks 2 × 65,536 keys still answers in time,
/// and an agent still gets through, because a full LRU map evicts the
/// oldest record (a left-behind one) for a new connection's.
#[test]
fn ebpf_full_record_maps_read_at_most_their_capacity_and_agents_still_connect() {
    require!(Mode::Ebpf);
    let iso = Isolation::new(Mode::Ebpf);
    let up = Upstream::start(UpstreamOpts::https());
    let daemon = start_daemon(&iso, &up, &[]);
    add_agent(&daemon, &iso, "bot");
    let value = format!("sk-full-{}", support::random_hex(12));
    let authority = format!("{}:{}", up.host(), up.port());
    add_secret(&daemon, "up", &authority, &value, "bot");

    flood_record_maps(&iso, MAX_CONNECTIONS + MAX_CONNECTIONS / 4);
    let token = daemon
        .cli_ok(&["admin", "token", "create", "prometheus"])
        .trim()
        .to_owned();
    let dash = daemon.status_json()["dashboard_addr"]
        .as_str()
        .expect("dashboard_addr")
        .to_owned();
    let url = format!("http://{dash}/metrics");
    let started = Instant::now();
    let out = get(&url, Some(&token));
    let took = started.elapsed();
    assert!(out.stdout.starts_with("HTTP/1.1 200"), "{out:#?}");
    let capacity = f64::from(MAX_CONNECTIONS);
    for map in [MAP_BY_COOKIE, MAP_BY_TUPLE] {
        let n = entries(&out.stdout, map).unwrap_or_else(|| panic!("no {map}: {out:#?}"));
        // The kernel's LRU may start evicting a little before it is full.
        assert!(
            n <= capacity && n >= capacity * 0.9,
            "{map}: {n} of {capacity}"
        );
        eprintln!("figures: {map} full: {n} of {capacity} entries");
    }
    eprintln!("figures: a scrape walking both full record maps took {took:?}");
    assert!(took < Duration::from_secs(5), "the scrape took {took:?}");

    let out = agent_run(
        &daemon,
        "bot",
        &as_strs(&curl_args(up.host(), up.port(), "127.0.0.1", "/echo/full")),
    );
    assert!(out.success(), "{out:#?}\n{}", daemon.log());
    assert_eq!(up.requests_to("/echo/full").len(), 1, "{}", daemon.log());
}

/// Records left behind survive the daemon (the maps are pinned) and are
/// flushed by the next start, which adopts the pinned programs and
/// reports the adopted maps: the gauges are the programs' maps, not a
/// copy made at load.
#[test]
fn ebpf_a_restart_adopts_the_maps_it_reports_and_flushes_what_was_left() {
    require!(Mode::Ebpf);
    let iso = Isolation::new(Mode::Ebpf);
    let up = Upstream::start(UpstreamOpts::https());
    let mut daemon = start_daemon(&iso, &up, &[]);
    add_agent(&daemon, &iso, "bot");
    const LEFT: usize = 3;
    let py = v6only_mapped_connects(up.port(), LEFT);
    let out = agent_run(&daemon, "bot", &["python3", "-c", &py]);
    assert!(out.success(), "{out:#?}");
    let text = scrape(&daemon, "prometheus");
    assert_eq!(entries(&text, MAP_BY_COOKIE), Some(LEFT as f64), "{text}");

    daemon.restart();
    let mode = daemon.status_json()["mode"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(mode.contains("adopted pinned programs"), "{mode}");
    assert!(
        daemon.log().contains("removed connection records"),
        "{}",
        daemon.log()
    );
    assert_eq!(kernel_cookie_records(&iso), 0, "the kernel's cookie map");
    let text = scrape(&daemon, "prometheus-2");
    assert_eq!(entries(&text, MAP_BY_COOKIE), Some(0.0), "{text}");
    // The adopted maps are the ones reported: a record left now counts.
    let out = agent_run(
        &daemon,
        "bot",
        &["python3", "-c", &v6only_mapped_connects(up.port(), 1)],
    );
    assert!(out.success(), "{out:#?}");
    let text = scrape(&daemon, "prometheus-3");
    assert_eq!(entries(&text, MAP_BY_COOKIE), Some(1.0), "{text}");
    assert_eq!(kernel_cookie_records(&iso), 1, "the kernel's cookie map");
}
