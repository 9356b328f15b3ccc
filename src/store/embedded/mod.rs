//! The embedded backend: blobs as files under `<dir>/blobs/<container>/<name>`, tables (and the
//! blobs' properties) in one SQLite database, `<dir>/tables.sqlite3`.
//!
//! It exists so that the app runs with nothing else installed, and it keeps Table Storage's
//! concurrency rules exactly (unique ETag per write, conditional writes, all-or-nothing batches
//! in one partition, the same key and batch limits): a local run that allowed what Azure refuses
//! would hide the races the durable engine has to survive.
//!
//! One process owns a data directory at a time: the database is opened in SQLite's exclusive
//! locking mode, so a second process fails at [`EmbeddedStore::open`] instead of racing the
//! first over blob files. Within the process every database access goes through one connection
//! behind a mutex, on tokio's blocking pool; SQLite work here is short (one row, one page, one
//! batch of at most 100 rows), so a pool would buy nothing but contention on the file lock.
//!
//! Signed read URLs are HMAC-SHA256 capabilities served by the app itself
//! (`crate::functions::blobs`); see `signed`.

mod blobs;
mod blocks;
mod queues;
mod signed;
mod tables;

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, ErrorCode};

use crate::clock::{Clock, SystemClock};

// The shared blob-name rule keeps a blob one file inside its directory: no separator, no
// leading `.` (so never `.`, `..` or a `.tmp-*` file of a write in progress).
use super::{
    validate_batch, validate_blob_name, validate_container_name, validate_message,
    validate_queue_name, validate_reception, validate_renewal, validate_table_name, BatchOp,
    BlobAt, BlobProperties, BlobRead, ByteStream, ETag, Entity, MessageReceipt, NextVisible, Page,
    PutBlobOptions, ReceivedMessage, SignedUrlRequest, SignedWriteRequest, Snapshot, Storage,
    StoreError, StoreResult, StoredEntity, TableQuery,
};

pub use blocks::parse_block_list;
pub use signed::{ByteRangeSpec, SignedQuery, SignedRead, SignedUrlError};

/// Name of the database file inside the data directory.
const DATABASE_FILE: &str = "tables.sqlite3";
/// Name of the generated signing key inside the data directory.
const SIGNING_KEY_FILE: &str = "signing.key";
/// Name of the blob root inside the data directory.
const BLOBS_DIR: &str = "blobs";
/// Staged blocks of uploads sent in blocks, outside the containers.
const BLOCKS_DIR: &str = "blocks";

/// How to open an [`EmbeddedStore`].
#[derive(Clone)]
pub struct EmbeddedOptions {
    /// Where the app is reachable, e.g. `http://127.0.0.1:7071`; signed URLs start with it.
    pub public_base_url: String,
    /// The HMAC key for signed URLs. `None` reads `<dir>/signing.key`, creating it (32 random
    /// bytes, mode 0600) on first use, so links stay valid across restarts.
    pub signing_secret: Option<Vec<u8>>,
    /// The time queue messages become visible by (the app's clock, so tests can move it).
    pub clock: Arc<dyn Clock>,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            public_base_url: "http://127.0.0.1:7071".to_owned(),
            signing_secret: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl fmt::Debug for EmbeddedOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedOptions")
            .field("public_base_url", &self.public_base_url)
            .field(
                "signing_secret",
                &self.signing_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The on-disk store. Cheap to share behind an `Arc`; every method may be called concurrently.
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    clock: Arc<dyn Clock>,
    blobs_root: PathBuf,
    /// Staged blocks of uploads sent in blocks (`blocks.rs`).
    blocks_root: PathBuf,
    signer: signed::Signer,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("blobs_root", &self.inner.blobs_root)
            .finish_non_exhaustive()
    }
}

