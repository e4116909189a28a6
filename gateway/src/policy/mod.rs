//! Policy: what a request may do. Host patterns and path globs say which
//! requests a rule or a secret applies to; rules say what happens to them
//! (block, hold for approval, rate-limit, allow), optionally by what the
//! body says ([`body`]: MCP tool calls in [`mcp`], GraphQL operations in
//! [`graphql`]), and the default
//! ([`default`]) what happens to a request no allow rule covers.

pub mod approvals;
pub mod body;
pub mod canonical;
pub mod default;
pub mod engine;
pub mod graphql;
pub mod jsonrpc;
mod limiter;
pub mod mcp;
mod pattern;
mod rule;
mod suggest;

pub use body::{BodyCondition, BodyRead, BodySpec, ConditionError, OnUnreadable};
pub use canonical::{PathError, PathForms};
pub use default::{AgentDefault, DefaultAction, DefaultScope, Defaults};
pub use limiter::RateLimiter;
pub use pattern::{HostPattern, PathGlob, PatternError};
pub use rule::{Method, Rate, RuleAction, RuleError};
pub use suggest::suggest_path;
