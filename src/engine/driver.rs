//! [`WorkDriver`]: receives the engine's work messages and runs them when no Functions host does
//! (local mode, tests, the benchmark). It plays the host's queue trigger: receive a batch, run
//! each message through [`Engine::execute`], delete it on success, let it come back on failure,
//! move it to `<queue>-poison` after too many receptions.
//!
//! It never polls while idle: after an empty receive it sleeps until the backend's next message
//! becomes visible (the embedded store knows the time exactly) or until this process sends work
//! (the engine's [`super::WorkSignal`]); only on a backend that cannot tell (Azure Queue Storage
//! shows no hidden messages) does it also look every `fallback_poll`. While a message's work runs,
//! its invisibility is renewed, so a process that dies mid-activity gives its message back within
//! one `visibility` and another process finishes the work.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{watch, Mutex};

use super::handle::{EagerRunner, Engine, HandOff};
use super::worker::{Executed, HeldBy};
use crate::store::{MessageReceipt, NextVisible, ReceivedMessage, StoreError};

/// The times this process's delayed work should show: for each, when to look for it next and
/// how often it has been looked for in vain.
#[derive(Debug, Default)]
struct Expected(Vec<(DateTime<Utc>, u32)>);

impl Expected {
    /// Looks past a message's time before the fallback look takes over: after 0.25 s · 2^k,
    /// 32 s in all.
    const LOOKS: u32 = 7;

    fn add(&mut self, due: DateTime<Utc>) {
        self.0.push((due, 0));
    }

    /// A receive that began at `started` got messages: those due by then count as found.
    fn received(&mut self, started: DateTime<Utc>) {
        self.0.retain(|(at, looks)| *looks == 0 && *at > started);
    }

    /// When to look next. Called after an empty receive, which was a look in vain for every
    /// time already past: those are looked for again later, or dropped after [`Self::LOOKS`].
    fn next_look(&mut self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.0.retain_mut(|(at, looks)| {
            if *at > now {
                return true;
            }
            *looks += 1;
            *at = now + chrono::Duration::milliseconds(250 << (*looks - 1));
            *looks <= Self::LOOKS
        });
        self.0.iter().map(|(at, _)| *at).min()
    }
}

/// How a [`WorkDriver`] receives.
#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// Messages received at a time (at most 32), and so at most run at once.
    pub batch: u32,
    /// How long a received message stays hidden; renewed every third of it while its work runs.
    pub visibility: Duration,
    /// A message whose work failed shows again after this.
    pub retry_after: Duration,
    /// Received this often, a message is moved to the poison queue instead of run again.
    pub max_dequeue_count: u32,
    /// On a backend that cannot tell when its next message shows: how often to look.
    pub fallback_poll: Duration,
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            batch: 16,
            visibility: Duration::from_secs(60),
            retry_after: Duration::from_secs(5),
            max_dequeue_count: 10,
            fallback_poll: Duration::from_secs(60),
        }
    }
}

/// Runs the engine's work queue in this process. Cheap to clone; clones share their counts.
#[derive(Clone)]
pub struct WorkDriver {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    options: DriverOptions,
    /// Messages being worked on by this driver.
    in_flight: watch::Sender<usize>,
}

impl WorkDriver {
    pub fn new(engine: Engine, options: DriverOptions) -> Self {
        WorkDriver {
            inner: Arc::new(Inner {
                engine,
                options,
                in_flight: watch::Sender::new(0),
            }),
        }
    }

    fn queue(&self) -> &str {
        self.inner.engine.work_queue()
    }

    /// Receives and runs work until the process ends. While it runs, it also takes the
    /// activities this process schedules straight from their turns (eager dispatch, see
    /// `EagerRunner` in handle.rs), as long as it has a free slot.
    ///
    /// It is this driver's from the call on (not from the first poll), so work scheduled right
    /// after `tokio::spawn(driver.run())` is taken already.
    pub fn run(self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let runner = self.eager_runner();
        self.inner.engine.set_eager_runner(runner.clone());
        let unset = UnsetEager(self.inner.engine.clone(), runner);
        async move {
            let _unset = unset;
            self.receive_until_stopped().await;
        }
    }

