//! `upload`: a small file in one request to `POST /api/files`; a large one straight to storage
//! through an upload URL, in blocks sent side by side (Put Block, then Put Block List, as the
//! Azure SDKs send large files). The blocks a storage service acknowledged are written to a
//! journal as they land, so a run that was interrupted resumes with the blocks still missing.

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::api::{check, query_value, Api, CliError};
use crate::progress::Progress;

/// Files up to this size go in one request through the app; larger ones straight to storage.
/// (The app's own limit for one request is 100 MiB by default.)
pub const SMALL_LIMIT: u64 = 32 * 1024 * 1024;
/// The usual block, as the Azure SDKs cut large files: large enough to keep requests few,
/// small enough that the blocks in flight (each read whole before it is sent) keep the client
/// inside 64 MiB. Measured on Azurite (`scripts/bench --only cli`): 8 MiB × 4 in flight peaked
/// at 70 MiB; 4 MiB × 4 at 42 MiB but behind the Python SDK; hence 4 MiB × 6.
const BLOCK_SIZE: u64 = 4 * 1024 * 1024;
/// Blob Storage takes at most 50,000 blocks per blob.
const MAX_BLOCKS: u64 = 50_000;
const BLOCKS_IN_FLIGHT: usize = 6;
/// A block that fails on a dropped connection or a server error is sent again this often.
const BLOCK_ATTEMPTS: u32 = 8;
/// An upload URL closer than this to its expiry is not resumed: a fresh one is asked for.
const RESUME_MARGIN_SECS: i64 = 120;

/// What an upload did, besides the file's status.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sent {
    /// Bytes of the file sent by this run (less than the file when a run resumed).
    pub bytes_sent: u64,
    /// Blocks found already stored from an interrupted run.
    pub blocks_resumed: usize,
    /// `direct` (through an upload URL) or `app` (one request to the app).
    pub route: &'static str,
}

pub struct UploadRequest<'a> {
    pub path: &'a Path,
    pub name: Option<String>,
    pub content_type: Option<String>,
}

/// Uploads the file and answers its FileStatus and what was sent.
pub async fn upload(
    api: &Api,
    request: UploadRequest<'_>,
    progress: &Progress,
) -> Result<(Value, Sent), CliError> {
    let metadata = std::fs::metadata(request.path)
        .map_err(|e| CliError::Other(format!("{}: {e}", request.path.display())))?;
    if !metadata.is_file() {
        return Err(CliError::Other(format!(
            "{} is not a file",
            request.path.display()
        )));
    }
    let name = match request.name {
        Some(name) => name,
        None => request
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| CliError::Other("the file has no name; give --name".into()))?,
    };
    let size = metadata.len();
    progress.start(size, &format!("uploading {name}"));
    let result = if size <= SMALL_LIMIT {
        through_app(
            api,
            request.path,
            size,
            &name,
            request.content_type.as_deref(),
            progress,
        )
        .await
    } else {
        let file = LocalFile::of(request.path, &metadata)?;
        direct(api, &file, &name, request.content_type.as_deref(), progress).await
    };
    progress.finish();
    result
}

/// Sends `path` as a new version of file `id` (after a change request), in one streamed
/// request; answers the file's status.
pub async fn new_version(
    api: &Api,
    id: &str,
    path: &Path,
    content_type: Option<&str>,
    progress: &Progress,
) -> Result<Value, CliError> {
    let size = std::fs::metadata(path)
        .map_err(|e| CliError::Other(format!("{}: {e}", path.display())))?
        .len();
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| CliError::Other(format!("{}: {e}", path.display())))?;
    progress.start(size, "sending the new version");
    let counter = progress.clone();
    let body = tokio_util::io::ReaderStream::new(file).inspect_ok(move |chunk| {
        counter.advance(chunk.len() as u64);
    });
    let mut request = api
        .request(Method::POST, &format!("/api/files/{id}/versions"))
        .header("Content-Length", size);
    // Without --content-type nothing is declared; the analysis says what the bytes are.
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    let request = request.body(reqwest::Body::wrap_stream(body));
    let status = api.json(request).await;
    progress.finish();
    status
}

