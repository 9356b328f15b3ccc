//! The analysis activity's pure core: one streaming pass over a file's bytes that gathers the
//! facts a reviewer sees before approving download (API.md, "Analysis").
//!
//! [`Analyzer`] is fed chunk by chunk and holds bounded memory whatever the file size: the
//! SHA-256 state, a [`SNIFF_PREFIX_BYTES`] prefix for magic-byte and image-header sniffing, at
//! most 3 bytes of an unfinished UTF-8 sequence, and a few counters. The result depends only on
//! the bytes, never on how they were chunked, so the same file always yields the same
//! [`Analysis`] (byte-for-byte the same JSON, apart from `analyzedTime`, which the caller takes
//! from the injected clock).
//!
//! # Rules
//!
//! - `detectedContentType`: the content's magic bytes (crate `infer`, applied to the prefix), else
//!   `text/plain` when the whole content is valid UTF-8, else `application/octet-stream`.
//!   "Text" means UTF-8 (ASCII included): a UTF-16 or Latin-1 file is `application/octet-stream`.
//!   A file can be both magic-detected and text (an HTML page is `text/html` with `isText: true`;
//!   an all-ASCII PDF is `application/pdf` with `isText: true`).
//! - An empty file is valid (empty) UTF-8, so it is `text/plain`, `isText: true`, 0 lines and
//!   0 words; its `contentTypeMatches` is always `true`, since zero bytes contradict no
//!   declaration.
//! - `lineCount`: the number of `\n` bytes, plus one when the content is non-empty and does not
//!   end with `\n` (so `"a\nb"` and `"a\nb\n"` both have 2 lines).
//! - `wordCount`: maximal runs of bytes that are not ASCII whitespace (space, `\t`, `\n`, `\v`,
//!   `\f`, `\r`), like `wc -w` in the C locale. Unicode spaces such as U+00A0 do not split words:
//!   that keeps the count byte-oriented, fast and independent of any locale.
//! - `width`/`height`: for `image/*` content only, read by crate `imagesize` from the prefix. A
//!   JPEG whose frame header sits beyond the prefix (metadata segments larger than
//!   [`SNIFF_PREFIX_BYTES`], which is rare: EXIF is capped at 64 KiB per segment) gets no
//!   dimensions rather than a guess.
//! - `contentTypeMatches`: see [`content_types_match`].

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::archive::ArchiveFacts;
use crate::store::{BoxError, ByteStream};

/// Bumped whenever a rule above changes, so stored analyses say which rules produced them.
pub const ANALYZER_VERSION: &str = "2";

/// How much of the start of the content is kept for sniffing. 256 KiB leaves room for JPEG
/// metadata segments (EXIF, ICC profile, XMP) before the frame header that holds the dimensions,
/// and lets `infer` see far enough into ZIP containers to tell DOCX/XLSX/PPTX apart.
pub const SNIFF_PREFIX_BYTES: usize = 256 * 1024;

/// Input is processed in blocks of this size, so the text passes read bytes the hasher has just
/// pulled into the CPU cache instead of going back to memory for a multi-megabyte chunk.
const BLOCK_BYTES: usize = 64 * 1024;

/// Chunks waiting between the stream reader and the hashing thread in [`analyze_stream`]. One is
/// enough to overlap reading with hashing (one chunk hashed while the next is read), and the
/// fewest keeps each chunk in cache between the two: over a 1 GiB file, a depth of 1 hashed at
/// the speed of bare `sha2` (≈1500 MiB/s), 2 at ≈1310 and 4 at ≈1220 on 2 shared cores: the
/// `analyze_stream` and `bare sha2` lines of `throughput_report` in tests/analysis.rs, rerun
/// with this constant changed (and the analysis row of `scripts/bench`).
const PIPELINE_DEPTH: usize = 1;

/// What the analysis activity gathers about a file's contents. Serialized exactly as API.md's
/// `Analysis`; absent facts are left out rather than written as `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    pub detected_content_type: String,
    pub content_type_matches: bool,
    pub is_text: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub word_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    pub analyzed_time: DateTime<Utc>,
    pub analyzer_version: String,
    /// For a zip (and the formats built on it): what its central directory lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveFacts>,
}

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// The content stream failed; the analysis is incomplete and must be retried.
    #[error("reading the content failed after {bytes_read} bytes")]
    Read {
        bytes_read: u64,
        #[source]
        source: BoxError,
    },
    /// The hashing thread died (it cannot panic on any input, so this means a bug).
    #[error("the analysis worker failed")]
    Worker(#[source] BoxError),
}

