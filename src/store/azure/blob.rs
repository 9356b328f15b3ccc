//! Block-blob uploads from a stream, and ranged, streamed reads, on the official
//! `azure_storage_blob` clients.
//!
//! An upload stages fixed-size blocks (Put Block) with a few in flight and commits them with
//! one Put Block List. Until that commit nothing under the blob's name changes: staged blocks
//! that are never committed are garbage-collected by the service, so a failed or oversized
//! upload leaves an older blob of the same name untouched. A body that fits in one block is
//! sent as a single Put Blob once it has been read completely, which keeps the same guarantee.
//! The crate's own managed upload needs the whole body up front (or a seekable file), which an
//! HTTP request body is not, so the staging loop is ours; the requests are the crate's.

use std::num::NonZero;
use std::sync::Arc;

use azure_core::http::{Etag, NoFormat, RequestContent};
use azure_storage_blob::models::{
    BlobClientCreateSnapshotOptions, BlobClientCreateSnapshotResultHeaders,
    BlobClientDeleteOptions, BlobClientDownloadOptions, BlobClientGetPropertiesOptions,
    BlobClientGetPropertiesResultHeaders, BlockBlobClientCommitBlockListOptions,
    BlockBlobClientCommitBlockListResultHeaders, BlockBlobClientUploadOptions, BlockLookupList,
    DeleteSnapshotsOptionType, HttpRange,
};
use azure_storage_blob::{BlobClient, BlockBlobClient};
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use tokio::task::JoinSet;

use super::{from_sdk_time, map_error};
use crate::store::{
    BlobProperties, BlobRead, BodyTooLarge, ByteStream, ETag, PutBlobOptions, Snapshot, StoreError,
    StoreResult,
};

/// Block blobs hold at most 50 000 committed blocks.
const MAX_BLOCKS: usize = 50_000;
/// Ranges of one read fetched at once. The crate buffers whole ranges, at most twice this many:
/// with one, the next range downloads while the consumer reads the last (16 MiB of 8 MiB
/// ranges). Two in flight grew a 256 MiB read's resident memory by 81 MiB against the 64 MiB
/// budget of tests/store_conformance.rs; one grows it by 34.
const READ_PARALLEL: usize = 1;

/// How uploads are cut up; see [`super::AzureStore::with_upload_blocks`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct UploadShape {
    pub block_size: usize,
    pub in_flight: usize,
}

/// Block ids must all have the same length within one blob (including other writers' staged
/// blocks), and concurrent uploads to one name must not reuse each other's ids: a random
/// 32-hex-digit upload id plus a zero-padded 6-digit index is always 38 bytes.
fn block_id(upload: &str, index: usize) -> Vec<u8> {
    format!("{upload}{index:06}").into_bytes()
}

fn content(data: Bytes) -> RequestContent<Bytes, NoFormat> {
    data.into()
}

/// A time the service may leave out; the epoch when it did.
fn time_or_epoch(t: Option<time::OffsetDateTime>) -> DateTime<Utc> {
    t.map(from_sdk_time).unwrap_or_default()
}

fn etag(e: Option<Etag>) -> ETag {
    ETag::new(e.map(|e| e.to_string()).unwrap_or_default())
}

