//! A small milestone, "Add login feature": low complexity, so the orchestrator runs it
//! directly (in-process) and the bound agents are never called.
//!
//! ```text
//! cargo run --example simple_direct
//! ```
//!
//! Store and git are in memory: nothing is written to disk.

use std::error::Error;
use std::sync::{Arc, Mutex};

fn main() -> Result<(), Box<dyn Error>> {
    let out: milestone_examples::Out = Arc::new(Mutex::new(std::io::stdout()));
    milestone_examples::simple_direct::run(out)?;
    Ok(())
}
