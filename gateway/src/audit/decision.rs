//! How a request (or a connection refused before any request) ended: the
//! audit trail's `decision`, the word in an agent's error body, and what
//! the dashboard filters and counts by.
//!
//! This file is the only place the words are spelled. They are stored in
//! the trail and hashed into its chain ([`crate::store::chain`]), so a
//! word never changes once released: a new outcome gets a new variant.
//! The list of variants is written once, in `word_enum!`, which makes
//! the enum, its words and [`Decision::ALL`] from it, so no list that
//! derives from `ALL` (the dashboard's filter) can miss one.

use crate::model::word_enum;

word_enum! {
    /// How a request or a refused connection ended. Serialized (and
    /// stored) as its snake_case word, e.g. `rate_limited`.
    #[derive(Default)]
    pub enum Decision as "decision" {
        /// Forwarded. A request starts out allowed until a phase says otherwise.
        #[default]
        Allowed => "allowed",
        /// Forwarded after a person approved it.
        Approved => "approved",
        /// A block rule matched.
        Blocked => "blocked",
        /// A credential would have gone somewhere it is not for (a placeholder
        /// out of place, a Host or SNI that differs from the connection's).
        Exfiltration => "exfiltration",
        /// A rate rule's budget is spent.
        RateLimited => "rate_limited",
        /// A person denied the approval.
        ApprovalDenied => "approval_denied",
        /// Nobody decided the approval in time.
        ApprovalTimeout => "approval_timeout",
        /// The destination itself is refused (loopback, metadata, own ports).
        DestinationRefused => "destination_refused",
        /// The connection's cgroup is no agent's (transparent mode), or the
        /// agent was removed since it connected.
        UnknownAgent => "unknown_agent",
        /// Transparent mode: the connection could not be tied to an agent
        /// (no redirect record, or a record whose socket is someone else's).
        UnknownConnection => "unknown_connection",
        /// Explicit proxy: no token, or an unknown one.
        AuthRequired => "auth_required",
        /// The agent's TLS did not complete (not TLS, no ClientHello, a
        /// failed handshake).
        TlsFailed => "tls_failed",
        /// The request cannot be served as written (its target, its Host).
        BadRequest => "bad_request",
        /// The request's headers are over the gateway's bound.
        HeadersTooLarge => "headers_too_large",
        /// The upstream could not be reached or answered wrongly.
        UpstreamError => "upstream_error",
        /// The upstream did not answer in time.
        UpstreamTimeout => "upstream_timeout",
        /// The gateway itself cannot serve now (the audit trail cannot record,
        /// a rule cannot be read, the vault failed).
        Unavailable => "unavailable",
        /// A credential the request needs could not be had: its OAuth2
        /// token endpoint failed, or the provider revoked the grant and
        /// the secret needs reconnecting.
        CredentialUnavailable => "credential_unavailable",
        /// Refused in the kernel: UDP to an intercepted port (QUIC), so
        /// clients fall back to TCP (`intercept::events`).
        UdpRefused => "udp_refused",
        /// Refused in the kernel: a connect from a network namespace the
        /// gateway does not listen in yet.
        NetnsUnreached => "netns_unreached",
        /// Refused in the kernel: no daemon has configured interception.
        Unconfigured => "unconfigured",
        /// Refused in the kernel: the original destination could not be
        /// recorded (too many connections in flight).
        NotRecorded => "not_recorded",
        /// No allow rule (nor, where they count, grant) covers the request
        /// and the default that applies to its agent is deny.
        DeniedByDefault => "denied_by_default",
    }
}

impl Decision {
    /// Whether this is the gateway saying no for policy, identity or egress
    /// (the overview's "refused" figure), as opposed to a request served, a
    /// malformed one, or a failure upstream or in the gateway. No wildcard:
    /// a new decision must be placed here.
    pub const fn is_refusal(self) -> bool {
        match self {
            Decision::Blocked
            | Decision::Exfiltration
            | Decision::RateLimited
            | Decision::ApprovalDenied
            | Decision::ApprovalTimeout
            | Decision::DestinationRefused
            | Decision::UnknownAgent
            | Decision::AuthRequired
            | Decision::UdpRefused
            | Decision::DeniedByDefault => true,
            Decision::Allowed
            | Decision::Approved
            | Decision::UnknownConnection
            | Decision::TlsFailed
            | Decision::BadRequest
            | Decision::HeadersTooLarge
            | Decision::UpstreamError
            | Decision::UpstreamTimeout
            | Decision::Unavailable
            | Decision::CredentialUnavailable
            | Decision::NetnsUnreached
            | Decision::Unconfigured
            | Decision::NotRecorded => false,
        }
    }

