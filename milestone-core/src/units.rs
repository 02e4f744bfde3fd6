//! Small value types: [`Timestamp`], [`Progress`], [`Weight`], [`Priority`].
//!
//! Time is a value handed in by the caller (milliseconds since the Unix epoch); the core never
//! reads a clock. Progress is an exact integer in basis points so that sums, comparisons and JSON
//! round trips are exact and monotonicity can be checked with `<=`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// A point in time, in milliseconds since the Unix epoch. Supplied by the caller.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Milliseconds since the epoch.
    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + ms`, saturating.
    pub fn plus_millis(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, or 0 when `earlier` is later.
    pub fn millis_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// A fraction of work done, in basis points: 0 (nothing) to 10 000 (all).
///
/// Exact: `Progress::from_fraction(0.4)` is 4 000 basis points, and a weighted sum of
/// phase progress is an integer computation with no rounding drift.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Progress(u16);

impl Progress {
    /// No work done.
    pub const ZERO: Progress = Progress(0);
    /// All work done.
    pub const COMPLETE: Progress = Progress(10_000);
    /// The largest value short of complete (99.99 %).
    pub const ALMOST: Progress = Progress(9_999);

    /// From basis points, clamped to 0..=10 000.
    pub fn from_basis_points(bp: u32) -> Progress {
        Progress(bp.min(10_000) as u16)
    }

    /// From a fraction in 0.0..=1.0; out-of-range values are clamped and NaN is 0.
    pub fn from_fraction(f: f64) -> Progress {
        if f.is_nan() || f <= 0.0 {
            Progress::ZERO
        } else if f >= 1.0 {
            Progress::COMPLETE
        } else {
            Progress((f * 10_000.0).round() as u16)
        }
    }

    /// `done` out of `total` (complete when `total` is 0).
    pub fn ratio(done: u64, total: u64) -> Progress {
        if total == 0 {
            return Progress::COMPLETE;
        }
        let bp = (u128::from(done.min(total)) * 10_000 / u128::from(total)) as u16;
        Progress(bp)
    }

    /// Basis points, 0..=10 000.
    pub fn basis_points(self) -> u16 {
        self.0
    }

    /// As a fraction in 0.0..=1.0.
    pub fn as_fraction(self) -> f64 {
        f64::from(self.0) / 10_000.0
    }

    /// As a percentage in 0.0..=100.0.
    pub fn percent(self) -> f64 {
        f64::from(self.0) / 100.0
    }

    /// Whether this is 100 %.
    pub fn is_complete(self) -> bool {
        self.0 == 10_000
    }

    /// At most [`Progress::ALMOST`]: what an unfinished item may report.
    pub fn short_of_complete(self) -> Progress {
        self.min(Progress::ALMOST)
    }
}

impl<'de> Deserialize<'de> for Progress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bp = u16::deserialize(d)?;
        if bp > 10_000 {
            return Err(serde::de::Error::custom(format!(
                "progress {bp} is over 10000 basis points"
            )));
        }
        Ok(Progress(bp))
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02} %", self.0 / 100, self.0 % 100)
    }
}

/// A phase's share of the milestone, an exact integer percent (0..=100). A workflow's weights sum
/// to exactly 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Weight(u8);

impl Weight {
    /// A weight of `percent`; `None` above 100.
    pub fn new(percent: u8) -> Option<Weight> {
        (percent <= 100).then_some(Weight(percent))
    }

    /// A weight from a literal at most 100 (crate-internal tables only).
    pub(crate) const fn known(percent: u8) -> Weight {
        Weight(if percent > 100 { 100 } else { percent })
    }

    /// The percentage.
    pub fn percent(self) -> u8 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let p = u8::deserialize(d)?;
        Weight::new(p)
            .ok_or_else(|| serde::de::Error::custom(format!("weight {p} is over 100 percent")))
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} %", self.0)
    }
}

/// How urgent a phase or task is. Ready items start in order critical > high > medium > low.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Priority {
    /// Low.
    Low,
    /// Medium (the default).
    #[default]
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
            Priority::Critical => "critical",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_conversions() {
        assert_eq!(Progress::from_fraction(0.4).basis_points(), 4_000);
        assert_eq!(Progress::from_fraction(-1.0), Progress::ZERO);
        assert_eq!(Progress::from_fraction(f64::NAN), Progress::ZERO);
        assert_eq!(Progress::from_fraction(7.0), Progress::COMPLETE);
        assert_eq!(Progress::ratio(1, 3).basis_points(), 3_333);
        assert_eq!(Progress::ratio(0, 0), Progress::COMPLETE);
        assert_eq!(Progress::ratio(5, 3), Progress::COMPLETE);
        assert_eq!(Progress::from_basis_points(20_000), Progress::COMPLETE);
        assert_eq!(Progress::COMPLETE.short_of_complete(), Progress::ALMOST);
        assert_eq!(Progress::from_basis_points(1234).to_string(), "12.34 %");
    }

    #[test]
    fn progress_and_weight_json_is_checked() {
        assert!(serde_json::from_str::<Progress>("10001").is_err());
        assert!(serde_json::from_str::<Progress>("-1").is_err());
        assert_eq!(
            serde_json::from_str::<Progress>("10000").unwrap(),
            Progress::COMPLETE
        );
        assert!(serde_json::from_str::<Weight>("101").is_err());
        assert_eq!(serde_json::from_str::<Weight>("40").unwrap().percent(), 40);
    }

    #[test]
    fn priority_orders_critical_first_when_reversed() {
        let mut v = vec![
            Priority::Medium,
            Priority::Critical,
            Priority::Low,
            Priority::High,
        ];
        v.sort_by(|a, b| b.cmp(a));
        assert_eq!(
            v,
            vec![
                Priority::Critical,
                Priority::High,
                Priority::Medium,
                Priority::Low
            ]
        );
    }
}
