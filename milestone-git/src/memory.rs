//! [`InMemoryGit`]: a repository held in memory, for tests and for hosts that dry-run.
//!
//! It models commits (with parents, a file tree, a message and trailers), branches, annotated
//! tags, an index, a working tree and an in-progress merge. Merges are three-way **by file**:
//! a path conflicts when both sides changed it differently since the merge base. This is
//! coarser than git, which merges line by line: two edits to different lines of one file
//! conflict here and merge cleanly in git. Other simplifications, none of which the
//! conformance cases depend on:
//!
//! * the merge base of a criss-cross history is one best common ancestor, not a virtual one;
//! * conflict markers wrap the whole file (`<<<<<<< ours` … `=======` … `>>>>>>> theirs`);
//! * `abort_merge` restores the index and working tree exactly as they were before the merge;
//! * file modes, symlinks, ignore rules and renames are not modelled;
//! * commit ids are fresh for every commit, not content hashes: git gives two identical
//!   commits (same tree, parents, message, identity and date) the same id, this model does not.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::backend::{
    CommitRequest, FastForward, GitBackend, LogEntry, LogRange, MergeOptions, MergeOutcome, Status,
    Trailer, check_message,
};
use crate::error::GitError;
use crate::names::{CommitId, RefName, RepoPath, Revision, Step};

type Tree = BTreeMap<String, Vec<u8>>;

#[derive(Debug)]
struct Commit {
    parents: Vec<CommitId>,
    tree: Tree,
    summary: String,
    trailers: Vec<Trailer>,
    seq: u64,
}

#[derive(Debug)]
struct Tag {
    target: CommitId,
    #[allow(dead_code)]
    message: String,
}

#[derive(Debug)]
struct MergeState {
    theirs: CommitId,
    conflicted: BTreeSet<String>,
    saved_index: Tree,
    saved_worktree: Tree,
}

#[derive(Debug)]
struct Repo {
    commits: HashMap<CommitId, Commit>,
    branches: BTreeMap<String, CommitId>,
    tags: BTreeMap<String, Tag>,
    /// The branch `HEAD` is on (the model has no detached `HEAD`).
    head: String,
    index: Tree,
    worktree: Tree,
    merge: Option<MergeState>,
    counter: u64,
}

/// A git repository in memory. See the module docs for what it models and where it is coarser
/// than git.
///
/// ```
/// use milestone_git::{CommitRequest, GitBackend, InMemoryGit, RepoPath};
///
/// futures::executor::block_on(async {
///     let git = InMemoryGit::new();
///     git.write_file(&RepoPath::new("README.md")?, b"hello\n").await?;
///     git.add_all().await?;
///     let id = git.commit(&CommitRequest::new("Initial commit")).await?;
///     assert_eq!(git.head().await?, Some(id));
///     assert!(git.status().await?.is_clean());
///     Ok::<(), Box<dyn std::error::Error>>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct InMemoryGit {
    repo: Mutex<Repo>,
}