pub(crate) async fn upload(
    client: &BlobClient,
    mut body: ByteStream,
    options: &PutBlobOptions,
    shape: UploadShape,
) -> StoreResult<BlobProperties> {
    let client = Arc::new(client.block_blob_client());
    let upload_id = uuid::Uuid::new_v4().simple().to_string();
    let mut total: u64 = 0;
    let mut pending = BytesMut::with_capacity(shape.block_size);
    let mut staged: Vec<Vec<u8>> = Vec::new();
    // Dropping the set (on any early return) aborts the Put Block requests still running.
    let mut in_flight: JoinSet<StoreResult<()>> = JoinSet::new();

    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(StoreError::Body)?;
        total += chunk.len() as u64;
        if let Some(limit) = options.max_bytes {
            if total > limit {
                return Err(StoreError::Body(Box::new(BodyTooLarge { limit })));
            }
        }
        while !chunk.is_empty() {
            // A full buffer is only sent once more data shows it is not the last block, so a
            // body of exactly one block still goes out as a single Put Blob.
            if pending.len() == shape.block_size {
                if staged.len() == MAX_BLOCKS {
                    return Err(StoreError::Invalid(format!(
                        "a blob holds at most {MAX_BLOCKS} blocks of {} bytes",
                        shape.block_size
                    )));
                }
                let block =
                    std::mem::replace(&mut pending, BytesMut::with_capacity(shape.block_size));
                let id = block_id(&upload_id, staged.len());
                staged.push(id.clone());
                while in_flight.len() >= shape.in_flight {
                    join_one(&mut in_flight).await?;
                }
                in_flight.spawn(put_block(client.clone(), id, block.freeze()));
            }
            let take = (shape.block_size - pending.len()).min(chunk.len());
            pending.extend_from_slice(&chunk.split_to(take));
        }
    }
    let committed = |etag: ETag, last_modified: DateTime<Utc>, content_md5| BlobProperties {
        size: total,
        content_type: options.content_type.clone(),
        content_md5,
        etag,
        last_modified,
    };

    if staged.is_empty() {
        let data = pending.freeze();
        // One piece: its MD5 is kept, as the service keeps one for a single Put Blob. A blob
        // sent in blocks has none (see `BlobProperties::content_md5`).
        let content_md5: [u8; 16] = Md5::digest(&data).into();
        // One partition as large as the body: the crate sends it as one Put Blob.
        let partition = NonZero::new(data.len() as u64).unwrap_or(NonZero::<u64>::MIN);
        let response = client
            .upload(
                content(data),
                Some(BlockBlobClientUploadOptions {
                    blob_content_type: Some(options.content_type.clone()),
                    // Stored as the blob's Content-MD5.
                    blob_content_md5: Some(content_md5.to_vec()),
                    parallel: Some(NonZero::<usize>::MIN),
                    partition_size: Some(partition),
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| map_error("put blob", e))?;
        return Ok(committed(
            etag(response.etag),
            time_or_epoch(response.last_modified),
            Some(content_md5),
        ));
    }

    let id = block_id(&upload_id, staged.len());
    staged.push(id.clone());
    in_flight.spawn(put_block(client.clone(), id, pending.freeze()));
    while !in_flight.is_empty() {
        join_one(&mut in_flight).await?;
    }
    let block_list = BlockLookupList {
        uncommitted: Some(staged),
        ..Default::default()
    };
    let block_list =
        RequestContent::try_from(block_list).map_err(|e| map_error("put block list", e))?;
    let response = client
        .commit_block_list(
            block_list,
            Some(BlockBlobClientCommitBlockListOptions {
                blob_content_type: Some(options.content_type.clone()),
                ..Default::default()
            }),
        )
        .await
        .map_err(|e| map_error("put block list", e))?;
    let last_modified = response
        .last_modified()
        .map_err(|e| map_error("put block list", e))?;
    let tag = response
        .etag()
        .map_err(|e| map_error("put block list", e))?;
    Ok(committed(etag(tag), time_or_epoch(last_modified), None))
}

async fn put_block(client: Arc<BlockBlobClient>, id: Vec<u8>, data: Bytes) -> StoreResult<()> {
    let length = data.len() as u64;
    client
        .stage_block(&id, length, content(data), None)
        .await
        .map(drop)
        .map_err(|e| map_error("put block", e))
}

async fn join_one(set: &mut JoinSet<StoreResult<()>>) -> StoreResult<()> {
    match set.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(join_error)) => Err(StoreError::internal(join_error)),
        None => Ok(()),
    }
}

pub(crate) async fn properties(
    client: &BlobClient,
    snapshot: Option<&str>,
) -> StoreResult<BlobProperties> {
    let options = BlobClientGetPropertiesOptions {
        snapshot: snapshot.map(str::to_owned),
        ..Default::default()
    };
    let response = client
        .get_properties(Some(options))
        .await
        .map_err(|e| map_error("get blob properties", e))?;
    let read = |e| map_error("get blob properties", e);
    Ok(BlobProperties {
        size: response.content_length().map_err(read)?.unwrap_or(0),
        content_type: response.content_type().map_err(read)?.unwrap_or_default(),
        content_md5: response
            .content_md5()
            .map_err(read)?
            .and_then(|md5| <[u8; 16]>::try_from(md5).ok()),
        etag: etag(response.etag().map_err(read)?),
        last_modified: time_or_epoch(response.last_modified().map_err(read)?),
    })
}

