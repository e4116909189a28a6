use std::time::{Duration, Instant};

use super::*;
use crate::policy::body::{BodyCondition, BodyRead};

fn units(body: &str) -> Result<Vec<(OperationKind, String)>, Unreadable> {
    Ok(read(body.as_bytes(), None)?
        .operations
        .into_iter()
        .map(|o| (o.kind, o.field))
        .collect())
}

fn req(query: &str) -> String {
    serde_json::json!({ "query": query }).to_string()
}

fn q(field: &str) -> (OperationKind, String) {
    (OperationKind::Query, field.to_owned())
}

fn m(field: &str) -> (OperationKind, String) {
    (OperationKind::Mutation, field.to_owned())
}

fn cond(kind: Option<&str>, field: Option<&str>) -> GraphqlCondition {
    GraphqlCondition::parse(&BodySpec {
        graphql_operation: kind.map(str::to_owned),
        graphql_field: field.map(str::to_owned),
        ..BodySpec::default()
    })
    .unwrap()
}

#[test]
fn types_and_top_level_fields() {
    assert_eq!(units(&req("{ user { id } }")), Ok(vec![q("user")]));
    assert_eq!(
        units(&req("query Q($id: ID!) { user(id: $id) { name } viewer }")),
        Ok(vec![q("user"), q("viewer")])
    );
    assert_eq!(
        units(&req("mutation { deleteUser(id: 1) { ok } }")),
        Ok(vec![m("deleteUser")])
    );
    assert_eq!(
        units(&req("subscription { ticks }")),
        Ok(vec![(OperationKind::Subscription, "ticks".into())])
    );
    // Nested fields are not top-level.
    assert_eq!(units(&req("{ a { deleteUser } }")), Ok(vec![q("a")]));
}

#[test]
fn an_alias_is_read_as_its_field() {
    assert_eq!(
        units(&req("mutation { harmless: deleteUser(id: 1) { ok } }")),
        Ok(vec![m("deleteUser")])
    );
    let c = cond(Some("mutation"), Some("delete*"));
    let ops = read(req("mutation { x: deleteUser { ok } }").as_bytes(), None).unwrap();
    assert!(c.matches(&ops.operations[0]));
}

#[test]
fn fragments_at_the_top_are_followed_once() {
    let doc = "mutation { ...A ... on Mutation { c } } \
               fragment A on Mutation { a ...B } fragment B on Mutation { b ...A }";
    assert_eq!(units(&req(doc)), Ok(vec![m("a"), m("b"), m("c")]));
    // A spread of a fragment that is not there does not parse as a request.
    assert_eq!(units(&req("{ ...Missing }")), Err(Unreadable::BadDocument));
    // A cycle that selects nothing cannot pass a type-only rule unjudged.
    assert_eq!(
        units(&req("mutation { ...A } fragment A on Mutation { ...A }")),
        Err(Unreadable::BadDocument)
    );
    assert_eq!(
        units(&req("{ a } fragment A on Q { a } fragment A on Q { b }")),
        Err(Unreadable::BadDocument)
    );
}

#[test]
fn the_operation_run_is_the_named_one_or_the_only_one() {
    let doc = "query Read { user } mutation Wipe { deleteAll }";
    let named = |name: Option<&str>| {
        let body = serde_json::json!({ "query": doc, "operationName": name }).to_string();
        units(&body)
    };
    assert_eq!(named(Some("Wipe")), Ok(vec![m("deleteAll")]));
    assert_eq!(named(Some("Read")), Ok(vec![q("user")]));
    assert_eq!(named(None), Err(Unreadable::NoOperation));
    assert_eq!(named(Some("Other")), Err(Unreadable::NoOperation));
    let twice = "query A { a } query A { b }";
    let body = serde_json::json!({ "query": twice, "operationName": "A" }).to_string();
    assert_eq!(units(&body), Err(Unreadable::NoOperation));
    assert_eq!(
        units(&req("fragment F on Q { a }")),
        Err(Unreadable::NoOperation)
    );
}

#[test]
fn a_batch_is_judged_element_by_element() {
    let body = format!(
        "[{},{},{}]",
        req("{ user }"),
        req("mutation { deleteUser }"),
        req("{ user }")
    );
    let ops = read(body.as_bytes(), None).unwrap();
    assert!(ops.batch);
    assert_eq!(
        units(&body),
        Ok(vec![q("user"), m("deleteUser")]),
        "deduplicated"
    );
    assert_eq!(units("[]"), Ok(vec![]));
    assert_eq!(
        units(&format!("[{},1]", req("{ a }"))),
        Err(Unreadable::NotGraphql)
    );
}

#[test]
fn the_url_carries_a_document_too() {
    let url = |q: &str| read(b"", Some(q)).map(|o| o.operations);
    assert_eq!(
        url("query=mutation%20%7B%20wipe%20%7D").unwrap(),
        vec![Operation {
            kind: OperationKind::Mutation,
            field: "wipe".into()
        }]
    );
    assert_eq!(
        url("query=query+A+%7B+a+%7D+query+B+%7B+b+%7D&operationName=B").unwrap()[0].field,
        "b"
    );
    assert_eq!(
        url("query=%7Ba%7D&query=%7Bb%7D"),
        Err(Unreadable::NotGraphql)
    );
    assert_eq!(url("operationName=A"), Err(Unreadable::NotGraphql));
    assert_eq!(url("other=1"), Ok(vec![]));
    // A document in the URL and a body: which one runs is the server's call.
    assert_eq!(
        read(req("{ a }").as_bytes(), Some("query=%7Bb%7D")),
        Err(Unreadable::NotGraphql)
    );
}

