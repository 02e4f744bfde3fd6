//! The conformance suite every [`GitBackend`] is held to (feature `testing`; **not a stable
//! API**).
//!
//! Each function takes a backend on a **fresh, empty repository whose unborn branch is
//! `main`** and panics with a message when the backend breaks the contract. A backend's tests
//! call every function, each on its own fresh repository; [`InMemoryGit`](crate::InMemoryGit)
//! and [`CliGit`](crate::CliGit) are both run through all of them. Where the backends may
//! legitimately differ, the difference is an argument ([`Capabilities`]), never a skipped case.

use crate::backend::{
    CommitRequest, FastForward, GitBackend, LogRange, MergeOptions, MergeOutcome, Trailer,
};
use crate::conventions::has_conflict_markers;
use crate::error::GitError;
use crate::names::{CommitId, RefName, RepoPath, Revision};

/// What a backend can do beyond the common contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Merges edits to different lines of one file cleanly (git does; the in-memory model
    /// merges by whole file and reports a conflict).
    pub line_level_merge: bool,
}

impl Capabilities {
    /// What the real git program does.
    pub const GIT: Capabilities = Capabilities {
        line_level_merge: true,
    };
    /// What [`InMemoryGit`](crate::InMemoryGit) does.
    pub const IN_MEMORY: Capabilities = Capabilities {
        line_level_merge: false,
    };
}

/// Every conformance function, by name, for a test that runs them all.
pub const ALL: [&str; 9] = [
    "first_commit",
    "branches",
    "status_and_add",
    "messages_and_trailers",
    "tags",
    "merges",
    "conflicts",
    "log_ranges",
    "switch_with_local_changes",
];

/// Runs the conformance function called `name` (one of [`ALL`]) on `git`.
///
/// # Panics
/// When `name` is unknown or the backend breaks the contract.
pub async fn run(name: &str, git: &dyn GitBackend, caps: Capabilities) {
    match name {
        "first_commit" => first_commit(git).await,
        "branches" => branches(git).await,
        "status_and_add" => status_and_add(git).await,
        "messages_and_trailers" => messages_and_trailers(git).await,
        "tags" => tags(git).await,
        "merges" => merges(git).await,
        "conflicts" => conflicts(git, caps).await,
        "log_ranges" => log_ranges(git).await,
        "switch_with_local_changes" => switch_with_local_changes(git).await,
        other => panic!("unknown conformance function {other:?}"),
    }
}

/// A [`CliGitConfig`](crate::CliGitConfig) isolated from the machine: `HOME` is `home`, the
/// system config is off (`GIT_CONFIG_NOSYSTEM=1`), the global config is an empty file created
/// in `home`, the identity is `Milestone Test <milestone@example.invalid>` and the date fixed
/// at `2005-04-07T22:13:13 +0000`. Tests pass with it on a machine with no git identity.
///
/// # Errors
/// When the empty global config file cannot be created.
pub fn isolated_config(home: &std::path::Path) -> std::io::Result<crate::CliGitConfig> {
    let global = home.join("gitconfig");
    std::fs::write(&global, b"")?;
    let identity = crate::Identity::new("Milestone Test", "milestone@example.invalid")
        .map_err(std::io::Error::other)?;
    Ok(crate::CliGitConfig::default()
        .with_identity(identity)
        .with_date("2005-04-07T22:13:13 +0000")
        .with_env("HOME", home)
        .with_env("XDG_CONFIG_HOME", home)
        .with_env("GIT_CONFIG_NOSYSTEM", "1")
        .with_env("GIT_CONFIG_GLOBAL", &global))
}

fn path(p: &str) -> RepoPath {
    RepoPath::new(p).expect("valid test path")
}

fn name(n: &str) -> RefName {
    RefName::new(n).expect("valid test ref name")
}

fn rev(r: &str) -> Revision {
    Revision::new(r).expect("valid test revision")
}

async fn write(git: &dyn GitBackend, p: &str, contents: &str) {
    git.write_file(&path(p), contents.as_bytes())
        .await
        .expect("write_file");
}

