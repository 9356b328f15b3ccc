//! A [`Layer`] that counts the requests made through it, by operation.
//!
//! Storage transactions are what a user of Durable Functions' Azure Storage provider pays for
//! around the clock (idle polling, leases), so the benchmark reports how many File Approver
//! makes per workflow and per idle minute. Counting at the trait boundary sees every request
//! the engine, the workflow and the HTTP edge make, whatever the backend.
//!
//! One trait call is one service request except for blobs, which a block store moves in
//! pieces. With a [`BlobRequestModel::Blocks`] the decorator counts what an Azure-style
//! backend sends instead: Put Block per block plus one Put Block List (a single Put Blob when
//! the body fits in one block), and one Get Blob per range for a read (plus a properties
//! request first for a ranged read). [`Storage::signed_read_url`] is signed locally and costs nothing.
//!
//! ```ignore
//! let counter = RequestCounter::new(BlobRequestModel::Calls);
//! let app = Application::build_with_store_layer(settings, listener, clock, |s| counter.wrap(s));
//! // ... run traffic ...
//! println!("{}", counter.take());
//! ```

use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, Stream};

use crate::store::layer::{Layer, Layered, Op, PutBlobCall};
use crate::store::{
    BlobProperties, BlobRead, BoxError, ByteStream, ReceivedMessage, Storage, StoreResult,
};

/// How blob calls turn into service requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobRequestModel {
    /// One request per call (the embedded store, or when the backend's shape is unknown).
    Calls,
    /// A block store: writes go in `block_bytes` blocks plus a commit (one Put Blob when the
    /// body fits in a single block); reads fetch `read_range_bytes` ranges (a ranged read
    /// fetches the properties first).
    Blocks {
        block_bytes: u64,
        read_range_bytes: u64,
    },
}

impl BlobRequestModel {
    fn put_requests(self, bytes: u64, committed: bool) -> u64 {
        match self {
            BlobRequestModel::Calls => 1,
            BlobRequestModel::Blocks { block_bytes, .. } => {
                let block_bytes = block_bytes.max(1);
                if !committed {
                    // Only blocks that filled up before the failure were sent.
                    return bytes / block_bytes;
                }
                if bytes <= block_bytes {
                    1
                } else {
                    bytes.div_ceil(block_bytes) + 1
                }
            }
        }
    }

    /// A whole read of less than two ranges learns the size from its first range; a larger
    /// or a ranged read asks for the properties too, and so does a whole read of an empty
    /// blob after its first range was refused.
    fn get_requests(self, bytes: u64, whole: bool) -> u64 {
        match self {
            BlobRequestModel::Calls => 1,
            BlobRequestModel::Blocks {
                read_range_bytes, ..
            } => {
                let range = read_range_bytes.max(1);
                let ranges = bytes.div_ceil(range);
                match (whole, bytes) {
                    (true, 0) => 2,
                    // The first range's answer tells the size only when the rest is shorter
                    // than a range.
                    (true, _) if bytes < 2 * range => ranges,
                    (_, _) => 1 + ranges,
                }
            }
        }
    }
}

const OPS: usize = Op::ALL.len();

fn index(op: Op) -> usize {
    op as usize
}

/// The shared counters behind a [`RequestCounter`].
#[derive(Debug)]
struct Counters {
    calls: [AtomicU64; OPS],
    requests: [AtomicU64; OPS],
    bytes_written: AtomicU64,
    bytes_read: AtomicU64,
    messages_received: AtomicU64,
}

impl Counters {
    fn new() -> Self {
        Counters {
            calls: std::array::from_fn(|_| AtomicU64::new(0)),
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            bytes_written: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            messages_received: AtomicU64::new(0),
        }
    }
}

/// A handle on the counts: cheap to clone, shared by every store it wraps.
#[derive(Debug, Clone)]
pub struct RequestCounter {
    counters: Arc<Counters>,
    model: BlobRequestModel,
}

impl RequestCounter {
    pub fn new(model: BlobRequestModel) -> Self {
        RequestCounter {
            counters: Arc::new(Counters::new()),
            model,
        }
    }

    /// Wraps `inner` so that every call through the result is counted here.
    pub fn wrap(&self, inner: Arc<dyn Storage>) -> Arc<CountingStore> {
        Arc::new(Layered::wrap(inner, Counting(self.clone())))
    }

