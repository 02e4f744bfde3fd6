//! Complexity assessment and the direct / hybrid / agents decision.

use serde::{Deserialize, Serialize};

/// How complex a milestone is.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Complexity {
    /// Low.
    #[default]
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
}
