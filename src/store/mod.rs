//! The storage layer: one narrow trait, [`Storage`], for exactly what File Approver needs from
//! Blob Storage and Table Storage, and one module per backend.
//!
//! - [`azure`]: Azure Blob, Queue and Table Storage (Azurite locally and in CI) through the
//!   official Azure SDK for Rust and a thin Tables client of our own on its pipeline. Nothing
//!   outside `store::azure` may name one of the SDK's types, so an SDK upgrade stays there.
//! - [`embedded`]: a real on-disk store (files for blobs, SQLite for tables) with the same
//!   ETag and batch rules as Table Storage, so local runs do not hide races.
//!
//! Every backend maps its failures into [`StoreError`], whose variants mean the same thing
//! everywhere. The conformance suite in `conformance` is run against every backend.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;

pub mod azure;
pub mod budget;
pub mod embedded;
pub mod layer;

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

/// The blob container holding every file uploaded through the API (blob name = file id).
pub const FILES_CONTAINER: &str = "files";

/// The blob container that files uploaded straight to storage, through an upload URL, land in
/// (blob name = file id). The blob trigger watches [`FILES_CONTAINER`] only: the host never
/// loads these into memory.
pub const UPLOADS_CONTAINER: &str = "uploads";

/// Where a blocked file's bytes are moved when the deployment keeps them
/// (`FILE_APPROVER_BLOCKED_FILES=quarantine`), under the file's id. Nothing in the app reads
/// it: it is for the security team, with the storage account's own access.
pub const QUARANTINE_CONTAINER: &str = "quarantine";

/// The blob container new versions are written to (`{id}-v{n}`), when a reviewer asked for
/// changes. No trigger watches it: the version's own request hands it to the workflow.
pub const VERSIONS_CONTAINER: &str = "versions";

/// Errors that can be the cause of another error (`#[source]`), boxed so they cross layers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A stream of byte chunks: request bodies going in, blob contents coming out.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send + 'static>>;

