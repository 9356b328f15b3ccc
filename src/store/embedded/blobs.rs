//! Blobs as files, their properties as rows of the `blobs` table.
//!
//! # Writes, and what a crash can leave
//!
//! A write streams into `<container>/.tmp-<uuid>` (MD5 and size counted on the way, the file
//! fsynced), then commits under the database mutex in three steps:
//!
//! 1. an *intent* row in `pending_blobs` (the new properties and the temporary file's name) is
//!    committed;
//! 2. the temporary file is renamed over `<container>/<name>` and the directory fsynced: **this
//!    rename is the commit point** of the write;
//! 3. the intent is applied to `blobs` and deleted, in one transaction.
//!
//! Readers take the same mutex to read a row *and* open its file, so in a live process they
//! never see the file of one version with the properties of another (an open handle keeps
//! reading its version even after a later rename replaces the name).
//!
//! After a crash, [`recover`] (run by `open`) looks at every intent left behind:
//! - its temporary file still exists: the rename never happened, so the write never did; the
//!   temporary file and the intent are dropped and the older blob (file and row) stands;
//! - its temporary file is gone: the rename happened; the intent's properties are applied.
//!
//! So properties and file always describe the same version, the one the rename made visible.
//! A delete commits the row's removal first and unlinks the file second: a crash in between
//! leaves a file without a row, which no read can reach and [`recover`] removes, together with
//! any `.tmp-*` file of a write that never reached step 1.

use std::fs;
use std::io::SeekFrom;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use md5::{Digest, Md5};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::io::AsyncSeekExt;
use tokio_util::io::ReaderStream;

use super::{io_error, sql_error, tables::next_seq};
use crate::store::{
    BlobProperties, BodyTooLarge, ByteStream, ETag, Snapshot, StoreError, StoreResult,
    CONTENT_MD5_MAX_BYTES,
};

/// Prefix of the files of writes in progress. Blob names cannot start with `.`.
const TMP_PREFIX: &str = ".tmp-";
/// Bytes gathered before each write to disk, and read per chunk when streaming out.
const IO_CHUNK: usize = 256 * 1024;

/// A temporary file that removes itself unless the write it belongs to got renamed into place,
/// so a failed, refused or cancelled upload leaves nothing behind.
pub(super) struct Staged {
    path: PathBuf,
    size: u64,
    md5: Option<[u8; 16]>,
    committed: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            // A blocking unlink, even on the async side: it is one small syscall, and a
            // cancelled request has nowhere else to run it.
            if let Err(e) = fs::remove_file(&self.path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.path.display(), error = %e,
                        "could not remove an abandoned temporary blob file");
                }
            }
        }
    }
}

impl Staged {
    /// Keeps the written file under `target` (a staged block: no row, no intent).
    pub(super) fn persist_as(mut self, target: &Path) -> StoreResult<()> {
        fs::rename(&self.path, target).map_err(|e| io_error("rename into", target, e))?;
        self.committed = true;
        Ok(())
    }
}

pub(super) fn create_container_dir(root: &Path, dir: &Path) -> StoreResult<()> {
    match fs::create_dir(dir) {
        Ok(()) => sync_dir(root),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_error("create", dir, e)),
    }
}

