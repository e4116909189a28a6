//! Secrets: add one (host pattern, path glob, how it is injected, and the
//! value), rotate its value, delete it. Values are write-only: the value
//! field is a password input, never filled in again after an error, and
//! no page shows a stored value.

use askama::Template;
use axum::Form;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::credentials::presets::{self, Preset};
use crate::dashboard::DashState;
use crate::dashboard::render::{Chrome, FormErrors, html, service_error_page, status_of, when};
use crate::dashboard::session::SessionCtx;
use crate::model::{GrantType, Injection, InjectionError, OAuth2Grant};
use crate::service::ServiceError;
use crate::service::types::{AddSecret, RotateSecret, SecretValue};

const FIELDS: &[&str] = &[
    "name",
    "host",
    "path",
    "kind",
    "target",
    "template",
    "value",
    "preset",
    "client_id",
    "token_url",
    "authorize_url",
    "scopes",
];

/// What was typed into the add form. The value is not kept: it is never
/// sent back to the browser.
#[derive(Debug, Default, Deserialize)]
pub struct SecretForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    template: String,
    #[serde(default)]
    value: SecretValue,
    // OAuth2, connected from this page: a preset, or the two URLs.
    #[serde(default)]
    preset: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    token_url: String,
    #[serde(default)]
    authorize_url: String,
    /// Space-separated.
    #[serde(default)]
    scopes: String,
}

pub struct SecretRow {
    pub name: String,
    pub host: String,
    pub path: String,
    pub injection: String,
    pub version: i32,
    pub updated: String,
    /// An OAuth2 secret's grant: `ok` or `needs_reconnection`, and why.
    pub oauth2_status: Option<String>,
    pub oauth2_detail: Option<String>,
    /// Its refresh token can be had with the Connect button.
    pub connectable: bool,
}

fn describe(i: &Injection) -> String {
    match i {
        Injection::Header { name, template } => format!("header {name}: {template}"),
        Injection::Query { param } => format!("query ?{param}="),
        Injection::AwsSigv4 { region, service } => format!("AWS SigV4 {region}/{service}"),
        Injection::OAuth2(_)
        | Injection::Path { .. }
        | Injection::Basic { .. }
        | Injection::Body => i.describe(),
    }
}

#[derive(Template)]
#[template(path = "secrets.html")]
struct SecretsPage {
    chrome: Chrome,
    secrets: Vec<SecretRow>,
    form: SecretForm,
    errors: FormErrors,
    presets: &'static [Preset],
    /// What to register at the provider as the OAuth client's redirect URI.
    redirect_uri: String,
}

async fn render(
    state: &DashState,
    session: &SessionCtx,
    status: StatusCode,
    form: SecretForm,
    errors: FormErrors,
) -> Response {
    let secrets = match state.service.list_secrets().await {
        Ok(s) => s,
        Err(e) => return service_error_page(&e),
    };
    let secrets = secrets
        .iter()
        .map(|s| SecretRow {
            name: s.name.clone(),
            host: s.host.clone(),
            path: s.path.clone(),
            injection: describe(&s.injection),
            version: s.version,
            updated: when(&s.updated_at),
            oauth2_status: s.oauth2.as_ref().map(|o| o.status.clone()),
            oauth2_detail: s.oauth2.as_ref().and_then(|o| o.detail.clone()),
            connectable: matches!(&s.injection, Injection::OAuth2(g) if g.connectable()),
        })
        .collect();
    html(
        status,
        &SecretsPage {
            chrome: Chrome::new(state, session, "secrets"),
            secrets,
            form,
            errors,
            presets: presets::all(),
            redirect_uri: state.connect.redirect_uri().to_owned(),
        },
    )
}

pub async fn page(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
) -> Response {
    let form = SecretForm {
        kind: "header".into(),
        target: "authorization".into(),
        ..SecretForm::default()
    };
    render(
        &state,
        &session,
        StatusCode::OK,
        form,
        FormErrors::none(FIELDS),
    )
    .await
}

/// The injection the form describes; the error names the form's field.
fn injection(form: &SecretForm) -> Result<Injection, ServiceError> {
    let target = form.target.trim();
    let template = form.template.trim();
    let on = |field: &'static str, e: InjectionError| ServiceError::Invalid {
        field,
        message: e.to_string(),
    };
    match form.kind.as_str() {
        "header" => {
            let spec = if template.is_empty() {
                target.to_owned()
            } else {
                format!("{target}={template}")
            };
            Injection::header_from_spec(&spec).map_err(|e| match e {
                InjectionError::BadTemplate | InjectionError::BadTemplateCharacter => {
                    on("template", e)
                }
                other => on("target", other),
            })
        }
        "query" => {
            let i = Injection::Query {
                param: target.to_owned(),
            };
            i.validate().map_err(|e| on("target", e))?;
            Ok(i)
        }
        "aws_sigv4" => Injection::aws_from_spec(target).map_err(|e| on("target", e)),
        "oauth2" => oauth2_grant(form).map(Injection::OAuth2),
        _ => Err(ServiceError::Invalid {
            field: "kind",
            message: "choose how the secret is injected: header, query, AWS SigV4 or OAuth2".into(),
        }),
    }
}

