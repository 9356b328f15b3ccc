//! Replay: runs an orchestration over its history plus one turn's inbound events, and reports
//! what the turn appends. A pure function of its arguments: no storage, no clock, no tasks.
//!
//! The driver walks the events in order. `OrchestratorStarted` sets the context's time;
//! `ExecutionStarted` creates the orchestration's future; each completion or external event is
//! handed to the future waiting for it, after which the orchestration is polled until it makes
//! no more progress. Every `TaskScheduled` / `TimerCreated` in history must match, in order,
//! the next action the code issued (same kind, same activity name); anything else is
//! nondeterminism and fails the instance. Actions still unmatched at the end are new: they
//! get the next sequence numbers and are appended after the inbound events.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use chrono::{DateTime, Utc};
use futures::future::LocalBoxFuture;
use serde_json::Value;

use super::context::{ActionRequest, OrchestrationContext, ReplayState};
use super::registry::{OrchestrationFn, Registry};
use super::vocabulary::error::OrchestrationError;
use super::vocabulary::event::{
    truncate, EventKind, HistoryEvent, RuntimeStatus, MAX_REASON_BYTES,
};
use super::vocabulary::instance::OpenTimer;

/// The most bytes of JSON one history row or state-row property may hold. Azure caps a string
/// property at 64 KiB of UTF-16; 32 KiB of UTF-8 is always within that.
pub const MAX_EVENT_BYTES: usize = 32 * 1024;

/// A turn appends at most this many history rows: one batch also carries the state row.
pub const MAX_EVENTS_PER_TURN: usize = crate::store::MAX_BATCH_OPERATIONS - 1;

/// The bytes a turn's history rows may take on the wire (estimated as in [`turn_bytes`]),
/// leaving room in the 4 MiB batch for the state row.
const TURN_BYTE_BUDGET: usize = crate::store::MAX_BATCH_BYTES - 512 * 1024;

/// A generous estimate of the wire size of `events` as history rows: JSON escaping can double
/// a string, and each row carries keys and framing.
fn turn_bytes(events: &[HistoryEvent]) -> usize {
    events
        .iter()
        .map(|e| event_size(e).saturating_mul(2).saturating_add(1024))
        .fold(0, usize::saturating_add)
}

/// Work a turn asks the engine to start once its commit succeeded.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Run activity `name`; record its outcome against `task_scheduled_id`.
    ScheduleActivity {
        task_scheduled_id: i64,
        name: String,
        input: Value,
    },
    /// Fire timer `timer_id` once `fire_at` has passed.
    CreateTimer {
        timer_id: i64,
        fire_at: DateTime<Utc>,
    },
}

/// What one turn produced.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnResult {
    /// The events to append: `OrchestratorStarted`, the inbound events, the new scheduling
    /// events and, when the orchestration ended, `ExecutionCompleted`.
    pub new_events: Vec<HistoryEvent>,
    /// New work to start after the commit.
    pub actions: Vec<Action>,
    pub runtime_status: RuntimeStatus,
    pub custom_status: Value,
    pub output: Option<Value>,
    pub failure: Option<String>,
    /// Every scheduled activity (old or new) with no recorded outcome yet.
    pub open_activities: Vec<i64>,
    /// Every created timer that has not fired and is still awaited by the code.
    pub open_timers: Vec<OpenTimer>,
}

impl TurnResult {
    /// The failure reason when replay found the code no longer matching its history.
    pub fn nondeterminism(&self) -> Option<&str> {
        self.failure
            .as_deref()
            .filter(|f| f.starts_with(NONDETERMINISTIC))
    }
}

const NONDETERMINISTIC: &str = "nondeterministic: ";