async fn read(git: &dyn GitBackend, p: &str) -> Option<String> {
    git.read_file(&path(p))
        .await
        .expect("read_file")
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

async fn commit_all(git: &dyn GitBackend, message: &str) -> CommitId {
    git.add_all().await.expect("add_all");
    git.commit(&CommitRequest::new(message))
        .await
        .expect("commit")
}

/// Unborn branch, first commit, `NothingToCommit`, `allow_empty`, head and log.
pub async fn first_commit(git: &dyn GitBackend) {
    assert_eq!(
        git.head().await.expect("head"),
        None,
        "an empty repository has no HEAD"
    );
    assert_eq!(
        git.current_branch().await.expect("current_branch"),
        Some(name("main"))
    );
    assert!(git.status().await.expect("status").is_clean());
    assert_eq!(
        git.commit(&CommitRequest::new("empty")).await,
        Err(GitError::NothingToCommit),
        "nothing staged"
    );
    assert!(matches!(
        git.resolve(&Revision::head()).await,
        Err(GitError::RefNotFound { .. })
    ));
    write(git, "README.md", "hello\n").await;
    let first = commit_all(git, "Initial commit").await;
    assert_eq!(git.head().await.expect("head"), Some(first.clone()));
    assert_eq!(git.resolve(&rev("main")).await.expect("resolve"), first);
    assert!(git.status().await.expect("status").is_clean());
    assert_eq!(
        git.commit(&CommitRequest::new("again")).await,
        Err(GitError::NothingToCommit)
    );
    let empty = git
        .commit(&CommitRequest::new("Empty on purpose").allow_empty(true))
        .await
        .expect("allow_empty commit");
    assert_ne!(empty, first);
    assert_eq!(git.resolve(&rev("HEAD~1")).await.expect("HEAD~1"), first);
    assert_eq!(git.resolve(&rev("HEAD^")).await.expect("HEAD^"), first);
    assert!(matches!(
        git.resolve(&rev("HEAD~2")).await,
        Err(GitError::RefNotFound { .. })
    ));
    let log = git
        .log(&LogRange::all(Revision::head()))
        .await
        .expect("log");
    let ids: Vec<&CommitId> = log.iter().map(|e| &e.id).collect();
    assert_eq!(ids, vec![&empty, &first], "newest first");
    assert_eq!(log[1].summary, "Initial commit");
    assert_eq!(
        git.merge_in_progress().await.expect("merge_in_progress"),
        None
    );
}

/// Create, exist, switch, resolve; `AlreadyExists` and `RefNotFound`.
pub async fn branches(git: &dyn GitBackend) {
    write(git, "a.txt", "main\n").await;
    let root = commit_all(git, "root").await;
    let feature = name("feature/x");
    assert!(!git.branch_exists(&feature).await.expect("branch_exists"));
    assert_eq!(
        git.create_branch(&feature, &Revision::head())
            .await
            .expect("create"),
        root
    );
    assert!(git.branch_exists(&feature).await.expect("branch_exists"));
    assert_eq!(
        git.current_branch().await.expect("current_branch"),
        Some(name("main")),
        "create_branch does not switch"
    );
    assert_eq!(
        git.create_branch(&feature, &Revision::head()).await,
        Err(GitError::AlreadyExists {
            name: "feature/x".into()
        })
    );
    assert_eq!(
        git.create_branch(&name("other"), &rev("nosuch")).await,
        Err(GitError::RefNotFound {
            name: "nosuch".into()
        })
    );
    assert!(
        !git.branch_exists(&name("other"))
            .await
            .expect("branch_exists")
    );
    assert!(matches!(
        git.switch(&name("nosuch")).await,
        Err(GitError::RefNotFound { .. })
    ));
    git.switch(&feature).await.expect("switch");
    assert_eq!(
        git.current_branch().await.expect("current_branch"),
        Some(feature.clone())
    );
    write(git, "a.txt", "feature\n").await;
    write(git, "dir/b.txt", "new\n").await;
    let tip = commit_all(git, "on feature").await;
    assert_eq!(
        git.resolve(&Revision::branch(&feature))
            .await
            .expect("resolve"),
        tip
    );
    git.switch(&name("main")).await.expect("switch back");
    assert_eq!(read(git, "a.txt").await.as_deref(), Some("main\n"));
    assert_eq!(
        read(git, "dir/b.txt").await,
        None,
        "files of the other branch are gone"
    );
    assert!(git.status().await.expect("status").is_clean());
    assert_eq!(
        git.resolve(&rev("feature/x~1")).await.expect("resolve"),
        root
    );
    assert_eq!(
        git.resolve(&rev("nosuch")).await,
        Err(GitError::RefNotFound {
            name: "nosuch".into()
        })
    );
}

/// Changed, untracked and deleted paths; staging paths; a missing path.
pub async fn status_and_add(git: &dyn GitBackend) {
    write(git, "keep.txt", "1\n").await;
    write(git, "gone.txt", "1\n").await;
    commit_all(git, "root").await;
    write(git, "keep.txt", "2\n").await;
    write(git, "sub/new.txt", "n\n").await;
    assert!(
        git.remove_file(&path("gone.txt"))
            .await
            .expect("remove_file")
    );
    assert!(
        !git.remove_file(&path("never.txt"))
            .await
            .expect("remove_file")
    );
    let s = git.status().await.expect("status");
    assert_eq!(s.changed, vec!["gone.txt", "keep.txt"]);
    assert_eq!(s.untracked, vec!["sub/new.txt"]);
    assert!(s.conflicted.is_empty());
    git.add(&[path("sub/new.txt")]).await.expect("add");
    let s = git.status().await.expect("status");
    assert_eq!(
        s.changed,
        vec!["gone.txt", "keep.txt", "sub/new.txt"],
        "staged counts as changed"
    );
    assert!(s.untracked.is_empty());
    assert!(matches!(
        git.add(&[path("missing.txt")]).await,
        Err(GitError::Other { .. })
    ));
    git.add(&[]).await.expect("adding nothing is fine");
    let id = git
        .commit(&CommitRequest::new("partial"))
        .await
        .expect("commit");
    let s = git.status().await.expect("status");
    assert_eq!(
        s.changed,
        vec!["gone.txt", "keep.txt"],
        "only the staged path was committed"
    );
    assert_eq!(git.head().await.expect("head"), Some(id));
    git.add_all().await.expect("add_all");
    git.commit(&CommitRequest::new("rest"))
        .await
        .expect("commit");
    assert!(git.status().await.expect("status").is_clean());
}

/// Free-text messages reach the commit intact; trailers come back from the log.
pub async fn messages_and_trailers(git: &dyn GitBackend) {
    write(git, "f", "x\n").await;
    git.add_all().await.expect("add_all");
    let message =
        "-x --upload-pack=evil \"quoted\" 'single' $(rm -rf /)\n\nbody line\n-- not a trailer";
    let request = CommitRequest::new(message)
        .trailer(Trailer::new("Milestone", "m-1").expect("trailer"))
        .trailer(Trailer::new("Milestone-Phase", "design").expect("trailer"));
    let id = git.commit(&request).await.expect("commit");
    let log = git
        .log(&LogRange::all(Revision::head()))
        .await
        .expect("log");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].id, id);
    assert_eq!(
        log[0].summary,
        "-x --upload-pack=evil \"quoted\" 'single' $(rm -rf /)"
    );
    assert_eq!(log[0].trailer("Milestone"), Some("m-1"));
    assert_eq!(log[0].trailer("Milestone-Phase"), Some("design"));
    assert_eq!(log[0].trailers.len(), 2);
    let two_lines = CommitRequest::new("first\nsecond\n\nbody").allow_empty(true);
    git.commit(&two_lines).await.expect("commit");
    let log = git
        .log(&LogRange::all(Revision::head()))
        .await
        .expect("log");
    assert_eq!(
        log[0].summary, "first second",
        "the summary is the first paragraph"
    );
    assert!(log[0].trailers.is_empty());
    for bad in ["", " \n\t", "nul\0inside"] {
        assert!(
            matches!(
                git.commit(&CommitRequest::new(bad).allow_empty(true)).await,
                Err(GitError::InvalidName { .. })
            ),
            "message {bad:?}"
        );
    }
    let nul = MergeOptions {
        message: "a\0b".into(),
        fast_forward: FastForward::Never,
    };
    assert!(matches!(
        git.merge(&Revision::head(), &nul).await,
        Err(GitError::InvalidName { .. })
    ));
    assert!(Trailer::new("Bad Key", "v").is_err());
    assert!(Trailer::new("Key", "two\nlines").is_err());
}