/// Azure Table Storage's limits on one entity group transaction.
pub const MAX_BATCH_OPERATIONS: usize = 100;
/// 4 MiB is the service's limit on a batch's request body.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// What went wrong, in terms that mean the same on every backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The blob, entity, container or table does not exist.
    #[error("not found")]
    NotFound,
    /// An insert met an entity (or blob) that is already there.
    #[error("already exists")]
    AlreadyExists,
    /// A conditional write met a different ETag: someone else wrote first.
    #[error("precondition failed: the ETag no longer matches")]
    PreconditionFailed,
    /// The storage service is down, timing out or throttling. Callers may retry; the HTTP
    /// edge answers 503 with `Retry-After`.
    #[error("storage unavailable")]
    Unavailable(#[source] BoxError),
    /// The request breaks a rule of the store (a batch over 100 operations or across
    /// partitions, a key with forbidden characters, an oversized property).
    #[error("invalid storage request: {0}")]
    Invalid(String),
    /// The store has no room left (a full disk). Retrying will not help until an operator
    /// frees space; the HTTP edge answers 507.
    #[error("storage is full")]
    Full(#[source] BoxError),
    /// The byte stream being written failed (client disconnected, body over its limit).
    /// Nothing was committed.
    #[error("the source stream failed")]
    Body(#[source] BoxError),
    /// Anything else: a bug, corrupt data, an unexpected answer from the service.
    #[error("storage failure")]
    Internal(#[source] BoxError),
}

impl StoreError {
    pub fn internal(e: impl Into<BoxError>) -> Self {
        StoreError::Internal(e.into())
    }
    pub fn unavailable(e: impl Into<BoxError>) -> Self {
        StoreError::Unavailable(e.into())
    }
    /// True when trying the same operation again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// An opaque entity or blob version. Pass it back exactly as received.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ETag(String);

impl ETag {
    pub fn new(s: impl Into<String>) -> Self {
        ETag(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ETag({})", self.0)
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Blobs
// ---------------------------------------------------------------------------------------------

/// What a blob write needs besides its bytes.
#[derive(Debug, Clone)]
pub struct PutBlobOptions {
    pub content_type: String,
    /// Refuse (with [`StoreError::Body`] wrapping [`BodyTooLarge`]) once more bytes than this
    /// arrive; nothing is committed.
    pub max_bytes: Option<u64>,
}

/// Raised inside [`StoreError::Body`] when a stream exceeds [`PutBlobOptions::max_bytes`].
#[derive(Debug, thiserror::Error)]
#[error("the body exceeds {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

/// The largest blob written in one piece, and so the largest with a Content-MD5: the Azure
/// backend's default block size, above which it uploads in blocks.
pub const CONTENT_MD5_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// A blob's system properties.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobProperties {
    pub size: u64,
    pub content_type: String,
    /// The MD5 of the whole content, for a blob written in one piece of at most
    /// [`CONTENT_MD5_MAX_BYTES`]; `None` for a larger one. Azure computes Content-MD5 only for
    /// a single Put Blob, and hashing every byte of a large upload would hold it to MD5's
    /// speed, which has no hardware help (the SHA-256 of the analysis is the file's checksum).
    pub content_md5: Option<[u8; 16]>,
    pub etag: ETag,
    pub last_modified: DateTime<Utc>,
}

/// One blob as it is now, or one of its snapshots: the read-only copy of its bytes at an
/// instant, which later writes to the blob never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobAt<'a> {
    pub container: &'a str,
    pub name: &'a str,
    /// The snapshot's id, as [`Storage::snapshot_blob`] returned it; `None` for the blob as
    /// it is now.
    pub snapshot: Option<&'a str>,
}

impl<'a> BlobAt<'a> {
    /// The blob as it is now.
    pub fn current(container: &'a str, name: &'a str) -> Self {
        BlobAt {
            container,
            name,
            snapshot: None,
        }
    }
}

/// A snapshot just taken: its id, and the version of the blob it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub id: String,
    pub etag: ETag,
}

/// A read-only link to one blob that anyone holding it may fetch until it expires.
#[derive(Debug, Clone)]
pub struct SignedUrlRequest<'a> {
    pub container: &'a str,
    pub name: &'a str,
    /// The link reads this snapshot of the blob, not the blob as it is when fetched.
    pub snapshot: Option<&'a str>,
    pub expires_at: DateTime<Utc>,
    /// The browser saves the download under this name (`Content-Disposition: attachment`).
    pub download_name: &'a str,
}

/// A link that lets anyone holding it create or replace one blob until it expires, and do
/// nothing else (no read, no delete, no list): a single `PUT` with `x-ms-blob-type: BlockBlob`
/// (on Azure also Put Block and Put Block List, what the SDKs and AzCopy send for large files).
#[derive(Debug, Clone)]
pub struct SignedWriteRequest<'a> {
    pub container: &'a str,
    pub name: &'a str,
    pub expires_at: DateTime<Utc>,
}

/// A blob's content as a stream, with its properties (`content_md5` may be absent from a
/// read: Azure returns it only with the properties).
pub struct BlobRead {
    pub properties: BlobProperties,
    pub body: ByteStream,
}

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

/// One property value. Table Storage types are narrower than JSON; these four cover the app.
#[derive(Debug, Clone, PartialEq)]
pub enum Prop {
    Str(String),
    /// Stored as `Edm.Int64` on Azure.
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Prop {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Prop::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Prop::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Prop::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

impl From<&str> for Prop {
    fn from(s: &str) -> Self {
        Prop::Str(s.to_owned())
    }
}
impl From<String> for Prop {
    fn from(s: String) -> Self {
        Prop::Str(s)
    }
}
impl From<i64> for Prop {
    fn from(i: i64) -> Self {
        Prop::Int(i)
    }
}
impl From<bool> for Prop {
    fn from(b: bool) -> Self {
        Prop::Bool(b)
    }
}

/// A table row. Keys follow Table Storage rules: no `/ \ # ?`, no control characters.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub partition_key: String,
    pub row_key: String,
    pub props: BTreeMap<String, Prop>,
}

impl Entity {
    pub fn new(partition_key: impl Into<String>, row_key: impl Into<String>) -> Self {
        Entity {
            partition_key: partition_key.into(),
            row_key: row_key.into(),
            props: BTreeMap::new(),
        }
    }
    pub fn with(mut self, name: &str, value: impl Into<Prop>) -> Self {
        self.props.insert(name.to_owned(), value.into());
        self
    }
    pub fn str(&self, name: &str) -> Option<&str> {
        self.props.get(name).and_then(Prop::as_str)
    }
    pub fn i64(&self, name: &str) -> Option<i64> {
        self.props.get(name).and_then(Prop::as_i64)
    }
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.props.get(name).and_then(Prop::as_bool)
    }
}

/// An entity as read back, with the ETag that guards its next conditional write.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEntity {
    pub entity: Entity,
    pub etag: ETag,
}

/// One operation of an entity group transaction. All operations of a batch share the
/// partition key given to [`Storage::batch`].
#[derive(Debug, Clone)]
pub enum BatchOp {
    /// Fails the batch with [`StoreError::AlreadyExists`] if the row exists.
    Insert(Entity),
    /// Replace; fails the batch with [`StoreError::PreconditionFailed`] on a stale ETag and
    /// [`StoreError::NotFound`] when the row is gone.
    Update { entity: Entity, if_match: ETag },
    /// Delete the row; `if_match: None` means whatever its version.
    Delete {
        row_key: String,
        if_match: Option<ETag>,
    },
}

impl BatchOp {
    /// The entity this operation writes; `None` for a delete, which names only its row.
    pub fn entity(&self) -> Option<&Entity> {
        match self {
            BatchOp::Insert(entity) | BatchOp::Update { entity, .. } => Some(entity),
            BatchOp::Delete { .. } => None,
        }
    }

    /// The row this operation touches.
    pub fn row_key(&self) -> &str {
        match self {
            BatchOp::Insert(entity) | BatchOp::Update { entity, .. } => &entity.row_key,
            BatchOp::Delete { row_key, .. } => row_key,
        }
    }
}

/// Which rows a query returns: always rows of one partition, so no query scans a table (on
/// Table Storage a scan costs a request per 1,000 rows read, whatever it returns). Results
/// come back in RowKey order.
#[derive(Debug, Clone)]
pub struct TableQuery {
    pub partition_key: String,
    /// Row keys in this half-open range only.
    pub row_keys: Option<Range<String>>,
    /// Only rows with all of these property values (string or bool equality).
    pub equals: Vec<(String, Prop)>,
    /// Page size; backends cap it at 1000 (Table Storage's page limit).
    pub top: Option<u32>,
    /// From a previous [`Page::continuation`].
    pub continuation: Option<String>,
}

impl TableQuery {
    /// Every row of `partition_key`, in pages of up to 1,000.
    pub fn partition(partition_key: impl Into<String>) -> Self {
        TableQuery {
            partition_key: partition_key.into(),
            row_keys: None,
            equals: Vec::new(),
            top: None,
            continuation: None,
        }
    }
}

/// One page of a query.
#[derive(Debug, Clone)]
pub struct Page {
    pub entities: Vec<StoredEntity>,
    /// Present when more rows may follow; pass it back in [`TableQuery::continuation`].
    pub continuation: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Queues
// ---------------------------------------------------------------------------------------------

/// Azure Queue Storage's limit on one message's text (the app's messages carry ids, not data).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// The longest a message can be kept invisible, when sent or received: 7 days.
pub const MAX_VISIBILITY: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// A received message. Its `receipt` deletes it (or renews its invisibility) until it is
/// received again by someone else.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedMessage {
    pub text: String,
    /// How many times it has been received, this time included.
    pub dequeue_count: u32,
    pub inserted: DateTime<Utc>,
    pub receipt: MessageReceipt,
}

/// Names one reception of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageReceipt {
    pub id: String,
    pub pop_receipt: String,
}

