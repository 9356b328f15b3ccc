//! Block-blob uploads from a stream, and ranged, streamed reads.
//!
//! An upload stages fixed-size blocks (Put Block) with a few in flight and commits them with
//! one Put Block List. Until that commit nothing under the blob's name changes: staged blocks
//! that are never committed are garbage-collected by the service, so a failed or oversized
//! upload leaves an older blob of the same name untouched. A body that fits in one block is
//! sent as a single Put Blob once it has been read completely, which keeps the same guarantee.

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use md5::{Digest, Md5};
use tokio::task::JoinSet;

use azure_core::request_options::IfMatchCondition;
use azure_storage_blobs::blob::{BlobBlockType, BlockList};
use azure_storage_blobs::prelude::{BlobClient, BlobContentMD5, BlobContentType, BlockId, Hash};

use super::{map_error, utc};
use crate::store::{
    BlobProperties, BlobRead, BodyTooLarge, ByteStream, ETag, PutBlobOptions, StoreError,
    StoreResult,
};

/// Block blobs hold at most 50 000 committed blocks.
const MAX_BLOCKS: usize = 50_000;

/// How uploads are cut up; see [`super::AzureStore::with_upload_blocks`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct UploadShape {
    pub block_size: usize,
    pub in_flight: usize,
}

/// Block ids must all have the same length within one blob (including other writers' staged
/// blocks), and concurrent uploads to one name must not reuse each other's ids: a random
/// 32-hex-digit upload id plus a zero-padded 6-digit index is always 38 bytes.
fn block_id(upload: &str, index: usize) -> BlockId {
    BlockId::new(format!("{upload}{index:06}"))
}

pub(crate) async fn upload(
    client: BlobClient,
    mut body: ByteStream,
    options: &PutBlobOptions,
    shape: UploadShape,
) -> StoreResult<BlobProperties> {
    let upload_id = uuid::Uuid::new_v4().simple().to_string();
    let mut md5 = Md5::new();
    let mut total: u64 = 0;
    let mut pending = BytesMut::with_capacity(shape.block_size);
    let mut staged: Vec<BlockId> = Vec::new();
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
        md5.update(&chunk);
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
    let content_md5: [u8; 16] = md5.finalize().into();
    let content_type = BlobContentType::from(options.content_type.clone());
    let committed = |etag: String, last_modified: DateTime<Utc>| BlobProperties {
        size: total,
        content_type: options.content_type.clone(),
        content_md5: Some(content_md5),
        etag: ETag::new(etag),
        last_modified,
    };

    if staged.is_empty() {
        let response = client
            .put_block_blob(pending.freeze())
            .content_type(content_type)
            // Content-MD5 on Put Blob is checked by the service and stored as the blob's MD5.
            .hash(Hash::MD5(content_md5))
            .await
            .map_err(|e| map_error("put blob", e))?;
        return Ok(committed(
            response.etag,
            utc(
                response.last_modified.unix_timestamp(),
                response.last_modified.nanosecond(),
            ),
        ));
    }

    let id = block_id(&upload_id, staged.len());
    staged.push(id.clone());
    in_flight.spawn(put_block(client.clone(), id, pending.freeze()));
    while !in_flight.is_empty() {
        join_one(&mut in_flight).await?;
    }
    let block_list = BlockList {
        blocks: staged.into_iter().map(BlobBlockType::Uncommitted).collect(),
    };
    let response = client
        .put_block_list(block_list)
        .content_type(content_type)
        // Stored as the blob's Content-MD5, so properties report the MD5 of the whole content
        // even though it was never sent in one piece.
        .content_md5(BlobContentMD5::from(content_md5))
        .await
        .map_err(|e| map_error("put block list", e))?;
    Ok(committed(
        response.etag,
        utc(
            response.last_modified.unix_timestamp(),
            response.last_modified.nanosecond(),
        ),
    ))
}

