//! Orchestrations and activities, registered by name.
//!
//! The name is what history records (`ExecutionStarted.name`, `TaskScheduled.name`), so a
//! registered name must keep meaning the same code for as long as instances use it.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::future::{BoxFuture, LocalBoxFuture};
use futures::FutureExt;
use serde_json::Value;

use super::context::OrchestrationContext;
use super::vocabulary::error::{ActivityError, OrchestrationError};

/// A registered orchestration: called once per replay. Its future need not be `Send` (replay
/// polls it on the calling thread and drops it before returning).
pub type OrchestrationFn = Arc<
    dyn Fn(
            OrchestrationContext,
            Value,
        ) -> LocalBoxFuture<'static, Result<Value, OrchestrationError>>
        + Send
        + Sync,
>;

/// A registered activity: called once per attempt, on a Tokio task.
pub type ActivityFn =
    Arc<dyn Fn(Value) -> BoxFuture<'static, Result<Value, ActivityError>> + Send + Sync>;

/// Says, from an activity's input, whether it is short enough to run inside the turn that
/// schedules it.
pub type InlineWhen = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

/// The code an engine can run, by name.
#[derive(Clone, Default)]
pub struct Registry {
    orchestrations: HashMap<String, OrchestrationFn>,
    activities: HashMap<String, ActivityFn>,
    inline: HashMap<String, InlineWhen>,
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers (or replaces) the orchestration `name`.
    pub fn orchestration<F, Fut>(&mut self, name: &str, f: F) -> &mut Self
    where
        F: Fn(OrchestrationContext, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, OrchestrationError>> + 'static,
    {
        let f: OrchestrationFn = Arc::new(move |ctx, input| f(ctx, input).boxed_local());
        self.orchestrations.insert(name.to_owned(), f);
        self
    }

    /// Registers (or replaces) the activity `name`. Activities run at least once per
    /// scheduled attempt, so they must be idempotent.
    pub fn activity<F, Fut>(&mut self, name: &str, f: F) -> &mut Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ActivityError>> + Send + 'static,
    {
        let f: ActivityFn = Arc::new(move |input| f(input).boxed());
        self.activities.insert(name.to_owned(), f);
        self
    }

    /// Lets the turn that schedules activity `name` run it at once when `when` says so for its
    /// input (a local activity, in Temporal's words): the scheduling and the outcome then
    /// commit together, with no work message. For short work only: the turn (and the request
    /// that caused it, such as a decision) waits for it. A failed inline attempt is forgotten
    /// and the activity goes through the work queue as usual.
    pub fn run_inline_when(
        &mut self,
        name: &str,
        when: impl Fn(&Value) -> bool + Send + Sync + 'static,
    ) -> &mut Self {
        self.inline.insert(name.to_owned(), Arc::new(when));
        self
    }

    /// Whether activity `name` runs inline for `input`.
    pub fn runs_inline(&self, name: &str, input: &Value) -> bool {
        self.inline.get(name).is_some_and(|when| when(input))
    }

    pub fn get_orchestration(&self, name: &str) -> Option<&OrchestrationFn> {
        self.orchestrations.get(name)
    }

    pub fn get_activity(&self, name: &str) -> Option<&ActivityFn> {
        self.activities.get(name)
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut orchestrations: Vec<_> = self.orchestrations.keys().collect();
        orchestrations.sort();
        let mut activities: Vec<_> = self.activities.keys().collect();
        activities.sort();
        f.debug_struct("Registry")
            .field("orchestrations", &orchestrations)
            .field("activities", &activities)
            .finish()
    }
}
