//! Deciding what happens to one request, from the snapshot's rules.
//!
//! Every matching rule is considered; the strongest wins: block, then
//! approval, then rate limit, then allow. Among rules of the same action
//! the first in order wins. A request held for approval is rate-limited
//! after it is approved, like any other.

use std::time::Duration;

use super::canonical::PathForms;
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

/// What policy decided before any rate limit was charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
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

/// Evaluates `rules` (in their stored order) against `req`.
pub fn evaluate(rules: &[RuleRecord], req: &RequestFacts<'_>) -> Verdict {
    use crate::policy::RuleAction;
    let mut approve = None;
    let mut rate = None;
    for rule in rules.iter().filter(|r| matches(r, req)) {
        match rule.action {
            RuleAction::Block => return Verdict::Block { rule: rule.id },
            RuleAction::Approve => {
                approve.get_or_insert(rule.id);
            }
            RuleAction::Rate(_) => {
                rate.get_or_insert(rule.id);
            }
        }
    }
    match (approve, rate) {
        (Some(rule), rate) => Verdict::Approve { rule, rate },
        (None, Some(rule)) => Verdict::Rate { rule },
        (None, None) => Verdict::Allow,
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
mod tests {
    use super::*;
    use crate::policy::{HostPattern, Method, PathGlob, Rate, RuleAction};

    fn rule(id: i64, host: &str, path: &str, action: RuleAction) -> RuleRecord {
        RuleRecord {
            id,
            position: id as i32,
            host: HostPattern::parse(host).unwrap(),
            path: PathGlob::parse(path).unwrap(),
            method: None,
            agent: None,
            action,
            created_at: chrono::Utc::now(),
        }
    }

    fn facts<'a>(
        agent: &'a AgentName,
        method: &'a str,
        host: &'a str,
        path: &'a str,
    ) -> RequestFacts<'a> {
        // Leaked: a test's few paths live as long as the test.
        let path: &'a PathForms<'a> = Box::leak(Box::new(PathForms::parse(path).unwrap()));
        RequestFacts {
            agent,
            method,
            host,
            port: 443,
            path,
        }
    }

    #[test]
    fn block_beats_approve_beats_rate() {
        let bot = AgentName::parse("bot").unwrap();
        let rate = RuleAction::Rate(Rate {
            count: 1,
            period_secs: 60,
        });
        let rules = vec![
            rule(1, "api.x.com", "/**", rate),
            rule(2, "api.x.com", "/admin/**", RuleAction::Approve),
            rule(3, "*.x.com", "/admin/delete", RuleAction::Block),
        ];
        assert_eq!(
            evaluate(&rules, &facts(&bot, "GET", "api.x.com", "/v1")),
            Verdict::Rate { rule: 1 }
        );
        assert_eq!(
            evaluate(&rules, &facts(&bot, "GET", "api.x.com", "/admin/users")),
            Verdict::Approve {
                rule: 2,
                rate: Some(1)
            }
        );
        assert_eq!(
            evaluate(&rules, &facts(&bot, "GET", "api.x.com", "/admin/delete")),
            Verdict::Block { rule: 3 }
        );
        assert_eq!(
            evaluate(&rules, &facts(&bot, "GET", "other.com", "/")),
            Verdict::Allow
        );
    }

    #[test]
    fn method_and_agent_narrow_a_rule() {
        let bot = AgentName::parse("bot").unwrap();
        let other = AgentName::parse("other").unwrap();
        let mut r = rule(1, "*", "/**", RuleAction::Block);
        r.method = Some(Method::parse("DELETE").unwrap());
        r.agent = Some(bot.clone());
        let rules = vec![r];
        assert_eq!(
            evaluate(&rules, &facts(&bot, "delete", "a.com", "/x")),
            Verdict::Block { rule: 1 }
        );
        assert_eq!(
            evaluate(&rules, &facts(&bot, "GET", "a.com", "/x")),
            Verdict::Allow
        );
        assert_eq!(
            evaluate(&rules, &facts(&other, "DELETE", "a.com", "/x")),
            Verdict::Allow
        );
    }

    #[test]
    fn charging_limits_per_agent() {
        let bot = AgentName::parse("bot").unwrap();
        let other = AgentName::parse("other").unwrap();
        let rules = vec![rule(
            7,
            "*",
            "/**",
            RuleAction::Rate(Rate {
                count: 2,
                period_secs: 60,
            }),
        )];
        let limiter = RateLimiter::default();
        assert_eq!(charge(&rules, &limiter, 7, &bot), RateOutcome::Allowed);
        assert_eq!(charge(&rules, &limiter, 7, &bot), RateOutcome::Allowed);
        assert!(matches!(
            charge(&rules, &limiter, 7, &bot),
            RateOutcome::Limited { rule: 7, .. }
        ));
        assert_eq!(charge(&rules, &limiter, 7, &other), RateOutcome::Allowed);
    }
}
