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
