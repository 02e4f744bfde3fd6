//! The least engine: a lower bound on what issue 3's per-task work costs, to read the engine's
//! speed target against.
//!
//! [`Least`] does, per task, only what the engine must do for every task and nothing it may
//! choose to skip: check that a finished answer names a running attempt, record two events
//! (started, completed) and apply them to a task state, count progress, release the
//! dependents, start ready work up to the concurrency limit with a boxed start command carrying
//! the fields of [`StartCommand`](milestone_core::engine::StartCommand) (role, input, attempt,
//! deadline, budget, idempotency and cache keys), keep the deadline timers and ask for a wake-up
//! when the earliest one changes. It has no priorities, critical paths, phases, strategies,
//! recovery or per-phase limits, so the real engine can only cost more.
//!
//! How work and events name their item is left to a [`Naming`]:
//! - [`Named`] names them as the library does: a [`Work`] holding the item's [`ItemRef`] (a
//!   shared id, cloned into each start and each event) and the library's [`Event`];
//! - [`Indexed`] names them by the task's position, a `u32` that is copied.
//!
//! The `engine` bench runs both next to the floor and the engine, so the share of the cost that
//! comes from naming items by shared ids is measured, not guessed. That share is the least
//! engine's, not the engine's: most of the least engine's work is naming, where the engine
//! spends most of its work elsewhere (README, "Performance", has a prototype's figures).
//!
//! ```
//! use milestone_benches::least::{self, Indexed, Least, Named};
//! use milestone_benches::workloads;
//!
//! let w = workloads::w3();
//! assert_eq!(least::drive(&mut Least::<Named>::new(&w, 64)?)?, w.len());
//! assert_eq!(least::drive(&mut Least::<Indexed>::new(&w, 64)?)?, w.len());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{HashMap, VecDeque};
use std::error::Error;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use milestone_core::engine::{CacheKey, IdempotencyKey, Role, Upstream, Work};
use milestone_core::{CompactOutput, Event, IdError, ItemRef, Limits, TaskId, Timestamp};

use crate::workloads::{Workload, WorkloadError};

/// The time every input is handled at: the driver has no clock.
const NOW: Timestamp = Timestamp(1);

/// How work and events name their task.
pub trait Naming: Sized {
    /// What a start command names and the host echoes back.
    type Work: Clone + fmt::Debug;
    /// What is recorded.
    type Event: Clone + PartialEq + fmt::Debug;

    /// The naming of `n` tasks `t0`, `t1`, ….
    ///
    /// # Errors
    /// A generated id that does not validate (never for these names).
    fn new(n: usize) -> Result<Self, IdError>;
    /// The work of task `i`, about to start.
    fn work(&mut self, i: usize) -> Self::Work;
    /// The task `work` names, if any.
    fn task_of(&self, work: &Self::Work) -> Option<usize>;
    /// Task `i` started its attempt `attempt` at `at`.
    fn started(&self, i: usize, at: Timestamp, attempt: u32) -> Self::Event;
    /// Task `i` completed at `at` with `output`.
    fn completed(&self, i: usize, at: Timestamp, output: CompactOutput) -> Self::Event;
}

/// Items named as the library names them: by their shared [`ItemRef`], found again from the
/// address of its text (as the engine does), with a map for the addresses the small table lost.
#[derive(Debug, Clone)]
pub struct Named {
    ids: Vec<ItemRef>,
    /// Recently started tasks by the address of their id: 512 entries, eight per running task
    /// at the benches' limit of 64 (as the engine sizes its own table).
    recent: Vec<(usize, u32)>,
    by_addr: HashMap<usize, u32, BuildHasherDefault<AddrHasher>>,
}

const RECENT_BITS: u32 = 9;

fn addr(item: &ItemRef) -> usize {
    item.as_str().as_ptr() as usize
}

fn recent_slot(addr: usize) -> usize {
    ((addr as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - RECENT_BITS)) as usize
}

impl Naming for Named {
    type Work = Work;
    type Event = Event;

