use std::time::Instant;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;
use crate::tls::test_util::client_trusting;

fn cache(capacity: u64, ttl: Duration) -> (tempfile::TempDir, LeafCache) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(CertificateAuthority::load_or_create(dir.path()).unwrap());
    (dir, LeafCache::new(ca, capacity, ttl).unwrap())
}

fn name(text: &str) -> LeafName {
    LeafName::parse(text).unwrap()
}

#[tokio::test]
async fn full_handshake_negotiates_h2_with_the_minted_leaf() {
    let (_dir, cache) = cache(DEFAULT_CAPACITY, DEFAULT_TTL);
    let server_config = cache.server_config(&name("example.test")).await.unwrap();
    let client_config = client_trusting(cache.ca(), &[b"h2", b"http/1.1"]);
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);

    let server = tokio::spawn(async move {
        let mut tls = TlsAcceptor::from(server_config)
            .accept(server_io)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        assert_eq!(tls.get_ref().1.server_name(), Some("example.test"));
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.unwrap();
        tls.write_all(&buf).await.unwrap();
        tls.shutdown().await.unwrap();
    });
    let server_name = ServerName::try_from("example.test").unwrap();
    let mut tls = TlsConnector::from(client_config)
        .connect(server_name, client_io)
        .await
        .unwrap();
    let (_, conn) = tls.get_ref();
    assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(conn.peer_certificates().unwrap().len(), 2, "leaf then CA");
    tls.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    tls.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping");
    server.await.unwrap();
}

#[tokio::test]
async fn a_client_offering_only_http1_gets_http1() {
    let (_dir, cache) = cache(DEFAULT_CAPACITY, DEFAULT_TTL);
    let server_config = cache.server_config(&name("example.test")).await.unwrap();
    let client_config = client_trusting(cache.ca(), &[b"http/1.1"]);
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move {
        let tls = TlsAcceptor::from(server_config)
            .accept(server_io)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    });
    let server_name = ServerName::try_from("example.test").unwrap();
    let tls = TlsConnector::from(client_config)
        .connect(server_name, client_io)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_for_one_name_mint_once() {
    let (_dir, cache) = cache(DEFAULT_CAPACITY, DEFAULT_TTL);
    let cache = Arc::new(cache);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.server_config(&name("api.example.test")).await })
        })
        .collect();
    let mut configs = Vec::new();
    for task in tasks {
        configs.push(task.await.unwrap().unwrap());
    }
    assert_eq!(cache.mints(), 1);
    assert_eq!(cache.hits(), 19);
    assert!(configs.iter().all(|c| Arc::ptr_eq(c, &configs[0])));
}

#[tokio::test]
async fn the_cache_is_bounded() {
    let (_dir, cache) = cache(2, DEFAULT_TTL);
    for i in 0..5 {
        cache
            .server_config(&name(&format!("host{i}.test")))
            .await
            .unwrap();
    }
    cache.configs.run_pending_tasks().await;
    assert!(cache.stats().entries <= 2, "{:?}", cache.stats());
    assert_eq!(cache.mints(), 5);
}

#[tokio::test]
async fn entries_expire_after_the_ttl() {
    let (_dir, cache) = cache(DEFAULT_CAPACITY, Duration::from_millis(50));
    let host = name("expiring.test");
    cache.server_config(&host).await.unwrap();
    cache.server_config(&host).await.unwrap();
    assert_eq!((cache.mints(), cache.hits()), (1, 1));
    tokio::time::sleep(Duration::from_millis(120)).await;
    cache.server_config(&host).await.unwrap();
    assert_eq!(cache.mints(), 2);
}

#[test]
fn the_ttl_is_capped_below_the_leaf_life() {
    let (_dir, cache) = cache(DEFAULT_CAPACITY, Duration::from_secs(30 * 24 * 60 * 60));
    assert_eq!(cache.configs.policy().time_to_live(), Some(MAX_TTL));
    assert!(MAX_TTL < LEAF_VALIDITY);
}

/// `cargo test --release -p airlock --lib tls::leaf::tests::timings -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing report, run by hand in release mode"]
async fn timings() {
    let (_dir, cache) = cache(DEFAULT_CAPACITY, DEFAULT_TTL);
    let ca = cache.ca().clone();
    let host = name("bench.example.test");
    const MINTS: u32 = 100;
    let start = Instant::now();
    for _ in 0..MINTS {
        ca.mint_leaf(&host).unwrap();
    }
    let mint = start.elapsed() / MINTS;

    let start = Instant::now();
    for i in 0..MINTS {
        cache
            .server_config(&name(&format!("h{i}.bench.test")))
            .await
            .unwrap();
    }
    let miss = start.elapsed() / MINTS;

    const LOOKUPS: u32 = 100_000;
    let hot = name("h7.bench.test");
    let start = Instant::now();
    for _ in 0..LOOKUPS {
        cache.server_config(&hot).await.unwrap();
    }
    let hit = start.elapsed() / LOOKUPS;
    eprintln!(
        "mint_leaf mean {mint:?} ({MINTS} mints); cache miss (mint + config, blocking pool) mean {miss:?}; \
         cache hit mean {hit:?} ({LOOKUPS} lookups)"
    );
}
