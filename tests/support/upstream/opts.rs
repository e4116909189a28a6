//! What an [`Upstream`](super::Upstream) serves: TLS or plain, which HTTP
//! versions, which names, which addresses.

use std::sync::Arc;

use super::DEFAULT_NAMES;
use super::ca::TestCa;

/// Which HTTP versions an [`Upstream`] speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocols {
    /// TLS: ALPN `h2` and `http/1.1` (the negotiated one is enforced; without
    /// ALPN both are accepted). Plain: HTTP/1.1 and h2c prior knowledge.
    #[default]
    Auto,
    /// TLS: ALPN `http/1.1` only. Plain: HTTP/1.1 only.
    Http1Only,
    /// TLS: ALPN `h2` only (a client offering only `http/1.1` fails the
    /// handshake). Plain: h2c prior knowledge only.
    Http2Only,
}

/// Options of [`Upstream::start`]. `UpstreamOpts::default()` is HTTPS with
/// ALPN h2 + http/1.1, a fresh CA, [`DEFAULT_NAMES`], IPv4 only.
#[derive(Clone, Debug)]
pub struct UpstreamOpts {
    /// CA that signs the server certificate; a fresh one (in its own temp
    /// dir) when `None`.
    pub ca: Option<Arc<TestCa>>,
    /// `false`: serve plain HTTP (no TLS).
    pub tls: bool,
    pub protocols: Protocols,
    /// SANs of the server certificate; the first is [`Upstream::host`].
    pub names: Vec<String>,
    /// Also listen on `[::1]:0`.
    pub ipv6: bool,
}

impl Default for UpstreamOpts {
    fn default() -> Self {
        UpstreamOpts {
            ca: None,
            tls: true,
            protocols: Protocols::Auto,
            names: DEFAULT_NAMES.iter().map(|s| (*s).to_owned()).collect(),
            ipv6: false,
        }
    }
}

impl UpstreamOpts {
    /// HTTPS, ALPN h2 + http/1.1 (same as `default()`).
    pub fn https() -> Self {
        Self::default()
    }

    /// Plain HTTP (HTTP/1.1 and h2c prior knowledge).
    pub fn plain_http() -> Self {
        UpstreamOpts {
            tls: false,
            ..Self::default()
        }
    }

    pub fn http1_only(mut self) -> Self {
        self.protocols = Protocols::Http1Only;
        self
    }

    pub fn http2_only(mut self) -> Self {
        self.protocols = Protocols::Http2Only;
        self
    }

    pub fn with_ca(mut self, ca: Arc<TestCa>) -> Self {
        self.ca = Some(ca);
        self
    }

    pub fn with_names<S: AsRef<str>>(mut self, names: &[S]) -> Self {
        self.names = names.iter().map(|n| n.as_ref().to_owned()).collect();
        self
    }

    pub fn with_ipv6(mut self) -> Self {
        self.ipv6 = true;
        self
    }
}
