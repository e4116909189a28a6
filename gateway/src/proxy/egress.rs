//! Where the gateway may connect: name resolution and the destination check.
//!
//! The explicit proxy must not become a way into the host: upstream
//! addresses on loopback, link-local (169.254.0.0/16 and fe80::/10, where
//! most cloud metadata services live), the metadata services outside it
//! (Alibaba's 100.100.100.200, Azure's wire server 168.63.129.16, AWS's
//! fd00:ec2::254), unspecified, multicast or broadcast addresses are
//! refused unless an operator allowed their network
//! (`AIRLOCK_ALLOW_UPSTREAMS`), and the daemon's own ports on local
//! addresses are refused always. The check runs on resolved addresses, so
//! a name that resolves to 127.0.0.1 (DNS rebinding) is refused too.
//!
//! IPv6 forms that carry an IPv4 address are judged by that address:
//! IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64's
//! well-known prefix (`64:ff9b::a.b.c.d`) and 6to4 (`2002:aabb:ccdd::/48`).
//! The local-use NAT64 prefix `64:ff9b:1::/48` (RFC 8215) puts the IPv4
//! address where the operator's prefix length says, so all of it is
//! refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use super::error::ProxyError;

const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The rules for upstream destinations.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    /// Networks the operator opened (`AIRLOCK_ALLOW_UPSTREAMS`) among the
    /// refused kinds: a local test upstream, an internal service.
    pub allow: Vec<IpNet>,
    /// Names answered without DNS (`--resolve HOST=IP`, lower case, no
    /// trailing dot), checked like any resolved address.
    pub resolve: Vec<(String, IpAddr)>,
    /// The daemon's own listening ports, refused on local addresses even
    /// where the network is allowed: an agent must not reach the dashboard
    /// or loop the proxy into itself.
    pub own_ports: Vec<u16>,
}

/// AWS's IPv6 instance metadata endpoint (fd00:ec2::254).
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
/// Metadata services outside 169.254.0.0/16: Alibaba Cloud's, and
/// Azure's wire server (which hands out VM extension settings).
const METADATA_V4: [Ipv4Addr; 2] = [
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(168, 63, 129, 16),
];

fn is_special(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || METADATA_V4.contains(&v4)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return is_special(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unicast_link_local()
                || v6 == AWS_METADATA_V6
                || is_local_use_nat64(v6)
        }
    }
}

/// The IPv4 address an IPv6 address stands for, if it is one of the
/// forms that embed one (see the module docs).
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let last32 = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    // IPv4-compatible (deprecated): ::a.b.c.d, but not :: and ::1.
    if s[..6] == [0; 6] && !v6.is_unspecified() && !v6.is_loopback() {
        return Some(last32());
    }
    // NAT64 well-known prefix 64:ff9b::/96.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(last32());
    }
    // 6to4 2002:aabb:ccdd::/48.
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// RFC 8215's local-use NAT64 prefix 64:ff9b:1::/48.
fn is_local_use_nat64(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1
}

fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || embedded_v4(v6).is_some_and(|v4| v4.is_loopback() || v4.is_unspecified())
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
            .map_err(|e| ProxyError::upstream(format!("cannot resolve {host}"), e))?;
        let mut refused = None;
        for addr in addrs {
            match self.check(addr) {
                Ok(()) => return Ok(addr),
                Err(e) => refused = Some(e),
            }
        }
        Err(refused
            .unwrap_or_else(|| ProxyError::Upstream(format!("{host} has no address").into())))
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

    /// Issue #15, item 8: metadata services outside link-local, and IPv6
    /// forms that embed a refused IPv4 address.
    #[test]
    fn refuses_other_metadata_services_and_embedded_ipv4() {
        let e = Egress::default();
        for a in [
            "100.100.100.200:80",
            "168.63.129.16:80",
            // NAT64 well-known prefix: 169.254.169.254, 127.0.0.1, 100.100.100.200
            "[64:ff9b::a9fe:a9fe]:80",
            "[64:ff9b::127.0.0.1]:443",
            "[64:ff9b::6464:64c8]:80",
            // Local-use NAT64: refused whole.
            "[64:ff9b:1::a9fe:a9fe]:80",
            "[64:ff9b:1:a9fe:a9:fe00::]:80",
            // 6to4 for 169.254.169.254 and 127.0.0.1.
            "[2002:a9fe:a9fe::]:80",
            "[2002:7f00:1::1]:443",
            // IPv4-compatible.
            "[::169.254.169.254]:80",
            "[::127.0.0.1]:443",
            "[::168.63.129.16]:80",
            "[::ffff:100.100.100.200]:80",
        ] {
            assert!(e.check(addr(a)).is_err(), "{a}");
        }
        // The same forms around a public address are fine (NAT64 and 6to4
        // are how IPv6-only hosts reach the IPv4 internet).
        for a in [
            "[64:ff9b::5db8:d822]:443",
            "[2002:5db8:d822::1]:443",
            "100.100.100.201:443",
            "[2001:db8::1]:443",
        ] {
            assert!(e.check(addr(a)).is_ok(), "{a}");
        }
        // The gateway's own ports behind an embedding form are still its own.
        let own = Egress {
            allow: vec!["::/0".parse().unwrap()],
            own_ports: vec![10255],
            ..Default::default()
        };
        assert!(own.check(addr("[::127.0.0.1]:10255")).is_err());
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
