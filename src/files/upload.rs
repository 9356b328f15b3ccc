//! Upload through the app: the body streamed into blob `files/{id}`, committed whole or not at all.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;

use super::TriggerFacts;
use super::{FileRecord, FileView, Files, FilesError, FILES_TABLE, OPEN_UPLOADS};
use crate::domain::{ContentType, FileId, FileName, Principal, Refusal};
use crate::store::{
    BodyTooLarge, BoxError, ByteStream, PutBlobOptions, StoreError, FILES_CONTAINER,
};

/// An upload as the edge parsed it.
pub struct NewUpload {
    /// `None` names the file after its id.
    pub name: Option<FileName>,
    pub content_type: ContentType,
    /// The file's bytes. Stream errors other than [`BodyTooLarge`] come back as
    /// [`FilesError::Body`] with the stream's own error inside.
    pub body: ByteStream,
    /// Who uploads, when known.
    pub uploader: Option<Principal>,
}

impl Files {
    /// Commits an upload: its marker and record first (so a blob trigger always finds the
    /// record, and the sweep finds an upload that dies), then the body into blob `files/{id}`, committed only once the whole body arrived
    /// within the size limit. A refused or broken upload commits no blob and removes its record
    /// and marker. In local mode the workflow starts right away; if that fails the file is still
    /// stored (a retry would upload it twice) and the next sweep starts it.
    pub async fn upload(&self, upload: NewUpload) -> Result<FileView, FilesError> {
        let id = FileId::new();
        let record = FileRecord {
            name: upload.name.unwrap_or_else(|| FileName::unnamed(&id)),
            id,
            content_type: upload.content_type,
            created_time: self.clock.now(),
            direct: None,
            uploader: upload.uploader,
        };
        let id = record.id;
        self.index_uploader(&record).await?;
        let record_etag = self
            .store
            .insert_entity(FILES_TABLE, &record.to_entity())
            .await?;

        let limit = self.policy.max_upload_bytes;
        let put = self
            .store
            .put_blob(
                FILES_CONTAINER,
                &id.to_string(),
                Box::pin(NonEmpty {
                    inner: upload.body,
                    seen: false,
                }),
                &PutBlobOptions {
                    content_type: record.content_type.to_string(),
                    max_bytes: Some(limit),
                },
            )
            .await;
        let props = match put {
            Ok(props) => props,
            Err(e) => {
                // No blob was committed, so nothing will ever start a workflow for this record.
                if let Err(cleanup) = self
                    .store
                    .delete_entity(
                        FILES_TABLE,
                        OPEN_UPLOADS,
                        &id.to_string(),
                        Some(&record_etag),
                    )
                    .await
                {
                    tracing::warn!(file = %id, error = %cleanup, "could not remove the record of a failed upload; the sweep will");
                }
                return Err(upload_error(e, limit));
            }
        };
        tracing::info!(file = %id, name = %record.name, size = props.size, "upload committed");

        if !self.policy.start_on_upload {
            return Ok(FileView::Uploaded {
                record,
                size: props.size,
            });
        }
        let facts = TriggerFacts {
            record: Some(record.clone()),
            blob_size: Some(props.size),
            blob_created: None,
            blob_etag: Some(props.etag.clone()),
        };
        match self.start(id, facts).await {
            Ok(started) => Ok(started.view),
            Err(e) => {
                tracing::warn!(file = %id, error = %e, "workflow not started yet; the sweep will start it");
                Ok(FileView::Uploaded {
                    record,
                    size: props.size,
                })
            }
        }
    }
}

pub(super) fn upload_error(e: StoreError, limit: u64) -> FilesError {
    match e {
        StoreError::Body(source) => {
            if source.downcast_ref::<BodyTooLarge>().is_some() {
                FilesError::Refused(Refusal::TooLarge { limit })
            } else if source.downcast_ref::<EmptyBody>().is_some() {
                FilesError::Refused(Refusal::EmptyFile)
            } else {
                FilesError::Body(source)
            }
        }
        other => other.into(),
    }
}

/// Raised by [`NonEmpty`] when a body ends without a single byte.
#[derive(Debug, thiserror::Error)]
#[error("the body is empty")]
struct EmptyBody;

/// Fails the stream at its end if it carried no bytes, so that an empty upload is refused
/// before anything is committed instead of being committed and deleted again.
pub(super) struct NonEmpty {
    pub inner: ByteStream,
    pub seen: bool,
}

impl Stream for NonEmpty {
    type Item = Result<Bytes, BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if !chunk.is_empty() {
                    self.seen = true;
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) if !self.seen => {
                self.seen = true; // report once
                Poll::Ready(Some(Err(Box::new(EmptyBody))))
            }
            other => other,
        }
    }
}