    fn new(n: usize) -> Result<Self, IdError> {
        let ids: Vec<ItemRef> = (0..n)
            .map(|i| TaskId::new(format!("t{i}")).map(ItemRef::Task))
            .collect::<Result<_, _>>()?;
        let by_addr = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (addr(id), i as u32))
            .collect();
        Ok(Named {
            ids,
            recent: vec![(0, 0); 1 << RECENT_BITS],
            by_addr,
        })
    }

    fn work(&mut self, i: usize) -> Work {
        let a = addr(&self.ids[i]);
        self.recent[recent_slot(a)] = (a, i as u32);
        Work::Item(self.ids[i].clone())
    }

    fn task_of(&self, work: &Work) -> Option<usize> {
        let Work::Item(item) = work else {
            return None;
        };
        let a = addr(item);
        match self.recent[recent_slot(a)] {
            (ra, i) if ra == a => Some(i as usize),
            _ => self.by_addr.get(&a).map(|&i| i as usize),
        }
    }

    fn started(&self, i: usize, at: Timestamp, attempt: u32) -> Event {
        Event::ItemStarted {
            at,
            item: self.ids[i].clone(),
            attempt,
        }
    }

    fn completed(&self, i: usize, at: Timestamp, output: CompactOutput) -> Event {
        Event::ItemCompleted {
            at,
            item: self.ids[i].clone(),
            output,
        }
    }
}

/// A multiplicative hash of an address (the map's keys are distinct addresses).
#[derive(Debug, Default, Clone, Copy)]
pub struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Items named by their position: nothing is shared, cloned or looked up.
#[derive(Debug, Clone)]
pub struct Indexed {
    n: usize,
}

/// A task's position, as [`Indexed`] names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskIx(pub u32);

/// An event of [`Indexed`]: the library's two task events, naming the task by position.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexedEvent {
    /// An attempt started.
    Started {
        /// When.
        at: Timestamp,
        /// The task.
        task: TaskIx,
        /// The attempt.
        attempt: u32,
    },
    /// The task completed.
    Completed {
        /// When.
        at: Timestamp,
        /// The task.
        task: TaskIx,
        /// What it produced.
        output: CompactOutput,
    },
}

impl Naming for Indexed {
    type Work = TaskIx;
    type Event = IndexedEvent;

    fn new(n: usize) -> Result<Self, IdError> {
        Ok(Indexed { n })
    }

    fn work(&mut self, i: usize) -> TaskIx {
        TaskIx(i as u32)
    }

    fn task_of(&self, work: &TaskIx) -> Option<usize> {
        Some(work.0 as usize).filter(|&i| i < self.n)
    }

    fn started(&self, i: usize, at: Timestamp, attempt: u32) -> IndexedEvent {
        IndexedEvent::Started {
            at,
            task: TaskIx(i as u32),
            attempt,
        }
    }

    fn completed(&self, i: usize, at: Timestamp, output: CompactOutput) -> IndexedEvent {
        IndexedEvent::Completed {
            at,
            task: TaskIx(i as u32),
            output,
        }
    }
}

/// A start command with the fields of the library's, boxed as the library's is.
#[derive(Debug, Clone, PartialEq)]
pub struct LeastStart<W> {
    /// The work.
    pub work: W,
    /// Who does it.
    pub role: Role,
    /// Its input (empty: the workloads' tasks produce no data).
    pub input: Vec<Upstream>,
    /// The attempt, 1-based.
    pub attempt: u32,
    /// When the attempt times out.
    pub deadline: Timestamp,
    /// The phase's budget.
    pub budget: Limits,
    /// The same for every attempt of this work.
    pub idempotency_key: IdempotencyKey,
    /// The cache key.
    pub cache_key: CacheKey,
    /// Whether a cached result may be reused.
    pub reusable: bool,
    /// Whether the attempt is degraded.
    pub degraded: bool,
}

/// What the least engine asks of its host.
#[derive(Debug, Clone, PartialEq)]
pub enum LeastCommand<W> {
    /// Start an attempt.
    Start(Box<LeastStart<W>>),
    /// Wake the engine at this time.
    WakeAt(Timestamp),
}

/// The events and commands of one input, reused across inputs.
#[derive(Debug)]
pub struct LeastStep<N: Naming> {
    /// Events, in order.
    pub events: Vec<N::Event>,
    /// Commands, in order.
    pub commands: Vec<LeastCommand<N::Work>>,
}

impl<N: Naming> Default for LeastStep<N> {
    fn default() -> Self {
        LeastStep {
            events: Vec::new(),
            commands: Vec::new(),
        }
    }
}

/// An answer the least engine refuses: it names no running attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotRunning {
    /// The task, if the work named one.
    pub task: Option<usize>,
    /// The attempt the answer gave.
    pub attempt: u32,
}