/// The OAuth2 grant the form describes, connected from this page later:
/// a preset's URLs, or the two typed in.
fn oauth2_grant(form: &SecretForm) -> Result<OAuth2Grant, ServiceError> {
    let invalid = |field: &'static str, message: String| ServiceError::Invalid { field, message };
    let client_id = form.client_id.trim().to_owned();
    if client_id.is_empty() {
        return Err(invalid(
            "client_id",
            "give the OAuth client's id (from the provider's console)".into(),
        ));
    }
    let scopes: Vec<String> = form.scopes.split_whitespace().map(str::to_owned).collect();
    let preset = form.preset.trim();
    let grant = if preset.is_empty() {
        let authorize_url = form.authorize_url.trim();
        if authorize_url.is_empty() {
            return Err(invalid(
                "authorize_url",
                "choose a provider, or give its authorization URL".into(),
            ));
        }
        let grant = OAuth2Grant {
            authorize_url: Some(authorize_url.to_owned()),
            ..OAuth2Grant::new(
                GrantType::RefreshToken,
                form.token_url.trim().to_owned(),
                client_id,
                scopes,
            )
        };
        grant.validate().map_err(|e| match e {
            InjectionError::BadTokenUrl(_) => invalid("token_url", e.to_string()),
            InjectionError::BadAuthorizeUrl(_) => invalid("authorize_url", e.to_string()),
            InjectionError::BadScope(_) => invalid("scopes", e.to_string()),
            e => invalid("client_id", e.to_string()),
        })?;
        grant
    } else {
        let p = presets::find(preset).map_err(|e| invalid("preset", e.to_string()))?;
        p.grant(client_id, &scopes).map_err(|e| match e {
            InjectionError::BadScope(_) => invalid("scopes", e.to_string()),
            e => invalid("client_id", e.to_string()),
        })?
    };
    Ok(grant)
}

pub async fn add(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
    Form(mut form): Form<SecretForm>,
) -> Response {
    let value = std::mem::take(&mut form.value);
    let result = match injection(&form) {
        Ok(injection) => {
            let req = AddSecret {
                name: form.name.trim().to_owned(),
                host: form.host.trim().to_owned(),
                path: Some(form.path.trim().to_owned()).filter(|p| !p.is_empty()),
                injection,
                value,
                refresh_token: None,
            };
            state.service.add_secret(req).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(view) => {
            state.sessions.set_flash(
                &session,
                true,
                if matches!(&view.injection, Injection::OAuth2(g) if g.connectable()) {
                    format!(
                        "Secret {} added. Press Connect beside it to log in at the provider, \
                         then grant it to an agent on the Agents page.",
                        view.name
                    )
                } else {
                    format!(
                        "Secret {} added. Grant it to an agent on the Agents page.",
                        view.name
                    )
                },
            );
            Redirect::to(&session.at("/secrets")).into_response()
        }
        Err(e) => {
            // The service calls a bad injection "injection"; the form, "target".
            let e = match e {
                ServiceError::Invalid {
                    field: "injection",
                    message,
                } => ServiceError::Invalid {
                    field: "target",
                    message,
                },
                other => other,
            };
            let errors = FormErrors::from_service(&e, FIELDS);
            render(&state, &session, status_of(&e), form, errors).await
        }
    }
}

#[derive(Deserialize)]
pub struct RotateForm {
    #[serde(default)]
    value: SecretValue,
}

pub async fn rotate(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
    Path(name): Path<String>,
    Form(form): Form<RotateForm>,
) -> Response {
    let req = RotateSecret {
        value: form.value,
        refresh_token: None,
    };
    let (ok, text) = match state.service.rotate_secret(&name, req).await {
        Ok(view) => (
            true,
            format!("Secret {name} rotated: now version {}.", view.version),
        ),
        Err(e) => (false, format!("Secret {name} was not rotated: {e}")),
    };
    state.sessions.set_flash(&session, ok, text);
    Redirect::to(&session.at("/secrets")).into_response()
}

pub async fn delete(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
    Path(name): Path<String>,
) -> Response {
    match state.service.delete_secret(&name).await {
        Ok(()) => {
            state
                .sessions
                .set_flash(&session, true, format!("Secret {name} deleted."));
            Redirect::to(&session.at("/secrets")).into_response()
        }
        Err(e) => service_error_page(&e),
    }
}