/// Streams `body` into a fresh temporary file in `dir`, holding at most one chunk in memory.
pub(super) async fn write_temp(
    dir: &Path,
    mut body: ByteStream,
    max_bytes: Option<u64>,
) -> StoreResult<Staged> {
    let path = dir.join(format!("{TMP_PREFIX}{}", uuid::Uuid::new_v4()));
    let file = match tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .await
    {
        Ok(file) => file,
        // A fresh name can only be missing its directory: the container does not exist.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::NotFound),
        Err(e) => return Err(io_error("create", &path, e)),
    };
    let mut staged = Staged {
        path,
        size: 0,
        md5: None,
        committed: false,
    };
    // The file writes (and the MD5 of a small blob) run on a blocking thread while this task
    // receives the next chunks. The MD5 stops once the body outgrows one piece
    // (`CONTENT_MD5_MAX_BYTES`), as Azure keeps none for a blob sent in blocks: hashing every
    // byte held large uploads to MD5's speed (profiled: 70% of an upload's time). The channel
    // holds a few chunks, so memory stays bounded.
    let file = file.into_std().await;
    let (chunks, mut received) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    let complete = Arc::new(AtomicBool::new(false));
    let writer = {
        let complete = complete.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<Option<[u8; 16]>> {
            let mut file = std::io::BufWriter::with_capacity(IO_CHUNK, file);
            let mut md5 = Some(Md5::new());
            let mut hashed: u64 = 0;
            while let Some(chunk) = received.blocking_recv() {
                hashed += chunk.len() as u64;
                if hashed > CONTENT_MD5_MAX_BYTES {
                    md5 = None;
                }
                if let Some(md5) = md5.as_mut() {
                    md5.update(&chunk);
                }
                file.write_all(&chunk)?;
            }
            let file = file.into_inner().map_err(|e| e.into_error())?;
            // An abandoned upload is about to be deleted: no point making it durable.
            if complete.load(Ordering::Acquire) {
                file.sync_all()?;
            }
            Ok(md5.map(|md5| md5.finalize().into()))
        })
    };
    let streamed: StoreResult<()> = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StoreError::Body)?;
            staged.size += chunk.len() as u64;
            if let Some(limit) = max_bytes {
                if staged.size > limit {
                    return Err(StoreError::Body(Box::new(BodyTooLarge { limit })));
                }
            }
            if chunks.send(chunk).await.is_err() {
                // The writer stopped on an error, reported below.
                break;
            }
        }
        Ok(())
    }
    .await;
    if streamed.is_ok() {
        complete.store(true, Ordering::Release);
    }
    drop(chunks);
    let written = writer.await.map_err(StoreError::internal)?;
    streamed?;
    staged.md5 = written.map_err(|e| io_error("write", &staged.path, e))?;
    Ok(staged)
}

/// Makes a staged write the blob `container/name` (steps 1-3 of the module docs).
pub(super) fn commit(
    conn: &mut Connection,
    root: &Path,
    container: &str,
    name: &str,
    content_type: &str,
    mut staged: Staged,
) -> StoreResult<BlobProperties> {
    let dir = root.join(container);
    let tmp_name = file_name(&staged.path)?;
    let properties = record_intent(conn, container, name, &tmp_name, content_type, &staged)?;

    let target = dir.join(name);
    if let Err(e) = fs::rename(&staged.path, &target) {
        // Nothing became visible: withdraw the intent (recovery would do the same, seeing the
        // temporary file still there) and let `staged` remove the file.
        if let Err(undo) = delete_intent(conn, container, name, &tmp_name) {
            tracing::warn!(error = %undo, "could not withdraw a blob write intent");
        }
        return Err(io_error("rename into", &target, e));
    }
    staged.committed = true;
    // The rename must be durable before the intent is applied, or a power cut could bring back
    // the old file under the new properties.
    let synced = sync_dir(&dir);
    // Past the rename the write has happened, so the intent is applied even if the fsync
    // failed (the error is still reported). Should the database refuse this step right after
    // accepting step 1, the row lags the file until `recover` applies the intent at the next
    // open; the writer gets the error.
    apply_intent(conn, container, name, &tmp_name)?;
    synced?;
    Ok(properties)
}

/// Step 1: the new version's properties, recorded before its file becomes visible.
fn record_intent(
    conn: &mut Connection,
    container: &str,
    name: &str,
    tmp_name: &str,
    content_type: &str,
    staged: &Staged,
) -> StoreResult<BlobProperties> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error)?;
    let etag = ETag::new(format!("\"0x{:016X}\"", next_seq(&tx)?));
    let last_modified = Utc::now();
    let size = i64::try_from(staged.size).map_err(StoreError::internal)?;
    tx.execute(
        "INSERT INTO pending_blobs
             (container, name, tmp, size, content_type, md5, etag, modified_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            container,
            name,
            tmp_name,
            size,
            content_type,
            // No MD5 is stored as an empty value (the column predates blobs without one).
            staged.md5.as_ref().map_or(&[][..], |m| m.as_slice()),
            etag.as_str(),
            last_modified.timestamp_micros()
        ],
    )
    .map_err(sql_error)?;
    tx.commit().map_err(sql_error)?;
    Ok(BlobProperties {
        size: staged.size,
        content_type: content_type.to_owned(),
        content_md5: staged.md5,
        etag,
        last_modified: from_micros(last_modified.timestamp_micros())?,
    })
}

/// Step 3: the intent becomes the blob's row.
fn apply_intent(conn: &mut Connection, container: &str, name: &str, tmp: &str) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error)?;
    tx.execute(
        "INSERT OR REPLACE INTO blobs (container, name, size, content_type, md5, etag, modified_us)
         SELECT container, name, size, content_type, md5, etag, modified_us
         FROM pending_blobs WHERE container = ?1 AND name = ?2 AND tmp = ?3",
        params![container, name, tmp],
    )
    .map_err(sql_error)?;
    tx.execute(
        "DELETE FROM pending_blobs WHERE container = ?1 AND name = ?2 AND tmp = ?3",
        params![container, name, tmp],
    )
    .map_err(sql_error)?;
    tx.commit().map_err(sql_error)
}

