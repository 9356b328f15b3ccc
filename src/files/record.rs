//! The one row this layer keeps besides the workflow's own: a file's record while its upload is
//! open, in table `files`:
//!
//! | PartitionKey | RowKey | what |
//! |---|---|---|
//! | `open-uploads` | file id | [`FileRecord`]: what the uploader declared (display name, type, time) |
//!
//! The record is written before the blob (so the blob trigger's table input always finds it) and
//! removed once the file's workflow exists: from then on the workflow's input holds everything it
//! said. So the partition holds only uploads in flight or left behind, never history, and the
//! sweep that reads it costs the same however many files were ever handled.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::domain::{ContentType, FileId, FileName, Principal};
use crate::store::{Entity, Prop, StoreError, StoreResult};

pub const FILES_TABLE: &str = "files";
pub const OPEN_UPLOADS: &str = "open-uploads";

/// A file as its uploader declared it, while its upload is open.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    pub id: FileId,
    pub name: FileName,
    pub content_type: ContentType,
    pub created_time: DateTime<Utc>,
    /// Set when the bytes go straight to storage through an upload URL.
    pub direct: Option<DirectUpload>,
    /// Who uploaded, when the upload said (a token, an Easy Auth sign-in).
    pub uploader: Option<Principal>,
}

/// What an upload through an upload URL adds to its record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DirectUpload {
    /// The size the uploader declared; a blob of another size fails the file.
    pub declared_size: u64,
    /// When the upload URL stops working: from then on nobody can change the bytes.
    pub url_expires_at: DateTime<Utc>,
}

impl FileRecord {
    pub fn to_entity(&self) -> Entity {
        let entity = Entity::new(OPEN_UPLOADS, self.id.to_string())
            .with("Name", self.name.as_str())
            .with("ContentType", self.content_type.as_str())
            .with("CreatedTime", self.created_time.to_rfc3339());
        // Written only when false: rows from before the distinction read as declared.
        let entity = match self.content_type.is_declared() {
            true => entity,
            false => entity.with("ContentTypeDeclared", false),
        };
        let entity = match &self.uploader {
            None => entity,
            Some(uploader) => {
                let entity = entity.with("UploaderName", uploader.as_str());
                match uploader.id() {
                    Some(id) => entity.with("UploaderId", id),
                    None => entity,
                }
            }
        };
        match &self.direct {
            None => entity,
            Some(direct) => entity
                // Sizes fit an Edm.Int64 (the declared size is bounded by policy).
                .with(
                    "DeclaredSize",
                    i64::try_from(direct.declared_size).unwrap_or(i64::MAX),
                )
                .with("UploadUrlExpiresTime", direct.url_expires_at.to_rfc3339()),
        }
    }

    /// Where the file's bytes are: an upload URL's own container, or the API's.
    pub fn container(&self) -> &'static str {
        match self.direct {
            Some(_) => crate::store::UPLOADS_CONTAINER,
            None => crate::store::FILES_CONTAINER,
        }
    }

    /// Reads a record row; rows that do not parse are reported, not guessed at.
    pub fn from_entity(entity: &Entity) -> StoreResult<Self> {
        let corrupt = |what: &str| {
            StoreError::internal(format!(
                "file record {:?} has no valid {what}",
                entity.row_key
            ))
        };
        Ok(FileRecord {
            id: FileId::parse(&entity.row_key).map_err(|_| corrupt("id"))?,
            name: entity
                .str("Name")
                .and_then(|n| FileName::parse(n).ok())
                .ok_or_else(|| corrupt("Name"))?,
            content_type: ContentType::parse(entity.str("ContentType"))
                .map_err(|_| corrupt("ContentType"))?
                .with_declared(entity.bool("ContentTypeDeclared").unwrap_or(true)),
            created_time: entity
                .str("CreatedTime")
                .and_then(parse_time)
                .ok_or_else(|| corrupt("CreatedTime"))?,
            direct: match entity.i64("DeclaredSize") {
                None => None,
                Some(size) => Some(DirectUpload {
                    declared_size: u64::try_from(size).map_err(|_| corrupt("DeclaredSize"))?,
                    url_expires_at: entity
                        .str("UploadUrlExpiresTime")
                        .and_then(parse_time)
                        .ok_or_else(|| corrupt("UploadUrlExpiresTime"))?,
                }),
            },
            uploader: match entity.str("UploaderName") {
                None => None,
                Some(name) => Some(
                    Principal::parse(name, entity.str("UploaderId"))
                        .map_err(|_| corrupt("UploaderName"))?,
                ),
            },
        })
    }

    /// The record as the host's table input binding hands it over: the entity's JSON, with
    /// native types and `odata.*` annotations. `None` when it is not a readable record.
    pub fn from_binding(id: FileId, obj: &Map<String, Value>) -> Option<Self> {
        let mut entity = Entity::new(OPEN_UPLOADS, id.to_string());
        for (key, value) in obj {
            if key.starts_with("odata.") || key.contains("@odata") {
                continue;
            }
            let prop = match value {
                Value::String(s) => Prop::Str(s.clone()),
                Value::Bool(b) => Prop::Bool(*b),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => Prop::Int(i),
                    None => Prop::Float(n.as_f64()?),
                },
                _ => continue,
            };
            entity.props.insert(key.clone(), prop);
        }
        FileRecord::from_entity(&entity).ok()
    }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn record() -> FileRecord {
        FileRecord {
            id: FileId::parse("3f1c0e1e-7d5c-4b8e-9a39-0c5d2b1f6a11").unwrap(),
            name: FileName::parse("report.pdf").unwrap(),
            content_type: ContentType::parse(Some("application/pdf")).unwrap(),
            created_time: Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap(),
            direct: None,
            uploader: None,
        }
    }

    #[test]
    fn a_record_survives_its_row() {
        let rec = record();
        assert_eq!(FileRecord::from_entity(&rec.to_entity()).unwrap(), rec);
        let direct = FileRecord {
            direct: Some(DirectUpload {
                declared_size: 5 << 30,
                url_expires_at: Utc.with_ymd_and_hms(2026, 11, 30, 9, 15, 0).unwrap(),
            }),
            ..record()
        };
        assert_eq!(direct.container(), crate::store::UPLOADS_CONTAINER);
        assert_eq!(
            FileRecord::from_entity(&direct.to_entity()).unwrap(),
            direct
        );
    }

    #[test]
    fn a_record_reads_from_the_table_binding_with_its_annotations() {
        let rec = record();
        let binding: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "odata.etag": "W/\"datetime'2026-11-30T09%3A00%3A00Z'\"",
            "PartitionKey": "open-uploads",
            "RowKey": rec.id.to_string(),
            "Timestamp": "2026-11-30T09:00:00.1234567Z",
            "Name": "report.pdf",
            "ContentType": "application/pdf",
            "CreatedTime": "2026-11-30T09:00:00+00:00"
        }))
        .unwrap();
        assert_eq!(FileRecord::from_binding(rec.id, &binding), Some(rec));
    }
}
