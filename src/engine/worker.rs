//! The worker: runs what committed turns asked for — activities and timers — and feeds each
//! outcome back as a turn.
//!
//! Work travels as messages on a storage queue ([`WorkMessage`]: ids, never payloads). A turn
//! sends its messages *before* its commit ([`Engine::send_work`], the one seam where work leaves
//! a turn), so no crash can leave a committed turn without its work; a message whose turn then
//! failed to commit finds nothing to do and is dropped. Whoever receives a message — the host's
//! queue trigger under Azure Functions, [`super::WorkDriver`] in local mode — hands its text to
//! [`Engine::execute`] and deletes the message once that returns `Ok`; an `Err` leaves it to come
//! back later (the queue's redelivery is the retry, its dequeue count the poison limit).
//!
//! Guarantees, each at its crash point: an activity runs at least once and its outcome is
//! recorded exactly once (a redelivered message for a recorded outcome is dropped); a timer
//! fires exactly once (only an open timer can fire); a timer due beyond the queue's 7-day
//! horizon is re-armed when its message comes early. Under the host, whose reception hides a
//! message for 10 minutes, a long activity also keeps a standby copy of its message hidden for
//! less ([`super::Standby`]), so a dead instance's work comes back within about a minute.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::handle::Engine;
use super::handle::Loaded;
use super::replay::attempt;
use super::turn::{Plan, Turned};
use super::vocabulary::error::EngineError;
use super::vocabulary::event::{EventKind, HistoryEvent};
use super::vocabulary::message::WorkMessage;
use crate::store::{MessageReceipt, StoreError};

/// Who keeps a message hidden while its work runs: that decides how soon a dead process's work
/// shows again, and so whether a long activity needs a standby copy ([`super::Standby`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldBy {
    /// The caller hides it briefly and renews that while the work runs (the local driver): if
    /// the process dies the message itself shows again soon.
    Caller,
    /// The Functions host, which hides it for 10 minutes: a long activity keeps a standby copy.
    Host,
}

/// What [`Engine::execute`] made of a message. Either way the message is finished with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executed {
    /// The activity ran and its outcome was recorded, or the due timer fired (or was re-armed).
    Done,
    /// Nothing to do; the reason says why (an outcome already recorded, a finished instance, a
    /// turn that never committed, a malformed message).
    Dropped(&'static str),
}

/// The pauses a fresh message takes while the turn that sent it commits (0.8 s in all).
const COMMIT_WAIT: [std::time::Duration; 5] = [
    std::time::Duration::from_millis(25),
    std::time::Duration::from_millis(50),
    std::time::Duration::from_millis(100),
    std::time::Duration::from_millis(200),
    std::time::Duration::from_millis(400),
];

impl Engine {
    /// Does the work one message asks for. `inserted` is when the message was sent: a message
    /// whose turn has not committed is retried (an `Err`) for [`super::EngineOptions::commit_grace`]
    /// after that, then taken for the message of a turn that failed and dropped.
    ///
    /// Errors mean "try again later" (storage unavailable, a turn not committed yet); the
    /// message must then stay on the queue.
    pub async fn execute(
        &self,
        text: &str,
        inserted: DateTime<Utc>,
        held: HeldBy,
    ) -> Result<Executed, EngineError> {
        let message = match WorkMessage::parse(text) {
            Ok(message) => message,
            Err(e) => {
                tracing::error!(error = %e, "dropped a malformed work message");
                return Ok(Executed::Dropped("malformed"));
            }
        };
        let instance_id = message.instance().to_owned();
        // What this process last committed usually answers (it sent the message); only when it
        // does not know the event is storage asked. A stale memory costs at most a repeated
        // activity, whose outcome the turn's ETag check then records once.
        let remembered = self
            .recent(&instance_id)
            .filter(|loaded| knows(loaded, &message));
        let mut loaded = match remembered {
            Some(loaded) => loaded,
            None => self.load(&instance_id).await?,
        };
        // A turn sends its work just before it commits, so a worker quick off the mark can
        // read the instance a few milliseconds too early: a fresh message waits briefly for its
        // commit here rather than going back to the queue for seconds.
        let mut pauses = COMMIT_WAIT.iter();
        let skip = loop {
            match self.not_yet_committed(&loaded, &message, inserted) {
                Err(EngineError::NotCommitted { .. })
                    if self.clock().now() - inserted < Duration::seconds(2) =>
                {
                    let Some(pause) = pauses.next() else {
                        break self.not_yet_committed(&loaded, &message, inserted)?;
                    };
                    tokio::time::sleep(*pause).await;
                    loaded = self.load(&instance_id).await?;
                }
                other => break other?,
            }
        };
        if let Some(reason) = skip {
            return Ok(Executed::Dropped(reason));
        }
        match message {
            WorkMessage::Activity { task, .. } => {
                let standby = (held == HeldBy::Host).then_some(text);
                self.run_activity(&instance_id, task, &loaded, standby)
                    .await
            }
            WorkMessage::Timer { fire_at, .. } => {
                let now = self.clock().now();
                if fire_at > now {
                    // Early: a timer beyond the queue's horizon comes back to be re-armed.
                    let sent = self.send_work(std::slice::from_ref(&message)).await?;
                    self.release(sent);
                    return Ok(Executed::Done);
                }
                self.fire_due_timers(&instance_id).await?;
                Ok(Executed::Done)
            }
        }
    }