/// When the next message of a queue becomes visible, as far as the backend can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextVisible {
    /// The queue holds no message at all.
    Empty,
    /// The earliest invisible or visible message's time (now or earlier: visible already).
    At(DateTime<Utc>),
    /// The backend cannot say (Azure Queue Storage shows only visible messages).
    Unknown,
}

// ---------------------------------------------------------------------------------------------
// The trait
// ---------------------------------------------------------------------------------------------

/// Everything File Approver asks of storage.
///
/// Every method is safe to call concurrently from many tasks and many processes; the
/// conditional writes and batches are the only coordination between them.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// A short name for logs and benchmark tables (`embedded`, `azure`).
    fn backend_name(&self) -> &'static str;

    /// The origin (`scheme://host[:port]`) that signed URLs point at: a browser page that sends
    /// bytes to an upload URL must be allowed to connect there (its Content-Security-Policy).
    fn signed_url_origin(&self) -> String;

    /// Creates the container if missing. Idempotent.
    async fn ensure_container(&self, container: &str) -> StoreResult<()>;

    /// Writes a block blob from `body`, in blocks, holding at most a few blocks in memory.
    /// Replaces any blob of that name. Nothing is visible under `name` until the whole stream
    /// has been read and committed: a stream error or an exceeded `max_bytes` returns
    /// [`StoreError::Body`] and leaves no blob (and no change to an older one).
    async fn put_blob(
        &self,
        container: &str,
        name: &str,
        body: ByteStream,
        options: &PutBlobOptions,
    ) -> StoreResult<BlobProperties>;

    /// Reads a blob or one of its snapshots as a stream, all of it or `range` (byte offsets,
    /// end exclusive). Errors: [`StoreError::NotFound`].
    async fn read_blob(&self, blob: BlobAt<'_>, range: Option<Range<u64>>)
        -> StoreResult<BlobRead>;

    /// Reads a blob as it is now; see [`Storage::read_blob`].
    async fn get_blob(
        &self,
        container: &str,
        name: &str,
        range: Option<Range<u64>>,
    ) -> StoreResult<BlobRead> {
        self.read_blob(BlobAt::current(container, name), range)
            .await
    }

    /// A blob's or a snapshot's properties. Errors: [`StoreError::NotFound`].
    async fn properties_at(&self, blob: BlobAt<'_>) -> StoreResult<BlobProperties>;

    /// Errors: [`StoreError::NotFound`].
    async fn blob_properties(&self, container: &str, name: &str) -> StoreResult<BlobProperties> {
        self.properties_at(BlobAt::current(container, name)).await
    }

    /// Takes a read-only snapshot of a blob: O(1), no copy of the bytes. With `if_match`, only
    /// of that version ([`StoreError::PreconditionFailed`] otherwise). Errors:
    /// [`StoreError::NotFound`].
    async fn snapshot_blob(
        &self,
        container: &str,
        name: &str,
        if_match: Option<&ETag>,
    ) -> StoreResult<Snapshot>;

    /// Deletes a blob and its snapshots. Idempotent: a blob that is not there is already
    /// deleted.
    async fn delete_blob(&self, container: &str, name: &str) -> StoreResult<()>;

    /// A read-only URL for exactly one blob, valid until `expires_at`, that makes a browser save
    /// the file under `download_name`. Signed locally; under a managed identity the signing key
    /// (a user-delegation key) is fetched from the service now and then, so this may wait on it.
    async fn signed_read_url(&self, request: &SignedUrlRequest<'_>) -> StoreResult<String>;

    /// A create/write-only URL for exactly one blob, valid until `expires_at` (see
    /// [`SignedWriteRequest`]). Signed like [`Storage::signed_read_url`].
    async fn signed_write_url(&self, request: &SignedWriteRequest<'_>) -> StoreResult<String>;

    /// Creates the table if missing. Idempotent.
    async fn ensure_table(&self, table: &str) -> StoreResult<()>;

    /// Errors: [`StoreError::NotFound`].
    async fn get_entity(
        &self,
        table: &str,
        partition_key: &str,
        row_key: &str,
    ) -> StoreResult<StoredEntity>;

    /// Errors: [`StoreError::AlreadyExists`].
    async fn insert_entity(&self, table: &str, entity: &Entity) -> StoreResult<ETag>;

    /// Errors: [`StoreError::NotFound`], [`StoreError::PreconditionFailed`].
    async fn delete_entity(
        &self,
        table: &str,
        partition_key: &str,
        row_key: &str,
        if_match: Option<&ETag>,
    ) -> StoreResult<()>;

    /// One page of rows matching `query`.
    async fn query(&self, table: &str, query: &TableQuery) -> StoreResult<Page>;

    /// Creates the queue if missing. Idempotent.
    async fn ensure_queue(&self, queue: &str) -> StoreResult<()>;

    /// Adds a message that becomes visible after `delay` (at most [`MAX_VISIBILITY`]) and never
    /// expires. Errors: [`StoreError::Invalid`] for a text over [`MAX_MESSAGE_BYTES`] or a
    /// longer delay; [`StoreError::NotFound`] for a missing queue.
    async fn enqueue(
        &self,
        queue: &str,
        text: &str,
        delay: std::time::Duration,
    ) -> StoreResult<MessageReceipt>;

    /// Receives up to `max` (1 to 32) visible messages, hiding each for `visibility`; each
    /// reception counts in `dequeue_count` and issues a new receipt. Oldest first as far as the
    /// backend keeps order (delivery is at least once and unordered in general).
    async fn dequeue(
        &self,
        queue: &str,
        max: u32,
        visibility: std::time::Duration,
    ) -> StoreResult<Vec<ReceivedMessage>>;

    /// Keeps a received message hidden for `visibility` from now (a worker still busy with
    /// it); `text` is its text, which Azure rewrites with it. Returns the receipt that replaces
    /// `receipt`. Errors: [`StoreError::NotFound`] when the receipt is stale (the message was
    /// received again, or deleted).
    async fn renew_message(
        &self,
        queue: &str,
        receipt: &MessageReceipt,
        text: &str,
        visibility: std::time::Duration,
    ) -> StoreResult<MessageReceipt>;

    /// Deletes a received message. Errors: [`StoreError::NotFound`] when the receipt is stale.
    async fn delete_message(&self, queue: &str, receipt: &MessageReceipt) -> StoreResult<()>;

    /// When the queue's next message becomes visible: what a worker that must not poll sleeps
    /// until.
    async fn next_visible(&self, queue: &str) -> StoreResult<NextVisible>;

    /// An entity group transaction: all of `operations` apply, or none does. Returns the new
    /// ETag of each operation's row (`None` for deletes), in order.
    ///
    /// Refused before anything is sent ([`StoreError::Invalid`]) when it holds no operation,
    /// more than [`MAX_BATCH_OPERATIONS`], an entity of another partition, or the same row
    /// twice. The first failing operation's error is returned
    /// ([`StoreError::AlreadyExists`], [`StoreError::PreconditionFailed`],
    /// [`StoreError::NotFound`]).
    async fn batch(
        &self,
        table: &str,
        partition_key: &str,
        operations: Vec<BatchOp>,
    ) -> StoreResult<Vec<Option<ETag>>>;
}

/// A batch over one entity group transaction's limits: [`MAX_BATCH_OPERATIONS`] operations,
/// [`MAX_BATCH_BYTES`] of request body (estimated by [`entity_size`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a batch holds at most {MAX_BATCH_OPERATIONS} operations and {MAX_BATCH_BYTES} bytes; this one has {operations} and about {bytes}")]
pub struct BatchTooLarge {
    pub operations: usize,
    pub bytes: usize,
}

/// The one check of a batch's size, for callers that must know before building the batch
/// (the engine refuses such a turn with its own error) and for [`validate_batch`].
pub fn check_batch_size(operations: &[BatchOp]) -> Result<(), BatchTooLarge> {
    let bytes = operations
        .iter()
        .map(|op| op.entity().map_or(BATCH_OPERATION_OVERHEAD, entity_size))
        .sum();
    if operations.len() > MAX_BATCH_OPERATIONS || bytes > MAX_BATCH_BYTES {
        return Err(BatchTooLarge {
            operations: operations.len(),
            bytes,
        });
    }
    Ok(())
}

/// What one operation adds to a batch body besides its entity: the MIME part's headers.
const BATCH_OPERATION_OVERHEAD: usize = 1024;

/// A rough upper bound of a row's size in a request body.
pub fn entity_size(entity: &Entity) -> usize {
    const OVERHEAD_PER_PROPERTY: usize = 64;
    let props: usize = entity
        .props
        .iter()
        .map(|(k, v)| {
            k.len()
                + OVERHEAD_PER_PROPERTY
                + match v {
                    // JSON escaping can double a string at worst.
                    Prop::Str(s) => s.len() * 2,
                    _ => 24,
                }
        })
        .sum();
    BATCH_OPERATION_OVERHEAD + entity.partition_key.len() + entity.row_key.len() + props
}

/// Checks shared by every backend before a batch is sent, so that a batch Azure would refuse
/// is refused everywhere (Azurite accepts cross-partition batches).
pub fn validate_batch(partition_key: &str, operations: &[BatchOp]) -> StoreResult<()> {
    if operations.is_empty() {
        return Err(StoreError::Invalid(
            "a batch needs at least one operation".into(),
        ));
    }
    check_batch_size(operations).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let mut seen = std::collections::HashSet::new();
    for op in operations {
        // A delete names only its row: it is in the batch's partition by construction.
        let pk = op
            .entity()
            .map_or(partition_key, |e| e.partition_key.as_str());
        let rk = op.row_key();
        if pk != partition_key {
            return Err(StoreError::Invalid(format!(
                "a batch spans one partition; {pk:?} is not {partition_key:?}"
            )));
        }
        validate_key(pk)?;
        validate_key(rk)?;
        if !seen.insert(rk) {
            return Err(StoreError::Invalid(format!(
                "row {rk:?} appears twice in one batch"
            )));
        }
    }
    Ok(())
}

/// Table Storage forbids these in PartitionKey and RowKey; the embedded store enforces the same.
pub fn validate_key(key: &str) -> StoreResult<()> {
    if key.len() > 1024 {
        return Err(StoreError::Invalid("a key is at most 1 KiB".into()));
    }
    if key
        .chars()
        .any(|c| matches!(c, '/' | '\\' | '#' | '?') || c.is_control())
    {
        return Err(StoreError::Invalid(format!(
            "key {key:?} holds a character Table Storage forbids"
        )));
    }
    Ok(())
}

/// The one blob-name rule of every backend: 1 to 255 bytes, no `/` or `\\`, no control
/// characters, no leading `.`. Azure would take `/` (virtual folders), the embedded store could
/// not (a name is one file), and the app only ever names blobs by file id, so both refuse it.
pub fn validate_blob_name(name: &str) -> StoreResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "blob name {name:?} must be 1-255 bytes without '/', '\\', control characters \
             or a leading '.'"
        )))
    }
}

