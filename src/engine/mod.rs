//! A small durable engine: event-sourced orchestrations, replayed from a history kept in one
//! table, in the manner of the Durable Task Framework (DTFx). It knows nothing of HTTP or
//! Azure; it needs only the [`Storage`](crate::store::Storage) trait's tables and queues and a
//! [`Clock`](crate::clock::Clock).
//!
//! # Programming model
//!
//! Orchestrations and activities are plain async functions registered by name in a
//! [`Registry`]. An orchestration receives an [`OrchestrationContext`] and may only look at the
//! world through it: [`wait_for_event`](OrchestrationContext::wait_for_event),
//! [`wait_for_event_until`](OrchestrationContext::wait_for_event_until),
//! [`call_activity`](OrchestrationContext::call_activity) (with a durable [`RetryPolicy`]),
//! [`create_timer`](OrchestrationContext::create_timer),
//! [`current_time`](OrchestrationContext::current_time),
//! [`new_guid`](OrchestrationContext::new_guid),
//! [`set_custom_status`](OrchestrationContext::set_custom_status). Activities do the real work
//! (I/O, computation) and run at least once, so they must be idempotent.
//!
//! # Rooms
//!
//! One handle, [`Engine`], in rooms along the Durable Task Framework's lines (durabletask-go's
//! `backend`/`client`/`worker`), each standing only on the rooms below it
//! (`tests/architecture.rs` checks the order):
//!
//! | room | what it holds |
//! |---|---|
//! | `driver.rs` | local mode's queue driver ([`WorkDriver`]) |
//! | `client.rs`, `worker.rs` | the client (start, raise an event, status, list, terminate, purge); the worker (work messages, activity outcomes, timers) |
//! | `turn.rs` | load or remember, plan, replay, commit; the seam where work leaves a turn |
//! | `handle.rs` | the shared state behind [`Engine`], reached only through its methods: storage, clock, options, per-instance locks, the memory of committed partitions and the reads that fill it |
//! | `index_writer.rs` | the status index's writes around a commit, gathered into shared batches |
//! | `replay.rs`, `registry.rs`, `context.rs` | the orchestration model: pure replay, registered functions, the context they see |
//! | `vocabulary/` | what all of them speak: history events, instance state and its rows, the status index's keys, work messages, options, errors and refusals (no I/O) |
//!
//! Work leaves a turn as messages on a storage queue ([`WorkMessage`]); whoever receives them —
//! the Functions host's queue trigger, or a [`WorkDriver`] in local mode — hands each to
//! [`Engine::execute`]. The status index ([`index`]) lists instances by a key derived from their
//! custom status.
//!
//! # The turn loop
//!
//! Every change to an instance is a *turn*:
//!
//! 1. load the instance's partition (history rows, then the state row, one paged query);
//! 2. append the inbound events (`ExecutionStarted`, `EventRaised`, `TaskCompleted`,
//!    `TaskFailed`, `TimerFired`) after an `OrchestratorStarted` carrying the turn's time;
//! 3. replay the orchestration from the start over the whole history ([`replay()`], a pure
//!    function); the actions it issues must match the history's `TaskScheduled` /
//!    `TimerCreated` events in order, or the instance fails as nondeterministic;
//! 4. commit the new history rows and the state row in ONE batch guarded by the state row's
//!    ETag (an insert on the first turn); a writer that lost the race reloads and retries
//!    (bounded, with jittered backoff) and never overwrites the winner;
//!    Before the commit, the turn has put a message on the work queue for each activity it
//!    scheduled and each timer it created (a timer's message becomes visible when it is due),
//!    and written the instance's new status-index row; each outcome comes back as a new turn.
//!
//! `start` runs its first turn without reading (insert-or-`AlreadyExists`). The engine
//! remembers each partition it committed, so its next turn of that instance (a decision, an
//! activity's outcome) is one batch and no read; a turn of an instance last advanced by another
//! process is one load and one batch (a stale memory costs one refused batch, never a lost
//! write: the ETag guard refuses it).
//!
//! # Table layout
//!
//! One table (default `workflows`), one partition per instance (PartitionKey = instance id):
//!
//! | RowKey | content |
//! |---|---|
//! | `h-0000000000000000`, `h-0000000000000001`, … | one history event each, JSON in `Event` (≤ 32 KiB) |
//! | `state` | `Name`, `RuntimeStatus`, `CustomStatus`, `Input`, `Output`, `Failure`, `CreatedTime`, `LastUpdatedTime`, `NextEventId`, `OpenActivities`, `OpenTimers`, `IndexRow`, `StaleIndexRow` |
//!
//! Details in [`rows`]. The status index is a second table (default `workflowindex`), one
//! partition; details in [`index`].
//!
//! # Guarantees
//!
//! - A turn is atomic: its history rows and state row commit together or not at all, and
//!   within one entity group transaction's limits (100 rows, 4 MB). A turn that would not fit
//!   is refused ([`EngineError::TurnTooLarge`]) or, when the orchestration caused it, fails
//!   the instance with a reason; it is never split.
//! - An event id is recorded once (`raise_event` answers `Duplicate` for repeats); an
//!   activity's outcome is recorded once (later outcomes for the same `TaskScheduled` are
//!   dropped); starting an existing instance changes nothing.
//! - Events raised before the orchestration waits for them are kept in history and consumed
//!   in order; an event never goes to an instance that does not exist (`InstanceNotFound`).
//! - Activities run at least once; their outcome is recorded once; a timer fires once. A work
//!   message is sent before the turn that asks for it commits (so committed work is never
//!   unsent) and deleted only after its outcome commits (so work a dead process held comes
//!   back when the queue's visibility lapses). A message whose turn never committed is
//!   retried for `EngineOptions::commit_grace`, then dropped. With a [`WorkDriver`] running in
//!   the process, an activity's message is sent hidden and the driver is handed the work once
//!   the turn commits (eager dispatch): no receive, the same guarantees, since the hidden
//!   message shows if the process dies.
//! - Nothing polls storage: an idle engine makes no requests; the work queue is read by the
//!   host's queue trigger, or by a [`WorkDriver`] that sleeps until the next message is due.
//! - Every query names one partition: listings read the status index, never the instances.
//! - Code that no longer matches a running instance's history fails that instance with a
//!   reason starting `nondeterministic:`, never silently.
//!
//! # Glossary
//!
//! - **instance**: one run of an orchestration, named by its instance id (here the file id).
//! - **history event**: one entry of an instance's append-only log ([`HistoryEvent`]), in the
//!   DTFx vocabulary.
//! - **action**: what replaying the code asks for that history does not hold yet: schedule an
//!   activity, create a timer ([`Action`]).
//! - **turn**: one load → append → replay → commit cycle for one instance.
//! - **work message**: an activity to run or a timer to fire, on the work queue.
//! - **status index**: rows listing instances by a key derived from their custom status.

mod client;
mod context;
mod driver;
mod handle;
mod index_writer;
mod registry;
mod replay;
mod turn;
mod vocabulary;
mod worker;

pub use vocabulary::{index, rows};

pub use client::{
    EventGuard, EventStamp, InstancePage, ListQuery, RaiseEvent, RaiseOutcome, Stamped,
    StartOutcome,
};
pub use context::{OrchestrationContext, RetryPolicy};
pub use driver::{DriverOptions, WorkDriver};
pub use handle::{Engine, WorkSignal};
pub use registry::{ActivityFn, OrchestrationFn, Registry};
pub use replay::{replay, Action, TurnResult, MAX_EVENTS_PER_TURN, MAX_EVENT_BYTES};
pub use vocabulary::error::{ActivityError, EngineError, OrchestrationError, Refusal};
pub use vocabulary::event::{EventKind, HistoryEvent, RuntimeStatus};
pub use vocabulary::instance::{InstanceState, InstanceStatus, OpenTimer};
pub use vocabulary::message::WorkMessage;
pub use vocabulary::options::{EngineOptions, Standby};
pub use worker::{Executed, HeldBy};