impl Default for InMemoryGit {
    fn default() -> Self {
        Self::new()
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn not_found(rev: &str) -> GitError {
    GitError::RefNotFound {
        name: rev.to_owned(),
    }
}

/// The summary git's `%s` shows: the first paragraph, lines joined by spaces.
fn summary_of(message: &str) -> String {
    message
        .trim()
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The trailers git would find: the last paragraph (not the first) when every line of it is
/// `Key: value`.
fn trailers_of(message: &str) -> Vec<Trailer> {
    let paragraphs: Vec<&str> = message
        .trim()
        .split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .collect();
    let [_, .., last] = paragraphs.as_slice() else {
        return Vec::new();
    };
    let parsed: Option<Vec<Trailer>> = last
        .lines()
        .map(|line| {
            let (k, v) = line.split_once(": ")?;
            Trailer::new(k, v).ok()
        })
        .collect();
    parsed.unwrap_or_default()
}

fn conflict_text(ours: &[u8], theirs: &[u8]) -> Vec<u8> {
    let mut out = b"<<<<<<< ours\n".to_vec();
    out.extend_from_slice(ours);
    if !ours.is_empty() && !ours.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(b"=======\n");
    out.extend_from_slice(theirs);
    if !theirs.is_empty() && !theirs.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(b">>>>>>> theirs\n");
    out
}

impl Repo {
    fn head_id(&self) -> Option<CommitId> {
        self.branches.get(&self.head).cloned()
    }

    fn tree_of(&self, id: Option<&CommitId>) -> Tree {
        id.and_then(|id| self.commits.get(id))
            .map(|c| c.tree.clone())
            .unwrap_or_default()
    }

    fn head_tree(&self) -> Tree {
        self.tree_of(self.head_id().as_ref())
    }

    fn resolve(&self, rev: &Revision) -> Result<CommitId, GitError> {
        let (base, steps) = rev.parts();
        let mut id = if base == "HEAD" {
            self.head_id()
        } else if let Some(b) = base.strip_prefix("refs/heads/") {
            self.branches.get(b).cloned()
        } else if let Some(t) = base.strip_prefix("refs/tags/") {
            self.tags.get(t).map(|t| t.target.clone())
        } else if let Some(t) = self.tags.get(base) {
            Some(t.target.clone())
        } else if let Some(b) = self.branches.get(base) {
            Some(b.clone())
        } else {
            let mut hits = self.commits.keys().filter(|k| k.as_str().starts_with(base));
            match (hits.next(), hits.next()) {
                (Some(one), None) => Some(one.clone()),
                _ => None,
            }
        }
        .ok_or_else(|| not_found(rev.as_str()))?;
        for step in steps {
            let (hops, nth) = match step {
                Step::Ancestor(n) => (n, 1),
                Step::Parent(0) => continue,
                Step::Parent(n) => (1, n),
            };
            for _ in 0..hops {
                let commit = self
                    .commits
                    .get(&id)
                    .ok_or_else(|| not_found(rev.as_str()))?;
                id = commit
                    .parents
                    .get(nth as usize - 1)
                    .cloned()
                    .ok_or_else(|| not_found(rev.as_str()))?;
            }
        }
        Ok(id)
    }

    fn ancestors(&self, id: &CommitId) -> HashSet<CommitId> {
        let mut seen = HashSet::new();
        let mut stack = vec![id.clone()];
        while let Some(next) = stack.pop() {
            if seen.insert(next.clone())
                && let Some(c) = self.commits.get(&next)
            {
                stack.extend(c.parents.iter().cloned());
            }
        }
        seen
    }

    fn merge_base(&self, a: &CommitId, b: &CommitId) -> Option<CommitId> {
        let of_a = self.ancestors(a);
        let of_b = self.ancestors(b);
        let common: Vec<&CommitId> = of_a.intersection(&of_b).collect();
        // Best common ancestors: those that are no proper ancestor of another common one.
        let mut best: Vec<&CommitId> = common
            .iter()
            .copied()
            .filter(|c| {
                !common
                    .iter()
                    .any(|other| other != c && self.ancestors(other).contains(*c))
            })
            .collect();
        best.sort_by_key(|c| std::cmp::Reverse(self.commits.get(*c).map_or(0, |c| c.seq)));
        best.first().map(|c| (*c).clone())
    }

    fn status(&self) -> Status {
        let head = self.head_tree();
        let conflicted: BTreeSet<String> = self
            .merge
            .as_ref()
            .map(|m| m.conflicted.clone())
            .unwrap_or_default();
        let mut changed = BTreeSet::new();
        let mut untracked = BTreeSet::new();
        let paths: BTreeSet<&String> = head
            .keys()
            .chain(self.index.keys())
            .chain(self.worktree.keys())
            .collect();
        for p in paths {
            if conflicted.contains(p) {
                continue;
            }
            let (h, i, w) = (head.get(p), self.index.get(p), self.worktree.get(p));
            if h.is_none() && i.is_none() {
                untracked.insert(p.clone());
            } else if h != i || i != w {
                changed.insert(p.clone());
            }
        }
        Status {
            changed: changed.into_iter().collect(),
            untracked: untracked.into_iter().collect(),
            conflicted: conflicted.into_iter().collect(),
        }
    }

    /// Paths with local changes (tracked and changed, or untracked) that moving from tree `from`
    /// to tree `to` would overwrite.
    fn in_the_way(&self, from: &Tree, to: &Tree) -> Vec<String> {
        let mut paths = BTreeSet::new();
        for p in from.keys().chain(to.keys()) {
            if from.get(p) == to.get(p) {
                continue;
            }
            let (i, w) = (self.index.get(p), self.worktree.get(p));
            let dirty = i != from.get(p) || w != i;
            if dirty && w != to.get(p) {
                paths.insert(p.clone());
            }
        }
        paths.into_iter().collect()
    }

    /// Moves index and working tree from tree `from` to tree `to`, path by path.
    fn checkout(&mut self, from: &Tree, to: &Tree) {
        let paths: BTreeSet<String> = from.keys().chain(to.keys()).cloned().collect();
        for p in paths {
            if from.get(&p) == to.get(&p) {
                continue;
            }
            match to.get(&p) {
                Some(v) => {
                    self.index.insert(p.clone(), v.clone());
                    self.worktree.insert(p, v.clone());
                }
                None => {
                    self.index.remove(&p);
                    self.worktree.remove(&p);
                }
            }
        }
    }

    fn new_commit(&mut self, parents: Vec<CommitId>, tree: Tree, message: &str) -> CommitId {
        self.counter += 1;
        let c = self.counter;
        let text = format!(
            "{:016x}{:016x}{:08x}",
            mix(c),
            mix(c ^ 0x5555_aaaa_5555_aaaa),
            mix(c.rotate_left(17)) as u32
        );
        // 16 + 16 + 8 lowercase hex digits: a well-formed SHA-1-sized id.
        let id = CommitId(std::sync::Arc::from(text));
        self.commits.insert(
            id.clone(),
            Commit {
                parents,
                tree,
                summary: summary_of(message),
                trailers: trailers_of(message),
                seq: c,
            },
        );
        id
    }

    fn move_head(&mut self, id: CommitId) {
        self.branches.insert(self.head.clone(), id);
    }
}

impl InMemoryGit {
    /// An empty repository on the unborn branch `main`.
    pub fn new() -> Self {
        Self::with_initial_branch(&RefName(std::sync::Arc::from("main")))
    }

    /// An empty repository on the unborn branch `branch`.
    pub fn with_initial_branch(branch: &RefName) -> Self {
        Self {
            repo: Mutex::new(Repo {
                commits: HashMap::new(),
                branches: BTreeMap::new(),
                tags: BTreeMap::new(),
                head: branch.as_str().to_owned(),
                index: Tree::new(),
                worktree: Tree::new(),
                merge: None,
                counter: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Repo> {
        // A panic while holding the lock cannot leave the repository half-updated in a way that
        // matters more than the panic itself; keep serving.
        self.repo
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The number of commits in the repository.
    pub fn commit_count(&self) -> usize {
        self.lock().commits.len()
    }
}

#[async_trait]
impl GitBackend for InMemoryGit {
    async fn head(&self) -> Result<Option<CommitId>, GitError> {
        Ok(self.lock().head_id())
    }

    async fn current_branch(&self) -> Result<Option<RefName>, GitError> {
        Ok(Some(RefName(std::sync::Arc::from(
            self.lock().head.as_str(),
        ))))
    }

    async fn branch_exists(&self, name: &RefName) -> Result<bool, GitError> {
        Ok(self.lock().branches.contains_key(name.as_str()))
    }

    async fn create_branch(&self, name: &RefName, from: &Revision) -> Result<CommitId, GitError> {
        let mut repo = self.lock();
        if repo.branches.contains_key(name.as_str()) {
            return Err(GitError::AlreadyExists {
                name: name.as_str().to_owned(),
            });
        }
        let id = repo.resolve(from)?;
        repo.branches.insert(name.as_str().to_owned(), id.clone());
        Ok(id)
    }

    async fn switch(&self, name: &RefName) -> Result<(), GitError> {
        let mut repo = self.lock();
        let target = repo
            .branches
            .get(name.as_str())
            .cloned()
            .ok_or_else(|| not_found(name.as_str()))?;
        if let Some(m) = &repo.merge {
            return Err(GitError::Conflict {
                paths: m.conflicted.iter().cloned().collect(),
            });
        }
        let from = repo.head_tree();
        let to = repo.tree_of(Some(&target));
        let blocked = repo.in_the_way(&from, &to);
        if !blocked.is_empty() {
            return Err(GitError::DirtyWorkTree { paths: blocked });
        }
        repo.checkout(&from, &to);
        repo.head = name.as_str().to_owned();
        Ok(())
    }

    async fn status(&self) -> Result<Status, GitError> {
        Ok(self.lock().status())
    }

    async fn add(&self, paths: &[RepoPath]) -> Result<(), GitError> {
        let mut repo = self.lock();
        for p in paths {
            let p = p.as_str();
            if !repo.worktree.contains_key(p) && !repo.index.contains_key(p) {
                return Err(GitError::Other {
                    operation: "add".into(),
                    stderr: format!("pathspec '{p}' did not match any files"),
                });
            }
        }
        for p in paths {
            let p = p.as_str();
            match repo.worktree.get(p).cloned() {
                Some(v) => {
                    repo.index.insert(p.to_owned(), v);
                }
                None => {
                    repo.index.remove(p);
                }
            }
            if let Some(m) = repo.merge.as_mut() {
                m.conflicted.remove(p);
            }
        }
        Ok(())
    }

    async fn add_all(&self) -> Result<(), GitError> {
        let mut repo = self.lock();
        repo.index = repo.worktree.clone();
        if let Some(m) = repo.merge.as_mut() {
            m.conflicted.clear();
        }
        Ok(())
    }

    async fn commit(&self, request: &CommitRequest) -> Result<CommitId, GitError> {
        check_message("commit message", &request.message, false)?;
        let mut repo = self.lock();
        if let Some(m) = &repo.merge
            && !m.conflicted.is_empty()
        {
            return Err(GitError::Conflict {
                paths: m.conflicted.iter().cloned().collect(),
            });
        }
        let head = repo.head_id();
        let merging = repo.merge.as_ref().map(|m| m.theirs.clone());
        if !request.allow_empty && merging.is_none() && repo.index == repo.head_tree() {
            return Err(GitError::NothingToCommit);
        }
        let parents: Vec<CommitId> = head.into_iter().chain(merging).collect();
        let tree = repo.index.clone();
        let id = repo.new_commit(parents, tree, &request.full_message());
        repo.move_head(id.clone());
        repo.merge = None;
        Ok(id)
    }

    async fn tag(&self, name: &RefName, target: &Revision, message: &str) -> Result<(), GitError> {
        check_message("tag message", message, true)?;
        let mut repo = self.lock();
        if repo.tags.contains_key(name.as_str()) {
            return Err(GitError::AlreadyExists {
                name: name.as_str().to_owned(),
            });
        }
        let target = repo.resolve(target)?;
        repo.tags.insert(
            name.as_str().to_owned(),
            Tag {
                target,
                message: message.to_owned(),
            },
        );
        Ok(())
    }

    async fn merge(
        &self,
        rev: &Revision,
        options: &MergeOptions,
    ) -> Result<MergeOutcome, GitError> {
        check_message("merge message", &options.message, true)?;
        let mut repo = self.lock();
        if repo.merge.is_some() {
            return Err(GitError::Other {
                operation: "merge".into(),
                stderr: "a merge is already in progress (MERGE_HEAD exists)".into(),
            });
        }
        let theirs = repo.resolve(rev)?;
        let ours = repo.head_id();
        let ours_tree = repo.head_tree();
        let theirs_tree = repo.tree_of(Some(&theirs));
        let Some(ours) = ours else {
            // Merging into an unborn branch is a fast-forward.
            let blocked = repo.in_the_way(&ours_tree, &theirs_tree);
            if !blocked.is_empty() {
                return Err(GitError::DirtyWorkTree { paths: blocked });
            }
            repo.checkout(&ours_tree, &theirs_tree);
            repo.move_head(theirs.clone());
            return Ok(MergeOutcome::FastForward { to: theirs });
        };
        if repo.ancestors(&ours).contains(&theirs) {
            return Ok(MergeOutcome::AlreadyUpToDate);
        }
        let base = repo.merge_base(&ours, &theirs);
        if base.as_ref() == Some(&ours) && options.fast_forward == FastForward::Allow {
            let blocked = repo.in_the_way(&ours_tree, &theirs_tree);
            if !blocked.is_empty() {
                return Err(GitError::DirtyWorkTree { paths: blocked });
            }
            repo.checkout(&ours_tree, &theirs_tree);
            repo.move_head(theirs.clone());
            return Ok(MergeOutcome::FastForward { to: theirs });
        }
        let base_tree = repo.tree_of(base.as_ref());
        let mut merged = Tree::new();
        let mut conflicts: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
        let paths: BTreeSet<&String> = base_tree
            .keys()
            .chain(ours_tree.keys())
            .chain(theirs_tree.keys())
            .collect();
        for p in paths {
            let (b, o, t) = (base_tree.get(p), ours_tree.get(p), theirs_tree.get(p));
            let result = if o == t || t == b {
                o
            } else if o == b {
                t
            } else {
                let text = match (o, t) {
                    (Some(o), Some(t)) => Some(conflict_text(o, t)),
                    (Some(o), None) => Some(o.clone()),
                    (None, Some(t)) => Some(t.clone()),
                    (None, None) => None,
                };
                conflicts.insert(p.clone(), text);
                o
            };
            if let Some(v) = result {
                merged.insert(p.clone(), v.clone());
            }
        }
        // The working tree the merge would produce, conflict texts included.
        let mut target = merged.clone();
        for (p, text) in &conflicts {
            match text {
                Some(t) => target.insert(p.clone(), t.clone()),
                None => target.remove(p),
            };
        }
        let blocked = repo.in_the_way(&ours_tree, &target);
        if !blocked.is_empty() {
            return Err(GitError::DirtyWorkTree { paths: blocked });
        }
        let saved_index = repo.index.clone();
        let saved_worktree = repo.worktree.clone();
        if conflicts.is_empty() {
            repo.checkout(&ours_tree, &merged);
            let id = repo.new_commit(vec![ours, theirs], merged, &options.message);
            repo.move_head(id.clone());
            return Ok(MergeOutcome::Merged { commit: id });
        }
        repo.checkout(&ours_tree, &target);
        for p in conflicts.keys() {
            // The index keeps our side for a conflicted path until it is added.
            match ours_tree.get(p) {
                Some(v) => repo.index.insert(p.clone(), v.clone()),
                None => repo.index.remove(p),
            };
        }
        let paths: Vec<String> = conflicts.keys().cloned().collect();
        repo.merge = Some(MergeState {
            theirs,
            conflicted: paths.iter().cloned().collect(),
            saved_index,
            saved_worktree,
        });
        Ok(MergeOutcome::Conflicts { paths })
    }

    async fn abort_merge(&self) -> Result<(), GitError> {
        let mut repo = self.lock();
        let merge = repo.merge.take().ok_or(GitError::NoMergeInProgress)?;
        repo.index = merge.saved_index;
        repo.worktree = merge.saved_worktree;
        Ok(())
    }

    async fn merge_in_progress(&self) -> Result<Option<CommitId>, GitError> {
        Ok(self.lock().merge.as_ref().map(|m| m.theirs.clone()))
    }

    async fn log(&self, range: &LogRange) -> Result<Vec<LogEntry>, GitError> {
        let repo = self.lock();
        let until = repo.resolve(&range.until)?;
        let excluded = match &range.since {
            Some(since) => repo.ancestors(&repo.resolve(since)?),
            None => HashSet::new(),
        };
        let mut commits: Vec<(&CommitId, &Commit)> = repo
            .ancestors(&until)
            .difference(&excluded)
            .filter_map(|id| repo.commits.get_key_value(id))
            .collect();
        commits.sort_by_key(|(_, c)| std::cmp::Reverse(c.seq));
        Ok(commits
            .into_iter()
            .map(|(id, c)| LogEntry {
                id: id.clone(),
                summary: c.summary.clone(),
                trailers: c.trailers.clone(),
            })
            .collect())
    }

    async fn resolve(&self, rev: &Revision) -> Result<CommitId, GitError> {
        self.lock().resolve(rev)
    }

    async fn read_file(&self, path: &RepoPath) -> Result<Option<Vec<u8>>, GitError> {
        Ok(self.lock().worktree.get(path.as_str()).cloned())
    }

    async fn write_file(&self, path: &RepoPath, contents: &[u8]) -> Result<(), GitError> {
        self.lock()
            .worktree
            .insert(path.as_str().to_owned(), contents.to_vec());
        Ok(())
    }

    async fn remove_file(&self, path: &RepoPath) -> Result<bool, GitError> {
        Ok(self.lock().worktree.remove(path.as_str()).is_some())
    }
}
