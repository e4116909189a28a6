//! The address browsers reach the dashboard at, when it is not the
//! listener's own: behind a TLS-terminating reverse proxy the operator's
//! browser opens `https://airlock.example.com`, while the daemon listens
//! on `127.0.0.1:10254`. The redirect URIs the dashboard hands to an
//! OAuth provider (Connect's `/oauth2/callback`, OIDC login's
//! `/login/oidc/callback`) must be the browser's address, or the provider
//! sends the browser to an address it cannot reach.
//!
//! Only an origin is accepted (scheme, host, optional port): the dashboard
//! serves its pages at the root and builds every link from there, so a
//! path prefix would break them; a reverse proxy gives the dashboard a
//! host name of its own instead.

use std::fmt;
use std::net::IpAddr;

// The `url` crate as openidconnect re-exports it (the version in the tree).
use openidconnect::url::{Host, Url};

/// The text itself is never repeated in an error: it may hold a password
/// (`https://user:pw@host`), which must not reach a log.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublicUrlError {
    #[error("the dashboard's public URL is not a URL like https://airlock.example.com")]
    NotUrl,
    #[error(
        "the dashboard's public URL starts with {0}:// but must start with https:// (http:// \
         only for a loopback address, or with --insecure-public)"
    )]
    Scheme(String),
    #[error(
        "the dashboard's public URL must be an origin only, like https://airlock.example.com: \
         the dashboard serves at the root, so give it a host name of its own at the reverse \
         proxy instead of a path, a query or credentials"
    )]
    NotOrigin,
}

/// A validated origin, kept without a trailing slash so paths append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(String);

impl PublicUrl {
    /// `insecure_public`: the operator accepted a dashboard without TLS
    /// beyond loopback, so a plain `http://` origin elsewhere is theirs to
    /// choose. Otherwise plain HTTP is for loopback only, as most OAuth
    /// providers require of redirect URIs (RFC 8252 §7.3).
    pub fn parse(text: &str, insecure_public: bool) -> Result<PublicUrl, PublicUrlError> {
        let text = text.trim();
        let url = Url::parse(text).map_err(|_| PublicUrlError::NotUrl)?;
        let loopback = match url.host() {
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
            Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            None => return Err(PublicUrlError::NotUrl),
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback || insecure_public => {}
            scheme => return Err(PublicUrlError::Scheme(scheme.to_owned())),
        }
        if url.path() != "/"
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(PublicUrlError::NotOrigin);
        }
        Ok(PublicUrl(url.origin().ascii_serialization()))
    }

    /// The listener's own address, for a dashboard reached directly.
    pub fn of_listener(addr: std::net::SocketAddr) -> PublicUrl {
        PublicUrl(format!("http://{addr}"))
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

impl fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_is_kept_without_its_slash_and_default_port() {
        let u = PublicUrl::parse("https://Airlock.Example.com:443/", false).unwrap();
        assert_eq!(u.to_string(), "https://airlock.example.com");
        assert_eq!(
            u.join("/oauth2/callback"),
            "https://airlock.example.com/oauth2/callback"
        );
        let u = PublicUrl::parse("https://airlock.example.com:8443", false).unwrap();
        assert_eq!(u.to_string(), "https://airlock.example.com:8443");
    }

    #[test]
    fn plain_http_is_for_loopback_unless_the_operator_accepted_it() {
        assert!(PublicUrl::parse("http://127.0.0.1:9000", false).is_ok());
        assert!(PublicUrl::parse("http://[::1]:9000", false).is_ok());
        assert!(PublicUrl::parse("http://localhost:9000", false).is_ok());
        assert!(matches!(
            PublicUrl::parse("http://airlock.lan", false),
            Err(PublicUrlError::Scheme(_))
        ));
        assert!(PublicUrl::parse("http://airlock.lan", true).is_ok());
        assert!(matches!(
            PublicUrl::parse("ftp://airlock.lan", true),
            Err(PublicUrlError::Scheme(_))
        ));
    }

    #[test]
    fn anything_beyond_an_origin_is_refused() {
        for bad in [
            "https://airlock.example.com/airlock",
            "https://airlock.example.com/?x=1",
            "https://airlock.example.com/#top",
            "https://admin:pw@airlock.example.com",
        ] {
            assert!(
                PublicUrl::parse(bad, false) == Err(PublicUrlError::NotOrigin),
                "{bad}"
            );
        }
        for bad in ["airlock.example.com", "", "https://"] {
            assert!(
                PublicUrl::parse(bad, false) == Err(PublicUrlError::NotUrl),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_password_in_the_text_is_not_repeated() {
        let err = PublicUrl::parse("https://admin:hunter2@airlock.example.com", false).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn the_listener_default_is_plain_http_to_its_address() {
        let u = PublicUrl::of_listener("127.0.0.1:10254".parse().unwrap());
        assert_eq!(u.join("/x"), "http://127.0.0.1:10254/x");
    }
}
