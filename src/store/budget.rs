//! A deadline that the storage calls of one request share, so that a storage service that
//! stops answering costs a client a few seconds and a 503, not the minute the HTTP client's own
//! timeouts and retries would add up to.
//!
//! The edge runs each request inside [`with_budget`]; the [`Budgeted`] layer gives every storage
//! call made in that scope only the time left until the request's deadline, and turns an
//! overrun into [`StoreError::Unavailable`]. Work spawned from the request (an activity) runs
//! outside the scope, on the backends' own timeouts.
//!
//! A blob write is the exception that keeps the rule honest: its duration is mostly the
//! client's upload speed, which says nothing about storage. While it streams, the deadline is
//! pushed back whenever the store takes the next chunk (storage is making progress) and held
//! while the store waits for the client; a write that stops making progress for the whole
//! budget is a stalled store. After the write the request gets a fresh budget for what follows.
//!
//! An overrun's write may or may not have landed; every write the app makes is safe to repeat
//! (a retried approval is recognised by its event id, a retried upload is a new file), so the
//! client's retry after the 503 is the recovery.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, Stream};
use tokio::time::Instant;

use super::layer::{Layer, Op, PutBlobCall};
use super::{BlobProperties, BoxError, ByteStream, StoreError, StoreResult};

tokio::task_local! {
    static BUDGET: Arc<Budget>;
}

/// One request's share of storage time.
#[derive(Debug)]
struct Budget {
    length: Duration,
    deadline: Mutex<Instant>,
}

impl Budget {
    fn deadline(&self) -> Instant {
        *self
            .deadline
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn rearm(&self) {
        *self
            .deadline
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now() + self.length;
    }
}

/// Runs `work` with a storage budget of `length`: every storage call it makes through a
/// [`Budgeted`] store must finish by then.
pub async fn with_budget<F: std::future::Future>(length: Duration, work: F) -> F::Output {
    let budget = Arc::new(Budget {
        length,
        deadline: Mutex::new(Instant::now() + length),
    });
    BUDGET.scope(budget, work).await
}

fn current() -> Option<Arc<Budget>> {
    BUDGET.try_with(Arc::clone).ok()
}

/// Why a storage call was cut short.
#[derive(Debug, thiserror::Error)]
#[error("storage did not answer within the request's budget of {budget:?}")]
pub struct BudgetExceeded {
    pub budget: Duration,
}

fn exceeded(budget: &Budget) -> StoreError {
    StoreError::unavailable(BudgetExceeded {
        budget: budget.length,
    })
}

/// The layer that enforces the budget of the request it runs in (none outside one).
#[derive(Debug, Default, Clone, Copy)]
pub struct Budgeted;

impl Layer for Budgeted {
    fn around<'a, T: Send + 'a>(
        &'a self,
        _op: Op,
        _resource: &'a str,
        call: BoxFuture<'a, StoreResult<T>>,
    ) -> BoxFuture<'a, StoreResult<T>> {
        let Some(budget) = current() else {
            return call;
        };
        async move {
            match tokio::time::timeout_at(budget.deadline(), call).await {
                Ok(result) => result,
                Err(_) => Err(exceeded(&budget)),
            }
        }
        .boxed()
    }

    fn signing<'a>(
        &'a self,
        call: BoxFuture<'a, StoreResult<String>>,
    ) -> BoxFuture<'a, StoreResult<String>> {
        self.around(Op::SignedReadUrl, "", call)
    }

    fn put_blob<'a>(
        &'a self,
        _container: &'a str,
        body: ByteStream,
        put: PutBlobCall<'a>,
    ) -> BoxFuture<'a, StoreResult<BlobProperties>> {
        let Some(budget) = current() else {
            return put(body);
        };
        let watch = Arc::new(Mutex::new(Progress {
            last: Instant::now(),
            waiting_for_client: false,
        }));
        let body = Box::pin(Watched {
            inner: body,
            watch: watch.clone(),
        });
        async move {
            let mut call = put(body);
            let result = loop {
                let (last, waiting) = {
                    let p = watch
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    (p.last, p.waiting_for_client)
                };
                // While the store waits for the client, no storage deadline runs.
                let wake = if waiting {
                    Instant::now() + budget.length
                } else {
                    last + budget.length
                };
                tokio::select! {
                    result = &mut call => break result,
                    _ = tokio::time::sleep_until(wake) => {
                        let p = watch.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                        if !p.waiting_for_client && p.last + budget.length <= Instant::now() {
                            break Err(exceeded(&budget));
                        }
                    }
                }
            };
            // The upload's own time was the client's: what follows gets a whole budget.
            budget.rearm();
            result
        }
        .boxed()
    }
}

