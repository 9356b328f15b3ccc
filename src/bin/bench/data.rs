//! Test data: big files on disk, small text files, and the blob trigger's base64 envelope,
//! generated so that the benchmark never holds a whole payload in memory.

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use rand::{RngCore, SeedableRng};
use serde_json::Value;

use file_approver::store::{BoxError, ByteStream, ReceivedMessage};

use crate::error::{IoContext, Result};

/// Pseudo-random bytes are repeated in blocks of this size: incompressible enough, and
/// generating them is not what is measured.
const PATTERN_BYTES: usize = 3 * 1024 * 1024;

fn pattern(seed: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; PATTERN_BYTES];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

/// Writes `size` pseudo-random bytes to `path` and flushes them to disk, so that the
/// measurements that follow do not pay for this write-back.
pub fn write_random_file(path: &Path, size: u64) -> Result<()> {
    let block = pattern(42);
    let file = std::fs::File::create(path).context(|| format!("create {}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n])
            .context(|| format!("write {}", path.display()))?;
        left -= n as u64;
    }
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .context(|| format!("flush {}", path.display()))?;
    file.sync_all()
        .context(|| format!("sync {}", path.display()))?;
    Ok(())
}

/// A file as a streamed request body.
pub async fn file_body(path: &Path) -> Result<reqwest::Body> {
    let file = tokio::fs::File::open(path)
        .await
        .context(|| format!("open {}", path.display()))?;
    Ok(reqwest::Body::wrap_stream(
        tokio_util::io::ReaderStream::with_capacity(file, 1 << 20),
    ))
}

/// A file as the storage layer's byte stream.
pub async fn file_stream(path: &Path) -> Result<ByteStream> {
    let file = tokio::fs::File::open(path)
        .await
        .context(|| format!("open {}", path.display()))?;
    Ok(Box::pin(
        tokio_util::io::ReaderStream::with_capacity(file, 1 << 20)
            .map_err(|e| -> BoxError { Box::new(e) }),
    ))
}

/// A small text file (4 KiB of numbered lines), different for each `n`.
pub fn text_file(n: usize, size: usize) -> Bytes {
    let mut text = String::with_capacity(size + 64);
    let mut line = 0;
    while text.len() < size {
        text.push_str(&format!(
            "file {n} line {line}: the quick brown fox jumps over the lazy dog\n"
        ));
        line += 1;
    }
    text.truncate(size);
    Bytes::from(text)
}

/// The length of `raw` bytes once base64-encoded (with padding).
pub fn base64_len(raw: u64) -> u64 {
    raw.div_ceil(3) * 4
}

/// `raw` pseudo-random bytes, base64-encoded chunk by chunk as the stream is read. Every chunk
/// but the last holds a multiple of 3 bytes, so the concatenation is one valid encoding.
pub fn base64_stream(raw: u64) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let block = Bytes::from(pattern(7));
    let chunks = raw.div_ceil(PATTERN_BYTES as u64);
    futures::stream::iter(0..chunks).map(move |i| {
        let start = i * PATTERN_BYTES as u64;
        let n = (raw - start).min(PATTERN_BYTES as u64) as usize;
        let encoded = base64::engine::general_purpose::STANDARD.encode(&block[..n]);
        Ok(Bytes::from(encoded))
    })
}

/// The blob trigger invocation the Functions host would send for blob `files/{id}`, split
/// around where the base64 blob goes: `(before, after)`.
pub fn trigger_envelope(id: &str, raw_size: u64) -> Result<(String, String)> {
    const PLACEHOLDER: &str = "BENCH-BLOB-PLACEHOLDER";
    let mut envelope: Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/b-blob-orchestrator.request.json"
    ))?;
    envelope["Data"]["blob"] = Value::String(PLACEHOLDER.into());
    // Top-level metadata strings arrive JSON-encoded twice (the host's own quirk).
    envelope["Metadata"]["id"] = Value::String(format!("\"{id}\""));
    envelope["Metadata"]["Uri"] = Value::String(format!(
        "\"http://127.0.0.1:10000/devstoreaccount1/files/{id}\""
    ));
    envelope["Metadata"]["Properties"]["ContentLength"] = Value::from(raw_size);
    envelope["Metadata"]["Properties"]["ContentType"] = Value::from("application/octet-stream");
    let text = serde_json::to_string(&envelope)?;
    let quoted = format!("\"{PLACEHOLDER}\"");
    match text.split_once(&quoted) {
        Some((before, after)) => Ok((format!("{before}\""), format!("\"{after}"))),
        None => crate::error::failed("the fixture lost its blob placeholder"),
    }
}

/// A queue-trigger invocation of `work/` as the Functions host shapes it (the library's one
/// builder, which the tests' host harness uses too).
pub fn work_invocation(message: &ReceivedMessage) -> String {
    file_approver::functions::invocation::host_queue_invocation(
        message,
        &message.text,
        "work",
        chrono::Utc::now(),
    )
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_streamed_base64_decodes_to_the_requested_size() {
        let raw = PATTERN_BYTES as u64 * 2 + 1001;
        let chunks: Vec<Bytes> = base64_stream(raw).try_collect().await.expect("stream");
        let text: Vec<u8> = chunks.concat();
        assert_eq!(text.len() as u64, base64_len(raw));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&text)
            .expect("valid base64");
        assert_eq!(decoded.len() as u64, raw);
    }

    #[test]
    fn the_envelope_is_json_once_the_blob_is_put_back() {
        let (before, after) =
            trigger_envelope("3f1c9a4e-0000-4000-8000-000000000000", 3).expect("envelope");
        let whole = format!("{before}QUJD{after}");
        let value: Value = serde_json::from_str(&whole).expect("json");
        assert_eq!(value["Data"]["blob"], "QUJD");
        assert_eq!(
            value["Metadata"]["id"],
            "\"3f1c9a4e-0000-4000-8000-000000000000\""
        );
    }

    #[test]
    fn text_files_have_the_asked_size() {
        assert_eq!(text_file(3, 4096).len(), 4096);
    }
}