/// Replays `orchestration` over `history` (events already committed) and `inbound` (this turn's
/// new events), at turn time `now`. The history must not already hold an `ExecutionCompleted`
/// or `ExecutionTerminated`.
pub fn replay(
    orchestration: &OrchestrationFn,
    instance_id: &str,
    history: &[HistoryEvent],
    inbound: Vec<EventKind>,
    now: DateTime<Utc>,
) -> TurnResult {
    let mut next_id = history.last().map_or(0, |e| e.event_id + 1);
    let mut new_events = Vec::with_capacity(inbound.len() + 2);
    for kind in std::iter::once(EventKind::OrchestratorStarted {}).chain(inbound) {
        new_events.push(HistoryEvent::new(next_id, now, kind));
        next_id += 1;
    }

    let state = Arc::new(Mutex::new(ReplayState::new(instance_id, now)));
    let ctx = OrchestrationContext::new(state.clone());
    let mut driver = Driver {
        state,
        future: None,
        outcome: None,
    };

    let old_len = history.len();
    let mut nondeterminism = None;
    for (index, event) in history.iter().chain(new_events.iter()).enumerate() {
        driver.lock().replaying = index < old_len;
        if let Err(reason) = driver.apply(orchestration, &ctx, event) {
            nondeterminism = Some(reason);
            break;
        }
    }

    let mut result = match nondeterminism {
        Some(reason) => {
            tracing::error!(instance_id, %reason, "orchestration no longer matches its history");
            driver.fail(&mut new_events, &mut next_id, now, reason)
        }
        None => driver.finish(&mut new_events, &mut next_id, now),
    };
    result.new_events = new_events;
    enforce_limits(&mut result, now);
    driver.lock().sealed = true;
    result
}

struct Driver {
    state: Arc<Mutex<ReplayState>>,
    future: Option<LocalBoxFuture<'static, Result<Value, OrchestrationError>>>,
    outcome: Option<Result<Value, String>>,
}