    /// The counts so far.
    pub fn snapshot(&self) -> RequestCounts {
        let c = &self.counters;
        RequestCounts {
            calls: std::array::from_fn(|i| c.calls[i].load(Ordering::Relaxed)),
            requests: std::array::from_fn(|i| c.requests[i].load(Ordering::Relaxed)),
            bytes_written: c.bytes_written.load(Ordering::Relaxed),
            bytes_read: c.bytes_read.load(Ordering::Relaxed),
            messages_received: c.messages_received.load(Ordering::Relaxed),
        }
    }

    /// The counts so far, and zero from here on. Calls in flight land on one side or the
    /// other, never on both and never nowhere.
    pub fn take(&self) -> RequestCounts {
        let c = &self.counters;
        RequestCounts {
            calls: std::array::from_fn(|i| c.calls[i].swap(0, Ordering::Relaxed)),
            requests: std::array::from_fn(|i| c.requests[i].swap(0, Ordering::Relaxed)),
            bytes_written: c.bytes_written.swap(0, Ordering::Relaxed),
            bytes_read: c.bytes_read.swap(0, Ordering::Relaxed),
            messages_received: c.messages_received.swap(0, Ordering::Relaxed),
        }
    }

    pub fn reset(&self) {
        self.take();
    }

    fn record(&self, op: Op, requests: u64) {
        self.counters.calls[index(op)].fetch_add(1, Ordering::Relaxed);
        self.counters.requests[index(op)].fetch_add(requests, Ordering::Relaxed);
    }
}

/// Counts by operation, as returned by [`RequestCounter::snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestCounts {
    calls: [u64; OPS],
    requests: [u64; OPS],
    /// Bytes handed to `put_blob` (whether or not the write committed).
    pub bytes_written: u64,
    /// Bytes `get_blob` was asked to return.
    pub bytes_read: u64,
    /// Messages the receives returned: a receive that returned none was a look.
    pub messages_received: u64,
}

impl RequestCounts {
    /// Trait calls of `op`, failed ones included.
    pub fn calls(&self, op: Op) -> u64 {
        self.calls[index(op)]
    }

    /// Service requests `op` made: its calls, except for blobs under a block model and
    /// `signed_read_url` (none).
    pub fn requests(&self, op: Op) -> u64 {
        self.requests[index(op)]
    }

    /// All service requests.
    pub fn total(&self) -> u64 {
        self.requests.iter().sum()
    }

    /// A local work driver's polling: its receives beyond one per message received (the
    /// empty ones, which the host's queue trigger makes on its own schedule under Functions),
    /// and its next-visible checks. What a workflow costs is [`RequestCounts::total`] minus
    /// these.
    pub fn driver_looks(&self) -> u64 {
        self.requests(Op::Dequeue)
            .saturating_sub(self.messages_received)
            + self.requests(Op::NextVisible)
    }

    /// The operations that made a request or were called, with their request counts.
    pub fn nonzero(&self) -> impl Iterator<Item = (Op, u64)> + '_ {
        Op::ALL
            .into_iter()
            .filter(|op| self.calls(*op) > 0 || self.requests(*op) > 0)
            .map(|op| (op, self.requests(op)))
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts {
            calls: std::array::from_fn(|i| self.calls[i].saturating_sub(earlier.calls[i])),
            requests: std::array::from_fn(|i| self.requests[i].saturating_sub(earlier.requests[i])),
            bytes_written: self.bytes_written.saturating_sub(earlier.bytes_written),
            bytes_read: self.bytes_read.saturating_sub(earlier.bytes_read),
            messages_received: self
                .messages_received
                .saturating_sub(earlier.messages_received),
        }
    }

    /// The sum of two counts (to accumulate several windows).
    pub fn plus(&self, other: &RequestCounts) -> RequestCounts {
        RequestCounts {
            calls: std::array::from_fn(|i| self.calls[i] + other.calls[i]),
            requests: std::array::from_fn(|i| self.requests[i] + other.requests[i]),
            bytes_written: self.bytes_written + other.bytes_written,
            bytes_read: self.bytes_read + other.bytes_read,
            messages_received: self.messages_received + other.messages_received,
        }
    }
}