/// The streaming analysis state. Feed it with [`Analyzer::update`], in chunks of any size,
/// then call [`Analyzer::finish`].
#[derive(Clone)]
pub struct Analyzer {
    size: u64,
    hasher: Sha256,
    prefix: Vec<u8>,
    utf8: Utf8Validator,
    text: TextCounter,
    last_byte: Option<u8>,
}

impl Default for Analyzer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer")
            .field("size", &self.size)
            .field("is_text_so_far", &self.utf8.valid)
            .finish_non_exhaustive()
    }
}

impl Analyzer {
    pub fn new() -> Self {
        Analyzer {
            size: 0,
            hasher: Sha256::new(),
            prefix: Vec::new(),
            utf8: Utf8Validator::default(),
            text: TextCounter::default(),
            last_byte: None,
        }
    }

    /// Bytes seen so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn update(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.prefix.len() < SNIFF_PREFIX_BYTES {
            let take = (SNIFF_PREFIX_BYTES - self.prefix.len()).min(data.len());
            self.prefix.extend_from_slice(&data[..take]);
        }
        for block in data.chunks(BLOCK_BYTES) {
            self.hasher.update(block);
            // Once the content is known not to be text, its lines and words are never reported,
            // so the per-byte text work stops.
            if self.utf8.valid {
                self.utf8.update(block);
                self.text.update(block);
            }
        }
        self.size += data.len() as u64;
        self.last_byte = data.last().copied();
    }

    /// The analysis of everything fed so far, compared against the type the uploader declared
    /// (`None`: nothing was declared, so nothing can mismatch). `now` comes from the injected
    /// clock.
    pub fn finish(self, declared_content_type: Option<&str>, now: DateTime<Utc>) -> Analysis {
        let sha256 = hex::encode(self.hasher.finalize());
        let is_text = self.utf8.is_complete_and_valid();
        let magic = infer::get(&self.prefix).map(|kind| kind.mime_type());
        let detected = match magic {
            Some(mime) => mime,
            None if is_text => "text/plain",
            None => "application/octet-stream",
        };
        let dimensions = if detected.starts_with("image/") {
            imagesize::blob_size(&self.prefix)
                .ok()
                .map(|d| (d.width as u64, d.height as u64))
        } else {
            None
        };
        let (line_count, word_count) = if is_text {
            let unterminated = self.last_byte.is_some_and(|b| b != b'\n');
            (
                Some(self.text.newlines + u64::from(unterminated)),
                Some(self.text.words),
            )
        } else {
            (None, None)
        };
        Analysis {
            size: self.size,
            sha256,
            detected_content_type: detected.to_owned(),
            content_type_matches: self.size == 0
                || declared_content_type.is_none_or(|d| content_types_match(d, detected)),
            is_text,
            line_count,
            word_count,
            width: dimensions.map(|(w, _)| w),
            height: dimensions.map(|(_, h)| h),
            // Whole seconds, like every other time the API shows.
            analyzed_time: chrono::SubsecRound::trunc_subsecs(now, 0),
            analyzer_version: ANALYZER_VERSION.to_owned(),
            // Read by the activity from the archive's end (`archive::facts_for`).
            archive: None,
        }
    }
}

/// Reads `stream` to its end and analyzes it.
///
/// The hashing runs on a blocking-pool thread fed through a small bounded channel: hashing a
/// large file takes hundreds of milliseconds of CPU, which must not stall the async workers that
/// answer the host's health probes, and reading the next chunks overlaps with hashing this one.
pub async fn analyze_stream(
    mut stream: ByteStream,
    declared_content_type: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Analysis, AnalysisError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(PIPELINE_DEPTH);
    let worker = tokio::task::spawn_blocking(move || {
        let mut analyzer = Analyzer::new();
        while let Some(chunk) = rx.blocking_recv() {
            analyzer.update(&chunk);
        }
        analyzer
    });
    let mut bytes_read = 0u64;
    while let Some(chunk) = stream.next().await {
        // On error `tx` is dropped on return, which ends the worker's loop; its result is unused.
        let chunk = chunk.map_err(|source| AnalysisError::Read { bytes_read, source })?;
        bytes_read += chunk.len() as u64;
        if tx.send(chunk).await.is_err() {
            break;
        }
    }
    drop(tx);
    let analyzer = worker
        .await
        .map_err(|e| AnalysisError::Worker(Box::new(e)))?;
    Ok(analyzer.finish(declared_content_type, now))
}

