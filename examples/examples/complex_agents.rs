//! A large milestone, "Refactor authentication system": high complexity, so the orchestrator
//! runs it with agents and parallel tasks, then compares that with a direct baseline run.
//!
//! ```text
//! cargo run --example complex_agents
//! ```
//!
//! Store and git are in memory: nothing is written to disk.

use std::error::Error;
use std::sync::{Arc, Mutex};

fn main() -> Result<(), Box<dyn Error>> {
    let out: milestone_examples::Out = Arc::new(Mutex::new(std::io::stdout()));
    milestone_examples::complex_agents::run(out)?;
    Ok(())
}
