//! MCP body conditions ([`super::body`]): JSON-RPC messages as
//! [`super::jsonrpc`] reads them.
//!
//! A condition names a JSON-RPC `method` (`tools/call`), a tool name
//! glob (`delete_*`, for `tools/call`), and pointers into the call's
//! `arguments` with a glob each (`/path=/etc/*`); all it names must hold
//! for one message. Globs: `*` any run of characters, `?` one, `[abc]` a
//! class; ASCII case is ignored (a rule is the restrictive reading, as
//! for paths). A value that is not a string is matched as its JSON text.

use std::fmt;

use serde_json::Value;

use super::body::{BodySpec, ConditionError, Glob};
use super::jsonrpc::Message;

/// The method that calls a tool, implied by a tool glob or an argument.
pub const TOOLS_CALL: &str = "tools/call";

/// One `POINTER=GLOB`.
#[derive(Debug, Clone)]
struct ArgMatch {
    pointer: String,
    glob: Glob,
}

impl ArgMatch {
    fn parse(text: &str) -> Result<Self, ConditionError> {
        let bad = || ConditionError::BadArg(text.to_owned());
        let (pointer, glob) = text.split_once('=').ok_or_else(bad)?;
        if !valid_pointer(pointer) {
            return Err(bad());
        }
        Ok(ArgMatch {
            pointer: pointer.to_owned(),
            glob: Glob::parse(glob, true).map_err(|_| bad())?,
        })
    }

    fn matches(&self, arguments: Option<&Value>) -> bool {
        match arguments.and_then(|a| a.pointer(&self.pointer)) {
            Some(Value::String(s)) => self.glob.is_match(s),
            Some(other) => self.glob.is_match(&other.to_string()),
            None => false,
        }
    }
}

/// RFC 6901: empty (the whole value), or `/`-separated tokens where `~`
/// is only ever `~0` or `~1`.
fn valid_pointer(p: &str) -> bool {
    (p.is_empty() || p.starts_with('/'))
        && p.split('~')
            .skip(1)
            .all(|rest| rest.starts_with(['0', '1']))
}

/// A checked MCP condition.
#[derive(Debug, Clone)]
pub struct McpCondition {
    /// The JSON-RPC method; `tools/call` when a tool or argument is named.
    method: String,
    tool: Option<Glob>,
    args: Vec<ArgMatch>,
}

impl McpCondition {
    /// The MCP part of `spec` (the body limit is [`super::body`]'s).
    pub fn parse(spec: &BodySpec) -> Result<Self, ConditionError> {
        let tool = spec
            .mcp_tool
            .as_deref()
            .map(|g| {
                Glob::parse(g, true).map_err(|reason| ConditionError::BadToolGlob {
                    glob: g.to_owned(),
                    reason,
                })
            })
            .transpose()?;
        let args = spec
            .mcp_args
            .iter()
            .map(|a| ArgMatch::parse(a))
            .collect::<Result<Vec<_>, _>>()?;
        let method = match spec.mcp_method.as_deref() {
            Some(m) if m.is_empty() || m.len() > 128 || m.chars().any(char::is_control) => {
                return Err(ConditionError::BadMethod(m.to_owned()));
            }
            Some(m) if m != TOOLS_CALL && (tool.is_some() || !args.is_empty()) => {
                return Err(ConditionError::NotToolsCall(m.to_owned()));
            }
            Some(m) => m.to_owned(),
            None if tool.is_some() || !args.is_empty() => TOOLS_CALL.to_owned(),
            None => return Err(ConditionError::Empty),
        };
        Ok(McpCondition { method, tool, args })
    }

    /// Fills in the MCP keys of the written form.
    pub fn write(&self, spec: &mut BodySpec) {
        spec.mcp_method = Some(self.method.clone());
        spec.mcp_tool = self.tool.as_ref().map(|g| g.text.clone());
        spec.mcp_args = self
            .args
            .iter()
            .map(|a| format!("{}={}", a.pointer, a.glob.text))
            .collect();
    }

    /// Does this one message match?
    pub fn matches(&self, m: &Message) -> bool {
        m.method.as_deref() == Some(self.method.as_str())
            && self
                .tool
                .as_ref()
                .is_none_or(|g| m.tool().is_some_and(|t| g.is_match(t)))
            && self.args.iter().all(|a| a.matches(m.arguments()))
    }
}

