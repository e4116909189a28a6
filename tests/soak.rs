//! A short soak in the ordinary test run (issue #8, part 7): 20,000
//! requests through the explicit proxy with the credential injected, on
//! keep-alive connections that are closed and reopened every few hundred
//! requests, so connection set-up and teardown repeat too. Afterwards the
//! daemon's open file descriptors are back at their baseline and its
//! resident memory stayed within a bound after warm-up. No timing
//! assertions: the load is bounded by its count, with a generous time cap.
//!
//! The long soak (1,000,000 requests with oha, RSS and fds sampled every
//! second) is `cargo xtask soak`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::proxied::{self, Proxied};
use support::upstream::MAX_LOGGED_REQUESTS;

const REQUESTS: usize = 20_000;
const WARM_UP: usize = 2_000;
const WORKERS: usize = 8;
/// Requests per connection before it is closed and another opened.
const PER_CONNECTION: usize = 250;
/// How much resident memory may grow after warm-up.
const RSS_MARGIN_KIB: u64 = 32 * 1024;
/// The cap on the whole run: a hang fails, slowness does not.
const TIME_CAP: Duration = Duration::from_secs(600);

/// Sends `n` requests from `WORKERS` tasks; every answer must be 200.
async fn load(gw: &Proxied, n: usize) {
    let left = Arc::new(AtomicUsize::new(n));
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let dialer = gw.dialer();
        let left = left.clone();
        let target = gw.target();
        tasks.push(tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            'connections: loop {
                let mut tls = dialer.tunnel_tls(&[b"http/1.1"]).await?;
                for _ in 0..PER_CONNECTION {
                    let claimed = left
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1));
                    if claimed.is_err() {
                        break 'connections;
                    }
                    let req = format!("GET /echo/soak HTTP/1.1\r\nHost: {target}\r\n\r\n");
                    tls.write_all(req.as_bytes()).await?;
                    let status = proxied::read_response(&mut tls).await?;
                    if status != 200 {
                        return Err(std::io::Error::other(format!("answered {status}")));
                    }
                }
                let _ = tls.shutdown().await;
            }
            Ok::<(), std::io::Error>(())
        }));
    }
    for t in tasks {
        t.await
            .expect("a load task")
            .unwrap_or_else(|e| panic!("a soak request failed: {e}"));
    }
}

#[test]
fn twenty_thousand_requests_leak_neither_descriptors_nor_memory() {
    let gw = Proxied::start(&[]);
    let pid = gw.pid();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    rt.block_on(async {
        tokio::time::timeout(TIME_CAP, async {
            load(&gw, WARM_UP).await;
            // Let the warm-up's connections close and its audit land.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let fds_before = proxied::fd_count(pid);
            let rss_before = proxied::rss_kib(pid);
            load(&gw, REQUESTS - WARM_UP).await;
            let rss_after = proxied::rss_kib(pid);
            let fds_after =
                support::wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
                    let now = proxied::fd_count(pid);
                    // The upstream pool may keep one idle connection per
                    // worker that the warm-up did not need.
                    (now <= fds_before + WORKERS).then_some(now)
                });
            eprintln!(
                "soak: {REQUESTS} requests in {:?}; RSS {rss_before} → {rss_after} KiB; \
                 fds {fds_before} → {}",
                started.elapsed(),
                proxied::fd_count(pid)
            );
            assert!(
                fds_after.is_some(),
                "the daemon's open descriptors grew from {fds_before} to {}",
                proxied::fd_count(pid)
            );
            assert!(
                rss_after <= rss_before + RSS_MARGIN_KIB,
                "the daemon's resident memory grew from {rss_before} KiB to {rss_after} KiB \
                 after warm-up"
            );
        })
        .await
        .unwrap_or_else(|_| panic!("the soak did not finish within {TIME_CAP:?}"));
    });
    // Every request reached the upstream (its log keeps the last
    // MAX_LOGGED_REQUESTS, numbered from 1) with the real credential.
    let seen = gw.up.requests_to("/echo/soak");
    assert_eq!(seen.len(), REQUESTS.min(MAX_LOGGED_REQUESTS));
    assert_eq!(seen.last().map(|r| r.id), Some(REQUESTS as u64));
    let expected = format!("Bearer {}", gw.value);
    assert!(
        seen.iter()
            .all(|r| r.header("authorization") == Some(expected.as_str())),
        "a request reached the upstream without the injected credential"
    );
    // And every one was audited (more rows than the CLI lists at once).
    let audited = support::wait_until(Duration::from_secs(20), Duration::from_millis(250), || {
        let n: usize = gw
            .daemon
            .db()
            .psql("SELECT count(*) FROM audit_events WHERE path = '/echo/soak' AND status = 200")
            .trim()
            .parse()
            .unwrap_or(0);
        (n >= REQUESTS).then_some(n)
    });
    assert_eq!(
        audited,
        Some(REQUESTS),
        "not every soak request was audited"
    );
}
