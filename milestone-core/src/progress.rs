//! Progress: the weighted overall percentage of a milestone.

use crate::state::{ItemStatus, MilestoneState};
use crate::units::Progress;

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
