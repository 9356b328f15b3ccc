//! The engine's three error types: [`EngineError`] for callers of [`crate::engine::Engine`],
//! [`OrchestrationError`] for orchestration code, [`ActivityError`] for activity code.

use serde_json::Value;

use super::event::RuntimeStatus;
use crate::store::StoreError;

/// Why a guard refused an event: a stable code and a message, for the caller to map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

/// What a call on [`crate::engine::Engine`] can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The id is empty, longer than 1 KiB, or holds a character table keys forbid
    /// (`/ \ # ?` or a control character).
    #[error("{0:?} is not a valid instance id")]
    InvalidInstanceId(String),
    /// No instance has this id.
    #[error("no instance {0}")]
    InstanceNotFound(String),
    /// The instance has completed, failed or been terminated; it accepts nothing more.
    #[error("instance is {status}, not running")]
    NotRunning { status: RuntimeStatus },
    /// `purge` refuses an instance that is still running: terminate it first.
    #[error("instance is still {status}; terminate it before purging")]
    StillRunning { status: RuntimeStatus },
    /// `RaiseEvent::expect_custom_status` did not match the instance's custom status at the
    /// time of the turn. Nothing was recorded.
    #[error("the instance's custom status is {current}, not the expected one")]
    UnexpectedCustomStatus { current: Value },
    /// `RaiseEvent::guard` refused the event. Nothing was recorded.
    #[error("{}", .0.message)]
    Refused(Refusal),
    /// A payload would not fit in one table property (see `MAX_EVENT_BYTES`).
    #[error("{what} is {size} bytes; at most {limit} fit in one history row")]
    PayloadTooLarge {
        what: String,
        size: usize,
        limit: usize,
    },
    /// One turn would write more rows or bytes than one entity group transaction holds.
    /// Nothing was written; turns are never split (that would not be atomic).
    #[error("the turn would write {operations} rows / {bytes} bytes, over one batch's limit")]
    TurnTooLarge { operations: usize, bytes: usize },
    /// No orchestration of this name is registered with this engine.
    #[error("no orchestration named {0:?} is registered")]
    UnknownOrchestration(String),
    /// Other writers kept winning the instance's state row; the turn gave up. Nothing was
    /// written by this call; retrying later is safe.
    #[error("gave up after {attempts} conflicting attempts to commit a turn")]
    Conflict { attempts: u32 },
    /// A work message arrived before the turn that sent it committed (it may yet, or may have
    /// failed). Nothing was done; the message must be retried later.
    #[error("event {event_id} of instance {instance_id} is not committed yet")]
    NotCommitted { instance_id: String, event_id: i64 },
    /// A stored row could not be read back (a bug or a foreign writer).
    #[error("stored instance data is corrupt: {0}")]
    Corrupt(String),
    /// The storage layer failed. [`StoreError::Unavailable`] is transient; the instance is
    /// unchanged unless the write did land, which every engine operation tolerates on retry.
    #[error("storage failed")]
    Storage(#[from] StoreError),
}

impl EngineError {
    /// True when the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Storage(e) => e.is_transient(),
            EngineError::Conflict { .. } | EngineError::NotCommitted { .. } => true,
            _ => false,
        }
    }
}

/// Why an orchestration (or one of its steps) failed. An orchestration that returns it ends
/// `Failed`, with this error's message as the failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OrchestrationError {
    /// An activity failed on its last attempt; `message` is that attempt's error.
    #[error("activity {activity} failed: {message}")]
    TaskFailed { activity: String, message: String },
    /// An event payload, an activity result or an input did not have the expected shape.
    #[error("could not decode {what}: {message}")]
    Payload { what: String, message: String },
    /// The orchestration's own verdict.
    #[error("{0}")]
    Failed(String),
}

impl OrchestrationError {
    pub fn failed(message: impl Into<String>) -> Self {
        OrchestrationError::Failed(message.into())
    }

    pub(crate) fn payload(what: impl Into<String>, e: impl std::fmt::Display) -> Self {
        OrchestrationError::Payload {
            what: what.into(),
            message: e.to_string(),
        }
    }
}

/// An activity attempt's failure. Its message is recorded in `TaskFailed` and, after the last
/// retry, reaches the orchestration in [`OrchestrationError::TaskFailed`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ActivityError {
    pub message: String,
}

impl ActivityError {
    pub fn new(message: impl std::fmt::Display) -> Self {
        ActivityError {
            message: message.to_string(),
        }
    }
}

impl From<String> for ActivityError {
    fn from(message: String) -> Self {
        ActivityError { message }
    }
}

impl From<&str> for ActivityError {
    fn from(message: &str) -> Self {
        ActivityError::new(message)
    }
}
