//! Agents: add one (its proxy token is shown once, on the page that
//! answers the form), grant and revoke secrets, delete.

use askama::Template;
use axum::Form;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::dashboard::DashState;
use crate::dashboard::render::{Chrome, FormErrors, html, service_error_page, status_of, when};
use crate::dashboard::session::SessionCtx;
use crate::service::types::{AddAgent, AgentCreated, AgentView};

const FIELDS: &[&str] = &["name", "cgroup", "grants"];

/// What was typed into the add form, to show again after an error.
#[derive(Debug, Default, Deserialize)]
pub struct AgentForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    cgroup: String,
    /// Several `grants=NAME` fields, one per ticked box.
    #[serde(default)]
    grants: Vec<String>,
}

pub struct AgentRow {
    pub name: String,
    pub cgroup: String,
    pub grants: Vec<String>,
    /// Secrets not yet granted: the choices of the grant form.
    pub grantable: Vec<String>,
    pub created: String,
}

/// The token of an agent just created: shown this once.
pub struct Created {
    pub name: String,
    pub token: String,
    pub proxy_url: String,
}

#[derive(Template)]
#[template(path = "agents.html")]
struct AgentsPage {
    chrome: Chrome,
    agents: Vec<AgentRow>,
    secrets: Vec<String>,
    form: AgentForm,
    errors: FormErrors,
    created: Option<Created>,
}

async fn render(
    state: &DashState,
    session: &SessionCtx,
    status: StatusCode,
    form: AgentForm,
    errors: FormErrors,
    created: Option<Created>,
) -> Response {
    let (agents, secrets) = match (
        state.service.list_agents().await,
        state.service.list_secrets().await,
    ) {
        (Ok(a), Ok(s)) => (a, s),
        (Err(e), _) | (_, Err(e)) => return service_error_page(&e),
    };
    let secrets: Vec<String> = secrets.into_iter().map(|s| s.name).collect();
    let agents = agents
        .into_iter()
        .map(|a: AgentView| AgentRow {
            grantable: secrets
                .iter()
                .filter(|s| !a.grants.contains(s))
                .cloned()
                .collect(),
            created: when(&a.created_at),
            name: a.name,
            cgroup: a.cgroup,
            grants: a.grants,
        })
        .collect();
    html(
        status,
        &AgentsPage {
            chrome: Chrome::new(state, session, "agents"),
            agents,
            secrets,
            form,
            errors,
            created,
        },
    )
}

pub async fn page(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
) -> Response {
    render(
        &state,
        &session,
        StatusCode::OK,
        AgentForm::default(),
        FormErrors::none(FIELDS),
        None,
    )
    .await
}

/// The form arrives as repeated `grants` fields, which `Form` into a
/// struct cannot collect; read the pairs and gather them.
fn parse_form(pairs: Vec<(String, String)>) -> AgentForm {
    let mut form = AgentForm::default();
    for (k, v) in pairs {
        match k.as_str() {
            "name" => form.name = v,
            "cgroup" => form.cgroup = v,
            "grants" => form.grants.push(v),
            _ => {}
        }
    }
    form
}

pub async fn add(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let form = parse_form(pairs);
    let req = AddAgent {
        name: form.name.trim().to_owned(),
        grants: form.grants.clone(),
        cgroup: Some(form.cgroup.trim().to_owned()).filter(|c| !c.is_empty()),
    };
    match state.service.add_agent(req).await {
        Ok(AgentCreated { agent, token }) => {
            let created = Created {
                proxy_url: format!(
                    "http://{}:{}@{}",
                    agent.name,
                    token.expose(),
                    state.status.proxy_addr
                ),
                name: agent.name,
                token: token.expose().to_owned(),
            };
            render(
                &state,
                &session,
                StatusCode::CREATED,
                AgentForm::default(),
                FormErrors::none(FIELDS),
                Some(created),
            )
            .await
        }
        Err(e) => {
            let errors = FormErrors::from_service(&e, FIELDS);
            render(&state, &session, status_of(&e), form, errors, None).await
        }
    }
}

pub async fn delete(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
    Path(name): Path<String>,
) -> Response {
    match state
        .service
        .delete_agent(&name, crate::service::BusyCgroup::Refuse)
        .await
    {
        Ok(()) => {
            state
                .sessions
                .set_flash(&session, true, format!("Agent {name} deleted."));
            Redirect::to(&session.at("/agents")).into_response()
        }
        Err(e) => service_error_page(&e),
    }
}

#[derive(Deserialize)]
pub struct GrantForm {
    #[serde(default)]
    secret: String,
}

pub async fn grant(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
    Path(name): Path<String>,
    Form(form): Form<GrantForm>,
) -> Response {
    match state.service.grant(&name, &form.secret).await {
        Ok(_) => {
            state.sessions.set_flash(
                &session,
                true,
                format!("Agent {name} may now use secret {}.", form.secret),
            );
            Redirect::to(&session.at("/agents")).into_response()
        }
        Err(e) => service_error_page(&e),
    }
}

pub async fn revoke(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
    Path((name, secret)): Path<(String, String)>,
) -> Response {
    match state.service.revoke(&name, &secret).await {
        Ok(()) => {
            state.sessions.set_flash(
                &session,
                true,
                format!("Agent {name} no longer gets secret {secret}."),
            );
            Redirect::to(&session.at("/agents")).into_response()
        }
        Err(e) => service_error_page(&e),
    }
}
