//! The [`StateStore`] contract as code (feature `testing`; not a stable API).
//!
//! Every function takes a fresh, empty store and checks one part of the contract, panicking
//! with a message on the first violation. An implementation's tests call [`run_all`] — or each
//! function — for its store, and again through `Arc<dyn StateStore>`:
//!
//! ```
//! use std::sync::Arc;
//! use milestone_state::{memory::InMemory, testing, StateStore};
//!
//! futures::executor::block_on(testing::run_all(&InMemory::new()));
//! let shared: Arc<dyn StateStore> = Arc::new(InMemory::new());
//! futures::executor::block_on(testing::run_all(&shared));
//! ```

use milestone_core::{
    Event, ItemRef, MilestoneId, MilestoneState, PhaseId, Progress, Timestamp, Workflow,
};

use crate::error::StoreError;
use crate::store::{StateStore, update};

/// The `Created` event of a milestone named `id` (panics on an invalid id).
pub fn created(id: &str) -> Event {
    Event::Created {
        at: Timestamp(1),
        id: MilestoneId::new(id).expect("a valid test id"),
        title: format!("Milestone {id}"),
        context: String::new(),
        workflow: Workflow::kiro(),
        seed: 7,
    }
}

/// An event that always applies to an active milestone: a strategy choice tagged with `n`.
pub fn note(n: u64) -> Event {
    Event::StrategyChosen {
        at: Timestamp(10 + n),
        strategy: "sequential".into(),
        reason: format!("note {n}"),
    }
}

/// An event that never applies: it starts a phase that does not exist.
pub fn refused_event() -> Event {
    Event::ItemStarted {
        at: Timestamp(5),
        item: ItemRef::Phase(PhaseId::new("no-such-phase").expect("valid")),
        attempt: 1,
    }
}

/// The events that put phase `design` in progress (after `Created`), so that
/// [`progress_event`] applies.
pub fn start_design() -> Vec<Event> {
    vec![
        Event::ExecutionStarted { at: Timestamp(2) },
        Event::ItemStarted {
            at: Timestamp(3),
            item: ItemRef::Phase(PhaseId::new("design").expect("valid")),
            attempt: 1,
        },
    ]
}

/// Raises the progress of phase `design` to `basis_points` (a counter that only goes up).
pub fn progress_event(basis_points: u32) -> Event {
    Event::ItemProgressed {
        at: Timestamp(4),
        item: ItemRef::Phase(PhaseId::new("design").expect("valid")),
        progress: Progress::from_basis_points(basis_points),
    }
}

/// The progress of phase `design` in basis points.
pub fn design_progress(state: &MilestoneState) -> u16 {
    state
        .phase("design")
        .map_or(0, |p| p.item.progress.basis_points())
}

fn id(s: &str) -> MilestoneId {
    MilestoneId::new(s).expect("a valid test id")
}

/// Runs every check of this module, each on its own milestone ids.
pub async fn run_all<S: StateStore + ?Sized>(store: &S) {
    create_and_load(store).await;
    append_is_compare_and_swap(store).await;
    refused_events_write_nothing(store).await;
    read_events_from_any_position(store).await;
    appends_from_a_buffer_behave_as_appends(store).await;
    checkpoints_and_restore(store).await;
    snapshots_do_not_change_what_loads(store).await;
    pipelined_appends_keep_call_order(store).await;
    refused_batch_among_pipelined_appends(store).await;
    update_propagates_errors(store).await;
    concurrent_updates_lose_nothing(store).await;
    list_and_delete(store).await;
}

