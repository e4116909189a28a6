//! The audit trail: filter by kind, agent, host (a part or the whole),
//! decision or outcome, status and time range (the traffic charts link
//! here with these filters); a page at a time, newest first; export what matches as CSV or
//! JSON. Paths and hosts are shown as text, whatever they contain.

use askama::Template;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::audit::{Decision, Outcome};
use crate::dashboard::DashState;
use crate::dashboard::render::{Chrome, FormErrors, html, service_error_page, when};
use crate::dashboard::session::SessionCtx;
use crate::service::ServiceError;
use crate::service::audit_search::AuditSearch;
use crate::service::types::AuditEvent;

const FIELDS: &[&str] = &[
    "kind",
    "agent",
    "host",
    "host_match",
    "decision",
    "outcome",
    "status",
    "from",
    "to",
    "page",
];

/// One audit row as the pages show it.
pub struct Row {
    pub id: i64,
    pub at: String,
    pub kind: String,
    pub agent: String,
    pub method: String,
    pub host: String,
    pub path: String,
    pub decision: String,
    /// `ok`, `warn` or `bad`: the badge's colour.
    pub tone: &'static str,
    pub status: String,
    pub secrets: String,
    pub rule: String,
    pub duration: String,
    pub detail: String,
}

/// A request's decision by how it ended; an admin row's action (`rule.add`)
/// is information.
fn tone(decision: &str) -> &'static str {
    match decision.parse::<Decision>() {
        Ok(Decision::Allowed | Decision::Approved) => "ok",
        Ok(Decision::UpstreamError | Decision::UpstreamTimeout | Decision::RateLimited) => "warn",
        Ok(_) => "bad",
        Err(_) if decision.contains('.') => "info",
        Err(_) => "bad",
    }
}

impl From<&AuditEvent> for Row {
    fn from(e: &AuditEvent) -> Self {
        let dash = |v: Option<String>| v.unwrap_or_else(|| "—".into());
        Row {
            id: e.id,
            at: when(&e.at),
            kind: e.kind.clone(),
            agent: dash(e.agent.clone()),
            method: e.method.clone().unwrap_or_default(),
            host: e.host.clone().unwrap_or_default(),
            path: e.path.clone().unwrap_or_default(),
            tone: tone(&e.decision),
            decision: e.decision.clone(),
            status: dash(e.status.map(|s| s.to_string())),
            secrets: e.secrets.join(", "),
            rule: e.rule_id.map(|r| format!("#{r}")).unwrap_or_default(),
            duration: e
                .duration_us
                .map(|us| format!("{:.1} ms", us as f64 / 1000.0))
                .unwrap_or_default(),
            detail: e.detail.clone().unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    q: AuditSearch,
    errors: FormErrors,
    rows: Vec<Row>,
    total: i64,
    page: i64,
    pages: i64,
    agents: Vec<String>,
    /// The filter offers every decision there is.
    decisions: &'static [Decision],
    outcomes: &'static [Outcome],
    /// The filter as a query string, for the pager and export links.
    query: String,
}

impl AuditPage {
    /// Relative: the page's `<base>` keeps it inside the session.
    fn page_link(&self, page: i64) -> String {
        if self.query.is_empty() {
            format!("audit?page={page}")
        } else {
            format!("audit?{}&page={page}", self.query)
        }
    }
}

fn filter_query(q: &AuditSearch) -> String {
    let pairs: Vec<(&str, &str)> = [
        ("kind", &q.kind),
        ("agent", &q.agent),
        ("host", &q.host),
        ("host_match", &q.host_match),
        ("decision", &q.decision),
        ("outcome", &q.outcome),
        ("status", &q.status),
        ("from", &q.from),
        ("to", &q.to),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_deref().filter(|s| !s.is_empty()).map(|s| (k, s)))
    .collect();
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

pub async fn page(
    State(state): State<DashState>,
    Extension(session): Extension<SessionCtx>,
    q: Result<Query<AuditSearch>, QueryRejection>,
) -> Response {
    let chrome = Chrome::new(&state, &session, "audit");
    let agents = state
        .service
        .snapshot()
        .load()
        .agents
        .iter()
        .map(|a| a.name.to_string())
        .collect();
    let (q, result) = match q {
        Ok(Query(q)) => {
            let result = state.service.search_audit(&q).await;
            (q, result)
        }
        Err(e) => (
            AuditSearch::default(),
            Err(ServiceError::Invalid {
                field: "page",
                message: format!("invalid filter: {}", e.body_text()),
            }),
        ),
    };
    let query = filter_query(&q);
    let (rows, total, page, per_page, errors, status) = match result {
        Ok(p) => (
            p.events.iter().map(Row::from).collect(),
            p.total,
            p.page,
            p.per_page,
            FormErrors::none(FIELDS),
            StatusCode::OK,
        ),
        Err(e) => (
            Vec::new(),
            0,
            1,
            1,
            FormErrors::from_service(&e, FIELDS),
            StatusCode::BAD_REQUEST,
        ),
    };
    let pages = ((total + per_page - 1) / per_page).max(1);
    html(
        status,
        &AuditPage {
            chrome,
            q,
            errors,
            rows,
            total,
            page,
            pages,
            agents,
            decisions: Decision::ALL,
            outcomes: Outcome::ALL,
            query,
        },
    )
}

async fn matching(
    state: &DashState,
    q: Result<Query<AuditSearch>, QueryRejection>,
) -> Result<Vec<AuditEvent>, Response> {
    let Query(q) = q.map_err(|e| {
        service_error_page(&ServiceError::Invalid {
            field: "query",
            message: format!("invalid filter: {}", e.body_text()),
        })
    })?;
    state
        .service
        .export_audit(&q)
        .await
        .map_err(|e| service_error_page(&e))
}

pub async fn export_json(
    State(state): State<DashState>,
    q: Result<Query<AuditSearch>, QueryRejection>,
) -> Response {
    match matching(&state, q).await {
        Ok(events) => (
            [(
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"airlock-audit.json\"",
            )],
            Json(events),
        )
            .into_response(),
        Err(resp) => resp,
    }
}

pub async fn export_csv(
    State(state): State<DashState>,
    q: Result<Query<AuditSearch>, QueryRejection>,
) -> Response {
    match matching(&state, q).await {
        Ok(events) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"airlock-audit.csv\"",
                ),
            ],
            to_csv(&events),
        )
            .into_response(),
        Err(resp) => resp,
    }
}

