//! Browser flows that leave the dashboard and come back (the OpenID
//! Connect login, a secret's Connect): what each started flow must
//! remember until its callback, in memory, keyed by its `state`, bounded
//! in number and in age so that someone starting flows in a loop costs
//! nothing but the oldest of them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Flows started and not yet called back.
pub struct Pending<T> {
    lifetime: Duration,
    max: usize,
    table: Mutex<HashMap<String, (Instant, T)>>,
}

impl<T> Pending<T> {
    /// At most `max` flows, each usable for `lifetime`.
    pub fn new(lifetime: Duration, max: usize) -> Self {
        Pending {
            lifetime,
            max,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, T)>> {
        // A poisoned lock only means a request panicked mid-update; the map
        // is still consistent.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers a flow under `state`, dropping expired ones and, when
    /// full, the oldest.
    pub fn insert(&self, state: String, value: T) {
        let mut table = self.lock();
        table.retain(|_, (created, _)| created.elapsed() < self.lifetime);
        if table.len() >= self.max
            && let Some(oldest) = table
                .iter()
                .min_by_key(|(_, (created, _))| *created)
                .map(|(k, _)| k.clone())
        {
            table.remove(&oldest);
        }
        table.insert(state, (Instant::now(), value));
    }

    /// The flow of `state`, removed: a state works once, and not after
    /// its lifetime.
    pub fn take(&self, state: &str) -> Option<T> {
        self.lock()
            .remove(state)
            .filter(|(created, _)| created.elapsed() < self.lifetime)
            .map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_works_once_and_the_oldest_goes_first() {
        let p = Pending::new(Duration::from_secs(60), 2);
        p.insert("a".into(), 1);
        p.insert("b".into(), 2);
        p.insert("c".into(), 3);
        assert_eq!(p.take("a"), None, "pushed out by the third");
        assert_eq!(p.take("b"), Some(2));
        assert_eq!(p.take("b"), None, "single use");
        assert_eq!(p.take("c"), Some(3));
    }

    #[test]
    fn expired_states_are_refused() {
        let p = Pending::new(Duration::ZERO, 4);
        p.insert("a".into(), ());
        assert_eq!(p.take("a"), None);
    }
}
