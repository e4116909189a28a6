//! What several gateway tests share: a TLS session through a CONNECT
//! tunnel, Basic proxy credentials, and Python clients (`requests`,
//! `websockets`) through the proxy.

use rustls_pki_types::pem::PemObject;

use std::process::Command;
use std::time::Duration;

use crate::support::gw::Gw;
use crate::support::run;

/// Opens a CONNECT tunnel as `bot` and TLS to `sni` inside it, trusting
/// only the Airlock CA.
pub(crate) async fn tunnel_tls(
    gw: &Gw,
    sni: &str,
    alpn: Vec<Vec<u8>>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(&gw.proxy).await?;
    let auth = base64_basic(&format!("bot:{}", gw.token));
    let target = format!("api.test.local:{}", gw.up.port());
    tcp.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {auth}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = [0u8; 1024];
    let n = tcp.read(&mut buf).await?;
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&gw.ca)?;
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = rustls_pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    connector.connect(name, tcp).await
}

pub(crate) fn base64_basic(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Python `requests` through the proxy as `bot`: runs `code` with `url`,
/// `proxies` and `ca` defined, and returns what it printed.
pub(crate) fn python(gw: &Gw, url: &str, code: &str) -> String {
    let py = format!(
        "import requests, sys\nurl = {url:?}\nproxies = {{'https': {proxy:?}}}\nca = {ca:?}\n{code}",
        proxy = gw.proxy_url(),
        ca = gw.ca,
    );
    let out = run(
        Command::new("python3").args(["-c", &py]),
        None,
        Duration::from_secs(600),
    );
    assert!(out.success(), "{out:#?}");
    out.stdout
}

/// Python `websockets` through the proxy: each message sent on `url`,
/// each answer (or how the connection ended, with the reason unless it
/// was a close) printed on its own line as JSON. A list of strings is sent
/// as one fragmented message. The timeouts are generous for a loaded CI
/// machine; one that expires says at which stage.
///
/// The asyncio client, not the sync one: the sync client reads its TLS
/// socket on a background thread while the main thread writes the
/// handshake on it, and about one opening in twenty on a busy machine
/// lost the request (the gateway saw TLS complete and then no request for
/// its 30 s header timeout; the client saw EOF, or CI a bare
/// `TimeoutError`). The asyncio client, one thread, never did in 280
/// openings (70 runs of the WebSocket tests under the same load).
pub(crate) fn websocket(gw: &Gw, url: &str, messages: &str) -> Vec<String> {
    let code = format!(
        "import asyncio, json, ssl\n\
         from websockets.asyncio.client import connect\n\
         from websockets.exceptions import ConnectionClosed\n\
         ctx = ssl.create_default_context(cafile=ca)\n\
         stage = 'opening'\n\
         async def main():\n\
         \x20   global stage\n\
         \x20   async with connect(url, ssl=ctx, proxy=proxies['https'], open_timeout=60, close_timeout=5) as ws:\n\
         \x20       for i, m in enumerate({messages}):\n\
         \x20           stage = f'waiting for the answer to message {{i}}'\n\
         \x20           await ws.send(m)\n\
         \x20           r = await asyncio.wait_for(ws.recv(), 60)\n\
         \x20           print(json.dumps(r if isinstance(r, str) else 'bytes: ' + r.decode()), flush=True)\n\
         try:\n\
         \x20   asyncio.run(main())\n\
         except TimeoutError:\n\
         \x20   print(json.dumps(f'ended: TimeoutError {{stage}}'))\n\
         except Exception as e:\n\
         \x20   why = '' if isinstance(e, ConnectionClosed) else f' ({{e}}; {{e.__cause__!r}})'\n\
         \x20   print(json.dumps('ended: ' + type(e).__name__ + why))\n"
    );
    python(gw, url, &code)
        .lines()
        .map(|l| serde_json::from_str::<String>(l).unwrap_or_else(|_| l.to_owned()))
        .collect()
}
