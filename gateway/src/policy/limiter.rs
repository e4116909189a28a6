//! Token buckets, one per (rule, agent).
//!
//! A bucket holds up to `count` tokens and refills continuously at
//! `count / period`, so a limit of 60/min allows a burst of 60 and then one
//! a second: no double burst at a window's edge, as a fixed window allows.
//! The state lives in memory; a mutex guards the map for the few
//! nanoseconds of a lookup and is never held across an await.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Rate;
use crate::model::AgentName;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// The rate the bucket was built for; a changed rule starts afresh.
    rate: Rate,
}

/// Beyond this many buckets, idle full ones are forgotten.
const PRUNE_ABOVE: usize = 100_000;

#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<(i64, AgentName), Bucket>>,
}

impl RateLimiter {
    /// Takes a token, or says how long until one is available.
    pub fn try_acquire(&self, rule: i64, agent: &AgentName, rate: Rate) -> Result<(), Duration> {
        self.try_acquire_at(rule, agent, rate, Instant::now())
    }

    fn try_acquire_at(
        &self,
        rule: i64,
        agent: &AgentName,
        rate: Rate,
        now: Instant,
    ) -> Result<(), Duration> {
        let capacity = f64::from(rate.count);
        let per_sec = capacity / f64::from(rate.period_secs);
        // A poisoned lock only means another thread panicked mid-update of
        // plain numbers; the map is still usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, b| now.duration_since(b.last) < b.rate.period());
        }
        let bucket = buckets.entry((rule, agent.clone())).or_insert(Bucket {
            tokens: capacity,
            last: now,
            rate,
        });
        if bucket.rate != rate {
            *bucket = Bucket {
                tokens: capacity,
                last: now,
                rate,
            };
        }
        let elapsed = now.duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(capacity);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_evenly_without_double_bursts() {
        let limiter = RateLimiter::default();
        let agent = AgentName::parse("a").unwrap();
        let rate = Rate {
            count: 2,
            period_secs: 10,
        };
        let t0 = Instant::now();
        assert!(limiter.try_acquire_at(1, &agent, rate, t0).is_ok());
        assert!(limiter.try_acquire_at(1, &agent, rate, t0).is_ok());
        let wait = limiter.try_acquire_at(1, &agent, rate, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 5.0).abs() < 0.01, "{wait:?}");
        // Half a period later exactly one token is back, not two.
        let t1 = t0 + Duration::from_secs(5);
        assert!(limiter.try_acquire_at(1, &agent, rate, t1).is_ok());
        assert!(limiter.try_acquire_at(1, &agent, rate, t1).is_err());
    }

    #[test]
    fn a_changed_rate_starts_a_fresh_bucket() {
        let limiter = RateLimiter::default();
        let agent = AgentName::parse("a").unwrap();
        let t0 = Instant::now();
        let one = Rate {
            count: 1,
            period_secs: 60,
        };
        assert!(limiter.try_acquire_at(1, &agent, one, t0).is_ok());
        assert!(limiter.try_acquire_at(1, &agent, one, t0).is_err());
        let five = Rate {
            count: 5,
            period_secs: 60,
        };
        assert!(limiter.try_acquire_at(1, &agent, five, t0).is_ok());
    }
}
