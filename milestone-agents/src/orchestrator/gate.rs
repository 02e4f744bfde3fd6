//! Host quality gates: checks a host runs on a finished phase before the engine accepts it.
//!
//! The engine already fails a phase whose output lacks one of its expected outputs; a
//! [`QualityGate`] adds the host's own checks (tests pass, a reviewer agreed) for the phases
//! listed in [`EngineConfig::host_gates`](milestone_core::engine::EngineConfig::host_gates).
//! A failed gate is a failed attempt and walks the recovery chain.

use std::fmt::Debug;

use async_trait::async_trait;
use milestone_core::{ItemOutput, ItemRef, MilestoneState};

/// What a gate decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateVerdict {
    /// Whether the phase may complete.
    pub passed: bool,
    /// Why, in words (kept as the failure message when it did not pass).
    pub message: String,
}

impl GateVerdict {
    /// A pass.
    pub fn pass(message: impl Into<String>) -> GateVerdict {
        GateVerdict {
            passed: true,
            message: message.into(),
        }
    }

    /// A failure.
    pub fn fail(message: impl Into<String>) -> GateVerdict {
        GateVerdict {
            passed: false,
            message: message.into(),
        }
    }
}

/// A host's check of a finished phase. Called once per finished attempt of every phase listed
/// in the engine's `host_gates`, with the state before the phase completes and the output its
/// runner returned.
#[async_trait]
pub trait QualityGate: Debug + Send + Sync {
    /// Checks `item`'s `output`.
    async fn check(
        &self,
        state: &MilestoneState,
        item: &ItemRef,
        output: Option<&ItemOutput>,
    ) -> GateVerdict;
}