impl Driver {
    fn lock(&self) -> MutexGuard<'_, ReplayState> {
        lock(&self.state)
    }

    /// Feeds one event to the orchestration. `Err` is a nondeterminism reason.
    fn apply(
        &mut self,
        orchestration: &OrchestrationFn,
        ctx: &OrchestrationContext,
        event: &HistoryEvent,
    ) -> Result<(), String> {
        match &event.kind {
            EventKind::OrchestratorStarted {} => {
                self.lock().current_time = event.timestamp;
            }
            EventKind::ExecutionStarted { input, .. } => {
                if self.future.is_none() && self.outcome.is_none() {
                    self.future = Some(orchestration(ctx.clone(), input.clone()));
                    self.poll();
                }
            }
            EventKind::EventRaised { name, input, .. } => {
                let waker = self.lock().deliver_event(name, input.clone());
                if let Some(waker) = waker {
                    waker.wake();
                }
                self.poll();
            }
            EventKind::TaskScheduled { name, .. } => {
                self.bind(event, |request| {
                    matches!(request, ActionRequest::Activity { name: n, .. } if n == name)
                })?;
            }
            EventKind::TimerCreated { .. } => {
                self.bind(event, |request| {
                    matches!(request, ActionRequest::Timer { .. })
                })?;
            }
            EventKind::TaskCompleted {
                task_scheduled_id,
                result,
            } => self.complete(*task_scheduled_id, Ok(result.clone())),
            EventKind::TaskFailed {
                task_scheduled_id,
                reason,
            } => self.complete(*task_scheduled_id, Err(reason.clone())),
            EventKind::TimerFired { timer_id, .. } => self.complete(*timer_id, Ok(Value::Null)),
            // The engine never replays a finished instance; nothing after these matters.
            EventKind::ExecutionCompleted { .. } | EventKind::ExecutionTerminated { .. } => {}
        }
        Ok(())
    }

    /// Binds a scheduling event of history to the next action the code issued.
    fn bind(
        &mut self,
        event: &HistoryEvent,
        matches: impl Fn(&ActionRequest) -> bool,
    ) -> Result<(), String> {
        let described = describe_scheduling(&event.kind);
        let mut state = self.lock();
        let Some(token) = state.unmatched.pop_front() else {
            let what = if self.outcome.is_some() {
                "the orchestration had already returned"
            } else {
                "the code scheduled nothing"
            };
            return Err(format!(
                "{NONDETERMINISTIC}history has {described} at {} but {what}",
                event.event_id
            ));
        };
        let Some(record) = state.actions.get_mut(&token) else {
            return Err(format!("{NONDETERMINISTIC}lost track of action {token}"));
        };
        if !matches(&record.request) {
            return Err(format!(
                "{NONDETERMINISTIC}history has {described} at {} but the code scheduled {}",
                event.event_id,
                record.request.describe()
            ));
        }
        record.event_id = Some(event.event_id);
        state.by_event_id.insert(event.event_id, token);
        Ok(())
    }

    fn complete(&mut self, event_id: i64, outcome: Result<Value, String>) {
        let resolved = self.lock().resolve(event_id, outcome);
        match resolved {
            Some(waker) => {
                if let Some(waker) = waker {
                    waker.wake();
                }
                self.poll();
            }
            // Unknown or already-completed work: a duplicate completion, dropped.
            None => tracing::debug!(event_id, "ignoring completion of unknown or finished work"),
        }
    }

    /// Polls until the orchestration stops making progress.
    fn poll(&mut self) {
        // Each round either finishes or consumes a delivery; this bound only guards bugs.
        for _ in 0..10_000 {
            let Some(future) = self.future.as_mut() else {
                return;
            };
            let before = lock(&self.state).deliveries;
            let mut cx = Context::from_waker(futures::task::noop_waker_ref());
            let polled = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)));
            let outcome = match polled {
                Ok(Poll::Pending) => {
                    if lock(&self.state).deliveries == before {
                        return;
                    }
                    continue;
                }
                Ok(Poll::Ready(Ok(value))) => Ok(value),
                Ok(Poll::Ready(Err(e))) => Err(e.to_string()),
                Err(panic) => Err(format!("orchestration panicked: {}", panic_message(&panic))),
            };
            self.outcome = Some(outcome);
            self.future = None;
            return;
        }
    }

    /// Appends the scheduling events of unmatched actions and, if the code returned, the
    /// completion.
    fn finish(
        &mut self,
        new_events: &mut Vec<HistoryEvent>,
        next_id: &mut i64,
        now: DateTime<Utc>,
    ) -> TurnResult {
        let mut actions = Vec::new();
        let mut state = self.lock();
        while let Some(token) = state.unmatched.pop_front() {
            let id = *next_id;
            *next_id += 1;
            let Some(record) = state.actions.get_mut(&token) else {
                continue;
            };
            record.event_id = Some(id);
            let kind = match &record.request {
                ActionRequest::Activity { name, input } => {
                    actions.push(Action::ScheduleActivity {
                        task_scheduled_id: id,
                        name: name.clone(),
                        input: input.clone(),
                    });
                    EventKind::TaskScheduled {
                        name: name.clone(),
                        input: input.clone(),
                    }
                }
                ActionRequest::Timer { fire_at } => {
                    actions.push(Action::CreateTimer {
                        timer_id: id,
                        fire_at: *fire_at,
                    });
                    EventKind::TimerCreated { fire_at: *fire_at }
                }
            };
            state.by_event_id.insert(id, token);
            new_events.push(HistoryEvent::new(id, now, kind));
        }

        let mut open_activities = Vec::new();
        let mut open_timers = Vec::new();
        for token in &state.action_order {
            let Some(record) = state.actions.get(token) else {
                continue;
            };
            let Some(id) = record.event_id else { continue };
            if record.completed {
                continue;
            }
            match record.request {
                ActionRequest::Activity { .. } => open_activities.push(id),
                ActionRequest::Timer { fire_at } if !record.abandoned => {
                    open_timers.push(OpenTimer {
                        timer_id: id,
                        fire_at,
                    })
                }
                ActionRequest::Timer { .. } => {}
            }
        }
        let custom_status = state.custom_status.clone();
        drop(state);

        let mut result = TurnResult {
            new_events: Vec::new(),
            actions,
            runtime_status: RuntimeStatus::Running,
            custom_status,
            output: None,
            failure: None,
            open_activities,
            open_timers,
        };
        if let Some(outcome) = self.outcome.take() {
            let (status, output, failure) = match outcome {
                Ok(value) => (RuntimeStatus::Completed, Some(value), None),
                Err(reason) => (RuntimeStatus::Failed, None, Some(reason)),
            };
            result.runtime_status = status;
            result.output.clone_from(&output);
            result.failure.clone_from(&failure);
            new_events.push(HistoryEvent::new(
                *next_id,
                now,
                EventKind::ExecutionCompleted {
                    status,
                    result: output,
                    failure,
                },
            ));
            *next_id += 1;
        }
        if result.runtime_status.is_terminal() {
            // A finished instance waits for nothing; late outcomes are dropped.
            result.open_activities.clear();
            result.open_timers.clear();
        }
        result
    }

    /// Ends the instance as failed: this turn appends only its inbound events and the failure.
    fn fail(
        &mut self,
        new_events: &mut Vec<HistoryEvent>,
        next_id: &mut i64,
        now: DateTime<Utc>,
        reason: String,
    ) -> TurnResult {
        let custom_status = self.lock().custom_status.clone();
        new_events.push(HistoryEvent::new(
            *next_id,
            now,
            EventKind::ExecutionCompleted {
                status: RuntimeStatus::Failed,
                result: None,
                failure: Some(reason.clone()),
            },
        ));
        *next_id += 1;
        TurnResult {
            new_events: Vec::new(),
            actions: Vec::new(),
            runtime_status: RuntimeStatus::Failed,
            custom_status,
            output: None,
            failure: Some(reason),
            open_activities: Vec::new(),
            open_timers: Vec::new(),
        }
    }
}