/// Whether the declared content type agrees with the detected one.
///
/// Only the essence counts (`type/subtype`, case-insensitive; parameters such as
/// `; charset=utf-8` are ignored), after folding common aliases (`image/jpg` → `image/jpeg`,
/// `application/x-zip-compressed` → `application/zip`, ...). Beyond equality:
///
/// - Text detection cannot tell CSV from JSON or Markdown, so when the detected type is textual
///   (`text/plain`, or `text/html`, `text/xml`, `text/x-shellscript` from magic), any textual
///   declared type matches: `text/*`, `application/json`, `application/xml`, `*+json`, `*+xml`
///   (e.g. `image/svg+xml`), `application/javascript`, YAML, TOML, SQL, NDJSON and similar.
/// - A detected ZIP container matches the ZIP-based formats (OOXML, OpenDocument, EPUB, JAR, APK,
///   `*+zip`), and a detected OLE compound file matches the legacy Office types, because magic
///   bytes alone cannot always see inside the container.
/// - Content detected as `application/octet-stream` (no known magic, not UTF-8) matches a declared
///   binary type the sniffer cannot recognise (`application/x-custom`, `model/gltf-binary`):
///   nothing contradicts it. It does not match a type the sniffer would have recognised
///   (`image/png`) or a textual one (the content is not UTF-8).
/// - A declared `application/octet-stream` ("unknown binary") matches only content detected as
///   `application/octet-stream`: the reviewer should see that a file uploaded without a type is,
///   say, a PDF.
pub fn content_types_match(declared: &str, detected: &str) -> bool {
    let (declared, detected) = (essence(declared), essence(detected));
    let (declared, detected) = (canonical(&declared), canonical(&detected));
    if declared == detected {
        return true;
    }
    if detected.starts_with("text/") {
        return is_textual(declared);
    }
    match detected {
        "application/octet-stream" => {
            declared.contains('/') && !is_textual(declared) && !infer::is_mime_supported(declared)
        }
        "application/zip" => is_zip_based(declared),
        "application/x-ole-storage" => is_ole_based(declared),
        _ => false,
    }
}

fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn canonical(essence: &str) -> &str {
    match essence {
        "image/jpg" | "image/pjpeg" => "image/jpeg",
        "image/x-png" => "image/png",
        "image/x-ms-bmp" | "image/x-bmp" => "image/bmp",
        "image/x-icon" | "image/ico" => "image/vnd.microsoft.icon",
        "application/x-zip-compressed" | "application/x-zip" => "application/zip",
        "application/x-gzip" | "application/gzip-compressed" => "application/gzip",
        "application/x-pdf" => "application/pdf",
        "application/x-rar-compressed" | "application/x-rar" => "application/vnd.rar",
        "application/x-msdownload" | "application/x-dosexec" | "application/x-msdos-program" => {
            "application/vnd.microsoft.portable-executable"
        }
        "application/x-sqlite3" => "application/vnd.sqlite3",
        "application/x-bzip" => "application/x-bzip2",
        "application/x-zstd" => "application/zstd",
        "audio/mp3" | "audio/x-mp3" | "audio/x-mpeg" => "audio/mpeg",
        "audio/wav" | "audio/wave" | "audio/vnd.wave" => "audio/x-wav",
        "audio/flac" => "audio/x-flac",
        "audio/aiff" => "audio/x-aiff",
        "audio/x-m4a" | "audio/mp4" => "audio/m4a",
        "audio/x-midi" | "audio/mid" => "audio/midi",
        "video/avi" | "video/msvideo" => "video/x-msvideo",
        "video/matroska" => "video/x-matroska",
        "font/woff" => "application/font-woff",
        "font/ttf" | "font/otf" | "font/sfnt" => "application/font-sfnt",
        other => other,
    }
}

