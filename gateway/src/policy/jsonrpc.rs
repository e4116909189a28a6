//! Reading a request body as JSON-RPC messages, for rules with an MCP
//! body condition ([`super::mcp`]), strictly enough that the gateway and the
//! server cannot read one body two ways:
//!
//! - **Depth.** At most [`MAX_DEPTH`] nested arrays and objects. The
//!   check runs as serde_json descends (a seed counts the levels), so a
//!   depth bomb is refused after [`MAX_DEPTH`] levels, never parsed
//!   further (serde_json's own limit is 128).
//! - **Duplicate keys** anywhere are refused: parsers disagree on which
//!   of two `"name"`s wins, and a rule must judge the one the server runs.
//! - **Batches** of more than [`MAX_BATCH`] elements are refused; each
//!   element of a smaller one is judged on its own.
//! - **Anything else that is not one JSON value** (trailing data, a BOM,
//!   invalid UTF-8) is refused.
//!
//! A refusal here is not a decision: the rule's `on_unreadable` decides.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

pub use super::body::Unreadable;

/// The deepest nesting of arrays and objects read.
pub const MAX_DEPTH: usize = 64;
/// The most elements a batch may have.
pub const MAX_BATCH: usize = 100;

/// One JSON-RPC message of a body: a request or notification (with a
/// `method`), or anything else (a response, a stray value), which no
/// rule matches.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The request's id; `None` for a notification or a non-request.
    pub id: Option<Value>,
    pub method: Option<String>,
    pub params: Option<Value>,
}

impl Message {
    fn from_value(value: Value) -> Message {
        let Value::Object(mut obj) = value else {
            return Message {
                id: None,
                method: None,
                params: None,
            };
        };
        let method = match obj.remove("method") {
            Some(Value::String(m)) => Some(m),
            _ => None,
        };
        Message {
            id: method.as_ref().and_then(|_| obj.remove("id")),
            method,
            params: obj.remove("params"),
        }
    }

    /// `params.name`, the tool a `tools/call` names.
    pub fn tool(&self) -> Option<&str> {
        self.params.as_ref()?.get("name")?.as_str()
    }

    /// `params.arguments`, what a `tools/call` passes the tool.
    pub fn arguments(&self) -> Option<&Value> {
        self.params.as_ref()?.get("arguments")
    }
}

/// A body read as JSON-RPC: one message, or a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Messages {
    pub batch: bool,
    pub messages: Vec<Message>,
}

impl Messages {
    /// The ids of the requests in it, for answering with errors.
    pub fn ids(&self) -> impl Iterator<Item = &Value> {
        self.messages.iter().filter_map(|m| m.id.as_ref())
    }
}

/// Reads `body` (all of it). An empty body is no messages: nothing for
/// a body condition to match, and nothing for a server to run.
pub fn read(body: &[u8]) -> Result<Messages, Unreadable> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Messages {
            batch: false,
            messages: Vec::new(),
        });
    }
    Ok(match strict_value(body)? {
        Value::Array(items) => Messages {
            batch: true,
            messages: items.into_iter().map(Message::from_value).collect(),
        },
        one => Messages {
            batch: false,
            messages: vec![Message::from_value(one)],
        },
    })
}

/// Reads `body` as one JSON value, with the bounds and refusals above;
/// GraphQL requests ([`super::graphql`]) are read with it too.
pub fn strict_value(body: &[u8]) -> Result<Value, Unreadable> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = Node { depth: 0 }.deserialize(&mut de).map_err(classify)?;
    de.end().map_err(|_| Unreadable::NotJson)?;
    Ok(value)
}

const TOO_DEEP: &str = "airlock: nested too deep";
const TOO_MANY: &str = "airlock: batch too large";

fn classify(e: serde_json::Error) -> Unreadable {
    let text = e.to_string();
    if text.starts_with(TOO_DEEP) {
        Unreadable::TooDeep
    } else if text.starts_with(TOO_MANY) {
        Unreadable::BatchTooLarge
    } else {
        Unreadable::NotJson
    }
}

/// A value at `depth` levels of nesting (the top is 0).
struct Node {
    depth: usize,
}

