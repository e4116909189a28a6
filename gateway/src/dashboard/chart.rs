//! The traffic charts' geometry: scales, bars, ticks and the audit link of
//! every bar, legend item and row. The markup is `web/templates/charts.html`
//! (askama macros), so every label — agent names and hosts are chosen by
//! agents — is escaped like any other text of a page, nothing here is
//! marked safe, and the SVG is inline: no script, no `style` attribute,
//! colours from `app.css` classes, so it renders under the dashboard's CSP
//! (`style-src 'self'`).
//!
//! Hand-written rather than `plotters`: each element must be a link to the
//! audit trail and carry its figure (`data-count`) for tests and
//! tooltips, which plotters' SVG backend does not emit; and this is
//! ~300 lines against a crate that draws its own text.

use chrono::{DateTime, SecondsFormat, Timelike, Utc};

use crate::audit::{Decision, Outcome};
use crate::service::traffic::{Buckets, DecisionCount, ExfiltrationPair, Ranked, TimeSeries};

/// A time chart's size in SVG units; the CSS stretches it to the card.
const TIME_W: f64 = 560.0;
const TIME_H: f64 = 190.0;
/// Room for the y labels on the left and the x labels below.
const PLOT_LEFT: f64 = 40.0;
const PLOT_TOP: f64 = 8.0;
const PLOT_BOTTOM: f64 = 22.0;
const PLOT_RIGHT: f64 = 6.0;
/// A ranking's rows and columns.
const LIST_W: f64 = 360.0;
const ROW_H: f64 = 26.0;
const LABEL_W: f64 = 176.0;
const COUNT_W: f64 = 44.0;
/// Characters of a label shown before it is cut (the whole in its title).
const LABEL_CHARS: usize = 22;

