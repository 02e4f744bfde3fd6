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