    async fn receive_until_stopped(self) {
        let mut signal = self.inner.engine.work_signal().subscribe();
        let mut failures = 0u32;
        // Whether the backend can say when its next message shows; asked once.
        let mut tells_next = true;
        // Where the backend cannot tell, the delayed work this process sent, looked for at its
        // time (a message sent for later can show a little after it: the service's clock, its
        // whole seconds, a busy emulator). Work visible at once needs no such care: its signal
        // wakes this loop, and the receive that follows sees it.
        let mut expected = Expected::default();
        loop {
            let started = self.inner.engine.clock().now();
            match self.receive().await {
                Ok(0) => {}
                Ok(_) => {
                    failures = 0;
                    // Likely what was expected by then; should it not be, the fallback look
                    // finds it.
                    expected.received(started);
                    // Take the next batch once this one's slots free up.
                    let _ = self
                        .inner
                        .in_flight
                        .subscribe()
                        .wait_for(|n| *n < self.inner.options.batch as usize)
                        .await;
                    continue;
                }
                Err(e) => {
                    failures += 1;
                    let pause = Duration::from_millis(250 << failures.min(8));
                    tracing::warn!(error = %e, ?pause, "could not receive work; trying again");
                    tokio::time::sleep(pause).await;
                    continue;
                }
            }
            let clock = self.inner.engine.clock().clone();
            let stored = self.next_stored(&mut tells_next).await;
            for due in self.inner.engine.work_signal().take() {
                if due > started && !tells_next {
                    expected.add(due);
                }
            }
            let wake = match (stored, expected.next_look(clock.now())) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = wake
                .map(|t| (t - clock.now()).to_std().unwrap_or_default())
                .unwrap_or(Duration::MAX);
            tokio::select! {
                changed = signal.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep(sleep.min(Duration::from_secs(24 * 3600))) => {}
            }
        }
    }

    /// This driver as the engine's eager runner. It holds the driver weakly: the engine must
    /// not keep a stopped driver alive.
    fn eager_runner(&self) -> Arc<EagerRunner> {
        let (room, take) = (Arc::downgrade(&self.inner), Arc::downgrade(&self.inner));
        Arc::new(EagerRunner {
            visibility: self.inner.options.visibility,
            has_room: Box::new(move || {
                room.upgrade()
                    .is_some_and(|inner| *inner.in_flight.borrow() < inner.options.batch as usize)
            }),
            take: Box::new(move |handoff: HandOff| {
                // Gone: the message shows when its hiding lapses, and another worker runs it.
                let Some(inner) = take.upgrade() else { return };
                inner.in_flight.send_modify(|n| *n += 1);
                let driver = WorkDriver { inner };
                tokio::spawn(async move {
                    let _done = InFlight(driver.inner.clone());
                    let message = ReceivedMessage {
                        text: handoff.text,
                        dequeue_count: 0,
                        inserted: handoff.inserted,
                        receipt: handoff.receipt,
                    };
                    driver.process(message).await;
                });
            }),
        })
    }

    /// When the backend's next message shows, as far as the backend can tell; where it cannot
    /// (Azure Queue Storage shows no hidden messages), the fallback look.
    async fn next_stored(&self, tells_next: &mut bool) -> Option<DateTime<Utc>> {
        let engine = &self.inner.engine;
        let fallback = engine.clock().now()
            + chrono::Duration::from_std(self.inner.options.fallback_poll)
                .unwrap_or(chrono::Duration::seconds(60));
        if !*tells_next {
            return Some(fallback);
        }
        match engine.store().next_visible(self.queue()).await {
            Ok(NextVisible::At(t)) => Some(t),
            Ok(NextVisible::Empty) => None,
            Ok(NextVisible::Unknown) => {
                // Azure: the empty receive just said all there is to say.
                *tells_next = false;
                Some(fallback)
            }
            Err(_) => Some(fallback),
        }
    }

    /// Receives one batch and starts its work; returns how many messages it got.
    async fn receive(&self) -> Result<usize, StoreError> {
        let options = &self.inner.options;
        // Counted from before the receive, so that `drain` never sees a message that is
        // neither visible nor counted (received here, not yet started).
        self.inner.in_flight.send_modify(|n| *n += 1);
        let receiving = InFlight(self.inner.clone());
        let messages = self
            .inner
            .engine
            .store()
            .dequeue(self.queue(), options.batch.clamp(1, 32), options.visibility)
            .await;
        let messages = {
            let messages = messages?;
            // Each message is counted before the receipt's own count goes.
            for _ in &messages {
                self.inner.in_flight.send_modify(|n| *n += 1);
            }
            drop(receiving);
            messages
        };
        let count = messages.len();
        for message in messages {
            let driver = self.clone();
            tokio::spawn(async move {
                let _done = InFlight(driver.inner.clone());
                driver.process(message).await;
            });
        }
        Ok(count)
    }

