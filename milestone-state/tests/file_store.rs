//! FileStore beyond the shared contract: the corruption corpus, recovery reports, permissions,
//! links, limits, several instances on one root, and a model check against `InMemory`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use milestone_core::{Event, MilestoneId, MilestoneState};
use milestone_state::file::{FileStore, FileStoreOptions, Recovery};
use milestone_state::memory::InMemory;
use milestone_state::{StateStore, StoreError, testing};
use proptest::prelude::*;

/// A scratch directory on a RAM file system when there is one: these tests are about parsing
/// and recovery logic, and thousands of fsyncs on a shared disk would only make them slow.
/// (Durability itself is tested on a real disk in `reliability.rs`.)
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

fn mid(s: &str) -> MilestoneId {
    MilestoneId::new(s).unwrap()
}

/// A milestone `m` with batches of 1, 3, 1 and 2 events after `Created` (versions 1, 2, 5, 6,
/// 8), no snapshot. Returns the store root and the log's bytes.
fn template(dir: &Path) -> (PathBuf, Vec<u8>) {
    let root = dir.join("template");
    let store = FileStore::open(&root).unwrap();
    let id = mid("m");
    block_on(store.create(&testing::created("m"))).unwrap();
    let mut v = 1;
    for n in [1u64, 3, 1, 2] {
        let batch: Vec<Event> = (0..n).map(|k| testing::note(v * 10 + k)).collect();
        v = block_on(store.append(&id, v, &batch)).unwrap();
    }
    drop(store);
    let log = fs::read(root.join("m/events.jsonl")).unwrap();
    (root, log)
}