fn is_textual(essence: &str) -> bool {
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence,
            "application/json"
                | "application/xml"
                | "application/javascript"
                | "application/x-javascript"
                | "application/ecmascript"
                | "application/x-sh"
                | "application/x-shellscript"
                | "application/yaml"
                | "application/x-yaml"
                | "application/toml"
                | "application/sql"
                | "application/csv"
                | "application/x-ndjson"
                | "application/ndjson"
                | "application/jsonl"
                | "application/graphql"
                | "application/x-www-form-urlencoded"
                | "application/x-tex"
                | "application/x-latex"
                | "application/x-httpd-php"
                | "application/x-python"
                | "application/x-perl"
                | "application/x-ruby"
        )
}

fn is_zip_based(essence: &str) -> bool {
    essence.starts_with("application/vnd.openxmlformats-officedocument.")
        || essence.starts_with("application/vnd.oasis.opendocument.")
        || (essence.starts_with("application/vnd.ms-") && essence.ends_with(".macroenabled.12"))
        || essence.ends_with("+zip")
        || matches!(
            essence,
            "application/java-archive"
                | "application/x-java-archive"
                | "application/vnd.android.package-archive"
                | "application/x-xpinstall"
                | "application/vnd.apple.keynote"
                | "application/vnd.apple.pages"
                | "application/vnd.apple.numbers"
        )
}

fn is_ole_based(essence: &str) -> bool {
    matches!(
        essence,
        "application/msword"
            | "application/vnd.ms-excel"
            | "application/vnd.ms-powerpoint"
            | "application/vnd.ms-outlook"
            | "application/vnd.visio"
            | "application/x-msi"
            | "application/vnd.ms-project"
    )
}

/// Incremental UTF-8 validation: `std::str::from_utf8` on each block (it has an ASCII fast
/// path), carrying an incomplete sequence at a block's end over to the next block.
#[derive(Debug, Clone)]
struct Utf8Validator {
    valid: bool,
    pending: [u8; 4],
    pending_len: usize,
}

impl Default for Utf8Validator {
    fn default() -> Self {
        Utf8Validator {
            valid: true,
            pending: [0; 4],
            pending_len: 0,
        }
    }
}

impl Utf8Validator {
    fn update(&mut self, mut data: &[u8]) {
        if !self.valid {
            return;
        }
        if self.pending_len > 0 {
            let needed = utf8_sequence_len(self.pending[0]);
            let take = (needed - self.pending_len).min(data.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&data[..take]);
            self.pending_len += take;
            data = &data[take..];
            if self.pending_len < needed {
                return;
            }
            if std::str::from_utf8(&self.pending[..needed]).is_err() {
                self.valid = false;
                return;
            }
            self.pending_len = 0;
        }
        if let Err(e) = std::str::from_utf8(data) {
            match e.error_len() {
                Some(_) => self.valid = false,
                // `None` means the data ends inside a sequence that may still be completed.
                None => {
                    let tail = &data[e.valid_up_to()..];
                    self.pending[..tail.len()].copy_from_slice(tail);
                    self.pending_len = tail.len();
                }
            }
        }
    }

    fn is_complete_and_valid(&self) -> bool {
        self.valid && self.pending_len == 0
    }
}

