//! Body conditions: a rule that looks into the request body. A condition
//! is of exactly one kind: MCP ([`super::mcp`]: JSON-RPC methods, tools
//! and arguments) or GraphQL ([`super::graphql`]: operation types and
//! top-level fields). This module holds what the kinds share: the written
//! form, the bounds, what an unreadable body gets, and the body as read.
//!
//! Decisions:
//! - **Bounded.** The gateway reads at most `limit` bytes of the body
//!   (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) before deciding,
//!   then sends what it read and the rest unchanged.
//! - **Fail-closed.** A body the rule cannot judge (larger than its
//!   limit, not what the kind reads, too deep, too big a batch, too
//!   complex a document, compressed) is decided by `on_unreadable`:
//!   `refuse` (the default) refuses the request; `allow` passes the rule
//!   over, as if it did not match. Never silently allowed: an agent that
//!   could make its body unreadable would otherwise walk past every body
//!   rule.
//! - **One written form.** [`BodySpec`] is flat, one key per option
//!   (`mcp_*`, `graphql_*`), so the rows stored before GraphQL existed
//!   read unchanged; which keys are set says the kind, and mixing the two
//!   kinds is refused.
//! - **Read lazily.** The body is read once as bytes; it is parsed as
//!   JSON-RPC or as GraphQL only when a rule of that kind asks, so a
//!   GraphQL endpoint never pays for a JSON-RPC reading, nor the reverse.

use std::fmt;
use std::sync::OnceLock;

use bytes::Bytes;
use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};

use super::graphql::{self, GraphqlCondition, Operation, Operations};
use super::jsonrpc::{self, Message, Messages};
use super::mcp::McpCondition;

/// The prefix read by default (bytes).
pub const DEFAULT_LIMIT: u32 = 64 * 1024;
/// The most a rule may read: what one request may hold in memory.
pub const MAX_LIMIT: u32 = 4 * 1024 * 1024;

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
    #[error(
        "--graphql {0:?} must be query, mutation or subscription (the operation type to match)"
    )]
    BadOperation(String),
    #[error(
        "--graphql-field {0:?} must be a GraphQL field name (letters, digits, _; not starting \
         with a digit) or a glob of one (e.g. delete*)"
    )]
    BadField(String),
    #[error(
        "a rule's body condition is MCP (--mcp-*) or GraphQL (--graphql*), not both: split it \
         into two rules"
    )]
    Mixed,
    #[error(
        "a body condition needs --mcp-method, --mcp-tool, --mcp-arg, --graphql or --graphql-field"
    )]
    Empty,
    #[error("body limit {0} must be from 1 to {MAX_LIMIT} bytes")]
    BadLimit(u64),
    #[error("on_unreadable {0:?} must be refuse or allow")]
    BadOnUnreadable(String),
}

