//! The least hosts of the engine, for the benchmarks that split the orchestrator's cost into
//! its layers: [`drive`] answers the engine's starts and does nothing else; [`drive_stored`]
//! also appends each step's events to a store before carrying out its commands, as any
//! durable host must. Both answer every start with an empty output, oldest start first (as the
//! floor's `FuturesUnordered` completes its no-op futures, and as the orchestrator finishes
//! in-process runs).
//!
//! ```
//! use milestone_benches::{hosts, workloads};
//! use milestone_core::MilestoneId;
//! use milestone_core::engine::{Engine, EngineConfig};
//! use milestone_state::{InMemory, StateStore};
//!
//! let w = workloads::w2();
//! let log = w.execution_log()?;
//! let config = EngineConfig { max_concurrency: 64, ..EngineConfig::default() };
//!
//! let mut engine = Engine::resume(&log, config.clone())?;
//! assert_eq!(hosts::drive(&mut engine)?, 2_000);
//!
//! let store = InMemory::new();
//! let id = MilestoneId::new("bench")?;
//! futures::executor::block_on(async {
//!     store.create(&log[0]).await?;
//!     store.append(&id, 1, &log[1..]).await
//! })?;
//! let mut engine = Engine::resume(&log, config)?;
//! let version = hosts::drive_stored(&mut engine, &store, &id, log.len() as u64)?;
//! // Started and completed, for each task.
//! assert!(version >= log.len() as u64 + 2 * 2_000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::error::Error;

use milestone_core::engine::{Command, Engine, Input, StartMode, Step, Work};
use milestone_core::{CompactOutput, MilestoneId, Timestamp};
use milestone_state::StateStore;

/// The time every input is handled at: the drivers have no clock.
const NOW: Timestamp = Timestamp(1);

/// Drives `engine` from the start of execution until it has nothing left to start, answering
/// one start at a time; returns how many starts it answered. The events are dropped.
///
/// # Errors
/// The engine's error, if it refuses an input.
pub fn drive(engine: &mut Engine) -> Result<usize, Box<dyn Error>> {
    let mut step = Step::default();
    let mut queue: VecDeque<(Work, u32)> = VecDeque::with_capacity(64);
    let mut started = 0;
    engine.handle_into(Input::Start(StartMode::Execution), NOW, &mut step)?;
    loop {
        for c in step.commands.drain(..) {
            if let Command::Start(s) = c {
                started += 1;
                queue.push_back((s.work, s.attempt));
            }
        }
        let Some((work, attempt)) = queue.pop_front() else {
            break;
        };
        engine.handle_into(
            Input::Finished {
                work,
                attempt,
                output: CompactOutput::default(),
            },
            NOW,
            &mut step,
        )?;
    }
    Ok(started)
}

/// Drives `engine` as [`drive`] does, but as a durable host would: the events of each step
/// are appended to milestone `id` of `store` (at `version`, the length of the log the engine
/// was built from) before its starts are answered, and the answers to one step's starts are
/// handled together as the next step (one append for all, like the orchestrator's batches).
/// Returns the version the log ends at.
///
/// # Errors
/// The engine's error, if it refuses an input; the store's, if it refuses an append.
pub fn drive_stored(
    engine: &mut Engine,
    store: &dyn StateStore,
    id: &MilestoneId,
    mut version: u64,
) -> Result<u64, Box<dyn Error>> {
    let mut step = Step::default();
    let mut answers: Vec<Input> = Vec::with_capacity(64);
    engine.handle_into(Input::Start(StartMode::Execution), NOW, &mut step)?;
    loop {
        // An in-memory store answers at once (`append_now`, as the orchestrator asks first);
        // another store's append is awaited (`block_on` polls it first, so an append that is
        // ready costs no wait).
        version = match store.append_now(id, version, &mut step.events) {
            Some(v) => v?,
            None => futures::executor::block_on(store.append_from(id, version, &mut step.events))?,
        };
        for c in step.commands.drain(..) {
            if let Command::Start(s) = c {
                answers.push(Input::Finished {
                    work: s.work,
                    attempt: s.attempt,
                    output: CompactOutput::default(),
                });
            }
        }
        if answers.is_empty() {
            return Ok(version);
        }
        for input in answers.drain(..) {
            engine.handle_append(input, NOW, &mut step)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::{self, engine_config as config};
    use milestone_core::MilestoneStatus;
    use milestone_state::{FileStore, InMemory};

    #[test]
    fn drive_runs_every_task_once() -> Result<(), Box<dyn Error>> {
        for w in workloads::all() {
            let mut engine = Engine::resume(&w.execution_log()?, config())?;
            assert_eq!(drive(&mut engine)?, w.len(), "{}", w.name);
            assert_eq!(engine.state().status(), MilestoneStatus::Completed);
        }
        Ok(())
    }

    /// The stored log is the engine's: loading it gives the engine's (completed) state, at
    /// least two events per task later; over the in-memory store and over a file store.
    #[test]
    fn drive_stored_leaves_the_engines_log_in_the_store() -> Result<(), Box<dyn Error>> {
        let dir = tempfile::tempdir()?;
        let id = MilestoneId::new("bench")?;
        let w = workloads::w3();
        let log = w.execution_log()?;
        let stores: [Box<dyn StateStore>; 2] = [
            Box::new(InMemory::new()),
            Box::new(FileStore::open(dir.path())?),
        ];
        for store in stores {
            futures::executor::block_on(async {
                store.create(&log[0]).await?;
                store.append(&id, 1, &log[1..]).await
            })?;
            let mut engine = Engine::resume(&log, config())?;
            let version = drive_stored(&mut engine, &*store, &id, log.len() as u64)?;
            let loaded = futures::executor::block_on(store.load(&id))?;
            assert_eq!(loaded.version, version);
            assert_eq!(loaded.state.status(), MilestoneStatus::Completed);
            assert_eq!(loaded.state, *engine.state());
            assert!(version >= (log.len() + 2 * w.len()) as u64);
        }
        Ok(())
    }
}