    /// Checks the message against the instance as stored: `Err(NotCommitted)` while its turn may
    /// still commit, `Ok(Some(reason))` when there is nothing to do, `Ok(None)` to go ahead.
    fn not_yet_committed(
        &self,
        loaded: &Loaded,
        message: &WorkMessage,
        inserted: DateTime<Utc>,
    ) -> Result<Option<&'static str>, EngineError> {
        let id = message.event_id();
        let recorded = usize::try_from(id)
            .ok()
            .and_then(|i| loaded.history.get(i))
            .map(|event| &event.kind);
        let Some(kind) = recorded else {
            // The turn that sent it has not committed (yet, or ever).
            let age = self.clock().now() - inserted;
            if age < self.options().commit_grace {
                return Err(EngineError::NotCommitted {
                    instance_id: message.instance().to_owned(),
                    event_id: id,
                });
            }
            tracing::info!(
                instance_id = message.instance(),
                event_id = id,
                "dropped work whose turn never committed"
            );
            return Ok(Some("its turn never committed"));
        };
        let matches = matches!(
            (message, kind),
            (
                WorkMessage::Activity { .. },
                EventKind::TaskScheduled { .. }
            ) | (WorkMessage::Timer { .. }, EventKind::TimerCreated { .. })
        );
        if !matches {
            // Another turn committed that event id: the one that sent this message failed.
            return Ok(Some("its turn never committed"));
        }
        let Some(state) = loaded.state() else {
            return Ok(Some("the instance is gone"));
        };
        if state.status.runtime_status.is_terminal() {
            return Ok(Some("the instance has finished"));
        }
        let open = match message {
            WorkMessage::Activity { task, .. } => state.open_activities.contains(task),
            WorkMessage::Timer { timer, .. } => {
                state.open_timers.iter().any(|t| t.timer_id == *timer)
            }
        };
        Ok((!open).then_some("already done"))
    }

    /// Fires the instance's due timers in one turn.
    async fn fire_due_timers(&self, instance_id: &str) -> Result<usize, EngineError> {
        /// The most `TimerFired` events one turn appends; more come with their own messages.
        const MAX_TIMERS_PER_TURN: usize = 64;
        let now = self.clock().now();
        let mut fired = 0;
        self.turn(instance_id, true, |loaded| {
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
            fired = due.len();
            Ok(if due.is_empty() {
                Plan::Done(())
            } else {
                Plan::Turn { inbound: due }
            })
        })
        .await?;
        Ok(fired)
    }

    /// Runs one attempt of the activity scheduled as event `task` and records its outcome.
    /// With `standby` (the message's text), a long run keeps a standby copy of the message.
    async fn run_activity(
        &self,
        instance_id: &str,
        task: i64,
        loaded: &Loaded,
        standby: Option<&str>,
    ) -> Result<Executed, EngineError> {
        let Some((name, input)) = scheduled_activity(&loaded.history, task) else {
            return Ok(Executed::Dropped("no such activity"));
        };
        let run = async {
            // The permit bounds how many activities run here at once; it is not held while the
            // outcome is written.
            let _slot = self.activity_slots().acquire().await.ok();
            attempt(self.registry(), task, &name, input, self.clock().now()).await
        };
        let copy = std::sync::Mutex::new(None);
        let event = match standby {
            None => run.await,
            Some(text) => {
                tokio::select! {
                    event = run => event,
                    never = self.keep_standby(text, &copy) => match never {},
                }
            }
        };
        let recorded = self.record_outcome(instance_id, task, event).await;
        // Withdrawn whatever became of the outcome: recorded, the copy has nothing to do; not
        // recorded, the host shows the message itself again within seconds.
        let copy = copy.lock().map(|mut c| c.take()).unwrap_or_default();
        if let Some(receipt) = copy {
            self.withdraw_standby(&receipt).await;
        }
        Ok(if recorded? {
            Executed::Done
        } else {
            Executed::Dropped("already done")
        })
    }

    /// Appends an activity's outcome unless the instance no longer waits for it (finished,
    /// purged, or the outcome already recorded by another run). True when it was recorded.
    async fn record_outcome(
        &self,
        instance_id: &str,
        task_scheduled_id: i64,
        event: EventKind,
    ) -> Result<bool, EngineError> {
        let turned = self
            .turn(instance_id, true, |loaded| {
                let open = loaded.state().is_some_and(|s| {
                    !s.status.runtime_status.is_terminal()
                        && s.open_activities.contains(&task_scheduled_id)
                });
                Ok(if open {
                    Plan::Turn {
                        inbound: vec![event.clone()],
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
        Ok(matches!(turned, Turned::Committed(_)))
    }
}

impl Engine {
    /// Keeps a standby copy of a running activity's message (text `text`) hidden for as long
    /// as this future is polled, its receipt in `copy`; never returns. Dropped mid-send, the
    /// copy's receipt is lost: that copy shows later and is dropped as done.
    async fn keep_standby(
        &self,
        text: &str,
        copy: &std::sync::Mutex<Option<MessageReceipt>>,
    ) -> std::convert::Infallible {
        let super::vocabulary::options::Standby { after, hidden } = self.options().standby;
        let queue = &self.options().work_queue;
        let store = &self.store();
        tokio::time::sleep(after).await;
        loop {
            let current = copy.lock().map(|c| c.clone()).unwrap_or_default();
            let next = match current {
                None => store.enqueue(queue, text, hidden).await,
                Some(receipt) => store.renew_message(queue, &receipt, text, hidden).await,
            };
            match next {
                Ok(receipt) => {
                    if let Ok(mut c) = copy.lock() {
                        *c = Some(receipt);
                    }
                }
                // Shown and taken by another instance (a renewal came too late): that one has
                // the work now; this run goes on, and a fresh copy covers it from here.
                Err(StoreError::NotFound) => {
                    if let Ok(mut c) = copy.lock() {
                        *c = None;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not keep a running activity's standby copy; trying again");
                }
            }
            tokio::time::sleep(hidden / 3).await;
        }
    }

    async fn withdraw_standby(&self, receipt: &MessageReceipt) {
        match self
            .store()
            .delete_message(&self.options().work_queue, receipt)
            .await
        {
            Ok(()) | Err(StoreError::NotFound) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not withdraw a standby copy; it will show and be dropped as done");
            }
        }
    }
}

/// Whether `loaded` holds the event the message was sent for.
fn knows(loaded: &Loaded, message: &WorkMessage) -> bool {
    usize::try_from(message.event_id()).is_ok_and(|i| i < loaded.history.len())
}

fn scheduled_activity(history: &[HistoryEvent], id: i64) -> Option<(String, Value)> {
    history.iter().find_map(|e| match &e.kind {
        EventKind::TaskScheduled { name, input } if e.event_id == id => {
            Some((name.clone(), input.clone()))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_messages_carry_ids_in_a_small_stable_json_form() {
        let activity = WorkMessage::Activity {
            instance: "3f1c0e1e-7d5c-4b8e-9a39-0c5d2b1f6a11".into(),
            task: 5,
        };
        assert_eq!(
            activity.to_text(),
            r#"{"work":"activity","instance":"3f1c0e1e-7d5c-4b8e-9a39-0c5d2b1f6a11","task":5}"#
        );
        assert_eq!(WorkMessage::parse(&activity.to_text()).unwrap(), activity);
        let timer = WorkMessage::Timer {
            instance: "x".into(),
            timer: 7,
            fire_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        };
        assert_eq!(
            timer.to_text(),
            r#"{"work":"timer","instance":"x","timer":7,"fireAt":"2027-01-15T08:00:00Z"}"#
        );
        assert_eq!(WorkMessage::parse(&timer.to_text()).unwrap(), timer);
    }
}
