//! [`Engine`]: the client (start, raise, status, list, terminate, purge) and the worker (turns,
//! activities, timers, recovery) in one handle.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, Weak};

use chrono::{DateTime, Duration, Utc};
use futures::{FutureExt, Stream, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{watch, OwnedMutexGuard};

use super::error::EngineError;
use super::event::{EventKind, HistoryEvent, RuntimeStatus};
use super::registry::Registry;
use super::replay::{event_size, replay, Action, TurnResult, MAX_EVENT_BYTES};
use super::rows::{
    self, canonical_json, history_entity, history_event, InstanceState, P_CUSTOM_STATUS,
    P_PENDING_WORK, P_RUNTIME_STATUS, STATE_ROW, STATE_ROW_RANGE,
};
use crate::clock::Clock;
use crate::store::{
    BatchOp, ETag, Page, Prop, Storage, StoreError, TableQuery, MAX_BATCH_BYTES,
    MAX_BATCH_OPERATIONS,
};

/// Table Storage's largest page: the engine's scans read as few pages as they can.
const MAX_QUERY_PAGE: u32 = 1000;

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

/// An instance as callers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    pub instance_id: String,
    /// The orchestration's registered name.
    pub name: String,
    pub runtime_status: RuntimeStatus,
    pub custom_status: Value,
    pub input: Value,
    /// The orchestration's result (Completed), or the termination reason (Terminated).
    pub output: Option<Value>,
    /// Why it failed (Failed).
    pub failure: Option<String>,
    pub created_time: DateTime<Utc>,
    pub last_updated_time: DateTime<Utc>,
    /// The history, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<HistoryEvent>>,
}

impl InstanceStatus {
    fn from_state(instance_id: &str, state: &InstanceState) -> Self {
        InstanceStatus {
            instance_id: instance_id.to_owned(),
            name: state.name.clone(),
            runtime_status: state.runtime_status,
            custom_status: state.custom_status.clone(),
            input: state.input.clone(),
            output: state.output.clone(),
            failure: state.failure.clone(),
            created_time: state.created_time,
            last_updated_time: state.last_updated_time,
            history: None,
        }
    }
}

/// What `start` did.
#[derive(Debug, Clone, PartialEq)]
pub enum StartOutcome {
    /// Created, and its first turn committed: the status (with history) after that turn.
    Started(Box<InstanceStatus>),
    /// An instance with this id exists already; nothing changed.
    AlreadyExists,
}

/// An external event for an instance.
#[derive(Debug, Clone, PartialEq)]
pub struct RaiseEvent {
    /// What `OrchestrationContext::wait_for_event` waits for.
    pub name: String,
    /// The caller's idempotency key: an event id already in history is not recorded again.
    pub event_id: String,
    pub payload: Value,
    /// Record the event only if the instance's custom status is exactly this (checked inside
    /// the turn, against the state that the commit's ETag guards).
    pub expect_custom_status: Option<Value>,
}

/// What `raise_event` did; both carry the instance's status after the call.
#[derive(Debug, Clone, PartialEq)]
pub enum RaiseOutcome {
    /// Appended, and the orchestration replayed over it, in one commit.
    Recorded(InstanceStatus),
    /// The event id was already in history; nothing changed.
    Duplicate(InstanceStatus),
}

impl RaiseOutcome {
    pub fn status(&self) -> &InstanceStatus {
        match self {
            RaiseOutcome::Recorded(s) | RaiseOutcome::Duplicate(s) => s,
        }
    }
}

/// Filters for `list`. Every filter is an equality on the state row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListQuery {
    pub runtime_status: Option<RuntimeStatus>,
    pub custom_status: Option<Value>,
    /// Page size (the store caps it at 1000).
    pub top: Option<u32>,
    pub continuation: Option<String>,
}

/// One page of `list`.
#[derive(Debug, Clone, PartialEq)]
pub struct InstancePage {
    /// Without history.
    pub instances: Vec<InstanceStatus>,
    /// Present when more may follow.
    pub continuation: Option<String>,
}

/// What one `recover` pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Instances with open activities or timers (the rows the query returned).
    pub pending_instances: usize,
    pub timers_fired: usize,
    /// Activities whose lease had run out and that were started again.
    pub activities_restarted: usize,
    /// Instances that could not be advanced this time (logged; retried on the next pass).
    pub failures: usize,
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
    /// Activity and due-timer work started by this engine and not finished.
    in_flight: watch::Sender<usize>,
    /// Each instance's partition as this process last committed it. The next turn of that
    /// instance starts from here instead of loading, saving a storage read per turn (an
    /// activity's outcome, a decision after our own commit). A stale entry cannot do harm: the
    /// commit's ETag guard refuses it and the turn reloads. Only commits rest on it; a turn
    /// that would refuse or do nothing re-decides on freshly loaded state.
    recent: Mutex<HashMap<String, Loaded>>,
    /// Permits to run an activity ([`EngineOptions::max_concurrent_activities`]).
    activity_slots: Arc<tokio::sync::Semaphore>,
}