/// RFC 4180 CSV. A cell that a spreadsheet would run as a formula (it
/// starts with `=`, `+`, `-`, `@`) gets a leading `'`: paths are chosen by
/// agents, and an export must not become an attack on whoever opens it.
fn csv_cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn to_csv(events: &[AuditEvent]) -> String {
    let mut out = String::from(
        "id,at,kind,agent,method,host,path,decision,rule_id,secrets,status,bytes_up,bytes_down,duration_us,detail\r\n",
    );
    let opt = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
    for e in events {
        let cells = [
            e.id.to_string(),
            e.at.to_rfc3339(),
            e.kind.clone(),
            e.agent.clone().unwrap_or_default(),
            e.method.clone().unwrap_or_default(),
            e.host.clone().unwrap_or_default(),
            e.path.clone().unwrap_or_default(),
            e.decision.clone(),
            opt(e.rule_id),
            e.secrets.join(" "),
            e.status.map(|s| s.to_string()).unwrap_or_default(),
            opt(e.bytes_up),
            opt(e.bytes_down),
            opt(e.duration_us),
            e.detail.clone().unwrap_or_default(),
        ];
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_defused() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=cmd()"), "'=cmd()");
    }

    #[test]
    fn filters_round_trip_into_links() {
        let q = AuditSearch {
            host: Some("a b&c".into()),
            agent: Some(String::new()),
            ..AuditSearch::default()
        };
        assert_eq!(filter_query(&q), "host=a+b%26c");
    }

    #[test]
    fn the_filter_offers_every_decision() {
        let page = AuditPage {
            chrome: Chrome {
                active: "audit",
                csrf: String::new(),
                base: "/s/k".into(),
                flash: None,
                mode: String::new(),
                version: "test",
            },
            q: AuditSearch {
                decision: Some(Decision::TlsFailed.as_str().into()),
                ..AuditSearch::default()
            },
            errors: FormErrors::none(FIELDS),
            rows: Vec::new(),
            total: 0,
            page: 1,
            pages: 1,
            agents: Vec::new(),
            decisions: Decision::ALL,
            outcomes: Outcome::ALL,
            query: String::new(),
        }
        .render()
        .unwrap();
        for d in Decision::ALL {
            let option = format!("<option value=\"{d}\"");
            assert!(page.contains(&option), "{d} is not offered");
        }
        assert!(page.contains(&format!(
            "<option value=\"{}\" selected>",
            Decision::TlsFailed
        )));
    }

    #[test]
    fn admin_actions_are_information() {
        assert_eq!(tone(Decision::Allowed.as_str()), "ok");
        assert_eq!(tone(Decision::UpstreamTimeout.as_str()), "warn");
        assert_eq!(tone(Decision::TlsFailed.as_str()), "bad");
        assert_eq!(tone("rule.add"), "info");
    }
}
