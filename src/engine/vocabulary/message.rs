//! The work queue's messages: which instance, and which of its scheduled activities or
//! created timers. Turns send them, the worker runs them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One unit of work on the engine's queue: which instance, and which of its scheduled
/// activities or created timers. The activity's name and input are read from history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "work", rename_all = "camelCase")]
pub enum WorkMessage {
    /// Run the activity scheduled as event `task` and record its outcome.
    #[serde(rename_all = "camelCase")]
    Activity { instance: String, task: i64 },
    /// Fire timer `timer` (created as that event) once `fire_at` has passed.
    #[serde(rename_all = "camelCase")]
    Timer {
        instance: String,
        timer: i64,
        fire_at: DateTime<Utc>,
    },
}

impl WorkMessage {
    pub fn to_text(&self) -> String {
        // Serialising a plain enum of strings, numbers and times cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn instance(&self) -> &str {
        match self {
            WorkMessage::Activity { instance, .. } | WorkMessage::Timer { instance, .. } => {
                instance
            }
        }
    }

    /// The history event the work was created as.
    pub(crate) fn event_id(&self) -> i64 {
        match self {
            WorkMessage::Activity { task, .. } => *task,
            WorkMessage::Timer { timer, .. } => *timer,
        }
    }
}
