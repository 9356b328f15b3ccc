//! What a zip archive holds, read from its central directory at the end of the file with a
//! couple of ranged reads — never a second pass over the bytes: the entries (name, size,
//! compressed size) up to [`MAX_LISTED`], the encrypted ones, the archives nested in it, and
//! how much it expands (a zip bomb expands by orders of magnitude).
//!
//! Covers PKWARE's APPNOTE as far as the facts need: the end-of-central-directory record
//! (searched for in the last 64 KiB + 22 bytes, since a comment may follow it), its ZIP64
//! locator and record for archives past 4 GiB or 65 535 entries, and central-directory headers
//! with their ZIP64 extra field. Office documents (DOCX, XLSX, ...) are zips too and get the
//! same facts. Anything unreadable yields no facts rather than an error: the scan and the
//! rest of the analysis stand without them.

use serde::{Deserialize, Serialize};

use crate::store::{BlobAt, Storage, StoreError};

/// Entries listed by name; the counts cover them all.
pub const MAX_LISTED: usize = 100;
/// The most of a central directory read: about 20 000 entries of ordinary names.
const MAX_DIRECTORY_BYTES: u64 = 4 * 1024 * 1024;
/// Expanding more than this many times is flagged.
const HIGH_RATIO: u64 = 100;
const EOCD_SIGNATURE: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIGNATURE: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIGNATURE: u32 = 0x0606_4b50;
const HEADER_SIGNATURE: u32 = 0x0201_4b50;
/// Names that are archives themselves.
const ARCHIVE_SUFFIXES: [&str; 12] = [
    ".zip", ".7z", ".rar", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".jar", ".cab", ".iso",
];

/// One entry of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveEntry {
    pub name: String,
    pub size: u64,
    pub compressed_size: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
}

/// What a reviewer learns about an archive without opening it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveFacts {
    /// `zip`.
    pub format: String,
    pub entry_count: u64,
    /// The first [`MAX_LISTED`] entries, in the archive's order.
    pub entries: Vec<ArchiveEntry>,
    /// More entries exist than are listed (or than the directory read could hold).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    pub encrypted_entries: u64,
    pub nested_archives: u64,
    /// The entries' sizes, summed: what it expands to.
    pub total_size: u64,
    /// How many times the entries' compressed bytes expand, rounded down.
    pub compression_ratio: u64,
    /// More than 100×: how zip bombs look.
    pub high_compression_ratio: bool,
}

/// Whether `prefix` (the file's first bytes) starts like a zip archive.
pub fn looks_like_zip(prefix: &[u8]) -> bool {
    prefix.starts_with(b"PK\x03\x04") || prefix.starts_with(b"PK\x05\x06")
}

/// Whether content detected as `detected` is a zip container: zip itself, and the formats
/// built on it (Office Open XML, OpenDocument, EPUB, Java archives, ...).
pub fn is_zip_family(detected: &str) -> bool {
    detected == "application/zip"
        || detected.starts_with("application/vnd.openxmlformats")
        || detected.starts_with("application/vnd.oasis.opendocument")
        || matches!(
            detected,
            "application/epub+zip"
                | "application/java-archive"
                | "application/vnd.android.package-archive"
        )
}

/// The archive facts of a file the analysis detected as `detected`, when it is a zip.
pub async fn facts_for(
    store: &dyn Storage,
    blob: BlobAt<'_>,
    size: u64,
    detected: &str,
) -> Result<Option<ArchiveFacts>, StoreError> {
    if size < 22 || !is_zip_family(detected) {
        return Ok(None);
    }
    zip_facts(store, blob, size).await
}

/// The facts of the zip archive stored as `blob` (`size` bytes), or `None` when its
/// directory cannot be read as one.
pub async fn zip_facts(
    store: &dyn Storage,
    blob: BlobAt<'_>,
    size: u64,
) -> Result<Option<ArchiveFacts>, StoreError> {
    let tail_len = size.min(65_535 + 22);
    let tail = read(store, blob, size - tail_len..size).await?;
    let Some(end) = find_end(&tail) else {
        return Ok(None);
    };
    let end = match end.zip64_locator {
        Some(offset) if offset + 56 <= size => {
            let record = read(store, blob, offset..offset + 56).await?;
            match parse_zip64_end(&record) {
                Some(end) => end,
                None => return Ok(None),
            }
        }
        Some(_) => return Ok(None),
        None => end.directory,
    };
    if end
        .offset
        .checked_add(end.size)
        .is_none_or(|stop| stop > size)
    {
        return Ok(None);
    }
    let want = end.size.min(MAX_DIRECTORY_BYTES);
    let directory = read(store, blob, end.offset..end.offset + want).await?;
    Ok(Some(facts(&directory, end.entries, want < end.size, size)))
}

