//! Horizontal bar charts: rankings (top agents, top hosts), refusals by
//! decision, exfiltration attempts.

use super::{Scope, Segment, audit_link, cut, px};
use crate::audit::{Decision, Outcome};
use crate::service::traffic::{Buckets, DecisionCount, ExfiltrationPair, Ranked};

/// A ranking's rows and columns.
pub(super) const LIST_W: f64 = 360.0;
pub(super) const ROW_H: f64 = 26.0;
pub(super) const LABEL_W: f64 = 176.0;
pub(super) const COUNT_W: f64 = 44.0;

/// One row of a ranking.
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    /// The whole label, for the tooltip.
    pub full: String,
    pub href: String,
    /// The baseline of the row's text.
    pub y: f64,
    pub segments: Vec<Segment>,
    pub total: i64,
}

/// A horizontal bar chart: top agents, top hosts, refusals.
#[derive(Debug, Clone)]
pub struct BarList {
    pub id: &'static str,
    pub width: f64,
    pub height: f64,
    pub label_w: f64,
    pub count_x: f64,
    pub rows: Vec<Row>,
}

/// One row before layout: its label and link, and its segments' outcome
/// class, count and link.
struct RowSpec {
    label: String,
    href: String,
    parts: Vec<(&'static str, i64, String)>,
}

impl BarList {
    fn layout(id: &'static str, specs: Vec<RowSpec>) -> BarList {
        let max = specs
            .iter()
            .map(|r| r.parts.iter().map(|p| p.1).sum::<i64>())
            .max()
            .unwrap_or(0)
            .max(1);
        let bar_room = LIST_W - LABEL_W - COUNT_W;
        let rows = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                let top = i as f64 * ROW_H + 4.0;
                let mut x = LABEL_W;
                let mut segments = Vec::new();
                let mut total = 0;
                for (class, count, href) in spec.parts.into_iter().filter(|p| p.1 > 0) {
                    let w = (count as f64 / max as f64 * bar_room).max(2.0);
                    segments.push(Segment {
                        class,
                        x: px(x),
                        y: px(top + 4.0),
                        w: px(w),
                        h: ROW_H - 10.0,
                        count,
                        title: format!("{}: {count} {class}", spec.label),
                        href,
                    });
                    x += w;
                    total += count;
                }
                Row {
                    label: cut(&spec.label),
                    full: spec.label,
                    href: spec.href,
                    y: px(top + ROW_H / 2.0 + 4.0),
                    segments,
                    total,
                }
            })
            .collect::<Vec<_>>();
        BarList {
            id,
            width: LIST_W,
            height: rows.len() as f64 * ROW_H + 8.0,
            label_w: LABEL_W - 8.0,
            count_x: LIST_W - 4.0,
            rows,
        }
    }

    /// Agents or hosts (`field` is the audit filter that selects one),
    /// each bar split by outcome.
    pub fn ranking(
        id: &'static str,
        field: &'static str,
        rows: &[Ranked],
        span: &Buckets,
        scope: &Scope,
    ) -> BarList {
        let specs = rows
            .iter()
            .map(|r| {
                let mut filters = scope.span(span);
                filters.push((field, r.name.clone()));
                if field == "host" {
                    filters.push(("host_match", "exact".into()));
                }
                let parts = Outcome::ALL
                    .iter()
                    .map(|&o| {
                        let mut f = filters.clone();
                        f.push(("outcome", o.as_str().to_owned()));
                        (o.as_str(), r.counts.get(o), audit_link(&f))
                    })
                    .collect();
                RowSpec {
                    label: r.name.clone(),
                    href: audit_link(&filters),
                    parts,
                }
            })
            .collect();
        BarList::layout(id, specs)
    }

    /// Refused requests by decision; exfiltration in its own colour.
    pub fn refusals(rows: &[DecisionCount], span: &Buckets, scope: &Scope) -> BarList {
        let specs = rows
            .iter()
            .map(|r| {
                let mut filters = scope.span(span);
                filters.push(("decision", r.decision.clone()));
                let href = audit_link(&filters);
                let class = if r.decision == Decision::Exfiltration.as_str() {
                    "exfiltration"
                } else {
                    Outcome::Refused.as_str()
                };
                RowSpec {
                    label: r.decision.clone(),
                    parts: vec![(class, r.count, href.clone())],
                    href,
                }
            })
            .collect();
        BarList::layout("refusals", specs)
    }

    /// Exfiltration attempts by agent and host.
    pub fn exfiltration(rows: &[ExfiltrationPair], span: &Buckets, scope: &Scope) -> BarList {
        let specs = rows
            .iter()
            .map(|r| {
                let mut filters = scope.span(span);
                if scope.agent.is_none() {
                    filters.push(("agent", r.agent.clone()));
                }
                filters.push(("host", r.host.clone()));
                filters.push(("host_match", "exact".into()));
                filters.push(("decision", Decision::Exfiltration.as_str().into()));
                let href = audit_link(&filters);
                let label = match scope.agent {
                    Some(_) => r.host.clone(),
                    None => format!("{} → {}", r.agent, r.host),
                };
                RowSpec {
                    label,
                    parts: vec![("exfiltration", r.count, href.clone())],
                    href,
                }
            })
            .collect();
        BarList::layout("exfiltration", specs)
    }
}
