//! milestone-state's FileStore: durable append next to a plain write + fdatasync baseline, group
//! commit with 64 concurrent writers, and loading a 100,000-event milestone with and without a
//! snapshot. Files live in the system temp directory (a real disk, not tmpfs, on CI).

use std::fs::OpenOptions;
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use futures::executor::block_on;
use milestone_core::{
    Event, ItemOutput, ItemRef, MilestoneId, TaskId, TaskSpec, Timestamp, Workflow,
};
use milestone_state::StateStore;
use milestone_state::file::{FileStore, FileStoreOptions};

fn created(id: &str) -> Event {
    Event::Created {
        at: Timestamp(0),
        id: MilestoneId::new(id).unwrap(),
        title: "bench".into(),
        context: String::new(),
        workflow: Workflow::kiro(),
        seed: 1,
    }
}

fn note(n: u64) -> Event {
    Event::StrategyChosen {
        at: Timestamp(n),
        strategy: "parallel-independent".into(),
        reason: format!("step {n}"),
    }
}

fn durable_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("store/append");
    g.sample_size(30);

    let store = FileStore::open_with(
        dir.path().join("store"),
        FileStoreOptions::default().snapshot_every(0),
    )
    .unwrap();
    let id = MilestoneId::new("append").unwrap();
    block_on(store.create(&created("append"))).unwrap();
    let line_len = {
        let mut v = 1;
        v = block_on(store.append(&id, v, &[note(v)])).unwrap();
        let log = std::fs::read(dir.path().join("store/append/events.jsonl")).unwrap();
        let last = log[..log.len() - 1]
            .rsplit(|&b| b == b'\n')
            .next()
            .unwrap()
            .len()
            + 1;
        assert_eq!(v, 2);
        last
    };

    // Baseline: the same number of bytes appended to a plain file and fdatasynced.
    let path = dir.path().join("baseline.log");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    let line = vec![b'x'; line_len - 1]
        .into_iter()
        .chain([b'\n'])
        .collect::<Vec<u8>>();
    g.bench_function("baseline write + fdatasync", |b| {
        b.iter(|| {
            file.write_all(&line).unwrap();
            file.sync_data().unwrap();
        })
    });

    let mut version = 2;
    g.bench_function("FileStore::append (1 event, durable)", |b| {
        b.iter(|| {
            version = block_on(store.append(&id, version, &[note(version)])).unwrap();
            black_box(version)
        })
    });
    g.finish();
}

fn group_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open_with(
        dir.path().join("store"),
        FileStoreOptions::default().snapshot_every(0),
    )
    .unwrap();
    let id = MilestoneId::new("fan-out").unwrap();
    block_on(store.create(&created("fan-out"))).unwrap();
    let writers = 64u64;
    let events: Vec<Vec<Event>> = (0..writers).map(|n| vec![note(n)]).collect();
    let mut g = c.benchmark_group("store/group-commit");
    g.sample_size(20);
    g.throughput(Throughput::Elements(writers));
    let mut version = 1u64;
    g.bench_function("64 concurrent appends", |b| {
        b.iter(|| {
            let base = version;
            let calls = events
                .iter()
                .enumerate()
                .map(|(i, e)| store.append(&id, base + i as u64, e));
            let results = block_on(futures::future::join_all(calls));
            version = *results.last().unwrap().as_ref().unwrap();
            black_box(version)
        })
    });
    g.finish();
}

/// 100,000 events: 10,000 tasks added in 100 batches, each started and completed, and notes.
fn big_log(root: &Path, snapshot_at: Option<u64>) -> MilestoneId {
    let store = FileStore::open_with(root, FileStoreOptions::default().snapshot_every(0)).unwrap();
    let id = MilestoneId::new("big").unwrap();
    block_on(store.create(&created("big"))).unwrap();
    let mut events = vec![Event::ExecutionStarted { at: Timestamp(1) }];
    for b in 0..100 {
        let tasks = (0..100)
            .map(|t| TaskSpec::new(TaskId::new(format!("t{b}-{t}")).unwrap(), "a task"))
            .collect();
        events.push(Event::TasksAdded {
            at: Timestamp(2),
            tasks,
        });
    }
    for b in 0..100 {
        for t in 0..100 {
            let item = ItemRef::Task(TaskId::new(format!("t{b}-{t}")).unwrap());
            events.push(Event::ItemStarted {
                at: Timestamp(3),
                item: item.clone(),
                attempt: 1,
            });
            events.push(Event::ItemCompleted {
                at: Timestamp(4),
                item,
                output: ItemOutput::default().into(),
            });
        }
    }
    let mut n = 0;
    while events.len() < 99_999 {
        events.push(note(n));
        n += 1;
    }
    let mut version = 1;
    for chunk in events.chunks(1000) {
        if let Some(at) = snapshot_at
            && version >= at
            && version < at + 1000
        {
            block_on(store.snapshot(&id)).unwrap();
        }
        version = block_on(store.append(&id, version, chunk)).unwrap();
    }
    assert_eq!(version, 100_000);
    id
}

fn load(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    let snapped = dir.path().join("snapped");
    let id = big_log(&plain, None);
    big_log(&snapped, Some(95_000));
    let mut g = c.benchmark_group("store/load-100k");
    g.sample_size(10);
    for (name, root) in [("full replay", &plain), ("snapshot + 5k tail", &snapped)] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || FileStore::open(root).unwrap(),
                |store| {
                    let loaded = block_on(store.load(&id)).unwrap();
                    assert_eq!(loaded.version, 100_000);
                    black_box(loaded.state.tasks().len())
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = durable_append, group_commit, load
}
criterion_main!(benches);
