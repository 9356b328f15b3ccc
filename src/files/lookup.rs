//! The shared reads every use case starts from: a file's record while its upload is open, and
//! the file as its workflow sees it.

use super::{FileRecord, FileView, Files, FilesError, FILES_TABLE, OPEN_UPLOADS};
use crate::domain::{FileId, Refusal};
use crate::store::StoreError;

impl Files {
    pub(super) async fn record(&self, id: FileId) -> Result<Option<FileRecord>, FilesError> {
        match self
            .store
            .get_entity(FILES_TABLE, OPEN_UPLOADS, &id.to_string())
            .await
        {
            Ok(stored) => Ok(Some(FileRecord::from_entity(&stored.entity)?)),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Once the workflow exists the record is only a to-do note: failing to remove it costs
    /// one more look by the sweep, never a wrong answer.
    pub(super) async fn forget_record(&self, id: FileId) {
        match self
            .store
            .delete_entity(FILES_TABLE, OPEN_UPLOADS, &id.to_string(), None)
            .await
        {
            Ok(()) | Err(StoreError::NotFound) => {}
            Err(e) => {
                tracing::warn!(file = %id, error = %e, "could not remove an open upload's record; the sweep will")
            }
        }
    }

    /// A file: its workflow (one partition read), else a committed upload whose workflow has
    /// not started. An upload still streaming in (record, no blob) is not a file yet.
    pub async fn load(&self, id: FileId) -> Result<FileView, FilesError> {
        if let Some(status) = self.engine.status(&id.to_string(), true).await? {
            return FileView::from_instance(&status);
        }
        let Some(record) = self.record(id).await? else {
            return Err(FilesError::Refused(Refusal::no_file(id)));
        };
        match self
            .store
            .blob_properties(record.container(), &id.to_string())
            .await
        {
            Ok(props) => Ok(FileView::Uploaded {
                record,
                size: props.size,
            }),
            Err(StoreError::NotFound) => Err(FilesError::Refused(Refusal::no_file(id))),
            Err(e) => Err(e.into()),
        }
    }
}
