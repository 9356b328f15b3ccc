//! One decorator mechanism for [`Storage`]: a [`Layer`] says what to add around the calls of
//! the store it wraps, and [`Layered`] implements the trait once for every layer, so a new
//! decorator writes only what it adds (a deadline, a fault, a count), never a forwarding method
//! per trait member.
//!
//! ```ignore
//! let store: Arc<dyn Storage> = Arc::new(Layered::wrap(backend, MyLayer::default()));
//! ```

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;

use super::{
    BatchOp, BlobAt, BlobProperties, BlobRead, ByteStream, ETag, Entity, MessageReceipt,
    NextVisible, Page, PutBlobOptions, ReceivedMessage, SignedUrlRequest, SignedWriteRequest,
    Snapshot, Storage, StoreResult, StoredEntity, TableQuery,
};

/// The operations of [`Storage`], as layers see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    EnsureContainer,
    PutBlob,
    GetBlob,
    BlobProperties,
    SnapshotBlob,
    DeleteBlob,
    SignedReadUrl,
    SignedWriteUrl,
    EnsureTable,
    GetEntity,
    Insert,
    Delete,
    Query,
    Batch,
    EnsureQueue,
    Enqueue,
    Dequeue,
    RenewMessage,
    DeleteMessage,
    NextVisible,
}

impl Op {
    pub const ALL: [Op; 20] = [
        Op::EnsureContainer,
        Op::PutBlob,
        Op::GetBlob,
        Op::BlobProperties,
        Op::SnapshotBlob,
        Op::DeleteBlob,
        Op::SignedReadUrl,
        Op::SignedWriteUrl,
        Op::EnsureTable,
        Op::GetEntity,
        Op::Insert,
        Op::Delete,
        Op::Query,
        Op::Batch,
        Op::EnsureQueue,
        Op::Enqueue,
        Op::Dequeue,
        Op::RenewMessage,
        Op::DeleteMessage,
        Op::NextVisible,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::EnsureContainer => "ensure_container",
            Op::PutBlob => "put_blob",
            Op::GetBlob => "get_blob",
            Op::BlobProperties => "blob_properties",
            Op::SnapshotBlob => "snapshot_blob",
            Op::DeleteBlob => "delete_blob",
            Op::SignedReadUrl => "signed_read_url",
            Op::SignedWriteUrl => "signed_write_url",
            Op::EnsureTable => "ensure_table",
            Op::GetEntity => "get_entity",
            Op::Insert => "insert",
            Op::Delete => "delete",
            Op::Query => "query",
            Op::Batch => "batch",
            Op::EnsureQueue => "ensure_queue",
            Op::Enqueue => "enqueue",
            Op::Dequeue => "dequeue",
            Op::RenewMessage => "renew_message",
            Op::DeleteMessage => "delete_message",
            Op::NextVisible => "next_visible",
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Sends a blob body to the wrapped store.
pub type PutBlobCall<'a> =
    Box<dyn FnOnce(ByteStream) -> BoxFuture<'a, StoreResult<BlobProperties>> + Send + 'a>;

/// What a decorator adds. Every method has a pass-through default.
pub trait Layer: Send + Sync + 'static {
    /// Wraps one call that `call` makes on the wrapped store, on `resource` (the table,
    /// container or queue it names). Blob writes and reads come
    /// through here too, unless [`Layer::put_blob`] or [`Layer::get_blob`] say otherwise.
    fn around<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        resource: &'a str,
        call: BoxFuture<'a, StoreResult<T>>,
    ) -> BoxFuture<'a, StoreResult<T>> {
        let _ = (op, resource);
        call
    }

    /// A blob write: `put` hands `body` to the wrapped store. A layer may wrap the body (to
    /// watch the bytes go by) as well as the call.
    fn put_blob<'a>(
        &'a self,
        container: &'a str,
        body: ByteStream,
        put: PutBlobCall<'a>,
    ) -> BoxFuture<'a, StoreResult<BlobProperties>> {
        self.around(Op::PutBlob, container, put(body))
    }

    /// A blob read of `range` (all of it when `None`).
    fn get_blob<'a>(
        &'a self,
        container: &'a str,
        range: Option<Range<u64>>,
        call: BoxFuture<'a, StoreResult<BlobRead>>,
    ) -> BoxFuture<'a, StoreResult<BlobRead>> {
        let _ = range;
        self.around(Op::GetBlob, container, call)
    }

    /// A receive from `queue`.
    fn dequeue<'a>(
        &'a self,
        queue: &'a str,
        call: BoxFuture<'a, StoreResult<Vec<ReceivedMessage>>>,
    ) -> BoxFuture<'a, StoreResult<Vec<ReceivedMessage>>> {
        self.around(Op::Dequeue, queue, call)
    }

    /// A link signed locally: no request reaches the service (counted as none).
    fn signed_read_url(&self) {}

    /// The signing of a link, which under a managed identity may first fetch a user-delegation
    /// key (about once a day).
    fn signing<'a>(
        &'a self,
        call: BoxFuture<'a, StoreResult<String>>,
    ) -> BoxFuture<'a, StoreResult<String>> {
        call
    }

    /// An upload link signed locally: no request reaches the service.
    fn signed_write_url(&self) {}
}

/// A store with a [`Layer`] around every call.
pub struct Layered<L> {
    inner: Arc<dyn Storage>,
    layer: L,
}

impl<L: Layer> Layered<L> {
    pub fn wrap(inner: Arc<dyn Storage>, layer: L) -> Self {
        Layered { inner, layer }
    }