/// Rounds a coordinate to a tenth, so the markup stays short.
fn px(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// The smallest "nice" number (1, 2 or 5 × 10^k) at or above `max`, and
/// the tick step that divides it into at most four parts: the y axis of a
/// chart whose tallest bar is `max`.
pub fn nice_scale(max: i64) -> (i64, i64) {
    if max <= 0 {
        return (1, 1);
    }
    let mut magnitude = 1i64;
    loop {
        for m in [1, 2, 5] {
            let step = magnitude.saturating_mul(m);
            if step.saturating_mul(4) >= max {
                let top = ((max - 1) / step + 1).saturating_mul(step);
                return (top, step);
            }
        }
        magnitude = magnitude.saturating_mul(10);
    }
}

/// A relative link to the audit page (the page's `<base>` keeps it in the
/// session) with these filters, URL-encoded.
pub fn audit_link(pairs: &[(&str, String)]) -> String {
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    format!(
        "audit?{}",
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    )
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// What every link of one set of charts filters by: requests, of one
/// agent or of all, in a time range.
#[derive(Debug, Clone)]
pub struct Scope {
    pub agent: Option<String>,
}

impl Scope {
    fn filters(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(&'static str, String)> {
        let mut f = vec![("kind", "request".to_owned())];
        if let Some(a) = &self.agent {
            f.push(("agent", a.clone()));
        }
        f.push(("from", stamp(from)));
        f.push(("to", stamp(to)));
        f
    }

    /// The whole span of `b` (the audit `to` is inclusive).
    fn span(&self, b: &Buckets) -> Vec<(&'static str, String)> {
        self.filters(b.start, b.bucket_last(b.count.saturating_sub(1)))
    }

    /// The audit of the whole span of `b`, narrowed by `extra`.
    pub fn span_link(&self, b: &Buckets, extra: &[(&'static str, &str)]) -> String {
        let mut f = self.span(b);
        f.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        audit_link(&f)
    }
}

/// A label cut to [`LABEL_CHARS`] characters, with an ellipsis if cut.
pub fn cut(label: &str) -> String {
    if label.chars().count() <= LABEL_CHARS {
        return label.to_owned();
    }
    let mut s: String = label.chars().take(LABEL_CHARS - 1).collect();
    s.push('…');
    s
}

/// A part of a bar: one outcome's requests.
#[derive(Debug, Clone)]
pub struct Segment {
    /// The outcome's word: the CSS class (its colour) and `data-outcome`.
    pub class: &'static str,
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    pub count: i64,
    pub href: String,
    /// The tooltip.
    pub title: String,
}

#[derive(Debug, Clone)]
pub struct Tick {
    pub at: f64,
    pub label: String,
}

#[derive(Debug, Clone)]
pub struct LegendItem {
    pub class: &'static str,
    pub label: &'static str,
    pub count: i64,
    pub href: String,
}

/// Requests over time, stacked by outcome.
#[derive(Debug, Clone)]
pub struct TimeChart {
    /// The element id (`traffic-hour`).
    pub id: &'static str,
    pub title: &'static str,
    pub width: f64,
    pub height: f64,
    pub plot_left: f64,
    pub plot_right: f64,
    pub plot_bottom: f64,
    pub segments: Vec<Segment>,
    pub y_ticks: Vec<Tick>,
    pub x_ticks: Vec<Tick>,
    pub legend: Vec<LegendItem>,
    pub total: i64,
    /// The whole span's audit.
    pub href: String,
}

fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Served => "served",
        Outcome::Refused => "refused",
        Outcome::Failed => "failed",
    }
}

impl TimeChart {
    pub fn new(id: &'static str, title: &'static str, s: &TimeSeries, scope: &Scope) -> Self {
        let b = &s.buckets;
        let plot_w = TIME_W - PLOT_LEFT - PLOT_RIGHT;
        let plot_h = TIME_H - PLOT_TOP - PLOT_BOTTOM;
        let bottom = PLOT_TOP + plot_h;
        let max = s.counts.iter().map(|c| c.total()).max().unwrap_or(0);
        let (top, step) = nice_scale(max);
        let slot = plot_w / b.count.max(1) as f64;
        let bar_w = (slot * 0.8).max(1.0);
        let per_px = plot_h / top as f64;
        let mut segments = Vec::new();
        for (i, counts) in s.counts.iter().enumerate() {
            let x = PLOT_LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
            let mut y = bottom;
            let when = b.bucket_start(i).format("%H:%M");
            for &o in Outcome::ALL {
                let count = counts.get(o);
                if count == 0 {
                    continue;
                }
                let h = count as f64 * per_px;
                y -= h;
                let mut filters = scope.filters(b.bucket_start(i), b.bucket_last(i));
                filters.push(("outcome", o.as_str().to_owned()));
                segments.push(Segment {
                    class: o.as_str(),
                    x: px(x),
                    y: px(y),
                    w: px(bar_w),
                    h: px(h),
                    count,
                    href: audit_link(&filters),
                    title: format!("{when} UTC: {count} {}", outcome_label(o)),
                });
            }
        }
        let y_ticks = (0..=top / step)
            .map(|k| Tick {
                at: px(bottom - (k * step) as f64 * per_px),
                label: (k * step).to_string(),
            })
            .collect();
        let x_ticks = (0..b.count)
            .filter(|&i| labelled(b, i))
            .map(|i| Tick {
                at: px(PLOT_LEFT + slot * i as f64 + slot / 2.0),
                label: b.bucket_start(i).format("%H:%M").to_string(),
            })
            .collect();
        let total = s.total();
        let legend = Outcome::ALL
            .iter()
            .map(|&o| {
                let mut filters = scope.span(b);
                filters.push(("outcome", o.as_str().to_owned()));
                LegendItem {
                    class: o.as_str(),
                    label: outcome_label(o),
                    count: total.get(o),
                    href: audit_link(&filters),
                }
            })
            .collect();
        TimeChart {
            id,
            title,
            width: TIME_W,
            height: TIME_H,
            plot_left: PLOT_LEFT,
            plot_right: TIME_W - PLOT_RIGHT,
            plot_bottom: bottom,
            segments,
            y_ticks,
            x_ticks,
            legend,
            total: total.total(),
            href: audit_link(&scope.span(b)),
        }
    }
}

/// Whether bucket `i` gets an x label: every quarter hour for minutes,
/// every six hours for hours, so four or five labels fit either way.
fn labelled(b: &Buckets, i: usize) -> bool {
    let t = b.bucket_start(i);
    if b.step.num_seconds() >= 3600 {
        t.hour().is_multiple_of(6)
    } else {
        t.minute().is_multiple_of(15)
    }
}

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

#[cfg(test)]
#[path = "chart_tests.rs"]
mod tests;
