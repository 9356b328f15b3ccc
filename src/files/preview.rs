//! What a reviewer may look at before deciding: the first part of a text file, or a small
//! raster image. Only kinds a browser shows without running anything: never SVG or HTML (they
//! carry script), never a type the uploader merely declared — the bytes decide.

use bytes::Bytes;

use super::view::FileView;
use super::FilesError;
use crate::domain::{FileId, Refusal, Stage};
use crate::store::{BlobAt, ByteStream, StoreError};

/// Images are shown whole or not at all (a cut image does not decode).
pub const MAX_IMAGE_BYTES: u64 = 4 * 1024 * 1024;
/// Text is shown up to this many bytes, cut at a character boundary.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// A preview, ready to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    /// `image/png`, `image/jpeg`, `image/gif`, `image/webp` or `text/plain; charset=utf-8`.
    pub media_type: &'static str,
    pub bytes: Bytes,
    /// Only the first [`MAX_TEXT_BYTES`] of a longer text.
    pub truncated: bool,
}

/// What the first bytes of a file say it is, as far as previews go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Image(&'static str),
    /// UTF-8 text; `valid` bytes of the prefix are whole characters.
    Text {
        valid: usize,
    },
}

/// Raster images by their magic bytes, or UTF-8 text without NUL (a cut at the end of
/// `prefix` may split a character: `complete` says whether `prefix` is the whole file).
pub fn kind(prefix: &[u8], complete: bool) -> Option<Kind> {
    if let Some(found) = infer::get(prefix) {
        match found.mime_type() {
            m @ ("image/png" | "image/jpeg" | "image/gif" | "image/webp") => {
                return Some(Kind::Image(m))
            }
            // HTML, XML, scripts: text, shown as such below.
            _ if found.matcher_type() == infer::MatcherType::Text => {}
            _ => return None,
        }
    }
    let valid = text_prefix_len(prefix, complete)?;
    (valid > 0 || prefix.is_empty()).then_some(Kind::Text { valid })
}

/// The length of the valid UTF-8 text at the start of `prefix`, or `None` when it is not text
/// (invalid UTF-8 before the end, or a NUL byte).
pub fn text_prefix_len(prefix: &[u8], complete: bool) -> Option<usize> {
    if prefix.contains(&0) {
        return None;
    }
    match std::str::from_utf8(prefix) {
        Ok(_) => Some(prefix.len()),
        // Only a character cut by the end of a partial read is forgiven.
        Err(e) if !complete && e.error_len().is_none() => Some(e.valid_up_to()),
        Err(_) => None,
    }
}

