//! Body conditions: a rule that looks into the request body, as MCP
//! (JSON-RPC) messages ([`super::jsonrpc`]).
//!
//! A condition names a JSON-RPC `method` (`tools/call`), a tool name
//! glob (`delete_*`, for `tools/call`), and pointers into the call's
//! `arguments` with a glob each (`/path=/etc/*`); all it names must hold
//! for one message. Globs: `*` any run of characters, `?` one, `[abc]` a
//! class; ASCII case is ignored (a rule is the restrictive reading, as
//! for paths). A value that is not a string is matched as its JSON text.
//!
//! Decisions:
//! - **Bounded.** The gateway reads at most `limit` bytes of the body
//!   (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) before deciding,
//!   then sends what it read and the rest unchanged.
//! - **Fail-closed.** A body the rule cannot judge (larger than its
//!   limit, not JSON, too deep, too big a batch, compressed) is decided
//!   by `on_unreadable`: `refuse` (the default) refuses the request;
//!   `allow` passes the rule over, as if it did not match. Never silently
//!   allowed: an agent that could make its body unreadable would
//!   otherwise walk past every body rule.

use std::fmt;

use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::jsonrpc::{Message, Messages, Unreadable};

/// The prefix read by default (bytes).
pub const DEFAULT_LIMIT: u32 = 64 * 1024;
/// The most a rule may read: what one request may hold in memory.
pub const MAX_LIMIT: u32 = 4 * 1024 * 1024;
/// The method that calls a tool, implied by a tool glob or an argument.
pub const TOOLS_CALL: &str = "tools/call";

/// Why a body condition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    #[error(
        "MCP method {0:?} must be a JSON-RPC method name (e.g. tools/call), 1 to 128 characters"
    )]
    BadMethod(String),
    #[error("tool glob {glob:?} is not a valid glob: {reason}")]
    BadToolGlob { glob: String, reason: String },
    #[error(
        "--mcp-arg {0:?} must be POINTER=GLOB with a JSON pointer into the tool's arguments \
         (e.g. /path=/etc/*): empty or starting with /, ~ only as ~0 or ~1"
    )]
    BadArg(String),
    #[error("a tool glob or --mcp-arg only applies to tools/call, not to method {0:?}")]
    NotToolsCall(String),
    #[error("a body condition needs --mcp-method, --mcp-tool or --mcp-arg")]
    Empty,
    #[error("body limit {0} must be from 1 to {MAX_LIMIT} bytes")]
    BadLimit(u64),
    #[error("on_unreadable {0:?} must be refuse or allow")]
    BadOnUnreadable(String),
}

/// What a body the rule cannot judge gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnreadable {
    /// The request is refused, naming the rule and why.
    #[default]
    Refuse,
    /// The rule is passed over, as if it did not match.
    Allow,
}

impl OnUnreadable {
    pub fn parse(text: &str) -> Result<Self, ConditionError> {
        match text {
            "refuse" => Ok(OnUnreadable::Refuse),
            "allow" => Ok(OnUnreadable::Allow),
            _ => Err(ConditionError::BadOnUnreadable(text.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OnUnreadable::Refuse => "refuse",
            OnUnreadable::Allow => "allow",
        }
    }
}

/// A body condition as written: by the CLI, the API, and in the
/// database (JSON). [`BodyCondition`] is the checked form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BodySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_tool: Option<String>,
    /// `POINTER=GLOB`, each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_args: Vec<String>,
    /// Bytes read before deciding; default [`DEFAULT_LIMIT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_limit: Option<u64>,
    /// `refuse` (default) or `allow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_unreadable: Option<String>,
}

/// A glob over one string (a tool name, an argument's value).
#[derive(Debug, Clone)]
struct Glob {
    text: String,
    matcher: GlobMatcher,
}

impl Glob {
    fn parse(text: &str) -> Result<Self, String> {
        let matcher = GlobBuilder::new(text)
            .literal_separator(false)
            .backslash_escape(true)
            .case_insensitive(true)
            .build()
            .map_err(|e| e.kind().to_string())?
            .compile_matcher();
        Ok(Glob {
            text: text.to_owned(),
            matcher,
        })
    }