/// Annotated tags: create, resolve (peeled), duplicate, missing target.
pub async fn tags(git: &dyn GitBackend) {
    write(git, "f", "x\n").await;
    let first = commit_all(git, "first").await;
    let tag = name("milestone/m-1");
    git.tag(&tag, &Revision::head(), "Milestone m-1 complete")
        .await
        .expect("tag");
    git.commit(&CommitRequest::new("later").allow_empty(true))
        .await
        .expect("commit");
    assert_eq!(
        git.resolve(&Revision::tag(&tag))
            .await
            .expect("resolve tag"),
        first
    );
    assert_eq!(
        git.resolve(&Revision::from(&tag))
            .await
            .expect("resolve short"),
        first
    );
    assert_eq!(
        git.tag(&tag, &Revision::head(), "again").await,
        Err(GitError::AlreadyExists {
            name: "milestone/m-1".into()
        })
    );
    assert!(matches!(
        git.tag(&name("t2"), &rev("nosuch"), "x").await,
        Err(GitError::RefNotFound { .. })
    ));
    assert!(matches!(
        git.resolve(&Revision::tag(&name("t2"))).await,
        Err(GitError::RefNotFound { .. })
    ));
}

async fn two_branches(git: &dyn GitBackend) -> (CommitId, RefName) {
    write(git, "shared.txt", "base\n").await;
    let root = commit_all(git, "root").await;
    let feature = name("feature/m");
    git.create_branch(&feature, &Revision::head())
        .await
        .expect("create");
    (root, feature)
}

