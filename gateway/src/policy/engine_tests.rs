//! The engine's tests: first the precedence table of docs/policy.md, one
//! test per row (`row_NN_...`), then matching and charging.

use super::*;
use crate::policy::{BodyRead, Defaults, HostPattern, Method, PathGlob, Rate, RuleAction};

fn rule(id: i64, host: &str, path: &str, action: RuleAction) -> RuleRecord {
    RuleRecord {
        id,
        position: id as i32,
        host: HostPattern::parse(host).unwrap(),
        path: PathGlob::parse(path).unwrap(),
        method: None,
        agent: None,
        action,
        body: None,
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
        body: None,
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

// ---- body conditions (MCP) ----

fn mcp_rule(
    id: i64,
    action: RuleAction,
    tool: &str,
    limit: Option<u64>,
    lenient: bool,
) -> RuleRecord {
    let mut r = rule(id, "mcp.x.com", "/mcp", action);
    r.body = Some(
        crate::policy::BodyCondition::parse(&crate::policy::BodySpec {
            mcp_tool: Some(tool.into()),
            body_limit: limit,
            on_unreadable: lenient.then(|| "allow".into()),
            ..Default::default()
        })
        .unwrap(),
    );
    r
}

fn call(id: u32, tool: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
    )
}

/// Evaluates a POST to mcp.x.com/mcp carrying `body` (complete).
fn with_body(rules: &[RuleRecord], d: &AgentDefault, body: &str) -> Verdict {
    let bot = AgentName::parse("bot").unwrap();
    let read = BodyRead::new(body.as_bytes().to_vec(), true);
    let mut req = facts(&bot, "POST", "mcp.x.com", "/mcp");
    req.body = Some(&read);
    evaluate(rules, d, &req, || false)
}

const ALLOWED: Verdict = Verdict::Allow {
    by: Permit::Default,
};

#[test]
fn only_requests_a_body_rule_could_concern_are_read() {
    let bot = AgentName::parse("bot").unwrap();
    let rules = vec![
        mcp_rule(1, RuleAction::Block, "delete_*", None, false),
        mcp_rule(2, RuleAction::Approve, "pay", Some(1024), false),
        rule(3, "*", "/**", RuleAction::Allow),
    ];
    let limit = |host, path| body_limit(&rules, &facts(&bot, "POST", host, path));
    assert_eq!(
        limit("mcp.x.com", "/mcp"),
        Some(crate::policy::body::DEFAULT_LIMIT)
    );
    assert_eq!(limit("mcp.x.com", "/other"), None);
    assert_eq!(limit("api.x.com", "/mcp"), None);
    assert_eq!(
        body_limit(&rules[1..], &facts(&bot, "POST", "mcp.x.com", "/mcp")),
        Some(1024)
    );
}

#[test]
fn a_body_rule_matches_its_tool_only() {
    let rules = vec![mcp_rule(1, RuleAction::Block, "delete_*", None, false)];
    let d = default(ALLOW, true, None);
    assert_eq!(
        with_body(&rules, &d, &call(1, "delete_repo")),
        Verdict::Block { rule: 1 }
    );
    assert_eq!(with_body(&rules, &d, &call(1, "read_file")), ALLOWED);
    // No body read (the head could not concern it): body rules match nothing.
    let bot = AgentName::parse("bot").unwrap();
    assert_eq!(
        evaluate(
            &rules,
            &d,
            &facts(&bot, "POST", "mcp.x.com", "/mcp"),
            || false
        ),
        ALLOWED
    );
    // An empty body carries no call.
    assert_eq!(with_body(&rules, &d, ""), ALLOWED);
}

#[test]
fn row_18_one_blocked_call_blocks_the_batch() {
    let rules = vec![mcp_rule(1, RuleAction::Block, "delete_*", None, false)];
    let d = default(ALLOW, true, None);
    let batch = format!("[{},{}]", call(1, "read_file"), call(2, "delete_repo"));
    assert_eq!(with_body(&rules, &d, &batch), Verdict::Block { rule: 1 });
    let fine = format!("[{},{}]", call(1, "read_file"), call(2, "list"));
    assert_eq!(with_body(&rules, &d, &fine), ALLOWED);
}

#[test]
fn under_deny_every_call_of_a_batch_needs_an_allow_rule() {
    let rules = vec![mcp_rule(1, RuleAction::Allow, "read_*", None, false)];
    let d = default(DENY, false, None);
    let both = format!("[{},{}]", call(1, "read_file"), call(2, "write_file"));
    assert!(matches!(
        with_body(&rules, &d, &both),
        Verdict::Denied { .. }
    ));
    let reads = format!("[{},{}]", call(1, "read_file"), call(2, "read_dir"));
    assert_eq!(
        with_body(&rules, &d, &reads),
        Verdict::Allow {
            by: Permit::Rule(1)
        }
    );
}

#[test]
fn an_approval_in_a_batch_holds_it_and_a_block_beats_it() {
    let rules = vec![
        mcp_rule(1, RuleAction::Approve, "pay", None, false),
        mcp_rule(2, RuleAction::Block, "delete_*", None, false),
    ];
    let d = default(ALLOW, true, None);
    let held = format!("[{},{}]", call(1, "read"), call(2, "pay"));
    assert_eq!(
        with_body(&rules, &d, &held),
        Verdict::Approve {
            rule: 1,
            rate: None
        }
    );
    let both = format!("[{},{}]", call(1, "pay"), call(2, "delete_x"));
    assert_eq!(with_body(&rules, &d, &both), Verdict::Block { rule: 2 });
}

#[test]
fn row_16_17_an_unreadable_body_is_refused_unless_the_rule_allows_it() {
    use crate::policy::jsonrpc::Unreadable;
    let d = default(ALLOW, true, None);
    let strict = vec![mcp_rule(1, RuleAction::Block, "delete_*", Some(64), false)];
    let lenient = vec![mcp_rule(1, RuleAction::Block, "delete_*", Some(64), true)];
    let long = call(1, &"x".repeat(100));
    assert_eq!(
        with_body(&strict, &d, &long),
        Verdict::Unreadable {
            rule: 1,
            why: Unreadable::TooLarge { limit: 64 }
        }
    );
    assert_eq!(with_body(&lenient, &d, &long), ALLOWED);
    assert_eq!(
        with_body(&strict, &d, "name=delete_all"),
        Verdict::Unreadable {
            rule: 1,
            why: Unreadable::NotJson
        }
    );
    assert_eq!(with_body(&lenient, &d, "name=delete_all"), ALLOWED);
    let deep = format!("{}{}", "[".repeat(70), "]".repeat(70));
    let roomy = vec![mcp_rule(1, RuleAction::Block, "delete_*", None, false)];
    assert_eq!(
        with_body(&roomy, &d, &deep),
        Verdict::Unreadable {
            rule: 1,
            why: Unreadable::TooDeep
        }
    );
    // A body cut at the largest limit is too large for every rule.
    let bot = AgentName::parse("bot").unwrap();
    let cut = BodyRead::new(&b"["[..], false);
    let mut req = facts(&bot, "POST", "mcp.x.com", "/mcp");
    req.body = Some(&cut);
    assert!(matches!(
        evaluate(&strict, &d, &req, || false),
        Verdict::Unreadable { rule: 1, .. }
    ));
    // A head-only block still refuses, whatever the body.
    let mut both = lenient.clone();
    both.push(rule(2, "mcp.x.com", "/**", RuleAction::Block));
    assert_eq!(with_body(&both, &d, "name=x"), Verdict::Block { rule: 2 });
}

#[test]
fn the_grant_is_asked_once_for_a_batch() {
    let bot = AgentName::parse("bot").unwrap();
    let rules = vec![mcp_rule(1, RuleAction::Block, "delete_*", None, false)];
    let d = default(DENY, true, None);
    let batch = format!("[{},{},{}]", call(1, "a"), call(2, "b"), call(3, "c"));
    let read = BodyRead::new(batch.as_bytes().to_vec(), true);
    let mut req = facts(&bot, "POST", "mcp.x.com", "/mcp");
    req.body = Some(&read);
    let asked = std::cell::Cell::new(0);
    let v = evaluate(&rules, &d, &req, || {
        asked.set(asked.get() + 1);
        true
    });
    assert_eq!(v, Verdict::Allow { by: Permit::Grant });
    assert_eq!(asked.get(), 1);
}

// ---- body conditions (GraphQL) ----

fn graphql_rule(
    id: i64,
    action: RuleAction,
    kind: Option<&str>,
    field: Option<&str>,
) -> RuleRecord {
    let mut r = rule(id, "api.x.com", "/graphql", action);
    r.body = Some(
        crate::policy::BodyCondition::parse(&crate::policy::BodySpec {
            graphql_operation: kind.map(str::to_owned),
            graphql_field: field.map(str::to_owned),
            ..Default::default()
        })
        .unwrap(),
    );
    r
}

/// Evaluates a POST to api.x.com/graphql carrying the GraphQL `query`.
fn graphql(rules: &[RuleRecord], d: &AgentDefault, query: &str) -> Verdict {
    let bot = AgentName::parse("bot").unwrap();
    let body = serde_json::json!({ "query": query }).to_string();
    let read = BodyRead::new(body.into_bytes(), true);
    let mut req = facts(&bot, "POST", "api.x.com", "/graphql");
    req.body = Some(&read);
    evaluate(rules, d, &req, || false)
}

#[test]
fn row_19_a_graphql_mutation_is_blocked_while_queries_pass() {
    let rules = vec![graphql_rule(1, RuleAction::Block, Some("mutation"), None)];
    let d = default(ALLOW, true, None);
    assert_eq!(graphql(&rules, &d, "{ user { id } }"), ALLOWED);
    assert_eq!(
        graphql(&rules, &d, "mutation { renamed: setName(n: \"x\") }"),
        Verdict::Block { rule: 1 }
    );
    // The head decides first: another path is not the endpoint.
    let bot = AgentName::parse("bot").unwrap();
    assert_eq!(
        body_limit(&rules, &facts(&bot, "POST", "api.x.com", "/rest")),
        None
    );
}

#[test]
fn row_20_each_top_level_field_is_judged_on_its_own() {
    let d = default(DENY, false, None);
    let rules = vec![graphql_rule(
        1,
        RuleAction::Allow,
        Some("query"),
        Some("user"),
    )];
    assert_eq!(
        graphql(&rules, &d, "{ user { id } }"),
        Verdict::Allow {
            by: Permit::Rule(1)
        }
    );
    // An allowed field does not carry another one along.
    assert!(matches!(
        graphql(&rules, &d, "{ user { id } secrets }"),
        Verdict::Denied { .. }
    ));
    let mut held = rules.clone();
    held.push(graphql_rule(2, RuleAction::Approve, None, Some("secrets")));
    held.push(graphql_rule(3, RuleAction::Allow, None, Some("secrets")));
    assert_eq!(
        graphql(&held, &d, "{ user secrets }"),
        Verdict::Approve {
            rule: 2,
            rate: None
        }
    );
}

#[test]
fn an_unreadable_graphql_body_is_refused_by_default() {
    use crate::policy::body::Unreadable;
    let d = default(ALLOW, true, None);
    let strict = vec![graphql_rule(1, RuleAction::Block, Some("mutation"), None)];
    // 10,000 distinct aliases within the default 64 KiB: `abc:f `, each.
    let alias = |i: u32| -> String {
        [i / 676, i / 26 % 26, i % 26]
            .iter()
            .map(|&d| char::from(b'a' + d as u8))
            .collect()
    };
    let aliases: String = (0..10_000).map(|i| format!("{}:f ", alias(i))).collect();
    let bomb = format!("{{ {aliases} }}");
    assert!(bomb.len() < 64 * 1024);
    assert_eq!(
        graphql(&strict, &d, &bomb),
        Verdict::Unreadable {
            rule: 1,
            why: Unreadable::TooComplex
        }
    );
    assert_eq!(
        graphql(&strict, &d, "mutation {"),
        Verdict::Unreadable {
            rule: 1,
            why: Unreadable::BadDocument
        }
    );
    let mut lenient = strict.clone();
    if let Some(b) = lenient[0].body.as_mut() {
        b.on_unreadable = OnUnreadable::Allow;
    }
    assert_eq!(graphql(&lenient, &d, &bomb), ALLOWED);
}

#[test]
fn mcp_and_graphql_rules_judge_their_own_reading() {
    let d = default(ALLOW, true, None);
    let mut rules = vec![graphql_rule(1, RuleAction::Block, Some("mutation"), None)];
    rules.push({
        let mut r = mcp_rule(2, RuleAction::Block, "delete_*", None, false);
        r.host = HostPattern::parse("api.x.com").unwrap();
        r.path = PathGlob::parse("/graphql").unwrap();
        r
    });
    // A GraphQL body reads as JSON-RPC too, as a message with no method.
    assert_eq!(graphql(&rules, &d, "{ delete_all }"), ALLOWED);
    assert_eq!(
        graphql(&rules, &d, "mutation { a }"),
        Verdict::Block { rule: 1 }
    );
}
