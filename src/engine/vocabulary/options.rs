//! How an engine behaves: its tables and queue, its retry and concurrency limits.

use chrono::Duration;

use super::index::{by_custom_status, IndexKeyFn};

/// How an [`Engine`](crate::engine::Engine) behaves.
#[derive(Clone)]
pub struct EngineOptions {
    /// The table holding every instance (one partition each).
    pub table: String,
    /// The table of the status index (`index.rs`).
    pub index_table: String,
    /// The key an instance is listed under, from its custom status.
    pub index_key: IndexKeyFn,
    /// The queue the engine's work travels on (see `worker.rs`).
    pub work_queue: String,
    /// How many times a turn is retried after losing a race for the state row.
    pub max_turn_attempts: u32,
    /// How long a work message that arrives before its turn's commit is retried before it is
    /// taken for the message of a turn that failed (the commit of a live turn takes
    /// milliseconds; this covers a stalled one).
    pub commit_grace: Duration,
    /// How many activities this process runs at once; more wait their turn. Activities are
    /// the heavy part (the analysis reads a whole file): run unbounded, a burst of them would
    /// starve the requests the process is serving. Only the activity itself holds a permit,
    /// never the storage writes around it.
    pub max_concurrent_activities: usize,
    /// How an activity run under the Functions host stays recoverable when its process dies
    /// (see [`Standby`]).
    pub standby: Standby,
}

/// A long activity's standby copy. The Functions host hides the message it delivers for 10
/// minutes (renewed while the invocation runs): a process that dies mid-activity leaves its
/// work hidden that long. So an activity that has run for [`after`](Self::after) puts a copy of
/// its message on the queue, hidden for [`hidden`](Self::hidden) and hidden again every third
/// of that while the activity runs; the process that finishes withdraws it. If the process
/// dies, the copy shows within `hidden` and another instance takes the work over. Short
/// activities, most of them, cost nothing extra.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standby {
    pub after: std::time::Duration,
    pub hidden: std::time::Duration,
}

impl Default for Standby {
    fn default() -> Self {
        Standby {
            after: std::time::Duration::from_secs(2),
            hidden: std::time::Duration::from_secs(45),
        }
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            table: "workflows".to_owned(),
            index_table: "workflowindex".to_owned(),
            index_key: by_custom_status(),
            work_queue: "workflow-work".to_owned(),
            max_turn_attempts: 30,
            commit_grace: Duration::seconds(30),
            max_concurrent_activities: std::thread::available_parallelism().map_or(2, |n| n.get()),
            standby: Standby::default(),
        }
    }
}

impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions")
            .field("table", &self.table)
            .field("index_table", &self.index_table)
            .field("work_queue", &self.work_queue)
            .field("max_turn_attempts", &self.max_turn_attempts)
            .field("commit_grace", &self.commit_grace)
            .field("max_concurrent_activities", &self.max_concurrent_activities)
            .field("standby", &self.standby)
            .finish_non_exhaustive()
    }
}
