//! [`OrchestrationContext`]: everything an orchestration may ask of the outside world, answered
//! from history so that every replay of the same history takes the same path.
//!
//! Each awaitable the context hands out (an activity, a timer, an external event) registers
//! itself when first polled. Activities and timers become *actions*, which replay matches in
//! order against the `TaskScheduled` / `TimerCreated` events of the history; events and
//! completions are delivered one history event at a time, so racing futures (a
//! `futures::select` of an event and a timer, [`OrchestrationContext::wait_for_event_until`])
//! are won by whichever came first in history, on every replay.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use chrono::{DateTime, Duration, Utc};
use futures::future::{select, Either};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::vocabulary::error::OrchestrationError;

/// How often, and how far apart, an activity is attempted. Waits between attempts are durable
/// timers, so a retry survives a restart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, including the first (0 counts as 1).
    pub max_attempts: u32,
    /// The wait after the first failure.
    pub first_interval: Duration,
    /// Each further wait is the previous one times this.
    pub backoff_coefficient: f64,
    /// No wait is longer than this.
    pub max_interval: Duration,
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            first_interval: Duration::zero(),
            backoff_coefficient: 1.0,
            max_interval: Duration::zero(),
        }
    }

    /// The wait after failed attempt number `attempt` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let first = self.first_interval.num_milliseconds().max(0) as f64;
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let factor = self.backoff_coefficient.max(1.0).powi(exponent);
        let cap = self.max_interval.num_milliseconds().max(0) as f64;
        let ms = (first * factor).min(cap.max(first));
        // `as` saturates for floats, which is what a cap wants.
        Duration::milliseconds(ms.round() as i64)
    }
}

impl Default for RetryPolicy {
    /// Three attempts, 5 s then 10 s apart.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            first_interval: Duration::seconds(5),
            backoff_coefficient: 2.0,
            max_interval: Duration::minutes(5),
        }
    }
}

type Token = u64;

/// What the code asked for; replay compares it with the history's scheduling events.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ActionRequest {
    Activity { name: String, input: Value },
    Timer { fire_at: DateTime<Utc> },
}

impl ActionRequest {
    pub(crate) fn describe(&self) -> String {
        match self {
            ActionRequest::Activity { name, .. } => format!("activity '{name}'"),
            ActionRequest::Timer { .. } => "a timer".to_owned(),
        }
    }
}

pub(crate) struct ActionRecord {
    pub(crate) request: ActionRequest,
    /// The `TaskScheduled` / `TimerCreated` event this action is bound to.
    pub(crate) event_id: Option<i64>,
    outcome: Option<Result<Value, String>>,
    /// Set once an outcome has been delivered, so a duplicate completion is ignored.
    pub(crate) completed: bool,
    /// The future was dropped before completing (a timer that lost a race).
    pub(crate) abandoned: bool,
    waker: Option<Waker>,
}

struct EventSlot {
    name: String,
    value: Option<Value>,
    waker: Option<Waker>,
}

/// The state shared by the replay driver and the futures it polls.
pub(crate) struct ReplayState {
    instance_id: String,
    pub(crate) current_time: DateTime<Utc>,
    pub(crate) replaying: bool,
    pub(crate) custom_status: Value,
    guid_counter: u64,
    next_token: Token,
    /// Issued actions not yet bound to a history event, in issue order.
    pub(crate) unmatched: VecDeque<Token>,
    pub(crate) actions: HashMap<Token, ActionRecord>,
    /// Issue order of every action, for deterministic iteration.
    pub(crate) action_order: Vec<Token>,
    pub(crate) by_event_id: HashMap<i64, Token>,
    buffered: HashMap<String, VecDeque<Value>>,
    waiters: HashMap<String, VecDeque<Token>>,
    event_slots: HashMap<Token, EventSlot>,
    /// Bumped whenever a value reaches a waiting future; the driver polls again while it moves.
    pub(crate) deliveries: u64,
    /// Once the turn's result is taken, drops of leftover futures must change nothing.
    pub(crate) sealed: bool,
}