fn lock(state: &Mutex<ReplayState>) -> MutexGuard<'_, ReplayState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn describe_scheduling(kind: &EventKind) -> String {
    match kind {
        EventKind::TaskScheduled { name, .. } => format!("TaskScheduled '{name}'"),
        other => other.type_name().to_owned(),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// The JSON size of one history event as stored.
pub fn event_size(event: &HistoryEvent) -> usize {
    serde_json::to_string(event).map_or(usize::MAX, |s| s.len())
}

/// Keeps what the orchestration produced within what one batch can store. An oversized
/// output, custom status or activity input, or too many events for one batch, fail the
/// instance with a reason saying which; the inbound events are still recorded.
fn enforce_limits(result: &mut TurnResult, now: DateTime<Utc>) {
    let custom_size = serde_json::to_string(&result.custom_status).map_or(usize::MAX, |s| s.len());
    let problem = if custom_size > MAX_EVENT_BYTES {
        Some(format!(
            "the custom status is {custom_size} bytes; at most {MAX_EVENT_BYTES} fit"
        ))
    } else if let Some(big) = result
        .new_events
        .iter()
        .find(|e| !is_inbound(&e.kind) && event_size(e) > MAX_EVENT_BYTES)
    {
        Some(format!(
            "{} at {} is {} bytes; at most {MAX_EVENT_BYTES} fit in one history row",
            describe_scheduling(&big.kind),
            big.event_id,
            event_size(big)
        ))
    } else if result.new_events.len() > MAX_EVENTS_PER_TURN {
        Some(format!(
            "the turn produced {} history events; one batch holds at most {MAX_EVENTS_PER_TURN}",
            result.new_events.len()
        ))
    } else if turn_bytes(&result.new_events) > TURN_BYTE_BUDGET {
        Some(format!(
            "the turn's history events take about {} bytes; one batch holds at most {TURN_BYTE_BUDGET}",
            turn_bytes(&result.new_events)
        ))
    } else {
        None
    };
    let Some(problem) = problem else { return };

    result.new_events.retain(|e| is_inbound(&e.kind));
    let next_id = result.new_events.last().map_or(0, |e| e.event_id + 1);
    let reason = format!("payload too large: {problem}");
    result.new_events.push(HistoryEvent::new(
        next_id,
        now,
        EventKind::ExecutionCompleted {
            status: RuntimeStatus::Failed,
            result: None,
            failure: Some(reason.clone()),
        },
    ));
    if custom_size > MAX_EVENT_BYTES {
        result.custom_status = Value::Null;
    }
    result.actions.clear();
    result.open_activities.clear();
    result.open_timers.clear();
    result.output = None;
    result.runtime_status = RuntimeStatus::Failed;
    result.failure = Some(reason);
}

/// Events a turn receives rather than produces.
fn is_inbound(kind: &EventKind) -> bool {
    !matches!(
        kind,
        EventKind::TaskScheduled { .. }
            | EventKind::TimerCreated { .. }
            | EventKind::ExecutionCompleted { .. }
    )
}

/// One attempt of activity `name`, as the history event that records it: a panic or an error
/// is the attempt's failure, a result too big for a history row too. What the worker runs for
/// a work message, and a turn for an activity it runs inline.
pub(super) async fn attempt(
    registry: &Registry,
    task_scheduled_id: i64,
    name: &str,
    input: Value,
    now: DateTime<Utc>,
) -> EventKind {
    use futures::FutureExt;
    let outcome = match registry.get_activity(name) {
        None => Err(format!("no activity named {name:?} is registered")),
        Some(activity) => {
            let attempt = catch_unwind(AssertUnwindSafe(|| activity(input)));
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
    match outcome {
        Ok(result) => {
            let event = EventKind::TaskCompleted {
                task_scheduled_id,
                result,
            };
            let size = event_size(&HistoryEvent::new(i64::MAX, now, event.clone()));
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
    }
}
