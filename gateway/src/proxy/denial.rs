//! The answer to a request denied by default: which default decided, and
//! the command an operator runs to allow it (docs/policy.md).

use std::fmt;

use serde::Serialize;

use crate::model::AgentName;
use crate::policy::DefaultScope;

/// A request no allow rule covers, under a default of deny: who and where,
/// for the message and for the command that would allow it.
#[derive(Debug)]
pub struct DefaultDenial {
    /// Whose default decided: the global one, or the agent's own.
    pub scope: DefaultScope,
    pub agent: AgentName,
    pub host: String,
    pub port: u16,
}

impl DefaultDenial {
    /// The command an operator runs to let this agent reach this host
    /// (the narrowest rule that covers the request without naming one
    /// path: the operator may narrow it further with `--path`).
    pub fn ask(&self) -> String {
        let mut host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port != 443 {
            host = format!("{host}:{}", self.port);
        }
        // Brackets are shell glob characters; names and ports need no quotes.
        if host.contains('[') {
            host = format!("'{host}'");
        }
        format!(
            "airlock rule add --host {host} --agent {} --allow",
            self.agent
        )
    }

    pub(super) fn default_body(&self) -> DefaultBody<'_> {
        DefaultBody {
            action: "deny",
            scope: self.scope.as_str(),
            agent: self.agent.as_str(),
        }
    }

    pub(super) fn ask_body(&self) -> AskBody {
        AskBody {
            command: self.ask(),
            dashboard: "Requests page: Allow this access request (or add an Allow rule on the \
                        Rules page)",
        }
    }

    /// Whose default it is, as the message says it.
    fn whose(&self) -> String {
        match self.scope {
            DefaultScope::Global => "the global default".to_owned(),
            DefaultScope::Agent => format!("agent {}'s own default", self.agent),
        }
    }
}

impl fmt::Display for DefaultDenial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "denied by default: {} is deny and no allow rule covers this request; it is recorded \
             as an access request: an operator allows it with `airlock requests` or on the \
             dashboard's Requests page, or runs `{}`",
            self.whose(),
            self.ask()
        )
    }
}

/// The `default` object of a denial's body.
#[derive(Serialize)]
pub(super) struct DefaultBody<'a> {
    action: &'static str,
    /// `global` or `agent`.
    scope: &'static str,
    agent: &'a str,
}

/// The `ask` object of a denial's body: how to get access.
#[derive(Serialize)]
pub(super) struct AskBody {
    command: String,
    dashboard: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::error::{ProxyError, Side};

    #[test]
    fn a_denial_by_default_names_the_default_and_how_to_ask() {
        let denial = |scope, host: &str, port| {
            ProxyError::DeniedByDefault(DefaultDenial {
                scope,
                agent: AgentName::parse("bot").unwrap(),
                host: host.into(),
                port,
            })
        };
        let e = denial(DefaultScope::Agent, "new.example.com", 443);
        assert_eq!(e.status(), 403);
        assert_eq!(e.side(), Side::Downstream);
        let json: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(json["error"], "denied_by_default");
        assert_eq!(json["default"]["scope"], "agent");
        assert_eq!(json["default"]["agent"], "bot");
        assert_eq!(
            json["ask"]["command"],
            "airlock rule add --host new.example.com --agent bot --allow"
        );
        let msg = json["message"].as_str().unwrap();
        assert!(msg.contains("agent bot's own default is deny"), "{msg}");
        let e = denial(DefaultScope::Global, "2001:db8::1", 8443);
        let msg = e.to_string();
        assert!(msg.contains("the global default is deny"), "{msg}");
        assert!(
            msg.contains("`airlock rule add --host '[2001:db8::1]:8443' --agent bot --allow`"),
            "{msg}"
        );
    }
}