/// Versions at which an append ends, with the byte offset where it ends.
fn boundaries(log: &[u8]) -> Vec<(u64, usize)> {
    let mut out = vec![(0, 0)];
    let mut offset = 0;
    for line in log.split_inclusive(|&b| b == b'\n') {
        offset += line.len();
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        if v["seq"] == v["last"] {
            out.push((v["seq"].as_u64().unwrap(), offset));
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Opens a copy of the template whose log is `log`; returns the load result, the recoveries and
/// the log's bytes afterwards.
fn open_with_log(
    template: &Path,
    work: &Path,
    log: &[u8],
) -> (Result<u64, StoreError>, Vec<Recovery>, Vec<u8>) {
    let _ = fs::remove_dir_all(work);
    copy_dir(template, work);
    fs::write(work.join("m/events.jsonl"), log).unwrap();
    let store = FileStore::open(work).unwrap();
    let result = block_on(store.load(&mid("m"))).map(|l| {
        assert_eq!(l.state.events_applied(), l.version);
        l.version
    });
    let recoveries = store.recoveries();
    drop(store);
    let after = fs::read(work.join("m/events.jsonl")).unwrap();
    (result, recoveries, after)
}

#[test]
fn truncation_at_every_byte_keeps_whole_appends_only() {
    let dir = scratch();
    let (template, log) = template(dir.path());
    let bounds = boundaries(&log);
    let first_line = bounds[1].1;
    let work = dir.path().join("work");
    for cut in 0..=log.len() {
        let (result, recoveries, after) = open_with_log(&template, &work, &log[..cut]);
        if cut < first_line {
            assert!(
                matches!(result, Err(StoreError::Corrupt { .. })),
                "cut at {cut}: {result:?}"
            );
            assert_eq!(
                after,
                &log[..cut],
                "cut at {cut}: a corrupt log was changed"
            );
            continue;
        }
        let &(version, end) = bounds.iter().rev().find(|(_, end)| *end <= cut).unwrap();
        assert_eq!(result.unwrap(), version, "cut at {cut}");
        assert_eq!(after, &log[..end], "cut at {cut}");
        assert_eq!(
            recoveries
                .iter()
                .any(|r| matches!(r, Recovery::TornTailCut { .. })),
            end != cut,
            "cut at {cut}: recovery report"
        );
    }
}

#[test]
fn bit_flips_are_cut_at_the_tail_and_corrupt_elsewhere() {
    let dir = scratch();
    let (template, log) = template(dir.path());
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(
            log.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .collect();
    let lines = line_starts.len() - 1;
    let work = dir.path().join("work");
    for i in 0..log.len() {
        let mut damaged = log.clone();
        damaged[i] ^= 1 << (i % 8);
        let line = line_starts.iter().rposition(|&s| s <= i).unwrap() + 1;
        let (result, _, after) = open_with_log(&template, &work, &damaged);
        match result {
            Ok(version) => {
                // Only damage in the last line (or the newline before it) may be cut.
                assert!(
                    line + 1 >= lines,
                    "byte {i} (line {line}) was cut, not reported"
                );
                assert!((5..8).contains(&version), "byte {i}: version {version}");
                assert!(damaged.starts_with(&after));
            }
            Err(StoreError::Corrupt { position, file, .. }) => {
                assert!(file.ends_with("events.jsonl"));
                assert_eq!(position, format!("line {line}"), "byte {i}");
                assert_eq!(after, damaged, "byte {i}: a corrupt log was changed");
            }
            Err(other) => panic!("byte {i}: unexpected {other}"),
        }
    }
}

#[test]
fn zeroed_empty_and_oversized_logs_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (template, log) = template(dir.path());
    let work = dir.path().join("work");
    let check = |bytes: &[u8], position: &str| {
        let (result, _, after) = open_with_log(&template, &work, bytes);
        match result {
            Err(StoreError::Corrupt { position: p, .. }) => assert_eq!(p, position),
            other => panic!("expected Corrupt at {position}, got {other:?}"),
        }
        assert_eq!(after.len(), bytes.len(), "nothing is deleted");
    };
    check(&vec![0u8; log.len()], "line 1");
    check(b"", "whole file");
    check(b"\n\n\n", "line 1");
    check(b"not json at all\nmore\n", "line 1");

    // A zeroed tail is a torn write: cut back to the last whole append.
    let mut tail = log.clone();
    let n = tail.len();
    tail[n - 40..].fill(0);
    let (result, recoveries, _) = open_with_log(&template, &work, &tail);
    assert_eq!(result.unwrap(), 6);
    assert!(matches!(recoveries[0], Recovery::TornTailCut { .. }));

    // A 100 MB line (whole, or torn at the end) is refused without reading it all.
    let mut huge = log.clone();
    huge.extend_from_slice(b"{\"seq\":9,\"last\":9,\"crc\":\"00000000\",\"event\":\"");
    huge.resize(huge.len() + (100 << 20), b'x');
    let mut with_newline = huge.clone();
    with_newline.extend_from_slice(b"\"}\n");
    let lines_before = log.iter().filter(|&&b| b == b'\n').count();
    check(&with_newline, &format!("line {}", lines_before + 1));
    check(&huge, &format!("line {}", lines_before + 1));
}

#[test]
fn newer_schema_versions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (template, log) = template(dir.path());
    let work = dir.path().join("work");
    copy_dir(&template, &work);
    fs::write(work.join("m/meta.json"), r#"{"schema_version":2,"id":"m"}"#).unwrap();
    let store = FileStore::open(&work).unwrap();
    assert!(matches!(
        block_on(store.load(&mid("m"))),
        Err(StoreError::UnsupportedSchema {
            found: 2,
            supported: 1,
            ..
        })
    ));
    drop(store);

    // A snapshot from a newer version is refused too, not silently skipped.
    let _ = fs::remove_dir_all(&work);
    copy_dir(&template, &work);
    fs::write(work.join("m/events.jsonl"), &log).unwrap();
    let store = FileStore::open(&work).unwrap();
    block_on(store.snapshot(&mid("m"))).unwrap();
    drop(store);
    let snap = work.join("m/snapshots").join(format!("{:020}.snap", 8));
    let text = fs::read_to_string(&snap).unwrap();
    fs::write(
        &snap,
        text.replacen("\"schema_version\":1", "\"schema_version\":99", 1),
    )
    .unwrap();
    let store = FileStore::open(&work).unwrap();
    assert!(matches!(
        block_on(store.load(&mid("m"))),
        Err(StoreError::UnsupportedSchema { found: 99, .. })
    ));
}

#[test]
fn a_corrupt_snapshot_falls_back_to_an_older_one_or_a_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let id = mid("snap-m");
    let store = FileStore::open(&root).unwrap();
    block_on(store.create(&testing::created("snap-m"))).unwrap();
    let mut v = 1;
    for n in 0..6 {
        v = block_on(store.append(&id, v, &[testing::note(n)])).unwrap();
        if n == 2 || n == 4 {
            block_on(store.snapshot(&id)).unwrap();
        }
    }
    let expected = block_on(store.load(&id)).unwrap();
    drop(store);
    let snaps = root.join("snap-m/snapshots");
    let mut files: Vec<PathBuf> = fs::read_dir(&snaps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2);
    for (k, damage) in [(1usize, "flip"), (0, "truncate")] {
        let bytes = fs::read(&files[k]).unwrap();
        let damaged = if damage == "flip" {
            let mut b = bytes.clone();
            let n = b.len();
            b[n - 10] ^= 0x04;
            b
        } else {
            bytes[..bytes.len() / 2].to_vec()
        };
        fs::write(&files[k], &damaged).unwrap();
        let store = FileStore::open(&root).unwrap();
        assert_eq!(
            block_on(store.load(&id)).unwrap(),
            expected,
            "after {damage}"
        );
        let skipped = store
            .recoveries()
            .iter()
            .filter(|r| matches!(r, Recovery::SnapshotSkipped { .. }))
            .count();
        assert_eq!(skipped, if k == 1 { 1 } else { 2 }, "after {damage}");
        assert!(files[k].exists(), "a corrupt snapshot is not deleted");
    }
}

#[test]
fn files_are_private_and_links_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/store");
    let store = FileStore::open(&root).unwrap();
    let id = mid("sec-1");
    block_on(store.create(&testing::created("sec-1"))).unwrap();
    block_on(store.checkpoint(&id, "cp", milestone_core::Timestamp(3))).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root), 0o700);
    let m = root.join("sec-1");
    assert_eq!(mode(&m), 0o700);
    assert_eq!(mode(&m.join("snapshots")), 0o700);
    for f in [
        "events.jsonl",
        "meta.json",
        "lock",
        "state.json",
        "checkpoints.json",
    ] {
        assert_eq!(mode(&m.join(f)), 0o600, "{f}");
    }
    for e in fs::read_dir(m.join("snapshots")).unwrap() {
        assert_eq!(mode(&e.unwrap().path()), 0o600);
    }
    drop(store);

    // A link in place of the log is refused, and the file it points to is not touched.
    let outside = dir.path().join("outside.jsonl");
    fs::write(&outside, b"secret\n").unwrap();
    fs::rename(m.join("events.jsonl"), dir.path().join("saved.jsonl")).unwrap();
    std::os::unix::fs::symlink(&outside, m.join("events.jsonl")).unwrap();
    let store = FileStore::open(&root).unwrap();
    assert!(matches!(
        block_on(store.load(&id)),
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(fs::read(&outside).unwrap(), b"secret\n");

    // A milestone directory that is a link is refused; so is a root that is a link.
    std::os::unix::fs::symlink(&m, root.join("sec-2")).unwrap();
    assert!(matches!(
        block_on(store.load(&mid("sec-2"))),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(!block_on(store.list()).unwrap().contains(&mid("sec-2")));
    let link_root = dir.path().join("link-root");
    std::os::unix::fs::symlink(&root, &link_root).unwrap();
    assert!(matches!(
        FileStore::open(&link_root),
        Err(StoreError::InvalidInput { .. })
    ));
}

#[test]
fn stray_temp_files_are_removed_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = FileStore::open(&root).unwrap();
    let id = mid("tmp-1");
    block_on(store.create(&testing::created("tmp-1"))).unwrap();
    drop(store);
    let stray = root.join("tmp-1/.tmp-state.json-4242-0");
    let stray_snap = root.join("tmp-1/snapshots/.tmp-x.snap-4242-1");
    fs::write(&stray, b"half").unwrap();
    fs::write(&stray_snap, b"half").unwrap();
    let store = FileStore::open(&root).unwrap();
    assert_eq!(block_on(store.load(&id)).unwrap().version, 1);
    assert!(!stray.exists() && !stray_snap.exists());
    let removed = store
        .recoveries()
        .into_iter()
        .filter(|r| matches!(r, Recovery::TempRemoved { .. }))
        .count();
    assert_eq!(removed, 2);
}

#[test]
fn limits_refuse_oversized_events_and_ids_cannot_escape() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        FileStore::open_with(dir.path(), FileStoreOptions::default().max_line_bytes(4096)).unwrap();
    let id = mid("lim-1");
    block_on(store.create(&testing::created("lim-1"))).unwrap();
    let big = Event::StrategyChosen {
        at: milestone_core::Timestamp(2),
        strategy: "x".repeat(5000),
        reason: String::new(),
    };
    assert!(matches!(
        block_on(store.append(&id, 1, &[big])),
        Err(StoreError::InvalidInput { .. })
    ));
    assert_eq!(block_on(store.load(&id)).unwrap().version, 1);
    for bad in ["../x", "a/b", ".hidden", "-rf", "a..b", ""] {
        assert!(MilestoneId::new(bad).is_err(), "{bad:?} must not be an id");
    }
}

#[test]
fn two_instances_on_one_root_see_each_other_and_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let a = FileStore::open(dir.path()).unwrap();
    let b = FileStore::open(dir.path()).unwrap();
    let id = mid("two-1");
    block_on(a.create(&testing::created("two-1"))).unwrap();
    assert!(matches!(
        block_on(b.create(&testing::created("two-1"))),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(block_on(b.load(&id)).unwrap().version, 1);
    block_on(a.append(&id, 1, &[testing::note(1)])).unwrap();
    assert!(matches!(
        block_on(b.append(&id, 1, &[testing::note(2)])),
        Err(StoreError::Conflict { actual: 2, .. })
    ));
    assert_eq!(block_on(b.append(&id, 2, &[testing::note(2)])).unwrap(), 3);
    assert_eq!(block_on(a.load(&id)).unwrap().version, 3);
    block_on(b.delete(&id)).unwrap();
    assert!(matches!(
        block_on(a.load(&id)),
        Err(StoreError::NotFound { .. })
    ));
    block_on(b.create(&testing::created("two-1"))).unwrap();
    assert_eq!(block_on(a.load(&id)).unwrap().version, 1);
}

#[derive(Debug, Clone)]
enum Op {
    Append(u8),
    Refused(u8),
    Stale,
    Snapshot,
    Checkpoint,
    Restore,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..4).prop_map(Op::Append),
        1 => (0u8..3).prop_map(Op::Refused),
        1 => Just(Op::Stale),
        1 => Just(Op::Snapshot),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Restore),
        1 => Just(Op::Reopen),
    ]
}

