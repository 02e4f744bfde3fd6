//! Time for the async shell: [`Clock`] gives the current [`Timestamp`] and sleeps.
//!
//! The engine in `milestone-core` never reads a clock; the shell does, through this trait, so
//! that tests can run hours of deadlines and backoff in microseconds with a [`ManualClock`].
//! Timeouts are a race between the work and the clock's sleep: [`with_timeout`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::{BoxFuture, Either};
use futures::task::AtomicWaker;
use milestone_core::Timestamp;

/// A source of time: the current instant and sleeps until a later one.
///
/// # Contract
///
/// - `now()` never goes backwards.
/// - The future of `sleep_until(t)` completes once `now() >= t` (at once if `t` has passed) and
///   not before; dropping it cancels the sleep.
/// - Sleeps are executor-agnostic: they wake their task through its `Waker`, never by assuming a
///   particular runtime.
pub trait Clock: fmt::Debug + Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;

    /// A future that completes at (or after) `deadline`.
    fn sleep_until(&self, deadline: Timestamp) -> BoxFuture<'static, ()>;

    /// A future that completes `ms` milliseconds from now.
    fn sleep(&self, ms: u64) -> BoxFuture<'static, ()> {
        self.sleep_until(self.now().plus_millis(ms))
    }
}

impl<T: Clock + ?Sized> Clock for Arc<T> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
    fn sleep_until(&self, deadline: Timestamp) -> BoxFuture<'static, ()> {
        (**self).sleep_until(deadline)
    }
    fn sleep(&self, ms: u64) -> BoxFuture<'static, ()> {
        (**self).sleep(ms)
    }
}

impl<T: Clock + ?Sized> Clock for Box<T> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
    fn sleep_until(&self, deadline: Timestamp) -> BoxFuture<'static, ()> {
        (**self).sleep_until(deadline)
    }
    fn sleep(&self, ms: u64) -> BoxFuture<'static, ()> {
        (**self).sleep(ms)
    }
}

/// The work did not finish before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline {deadline:?} passed")]
pub struct Elapsed {
    /// The deadline that passed.
    pub deadline: Timestamp,
}

/// Runs `fut` until it completes or `deadline` passes on `clock`, whichever comes first. On a
/// timeout, `fut` is dropped (which is how async work is cancelled) and [`Elapsed`] is
/// returned.
///
/// ```
/// use milestone_agents::{with_timeout, Clock, ManualClock};
/// use milestone_core::Timestamp;
///
/// let clock = ManualClock::new(Timestamp(0));
/// let never = futures::future::pending::<()>();
/// let mut run = Box::pin(with_timeout(&clock, Timestamp(100), never));
/// assert!(futures::FutureExt::now_or_never(&mut run).is_none());
/// clock.advance(100);
/// assert!(futures::executor::block_on(run).is_err());
/// ```
pub async fn with_timeout<C, F>(
    clock: &C,
    deadline: Timestamp,
    fut: F,
) -> Result<F::Output, Elapsed>
where
    C: Clock + ?Sized,
    F: Future,
{
    let sleep = clock.sleep_until(deadline);
    let fut = std::pin::pin!(fut);
    match futures::future::select(fut, sleep).await {
        Either::Left((out, _)) => Ok(out),
        Either::Right(((), _)) => Err(Elapsed { deadline }),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One sleeper, shared between its future and whoever wakes it.
#[derive(Debug, Default)]
struct Sleeper {
    fired: AtomicBool,
    dropped: AtomicBool,
    waker: AtomicWaker,
}

impl Sleeper {
    fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// The future of a sleep: completes when its sleeper fires.
struct SleepFuture {
    sleeper: Arc<Sleeper>,
    /// Called on the first poll (the system clock registers lazily).
    register: Option<Box<dyn FnOnce(Arc<Sleeper>) + Send>>,
}

impl Future for SleepFuture {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.sleeper.fired.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.sleeper.waker.register(cx.waker());
        if let Some(register) = self.register.take() {
            register(Arc::clone(&self.sleeper));
        }
        if self.sleeper.fired.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for SleepFuture {
    fn drop(&mut self) {
        self.sleeper.dropped.store(true, Ordering::Release);
    }
}

fn ready_sleep() -> BoxFuture<'static, ()> {
    Box::pin(std::future::ready(()))
}

/// The wall clock, with sleeps served by **one** shared timer thread for the whole process (a
/// heap of deadlines and wakers, started on first use), never a thread per sleep.
///
/// `now()` is the system time in milliseconds since the Unix epoch, held monotone (a system
/// clock stepped backwards reads as standing still). Sleeps are measured on the monotonic
/// clock from the moment they are created.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock.
    pub fn new() -> SystemClock {
        SystemClock
    }
}

static LAST_NOW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        // Within one millisecond of the last reading (the common case) a load is enough: the
        // read-modify-write is only for a reading that moves the mark on.
        let prev = LAST_NOW.load(Ordering::Acquire);
        if wall <= prev {
            return Timestamp(prev);
        }
        let prev = LAST_NOW.fetch_max(wall, Ordering::AcqRel);
        Timestamp(prev.max(wall))
    }

    fn sleep_until(&self, deadline: Timestamp) -> BoxFuture<'static, ()> {
        if deadline.as_millis() == u64::MAX {
            // "No deadline": never fires, and takes no place in the timer's heap.
            return Box::pin(std::future::pending());
        }
        let now = self.now();
        let ms = deadline.millis_since(now);
        if ms == 0 {
            return ready_sleep();
        }
        let at = Instant::now()
            .checked_add(Duration::from_millis(ms))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365 * 100));
        Box::pin(SleepFuture {
            sleeper: Arc::new(Sleeper::default()),
            register: Some(Box::new(move |s| timer().insert(at, s))),
        })
    }
}

