//! The charts' scales, bars, links, empty state and escaping.

use askama::Template;
use chrono::TimeZone;

use super::bars::{COUNT_W, LABEL_W, LIST_W};
use super::time::{PLOT_BOTTOM, PLOT_TOP, TIME_H};
use super::*;
use crate::service::traffic::{ByOutcome, ExfiltrationPair, Ranked, TimeSeries, Window};

fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, h, m, s).unwrap()
}

fn hour_series(counts: &[(usize, [i64; 3])]) -> TimeSeries {
    let buckets = Buckets::for_window(Window::Hour, at(8, 14, 37));
    let mut all = vec![ByOutcome::default(); buckets.count];
    for (i, c) in counts {
        all[*i] = ByOutcome(*c);
    }
    TimeSeries {
        window: Window::Hour,
        buckets,
        counts: all,
    }
}

const ALL: Scope = Scope { agent: None };

#[test]
fn scales_round_up_to_nice_numbers() {
    assert_eq!(nice_scale(0), (1, 1));
    assert_eq!(nice_scale(1), (1, 1));
    assert_eq!(nice_scale(3), (3, 1));
    assert_eq!(nice_scale(7), (8, 2));
    assert_eq!(nice_scale(9), (10, 5));
    assert_eq!(nice_scale(37), (40, 10));
    assert_eq!(nice_scale(1234), (1500, 500));
    assert!(nice_scale(i64::MAX / 2).0 >= i64::MAX / 2);
}

#[test]
fn bars_stack_outcomes_and_link_to_their_minute() {
    let s = hour_series(&[(59, [3, 2, 0]), (0, [1, 0, 1])]);
    let c = TimeChart::new("traffic-hour", "Last hour", &s, &ALL);
    assert_eq!(c.total, 7);
    assert_eq!(c.segments.len(), 4, "zero counts draw nothing");
    let last: Vec<&Segment> = c
        .segments
        .iter()
        .filter(|g| g.title.starts_with("08:14"))
        .collect();
    assert_eq!(last.len(), 2);
    let (served, refused) = (last[0], last[1]);
    assert_eq!((served.class, served.count), ("served", 3));
    assert_eq!((refused.class, refused.count), ("refused", 2));
    // Stacked: refused sits on top of served; the tallest bar (5) on a
    // 0..6 scale reaches five sixths of the plot.
    assert!((refused.y + refused.h - served.y).abs() < 0.2);
    let plot_h = TIME_H - PLOT_TOP - PLOT_BOTTOM;
    assert!(
        (refused.y - (PLOT_TOP + plot_h / 6.0)).abs() < 0.2,
        "{refused:?}"
    );
    assert_eq!(
        served.href,
        "audit?kind=request&from=2026-12-07T08%3A14%3A00Z\
         &to=2026-12-07T08%3A14%3A59.999999Z&outcome=served"
    );
    let legend: Vec<(&str, i64)> = c.legend.iter().map(|l| (l.class, l.count)).collect();
    assert_eq!(legend, [("served", 4), ("refused", 2), ("failed", 1)]);
    // A legend item covers the whole hour.
    assert_eq!(
        c.legend[2].href,
        "audit?kind=request&from=2026-12-07T07%3A15%3A00Z\
         &to=2026-12-07T08%3A14%3A59.999999Z&outcome=failed"
    );
    let labels: Vec<&str> = c.x_ticks.iter().map(|t| t.label.as_str()).collect();
    assert_eq!(labels, ["07:15", "07:30", "07:45", "08:00"]);
    let y: Vec<&str> = c.y_ticks.iter().map(|t| t.label.as_str()).collect();
    assert_eq!(y, ["0", "2", "4", "6"]);
}