/// Create gives version 1; a second create is `AlreadyExists`; only `Created` creates; unknown
/// ids are `NotFound`.
pub async fn create_and_load<S: StateStore + ?Sized>(store: &S) {
    assert_eq!(store.create(&created("c-1")).await.expect("create"), 1);
    let loaded = store.load(&id("c-1")).await.expect("load");
    assert_eq!(loaded.version, 1);
    assert_eq!(loaded.state.title(), "Milestone c-1");
    assert_eq!(
        loaded.state,
        MilestoneState::from_events([&created("c-1")]).expect("fold")
    );
    assert!(matches!(
        store.create(&created("c-1")).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        store.create(&note(1)).await,
        Err(StoreError::InvalidInput { .. })
    ));
    assert!(matches!(
        store.load(&id("c-missing")).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.append(&id("c-missing"), 1, &[note(1)]).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Appends need the current version; a stale one is `Conflict` and writes nothing; batches get
/// consecutive versions; an empty batch writes nothing.
pub async fn append_is_compare_and_swap<S: StateStore + ?Sized>(store: &S) {
    let m = id("cas-1");
    store.create(&created("cas-1")).await.expect("create");
    assert_eq!(store.append(&m, 1, &[note(1)]).await.expect("append"), 2);
    assert_eq!(
        store
            .append(&m, 2, &[note(2), note(3), note(4)])
            .await
            .expect("batch"),
        5
    );
    match store.append(&m, 2, &[note(5)]).await {
        Err(StoreError::Conflict {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (2, 5)),
        other => panic!("stale append gave {other:?}"),
    }
    assert!(matches!(
        store.append(&m, 9, &[note(5)]).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.append(&m, 5, &[]).await.expect("empty"), 5);
    assert!(matches!(
        store.append(&m, 4, &[]).await,
        Err(StoreError::Conflict { .. })
    ));
    let loaded = store.load(&m).await.expect("load");
    assert_eq!(loaded.version, 5);
    assert_eq!(loaded.state.strategy(), Some("sequential"));
    assert_eq!(loaded.state.events_applied(), 5);
}

/// A batch with an event that does not apply is `InvalidInput` and leaves log and state as
/// they were — also when the refused event is not the first.
pub async fn refused_events_write_nothing<S: StateStore + ?Sized>(store: &S) {
    let m = id("refuse-1");
    store.create(&created("refuse-1")).await.expect("create");
    store.append(&m, 1, &[note(1)]).await.expect("append");
    let before = store.load(&m).await.expect("load");
    for batch in [
        vec![refused_event()],
        vec![note(2), refused_event()],
        vec![note(2), note(3), refused_event(), note(4)],
        vec![created("refuse-1")],
    ] {
        assert!(
            matches!(
                store.append(&m, 2, &batch).await,
                Err(StoreError::InvalidInput { .. })
            ),
            "batch of {} was not refused",
            batch.len()
        );
        let after = store.load(&m).await.expect("load");
        assert_eq!(after, before, "a refused batch changed the milestone");
        assert_eq!(store.read_events(&m, 0).await.expect("read").len(), 2);
    }
    assert_eq!(store.append(&m, 2, &[note(9)]).await.expect("append"), 3);
}

/// `append_from` is `append`: compare-and-swap, all-or-nothing, the same log read back from
/// any position, with batches of every size mixed with borrowed appends; and it leaves the
/// caller's buffer empty, whatever happened. `append_now`, when the store answers it, is
/// `append_from`; when it does not, nothing happened and the buffer is untouched.
pub async fn appends_from_a_buffer_behave_as_appends<S: StateStore + ?Sized>(store: &S) {
    let m = id("owned-1");
    let mut all = vec![created("owned-1")];
    store.create(&all[0]).await.expect("create");
    let mut n = 0u64;
    for (k, size) in [1usize, 40, 3, 100, 0, 31, 32, 2, 64]
        .into_iter()
        .enumerate()
    {
        let batch: Vec<Event> = (0..size)
            .map(|_| {
                n += 1;
                note(n)
            })
            .collect();
        let v = all.len() as u64;
        let got = if k % 3 == 2 {
            store.append(&m, v, &batch).await
        } else {
            let mut buffer = batch.clone();
            let now = if k % 3 == 1 {
                store.append_now(&m, v, &mut buffer)
            } else {
                None
            };
            let got = match now {
                Some(got) => got,
                None => {
                    assert_eq!(buffer.len(), size, "nothing was taken without an answer");
                    store.append_from(&m, v, &mut buffer).await
                }
            };
            assert!(buffer.is_empty(), "the events were taken");
            got
        };
        assert_eq!(got.expect("append"), v + size as u64);
        all.extend(batch);
    }
    let v = all.len() as u64;
    let mut stale = vec![note(0)];
    assert!(matches!(
        store.append_from(&m, v - 1, &mut stale).await,
        Err(StoreError::Conflict { .. })
    ));
    let mut refused = vec![note(0), refused_event()];
    assert!(matches!(
        store.append_from(&m, v, &mut refused).await,
        Err(StoreError::InvalidInput { .. })
    ));
    assert!(stale.is_empty() && refused.is_empty());
    // The same refusals from `append_now`, when the store answers it.
    let mut stale = vec![note(0)];
    if let Some(got) = store.append_now(&m, v - 1, &mut stale) {
        assert!(matches!(got, Err(StoreError::Conflict { .. })));
        assert!(stale.is_empty());
    } else {
        assert_eq!(stale.len(), 1);
    }
    let mut refused = vec![note(0), refused_event()];
    if let Some(got) = store.append_now(&m, v, &mut refused) {
        assert!(matches!(got, Err(StoreError::InvalidInput { .. })));
        assert!(refused.is_empty());
    } else {
        assert_eq!(refused.len(), 2);
    }
    for from in [0, 1, 2, 40, 41, 44, 143, 144, 200, all.len() as u64] {
        let read = store.read_events(&m, from).await.expect("read");
        assert_eq!(read, all[from as usize..], "read from {from}");
    }
    let loaded = store.load(&m).await.expect("load");
    assert_eq!(loaded.version, v);
    assert_eq!(
        loaded.state,
        MilestoneState::from_events(&all).expect("fold")
    );
}

/// Reads return exactly the events appended, from any position; folding them gives the loaded
/// state.
pub async fn read_events_from_any_position<S: StateStore + ?Sized>(store: &S) {
    let m = id("read-1");
    let mut all = vec![created("read-1")];
    store.create(&all[0]).await.expect("create");
    for n in 0..20u64 {
        let batch: Vec<Event> = (0..(n % 3 + 1)).map(|k| note(n * 10 + k)).collect();
        let v = all.len() as u64;
        store.append(&m, v, &batch).await.expect("append");
        all.extend(batch);
    }
    for from in [0, 1, 2, 7, 20, all.len() as u64 - 1] {
        let got = store.read_events(&m, from).await.expect("read");
        assert_eq!(got, all[from as usize..], "read from {from}");
    }
    assert!(
        store
            .read_events(&m, all.len() as u64)
            .await
            .expect("read")
            .is_empty()
    );
    assert!(
        store
            .read_events(&m, u64::MAX)
            .await
            .expect("read")
            .is_empty()
    );
    let loaded = store.load(&m).await.expect("load");
    assert_eq!(loaded.version, all.len() as u64);
    assert_eq!(
        loaded.state,
        MilestoneState::from_events(&all).expect("fold")
    );
}

/// A checkpoint names a position; restoring appends `RolledBack` with the state there and keeps
/// history; the latest checkpoint of a repeated label wins; bad labels are refused.
pub async fn checkpoints_and_restore<S: StateStore + ?Sized>(store: &S) {
    let m = id("cp-1");
    store.create(&created("cp-1")).await.expect("create");
    store.append(&m, 1, &start_design()).await.expect("start");
    let cp = store
        .checkpoint(&m, "started", Timestamp(20))
        .await
        .expect("checkpoint");
    assert_eq!(cp.version, 4);
    assert_eq!(cp.label, "started");
    let at_cp = store.load(&m).await.expect("load").state;
    store
        .append(&m, 4, &[progress_event(500)])
        .await
        .expect("progress");
    let cp2 = store
        .checkpoint(&m, "half", Timestamp(21))
        .await
        .expect("checkpoint");
    store
        .append(&m, cp2.version, &[progress_event(900)])
        .await
        .expect("progress");
    let list = store.checkpoints(&m).await.expect("list");
    assert_eq!(list, vec![cp.clone(), cp2.clone()]);

    let v = store
        .restore(&m, "started", Timestamp(30))
        .await
        .expect("restore");
    assert_eq!(v, 8);
    let restored = store.load(&m).await.expect("load");
    assert_eq!(restored.version, 8);
    assert_eq!(design_progress(&restored.state), 0);
    assert_eq!(restored.state.rollbacks(), 1);
    assert_eq!(restored.state.phases(), at_cp.phases());
    let log = store.read_events(&m, 0).await.expect("read");
    assert_eq!(log.len(), 8, "history is kept");
    assert!(matches!(log[7], Event::RolledBack { .. }));
    assert_eq!(
        MilestoneState::from_events(&log).expect("fold"),
        restored.state
    );

    // The same label again: the latest wins.
    store
        .append(&m, 8, &[progress_event(300)])
        .await
        .expect("progress");
    let again = store
        .checkpoint(&m, "started", Timestamp(40))
        .await
        .expect("checkpoint");
    store
        .append(&m, again.version, &[progress_event(700)])
        .await
        .expect("progress");
    let v = store
        .restore(&m, "started", Timestamp(41))
        .await
        .expect("restore");
    assert_eq!(
        design_progress(&store.load(&m).await.expect("load").state),
        300
    );
    assert_eq!(store.load(&m).await.expect("load").version, v);

    assert!(matches!(
        store.restore(&m, "never", Timestamp(50)).await,
        Err(StoreError::NotFound { .. })
    ));
    for bad in ["", "a\nb", &"x".repeat(crate::error::MAX_LABEL_LEN + 1)] {
        assert!(matches!(
            store.checkpoint(&m, bad, Timestamp(50)).await,
            Err(StoreError::InvalidInput { .. })
        ));
    }
    assert!(matches!(
        store.checkpoint(&id("cp-missing"), "x", Timestamp(1)).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Snapshots do not change what loads or reads return, before or after more appends.
pub async fn snapshots_do_not_change_what_loads<S: StateStore + ?Sized>(store: &S) {
    let m = id("snap-1");
    let mut all = vec![created("snap-1")];
    store.create(&all[0]).await.expect("create");
    for n in 0..10u64 {
        store
            .append(&m, all.len() as u64, &[note(n)])
            .await
            .expect("append");
        all.push(note(n));
        if n % 4 == 0 {
            let before = store.load(&m).await.expect("load");
            assert_eq!(store.snapshot(&m).await.expect("snapshot"), before.version);
            assert_eq!(store.load(&m).await.expect("load"), before);
        }
    }
    assert_eq!(store.read_events(&m, 0).await.expect("read"), all);
    assert_eq!(store.read_events(&m, 6).await.expect("read"), all[6..]);
    assert_eq!(
        store.load(&m).await.expect("load").state,
        MilestoneState::from_events(&all).expect("fold")
    );
    assert!(matches!(
        store.snapshot(&id("snap-missing")).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Appends issued together from one task, each expecting the version the previous one makes,
/// are served in call order and all succeed.
pub async fn pipelined_appends_keep_call_order<S: StateStore + ?Sized>(store: &S) {
    let m = id("pipe-1");
    store.create(&created("pipe-1")).await.expect("create");
    let batches: Vec<Vec<Event>> = (0..32u64).map(|n| vec![note(n)]).collect();
    let calls = batches
        .iter()
        .enumerate()
        .map(|(i, b)| store.append(&m, 1 + i as u64, b));
    let results = futures::future::join_all(calls).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.expect("pipelined append"), 2 + i as u64);
    }
    let log = store.read_events(&m, 1).await.expect("read");
    assert_eq!(log, batches.concat());
}

/// Concurrent [`update`]s of one counter each see a distinct value and none is lost.
pub async fn concurrent_updates_lose_nothing<S: StateStore + ?Sized>(store: &S) {
    let m = id("upd-1");
    store.create(&created("upd-1")).await.expect("create");
    store.append(&m, 1, &start_design()).await.expect("start");
    let one = || {
        let m = m.clone();
        async move {
            let mut seen = 0;
            update(store, &m, |state, _| {
                seen = u32::from(design_progress(state)) + 1;
                Ok(vec![progress_event(seen)])
            })
            .await
            .expect("update");
            seen
        }
    };
    let mut seen = futures::future::join_all((0..40).map(|_| one())).await;
    seen.sort_unstable();
    assert_eq!(seen, (1..=40).collect::<Vec<u32>>());
    assert_eq!(
        design_progress(&store.load(&m).await.expect("load").state),
        40
    );
}

/// `list` is sorted and complete; `delete` removes a milestone, which may then be created again.
pub async fn list_and_delete<S: StateStore + ?Sized>(store: &S) {
    for name in ["zz-del", "aa-del", "mm-del"] {
        store.create(&created(name)).await.expect("create");
    }
    let listed = store.list().await.expect("list");
    let ours: Vec<&str> = listed
        .iter()
        .map(MilestoneId::as_str)
        .filter(|s| s.ends_with("-del"))
        .collect();
    assert_eq!(ours, ["aa-del", "mm-del", "zz-del"]);
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted);

    let m = id("mm-del");
    store.append(&m, 1, &[note(1)]).await.expect("append");
    store.delete(&m).await.expect("delete");
    assert!(matches!(
        store.load(&m).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete(&m).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(!store.list().await.expect("list").contains(&m));
    assert_eq!(
        store.create(&created("mm-del")).await.expect("re-create"),
        1
    );
    assert_eq!(store.load(&m).await.expect("load").version, 1);
}

/// A batch refused half-way, issued together with valid appends before and after it, leaves
/// exactly the valid ones in the log.
pub async fn refused_batch_among_pipelined_appends<S: StateStore + ?Sized>(store: &S) {
    let m = id("pipe-2");
    store.create(&created("pipe-2")).await.expect("create");
    let first = [note(1)];
    let bad = [note(2), note(3), refused_event()];
    let after = [note(4), note(5)];
    let (a, b, c) = futures::join!(
        store.append(&m, 1, &first),
        store.append(&m, 2, &bad),
        store.append(&m, 2, &after),
    );
    assert_eq!(a.expect("first"), 2);
    assert!(matches!(b, Err(StoreError::InvalidInput { .. })), "{b:?}");
    assert_eq!(c.expect("after"), 4);
    let log = store.read_events(&m, 1).await.expect("read");
    assert_eq!(log, [note(1), note(4), note(5)]);
    let mut all = vec![created("pipe-2")];
    all.extend(log);
    assert_eq!(
        store.load(&m).await.expect("load").state,
        MilestoneState::from_events(&all).expect("fold")
    );
}

/// [`update`] returns what its closure returns, appends nothing for an empty decision, and
/// reports an unknown milestone.
pub async fn update_propagates_errors<S: StateStore + ?Sized>(store: &S) {
    let m = id("upd-2");
    store.create(&created("upd-2")).await.expect("create");
    let r = update(store, &m, |_, _| Err(StoreError::invalid("no"))).await;
    assert!(matches!(r, Err(StoreError::InvalidInput { .. })));
    assert_eq!(
        update(store, &m, |_, _| Ok(vec![])).await.expect("no-op"),
        1
    );
    let r = update(store, &m, |_, _| Ok(vec![refused_event()])).await;
    assert!(matches!(r, Err(StoreError::InvalidInput { .. })));
    assert!(matches!(
        update(store, &id("upd-missing"), |_, _| Ok(vec![note(1)])).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.load(&m).await.expect("load").version, 1);
}