impl fmt::Display for NotRunning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.task {
            Some(t) => write!(f, "task {t} is not running attempt {}", self.attempt),
            None => write!(f, "the work names no task"),
        }
    }
}

impl Error for NotRunning {}

/// A workload the least engine cannot be built for.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LeastError {
    /// Dependencies that are not earlier tasks, all of them.
    Workload(WorkloadError),
    /// A generated id does not validate.
    Id(IdError),
}

impl fmt::Display for LeastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeastError::Workload(e) => e.fmt(f),
            LeastError::Id(e) => write!(f, "invalid id: {e}"),
        }
    }
}

impl Error for LeastError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            LeastError::Id(e) => Some(e),
            LeastError::Workload(e) => Some(e),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    InProgress,
    Completed,
}

#[derive(Debug, Clone)]
struct TaskState {
    status: Status,
    attempts: u32,
    started_at: Timestamp,
    completed_at: Option<Timestamp>,
    output: Option<CompactOutput>,
    /// Basis points.
    progress: u16,
}

/// The least engine over a workload; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Least<N> {
    naming: N,
    tasks: Vec<TaskState>,
    /// Dependencies not completed yet, per task.
    waiting: Vec<u32>,
    /// The running attempt per task (0: none). Kept apart from the task states, as the engine
    /// keeps its nodes apart from the state its events fold into: both are paid for per task.
    running_attempt: Vec<u32>,
    idem: Vec<u64>,
    /// Dependents of task `i`: `dependents[first[i]..first[i + 1]]`.
    dependents: Vec<u32>,
    first: Vec<u32>,
    ready: VecDeque<u32>,
    running: usize,
    limit: usize,
    /// (deadline, task, attempt), earliest first: every attempt gets the same timeout.
    deadlines: VecDeque<(u64, u32, u32)>,
    last_wake: Option<u64>,
    budget: Limits,
    done_bp: u64,
    events_applied: u64,
}

impl<N: Naming> Least<N> {
    /// The engine for `w`, running at most `limit` tasks at once.
    ///
    /// # Errors
    /// [`LeastError::Workload`] naming every dependency that is not an earlier task;
    /// [`LeastError::Id`] if an id does not validate.
    pub fn new(w: &Workload, limit: usize) -> Result<Self, LeastError> {
        w.check().map_err(LeastError::Workload)?;
        let n = w.len();
        let mut count = vec![0u32; n + 1];
        for deps in &w.deps {
            for &d in deps {
                count[d as usize + 1] += 1;
            }
        }
        for i in 0..n {
            count[i + 1] += count[i];
        }
        let first = count.clone();
        let mut dependents = vec![0u32; w.edges()];
        for (i, deps) in w.deps.iter().enumerate() {
            for &d in deps {
                let k = &mut count[d as usize];
                dependents[*k as usize] = i as u32;
                *k += 1;
            }
        }
        let waiting: Vec<u32> = w.deps.iter().map(|d| d.len() as u32).collect();
        Ok(Least {
            naming: N::new(n).map_err(LeastError::Id)?,
            tasks: vec![
                TaskState {
                    status: Status::Pending,
                    attempts: 0,
                    started_at: Timestamp(0),
                    completed_at: None,
                    output: None,
                    progress: 0,
                };
                n
            ],
            ready: (0..n as u32)
                .filter(|&i| waiting[i as usize] == 0)
                .collect(),
            waiting,
            running_attempt: vec![0; n],
            idem: (0..n as u64)
                .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .collect(),
            dependents,
            first,
            running: 0,
            limit: limit.max(1),
            deadlines: VecDeque::new(),
            last_wake: None,
            budget: Limits::default(),
            done_bp: 0,
            events_applied: 0,
        })
    }

    /// Whether every task completed.
    pub fn is_done(&self) -> bool {
        self.tasks.iter().all(|t| t.status == Status::Completed)
    }

    /// Progress in basis points of the whole (each task weighs the same).
    pub fn progress_bp(&self) -> u64 {
        self.done_bp / self.tasks.len().max(1) as u64
    }

    /// Starts what is ready.
    pub fn start(&mut self, now: Timestamp, out: &mut LeastStep<N>) {
        out.events.clear();
        out.commands.clear();
        self.pump(now.0, out);
        self.request_wake(now.0, out);
    }