/// Snapshot Blob: the service keeps the blob's current blocks under a new snapshot id.
pub(crate) async fn snapshot(
    client: &BlobClient,
    if_match: Option<&ETag>,
) -> StoreResult<Snapshot> {
    let options = BlobClientCreateSnapshotOptions {
        if_match: if_match.map(|etag| Etag::from(etag.as_str().to_owned())),
        ..Default::default()
    };
    let response = client
        .create_snapshot(Some(options))
        .await
        .map_err(|e| map_error("snapshot blob", e))?;
    let read = |e| map_error("snapshot blob", e);
    let id = response
        .snapshot()
        .map_err(read)?
        .ok_or_else(|| StoreError::internal("Snapshot Blob answered without x-ms-snapshot"))?;
    Ok(Snapshot {
        id,
        etag: etag(response.etag().map_err(read)?),
    })
}

pub(crate) async fn delete(client: &BlobClient) -> StoreResult<()> {
    let options = BlobClientDeleteOptions {
        delete_snapshots: Some(DeleteSnapshotsOptionType::Include),
        ..Default::default()
    };
    match client.delete(Some(options)).await {
        Ok(_) => Ok(()),
        Err(e) => match map_error("delete blob", e) {
            StoreError::NotFound => Ok(()),
            other => Err(other),
        },
    }
}

/// Streams the bytes in `chunk_size` ranges, the next fetched while one is read. The crate pins every range
/// after the first with If-Match to the version the first came from: if the blob is replaced
/// mid-read, the stream fails instead of splicing two versions. A whole read learns the
/// version and the size from its first range (one request for a file up to `chunk_size`, the
/// analysis's usual case); a ranged read asks for the properties first, to check the range
/// against the size and pin every range to that version.
pub(crate) async fn read(
    client: BlobClient,
    snapshot: Option<&str>,
    range: Option<std::ops::Range<u64>>,
    chunk_size: u64,
) -> StoreResult<BlobRead> {
    let partition = NonZero::new(usize::try_from(chunk_size).unwrap_or(usize::MAX))
        .unwrap_or(NonZero::<usize>::MIN);
    let mut options = BlobClientDownloadOptions {
        parallel: NonZero::new(READ_PARALLEL),
        partition_size: Some(partition),
        snapshot: snapshot.map(str::to_owned),
        ..Default::default()
    };
    let pinned = match range {
        None => None,
        Some(r) => {
            let properties = properties(&client, snapshot).await?;
            let size = properties.size;
            if r.start > r.end || r.start > size {
                return Err(StoreError::Invalid(format!(
                    "range {}..{} is outside the blob's {size} bytes",
                    r.start, r.end
                )));
            }
            let end = r.end.min(size);
            if r.start == end {
                return Ok(BlobRead {
                    properties,
                    body: Box::pin(futures::stream::empty()),
                });
            }
            options.range = Some(HttpRange::from(r.start..end));
            options.if_match = Some(Etag::from(properties.etag.as_str().to_owned()));
            Some(properties)
        }
    };
    let download = client
        .download(Some(options))
        .await
        .map_err(|e| map_error("read blob", e))?;
    let properties = match pinned {
        Some(properties) => properties,
        None => {
            let p = &download.properties;
            // The first range's Content-Range carries the blob's size; an empty blob (no
            // range to answer) or a whole answer has only its Content-Length.
            let size = download
                .headers
                .get_optional_str(&azure_core::http::headers::HeaderName::from_static(
                    "content-range",
                ))
                .and_then(|range| range.rsplit_once('/'))
                .and_then(|(_, total)| total.parse().ok())
                .or(p.content_length)
                .unwrap_or(0);
            BlobProperties {
                size,
                content_type: p.content_type.clone().unwrap_or_default(),
                // A ranged answer carries the whole blob's MD5 in its own header (its
                // Content-MD5, when there is one, is the range's).
                content_md5: p
                    .blob_content_md5
                    .clone()
                    .and_then(|md5| <[u8; 16]>::try_from(md5).ok()),
                etag: etag(p.etag.clone()),
                last_modified: time_or_epoch(p.last_modified),
            }
        }
    };
    let body = download.body.map_err(|e| boxed(map_error("read blob", e)));
    Ok(BlobRead {
        properties,
        body: Box::pin(body),
    })
}

fn boxed(e: StoreError) -> crate::store::BoxError {
    Box::new(e)
}