impl ReplayState {
    pub(crate) fn new(instance_id: &str, now: DateTime<Utc>) -> Self {
        ReplayState {
            instance_id: instance_id.to_owned(),
            current_time: now,
            replaying: false,
            custom_status: Value::Null,
            guid_counter: 0,
            next_token: 0,
            unmatched: VecDeque::new(),
            actions: HashMap::new(),
            action_order: Vec::new(),
            by_event_id: HashMap::new(),
            buffered: HashMap::new(),
            waiters: HashMap::new(),
            event_slots: HashMap::new(),
            deliveries: 0,
            sealed: false,
        }
    }

    fn issue(&mut self, request: ActionRequest, waker: &Waker) -> Token {
        let token = self.next_token;
        self.next_token += 1;
        self.actions.insert(
            token,
            ActionRecord {
                request,
                event_id: None,
                outcome: None,
                completed: false,
                abandoned: false,
                waker: Some(waker.clone()),
            },
        );
        self.action_order.push(token);
        self.unmatched.push_back(token);
        token
    }

    /// Delivers the outcome of the action bound to `event_id`. Returns the waker to call, or
    /// `None` when there is no such action or it already has an outcome (a duplicate).
    pub(crate) fn resolve(
        &mut self,
        event_id: i64,
        outcome: Result<Value, String>,
    ) -> Option<Option<Waker>> {
        let token = *self.by_event_id.get(&event_id)?;
        let record = self.actions.get_mut(&token)?;
        if record.completed {
            return None;
        }
        record.completed = true;
        record.outcome = Some(outcome);
        self.deliveries += 1;
        Some(record.waker.take())
    }

    /// Hands an external event to the oldest waiter of that name, or keeps it for the next one.
    pub(crate) fn deliver_event(&mut self, name: &str, value: Value) -> Option<Waker> {
        self.deliveries += 1;
        while let Some(token) = self.waiters.get_mut(name).and_then(VecDeque::pop_front) {
            if let Some(slot) = self.event_slots.get_mut(&token) {
                slot.value = Some(value);
                return slot.waker.take();
            }
        }
        self.buffered
            .entry(name.to_owned())
            .or_default()
            .push_back(value);
        None
    }
}

/// The orchestration's handle on its instance. Cheap to clone; every clone is the same context.
///
/// Only what the context returns may steer an orchestration: no clocks, random numbers or I/O
/// of its own, because the code runs again from the start on every turn.
#[derive(Clone)]
pub struct OrchestrationContext {
    state: Arc<Mutex<ReplayState>>,
}

impl std::fmt::Debug for OrchestrationContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("OrchestrationContext")
            .field("instance_id", &state.instance_id)
            .field("current_time", &state.current_time)
            .field("replaying", &state.replaying)
            .finish()
    }
}

impl OrchestrationContext {
    pub(crate) fn new(state: Arc<Mutex<ReplayState>>) -> Self {
        OrchestrationContext { state }
    }

