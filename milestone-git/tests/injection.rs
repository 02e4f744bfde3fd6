//! Hostile names never reach git where they could be read as an option.
//!
//! `CliGit` is pointed at a wrapper script that logs every argv and then runs the real git.
//! Names our rules refuse get typed errors and never appear in any argv; names that pass and do
//! reach git always follow `--end-of-options` (refs, revisions) or `--` (paths).

#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use futures::executor::block_on;
use milestone_core::{MilestoneId, PhaseId};
use milestone_git::{
    CliGit, CommitRequest, FastForward, GitBackend, GitError, LogRange, MergeOptions, MilestoneGit,
    RefName, RepoPath, Revision, Trailer,
};

/// Names refused as branch or tag names and as revisions.
const HOSTILE: &[&str] = &[
    "-x",
    "--upload-pack=x",
    "--upload-pack=touch /tmp/pwned",
    "--output=/tmp/pwned",
    "-",
    "--",
    "--end-of-options",
    "a..b",
    "..",
    "@{",
    "main@{1}",
    "@",
    "x.lock",
    "a/x.lock",
    ".x",
    "a/.x",
    "feature/-x",
    "a b",
    " a",
    "a\tb",
    "a\nb",
    "a\u{1}b",
    "a\u{7f}",
    "m\u{430}in",       // Cyrillic a
    "ma\u{200b}in",     // zero-width space
    "feature\u{2215}x", // division slash
    "a:b",
    "a?",
    "a*",
    "a[b",
    "a\\b",
    "a//b",
    "a/",
    "",
];