/// Blob Storage's container rule: 3 to 63 of `a-z 0-9 -`, starting and ending with a letter or
/// digit, no `--`. Checked before any request, so that a bad name is `Invalid` everywhere rather
/// than a confusing 400 from the service (or, on disk, a path outside the blob root: the rule
/// alone keeps the name a single, harmless path component).
pub fn validate_container_name(name: &str) -> StoreResult<()> {
    if crate::domain::valid_storage_name(name) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "container name {name:?} must be 3-63 lowercase letters, digits and single hyphens"
        )))
    }
}

/// Queue Storage's name rule is Blob Storage's container rule: 3 to 63 of `a-z 0-9 -`.
pub fn validate_queue_name(name: &str) -> StoreResult<()> {
    validate_container_name(name).map_err(|_| {
        StoreError::Invalid(format!(
            "queue name {name:?} must be 3-63 lowercase letters, digits and single hyphens"
        ))
    })
}

/// The checks shared by every backend before a message is sent.
pub fn validate_message(text: &str, delay: std::time::Duration) -> StoreResult<()> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(StoreError::Invalid(format!(
            "a queue message is at most {MAX_MESSAGE_BYTES} bytes, not {}",
            text.len()
        )));
    }
    if delay > MAX_VISIBILITY {
        return Err(StoreError::Invalid(format!(
            "a message can be hidden for at most 7 days, not {delay:?}"
        )));
    }
    Ok(())
}