async fn read(
    store: &dyn Storage,
    blob: BlobAt<'_>,
    range: std::ops::Range<u64>,
) -> Result<Vec<u8>, StoreError> {
    use futures::StreamExt;
    let mut read = store.read_blob(blob, Some(range)).await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = read.body.next().await {
        bytes.extend_from_slice(&chunk.map_err(StoreError::Body)?);
    }
    Ok(bytes)
}

/// Where the central directory is, and how many entries it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Directory {
    entries: u64,
    size: u64,
    offset: u64,
}

struct End {
    directory: Directory,
    /// The ZIP64 end record's offset, when the locator says the real values are there.
    zip64_locator: Option<u64>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The end-of-central-directory record, searched for from the end (a comment may follow it).
fn find_end(tail: &[u8]) -> Option<End> {
    let start = (0..=tail.len().checked_sub(22)?)
        .rev()
        .find(|&at| u32_at(tail, at) == Some(EOCD_SIGNATURE))?;
    let entries = u16_at(tail, start + 10)?;
    let size = u32_at(tail, start + 12)?;
    let offset = u32_at(tail, start + 16)?;
    let zip64 = entries == u16::MAX || size == u32::MAX || offset == u32::MAX;
    let zip64_locator = if zip64 {
        let locator = start.checked_sub(20)?;
        (u32_at(tail, locator) == Some(ZIP64_LOCATOR_SIGNATURE))
            .then(|| u64_at(tail, locator + 8))
            .flatten()
    } else {
        None
    };
    Some(End {
        directory: Directory {
            entries: u64::from(entries),
            size: u64::from(size),
            offset: u64::from(offset),
        },
        zip64_locator,
    })
}

fn parse_zip64_end(record: &[u8]) -> Option<Directory> {
    (u32_at(record, 0)? == ZIP64_EOCD_SIGNATURE).then_some(())?;
    Some(Directory {
        entries: u64_at(record, 32)?,
        size: u64_at(record, 40)?,
        offset: u64_at(record, 48)?,
    })
}

/// The facts of a central directory (possibly cut short at `MAX_DIRECTORY_BYTES`).
fn facts(directory: &[u8], declared: u64, cut: bool, file_size: u64) -> ArchiveFacts {
    let mut facts = ArchiveFacts {
        format: "zip".into(),
        entry_count: 0,
        entries: Vec::new(),
        truncated: cut,
        encrypted_entries: 0,
        nested_archives: 0,
        total_size: 0,
        compression_ratio: 0,
        high_compression_ratio: false,
    };
    let mut compressed_total: u64 = 0;
    let mut at = 0usize;
    while let Some(entry) = header(directory, &mut at) {
        facts.entry_count += 1;
        facts.total_size = facts.total_size.saturating_add(entry.size);
        compressed_total = compressed_total.saturating_add(entry.compressed_size);
        facts.encrypted_entries += u64::from(entry.encrypted);
        let lower = entry.name.to_ascii_lowercase();
        if ARCHIVE_SUFFIXES.iter().any(|s| lower.ends_with(s)) {
            facts.nested_archives += 1;
        }
        if facts.entries.len() < MAX_LISTED {
            facts.entries.push(entry);
        }
    }
    // The record's count covers entries a cut read did not reach.
    facts.truncated |= facts.entry_count > MAX_LISTED as u64 || declared > facts.entry_count;
    facts.entry_count = facts.entry_count.max(declared);
    let packed = compressed_total.max(1).min(file_size.max(1));
    facts.compression_ratio = facts.total_size / packed;
    facts.high_compression_ratio = facts.compression_ratio > HIGH_RATIO;
    facts
}

/// One central-directory header at `*at`, moving past it.
fn header(d: &[u8], at: &mut usize) -> Option<ArchiveEntry> {
    let h = *at;
    (u32_at(d, h)? == HEADER_SIGNATURE).then_some(())?;
    let flags = u16_at(d, h + 8)?;
    let mut compressed_size = u64::from(u32_at(d, h + 20)?);
    let mut size = u64::from(u32_at(d, h + 24)?);
    let name_len = usize::from(u16_at(d, h + 28)?);
    let extra_len = usize::from(u16_at(d, h + 30)?);
    let comment_len = usize::from(u16_at(d, h + 32)?);
    let name_at = h + 46;
    let name = d.get(name_at..name_at + name_len)?;
    let extra = d.get(name_at + name_len..name_at + name_len + extra_len)?;
    // ZIP64: the sizes that overflow 32 bits are in extra field 0x0001, in this order.
    if size == u64::from(u32::MAX) || compressed_size == u64::from(u32::MAX) {
        let mut e = 0usize;
        while let (Some(id), Some(len)) = (u16_at(extra, e), u16_at(extra, e + 2)) {
            if id == 1 {
                let mut field = e + 4;
                if size == u64::from(u32::MAX) {
                    size = u64_at(extra, field)?;
                    field += 8;
                }
                if compressed_size == u64::from(u32::MAX) {
                    compressed_size = u64_at(extra, field)?;
                }
                break;
            }
            e += 4 + usize::from(len);
        }
    }
    *at = name_at + name_len + extra_len + comment_len;
    Some(ArchiveEntry {
        name: String::from_utf8_lossy(name).chars().take(300).collect(),
        size,
        compressed_size,
        encrypted: flags & 1 == 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored zip of `entries` (name, bytes, encrypted flag), written by hand.
    fn zip(entries: &[(&str, &[u8], bool)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut directory = Vec::new();
        for (name, bytes, encrypted) in entries {
            let offset = out.len() as u32;
            let flags: u16 = u16::from(*encrypted);
            out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            out.extend_from_slice(&20u16.to_le_bytes());
            out.extend_from_slice(&flags.to_le_bytes());
            out.extend_from_slice(&[0; 10]); // method, time, date, crc (unchecked here)
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(bytes);
            directory.extend_from_slice(&HEADER_SIGNATURE.to_le_bytes());
            directory.extend_from_slice(&20u16.to_le_bytes());
            directory.extend_from_slice(&20u16.to_le_bytes());
            directory.extend_from_slice(&flags.to_le_bytes());
            directory.extend_from_slice(&[0; 10]);
            directory.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            directory.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            directory.extend_from_slice(&(name.len() as u16).to_le_bytes());
            directory.extend_from_slice(&[0; 12]); // extra, comment, disk, attributes
            directory.extend_from_slice(&offset.to_le_bytes());
            directory.extend_from_slice(name.as_bytes());
        }
        let directory_at = out.len() as u32;
        out.extend_from_slice(&directory);
        out.extend_from_slice(&EOCD_SIGNATURE.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(directory.len() as u32).to_le_bytes());
        out.extend_from_slice(&directory_at.to_le_bytes());
        out.extend_from_slice(&3u16.to_le_bytes());
        out.extend_from_slice(b"hi!");
        out
    }

    fn read_all(bytes: &[u8]) -> Option<ArchiveFacts> {
        let end = find_end(bytes)?;
        let d = end.directory;
        let directory = &bytes[d.offset as usize..(d.offset + d.size) as usize];
        Some(facts(directory, d.entries, false, bytes.len() as u64))
    }

    #[test]
    fn entries_encryption_and_nesting_are_read_from_the_directory() {
        let bytes = zip(&[
            ("report.txt", b"numbers", false),
            ("inner.ZIP", b"PK..", false),
            ("secret.bin", b"xxxx", true),
        ]);
        let facts = read_all(&bytes).unwrap();
        assert_eq!(facts.entry_count, 3);
        assert_eq!(facts.entries[0].name, "report.txt");
        assert_eq!(facts.entries[0].size, 7);
        assert_eq!(facts.encrypted_entries, 1);
        assert!(facts.entries[2].encrypted);
        assert_eq!(facts.nested_archives, 1);
        assert_eq!(facts.total_size, 15);
        assert!(!facts.high_compression_ratio);
        assert!(!facts.truncated);
    }

    #[test]
    fn a_huge_expansion_is_flagged() {
        let directory_only = {
            let mut d = Vec::new();
            d.extend_from_slice(&HEADER_SIGNATURE.to_le_bytes());
            d.extend_from_slice(&[0; 16]);
            d.extend_from_slice(&1000u32.to_le_bytes()); // compressed
            d.extend_from_slice(&(1u32 << 30).to_le_bytes()); // 1 GiB expanded
            d.extend_from_slice(&4u16.to_le_bytes());
            d.extend_from_slice(&[0; 16]);
            d.extend_from_slice(b"bomb");
            d
        };
        let facts = facts(&directory_only, 1, false, 2000);
        assert_eq!(facts.compression_ratio, (1u64 << 30) / 1000);
        assert!(facts.high_compression_ratio);
    }

    #[test]
    fn more_entries_than_listed_are_counted_and_marked() {
        let names: Vec<String> = (0..150).map(|i| format!("f{i}.txt")).collect();
        let entries: Vec<(&str, &[u8], bool)> = names
            .iter()
            .map(|n| (n.as_str(), &b"a"[..], false))
            .collect();
        let facts = read_all(&zip(&entries)).unwrap();
        assert_eq!(facts.entry_count, 150);
        assert_eq!(facts.entries.len(), MAX_LISTED);
        assert!(facts.truncated);
    }

    #[test]
    fn what_is_not_a_zip_has_no_end_record() {
        assert!(find_end(b"just some text, not an archive at all....").is_none());
        assert!(find_end(b"PK").is_none());
        assert!(looks_like_zip(b"PK\x03\x04rest"));
        assert!(!looks_like_zip(b"%PDF-1.7"));
    }
}
