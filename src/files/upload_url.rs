//! Upload straight to storage: an upload URL for a declared size, and the completion that checks
//! what arrived.

use chrono::{DateTime, Utc};

use super::{DirectUpload, TriggerFacts};
use super::{FileRecord, FileView, Files, FilesError, FILES_TABLE};
use crate::domain::{ContentType, FileId, FileName, Principal, Refusal};
use crate::store::{SignedWriteRequest, StoreError, UPLOADS_CONTAINER};

/// An upload straight to storage, as the edge parsed its declaration.
pub struct NewDirectUpload {
    pub name: FileName,
    pub content_type: ContentType,
    /// The size the uploader will send; the blob must hold exactly this many bytes.
    pub declared_size: u64,
    /// Who uploads, when known.
    pub uploader: Option<Principal>,
}

/// An upload URL handed out, for file `record.id`.
#[derive(Debug, Clone)]
pub struct UploadGrant {
    pub record: FileRecord,
    pub upload_url: String,
    pub expires_at: DateTime<Utc>,
}

impl Files {
    /// Opens an upload straight to storage: the record (with the declared size and the URL's
    /// expiry), then a create/write-only URL for blob `uploads/{id}`. Nothing else is written:
    /// the blob's creation starts the workflow ([`Files::start`], from the embedded store's
    /// commit, the Event Grid trigger or [`Files::complete`]); an upload that never arrives is
    /// removed by the sweep once its URL has expired.
    pub async fn create_upload(&self, upload: NewDirectUpload) -> Result<UploadGrant, FilesError> {
        self.check_declared_size(upload.declared_size)?;
        let now = self.clock.now();
        let expires_at = super::whole_seconds_after(now, self.policy.upload_url_ttl);
        let record = FileRecord {
            id: FileId::new(),
            name: upload.name,
            content_type: upload.content_type,
            created_time: now,
            direct: Some(DirectUpload {
                declared_size: upload.declared_size,
                url_expires_at: expires_at,
            }),
            uploader: upload.uploader,
        };
        let id_text = record.id.to_string();
        let upload_url = self
            .store
            .signed_write_url(&SignedWriteRequest {
                container: UPLOADS_CONTAINER,
                name: &id_text,
                expires_at,
            })
            .await?;
        self.index_uploader(&record).await?;
        self.store
            .insert_entity(FILES_TABLE, &record.to_entity())
            .await?;
        tracing::info!(file = %record.id, name = %record.name, declared_size = upload.declared_size, expires_at = %expires_at, "upload URL issued");
        Ok(UploadGrant {
            record,
            upload_url,
            expires_at,
        })
    }

    /// The size an open upload URL's upload declared; `None` if there is no such upload.
    pub async fn declared_size(&self, id: FileId) -> Option<u64> {
        match self.record(id).await {
            Ok(Some(record)) => record.direct.map(|d| d.declared_size),
            _ => None,
        }
    }

    /// The uploader's word that an upload URL's blob is complete: starts the workflow if the
    /// blob is there (what Event Grid's `BlobCreated` does under the host, and the embedded
    /// store's commit locally; repeating it changes nothing).
    pub async fn complete(&self, id: FileId) -> Result<FileView, FilesError> {
        if let Some(status) = self.engine.status(&id.to_string(), false).await? {
            return FileView::from_instance(&status);
        }
        let record = match self.record(id).await? {
            Some(record) if record.direct.is_some() => record,
            _ => return Err(FilesError::Refused(Refusal::no_file(id))),
        };
        let props = match self
            .store
            .blob_properties(UPLOADS_CONTAINER, &id.to_string())
            .await
        {
            Ok(props) => props,
            Err(StoreError::NotFound) => {
                return Err(FilesError::Refused(Refusal::UploadIncomplete(format!(
                    "file {id} has not arrived through its upload URL yet"
                ))))
            }
            Err(e) => return Err(e.into()),
        };
        let facts = TriggerFacts {
            record: Some(record),
            blob_size: Some(props.size),
            blob_created: None,
            blob_etag: Some(props.etag.clone()),
        };
        Ok(self.start(id, facts).await?.view)
    }
}