fn kind(r: &Result<u64, StoreError>) -> String {
    match r {
        Ok(v) => format!("ok {v}"),
        Err(StoreError::Conflict { actual, .. }) => format!("conflict {actual}"),
        Err(StoreError::InvalidInput { .. }) => "invalid".into(),
        Err(StoreError::NotFound { .. }) => "not found".into(),
        Err(e) => format!("other {e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of operations gives the same answers, log and state on the file store
    /// (reopened at random points, snapshotting every few events) as on the in-memory one.
    #[test]
    fn file_store_behaves_like_in_memory(ops in proptest::collection::vec(op(), 1..24)) {
        let dir = scratch();
        let options = FileStoreOptions::default().snapshot_every(3);
        let mut file = FileStore::open_with(dir.path(), options.clone()).unwrap();
        let mem = InMemory::new();
        let id = mid("model");
        let at = milestone_core::Timestamp(100);
        block_on(async {
            prop_assert_eq!(file.create(&testing::created("model")).await.unwrap(), 1);
            mem.create(&testing::created("model")).await.unwrap();
            for (n, op) in ops.iter().enumerate() {
                let v = mem.load(&id).await.unwrap().version;
                let (a, b) = match op {
                    Op::Append(k) => {
                        let batch: Vec<Event> = (0..*k).map(|j| testing::note(n as u64 * 10 + u64::from(j))).collect();
                        (file.append(&id, v, &batch).await, mem.append(&id, v, &batch).await)
                    }
                    Op::Refused(at_index) => {
                        let mut batch = vec![testing::note(1), testing::note(2)];
                        batch.insert(usize::from(*at_index), testing::refused_event());
                        (file.append(&id, v, &batch).await, mem.append(&id, v, &batch).await)
                    }
                    Op::Stale => (
                        file.append(&id, v - 1, &[testing::note(0)]).await,
                        mem.append(&id, v - 1, &[testing::note(0)]).await,
                    ),
                    Op::Snapshot => (file.snapshot(&id).await, mem.snapshot(&id).await),
                    Op::Checkpoint => (
                        file.checkpoint(&id, "cp", at).await.map(|c| c.version),
                        mem.checkpoint(&id, "cp", at).await.map(|c| c.version),
                    ),
                    Op::Restore => (file.restore(&id, "cp", at).await, mem.restore(&id, "cp", at).await),
                    Op::Reopen => {
                        drop(std::mem::replace(&mut file, FileStore::open_with(dir.path(), options.clone()).unwrap()));
                        continue;
                    }
                };
                prop_assert_eq!(kind(&a), kind(&b), "op {} {:?}", n, op);
            }
            prop_assert_eq!(file.load(&id).await.unwrap(), mem.load(&id).await.unwrap());
            prop_assert_eq!(file.read_events(&id, 0).await.unwrap(), mem.read_events(&id, 0).await.unwrap());
            prop_assert_eq!(file.checkpoints(&id).await.unwrap(), mem.checkpoints(&id).await.unwrap());
            let reopened = FileStore::open(dir.path()).unwrap();
            prop_assert_eq!(reopened.load(&id).await.unwrap(), mem.load(&id).await.unwrap());
            Ok(())
        })?;
    }
}

#[test]
fn events_fold_to_the_loaded_state_after_restore_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let id = mid("fold-1");
    block_on(testing::checkpoints_and_restore(&store));
    block_on(store.create(&testing::created("fold-1"))).unwrap();
    drop(store);
    let store = FileStore::open(dir.path()).unwrap();
    let cp = mid("cp-1");
    let all = block_on(store.read_events(&cp, 0)).unwrap();
    assert_eq!(
        MilestoneState::from_events(&all).unwrap(),
        block_on(store.load(&cp)).unwrap().state
    );
    assert_eq!(block_on(store.checkpoints(&cp)).unwrap().len(), 3);
    assert_eq!(block_on(store.load(&id)).unwrap().version, 1);
}

/// A call never gets another call's `Locked` answer: each waits its own lock timeout, counted
/// from when it was made, and a call made after a `Locked` answer tries the lock itself. (The
/// holder is another open file description in this process: `flock` makes it a stranger.)
#[test]
fn each_call_waits_for_the_lock_on_its_own() {
    let dir = scratch();
    let timeout = Duration::from_millis(300);
    let store = FileStore::open_with(
        dir.path(),
        FileStoreOptions::default().lock_timeout(timeout),
    )
    .unwrap();
    let id = mid("lk-1");
    block_on(store.create(&testing::created("lk-1"))).unwrap();
    let holder = fs::File::open(dir.path().join("lk-1").join("lock")).unwrap();
    holder.lock().unwrap();
    let timed_load = || {
        let start = Instant::now();
        let r = block_on(store.load(&id)).map(|l| l.version);
        (r, start.elapsed())
    };
    // The second call is made while the writer waits for the lock on behalf of the first.
    let (first, second) = std::thread::scope(|s| {
        let first = s.spawn(timed_load);
        std::thread::sleep(timeout / 2);
        let second = timed_load();
        (first.join().unwrap(), second)
    });
    for (name, (result, took)) in [("first", first), ("second", second)] {
        match result {
            Err(StoreError::Locked { waited_ms, .. }) => {
                assert!(waited_ms >= 300, "{name} call: waited_ms {waited_ms}")
            }
            other => panic!("{name} call: expected Locked, got {other:?}"),
        }
        assert!(
            took >= timeout,
            "{name} call answered Locked after {took:?}"
        );
    }
    // Released right after a `Locked` answer, the lock is taken by the very next call.
    let quick = FileStore::open_with(
        dir.path(),
        FileStoreOptions::default().lock_timeout(Duration::from_millis(10)),
    )
    .unwrap();
    let mut v = 1;
    for round in 0..25 {
        assert!(
            matches!(block_on(quick.load(&id)), Err(StoreError::Locked { .. })),
            "round {round}"
        );
        holder.unlock().unwrap();
        v = block_on(quick.append(&id, v, &[testing::note(v)]))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        holder.lock().unwrap();
    }
    assert_eq!(v, 26);
}

#[test]
fn a_burst_of_appends_shares_fdatasyncs() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let id = mid("burst-1");
    block_on(store.create(&testing::created("burst-1"))).unwrap();
    let batches: Vec<Vec<Event>> = (0..64u64).map(|n| vec![testing::note(n)]).collect();
    for round in 0..3u64 {
        let base = 1 + round * 64;
        let calls = batches
            .iter()
            .enumerate()
            .map(|(i, b)| store.append(&id, base + i as u64, b));
        for (i, r) in block_on(futures::future::join_all(calls))
            .into_iter()
            .enumerate()
        {
            assert_eq!(r.unwrap(), base + 1 + i as u64);
        }
    }
    let stats = store.stats();
    eprintln!("burst: {stats:?}");
    assert_eq!((stats.appends, stats.events), (192, 192));
    assert!(
        stats.groups <= 6,
        "192 concurrent appends took {} fdatasyncs",
        stats.groups
    );
}

#[test]
fn a_full_log_refuses_appends_and_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileStoreOptions::default().max_file_bytes(4096);
    let store = FileStore::open_with(dir.path(), options.clone()).unwrap();
    let id = mid("full-1");
    block_on(store.create(&testing::created("full-1"))).unwrap();
    let mut version = 1;
    let refused = loop {
        match block_on(store.append(&id, version, &[testing::note(version)])) {
            Ok(v) => version = v,
            Err(e) => break e,
        }
        assert!(version < 100, "the limit was never reached");
    };
    assert!(
        matches!(refused, StoreError::InvalidInput { .. }),
        "{refused}"
    );
    let len = fs::metadata(dir.path().join("full-1/events.jsonl"))
        .unwrap()
        .len();
    assert!(len <= 4096);
    drop(store);
    let store = FileStore::open_with(dir.path(), options).unwrap();
    assert_eq!(block_on(store.load(&id)).unwrap().version, version);
}
