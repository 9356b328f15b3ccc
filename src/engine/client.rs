//! The client: what callers ask of instances (start, raise an event, status, list,
//! terminate, purge). Every change goes through a turn (`turn.rs`); the work a turn commits
//! goes to the worker (`worker.rs`).

use std::ops::Range;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::handle::Engine;
use super::replay::{event_size, MAX_EVENT_BYTES};
use super::turn::{Plan, Turned};
use super::vocabulary::error::{EngineError, Refusal};
use super::vocabulary::event::{EventKind, HistoryEvent};
use super::vocabulary::index::{key_range, parse_row_key, INDEX_PARTITION};
use super::vocabulary::instance::{InstanceState, InstanceStatus};
use super::vocabulary::rows::{self, canonical_json, STATE_ROW};
use crate::store::{BatchOp, Page, StoreError, TableQuery, MAX_BATCH_OPERATIONS};

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
    /// A rule the event must pass, checked like `expect_custom_status` (inside the turn, on the
    /// state the commit guards, so racing callers see each other's events).
    pub guard: Option<EventGuard>,
    /// Completes the event from the instance, inside the turn, before anything else is
    /// checked: its id and payload then replace `event_id` and `payload`.
    pub stamp: Option<EventStamp>,
}

/// An event's id and payload as [`EventStamp`] completes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamped {
    pub event_id: String,
    pub payload: Value,
}

/// The completion inside an [`EventStamp`]: the instance's status (without history) and its
/// history, both borrowed from the turn's load. It must be a pure function of them; an error
/// fails the raise and records nothing.
pub type StampFn =
    dyn Fn(&InstanceStatus, &[HistoryEvent]) -> Result<Stamped, EngineError> + Send + Sync;

/// Lets an event carry what only the instance knows at the moment it is recorded (a decision
/// names the version under review) without the caller reading the instance first: the turn
/// that records it already holds the state its commit guards.
#[derive(Clone)]
pub struct EventStamp(pub Arc<StampFn>);

impl std::fmt::Debug for EventStamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventStamp(..)")
    }
}

impl PartialEq for EventStamp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The check inside an [`EventGuard`]: the instance's status (without history) and its history,
/// both borrowed from the turn's load.
pub type GuardFn = dyn Fn(&InstanceStatus, &[HistoryEvent]) -> Result<(), Refusal> + Send + Sync;

/// A check of an event against the instance it is raised to (its status and history).
#[derive(Clone)]
pub struct EventGuard(pub Arc<GuardFn>);

impl std::fmt::Debug for EventGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventGuard(..)")
    }
}

impl PartialEq for EventGuard {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
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

/// What `list` reads: one key of the status index (`index.rs`), or all of it (keys in order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListQuery {
    /// The key, as the engine's `index_key` makes it; `None`: every listed instance (keys below
    /// `~`, which every ASCII key is).
    pub key: Option<String>,
    /// With `key`: list every key from `key` through this one, in key order.
    pub through_key: Option<String>,
    /// Page size (1 to 1000).
    pub top: u32,
    /// Continue after this position (a previous page's `continuation`). Any string is a
    /// position: the page starts at the first index row after it.
    pub continuation: Option<String>,
}

/// One page of `list`.
#[derive(Debug, Clone, PartialEq)]
pub struct InstancePage {
    /// With their history, in index order: oldest first within a key.
    pub instances: Vec<InstanceStatus>,
    /// Present when more may follow.
    pub continuation: Option<String>,
}

