//! Plugging your own agents in: a runner written by hand, and a shell script driven by a
//! `CommandAgent`, in one milestone.
//!
//! ```text
//! cargo run --example custom_runner
//! ```
//!
//! The script is written to a temporary directory, removed at the end.

use std::error::Error;
use std::sync::{Arc, Mutex};

fn main() -> Result<(), Box<dyn Error>> {
    let scripts = tempfile::tempdir()?;
    let out: milestone_examples::Out = Arc::new(Mutex::new(std::io::stdout()));
    let summary = milestone_examples::custom_runner::run(out, scripts.path())?;
    if summary.state.status() != milestone_core::MilestoneStatus::Completed {
        return Err(format!("the milestone did not complete: {}", summary.state.status()).into());
    }
    Ok(())
}
