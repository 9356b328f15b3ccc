//! [`FaultyStore`]: a real backend behind a [`Faults`] layer that counts requests, fails chosen
//! ones with [`StoreError::Unavailable`] as an outage would (or never answers them, as a frozen
//! service would), and can run a competing writer just before a chosen request (a
//! deterministic race).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::store::layer::{Layer, Layered, Op};
use crate::store::{Storage, StoreError, StoreResult};

/// What happens to the requests a fault matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// Fails at once with `Unavailable`; nothing reaches the store.
    Fail,
    /// Never answers, like a storage service that stopped responding.
    Hang,
    /// Fails with `Full`, as a full disk does.
    Full,
}

/// Which requests a fault or hook applies to: an operation (`None`: every one), on one table,
/// container or queue (`None`: any).
#[derive(Debug, Clone, Default)]
struct Target {
    op: Option<Op>,
    resource: Option<String>,
}

impl Target {
    fn matches(&self, op: Op, resource: &str) -> bool {
        self.op.is_none_or(|o| o == op) && self.resource.as_deref().is_none_or(|r| r == resource)
    }
}

/// One armed fault: the requests it matches, what it does, and how many more requests it
/// applies to (`usize::MAX`: until `heal`).
#[derive(Debug)]
struct Fault {
    target: Target,
    effect: Effect,
    remaining: usize,
}

type Hook = (Target, BoxFuture<'static, ()>);

/// The fault-injecting layer.
#[derive(Default)]
pub struct Faults {
    faults: Mutex<Vec<Fault>>,
    /// Futures to run (once each) just before the next request of their kind.
    hooks: Mutex<Vec<Hook>>,
    requests: AtomicUsize,
    batches: AtomicUsize,
    batches_by_table: Mutex<HashMap<String, usize>>,
    queries: AtomicUsize,
}

/// A real store that a test can break or race.
pub type FaultyStore = Layered<Faults>;

impl Layered<Faults> {
    pub fn new(inner: Arc<dyn Storage>) -> Arc<Self> {
        Arc::new(Layered::wrap(inner, Faults::default()))
    }

    /// The next `n` requests of kind `op` fail with `Unavailable` (nothing reaches the store).
    pub fn fail_next(&self, op: Op, n: usize) {
        self.layer().arm(
            Target {
                op: Some(op),
                resource: None,
            },
            Effect::Fail,
            n,
        );
    }

    /// The next `n` requests of kind `op` on `resource` (a table, container or queue) fail
    /// with `Unavailable`; requests elsewhere go through.
    pub fn fail_next_on(&self, op: Op, resource: &str, n: usize) {
        let target = Target {
            op: Some(op),
            resource: Some(resource.to_owned()),
        };
        self.layer().arm(target, Effect::Fail, n);
    }

    /// Every request fails until [`heal`](Self::heal).
    pub fn outage(&self) {
        self.layer()
            .arm(Target::default(), Effect::Fail, usize::MAX);
    }

    /// Every request fails with `Full`, as on a full disk, until [`heal`](Self::heal).
    pub fn fill_disk(&self) {
        self.layer()
            .arm(Target::default(), Effect::Full, usize::MAX);
    }

    /// Every request hangs, never answering, until [`heal`](Self::heal) (requests already
    /// hanging stay hung: their callers must give up on their own).
    pub fn freeze(&self) {
        self.layer()
            .arm(Target::default(), Effect::Hang, usize::MAX);
    }

    /// Runs `hook` to completion just before the next request of kind `op` goes through,
    /// e.g. another engine committing a turn between this engine's load and its commit.
    pub fn before_next(
        &self,
        op: Op,
        hook: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let target = Target {
            op: Some(op),
            resource: None,
        };
        lock(&self.layer().hooks).push((target, Box::pin(hook)));
    }

    /// [`before_next`](Self::before_next), for the next request of kind `op` on `resource`.
    pub fn before_next_on(
        &self,
        op: Op,
        resource: &str,
        hook: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let target = Target {
            op: Some(op),
            resource: Some(resource.to_owned()),
        };
        lock(&self.layer().hooks).push((target, Box::pin(hook)));
    }

    pub fn heal(&self) {
        lock(&self.layer().faults).clear();
    }

    /// Requests made so far (including failed ones).
    pub fn requests(&self) -> usize {
        self.layer().requests.load(Ordering::SeqCst)
    }

    pub fn batches(&self) -> usize {
        self.layer().batches.load(Ordering::SeqCst)
    }

    /// Batches made so far on `table`.
    pub fn batches_on(&self, table: &str) -> usize {
        lock(&self.layer().batches_by_table)
            .get(table)
            .copied()
            .unwrap_or(0)
    }

    pub fn queries(&self) -> usize {
        self.layer().queries.load(Ordering::SeqCst)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Faults {
    fn arm(&self, target: Target, effect: Effect, remaining: usize) {
        lock(&self.faults).push(Fault {
            target,
            effect,
            remaining,
        });
    }

    /// Counts the request and says what to do with it.
    fn enter(&self, op: Op, resource: &str) -> Option<Effect> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        match op {
            Op::Batch => {
                self.batches.fetch_add(1, Ordering::SeqCst);
                *lock(&self.batches_by_table)
                    .entry(resource.to_owned())
                    .or_default() += 1;
            }
            Op::Query => {
                self.queries.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
        let mut faults = lock(&self.faults);
        let hit = faults
            .iter_mut()
            .find(|f| f.remaining > 0 && f.target.matches(op, resource))?;
        if hit.remaining != usize::MAX {
            hit.remaining -= 1;
        }
        Some(hit.effect)
    }

    fn take_hook(&self, op: Op, resource: &str) -> Option<BoxFuture<'static, ()>> {
        let mut hooks = lock(&self.hooks);
        let index = hooks.iter().position(|(t, _)| t.matches(op, resource))?;
        Some(hooks.remove(index).1)
    }
}

impl Layer for Faults {
    fn around<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        resource: &'a str,
        call: BoxFuture<'a, StoreResult<T>>,
    ) -> BoxFuture<'a, StoreResult<T>> {
        async move {
            if let Some(hook) = self.take_hook(op, resource) {
                hook.await;
            }
            match self.enter(op, resource) {
                None => call.await,
                Some(Effect::Fail) => Err(StoreError::unavailable("injected fault")),
                Some(Effect::Hang) => futures::future::pending().await,
                Some(Effect::Full) => Err(StoreError::Full("injected: no space left".into())),
            }
        }
        .boxed()
    }
}
