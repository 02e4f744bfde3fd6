//! What an orchestrator tells the outside while it runs: every event it appends, as a
//! [`Notice`], to [`EventListener`]s (called in line, in order) and to [`Notices`] streams
//! (one unbounded channel per subscriber).

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures::Stream;
use futures::channel::mpsc;
use milestone_core::{Event, MilestoneId};

/// One event appended to a milestone's log by the orchestrator.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// The milestone.
    pub milestone: MilestoneId,
    /// The log version right after this event (the `Created` event is version 1).
    pub version: u64,
    /// The event.
    pub event: Event,
}

/// Receives every [`Notice`] in log order, synchronously, right after the events are
/// persisted. Implementations must not block: they run on the orchestrator's task. A closure
/// `Fn(&Notice)` is a listener.
pub trait EventListener: Send + Sync {
    /// Takes one notice.
    fn on_event(&self, notice: &Notice);
}

impl<F: Fn(&Notice) + Send + Sync> EventListener for F {
    fn on_event(&self, notice: &Notice) {
        self(notice)
    }
}

/// A stream of the [`Notice`]s appended after [`subscribe`](super::Orchestrator::subscribe)
/// was called, across every milestone the orchestrator runs. It ends when the orchestrator is
/// dropped. Unbounded: a subscriber that never reads keeps every notice in memory.
#[must_use = "streams do nothing unless polled"]
pub struct Notices {
    rx: mpsc::UnboundedReceiver<Notice>,
}

impl fmt::Debug for Notices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notices").finish_non_exhaustive()
    }
}

impl Stream for Notices {
    type Item = Notice;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Notice>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}

/// Fans notices out to listeners and subscribers.
#[derive(Default)]
pub(crate) struct Hub {
    listeners: Vec<Arc<dyn EventListener>>,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Notice>>>,
    /// Live subscribers as of the last publish (a cheap "anyone there?" test without the
    /// lock); dropped streams are counted out when the next events are published.
    subscribed: AtomicUsize,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("listeners", &self.listeners.len())
            .field("subscribed", &self.subscribed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Hub {
    pub(crate) fn new(listeners: Vec<Arc<dyn EventListener>>) -> Hub {
        Hub {
            listeners,
            ..Hub::default()
        }
    }

    pub(crate) fn subscribe(&self) -> Notices {
        let (tx, rx) = mpsc::unbounded();
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tx);
        self.subscribed.fetch_add(1, Ordering::Relaxed);
        Notices { rx }
    }

    /// Whether nobody listens (then events are not cloned at all).
    pub(crate) fn is_quiet(&self) -> bool {
        self.listeners.is_empty() && self.subscribed.load(Ordering::Relaxed) == 0
    }

    /// Publishes `events`, the first of which got version `first`.
    pub(crate) fn publish(&self, milestone: &MilestoneId, first: u64, events: &[Event]) {
        if self.is_quiet() || events.is_empty() {
            return;
        }
        let mut subs = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (k, event) in events.iter().enumerate() {
            let notice = Notice {
                milestone: milestone.clone(),
                version: first + k as u64,
                event: event.clone(),
            };
            for l in &self.listeners {
                l.on_event(&notice);
            }
            subs.retain(|tx| tx.unbounded_send(notice.clone()).is_ok());
        }
        // Dropped streams are gone from the list: once none is left, events are not cloned.
        self.subscribed.store(subs.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use milestone_core::Timestamp;

    #[test]
    fn a_dropped_subscriber_stops_the_cloning() {
        let hub = Hub::new(Vec::new());
        assert!(hub.is_quiet());
        let notices = hub.subscribe();
        assert!(!hub.is_quiet());
        drop(notices);
        let id = MilestoneId::new("m").unwrap();
        hub.publish(&id, 2, &[Event::ExecutionStarted { at: Timestamp(1) }]);
        assert!(
            hub.is_quiet(),
            "nobody listens once the only stream is dropped"
        );
    }
}
