//! An instance's state: [`InstanceStatus`], what callers see, and [`InstanceState`], the same
//! plus the bookkeeping the engine keeps in the state row (`rows.rs` maps it to a row).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::{HistoryEvent, RuntimeStatus};

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

/// An instance's state row, decoded: what callers see plus the engine's bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceState {
    /// What callers see; its `history` is always `None` here.
    pub status: InstanceStatus,
    /// The event id the next appended history event gets.
    pub next_event_id: i64,
    pub open_activities: Vec<i64>,
    pub open_timers: Vec<OpenTimer>,
    /// The instance's current row in the status index (`index.rs`), if its status is listed.
    pub index_row: Option<String>,
    /// Its row under its previous key, left for the next change to delete.
    pub stale_index_row: Option<String>,
}

/// A timer that has been created and will be fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenTimer {
    pub timer_id: i64,
    pub fire_at: DateTime<Utc>,
}
