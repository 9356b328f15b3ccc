//! The worker: runs what committed turns asked for — activities and timers — and feeds each
//! outcome back as a turn. [`Engine::dispatch`] is the one seam where committed work leaves a
//! turn; today it spawns Tokio tasks in this process, and [`Engine::recover`] rescues work a
//! dead process left behind.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Weak};

use chrono::{DateTime, Duration, Utc};
use futures::{FutureExt, TryStreamExt};
use serde_json::Value;

use super::error::EngineError;
use super::event::{EventKind, HistoryEvent};
use super::handle::{Engine, Inner};
use super::instance::InstanceState;
use super::replay::{event_size, MAX_EVENT_BYTES};
use super::rows::{state_row_range, P_PENDING_WORK};
use super::turn::{truncate, Plan, Turned, MAX_REASON_BYTES};
use crate::store::{Prop, TableQuery};

/// What one `recover` pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Instances with open activities or timers (the rows the query returned).
    pub pending_instances: usize,
    pub timers_fired: usize,
    /// Activities whose lease had run out and that were started again.
    pub activities_restarted: usize,
    /// Instances that could not be advanced this time (logged; retried on the next pass).
    pub failures: usize,
}

/// Work a committed turn asks for: what [`Engine::dispatch`] hands on.
pub(super) enum Work {
    Activity {
        task_scheduled_id: i64,
        name: String,
        input: Value,
    },
    Timer {
        fire_at: DateTime<Utc>,
    },
}

/// The most `TimerFired` events one turn appends; more wait for the next pass.
const MAX_TIMERS_PER_TURN: usize = 64;

impl Engine {
    /// The periodic duty: fires due timers and restarts activities whose lease ran out (work
    /// a dead process left behind). One query over the state rows with open work; when
    /// nothing is pending that is the only request.
    ///
    /// Errors: only when the query itself fails; a failure to advance one instance is logged
    /// and counted in [`RecoveryReport::failures`].
    #[tracing::instrument(skip(self), err)]
    pub async fn recover(&self) -> Result<RecoveryReport, EngineError> {
        let now = self.inner.clock.now();
        let mut report = RecoveryReport::default();
        let pages = self.pages(TableQuery {
            row_keys: Some(state_row_range()),
            equals: vec![(P_PENDING_WORK.to_owned(), Prop::Bool(true))],
            ..TableQuery::default()
        });
        let mut pages = std::pin::pin!(pages);
        while let Some(page) = pages.try_next().await? {
            for stored in &page.entities {
                report.pending_instances += 1;
                let instance_id = &stored.entity.partition_key;
                let due = match InstanceState::from_entity(&stored.entity) {
                    Ok(state) => state.next_wake_time().is_some_and(|t| t <= now),
                    Err(e) => {
                        tracing::error!(instance_id, error = %e, "unreadable state row");
                        report.failures += 1;
                        continue;
                    }
                };
                if !due {
                    continue;
                }
                match self.advance_due_work(instance_id, true).await {
                    Ok((fired, restarted)) => {
                        report.timers_fired += fired;
                        report.activities_restarted += restarted;
                    }
                    Err(e) => {
                        tracing::warn!(instance_id, error = %e, "recovery could not advance instance");
                        report.failures += 1;
                    }
                }
            }
        }
        if report != RecoveryReport::default() {
            tracing::info!(?report, "recovery pass");
        }
        Ok(report)
    }