/// Fast-forward, merge commit (two parents), already up to date, clean merges of different
/// files.
pub async fn merges(git: &dyn GitBackend) {
    let (_, feature) = two_branches(git).await;
    git.switch(&feature).await.expect("switch");
    write(git, "feature.txt", "f\n").await;
    let f1 = commit_all(git, "feature 1").await;
    git.switch(&name("main")).await.expect("switch");
    let ff = MergeOptions {
        message: "merge ff".into(),
        fast_forward: FastForward::Allow,
    };
    assert_eq!(
        git.merge(&Revision::branch(&feature), &ff)
            .await
            .expect("merge"),
        MergeOutcome::FastForward { to: f1.clone() }
    );
    assert_eq!(git.head().await.expect("head"), Some(f1.clone()));
    assert_eq!(read(git, "feature.txt").await.as_deref(), Some("f\n"));
    assert_eq!(
        git.merge(&Revision::branch(&feature), &ff)
            .await
            .expect("merge"),
        MergeOutcome::AlreadyUpToDate
    );
    // Diverge: main and feature change different files.
    write(git, "main.txt", "m\n").await;
    let m2 = commit_all(git, "main 2").await;
    git.switch(&feature).await.expect("switch");
    write(git, "feature.txt", "f2\n").await;
    let f2 = commit_all(git, "feature 2").await;
    git.switch(&name("main")).await.expect("switch");
    let outcome = git
        .merge(&Revision::branch(&feature), &ff)
        .await
        .expect("merge");
    let MergeOutcome::Merged { commit } = outcome else {
        panic!("expected a merge commit, got {outcome:?}");
    };
    assert_eq!(git.head().await.expect("head"), Some(commit.clone()));
    assert_eq!(git.resolve(&rev("HEAD^1")).await.expect("first parent"), m2);
    assert_eq!(
        git.resolve(&rev("HEAD^2")).await.expect("second parent"),
        f2
    );
    assert_eq!(read(git, "feature.txt").await.as_deref(), Some("f2\n"));
    assert_eq!(read(git, "main.txt").await.as_deref(), Some("m\n"));
    assert!(git.status().await.expect("status").is_clean());
    let log = git
        .log(&LogRange::all(Revision::head()))
        .await
        .expect("log");
    assert_eq!(log[0].id, commit);
    assert_eq!(log[0].summary, "merge ff");
    // --no-ff makes a merge commit even when a fast-forward is possible.
    git.switch(&feature).await.expect("switch");
    write(git, "feature.txt", "f3\n").await;
    let f3 = commit_all(git, "feature 3").await;
    let merged_f2 = git
        .merge(&Revision::branch(&name("main")), &ff)
        .await
        .expect("merge");
    assert!(
        matches!(merged_f2, MergeOutcome::Merged { .. }),
        "{merged_f2:?}"
    );
    git.switch(&name("main")).await.expect("switch");
    let before = git.head().await.expect("head");
    let no_ff = MergeOptions {
        message: "no ff".into(),
        fast_forward: FastForward::Never,
    };
    let outcome = git
        .merge(&Revision::branch(&feature), &no_ff)
        .await
        .expect("merge");
    let MergeOutcome::Merged { commit } = outcome else {
        panic!("expected a merge commit with --no-ff, got {outcome:?}");
    };
    assert_ne!(Some(commit), before);
    assert_eq!(read(git, "feature.txt").await.as_deref(), Some("f3\n"));
    assert!(
        git.log(&LogRange::all(Revision::head()))
            .await
            .expect("log")
            .iter()
            .any(|e| e.id == f3)
    );
    assert!(matches!(
        git.merge(&rev("nosuch"), &ff).await,
        Err(GitError::RefNotFound { .. })
    ));
}

