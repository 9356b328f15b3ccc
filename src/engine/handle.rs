//! [`Engine`]: the one handle callers hold, and the state its rooms share. The fields are
//! private to this file; the client, the turn and the worker reach them through methods, so
//! no room depends on another's internals. The memory of committed partitions (and the reads
//! that fill it) lives here too, because the turn writes it and the client and worker read it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures::{Stream, TryStreamExt};
use tokio::sync::{watch, OwnedMutexGuard};

use super::index_writer::IndexWriter;
use super::registry::Registry;
use super::vocabulary::error::EngineError;
use super::vocabulary::event::HistoryEvent;
use super::vocabulary::instance::InstanceState;
use super::vocabulary::options::EngineOptions;
use super::vocabulary::rows::{history_event, STATE_ROW};
use crate::clock::Clock;
use crate::store::Storage;
use crate::store::{ETag, Page, StoreError, TableQuery};

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
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    registry: Registry,
    options: EngineOptions,
    /// Turns of one instance in this process run one at a time: racing our own tasks for the
    /// state row would only burn storage transactions. Other processes race via ETags.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Work sent by this process, for a local worker to wake on.
    signal: WorkSignal,
    /// Each instance's partition as this process last committed it. The next turn of that
    /// instance starts from here instead of loading, saving a storage read per turn (an
    /// activity's outcome, a decision after our own commit). A stale entry cannot do harm: the
    /// commit's ETag guard refuses it and the turn reloads. Only commits rest on it; a turn
    /// that would refuse or do nothing re-decides on freshly loaded state.
    recent: Mutex<HashMap<String, Loaded>>,
    /// Instances this process saw finish, as committed. A finished instance never changes (no
    /// turn is taken, termination is refused), so its remembered partition answers a status
    /// read as well as storage would: the download that follows an approval costs no read.
    /// Only a purge removes one; another process's purge is seen once the entry is evicted.
    finished: Mutex<HashMap<String, Loaded>>,
    /// The status index's writes, gathered into shared batches.
    index_writer: IndexWriter,
    /// Permits to run an activity ([`EngineOptions::max_concurrent_activities`]).
    activity_slots: Arc<tokio::sync::Semaphore>,
    /// The local worker that takes this process's activities straight from the turn that
    /// scheduled them, when one runs (see [`EagerRunner`]).
    eager: std::sync::RwLock<Option<Arc<EagerRunner>>>,
}

/// A local worker that runs activities where they were scheduled (Temporal's eager activity
/// dispatch): the turn still sends the activity's message before it commits, but hidden for
/// `visibility`, and after the commit hands it, with the receipt the send returned, to this
/// worker. The message is deleted when the outcome commits, as if it had been received; if the
/// process dies first, it shows when the hiding lapses and any worker runs it. One request
/// (the receive) less per activity, and no trip through the queue before it starts.
pub(super) struct EagerRunner {
    /// How long the message stays hidden, renewed while the work runs.
    pub(super) visibility: std::time::Duration,
    /// Whether the worker has a free slot now: if not, the work goes through the queue.
    pub(super) has_room: Box<dyn Fn() -> bool + Send + Sync>,
    /// Takes the work. Called after the commit, once per message.
    pub(super) take: Box<dyn Fn(HandOff) + Send + Sync>,
}

/// A work message sent hidden and handed to this process's [`EagerRunner`].
pub(super) struct HandOff {
    pub(super) text: String,
    pub(super) inserted: DateTime<Utc>,
    pub(super) receipt: crate::store::MessageReceipt,
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
                index_writer: IndexWriter::default(),
                activity_slots,
                signal: WorkSignal::new(),
                eager: std::sync::RwLock::new(None),
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

    /// Makes `runner` the worker that takes this process's activities as they are scheduled
    /// (the latest one set, when several drivers run).
    pub(super) fn set_eager_runner(&self, runner: Arc<EagerRunner>) {
        *self.inner.eager.write().unwrap_or_else(|p| p.into_inner()) = Some(runner);
    }

