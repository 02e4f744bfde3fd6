//! Progress: the weighted overall percentage of a milestone, and a report a person can read.
//!
//! [`overall`] is the one number every other part of the workspace agrees on: Σ weight × phase
//! progress, exact in basis points, 100 % exactly when every phase is completed, and never lower
//! than before between rollbacks. [`ProgressReport::compute`] adds what a host shows a user — per
//! phase progress and timing, velocity, an ETA, phases running past their estimate and phases
//! that are stuck — and [`ProgressReport::render`] turns it into text with a bar per phase.
//!
//! Everything here is pure: time is passed in as a [`Timestamp`], so the same state and the same
//! `now` always give the same report and the same text.
//!
//! ```
//! use milestone_core::progress::{ProgressReport, RenderOptions};
//! use milestone_core::{Event, ItemOutput, ItemRef, MilestoneId, MilestoneState, PhaseId,
//!     Progress, Timestamp, Workflow};
//!
//! let mut state = MilestoneState::new(
//!     MilestoneId::new("login")?, "Add login", "", Workflow::kiro(), Timestamp(0), 1);
//! state.apply(&Event::ExecutionStarted { at: Timestamp(0) })?;
//! let design = ItemRef::Phase(PhaseId::new("design")?);
//! state.apply(&Event::ItemStarted { at: Timestamp(0), item: design.clone(), attempt: 1 })?;
//! state.apply(&Event::ItemCompleted { at: Timestamp(3_600_000), item: design, output: ItemOutput::default().into() })?;
//!
//! let report = ProgressReport::compute(&state, Timestamp(3_600_000), None);
//! assert_eq!(report.overall, Progress::from_basis_points(1_500));
//! assert_eq!(report.velocity_bp_per_hour, 1_500);
//! // 85 % left at 15 % an hour: 5 h 40 min from now.
//! assert_eq!(report.eta, Some(Timestamp(3_600_000 + 20_400_000)));
//! let text = report.render(&RenderOptions::default().width(10));
//! assert!(text.contains("design  [██████████] 100.00 %  completed"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

use crate::id::{PhaseId, TaskId};
use crate::plan::Estimates;
use crate::state::{ItemError, ItemStatus, MilestoneState, MilestoneStatus};
use crate::units::{Progress, Timestamp, Weight};

/// Milliseconds in an hour, the unit of [`ProgressReport::velocity_bp_per_hour`].
pub const HOUR_MS: u64 = 3_600_000;

/// Overall progress: Σ weight × phase progress. Exactly 100 % when, and only when, every phase
/// is completed; otherwise at most 99.99 %. Never lower than before for the same milestone
/// between rollbacks, because every phase's progress only rises.
pub fn overall(state: &MilestoneState) -> Progress {
    let mut sum: u32 = 0;
    for (spec, phase) in state.workflow().phases().iter().zip(state.phases()) {
        let p = if phase.item.status == ItemStatus::Completed {
            Progress::COMPLETE
        } else {
            phase.item.progress.short_of_complete()
        };
        sum += u32::from(spec.weight.percent()) * u32::from(p.basis_points());
    }
    let bp = Progress::from_basis_points(sum / 100);
    if state.all_phases_completed() {
        Progress::COMPLETE
    } else {
        bp.short_of_complete()
    }
}

/// One phase in a [`ProgressReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseProgress {
    /// The phase.
    pub id: PhaseId,
    /// Its title.
    pub title: String,
    /// Its share of the milestone.
    pub weight: Weight,
    /// Its status.
    pub status: ItemStatus,
    /// Its progress: complete when completed, otherwise at most 99.99 %. For the task phase this
    /// already includes the weighted share of its tasks done.
    pub progress: Progress,
    /// Its contribution to [`ProgressReport::overall`], in basis points of the milestone
    /// (weight × progress).
    pub contribution_bp: u32,
    /// When its first attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// Milliseconds from its start to its completion, or to `now` while it is unfinished
    /// (in progress, failed or blocked). `None` when it never started, or was skipped or
    /// cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
    /// Its estimated effort in milliseconds, when the estimates name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate_ms: Option<u64>,
    /// Unfinished and running past its estimate.
    pub slow: bool,
    /// Stuck: blocked, or failed and waiting for a retry or a decision.
    pub blocked: bool,
    /// Its last failure, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ItemError>,
}

