//! A medium milestone, "Add rate limiting to the public API", run in hybrid mode: design (and
//! spec and task) directly, execution by agents with parallel tasks.
//!
//! ```text
//! cargo run --example hybrid
//! ```
//!
//! The store goes under `target/hybrid/` (kept, so you can look at `events.jsonl` and
//! `state.json`); the git repository is made in a temporary directory and removed at the end.

use std::error::Error;
use std::sync::{Arc, Mutex};

fn main() -> Result<(), Box<dyn Error>> {
    let store_root = milestone_examples::target_dir().join("hybrid");
    let repo = tempfile::tempdir()?;
    let out: milestone_examples::Out = Arc::new(Mutex::new(std::io::stdout()));
    milestone_examples::hybrid::run(out, &store_root, repo.path())?;
    Ok(())
}
