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
mod tests {
    use super::*;
    use crate::policy::{Defaults, HostPattern, Method, PathGlob, Rate, RuleAction};

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

    const RATE: RuleAction = RuleAction::Rate(Rate {
        count: 1,
        period_secs: 60,
    });

    /// The global default `global`, grants counting or not, for an agent
    /// with default `own`.
    fn default(
        global: DefaultAction,
        grants_allow: bool,
        own: Option<DefaultAction>,
    ) -> AgentDefault {
        Defaults {
            global,
            grants_allow,
        }
        .for_agent(own)
    }

    const ALLOW: DefaultAction = DefaultAction::Allow;
    const DENY: DefaultAction = DefaultAction::Deny;

    /// One row of docs/policy.md's table: the actions of the rules that
    /// match (ids 1, 2, ... in that order), the defaults, whether a granted
    /// secret applies, and the verdict.
    fn row(actions: &[RuleAction], default: AgentDefault, granted: bool) -> Verdict {
        let bot = AgentName::parse("bot").unwrap();
        let rules: Vec<RuleRecord> = actions
            .iter()
            .enumerate()
            .map(|(i, a)| rule(i as i64 + 1, "api.x.com", "/**", *a))
            .collect();
        evaluate(
            &rules,
            &default,
            &facts(&bot, "GET", "api.x.com", "/v1"),
            || granted,
        )
    }

    // ---- the precedence table, one test per row (docs/policy.md) ----

    #[test]
    fn row_01_no_rule_under_allow_goes_out() {
        let v = row(&[], default(ALLOW, true, None), false);
        assert_eq!(
            v,
            Verdict::Allow {
                by: Permit::Default
            }
        );
    }

    #[test]
    fn row_02_block_beats_every_other_rule_and_the_default() {
        use RuleAction::*;
        for d in [default(ALLOW, true, None), default(DENY, true, None)] {
            let v = row(&[Allow, RATE, Approve, Block], d, true);
            assert_eq!(v, Verdict::Block { rule: 4 });
        }
    }

    #[test]
    fn row_03_approval_beats_rate_and_allow_and_then_rates() {
        use RuleAction::*;
        let v = row(&[Allow, RATE, Approve], default(DENY, true, None), false);
        assert_eq!(
            v,
            Verdict::Approve {
                rule: 3,
                rate: Some(2)
            }
        );
    }

    #[test]
    fn row_04_rate_beats_allow() {
        let v = row(
            &[RuleAction::Allow, RATE],
            default(DENY, false, None),
            false,
        );
        assert_eq!(v, Verdict::Rate { rule: 2 });
    }

    #[test]
    fn row_05_an_allow_rule_lets_it_out_under_deny() {
        let v = row(&[RuleAction::Allow], default(DENY, false, None), false);
        assert_eq!(
            v,
            Verdict::Allow {
                by: Permit::Rule(1)
            }
        );
    }

    #[test]
    fn row_06_an_allow_rule_is_named_under_allow_too() {
        let v = row(&[RuleAction::Allow], default(ALLOW, true, None), false);
        assert_eq!(
            v,
            Verdict::Allow {
                by: Permit::Rule(1)
            }
        );
    }

    #[test]
    fn row_07_no_rule_under_deny_is_denied_by_the_global_default() {
        let v = row(&[], default(DENY, true, None), false);
        assert_eq!(
            v,
            Verdict::Denied {
                scope: DefaultScope::Global
            }
        );
    }

    #[test]
    fn row_08_a_rate_rule_alone_lets_nothing_out_under_deny() {
        let v = row(&[RATE], default(DENY, true, None), false);
        assert_eq!(
            v,
            Verdict::Denied {
                scope: DefaultScope::Global
            }
        );
    }

    #[test]
    fn row_09_an_approval_rule_alone_lets_nothing_out_under_deny() {
        let v = row(&[RuleAction::Approve], default(DENY, true, None), false);
        assert_eq!(
            v,
            Verdict::Denied {
                scope: DefaultScope::Global
            }
        );
    }

    #[test]
    fn row_10_a_grant_lets_it_out_under_deny_when_grants_count() {
        let v = row(&[], default(DENY, true, None), true);
        assert_eq!(v, Verdict::Allow { by: Permit::Grant });
        // ... and then its terms still apply.
        let v = row(&[RATE], default(DENY, true, None), true);
        assert_eq!(v, Verdict::Rate { rule: 1 });
    }