    /// Runs everything visible now, and whatever that work sends that is visible at once, until
    /// nothing is left to run (delayed messages, such as timers not yet due, stay). What tests
    /// and the benchmark wait on instead of sleeping.
    pub async fn drain(&self) {
        loop {
            let got = match self.receive().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "could not receive work while draining");
                    0
                }
            };
            let _ = self.inner.in_flight.subscribe().wait_for(|n| *n == 0).await;
            if got == 0 {
                // The background loop may have taken the last ones: once nothing runs and
                // nothing is visible, the queue is drained.
                match self.receive().await {
                    Ok(0) => {
                        let _ = self.inner.in_flight.subscribe().wait_for(|n| *n == 0).await;
                        // The background loop may have planned to wake when a message this
                        // drain held would show again: it is gone, so let the loop look now
                        // rather than at that stale time.
                        let now = self.inner.engine.clock().now();
                        self.inner.engine.work_signal().sent(now);
                        return;
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        }
    }

    async fn process(&self, message: ReceivedMessage) {
        let store = self.inner.engine.store().clone();
        let queue = self.queue().to_owned();
        let options = &self.inner.options;
        if message.dequeue_count > options.max_dequeue_count {
            self.poison(&message).await;
            return;
        }
        let receipt = Arc::new(Mutex::new(message.receipt.clone()));
        let renewing = {
            let (store, queue, receipt) = (store.clone(), queue.clone(), receipt.clone());
            let (text, visibility) = (message.text.clone(), options.visibility);
            async move {
                loop {
                    tokio::time::sleep(visibility / 3).await;
                    let mut current = receipt.lock().await;
                    match store
                        .renew_message(&queue, &current, &text, visibility)
                        .await
                    {
                        Ok(renewed) => *current = renewed,
                        Err(e) => tracing::warn!(error = %e, "could not renew a work message"),
                    }
                }
            }
        };
        let outcome = tokio::select! {
            outcome = self.inner.engine.execute(&message.text, message.inserted, HeldBy::Caller) => outcome,
            () = renewing => unreachable_renewal(),
        };
        let current: MessageReceipt = receipt.lock().await.clone();
        match outcome {
            Ok(executed) => {
                if let Executed::Dropped(reason) = executed {
                    tracing::debug!(reason, "work message dropped");
                }
                match store.delete_message(&queue, &current).await {
                    Ok(()) | Err(StoreError::NotFound) => {}
                    // It shows again later and is then dropped as done.
                    Err(e) => {
                        tracing::warn!(error = %e, "could not delete a finished work message")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, dequeue_count = message.dequeue_count, "work failed; it will be retried");
                // Back sooner than the full visibility.
                let _ = store
                    .renew_message(&queue, &current, &message.text, options.retry_after)
                    .await;
            }
        }
    }

    /// Moves a message that kept failing to `<queue>-poison`, as the host does.
    async fn poison(&self, message: &ReceivedMessage) {
        let store = self.inner.engine.store();
        let poison = format!("{}-poison", self.queue());
        tracing::error!(queue = %poison, text = %message.text, dequeue_count = message.dequeue_count, "work message moved to the poison queue");
        let moved = async {
            store.ensure_queue(&poison).await?;
            store
                .enqueue(&poison, &message.text, Duration::ZERO)
                .await?;
            store.delete_message(self.queue(), &message.receipt).await
        };
        if let Err(e) = moved.await {
            tracing::warn!(error = %e, "could not move a work message to the poison queue");
        }
    }
}

/// The renewal loop only ends with the process.
fn unreachable_renewal() -> Result<Executed, super::EngineError> {
    Ok(Executed::Dropped("renewal ended"))
}

/// Stops eager dispatch when [`WorkDriver::run`] ends.
struct UnsetEager(Engine, Arc<EagerRunner>);

impl Drop for UnsetEager {
    fn drop(&mut self) {
        self.0.clear_eager_runner(&self.1);
    }
}

/// Counts one message's work for `drain` and the batch limit, even if the task panics.
struct InFlight(Arc<Inner>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.send_modify(|n| *n = n.saturating_sub(1));
    }
}