impl Node {
    /// Refuses an array or object at this depth if its level would be
    /// past [`MAX_DEPTH`]. Checked on entering the container, empty or
    /// not: an empty object, whose children are never asked for, counts
    /// as a level as an empty array does.
    fn enter<E: de::Error>(&self) -> Result<(), E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(TOO_DEEP));
        }
        Ok(())
    }

    fn child(&self) -> Node {
        Node {
            depth: self.depth + 1,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Node {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.child())? {
            // Only the top-level array is a batch; a cap on it alone
            // bounds the work of judging element by element.
            if self.depth == 0 && items.len() == MAX_BATCH {
                return Err(de::Error::custom(TOO_MANY));
            }
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut obj = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self.child())?;
            if obj.insert(key, value).is_some() {
                return Err(de::Error::custom("duplicate key"));
            }
        }
        Ok(Value::Object(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_call_and_a_batch() {
        let one = read(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/a"}}}"#).unwrap();
        assert!(!one.batch);
        assert_eq!(one.messages[0].tool(), Some("read_file"));
        assert_eq!(one.messages[0].id, Some(Value::from(7)));
        assert_eq!(one.messages[0].arguments().unwrap()["path"], "/a");
        let batch = read(br#"[{"jsonrpc":"2.0","method":"notifications/initialized"},{"id":"x","method":"tools/list"},{"id":1,"result":{}}]"#).unwrap();
        assert!(batch.batch);
        assert_eq!(batch.messages.len(), 3);
        assert_eq!(batch.messages[0].id, None);
        assert_eq!(batch.messages[1].method.as_deref(), Some("tools/list"));
        // A response has no method: no rule's to judge, and no id to answer.
        assert_eq!(batch.messages[2].method, None);
        assert_eq!(batch.ids().count(), 1);
    }

    #[test]
    fn empty_is_no_messages() {
        assert!(read(b"").unwrap().messages.is_empty());
        assert!(read(b" \r\n").unwrap().messages.is_empty());
    }

    #[test]
    fn what_is_not_one_json_value_is_unreadable() {
        for bad in [
            &b"name=delete_all"[..],
            b"{\"method\":\"tools/call\"} trailing",
            b"\xEF\xBB\xBF{}",
            b"{\"method\":\"tools/call\"",
            b"{\"a\":\"\xff\"}",
        ] {
            assert_eq!(read(bad), Err(Unreadable::NotJson), "{bad:?}");
        }
    }

    #[test]
    fn a_repeated_key_is_unreadable_at_any_depth() {
        let twice = br#"{"method":"tools/call","params":{"name":"read_file","name":"delete_all"}}"#;
        assert_eq!(read(twice), Err(Unreadable::NotJson));
    }

    #[test]
    fn depth_is_capped_before_serde_json_would_stop() {
        let nest = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        assert!(read(nest(MAX_DEPTH).as_bytes()).is_ok());
        assert_eq!(
            read(nest(MAX_DEPTH + 1).as_bytes()),
            Err(Unreadable::TooDeep)
        );
        // Far past serde_json's own limit, and unterminated: still ours.
        assert_eq!(read(&[b'['; 100_000]), Err(Unreadable::TooDeep));
        let objects = format!(
            "{}1{}",
            r#"{"a":"#.repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(read(objects.as_bytes()), Err(Unreadable::TooDeep));
    }

    #[test]
    fn an_empty_object_or_array_counts_as_a_level() {
        // Seen writing the `jsonrpc` fuzz target's depth property: 65 levels
        // ending in `{}` were read, though 65 ending in `[]` were not.
        let nest =
            |n: usize, inner: &str| format!("{}{inner}{}", r#"{"a":"#.repeat(n), "}".repeat(n));
        for inner in ["{}", "[]"] {
            assert!(
                read(nest(MAX_DEPTH - 1, inner).as_bytes()).is_ok(),
                "{inner}"
            );
            assert_eq!(
                read(nest(MAX_DEPTH, inner).as_bytes()),
                Err(Unreadable::TooDeep),
                "{inner}"
            );
        }
        let arrays = |n: usize, inner: &str| format!("{}{inner}{}", "[".repeat(n), "]".repeat(n));
        assert!(read(arrays(MAX_DEPTH - 1, "{}").as_bytes()).is_ok());
        assert_eq!(
            read(arrays(MAX_DEPTH, "{}").as_bytes()),
            Err(Unreadable::TooDeep)
        );
    }

    #[test]
    fn a_batch_is_capped() {
        let batch = |n: usize| format!("[{}]", vec![r#"{"method":"ping"}"#; n].join(","));
        assert_eq!(
            read(batch(MAX_BATCH).as_bytes()).unwrap().messages.len(),
            MAX_BATCH
        );
        assert_eq!(
            read(batch(MAX_BATCH + 1).as_bytes()),
            Err(Unreadable::BatchTooLarge)
        );
    }
}