/// The checks shared by every backend before messages are received: Azure takes 1 to 32 at a
/// time and hides them for at most 7 days.
pub fn validate_reception(max: u32, visibility: std::time::Duration) -> StoreResult<()> {
    if !(1..=32).contains(&max) {
        return Err(StoreError::Invalid(format!(
            "1 to 32 messages are received at a time, not {max}"
        )));
    }
    if visibility > MAX_VISIBILITY || visibility.is_zero() {
        return Err(StoreError::Invalid(format!(
            "a received message is hidden for 1 s to 7 days, not {visibility:?}"
        )));
    }
    Ok(())
}

/// Queue Storage's rule for how long a renewed (updated) message stays hidden: 0 (it shows at
/// once, as the Functions host releases a failed message by default) to 7 days.
pub fn validate_renewal(visibility: std::time::Duration) -> StoreResult<()> {
    if visibility > MAX_VISIBILITY {
        return Err(StoreError::Invalid(format!(
            "a renewed message is hidden for 0 s to 7 days, not {visibility:?}"
        )));
    }
    Ok(())
}

/// Table Storage's rule: 3 to 63 ASCII letters and digits, starting with a letter; `tables` is
/// reserved. Table names are case-insensitive there, and in the embedded store too.
pub fn validate_table_name(name: &str) -> StoreResult<()> {
    let ok = (3..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric())
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && !name.eq_ignore_ascii_case("tables");
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "table name {name:?} must be 3-63 letters and digits, starting with a letter"
        )))
    }
}

