//! The KIRO strategy lens: what to **K**eep, **I**mprove, **R**emove and **O**riginate, each
//! item mapped to the phase that acts on it.

use serde::{Deserialize, Serialize};

use crate::id::PhaseId;

/// One KIRO item: a statement and the phase that acts on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KiroItem {
    /// What to keep, improve, remove or originate.
    pub description: String,
    /// The phase that acts on it.
    pub phase: PhaseId,
}

impl KiroItem {
    /// An item acted on by `phase`.
    pub fn new(description: impl Into<String>, phase: PhaseId) -> Self {
        KiroItem {
            description: description.into(),
            phase,
        }
    }
}

/// Which KIRO list an item belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KiroCategory {
    /// Keep what works.
    Keep,
    /// Improve what is weak.
    Improve,
    /// Remove what hurts.
    Remove,
    /// Originate what is missing.
    Originate,
}

impl KiroCategory {
    /// All four, in K-I-R-O order.
    pub const ALL: [KiroCategory; 4] = [
        KiroCategory::Keep,
        KiroCategory::Improve,
        KiroCategory::Remove,
        KiroCategory::Originate,
    ];

    /// The lower-case name (`keep`, …).
    pub fn name(self) -> &'static str {
        match self {
            KiroCategory::Keep => "keep",
            KiroCategory::Improve => "improve",
            KiroCategory::Remove => "remove",
            KiroCategory::Originate => "originate",
        }
    }
}

/// The KIRO strategy of a milestone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KiroStrategy {
    /// What to keep.
    #[serde(default)]
    pub keep: Vec<KiroItem>,
    /// What to improve.
    #[serde(default)]
    pub improve: Vec<KiroItem>,
    /// What to remove.
    #[serde(default)]
    pub remove: Vec<KiroItem>,
    /// What to originate.
    #[serde(default)]
    pub originate: Vec<KiroItem>,
}

impl KiroStrategy {
    /// The items of one category.
    pub fn items(&self, category: KiroCategory) -> &[KiroItem] {
        match category {
            KiroCategory::Keep => &self.keep,
            KiroCategory::Improve => &self.improve,
            KiroCategory::Remove => &self.remove,
            KiroCategory::Originate => &self.originate,
        }
    }

    /// Every item with its category, in K-I-R-O order.
    pub fn all(&self) -> impl Iterator<Item = (KiroCategory, &KiroItem)> {
        KiroCategory::ALL
            .into_iter()
            .flat_map(move |c| self.items(c).iter().map(move |i| (c, i)))
    }

    /// Whether no item is defined at all.
    pub fn is_empty(&self) -> bool {
        self.all().next().is_none()
    }

    /// The items acted on by `phase`.
    pub fn for_phase<'a>(
        &'a self,
        phase: &'a str,
    ) -> impl Iterator<Item = (KiroCategory, &'a KiroItem)> + 'a {
        self.all().filter(move |(_, i)| i.phase.as_str() == phase)
    }
}
