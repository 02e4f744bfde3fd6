//! # milestone-state
//!
//! Durable state for `milestone`. A milestone is stored as its **event log** — the source of
//! truth — and its state is the fold of that log ([`milestone_core::MilestoneState::from_events`]).
//! This crate defines the [`StateStore`] trait (with its contract), two stores, the
//! retrying [`update`] helper, and a public conformance suite.
//!
//! ## Choosing a store
//!
//! - [`memory::InMemory`] — always compiled, nothing durable; the reference behaviour. Use it in
//!   tests, examples, and hosts that persist state somewhere else.
//! - [`file::FileStore`] — the embedded default: a directory per milestone with an append-only
//!   `events.jsonl`, snapshots, a checkpoint index, an exported `state.json` and a lock file.
//!   Several processes may share one root: appends are compare-and-swap under a file lock.
//! - Your own (a database, an object store): implement [`StateStore`] and run the functions of
//!   `testing` module (feature `testing`) from your tests, as both stores here do.
//!
//! Both stores are executor-agnostic (no runtime is required; the tests use
//! `futures::executor`). The file store's appends, loads and reads are served by one writer
//! thread per open milestone and awaited through a oneshot channel, so they never block an
//! executor thread; `create`, `list` and opening the store do their (few) file operations on the
//! calling thread.
//!
//! ## File layout
//!
//! ```text
//! <root>/<milestone-id>/{meta.json, events.jsonl, snapshots/<version>.snap,
//!                        checkpoints.json, state.json, lock}
//! ```
//!
//! Each line of `events.jsonl` is `{"seq":N,"last":L,"crc":"xxxxxxxx","event":{…}}` — see
//! [`mod@file`] for the details, recovery rules and security measures.
//!
//! ## Durability guarantees (FileStore)
//!
//! - An append is acknowledged only after its lines are written and `fdatasync`ed; appends that
//!   arrive together are committed as one group with one `fdatasync`.
//! - An append of several events is all or nothing, also across a crash.
//! - Snapshots, `state.json` and `checkpoints.json` are replaced atomically (temp file, fsync,
//!   rename, directory fsync): a crash leaves the old file or the new one.
//! - On open, a torn last line is cut and reported ([`file::FileStore::recoveries`]); damage
//!   anywhere else is a typed [`StoreError::Corrupt`] and nothing is deleted.
//! - Two writers never lose an update: a stale expected version is [`StoreError::Conflict`].
//!
//! These are checked with real processes and real files in `tests/reliability.rs`: a child
//! appending in a loop is killed with SIGKILL 300 times (set `MILESTONE_KILLS` for more), four
//! processes race 250 [`update`]s each, a crash is forced at each named point of
//! [`fault`], a corruption corpus is opened, and a lock holder is killed. The 1,000-kill run:
//!
//! ```text
//! MILESTONE_KILLS=1000 cargo test -p milestone-state --release --test reliability kill_loop -- --nocapture
//! ```
//!
//! ## Example
//!
//! ```
//! use milestone_core::{Event, MilestoneId, Timestamp, Workflow};
//! use milestone_state::{file::FileStore, StateStore, update};
//!
//! let dir = tempfile::tempdir()?;
//! futures::executor::block_on(async {
//!     let store = FileStore::open(dir.path())?;
//!     let id = MilestoneId::new("login")?;
//!     store.create(&Event::Created { at: Timestamp(0), id: id.clone(), title: "Login".into(),
//!         context: String::new(), workflow: Workflow::kiro(), seed: 0 }).await?;
//!     update(&store, &id, |_state, _version| Ok(vec![Event::ExecutionStarted { at: Timestamp(1) }])).await?;
//!     let cp = store.checkpoint(&id, "planned", Timestamp(2)).await?;
//!     assert_eq!(cp.version, 3);
//!     store.restore(&id, "planned", Timestamp(3)).await?;
//!     assert_eq!(store.load(&id).await?.version, 4);
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod error;
pub mod fault;
pub mod file;
pub mod memory;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::StoreError;
pub use file::{FileStore, FileStoreOptions, Recovery, Stats};
pub use memory::InMemory;
pub use store::{Checkpoint, Loaded, StateStore, UPDATE_ATTEMPTS, update};