/// Forgets the sleeps whose futures were dropped before their deadline (called every 1024
/// sleeps: amortized O(1) per sleep, and memory bounded by the live sleeps).
fn forget_dropped<T: Ord + Copy>(
    heap: &mut BinaryHeap<Reverse<(T, u64)>>,
    sleepers: &mut std::collections::HashMap<u64, Arc<Sleeper>>,
) {
    sleepers.retain(|_, s| !s.dropped.load(Ordering::Acquire));
    heap.retain(|Reverse((_, id))| sleepers.contains_key(id));
}

/// The process-wide timer behind [`SystemClock`].
struct Timer {
    state: Mutex<TimerState>,
    changed: Condvar,
}

#[derive(Default)]
struct TimerState {
    seq: u64,
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    sleepers: std::collections::HashMap<u64, Arc<Sleeper>>,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<&'static Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let t: &'static Timer = Box::leak(Box::new(Timer {
            state: Mutex::new(TimerState::default()),
            changed: Condvar::new(),
        }));
        // If the thread cannot be started, sleeps never fire; there is nothing better to do
        // without a thread, and the error is rare enough (resource exhaustion) to accept.
        let _ = std::thread::Builder::new()
            .name("milestone-timer".into())
            .spawn(move || t.run());
        t
    })
}

impl Timer {
    fn insert(&self, at: Instant, sleeper: Arc<Sleeper>) {
        let mut st = lock(&self.state);
        st.seq += 1;
        if st.seq.is_multiple_of(1024) {
            let TimerState { heap, sleepers, .. } = &mut *st;
            forget_dropped(heap, sleepers);
        }
        let id = st.seq;
        let earliest = st.heap.peek().map(|Reverse((i, _))| *i);
        st.heap.push(Reverse((at, id)));
        st.sleepers.insert(id, sleeper);
        if earliest.is_none_or(|e| at < e) {
            self.changed.notify_one();
        }
    }

