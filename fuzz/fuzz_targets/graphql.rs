//! GraphQL requests as body rules read them (`airlock::policy::graphql`):
//! a JSON body, a document wrapped in one, or a document in the URL.
//!
//! Checks: reading never panics and is deterministic; what reads has at
//! most `MAX_UNITS` units, each a GraphQL Name (an alias never leaks in
//! as a field); a type-only condition matches every unit of its type and
//! none of another; the same body read through `BodyRead` (as the gateway
//! does) gives the same units, and a condition judges it readable exactly
//! when it reads.
//!
//! Input: the first byte chooses the mode (0: the rest is the body; 1:
//! the rest is a document, sent as `{"query": ...}`; else: the document
//! goes in `?query=`), the rest is the input.

#![no_main]

use airlock::policy::graphql::{self, MAX_UNITS, OperationKind};
use airlock::policy::{BodyCondition, BodyRead, BodySpec};
use libfuzzer_sys::fuzz_target;

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn condition(kind: &str) -> BodyCondition {
    BodyCondition::parse(&BodySpec {
        graphql_operation: Some(kind.to_owned()),
        body_limit: Some(4 * 1024 * 1024),
        ..BodySpec::default()
    })
    .unwrap_or_else(|e| panic!("{kind}: {e}"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (body, url): (Vec<u8>, Option<String>) = match mode {
        0 => (rest.to_vec(), None),
        _ => {
            let Ok(doc) = std::str::from_utf8(rest) else {
                return;
            };
            if mode == 1 {
                let json = serde_json::json!({ "query": doc }).to_string();
                (json.into_bytes(), None)
            } else {
                let query =
                    percent_encoding::utf8_percent_encode(doc, percent_encoding::NON_ALPHANUMERIC);
                (Vec::new(), Some(format!("query={query}")))
            }
        }
    };
    let first = graphql::read(&body, url.as_deref());
    assert_eq!(first, graphql::read(&body, url.as_deref()));
    let read = BodyRead::new(body.clone(), true).with_url_query(url.as_deref());
    assert_eq!(read.graphql().ok(), first.as_ref().ok());
    let Ok(ops) = first else {
        assert!(condition("query").readable(&read).is_err());
        return;
    };
    assert!(ops.operations.len() <= MAX_UNITS);
    let mutation = condition("mutation");
    assert!(mutation.readable(&read).is_ok());
    for (op, unit) in ops.operations.iter().zip(read.units(false, true)) {
        assert!(is_name(&op.field), "{op:?}");
        assert_eq!(
            mutation.matches(unit),
            op.kind == OperationKind::Mutation,
            "{op:?}"
        );
    }
});