    /// Waits until no activity (or due timer) started by this engine is still in flight,
    /// including the turns they lead to and the work those start.
    pub async fn idle(&self) {
        let mut rx = self.inner.in_flight.subscribe();
        // The sender lives in `inner`, which `self` keeps alive, so this cannot fail.
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    pub(super) fn dispatch(&self, instance_id: &str, work: Vec<Work>) {
        let now = self.inner.clock.now();
        for item in work {
            match item {
                Work::Activity {
                    task_scheduled_id,
                    name,
                    input,
                } => {
                    let engine = self.clone();
                    let instance_id = instance_id.to_owned();
                    self.spawn_tracked(async move {
                        engine
                            .run_activity(&instance_id, task_scheduled_id, &name, input)
                            .await;
                    });
                }
                Work::Timer { fire_at } if fire_at <= now => {
                    let engine = self.clone();
                    let instance_id = instance_id.to_owned();
                    self.spawn_tracked(async move {
                        if let Err(e) = engine.advance_due_work(&instance_id, false).await {
                            tracing::warn!(instance_id, error = %e, "could not fire a due timer; recovery will");
                        }
                    });
                }
                Work::Timer { fire_at } if self.inner.options.in_process_timers => {
                    self.spawn_wakeup(instance_id.to_owned(), fire_at);
                }
                Work::Timer { .. } => {}
            }
        }
    }

    /// Spawns work that `idle` waits for.
    fn spawn_tracked(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.inner.in_flight.send_modify(|n| *n += 1);
        let guard = InFlight {
            inner: self.inner.clone(),
        };
        tokio::spawn(async move {
            let _guard = guard;
            work.await;
        });
    }

    /// Sleeps until `fire_at` and fires the instance's due timers. Holds the engine weakly,
    /// so a dropped engine's wake-ups do nothing; a lost wake-up is `recover`'s to catch.
    fn spawn_wakeup(&self, instance_id: String, fire_at: DateTime<Utc>) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            // Clock and Tokio timer can disagree by a hair; a few tries absorb that.
            for _ in 0..3 {
                let remaining = {
                    let Some(inner) = weak.upgrade() else { return };
                    fire_at - inner.clock.now()
                };
                if remaining > Duration::zero() {
                    let slack = std::time::Duration::from_millis(10);
                    tokio::time::sleep(remaining.to_std().unwrap_or_default() + slack).await;
                    continue;
                }
                let Some(inner) = weak.upgrade() else { return };
                let engine = Engine { inner };
                if let Err(e) = engine.advance_due_work(&instance_id, false).await {
                    tracing::warn!(instance_id, error = %e, "timer wake-up failed; recovery will fire it");
                }
                return;
            }
        });
    }

    /// Fires the instance's due timers and, with `restart_expired`, claims and restarts
    /// activities whose lease has run out. Returns (timers fired, activities restarted).
    async fn advance_due_work(
        &self,
        instance_id: &str,
        restart_expired: bool,
    ) -> Result<(usize, usize), EngineError> {
        let now = self.inner.clock.now();
        let mut fired = 0;
        let turned = self
            .turn(instance_id, true, |loaded| {
                let Some(state) = loaded.state() else {
                    return Ok(Plan::Done(()));
                };
                if state.status.runtime_status.is_terminal() {
                    return Ok(Plan::Done(()));
                }
                let due: Vec<EventKind> = state
                    .open_timers
                    .iter()
                    .filter(|t| t.fire_at <= now)
                    .take(MAX_TIMERS_PER_TURN)
                    .map(|t| EventKind::TimerFired {
                        timer_id: t.timer_id,
                        fire_at: t.fire_at,
                    })
                    .collect();
                let expired = restart_expired
                    && !state.open_activities.is_empty()
                    && state.lease_expiry.is_none_or(|t| t <= now);
                fired = due.len();
                if due.is_empty() && !expired {
                    return Ok(Plan::Done(()));
                }
                Ok(Plan::Turn {
                    inbound: due,
                    claim: expired,
                })
            })
            .await?;
        match turned {
            Turned::Done(()) => Ok((0, 0)),
            Turned::Committed(c) => {
                let restarted = c.restarted;
                self.dispatch(instance_id, c.work);
                Ok((fired, restarted))
            }
        }
    }

    /// Runs one attempt of an activity and records its outcome.
    async fn run_activity(
        &self,
        instance_id: &str,
        task_scheduled_id: i64,
        name: &str,
        input: Value,
    ) {
        // The semaphore is never closed, so acquiring only waits.
        let _slot = self.inner.activity_slots.clone().acquire_owned().await.ok();
        let outcome = match self.inner.registry.get_activity(name) {
            None => Err(format!("no activity named {name:?} is registered")),
            Some(activity) => {
                // A panic, whether creating the future or polling it, is the attempt's failure.
                let attempt = std::panic::catch_unwind(AssertUnwindSafe(|| activity(input)));
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
        let event = match outcome {
            Ok(result) => {
                let event = EventKind::TaskCompleted {
                    task_scheduled_id,
                    result,
                };
                let size = event_size(&HistoryEvent::new(
                    i64::MAX,
                    self.inner.clock.now(),
                    event.clone(),
                ));
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
        };
        // A transient storage failure here is retried a little; after that the lease runs out
        // and `recover` runs the activity again.
        for attempt in 1..=3u32 {
            match self
                .record_outcome(instance_id, task_scheduled_id, event.clone())
                .await
            {
                Ok(()) => return,
                Err(e) if e.is_transient() && attempt < 3 => {
                    tracing::warn!(instance_id, task_scheduled_id, error = %e, "retrying to record an activity outcome");
                    tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(attempt)))
                        .await;
                }
                Err(e) => {
                    tracing::error!(instance_id, task_scheduled_id, error = %e, "could not record an activity outcome; recovery will run it again");
                    return;
                }
            }
        }
    }

    /// Appends an activity's outcome unless the instance no longer waits for it (finished,
    /// purged, or the outcome already recorded by another run).
    async fn record_outcome(
        &self,
        instance_id: &str,
        task_scheduled_id: i64,
        event: EventKind,
    ) -> Result<(), EngineError> {
        let turned = self
            .turn(instance_id, true, |loaded| {
                let open = loaded.state().is_some_and(|s| {
                    !s.status.runtime_status.is_terminal()
                        && s.open_activities.contains(&task_scheduled_id)
                });
                Ok(if open {
                    Plan::Turn {
                        inbound: vec![event.clone()],
                        claim: false,
                    }
                } else {
                    tracing::debug!(
                        instance_id,
                        task_scheduled_id,
                        "dropping an outcome nobody waits for"
                    );
                    Plan::Done(())
                })
            })
            .await?;
        if let Turned::Committed(c) = turned {
            self.dispatch(instance_id, c.work);
        }
        Ok(())
    }
}

/// Counts one piece of tracked work for `idle`, even if the task panics or is cancelled.
struct InFlight {
    inner: Arc<Inner>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.inner
            .in_flight
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}