    fn run(&self) {
        let mut st = lock(&self.state);
        loop {
            let now = Instant::now();
            while let Some(Reverse((at, id))) = st.heap.peek().copied() {
                if at > now {
                    break;
                }
                st.heap.pop();
                if let Some(s) = st.sleepers.remove(&id) {
                    s.fire();
                }
            }
            st = match st.heap.peek().map(|Reverse((at, _))| *at) {
                None => self
                    .changed
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(at) => {
                    let wait = at.saturating_duration_since(Instant::now());
                    self.changed
                        .wait_timeout(st, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

/// A clock that moves only when told to: deterministic timeouts and backoff in tests.
///
/// Cloning gives another handle on the same clock. [`advance`](ManualClock::advance) wakes,
/// in deadline order, every sleeper whose time has come.
///
/// ```
/// use milestone_agents::{Clock, ManualClock};
/// use milestone_core::Timestamp;
/// use futures::FutureExt;
///
/// let clock = ManualClock::new(Timestamp(1_000));
/// let mut nap = clock.sleep(500);
/// assert!((&mut nap).now_or_never().is_none());
/// clock.advance(499);
/// assert!((&mut nap).now_or_never().is_none());
/// clock.advance(1);
/// assert_eq!(nap.now_or_never(), Some(()));
/// assert_eq!(clock.now(), Timestamp(1_500));
/// ```
#[derive(Clone, Default)]
pub struct ManualClock {
    inner: Arc<Mutex<ManualState>>,
}

#[derive(Default)]
struct ManualState {
    now: u64,
    seq: u64,
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    sleepers: std::collections::HashMap<u64, Arc<Sleeper>>,
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.inner);
        f.debug_struct("ManualClock")
            .field("now", &st.now)
            .field("sleepers", &st.sleepers.len())
            .finish()
    }
}

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            inner: Arc::new(Mutex::new(ManualState {
                now: start.as_millis(),
                ..ManualState::default()
            })),
        }
    }

    /// Moves the clock `ms` milliseconds forward and wakes the sleepers now due.
    pub fn advance(&self, ms: u64) {
        let to = lock(&self.inner).now.saturating_add(ms);
        self.set(Timestamp(to));
    }

    /// Moves the clock to `t` (never backwards: an earlier `t` is ignored) and wakes the
    /// sleepers now due.
    pub fn set(&self, t: Timestamp) {
        let due = {
            let mut st = lock(&self.inner);
            st.now = st.now.max(t.as_millis());
            let now = st.now;
            let mut due = Vec::new();
            while let Some(Reverse((at, id))) = st.heap.peek().copied() {
                if at > now {
                    break;
                }
                st.heap.pop();
                if let Some(s) = st.sleepers.remove(&id) {
                    due.push(s);
                }
            }
            due
        };
        // Wake outside the lock: a woken task may run inline and sleep again.
        for s in due {
            s.fire();
        }
    }

    /// How many sleeps are waiting (not yet due and not dropped): lets a test wait until the
    /// code under test has gone to sleep before advancing.
    pub fn sleepers(&self) -> usize {
        lock(&self.inner)
            .sleepers
            .values()
            .filter(|s| !s.dropped.load(Ordering::Acquire))
            .count()
    }

    /// The earliest deadline anyone waits for, if any.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let st = lock(&self.inner);
        st.heap
            .iter()
            .filter(|Reverse((_, id))| {
                st.sleepers
                    .get(id)
                    .is_some_and(|s| !s.dropped.load(Ordering::Acquire))
            })
            .map(|Reverse((at, _))| Timestamp(*at))
            .min()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(lock(&self.inner).now)
    }

