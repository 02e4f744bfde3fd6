//! A run cut off mid-way and resumed by a fresh orchestrator, with no phase done twice.
//!
//! ```text
//! cargo run --example resume
//! ```
//!
//! The store goes under `target/resume/` (kept, so you can read `events.jsonl`: the log both
//! sessions wrote); the git repository is made in a temporary directory, removed at the end.

use std::error::Error;
use std::sync::{Arc, Mutex};

fn main() -> Result<(), Box<dyn Error>> {
    let store_root = milestone_examples::target_dir().join("resume");
    let repo = tempfile::tempdir()?;
    let out: milestone_examples::Out = Arc::new(Mutex::new(std::io::stdout()));
    let summary = milestone_examples::resume::run(out, &store_root, repo.path())?;
    if summary.state.status() != milestone_core::MilestoneStatus::Completed {
        return Err(format!("the milestone did not complete: {}", summary.state.status()).into());
    }
    Ok(())
}
