//! What a runner returns: [`AgentOutput`] on success, [`AgentError`] on failure.

use std::collections::BTreeMap;

use milestone_core::engine::{Input, Work};
use milestone_core::{Artifact, FailureKind, ItemError, ItemOutput};
use serde::{Deserialize, Serialize};

/// What a finished run produced.
///
/// Its JSON shape (what a [`CommandAgent`](crate::CommandAgent) child prints under
/// `"output"`) is, every key optional:
///
/// ```json
/// {"summary": "…",
///  "artifacts": [{"name": "api-contracts", "kind": "document", "body": {"inline": "…"}},
///                {"name": "data-models", "kind": "code", "body": {"path": "src/model.rs"}}],
///  "decisions": ["…"],
///  "data": {…},
///  "quality": {"tests_passed": 1.0}}
/// ```
///
/// Unknown keys are refused, so that a misspelt key is an error rather than a silent loss.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AgentOutput {
    /// A one-line summary.
    #[serde(default)]
    pub summary: String,
    /// Named artifacts; their names are matched against the phase's expected outputs by the
    /// quality gate.
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    /// Decisions taken, in words.
    #[serde(default)]
    pub decisions: Vec<String>,
    /// Structured data handed on to dependents as their input.
    #[serde(default)]
    pub data: serde_json::Value,
    /// Quality figures (name → value; by convention 1.0 is "as good as the direct runner"),
    /// feeding run metrics and the direct-vs-agent recommendation.
    #[serde(default)]
    pub quality: BTreeMap<String, f64>,
}

impl AgentOutput {
    /// An output with this summary.
    pub fn new(summary: impl Into<String>) -> AgentOutput {
        AgentOutput {
            summary: summary.into(),
            ..AgentOutput::default()
        }
    }

    /// Adds an artifact.
    pub fn with_artifact(mut self, artifact: Artifact) -> AgentOutput {
        self.artifacts.push(artifact);
        self
    }

    /// Sets the data handed on.
    pub fn with_data(mut self, data: serde_json::Value) -> AgentOutput {
        self.data = data;
        self
    }

    /// Adds a decision.
    pub fn with_decision(mut self, decision: impl Into<String>) -> AgentOutput {
        self.decisions.push(decision.into());
        self
    }

    /// Sets a quality figure.
    pub fn with_quality(mut self, name: impl Into<String>, value: f64) -> AgentOutput {
        self.quality.insert(name.into(), value);
        self
    }

    /// Splits into what the milestone state records and the quality figures (which go to
    /// run metrics, not to the state).
    pub fn into_parts(self) -> (ItemOutput, BTreeMap<String, f64>) {
        (
            ItemOutput {
                summary: self.summary,
                artifacts: self.artifacts,
                decisions: self.decisions,
                data: self.data,
            },
            self.quality,
        )
    }
}

impl From<AgentOutput> for ItemOutput {
    /// Keeps everything but the quality figures.
    fn from(output: AgentOutput) -> ItemOutput {
        output.into_parts().0
    }
}

/// Why a run failed. The kind drives the recovery chain (see [`AgentError::failure_kind`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// Worth retrying (a rate limit, a flaky network, a crash).
    #[error("transient failure: {message}")]
    Transient {
        /// What happened.
        message: String,
    },
    /// Retrying the same runner will not help.
    #[error("permanent failure: {message}")]
    Permanent {
        /// What happened.
        message: String,
    },
    /// The runner cannot run at all (not installed, not configured, offline).
    #[error("runner unavailable: {message}")]
    Unavailable {
        /// What is missing.
        message: String,
    },
    /// The run stopped because it was cancelled.
    #[error("cancelled: {message}")]
    Cancelled {
        /// Where it stopped.
        message: String,
    },
    /// The run passed its deadline and was stopped.
    #[error("timed out: {message}")]
    TimedOut {
        /// What was running.
        message: String,
    },
    /// The runner's output could not be understood (garbage, missing, or the wrong shape);
    /// a permanent failure.
    #[error("invalid output: {message}")]
    InvalidOutput {
        /// What is wrong, and where.
        message: String,
    },
}

impl AgentError {
    /// A transient failure.
    pub fn transient(message: impl Into<String>) -> AgentError {
        AgentError::Transient {
            message: message.into(),
        }
    }

    /// A permanent failure.
    pub fn permanent(message: impl Into<String>) -> AgentError {
        AgentError::Permanent {
            message: message.into(),
        }
    }

    /// The runner is unavailable.
    pub fn unavailable(message: impl Into<String>) -> AgentError {
        AgentError::Unavailable {
            message: message.into(),
        }
    }

    /// The run was cancelled.
    pub fn cancelled(message: impl Into<String>) -> AgentError {
        AgentError::Cancelled {
            message: message.into(),
        }
    }

    /// The run timed out.
    pub fn timed_out(message: impl Into<String>) -> AgentError {
        AgentError::TimedOut {
            message: message.into(),
        }
    }

