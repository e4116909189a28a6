//! Request bodies read as JSON-RPC for MCP rules (`airlock::policy::jsonrpc`
//! through `airlock::policy::BodyRead`), and three fixed body conditions
//! judging what was read (`airlock::policy::BodyCondition`).
//!
//! Checks, beyond "no panic":
//! - Against serde_json's own reading: a body the gateway reads is one
//!   JSON value for serde_json too, with the same messages (method, id,
//!   tool name, arguments), no more than 64 levels deep; a refusal
//!   serde_json does not share is exactly one of the gateway's own limits
//!   (deeper than 64, a batch over 100, a repeated key), never a body the
//!   server would read the same way.
//! - A batch never holds more than `MAX_BATCH` messages; a single body
//!   holds one (none if it is only whitespace).
//! - A cut body (`complete = false`, what is left when the body is longer
//!   than the largest rule's limit) is never readable and yields nothing
//!   to judge; a complete one is readable for a rule exactly when it is
//!   within that rule's limit and read.
//! - Conditions match what they say (ASCII case ignored): `tools/call`,
//!   the tool glob `delete_*`, the argument `/path=/etc/*`; a message
//!   judged alone is judged the same inside a batch, and with whitespace
//!   around the body.
//!
//! Input: the body, as sent.

#![no_main]

use std::fmt;
use std::sync::LazyLock;

use airlock::policy::body::Unit;
use airlock::policy::jsonrpc::{self, MAX_BATCH, MAX_DEPTH, Message, Unreadable};
use airlock::policy::{BodyCondition, BodyRead, BodySpec};
use libfuzzer_sys::fuzz_target;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A small limit, so that bodies on both sides of it are common.
const LIMIT: u64 = 256;

struct Conditions {
    method: BodyCondition,
    tool: BodyCondition,
    arg: BodyCondition,
}

/// Compiled once: compiling globs costs more than the rest of a run.
static CONDITIONS: LazyLock<Conditions> = LazyLock::new(|| {
    let parse = |spec: BodySpec| {
        BodyCondition::parse(&BodySpec {
            body_limit: Some(LIMIT),
            ..spec
        })
        .unwrap_or_else(|e| panic!("fixed condition refused: {e}"))
    };
    Conditions {
        method: parse(BodySpec {
            mcp_method: Some("tools/call".into()),
            ..BodySpec::default()
        }),
        tool: parse(BodySpec {
            mcp_tool: Some("delete_*".into()),
            ..BodySpec::default()
        }),
        arg: parse(BodySpec {
            mcp_args: vec!["/path=/etc/*".into()],
            ..BodySpec::default()
        }),
    }
});