/// RFC 5987 `attr-char`: what may appear unencoded in `filename*=UTF-8''…`.
const ATTR_CHAR: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// The `Content-Disposition` every backend's read link carries:
/// `attachment; filename="<ASCII fallback>"; filename*=UTF-8''<percent-encoded UTF-8>`
/// (RFC 6266, RFC 5987). Blobs are named by UUID, so this is how the browser learns the user's
/// file name. Control characters are dropped; in the fallback, which serves old clients,
/// non-ASCII, quotes and backslashes become `_`, so the quoted string cannot be broken out of.
/// An empty name becomes `download`.
pub fn attachment_disposition(download_name: &str) -> String {
    let cleaned: String = download_name.chars().filter(|c| !c.is_control()).collect();
    let cleaned = if cleaned.trim().is_empty() {
        "download".to_owned()
    } else {
        cleaned
    };
    let fallback: String = cleaned
        .chars()
        .map(|c| {
            if c.is_ascii() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = percent_encoding::utf8_percent_encode(&cleaned, ATTR_CHAR);
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_follow_blob_storage_rules() {
        for ok in [
            "files",
            "abc",
            "a-b-c",
            "test-1a2b",
            "conf-0123456789abcdef",
        ] {
            assert!(validate_container_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "Files",
            "-abc",
            "abc-",
            "a--b",
            "a_b",
            "a/b",
            "..",
            "a.b",
            "fïles",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(validate_container_name(bad), Err(StoreError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn table_names_follow_table_storage_rules() {
        for ok in ["abc", "Workflow", "workflow123", "t0123456789"] {
            assert!(validate_table_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "1abc",
            "a-bc",
            "a_bc",
            "tables",
            "Tables",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(validate_table_name(bad), Err(StoreError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_plain_download_name_is_quoted_and_encoded() {
        assert_eq!(
            attachment_disposition("report.pdf"),
            "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
        );
    }

    #[test]
    fn a_non_ascii_download_name_falls_back_and_is_percent_encoded() {
        assert_eq!(
            attachment_disposition("Übersicht 2024.xlsx"),
            "attachment; filename=\"_bersicht 2024.xlsx\"; \
             filename*=UTF-8''%C3%9Cbersicht%202024.xlsx"
        );
    }

    #[test]
    fn quotes_and_control_characters_cannot_break_the_disposition() {
        assert_eq!(
            attachment_disposition("a\"b\\c\r\nd.txt"),
            "attachment; filename=\"a_b_cd.txt\"; filename*=UTF-8''a%22b%5Ccd.txt"
        );
    }

    #[test]
    fn an_empty_download_name_becomes_download() {
        assert!(attachment_disposition("\n").contains("filename=\"download\""));
    }
}