    fn lock(&self) -> MutexGuard<'_, ReplayState> {
        // A panic inside an orchestration is caught by replay; the state stays usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn instance_id(&self) -> String {
        self.lock().instance_id.clone()
    }

    /// The time of the turn being replayed (its `OrchestratorStarted` timestamp): the same
    /// value on every replay.
    pub fn current_time(&self) -> DateTime<Utc> {
        self.lock().current_time
    }

    /// True while the code is re-running events already committed in earlier turns (useful
    /// to keep logs from repeating).
    pub fn is_replaying(&self) -> bool {
        self.lock().replaying
    }

    /// A UUID derived from the instance id and how many GUIDs the code asked for before, so
    /// replays get the same values.
    pub fn new_guid(&self) -> uuid::Uuid {
        let mut state = self.lock();
        let counter = state.guid_counter;
        state.guid_counter += 1;
        let digest = Sha256::new()
            .chain_update(state.instance_id.as_bytes())
            .chain_update(b"\0")
            .chain_update(counter.to_be_bytes())
            .finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }

    /// Replaces the instance's custom status (stored in the state row, returned by status
    /// queries, matched by `RaiseEvent::expect_custom_status` and list filters).
    pub fn set_custom_status(&self, status: Value) {
        self.lock().custom_status = status;
    }

    pub fn custom_status(&self) -> Value {
        self.lock().custom_status.clone()
    }

    /// Waits for the next external event called `name` not yet consumed by an earlier wait.
    /// Events raised before the orchestration waits are kept, and taken in the order raised.
    pub fn wait_for_event<T: DeserializeOwned>(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<T, OrchestrationError>> + 'static {
        let event = EventFuture::new(self.clone(), name);
        let what = format!("event '{name}'");
        async move {
            let value = event.await;
            serde_json::from_value(value).map_err(|e| OrchestrationError::payload(what, e))
        }
    }

    /// Waits for the event `name` until `deadline`: `Some(payload)` if the event came first
    /// (in history order), `None` if the deadline passed first. An event already waiting wins
    /// without creating a timer; a timer that lost is cancelled (never fired, never woken for).
    pub fn wait_for_event_until<T: DeserializeOwned>(
        &self,
        name: &str,
        deadline: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<T>, OrchestrationError>> + 'static {
        let ctx = self.clone();
        let mut event = EventFuture::new(self.clone(), name);
        let what = format!("event '{name}'");
        async move {
            let decode = |v: Value| {
                serde_json::from_value(v).map_err(|e| OrchestrationError::payload(&what, e))
            };
            if let Some(value) = futures::FutureExt::now_or_never(&mut event) {
                return decode(value).map(Some);
            }
            let timer = ctx.create_timer(deadline);
            match select(event, Box::pin(timer)).await {
                Either::Left((value, _timer)) => decode(value).map(Some),
                Either::Right(((), _event)) => Ok(None),
            }
        }
    }

    /// A durable timer that completes once `fire_at` has passed (by the engine's clock).
    pub fn create_timer(&self, fire_at: DateTime<Utc>) -> impl Future<Output = ()> + 'static {
        let action = ActionFuture::new(self.clone(), ActionRequest::Timer { fire_at });
        async move {
            // Timers have no failure path; the outcome is always `Ok(Null)`.
            let _ = action.await;
        }
    }

    /// Runs the activity `name` with `input`, retrying per `retry` with durable timers
    /// between attempts. Fails with [`OrchestrationError::TaskFailed`] carrying the last
    /// attempt's message.
    pub fn call_activity<I: Serialize, O: DeserializeOwned>(
        &self,
        name: &str,
        input: &I,
        retry: RetryPolicy,
    ) -> impl Future<Output = Result<O, OrchestrationError>> + 'static {
        let ctx = self.clone();
        let name = name.to_owned();
        let input = serde_json::to_value(input);
        async move {
            let input =
                input.map_err(|e| OrchestrationError::payload(format!("input of '{name}'"), e))?;
            let mut attempt: u32 = 1;
            loop {
                let request = ActionRequest::Activity {
                    name: name.clone(),
                    input: input.clone(),
                };
                match ActionFuture::new(ctx.clone(), request).await {
                    Ok(value) => {
                        return serde_json::from_value(value).map_err(|e| {
                            OrchestrationError::payload(format!("result of '{name}'"), e)
                        })
                    }
                    Err(message) if attempt >= retry.max_attempts.max(1) => {
                        return Err(OrchestrationError::TaskFailed {
                            activity: name,
                            message,
                        })
                    }
                    Err(_) => {
                        let fire_at = ctx.current_time() + retry.delay_after(attempt);
                        ctx.create_timer(fire_at).await;
                        attempt += 1;
                    }
                }
            }
        }
    }
}

/// An activity or timer: issued on first poll, completed by replay.
struct ActionFuture {
    ctx: OrchestrationContext,
    request: Option<ActionRequest>,
    token: Option<Token>,
    done: bool,
}

impl ActionFuture {
    fn new(ctx: OrchestrationContext, request: ActionRequest) -> Self {
        ActionFuture {
            ctx,
            request: Some(request),
            token: None,
            done: false,
        }
    }
}