    /// The output was not understood.
    pub fn invalid_output(message: impl Into<String>) -> AgentError {
        AgentError::InvalidOutput {
            message: message.into(),
        }
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        match self {
            AgentError::Transient { message }
            | AgentError::Permanent { message }
            | AgentError::Unavailable { message }
            | AgentError::Cancelled { message }
            | AgentError::TimedOut { message }
            | AgentError::InvalidOutput { message } => message,
        }
    }

    /// The failure kind the engine's recovery chain acts on: cancelled runs count as
    /// interrupted (started again, not retried as failures), invalid output as permanent.
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            AgentError::Transient { .. } => FailureKind::Transient,
            AgentError::Permanent { .. } | AgentError::InvalidOutput { .. } => {
                FailureKind::Permanent
            }
            AgentError::Unavailable { .. } => FailureKind::Unavailable,
            AgentError::Cancelled { .. } => FailureKind::Interrupted,
            AgentError::TimedOut { .. } => FailureKind::Timeout,
        }
    }
}

impl From<AgentError> for ItemError {
    fn from(e: AgentError) -> ItemError {
        ItemError {
            kind: e.failure_kind(),
            message: e.to_string(),
        }
    }
}

/// The engine input for how `attempt` of `work` ended ([`Input::Finished`] or
/// [`Input::Failed`]), and the quality figures of a success (empty on a failure).
pub fn result_input(
    work: Work,
    attempt: u32,
    result: Result<AgentOutput, AgentError>,
) -> (Input, BTreeMap<String, f64>) {
    match result {
        Ok(out) => {
            let (output, quality) = out.into_parts();
            (
                Input::Finished {
                    work,
                    attempt,
                    output: output.into(),
                },
                quality,
            )
        }
        Err(e) => (
            Input::Failed {
                work,
                attempt,
                error: e.into(),
            },
            BTreeMap::new(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use milestone_core::ArtifactBody;

    #[test]
    fn each_error_maps_to_its_failure_kind_and_keeps_its_message() {
        fn check(e: AgentError, kind: FailureKind, text: &str) {
            assert_eq!(e.failure_kind(), kind, "{e}");
            assert_eq!(e.message(), "m");
            let item: ItemError = e.into();
            assert_eq!(item.kind, kind);
            assert_eq!(item.message, text);
        }
        check(
            AgentError::transient("m"),
            FailureKind::Transient,
            "transient failure: m",
        );
        check(
            AgentError::permanent("m"),
            FailureKind::Permanent,
            "permanent failure: m",
        );
        check(
            AgentError::unavailable("m"),
            FailureKind::Unavailable,
            "runner unavailable: m",
        );
        check(
            AgentError::cancelled("m"),
            FailureKind::Interrupted,
            "cancelled: m",
        );
        check(
            AgentError::timed_out("m"),
            FailureKind::Timeout,
            "timed out: m",
        );
        check(
            AgentError::invalid_output("m"),
            FailureKind::Permanent,
            "invalid output: m",
        );
    }

    #[test]
    fn results_become_engine_inputs() {
        let work = Work::Planning(milestone_core::engine::AnalysisKind::Scope);
        let (input, quality) = result_input(
            work.clone(),
            1,
            Ok(AgentOutput::new("s").with_quality("q", 2.0)),
        );
        assert_eq!(
            input,
            Input::Finished {
                work: work.clone(),
                attempt: 1,
                output: ItemOutput {
                    summary: "s".into(),
                    ..ItemOutput::default()
                }
                .into()
            }
        );
        assert_eq!(quality.get("q"), Some(&2.0));
        let (input, quality) = result_input(work.clone(), 2, Err(AgentError::timed_out("late")));
        assert_eq!(
            input,
            Input::Failed {
                work,
                attempt: 2,
                error: ItemError {
                    kind: FailureKind::Timeout,
                    message: "timed out: late".into()
                }
            }
        );
        assert!(quality.is_empty());
    }

    #[test]
    fn output_parses_its_documented_shape_and_splits_off_quality() {
        let json = r#"{"summary":"s","artifacts":[{"name":"a","kind":"document","body":{"inline":"x"}},
            {"name":"b","kind":"code","body":{"path":"src/b.rs"}}],"decisions":["d"],"data":{"k":1},
            "quality":{"tests":0.5}}"#;
        let out: AgentOutput = serde_json::from_str(json).unwrap();
        assert_eq!(out.artifacts[1].body, ArtifactBody::Path("src/b.rs".into()));
        let (item, quality) = out.into_parts();
        assert_eq!(item.summary, "s");
        assert_eq!(item.decisions, vec!["d".to_owned()]);
        assert_eq!(item.data, serde_json::json!({"k": 1}));
        assert_eq!(quality.get("tests"), Some(&0.5));
        assert_eq!(
            serde_json::from_str::<AgentOutput>("{}").unwrap(),
            AgentOutput::default()
        );
        assert!(serde_json::from_str::<AgentOutput>(r#"{"sumary":"typo"}"#).is_err());
    }
}
