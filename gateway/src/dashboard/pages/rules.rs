//! Rules: add, edit in place, delete, move up or down (order decides among rules of the
//! same action), and "test this request": which rule and which secrets a
//! given agent, method and URL would meet.

use askama::Template;
use axum::Form;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::dashboard::DashState;
use crate::dashboard::render::{Chrome, FormErrors, html, service_error_page, status_of};
use crate::dashboard::session::SessionCtx;
use crate::policy::{BodyCondition, Rate, RuleAction};
use crate::service::ServiceError;
use crate::service::defaults::DefaultsView;
use crate::service::probe::{ProbeRequest, ProbeResult};
use crate::service::rule_order::Direction;
use crate::service::types::{AddRule, RuleView};

const FIELDS: &[&str] = &["host", "path", "method", "agent", "action", "rate"];
const TEST_FIELDS: &[&str] = &["agent", "method", "url"];

#[derive(Debug, Default, Deserialize)]
pub struct RuleForm {
    #[serde(default)]
    host: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    method: String,
    #[serde(default)]
    agent: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    rate: String,
}

pub struct RuleRow {
    pub id: i64,
    pub host: String,
    pub path: String,
    pub method: String,
    pub agent: String,
    pub action: String,
    /// The body condition in words (MCP or GraphQL rules), or empty.
    pub body: String,
    /// The badge's colour.
    pub tone: &'static str,
    pub first: bool,
    pub last: bool,
}

#[derive(Template)]
#[template(path = "rules.html")]
struct RulesPage {
    chrome: Chrome,
    rules: Vec<RuleRow>,
    agents: Vec<String>,
    form: RuleForm,
    errors: FormErrors,
    test: ProbeRequest,
    test_errors: FormErrors,
    result: Option<ProbeResult>,
    /// The rule the side form edits; `None`: it adds one.
    editing: Option<i64>,
    /// The defaults in effect, for the defaults form.
    defaults: DefaultsView,
}

fn rows(rules: Vec<RuleView>) -> Vec<RuleRow> {
    let n = rules.len();
    rules
        .into_iter()
        .enumerate()
        .map(|(i, r)| RuleRow {
            id: r.id,
            host: r.host,
            path: r.path,
            method: r.method.unwrap_or_else(|| "any".into()),
            agent: r.agent.unwrap_or_else(|| "any".into()),
            tone: match r.action {
                RuleAction::Block => "bad",
                RuleAction::Approve => "warn",
                RuleAction::Rate(_) => "info",
                RuleAction::Allow => "ok",
            },
            action: r.action.to_string(),
            body: r
                .body
                .as_ref()
                .and_then(|b| BodyCondition::parse(b).ok())
                .map(|b| b.to_string())
                .unwrap_or_default(),
            first: i == 0,
            last: i + 1 == n,
        })
        .collect()
}

struct View {
    status: StatusCode,
    form: RuleForm,
    errors: FormErrors,
    test: ProbeRequest,
    test_errors: FormErrors,
    result: Option<ProbeResult>,
    editing: Option<i64>,
}

impl Default for View {
    fn default() -> Self {
        View {
            status: StatusCode::OK,
            form: RuleForm {
                action: "block".into(),
                ..RuleForm::default()
            },
            errors: FormErrors::none(FIELDS),
            test: ProbeRequest {
                method: "GET".into(),
                ..ProbeRequest::default()
            },
            test_errors: FormErrors::none(TEST_FIELDS),
            result: None,
            editing: None,
        }
    }
}

async fn render(state: &DashState, session: &SessionCtx, v: View) -> Response {
    let rules = match state.service.list_rules().await {
        Ok(r) => r,
        Err(e) => return service_error_page(&e),
    };
    let agents = state
        .service
        .snapshot()
        .load()
        .agents
        .iter()
        .map(|a| a.name.to_string())
        .collect();
    html(
        v.status,
        &RulesPage {
            chrome: Chrome::new(state, session, "rules"),
            rules: rows(rules),
            agents,
            form: v.form,
            errors: v.errors,
            test: v.test,
            test_errors: v.test_errors,
            result: v.result,
            editing: v.editing,
            defaults: state.service.defaults(),
        },
    )
}

pub async fn page(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
) -> Response {
    render(&state, &session, View::default()).await
}

fn action(form: &RuleForm) -> Result<RuleAction, ServiceError> {
    match form.action.as_str() {
        "allow" => Ok(RuleAction::Allow),
        "block" => Ok(RuleAction::Block),
        "approve" => Ok(RuleAction::Approve),
        "rate" => Rate::parse(form.rate.trim())
            .map(RuleAction::Rate)
            .map_err(|e| ServiceError::Invalid {
                field: "rate",
                message: e.to_string(),
            }),
        _ => Err(ServiceError::Invalid {
            field: "action",
            message: "choose what the rule does: allow, block, hold for approval, or rate-limit"
                .into(),
        }),
    }
}

fn optional(text: &str) -> Option<String> {
    Some(text.trim().to_owned()).filter(|t| !t.is_empty() && t != "*")
}