/// The preview use case: the pure rule above applied to the file's bytes.
impl super::Files {
    /// The first part of a text file, or a small raster image, for a reviewer to look at
    /// before deciding ([`preview`]): the bytes, not the declared type, say which. They are
    /// the bytes the workflow pinned when it started, the ones scanned, analysed and
    /// downloaded. `version` names an earlier version (what changed since), while its bytes
    /// are kept; `None` is the version under review.
    pub async fn preview(&self, id: FileId, version: Option<u32>) -> Result<Preview, FilesError> {
        let view = self.load(id).await?;
        // Nobody looks at bytes a scanner has not (with a scanner configured), nor at bytes
        // it blocked.
        let unscanned = match &view {
            FileView::Workflow { summary, .. } => {
                summary.file.scan.is_some() && summary.scan.is_none()
            }
            FileView::Uploaded { .. } => self.policy.scan.is_some(),
        };
        let stage = view.stage();
        if unscanned || stage == Stage::Blocked {
            return Err(FilesError::Refused(Refusal::WrongStage {
                message: format!(
                    "file {id} is {}: no preview before a malware scan has passed it",
                    stage.describe()
                ),
                current: stage,
            }));
        }
        let name = view.blob_name();
        let earlier = match (version, &view) {
            (None, _) => None,
            (Some(n), FileView::Workflow { summary, .. }) => Some(
                summary
                    .versions
                    .iter()
                    .find(|v| v.number == n)
                    .cloned()
                    .ok_or_else(|| no_such_version(id, n, summary.file.version))?,
            ),
            (Some(1), FileView::Uploaded { .. }) => None,
            (Some(n), FileView::Uploaded { .. }) => return Err(no_such_version(id, n, 1)),
        };
        let bytes = match &earlier {
            Some(v) => BlobAt {
                container: &v.blob.container,
                name: &v.blob.name,
                snapshot: v.pinned.as_deref(),
            },
            None => BlobAt {
                container: view.container(),
                name: &name,
                snapshot: view.snapshot(),
            },
        };
        let head_len = MAX_TEXT_BYTES as u64 + 4;
        let head = match self.store.read_blob(bytes, Some(0..head_len)).await {
            Ok(read) => read,
            // Not arrived yet, or already deleted (withdrawn, retention).
            Err(StoreError::NotFound) => {
                return Err(FilesError::Refused(Refusal::NoPreview(format!(
                    "file {id} has no bytes to show"
                ))))
            }
            Err(e) => return Err(e.into()),
        };
        let size = head.properties.size;
        let prefix = collect(head.body).await?;
        let complete = prefix.len() as u64 >= size;
        match kind(&prefix, complete) {
            Some(Kind::Image(media_type)) if size <= MAX_IMAGE_BYTES => {
                let bytes = if complete {
                    prefix
                } else {
                    let whole = self.store.read_blob(bytes, Some(0..size)).await?;
                    collect(whole.body).await?
                };
                Ok(Preview {
                    media_type,
                    bytes,
                    truncated: false,
                })
            }
            Some(Kind::Image(_)) => Err(FilesError::Refused(Refusal::NoPreview(format!(
                "the image is larger than {} MiB; read its analysis",
                MAX_IMAGE_BYTES / (1024 * 1024)
            )))),
            Some(Kind::Text { valid }) => {
                let text = std::str::from_utf8(&prefix[..valid]).unwrap_or_default();
                // Cut at a character boundary at or below the cap.
                let mut end = text.len().min(MAX_TEXT_BYTES);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                Ok(Preview {
                    media_type: "text/plain; charset=utf-8",
                    truncated: (end as u64) < size,
                    bytes: prefix.slice(..end),
                })
            }
            None => Err(FilesError::Refused(Refusal::NoPreview(
                "only text and PNG, JPEG, GIF or WebP images have a preview".into(),
            ))),
        }
    }
}

/// A short blob read, whole. A stream that breaks while storage answers is storage being
/// unavailable: the reader may try again.
async fn collect(mut body: ByteStream) -> Result<bytes::Bytes, FilesError> {
    use futures::TryStreamExt;
    let mut all = bytes::BytesMut::new();
    while let Some(chunk) = body.try_next().await.map_err(StoreError::Unavailable)? {
        all.extend_from_slice(&chunk);
    }
    Ok(all.freeze())
}

fn no_such_version(id: FileId, asked: u32, current: u32) -> FilesError {
    FilesError::Refused(Refusal::NoPreview(format!(
        "file {id} has no version {asked}: its versions are 1 to {current}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] =
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x00\x00\x00\x00";

    #[test]
    fn raster_images_are_shown_by_their_bytes() {
        assert_eq!(kind(PNG, true), Some(Kind::Image("image/png")));
        assert_eq!(
            kind(b"GIF89a\x01\x00\x01\x00", true),
            Some(Kind::Image("image/gif"))
        );
    }

    #[test]
    fn markup_and_script_are_text_never_a_page() {
        // SVG and HTML are text to a preview: shown as characters, never rendered.
        let svg = b"<svg onload=alert(1)></svg>";
        assert_eq!(kind(svg, true), Some(Kind::Text { valid: svg.len() }));
        let html = b"<!doctype html><script>x</script>";
        assert_eq!(kind(html, true), Some(Kind::Text { valid: html.len() }));
    }

    #[test]
    fn binary_files_have_no_preview() {
        assert_eq!(kind(b"PK\x03\x04\x14\x00\x00\x00", true), None);
        assert_eq!(kind(b"abc\x00def", true), None);
        assert_eq!(kind(b"\xff\xfe\xfd", true), None);
        assert_eq!(kind(b"%PDF-1.7\n", true), None);
    }

    #[test]
    fn a_character_cut_by_a_partial_read_is_forgiven_only_at_the_end() {
        let text = "héllo".as_bytes();
        let cut = &text[..2];
        assert_eq!(text_prefix_len(cut, false), Some(1));
        assert_eq!(text_prefix_len(cut, true), None);
        assert_eq!(text_prefix_len(b"a\xffb", false), None);
    }
}
