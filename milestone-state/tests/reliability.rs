//! Reliability with real processes and real files: SIGKILL loops, racing writers, named crash
//! points and lock holders. The child is `src/bin/milestone-state-crashtest.rs`.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use milestone_core::{MilestoneId, MilestoneState};
use milestone_state::file::{FileStore, FileStoreOptions, Recovery};
use milestone_state::{StateStore, StoreError, fault, testing};

const BIN: &str = env!("CARGO_BIN_EXE_milestone-state-crashtest");

fn child(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove(fault::CRASH_AT_VAR);
    c
}

/// A small xorshift generator, seeded from the clock (the seed is printed on failure).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn temps_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for d in [dir.to_path_buf(), dir.join("snapshots")] {
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(".tmp-") {
                    out.push(name);
                }
            }
        }
    }
    out
}

#[test]
fn kill_loop_never_loses_an_acknowledged_event() {
    let kills: usize = std::env::var("MILESTONE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let id = MilestoneId::new("kill-1").unwrap();
    let root_s = root.to_str().unwrap();
    let mut acked = 0u64;
    let mut verified = 0u64;
    let mut cuts = 0usize;
    for round in 0..kills {
        let mut c = child(&["append-loop", root_s, "kill-1", "37"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.next() % 25_000));
        c.kill().unwrap();
        let status = c.wait().unwrap();
        let mut out = String::new();
        c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        if status.success() {
            let mut err = String::new();
            c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("round {round}: the child exited by itself: {err}");
        }
        // Only complete lines are acknowledgements.
        let complete = out.rsplit_once('\n').map_or("", |(done, _)| done);
        if let Some(last) = complete.lines().last() {
            let v: u64 = last.parse().unwrap();
            assert!(v >= acked, "seed {seed}: versions went backwards");
            acked = v;
        }
        if !root.join("kill-1").exists() {
            continue; // killed before the milestone was created
        }
        let store = FileStore::open(&root).unwrap();
        let loaded = block_on(store.load(&id))
            .unwrap_or_else(|e| panic!("seed {seed}, round {round}: reopen failed: {e}"));
        assert!(
            loaded.version >= acked,
            "seed {seed}, round {round}: acknowledged {acked}, store holds {}",
            loaded.version
        );
        assert_eq!(loaded.state.events_applied(), loaded.version);
        let tail = block_on(store.read_events(&id, verified)).unwrap();
        assert_eq!(tail.len() as u64, loaded.version - verified);
        // The child appends `note(v - 1)` as event `v`: every event is exactly what was sent.
        for (k, event) in tail.iter().enumerate() {
            let seq = verified + 1 + k as u64;
            if seq > 1 {
                assert_eq!(*event, testing::note(seq - 1), "seed {seed}: event {seq}");
            }
        }
        verified = loaded.version;
        cuts += store
            .recoveries()
            .iter()
            .filter(|r| matches!(r, Recovery::TornTailCut { .. }))
            .count();
    }
    let store = FileStore::open(&root).unwrap();
    let loaded = block_on(store.load(&id)).unwrap();
    let all = block_on(store.read_events(&id, 0)).unwrap();
    assert_eq!(all.len() as u64, loaded.version);
    assert_eq!(MilestoneState::from_events(&all).unwrap(), loaded.state);
    assert!(acked > 0, "no append was ever acknowledged");
    eprintln!(
        "kill loop: {kills} kills, {} events, {acked} acknowledged, {cuts} torn tails cut (seed {seed})",
        loaded.version
    );
}

#[test]
fn four_processes_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let id = MilestoneId::new("race-1").unwrap();
    let store = FileStore::open(&root).unwrap();
    block_on(store.create(&testing::created("race-1"))).unwrap();
    block_on(store.append(&id, 1, &testing::start_design())).unwrap();
    drop(store);
    let root_s = root.to_str().unwrap();
    let children: Vec<Child> = (0..4)
        .map(|_| child(&["update", root_s, "race-1", "250"]).spawn().unwrap())
        .collect();
    let mut seen = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            seen.push(line.parse::<u32>().unwrap());
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=1000).collect::<Vec<u32>>());
    let store = FileStore::open(&root).unwrap();
    let loaded = block_on(store.load(&id)).unwrap();
    assert_eq!(testing::design_progress(&loaded.state), 1000);
    assert_eq!(loaded.version, 3 + 1000);
}