    fn is_match(&self, text: &str) -> bool {
        self.matcher.is_match(text)
    }
}

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
            glob: Glob::parse(glob).map_err(|_| bad())?,
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

/// A checked body condition.
#[derive(Debug, Clone)]
pub struct BodyCondition {
    /// The JSON-RPC method; `tools/call` when a tool or argument is named.
    method: Option<String>,
    tool: Option<Glob>,
    args: Vec<ArgMatch>,
    pub limit: u32,
    pub on_unreadable: OnUnreadable,
}

impl BodyCondition {
    /// The one validator (CLI, API, and rows read back).
    pub fn parse(spec: &BodySpec) -> Result<Self, ConditionError> {
        let tool = spec
            .mcp_tool
            .as_deref()
            .map(|g| {
                Glob::parse(g).map_err(|reason| ConditionError::BadToolGlob {
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
            Some(m) => Some(m.to_owned()),
            None if tool.is_some() || !args.is_empty() => Some(TOOLS_CALL.to_owned()),
            None => return Err(ConditionError::Empty),
        };
        let limit = match spec.body_limit {
            None => DEFAULT_LIMIT,
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|&n| (1..=MAX_LIMIT).contains(&n))
                .ok_or(ConditionError::BadLimit(n))?,
        };
        let on_unreadable = spec
            .on_unreadable
            .as_deref()
            .map(OnUnreadable::parse)
            .transpose()?
            .unwrap_or_default();
        Ok(BodyCondition {
            method,
            tool,
            args,
            limit,
            on_unreadable,
        })
    }

    /// The written form, complete (defaults spelled out).
    pub fn spec(&self) -> BodySpec {
        BodySpec {
            mcp_method: self.method.clone(),
            mcp_tool: self.tool.as_ref().map(|g| g.text.clone()),
            mcp_args: self
                .args
                .iter()
                .map(|a| format!("{}={}", a.pointer, a.glob.text))
                .collect(),
            body_limit: Some(u64::from(self.limit)),
            on_unreadable: Some(self.on_unreadable.as_str().to_owned()),
        }
    }

    /// Does this one message match?
    pub fn matches(&self, m: &Message) -> bool {
        self.method
            .as_deref()
            .is_none_or(|want| m.method.as_deref() == Some(want))
            && self
                .tool
                .as_ref()
                .is_none_or(|g| m.tool().is_some_and(|t| g.is_match(t)))
            && self.args.iter().all(|a| a.matches(m.arguments()))
    }

    /// Whether the rule can judge `body` (read up to `read_len` bytes,
    /// `complete` when that was all of it).
    pub fn readable(&self, body: &BodyRead) -> Result<(), Unreadable> {
        if !body.complete || body.len > self.limit as usize {
            return Err(Unreadable::TooLarge { limit: self.limit });
        }
        body.messages.as_ref().map(|_| ()).map_err(|e| *e)
    }
}

impl fmt::Display for BodyCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("mcp")?;
        if let Some(m) = &self.method {
            write!(f, " {m}")?;
        }
        if let Some(t) = &self.tool {
            write!(f, " tool={}", t.text)?;
        }
        for a in &self.args {
            write!(f, " {}={}", a.pointer, a.glob.text)?;
        }
        write!(
            f,
            " (reads {} bytes, unreadable: {})",
            self.limit,
            self.on_unreadable.as_str()
        )
    }
}

/// A request body as read for body conditions: the first `len` bytes,
/// and whether that was all of it.
#[derive(Debug, Clone)]
pub struct BodyRead {
    pub len: usize,
    pub complete: bool,
    /// The messages, when the body was complete and readable.
    pub messages: Result<Messages, Unreadable>,
}

impl BodyRead {
    /// A body read whole (`complete`) or cut at the largest limit.
    pub fn new(prefix: &[u8], complete: bool) -> Self {
        BodyRead {
            len: prefix.len(),
            complete,
            messages: if complete {
                super::jsonrpc::read(prefix)
            } else {
                Err(Unreadable::NotJson)
            },
        }
    }

    /// A body that cannot be read at all (compressed).
    pub fn unreadable(why: Unreadable) -> Self {
        BodyRead {
            len: 0,
            complete: true,
            messages: Err(why),
        }
    }

    /// The messages to judge one by one; none when unreadable.
    pub fn each(&self) -> &[Message] {
        self.messages.as_ref().map_or(&[], |m| &m.messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let c = BodyCondition::parse(&spec(Some("delete_*"), &[])).unwrap();
        assert!(c.matches(&call("delete_repo", "{}")));
        assert!(c.matches(&call("DELETE_repo", "{}")));
        assert!(!c.matches(&call("read_file", "{}")));
        let list = jsonrpc::read(br#"{"id":1,"method":"tools/list","params":{"name":"delete_x"}}"#)
            .unwrap();
        assert!(!c.matches(&list.messages[0]));
        assert_eq!(c.spec().mcp_method.as_deref(), Some("tools/call"));
    }

    #[test]
    fn arguments_match_by_pointer() {
        let c = BodyCondition::parse(&spec(None, &["/path=/etc/*", "/opts/force=true"])).unwrap();
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
        let escaped = BodyCondition::parse(&spec(None, &["/a~1b=x"])).unwrap();
        assert!(escaped.matches(&call("t", r#"{"a/b":"x"}"#)));
    }

    #[test]
    fn a_method_alone_matches_any_params() {
        let c = BodyCondition::parse(&BodySpec {
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
            BodyCondition::parse(&BodySpec::default()).unwrap_err(),
            ConditionError::Empty
        );
        assert!(matches!(
            BodyCondition::parse(&spec(Some("delete_[a"), &[])),
            Err(ConditionError::BadToolGlob { .. })
        ));
        for bad in ["path=x", "/a~2=x", "/a~", "/path"] {
            assert!(
                matches!(
                    BodyCondition::parse(&spec(None, &[bad])),
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
            BodyCondition::parse(&wrong_method),
            Err(ConditionError::NotToolsCall(_))
        ));
        for limit in [0, u64::from(MAX_LIMIT) + 1] {
            let s = BodySpec {
                body_limit: Some(limit),
                ..spec(Some("x"), &[])
            };
            assert_eq!(
                BodyCondition::parse(&s).unwrap_err(),
                ConditionError::BadLimit(limit)
            );
        }
        let s = BodySpec {
            on_unreadable: Some("maybe".into()),
            ..spec(Some("x"), &[])
        };
        assert!(BodyCondition::parse(&s).is_err());
    }

    #[test]
    fn readable_within_the_rule_limit_only() {
        let c = BodyCondition::parse(&BodySpec {
            body_limit: Some(10),
            ..spec(Some("x"), &[])
        })
        .unwrap();
        assert_eq!(c.readable(&BodyRead::new(b"{}", true)), Ok(()));
        assert_eq!(
            c.readable(&BodyRead::new(b"{\"a\":\"0123456789\"}", true)),
            Err(Unreadable::TooLarge { limit: 10 })
        );
        assert_eq!(
            c.readable(&BodyRead::new(b"{", false)),
            Err(Unreadable::TooLarge { limit: 10 })
        );
        assert_eq!(
            c.readable(&BodyRead::new(b"nope", true)),
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
