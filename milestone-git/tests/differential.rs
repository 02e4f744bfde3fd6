//! InMemoryGit merges like git: random histories of whole-file edits (set, delete, keep) on
//! two branches, merged on both backends, give the same outcome kind, the same conflicted
//! paths and the same files.

mod common;

use futures::executor::block_on;
use milestone_git::{
    CommitRequest, FastForward, GitBackend, InMemoryGit, MergeOptions, MergeOutcome, RefName,
    RepoPath, Revision,
};
use proptest::prelude::*;

const FILES: [&str; 4] = ["a.txt", "b.txt", "dir/c.txt", "d.txt"];

#[derive(Debug, Clone, Copy)]
enum Edit {
    Keep,
    Set(u8),
    Delete,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        Just(Edit::Keep),
        (0u8..3).prop_map(Edit::Set),
        Just(Edit::Delete)
    ]
}

fn contents(file: &str, version: u8) -> String {
    // Distinct per file, so git's rename detection never pairs two files.
    format!("{file} holds version {version} of its one line\n")
}

/// What a merge left behind, comparable across backends.
#[derive(Debug, PartialEq, Eq)]
struct Result {
    kind: &'static str,
    conflicted: Vec<String>,
    files: Vec<(String, Option<String>)>,
}

async fn apply(git: &dyn GitBackend, edits: &[Edit], message: &str) {
    for (file, e) in FILES.iter().zip(edits) {
        let path = RepoPath::new(file).unwrap();
        match e {
            Edit::Keep => {}
            Edit::Set(v) => git
                .write_file(&path, contents(file, *v).as_bytes())
                .await
                .unwrap(),
            Edit::Delete => {
                git.remove_file(&path).await.unwrap();
            }
        }
    }
    git.add_all().await.unwrap();
    // Distinct messages per side: with fixed dates, git would give two identical empty commits
    // on the same parent the same id (it is content-addressed), which InMemoryGit does not model.
    git.commit(&CommitRequest::new(message).allow_empty(true))
        .await
        .unwrap();
}

async fn scenario(
    git: &dyn GitBackend,
    base: &[Option<u8>],
    ours: &[Edit],
    theirs: &[Edit],
) -> Result {
    let base_edits: Vec<Edit> = base
        .iter()
        .map(|v| v.map_or(Edit::Keep, Edit::Set))
        .collect();
    apply(git, &base_edits, "base edits").await;
    let side = RefName::new("theirs").unwrap();
    git.create_branch(&side, &Revision::head()).await.unwrap();
    apply(git, ours, "our edits").await;
    git.switch(&side).await.unwrap();
    apply(git, theirs, "their edits").await;
    git.switch(&RefName::new("main").unwrap()).await.unwrap();
    let options = MergeOptions {
        message: "merge".into(),
        fast_forward: FastForward::Allow,
    };
    let outcome = git.merge(&Revision::branch(&side), &options).await.unwrap();
    let (kind, conflicted) = match outcome {
        MergeOutcome::AlreadyUpToDate => ("up-to-date", vec![]),
        MergeOutcome::FastForward { .. } => ("fast-forward", vec![]),
        MergeOutcome::Merged { .. } => ("merged", vec![]),
        MergeOutcome::Conflicts { paths } => ("conflicts", paths),
        other => panic!("unexpected outcome {other:?}"),
    };
    assert_eq!(git.status().await.unwrap().conflicted, conflicted);
    let mut files = Vec::new();
    for file in FILES {
        if conflicted.iter().any(|c| c == file) {
            continue; // marker layout differs (whole file vs lines); presence is compared
        }
        let got = git.read_file(&RepoPath::new(file).unwrap()).await.unwrap();
        files.push((
            file.to_owned(),
            got.map(|b| String::from_utf8_lossy(&b).into_owned()),
        ));
    }
    Result {
        kind,
        conflicted,
        files,
    }
}

proptest! {
    // Each case runs about twenty real git processes: a moderate count keeps the test near ten
    // seconds on a loaded two-core machine.
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn in_memory_merges_like_git(
        base in proptest::collection::vec(proptest::option::of(0u8..3), 4),
        ours in proptest::collection::vec(edit(), 4),
        theirs in proptest::collection::vec(edit(), 4),
    ) {
        let memory = block_on(scenario(&InMemoryGit::new(), &base, &ours, &theirs));
        let repo = common::repo();
        let real = block_on(scenario(&repo.git, &base, &ours, &theirs));
        prop_assert_eq!(memory, real);
    }
}
