//! Runs a milestone described in a JSON spec file, each role bound to a command: how a host
//! wires real LLM command-line tools in.
//!
//! ```text
//! cargo run --example run_spec                                  # examples/specs/shell_agents.json
//! cargo run --example run_spec -- examples/specs/python_agents.json
//! ```
//!
//! The store goes under `target/run_spec/` (kept: read `events.jsonl` and `state.json`).

use std::error::Error;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

fn main() -> Result<(), Box<dyn Error>> {
    let spec = match std::env::args_os().nth(1) {
        Some(path) => PathBuf::from(path),
        // Run from the workspace root or from `examples/`.
        None => {
            let here = PathBuf::from(milestone_examples::run_spec::DEFAULT_SPEC);
            if here.is_file() {
                here
            } else {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("specs/shell_agents.json")
            }
        }
    };
    let store_root = milestone_examples::target_dir().join("run_spec");
    let out: milestone_examples::Out = Arc::new(Mutex::new(std::io::stdout()));
    let summary = milestone_examples::run_spec::run(out, &spec, &store_root)?;
    if summary.state.status() != milestone_core::MilestoneStatus::Completed {
        return Err(format!("the milestone did not complete: {}", summary.state.status()).into());
    }
    Ok(())
}
