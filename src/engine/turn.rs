//! The turn: load an instance's partition (or take this process's memory of it), plan against
//! it, replay the orchestration over the inbound events, and commit the new history rows and
//! the state row in one ETag-guarded batch, retrying on a lost race.

use std::hash::{BuildHasher, Hasher};

use chrono::{DateTime, Utc};
use futures::{Stream, TryStreamExt};
use serde_json::Value;

use super::error::EngineError;
use super::event::{EventKind, HistoryEvent, RuntimeStatus};
use super::handle::{Engine, RECENT_CAPACITY};
use super::index::{parse_row_key, row_key, IndexChange, INDEX_PARTITION};
use super::instance::{InstanceState, InstanceStatus};
use super::replay::replay;
use super::rows::{history_entity, history_event, STATE_ROW};
use super::worker::WorkMessage;
use crate::store::{check_batch_size, BatchOp, ETag, Entity, Page, StoreError, TableQuery};

/// Table Storage's largest page: the engine's scans read as few pages as they can.
const MAX_QUERY_PAGE: u32 = 1000;
/// Activity error messages are cut to this many bytes before they are recorded.
pub(super) const MAX_REASON_BYTES: usize = 4096;

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

/// What a turn should do, decided against freshly loaded state (so it is re-decided after
/// every conflict).
pub(super) enum Plan<T> {
    /// Nothing to write.
    Done(T),
    /// Append `inbound` and replay.
    Turn { inbound: Vec<EventKind> },
    /// End the instance without replaying it.
    Terminate { reason: String },
}

pub(super) enum Turned<T> {
    Done(T),
    Committed(Box<Committed>),
}