/// `total 9: insert 1, put_blob 1, batch 4, ...` (operations in trait order).
impl fmt::Display for RequestCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "total {}", self.total())?;
        let mut sep = ": ";
        for (op, requests) in self.nonzero() {
            write!(f, "{sep}{op} {requests}")?;
            if requests != self.calls(op) {
                write!(f, " ({} calls)", self.calls(op))?;
            }
            sep = ", ";
        }
        Ok(())
    }
}

/// The counting layer; build a store with it through [`RequestCounter::wrap`].
pub struct Counting(RequestCounter);

/// A store whose every request is counted.
pub type CountingStore = Layered<Counting>;

/// Counts the bytes of a body as the backend pulls them.
struct Metered {
    inner: ByteStream,
    seen: Arc<AtomicU64>,
}

impl Stream for Metered {
    type Item = Result<Bytes, BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &next {
            self.seen.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        next
    }
}

impl Layer for Counting {
    fn around<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        _resource: &'a str,
        call: BoxFuture<'a, StoreResult<T>>,
    ) -> BoxFuture<'a, StoreResult<T>> {
        self.0.record(op, 1);
        call
    }

    fn dequeue<'a>(
        &'a self,
        _queue: &'a str,
        call: BoxFuture<'a, StoreResult<Vec<ReceivedMessage>>>,
    ) -> BoxFuture<'a, StoreResult<Vec<ReceivedMessage>>> {
        let counter = &self.0;
        counter.record(Op::Dequeue, 1);
        call.map(move |result| {
            if let Ok(messages) = &result {
                counter
                    .counters
                    .messages_received
                    .fetch_add(messages.len() as u64, Ordering::Relaxed);
            }
            result
        })
        .boxed()
    }

    fn put_blob<'a>(
        &'a self,
        _container: &'a str,
        body: ByteStream,
        put: PutBlobCall<'a>,
    ) -> BoxFuture<'a, StoreResult<BlobProperties>> {
        let seen = Arc::new(AtomicU64::new(0));
        let body = Box::pin(Metered {
            inner: body,
            seen: seen.clone(),
        });
        let counter = &self.0;
        put(body)
            .map(move |result| {
                let bytes = seen.load(Ordering::Relaxed);
                counter.record(
                    Op::PutBlob,
                    counter.model.put_requests(bytes, result.is_ok()),
                );
                counter
                    .counters
                    .bytes_written
                    .fetch_add(bytes, Ordering::Relaxed);
                result
            })
            .boxed()
    }

    fn get_blob<'a>(
        &'a self,
        _container: &'a str,
        range: Option<Range<u64>>,
        call: BoxFuture<'a, StoreResult<BlobRead>>,
    ) -> BoxFuture<'a, StoreResult<BlobRead>> {
        let counter = &self.0;
        call.map(move |result| {
            let (requests, bytes) = match &result {
                Ok(read) => {
                    let size = read.properties.size;
                    let bytes = match &range {
                        Some(r) => r.end.min(size).saturating_sub(r.start),
                        None => size,
                    };
                    (counter.model.get_requests(bytes, range.is_none()), bytes)
                }
                Err(_) => (1, 0),
            };
            counter.record(Op::GetBlob, requests);
            counter
                .counters
                .bytes_read
                .fetch_add(bytes, Ordering::Relaxed);
            result
        })
        .boxed()
    }

    fn signed_read_url(&self) {
        self.0.record(Op::SignedReadUrl, 0);
    }

    fn signed_write_url(&self) {
        self.0.record(Op::SignedWriteUrl, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};
    use crate::store::{
        BatchOp, ETag, Entity, PutBlobOptions, SignedUrlRequest, StoreError, TableQuery,
    };
    use chrono::{Duration, Utc};
    use futures::StreamExt;

    fn embedded(dir: &std::path::Path) -> Arc<dyn Storage> {
        Arc::new(
            EmbeddedStore::open(
                dir,
                EmbeddedOptions {
                    public_base_url: "http://127.0.0.1:7071".into(),
                    signing_secret: Some(vec![7; 32]),
                    ..EmbeddedOptions::default()
                },
            )
            .expect("open the embedded store"),
        )
    }

    fn body(bytes: Vec<u8>, chunk: usize) -> ByteStream {
        let chunks: Vec<Result<Bytes, BoxError>> = bytes
            .chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(futures::stream::iter(chunks))
    }

    fn options() -> PutBlobOptions {
        PutBlobOptions {
            content_type: "application/octet-stream".into(),
            max_bytes: None,
        }
    }

    #[tokio::test]
    async fn every_call_is_counted_under_its_operation() {
        let dir = tempfile::tempdir().expect("temp dir");
        let counter = RequestCounter::new(BlobRequestModel::Calls);
        let store = counter.wrap(embedded(dir.path()));

        store.ensure_container("files").await.expect("container");
        store.ensure_table("records").await.expect("table");
        store
            .put_blob("files", "a", body(vec![1; 10], 4), &options())
            .await
            .expect("put");
        let read = store.get_blob("files", "a", None).await.expect("get");
        let _ = read.body.collect::<Vec<_>>().await;
        store.blob_properties("files", "a").await.expect("props");
        store
            .snapshot_blob("files", "a", None)
            .await
            .expect("snapshot");
        store
            .delete_blob("files", "gone")
            .await
            .expect("delete blob");
        let etag = store
            .insert_entity("records", &Entity::new("p", "r").with("n", 1i64))
            .await
            .expect("insert");
        store
            .get_entity("records", "p", "r")
            .await
            .expect("get entity");
        let etag = store
            .batch(
                "records",
                "p",
                vec![
                    BatchOp::Update {
                        entity: Entity::new("p", "r").with("n", 2i64),
                        if_match: etag,
                    },
                    BatchOp::Insert(Entity::new("p", "t")),
                ],
            )
            .await
            .expect("batch")
            .remove(0)
            .expect("an update's ETag");
        store
            .query("records", &TableQuery::partition("p"))
            .await
            .expect("query");
        store
            .delete_entity("records", "p", "r", Some(&etag))
            .await
            .expect("delete entity");
        store
            .signed_read_url(&SignedUrlRequest {
                snapshot: None,
                container: "files",
                name: "a",
                expires_at: Utc::now() + Duration::hours(1),
                download_name: "a.txt",
            })
            .await
            .expect("sign");
        let second = std::time::Duration::from_secs(1);
        store.ensure_queue("work").await.expect("queue");
        store
            .enqueue("work", "m", std::time::Duration::ZERO)
            .await
            .expect("enqueue");
        let message = store
            .dequeue("work", 1, second)
            .await
            .expect("dequeue")
            .remove(0);
        let receipt = store
            .renew_message("work", &message.receipt, &message.text, second)
            .await
            .expect("renew");
        store
            .delete_message("work", &receipt)
            .await
            .expect("delete message");
        store.next_visible("work").await.expect("next visible");

        let counts = counter.snapshot();
        for op in Op::ALL
            .into_iter()
            .filter(|op| !matches!(op, Op::SignedReadUrl | Op::SignedWriteUrl))
        {
            assert_eq!(counts.requests(op), 1, "{op}");
            assert_eq!(counts.calls(op), 1, "{op}");
        }
        assert_eq!(counts.calls(Op::SignedReadUrl), 1);
        assert_eq!(counts.total(), 18);
        assert_eq!(counts.bytes_written, 10);
        assert_eq!(counts.bytes_read, 10);
    }

    #[tokio::test]
    async fn failed_calls_still_count_as_requests() {
        let dir = tempfile::tempdir().expect("temp dir");
        let counter = RequestCounter::new(BlobRequestModel::Calls);
        let store = counter.wrap(embedded(dir.path()));
        store.ensure_table("records").await.expect("table");

        let missing = store.get_entity("records", "p", "nobody").await;
        assert!(matches!(missing, Err(StoreError::NotFound)));
        let stale = store
            .batch(
                "records",
                "p",
                vec![BatchOp::Update {
                    entity: Entity::new("p", "nobody"),
                    if_match: ETag::new("W/\"0\""),
                }],
            )
            .await;
        assert!(stale.is_err());

        let counts = counter.snapshot();
        assert_eq!(counts.requests(Op::GetEntity), 1);
        assert_eq!(counts.requests(Op::Batch), 1);
    }

    #[tokio::test]
    async fn a_block_model_counts_blocks_commits_and_ranges() {
        let dir = tempfile::tempdir().expect("temp dir");
        let counter = RequestCounter::new(BlobRequestModel::Blocks {
            block_bytes: 1024,
            read_range_bytes: 1000,
        });
        let store = counter.wrap(embedded(dir.path()));
        store.ensure_container("files").await.expect("container");
        counter.reset();

        // 2.5 blocks: three Put Block and one Put Block List.
        store
            .put_blob("files", "big", body(vec![3; 2560], 700), &options())
            .await
            .expect("put big");
        assert_eq!(counter.take().requests(Op::PutBlob), 4);

        // Exactly one block: a single Put Blob.
        store
            .put_blob("files", "small", body(vec![3; 1024], 100), &options())
            .await
            .expect("put small");
        assert_eq!(counter.take().requests(Op::PutBlob), 1);

        // Properties, then ranges 0..1000, 1000..2000, 2000..2500 of the requested 0..2500.
        let read = store
            .get_blob("files", "big", Some(0..2500))
            .await
            .expect("get");
        let _ = read.body.collect::<Vec<_>>().await;
        let counts = counter.take();
        assert_eq!(counts.requests(Op::GetBlob), 4);
        assert_eq!(counts.calls(Op::GetBlob), 1);
        assert_eq!(counts.bytes_read, 2500);

        // A whole read of three ranges asks for the size; of two or one, the first range tells.
        let read = store.get_blob("files", "big", None).await.expect("get");
        let _ = read.body.collect::<Vec<_>>().await;
        assert_eq!(counter.take().requests(Op::GetBlob), 4);
        let read = store.get_blob("files", "small", None).await.expect("get");
        let _ = read.body.collect::<Vec<_>>().await;
        assert_eq!(counter.take().requests(Op::GetBlob), 2);
    }

    #[tokio::test]
    async fn a_refused_upload_counts_only_the_blocks_it_sent() {
        let dir = tempfile::tempdir().expect("temp dir");
        let counter = RequestCounter::new(BlobRequestModel::Blocks {
            block_bytes: 1024,
            read_range_bytes: 1024,
        });
        let store = counter.wrap(embedded(dir.path()));
        store.ensure_container("files").await.expect("container");
        counter.reset();

        let limited = PutBlobOptions {
            max_bytes: Some(2048),
            ..options()
        };
        let refused = store
            .put_blob("files", "x", body(vec![1; 4096], 512), &limited)
            .await;
        assert!(matches!(refused, Err(StoreError::Body(_))));
        let counts = counter.take();
        assert_eq!(counts.calls(Op::PutBlob), 1);
        // The store stops pulling once past the limit: at most the two full blocks went out.
        assert!(counts.requests(Op::PutBlob) <= 2, "{counts}");
    }

    #[tokio::test]
    async fn signing_a_link_is_no_request() {
        let dir = tempfile::tempdir().expect("temp dir");
        let counter = RequestCounter::new(BlobRequestModel::Calls);
        let store = counter.wrap(embedded(dir.path()));
        store.ensure_container("files").await.expect("container");
        counter.reset();

        store
            .signed_read_url(&SignedUrlRequest {
                snapshot: None,
                container: "files",
                name: "a",
                expires_at: Utc::now() + Duration::hours(1),
                download_name: "a.txt",
            })
            .await
            .expect("sign");
        let counts = counter.snapshot();
        assert_eq!(counts.total(), 0);
        assert_eq!(counts.calls(Op::SignedReadUrl), 1);
    }

    #[tokio::test]
    async fn take_starts_a_new_window_and_since_measures_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let counter = RequestCounter::new(BlobRequestModel::Calls);
        let store = counter.wrap(embedded(dir.path()));
        store.ensure_table("records").await.expect("table");

        let first = counter.take();
        assert_eq!(first.requests(Op::EnsureTable), 1);
        assert_eq!(counter.snapshot().total(), 0);

        let before = counter.snapshot();
        store
            .insert_entity("records", &Entity::new("p", "r"))
            .await
            .expect("insert");
        store
            .insert_entity("records", &Entity::new("p", "s"))
            .await
            .expect("insert");
        let window = counter.snapshot().since(&before);
        assert_eq!(window.requests(Op::Insert), 2);
        assert_eq!(window.total(), 2);
        assert_eq!(window.to_string(), "total 2: insert 2");
        assert_eq!(window.plus(&first).total(), 3);
    }
}
