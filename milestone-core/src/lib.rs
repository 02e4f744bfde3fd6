//! # milestone-core
//!
//! The pure heart of `milestone`: ids, workflows and phases, the KIRO strategy, milestone state
//! and its transition rules, events and the fold that applies them, progress, plans,
//! complexity, and the work graph. **milestone-core knows nothing about files, git, clocks or
//! executors**: time is a value the caller passes in, and nothing here performs I/O.
//!
//! ```
//! use milestone_core::{Event, ItemRef, ItemOutput, MilestoneId, MilestoneState, PhaseId,
//!     Timestamp, Workflow};
//!
//! let workflow = Workflow::kiro();
//! let mut state = MilestoneState::from_events([&Event::Created {
//!     at: Timestamp(0),
//!     id: MilestoneId::new("login")?,
//!     title: "Add login feature".into(),
//!     context: String::new(),
//!     workflow,
//!     seed: 1,
//! }])?;
//! state.apply(&Event::ExecutionStarted { at: Timestamp(1) })?;
//! let design = ItemRef::Phase(PhaseId::new("design")?);
//! state.apply(&Event::ItemStarted { at: Timestamp(2), item: design.clone(), attempt: 1 })?;
//! state.apply(&Event::ItemCompleted { at: Timestamp(3), item: design, output: ItemOutput::default().into() })?;
//! assert_eq!(state.phase("design").map(|p| p.item.status), Some(milestone_core::ItemStatus::Completed));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod addr_index;
pub mod bridge;
pub mod complexity;
pub mod dag;
pub mod engine;
pub mod error;
pub mod event;
pub mod graph;
pub mod id;
pub mod kiro;
pub mod load;
pub mod picture;
pub mod plan;
pub mod progress;
pub mod state;
pub mod units;
pub mod workflow;

pub use bridge::CommandState;
pub use complexity::{Complexity, ExecutionMode};
pub use error::{Error, LoadError, Problem, ProblemKind, Problems};
pub use event::Event;
pub use graph::{ReadyTracker, WorkGraph};
pub use id::{IdError, MilestoneId, PhaseId, TaskId};
pub use kiro::{KiroCategory, KiroItem, KiroStrategy};
pub use plan::{MilestonePlan, validate_plan};
pub use progress::{ProgressReport, overall};
pub use state::{
    Artifact, ArtifactBody, CompactOutput, Decision, FailureKind, ItemError, ItemOutput, ItemRef,
    ItemState, ItemStatus, MilestoneState, MilestoneStatus, Mode, TaskSpec, TransitionError,
};
pub use units::{Priority, Progress, Timestamp, Weight};
pub use workflow::{CachePolicy, Limits, PhaseSpec, Workflow};