    #[test]
    fn row_11_a_grant_does_not_when_grants_do_not_count() {
        let v = row(&[], default(DENY, false, None), true);
        assert_eq!(
            v,
            Verdict::Denied {
                scope: DefaultScope::Global
            }
        );
    }

    #[test]
    fn row_12_an_agents_deny_overrides_a_global_allow() {
        let v = row(&[], default(ALLOW, true, Some(DENY)), false);
        assert_eq!(
            v,
            Verdict::Denied {
                scope: DefaultScope::Agent
            }
        );
    }

    #[test]
    fn row_13_an_agents_allow_overrides_a_global_deny() {
        let v = row(&[], default(DENY, false, Some(ALLOW)), false);
        assert_eq!(
            v,
            Verdict::Allow {
                by: Permit::Default
            }
        );
    }

    #[test]
    fn row_14_the_first_allow_rule_in_order_is_named() {
        use RuleAction::*;
        let v = row(&[Allow, Allow], default(DENY, true, None), false);
        assert_eq!(
            v,
            Verdict::Allow {
                by: Permit::Rule(1)
            }
        );
    }

    #[test]
    fn row_15_an_allow_rule_for_another_agent_or_host_covers_nothing() {
        let bot = AgentName::parse("bot").unwrap();
        let mut other_agent = rule(1, "api.x.com", "/**", RuleAction::Allow);
        other_agent.agent = Some(AgentName::parse("other").unwrap());
        let other_host = rule(2, "api.y.com", "/**", RuleAction::Allow);
        let narrow = rule(3, "api.x.com", "/v2/**", RuleAction::Allow);
        let v = evaluate(
            &[other_agent, other_host, narrow],
            &default(DENY, false, None),
            &facts(&bot, "GET", "api.x.com", "/v1"),
            || false,
        );
        assert_eq!(
            v,
            Verdict::Denied {
                scope: DefaultScope::Global
            }
        );
    }

    #[test]
    fn the_grant_is_only_asked_when_it_decides() {
        let asked = std::cell::Cell::new(0);
        let bot = AgentName::parse("bot").unwrap();
        let req = facts(&bot, "GET", "api.x.com", "/v1");
        let allow = [rule(1, "*", "/**", RuleAction::Allow)];
        for (rules, d) in [
            (&[][..], default(ALLOW, true, None)),
            (&allow[..], default(DENY, true, None)),
            (&[][..], default(DENY, false, None)),
        ] {
            evaluate(rules, &d, &req, || {
                asked.set(asked.get() + 1);
                true
            });
        }
        assert_eq!(asked.get(), 0);
        evaluate(&[], &default(DENY, true, None), &req, || {
            asked.set(asked.get() + 1);
            true
        });
        assert_eq!(asked.get(), 1);
    }

    // ---- matching ----

    #[test]
    fn block_beats_approve_beats_rate() {
        let bot = AgentName::parse("bot").unwrap();
        let rules = vec![
            rule(1, "api.x.com", "/**", RATE),
            rule(2, "api.x.com", "/admin/**", RuleAction::Approve),
            rule(3, "*.x.com", "/admin/delete", RuleAction::Block),
        ];
        let d = default(ALLOW, true, None);
        let eval = |path| evaluate(&rules, &d, &facts(&bot, "GET", "api.x.com", path), || false);
        assert_eq!(eval("/v1"), Verdict::Rate { rule: 1 });
        assert_eq!(
            eval("/admin/users"),
            Verdict::Approve {
                rule: 2,
                rate: Some(1)
            }
        );
        assert_eq!(eval("/admin/delete"), Verdict::Block { rule: 3 });
        assert_eq!(
            evaluate(&rules, &d, &facts(&bot, "GET", "other.com", "/"), || false),
            Verdict::Allow {
                by: Permit::Default
            }
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
        let d = default(ALLOW, true, None);
        let eval =
            |agent, method| evaluate(&rules, &d, &facts(agent, method, "a.com", "/x"), || false);
        assert_eq!(eval(&bot, "delete"), Verdict::Block { rule: 1 });
        assert_eq!(
            eval(&bot, "GET"),
            Verdict::Allow {
                by: Permit::Default
            }
        );
        assert_eq!(
            eval(&other, "DELETE"),
            Verdict::Allow {
                by: Permit::Default
            }
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