#[test]
fn what_is_not_a_graphql_request_is_unreadable() {
    for (body, why) in [
        ("mutation { wipe }", Unreadable::NotJson),
        (r#"{"operationName":"A"}"#, Unreadable::NotGraphql),
        (r#"{"query":7}"#, Unreadable::NotGraphql),
        (
            r#"{"query":"{ a }","operationName":3}"#,
            Unreadable::NotGraphql,
        ),
        (
            r#"{"query":"{ a }","query":"mutation { wipe }"}"#,
            Unreadable::NotJson,
        ),
        (r#"{"query":"mutation { wipe "}"#, Unreadable::BadDocument),
        (r#"{"query":"type Q { a: Int }"}"#, Unreadable::BadDocument),
        (
            r#"{"extensions":{"persistedQuery":{"sha256Hash":"ab"}}}"#,
            Unreadable::NotGraphql,
        ),
    ] {
        assert_eq!(units(body), Err(why), "{body}");
    }
    assert_eq!(units(""), Ok(vec![]));
}

/// Runs `f` and says how long it took.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

#[test]
fn bombs_are_unreadable_after_bounded_work() {
    let aliases: String = (0..10_000).map(|i| format!("a{i}: user ")).collect();
    let deep = format!("{{ {}x{} }}", "a { ".repeat(5_000), " }".repeat(5_000));
    let wide: String = (0..2_000).map(|i| format!("f{i} ")).collect();
    let fan = format!(
        "{{ ...F0 }} {}",
        (0..2_000)
            .map(|i| format!("fragment F{i} on Q {{ ...F{} a }} ", i + 1))
            .collect::<String>()
    );
    for (what, doc, why) in [
        (
            "10,000 aliases",
            format!("{{ {aliases} }}"),
            Unreadable::TooComplex,
        ),
        ("5,000 levels", deep, Unreadable::TooComplex),
        (
            "2,000 fields",
            format!("{{ {wide} }}"),
            Unreadable::TooComplex,
        ),
        ("2,000 fragments", fan, Unreadable::TooComplex),
    ] {
        let body = req(&doc);
        let (out, took) = timed(|| units(&body));
        assert_eq!(out, Err(why), "{what}");
        assert!(took < Duration::from_secs(1), "{what} took {took:?}");
    }
    // Unterminated nesting is refused at the depth bound, not parsed on.
    let (out, _) = timed(|| units(&req(&"{ a ".repeat(10_000))));
    assert_eq!(out, Err(Unreadable::TooComplex));
    // A large, honest query is read.
    let big: String = (0..500).map(|i| format!("f{i} {{ id name }}\n")).collect();
    assert_eq!(units(&req(&format!("{{ {big} }}"))).unwrap().len(), 500);
}

#[test]
fn conditions_match_type_and_field() {
    let mutation = cond(Some("mutation"), None);
    let delete = cond(None, Some("delete*"));
    let exact = cond(Some("query"), Some("user"));
    let op = |kind, field: &str| Operation {
        kind,
        field: field.into(),
    };
    assert!(mutation.matches(&op(OperationKind::Mutation, "x")));
    assert!(!mutation.matches(&op(OperationKind::Query, "x")));
    assert!(delete.matches(&op(OperationKind::Query, "deleteUser")));
    assert!(delete.matches(&op(OperationKind::Mutation, "delete")));
    // Names are case-sensitive, as the server reads them.
    assert!(!delete.matches(&op(OperationKind::Mutation, "DeleteUser")));
    assert!(exact.matches(&op(OperationKind::Query, "user")));
    assert!(!exact.matches(&op(OperationKind::Query, "users")));
    assert!(cond(None, Some("{user,viewer}")).matches(&op(OperationKind::Query, "viewer")));
}

#[test]
fn bad_conditions_are_refused() {
    let parse = |kind: Option<&str>, field: Option<&str>| {
        GraphqlCondition::parse(&BodySpec {
            graphql_operation: kind.map(str::to_owned),
            graphql_field: field.map(str::to_owned),
            ..BodySpec::default()
        })
    };
    for bad in ["Mutation", "write", "", "query "] {
        assert_eq!(
            parse(Some(bad), None).unwrap_err(),
            ConditionError::BadOperation(bad.into())
        );
    }
    for bad in [
        "",
        "1user",
        "user.name",
        "a b",
        "user(id:1)",
        "del[ete",
        "é",
    ] {
        assert_eq!(
            parse(None, Some(bad)).unwrap_err(),
            ConditionError::BadField(bad.into()),
            "{bad:?}"
        );
    }
    assert_eq!(parse(None, None).unwrap_err(), ConditionError::Empty);
    assert!(parse(Some("subscription"), Some("_private*")).is_ok());
}

#[test]
fn a_condition_reads_the_body_as_graphql() {
    let c = BodyCondition::parse(&BodySpec {
        graphql_operation: Some("mutation".into()),
        body_limit: Some(1024),
        ..BodySpec::default()
    })
    .unwrap();
    assert_eq!(
        c.to_string(),
        "graphql mutation (reads 1024 bytes, unreadable: refuse)"
    );
    assert_eq!(BodyCondition::parse(&c.spec()).unwrap().spec(), c.spec());
    let body = BodyRead::new(req("{ a }").into_bytes(), true);
    assert_eq!(c.readable(&body), Ok(()));
    // JSON-RPC is not GraphQL.
    let rpc = BodyRead::new(
        &br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#[..],
        true,
    );
    assert_eq!(c.readable(&rpc), Err(Unreadable::NotGraphql));
}