    fn sleep_until(&self, deadline: Timestamp) -> BoxFuture<'static, ()> {
        let mut st = lock(&self.inner);
        if deadline.as_millis() <= st.now {
            return ready_sleep();
        }
        st.seq += 1;
        if st.seq.is_multiple_of(1024) {
            let ManualState { heap, sleepers, .. } = &mut *st;
            forget_dropped(heap, sleepers);
        }
        let id = st.seq;
        let sleeper = Arc::new(Sleeper::default());
        st.heap.push(Reverse((deadline.as_millis(), id)));
        st.sleepers.insert(id, Arc::clone(&sleeper));
        Box::pin(SleepFuture {
            sleeper,
            register: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn manual_sleepers_wake_in_deadline_order_and_only_when_due() {
        let clock = ManualClock::new(Timestamp(0));
        let mut a = clock.sleep(30);
        let mut b = clock.sleep(10);
        let mut c = clock.sleep_until(Timestamp(20));
        assert_eq!(clock.sleepers(), 3);
        assert_eq!(clock.next_deadline(), Some(Timestamp(10)));
        clock.advance(10);
        assert_eq!((&mut b).now_or_never(), Some(()));
        assert!((&mut a).now_or_never().is_none());
        assert!((&mut c).now_or_never().is_none());
        clock.advance(15);
        assert_eq!((&mut c).now_or_never(), Some(()));
        assert!((&mut a).now_or_never().is_none());
        drop(a);
        assert_eq!(clock.sleepers(), 0);
        assert_eq!(clock.next_deadline(), None);
    }

    #[test]
    fn dropped_sleeps_are_forgotten() {
        let clock = ManualClock::new(Timestamp(0));
        let keep = clock.sleep(1);
        for i in 0..5_000 {
            drop(clock.sleep(10 + i));
        }
        let held = lock(&clock.inner).heap.len();
        assert!(held <= 1_100, "{held} entries held for 1 live sleep");
        assert_eq!(clock.sleepers(), 1);
        clock.advance(1);
        assert_eq!(keep.now_or_never(), Some(()));
    }

    #[test]
    fn manual_clock_never_goes_backwards_and_past_deadlines_are_ready() {
        let clock = ManualClock::new(Timestamp(100));
        clock.set(Timestamp(50));
        assert_eq!(clock.now(), Timestamp(100));
        assert_eq!(clock.sleep_until(Timestamp(100)).now_or_never(), Some(()));
        assert_eq!(clock.sleep(0).now_or_never(), Some(()));
    }

    #[test]
    fn with_timeout_returns_the_output_when_the_work_wins() {
        let clock = ManualClock::new(Timestamp(0));
        let out = futures::executor::block_on(with_timeout(&clock, Timestamp(5), async { 7 }));
        assert_eq!(out, Ok(7));
        let out = futures::executor::block_on(with_timeout(
            &clock,
            Timestamp(0),
            futures::future::pending::<u8>(),
        ));
        assert_eq!(
            out,
            Err(Elapsed {
                deadline: Timestamp(0)
            })
        );
    }

    #[test]
    fn system_clock_reads_the_wall_time_and_never_goes_back_across_threads() {
        let before = SystemClock::new().now();
        let readers: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    let clock = SystemClock::new();
                    let mut last = before;
                    for _ in 0..20_000 {
                        let now = clock.now();
                        assert!(now >= last, "{now:?} after {last:?}");
                        last = now;
                    }
                    last
                })
            })
            .collect();
        for r in readers {
            let last = r.join().expect("reader");
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("after the epoch")
                .as_millis() as u64;
            // The last reading is the wall time of then, so no later than now (a second of
            // slack for a system clock stepped back meanwhile).
            assert!(last.as_millis() <= wall + 1_000, "{last:?} vs {wall}");
        }
        assert!(SystemClock::new().now() >= before);
    }

    #[test]
    fn system_clock_sleeps_end_no_earlier_than_their_deadlines() {
        let clock = SystemClock::new();
        let start = Instant::now();
        let t0 = clock.now();
        let futs =
            [40u64, 10, 25, 0].map(|ms| clock.sleep(ms).map(move |()| (ms, start.elapsed())));
        let ended = futures::executor::block_on(futures::future::join_all(futs));
        for (ms, took) in ended {
            assert!(
                took >= Duration::from_millis(ms),
                "{ms} ms sleep ended after {took:?}"
            );
        }
        assert!(clock.now().millis_since(t0) >= 39);
        // A sleep with no deadline never fires, and a dropped one is harmless.
        assert!(
            clock
                .sleep_until(Timestamp(u64::MAX))
                .now_or_never()
                .is_none()
        );
    }
}
