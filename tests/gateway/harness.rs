//! What several gateway tests share: a TLS session through a CONNECT
//! tunnel, and Basic proxy credentials.

use rustls_pki_types::pem::PemObject;

use crate::support::gw::Gw;

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
