//! Test helpers: [`FaultyStore`], a [`Storage`] wrapper around a real backend that counts
//! requests, fails chosen ones with [`StoreError::Unavailable`] as an outage would, and can run
//! a competing writer just before a chosen request (a deterministic race).

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::future::BoxFuture;

use crate::store::{
    BatchOp, BlobProperties, BlobRead, ByteStream, ETag, Entity, Page, PutBlobOptions,
    SignedUrlRequest, Storage, StoreError, StoreResult, StoredEntity, TableQuery,
};

/// Which requests a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `batch` (every turn's commit).
    Batch,
    /// `query` (loads, `list`, `recover`).
    Query,
    /// `merge_entity`.
    Merge,
    /// Every request.
    Any,
}

/// Wraps a real store; passes everything through except the faults it is told to inject.
pub struct FaultyStore {
    inner: Arc<dyn Storage>,
    /// (operation, how many more to fail); `usize::MAX` means until `heal`.
    faults: Mutex<Vec<(Op, usize)>>,
    /// Futures to run (once each) just before the next request of their kind.
    hooks: Mutex<Vec<(Op, BoxFuture<'static, ()>)>>,
    requests: AtomicUsize,
    batches: AtomicUsize,
    queries: AtomicUsize,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Storage>) -> Arc<Self> {
        Arc::new(FaultyStore {
            inner,
            faults: Mutex::new(Vec::new()),
            hooks: Mutex::new(Vec::new()),
            requests: AtomicUsize::new(0),
            batches: AtomicUsize::new(0),
            queries: AtomicUsize::new(0),
        })
    }

    /// The next `n` requests of kind `op` fail with `Unavailable` (nothing reaches the store).
    pub fn fail_next(&self, op: Op, n: usize) {
        self.lock().push((op, n));
    }

    /// Every request fails until [`FaultyStore::heal`].
    pub fn outage(&self) {
        self.lock().push((Op::Any, usize::MAX));
    }

    /// Runs `hook` to completion just before the next request of kind `op` goes through,
    /// e.g. another engine committing a turn between this engine's load and its commit.
    pub fn before_next(
        &self,
        op: Op,
        hook: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        self.hooks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((op, Box::pin(hook)));
    }

    pub fn heal(&self) {
        self.lock().clear();
    }

    /// Requests made so far (including failed ones).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn batches(&self) -> usize {
        self.batches.load(Ordering::SeqCst)
    }

    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Op, usize)>> {
        self.faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn enter(&self, op: Option<Op>) -> StoreResult<()> {
        let hook = {
            let mut hooks = self
                .hooks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            hooks
                .iter()
                .position(|(h, _)| *h == Op::Any || Some(*h) == op)
                .map(|i| hooks.remove(i).1)
        };
        if let Some(hook) = hook {
            hook.await;
        }
        self.requests.fetch_add(1, Ordering::SeqCst);
        match op {
            Some(Op::Batch) => self.batches.fetch_add(1, Ordering::SeqCst),
            Some(Op::Query) => self.queries.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
        let mut faults = self.lock();
        let hit = faults
            .iter_mut()
            .find(|(f, n)| *n > 0 && (*f == Op::Any || Some(*f) == op));
        if let Some((_, n)) = hit {
            if *n != usize::MAX {
                *n -= 1;
            }
            return Err(StoreError::unavailable("injected fault"));
        }
        Ok(())
    }
}

#[async_trait]
impl Storage for FaultyStore {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }

    async fn ensure_container(&self, container: &str) -> StoreResult<()> {
        self.enter(None).await?;
        self.inner.ensure_container(container).await
    }

    async fn put_blob(
        &self,
        container: &str,
        name: &str,
        body: ByteStream,
        options: &PutBlobOptions,
    ) -> StoreResult<BlobProperties> {
        self.enter(None).await?;
        self.inner.put_blob(container, name, body, options).await
    }

    async fn get_blob(
        &self,
        container: &str,
        name: &str,
        range: Option<Range<u64>>,
    ) -> StoreResult<BlobRead> {
        self.enter(None).await?;
        self.inner.get_blob(container, name, range).await
    }

    async fn blob_properties(&self, container: &str, name: &str) -> StoreResult<BlobProperties> {
        self.enter(None).await?;
        self.inner.blob_properties(container, name).await
    }

    async fn delete_blob(&self, container: &str, name: &str) -> StoreResult<()> {
        self.enter(None).await?;
        self.inner.delete_blob(container, name).await
    }

    fn signed_read_url(&self, request: &SignedUrlRequest<'_>) -> StoreResult<String> {
        self.inner.signed_read_url(request)
    }

    async fn ensure_table(&self, table: &str) -> StoreResult<()> {
        self.enter(None).await?;
        self.inner.ensure_table(table).await
    }

    async fn get_entity(
        &self,
        table: &str,
        partition_key: &str,
        row_key: &str,
    ) -> StoreResult<StoredEntity> {
        self.enter(None).await?;
        self.inner.get_entity(table, partition_key, row_key).await
    }

    async fn insert_entity(&self, table: &str, entity: &Entity) -> StoreResult<ETag> {
        self.enter(None).await?;
        self.inner.insert_entity(table, entity).await
    }

    async fn upsert_entity(&self, table: &str, entity: &Entity) -> StoreResult<ETag> {
        self.enter(None).await?;
        self.inner.upsert_entity(table, entity).await
    }

    async fn update_entity(
        &self,
        table: &str,
        entity: &Entity,
        if_match: &ETag,
    ) -> StoreResult<ETag> {
        self.enter(None).await?;
        self.inner.update_entity(table, entity, if_match).await
    }

    async fn merge_entity(
        &self,
        table: &str,
        entity: &Entity,
        if_match: &ETag,
    ) -> StoreResult<ETag> {
        self.enter(Some(Op::Merge)).await?;
        self.inner.merge_entity(table, entity, if_match).await
    }

    async fn delete_entity(
        &self,
        table: &str,
        partition_key: &str,
        row_key: &str,
        if_match: Option<&ETag>,
    ) -> StoreResult<()> {
        self.enter(None).await?;
        self.inner
            .delete_entity(table, partition_key, row_key, if_match)
            .await
    }

    async fn query(&self, table: &str, query: &TableQuery) -> StoreResult<Page> {
        self.enter(Some(Op::Query)).await?;
        self.inner.query(table, query).await
    }

    async fn batch(
        &self,
        table: &str,
        partition_key: &str,
        operations: Vec<BatchOp>,
    ) -> StoreResult<Vec<Option<ETag>>> {
        self.enter(Some(Op::Batch)).await?;
        self.inner.batch(table, partition_key, operations).await
    }
}