/// How many tasks are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskCounts {
    /// All tasks.
    pub total: u64,
    /// Not started.
    pub pending: u64,
    /// Running.
    pub in_progress: u64,
    /// Completed.
    pub completed: u64,
    /// Failed, waiting for a retry or a decision.
    pub failed: u64,
    /// Blocked.
    pub blocked: u64,
    /// Skipped.
    pub skipped: u64,
    /// Cancelled.
    pub cancelled: u64,
}

impl TaskCounts {
    fn add(&mut self, status: ItemStatus) {
        self.total += 1;
        let slot = match status {
            ItemStatus::Pending => &mut self.pending,
            ItemStatus::InProgress => &mut self.in_progress,
            ItemStatus::Completed => &mut self.completed,
            ItemStatus::Failed => &mut self.failed,
            ItemStatus::Blocked => &mut self.blocked,
            ItemStatus::Skipped => &mut self.skipped,
            ItemStatus::Cancelled => &mut self.cancelled,
        };
        *slot += 1;
    }
}

/// A snapshot of a milestone's progress at one moment: see the module docs.
///
/// Serializable, so that a host can hand it to a UI or another process as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressReport {
    /// The milestone's id.
    pub milestone: crate::id::MilestoneId,
    /// Its title.
    pub title: String,
    /// Its status.
    pub status: MilestoneStatus,
    /// The moment the report describes.
    pub at: Timestamp,
    /// Overall progress, as [`overall`].
    pub overall: Progress,
    /// Every phase, in workflow order.
    pub phases: Vec<PhaseProgress>,
    /// The tasks of the task phase, counted by status.
    pub tasks: TaskCounts,
    /// When the first phase or task started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_started_at: Option<Timestamp>,
    /// Milliseconds of work so far: from the first start to `at`, or to the last phase's
    /// completion once every phase is completed. 0 before anything started.
    pub elapsed_ms: u64,
    /// Overall basis points gained per hour since the first start (rounded down); 0 before
    /// anything started.
    pub velocity_bp_per_hour: u64,
    /// When the milestone is expected to be complete at the current velocity: the completion
    /// time once complete; `None` when nothing has progressed yet, or the milestone is failed or
    /// cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<Timestamp>,
    /// Phases running past their estimate, in workflow order.
    pub slow: Vec<PhaseId>,
    /// Phases that are blocked, or failed and waiting, in workflow order.
    pub blocked: Vec<PhaseId>,
    /// Tasks that are blocked, or failed and waiting, in task order.
    pub blocked_tasks: Vec<TaskId>,
}

