//! Child process for the reliability tests of milestone-state (built only with the
//! `fault-injection` and `testing` features).
//!
//! ```text
//! milestone-state-crashtest append-loop <root> <id> <snapshot-every>   # prints each acknowledged version
//! milestone-state-crashtest update <root> <id> <count>                 # prints each counter value it wrote
//! milestone-state-crashtest crash <root> <id> append|snapshot|checkpoint  # with MILESTONE_CRASH_AT set
//! milestone-state-crashtest hold-lock <root> <id>                      # prints "locked", then sleeps
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use futures::executor::block_on;
use milestone_core::{MilestoneId, Timestamp};
use milestone_state::file::{FileStore, FileStoreOptions};
use milestone_state::{StateStore, StoreError, testing, update};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crashtest {args:?}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let [mode, root, id, rest @ ..] = args else {
        return Err("usage: MODE ROOT ID [ARG]".into());
    };
    let mid = MilestoneId::new(id)?;
    let arg = rest.first().map(String::as_str).unwrap_or("");
    let mut out = std::io::stdout().lock();
    match mode.as_str() {
        "append-loop" => {
            let every: u64 = arg.parse()?;
            let store =
                FileStore::open_with(root, FileStoreOptions::default().snapshot_every(every))?;
            match block_on(store.create(&testing::created(id))) {
                Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let mut version = block_on(store.load(&mid))?.version;
            loop {
                let n = version % 3 + 1;
                let batch: Vec<_> = (0..n).map(|k| testing::note(version + k)).collect();
                version = block_on(store.append(&mid, version, &batch))?;
                writeln!(out, "{version}")?;
                out.flush()?;
            }
        }
        "update" => {
            let count: u32 = arg.parse()?;
            let store = FileStore::open(root)?;
            for _ in 0..count {
                let mut seen = 0;
                block_on(update(&store, &mid, |state, _| {
                    seen = u32::from(testing::design_progress(state)) + 1;
                    Ok(vec![testing::progress_event(seen)])
                }))?;
                writeln!(out, "{seen}")?;
            }
            out.flush()?;
        }
        "crash" => {
            let store = FileStore::open(root)?;
            let version = block_on(store.load(&mid))?.version;
            match arg {
                "append" => {
                    let batch: Vec<_> = (0..3).map(|k| testing::note(version + k)).collect();
                    block_on(store.append(&mid, version, &batch))?;
                }
                "snapshot" => {
                    block_on(store.snapshot(&mid))?;
                }
                "checkpoint" => {
                    block_on(store.checkpoint(&mid, "crash", Timestamp(99)))?;
                }
                other => return Err(format!("unknown operation {other}").into()),
            }
            writeln!(out, "survived")?;
        }
        "hold-lock" => {
            let file = std::fs::File::open(std::path::Path::new(root).join(id).join("lock"))?;
            file.lock()?;
            writeln!(out, "locked")?;
            out.flush()?;
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        other => return Err(format!("unknown mode {other}").into()),
    }
    Ok(())
}