/// Why a body could not be judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Longer than the rule reads (bytes).
    TooLarge { limit: u32 },
    /// Not one well-formed JSON value (or a duplicate key in it).
    NotJson,
    /// Nested deeper than [`jsonrpc::MAX_DEPTH`].
    TooDeep,
    /// A batch of more than [`jsonrpc::MAX_BATCH`] elements.
    BatchTooLarge,
    /// Compressed (`Content-Encoding`): its text is not readable as sent.
    Encoded,
    /// JSON, but not a GraphQL request (no `query` string, or a field of
    /// the wrong type), or a document in both the URL and the body.
    NotGraphql,
    /// A GraphQL document that does not parse.
    BadDocument,
    /// A GraphQL document past the token or nesting bounds.
    TooComplex,
    /// No single operation to judge: several and no (or no matching)
    /// `operationName`, or none at all.
    NoOperation,
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unreadable::TooLarge { limit } => {
                write!(
                    f,
                    "the body is larger than the {limit} bytes the rule reads"
                )
            }
            Unreadable::NotJson => f.write_str(
                "the body is not one well-formed JSON value (or repeats a key in an object)",
            ),
            Unreadable::TooDeep => {
                write!(
                    f,
                    "the body nests deeper than {} levels",
                    jsonrpc::MAX_DEPTH
                )
            }
            Unreadable::BatchTooLarge => write!(
                f,
                "the body is a batch of more than {} messages",
                jsonrpc::MAX_BATCH
            ),
            Unreadable::Encoded => f.write_str("the body is compressed (Content-Encoding)"),
            Unreadable::NotGraphql => f.write_str(
                "the request is not a GraphQL request (a JSON object with a \"query\" string, \
                 or ?query= in the URL, not both)",
            ),
            Unreadable::BadDocument => f.write_str("the GraphQL document does not parse"),
            Unreadable::TooComplex => write!(
                f,
                "the GraphQL document has more than {} tokens or nests deeper than {} levels",
                graphql::MAX_TOKENS,
                graphql::MAX_DEPTH
            ),
            Unreadable::NoOperation => f.write_str(
                "the GraphQL document has no single operation to run (several and no matching \
                 operationName, or none)",
            ),
        }
    }
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
    /// `query`, `mutation` or `subscription`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graphql_operation: Option<String>,
    /// A top-level field name, or a glob of one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graphql_field: Option<String>,
    /// Bytes read before deciding; default [`DEFAULT_LIMIT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_limit: Option<u64>,
    /// `refuse` (default) or `allow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_unreadable: Option<String>,
}

impl BodySpec {
    fn has_mcp(&self) -> bool {
        self.mcp_method.is_some() || self.mcp_tool.is_some() || !self.mcp_args.is_empty()
    }

    fn has_graphql(&self) -> bool {
        self.graphql_operation.is_some() || self.graphql_field.is_some()
    }
}

/// What a condition matches in the body: one kind of reading.
#[derive(Debug, Clone)]
pub enum BodyMatch {
    Mcp(McpCondition),
    Graphql(GraphqlCondition),
}

/// A checked body condition.
#[derive(Debug, Clone)]
pub struct BodyCondition {
    pub kind: BodyMatch,
    pub limit: u32,
    pub on_unreadable: OnUnreadable,
}

/// One thing a body carries, judged on its own: a JSON-RPC message, or a
/// GraphQL operation (one per element of a batch).
#[derive(Debug, Clone, Copy)]
pub enum Unit<'a> {
    Mcp(&'a Message),
    Graphql(&'a Operation),
}

impl BodyCondition {
    /// The one validator (CLI, API, and rows read back).
    pub fn parse(spec: &BodySpec) -> Result<Self, ConditionError> {
        let kind = match (spec.has_mcp(), spec.has_graphql()) {
            (true, true) => return Err(ConditionError::Mixed),
            (false, false) => return Err(ConditionError::Empty),
            (true, false) => BodyMatch::Mcp(McpCondition::parse(spec)?),
            (false, true) => BodyMatch::Graphql(GraphqlCondition::parse(spec)?),
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
            kind,
            limit,
            on_unreadable,
        })
    }

    /// The written form, complete (defaults spelled out).
    pub fn spec(&self) -> BodySpec {
        let mut spec = BodySpec {
            body_limit: Some(u64::from(self.limit)),
            on_unreadable: Some(self.on_unreadable.as_str().to_owned()),
            ..BodySpec::default()
        };
        match &self.kind {
            BodyMatch::Mcp(c) => c.write(&mut spec),
            BodyMatch::Graphql(c) => c.write(&mut spec),
        }
        spec
    }

    /// Does this one unit match? A unit of the other kind never does.
    pub fn matches(&self, unit: Unit<'_>) -> bool {
        match (&self.kind, unit) {
            (BodyMatch::Mcp(c), Unit::Mcp(m)) => c.matches(m),
            (BodyMatch::Graphql(c), Unit::Graphql(op)) => c.matches(op),
            _ => false,
        }
    }

    /// Whether the rule can judge `body`: within its limit, and readable
    /// as its kind reads it.
    pub fn readable(&self, body: &BodyRead) -> Result<(), Unreadable> {
        if !body.complete || body.len() > self.limit as usize {
            return Err(Unreadable::TooLarge { limit: self.limit });
        }
        match &self.kind {
            BodyMatch::Mcp(_) => body.jsonrpc().map(|_| ()),
            BodyMatch::Graphql(_) => body.graphql().map(|_| ()),
        }
    }
}