fuzz_target!(|body: &[u8]| {
    let c = &*CONDITIONS;
    let all = [&c.method, &c.tool, &c.arg];

    let cut = BodyRead::new(body.to_vec(), false);
    assert!(cut.jsonrpc().is_err(), "a cut body was readable");
    for cond in all {
        assert_eq!(
            cond.readable(&cut),
            Err(Unreadable::TooLarge {
                limit: LIMIT as u32
            }),
            "a cut body is readable for {cond}"
        );
    }

    let read = BodyRead::new(body.to_vec(), true);
    for cond in all {
        let within = body.len() as u64 <= LIMIT;
        let expected = match read.jsonrpc() {
            _ if !within => Err(Unreadable::TooLarge {
                limit: LIMIT as u32,
            }),
            Ok(_) => Ok(()),
            Err(why) => Err(why),
        };
        assert_eq!(cond.readable(&read), expected, "{cond}");
    }

    let oracle = serde_json::from_slice::<Value>(body);
    let blank = body.iter().all(u8::is_ascii_whitespace);
    match (read.jsonrpc(), &oracle) {
        (Ok(messages), _) if blank => assert!(messages.messages.is_empty()),
        (Ok(messages), Ok(value)) => {
            assert!(depth(value) <= MAX_DEPTH, "read past the depth limit");
            let elements: Vec<&Value> = match value {
                Value::Array(items) => items.iter().collect(),
                one => vec![one],
            };
            assert_eq!(messages.batch, value.is_array());
            assert!(messages.messages.len() <= if messages.batch { MAX_BATCH } else { 1 });
            assert_eq!(messages.messages.len(), elements.len());
            for (m, v) in messages.messages.iter().zip(elements) {
                same_message(m, v);
            }
        }
        (Ok(_), Err(e)) => panic!("read, but serde_json refuses it: {e}"),
        (Err(Unreadable::NotJson), Ok(value)) => assert!(
            repeats_a_key(body),
            "refused as not JSON, but serde_json reads it ({} deep) and no key repeats",
            depth(value)
        ),
        (Err(Unreadable::TooDeep), Ok(value)) => {
            assert!(
                depth(value) > MAX_DEPTH,
                "refused as too deep at {}",
                depth(value)
            )
        }
        (Err(Unreadable::BatchTooLarge), Ok(value)) => assert!(
            value.as_array().is_some_and(|a| a.len() > MAX_BATCH),
            "refused as too large a batch"
        ),
        (Err(why), Ok(_)) => panic!("a complete body refused as {why:?}"),
        (Err(_), Err(_)) => {}
    }

    // The same body with whitespace around it reads the same.
    let mut spaced = b" \r\n".to_vec();
    spaced.extend_from_slice(body);
    spaced.extend_from_slice(b"\t ");
    assert_eq!(
        jsonrpc::read(&spaced).ok().as_ref(),
        read.jsonrpc().ok(),
        "whitespace around the body changes it"
    );

    let Ok(messages) = read.jsonrpc() else {
        return;
    };
    for m in &messages.messages {
        for cond in all {
            // Every condition here names tools/call.
            if cond.matches(Unit::Mcp(m)) {
                assert_eq!(m.method.as_deref(), Some("tools/call"), "{cond}");
            }
        }
        assert_eq!(
            c.tool.matches(Unit::Mcp(m)),
            m.method.as_deref() == Some("tools/call")
                && m.tool()
                    .is_some_and(|t| t.to_ascii_lowercase().starts_with("delete_")),
            "{m:?}"
        );
        let path = m
            .arguments()
            .and_then(|a| a.pointer("/path"))
            .map(|p| match p {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        assert_eq!(
            c.arg.matches(Unit::Mcp(m)),
            m.method.as_deref() == Some("tools/call")
                && path.is_some_and(|p| p.to_ascii_lowercase().starts_with("/etc/")),
            "{m:?}"
        );
    }

    // A message is judged the same alone as inside a batch.
    if !messages.batch
        && let [alone] = messages.messages.as_slice()
    {
        let mut wrapped = b"[".to_vec();
        wrapped.extend_from_slice(body);
        wrapped.push(b']');
        match jsonrpc::read(&wrapped) {
            Ok(batch) => {
                assert!(batch.batch);
                assert_eq!(batch.messages.as_slice(), [alone.clone()]);
            }
            // One level more than the limit allows: the only refusal.
            Err(why) => assert_eq!(why, Unreadable::TooDeep, "alone it reads, in a batch not"),
        }
    }
});

/// `m` is what `v` says: a string method, the id only with one, params.
fn same_message(m: &Message, v: &Value) {
    let method = v.get("method").and_then(Value::as_str);
    assert_eq!(m.method.as_deref(), method, "method of {v}");
    let id = method.and_then(|_| v.get("id"));
    assert_eq!(m.id.as_ref(), id, "id of {v}");
    assert_eq!(m.params.as_ref(), v.get("params"), "params of {v}");
    let tool = v.pointer("/params/name").and_then(Value::as_str);
    assert_eq!(m.tool(), tool, "tool of {v}");
    assert_eq!(
        m.arguments(),
        v.pointer("/params/arguments"),
        "arguments of {v}"
    );
}

/// Levels of arrays and objects; a scalar at the top is 0.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Whether some object in `body` (JSON serde_json reads) names a key
/// twice: serde_json's `Value` keeps the last one silently.
fn repeats_a_key(body: &[u8]) -> bool {
    let mut de = serde_json::Deserializer::from_slice(body);
    DupSeek.deserialize(&mut de).unwrap_or(false)
}

/// Walks a value, answering whether any object in it repeats a key.
#[derive(Clone, Copy)]
struct DupSeek;

impl<'de> DeserializeSeed<'de> for DupSeek {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DupSeek {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(dup) = seq.next_element_seed(self)? {
            found |= dup;
        }
        Ok(found)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut keys = std::collections::HashSet::new();
        let mut found = false;
        while let Some(key) = map.next_key::<String>()? {
            found |= !keys.insert(key);
            found |= map.next_value_seed(self)?;
        }
        Ok(found)
    }
}
