//! The default (allow or deny) globally and per agent: showing and
//! setting it, whichever door (CLI, API, dashboard form) it comes
//! through. What the engine does with it is in [`crate::policy::engine`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Service, ServiceError};
use crate::model::AgentName;
use crate::policy::DefaultAction;
use crate::snapshot::Snapshot;

/// The word that makes an agent follow the global default again.
pub const INHERIT: &str = "inherit";

/// `GET /api/v1/defaults`: the defaults in effect (the gateway's snapshot).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DefaultsView {
    /// `allow` or `deny`, for every agent without a default of its own.
    pub global: String,
    /// Under deny, whether a granted secret that would be injected into a
    /// request also lets it out.
    pub grants_allow: bool,
    /// The agents that have a default of their own, by name.
    pub agents: Vec<AgentDefaultView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AgentDefaultView {
    pub agent: String,
    /// `allow` or `deny`.
    pub default: String,
}

impl DefaultsView {
    pub fn of(snap: &Snapshot) -> Self {
        DefaultsView {
            global: snap.defaults.global.to_string(),
            grants_allow: snap.defaults.grants_allow,
            agents: snap
                .agents
                .iter()
                .filter_map(|a| {
                    a.default.map(|d| AgentDefaultView {
                        agent: a.name.to_string(),
                        default: d.to_string(),
                    })
                })
                .collect(),
        }
    }
}

/// `PUT /api/v1/defaults` (`airlock default allow|deny [--agent A]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetDefault {
    /// `allow` or `deny`; with `agent` also `inherit` (follow the global
    /// default again).
    pub action: String,
    /// Set this agent's own default instead of the global one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Global only: whether grants allow under deny (unchanged if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants_allow: Option<bool>,
}

/// A [`SetDefault`] that passed validation.
enum Valid {
    Global {
        action: DefaultAction,
        grants_allow: Option<bool>,
    },
    Agent {
        agent: AgentName,
        action: Option<DefaultAction>,
    },
}

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

fn validate(req: &SetDefault) -> Result<Valid, ServiceError> {
    let word = req.action.trim();
    let action = match word {
        INHERIT => None,
        _ => Some(word.parse::<DefaultAction>().map_err(|_| {
            invalid(
                "action",
                format!(
                    "default {word:?} is not allow or deny (or, with an agent, {INHERIT} to \
                     follow the global default)"
                ),
            )
        })?),
    };
    match (&req.agent, action) {
        (None, None) => Err(invalid(
            "action",
            format!("{INHERIT} is for an agent: the global default is allow or deny"),
        )),
        (None, Some(action)) => Ok(Valid::Global {
            action,
            grants_allow: req.grants_allow,
        }),
        (Some(_), _) if req.grants_allow.is_some() => Err(invalid(
            "grants_allow",
            "whether grants allow is a global setting: set it without an agent",
        )),
        (Some(agent), action) => Ok(Valid::Agent {
            agent: AgentName::parse(agent.trim()).map_err(|e| invalid("agent", e.to_string()))?,
            action,
        }),
    }
}

impl Service {
    pub fn defaults(&self) -> DefaultsView {
        DefaultsView::of(&self.snapshot.load())
    }

    /// Sets the global default or one agent's; in effect on return.
    pub async fn set_default(&self, req: SetDefault) -> Result<DefaultsView, ServiceError> {
        match validate(&req)? {
            Valid::Global {
                action,
                grants_allow,
            } => {
                self.store.set_global_default(action, grants_allow).await?;
            }
            Valid::Agent { agent, action } => {
                self.store.set_agent_default(&agent, action).await?;
            }
        }
        self.refresh().await;
        Ok(self.defaults())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(action: &str, agent: Option<&str>, grants_allow: Option<bool>) -> SetDefault {
        SetDefault {
            action: action.into(),
            agent: agent.map(Into::into),
            grants_allow,
        }
    }

    #[test]
    fn words_and_their_combinations() {
        assert!(matches!(
            validate(&req("deny", None, Some(false))),
            Ok(Valid::Global {
                action: DefaultAction::Deny,
                grants_allow: Some(false)
            })
        ));
        assert!(matches!(
            validate(&req("inherit", Some("bot"), None)),
            Ok(Valid::Agent { action: None, .. })
        ));
        for (bad, field) in [
            (req("maybe", None, None), "action"),
            (req("block", Some("bot"), None), "action"),
            (req("inherit", None, None), "action"),
            (req("deny", Some("bot"), Some(true)), "grants_allow"),
            (req("deny", Some("Bad Name!"), None), "agent"),
        ] {
            match validate(&bad) {
                Err(ServiceError::Invalid { field: f, .. }) => assert_eq!(f, field, "{bad:?}"),
                _ => panic!("{bad:?} was accepted"),
            }
        }
    }
}