    /// `work`'s attempt `attempt` finished with `output`: records it, releases the dependents
    /// and starts what is ready.
    ///
    /// # Errors
    /// [`NotRunning`] if `work` names no running attempt `attempt`; nothing changes.
    pub fn finished(
        &mut self,
        work: N::Work,
        attempt: u32,
        output: CompactOutput,
        now: Timestamp,
        out: &mut LeastStep<N>,
    ) -> Result<(), NotRunning> {
        let task = self.naming.task_of(&work);
        let i = match task {
            Some(i) if attempt != 0 && self.running_attempt.get(i) == Some(&attempt) => i,
            _ => return Err(NotRunning { task, attempt }),
        };
        out.events.clear();
        out.commands.clear();
        let st = &mut self.tasks[i];
        st.status = Status::Completed;
        st.completed_at = Some(now);
        st.output = Some(output.clone());
        self.done_bp += u64::from(10_000 - st.progress);
        st.progress = 10_000;
        self.events_applied += 1;
        out.events.push(self.naming.completed(i, now, output));
        self.running_attempt[i] = 0;
        self.running -= 1;
        for k in self.first[i] as usize..self.first[i + 1] as usize {
            let d = self.dependents[k];
            let w = &mut self.waiting[d as usize];
            *w -= 1;
            if *w == 0 {
                self.ready.push_back(d);
            }
        }
        self.pump(now.0, out);
        self.request_wake(now.0, out);
        Ok(())
    }

    fn pump(&mut self, now: u64, out: &mut LeastStep<N>) {
        while self.running < self.limit {
            let Some(i) = self.ready.pop_front() else {
                break;
            };
            let i = i as usize;
            let st = &mut self.tasks[i];
            let attempt = st.attempts + 1;
            st.status = Status::InProgress;
            st.attempts = attempt;
            st.started_at = Timestamp(now);
            self.events_applied += 1;
            out.events
                .push(self.naming.started(i, Timestamp(now), attempt));
            let budget = self.budget.clone();
            let deadline = now.saturating_add(budget.timeout_ms);
            self.running_attempt[i] = attempt;
            self.running += 1;
            self.deadlines.push_back((deadline, i as u32, attempt));
            let idem = self.idem[i];
            out.commands.push(LeastCommand::Start(Box::new(LeastStart {
                work: self.naming.work(i),
                role: Role::Task,
                input: Vec::new(),
                attempt,
                deadline: Timestamp(deadline),
                budget,
                idempotency_key: IdempotencyKey(idem),
                cache_key: CacheKey(idem ^ 0xcbf2_9ce4_8422_2325),
                reusable: false,
                degraded: false,
            })));
        }
    }

    fn request_wake(&mut self, now: u64, out: &mut LeastStep<N>) {
        while let Some(&(_, i, a)) = self.deadlines.front() {
            if self.running_attempt[i as usize] == a {
                break;
            }
            self.deadlines.pop_front();
        }
        if let Some(&(t, _, _)) = self.deadlines.front()
            && self.last_wake.is_none_or(|w| t < w || w <= now)
        {
            self.last_wake = Some(t);
            out.commands.push(LeastCommand::WakeAt(Timestamp(t)));
        }
    }
}

