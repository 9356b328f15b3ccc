//! Put Block and Put Block List for the embedded store's upload links, so the Azure SDKs and
//! AzCopy, which send large files in blocks, work against a local upload URL as they do against
//! a SAS. Blocks are staged as files under `<dir>/blocks/<container>/<blob>/<hex block id>`,
//! outside the containers (the blob recovery never sees them); Put Block List streams the listed
//! blocks, in order, into an ordinary blob write and removes the staging directory. Staged
//! blocks nobody committed are removed after 7 days at open, as Blob Storage discards
//! uncommitted blocks.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use futures::StreamExt;
use tokio_util::io::ReaderStream;

use super::blobs;
use super::io_error;
use crate::store::{ByteStream, StoreError, StoreResult};

/// Blob Storage's limit on a block id, decoded.
const MAX_BLOCK_ID_BYTES: usize = 64;
/// How long uncommitted blocks are kept.
const KEEP_UNCOMMITTED: Duration = Duration::from_secs(7 * 24 * 3600);

/// The directory holding blob `name`'s staged blocks.
pub(super) fn staging_dir(blocks_root: &Path, container: &str, name: &str) -> PathBuf {
    blocks_root.join(container).join(name)
}

/// A block id as the file it is staged in: base64 (as sent), at most 64 bytes decoded.
pub(super) fn block_file(block_id: &str) -> StoreResult<String> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(block_id)
        .map_err(|_| StoreError::Invalid("the block id is not base64".into()))?;
    if decoded.is_empty() || decoded.len() > MAX_BLOCK_ID_BYTES {
        return Err(StoreError::Invalid(format!(
            "a block id holds 1 to {MAX_BLOCK_ID_BYTES} bytes"
        )));
    }
    Ok(hex::encode(decoded))
}

/// Stages one block from `body` (at most `max_bytes`); a block staged again replaces the old.
pub(super) async fn stage(
    blocks_root: &Path,
    container: &str,
    name: &str,
    block_id: &str,
    body: ByteStream,
    max_bytes: Option<u64>,
) -> StoreResult<()> {
    let file = block_file(block_id)?;
    let dir = staging_dir(blocks_root, container, name);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| io_error("create", &dir, e))?;
    blobs::write_temp(&dir, body, max_bytes)
        .await?
        .persist_as(&dir.join(file))
}

/// The listed blocks, in order, as one stream; `Invalid` if one was never staged.
pub(super) fn concatenate(
    blocks_root: &Path,
    container: &str,
    name: &str,
    block_ids: &[String],
) -> StoreResult<ByteStream> {
    let dir = staging_dir(blocks_root, container, name);
    let mut paths = Vec::with_capacity(block_ids.len());
    for id in block_ids {
        let path = dir.join(block_file(id)?);
        if !path.is_file() {
            return Err(StoreError::Invalid(format!(
                "block {id:?} was never staged"
            )));
        }
        paths.push(path);
    }
    let stream = futures::stream::iter(paths)
        .then(|path| async move {
            match tokio::fs::File::open(&path).await {
                Ok(file) => ReaderStream::with_capacity(file, 256 * 1024)
                    .map(|chunk| chunk.map_err(Into::into))
                    .boxed(),
                Err(e) => futures::stream::once(async move { Err(e.into()) }).boxed(),
            }
        })
        .flatten();
    Ok(Box::pin(stream))
}

/// Removes blob `name`'s staged blocks (after its block list committed).
pub(super) fn discard(blocks_root: &Path, container: &str, name: &str) {
    let dir = staging_dir(blocks_root, container, name);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %dir.display(), error = %e, "could not remove staged blocks");
        }
    }
}

/// Removes staging directories untouched for 7 days. Best effort: a failure is logged.
pub(super) fn expire(blocks_root: &Path) {
    let Ok(containers) = std::fs::read_dir(blocks_root) else {
        return;
    };
    let now = SystemTime::now();
    for container in containers.flatten() {
        let Ok(blobs) = std::fs::read_dir(container.path()) else {
            continue;
        };
        for blob in blobs.flatten() {
            let old = blob
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > KEEP_UNCOMMITTED);
            if old {
                if let Err(e) = std::fs::remove_dir_all(blob.path()) {
                    tracing::warn!(path = %blob.path().display(), error = %e, "could not remove expired blocks");
                }
            }
        }
    }
}

/// The block ids of a Put Block List body, in order: the text of each `<Latest>`,
/// `<Uncommitted>` or `<Committed>` element of `<BlockList>` (all staged here: the embedded
/// store keeps no committed blocks apart from the blob itself).
pub fn parse_block_list(xml: &str) -> StoreResult<Vec<String>> {
    let invalid = |why: &str| StoreError::Invalid(format!("the block list {why}"));
    let start = xml
        .find("<BlockList>")
        .ok_or_else(|| invalid("has no <BlockList>"))?;
    let end = xml
        .rfind("</BlockList>")
        .ok_or_else(|| invalid("is not closed"))?;
    let mut rest = xml
        .get(start + "<BlockList>".len()..end)
        .ok_or_else(|| invalid("is malformed"))?;
    let mut ids = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let tag = ["Latest", "Uncommitted", "Committed"]
            .into_iter()
            .find(|t| rest.starts_with(&format!("<{t}>")))
            .ok_or_else(|| invalid("holds something other than block ids"))?;
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        let body_end = rest
            .find(&close)
            .ok_or_else(|| invalid("has an unclosed element"))?;
        let id = rest
            .get(open.len()..body_end)
            .ok_or_else(|| invalid("is malformed"))?
            .trim();
        ids.push(id.to_owned());
        rest = rest
            .get(body_end + close.len()..)
            .ok_or_else(|| invalid("is malformed"))?;
    }
    if ids.is_empty() {
        return Err(invalid("lists no block"));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_list_as_the_sdks_send_it_parses_in_order() {
        let xml = "<?xml version='1.0' encoding='utf-8'?>\n<BlockList><Latest>QUFB</Latest>\
                   <Uncommitted>QkJC</Uncommitted> <Committed>Q0ND</Committed></BlockList>";
        assert_eq!(
            parse_block_list(xml).unwrap_or_default(),
            vec!["QUFB", "QkJC", "Q0ND"]
        );
        for bad in [
            "",
            "<BlockList></BlockList>",
            "<BlockList><Latest>QUFB</BlockList>",
            "<BlockList><Other>x</Other></BlockList>",
        ] {
            assert!(parse_block_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn block_ids_are_base64_of_at_most_64_bytes() {
        assert_eq!(block_file("QUFB").ok().as_deref(), Some("414141"));
        assert!(block_file("not base64!").is_err());
        assert!(block_file("").is_err());
        let long = base64::engine::general_purpose::STANDARD.encode([1u8; 65]);
        assert!(block_file(&long).is_err());
    }
}