fn wrapper(dir: &Path, log: &Path) -> std::path::PathBuf {
    let script = dir.join("logging-git");
    let body = format!(
        "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\037' \"$a\" >> '{log}'; done\nprintf '\\036' >> '{log}'\nexec git \"$@\"\n",
        log = log.display()
    );
    std::fs::write(&script, body).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// Every logged invocation, as its argv.
fn invocations(log: &Path) -> Vec<Vec<String>> {
    let raw = std::fs::read(log).unwrap_or_default();
    raw.split(|b| *b == 0x1e)
        .filter(|r| !r.is_empty())
        .map(|r| {
            r.split(|b| *b == 0x1f)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .collect()
}

/// After the global `-c key=value` pairs and the subcommand, every argument before the first
/// `--end-of-options` or `--` is an option (starts with `-`).
fn check_shape(argv: &[String]) {
    let mut i = 0;
    while argv.get(i).map(String::as_str) == Some("-c") {
        i += 2;
    }
    let sub = argv
        .get(i)
        .unwrap_or_else(|| panic!("no subcommand in {argv:?}"));
    assert!(!sub.starts_with('-'), "subcommand {sub:?} in {argv:?}");
    for arg in &argv[i + 1..] {
        if arg == "--end-of-options" || arg == "--" {
            return;
        }
        assert!(
            arg.starts_with('-'),
            "operand {arg:?} before --end-of-options/-- in {argv:?}"
        );
    }
}

#[test]
fn hostile_names_are_refused_before_git() {
    for name in HOSTILE {
        assert!(
            matches!(
                RefName::new(name),
                Err(GitError::InvalidName {
                    what: "ref name",
                    ..
                })
            ),
            "ref name {name:?}"
        );
        assert!(
            matches!(
                Revision::new(name),
                Err(GitError::InvalidName {
                    what: "revision",
                    ..
                })
            ),
            "revision {name:?}"
        );
        assert!(MilestoneId::new(name).is_err(), "milestone id {name:?}");
        assert!(PhaseId::new(name).is_err(), "phase id {name:?}");
    }
    for path in [
        "",
        "/etc/passwd",
        "../x",
        "a/../../x",
        ".git/config",
        "a\0b",
        "a\nb",
    ] {
        assert!(RepoPath::new(path).is_err(), "path {path:?}");
    }
}

#[test]
fn no_git_process_reads_a_name_as_an_option() {
    let repo = common::repo();
    let log = repo.home.path().join("argv.log");
    let program = wrapper(repo.home.path(), &log);
    let config = common::config(&repo.home).with_program(program);
    let git = block_on(CliGit::open(repo.dir.path(), config)).unwrap();
    block_on(async {
        // Paths that look like options or pathspec magic are files like any other.
        for p in ["-x", "--all", ":(glob)*", "*"] {
            git.write_file(&RepoPath::new(p).unwrap(), b"x\n")
                .await
                .unwrap();
        }
        git.write_file(&RepoPath::new("other").unwrap(), b"o\n")
            .await
            .unwrap();
        git.add(&[
            RepoPath::new("-x").unwrap(),
            RepoPath::new("--all").unwrap(),
        ])
        .await
        .unwrap();
        git.add(&[
            RepoPath::new(":(glob)*").unwrap(),
            RepoPath::new("*").unwrap(),
        ])
        .await
        .unwrap();
        let status = git.status().await.unwrap();
        assert_eq!(
            status.untracked,
            vec!["other"],
            "no path was read as magic or a glob"
        );
        let message = "-x\n--upload-pack=evil\n\n--output=/tmp/pwned";
        let request =
            CommitRequest::new(message).trailer(Trailer::new("Milestone", "-x --y").unwrap());
        git.commit(&request).await.unwrap();
        git.add_all().await.unwrap();
        git.commit(&CommitRequest::new("-m")).await.unwrap();

        // Every method, with valid names of every shape.
        let branch = RefName::new("feature/milestone-x").unwrap();
        let tag = RefName::new("milestone/x").unwrap();
        assert!(!git.branch_exists(&branch).await.unwrap());
        git.create_branch(&branch, &Revision::new("HEAD~1").unwrap())
            .await
            .unwrap();
        git.switch(&branch).await.unwrap();
        git.current_branch().await.unwrap();
        git.head().await.unwrap();
        git.commit(&CommitRequest::new("--amend").allow_empty(true))
            .await
            .unwrap();
        git.tag(&tag, &Revision::branch(&branch), "-x --sign")
            .await
            .unwrap();
        git.resolve(&Revision::tag(&tag)).await.unwrap();
        git.switch(&RefName::new("main").unwrap()).await.unwrap();
        let options = MergeOptions {
            message: "--no-verify\n-s ours".into(),
            fast_forward: FastForward::Never,
        };
        git.merge(&Revision::branch(&branch), &options)
            .await
            .unwrap();
        assert!(git.merge_in_progress().await.unwrap().is_none());
        assert!(git.abort_merge().await.is_err());
        let range = LogRange::between(Revision::new("HEAD^1").unwrap(), Revision::head());
        git.log(&range).await.unwrap();
        assert!(
            git.resolve(&Revision::new("nosuch").unwrap())
                .await
                .is_err()
        );

        // The conventions layer on top.
        let m = MilestoneGit::new(&git, RefName::new("main").unwrap());
        let ms = MilestoneId::new("x").unwrap();
        m.commit_phase(
            &ms,
            &PhaseId::new("design").unwrap(),
            "--upload-pack=evil\n-x",
        )
        .await
        .unwrap();
        m.tag_completion(&MilestoneId::new("y").unwrap(), "-t")
            .await
            .ok();
        m.merge_into_base(&ms, "--squash").await.unwrap();
    });

    let calls = invocations(&log);
    assert!(
        calls.len() > 30,
        "only {} git calls were logged",
        calls.len()
    );
    let subcommands: std::collections::BTreeSet<String> = calls
        .iter()
        .filter_map(|argv| {
            argv.iter()
                .find(|a| !(*a == "-c" || a.contains('=')))
                .cloned()
        })
        .collect();
    for sub in [
        "add",
        "branch",
        "commit",
        "log",
        "merge",
        "rev-parse",
        "status",
        "switch",
        "symbolic-ref",
        "tag",
    ] {
        assert!(
            subcommands.contains(sub),
            "{sub} was not exercised: {subcommands:?}"
        );
    }
    for argv in &calls {
        check_shape(argv);
        // Refs and revisions after --end-of-options never look like options either, and
        // none is a hostile name.
        if let Some(at) = argv.iter().position(|a| a == "--end-of-options") {
            for operand in argv[at + 1..].iter().take_while(|a| *a != "--") {
                assert!(!operand.starts_with('-'), "{operand:?} in {argv:?}");
                assert!(
                    !HOSTILE.contains(&operand.as_str()),
                    "{operand:?} in {argv:?}"
                );
            }
        }
        for arg in argv {
            // Free text (messages, titles) never reaches argv, except a merge message attached
            // to --message=.
            if !arg.starts_with("--message=") {
                assert!(
                    !arg.contains("upload-pack") && !arg.contains("pwned"),
                    "{arg:?} in {argv:?}"
                );
            }
        }
    }
}