/// Conflicts with their paths, markers, refusal to commit while unmerged, abort, and a
/// resolved merge commit.
pub async fn conflicts(git: &dyn GitBackend, caps: Capabilities) {
    write(git, "lines.txt", "one\ntwo\nthree\nfour\nfive\n").await;
    write(git, "gone.txt", "g\n").await;
    let (_, feature) = two_branches(git).await;
    // Both sides change shared.txt differently, add both.txt differently, and one side
    // deletes gone.txt the other changes; lines.txt is edited on different lines.
    git.switch(&feature).await.expect("switch");
    write(git, "shared.txt", "feature\n").await;
    write(git, "both.txt", "feature\n").await;
    write(git, "gone.txt", "changed\n").await;
    write(git, "lines.txt", "ONE\ntwo\nthree\nfour\nfive\n").await;
    let theirs = commit_all(git, "feature side").await;
    git.switch(&name("main")).await.expect("switch");
    write(git, "shared.txt", "main\n").await;
    write(git, "both.txt", "main\n").await;
    write(git, "lines.txt", "one\ntwo\nthree\nfour\nFIVE\n").await;
    assert!(
        git.remove_file(&path("gone.txt"))
            .await
            .expect("remove_file")
    );
    git.add_all().await.expect("add_all");
    let ours = git
        .commit(&CommitRequest::new("main side"))
        .await
        .expect("commit");
    let options = MergeOptions {
        message: "merge feature".into(),
        fast_forward: FastForward::Allow,
    };
    let outcome = git
        .merge(&Revision::branch(&feature), &options)
        .await
        .expect("merge");
    let mut expected = vec![
        "both.txt".to_owned(),
        "gone.txt".to_owned(),
        "shared.txt".to_owned(),
    ];
    if !caps.line_level_merge {
        expected.push("lines.txt".to_owned());
        expected.sort();
    }
    assert_eq!(
        outcome,
        MergeOutcome::Conflicts {
            paths: expected.clone()
        }
    );
    assert_eq!(git.status().await.expect("status").conflicted, expected);
    assert_eq!(
        git.merge_in_progress().await.expect("merge_in_progress"),
        Some(theirs.clone())
    );
    let shared = read(git, "shared.txt").await.expect("shared.txt exists");
    assert!(
        has_conflict_markers(shared.as_bytes()),
        "markers in {shared:?}"
    );
    assert!(shared.contains("main") && shared.contains("feature"));
    if caps.line_level_merge {
        assert_eq!(
            read(git, "lines.txt").await.as_deref(),
            Some("ONE\ntwo\nthree\nfour\nFIVE\n")
        );
    }
    assert!(matches!(
        git.commit(&CommitRequest::new("too early")).await,
        Err(GitError::Conflict { .. })
    ));
    let during = git.switch(&feature).await;
    assert!(
        matches!(during, Err(GitError::Conflict { .. })),
        "switch during a merge: {during:?}"
    );
    git.abort_merge().await.expect("abort");
    assert_eq!(
        git.merge_in_progress().await.expect("merge_in_progress"),
        None
    );
    assert_eq!(git.head().await.expect("head"), Some(ours.clone()));
    assert!(git.status().await.expect("status").is_clean());
    assert_eq!(read(git, "shared.txt").await.as_deref(), Some("main\n"));
    assert_eq!(git.abort_merge().await, Err(GitError::NoMergeInProgress));
    // Again, and this time resolve.
    let outcome = git
        .merge(&Revision::branch(&feature), &options)
        .await
        .expect("merge");
    assert_eq!(
        outcome,
        MergeOutcome::Conflicts {
            paths: expected.clone()
        }
    );
    for p in &expected {
        write(git, p, "resolved\n").await;
    }
    let paths: Vec<RepoPath> = expected.iter().map(|p| path(p)).collect();
    git.add(&paths).await.expect("add resolved");
    assert!(git.status().await.expect("status").conflicted.is_empty());
    let merge = git
        .commit(&CommitRequest::new("merge feature"))
        .await
        .expect("merge commit");
    assert_eq!(git.resolve(&rev("HEAD^1")).await.expect("parent 1"), ours);
    assert_eq!(git.resolve(&rev("HEAD^2")).await.expect("parent 2"), theirs);
    assert_eq!(git.head().await.expect("head"), Some(merge));
    assert_eq!(
        git.merge_in_progress().await.expect("merge_in_progress"),
        None
    );
    assert!(git.status().await.expect("status").is_clean());
}