impl fmt::Display for BodyCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            BodyMatch::Mcp(c) => write!(f, "{c}")?,
            BodyMatch::Graphql(c) => write!(f, "{c}")?,
        }
        write!(
            f,
            " (reads {} bytes, unreadable: {})",
            self.limit,
            self.on_unreadable.as_str()
        )
    }
}

/// A request body as read for body conditions: the first bytes, whether
/// that was all of it, and each reading of it, made when first asked.
#[derive(Debug, Clone)]
pub struct BodyRead {
    prefix: Bytes,
    pub complete: bool,
    /// The URL's query string, where GraphQL may also carry a document.
    url_query: Option<String>,
    /// Why it cannot be read at all, whatever the kind (compressed).
    unreadable: Option<Unreadable>,
    jsonrpc: OnceLock<Result<Messages, Unreadable>>,
    graphql: OnceLock<Result<Operations, Unreadable>>,
}

impl BodyRead {
    /// A body read whole (`complete`) or cut at the largest limit.
    pub fn new(prefix: impl Into<Bytes>, complete: bool) -> Self {
        BodyRead {
            prefix: prefix.into(),
            complete,
            url_query: None,
            unreadable: None,
            jsonrpc: OnceLock::new(),
            graphql: OnceLock::new(),
        }
    }

    /// A body that cannot be read at all (compressed).
    pub fn unreadable(why: Unreadable) -> Self {
        BodyRead {
            unreadable: Some(why),
            ..BodyRead::new(Bytes::new(), true)
        }
    }

    /// With the request's URL query string (GraphQL's `GET ?query=`).
    pub fn with_url_query(mut self, query: Option<&str>) -> Self {
        self.url_query = query.map(str::to_owned);
        self
    }

    /// The bytes read.
    pub fn len(&self) -> usize {
        self.prefix.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prefix.is_empty()
    }

    /// The body as JSON-RPC messages.
    pub fn jsonrpc(&self) -> Result<&Messages, Unreadable> {
        self.jsonrpc
            .get_or_init(|| match (self.unreadable, self.complete) {
                (Some(why), _) => Err(why),
                (None, true) => jsonrpc::read(&self.prefix),
                (None, false) => Err(Unreadable::NotJson),
            })
            .as_ref()
            .map_err(|e| *e)
    }

    /// The JSON-RPC messages, only if a rule had the body read so.
    pub fn jsonrpc_if_read(&self) -> Option<&Messages> {
        self.jsonrpc.get()?.as_ref().ok()
    }

    /// The GraphQL units, only if a rule had the body read so.
    pub fn graphql_if_read(&self) -> Option<&Operations> {
        self.graphql.get()?.as_ref().ok()
    }

    /// The body (and URL) as GraphQL operations.
    pub fn graphql(&self) -> Result<&Operations, Unreadable> {
        self.graphql
            .get_or_init(|| match (self.unreadable, self.complete) {
                (Some(why), _) => Err(why),
                (None, true) => graphql::read(&self.prefix, self.url_query.as_deref()),
                (None, false) => Err(Unreadable::NotJson),
            })
            .as_ref()
            .map_err(|e| *e)
    }