impl fmt::Display for McpCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mcp {}", self.method)?;
        if let Some(t) = &self.tool {
            write!(f, " tool={}", t.text)?;
        }
        for a in &self.args {
            write!(f, " {}={}", a.pointer, a.glob.text)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::body::{BodyCondition, BodyRead, Unreadable};
    use crate::policy::jsonrpc;

    fn spec(tool: Option<&str>, args: &[&str]) -> BodySpec {
        BodySpec {
            mcp_tool: tool.map(str::to_owned),
            mcp_args: args.iter().map(|a| (*a).to_owned()).collect(),
            ..BodySpec::default()
        }
    }

    fn call(tool: &str, args: &str) -> Message {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{args}}}}}"#
        );
        jsonrpc::read(body.as_bytes()).unwrap().messages.remove(0)
    }

    #[test]
    fn a_tool_glob_implies_tools_call() {
        let c = McpCondition::parse(&spec(Some("delete_*"), &[])).unwrap();
        assert!(c.matches(&call("delete_repo", "{}")));
        assert!(c.matches(&call("DELETE_repo", "{}")));
        assert!(!c.matches(&call("read_file", "{}")));
        let list = jsonrpc::read(br#"{"id":1,"method":"tools/list","params":{"name":"delete_x"}}"#)
            .unwrap();
        assert!(!c.matches(&list.messages[0]));
        assert_eq!(c.method, "tools/call");
    }

    #[test]
    fn arguments_match_by_pointer() {
        let c = McpCondition::parse(&spec(None, &["/path=/etc/*", "/opts/force=true"])).unwrap();
        assert!(c.matches(&call(
            "write",
            r#"{"path":"/etc/passwd","opts":{"force":true}}"#
        )));
        assert!(!c.matches(&call(
            "write",
            r#"{"path":"/etc/passwd","opts":{"force":false}}"#
        )));
        assert!(!c.matches(&call(
            "write",
            r#"{"path":"/home/x","opts":{"force":true}}"#
        )));
        assert!(!c.matches(&call("write", r#"{"opts":{"force":true}}"#)));
        let escaped = McpCondition::parse(&spec(None, &["/a~1b=x"])).unwrap();
        assert!(escaped.matches(&call("t", r#"{"a/b":"x"}"#)));
    }

    #[test]
    fn a_method_alone_matches_any_params() {
        let c = McpCondition::parse(&BodySpec {
            mcp_method: Some("resources/read".into()),
            ..BodySpec::default()
        })
        .unwrap();
        let m =
            jsonrpc::read(br#"{"id":2,"method":"resources/read","params":{"uri":"x"}}"#).unwrap();
        assert!(c.matches(&m.messages[0]));
    }

    #[test]
    fn bad_conditions_are_refused() {
        assert_eq!(
            McpCondition::parse(&BodySpec::default()).unwrap_err(),
            ConditionError::Empty
        );
        assert!(matches!(
            McpCondition::parse(&spec(Some("delete_[a"), &[])),
            Err(ConditionError::BadToolGlob { .. })
        ));
        for bad in ["path=x", "/a~2=x", "/a~", "/path"] {
            assert!(
                matches!(
                    McpCondition::parse(&spec(None, &[bad])),
                    Err(ConditionError::BadArg(_))
                ),
                "{bad}"
            );
        }
        let wrong_method = BodySpec {
            mcp_method: Some("tools/list".into()),
            mcp_tool: Some("x".into()),
            ..BodySpec::default()
        };
        assert!(matches!(
            McpCondition::parse(&wrong_method),
            Err(ConditionError::NotToolsCall(_))
        ));
    }

    #[test]
    fn readable_within_the_rule_limit_only() {
        let c = BodyCondition::parse(&BodySpec {
            body_limit: Some(10),
            ..spec(Some("x"), &[])
        })
        .unwrap();
        assert_eq!(c.readable(&BodyRead::new(&b"{}"[..], true)), Ok(()));
        assert_eq!(
            c.readable(&BodyRead::new(&b"{\"a\":\"0123456789\"}"[..], true)),
            Err(Unreadable::TooLarge { limit: 10 })
        );
        assert_eq!(
            c.readable(&BodyRead::new(&b"{"[..], false)),
            Err(Unreadable::TooLarge { limit: 10 })
        );
        assert_eq!(
            c.readable(&BodyRead::new(&b"nope"[..], true)),
            Err(Unreadable::NotJson)
        );
    }

    #[test]
    fn the_spec_round_trips() {
        let c = BodyCondition::parse(&spec(Some("delete_*"), &["/p=x*"])).unwrap();
        let again = BodyCondition::parse(&c.spec()).unwrap();
        assert_eq!(again.spec(), c.spec());
        assert_eq!(
            c.to_string(),
            "mcp tools/call tool=delete_* /p=x* (reads 65536 bytes, unreadable: refuse)"
        );
    }
}