impl ProgressReport {
    /// Computes the report of `state` at `now`.
    ///
    /// `estimates` give each phase's expected effort; when `None`, the estimates of the plan
    /// recorded on the state are used, if any. A phase is *slow* when it has started, is not
    /// finished, and has been running longer than its estimate. Velocity is overall progress
    /// divided by the time since the first start; the ETA extrapolates it exactly (no rounding
    /// of the velocity). `now` earlier than a start counts as no time elapsed.
    ///
    /// Cost: O(phases × estimates + tasks).
    pub fn compute(
        state: &MilestoneState,
        now: Timestamp,
        estimates: Option<&Estimates>,
    ) -> ProgressReport {
        let estimates = estimates.or_else(|| state.plan().and_then(|p| p.estimates.as_ref()));
        let overall = overall(state);
        let mut phases = Vec::with_capacity(state.phases().len());
        let mut first_started_at: Option<Timestamp> = None;
        let mut slow = Vec::new();
        let mut blocked = Vec::new();
        for (spec, phase) in state.workflow().phases().iter().zip(state.phases()) {
            let item = &phase.item;
            let progress = if item.status == ItemStatus::Completed {
                Progress::COMPLETE
            } else {
                item.progress.short_of_complete()
            };
            if let Some(s) = item.started_at {
                first_started_at = Some(first_started_at.map_or(s, |f| f.min(s)));
            }
            let unfinished = matches!(
                item.status,
                ItemStatus::InProgress | ItemStatus::Failed | ItemStatus::Blocked
            );
            let elapsed_ms = match (item.started_at, item.status) {
                (Some(s), ItemStatus::Completed) => {
                    Some(item.completed_at.unwrap_or(now).millis_since(s))
                }
                (Some(s), _) if unfinished => Some(now.millis_since(s)),
                _ => None,
            };
            let estimate_ms = estimates.and_then(|e| {
                e.phases
                    .iter()
                    .find(|pe| pe.phase == phase.id)
                    .map(|pe| pe.effort_ms)
            });
            let is_slow =
                unfinished && matches!((elapsed_ms, estimate_ms), (Some(e), Some(est)) if e > est);
            let is_blocked = is_stuck(item.status);
            if is_slow {
                slow.push(phase.id.clone());
            }
            if is_blocked {
                blocked.push(phase.id.clone());
            }
            phases.push(PhaseProgress {
                id: phase.id.clone(),
                title: spec.title.clone(),
                weight: spec.weight,
                status: item.status,
                progress,
                contribution_bp: u32::from(spec.weight.percent())
                    * u32::from(progress.basis_points())
                    / 100,
                started_at: item.started_at,
                elapsed_ms,
                estimate_ms,
                slow: is_slow,
                blocked: is_blocked,
                last_error: item.last_error.clone(),
            });
        }
        let mut tasks = TaskCounts::default();
        let mut blocked_tasks = Vec::new();
        for t in state.tasks() {
            tasks.add(t.item.status);
            if let Some(s) = t.item.started_at {
                first_started_at = Some(first_started_at.map_or(s, |f| f.min(s)));
            }
            if is_stuck(t.item.status) {
                blocked_tasks.push(t.spec.id.clone());
            }
        }
        let finished_at = if overall.is_complete() {
            state
                .phases()
                .iter()
                .filter_map(|p| p.item.completed_at)
                .max()
        } else {
            None
        };
        let end = finished_at.unwrap_or(now);
        let elapsed_ms = first_started_at.map_or(0, |s| end.millis_since(s));
        let done = u128::from(overall.basis_points());
        let velocity_bp_per_hour = if elapsed_ms == 0 {
            0
        } else {
            u64::try_from(done * u128::from(HOUR_MS) / u128::from(elapsed_ms)).unwrap_or(u64::MAX)
        };
        let eta = if matches!(
            state.status(),
            MilestoneStatus::Failed | MilestoneStatus::Cancelled
        ) {
            None
        } else if overall.is_complete() {
            Some(end)
        } else if done == 0 || elapsed_ms == 0 {
            None
        } else {
            let left = u128::from(Progress::COMPLETE.basis_points()) - done;
            // Round up: the ETA is never earlier than the exact extrapolation.
            let ms = (left * u128::from(elapsed_ms)).div_ceil(done);
            Some(now.plus_millis(u64::try_from(ms).unwrap_or(u64::MAX)))
        };
        ProgressReport {
            milestone: state.id().clone(),
            title: state.title().to_string(),
            status: state.status(),
            at: now,
            overall,
            phases,
            tasks,
            first_started_at,
            elapsed_ms,
            velocity_bp_per_hour,
            eta,
            slow,
            blocked,
            blocked_tasks,
        }
    }

