//! The rows this layer keeps besides the workflow's own, all in table `files`:
//!
//! | PartitionKey | RowKey | what |
//! |---|---|---|
//! | file id | `record` | [`FileRecord`]: what the uploader told us (display name, declared type, time). The `orchestrator` function's table input binding reads it. |
//! | `open-uploads` | `<time>_<file id>` | [`OpenUpload`]: an upload not yet known to have a workflow, oldest first |
//!
//! The open-uploads partition is the sweep's to-do list: it holds only uploads in flight or
//! left behind, never history, so reading it costs the same however many files were ever
//! handled.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::domain::{ContentType, FileId, FileName};
use crate::engine::rows::format_time;
use crate::store::{Entity, Prop, StoreError, StoreResult};

pub const FILES_TABLE: &str = "files";
pub const RECORD_ROW: &str = "record";
pub const OPEN_UPLOADS: &str = "open-uploads";

/// A file as its uploader declared it. Written before the blob, so a blob trigger always finds
/// it; never changed afterwards (the blob's commit, not the record, says an upload finished).
#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    pub id: FileId,
    pub name: FileName,
    pub content_type: ContentType,
    pub created_time: DateTime<Utc>,
}

impl FileRecord {
    pub fn to_entity(&self) -> Entity {
        Entity::new(self.id.to_string(), RECORD_ROW)
            .with("Name", self.name.as_str())
            .with("ContentType", self.content_type.as_str())
            .with("CreatedTime", self.created_time.to_rfc3339())
    }

    /// Reads a record row; rows that do not parse are reported, not guessed at. (Rows written
    /// by earlier versions also carry `State` and `Size`, which nothing reads any more.)
    pub fn from_entity(entity: &Entity) -> StoreResult<Self> {
        let corrupt = |what: &str| {
            StoreError::internal(format!(
                "file record {} has no valid {what}",
                entity.partition_key
            ))
        };
        Ok(FileRecord {
            id: FileId::parse(&entity.partition_key).map_err(|_| corrupt("id"))?,
            name: entity
                .str("Name")
                .and_then(|n| FileName::parse(n).ok())
                .ok_or_else(|| corrupt("Name"))?,
            content_type: ContentType::parse(entity.str("ContentType"))
                .map_err(|_| corrupt("ContentType"))?,
            created_time: entity
                .str("CreatedTime")
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
                .ok_or_else(|| corrupt("CreatedTime"))?,
        })
    }

    /// The record as the host's table input binding hands it over: the entity's JSON, with
    /// native types and `odata.*` annotations. `None` when it is not a readable record.
    pub fn from_binding(id: FileId, obj: &Map<String, Value>) -> Option<Self> {
        let mut entity = Entity::new(id.to_string(), RECORD_ROW);
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

    /// The marker this upload keeps in the open-uploads partition until its workflow starts.
    pub fn open_upload(&self) -> OpenUpload {
        OpenUpload {
            id: self.id,
            since: self.created_time,
        }
    }
}

/// An upload whose workflow is not known to have started: written before its record, deleted
/// once the workflow exists (or the upload is refused or swept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenUpload {
    pub id: FileId,
    pub since: DateTime<Utc>,
}

impl OpenUpload {
    /// Fixed-width time first, so the partition reads oldest first and a range query on the
    /// row key selects the uploads older than a cut-off.
    pub fn row_key(&self) -> String {
        format!("{}_{}", format_time(self.since), self.id)
    }

    /// A row key above every marker made at or before `time`, and below every later one
    /// (`~` sorts after the `_` that follows the time).
    pub fn row_key_after(time: DateTime<Utc>) -> String {
        format!("{}~", format_time(time))
    }

    pub fn to_entity(&self) -> Entity {
        Entity::new(OPEN_UPLOADS, self.row_key())
    }

    pub fn from_entity(entity: &Entity) -> StoreResult<Self> {
        let corrupt = || {
            StoreError::internal(format!(
                "open-upload row {:?} is unreadable",
                entity.row_key
            ))
        };
        let (time, id) = entity.row_key.rsplit_once('_').ok_or_else(corrupt)?;
        Ok(OpenUpload {
            id: FileId::parse(id).map_err(|_| corrupt())?,
            since: DateTime::parse_from_rfc3339(time)
                .map_err(|_| corrupt())?
                .with_timezone(&Utc),
        })
    }
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
        }
    }

    #[test]
    fn a_record_survives_its_row() {
        let rec = record();
        assert_eq!(FileRecord::from_entity(&rec.to_entity()).unwrap(), rec);
    }

    #[test]
    fn a_record_reads_from_the_table_binding_with_its_annotations() {
        let rec = record();
        let binding: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "odata.etag": "W/\"datetime'2026-11-30T09%3A00%3A00Z'\"",
            "PartitionKey": rec.id.to_string(),
            "RowKey": "record",
            "Timestamp": "2026-11-30T09:00:00.1234567Z",
            "Name": "report.pdf",
            "ContentType": "application/pdf",
            "CreatedTime": "2026-11-30T09:00:00+00:00",
            "State": "Uploading",
            "Size": 12
        }))
        .unwrap();
        assert_eq!(FileRecord::from_binding(rec.id, &binding), Some(rec));
    }

    #[test]
    fn open_upload_markers_sort_by_time_and_round_trip() {
        let rec = record();
        let marker = rec.open_upload();
        assert_eq!(
            OpenUpload::from_entity(&marker.to_entity()).unwrap(),
            marker
        );
        let later = OpenUpload {
            since: rec.created_time + chrono::Duration::milliseconds(1),
            ..marker
        };
        assert!(marker.row_key() < later.row_key());
        assert!(marker.row_key() < OpenUpload::row_key_after(marker.since));
        assert!(later.row_key() > OpenUpload::row_key_after(marker.since));
    }
}
