//! [`Engine`]: the one handle callers hold. Its methods live in three rooms, along the Durable
//! Task Framework's lines: the client (`client.rs`: start, raise, status, list, terminate,
//! purge), the turn (`turn.rs`: load, plan, replay, commit) and the worker (`worker.rs`: work
//! messages, activity outcomes, timers). This file holds what they share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use tokio::sync::{watch, OwnedMutexGuard};

use super::error::EngineError;
use super::index::{by_custom_status, IndexKeyFn};
use super::registry::Registry;
use super::turn::Loaded;
use crate::clock::Clock;
use crate::store::Storage;

/// How an [`Engine`] behaves.
#[derive(Clone)]
pub struct EngineOptions {
    /// The table holding every instance (one partition each).
    pub table: String,
    /// The table of the status index (`index.rs`).
    pub index_table: String,
    /// The key an instance is listed under, from its custom status.
    pub index_key: IndexKeyFn,
    /// The queue the engine's work travels on (see `worker.rs`).
    pub work_queue: String,
    /// How many times a turn is retried after losing a race for the state row.
    pub max_turn_attempts: u32,
    /// How long a work message that arrives before its turn's commit is retried before it is
    /// taken for the message of a turn that failed (the commit of a live turn takes
    /// milliseconds; this covers a stalled one).
    pub commit_grace: Duration,
    /// How many activities this process runs at once; more wait their turn. Activities are
    /// the heavy part (the analysis reads a whole file): run unbounded, a burst of them would
    /// starve the requests the process is serving. Only the activity itself holds a permit,
    /// never the storage writes around it.
    pub max_concurrent_activities: usize,
    /// How an activity run under the Functions host stays recoverable when its process dies
    /// (see [`Standby`]).
    pub standby: Standby,
}

/// A long activity's standby copy. The Functions host hides the message it delivers for 10
/// minutes (renewed while the invocation runs): a process that dies mid-activity leaves its
/// work hidden that long. So an activity that has run for [`after`](Self::after) puts a copy of
/// its message on the queue, hidden for [`hidden`](Self::hidden) and hidden again every third
/// of that while the activity runs; the process that finishes withdraws it. If the process
/// dies, the copy shows within `hidden` and another instance takes the work over. Short
/// activities, most of them, cost nothing extra.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standby {
    pub after: std::time::Duration,
    pub hidden: std::time::Duration,
}

impl Default for Standby {
    fn default() -> Self {
        Standby {
            after: std::time::Duration::from_secs(2),
            hidden: std::time::Duration::from_secs(45),
        }
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            table: "workflows".to_owned(),
            index_table: "workflowindex".to_owned(),
            index_key: by_custom_status(),
            work_queue: "workflow-work".to_owned(),
            max_turn_attempts: 30,
            commit_grace: Duration::seconds(30),
            max_concurrent_activities: std::thread::available_parallelism().map_or(2, |n| n.get()),
            standby: Standby::default(),
        }
    }
}

impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions")
            .field("table", &self.table)
            .field("index_table", &self.index_table)
            .field("work_queue", &self.work_queue)
            .field("max_turn_attempts", &self.max_turn_attempts)
            .field("commit_grace", &self.commit_grace)
            .field("max_concurrent_activities", &self.max_concurrent_activities)
            .field("standby", &self.standby)
            .finish_non_exhaustive()
    }
}

/// Tells a local worker that work was sent, and when each message becomes visible, so it can
/// sleep until then instead of polling.
#[derive(Debug)]
pub struct WorkSignal(watch::Sender<Vec<DateTime<Utc>>>);

/// How many send times a [`WorkSignal`] keeps between takes (the earliest ones).
const SIGNAL_CAPACITY: usize = 256;

impl WorkSignal {
    fn new() -> Self {
        WorkSignal(watch::Sender::new(Vec::new()))
    }

    pub(super) fn sent(&self, visible_at: DateTime<Utc>) {
        self.0.send_modify(|times| {
            times.push(visible_at);
            if times.len() > SIGNAL_CAPACITY {
                times.sort_unstable();
                times.truncate(SIGNAL_CAPACITY);
            }
        });
    }

    /// Wakes whenever this process sends work.
    pub fn subscribe(&self) -> watch::Receiver<Vec<DateTime<Utc>>> {
        self.0.subscribe()
    }

    /// The times signalled since the last take, and forgets them.
    pub fn take(&self) -> Vec<DateTime<Utc>> {
        let mut taken = Vec::new();
        self.0.send_if_modified(|times| {
            taken = std::mem::take(times);
            false
        });
        taken
    }
}

/// A durable engine over one table. Cheap to clone; clones share everything.
///
/// Several engines (processes) may share one table and one work queue; the state row's ETag
/// keeps their turns apart. Someone must receive the work queue's messages and pass them to
/// [`Engine::execute`]: the host's queue trigger, or a [`super::WorkDriver`].
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
    /// Work sent by this process, for a local worker to wake on.
    pub(super) signal: WorkSignal,
    /// Each instance's partition as this process last committed it. The next turn of that
    /// instance starts from here instead of loading, saving a storage read per turn (an
    /// activity's outcome, a decision after our own commit). A stale entry cannot do harm: the
    /// commit's ETag guard refuses it and the turn reloads. Only commits rest on it; a turn
    /// that would refuse or do nothing re-decides on freshly loaded state.
    pub(super) recent: Mutex<HashMap<String, Loaded>>,
    /// Instances this process saw finish, as committed. A finished instance never changes (no
    /// turn is taken, termination is refused), so its remembered partition answers a status
    /// read as well as storage would: the download that follows an approval costs no read.
    /// Only a purge removes one; another process's purge is seen once the entry is evicted.
    pub(super) finished: Mutex<HashMap<String, Loaded>>,
    /// The status index's writes, gathered into shared batches.
    pub(super) index_writer: super::index_writer::IndexWriter,
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
                finished: Mutex::new(HashMap::new()),
                index_writer: super::index_writer::IndexWriter::default(),
                activity_slots,
                signal: WorkSignal::new(),
            }),
        }
    }

    /// Creates the engine's tables and work queue if missing. Idempotent.
    pub async fn ensure_storage(&self) -> Result<(), EngineError> {
        let options = &self.inner.options;
        self.inner.store.ensure_table(&options.table).await?;
        self.inner.store.ensure_table(&options.index_table).await?;
        self.inner.store.ensure_queue(&options.work_queue).await?;
        Ok(())
    }

    /// The queue the engine's work travels on.
    pub fn work_queue(&self) -> &str {
        &self.inner.options.work_queue
    }

    /// What a local worker wakes on.
    pub fn work_signal(&self) -> &WorkSignal {
        &self.inner.signal
    }

    pub(super) fn store(&self) -> &Arc<dyn Storage> {
        &self.inner.store
    }

    pub(super) fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
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