async fn through_app(
    api: &Api,
    path: &Path,
    size: u64,
    name: &str,
    content_type: Option<&str>,
    progress: &Progress,
) -> Result<(Value, Sent), CliError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| CliError::Other(format!("{}: {e}", path.display())))?;
    let counter = progress.clone();
    let body = tokio_util::io::ReaderStream::new(file).inspect_ok(move |chunk| {
        counter.advance(chunk.len() as u64);
    });
    let mut request = api
        .request(
            Method::POST,
            &format!("/api/files?name={}", query_value(name)),
        )
        .header("Content-Length", size)
        .body(reqwest::Body::wrap_stream(body));
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    let status = api.json(request).await?;
    Ok((
        status,
        Sent {
            bytes_sent: size,
            blocks_resumed: 0,
            route: "app",
        },
    ))
}

/// The local file as a journal knows it: a changed file is never resumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LocalFile {
    path: PathBuf,
    size: u64,
    modified_nanos: u128,
}

impl LocalFile {
    fn of(path: &Path, metadata: &std::fs::Metadata) -> Result<Self, CliError> {
        let path = std::fs::canonicalize(path)
            .map_err(|e| CliError::Other(format!("{}: {e}", path.display())))?;
        let modified_nanos = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Ok(LocalFile {
            path,
            size: metadata.len(),
            modified_nanos,
        })
    }
}

/// An upload URL's upload in progress, kept on disk as blocks land.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Journal {
    file: LocalFile,
    id: String,
    upload_url: String,
    expires_at: DateTime<Utc>,
    content_type: String,
    block_size: u64,
    done: BTreeSet<u64>,
}

/// Where journals live: `$FILE_APPROVER_CACHE_DIR`, else `$XDG_CACHE_HOME/file-approver`,
/// else `~/.cache/file-approver`.
fn journal_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FILE_APPROVER_CACHE_DIR") {
        return PathBuf::from(dir).join("uploads");
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("file-approver").join("uploads")
}

fn journal_path(file: &LocalFile) -> PathBuf {
    let key = hex::encode(Sha256::digest(file.path.to_string_lossy().as_bytes()));
    journal_dir().join(format!("{}.json", &key[..32]))
}

impl Journal {
    /// The journal of an interrupted upload of this very file, while its URL still has time.
    fn resumable(file: &LocalFile) -> Option<Journal> {
        let text = std::fs::read_to_string(journal_path(file)).ok()?;
        let journal: Journal = serde_json::from_str(&text).ok()?;
        let fresh = journal.expires_at - Utc::now() > chrono::Duration::seconds(RESUME_MARGIN_SECS);
        (journal.file == *file && fresh).then_some(journal)
    }

    fn save(&self) -> Result<(), CliError> {
        let path = journal_path(&self.file);
        let dir = journal_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| CliError::Other(format!("{}: {e}", dir.display())))?;
        // Written aside, then renamed: a process killed mid-write leaves the previous journal.
        let temporary = path.with_extension("json.tmp");
        let text = serde_json::to_string(self).map_err(|e| CliError::Other(e.to_string()))?;
        std::fs::write(&temporary, text)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(|e| CliError::Other(format!("{}: {e}", path.display())))
    }

    fn remove(&self) {
        let _ = std::fs::remove_file(journal_path(&self.file));
    }

    fn block_count(&self) -> u64 {
        self.file.size.div_ceil(self.block_size)
    }
}

/// Block ids must all have the same length: the index, zero-padded, in base64.
fn block_id(index: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("block-{index:06}"))
}

fn block_size_for(size: u64) -> u64 {
    let mib = 1024 * 1024;
    BLOCK_SIZE.max(size.div_ceil(MAX_BLOCKS).div_ceil(mib) * mib)
}

async fn direct(
    api: &Api,
    file: &LocalFile,
    name: &str,
    content_type: Option<&str>,
    progress: &Progress,
) -> Result<(Value, Sent), CliError> {
    let journal = match Journal::resumable(file) {
        Some(journal) => journal,
        None => {
            let mut declaration = json!({ "name": name, "size": file.size });
            if let Some(content_type) = content_type {
                declaration["contentType"] = json!(content_type);
            }
            let ticket = api.post_json("/api/files/uploads", &declaration).await?;
            let text = |key: &str| {
                ticket[key]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| CliError::Network(format!("the upload ticket has no {key}")))
            };
            let journal = Journal {
                file: file.clone(),
                id: text("id")?,
                upload_url: text("uploadUrl")?,
                expires_at: text("expiresAt")?
                    .parse()
                    .map_err(|e| CliError::Network(format!("the ticket's expiresAt: {e}")))?,
                content_type: text("contentType")?,
                block_size: block_size_for(file.size),
                done: BTreeSet::new(),
            };
            journal.save()?;
            journal
        }
    };
    let resumed = journal.done.len();
    let already: u64 = journal.done.iter().map(|&i| block_len(&journal, i)).sum();
    progress.advance(already);
    let journal = Arc::new(Mutex::new(journal));
    let bytes_sent = send_blocks(api, &journal, progress).await?;
    let journal = lock(&journal).clone();
    commit_blocks(api, &journal).await?;
    journal.remove();
    // Where no storage event starts the workflow (the app on Azure Storage without the
    // Functions host) this does; elsewhere it answers the status the start already gave.
    let status = api
        .json(api.request(Method::POST, &format!("/api/files/{}/complete", journal.id)))
        .await?;
    Ok((
        status,
        Sent {
            bytes_sent,
            blocks_resumed: resumed,
            route: "direct",
        },
    ))
}