/// An upload link as a request presents it: the blob it names, its query, and the time to
/// check its expiry against.
#[derive(Debug, Clone, Copy)]
pub struct UploadLink<'a> {
    pub container: &'a str,
    pub name: &'a str,
    pub query: &'a SignedQuery,
    pub now: DateTime<Utc>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir`, finishing or undoing any blob write a
    /// crash interrupted. Blocks on disk I/O: call it at startup, not on a busy runtime.
    ///
    /// Errors: [`StoreError::Invalid`] for a bad `public_base_url` or signing key,
    /// [`StoreError::Unavailable`] when another process holds the directory.
    pub fn open(dir: &Path, options: EmbeddedOptions) -> StoreResult<EmbeddedStore> {
        let base_url = signed::parse_base_url(&options.public_base_url)?;
        let blobs_root = dir.join(BLOBS_DIR);
        std::fs::create_dir_all(&blobs_root).map_err(|e| io_error("create", &blobs_root, e))?;

        let mut conn = tables::open_database(&dir.join(DATABASE_FILE))?;
        // Only after the database lock is ours: two processes must never both generate a key
        // or sweep each other's temporary files.
        let secret = match options.signing_secret {
            Some(secret) => secret,
            None => signed::load_or_create_key(&dir.join(SIGNING_KEY_FILE))?,
        };
        let signer = signed::Signer::new(secret, base_url)?;
        blobs::recover(&mut conn, &blobs_root)?;
        let blocks_root = dir.join(BLOCKS_DIR);
        blocks::expire(&blocks_root);

        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                clock: options.clock,
                blobs_root,
                blocks_root,
                signer,
            }),
        })
    }

    /// Checks a signed link (signature first, in constant time, then expiry against `now`) and
    /// opens the blob it grants, optionally a byte range of it. A link is only good for the
    /// container and name it was minted for.
    pub async fn open_signed(
        &self,
        container: &str,
        name: &str,
        query: &SignedQuery,
        now: DateTime<Utc>,
        range: Option<ByteRangeSpec>,
    ) -> Result<SignedRead, SignedUrlError> {
        let content_disposition = self.inner.signer.verify(container, name, query, now)?;
        let blob = BlobAt {
            container,
            name,
            snapshot: query.snapshot.as_deref(),
        };
        let (properties, file) = self.open_blob_file(blob).await?;
        let range = match range {
            None => None,
            Some(spec) => Some(spec.resolve(properties.size).ok_or(
                SignedUrlError::RangeNotSatisfiable {
                    size: properties.size,
                },
            )?),
        };
        let body = blobs::stream_file(file, range.clone()).await?;
        Ok(SignedRead {
            read: BlobRead { properties, body },
            content_disposition,
            range,
        })
    }

    /// Checks an upload link (signature, then expiry against `now`) and writes `body` as the
    /// blob it grants, like [`Storage::put_blob`]: nothing is visible until the whole body has
    /// arrived within `max_bytes`.
    pub async fn write_signed(
        &self,
        link: &UploadLink<'_>,
        body: ByteStream,
        options: &PutBlobOptions,
    ) -> Result<BlobProperties, SignedUrlError> {
        self.verify_upload(link)?;
        Ok(self
            .put_blob(link.container, link.name, body, options)
            .await?)
    }

    fn verify_upload(&self, link: &UploadLink<'_>) -> Result<(), SignedUrlError> {
        self.inner
            .signer
            .verify_write(link.container, link.name, link.query, link.now)?;
        validate_container_name(link.container)?;
        validate_blob_name(link.name)?;
        Ok(())
    }

    /// Put Block through an upload link: stages block `block_id` of the blob the link grants
    /// (at most `max_bytes`).
    pub async fn stage_block_signed(
        &self,
        link: &UploadLink<'_>,
        block_id: &str,
        body: ByteStream,
        max_bytes: Option<u64>,
    ) -> Result<(), SignedUrlError> {
        self.verify_upload(link)?;
        Ok(blocks::stage(
            &self.inner.blocks_root,
            link.container,
            link.name,
            block_id,
            body,
            max_bytes,
        )
        .await?)
    }

    /// Put Block List through an upload link: the listed staged blocks, in order, become the
    /// blob (like [`Storage::put_blob`]: all or nothing), and the staged blocks are removed.
    pub async fn commit_blocks_signed(
        &self,
        link: &UploadLink<'_>,
        block_ids: &[String],
        options: &PutBlobOptions,
    ) -> Result<BlobProperties, SignedUrlError> {
        self.verify_upload(link)?;
        let (container, name) = (link.container, link.name);
        let body = blocks::concatenate(&self.inner.blocks_root, container, name, block_ids)?;
        let props = self.put_blob(container, name, body, options).await?;
        blocks::discard(&self.inner.blocks_root, container, name);
        Ok(props)
    }

    /// Runs `f` on the database connection, on the blocking pool.
    async fn with_db<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Path) -> StoreResult<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock can only have happened inside a rusqlite
            // transaction, which rolled back as it unwound: the connection is still sound.
            let mut conn = inner
                .conn
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut conn, &inner.blobs_root)
        })
        .await
        .map_err(StoreError::internal)?
    }

    /// The blob's properties and an open handle on exactly the file they describe.
    async fn open_blob_file(
        &self,
        blob: BlobAt<'_>,
    ) -> StoreResult<(BlobProperties, std::fs::File)> {
        let (container, name) = stored_name(blob)?;
        self.with_db(move |conn, root| blobs::open(conn, root, &container, &name))
            .await
    }
}

/// The container and the name a blob or snapshot is stored under, once both are checked.
fn stored_name(blob: BlobAt<'_>) -> StoreResult<(String, String)> {
    validate_container_name(blob.container)?;
    validate_blob_name(blob.name)?;
    let name = match blob.snapshot {
        None => blob.name.to_owned(),
        Some(snapshot) => {
            // Snapshot ids are times; anything else could step outside the container.
            let valid = !snapshot.is_empty()
                && snapshot.len() <= 40
                && snapshot
                    .bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b':' | b'.' | b'T' | b'Z'));
            if !valid {
                return Err(StoreError::Invalid(format!(
                    "{snapshot:?} is not a snapshot id"
                )));
            }
            blobs::snapshot_name(blob.name, snapshot)
        }
    };
    Ok((blob.container.to_owned(), name))
}

#[async_trait]
impl Storage for EmbeddedStore {
    fn backend_name(&self) -> &'static str {
        "embedded"
    }

    fn signed_url_origin(&self) -> String {
        self.inner.signer.origin()
    }

    async fn ensure_container(&self, container: &str) -> StoreResult<()> {
        validate_container_name(container)?;
        let dir = self.inner.blobs_root.join(container);
        let root = self.inner.blobs_root.clone();
        tokio::task::spawn_blocking(move || blobs::create_container_dir(&root, &dir))
            .await
            .map_err(StoreError::internal)?
    }

    async fn put_blob(
        &self,
        container: &str,
        name: &str,
        body: ByteStream,
        options: &PutBlobOptions,
    ) -> StoreResult<BlobProperties> {
        validate_container_name(container)?;
        validate_blob_name(name)?;
        let dir = self.inner.blobs_root.join(container);
        let staged = blobs::write_temp(&dir, body, options.max_bytes).await?;
        let (container, name) = (container.to_owned(), name.to_owned());
        let content_type = options.content_type.clone();
        self.with_db(move |conn, root| {
            blobs::commit(conn, root, &container, &name, &content_type, staged)
        })
        .await
    }

    async fn read_blob(
        &self,
        blob: BlobAt<'_>,
        range: Option<Range<u64>>,
    ) -> StoreResult<BlobRead> {
        if let Some(r) = &range {
            if r.start >= r.end {
                return Err(StoreError::Invalid(format!(
                    "the byte range {}..{} is empty",
                    r.start, r.end
                )));
            }
        }
        let (properties, file) = self.open_blob_file(blob).await?;
        let range = match range {
            None => None,
            Some(r) if r.start >= properties.size => {
                return Err(StoreError::Invalid(format!(
                    "the byte range starts at {} but the blob holds {} bytes",
                    r.start, properties.size
                )))
            }
            // Like Blob Storage, a range running past the end is cut at the end.
            Some(r) => Some(r.start..r.end.min(properties.size)),
        };
        let body = blobs::stream_file(file, range).await?;
        Ok(BlobRead { properties, body })
    }

    async fn properties_at(&self, blob: BlobAt<'_>) -> StoreResult<BlobProperties> {
        let (container, name) = stored_name(blob)?;
        self.with_db(move |conn, _| blobs::properties(conn, &container, &name))
            .await
    }

    async fn snapshot_blob(
        &self,
        container: &str,
        name: &str,
        if_match: Option<&ETag>,
    ) -> StoreResult<Snapshot> {
        validate_container_name(container)?;
        validate_blob_name(name)?;
        let (container, name) = (container.to_owned(), name.to_owned());
        let if_match = if_match.cloned();
        self.with_db(move |conn, root| {
            blobs::snapshot(conn, root, &container, &name, if_match.as_ref())
        })
        .await
    }

    async fn delete_blob(&self, container: &str, name: &str) -> StoreResult<()> {
        validate_container_name(container)?;
        validate_blob_name(name)?;
        let (container, name) = (container.to_owned(), name.to_owned());
        self.with_db(move |conn, root| blobs::delete(conn, root, &container, &name))
            .await
    }

    async fn signed_read_url(&self, request: &SignedUrlRequest<'_>) -> StoreResult<String> {
        validate_container_name(request.container)?;
        validate_blob_name(request.name)?;
        Ok(self.inner.signer.url(request))
    }

    async fn signed_write_url(&self, request: &SignedWriteRequest<'_>) -> StoreResult<String> {
        validate_container_name(request.container)?;
        validate_blob_name(request.name)?;
        Ok(self.inner.signer.write_url(request))
    }

    async fn ensure_table(&self, table: &str) -> StoreResult<()> {
        validate_table_name(table)?;
        let table = table.to_owned();
        self.with_db(move |conn, _| tables::ensure_table(conn, &table))
            .await
    }

    async fn get_entity(
        &self,
        table: &str,
        partition_key: &str,
        row_key: &str,
    ) -> StoreResult<StoredEntity> {
        validate_table_name(table)?;
        let (table, pk, rk) = (
            table.to_owned(),
            partition_key.to_owned(),
            row_key.to_owned(),
        );
        self.with_db(move |conn, _| tables::get_entity(conn, &table, &pk, &rk))
            .await
    }

    async fn insert_entity(&self, table: &str, entity: &Entity) -> StoreResult<ETag> {
        let op = BatchOp::Insert(entity.clone());
        self.write_one(table, &entity.partition_key, op).await
    }

    async fn delete_entity(
        &self,
        table: &str,
        partition_key: &str,
        row_key: &str,
        if_match: Option<&ETag>,
    ) -> StoreResult<()> {
        validate_table_name(table)?;
        let op = BatchOp::Delete {
            row_key: row_key.to_owned(),
            if_match: if_match.cloned(),
        };
        let (table, pk) = (table.to_owned(), partition_key.to_owned());
        self.with_db(move |conn, _| tables::write(conn, &table, &pk, &op).map(|_| ()))
            .await
    }

    async fn query(&self, table: &str, query: &TableQuery) -> StoreResult<Page> {
        validate_table_name(table)?;
        let (table, query) = (table.to_owned(), query.clone());
        self.with_db(move |conn, _| tables::query(conn, &table, &query))
            .await
    }

    async fn batch(
        &self,
        table: &str,
        partition_key: &str,
        operations: Vec<BatchOp>,
    ) -> StoreResult<Vec<Option<ETag>>> {
        validate_table_name(table)?;
        validate_batch(partition_key, &operations)?;
        let (table, pk) = (table.to_owned(), partition_key.to_owned());
        self.with_db(move |conn, _| tables::batch(conn, &table, &pk, &operations))
            .await
    }
    async fn ensure_queue(&self, queue: &str) -> StoreResult<()> {
        validate_queue_name(queue)?;
        let queue = queue.to_owned();
        self.with_db(move |conn, _| queues::ensure_queue(conn, &queue))
            .await
    }

    async fn enqueue(
        &self,
        queue: &str,
        text: &str,
        delay: std::time::Duration,
    ) -> StoreResult<MessageReceipt> {
        validate_queue_name(queue)?;
        validate_message(text, delay)?;
        let now = self.inner.clock.now();
        let visible_at = now + chrono::Duration::from_std(delay).map_err(StoreError::internal)?;
        let (queue, text) = (queue.to_owned(), text.to_owned());
        self.with_db(move |conn, _| queues::enqueue(conn, &queue, &text, now, visible_at))
            .await
    }

    async fn dequeue(
        &self,
        queue: &str,
        max: u32,
        visibility: std::time::Duration,
    ) -> StoreResult<Vec<ReceivedMessage>> {
        validate_queue_name(queue)?;
        validate_reception(max, visibility)?;
        let now = self.inner.clock.now();
        let hidden_until =
            now + chrono::Duration::from_std(visibility).map_err(StoreError::internal)?;
        let queue = queue.to_owned();
        self.with_db(move |conn, _| queues::dequeue(conn, &queue, max, now, hidden_until))
            .await
    }

    async fn renew_message(
        &self,
        queue: &str,
        receipt: &MessageReceipt,
        _text: &str,
        visibility: std::time::Duration,
    ) -> StoreResult<MessageReceipt> {
        validate_queue_name(queue)?;
        validate_renewal(visibility)?;
        let hidden_until = self.inner.clock.now()
            + chrono::Duration::from_std(visibility).map_err(StoreError::internal)?;
        let (queue, receipt) = (queue.to_owned(), receipt.clone());
        self.with_db(move |conn, _| queues::renew(conn, &queue, &receipt, hidden_until))
            .await
    }

    async fn delete_message(&self, queue: &str, receipt: &MessageReceipt) -> StoreResult<()> {
        validate_queue_name(queue)?;
        let (queue, receipt) = (queue.to_owned(), receipt.clone());
        self.with_db(move |conn, _| queues::delete(conn, &queue, &receipt))
            .await
    }

    async fn next_visible(&self, queue: &str) -> StoreResult<NextVisible> {
        validate_queue_name(queue)?;
        let queue = queue.to_owned();
        self.with_db(move |conn, _| queues::next_visible(conn, &queue))
            .await
    }
}

impl EmbeddedStore {
    /// A single entity write in its own transaction.
    async fn write_one(&self, table: &str, partition_key: &str, op: BatchOp) -> StoreResult<ETag> {
        validate_table_name(table)?;
        let (table, pk) = (table.to_owned(), partition_key.to_owned());
        let etag = self
            .with_db(move |conn, _| tables::write(conn, &table, &pk, &op))
            .await?;
        etag.ok_or_else(|| StoreError::internal("a write other than delete returned no ETag"))
    }
}

// ---------------------------------------------------------------------------------------------
// Error mapping
// ---------------------------------------------------------------------------------------------

/// An I/O failure with the path it happened on, so the log says which file.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {path}")]
struct IoFailure {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// A full disk is the local equivalent of a throttled service: callers may retry later.
fn io_error(action: &'static str, path: &Path, source: io::Error) -> StoreError {
    let full = matches!(
        source.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    );
    let failure = IoFailure {
        action,
        path: path.to_owned(),
        source,
    };
    if full {
        StoreError::Full(Box::new(failure))
    } else {
        StoreError::internal(failure)
    }
}

/// A busy database clears up; a full disk needs an operator; anything else is a bug or
/// corruption.
fn sql_error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::unavailable(e),
        Some(ErrorCode::DiskFull) => StoreError::Full(Box::new(e)),
        _ => StoreError::internal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_full_not_a_retry_later() {
        for kind in [io::ErrorKind::StorageFull, io::ErrorKind::QuotaExceeded] {
            let e = io_error("write", Path::new("/data/x"), io::Error::from(kind));
            assert!(matches!(e, StoreError::Full(_)), "{kind:?}: {e:?}");
        }
        let sqlite_full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        assert!(matches!(sql_error(sqlite_full), StoreError::Full(_)));
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(sql_error(busy).is_transient());
    }

    #[test]
    fn blob_names_cannot_leave_their_directory() {
        for ok in ["3f1c0e1e-7d5c-4b8e-9a39-0c5d2b1f6a11", "report.pdf", "a..b"] {
            assert!(validate_blob_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a\\b",
            ".tmp-1",
            "a\nb",
            &"a".repeat(256),
        ] {
            assert!(
                matches!(validate_blob_name(bad), Err(StoreError::Invalid(_))),
                "{bad:?}"
            );
        }
    }
}
