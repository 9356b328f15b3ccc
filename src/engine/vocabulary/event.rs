//! History events (the DTFx vocabulary) and the runtime status they fold into.
//!
//! A history is the append-only list of [`HistoryEvent`]s of one instance; each is stored as
//! one table row. The JSON form is camelCase with an `eventType` tag, e.g.
//! `{"eventId":3,"timestamp":"…","eventType":"TaskScheduled","name":"AnalyzeFile","input":{…}}`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where an instance stands. Serialized with exactly these names (the Durable Functions words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RuntimeStatus {
    /// Created but no turn ran yet. This engine runs the first turn in the same commit that
    /// creates the instance, so it never stores this status; the HTTP edge uses it for files
    /// whose workflow has not been started.
    Pending,
    Running,
    Completed,
    Failed,
    Terminated,
}

impl RuntimeStatus {
    /// The name stored in the state row and used in queries.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeStatus::Pending => "Pending",
            RuntimeStatus::Running => "Running",
            RuntimeStatus::Completed => "Completed",
            RuntimeStatus::Failed => "Failed",
            RuntimeStatus::Terminated => "Terminated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Pending" => RuntimeStatus::Pending,
            "Running" => RuntimeStatus::Running,
            "Completed" => RuntimeStatus::Completed,
            "Failed" => RuntimeStatus::Failed,
            "Terminated" => RuntimeStatus::Terminated,
            _ => return None,
        })
    }

    /// Completed, Failed and Terminated instances never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RuntimeStatus::Completed | RuntimeStatus::Failed | RuntimeStatus::Terminated
        )
    }
}

impl std::fmt::Display for RuntimeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of an instance's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEvent {
    /// The event's sequence number in its instance's history, from 0 without gaps. Task and
    /// timer completions refer to the `event_id` of the event that scheduled them.
    pub event_id: i64,
    /// The time of the turn that appended the event (its `OrchestratorStarted` time).
    pub timestamp: DateTime<Utc>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened. Variant names are the DTFx history event types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "eventType", rename_all_fields = "camelCase")]
pub enum EventKind {
    /// The instance was created with this orchestration name and input.
    ExecutionStarted { name: String, input: Value },
    /// A turn began; its timestamp is what `OrchestrationContext::current_time` returns.
    OrchestratorStarted {},
    /// An external event. `raise_id` is the caller's idempotency key
    /// (`RaiseEvent::event_id`); the same id is recorded once.
    EventRaised {
        name: String,
        raise_id: String,
        input: Value,
    },
    /// The orchestration asked for an activity to run.
    TaskScheduled { name: String, input: Value },
    /// The activity scheduled by event `task_scheduled_id` returned this result.
    TaskCompleted {
        task_scheduled_id: i64,
        result: Value,
    },
    /// The activity scheduled by event `task_scheduled_id` failed (one attempt).
    TaskFailed {
        task_scheduled_id: i64,
        reason: String,
    },
    /// The orchestration created a durable timer.
    TimerCreated { fire_at: DateTime<Utc> },
    /// The timer created by event `timer_id` fired.
    TimerFired {
        timer_id: i64,
        fire_at: DateTime<Utc>,
    },
    /// The orchestration finished: `status` is `Completed` (with `result`) or `Failed` (with
    /// `failure`).
    ExecutionCompleted {
        status: RuntimeStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failure: Option<String>,
    },
    /// An operator ended the instance.
    ExecutionTerminated { reason: String },
}

impl EventKind {
    /// The DTFx event type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::ExecutionStarted { .. } => "ExecutionStarted",
            EventKind::OrchestratorStarted {} => "OrchestratorStarted",
            EventKind::EventRaised { .. } => "EventRaised",
            EventKind::TaskScheduled { .. } => "TaskScheduled",
            EventKind::TaskCompleted { .. } => "TaskCompleted",
            EventKind::TaskFailed { .. } => "TaskFailed",
            EventKind::TimerCreated { .. } => "TimerCreated",
            EventKind::TimerFired { .. } => "TimerFired",
            EventKind::ExecutionCompleted { .. } => "ExecutionCompleted",
            EventKind::ExecutionTerminated { .. } => "ExecutionTerminated",
        }
    }
}

impl HistoryEvent {
    pub fn new(event_id: i64, timestamp: DateTime<Utc>, kind: EventKind) -> Self {
        HistoryEvent {
            event_id,
            timestamp,
            kind,
        }
    }
}

/// Activity error messages are cut to this many bytes before they are recorded.
pub const MAX_REASON_BYTES: usize = 4096;

/// `s` cut to at most `max` bytes at a character boundary, with an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_events_round_trip_through_json_with_dtfx_names() {
        let event = HistoryEvent::new(
            4,
            DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            EventKind::TaskCompleted {
                task_scheduled_id: 2,
                result: serde_json::json!({"ok": true}),
            },
        );
        let json = serde_json::to_value(&event).unwrap_or_default();
        assert_eq!(json["eventType"], "TaskCompleted");
        assert_eq!(json["eventId"], 4);
        assert_eq!(json["taskScheduledId"], 2);
        let back: HistoryEvent = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, event);
    }

    #[test]
    fn runtime_status_serializes_with_durable_functions_names() {
        for status in [
            RuntimeStatus::Pending,
            RuntimeStatus::Running,
            RuntimeStatus::Completed,
            RuntimeStatus::Failed,
            RuntimeStatus::Terminated,
        ] {
            let json = serde_json::to_value(status).unwrap_or_default();
            assert_eq!(json, serde_json::json!(status.as_str()));
            assert_eq!(RuntimeStatus::parse(status.as_str()), Some(status));
        }
    }
}