impl Future for ActionFuture {
    type Output = Result<Value, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut state = this.ctx.lock();
        let token = match (this.token, this.request.take()) {
            (Some(token), _) => token,
            (None, Some(request)) => {
                this.token = Some(state.issue(request, cx.waker()));
                return Poll::Pending;
            }
            // Polled after completion: never resolves again.
            (None, None) => return Poll::Pending,
        };
        match state.actions.get_mut(&token) {
            Some(record) => match record.outcome.take() {
                Some(outcome) => {
                    this.done = true;
                    Poll::Ready(outcome)
                }
                None => {
                    record.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            },
            None => Poll::Pending,
        }
    }
}

impl Drop for ActionFuture {
    fn drop(&mut self) {
        let (Some(token), false) = (self.token, self.done) else {
            return;
        };
        let mut state = self.ctx.lock();
        if state.sealed {
            return;
        }
        if let Some(record) = state.actions.get_mut(&token) {
            if !record.completed {
                record.abandoned = true;
            }
        }
    }
}

/// A wait for one external event of a given name.
struct EventFuture {
    ctx: OrchestrationContext,
    name: String,
    token: Option<Token>,
    done: bool,
}

impl EventFuture {
    fn new(ctx: OrchestrationContext, name: &str) -> Self {
        EventFuture {
            ctx,
            name: name.to_owned(),
            token: None,
            done: false,
        }
    }
}

impl Future for EventFuture {
    type Output = Value;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Value> {
        let this = &mut *self;
        if this.done {
            return Poll::Pending;
        }
        let mut state = this.ctx.lock();
        match this.token {
            None => {
                if let Some(value) = state
                    .buffered
                    .get_mut(&this.name)
                    .and_then(VecDeque::pop_front)
                {
                    this.done = true;
                    return Poll::Ready(value);
                }
                let token = state.next_token;
                state.next_token += 1;
                state.event_slots.insert(
                    token,
                    EventSlot {
                        name: this.name.clone(),
                        value: None,
                        waker: Some(cx.waker().clone()),
                    },
                );
                state
                    .waiters
                    .entry(this.name.clone())
                    .or_default()
                    .push_back(token);
                this.token = Some(token);
                Poll::Pending
            }
            Some(token) => {
                let Some(slot) = state.event_slots.get_mut(&token) else {
                    return Poll::Pending;
                };
                match slot.value.take() {
                    Some(value) => {
                        state.event_slots.remove(&token);
                        this.done = true;
                        Poll::Ready(value)
                    }
                    None => {
                        slot.waker = Some(cx.waker().clone());
                        Poll::Pending
                    }
                }
            }
        }
    }
}

impl Drop for EventFuture {
    fn drop(&mut self) {
        let (Some(token), false) = (self.token, self.done) else {
            return;
        };
        let waker = {
            let mut state = self.ctx.lock();
            if state.sealed {
                return;
            }
            if let Some(queue) = state.waiters.get_mut(&self.name) {
                queue.retain(|t| *t != token);
            }
            match state.event_slots.remove(&token) {
                // Delivered but never taken: the event belongs to the next waiter, so it
                // goes back to the head of the line instead of being lost.
                Some(EventSlot {
                    name,
                    value: Some(value),
                    ..
                }) => {
                    let waker = state.deliver_event(&name, value);
                    if waker.is_none() {
                        // `deliver_event` appended it; it was first in line, so move it back.
                        if let Some(queue) = state.buffered.get_mut(&name) {
                            if let Some(v) = queue.pop_back() {
                                queue.push_front(v);
                            }
                        }
                    }
                    waker
                }
                _ => None,
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_by_the_coefficient_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 5,
            first_interval: Duration::seconds(1),
            backoff_coefficient: 2.0,
            max_interval: Duration::seconds(5),
        };
        let delays: Vec<i64> = (1..=4)
            .map(|a| policy.delay_after(a).num_seconds())
            .collect();
        assert_eq!(delays, vec![1, 2, 4, 5]);
    }
}
