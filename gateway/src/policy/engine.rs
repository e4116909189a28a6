//! Deciding what happens to one request, from the snapshot's rules and
//! the default that applies to its agent.
//!
//! Two questions, in this order (docs/policy.md has the table of cases,
//! and each row is a test below):
//!
//! 1. *May it go out at all?* Any matching block rule refuses it. Else an
//!    allow rule, or a default of allow (the agent's own, else the global
//!    one), or under deny a granted secret that would be injected into it
//!    (when grants count), lets it out; nothing else does: it is denied by
//!    default. Rate and approval rules are terms, not permissions: under
//!    deny they let nothing out by themselves, so a `--host '*' --rate`
//!    rule cannot quietly undo an allowlist.
//! 2. *On what terms?* Approval, then rate limit, as before: an allow rule
//!    never lifts an approval or a rate limit.
//!
//! Among rules of the same action the first in order wins. A request held
//! for approval is rate-limited after it is approved, like any other.

use std::time::Duration;

use super::canonical::PathForms;
use super::default::{AgentDefault, DefaultAction, DefaultScope};
use super::limiter::RateLimiter;
use crate::model::AgentName;
use crate::store::rules::RuleRecord;

/// The facts about a request that rules look at.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub agent: &'a AgentName,
    pub method: &'a str,
    pub host: &'a str,
    pub port: u16,
    /// Without the query, read once: a rule applies when any reading of
    /// it matches (see [`super::canonical`]).
    pub path: &'a PathForms<'a>,
}

/// What let a request out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// This allow rule covers it.
    Rule(i64),
    /// The default that applies to its agent is allow.
    Default,
    /// Under deny, a secret granted to its agent would be injected into it.
    Grant,
}

/// What policy decided before any rate limit was charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow {
        by: Permit,
    },
    Block {
        rule: i64,
    },
    /// Hold until a person decides; then apply `rate` (if any) as usual.
    Approve {
        rule: i64,
        rate: Option<i64>,
    },
    /// Allow subject to this rule's rate limit.
    Rate {
        rule: i64,
    },
    /// No allow rule (nor grant) covers it and the default is deny.
    Denied {
        scope: DefaultScope,
    },
}

/// The outcome of charging a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateOutcome {
    Allowed,
    Limited { rule: i64, retry_after: Duration },
}

fn matches(rule: &RuleRecord, req: &RequestFacts<'_>) -> bool {
    rule.agent.as_ref().is_none_or(|a| a == req.agent)
        && rule
            .method
            .as_ref()
            .is_none_or(|m| m.as_str().eq_ignore_ascii_case(req.method))
        && rule.host.matches(req.host, req.port)
        && rule.path.matches_any(req.path)
}

/// Evaluates `rules` (in their stored order) against `req`, under the
/// agent's `default`. `granted` says whether a secret granted to the
/// agent would be injected into the request; it is asked only when that
/// decides (deny, grants counting, no allow rule), so the usual request
/// never pays for it.
pub fn evaluate(
    rules: &[RuleRecord],
    default: &AgentDefault,
    req: &RequestFacts<'_>,
    granted: impl FnOnce() -> bool,
) -> Verdict {
    use crate::policy::RuleAction;
    let mut approve = None;
    let mut rate = None;
    let mut allow = None;
    for rule in rules.iter().filter(|r| matches(r, req)) {
        match rule.action {
            RuleAction::Block => return Verdict::Block { rule: rule.id },
            RuleAction::Approve => {
                approve.get_or_insert(rule.id);
            }
            RuleAction::Rate(_) => {
                rate.get_or_insert(rule.id);
            }
            RuleAction::Allow => {
                allow.get_or_insert(rule.id);
            }
        }
    }
    let by = match (allow, default.action) {
        (Some(rule), _) => Permit::Rule(rule),
        (None, DefaultAction::Allow) => Permit::Default,
        (None, DefaultAction::Deny) if default.grants_allow && granted() => Permit::Grant,
        (None, DefaultAction::Deny) => {
            return Verdict::Denied {
                scope: default.scope,
            };
        }
    };
    match (approve, rate) {
        (Some(rule), rate) => Verdict::Approve { rule, rate },
        (None, Some(rule)) => Verdict::Rate { rule },
        (None, None) => Verdict::Allow { by },
    }
}

/// Charges one request to rule `rule_id`'s bucket for `agent`.
pub fn charge(
    rules: &[RuleRecord],
    limiter: &RateLimiter,
    rule_id: i64,
    agent: &AgentName,
) -> RateOutcome {
    let Some(crate::policy::RuleAction::Rate(rate)) =
        rules.iter().find(|r| r.id == rule_id).map(|r| r.action)
    else {
        return RateOutcome::Allowed;
    };
    match limiter.try_acquire(rule_id, agent, rate) {
        Ok(()) => RateOutcome::Allowed,
        Err(retry_after) => RateOutcome::Limited {
            rule: rule_id,
            retry_after,
        },
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
