//! The engine's tests: first the precedence table of docs/policy.md, one
//! test per row (`row_NN_...`), then matching and charging.

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
fn default(global: DefaultAction, grants_allow: bool, own: Option<DefaultAction>) -> AgentDefault {
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
    let eval = |agent, method| evaluate(&rules, &d, &facts(agent, method, "a.com", "/x"), || false);
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
