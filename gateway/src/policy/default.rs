//! The default: what happens to a request that no allow rule covers.
//!
//! There is one global default and, per agent, an optional override (an
//! agent without one follows the global default). With `allow` (the
//! default of a fresh install, so upgrading changes nothing) every request
//! that no rule refuses goes out. With `deny` only requests that an allow
//! rule covers go out, or, while [`Defaults::grants_allow`] is on (the
//! default), requests that one of the agent's granted secrets would be
//! injected into: granting a secret already says where that agent's key
//! may go, so turning the default to deny does not cut off the
//! integrations an operator has set up. Everything else is refused with
//! `denied_by_default` ([`crate::policy::engine`], docs/policy.md).

use crate::model::word_enum;

word_enum! {
    /// What the default does to a request no allow rule covers.
    pub enum DefaultAction as "default action (allow or deny)" {
        /// It goes out, unless a rule says otherwise.
        Allow => "allow",
        /// It is refused (403 `denied_by_default`).
        Deny => "deny",
    }
}

/// Whose default decided: the message and the audit say which one an
/// operator would change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultScope {
    /// The global default (the agent has no default of its own).
    Global,
    /// The agent's own default, which overrides the global one.
    Agent,
}

impl DefaultScope {
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultScope::Global => "global",
            DefaultScope::Agent => "agent",
        }
    }
}

/// The global policy settings, one row in the store
/// (`policy_defaults`), held in the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    /// For every agent that has no default of its own.
    pub global: DefaultAction,
    /// Under deny, whether a granted secret that would be injected into a
    /// request also lets it out (see the module docs for why it is on by
    /// default). Off: the allow rules are the only allowlist.
    pub grants_allow: bool,
}

impl Default for Defaults {
    /// What a fresh database holds (the migration's row): allow, grants
    /// allowing.
    fn default() -> Self {
        Defaults {
            global: DefaultAction::Allow,
            grants_allow: true,
        }
    }
}

/// The default that applies to one agent's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentDefault {
    pub action: DefaultAction,
    pub scope: DefaultScope,
    pub grants_allow: bool,
}

impl Defaults {
    /// The agent's own default if it has one, else the global one.
    pub fn for_agent(&self, own: Option<DefaultAction>) -> AgentDefault {
        let (action, scope) = match own {
            Some(action) => (action, DefaultScope::Agent),
            None => (self.global, DefaultScope::Global),
        };
        AgentDefault {
            action,
            scope,
            grants_allow: self.grants_allow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agents_own_default_overrides_the_global_one() {
        let deny = Defaults {
            global: DefaultAction::Deny,
            grants_allow: false,
        };
        assert_eq!(
            deny.for_agent(None),
            AgentDefault {
                action: DefaultAction::Deny,
                scope: DefaultScope::Global,
                grants_allow: false
            }
        );
        assert_eq!(
            deny.for_agent(Some(DefaultAction::Allow)),
            AgentDefault {
                action: DefaultAction::Allow,
                scope: DefaultScope::Agent,
                grants_allow: false
            }
        );
        assert_eq!(Defaults::default().global, DefaultAction::Allow);
        assert!(Defaults::default().grants_allow);
    }

    #[test]
    fn actions_are_words() {
        assert_eq!("deny".parse::<DefaultAction>(), Ok(DefaultAction::Deny));
        assert_eq!(DefaultAction::Allow.to_string(), "allow");
        assert!("Deny".parse::<DefaultAction>().is_err());
        assert!("block".parse::<DefaultAction>().is_err());
    }
}