async fn put_block(client: BlobClient, id: BlockId, data: Bytes) -> StoreResult<()> {
    client
        .put_block(id, data)
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

pub(crate) async fn properties(client: &BlobClient) -> StoreResult<BlobProperties> {
    let response = client
        .get_properties()
        .await
        .map_err(|e| map_error("get blob properties", e))?;
    let p = response.blob.properties;
    Ok(BlobProperties {
        size: p.content_length,
        content_type: p.content_type,
        content_md5: p.content_md5.map(|md5| *md5.as_slice()),
        etag: ETag::new(p.etag.to_string()),
        last_modified: utc(
            p.last_modified.unix_timestamp(),
            p.last_modified.nanosecond(),
        ),
    })
}

/// Streams the bytes in `chunk_size` ranges, every range after the first pinned with If-Match
/// to the version the first came from: if the blob is replaced mid-read, the stream fails
/// instead of splicing two versions. A whole read learns the version and the size from its
/// first range (one request for a file up to `chunk_size`, the analysis's usual case; a blob of
/// two ranges or more asks for its size); a ranged read, or a whole read of an empty blob
/// (which has no first range), asks for the properties first.
pub(crate) async fn read(
    client: BlobClient,
    range: Option<std::ops::Range<u64>>,
    chunk_size: u64,
) -> StoreResult<BlobRead> {
    if range.is_none() {
        if let Some(read) = read_whole(&client, chunk_size).await? {
            return Ok(read);
        }
    }
    let properties = properties(&client).await?;
    let size = properties.size;
    let (start, end) = match range {
        None => (0, size),
        Some(r) if r.start > r.end || r.start > size => {
            return Err(StoreError::Invalid(format!(
                "range {}..{} is outside the blob's {size} bytes",
                r.start, r.end
            )))
        }
        Some(r) => (r.start, r.end.min(size)),
    };
    if start == end {
        return Ok(BlobRead {
            properties,
            body: Box::pin(futures::stream::empty()),
        });
    }
    let pages = client
        .get()
        .range(start..end)
        .chunk_size(chunk_size)
        .if_match(IfMatchCondition::Match(properties.etag.as_str().to_owned()))
        .into_stream();
    let body = pages.flat_map(|page| match page {
        Ok(page) => page
            .data
            .map(|chunk| chunk.map_err(|e| boxed(map_error("read blob", e))))
            .left_stream(),
        Err(e) => futures::stream::once(async move { Err(boxed(map_error("read blob", e))) })
            .right_stream(),
    });
    Ok(BlobRead {
        properties,
        body: Box::pin(body),
    })
}

/// A whole read without a properties request; `None` for an empty blob.
async fn read_whole(client: &BlobClient, chunk_size: u64) -> StoreResult<Option<BlobRead>> {
    let mut pages = client.get().chunk_size(chunk_size).into_stream();
    let first = match pages.next().await {
        Some(Ok(first)) => first,
        // A range of an empty blob is not satisfiable.
        Some(Err(e))
            if e.as_http_error()
                .is_some_and(|h| u16::from(h.status()) == 416) =>
        {
            return Ok(None)
        }
        Some(Err(e)) => return Err(map_error("read blob", e)),
        None => return Ok(None),
    };
    // The SDK would read the rest unpinned: the rest is asked for below, pinned.
    drop(pages);
    let p = &first.blob.properties;
    let first_len = p.content_length;
    // The SDK keeps the Content-Range's total to itself and offers only the next range, which
    // ends at the blob's end when that is less than a range away; otherwise the properties
    // tell (the size of the version the first range came from, or the read fails on If-Match).
    let size = match &first.remaining_range {
        None => first_len,
        Some(azure_core::request_options::Range::Range(next))
            if next.end - next.start < chunk_size =>
        {
            next.end
        }
        Some(_) => properties(client).await?.size,
    };
    let properties = BlobProperties {
        size,
        content_type: p.content_type.clone(),
        // A ranged response carries no whole-blob MD5; `blob_properties` has it.
        content_md5: None,
        etag: ETag::new(p.etag.to_string()),
        last_modified: utc(
            p.last_modified.unix_timestamp(),
            p.last_modified.nanosecond(),
        ),
    };
    let head = first
        .data
        .map(|chunk| chunk.map_err(|e| boxed(map_error("read blob", e))));
    let body = if size > first_len {
        let rest = client
            .get()
            .range(first_len..size)
            .chunk_size(chunk_size)
            .if_match(IfMatchCondition::Match(properties.etag.as_str().to_owned()))
            .into_stream()
            .flat_map(|page| match page {
                Ok(page) => page
                    .data
                    .map(|chunk| chunk.map_err(|e| boxed(map_error("read blob", e))))
                    .left_stream(),
                Err(e) => {
                    futures::stream::once(async move { Err(boxed(map_error("read blob", e))) })
                        .right_stream()
                }
            });
        head.chain(rest).left_stream()
    } else {
        head.right_stream()
    };
    Ok(Some(BlobRead {
        properties,
        body: Box::pin(body),
    }))
}

fn boxed(e: StoreError) -> crate::store::BoxError {
    Box::new(e)
}