/// How many instances' partitions [`Inner::recent`] keeps; past it, the map starts over.
const RECENT_CAPACITY: usize = 1024;

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("backend", &self.inner.store.backend_name())
            .field("registry", &self.inner.registry)
            .field("options", &self.inner.options)
            .finish()
    }
}

/// An instance's partition as loaded.
#[derive(Clone)]
struct Loaded {
    state: Option<(InstanceState, ETag)>,
    history: Vec<HistoryEvent>,
}

impl Loaded {
    fn absent() -> Self {
        Loaded {
            state: None,
            history: Vec::new(),
        }
    }

    fn state(&self) -> Option<&InstanceState> {
        self.state.as_ref().map(|(s, _)| s)
    }
}

/// What a turn should do, decided against freshly loaded state (so it is re-decided after
/// every conflict).
enum Plan<T> {
    /// Nothing to write.
    Done(T),
    /// Append `inbound` and replay. With `claim`, renew the activity lease and run the open
    /// activities again after the commit.
    Turn {
        inbound: Vec<EventKind>,
        claim: bool,
    },
    /// End the instance without replaying it.
    Terminate { reason: String },
}

enum Turned<T> {
    Done(T),
    Committed(Box<Committed>),
}

/// A committed turn: the new state, and the work to start now.
struct Committed {
    state: InstanceState,
    /// The whole history after the commit, so callers can answer without reloading.
    history: Vec<HistoryEvent>,
    work: Vec<Work>,
    /// How many of `work` are activities started again after their lease ran out.
    restarted: usize,
}

enum Work {
    Activity {
        task_scheduled_id: i64,
        name: String,
        input: Value,
    },
    Timer {
        fire_at: DateTime<Utc>,
    },
}