fn lock(journal: &Mutex<Journal>) -> std::sync::MutexGuard<'_, Journal> {
    journal.lock().unwrap_or_else(|p| p.into_inner())
}

fn block_len(journal: &Journal, index: u64) -> u64 {
    let start = index * journal.block_size;
    journal.block_size.min(journal.file.size - start)
}

/// Sends the blocks the journal does not hold yet, a few at a time; answers the bytes sent.
async fn send_blocks(
    api: &Api,
    journal: &Arc<Mutex<Journal>>,
    progress: &Progress,
) -> Result<u64, CliError> {
    let missing: Vec<u64> = {
        let journal = lock(journal);
        (0..journal.block_count())
            .filter(|i| !journal.done.contains(i))
            .collect()
    };
    let sizes = futures::stream::iter(missing)
        .map(|index| async move {
            let (url, path, offset, len) = {
                let j = lock(journal);
                let url = format!(
                    "{}&comp=block&blockid={}",
                    j.upload_url,
                    query_value(&block_id(index))
                );
                (
                    url,
                    j.file.path.clone(),
                    index * j.block_size,
                    block_len(&j, index),
                )
            };
            let bytes = read_block(path, offset, len).await?;
            put_with_retries(api, &url, bytes, &[]).await?;
            progress.advance(len);
            let mut j = lock(journal);
            j.done.insert(index);
            j.save()?;
            Ok::<u64, CliError>(len)
        })
        .buffer_unordered(BLOCKS_IN_FLIGHT);
    futures::pin_mut!(sizes);
    let mut sent = 0;
    while let Some(len) = sizes.next().await {
        sent += len?;
    }
    Ok(sent)
}

async fn read_block(path: PathBuf, offset: u64, len: u64) -> Result<bytes::Bytes, CliError> {
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut buffer = vec![0; usize::try_from(len).unwrap_or(usize::MAX)];
        file.read_exact(&mut buffer)?;
        Ok::<_, std::io::Error>(bytes::Bytes::from(buffer))
    })
    .await
    .map_err(|e| CliError::Other(e.to_string()))?
    .map_err(|e| CliError::Other(format!("reading the file: {e}")))
}

/// A PUT to storage, sent again on a dropped connection or a server error with growing pauses.
async fn put_with_retries(
    api: &Api,
    url: &str,
    body: bytes::Bytes,
    headers: &[(&str, &str)],
) -> Result<(), CliError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut request = api.http.put(url).body(body.clone());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let outcome = match request.send().await {
            Ok(response) => check(response).await.map(drop),
            Err(e) => Err(CliError::network(e)),
        };
        match outcome {
            Err(CliError::Network(reason)) if attempt < BLOCK_ATTEMPTS => {
                eprintln!("file-approver: retrying after: {reason}");
                let pause = Duration::from_millis(500 * 2u64.pow(attempt - 1));
                tokio::time::sleep(pause.min(Duration::from_secs(10))).await;
            }
            other => return other,
        }
    }
}

/// Put Block List: the blocks, in order, become the blob (and its content type is set).
async fn commit_blocks(api: &Api, journal: &Journal) -> Result<(), CliError> {
    let mut list = String::from(r#"<?xml version="1.0" encoding="utf-8"?><BlockList>"#);
    for index in 0..journal.block_count() {
        list.push_str("<Latest>");
        list.push_str(&block_id(index));
        list.push_str("</Latest>");
    }
    list.push_str("</BlockList>");
    put_with_retries(
        api,
        &format!("{}&comp=blocklist", journal.upload_url),
        bytes::Bytes::from(list),
        &[
            ("x-ms-blob-content-type", journal.content_type.as_str()),
            ("Content-Type", "application/xml"),
        ],
    )
    .await
}