    /// Which of the three outcomes the dashboard's traffic charts stack
    /// this decision under.
    pub const fn outcome(self) -> Outcome {
        match self {
            Decision::Allowed | Decision::Approved => Outcome::Served,
            d if d.is_refusal() => Outcome::Refused,
            _ => Outcome::Failed,
        }
    }

    /// The words of the decisions for which `keep` holds, for queries that
    /// bind a list of them.
    pub fn words(keep: impl Fn(Decision) -> bool) -> Vec<&'static str> {
        Decision::ALL
            .iter()
            .copied()
            .filter(|d| keep(*d))
            .map(Decision::as_str)
            .collect()
    }
}

word_enum! {
    /// How a request ended, in three: what the traffic charts stack by and
    /// the audit filter `outcome=` selects. Every [`Decision`] has one
    /// ([`Decision::outcome`]); a word this version does not know (a newer
    /// peer's) counts as `failed`, in the charts and in the filter alike.
    pub enum Outcome as "outcome" {
        /// Forwarded upstream: `allowed` or `approved`.
        Served => "served",
        /// The gateway said no ([`Decision::is_refusal`]), exfiltration included.
        Refused => "refused",
        /// Neither: a malformed request, a failure upstream or in the gateway.
        Failed => "failed",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::model::UnknownWord;

    #[test]
    fn every_decision_round_trips_through_its_word_and_serde() {
        for &d in Decision::ALL {
            assert_eq!(d.as_str().parse::<Decision>(), Ok(d));
            assert_eq!(d.to_string(), d.as_str());
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.as_str()));
            assert_eq!(serde_json::from_str::<Decision>(&json).unwrap(), d);
        }
    }

    #[test]
    fn outcomes_partition_the_decisions() {
        assert_eq!(Decision::Allowed.outcome(), Outcome::Served);
        assert_eq!(Decision::Approved.outcome(), Outcome::Served);
        assert_eq!(Decision::Exfiltration.outcome(), Outcome::Refused);
        assert_eq!(Decision::UpstreamError.outcome(), Outcome::Failed);
        for &d in Decision::ALL {
            assert_eq!(d.outcome() == Outcome::Refused, d.is_refusal(), "{d}");
        }
    }

    #[test]
    fn words_are_distinct_snake_case() {
        let words: HashSet<&str> = Decision::ALL.iter().map(|d| d.as_str()).collect();
        assert_eq!(words.len(), Decision::ALL.len());
        for w in words {
            assert!(
                w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{w}"
            );
        }
    }

    #[test]
    fn the_stored_words_are_the_released_ones() {
        // The trail and its hash chain hold these: changing one would make
        // old rows unreadable as decisions.
        let words: Vec<&str> = Decision::ALL.iter().map(|d| d.as_str()).collect();
        assert_eq!(
            words,
            [
                "allowed",
                "approved",
                "blocked",
                "exfiltration",
                "rate_limited",
                "approval_denied",
                "approval_timeout",
                "destination_refused",
                "unknown_agent",
                "unknown_connection",
                "auth_required",
                "tls_failed",
                "bad_request",
                "headers_too_large",
                "upstream_error",
                "upstream_timeout",
                "unavailable",
                "credential_unavailable",
                "udp_refused",
                "netns_unreached",
                "unconfigured",
                "not_recorded",
                "denied_by_default",
            ]
        );
    }

    #[test]
    fn other_words_are_refused_with_a_typed_error() {
        assert_eq!(
            "rule.add".parse::<Decision>(),
            Err(UnknownWord {
                what: "decision",
                word: "rule.add".into()
            })
        );
        assert!("Allowed".parse::<Decision>().is_err());
        assert!(serde_json::from_str::<Decision>("\"denied\"").is_err());
    }

    #[test]
    fn the_refused_figure_counts_what_it_always_counted_and_udp_and_default_refusals() {
        assert_eq!(
            Decision::words(Decision::is_refusal),
            [
                "blocked",
                "exfiltration",
                "rate_limited",
                "approval_denied",
                "approval_timeout",
                "destination_refused",
                "unknown_agent",
                "auth_required",
                "udp_refused",
                "denied_by_default",
            ]
        );
    }
}