/// A committed turn: the new state, and the work it sent.
pub(super) struct Committed {
    pub(super) state: InstanceState,
    /// The whole history after the commit, so callers can answer without reloading.
    pub(super) history: Vec<HistoryEvent>,
    pub(super) work: Vec<WorkMessage>,
    pub(super) index: IndexChange,
}
impl Engine {
    /// Loads, plans, replays and commits one turn, retrying (with a fresh load and a fresh
    /// plan) when another writer won the state row.
    pub(super) async fn turn<T>(
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
                Plan::Turn { inbound } => self.build_turn(instance_id, &loaded, inbound)?,
                Plan::Terminate { reason } => {
                    self.build_termination(instance_id, &loaded, reason)?
                }
            };
            // Work and the index's new row first: a crash after this leaves messages and a row
            // that no committed state names, which find nothing to do and are dropped; a crash
            // after the commit cannot leave work unsent or the instance unlisted.
            // Independent of each other: sent side by side, one round trip instead of two.
            let (visible, ()) = tokio::try_join!(
                self.send_work(&committed.work),
                self.index_before(&committed.index)
            )?;
            match self
                .inner
                .store
                .batch(&self.inner.options.table, instance_id, ops)
                .await
            {
                Ok(etags) => {
                    tracing::debug!(
                        instance_id,
                        status = %committed.state.status.runtime_status,
                        next_event_id = committed.state.next_event_id,
                        "turn committed"
                    );
                    // The state row is the batch's first operation.
                    self.remember(instance_id, &committed, etags.into_iter().next().flatten());
                    for at in visible {
                        self.inner.signal.sent(at);
                    }
                    self.index_after(&committed.index).await;
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

    pub(super) fn recent(&self, instance_id: &str) -> Option<Loaded> {
        let recent = self.inner.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.get(instance_id).cloned()
    }

    fn remember(&self, instance_id: &str, committed: &Committed, state_etag: Option<ETag>) {
        let mut recent = self.inner.recent.lock().unwrap_or_else(|p| p.into_inner());
        match state_etag {
            // A finished instance takes no more turns: it goes to `finished` instead.
            Some(etag) if !committed.state.status.runtime_status.is_terminal() => {
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
            Some(etag) => {
                recent.remove(instance_id);
                drop(recent);
                let mut finished = self
                    .inner
                    .finished
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if finished.len() >= RECENT_CAPACITY && !finished.contains_key(instance_id) {
                    finished.clear();
                }
                finished.insert(
                    instance_id.to_owned(),
                    Loaded {
                        state: Some((committed.state.clone(), etag)),
                        history: committed.history.clone(),
                    },
                );
            }
            None => {
                recent.remove(instance_id);
            }
        }
    }

    /// The partition of an instance this process saw finish (see `Inner::finished`).
    pub(super) fn finished(&self, instance_id: &str) -> Option<Loaded> {
        let finished = self
            .inner
            .finished
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        finished.get(instance_id).cloned()
    }

    pub(super) fn forget(&self, instance_id: &str) {
        let mut recent = self.inner.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.remove(instance_id);
        drop(recent);
        let mut finished = self
            .inner
            .finished
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        finished.remove(instance_id);
    }

    fn build_turn(
        &self,
        instance_id: &str,
        loaded: &Loaded,
        inbound: Vec<EventKind>,
    ) -> Result<(Vec<BatchOp>, Committed), EngineError> {
        let prev = loaded.state();
        let (name, input) = match (prev, inbound.first()) {
            (Some(state), _) => (state.status.name.clone(), state.status.input.clone()),
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
            Some(state) => self.inner.clock.now().max(state.status.last_updated_time),
            None => self.inner.clock.now(),
        };
        let result = replay(orchestration, instance_id, &loaded.history, inbound, now);
        if let Some(reason) = result.nondeterminism() {
            tracing::error!(instance_id, reason, "instance failed: nondeterminism");
        }

        let new_events = &result.new_events;
        let mut state = InstanceState {
            status: InstanceStatus {
                instance_id: instance_id.to_owned(),
                name,
                runtime_status: result.runtime_status,
                custom_status: result.custom_status.clone(),
                input,
                output: result.output.clone(),
                failure: result.failure.clone(),
                created_time: prev.map_or(now, |s| s.status.created_time),
                last_updated_time: now,
                history: None,
            },
            next_event_id: new_events
                .last()
                .map_or(prev.map_or(0, |s| s.next_event_id), |e| e.event_id + 1),
            open_activities: result.open_activities.clone(),
            open_timers: result.open_timers.clone(),
            index_row: None,
            stale_index_row: None,
        };
        let index = self.index_change(instance_id, prev, &mut state, now);

        let work = self.work_from(instance_id, &result);
        let ops = self.batch_ops(instance_id, loaded, &state, new_events)?;
        let mut history = loaded.history.clone();
        history.extend_from_slice(new_events);
        Ok((
            ops,
            Committed {
                state,
                history,
                work,
                index,
            },
        ))
    }

    /// Where the instance is listed after this turn, and the index writes that keeps it so
    /// (`index.rs`): a new row when its key changes (and the row two keys back goes), the
    /// previous key's row too once it finishes.
    fn index_change(
        &self,
        instance_id: &str,
        prev: Option<&InstanceState>,
        state: &mut InstanceState,
        now: DateTime<Utc>,
    ) -> IndexChange {
        let key = (self.inner.options.index_key)(&state.status.custom_status);
        let current = prev.and_then(|p| p.index_row.clone());
        let stale = prev.and_then(|p| p.stale_index_row.clone());
        let unchanged = match (&key, &current) {
            (Some(key), Some(row)) => parse_row_key(row).is_some_and(|(k, _)| k == key),
            (None, None) => true,
            _ => false,
        };
        let finished = state.status.runtime_status.is_terminal();
        if unchanged {
            state.index_row = current;
            state.stale_index_row = if finished { None } else { stale.clone() };
            return IndexChange {
                delete_before: if finished { stale } else { None },
                ..IndexChange::default()
            };
        }
        let row = key.map(|key| row_key(&key, now, instance_id));
        state.index_row = row.clone();
        state.stale_index_row = if finished { None } else { current.clone() };
        IndexChange {
            insert: row,
            delete_before: stale,
            delete_after: if finished { current } else { None },
        }
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
        let now = self.inner.clock.now().max(prev.status.last_updated_time);
        let event = HistoryEvent::new(
            prev.next_event_id,
            now,
            EventKind::ExecutionTerminated {
                reason: truncate(&reason, MAX_REASON_BYTES),
            },
        );
        let state = InstanceState {
            status: InstanceStatus {
                runtime_status: RuntimeStatus::Terminated,
                output: Some(Value::String(truncate(&reason, MAX_REASON_BYTES))),
                failure: None,
                last_updated_time: now,
                ..prev.status.clone()
            },
            next_event_id: prev.next_event_id + 1,
            open_activities: Vec::new(),
            open_timers: Vec::new(),
            index_row: None,
            stale_index_row: None,
        };
        let mut state = state;
        let index = self.index_change(instance_id, Some(prev), &mut state, now);
        let ops = self.batch_ops(instance_id, loaded, &state, std::slice::from_ref(&event))?;
        let mut history = loaded.history.clone();
        history.push(event);
        Ok((
            ops,
            Committed {
                state,
                history,
                work: Vec::new(),
                index,
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
        let mut ops = Vec::with_capacity(new_events.len() + 1);
        let entity = state.to_entity();
        ops.push(match &loaded.state {
            None => BatchOp::Insert(entity),
            Some((_, etag)) => BatchOp::Update {
                entity,
                if_match: etag.clone(),
            },
        });
        for event in new_events {
            ops.push(BatchOp::Insert(history_entity(instance_id, event)?));
        }
        check_batch_size(&ops).map_err(|too_large| EngineError::TurnTooLarge {
            operations: too_large.operations,
            bytes: too_large.bytes,
        })?;
        Ok(ops)
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

pub(super) fn truncate(s: &str, max: usize) -> String {
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

impl Engine {
    /// The index writes that go ahead of a commit (with those of turns committing at the same
    /// time, see `index_writer.rs`); a row already gone or already there (a retried turn) is
    /// no failure.
    async fn index_before(&self, change: &IndexChange) -> Result<(), EngineError> {
        let mut ops = Vec::new();
        if let Some(row) = &change.insert {
            ops.push(BatchOp::Insert(Entity::new(INDEX_PARTITION, row.as_str())));
        }
        if let Some(row) = &change.delete_before {
            ops.push(BatchOp::Delete {
                row_key: row.clone(),
                if_match: None,
            });
        }
        self.inner
            .index_writer
            .write(
                self.inner.store.as_ref(),
                &self.inner.options.index_table,
                ops,
            )
            .await
            .map_err(EngineError::from)
    }

    /// The index write that follows a commit. Best effort: a row left behind is one no state
    /// names, which the next listing that meets it deletes.
    async fn index_after(&self, change: &IndexChange) {
        if let Some(row) = &change.delete_after {
            let delete = BatchOp::Delete {
                row_key: row.clone(),
                if_match: None,
            };
            match self
                .inner
                .index_writer
                .write(
                    self.inner.store.as_ref(),
                    &self.inner.options.index_table,
                    vec![delete],
                )
                .await
            {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(row, error = %e, "could not delete a stale index row; a listing will")
                }
            }
        }
    }
}
