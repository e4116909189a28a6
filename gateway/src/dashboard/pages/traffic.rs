//! The traffic section the overview and an agent's page share: the
//! service's figures ([`Service::traffic`]) laid out as charts
//! ([`crate::dashboard::chart`]), rendered by `web/templates/traffic.html`.
//!
//! [`Service::traffic`]: crate::service::Service::traffic

use crate::audit::{Decision, Outcome};
use crate::dashboard::DashState;
use crate::dashboard::chart::{BarList, Scope, TimeChart};
use crate::service::ServiceError;
use crate::service::traffic::Traffic;

/// The charts, or why there are none: a page still shows the rest of
/// itself when charting fails (say, the queries' timeout on a very busy
/// trail).
pub async fn load(state: &DashState, agent: Option<&str>) -> Result<TrafficView, String> {
    match state.service.traffic(agent).await {
        Ok(t) => Ok(TrafficView::new(&t)),
        Err(e) => {
            if matches!(e, ServiceError::Internal(_)) {
                tracing::error!(error = %e, "dashboard: charting the traffic failed");
            }
            Err(e.to_string())
        }
    }
}

pub struct TrafficView {
    pub hour: TimeChart,
    pub day: TimeChart,
    /// Only on the overview: an agent's page is one agent.
    pub agents: Option<BarList>,
    pub hosts: BarList,
    pub refusals: BarList,
    pub exfiltration: BarList,
    /// Refused requests in the day's span, and their audit.
    pub refused: i64,
    pub refused_href: String,
    pub exfiltrations: i64,
    pub exfiltration_href: String,
}

impl TrafficView {
    pub fn new(t: &Traffic) -> TrafficView {
        let scope = Scope {
            agent: t.agent.clone(),
        };
        let span = &t.day.buckets;
        // Every refusal decision is listed (there are fewer than TOP_N),
        // so the exfiltration row is the exact count.
        let exfiltrations = t
            .refusals
            .iter()
            .filter(|r| r.decision == Decision::Exfiltration.as_str())
            .map(|r| r.count)
            .sum();
        TrafficView {
            hour: TimeChart::new("traffic-hour", "Last hour, per minute", &t.hour, &scope),
            day: TimeChart::new("traffic-day", "Last 24 hours, per hour", &t.day, &scope),
            agents: t
                .agent
                .is_none()
                .then(|| BarList::ranking("top-agents", "agent", &t.top_agents, span, &scope)),
            hosts: BarList::ranking("top-hosts", "host", &t.top_hosts, span, &scope),
            refusals: BarList::refusals(&t.refusals, span, &scope),
            exfiltration: BarList::exfiltration(&t.exfiltration, span, &scope),
            refused: t.day.total().get(Outcome::Refused),
            refused_href: scope.span_link(span, &[("outcome", Outcome::Refused.as_str())]),
            exfiltrations,
            exfiltration_href: scope
                .span_link(span, &[("decision", Decision::Exfiltration.as_str())]),
        }
    }
}