/// The form as the service's request (the service validates the rest).
fn request(form: &RuleForm) -> Result<AddRule, ServiceError> {
    Ok(AddRule {
        host: form.host.trim().to_owned(),
        path: optional(&form.path),
        method: optional(&form.method),
        agent: optional(&form.agent),
        action: action(form)?,
        // Body conditions are set with `airlock rule add` or the API (an
        // edit keeps the rule's: see `edit`).
        body: None,
    })
}

pub async fn add(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
    Form(form): Form<RuleForm>,
) -> Response {
    let result = match request(&form) {
        Ok(req) => state.service.add_rule(req).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(rule) => {
            state
                .sessions
                .set_flash(&session, true, format!("Rule {} added.", rule.id));
            Redirect::to(&session.at("/rules")).into_response()
        }
        Err(e) => {
            let v = View {
                status: status_of(&e),
                errors: FormErrors::from_service(&e, FIELDS),
                form,
                ..View::default()
            };
            render(&state, &session, v).await
        }
    }
}

pub async fn test(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
    Form(test): Form<ProbeTestForm>,
) -> Response {
    let req = ProbeRequest {
        agent: test.agent,
        method: test.method,
        url: test.url,
    };
    let v = match state.service.probe(&req).await {
        Ok(result) => View {
            test: req,
            result: Some(result),
            ..View::default()
        },
        Err(e) => View {
            status: status_of(&e),
            test_errors: FormErrors::from_service(&e, TEST_FIELDS),
            test: req,
            ..View::default()
        },
    };
    render(&state, &session, v).await
}

/// The test form (it also carries the CSRF field, which `ProbeRequest`
/// would refuse as unknown).
#[derive(Deserialize)]
pub struct ProbeTestForm {
    #[serde(default)]
    agent: String,
    #[serde(default)]
    method: String,
    #[serde(default)]
    url: String,
}

#[derive(Deserialize)]
pub struct MoveForm {
    direction: Direction,
}

fn rule_id(id: &str) -> Result<i64, ServiceError> {
    id.parse().map_err(|_| ServiceError::Invalid {
        field: "id",
        message: format!("rule id {id:?} is not a number"),
    })
}

pub async fn move_rule(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
    Path(id): Path<String>,
    Form(form): Form<MoveForm>,
) -> Response {
    let id = match rule_id(&id) {
        Ok(id) => id,
        Err(e) => return service_error_page(&e),
    };
    match state.service.move_rule(id, form.direction).await {
        Ok(()) => Redirect::to(&session.at("/rules")).into_response(),
        Err(e) => service_error_page(&e),
    }
}

pub async fn delete(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
    Path(id): Path<String>,
) -> Response {
    let id = match rule_id(&id) {
        Ok(id) => id,
        Err(e) => return service_error_page(&e),
    };
    match state.service.delete_rule(id).await {
        Ok(()) => {
            state
                .sessions
                .set_flash(&session, true, format!("Rule {id} deleted."));
            Redirect::to(&session.at("/rules")).into_response()
        }
        Err(e) => service_error_page(&e),
    }
}

/// The side form filled with rule `id`, to change it in place.
pub async fn edit_form(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
    Path(id): Path<String>,
) -> Response {
    let rule = match rule_id(&id) {
        Ok(id) => state.service.list_rules().await.and_then(|rules| {
            rules
                .into_iter()
                .find(|r| r.id == id)
                .ok_or_else(|| ServiceError::NotFound(format!("rule {id} does not exist")))
        }),
        Err(e) => Err(e),
    };
    let rule = match rule {
        Ok(rule) => rule,
        Err(e) => return service_error_page(&e),
    };
    let (action, rate) = match rule.action {
        RuleAction::Rate(rate) => ("rate".to_owned(), rate.to_string()),
        other => (other.kind().to_owned(), String::new()),
    };
    let form = RuleForm {
        host: rule.host,
        path: rule.path,
        method: rule.method.unwrap_or_default(),
        agent: rule.agent.unwrap_or_default(),
        action,
        rate,
    };
    let v = View {
        form,
        editing: Some(rule.id),
        ..View::default()
    };
    render(&state, &session, v).await
}

/// Saves the edit form: the same validation as adding, in the service.
pub async fn edit(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
    Path(id): Path<String>,
    Form(form): Form<RuleForm>,
) -> Response {
    let id = match rule_id(&id) {
        Ok(id) => id,
        Err(e) => return service_error_page(&e),
    };
    let result = match request(&form) {
        Ok(mut req) => {
            // The form has no body fields: an edit keeps the rule's body
            // condition rather than silently widening the rule.
            req.body = state
                .service
                .list_rules()
                .await
                .ok()
                .and_then(|rules| rules.into_iter().find(|r| r.id == id))
                .and_then(|r| r.body);
            state.service.update_rule(id, req).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => {
            state
                .sessions
                .set_flash(&session, true, format!("Rule {id} saved."));
            Redirect::to(&session.at("/rules")).into_response()
        }
        Err(ServiceError::NotFound(m)) if m.starts_with("rule ") => {
            service_error_page(&ServiceError::NotFound(m))
        }
        Err(e) => {
            let v = View {
                status: status_of(&e),
                errors: FormErrors::from_service(&e, FIELDS),
                form,
                editing: Some(id),
                ..View::default()
            };
            render(&state, &session, v).await
        }
    }
}