fn delete_intent(conn: &Connection, container: &str, name: &str, tmp: &str) -> StoreResult<()> {
    conn.execute(
        "DELETE FROM pending_blobs WHERE container = ?1 AND name = ?2 AND tmp = ?3",
        params![container, name, tmp],
    )
    .map_err(sql_error)?;
    Ok(())
}

/// Finishes or undoes the writes a crash interrupted, then removes unreachable files
/// (see the module docs). Runs at open, before anything else touches the directory.
pub(super) fn recover(conn: &mut Connection, root: &Path) -> StoreResult<()> {
    let intents: Vec<(String, String, String)> = {
        let mut statement = conn
            .prepare("SELECT container, name, tmp FROM pending_blobs")
            .map_err(sql_error)?;
        let rows = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(sql_error)?;
        rows.collect::<Result<_, _>>().map_err(sql_error)?
    };
    for (container, name, tmp) in intents {
        let tmp_path = root.join(&container).join(&tmp);
        if tmp_path.exists() {
            tracing::info!(%container, %name, "undoing a blob write interrupted before its commit");
            fs::remove_file(&tmp_path).map_err(|e| io_error("remove", &tmp_path, e))?;
            delete_intent(conn, &container, &name, &tmp)?;
        } else {
            tracing::info!(%container, %name, "finishing a blob write interrupted after its commit");
            apply_intent(conn, &container, &name, &tmp)?;
        }
    }

    let containers = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) => return Err(io_error("list", root, e)),
    };
    for container in containers {
        let container = container.map_err(|e| io_error("list", root, e))?;
        let dir = container.path();
        if !dir.is_dir() {
            continue;
        }
        let container_name = container.file_name().to_string_lossy().into_owned();
        for entry in fs::read_dir(&dir).map_err(|e| io_error("list", &dir, e))? {
            let entry = entry.map_err(|e| io_error("list", &dir, e))?;
            let file = entry.file_name().to_string_lossy().into_owned();
            let has_row = conn
                .query_row(
                    "SELECT 1 FROM blobs WHERE container = ?1 AND name = ?2",
                    params![container_name, file],
                    |_| Ok(()),
                )
                .optional()
                .map_err(sql_error)?
                .is_some();
            if !has_row {
                tracing::info!(path = %entry.path().display(), "removing an unreachable blob file");
                fs::remove_file(entry.path()).map_err(|e| io_error("remove", &entry.path(), e))?;
            }
        }
    }
    Ok(())
}

/// Deletes a blob: its row first (from then on it is gone for readers), then its file. A crash
/// between the two leaves a file without a row, which `recover` removes at the next open.
/// Its snapshots go with it, as Blob Storage's delete with `include` snapshots does.
pub(super) fn delete(
    conn: &mut Connection,
    root: &Path,
    container: &str,
    name: &str,
) -> StoreResult<()> {
    let mut names = snapshot_names(conn, container, name)?;
    names.push(name.to_owned());
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error)?;
    for name in &names {
        tx.execute(
            "DELETE FROM blobs WHERE container = ?1 AND name = ?2",
            params![container, name],
        )
        .map_err(sql_error)?;
    }
    tx.commit().map_err(sql_error)?;
    for name in &names {
        let path = root.join(container).join(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("remove", &path, e)),
        }
    }
    Ok(())
}

/// The name a snapshot's row and file are kept under: the leading `.` no blob name may have
/// keeps it apart from every blob, and the `@` after the blob's name keeps a blob's snapshots
/// together (see [`snapshot_names`]).
pub(super) fn snapshot_name(name: &str, snapshot: &str) -> String {
    format!(".{name}@{snapshot}")
}

/// The names of blob `name`'s snapshots: rows from `.{name}@` up to (not including)
/// `.{name}A`, the next character after `@`.
fn snapshot_names(conn: &Connection, container: &str, name: &str) -> StoreResult<Vec<String>> {
    let mut statement = conn
        .prepare("SELECT name FROM blobs WHERE container = ?1 AND name >= ?2 AND name < ?3")
        .map_err(sql_error)?;
    let rows = statement
        .query_map(
            params![container, format!(".{name}@"), format!(".{name}A")],
            |r| r.get(0),
        )
        .map_err(sql_error)?;
    rows.collect::<Result<_, _>>().map_err(sql_error)
}

