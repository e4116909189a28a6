//! "Test this request": what the gateway would do with a request, from the
//! same snapshot and the same functions the request path uses
//! ([`crate::policy::engine::evaluate`], [`crate::proxy::inject::applicable`]),
//! without sending anything or opening the vault.

use serde::{Deserialize, Serialize};

use super::types::RuleView;
use super::{Service, ServiceError};
use crate::model::AgentName;
use crate::policy::engine::{Permit, RequestFacts, Verdict, evaluate};
use crate::policy::{DefaultScope, Method};
use crate::proxy::inject::{Destination, applicable};

#[derive(Debug, Default, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbeRequest {
    pub agent: String,
    pub method: String,
    /// `https://host[:port]/path?query`
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProbeResult {
    /// allow, block, approve, rate, or deny (denied by default).
    pub decision: String,
    /// The rule that decides, if any.
    pub rule: Option<RuleView>,
    /// For `approve`, the rate limit applied once approved.
    pub rate_rule: Option<i64>,
    /// Secrets that would be injected (none when blocked, none over plain HTTP).
    pub secrets: Vec<String>,
    /// One sentence for a person.
    pub explanation: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

impl Service {
    pub async fn probe(&self, req: &ProbeRequest) -> Result<ProbeResult, ServiceError> {
        let agent_name =
            AgentName::parse(req.agent.trim()).map_err(|e| invalid("agent", e.to_string()))?;
        let method =
            Method::parse(req.method.trim()).map_err(|e| invalid("method", e.to_string()))?;
        let uri: http::Uri =
            req.url.trim().parse().map_err(|_| {
                invalid("url", "the URL must look like https://api.example.com/v1/x")
            })?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(invalid(
                    "url",
                    "the URL must start with https:// or http://",
                ));
            }
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("url", "the URL has no host"))?
            .to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        // As the gateway reads it: a path it would refuse is an error here.
        let forms = crate::policy::PathForms::parse(uri.path())
            .map_err(|e| invalid("url", e.to_string()))?;
        let path = forms.canonical();

        let snap = self.snapshot.load();
        let agent = snap
            .agent_by_name(&agent_name)
            .ok_or_else(|| invalid("agent", format!("agent {agent_name} does not exist")))?;
        let facts = RequestFacts {
            agent: &agent_name,
            method: method.as_str(),
            host: &host,
            port,
            path: &forms,
            // A probe has no body: body rules are passed over.
            body: None,
        };
        let rule_view = |id: i64| snap.rules.iter().find(|r| r.id == id).map(RuleView::from);
        let dest = Destination {
            host: &host,
            port,
            tls,
        };
        let secrets: Vec<String> = applicable(&snap, agent, &dest, path)
            .iter()
            .map(|s| s.name().to_string())
            .collect();
        let default = snap.default_for(agent);
        let verdict = evaluate(&snap.rules, &default, &facts, || !secrets.is_empty());
        let (decision, rule, rate_rule, secrets) = match verdict {
            Verdict::Allow {
                by: Permit::Rule(id),
            } => ("allow", rule_view(id), None, secrets),
            Verdict::Allow { .. } => ("allow", None, None, secrets),
            Verdict::Block { rule } | Verdict::Unreadable { rule, .. } => {
                ("block", rule_view(rule), None, Vec::new())
            }
            Verdict::Denied { .. } => ("deny", None, None, Vec::new()),
            Verdict::Approve { rule, rate } => ("approve", rule_view(rule), rate, secrets),
            Verdict::Rate { rule } => ("rate", rule_view(rule), None, secrets),
        };
        let injected = if secrets.is_empty() {
            if tls {
                "no secret is injected".to_owned()
            } else {
                "no secret is injected (plain HTTP never carries one)".to_owned()
            }
        } else {
            format!("injected: {}", secrets.join(", "))
        };
        let whose = match default.scope {
            DefaultScope::Global => "the global default".to_owned(),
            DefaultScope::Agent => format!("agent {agent_name}'s own default"),
        };
        let explanation = match (decision, &rule, verdict) {
            ("block", Some(r), _) => {
                format!("Blocked by rule {}; the vault is not touched.", r.id)
            }
            ("deny", _, _) => format!(
                "Denied by default: {whose} is deny and no allow rule covers it{}.",
                if default.grants_allow {
                    " (nor a secret granted to the agent)"
                } else {
                    ""
                }
            ),
            ("approve", Some(r), _) => {
                format!(
                    "Held for approval by rule {}; once approved, {injected}.",
                    r.id
                )
            }
            ("rate", Some(r), _) => {
                format!("Allowed within rule {}'s rate limit; {injected}.", r.id)
            }
            ("allow", Some(r), _) => format!("Allowed by rule {}; {injected}.", r.id),
            (_, _, Verdict::Allow { by: Permit::Grant }) => format!(
                "Allowed: {whose} is deny, but a secret granted to the agent covers it; \
                 {injected}."
            ),
            _ => format!("Allowed: no rule matches and {whose} is allow; {injected}."),
        };
        Ok(ProbeResult {
            decision: decision.to_owned(),
            rule,
            rate_rule,
            secrets,
            explanation,
        })
    }
}
