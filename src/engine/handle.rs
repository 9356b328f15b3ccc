//! [`Engine`]: the one handle callers hold. Its methods live in three rooms, along the Durable
//! Task Framework's lines: the client (`client.rs`: start, raise, status, list, terminate,
//! purge), the turn (`turn.rs`: load, plan, replay, commit) and the worker (`worker.rs`:
//! dispatch, activity outcomes, timers, recovery). This file holds what they share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Duration;
use tokio::sync::{watch, OwnedMutexGuard};

use super::error::EngineError;
use super::registry::Registry;
use super::turn::Loaded;
use crate::clock::Clock;
use crate::store::Storage;

/// How an [`Engine`] behaves.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The table holding every instance (one partition each).
    pub table: String,
    /// How long a scheduled activity is presumed running in the process that committed it.
    /// After that, `recover` runs it again (activities are at-least-once).
    pub activity_lease: Duration,
    /// How many times a turn is retried after losing a race for the state row.
    pub max_turn_attempts: u32,
    /// Wake up in this process when a timer is due (a Tokio sleep per timer). Off, timers fire
    /// only through `recover` (and at once when already due when created). Tests using a
    /// `ManualClock` turn this off.
    pub in_process_timers: bool,
    /// How many activities this process runs at once; more wait their turn. Activities are
    /// the heavy part (the analysis reads a whole file): run unbounded, a burst of them would
    /// starve the requests the process is serving.
    pub max_concurrent_activities: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            table: "workflows".to_owned(),
            activity_lease: Duration::minutes(5),
            max_turn_attempts: 30,
            in_process_timers: true,
            max_concurrent_activities: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// A durable engine over one table. Cheap to clone; clones share everything.
///
/// Its methods must run inside a Tokio runtime: after a commit, activities (and timer
/// wake-ups) are spawned as Tokio tasks. Several engines (processes) may share one table;
/// the state row's ETag keeps their turns apart. Someone must call [`Engine::recover`]
/// periodically (a timer trigger, or a loop in local mode): it is the only thing that fires
/// timers whose in-process wake-up was lost and reruns work of dead processes.
#[derive(Clone)]
pub struct Engine {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) store: Arc<dyn Storage>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) registry: Registry,
    pub(super) options: EngineOptions,
    /// Turns of one instance in this process run one at a time: racing our own tasks for the
    /// state row would only burn storage transactions. Other processes race via ETags.
    pub(super) locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Activity and due-timer work started by this engine and not finished.
    pub(super) in_flight: watch::Sender<usize>,
    /// Each instance's partition as this process last committed it. The next turn of that
    /// instance starts from here instead of loading, saving a storage read per turn (an
    /// activity's outcome, a decision after our own commit). A stale entry cannot do harm: the
    /// commit's ETag guard refuses it and the turn reloads. Only commits rest on it; a turn
    /// that would refuse or do nothing re-decides on freshly loaded state.
    pub(super) recent: Mutex<HashMap<String, Loaded>>,
    /// Permits to run an activity ([`EngineOptions::max_concurrent_activities`]).
    pub(super) activity_slots: Arc<tokio::sync::Semaphore>,
}

/// How many instances' partitions [`Inner::recent`] keeps; past it, the map starts over.
pub(super) const RECENT_CAPACITY: usize = 1024;

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("backend", &self.inner.store.backend_name())
            .field("registry", &self.inner.registry)
            .field("options", &self.inner.options)
            .finish()
    }
}
impl Engine {
    pub fn new(
        store: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        registry: Registry,
        options: EngineOptions,
    ) -> Self {
        let activity_slots = Arc::new(tokio::sync::Semaphore::new(
            options.max_concurrent_activities.max(1),
        ));
        Engine {
            inner: Arc::new(Inner {
                store,
                clock,
                registry,
                options,
                locks: Mutex::new(HashMap::new()),
                recent: Mutex::new(HashMap::new()),
                activity_slots,
                in_flight: watch::Sender::new(0),
            }),
        }
    }

    /// Creates the engine's table if missing. Idempotent.
    pub async fn ensure_storage(&self) -> Result<(), EngineError> {
        self.inner
            .store
            .ensure_table(&self.inner.options.table)
            .await?;
        Ok(())
    }

    pub(super) async fn lock_instance(&self, instance_id: &str) -> InstanceLock {
        let mutex = {
            let mut locks = self
                .inner
                .locks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            locks.entry(instance_id.to_owned()).or_default().clone()
        };
        InstanceLock {
            guard: Some(mutex.lock_owned().await),
            inner: self.inner.clone(),
            instance_id: instance_id.to_owned(),
        }
    }
}

/// Holds an instance's in-process turn lock; forgets the lock when nobody else wants it.
pub(super) struct InstanceLock {
    guard: Option<OwnedMutexGuard<()>>,
    inner: Arc<Inner>,
    instance_id: String,
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self
            .inner
            .locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if locks
            .get(&self.instance_id)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            locks.remove(&self.instance_id);
        }
    }
}