/// Takes a snapshot of blob `container/name`: a hard link to the file of its current
/// version (a later write renames a new file over the name and leaves the link alone), then a
/// row with the same properties. A crash between the two leaves a file without a row, which
/// [`recover`] removes.
pub(super) fn snapshot(
    conn: &mut Connection,
    root: &Path,
    container: &str,
    name: &str,
    if_match: Option<&ETag>,
) -> StoreResult<Snapshot> {
    let properties = properties_row(conn, container, name)?;
    if if_match.is_some_and(|etag| *etag != properties.etag) {
        return Err(StoreError::PreconditionFailed);
    }
    // Blob Storage's form (seven fractional digits), unique per blob: a second snapshot in
    // the same tick moves on by one.
    let mut at = Utc::now();
    let id = loop {
        let id = format!(
            "{}.{:07}Z",
            at.format("%Y-%m-%dT%H:%M:%S"),
            at.timestamp_subsec_nanos() / 100
        );
        match properties_row(conn, container, &snapshot_name(name, &id)) {
            Err(StoreError::NotFound) => break id,
            Ok(_) => {}
            Err(e) => return Err(e),
        }
        at += chrono::Duration::nanoseconds(100);
    };
    let dir = root.join(container);
    let (source, target) = (dir.join(name), dir.join(snapshot_name(name, &id)));
    if let Err(e) = fs::hard_link(&source, &target) {
        // A file system without hard links gets a copy: slower, the same guarantee.
        tracing::debug!(error = %e, "hard link refused; copying the snapshot");
        fs::copy(&source, &target).map_err(|e| io_error("copy", &target, e))?;
    }
    sync_dir(&dir)?;
    conn.execute(
        "INSERT INTO blobs (container, name, size, content_type, md5, etag, modified_us)
         SELECT container, ?3, size, content_type, md5, etag, modified_us
         FROM blobs WHERE container = ?1 AND name = ?2",
        params![container, name, snapshot_name(name, &id)],
    )
    .map_err(sql_error)?;
    Ok(Snapshot {
        id,
        etag: properties.etag,
    })
}

fn properties_row(conn: &Connection, container: &str, name: &str) -> StoreResult<BlobProperties> {
    let row = conn
        .query_row(
            "SELECT size, content_type, md5, etag, modified_us FROM blobs
             WHERE container = ?1 AND name = ?2",
            params![container, name],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            },
        )
        .optional()
        .map_err(sql_error)?;
    let (size, content_type, md5, etag, modified_us) = row.ok_or(StoreError::NotFound)?;
    Ok(BlobProperties {
        size: u64::try_from(size).map_err(StoreError::internal)?,
        content_type,
        content_md5: match md5.len() {
            0 => None,
            _ => Some(
                md5.try_into()
                    .map_err(|_| StoreError::internal("a stored MD5 is not 16 bytes"))?,
            ),
        },
        etag: ETag::new(etag),
        last_modified: from_micros(modified_us)?,
    })
}

pub(super) fn properties(
    conn: &mut Connection,
    container: &str,
    name: &str,
) -> StoreResult<BlobProperties> {
    properties_row(conn, container, name)
}

/// The row and the file it describes, read together under the database mutex.
pub(super) fn open(
    conn: &mut Connection,
    root: &Path,
    container: &str,
    name: &str,
) -> StoreResult<(BlobProperties, fs::File)> {
    let properties = properties_row(conn, container, name)?;
    let path = root.join(container).join(name);
    // A row without its file is corruption (someone deleted it by hand), not an absent blob.
    let file = fs::File::open(&path).map_err(|e| io_error("open", &path, e))?;
    Ok((properties, file))
}

/// The file's bytes in `range` (all of it when `None`), as a stream of chunks.
pub(super) async fn stream_file(
    file: fs::File,
    range: Option<Range<u64>>,
) -> StoreResult<ByteStream> {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::from_std(file);
    let body: ByteStream = match range {
        None => ReaderStream::with_capacity(file, IO_CHUNK)
            .map(|chunk| chunk.map_err(Into::into))
            .boxed(),
        Some(range) => {
            file.seek(SeekFrom::Start(range.start))
                .await
                .map_err(|e| StoreError::internal(IoSeek(e)))?;
            ReaderStream::with_capacity(file.take(range.end - range.start), IO_CHUNK)
                .map(|chunk| chunk.map_err(Into::into))
                .boxed()
        }
    };
    Ok(body)
}

#[derive(Debug, thiserror::Error)]
#[error("cannot seek in a blob file")]
struct IoSeek(#[source] std::io::Error);

fn sync_dir(dir: &Path) -> StoreResult<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("sync", dir, e))
}

