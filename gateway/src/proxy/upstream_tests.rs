//! The pool and its HTTP/1.1 connections, against a real
//! loopback server that speaks HTTP/1.1 by hand, so each test decides
//! exactly when the server answers, stalls or closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::proxy::body::{ByteCounter, Direction, Traffic};

/// What the server does after reading a request head.
#[derive(Clone, Copy)]
enum Reply {
    /// Answers `body` and keeps the connection.
    KeepAlive(&'static str),
    /// Answers `body`, then closes without saying so (the client thinks
    /// the connection is kept).
    ThenClose(&'static str),
    /// Answers with `Connection: close`, then closes.
    Close(&'static str),
    /// 204 No Content, kept.
    NoContent,
    /// `body` in chunks with a pause before each.
    Slowly(&'static [&'static str]),
    /// Promises 100 bytes, sends 10 and closes.
    CutShort,
}

struct Server {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

async fn server(reply: Reply) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(tcp, reply));
        }
    });
    Server { addr, accepted }
}

async fn serve(mut tcp: TcpStream, reply: Reply) {
    let mut buf = Vec::new();
    loop {
        // One request head (the tests send no bodies).
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.clear();
        let sized = |body: &str, extra: &str| {
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n{extra}\r\n{body}",
                body.len()
            )
        };
        let result = match reply {
            Reply::KeepAlive(body) => tcp.write_all(sized(body, "").as_bytes()).await,
            Reply::ThenClose(body) => {
                let _ = tcp.write_all(sized(body, "").as_bytes()).await;
                return;
            }
            Reply::Close(body) => {
                let head = sized(body, "connection: close\r\n");
                let _ = tcp.write_all(head.as_bytes()).await;
                return;
            }
            Reply::NoContent => tcp.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await,
            Reply::Slowly(parts) => {
                let mut r = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
                for part in parts {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    let chunk = format!("{:x}\r\n{part}\r\n", part.len());
                    r = r.and(tcp.write_all(chunk.as_bytes()).await);
                }
                r.and(tcp.write_all(b"0\r\n\r\n").await)
            }
            Reply::CutShort => {
                let head = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789";
                let _ = tcp.write_all(head.as_bytes()).await;
                return;
            }
        };
        if result.is_err() {
            return;
        }
    }
}

fn pool() -> Upstreams {
    let tls = crate::tls::upstream::upstream_client_config(None).unwrap();
    Upstreams::new(tls, Duration::from_secs(5))
}

fn key(addr: SocketAddr) -> UpstreamKey {
    UpstreamKey {
        addr,
        tls_name: None,
        protocols: Protocols::Http1,
    }
}

fn get() -> Request<UpBody> {
    let body = Counted::new(
        Either::Right(Empty::<Bytes>::new()),
        ByteCounter::new(Arc::new(Traffic::default()), Direction::Up),
    );
    Request::builder()
        .uri("/x")
        .header(http::header::HOST, "upstream.test")
        .body(body)
        .unwrap()
}

async fn fetch(pool: &Upstreams, key: &UpstreamKey) -> Result<String, String> {
    let resp = pool.send(key, get()).await.map_err(|e| e.to_string())?;
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8(body.to_bytes().to_vec()).unwrap())
}

/// Sends `times` requests in turn to a server answering `reply`, each
/// of which must get `body`; returns the connections the server accepted.
async fn accepted_for(reply: Reply, body: &str, times: usize) -> usize {
    let server = server(reply).await;
    let (pool, key) = (pool(), key(server.addr));
    for _ in 0..times {
        assert_eq!(fetch(&pool, &key).await.unwrap(), body);
    }
    server.accepted.load(Ordering::SeqCst)
}

#[tokio::test]
async fn requests_in_turn_share_one_connection() {
    assert_eq!(accepted_for(Reply::KeepAlive("hello"), "hello", 5).await, 1);
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_replaced() {
    let server = server(Reply::ThenClose("once")).await;
    let (pool, key) = (pool(), key(server.addr));
    assert_eq!(fetch(&pool, &key).await.unwrap(), "once");
    // The close reaches the client while the connection sits in the pool:
    // the request goes on a new connection, never on the closed one.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(fetch(&pool, &key).await.unwrap(), "once");
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_the_server_said_it_closes_is_not_reused() {
    assert_eq!(accepted_for(Reply::Close("bye"), "bye", 3).await, 3);
}

#[tokio::test]
async fn an_empty_response_dropped_unread_returns_its_connection() {
    let server = server(Reply::NoContent).await;
    let (pool, key) = (pool(), key(server.addr));
    for _ in 0..3 {
        let resp = pool.send(&key, get()).await.unwrap();
        assert_eq!(resp.status(), 204);
        // As hyper's server does with a body it knows is empty.
        drop(resp);
        // Its connection's task may take a moment to be ready again.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_body_in_parts_streams_and_its_connection_is_reused() {
    // One thread: the connection's task and the body's reader take turns.
    let server = server(Reply::Slowly(&["one ", "two ", "three"])).await;
    let (pool, key) = (pool(), key(server.addr));
    let resp = pool.send(&key, get()).await.unwrap();
    let mut body = resp.into_body();
    let mut parts = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            parts.push(String::from_utf8(data.to_vec()).unwrap());
        }
    }
    assert_eq!(parts.concat(), "one two three");
    assert!(parts.len() >= 3, "streamed, not buffered: {parts:?}");
    drop(body);
    assert_eq!(fetch(&pool, &key).await.unwrap(), "one two three");
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_cut_short_fails_and_its_connection_is_not_reused() {
    let server = server(Reply::CutShort).await;
    let (pool, key) = (pool(), key(server.addr));
    assert!(fetch(&pool, &key).await.is_err());
    assert!(fetch(&pool, &key).await.is_err());
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
}