/// The length of the sequence a lead byte starts. Only called on the lead byte of an incomplete
/// sequence that `from_utf8` accepted as a possible prefix, so it is one of 0xC2..=0xF4.
fn utf8_sequence_len(lead: u8) -> usize {
    match lead {
        0x00..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

/// Newline and word counting, carrying "the previous byte was whitespace" across blocks.
#[derive(Debug, Clone)]
struct TextCounter {
    newlines: u64,
    words: u64,
    after_space: bool,
}

impl Default for TextCounter {
    fn default() -> Self {
        TextCounter {
            newlines: 0,
            words: 0,
            after_space: true,
        }
    }
}

impl TextCounter {
    fn update(&mut self, data: &[u8]) {
        let (Some(&first), Some(&last)) = (data.first(), data.last()) else {
            return;
        };
        self.newlines += memchr::memchr_iter(b'\n', data).count() as u64;
        self.words += u64::from(self.after_space && !is_space(first));
        self.words += count_word_starts_after_first(data);
        self.after_space = is_space(last);
    }
}

/// ASCII whitespace as C's `isspace` defines it (which, unlike `u8::is_ascii_whitespace`,
/// includes vertical tab). Branch-free so the counting loop vectorizes.
#[inline(always)]
fn is_space(b: u8) -> bool {
    (b == b' ') | (b.wrapping_sub(b'\t') < 5)
}

/// How many positions `i >= 1` start a word (`data[i-1]` is a space, `data[i]` is not).
///
/// Summed per run of at most 255 pairs into a `u8`, which lets the compiler vectorize the loop
/// with byte lanes instead of widening every comparison to 64 bits.
fn count_word_starts_after_first(data: &[u8]) -> u64 {
    const RUN: usize = 224;
    let (Some(previous), Some(current)) = (data.get(..data.len().saturating_sub(1)), data.get(1..))
    else {
        return 0;
    };
    let mut total = 0u64;
    for (prev_run, cur_run) in previous.chunks(RUN).zip(current.chunks(RUN)) {
        let mut run_total = 0u8;
        for (&p, &c) in prev_run.iter().zip(cur_run) {
            run_total = run_total.wrapping_add(u8::from(is_space(p) & !is_space(c)));
        }
        total += u64::from(run_total);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words_naive(data: &[u8]) -> u64 {
        data.split(|&b| is_space(b))
            .filter(|w| !w.is_empty())
            .count() as u64
    }

    #[test]
    fn word_start_counting_agrees_with_splitting_on_whitespace() {
        let samples: [&[u8]; 9] = [
            b"",
            b"a",
            b" ",
            b"one two  three\n",
            b"\t\x0b\x0cx\ry\n",
            b"  leading and trailing  ",
            "héllo wörld ünïcode\u{a0}nbsp".as_bytes(),
            &[b'x'; 1000],
            &[b' '; 1000],
        ];
        for sample in samples {
            let mut counter = TextCounter::default();
            counter.update(sample);
            assert_eq!(counter.words, words_naive(sample), "{sample:?}");
        }
        let long: Vec<u8> = (0..10_000u32)
            .map(|i| if i % 3 == 0 || i % 7 == 0 { b' ' } else { b'w' })
            .collect();
        let mut counter = TextCounter::default();
        counter.update(&long);
        assert_eq!(counter.words, words_naive(&long));
    }

    #[test]
    fn vertical_tab_and_form_feed_are_whitespace_but_nbsp_is_not() {
        assert!(is_space(0x0b));
        assert!(is_space(0x0c));
        assert!(is_space(b'\r'));
        assert!(!is_space(0xa0));
        assert!(!is_space(0x08));
        assert!(!is_space(0x0e));
    }

    #[test]
    fn a_sequence_split_at_every_point_is_still_valid_utf8() {
        let text = "a€b😀c".as_bytes();
        for split in 0..=text.len() {
            let mut v = Utf8Validator::default();
            v.update(&text[..split]);
            v.update(&text[split..]);
            assert!(v.is_complete_and_valid(), "split at {split}");
        }
    }

    #[test]
    fn a_truncated_sequence_at_the_end_is_not_valid_utf8() {
        let mut v = Utf8Validator::default();
        v.update(&"x€".as_bytes()[..3]);
        assert!(v.valid, "still possibly valid mid-stream");
        assert!(!v.is_complete_and_valid());
    }

    #[test]
    fn a_lead_byte_followed_by_ascii_in_the_next_block_is_invalid() {
        let mut v = Utf8Validator::default();
        v.update(&[b'a', 0xE2]);
        v.update(&[0x82, b'b']);
        assert!(!v.valid);
    }

    #[test]
    fn content_type_parameters_and_case_are_ignored() {
        assert!(content_types_match(
            "Text/Plain; charset=UTF-8",
            "text/plain"
        ));
        assert!(content_types_match("IMAGE/JPG", "image/jpeg"));
        assert!(!content_types_match("", "text/plain"));
    }
}
