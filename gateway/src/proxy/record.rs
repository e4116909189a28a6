//! The audit phase: one record per request, emitted when the request is
//! over, however it ended.
//!
//! An [`AuditGuard`] is created as a request arrives; each phase notes its
//! outcome on it. It emits its record when dropped: at the end of the
//! response body if there is one, or as soon as the gateway answered
//! itself (an error, a refusal). So the audit phase cannot be skipped.

use std::sync::Arc;
use std::time::Instant;

use http::Uri;

use super::body::{ByteCounter, Direction, Traffic};
use crate::audit::{AuditRecord, AuditSink, Decision};

/// One request's audit record in the making; emits it when dropped.
pub struct AuditGuard {
    /// Where the record goes on drop: a channel send that never waits, so
    /// dropping is cheap anywhere (even inside a response body).
    sink: AuditSink,
    /// The record's place in the queue, taken on arrival, so a request
    /// that is served can always be recorded ([`AuditSink::accepting`]).
    slot: Option<crate::audit::Slot>,
    /// When the request arrived, for the record's duration.
    started: Instant,
    /// Filled in by the phases as they run; taken out on drop.
    record: AuditRecord,
    /// Bytes sent upstream, counted by the request body as it streams,
    /// and back to the agent, counted by the response body (shared with
    /// them, hence atomic); read on drop.
    traffic: Arc<Traffic>,
    /// Set by [`AuditGuard::dismiss`]: the guard stood for a step that
    /// is not a request of its own, so nothing is recorded.
    dismissed: bool,
}

impl AuditGuard {
    pub fn start(
        sink: AuditSink,
        agent: Option<&str>,
        method: &str,
        host: impl Into<String>,
        uri: &Uri,
    ) -> Self {
        AuditGuard {
            slot: sink.reserve(),
            sink,
            started: Instant::now(),
            record: AuditRecord {
                agent: agent.map(str::to_owned),
                method: Some(method.to_owned()),
                // A `String` the caller built is moved in, not copied.
                host: Some(host.into()),
                path: Some(redacted_target(uri)),
                decision: Decision::Allowed,
                ..AuditRecord::begin()
            },
            traffic: Arc::default(),
            dismissed: false,
        }
    }

    /// How the request ended, and the rule that decided it (a rule noted
    /// earlier is kept when `rule` is `None`).
    pub fn decision(&mut self, decision: Decision, rule: Option<i64>) {
        self.record.decision = decision;
        if rule.is_some() {
            self.record.rule_id = rule;
        }
    }

    pub fn secrets(&mut self, names: Vec<String>) {
        self.record.secrets = names;
    }

    pub fn status(&mut self, status: u16) {
        self.record.status = Some(i32::from(status));
    }

    pub fn detail(&mut self, detail: impl Into<String>) {
        self.record.detail = Some(detail.into());
    }

    /// The refused placeholder named `secret`, which the agent is not
    /// granted.
    pub fn ungranted(&mut self, secret: &str) {
        self.record.ungranted = Some(secret.to_owned());
    }

    /// The upstream answered with its head after `upstream`; the head now
    /// goes back to the agent.
    pub fn head(&mut self, upstream: std::time::Duration) {
        let us = |d: std::time::Duration| u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        self.record.latency.upstream_us = Some(us(upstream));
        self.record.latency.head_us = Some(us(self.started.elapsed()));
    }

    pub fn agent(&mut self, agent: &str) {
        self.record.agent = Some(agent.to_owned());
    }

    /// Counts bytes sent upstream.
    pub fn up_counter(&self) -> ByteCounter {
        ByteCounter::new(self.traffic.clone(), Direction::Up)
    }

    /// Counts bytes sent back to the agent.
    pub fn down_counter(&self) -> ByteCounter {
        ByteCounter::new(self.traffic.clone(), Direction::Down)
    }

    /// Whether the record has its place in the queue.
    pub fn has_slot(&self) -> bool {
        self.slot.is_some()
    }

    /// Records nothing: for a step that is not a request of its own.
    pub fn dismiss(mut self) {
        self.dismissed = true;
    }

    pub fn note_stream_error(&mut self, e: &(dyn std::error::Error + 'static)) {
        self.record.detail = Some(format!("response stream ended early: {e}"));
    }
}

impl Drop for AuditGuard {
    fn drop(&mut self) {
        if self.dismissed {
            return;
        }
        let mut record = std::mem::take(&mut self.record);
        record.bytes_up = i64::try_from(self.traffic.up()).unwrap_or(i64::MAX);
        record.bytes_down = i64::try_from(self.traffic.down()).unwrap_or(i64::MAX);
        record.duration_us = i64::try_from(self.started.elapsed().as_micros()).unwrap_or(i64::MAX);
        self.sink.record_in(self.slot.take(), record);
    }
}

/// `host` for port 443, else `host:port` (`[v6]:port`): how the audit
/// names a destination.
pub fn display_host(host: &str, port: u16) -> String {
    if port == 443 {
        return host.to_owned();
    }
    // Built by hand, once per request: `format!` cost ~1k instructions here.
    let mut out = String::with_capacity(host.len() + 8);
    if host.contains(':') {
        out.push('[');
        out.push_str(host);
        out.push(']');
    } else {
        out.push_str(host);
    }
    out.push(':');
    let mut digits = [0u8; 5];
    let mut start = digits.len();
    let mut rest = port;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend(digits[start..].iter().map(|&d| char::from(d)));
    out
}

/// The path with the query's values removed: `/v1/x?key=&page=`. Query
/// values may hold credentials or personal data; their names do not.
pub fn redacted_target(uri: &Uri) -> String {
    let path = uri.path();
    match uri.query() {
        None => path.to_owned(),
        Some(q) => {
            let names: Vec<&str> = q
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split_once('=').map_or(p, |(k, _)| k))
                .collect();
            format!("{path}?{}=", names.join("=&"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_named_like_urls() {
        assert_eq!(display_host("a.com", 443), "a.com");
        assert_eq!(display_host("a.com", 8443), "a.com:8443");
        assert_eq!(display_host("a.com", 80), "a.com:80");
        assert_eq!(display_host("a.com", 0), "a.com:0");
        assert_eq!(display_host("a.com", 65535), "a.com:65535");
        assert_eq!(display_host("::1", 8080), "[::1]:8080");
        assert_eq!(display_host("::1", 443), "::1");
    }

    #[test]
    fn query_values_never_reach_the_audit() {
        let uri: Uri = "/v1/x?key=sk-123&page=2&flag".parse().unwrap();
        assert_eq!(redacted_target(&uri), "/v1/x?key=&page=&flag=");
        let uri: Uri = "/plain".parse().unwrap();
        assert_eq!(redacted_target(&uri), "/plain");
    }
}