/// Drives `engine` as [`hosts::drive`](crate::hosts::drive) drives the engine: answers each
/// start with an empty output, oldest first, one at a time; returns how many it answered.
///
/// # Errors
/// The engine's, if it refuses an answer (it never should).
pub fn drive<N: Naming>(engine: &mut Least<N>) -> Result<usize, NotRunning> {
    let mut step = LeastStep::default();
    let mut queue: VecDeque<(N::Work, u32)> = VecDeque::with_capacity(64);
    let mut started = 0;
    engine.start(NOW, &mut step);
    loop {
        for c in step.commands.drain(..) {
            if let LeastCommand::Start(s) = c {
                started += 1;
                queue.push_back((s.work, s.attempt));
            }
        }
        let Some((work, attempt)) = queue.pop_front() else {
            break;
        };
        engine.finished(work, attempt, CompactOutput::default(), NOW, &mut step)?;
    }
    Ok(started)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads;

    /// Runs `w` to the end, answering the oldest start first, and checks each start against
    /// the dependencies and the limit.
    fn run_checked<N: Naming>(w: &Workload, limit: usize) {
        let mut e = Least::<N>::new(w, limit).unwrap();
        let mut step = LeastStep::default();
        let mut done = vec![false; w.len()];
        let mut started = vec![0u32; w.len()];
        let mut queue = VecDeque::new();
        e.start(NOW, &mut step);
        loop {
            for c in step.commands.drain(..) {
                if let LeastCommand::Start(s) = c {
                    let i = e.naming.task_of(&s.work).unwrap();
                    assert!(w.deps[i].iter().all(|&d| done[d as usize]), "{i} early");
                    started[i] += 1;
                    assert_eq!(s.attempt, 1);
                    queue.push_back((i, s.work, s.attempt));
                }
            }
            assert!(queue.len() <= limit, "over the limit");
            let Some((i, work, attempt)) = queue.pop_front() else {
                break;
            };
            // A stale attempt is refused and changes nothing, not even the step.
            let before = step.events.clone();
            assert_eq!(
                e.finished(
                    work.clone(),
                    attempt + 1,
                    CompactOutput::default(),
                    NOW,
                    &mut step
                ),
                Err(NotRunning {
                    task: Some(i),
                    attempt: attempt + 1
                })
            );
            assert_eq!(step.events, before);
            e.finished(work, attempt, CompactOutput::default(), NOW, &mut step)
                .unwrap();
            done[i] = true;
            assert!(!step.events.is_empty());
        }
        assert!(started.iter().all(|&s| s == 1), "each task starts once");
        assert!(e.is_done());
        assert_eq!(e.progress_bp(), 10_000);
        assert_eq!(e.events_applied, 2 * w.len() as u64);
    }

    #[test]
    fn both_namings_run_every_workload_in_dependency_order() {
        for w in [
            workloads::independent(300),
            workloads::chain(50),
            workloads::layered(600),
        ] {
            for limit in [1, 3, 64] {
                run_checked::<Named>(&w, limit);
                run_checked::<Indexed>(&w, limit);
            }
        }
    }

    #[test]
    fn drive_answers_every_start_once() {
        for w in workloads::all() {
            assert_eq!(
                drive(&mut Least::<Named>::new(&w, 64).unwrap()),
                Ok(w.len())
            );
            assert_eq!(
                drive(&mut Least::<Indexed>::new(&w, 64).unwrap()),
                Ok(w.len())
            );
        }
    }

    #[test]
    fn work_that_names_no_task_is_refused() {
        let w = workloads::chain(3);
        let mut e = Least::<Indexed>::new(&w, 4).unwrap();
        let mut step = LeastStep::default();
        e.start(NOW, &mut step);
        let started = step.events.clone();
        assert_eq!(started.len(), 1);
        let err = e
            .finished(TaskIx(7), 1, CompactOutput::default(), NOW, &mut step)
            .unwrap_err();
        assert_eq!(err.task, None);
        assert_eq!(err.to_string(), "the work names no task");
        // Task 1 waits on task 0: not running.
        let err = e
            .finished(TaskIx(1), 1, CompactOutput::default(), NOW, &mut step)
            .unwrap_err();
        assert_eq!(err.to_string(), "task 1 is not running attempt 1");
        assert_eq!(step.events, started);
        assert!(!e.is_done());
    }

    #[test]
    fn a_workload_with_bad_dependencies_is_refused_with_all_of_them() {
        let w = Workload {
            name: "bad",
            deps: vec![vec![], vec![0, 1], vec![9], vec![2]],
        };
        let err = Least::<Named>::new(&w, 4).unwrap_err();
        assert_eq!(
            err,
            LeastError::Workload(WorkloadError {
                bad: vec![(1, 1), (2, 9)]
            })
        );
        assert_eq!(
            err.to_string(),
            "dependencies that are not earlier tasks: task 1 on 1, task 2 on 9"
        );
        assert!(Least::<Indexed>::new(&w, 4).is_err());
    }

    #[test]
    fn a_wake_up_is_asked_for_the_first_deadline() {
        let w = workloads::independent(2);
        let mut e = Least::<Named>::new(&w, 1).unwrap();
        let mut step = LeastStep::default();
        e.start(Timestamp(5), &mut step);
        let deadline = 5 + Limits::default().timeout_ms;
        assert_eq!(
            step.commands.last(),
            Some(&LeastCommand::WakeAt(Timestamp(deadline)))
        );
    }
}