#[test]
fn an_agents_links_name_the_agent() {
    let s = hour_series(&[(10, [1, 0, 0])]);
    let scope = Scope {
        agent: Some("bot".into()),
    };
    let c = TimeChart::new("traffic-hour", "Last hour", &s, &scope);
    assert!(
        c.segments[0]
            .href
            .starts_with("audit?kind=request&agent=bot&from=")
    );
    let d = Buckets::for_window(Window::Day, at(8, 14, 37));
    let rows = [ExfiltrationPair {
        agent: "bot".into(),
        host: "evil.test".into(),
        count: 2,
    }];
    let l = BarList::exfiltration(&rows, &d, &scope);
    assert_eq!(
        l.rows[0].label, "evil.test",
        "the agent's own page names only the host"
    );
    assert_eq!(l.rows[0].href.matches("agent=").count(), 1);
}

#[test]
fn rankings_split_by_outcome_and_match_hosts_exactly() {
    let d = Buckets::for_window(Window::Day, at(8, 14, 37));
    let rows = [
        Ranked {
            name: "api.test:443".into(),
            counts: ByOutcome([6, 2, 0]),
        },
        Ranked {
            name: "b.test".into(),
            counts: ByOutcome([0, 0, 4]),
        },
    ];
    let l = BarList::ranking("top-hosts", "host", &rows, &d, &ALL);
    assert_eq!(l.rows.len(), 2);
    assert_eq!(l.rows[0].total, 8);
    assert_eq!(l.rows[0].segments.len(), 2);
    assert!(
        l.rows[0]
            .href
            .contains("host=api.test%3A443&host_match=exact"),
        "{}",
        l.rows[0].href
    );
    assert!(l.rows[0].segments[1].href.ends_with("&outcome=refused"));
    // The longest bar fills the room; the others are to scale.
    let full = l.rows[0].segments.iter().map(|s| s.w).sum::<f64>();
    assert!((full - (LIST_W - LABEL_W - COUNT_W)).abs() < 0.5, "{full}");
    assert!((l.rows[1].segments[0].w - full / 2.0).abs() < 0.5);
}

#[test]
fn long_labels_are_cut_on_a_character() {
    let long = "é".repeat(40);
    let c = cut(&long);
    assert_eq!(c.chars().count(), LABEL_CHARS);
    assert!(c.ends_with('…'));
    assert_eq!(cut("short"), "short");
}

/// The charts as the pages render them, through the same macros.
#[derive(Template)]
#[template(
    source = "{% import \"charts.html\" as charts %}{% call charts::time_chart(chart) %}{% endcall %}{% call charts::bar_list(list, \"nothing\") %}{% endcall %}",
    ext = "html"
)]
struct Both<'a> {
    chart: &'a TimeChart,
    list: &'a BarList,
}

#[test]
fn no_traffic_is_said_not_drawn() {
    let s = hour_series(&[]);
    let c = TimeChart::new("traffic-hour", "Last hour", &s, &ALL);
    let l = BarList::refusals(&[], &s.buckets, &ALL);
    let html = Both {
        chart: &c,
        list: &l,
    }
    .render()
    .unwrap();
    assert!(html.contains("No traffic yet"), "{html}");
    assert!(html.contains("nothing"), "{html}");
    assert!(!html.contains("<svg"), "{html}");
}

#[test]
fn labels_are_escaped_in_the_svg() {
    let d = Buckets::for_window(Window::Day, at(8, 14, 37));
    let hostile = "<script>alert(1)</script>\"onload=alert(2)";
    let rows = [Ranked {
        name: hostile.into(),
        counts: ByOutcome([1, 0, 0]),
    }];
    let l = BarList::ranking("top-hosts", "host", &rows, &d, &ALL);
    let s = hour_series(&[(3, [1, 0, 0])]);
    let c = TimeChart::new("traffic-hour", "Last hour", &s, &ALL);
    let html = Both {
        chart: &c,
        list: &l,
    }
    .render()
    .unwrap();
    assert!(html.contains("<svg"), "{html}");
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("\"onload"), "{html}");
    assert!(html.contains("&#60;script&#62;"), "{html}");
    assert!(
        !html.contains("style="),
        "no style attribute: the CSP would drop it"
    );
}