impl Engine {
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
        if self.registry().get_orchestration(name).is_none() {
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
                    },
                })
            })
            .await?;
        Ok(match turned {
            Turned::Done(()) => StartOutcome::AlreadyExists,
            Turned::Committed(c) => {
                let mut status = c.state.status.clone();
                status.history = Some(c.history);
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
        let raised = |event_id: &str, payload: &Value| EventKind::EventRaised {
            name: event.name.clone(),
            raise_id: event_id.to_owned(),
            input: payload.clone(),
        };
        check_payload(
            "the event payload",
            &raised(&event.event_id, &event.payload),
        )?;
        let expected = event.expect_custom_status.as_ref().map(canonical_json);
        let turned = self
            .turn(instance_id, true, |loaded| {
                let Some(state) = loaded.state() else {
                    return Err(EngineError::InstanceNotFound(instance_id.to_owned()));
                };
                let stamped = event
                    .stamp
                    .as_ref()
                    .map(|stamp| (stamp.0)(&state.status, &loaded.history))
                    .transpose()?;
                let (event_id, payload) = match &stamped {
                    Some(stamped) => (&stamped.event_id, &stamped.payload),
                    None => (&event.event_id, &event.payload),
                };
                let duplicate = loaded.history.iter().any(|h| {
                    matches!(&h.kind, EventKind::EventRaised { raise_id, .. } if raise_id == event_id)
                });
                if duplicate {
                    let mut status = state.status.clone();
                    status.history = Some(loaded.history.clone());
                    return Ok(Plan::Done(status));
                }
                if state.status.runtime_status.is_terminal() {
                    return Err(EngineError::NotRunning {
                        status: state.status.runtime_status,
                    });
                }
                if let Some(expected) = &expected {
                    if *expected != canonical_json(&state.status.custom_status) {
                        return Err(EngineError::UnexpectedCustomStatus {
                            current: state.status.custom_status.clone(),
                        });
                    }
                }
                if let Some(guard) = &event.guard {
                    (guard.0)(&state.status, &loaded.history).map_err(EngineError::Refused)?;
                }
                let raised = raised(event_id, payload);
                if stamped.is_some() {
                    check_payload("the event payload", &raised)?;
                }
                Ok(Plan::Turn {
                    inbound: vec![raised],
                })
            })
            .await?;
        Ok(match turned {
            Turned::Done(status) => RaiseOutcome::Duplicate(status),
            Turned::Committed(c) => {
                let mut status = c.state.status.clone();
                status.history = Some(c.history);
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
        if let Some(loaded) = self.finished(instance_id) {
            return Ok(loaded.state().map(|state| {
                let mut status = state.status.clone();
                status.history = include_history.then(|| loaded.history.clone());
                status
            }));
        }
        if include_history {
            let loaded = self.load(instance_id).await?;
            return Ok(loaded.state().map(|state| {
                let mut status = state.status.clone();
                status.history = Some(loaded.history.clone());
                status
            }));
        }
        let table = &self.options().table;
        match self.store().get_entity(table, instance_id, STATE_ROW).await {
            Ok(stored) => Ok(Some(InstanceState::from_entity(&stored.entity)?.status)),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// One page of listed instances: one query of the index's partition, then one read of each
    /// instance found. A row that no instance's state names any more (left by a crash or a
    /// failed commit, see `index.rs`) is skipped and deleted. A page may come back shorter than
    /// `top` with a continuation when it met such rows.
    pub async fn list(&self, query: ListQuery) -> Result<InstancePage, EngineError> {
        /// Instances read at once: about one round trip per batch of a page.
        const READS_IN_FLIGHT: usize = 8;
        use futures::StreamExt;

        let range = list_range(&query);
        if range.start >= range.end {
            return Ok(InstancePage {
                instances: Vec::new(),
                continuation: None,
            });
        }
        let table = &self.options().index_table;
        let page = self.index_page(range, query.top).await?;
        let rows: Vec<String> = page
            .entities
            .into_iter()
            .map(|stored| stored.entity.row_key)
            .collect();
        // The next page continues after the last row this one looked at (listed, or stale and
        // deleted), whatever token the store had for it.
        let continuation = match (page.continuation, rows.last()) {
            (Some(_), Some(last)) => Some(last.clone()),
            (Some(_), None) => query.continuation.clone(),
            (None, _) => None,
        };
        let loaded: Vec<_> = futures::stream::iter(rows)
            .map(|row| async move {
                let Some((_, instance)) = parse_row_key(&row) else {
                    return Ok((row, None));
                };
                let loaded = self.load(instance).await?;
                Ok::<_, EngineError>((row, Some(loaded)))
            })
            .buffered(READS_IN_FLIGHT)
            .collect()
            .await;
        let mut instances = Vec::new();
        for result in loaded {
            let (row, loaded) = result?;
            let current = loaded
                .as_ref()
                .and_then(|l| l.state.as_ref())
                .filter(|(state, _)| state.index_row.as_deref() == Some(row.as_str()));
            match current {
                Some((state, _)) => {
                    let mut status = state.status.clone();
                    status.history = loaded.map(|l| l.history);
                    instances.push(status);
                }
                None => {
                    // Stale: its instance has moved on, or its turn never committed.
                    match self
                        .store()
                        .delete_entity(table, INDEX_PARTITION, &row, None)
                        .await
                    {
                        Ok(()) | Err(StoreError::NotFound) => {}
                        Err(e) => {
                            tracing::warn!(row, error = %e, "could not delete a stale index row")
                        }
                    }
                }
            }
        }
        Ok(InstancePage {
            instances,
            continuation,
        })
    }

    /// The first non-empty page of the index over `range` (reading on past a few empty pages
    /// that say more follows).
    async fn index_page(&self, range: Range<String>, top: u32) -> Result<Page, EngineError> {
        /// Store pages read at most when they come back empty but with more to follow.
        const EMPTY_PAGES: usize = 4;
        let mut store_token = None;
        let mut empty_pages = 0;
        loop {
            let mut page = self
                .store()
                .query(
                    &self.options().index_table,
                    &TableQuery {
                        row_keys: Some(range.clone()),
                        top: Some(top.clamp(1, 1000)),
                        continuation: store_token.take(),
                        ..TableQuery::partition(INDEX_PARTITION.to_owned())
                    },
                )
                .await?;
            empty_pages += 1;
            if !page.entities.is_empty()
                || page.continuation.is_none()
                || empty_pages >= EMPTY_PAGES
            {
                return Ok(page);
            }
            store_token = page.continuation.take();
        }
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
                if state.status.runtime_status.is_terminal() {
                    return Err(EngineError::NotRunning {
                        status: state.status.runtime_status,
                    });
                }
                Ok(Plan::<()>::Terminate {
                    reason: reason.to_owned(),
                })
            })
            .await?;
        match turned {
            Turned::Committed(c) => Ok(c.state.status.clone()),
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
        if !state.status.runtime_status.is_terminal() {
            return Err(EngineError::StillRunning {
                status: state.status.runtime_status,
            });
        }
        let store = &self.store();
        let table = &self.options().table;
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
            Ok(()) | Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        // Its index rows last: until they go, a listing that meets one finds no instance and
        // deletes it anyway.
        for row in [&state.index_row, &state.stale_index_row]
            .into_iter()
            .flatten()
        {
            match store
                .delete_entity(&self.options().index_table, INDEX_PARTITION, row, None)
                .await
            {
                Ok(()) | Err(StoreError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// The index rows a listing reads: one key's, a span of keys', or every key's, after the
/// continuation's position.
fn list_range(query: &ListQuery) -> Range<String> {
    let range = match (query.key.as_deref(), query.through_key.as_deref()) {
        (Some(key), None) => key_range(key),
        (Some(key), Some(through)) => key_range(key).start..key_range(through).end,
        (None, _) => String::new().."~~".to_owned(),
    };
    // After a position: from the position followed by a space, the smallest character a row
    // key may hold (keys have no control characters; a position's are dropped).
    match query.continuation.as_deref() {
        None => range,
        Some(after) => {
            let after: String = after.chars().filter(|c| !c.is_control()).collect();
            range.start.max(format!("{after} "))..range.end
        }
    }
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