    /// The report as text: a header, one bar per phase, the overall bar, velocity and ETA, and a
    /// warning line per slow or blocked phase. Only the first line of the title and of error
    /// messages is shown, so every item keeps to one line. Deterministic: the same report and options always
    /// give the same text. Every line ends with `\n`.
    pub fn render(&self, options: &RenderOptions) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_text(&mut out, options);
        out
    }

    fn write_text(&self, out: &mut String, o: &RenderOptions) -> fmt::Result {
        let name_width = self
            .phases
            .iter()
            .map(|p| p.id.as_str().chars().count())
            .chain(std::iter::once("overall".len()))
            .max()
            .unwrap_or(0);
        writeln!(
            out,
            "{} — {} ({})",
            self.milestone,
            one_line(&self.title),
            self.status
        )?;
        for p in &self.phases {
            writeln!(
                out,
                "{:<name_width$} {} {:>8}  {}",
                p.id.as_str(),
                bar(p.progress, o),
                p.progress.to_string(),
                p.status
            )?;
        }
        writeln!(
            out,
            "{:<name_width$} {} {:>8}",
            "overall",
            bar(self.overall, o),
            self.overall.to_string()
        )?;
        if self.tasks.total > 0 {
            let t = &self.tasks;
            writeln!(
                out,
                "tasks: {}/{} completed, {} in progress, {} failed, {} blocked, {} skipped",
                t.completed, t.total, t.in_progress, t.failed, t.blocked, t.skipped
            )?;
        }
        write!(
            out,
            "velocity: {}.{:02} %/h",
            self.velocity_bp_per_hour / 100,
            self.velocity_bp_per_hour % 100
        )?;
        match self.eta {
            Some(eta) if self.overall.is_complete() => {
                writeln!(out, ", completed {}", format_utc(eta))?
            }
            Some(eta) => writeln!(
                out,
                ", ETA {} (in {})",
                format_utc(eta),
                format_duration(eta.millis_since(self.at))
            )?,
            None => writeln!(out, ", ETA unknown")?,
        }
        for p in self.phases.iter().filter(|p| p.slow) {
            if let (Some(e), Some(est)) = (p.elapsed_ms, p.estimate_ms) {
                writeln!(
                    out,
                    "slow: {} running {}, past its estimate of {}",
                    p.id,
                    format_duration(e),
                    format_duration(est)
                )?;
            }
        }
        for p in self.phases.iter().filter(|p| p.blocked) {
            match &p.last_error {
                Some(err) if p.status == ItemStatus::Failed => writeln!(
                    out,
                    "blocked: {} failed ({:?}): {}",
                    p.id,
                    err.kind,
                    one_line(&err.message)
                )?,
                _ => writeln!(out, "blocked: {} is {}", p.id, p.status)?,
            }
        }
        if !self.blocked_tasks.is_empty() {
            let shown: Vec<&str> = self
                .blocked_tasks
                .iter()
                .take(o.max_listed_tasks)
                .map(|t| t.as_str())
                .collect();
            let more = self.blocked_tasks.len() - shown.len();
            match (shown.is_empty(), more) {
                (true, n) => writeln!(out, "blocked tasks: {n}")?,
                (false, 0) => writeln!(out, "blocked tasks: {}", shown.join(", "))?,
                (false, n) => writeln!(out, "blocked tasks: {} and {n} more", shown.join(", "))?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for ProgressReport {
    /// [`ProgressReport::render`] with [`RenderOptions::default`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(&RenderOptions::default()))
    }
}

/// How [`ProgressReport::render`] draws the text.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RenderOptions {
    /// Characters in each bar, between the brackets (1 to [`MAX_BAR_WIDTH`] are drawn).
    pub width: usize,
    /// Draw bars with `#` and `.` instead of `█` and `░`, for terminals without Unicode.
    pub ascii: bool,
    /// How many blocked tasks to name before summarizing the rest as "and N more".
    pub max_listed_tasks: usize,
}

impl Default for RenderOptions {
    /// Bars of 30 characters, Unicode blocks, up to 10 blocked tasks named.
    fn default() -> Self {
        RenderOptions {
            width: 30,
            ascii: false,
            max_listed_tasks: 10,
        }
    }
}

impl RenderOptions {
    /// These options with bars of `width` characters.
    pub fn width(mut self, width: usize) -> Self {
        self.width = width;
        self
    }

    /// These options drawing bars with ASCII characters (`ascii = true`) or Unicode blocks.
    pub fn ascii(mut self, ascii: bool) -> Self {
        self.ascii = ascii;
        self
    }

    /// These options naming at most `n` blocked tasks.
    pub fn max_listed_tasks(mut self, n: usize) -> Self {
        self.max_listed_tasks = n;
        self
    }
}

/// [`ProgressReport::render`] with [`RenderOptions::default`].
pub fn render_text(report: &ProgressReport) -> String {
    report.render(&RenderOptions::default())
}

fn is_stuck(status: ItemStatus) -> bool {
    matches!(status, ItemStatus::Blocked | ItemStatus::Failed)
}

/// The widest bar drawn: a larger [`RenderOptions::width`] is drawn at this width, so no
/// caller-chosen width can overflow or exhaust memory.
pub const MAX_BAR_WIDTH: usize = 1_000;

/// `[████░░░░]`: the filled share rounds down, so a bar is full only at 100 %.
fn bar(p: Progress, o: &RenderOptions) -> String {
    let width = o.width.clamp(1, MAX_BAR_WIDTH);
    let filled = usize::try_from(
        u128::from(p.basis_points()) * width as u128
            / u128::from(Progress::COMPLETE.basis_points()),
    )
    .unwrap_or(width)
    .min(width);
    let (full, empty) = if o.ascii { ('#', '.') } else { ('█', '░') };
    let mut s = String::with_capacity(width * 3 + 2);
    s.push('[');
    s.extend(std::iter::repeat_n(full, filled));
    s.extend(std::iter::repeat_n(empty, width - filled));
    s.push(']');
    s
}

fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// `1h 05m`, `4m 10s`, `12s`, `0s`.
fn format_duration(ms: u64) -> String {
    let s = ms / 1000;
    let (h, m, sec) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {sec:02}s")
    } else {
        format!("{sec}s")
    }
}