    /// Back to the queue alone, unless another runner was set since `runner`.
    pub(super) fn clear_eager_runner(&self, runner: &Arc<EagerRunner>) {
        let mut current = self.inner.eager.write().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, runner)) {
            *current = None;
        }
    }

    /// The eager runner, when one is set and has room now.
    pub(super) fn eager_runner(&self) -> Option<Arc<EagerRunner>> {
        let runner = self.inner.eager.read().unwrap_or_else(|p| p.into_inner());
        runner.as_ref().filter(|r| (r.has_room)()).cloned()
    }

    pub(super) fn store(&self) -> &Arc<dyn Storage> {
        &self.inner.store
    }

    pub(super) fn options(&self) -> &EngineOptions {
        &self.inner.options
    }

    pub(super) fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub(super) fn index_writer(&self) -> &IndexWriter {
        &self.inner.index_writer
    }

    /// Permits to run an activity ([`EngineOptions::max_concurrent_activities`]).
    pub(super) fn activity_slots(&self) -> &tokio::sync::Semaphore {
        &self.inner.activity_slots
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

/// An instance's partition as loaded.
#[derive(Clone)]
pub(super) struct Loaded {
    pub(super) state: Option<(InstanceState, ETag)>,
    pub(super) history: Vec<HistoryEvent>,
}

impl Loaded {
    pub(super) fn absent() -> Self {
        Loaded {
            state: None,
            history: Vec::new(),
        }
    }

    pub(super) fn state(&self) -> Option<&InstanceState> {
        self.state.as_ref().map(|(s, _)| s)
    }
}

/// Table Storage's largest page: the engine's scans read as few pages as they can.
const MAX_QUERY_PAGE: u32 = 1000;

/// The memory of partitions ([`Inner::recent`], [`Inner::finished`]) and the reads that fill it.
impl Engine {
    pub(super) fn recent(&self, instance_id: &str) -> Option<Loaded> {
        let recent = self.recent_map();
        recent.get(instance_id).cloned()
    }

    pub(super) fn remember(
        &self,
        instance_id: &str,
        state: &InstanceState,
        history: &[HistoryEvent],
        state_etag: Option<ETag>,
    ) {
        let mut recent = self.recent_map();
        let Some(etag) = state_etag else {
            recent.remove(instance_id);
            return;
        };
        let loaded = Loaded {
            state: Some((state.clone(), etag)),
            history: history.to_vec(),
        };
        if !state.status.runtime_status.is_terminal() {
            insert_bounded(&mut recent, instance_id, loaded);
            return;
        }
        // A finished instance takes no more turns: it goes to `finished` instead.
        recent.remove(instance_id);
        drop(recent);
        insert_bounded(&mut self.finished_map(), instance_id, loaded);
    }

    fn recent_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Loaded>> {
        self.inner.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn finished_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Loaded>> {
        self.inner
            .finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The partition of an instance this process saw finish (see `Inner::finished`).
    pub(super) fn finished(&self, instance_id: &str) -> Option<Loaded> {
        self.finished_map().get(instance_id).cloned()
    }

    pub(super) fn forget(&self, instance_id: &str) {
        self.recent_map().remove(instance_id);
        self.finished_map().remove(instance_id);
    }

    /// Every page of `query` (at the largest page size) over the engine's table, each fetched
    /// only when the stream is polled, so a caller that works page by page holds one at a time.
    pub(super) fn pages(
        &self,
        query: TableQuery,
    ) -> impl Stream<Item = Result<Page, StoreError>> + Send + '_ {
        let first = TableQuery {
            top: Some(MAX_QUERY_PAGE),
            ..query
        };
        futures::stream::try_unfold(Some(first), move |next| async move {
            let Some(query) = next else {
                return Ok(None);
            };
            let page = self
                .inner
                .store
                .query(&self.inner.options.table, &query)
                .await?;
            let next = page.continuation.clone().map(|continuation| TableQuery {
                continuation: Some(continuation),
                ..query
            });
            Ok(Some((page, next)))
        })
    }

    /// Reads the whole partition: history rows in order, then the state row.
    pub(super) async fn load(&self, instance_id: &str) -> Result<Loaded, EngineError> {
        let mut loaded = Loaded::absent();
        let pages = self.pages(TableQuery {
            ..TableQuery::partition(instance_id.to_owned())
        });
        let mut pages = std::pin::pin!(pages);
        while let Some(page) = pages.try_next().await? {
            for stored in &page.entities {
                if stored.entity.row_key == STATE_ROW {
                    let state = InstanceState::from_entity(&stored.entity)?;
                    loaded.state = Some((state, stored.etag.clone()));
                } else if stored.entity.row_key.starts_with("h-") {
                    loaded.history.push(history_event(stored)?);
                }
            }
        }
        if let Some((state, _)) = &loaded.state {
            let contiguous = loaded
                .history
                .iter()
                .enumerate()
                .all(|(i, e)| i64::try_from(i).is_ok_and(|i| i == e.event_id));
            let complete =
                i64::try_from(loaded.history.len()).is_ok_and(|n| n == state.next_event_id);
            if !contiguous || !complete {
                return Err(EngineError::Corrupt(format!(
                    "instance {instance_id} has {} history rows, expected events 0..{}",
                    loaded.history.len(),
                    state.next_event_id
                )));
            }
        }
        Ok(loaded)
    }
}

/// Remembers a partition; past [`RECENT_CAPACITY`] instances the memory starts over (cheaper
/// than ordering entries, and a forgotten one only costs a read).
fn insert_bounded(map: &mut HashMap<String, Loaded>, instance_id: &str, loaded: Loaded) {
    if map.len() >= RECENT_CAPACITY && !map.contains_key(instance_id) {
        map.clear();
    }
    map.insert(instance_id.to_owned(), loaded);
}
