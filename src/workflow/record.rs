//! The file record: what the uploader told us (display name, declared type) and how far the
//! upload got. One row per file in table `files` (PartitionKey = file id, RowKey `record`), the
//! row the `orchestrator` function's table input binding reads.

use chrono::{DateTime, Utc};

use crate::domain::{FileId, FileName};
use crate::store::{ETag, Entity, Storage, StoreError, StoreResult, StoredEntity};

pub const FILES_TABLE: &str = "files";
pub const RECORD_ROW: &str = "record";

/// How far an upload got. A record stays `Uploading` only while its body streams in (or after a
/// crash mid-upload, when no blob was committed): such records are invisible to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadState {
    Uploading,
    Uploaded,
}

impl UploadState {
    fn as_str(self) -> &'static str {
        match self {
            UploadState::Uploading => "Uploading",
            UploadState::Uploaded => "Uploaded",
        }
    }
    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "Uploading" => Some(UploadState::Uploading),
            "Uploaded" => Some(UploadState::Uploaded),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    pub id: FileId,
    pub name: FileName,
    pub content_type: String,
    /// Known once the upload finished.
    pub size: Option<u64>,
    pub created_time: DateTime<Utc>,
    pub state: UploadState,
}

impl FileRecord {
    pub fn to_entity(&self) -> Entity {
        let mut e = Entity::new(self.id.to_string(), RECORD_ROW)
            .with("Name", self.name.as_str())
            .with("ContentType", self.content_type.as_str())
            .with("CreatedTime", self.created_time.to_rfc3339())
            .with("State", self.state.as_str());
        if let Some(size) = self.size {
            e = e.with("Size", size as i64);
        }
        e
    }

    /// Reads a record row; rows that do not parse are reported, not guessed at.
    pub fn from_entity(entity: &Entity) -> StoreResult<Self> {
        let corrupt = |what: &str| {
            StoreError::internal(format!(
                "file record {} has no valid {what}",
                entity.partition_key
            ))
        };
        let id = FileId::parse(&entity.partition_key).map_err(|_| corrupt("id"))?;
        let name = entity
            .str("Name")
            .and_then(|n| FileName::parse(n).ok())
            .ok_or_else(|| corrupt("Name"))?;
        let created_time = entity
            .str("CreatedTime")
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| corrupt("CreatedTime"))?;
        let state = entity
            .str("State")
            .and_then(UploadState::parse)
            .ok_or_else(|| corrupt("State"))?;
        Ok(FileRecord {
            id,
            name,
            content_type: entity
                .str("ContentType")
                .unwrap_or("application/octet-stream")
                .to_owned(),
            size: entity.i64("Size").and_then(|s| u64::try_from(s).ok()),
            created_time,
            state,
        })
    }
}

/// Reads a file's record. `Ok(None)` when there is none.
pub async fn get(store: &dyn Storage, id: FileId) -> StoreResult<Option<(FileRecord, ETag)>> {
    match store
        .get_entity(FILES_TABLE, &id.to_string(), RECORD_ROW)
        .await
    {
        Ok(StoredEntity { entity, etag }) => Ok(Some((FileRecord::from_entity(&entity)?, etag))),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}
