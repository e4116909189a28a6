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

mod bars;
mod time;

pub use bars::{BarList, Row};
pub use time::TimeChart;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::service::traffic::Buckets;

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
    pub(super) fn filters(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(&'static str, String)> {
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

#[cfg(test)]
mod tests;
