//! The main demo: a full KIRO milestone from planning to a tag.
//!
//! ```text
//! cargo run --example kiro_demo
//! ```
//!
//! The store goes under `target/kiro_demo/` (kept, so you can look at `events.jsonl` and
//! `state.json`); the git repository is made in a temporary directory and removed at the end.

use std::error::Error;
use std::sync::{Arc, Mutex};

fn main() -> Result<(), Box<dyn Error>> {
    let store_root = milestone_examples::target_dir().join("kiro_demo");
    let repo = tempfile::tempdir()?;
    let out: milestone_examples::Out = Arc::new(Mutex::new(std::io::stdout()));
    let summary = milestone_examples::kiro_demo::run(out, &store_root, repo.path())?;
    if !summary.completed {
        return Err(format!("the milestone did not complete: {}", summary.state.status()).into());
    }
    Ok(())
}