#[derive(Debug)]
struct Progress {
    /// When the store last took a chunk or the client last delivered one.
    last: Instant,
    /// The store asked for the next chunk and the client has not sent it yet.
    waiting_for_client: bool,
}

/// A blob body that reports who is being waited for.
struct Watched {
    inner: ByteStream,
    watch: Arc<Mutex<Progress>>,
}

impl Stream for Watched {
    type Item = Result<Bytes, BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.inner.as_mut().poll_next(cx);
        let mut p = self
            .watch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        p.last = Instant::now();
        p.waiting_for_client = next.is_pending();
        drop(p);
        next
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::StreamExt;

    use super::*;
    use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};
    use crate::store::layer::Layered;
    use crate::store::testing::FaultyStore;
    use crate::store::{PutBlobOptions, Storage};

    fn stores() -> (tempfile::TempDir, Arc<FaultyStore>, Arc<dyn Storage>) {
        let dir = tempfile::tempdir().unwrap();
        let embedded = EmbeddedStore::open(
            dir.path(),
            EmbeddedOptions {
                public_base_url: "http://127.0.0.1:7071".into(),
                signing_secret: Some(vec![7; 32]),
                ..EmbeddedOptions::default()
            },
        )
        .unwrap();
        let faulty = FaultyStore::new(Arc::new(embedded));
        let budgeted: Arc<dyn Storage> = Arc::new(Layered::wrap(faulty.clone(), Budgeted));
        (dir, faulty, budgeted)
    }

    fn is_budget_overrun(result: StoreResult<impl std::fmt::Debug>) -> bool {
        match result {
            Err(StoreError::Unavailable(source)) => {
                source.downcast_ref::<BudgetExceeded>().is_some()
            }
            _ => false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_frozen_store_costs_a_request_its_budget_and_no_more() {
        let (_dir, faulty, store) = stores();
        store.ensure_table("budget").await.unwrap();
        faulty.freeze();
        let started = Instant::now();
        let result = with_budget(Duration::from_secs(5), async {
            store.get_entity("budget", "p", "r").await
        })
        .await;
        assert!(is_budget_overrun(result));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn the_calls_of_one_request_share_one_budget() {
        let (_dir, faulty, store) = stores();
        store.ensure_table("budget").await.unwrap();
        let started = Instant::now();
        let result = with_budget(Duration::from_secs(5), async {
            tokio::time::sleep(Duration::from_secs(4)).await;
            store.get_entity("budget", "p", "r").await.err();
            faulty.freeze();
            store.get_entity("budget", "p", "r").await
        })
        .await;
        assert!(is_budget_overrun(result));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn outside_a_request_calls_are_not_cut_short() {
        let (_dir, faulty, store) = stores();
        store.ensure_table("budget").await.unwrap();
        faulty.freeze();
        let call = store.get_entity("budget", "p", "r");
        assert!(tokio::time::timeout(Duration::from_secs(600), call)
            .await
            .is_err());
    }

    /// Real time: the embedded store writes on blocking threads, which paused time cannot see.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_client_upload_is_not_storage_time() {
        let (_dir, _faulty, store) = stores();
        store.ensure_container("files").await.unwrap();
        let options = PutBlobOptions {
            content_type: "text/plain".into(),
            max_bytes: None,
        };
        // A client that sends one byte every 150 ms: three times the budget, all its own.
        let slow = futures::stream::iter(0..10u8)
            .then(|b| async move {
                tokio::time::sleep(Duration::from_millis(150)).await;
                Ok::<_, BoxError>(Bytes::from(vec![b]))
            })
            .boxed();
        let result = with_budget(Duration::from_millis(500), async {
            let written = store.put_blob("files", "slow", slow, &options).await;
            // The write's time does not count against what follows.
            (written, store.blob_properties("files", "slow").await)
        })
        .await;
        assert_eq!(result.0.unwrap().size, 10);
        assert_eq!(result.1.unwrap().size, 10);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_that_stops_taking_an_upload_is_cut_short() {
        let (_dir, faulty, store) = stores();
        store.ensure_container("files").await.unwrap();
        faulty.freeze();
        let options = PutBlobOptions {
            content_type: "text/plain".into(),
            max_bytes: None,
        };
        let body = futures::stream::iter([Ok::<_, BoxError>(Bytes::from_static(b"x"))]).boxed();
        let started = std::time::Instant::now();
        let result = with_budget(Duration::from_millis(300), async {
            store.put_blob("files", "stuck", body, &options).await
        })
        .await;
        assert!(is_budget_overrun(result));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}
