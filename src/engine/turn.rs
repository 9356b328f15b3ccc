//! The turn: load an instance's partition (or take this process's memory of it), plan against
//! it, replay the orchestration over the inbound events, and commit the new history rows and
//! the state row in one ETag-guarded batch, retrying on a lost race.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::handle::{EagerRunner, Engine, HandOff, Loaded};
use super::registry::OrchestrationFn;
use super::replay::{attempt, replay};
use super::replay::{Action, TurnResult};
use super::vocabulary::error::EngineError;
use super::vocabulary::event::{truncate, MAX_REASON_BYTES};
use super::vocabulary::event::{EventKind, HistoryEvent, RuntimeStatus};
use super::vocabulary::index::{parse_row_key, row_key, IndexChange};
use super::vocabulary::instance::{InstanceState, InstanceStatus};
use super::vocabulary::message::WorkMessage;
use super::vocabulary::rows::history_entity;
use crate::store::{check_batch_size, BatchOp, StoreError, MAX_VISIBILITY};

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
        let max_attempts = self.options().max_turn_attempts.max(1);
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
                Plan::Turn { inbound } => self.build_turn(instance_id, &loaded, inbound).await?,
                Plan::Terminate { reason } => {
                    self.build_termination(instance_id, &loaded, reason)?
                }
            };
            // Work and the index's new row first: a crash after this leaves messages and a row
            // that no committed state names, which find nothing to do and are dropped; a crash
            // after the commit cannot leave work unsent or the instance unlisted.
            // Independent of each other: sent side by side, one round trip instead of two.
            let index_table = &self.options().index_table;
            let (sent, ()) = tokio::try_join!(self.send_work(&committed.work), async {
                self.index_writer()
                    .before(self.store().as_ref(), index_table, &committed.index)
                    .await
                    .map_err(EngineError::from)
            })?;
            match self
                .store()
                .batch(&self.options().table, instance_id, ops)
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
                    self.remember(
                        instance_id,
                        &committed.state,
                        &committed.history,
                        etags.into_iter().next().flatten(),
                    );
                    self.release(sent);
                    self.index_writer()
                        .after(self.store().as_ref(), index_table, &committed.index)
                        .await;
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

    async fn build_turn(
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
            .registry()
            .get_orchestration(&name)
            .ok_or_else(|| EngineError::UnknownOrchestration(name.clone()))?;
        // Turn times never run backwards, whatever the clocks of the machines taking turns.
        let now = match prev {
            Some(state) => self.clock().now().max(state.status.last_updated_time),
            None => self.clock().now(),
        };
        let result = self
            .replay_inline(orchestration, instance_id, &loaded.history, inbound, now)
            .await;
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

    /// Replays, and then runs at once each activity the replay scheduled that the registry
    /// lets run inline for its input (`Registry::run_inline_when`), replaying again over their
    /// outcomes: the turn then commits the scheduling and the outcome together, as the two
    /// turns the work queue would have taken, with no work message. An inline attempt that
    /// fails, or finds no free activity slot, leaves its activity to the queue.
    async fn replay_inline(
        &self,
        orchestration: &OrchestrationFn,
        instance_id: &str,
        history: &[HistoryEvent],
        inbound: Vec<EventKind>,
        now: DateTime<Utc>,
    ) -> TurnResult {
        let mut result = replay(orchestration, instance_id, history, inbound, now);
        let mut seen = history.to_vec();
        for _ in 0..MAX_INLINE_ROUNDS {
            if result.runtime_status.is_terminal() {
                break;
            }
            let (mut queued, mut inlined, mut outcomes) = (Vec::new(), Vec::new(), Vec::new());
            for action in std::mem::take(&mut result.actions) {
                match self.run_inline(&action, now).await {
                    Some(outcome) => {
                        outcomes.push(outcome);
                        inlined.push(action);
                    }
                    None => queued.push(action),
                }
            }
            if outcomes.is_empty() {
                result.actions = queued;
                break;
            }
            // Everything committed before, and everything this turn appended so far.
            seen.truncate(history.len());
            seen.extend_from_slice(&result.new_events);
            let mut next = replay(orchestration, instance_id, &seen, outcomes, now);
            if next.runtime_status.is_terminal() && !queued.is_empty() {
                // A finished instance sends no work: the work this turn queued would be lost.
                // The outcomes wait for their own turn instead, through the queue.
                queued.append(&mut inlined);
                result.actions = queued;
                break;
            }
            // The two replays as one turn: both's events, the work neither ran.
            result.new_events.append(&mut next.new_events);
            queued.append(&mut next.actions);
            next.new_events = std::mem::take(&mut result.new_events);
            next.actions = queued;
            result = next;
            if result.nondeterminism().is_some() {
                break;
            }
        }
        result
    }

    /// Runs `action` at once when it is an activity the registry lets run inline for its input
    /// and an activity slot is free: its outcome, or `None` (not inline, no slot, or failed)
    /// to leave it to the queue.
    async fn run_inline(&self, action: &Action, now: DateTime<Utc>) -> Option<EventKind> {
        let Action::ScheduleActivity {
            task_scheduled_id,
            name,
            input,
        } = action
        else {
            return None;
        };
        if !self.registry().runs_inline(name, input) {
            return None;
        }
        let _slot = self.activity_slots().try_acquire().ok()?;
        let outcome = attempt(
            self.registry(),
            *task_scheduled_id,
            name,
            input.clone(),
            now,
        )
        .await;
        matches!(outcome, EventKind::TaskCompleted { .. }).then_some(outcome)
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
        let key = (self.options().index_key)(&state.status.custom_status);
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
        let now = self.clock().now().max(prev.status.last_updated_time);
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
}

/// How many times one turn runs inline activities and replays over their outcomes (each
/// round's outcomes may schedule more).
const MAX_INLINE_ROUNDS: usize = 4;

/// Full-jitter exponential backoff: 2 ms doubling per attempt, capped at 250 ms.
fn backoff(attempt: u32) -> std::time::Duration {
    let cap_ms = 2u64.saturating_mul(1 << attempt.min(7)).min(250);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    std::time::Duration::from_millis(random % (cap_ms + 1))
}

/// How long a timer message is kept back at most: just under the queue's 7-day limit.
fn max_delay() -> Duration {
    Duration::from_std(MAX_VISIBILITY).unwrap_or(Duration::days(7)) - Duration::minutes(1)
}

impl Engine {
    /// The messages for the work a turn asks for (none once the instance has finished).
    pub(super) fn work_from(&self, instance_id: &str, result: &TurnResult) -> Vec<WorkMessage> {
        if result.runtime_status.is_terminal() {
            return Vec::new();
        }
        result
            .actions
            .iter()
            .map(|action| match action {
                Action::ScheduleActivity {
                    task_scheduled_id, ..
                } => WorkMessage::Activity {
                    instance: instance_id.to_owned(),
                    task: *task_scheduled_id,
                },
                Action::CreateTimer { timer_id, fire_at } => WorkMessage::Timer {
                    instance: instance_id.to_owned(),
                    timer: *timer_id,
                    fire_at: *fire_at,
                },
            })
            .collect()
    }

    /// Puts `work` on the engine's queue: activities visible at once (or hidden, for this
    /// process's eager runner, when it has room), timers at their time (or at the queue's
    /// horizon, to be re-armed then). Called before the commit that records the work: if it
    /// fails, the turn fails and nothing is committed. What it returns goes to
    /// [`Engine::release`] once the commit has landed: a local worker woken earlier would only
    /// find the turn not committed yet.
    pub(super) async fn send_work(&self, work: &[WorkMessage]) -> Result<Vec<Sent>, EngineError> {
        let now = self.clock().now();
        let queue = &self.options().work_queue;
        let mut sent = Vec::with_capacity(work.len());
        for message in work {
            let (due, eager) = match message {
                WorkMessage::Activity { .. } => (now, self.eager_runner()),
                WorkMessage::Timer { fire_at, .. } => (*fire_at, None),
            };
            let text = message.to_text();
            if let Some(runner) = eager {
                let receipt = self
                    .store()
                    .enqueue(queue, &text, runner.visibility)
                    .await?;
                let handoff = HandOff {
                    text,
                    inserted: now,
                    receipt,
                };
                sent.push(Sent::Eager(runner, handoff));
                continue;
            }
            // Whole seconds, rounded up, as Queue Storage counts them: the signalled time is
            // then when the message really shows, on every backend.
            let delay = (due - now).clamp(Duration::zero(), max_delay());
            let delay =
                Duration::seconds(delay.num_seconds() + i64::from(delay.subsec_nanos() > 0));
            self.store()
                .enqueue(queue, &text, delay.to_std().unwrap_or_default())
                .await?;
            sent.push(Sent::Queued(now + delay));
        }
        Ok(sent)
    }

    /// After the commit that recorded `sent`: wakes the local worker for what went through the
    /// queue, and hands the eager runner its work.
    pub(super) fn release(&self, sent: Vec<Sent>) {
        for sent in sent {
            match sent {
                Sent::Queued(at) => self.work_signal().sent(at),
                Sent::Eager(runner, handoff) => (runner.take)(handoff),
            }
        }
    }
}

/// A work message as [`Engine::send_work`] sent it.
pub(super) enum Sent {
    /// Through the queue, visible at this time.
    Queued(DateTime<Utc>),
    /// Hidden, for this process's eager runner.
    Eager(Arc<EagerRunner>, HandOff),
}
