//! Requests over time: one bar per bucket, stacked by outcome.

use chrono::Timelike;

use super::{LegendItem, Scope, Segment, Tick, audit_link, nice_scale, px};
use crate::audit::Outcome;
use crate::service::traffic::{Buckets, TimeSeries};

/// A time chart's size in SVG units; the CSS stretches it to the card.
pub(super) const TIME_W: f64 = 560.0;
pub(super) const TIME_H: f64 = 190.0;
/// Room for the y labels on the left and the x labels below.
pub(super) const PLOT_LEFT: f64 = 40.0;
pub(super) const PLOT_TOP: f64 = 8.0;
pub(super) const PLOT_BOTTOM: f64 = 22.0;
pub(super) const PLOT_RIGHT: f64 = 6.0;

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
