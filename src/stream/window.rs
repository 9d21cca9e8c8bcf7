//! Window shapes and their arithmetic, in microseconds since the epoch (UTC).
//!
//! Tumbling, hopping and cumulating windows are unions of *panes*: equal, aligned slices of time
//! that every row falls into exactly once. A row is aggregated once, into its pane; a window's
//! result merges the partial states of its panes. So a hopping window of 60 s sliding by 10 s
//! costs one update per row (not six) plus one merge per pane and key when the window closes.
//! A window `[start, end)` closes when the watermark reaches `end`. Session windows depend on
//! the data and are handled in [`super::session`].

use std::fmt;

/// The columns a window table function adds to each row.
pub const WINDOW_START: &str = "window_start";
pub const WINDOW_END: &str = "window_end";
/// Flink's `window_time`: the last instant inside the window, `window_end` − 1 µs.
pub const WINDOW_TIME: &str = "window_time";

pub fn is_window_column(name: &str) -> bool {
    matches!(name, WINDOW_START | WINDOW_END | WINDOW_TIME)
}

/// The window table function of a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub enum WindowKind {
    /// `TUMBLE(rel, ts, size)`.
    Tumble { size: i64 },
    /// `HOP(rel, ts, slide, size)`.
    Hop { slide: i64, size: i64 },
    /// `CUMULATE(rel, ts, step, size)`: windows growing by `step` within each `size` bucket.
    Cumulate { step: i64, size: i64 },
    /// `SESSION(rel, ts, gap)`: per key, rows closer than `gap` share a window.
    Session { gap: i64 },
    /// No window: one group per key for ever (running totals). Never closes.
    Unbounded,
}

impl fmt::Display for WindowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |us: i64| format!("{}s", us as f64 / 1e6);
        match *self {
            WindowKind::Tumble { size } => write!(f, "tumble(size={})", s(size)),
            WindowKind::Hop { slide, size } => {
                write!(
                    f,
                    "hop(slide={}, size={}, pane={})",
                    s(slide),
                    s(size),
                    s(self.pane())
                )
            }
            WindowKind::Cumulate { step, size } => {
                write!(f, "cumulate(step={}, size={})", s(step), s(size))
            }
            WindowKind::Session { gap } => write!(f, "session(gap={})", s(gap)),
            WindowKind::Unbounded => write!(f, "unbounded"),
        }
    }
}

impl WindowKind {
    /// The length of a pane. Sessions have none (see [`super::session`]).
    pub fn pane(&self) -> i64 {
        match *self {
            WindowKind::Tumble { size } => size,
            WindowKind::Hop { slide, size } => gcd(slide, size),
            WindowKind::Cumulate { step, .. } => step,
            WindowKind::Session { .. } | WindowKind::Unbounded => i64::MAX,
        }
    }

    /// The longest window's length; `None` for sessions (no bound) and running totals.
    pub fn longest(&self) -> Option<i64> {
        match *self {
            WindowKind::Tumble { size }
            | WindowKind::Hop { size, .. }
            | WindowKind::Cumulate { size, .. } => Some(size),
            WindowKind::Session { .. } | WindowKind::Unbounded => None,
        }
    }

    /// Whether windows of this kind ever close.
    pub fn closes(&self) -> bool {
        !matches!(self, WindowKind::Unbounded)
    }

    /// The start of the pane holding `ts`.
    pub fn pane_start(&self, ts: i64) -> i64 {
        match self {
            WindowKind::Unbounded | WindowKind::Session { .. } => 0,
            _ => floor_to(ts, self.pane()),
        }
    }

    /// The end of the first window holding the pane starting at `pane_start`: once the
    /// watermark reaches it, rows of the pane are late.
    pub fn first_end(&self, pane_start: i64) -> i64 {
        match *self {
            WindowKind::Tumble { size } => pane_start.saturating_add(size),
            WindowKind::Hop { slide, size } => {
                // The earliest window holding the pane starts at the first slide boundary
                // after `pane_end - size`.
                let pane_end = pane_start.saturating_add(self.pane());
                ceil_to(pane_end.saturating_sub(size), slide).saturating_add(size)
            }
            WindowKind::Cumulate { step, .. } => pane_start.saturating_add(step),
            WindowKind::Session { .. } | WindowKind::Unbounded => i64::MAX,
        }
    }