/// Sets up a milestone at version 7 with a snapshot (and `state.json`) at version 5.
fn prepared(root: &Path) -> FileStore {
    let store = FileStore::open(root).unwrap();
    let id = MilestoneId::new("crash-1").unwrap();
    block_on(store.create(&testing::created("crash-1"))).unwrap();
    for v in 1..7 {
        block_on(store.append(&id, v, &[testing::note(v)])).unwrap();
        if v == 4 {
            block_on(store.snapshot(&id)).unwrap();
        }
    }
    store
}

#[test]
fn every_crash_point_leaves_the_old_or_the_new_state() {
    let cases = [
        ("temp-created", "snapshot"),
        ("temp-mid-write", "snapshot"),
        ("temp-before-fsync", "snapshot"),
        ("temp-before-rename", "snapshot"),
        ("after-rename-before-dir-fsync", "snapshot"),
        ("temp-mid-write", "checkpoint"),
        ("append-mid-write", "append"),
        ("append-before-ack", "append"),
        ("snapshot-during", "snapshot"),
        ("snapshot-during", "checkpoint"),
    ];
    for point in fault::POINTS {
        assert!(
            cases.iter().any(|(p, _)| p == point),
            "{point} is not tested"
        );
    }
    let id = MilestoneId::new("crash-1").unwrap();
    for (point, op) in cases {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        drop(prepared(&root));
        let out = child(&["crash", root.to_str().unwrap(), "crash-1", op])
            .env(fault::CRASH_AT_VAR, point)
            .output()
            .unwrap();
        assert!(
            !out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("survived"),
            "{point}/{op}: the crash point was not reached: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let store = FileStore::open(&root).unwrap();
        let loaded = block_on(store.load(&id)).unwrap();
        let allowed: &[u64] = match op {
            "append" => &[7, 10],
            "checkpoint" => &[7, 8],
            _ => &[7],
        };
        assert!(
            allowed.contains(&loaded.version),
            "{point}/{op}: version {} is neither old nor new",
            loaded.version
        );
        let all = block_on(store.read_events(&id, 0)).unwrap();
        assert_eq!(MilestoneState::from_events(&all).unwrap(), loaded.state);
        let mdir = root.join("crash-1");
        assert_eq!(temps_in(&mdir), Vec::<String>::new(), "{point}/{op}");
        let exported = std::fs::read_to_string(mdir.join("state.json")).unwrap();
        let exported = MilestoneState::from_json(&exported).unwrap();
        assert!(
            [5, 7, 8].contains(&exported.events_applied()),
            "{point}/{op}: state.json shows version {}",
            exported.events_applied()
        );
        // The store keeps working after recovery.
        let v = block_on(store.append(&id, loaded.version, &[testing::note(50)])).unwrap();
        assert_eq!(v, loaded.version + 1);
        if point == "append-mid-write" {
            assert!(
                store
                    .recoveries()
                    .iter()
                    .any(|r| matches!(r, Recovery::TornTailCut { .. })),
                "a half-written append was not reported"
            );
        }
    }
}

#[test]
fn a_held_lock_gives_locked_and_a_killed_holder_releases_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let id = MilestoneId::new("lock-1").unwrap();
    let store = FileStore::open_with(
        &root,
        FileStoreOptions::default().lock_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    block_on(store.create(&testing::created("lock-1"))).unwrap();
    let mut holder = child(&["hold-lock", root.to_str().unwrap(), "lock-1"])
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    let start = Instant::now();
    match block_on(store.append(&id, 1, &[testing::note(1)])) {
        Err(StoreError::Locked { waited_ms, .. }) => assert!(waited_ms >= 300),
        other => panic!("expected Locked, got {other:?}"),
    }
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(5));
    assert!(matches!(
        block_on(store.load(&id)),
        Err(StoreError::Locked { .. })
    ));
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(
        block_on(store.append(&id, 1, &[testing::note(1)])).unwrap(),
        2
    );
    assert!(
        root.join("lock-1").join("lock").exists(),
        "the lock file is never deleted"
    );
}