    pub fn layer(&self) -> &L {
        &self.layer
    }
}

#[async_trait]
impl<L: Layer> Storage for Layered<L> {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }

    fn signed_url_origin(&self) -> String {
        self.inner.signed_url_origin()
    }

    async fn ensure_container(&self, container: &str) -> StoreResult<()> {
        self.layer
            .around(
                Op::EnsureContainer,
                container,
                self.inner.ensure_container(container),
            )
            .await
    }

    async fn put_blob(
        &self,
        container: &str,
        name: &str,
        body: ByteStream,
        options: &PutBlobOptions,
    ) -> StoreResult<BlobProperties> {
        let inner = &self.inner;
        self.layer
            .put_blob(
                container,
                body,
                Box::new(move |body| inner.put_blob(container, name, body, options)),
            )
            .await
    }

    async fn read_blob(
        &self,
        blob: BlobAt<'_>,
        range: Option<Range<u64>>,
    ) -> StoreResult<BlobRead> {
        let call = self.inner.read_blob(blob, range.clone());
        self.layer.get_blob(blob.container, range, call).await
    }

    async fn properties_at(&self, blob: BlobAt<'_>) -> StoreResult<BlobProperties> {
        self.layer
            .around(
                Op::BlobProperties,
                blob.container,
                self.inner.properties_at(blob),
            )
            .await
    }

    async fn snapshot_blob(
        &self,
        container: &str,
        name: &str,
        if_match: Option<&ETag>,
    ) -> StoreResult<Snapshot> {
        self.layer
            .around(
                Op::SnapshotBlob,
                container,
                self.inner.snapshot_blob(container, name, if_match),
            )
            .await
    }

    async fn signed_read_url(&self, request: &SignedUrlRequest<'_>) -> StoreResult<String> {
        self.layer.signed_read_url();
        self.layer
            .signing(self.inner.signed_read_url(request))
            .await
    }

    async fn signed_write_url(&self, request: &SignedWriteRequest<'_>) -> StoreResult<String> {
        self.layer.signed_write_url();
        self.layer
            .signing(self.inner.signed_write_url(request))
            .await
    }

    async fn delete_blob(&self, container: &str, name: &str) -> StoreResult<()> {
        self.layer
            .around(
                Op::DeleteBlob,
                container,
                self.inner.delete_blob(container, name),
            )
            .await
    }

    async fn ensure_table(&self, table: &str) -> StoreResult<()> {
        self.layer
            .around(Op::EnsureTable, table, self.inner.ensure_table(table))
            .await
    }

    async fn get_entity(
        &self,
        table: &str,
        partition_key: &str,
        row_key: &str,
    ) -> StoreResult<StoredEntity> {
        self.layer
            .around(
                Op::GetEntity,
                table,
                self.inner.get_entity(table, partition_key, row_key),
            )
            .await
    }

    async fn insert_entity(&self, table: &str, entity: &Entity) -> StoreResult<ETag> {
        self.layer
            .around(Op::Insert, table, self.inner.insert_entity(table, entity))
            .await
    }

    async fn delete_entity(
        &self,
        table: &str,
        partition_key: &str,
        row_key: &str,
        if_match: Option<&ETag>,
    ) -> StoreResult<()> {
        self.layer
            .around(
                Op::Delete,
                table,
                self.inner
                    .delete_entity(table, partition_key, row_key, if_match),
            )
            .await
    }

    async fn query(&self, table: &str, query: &TableQuery) -> StoreResult<Page> {
        self.layer
            .around(Op::Query, table, self.inner.query(table, query))
            .await
    }

    async fn batch(
        &self,
        table: &str,
        partition_key: &str,
        operations: Vec<BatchOp>,
    ) -> StoreResult<Vec<Option<ETag>>> {
        self.layer
            .around(
                Op::Batch,
                table,
                self.inner.batch(table, partition_key, operations),
            )
            .await
    }

    async fn ensure_queue(&self, queue: &str) -> StoreResult<()> {
        self.layer
            .around(Op::EnsureQueue, queue, self.inner.ensure_queue(queue))
            .await
    }

    async fn enqueue(
        &self,
        queue: &str,
        text: &str,
        delay: std::time::Duration,
    ) -> StoreResult<MessageReceipt> {
        self.layer
            .around(Op::Enqueue, queue, self.inner.enqueue(queue, text, delay))
            .await
    }

    async fn dequeue(
        &self,
        queue: &str,
        max: u32,
        visibility: std::time::Duration,
    ) -> StoreResult<Vec<ReceivedMessage>> {
        self.layer
            .dequeue(queue, self.inner.dequeue(queue, max, visibility))
            .await
    }

    async fn renew_message(
        &self,
        queue: &str,
        receipt: &MessageReceipt,
        text: &str,
        visibility: std::time::Duration,
    ) -> StoreResult<MessageReceipt> {
        self.layer
            .around(
                Op::RenewMessage,
                queue,
                self.inner.renew_message(queue, receipt, text, visibility),
            )
            .await
    }

    async fn delete_message(&self, queue: &str, receipt: &MessageReceipt) -> StoreResult<()> {
        self.layer
            .around(
                Op::DeleteMessage,
                queue,
                self.inner.delete_message(queue, receipt),
            )
            .await
    }

    async fn next_visible(&self, queue: &str) -> StoreResult<NextVisible> {
        self.layer
            .around(Op::NextVisible, queue, self.inner.next_visible(queue))
            .await
    }
}
