//! The result cache: a phase's output kept under its [`CacheKey`] (a stable hash of the phase
//! and its input), so that work whose result is reusable (the phase's
//! [`CachePolicy`](milestone_core::CachePolicy)) is not run again.
//!
//! The orchestrator consults the cache only for starts the engine marks `reusable`, and stores
//! a result only once the engine has accepted it (its `item-completed` event is persisted):
//! a result that failed its gate is never cached.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use milestone_core::ItemOutput;
use milestone_core::engine::CacheKey;

/// Where results are cached. Implementations must be cheap and must not block for long: they
/// are called on the orchestrator's task. A cache may forget anything at any time.
pub trait ResultCache: Debug + Send + Sync {
    /// The output cached under `key`, if any.
    fn get(&self, key: CacheKey) -> Option<ItemOutput>;
    /// Caches `output` under `key`, replacing what was there.
    fn put(&self, key: CacheKey, output: ItemOutput);
}

/// A [`ResultCache`] in memory, with hit and miss counters.
///
/// ```
/// use milestone_agents::orchestrator::{InMemoryCache, ResultCache};
/// use milestone_core::engine::CacheKey;
/// use milestone_core::ItemOutput;
///
/// let cache = InMemoryCache::new();
/// assert_eq!(cache.get(CacheKey(7)), None);
/// cache.put(CacheKey(7), ItemOutput { summary: "patterns".into(), ..ItemOutput::default() });
/// assert_eq!(cache.get(CacheKey(7)).map(|o| o.summary), Some("patterns".into()));
/// assert_eq!((cache.hits(), cache.misses(), cache.len()), (1, 1, 1));
/// ```
#[derive(Debug, Default)]
pub struct InMemoryCache {
    map: Mutex<HashMap<CacheKey, ItemOutput>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl InMemoryCache {
    /// An empty cache.
    pub fn new() -> InMemoryCache {
        InMemoryCache::default()
    }

    fn map(&self) -> MutexGuard<'_, HashMap<CacheKey, ItemOutput>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many lookups found a result.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// How many lookups found nothing.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// How many results are cached.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }
}

impl ResultCache for InMemoryCache {
    fn get(&self, key: CacheKey) -> Option<ItemOutput> {
        let found = self.map().get(&key).cloned();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn put(&self, key: CacheKey, output: ItemOutput) {
        self.map().insert(key, output);
    }
}
