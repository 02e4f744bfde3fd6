//! The cost of one phase commit through `CliGit`, which is bound by spawning git processes.
//!
//! * `spawn_floor/git_status`: one `git status` — the cost of a single git process here.
//! * `cli/add_all+commit`: a raw backend commit of one changed file (add, commit, rev-parse).
//! * `cli/commit_phase`: `MilestoneGit::commit_phase` for a new phase on a checked-out milestone
//!   branch (current branch, log for the idempotence check, add, commit, rev-parse); each
//!   iteration uses a fresh milestone branch, created outside the timed section.
//! * `cli/commit_phase_done`: the same call for a phase already committed (the resume path).
//! * `in_memory/commit_phase`: the conventions over `InMemoryGit`, for scale.
//!
//! The number of git processes per operation is printed before measuring.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::executor::block_on;
use milestone_core::{MilestoneId, PhaseId};
use milestone_git::{
    CliGit, CliGitConfig, CommitRequest, GitBackend, Identity, InMemoryGit, MilestoneGit, RefName,
    RepoPath,
};

fn isolated(home: &Path) -> CliGitConfig {
    let global = home.join("gitconfig");
    std::fs::write(&global, b"").expect("global config");
    let identity = Identity::new("Bench", "bench@example.invalid").expect("identity");
    CliGitConfig::default()
        .with_identity(identity)
        .with_date("2005-04-07T22:13:13 +0000")
        .with_env("HOME", home)
        .with_env("GIT_CONFIG_NOSYSTEM", "1")
        .with_env("GIT_CONFIG_GLOBAL", global)
}

fn seeded_cli(dir: &Path, home: &Path) -> CliGit {
    let main = RefName::new("main").expect("main");
    block_on(async {
        let git = CliGit::init(dir, &main, isolated(home))
            .await
            .expect("init");
        git.write_file(&RepoPath::new("README.md").expect("path"), b"bench\n")
            .await
            .expect("write");
        git.add_all().await.expect("add");
        git.commit(&CommitRequest::new("Initial commit"))
            .await
            .expect("commit");
        git
    })
}

fn spawns(git: &CliGit, f: impl FnOnce()) -> u64 {
    let before = git.processes_spawned();
    f();
    git.processes_spawned() - before
}

fn bench_git(c: &mut Criterion) {
    let home = tempfile::tempdir().expect("home");
    let dir = tempfile::tempdir().expect("repo");
    let git = seeded_cli(dir.path(), home.path());
    let file = RepoPath::new("work.txt").expect("path");
    let milestones = MilestoneGit::new(git.clone(), RefName::new("main").expect("main"));
    let id = MilestoneId::new("bench").expect("id");
    let design = PhaseId::new("design").expect("phase");
    let mut n = 0u64;

    // Steady state: a milestone branch that exists and is checked out, a new phase.
    block_on(milestones.start(&id)).expect("start");
    let phase_spawns = spawns(&git, || {
        block_on(milestones.commit_phase(&id, &design, "Bench")).expect("commit_phase");
    });
    let done_spawns = spawns(&git, || {
        block_on(milestones.commit_phase(&id, &design, "Bench")).expect("commit_phase");
    });
    let raw_spawns = spawns(&git, || {
        block_on(async {
            git.write_file(&file, b"x").await.expect("write");
            git.add_all().await.expect("add");
            git.commit(&CommitRequest::new("raw"))
                .await
                .expect("commit");
        })
    });
    println!(
        "git processes: commit_phase (new phase) = {phase_spawns}, commit_phase (already committed) = {done_spawns}, add_all+commit = {raw_spawns}"
    );

    let mut floor = c.benchmark_group("spawn_floor");
    floor.sample_size(20);
    floor.bench_function("git_status", |b| {
        b.iter(|| black_box(block_on(git.status()).expect("status")))
    });
    floor.finish();

    let mut group = c.benchmark_group("cli");
    group.sample_size(20);
    group.bench_function("add_all+commit", |b| {
        b.iter(|| {
            n += 1;
            block_on(async {
                git.write_file(&file, n.to_string().as_bytes())
                    .await
                    .expect("write");
                git.add_all().await.expect("add");
                black_box(
                    git.commit(&CommitRequest::new("raw"))
                        .await
                        .expect("commit"),
                )
            })
        })
    });
    // Each iteration times one phase commit on a fresh milestone branch (created untimed), so
    // the idempotence check reads a realistic, short branch.
    group.bench_function("commit_phase", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let fresh = MilestoneId::new(format!("m{n}")).expect("id");
                block_on(milestones.start(&fresh)).expect("start");
                git_write(&git, &file, n);
                let started = Instant::now();
                black_box(
                    block_on(milestones.commit_phase(&fresh, &design, "Bench")).expect("commit"),
                );
                total += started.elapsed();
            }
            total
        })
    });
    group.bench_function("commit_phase_done", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let fresh = MilestoneId::new(format!("m{n}")).expect("id");
                block_on(milestones.commit_phase(&fresh, &design, "Bench")).expect("commit");
                let started = Instant::now();
                black_box(
                    block_on(milestones.commit_phase(&fresh, &design, "Bench")).expect("done"),
                );
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();

    let memory = block_on(async {
        let git = InMemoryGit::new();
        git.write_file(&RepoPath::new("README.md").expect("path"), b"bench\n")
            .await
            .expect("write");
        git.add_all().await.expect("add");
        git.commit(&CommitRequest::new("Initial commit"))
            .await
            .expect("commit");
        MilestoneGit::new(git, RefName::new("main").expect("main"))
    });
    let mut group = c.benchmark_group("in_memory");
    group.sample_size(20);
    let mut m = 0u64;
    group.bench_function("commit_phase", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                m += 1;
                let fresh = MilestoneId::new(format!("m{m}")).expect("id");
                block_on(memory.start(&fresh)).expect("start");
                let started = Instant::now();
                black_box(block_on(memory.commit_phase(&fresh, &design, "Bench")).expect("commit"));
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();
}

fn git_write(git: &CliGit, file: &RepoPath, n: u64) {
    block_on(git.write_file(file, n.to_string().as_bytes())).expect("write");
}

criterion_group!(benches, bench_git);
criterion_main!(benches);