/// The most `TimerFired` events one turn appends; more wait for the next pass.
const MAX_TIMERS_PER_TURN: usize = 64;
/// Activity error messages are cut to this many bytes before they are recorded.
const MAX_REASON_BYTES: usize = 4096;

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

    pub fn options(&self) -> &EngineOptions {
        &self.inner.options
    }

    /// Creates the engine's table if missing. Idempotent.
    pub async fn ensure_storage(&self) -> Result<(), EngineError> {
        self.inner
            .store
            .ensure_table(&self.inner.options.table)
            .await?;
        Ok(())
    }

    /// Creates instance `instance_id` of orchestration `name` and runs its first turn, in one
    /// batch (no read first). An existing instance is left alone: [`StartOutcome::AlreadyExists`].
    ///
    /// Errors: [`EngineError::InvalidInstanceId`], [`EngineError::UnknownOrchestration`],
    /// [`EngineError::PayloadTooLarge`], [`EngineError::Conflict`], [`EngineError::Storage`].
    #[tracing::instrument(skip(self, input), err(level = "debug"))]
    pub async fn start(
        &self,
        name: &str,
        instance_id: &str,
        input: Value,
    ) -> Result<StartOutcome, EngineError> {
        check_instance_id(instance_id)?;
        if self.inner.registry.get_orchestration(name).is_none() {
            return Err(EngineError::UnknownOrchestration(name.to_owned()));
        }
        let started = EventKind::ExecutionStarted {
            name: name.to_owned(),
            input,
        };
        check_payload("the orchestration input", &started)?;
        let turned = self
            .turn(instance_id, false, |loaded| {
                Ok(match loaded.state {
                    Some(_) => Plan::Done(()),
                    None => Plan::Turn {
                        inbound: vec![started.clone()],
                        claim: false,
                    },
                })
            })
            .await?;
        Ok(match turned {
            Turned::Done(()) => StartOutcome::AlreadyExists,
            Turned::Committed(c) => {
                let mut status = InstanceStatus::from_state(instance_id, &c.state);
                status.history = Some(c.history);
                self.dispatch(instance_id, c.work);
                StartOutcome::Started(Box::new(status))
            }
        })
    }

    /// Records an external event and replays the orchestration over it, in one commit.
    ///
    /// Errors: [`EngineError::InvalidInstanceId`], [`EngineError::InstanceNotFound`],
    /// [`EngineError::NotRunning`] (unless the event id is a duplicate, which answers
    /// `Duplicate` whatever the status),
    /// [`EngineError::UnexpectedCustomStatus`], [`EngineError::PayloadTooLarge`],
    /// [`EngineError::Conflict`], [`EngineError::Storage`].
    #[tracing::instrument(
        skip(self, event),
        fields(event = %event.name, event_id = %event.event_id),
        err(level = "debug")
    )]
    pub async fn raise_event(
        &self,
        instance_id: &str,
        event: RaiseEvent,
    ) -> Result<RaiseOutcome, EngineError> {
        check_instance_id(instance_id)?;
        let raised = EventKind::EventRaised {
            name: event.name.clone(),
            raise_id: event.event_id.clone(),
            input: event.payload.clone(),
        };
        check_payload("the event payload", &raised)?;
        let expected = event.expect_custom_status.as_ref().map(canonical_json);
        let turned = self
            .turn(instance_id, true, |loaded| {
                let Some(state) = loaded.state() else {
                    return Err(EngineError::InstanceNotFound(instance_id.to_owned()));
                };
                let duplicate = loaded.history.iter().any(|h| {
                    matches!(&h.kind, EventKind::EventRaised { raise_id, .. } if *raise_id == event.event_id)
                });
                if duplicate {
                    let mut status = InstanceStatus::from_state(instance_id, state);
                    status.history = Some(loaded.history.clone());
                    return Ok(Plan::Done(status));
                }
                if state.runtime_status.is_terminal() {
                    return Err(EngineError::NotRunning {
                        status: state.runtime_status,
                    });
                }
                if let Some(expected) = &expected {
                    if *expected != canonical_json(&state.custom_status) {
                        return Err(EngineError::UnexpectedCustomStatus {
                            current: state.custom_status.clone(),
                        });
                    }
                }
                Ok(Plan::Turn {
                    inbound: vec![raised.clone()],
                    claim: false,
                })
            })
            .await?;
        Ok(match turned {
            Turned::Done(status) => RaiseOutcome::Duplicate(status),
            Turned::Committed(c) => {
                let mut status = InstanceStatus::from_state(instance_id, &c.state);
                status.history = Some(c.history);
                self.dispatch(instance_id, c.work);
                RaiseOutcome::Recorded(status)
            }
        })
    }

    /// The instance's status (one point read), with its history if asked (one partition
    /// query). `None` when there is no such instance.
    pub async fn status(
        &self,
        instance_id: &str,
        include_history: bool,
    ) -> Result<Option<InstanceStatus>, EngineError> {
        check_instance_id(instance_id)?;
        if include_history {
            let loaded = self.load(instance_id).await?;
            return Ok(loaded.state().map(|state| {
                let mut status = InstanceStatus::from_state(instance_id, state);
                status.history = Some(loaded.history.clone());
                status
            }));
        }
        let table = &self.inner.options.table;
        match self
            .inner
            .store
            .get_entity(table, instance_id, STATE_ROW)
            .await
        {
            Ok(stored) => Ok(Some(InstanceStatus::from_state(
                instance_id,
                &InstanceState::from_entity(&stored.entity)?,
            ))),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// One page of instances matching `query` (a query over the state rows).
    pub async fn list(&self, query: ListQuery) -> Result<InstancePage, EngineError> {
        let mut equals = Vec::new();
        if let Some(status) = query.runtime_status {
            equals.push((P_RUNTIME_STATUS.to_owned(), Prop::from(status.as_str())));
        }
        if let Some(custom) = &query.custom_status {
            equals.push((
                P_CUSTOM_STATUS.to_owned(),
                Prop::Str(canonical_json(custom)),
            ));
        }
        let page = self
            .inner
            .store
            .query(
                &self.inner.options.table,
                &TableQuery {
                    partition_key: None,
                    row_keys: Some(state_row_range()),
                    equals,
                    top: query.top,
                    continuation: query.continuation,
                },
            )
            .await?;
        let instances = page
            .entities
            .iter()
            .map(|stored| {
                InstanceState::from_entity(&stored.entity)
                    .map(|state| InstanceStatus::from_state(&stored.entity.partition_key, &state))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(InstancePage {
            instances,
            continuation: page.continuation,
        })
    }

    /// Ends a running instance: appends `ExecutionTerminated`; outcomes of its open work are
    /// dropped when they arrive. Returns the status after.
    ///
    /// Errors: [`EngineError::InstanceNotFound`], [`EngineError::NotRunning`],
    /// [`EngineError::Storage`].
    #[tracing::instrument(skip(self), err(level = "debug"))]
    pub async fn terminate(
        &self,
        instance_id: &str,
        reason: &str,
    ) -> Result<InstanceStatus, EngineError> {
        check_instance_id(instance_id)?;
        let turned = self
            .turn(instance_id, true, |loaded| {
                let Some(state) = loaded.state() else {
                    return Err(EngineError::InstanceNotFound(instance_id.to_owned()));
                };
                if state.runtime_status.is_terminal() {
                    return Err(EngineError::NotRunning {
                        status: state.runtime_status,
                    });
                }
                Ok(Plan::<()>::Terminate {
                    reason: reason.to_owned(),
                })
            })
            .await?;
        match turned {
            Turned::Committed(c) => Ok(InstanceStatus::from_state(instance_id, &c.state)),
            Turned::Done(()) => Err(EngineError::InstanceNotFound(instance_id.to_owned())),
        }
    }

    /// Deletes the instance's partition: history first, the state row last (guarded by its
    /// ETag), so an interrupted purge leaves a purgeable instance behind. Running instances
    /// are refused: terminate them first.
    ///
    /// Errors: [`EngineError::InstanceNotFound`], [`EngineError::StillRunning`],
    /// [`EngineError::Storage`].
    #[tracing::instrument(skip(self), err(level = "debug"))]
    pub async fn purge(&self, instance_id: &str) -> Result<(), EngineError> {
        check_instance_id(instance_id)?;
        let _lock = self.lock_instance(instance_id).await;
        self.forget(instance_id);
        let loaded = self.load(instance_id).await?;
        let Some((state, etag)) = loaded.state else {
            return Err(EngineError::InstanceNotFound(instance_id.to_owned()));
        };
        if !state.runtime_status.is_terminal() {
            return Err(EngineError::StillRunning {
                status: state.runtime_status,
            });
        }
        let store = &self.inner.store;
        let table = &self.inner.options.table;
        let keys: Vec<String> = loaded
            .history
            .iter()
            .map(|e| rows::history_row_key(e.event_id))
            .collect();
        for chunk in keys.chunks(MAX_BATCH_OPERATIONS) {
            let ops = chunk
                .iter()
                .map(|row_key| BatchOp::Delete {
                    row_key: row_key.clone(),
                    if_match: None,
                })
                .collect();
            match store.batch(table, instance_id, ops).await {
                Ok(_) => {}
                // A concurrent purge got some first: delete the rest one by one.
                Err(StoreError::NotFound) => {
                    for row_key in chunk {
                        match store.delete_entity(table, instance_id, row_key, None).await {
                            Ok(()) | Err(StoreError::NotFound) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        match store
            .delete_entity(table, instance_id, STATE_ROW, Some(&etag))
            .await
        {
            Ok(()) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The periodic duty: fires due timers and restarts activities whose lease ran out (work
    /// a dead process left behind). One query over the state rows with open work; when
    /// nothing is pending that is the only request.
    ///
    /// Errors: only when the query itself fails; a failure to advance one instance is logged
    /// and counted in [`RecoveryReport::failures`].
    #[tracing::instrument(skip(self), err)]
    pub async fn recover(&self) -> Result<RecoveryReport, EngineError> {
        let now = self.inner.clock.now();
        let mut report = RecoveryReport::default();
        let pages = self.pages(TableQuery {
            row_keys: Some(state_row_range()),
            equals: vec![(P_PENDING_WORK.to_owned(), Prop::Bool(true))],
            ..TableQuery::default()
        });
        let mut pages = std::pin::pin!(pages);
        while let Some(page) = pages.try_next().await? {
            for stored in &page.entities {
                report.pending_instances += 1;
                let instance_id = &stored.entity.partition_key;
                let due = match InstanceState::from_entity(&stored.entity) {
                    Ok(state) => state.next_wake_time().is_some_and(|t| t <= now),
                    Err(e) => {
                        tracing::error!(instance_id, error = %e, "unreadable state row");
                        report.failures += 1;
                        continue;
                    }
                };
                if !due {
                    continue;
                }
                match self.advance_due_work(instance_id, true).await {
                    Ok((fired, restarted)) => {
                        report.timers_fired += fired;
                        report.activities_restarted += restarted;
                    }
                    Err(e) => {
                        tracing::warn!(instance_id, error = %e, "recovery could not advance instance");
                        report.failures += 1;
                    }
                }
            }
        }
        if report != RecoveryReport::default() {
            tracing::info!(?report, "recovery pass");
        }
        Ok(report)
    }

    /// Waits until no activity (or due timer) started by this engine is still in flight,
    /// including the turns they lead to and the work those start.
    pub async fn idle(&self) {
        let mut rx = self.inner.in_flight.subscribe();
        // The sender lives in `inner`, which `self` keeps alive, so this cannot fail.
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    // -----------------------------------------------------------------------------------------
    // Turns
    // -----------------------------------------------------------------------------------------

    /// Loads, plans, replays and commits one turn, retrying (with a fresh load and a fresh
    /// plan) when another writer won the state row.
    async fn turn<T>(
        &self,
        instance_id: &str,
        load_first: bool,
        mut plan: impl FnMut(&Loaded) -> Result<Plan<T>, EngineError>,
    ) -> Result<Turned<T>, EngineError> {
        let _lock = self.lock_instance(instance_id).await;
        let max_attempts = self.inner.options.max_turn_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let cached = if load_first && attempt == 1 {
                self.recent(instance_id)
            } else {
                None
            };
            let from_cache = cached.is_some();
            let mut loaded = match cached {
                Some(loaded) => loaded,
                None if load_first || attempt > 1 => self.load(instance_id).await?,
                None => Loaded::absent(),
            };
            let mut planned = plan(&loaded);
            if from_cache && !matches!(planned, Ok(Plan::Turn { .. } | Plan::Terminate { .. })) {
                // A refusal or a no-op must never rest on possibly stale state.
                loaded = self.load(instance_id).await?;
                planned = plan(&loaded);
            }
            let (ops, committed) = match planned? {
                Plan::Done(value) => return Ok(Turned::Done(value)),
                Plan::Turn { inbound, claim } => {
                    self.build_turn(instance_id, &loaded, inbound, claim)?
                }
                Plan::Terminate { reason } => {
                    self.build_termination(instance_id, &loaded, reason)?
                }
            };
            match self
                .inner
                .store
                .batch(&self.inner.options.table, instance_id, ops)
                .await
            {
                Ok(etags) => {
                    tracing::debug!(
                        instance_id,
                        status = %committed.state.runtime_status,
                        next_event_id = committed.state.next_event_id,
                        "turn committed"
                    );
                    // The state row is the batch's first operation.
                    self.remember(instance_id, &committed, etags.into_iter().next().flatten());
                    return Ok(Turned::Committed(Box::new(committed)));
                }
                // Someone else created, advanced or purged the instance since we loaded it.
                Err(
                    StoreError::PreconditionFailed
                    | StoreError::AlreadyExists
                    | StoreError::NotFound,
                ) if attempt < max_attempts => {
                    self.forget(instance_id);
                    tracing::debug!(instance_id, attempt, "turn lost a race; reloading");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(
                    StoreError::PreconditionFailed
                    | StoreError::AlreadyExists
                    | StoreError::NotFound,
                ) => {
                    self.forget(instance_id);
                    return Err(EngineError::Conflict { attempts: attempt });
                }
                Err(e) => {
                    // The write may or may not have landed: only storage can say.
                    self.forget(instance_id);
                    return Err(e.into());
                }
            }
        }
    }

    fn recent(&self, instance_id: &str) -> Option<Loaded> {
        let recent = self.inner.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.get(instance_id).cloned()
    }

    fn remember(&self, instance_id: &str, committed: &Committed, state_etag: Option<ETag>) {
        let mut recent = self.inner.recent.lock().unwrap_or_else(|p| p.into_inner());
        match state_etag {
            // A finished instance takes no more turns worth a cache entry.
            Some(etag) if !committed.state.runtime_status.is_terminal() => {
                if recent.len() >= RECENT_CAPACITY && !recent.contains_key(instance_id) {
                    recent.clear();
                }
                recent.insert(
                    instance_id.to_owned(),
                    Loaded {
                        state: Some((committed.state.clone(), etag)),
                        history: committed.history.clone(),
                    },
                );
            }
            _ => {
                recent.remove(instance_id);
            }
        }
    }

    fn forget(&self, instance_id: &str) {
        let mut recent = self.inner.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.remove(instance_id);
    }

    fn build_turn(
        &self,
        instance_id: &str,
        loaded: &Loaded,
        inbound: Vec<EventKind>,
        claim: bool,
    ) -> Result<(Vec<BatchOp>, Committed), EngineError> {
        let prev = loaded.state();
        let (name, input) = match (prev, inbound.first()) {
            (Some(state), _) => (state.name.clone(), state.input.clone()),
            (None, Some(EventKind::ExecutionStarted { name, input })) => {
                (name.clone(), input.clone())
            }
            (None, _) => return Err(EngineError::InstanceNotFound(instance_id.to_owned())),
        };
        let orchestration = self
            .inner
            .registry
            .get_orchestration(&name)
            .ok_or_else(|| EngineError::UnknownOrchestration(name.clone()))?;
        // Turn times never run backwards, whatever the clocks of the machines taking turns.
        let now = match prev {
            Some(state) => self.inner.clock.now().max(state.last_updated_time),
            None => self.inner.clock.now(),
        };
        let result = replay(orchestration, instance_id, &loaded.history, inbound, now);
        if let Some(reason) = result.nondeterminism() {
            tracing::error!(instance_id, reason, "instance failed: nondeterminism");
        }

        // A turn that only renews a lease appends nothing.
        let appends = result.new_events.len() > 1 || !result.actions.is_empty();
        let new_events: &[HistoryEvent] = if appends { &result.new_events } else { &[] };
        let schedules_activities = result
            .actions
            .iter()
            .any(|a| matches!(a, Action::ScheduleActivity { .. }));
        let open_activities = result.open_activities.clone();
        let lease_expiry = if open_activities.is_empty() {
            None
        } else if claim || schedules_activities {
            Some(now + self.inner.options.activity_lease)
        } else {
            prev.and_then(|s| s.lease_expiry)
        };
        let state = InstanceState {
            name,
            runtime_status: result.runtime_status,
            custom_status: result.custom_status.clone(),
            input,
            output: result.output.clone(),
            failure: result.failure.clone(),
            created_time: prev.map_or(now, |s| s.created_time),
            last_updated_time: if appends {
                now
            } else {
                prev.map_or(now, |s| s.last_updated_time)
            },
            next_event_id: new_events
                .last()
                .map_or(prev.map_or(0, |s| s.next_event_id), |e| e.event_id + 1),
            open_activities,
            open_timers: result.open_timers.clone(),
            lease_expiry,
        };

        let mut work = self.work_from(&result);
        let mut restarted = 0;
        if claim && !state.runtime_status.is_terminal() {
            // Run again every open activity this turn did not just schedule.
            let fresh: Vec<i64> = result
                .actions
                .iter()
                .filter_map(|a| match a {
                    Action::ScheduleActivity {
                        task_scheduled_id, ..
                    } => Some(*task_scheduled_id),
                    Action::CreateTimer { .. } => None,
                })
                .collect();
            for id in state
                .open_activities
                .iter()
                .filter(|id| !fresh.contains(id))
            {
                if let Some((name, input)) = scheduled_activity(&loaded.history, *id) {
                    work.push(Work::Activity {
                        task_scheduled_id: *id,
                        name,
                        input,
                    });
                    restarted += 1;
                }
            }
        }

        let ops = self.batch_ops(instance_id, loaded, &state, new_events)?;
        let mut history = loaded.history.clone();
        history.extend_from_slice(new_events);
        Ok((
            ops,
            Committed {
                state,
                history,
                work,
                restarted,
            },
        ))
    }

    fn build_termination(
        &self,
        instance_id: &str,
        loaded: &Loaded,
        reason: String,
    ) -> Result<(Vec<BatchOp>, Committed), EngineError> {
        let Some(prev) = loaded.state() else {
            return Err(EngineError::InstanceNotFound(instance_id.to_owned()));
        };
        let now = self.inner.clock.now().max(prev.last_updated_time);
        let event = HistoryEvent::new(
            prev.next_event_id,
            now,
            EventKind::ExecutionTerminated {
                reason: truncate(&reason, MAX_REASON_BYTES),
            },
        );
        let state = InstanceState {
            runtime_status: RuntimeStatus::Terminated,
            output: Some(Value::String(truncate(&reason, MAX_REASON_BYTES))),
            failure: None,
            last_updated_time: now,
            next_event_id: prev.next_event_id + 1,
            open_activities: Vec::new(),
            open_timers: Vec::new(),
            lease_expiry: None,
            ..prev.clone()
        };
        let ops = self.batch_ops(instance_id, loaded, &state, std::slice::from_ref(&event))?;
        let mut history = loaded.history.clone();
        history.push(event);
        Ok((
            ops,
            Committed {
                state,
                history,
                work: Vec::new(),
                restarted: 0,
            },
        ))
    }

    /// The turn's batch: the state row (inserted, or replaced under its ETag) first, then the
    /// new history rows. Refused when over one batch's limits.
    fn batch_ops(
        &self,
        instance_id: &str,
        loaded: &Loaded,
        state: &InstanceState,
        new_events: &[HistoryEvent],
    ) -> Result<Vec<BatchOp>, EngineError> {
        let entity = state.to_entity(instance_id);
        let mut bytes = rows::entity_size(&entity);
        let mut ops = Vec::with_capacity(new_events.len() + 1);
        ops.push(match &loaded.state {
            None => BatchOp::Insert(entity),
            Some((_, etag)) => BatchOp::Update {
                entity,
                if_match: etag.clone(),
            },
        });
        for event in new_events {
            let entity = history_entity(instance_id, event)?;
            bytes += rows::entity_size(&entity);
            ops.push(BatchOp::Insert(entity));
        }
        if ops.len() > MAX_BATCH_OPERATIONS || bytes > MAX_BATCH_BYTES {
            return Err(EngineError::TurnTooLarge {
                operations: ops.len(),
                bytes,
            });
        }
        Ok(ops)
    }

    fn work_from(&self, result: &TurnResult) -> Vec<Work> {
        if result.runtime_status.is_terminal() {
            return Vec::new();
        }
        result
            .actions
            .iter()
            .map(|action| match action {
                Action::ScheduleActivity {
                    task_scheduled_id,
                    name,
                    input,
                } => Work::Activity {
                    task_scheduled_id: *task_scheduled_id,
                    name: name.clone(),
                    input: input.clone(),
                },
                Action::CreateTimer { fire_at, .. } => Work::Timer { fire_at: *fire_at },
            })
            .collect()
    }

    /// Every page of `query` (at the largest page size) over the engine's table, each fetched
    /// only when the stream is polled, so a caller that works page by page holds one at a time.
    fn pages(&self, query: TableQuery) -> impl Stream<Item = Result<Page, StoreError>> + Send + '_ {
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
    async fn load(&self, instance_id: &str) -> Result<Loaded, EngineError> {
        let mut loaded = Loaded::absent();
        let pages = self.pages(TableQuery {
            partition_key: Some(instance_id.to_owned()),
            ..TableQuery::default()
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

    async fn lock_instance(&self, instance_id: &str) -> InstanceLock {
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

    // -----------------------------------------------------------------------------------------
    // Work: activities and timers
    // -----------------------------------------------------------------------------------------

    fn dispatch(&self, instance_id: &str, work: Vec<Work>) {
        let now = self.inner.clock.now();
        for item in work {
            match item {
                Work::Activity {
                    task_scheduled_id,
                    name,
                    input,
                } => {
                    let engine = self.clone();
                    let instance_id = instance_id.to_owned();
                    self.spawn_tracked(async move {
                        engine
                            .run_activity(&instance_id, task_scheduled_id, &name, input)
                            .await;
                    });
                }
                Work::Timer { fire_at } if fire_at <= now => {
                    let engine = self.clone();
                    let instance_id = instance_id.to_owned();
                    self.spawn_tracked(async move {
                        if let Err(e) = engine.advance_due_work(&instance_id, false).await {
                            tracing::warn!(instance_id, error = %e, "could not fire a due timer; recovery will");
                        }
                    });
                }
                Work::Timer { fire_at } if self.inner.options.in_process_timers => {
                    self.spawn_wakeup(instance_id.to_owned(), fire_at);
                }
                Work::Timer { .. } => {}
            }
        }
    }

    /// Spawns work that `idle` waits for.
    fn spawn_tracked(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.inner.in_flight.send_modify(|n| *n += 1);
        let guard = InFlight {
            inner: self.inner.clone(),
        };
        tokio::spawn(async move {
            let _guard = guard;
            work.await;
        });
    }

    /// Sleeps until `fire_at` and fires the instance's due timers. Holds the engine weakly,
    /// so a dropped engine's wake-ups do nothing; a lost wake-up is `recover`'s to catch.
    fn spawn_wakeup(&self, instance_id: String, fire_at: DateTime<Utc>) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            // Clock and Tokio timer can disagree by a hair; a few tries absorb that.
            for _ in 0..3 {
                let remaining = {
                    let Some(inner) = weak.upgrade() else { return };
                    fire_at - inner.clock.now()
                };
                if remaining > Duration::zero() {
                    let slack = std::time::Duration::from_millis(10);
                    tokio::time::sleep(remaining.to_std().unwrap_or_default() + slack).await;
                    continue;
                }
                let Some(inner) = weak.upgrade() else { return };
                let engine = Engine { inner };
                if let Err(e) = engine.advance_due_work(&instance_id, false).await {
                    tracing::warn!(instance_id, error = %e, "timer wake-up failed; recovery will fire it");
                }
                return;
            }
        });
    }

    /// Fires the instance's due timers and, with `restart_expired`, claims and restarts
    /// activities whose lease has run out. Returns (timers fired, activities restarted).
    async fn advance_due_work(
        &self,
        instance_id: &str,
        restart_expired: bool,
    ) -> Result<(usize, usize), EngineError> {
        let now = self.inner.clock.now();
        let mut fired = 0;
        let turned = self
            .turn(instance_id, true, |loaded| {
                let Some(state) = loaded.state() else {
                    return Ok(Plan::Done(()));
                };
                if state.runtime_status.is_terminal() {
                    return Ok(Plan::Done(()));
                }
                let due: Vec<EventKind> = state
                    .open_timers
                    .iter()
                    .filter(|t| t.fire_at <= now)
                    .take(MAX_TIMERS_PER_TURN)
                    .map(|t| EventKind::TimerFired {
                        timer_id: t.timer_id,
                        fire_at: t.fire_at,
                    })
                    .collect();
                let expired = restart_expired
                    && !state.open_activities.is_empty()
                    && state.lease_expiry.is_none_or(|t| t <= now);
                fired = due.len();
                if due.is_empty() && !expired {
                    return Ok(Plan::Done(()));
                }
                Ok(Plan::Turn {
                    inbound: due,
                    claim: expired,
                })
            })
            .await?;
        match turned {
            Turned::Done(()) => Ok((0, 0)),
            Turned::Committed(c) => {
                let restarted = c.restarted;
                self.dispatch(instance_id, c.work);
                Ok((fired, restarted))
            }
        }
    }

    /// Runs one attempt of an activity and records its outcome.
    async fn run_activity(
        &self,
        instance_id: &str,
        task_scheduled_id: i64,
        name: &str,
        input: Value,
    ) {
        // The semaphore is never closed, so acquiring only waits.
        let _slot = self.inner.activity_slots.clone().acquire_owned().await.ok();
        let outcome = match self.inner.registry.get_activity(name) {
            None => Err(format!("no activity named {name:?} is registered")),
            Some(activity) => {
                // A panic, whether creating the future or polling it, is the attempt's failure.
                let attempt = std::panic::catch_unwind(AssertUnwindSafe(|| activity(input)));
                let outcome = match attempt {
                    Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
                    Err(panic) => Err(panic),
                };
                match outcome {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(e)) => Err(e.message),
                    Err(_) => Err(format!("activity {name:?} panicked")),
                }
            }
        };
        let event = match outcome {
            Ok(result) => {
                let event = EventKind::TaskCompleted {
                    task_scheduled_id,
                    result,
                };
                let size = event_size(&HistoryEvent::new(
                    i64::MAX,
                    self.inner.clock.now(),
                    event.clone(),
                ));
                if size > MAX_EVENT_BYTES {
                    EventKind::TaskFailed {
                        task_scheduled_id,
                        reason: format!(
                            "the result of activity {name:?} is {size} bytes; at most {MAX_EVENT_BYTES} fit in one history row"
                        ),
                    }
                } else {
                    event
                }
            }
            Err(reason) => EventKind::TaskFailed {
                task_scheduled_id,
                reason: truncate(&reason, MAX_REASON_BYTES),
            },
        };
        // A transient storage failure here is retried a little; after that the lease runs out
        // and `recover` runs the activity again.
        for attempt in 1..=3u32 {
            match self
                .record_outcome(instance_id, task_scheduled_id, event.clone())
                .await
            {
                Ok(()) => return,
                Err(e) if e.is_transient() && attempt < 3 => {
                    tracing::warn!(instance_id, task_scheduled_id, error = %e, "retrying to record an activity outcome");
                    tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(attempt)))
                        .await;
                }
                Err(e) => {
                    tracing::error!(instance_id, task_scheduled_id, error = %e, "could not record an activity outcome; recovery will run it again");
                    return;
                }
            }
        }
    }

    /// Appends an activity's outcome unless the instance no longer waits for it (finished,
    /// purged, or the outcome already recorded by another run).
    async fn record_outcome(
        &self,
        instance_id: &str,
        task_scheduled_id: i64,
        event: EventKind,
    ) -> Result<(), EngineError> {
        let turned = self
            .turn(instance_id, true, |loaded| {
                let open = loaded.state().is_some_and(|s| {
                    !s.runtime_status.is_terminal()
                        && s.open_activities.contains(&task_scheduled_id)
                });
                Ok(if open {
                    Plan::Turn {
                        inbound: vec![event.clone()],
                        claim: false,
                    }
                } else {
                    tracing::debug!(
                        instance_id,
                        task_scheduled_id,
                        "dropping an outcome nobody waits for"
                    );
                    Plan::Done(())
                })
            })
            .await?;
        if let Turned::Committed(c) = turned {
            self.dispatch(instance_id, c.work);
        }
        Ok(())
    }
}

fn scheduled_activity(history: &[HistoryEvent], id: i64) -> Option<(String, Value)> {
    history.iter().find_map(|e| match &e.kind {
        EventKind::TaskScheduled { name, input } if e.event_id == id => {
            Some((name.clone(), input.clone()))
        }
        _ => None,
    })
}

fn state_row_range() -> std::ops::Range<String> {
    STATE_ROW_RANGE.start.to_owned()..STATE_ROW_RANGE.end.to_owned()
}

fn check_instance_id(instance_id: &str) -> Result<(), EngineError> {
    if instance_id.is_empty() || crate::store::validate_key(instance_id).is_err() {
        return Err(EngineError::InvalidInstanceId(instance_id.to_owned()));
    }
    Ok(())
}

fn check_payload(what: &str, kind: &EventKind) -> Result<(), EngineError> {
    let size = event_size(&HistoryEvent::new(
        i64::MAX,
        DateTime::<Utc>::MAX_UTC,
        kind.clone(),
    ));
    if size > MAX_EVENT_BYTES {
        return Err(EngineError::PayloadTooLarge {
            what: what.to_owned(),
            size,
            limit: MAX_EVENT_BYTES,
        });
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Full-jitter exponential backoff: 2 ms doubling per attempt, capped at 250 ms.
fn backoff(attempt: u32) -> std::time::Duration {
    let cap_ms = 2u64.saturating_mul(1 << attempt.min(7)).min(250);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    std::time::Duration::from_millis(random % (cap_ms + 1))
}

/// Holds an instance's in-process turn lock; forgets the lock when nobody else wants it.
struct InstanceLock {
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

/// Counts one piece of tracked work for `idle`, even if the task panics or is cancelled.
struct InFlight {
    inner: Arc<Inner>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.inner
            .in_flight
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}
