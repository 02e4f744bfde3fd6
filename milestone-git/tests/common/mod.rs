//! Real repositories in temp directories with an isolated environment.

#![allow(dead_code)]

use milestone_git::testing::isolated_config;
use milestone_git::{CliGit, CliGitConfig, RefName};
use tempfile::TempDir;

/// A fresh repository: `git init -b main` in a temp dir, HOME and config isolated.
pub struct Repo {
    pub git: CliGit,
    pub dir: TempDir,
    pub home: TempDir,
}

pub fn config(home: &TempDir) -> CliGitConfig {
    isolated_config(home.path()).expect("isolated config")
}

pub fn repo_with(adjust: impl FnOnce(CliGitConfig) -> CliGitConfig) -> Repo {
    let home = TempDir::new().expect("home");
    let dir = TempDir::new().expect("repo dir");
    let config = adjust(config(&home));
    let main = RefName::new("main").expect("main");
    let git = futures::executor::block_on(CliGit::init(dir.path(), &main, config)).expect("init");
    Repo { git, dir, home }
}

pub fn repo() -> Repo {
    repo_with(|c| c)
}