fn file_name(path: &Path) -> StoreResult<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| StoreError::internal("a temporary blob path has no file name"))
}

fn from_micros(us: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| StoreError::internal("a stored blob time is out of range"))
}

#[cfg(test)]
mod tests {
    //! Crash recovery, by stopping a write between its steps and reopening the directory.

    use std::sync::Arc;

    use bytes::Bytes;

    use super::super::{EmbeddedOptions, EmbeddedStore};
    use super::*;
    use crate::store::{PutBlobOptions, Storage};

    fn options() -> EmbeddedOptions {
        EmbeddedOptions {
            public_base_url: "http://127.0.0.1:1".into(),
            signing_secret: Some(vec![7; 32]),
            ..EmbeddedOptions::default()
        }
    }

    fn body(data: &'static [u8]) -> ByteStream {
        futures::stream::iter([Ok(Bytes::from_static(data))]).boxed()
    }

    async fn read_all(store: &EmbeddedStore, name: &str) -> Vec<u8> {
        let read = store.get_blob("files", name, None).await.expect("get");
        let chunks: Vec<Bytes> = read.body.map(|c| c.expect("chunk")).collect().await;
        chunks.concat()
    }

    /// Runs step 1 only, or steps 1 and 2, of a write of `new` over the blob "b", then "crashes"
    /// (drops the store without step 3).
    async fn interrupted_write(dir: &Path, new: &'static [u8], rename: bool) -> BlobProperties {
        let store = EmbeddedStore::open(dir, options()).expect("open");
        let container_dir = dir.join("blobs").join("files");
        let mut staged = write_temp(&container_dir, body(new), None)
            .await
            .expect("stage");
        let inner = Arc::clone(&store.inner);
        let mut conn = inner.conn.lock().expect("lock");
        let tmp = file_name(&staged.path).expect("name");
        let props =
            record_intent(&mut conn, "files", "b", &tmp, "text/plain", &staged).expect("intent");
        if rename {
            fs::rename(&staged.path, container_dir.join("b")).expect("rename");
        }
        staged.committed = true; // a crash removes nothing
        props
    }

    async fn store_with_old_blob(dir: &Path) -> BlobProperties {
        let store = EmbeddedStore::open(dir, options()).expect("open");
        store.ensure_container("files").await.expect("container");
        let options = PutBlobOptions {
            content_type: "text/old".into(),
            max_bytes: None,
        };
        store
            .put_blob("files", "b", body(b"old"), &options)
            .await
            .expect("put")
    }

    #[tokio::test]
    async fn a_crash_before_the_rename_keeps_the_older_blob() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = store_with_old_blob(dir.path()).await;
        interrupted_write(dir.path(), b"new!", false).await;

        let store = EmbeddedStore::open(dir.path(), options()).expect("reopen");
        assert_eq!(
            store.blob_properties("files", "b").await.expect("props"),
            old
        );
        assert_eq!(read_all(&store, "b").await, b"old");
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("blobs/files"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("b")]);
    }

    #[tokio::test]
    async fn a_crash_after_the_rename_keeps_the_new_blob_with_its_properties() {
        let dir = tempfile::tempdir().expect("tempdir");
        store_with_old_blob(dir.path()).await;
        let new = interrupted_write(dir.path(), b"new!", true).await;

        let store = EmbeddedStore::open(dir.path(), options()).expect("reopen");
        assert_eq!(
            store.blob_properties("files", "b").await.expect("props"),
            new
        );
        assert_eq!(read_all(&store, "b").await, b"new!");
    }

    #[tokio::test]
    async fn unreachable_files_are_removed_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        store_with_old_blob(dir.path()).await;
        let container_dir = dir.path().join("blobs/files");
        fs::write(container_dir.join(".tmp-abandoned"), b"x").expect("write");
        fs::write(container_dir.join("deleted-but-not-unlinked"), b"x").expect("write");

        let store = EmbeddedStore::open(dir.path(), options()).expect("reopen");
        assert!(!container_dir.join(".tmp-abandoned").exists());
        assert!(!container_dir.join("deleted-but-not-unlinked").exists());
        assert_eq!(read_all(&store, "b").await, b"old");
    }

    #[tokio::test]
    async fn a_second_store_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = EmbeddedStore::open(dir.path(), options()).expect("open");
        let second = EmbeddedStore::open(dir.path(), options());
        assert!(
            matches!(second, Err(StoreError::Unavailable(_))),
            "{second:?}"
        );
    }
}