/// A timestamp as `YYYY-MM-DDTHH:MM:SSZ` (UTC, proleptic Gregorian calendar).
fn format_utc(t: Timestamp) -> String {
    let secs = t.as_millis() / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's `civil_from_days` for
/// non-negative day counts.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        for (ms, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400_000, "2000-02-29T00:00:00Z"),
            (1_798_761_600_000, "2027-01-01T00:00:00Z"),
            (1_795_164_000_000, "2026-11-20T08:40:00Z"),
        ] {
            assert_eq!(format_utc(Timestamp(ms)), text, "{ms}");
        }
        // The far end of the range does not overflow (about 584.5 million years on).
        assert!(format_utc(Timestamp(u64::MAX)).starts_with("584556019-"));
    }

    #[test]
    fn durations() {
        for (ms, text) in [
            (0, "0s"),
            (999, "0s"),
            (12_000, "12s"),
            (250_000, "4m 10s"),
            (3_900_000, "1h 05m"),
            (90_000_000, "25h 00m"),
        ] {
            assert_eq!(format_duration(ms), text, "{ms}");
        }
    }

    #[test]
    fn bars_fill_only_at_complete() {
        let o = RenderOptions::default().width(4);
        for (bp, text) in [
            (0, "[░░░░]"),
            (2_499, "[░░░░]"),
            (2_500, "[█░░░]"),
            (9_999, "[███░]"),
            (10_000, "[████]"),
        ] {
            assert_eq!(bar(Progress::from_basis_points(bp), &o), text, "{bp}");
        }
        let ascii = RenderOptions::default().width(0).ascii(true);
        assert_eq!(bar(Progress::COMPLETE, &ascii), "[#]");
        assert_eq!(bar(Progress::ZERO, &ascii), "[.]");
    }
}
