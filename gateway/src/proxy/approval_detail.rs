//! What a person approving a request held by a body rule is shown, one
//! line: each MCP call's method, tool and arguments, with secrets
//! redacted, or each GraphQL operation type and top-level field (names
//! only: a GraphQL name cannot hold a placeholder, and arguments are not
//! shown, as they may hold values the approver should not copy around).
//!
//! Redacted: every string that holds a placeholder (`airlock:NAME`: the
//! agent names a key it does not hold, and which key is not the approver's
//! business to copy around), and the value of every key whose name says
//! it is a credential (`token`, `password`, `secret`, `api_key`,
//! `authorization`, ...), whatever it holds: an agent may have been given
//! a real value out of band. The line is capped at [`MAX_CHARS`].

use serde_json::Value;

use super::placeholder;
use crate::policy::BodyRead;
use crate::policy::graphql::Operations;
use crate::policy::jsonrpc::Messages;

/// The longest detail kept (characters); longer ones end in `…`.
pub const MAX_CHARS: usize = 2000;

const REDACTED: &str = "[redacted]";

/// The detail of a held request, by the readings the rules made of its
/// body; `None` when it has no call or operation in it.
pub fn describe(body: &BodyRead) -> Option<String> {
    let mut lines = body.jsonrpc_if_read().map(calls).unwrap_or_default();
    lines.extend(body.graphql_if_read().map(operations).unwrap_or_default());
    if lines.is_empty() {
        return None;
    }
    let mut text = lines.join("; ");
    if text.chars().count() > MAX_CHARS {
        text = text.chars().take(MAX_CHARS - 1).collect();
        text.push('…');
    }
    Some(text)
}

/// `mutation deleteUser`, each.
fn operations(ops: &Operations) -> Vec<String> {
    ops.operations
        .iter()
        .map(|op| format!("{} {}", op.kind.as_str(), op.field))
        .collect()
}

/// Each call's method, tool and arguments.
fn calls(messages: &Messages) -> Vec<String> {
    messages
        .messages
        .iter()
        .filter_map(|m| {
            let method = m.method.as_deref()?;
            let mut line = method.to_owned();
            if let Some(tool) = m.tool() {
                line.push(' ');
                line.push_str(&redact_str(tool));
            }
            if let Some(args) = m.arguments() {
                line.push(' ');
                line.push_str(&redact(args).to_string());
            }
            Some(line)
        })
        .collect()
}

fn redact_str(s: &str) -> String {
    if placeholder::find_all(s).is_empty() {
        s.to_owned()
    } else {
        REDACTED.to_owned()
    }
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "token",
        "password",
        "passwd",
        "secret",
        "apikey",
        "api_key",
        "api-key",
        "authorization",
        "credential",
        "private_key",
        "cookie",
    ]
    .iter()
    .any(|w| k.contains(w))
}

fn redact(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(redact_str(s)),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::Object(obj) => Value::Object(
            obj.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) {
                        Value::String(REDACTED.into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `body` as read for an MCP rule.
    fn rpc(body: &[u8]) -> BodyRead {
        let read = BodyRead::new(body.to_vec(), true);
        assert!(read.jsonrpc().is_ok());
        read
    }

    #[test]
    fn calls_are_shown_with_secrets_redacted() {
        let body = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send_mail","arguments":{"to":"a@b.c","auth":"Bearer airlock:mail","nested":{"api_token":"ghp_real"},"n":3}}},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#;
        let d = describe(&rpc(body)).unwrap();
        assert!(d.starts_with("tools/call send_mail {"), "{d}");
        assert!(d.ends_with("}; notifications/initialized"), "{d}");
        for part in [
            r#""auth":"[redacted]""#,
            r#""api_token":"[redacted]""#,
            r#""to":"a@b.c""#,
            r#""n":3"#,
        ] {
            assert!(d.contains(part), "{d} lacks {part}");
        }
        assert!(!d.contains("ghp_real") && !d.contains("airlock:mail"));
    }

    #[test]
    fn no_call_no_detail_and_long_ones_are_cut() {
        assert_eq!(describe(&rpc(b"{}")), None);
        let long = format!(
            r#"{{"id":1,"method":"tools/call","params":{{"name":"t","arguments":{{"x":"{}"}}}}}}"#,
            "y".repeat(5000)
        );
        let d = describe(&rpc(long.as_bytes())).unwrap();
        assert_eq!(d.chars().count(), MAX_CHARS);
        assert!(d.ends_with('…'));
    }

    #[test]
    fn graphql_operations_are_shown_by_type_and_field() {
        let body = br#"{"query":"mutation { a: deleteUser(id: \"airlock:x\") { ok } setFlag }"}"#;
        let read = BodyRead::new(&body[..], true);
        assert!(read.graphql().is_ok());
        assert_eq!(
            describe(&read).as_deref(),
            Some("mutation deleteUser; mutation setFlag")
        );
    }
}
