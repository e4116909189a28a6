//! The default on the Rules page: allow or deny, globally or for one
//! agent, through the same service call as `airlock default`. The answer
//! is a flash on the Rules page (the form is one row; nothing to re-fill).

use axum::Form;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::dashboard::DashState;
use crate::dashboard::session::SessionCtx;
use crate::service::defaults::{INHERIT, SetDefault};

/// The value of the agent select that means the global default.
pub const GLOBAL: &str = "";

#[derive(Debug, Default, Deserialize)]
pub struct DefaultForm {
    /// An agent's name, or [`GLOBAL`].
    #[serde(default)]
    agent: String,
    #[serde(default)]
    action: String,
    /// The checkbox: present when ticked. Global only.
    #[serde(default)]
    grants_allow: Option<String>,
}

fn request(form: &DefaultForm) -> SetDefault {
    let agent = Some(form.agent.trim().to_owned()).filter(|a| a != GLOBAL);
    SetDefault {
        action: form.action.trim().to_owned(),
        grants_allow: agent.is_none().then_some(form.grants_allow.is_some()),
        agent,
    }
}

pub async fn set(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
    Form(form): Form<DefaultForm>,
) -> Response {
    let req = request(&form);
    let said = match (&req.agent, req.action.as_str()) {
        (None, action) => format!("The global default is now {action}."),
        (Some(agent), INHERIT) => format!("Agent {agent} now follows the global default."),
        (Some(agent), action) => format!("The default of agent {agent} is now {action}."),
    };
    let (ok, text) = match state.service.set_default(req).await {
        Ok(_) => (true, said),
        Err(e) => (false, e.to_string()),
    };
    state.sessions.set_flash(&session, ok, text);
    Redirect::to(&session.at("/rules#defaults")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkbox_counts_only_for_the_global_default() {
        let form = |agent: &str, grants: bool| DefaultForm {
            agent: agent.into(),
            action: "deny".into(),
            grants_allow: grants.then(|| "on".into()),
        };
        let global = request(&form(GLOBAL, false));
        assert_eq!((global.agent, global.grants_allow), (None, Some(false)));
        let agent = request(&form("bot", true));
        assert_eq!(
            (agent.agent.as_deref(), agent.grants_allow),
            (Some("bot"), None)
        );
    }
}
