//! Where the gateway may connect: name resolution and the destination check.
//!
//! The explicit proxy must not become a way into the host: upstream
//! addresses on loopback, link-local (169.254.0.0/16 and fe80::/10, where
//! cloud metadata services live), unspecified, multicast or broadcast
//! addresses are refused unless an operator allowed their network
//! (`AIRLOCK_ALLOW_UPSTREAMS`), and the daemon's own ports on local
//! addresses are refused always. The check runs on resolved addresses, so
//! a name that resolves to 127.0.0.1 (DNS rebinding) is refused too.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use super::error::ProxyError;

const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The rules for upstream destinations.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    pub allow: Vec<IpNet>,
    pub resolve: Vec<(String, IpAddr)>,
    /// The daemon's own listening ports.
    pub own_ports: Vec<u16>,
}

/// AWS's IPv6 instance metadata endpoint (fd00:ec2::254).
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

fn is_special(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_special(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unicast_link_local()
                || v6 == AWS_METADATA_V6
        }
    }
}

fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_unspecified())
        }
    }
}

impl Egress {
    /// Is the gateway allowed to connect to `addr`?
    pub fn check(&self, addr: SocketAddr) -> Result<(), ProxyError> {
        let ip = addr.ip();
        if is_local(ip) && self.own_ports.contains(&addr.port()) {
            return Err(ProxyError::DestinationRefused(format!(
                "{addr} is this gateway's own port"
            )));
        }
        if is_special(ip) && !self.allow.iter().any(|net| net.contains(&ip)) {
            return Err(ProxyError::DestinationRefused(format!(
                "connections to {ip} (loopback, link-local or metadata addresses) are not allowed"
            )));
        }
        Ok(())
    }

    /// Resolves `host` (a name or IP literal) and returns the first
    /// allowed address.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, ProxyError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            let addr = SocketAddr::new(ip, port);
            self.check(addr)?;
            return Ok(addr);
        }
        let lower = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some((_, ip)) = self.resolve.iter().find(|(h, _)| *h == lower) {
            let addr = SocketAddr::new(*ip, port);
            self.check(addr)?;
            return Ok(addr);
        }
        let addrs = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((bare, port)))
            .await
            .map_err(|_| ProxyError::UpstreamTimeout(format!("resolving {host} timed out")))?
            .map_err(|e| ProxyError::Upstream(format!("cannot resolve {host}: {e}")))?;
        let mut refused = None;
        for addr in addrs {
            match self.check(addr) {
                Ok(()) => return Ok(addr),
                Err(e) => refused = Some(e),
            }
        }
        Err(refused.unwrap_or_else(|| ProxyError::Upstream(format!("{host} has no address"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_the_host_and_metadata_by_default() {
        let e = Egress {
            own_ports: vec![10255],
            ..Default::default()
        };
        for a in [
            "127.0.0.1:443",
            "169.254.169.254:80",
            "0.0.0.0:443",
            "[::1]:443",
            "[fe80::1]:443",
            "[::ffff:127.0.0.1]:443",
            "[fd00:ec2::254]:80",
        ] {
            assert!(e.check(addr(a)).is_err(), "{a}");
        }
        assert!(e.check(addr("93.184.216.34:443")).is_ok());
        assert!(e.check(addr("10.1.2.3:443")).is_ok());
    }

    #[test]
    fn allowed_networks_open_up_but_own_ports_stay_closed() {
        let e = Egress {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
            own_ports: vec![10255],
            ..Default::default()
        };
        assert!(e.check(addr("127.0.0.1:8443")).is_ok());
        assert!(e.check(addr("127.0.0.1:10255")).is_err());
        assert!(e.check(addr("[::1]:8443")).is_err());
    }

    #[tokio::test]
    async fn resolves_overrides_and_literals() {
        let e = Egress {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
            resolve: vec![("api.test.local".into(), "127.0.0.1".parse().unwrap())],
            own_ports: vec![],
        };
        assert_eq!(
            e.resolve("API.test.local.", 443).await.unwrap(),
            addr("127.0.0.1:443")
        );
        assert_eq!(
            e.resolve("127.0.0.2", 1).await.unwrap(),
            addr("127.0.0.2:1")
        );
        assert!(e.resolve("[::1]", 1).await.is_err());
    }
}