/// `since..until` ranges, newest first, children before parents.
pub async fn log_ranges(git: &dyn GitBackend) {
    let (root, feature) = two_branches(git).await;
    git.switch(&feature).await.expect("switch");
    let mut ids = Vec::new();
    for i in 0..3 {
        write(git, "n.txt", &format!("{i}\n")).await;
        ids.push(commit_all(git, &format!("step {i}")).await);
    }
    let range = LogRange::between(Revision::branch(&name("main")), Revision::branch(&feature));
    let log = git.log(&range).await.expect("log");
    let got: Vec<CommitId> = log.iter().map(|e| e.id.clone()).collect();
    ids.reverse();
    assert_eq!(got, ids);
    assert_eq!(log[0].summary, "step 2");
    let all = git
        .log(&LogRange::all(Revision::head()))
        .await
        .expect("log");
    assert_eq!(all.len(), 4);
    assert_eq!(all[3].id, root);
    let empty = LogRange::between(Revision::head(), Revision::branch(&name("main")));
    assert!(git.log(&empty).await.expect("log").is_empty());
    assert_eq!(
        git.log(&LogRange::between(rev("nosuch"), Revision::head()))
            .await,
        Err(GitError::RefNotFound {
            name: "nosuch".into()
        })
    );
}

/// Local changes travel across a switch unless the target branch changes the same file.
pub async fn switch_with_local_changes(git: &dyn GitBackend) {
    write(git, "a.txt", "a\n").await;
    write(git, "b.txt", "b\n").await;
    commit_all(git, "root").await;
    let other = name("other");
    git.create_branch(&other, &Revision::head())
        .await
        .expect("create");
    git.switch(&other).await.expect("switch");
    write(git, "a.txt", "other\n").await;
    commit_all(git, "other changes a").await;
    git.switch(&name("main")).await.expect("switch");
    // b.txt is the same on both branches: the change travels.
    write(git, "b.txt", "local\n").await;
    git.switch(&other)
        .await
        .expect("switch with a compatible local change");
    assert_eq!(read(git, "b.txt").await.as_deref(), Some("local\n"));
    assert_eq!(git.status().await.expect("status").changed, vec!["b.txt"]);
    git.switch(&name("main")).await.expect("switch back");
    // a.txt differs between branches: a local change to it blocks the switch.
    write(git, "a.txt", "local\n").await;
    match git.switch(&other).await {
        Err(GitError::DirtyWorkTree { paths }) => assert_eq!(paths, vec!["a.txt"]),
        other => panic!("expected DirtyWorkTree, got {other:?}"),
    }
    assert_eq!(
        git.current_branch().await.expect("current_branch"),
        Some(name("main"))
    );
    assert_eq!(
        read(git, "a.txt").await.as_deref(),
        Some("local\n"),
        "nothing lost"
    );
}
