//! The related-files index: which files carried the same bytes, and which files one person
//! uploaded, each read with one partition query (never a table scan), newest first.
//!
//! - `related-sha-{sha256}`: one row per analysed version, written by the activity that
//!   analysed it (the scan's pass or the analysis) before it returns. The write is idempotent
//!   (the row key is fixed by the file, its version and its upload time), so a crash between
//!   the write and the turn that records the analysis is repaired by the work queue running the
//!   activity again; a crash before the write, the same way.
//! - `related-by-{uploader}`: one row per upload with a known uploader, written by the upload
//!   itself beside its record, before the bytes; a row whose upload never committed names a
//!   file that does not exist, which a listing skips.
//!
//! Rows carry what a listing shows without another read (id, version, name); the outcome is
//! read from each file when listed, so it is never stale.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::input::FileInput;
use crate::domain::Principal;
use crate::store::{Entity, Storage, StoreError};

/// The table the index rows live in (the files table, beside the records and audits).
pub const RELATED_TABLE: &str = "files";

pub fn by_hash_partition(sha256: &str) -> String {
    format!("related-sha-{sha256}")
}

/// People's names may hold characters a key may not: the partition is a hash of who they are
/// (their stable id where the sign-in gives one, else their name in lower case).
pub fn by_uploader_partition(uploader: &Principal) -> String {
    let who = match uploader.id() {
        Some(id) => format!("id:{id}"),
        None => format!("name:{}", uploader.as_str().to_lowercase()),
    };
    let digest = Sha256::digest(who.as_bytes());
    format!("related-by-{}", &hex::encode(digest)[..32])
}

/// Newest first: row keys sort ascending, so the time is written counting down.
pub fn newest_first(time: DateTime<Utc>) -> String {
    let micros = u64::try_from(time.timestamp_micros()).unwrap_or(0);
    format!("{:020}", u64::MAX - micros)
}

/// The row of `file`'s version under review in the index by hash.
pub fn hash_row(file: &FileInput, sha256: &str) -> Entity {
    Entity::new(
        by_hash_partition(sha256),
        format!(
            "{}-{}-v{}",
            newest_first(file.created_time),
            file.id,
            file.version
        ),
    )
    .with("FileId", file.id.as_str())
    .with("Version", i64::from(file.version))
    .with("Name", file.name.as_str())
}

/// Records that `file`'s version under review holds the bytes `sha256`. Idempotent.
pub async fn record_hash(
    store: &dyn Storage,
    file: &FileInput,
    sha256: &str,
) -> Result<(), StoreError> {
    match store
        .insert_entity(RELATED_TABLE, &hash_row(file, sha256))
        .await
    {
        Ok(_) | Err(StoreError::AlreadyExists) => Ok(()),
        Err(e) => Err(e),
    }
}