    /// The end of the last window holding the pane: once it is emitted the pane is dropped.
    pub fn last_end(&self, pane_start: i64) -> i64 {
        match *self {
            WindowKind::Tumble { size } => pane_start.saturating_add(size),
            WindowKind::Hop { slide, size } => floor_to(pane_start, slide).saturating_add(size),
            WindowKind::Cumulate { size, .. } => floor_to(pane_start, size).saturating_add(size),
            WindowKind::Session { .. } | WindowKind::Unbounded => i64::MAX,
        }
    }

    /// Every window `[start, end)` holding the pane starting at `pane_start`, by end.
    pub fn windows_of_pane(&self, pane_start: i64) -> Vec<(i64, i64)> {
        match *self {
            WindowKind::Tumble { size } => vec![(pane_start, pane_start.saturating_add(size))],
            WindowKind::Hop { slide, size } => {
                let mut windows = Vec::new();
                let mut end = self.first_end(pane_start);
                while end <= self.last_end(pane_start) {
                    windows.push((end - size, end));
                    end += slide;
                }
                windows
            }
            WindowKind::Cumulate { step, size } => {
                let bucket = floor_to(pane_start, size);
                let mut windows = Vec::new();
                let mut end = pane_start + step;
                while end <= bucket + size {
                    windows.push((bucket, end));
                    end += step;
                }
                windows
            }
            WindowKind::Session { .. } | WindowKind::Unbounded => vec![(i64::MIN, i64::MAX)],
        }
    }
}

/// The largest multiple of `step` at or below `ts` (also for negative `ts`).
pub fn floor_to(ts: i64, step: i64) -> i64 {
    ts - ts.rem_euclid(step)
}

/// The smallest multiple of `step` at or above `ts`.
pub fn ceil_to(ts: i64, step: i64) -> i64 {
    let floor = floor_to(ts, step);
    if floor == ts { ts } else { floor + step }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every window of a row, computed the slow way, equals the windows of its pane.
    fn windows_by_definition(kind: WindowKind, ts: i64) -> Vec<(i64, i64)> {
        let (slide, size, cumulative) = match kind {
            WindowKind::Tumble { size } => (size, size, false),
            WindowKind::Hop { slide, size } => (slide, size, false),
            WindowKind::Cumulate { step, size } => (step, size, true),
            _ => unreachable!(),
        };
        let mut windows = Vec::new();
        if cumulative {
            let bucket = floor_to(ts, size);
            let mut end = bucket + slide;
            while end <= bucket + size {
                if ts < end {
                    windows.push((bucket, end));
                }
                end += slide;
            }
        } else {
            let mut start = floor_to(ts - size + 1, slide);
            if start + size <= ts {
                start += slide;
            }
            while start <= ts {
                if ts < start + size {
                    windows.push((start, start + size));
                }
                start += slide;
            }
        }
        windows
    }

    #[test]
    fn panes_cover_exactly_the_windows_of_their_rows() {
        let kinds = [
            WindowKind::Tumble { size: 10 },
            WindowKind::Hop {
                slide: 10,
                size: 60,
            },
            WindowKind::Hop { slide: 4, size: 10 },
            WindowKind::Hop {
                slide: 15,
                size: 10,
            },
            WindowKind::Cumulate { step: 5, size: 20 },
        ];
        for kind in kinds {
            for ts in -130..130 {
                let pane = kind.pane_start(ts);
                assert!(pane <= ts && ts < pane + kind.pane(), "{kind} {ts}");
                let expected = windows_by_definition(kind, ts);
                assert_eq!(kind.windows_of_pane(pane), expected, "{kind} ts={ts}");
                if let (Some(first), Some(last)) = (expected.first(), expected.last()) {
                    assert_eq!(kind.first_end(pane), first.1, "{kind} ts={ts}");
                    assert_eq!(kind.last_end(pane), last.1, "{kind} ts={ts}");
                }
            }
        }
    }

    #[test]
    fn rounding_handles_negative_times() {
        assert_eq!(floor_to(-1, 10), -10);
        assert_eq!(ceil_to(-1, 10), 0);
        assert_eq!(ceil_to(20, 10), 20);
        assert_eq!(
            WindowKind::Hop {
                slide: 10,
                size: 60
            }
            .pane(),
            10
        );
        assert_eq!(WindowKind::Hop { slide: 4, size: 10 }.pane(), 2);
    }
}