    /// The units to judge one by one, of each reading a rule asked for
    /// (`mcp`, `graphql`); none of a reading that failed.
    pub fn units(&self, mcp: bool, graphql: bool) -> Vec<Unit<'_>> {
        let mut units = Vec::new();
        if mcp && let Ok(m) = self.jsonrpc() {
            units.extend(m.messages.iter().map(Unit::Mcp));
        }
        if graphql && let Ok(ops) = self.graphql() {
            units.extend(ops.operations.iter().map(Unit::Graphql));
        }
        units
    }
}

/// A glob over one string (a tool name, an argument's value, a field).
#[derive(Debug, Clone)]
pub(super) struct Glob {
    pub text: String,
    matcher: GlobMatcher,
}

impl Glob {
    /// `*` any run of characters, `?` one, `[abc]` a class, `{a,b}` either.
    pub fn parse(text: &str, case_insensitive: bool) -> Result<Self, String> {
        let matcher = GlobBuilder::new(text)
            .literal_separator(false)
            .backslash_escape(true)
            .case_insensitive(case_insensitive)
            .build()
            .map_err(|e| e.kind().to_string())?
            .compile_matcher();
        Ok(Glob {
            text: text.to_owned(),
            matcher,
        })
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.matcher.is_match(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_is_one_kind() {
        let both = BodySpec {
            mcp_tool: Some("x".into()),
            graphql_operation: Some("mutation".into()),
            ..BodySpec::default()
        };
        assert_eq!(
            BodyCondition::parse(&both).unwrap_err(),
            ConditionError::Mixed
        );
        assert_eq!(
            BodyCondition::parse(&BodySpec::default()).unwrap_err(),
            ConditionError::Empty
        );
    }

    #[test]
    fn rows_stored_before_graphql_still_read() {
        // The column as the MCP migration wrote it.
        let row = r#"{"mcp_method":"tools/call","mcp_tool":"delete_*","mcp_args":["/p=x"],"body_limit":65536,"on_unreadable":"refuse"}"#;
        let spec: BodySpec = serde_json::from_str(row).unwrap();
        let c = BodyCondition::parse(&spec).unwrap();
        assert!(matches!(c.kind, BodyMatch::Mcp(_)));
        assert_eq!(serde_json::to_string(&c.spec()).unwrap(), row);
        let gql = BodyCondition::parse(&BodySpec {
            graphql_operation: Some("mutation".into()),
            ..BodySpec::default()
        })
        .unwrap();
        assert_eq!(
            serde_json::to_string(&gql.spec()).unwrap(),
            r#"{"graphql_operation":"mutation","body_limit":65536,"on_unreadable":"refuse"}"#
        );
    }

    #[test]
    fn limits_and_on_unreadable_are_checked_for_every_kind() {
        for limit in [0, u64::from(MAX_LIMIT) + 1] {
            let s = BodySpec {
                body_limit: Some(limit),
                graphql_operation: Some("query".into()),
                ..BodySpec::default()
            };
            assert_eq!(
                BodyCondition::parse(&s).unwrap_err(),
                ConditionError::BadLimit(limit)
            );
        }
        let s = BodySpec {
            on_unreadable: Some("maybe".into()),
            mcp_tool: Some("x".into()),
            ..BodySpec::default()
        };
        assert!(BodyCondition::parse(&s).is_err());
    }

    #[test]
    fn each_reading_is_made_only_when_asked() {
        let read = BodyRead::new(&br#"{"query":"{ a }"}"#[..], true);
        assert!(read.jsonrpc_if_read().is_none());
        assert_eq!(read.units(false, true).len(), 1);
        assert!(read.jsonrpc_if_read().is_none());
        // As JSON-RPC it is one message without a method.
        assert_eq!(read.units(true, false).len(), 1);
        assert!(read.jsonrpc_if_read().is_some());
        let packed = BodyRead::unreadable(Unreadable::Encoded);
        assert_eq!(packed.graphql().unwrap_err(), Unreadable::Encoded);
        assert_eq!(packed.jsonrpc().unwrap_err(), Unreadable::Encoded);
    }
}
