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
//!
//! A rule with a body condition ([`super::body`]) matches a unit of the
//! body, not the request: a JSON-RPC message for an MCP rule, one
//! top-level field of a GraphQL operation for a GraphQL rule. Each unit
//! is judged on its own (the head-only rules apply to every one), and the
//! request gets the gravest verdict of its units, so one blocked call or
//! field blocks the batch and one outside an allowlist denies it. A body such a rule cannot
//! read is refused by it ([`Verdict::Unreadable`]) unless the rule says
//! `on_unreadable = allow`, which passes it over. Whether the body is read
//! at all is decided from the head first ([`body_limit`]), so a request no
//! body rule could concern is never read.

use std::time::Duration;

use super::body::{BodyMatch, BodyRead, OnUnreadable, Unit, Unreadable};
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
    /// The body as read for body rules; `None` when it was not read
    /// because no body rule could concern it ([`body_limit`]), so body
    /// rules match nothing.
    pub body: Option<&'a BodyRead>,
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
    /// This rule reads the body and cannot, and refuses what it cannot
    /// read (`on_unreadable = refuse`).
    Unreadable {
        rule: i64,
        why: Unreadable,
    },
}

impl Verdict {
    /// How grave it is, to combine the verdicts of a batch's messages.
    fn gravity(&self) -> u8 {
        match self {
            Verdict::Allow { .. } => 0,
            Verdict::Rate { .. } => 1,
            Verdict::Approve { .. } => 2,
            Verdict::Denied { .. } => 3,
            Verdict::Block { .. } | Verdict::Unreadable { .. } => 4,
        }
    }
}

/// The outcome of charging a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateOutcome {
    Allowed,
    Limited { rule: i64, retry_after: Duration },
}

/// Whether `rule`'s head conditions (agent, method, host, path) hold.
fn head_matches(rule: &RuleRecord, req: &RequestFacts<'_>) -> bool {
    rule.agent.as_ref().is_none_or(|a| a == req.agent)
        && rule
            .method
            .as_ref()
            .is_none_or(|m| m.as_str().eq_ignore_ascii_case(req.method))
        && rule.host.matches(req.host, req.port)
        && rule.path.matches_any(req.path)
}

/// The most bytes of the body that the body rules which could concern
/// `req` (by its head) read; `None` when there is none: the body is then
/// not read at all.
pub fn body_limit(rules: &[RuleRecord], req: &RequestFacts<'_>) -> Option<u32> {
    rules
        .iter()
        .filter_map(|r| r.body.as_ref().filter(|_| head_matches(r, req)))
        .map(|b| b.limit)
        .max()
}

/// Evaluates `rules` (in their stored order) against `req`, under the
/// agent's `default`. `granted` says whether a secret granted to the
/// agent would be injected into the request; it is asked only when that
/// decides (deny, grants counting, no allow rule), so the usual request
/// never pays for it (and once at most, for a batch).
pub fn evaluate(
    rules: &[RuleRecord],
    default: &AgentDefault,
    req: &RequestFacts<'_>,
    granted: impl FnOnce() -> bool,
) -> Verdict {
    let mut granted = Some(granted);
    let mut known = None;
    let mut granted = move || *known.get_or_insert_with(|| granted.take().is_some_and(|g| g()));
    // The body rules that could apply, and whether each can judge it.
    let mut readable = Vec::new();
    // Which readings of the body those rules judge.
    let (mut mcp, mut graphql) = (false, false);
    if let Some(body) = req.body {
        for rule in rules.iter().filter(|r| head_matches(r, req)) {
            let Some(cond) = &rule.body else { continue };
            match (cond.readable(body), cond.on_unreadable) {
                (Ok(()), _) => {
                    readable.push(rule.id);
                    match cond.kind {
                        BodyMatch::Mcp(_) => mcp = true,
                        BodyMatch::Graphql(_) => graphql = true,
                    }
                }
                (Err(why), OnUnreadable::Refuse) => {
                    return Verdict::Unreadable { rule: rule.id, why };
                }
                (Err(_), OnUnreadable::Allow) => {}
            }
        }
    }
    let units = req.body.map(|b| b.units(mcp, graphql)).unwrap_or_default();
    if units.is_empty() {
        return judge(rules, default, req, None, &readable, &mut granted);
    }
    let mut gravest: Option<Verdict> = None;
    for unit in units {
        let v = judge(rules, default, req, Some(unit), &readable, &mut granted);
        if gravest.is_none_or(|g| v.gravity() > g.gravity()) {
            gravest = Some(v);
        }
    }
    gravest.unwrap_or(Verdict::Denied {
        scope: default.scope,
    })
}

/// The verdict on `req` as carrying `unit` (or none): head-only rules
/// by their head, body rules (those in `readable`) by the unit too.
fn judge(
    rules: &[RuleRecord],
    default: &AgentDefault,
    req: &RequestFacts<'_>,
    unit: Option<Unit<'_>>,
    readable: &[i64],
    granted: &mut impl FnMut() -> bool,
) -> Verdict {
    use crate::policy::RuleAction;
    let matches = |r: &RuleRecord| {
        head_matches(r, req)
            && match &r.body {
                None => true,
                Some(cond) => readable.contains(&r.id) && unit.is_some_and(|u| cond.matches(u)),
            }
    };
    let mut approve = None;
    let mut rate = None;
    let mut allow = None;
    for rule in rules.iter().filter(|r| matches(r)) {
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
