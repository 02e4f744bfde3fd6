//! Both stores against the contract in `milestone_state::testing`, directly and through
//! `Arc<dyn StateStore>` / `Box<dyn StateStore>`.

use std::sync::Arc;

use futures::executor::block_on;
use milestone_state::file::{FileStore, FileStoreOptions};
use milestone_state::memory::InMemory;
use milestone_state::{StateStore, testing};

#[test]
fn in_memory_meets_the_contract() {
    block_on(testing::run_all(&InMemory::new()));
}

#[test]
fn in_memory_through_arc_dyn() {
    let store: Arc<dyn StateStore> = Arc::new(InMemory::new());
    block_on(testing::run_all(&store));
}

#[test]
fn in_memory_through_box_dyn() {
    let store: Box<dyn StateStore> = Box::new(InMemory::new());
    block_on(testing::run_all(&store));
}

#[test]
fn file_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    block_on(testing::run_all(&FileStore::open(dir.path()).unwrap()));
}

#[test]
fn file_store_through_arc_dyn() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> = Arc::new(FileStore::open(dir.path()).unwrap());
    block_on(testing::run_all(&store));
}

#[test]
fn file_store_with_frequent_snapshots_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileStoreOptions::default()
        .snapshot_every(2)
        .keep_snapshots(1);
    block_on(testing::run_all(
        &FileStore::open_with(dir.path(), options).unwrap(),
    ));
}

#[test]
fn file_store_under_a_thread_pool_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FileStore::open(dir.path()).unwrap());
    let mut pool = futures::executor::LocalPool::new();
    let s = store.clone();
    pool.run_until(async move { testing::run_all(&s).await });
}

/// The in-memory store answers `append_now` (through the forwarding impls too), so hosts skip
/// the boxed future; the file store, which waits for the disk, leaves it to `append_from`.
#[test]
fn only_the_in_memory_store_appends_without_waiting() {
    let created = testing::created("now-1");
    let id = milestone_core::MilestoneId::new("now-1").unwrap();
    let memory: Arc<dyn StateStore> = Arc::new(InMemory::new());
    block_on(memory.create(&created)).unwrap();
    let mut batch = vec![testing::note(1), testing::note(2)];
    assert_eq!(memory.append_now(&id, 1, &mut batch).unwrap().unwrap(), 3);
    assert!(batch.is_empty());
    assert_eq!(block_on(memory.load(&id)).unwrap().version, 3);

    let dir = tempfile::tempdir().unwrap();
    let file = FileStore::open(dir.path()).unwrap();
    block_on(file.create(&created)).unwrap();
    let mut batch = vec![testing::note(1)];
    assert!(file.append_now(&id, 1, &mut batch).is_none());
    assert_eq!(batch.len(), 1);
    assert_eq!(block_on(file.load(&id)).unwrap().version, 1);
}

/// Two writers never lose an update through `append_now` either: threads appending with
/// compare-and-swap, each retrying on a conflict from the version it then reads, only ever
/// append right after the version they read, and leave every event in the log exactly once.
#[test]
fn append_now_from_many_threads_loses_nothing() {
    let store = Arc::new(InMemory::new());
    let id = milestone_core::MilestoneId::new("now-threads").unwrap();
    block_on(store.create(&testing::created("now-threads"))).unwrap();
    let (threads, each) = (4u64, 200u64);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (store, id) = (Arc::clone(&store), id.clone());
            std::thread::spawn(move || {
                for k in 0..each {
                    loop {
                        let v = block_on(store.read_events(&id, 0)).unwrap().len() as u64;
                        let mut batch = vec![testing::note(t * each + k + 1)];
                        match store.append_now(&id, v, &mut batch).unwrap() {
                            // Appended right after the version this writer read, or not at all.
                            Ok(next) => {
                                assert_eq!(next, v + 1);
                                break;
                            }
                            Err(milestone_state::StoreError::Conflict { .. }) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let log = block_on(store.read_events(&id, 1)).unwrap();
    assert_eq!(log.len() as u64, threads * each);
    let mut notes: Vec<_> = log.iter().map(|e| format!("{e:?}")).collect();
    notes.sort();
    notes.dedup();
    assert_eq!(notes.len() as u64, threads * each, "every event once");
}
