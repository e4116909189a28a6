//! The time buckets of a traffic series: equal steps aligned to whole
//! minutes or hours, capped at [`MAX_BUCKETS`].

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::Serialize;

use super::MAX_BUCKETS;

/// Which stretch of time a series covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Window {
    /// 60 one-minute bars.
    Hour,
    /// 24 one-hour bars.
    Day,
}

impl Window {
    pub fn step(self) -> Duration {
        match self {
            Window::Hour => Duration::minutes(1),
            Window::Day => Duration::hours(1),
        }
    }

    pub fn count(self) -> usize {
        match self {
            Window::Hour => 60,
            Window::Day => 24,
        }
    }
}

/// Equal time buckets aligned to their step (whole minutes, whole hours),
/// the last one holding `now`: so a bar is "08:14", not "08:14:37 +1 min",
/// and the same request lands in the same bar on every load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Buckets {
    pub start: DateTime<Utc>,
    pub step: Duration,
    pub count: usize,
}

impl Buckets {
    /// `count` buckets of `step` (a whole number of seconds that divides a
    /// day), the last one holding `now`. `count` is capped at
    /// [`MAX_BUCKETS`].
    pub fn ending_with(now: DateTime<Utc>, step: Duration, count: usize) -> Buckets {
        let count = count.clamp(1, MAX_BUCKETS);
        let floor = now.duration_trunc(step).unwrap_or(now);
        let back = step * (i32::try_from(count).unwrap_or(1) - 1);
        Buckets {
            start: floor - back,
            step,
            count,
        }
    }

    pub fn for_window(window: Window, now: DateTime<Utc>) -> Buckets {
        Buckets::ending_with(now, window.step(), window.count())
    }

    /// The end of the last bucket (exclusive).
    pub fn end(&self) -> DateTime<Utc> {
        self.bucket_start(self.count)
    }

    pub fn bucket_start(&self, i: usize) -> DateTime<Utc> {
        self.start + self.step * i32::try_from(i).unwrap_or(i32::MAX)
    }

    /// The last instant of bucket `i` that PostgreSQL can store (its
    /// timestamps count microseconds): the audit filter's `to` is
    /// inclusive, so a bar's link must not reach into the next bar.
    pub fn bucket_last(&self, i: usize) -> DateTime<Utc> {
        self.bucket_start(i + 1) - Duration::microseconds(1)
    }

    /// Which bucket `t` falls in, if any.
    pub fn index_of(&self, t: DateTime<Utc>) -> Option<usize> {
        if t < self.start || t >= self.end() {
            return None;
        }
        let offset = (t - self.start).num_microseconds()?;
        let step = self.step.num_microseconds()?;
        usize::try_from(offset / step).ok()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, h, m, s).unwrap()
    }

    #[test]
    fn buckets_are_aligned_and_end_with_now() {
        let b = Buckets::for_window(Window::Hour, at(8, 14, 37));
        assert_eq!(b.count, 60);
        assert_eq!(b.start, at(7, 15, 0));
        assert_eq!(b.end(), at(8, 15, 0));
        assert_eq!(b.index_of(at(8, 14, 37)), Some(59));
        assert_eq!(b.index_of(at(7, 15, 0)), Some(0));
        assert_eq!(b.index_of(at(7, 14, 59)), None);
        assert_eq!(b.index_of(at(8, 15, 0)), None);
        assert_eq!(b.bucket_start(1), at(7, 16, 0));
        assert_eq!(
            b.bucket_last(0),
            at(7, 16, 0) - Duration::microseconds(1),
            "a bar's link stops before the next bar"
        );
        let d = Buckets::for_window(Window::Day, at(8, 14, 37));
        assert_eq!(
            (d.start, d.end(), d.count),
            (at(8, 0, 0) - Duration::hours(23), at(9, 0, 0), 24)
        );
    }

    #[test]
    fn bucket_counts_are_capped() {
        let b = Buckets::ending_with(at(8, 0, 0), Duration::seconds(10), 10_000);
        assert_eq!(b.count, MAX_BUCKETS);
        assert_eq!(
            Buckets::ending_with(at(8, 0, 0), Duration::minutes(1), 0).count,
            1
        );
    }
}
