//! Failed logins per client network: at most [`MAX_FAILURES`] in any
//! [`WINDOW`] (a sliding window, so no double burst at a window's edge).
//! Successful logins are not counted, so a typo does not lock anyone out
//! for long and a correct password after a few typos still works.
//!
//! Failures are counted per [`Bucket`], not per address, because an
//! attacker picks its source address freely within what it owns:
//!
//! - all of loopback (`127.0.0.0/8`, `::1`, and their IPv4-mapped forms) is
//!   one bucket: any local process can bind any of the 16 million 127/8
//!   addresses, so counting them apart is no limit at all;
//! - other IPv4 addresses count alone (`/32`): an IPv4 address is what one
//!   host (or one NAT) gets, and a `/24` would let one host lock out its
//!   neighbours;
//! - IPv6 counts per `/64`, the smallest prefix a site is handed, inside
//!   which a host picks addresses at will.
//!
//! The table is bounded ([`MAX_TRACKED`] buckets). When it is full of
//! buckets with recent failures, every further network shares one
//! overflow bucket: a spray from more networks than that fails closed (new
//! networks are limited together) instead of going uncounted.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MAX_FAILURES: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Bounds memory under a spray from many networks.
pub const MAX_TRACKED: usize = 4096;

/// Whose failures are counted together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// Every loopback address.
    Loopback,
    /// One IPv4 address.
    V4(Ipv4Addr),
    /// One IPv6 /64 (the address with its low 64 bits cleared).
    V6Net(Ipv6Addr),
    /// Every network that found the table full.
    Overflow,
}

impl Bucket {
    /// The bucket a client address counts in.
    pub fn of(ip: IpAddr) -> Bucket {
        let ip = match ip {
            // `::ffff:a.b.c.d` is an IPv4 client on a dual-stack socket.
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match ip {
            _ if ip.is_loopback() => Bucket::Loopback,
            IpAddr::V4(v4) => Bucket::V4(v4),
            IpAddr::V6(v6) => Bucket::V6Net(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        }
    }
}

#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<Bucket, VecDeque<Instant>>>,
}

/// Drops the failures that left the window.
fn expire(times: &mut VecDeque<Instant>) {
    while times.front().is_some_and(|t| t.elapsed() >= WINDOW) {
        times.pop_front();
    }
}

impl LoginLimiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Bucket, VecDeque<Instant>>> {
        // A poisoned lock only means another request panicked mid-update;
        // the map itself is still consistent.
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bucket `ip`'s failures go to now: its own if it has one or there
    /// is room for one, else the shared overflow bucket (which sits beside
    /// the [`MAX_TRACKED`] others).
    fn bucket_for(map: &mut HashMap<Bucket, VecDeque<Instant>>, ip: IpAddr) -> Bucket {
        let own = Bucket::of(ip);
        let owned =
            |map: &HashMap<Bucket, _>| map.len() - usize::from(map.contains_key(&Bucket::Overflow));
        if map.contains_key(&own) || owned(map) < MAX_TRACKED {
            return own;
        }
        // Full: forget the networks with no failure left in the window.
        map.retain(|b, t| *b == Bucket::Overflow || t.back().is_some_and(|l| l.elapsed() < WINDOW));
        if owned(map) < MAX_TRACKED {
            own
        } else {
            Bucket::Overflow
        }
    }

    /// `Err(wait)` while `ip`'s bucket has used up its failures.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let mut map = self.lock();
        let bucket = Self::bucket_for(&mut map, ip);
        let Some(times) = map.get_mut(&bucket) else {
            return Ok(());
        };
        expire(times);
        match times.front() {
            Some(oldest) if times.len() >= MAX_FAILURES => {
                Err(WINDOW.saturating_sub(oldest.elapsed()))
            }
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, ip: IpAddr) {
        let mut map = self.lock();
        let bucket = Self::bucket_for(&mut map, ip);
        let times = map.entry(bucket).or_default();
        expire(times);
        times.push_back(Instant::now());
        while times.len() > MAX_FAILURES {
            times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn fail_until_blocked(l: &LoginLimiter, ip: IpAddr) {
        for _ in 0..MAX_FAILURES {
            assert!(l.check(ip).is_ok());
            l.record_failure(ip);
        }
    }

    #[test]
    fn five_failures_then_wait() {
        let l = LoginLimiter::default();
        fail_until_blocked(&l, ip("192.0.2.1"));
        let wait = l.check(ip("192.0.2.1")).unwrap_err();
        assert!(wait > Duration::from_secs(50) && wait <= WINDOW);
        // IPv4 counts per address: the neighbour is not locked out.
        assert!(l.check(ip("192.0.2.2")).is_ok());
    }

    #[test]
    fn all_of_loopback_is_one_bucket() {
        let l = LoginLimiter::default();
        // An attacker rotating 127.x.y.z (and ::1, and the mapped form).
        for (i, a) in [
            "127.0.0.1",
            "127.0.0.2",
            "127.1.2.3",
            "::1",
            "::ffff:127.9.9.9",
        ]
        .iter()
        .enumerate()
        {
            assert!(l.check(ip(a)).is_ok(), "failure {i} from {a}");
            l.record_failure(ip(a));
        }
        for a in ["127.0.0.1", "127.200.0.7", "::1", "::ffff:127.0.0.1"] {
            assert!(l.check(ip(a)).is_err(), "{a} shares the loopback bucket");
        }
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            Bucket::of(ip("2001:db8:1:2:aaaa::1")),
            Bucket::of(ip("2001:db8:1:2:ffff:1:2:3"))
        );
        assert_ne!(
            Bucket::of(ip("2001:db8:1:2::1")),
            Bucket::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Bucket::of(ip("::ffff:192.0.2.9")),
            Bucket::V4(Ipv4Addr::new(192, 0, 2, 9))
        );
        let l = LoginLimiter::default();
        fail_until_blocked(&l, ip("2001:db8:1:2::1"));
        assert!(l.check(ip("2001:db8:1:2:dead:beef:0:1")).is_err());
        assert!(l.check(ip("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn a_full_table_fails_closed_into_the_overflow_bucket() {
        let l = LoginLimiter::default();
        // Fill the table with networks that each failed once, recently.
        for i in 0..u32::try_from(MAX_TRACKED).unwrap() {
            l.record_failure(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)));
        }
        // Fresh networks beyond that are still counted: together.
        let fresh = |i: u32| IpAddr::V4(Ipv4Addr::from(0xc633_6400 + i));
        for i in 0..u32::try_from(MAX_FAILURES).unwrap() {
            assert!(l.check(fresh(i)).is_ok(), "fresh network {i}");
            l.record_failure(fresh(i));
        }
        assert!(l.check(fresh(99)).is_err(), "the overflow bucket is full");
        assert!(l.lock().len() <= MAX_TRACKED + 1, "memory stays bounded");
        // A network that already had its own bucket keeps it.
        assert!(l.check(IpAddr::V4(Ipv4Addr::from(0x0a00_0001))).is_ok());
    }
}
