//! The uploader's turn: a new version after a change request.

use super::decide::decided;
use super::upload::{upload_error, NonEmpty};
use super::{Decided, FileView, Files, FilesError};
use crate::domain::{ContentType, FileId, Principal, Refusal, Stage};
use crate::engine::{EngineError, RaiseEvent, RaiseOutcome};
use crate::store::{
    BlobProperties, ByteStream, PutBlobOptions, SignedWriteRequest, StoreError, VERSIONS_CONTAINER,
};
use crate::workflow::{self, BlobRef, Summary, UploaderTurnEvent, VersionInput};
use chrono::{DateTime, Utc};

/// An upload URL for a new version.
#[derive(Debug, Clone)]
pub struct VersionGrant {
    pub number: u32,
    pub upload_url: String,
    pub expires_at: DateTime<Utc>,
}

impl Files {
    /// The summary of file `id`, when it waits for a new version from `uploader`; refused
    /// otherwise (`WrongStage`, `NotTheUploader`).
    async fn awaiting_version(
        &self,
        id: FileId,
        uploader: &Principal,
    ) -> Result<Summary, FilesError> {
        let view = self.load(id).await?;
        let FileView::Workflow { summary, .. } = view else {
            return Err(not_waiting(id, view.stage()));
        };
        if summary.stage != Stage::ChangesRequested {
            return Err(not_waiting(id, summary.stage));
        }
        if !summary
            .file
            .uploader
            .as_ref()
            .is_some_and(|u| u.same_person(uploader))
        {
            return Err(FilesError::Refused(Refusal::NotTheUploader(format!(
                "only the file's uploader may send a new version, not {uploader}"
            ))));
        }
        Ok(*summary)
    }

    /// An upload URL for a new version too large to send through the app: create/write only,
    /// for blob `versions/{id}-v{n}`, valid like a file's upload URL. Nothing is taken until
    /// the uploader says it is complete ([`Files::complete_version`]).
    pub async fn version_upload(
        &self,
        id: FileId,
        uploader: &Principal,
        declared_size: u64,
    ) -> Result<VersionGrant, FilesError> {
        self.check_declared_size(declared_size)?;
        let summary = self.awaiting_version(id, uploader).await?;
        let number = summary.file.version + 1;
        let expires_at = super::whole_seconds_after(self.clock.now(), self.policy.upload_url_ttl);
        let name = version_blob(id, number);
        let upload_url = self
            .store
            .signed_write_url(&SignedWriteRequest {
                container: VERSIONS_CONTAINER,
                name: &name,
                expires_at,
            })
            .await?;
        tracing::info!(file = %id, version = number, declared_size, "version upload URL issued");
        Ok(VersionGrant {
            number,
            upload_url,
            expires_at,
        })
    }

    /// The uploader says version `number`'s bytes are in, through its upload URL: they are
    /// pinned and handed to the workflow, as [`Files::new_version`] does. `UploadIncomplete`
    /// while they are not there.
    pub async fn complete_version(
        &self,
        id: FileId,
        uploader: &Principal,
        number: u32,
    ) -> Result<Decided, FilesError> {
        let summary = self.awaiting_version(id, uploader).await?;
        if number != summary.file.version + 1 {
            return Err(FilesError::Refused(Refusal::WrongStage {
                message: format!(
                    "file {id} waits for version {}, not {number}",
                    summary.file.version + 1
                ),
                current: summary.stage,
            }));
        }
        let name = version_blob(id, number);
        let props = match self.store.blob_properties(VERSIONS_CONTAINER, &name).await {
            Ok(props) if props.size > 0 => props,
            Ok(_) => return Err(FilesError::Refused(Refusal::EmptyFile)),
            Err(StoreError::NotFound) => {
                return Err(FilesError::Refused(Refusal::UploadIncomplete(format!(
                    "version {number} of file {id} has not arrived through its upload URL"
                ))))
            }
            Err(e) => return Err(e.into()),
        };
        let content_type = ContentType::parse(Some(&props.content_type))
            .unwrap_or_else(|_| ContentType::octet_stream());
        self.take_version(id, uploader, number, name, props, content_type)
            .await
    }

    /// Takes a new version of file `id` from its uploader, while a reviewer's change request
    /// waits for one: the bytes into blob `versions/{id}-v{n}` (bounded like an upload), pinned
    /// to a snapshot, then handed to the workflow, which scans, analyses and reviews them from
    /// the upload stage again. Refused before a byte is stored when the file is not waiting for
    /// a version (`WrongStage`) or the caller is not its uploader (`NotTheUploader`); a version
    /// that loses a race (a deadline, another version) is refused the same way and its bytes
    /// are never reviewed.
    pub async fn new_version(
        &self,
        id: FileId,
        uploader: &Principal,
        content_type: ContentType,
        body: ByteStream,
    ) -> Result<Decided, FilesError> {
        let summary = self.awaiting_version(id, uploader).await?;
        let number = summary.file.version + 1;
        let name = version_blob(id, number);
        let limit = self.policy.max_upload_bytes;
        let props = self
            .store
            .put_blob(
                VERSIONS_CONTAINER,
                &name,
                Box::pin(NonEmpty {
                    inner: body,
                    seen: false,
                }),
                &PutBlobOptions {
                    content_type: content_type.to_string(),
                    max_bytes: Some(limit),
                },
            )
            .await
            .map_err(|e| upload_error(e, limit))?;
        self.take_version(id, uploader, number, name, props, content_type)
            .await
    }

    /// Pins version `number`'s bytes (written as `name`) and hands them to the workflow.
    async fn take_version(
        &self,
        id: FileId,
        uploader: &Principal,
        number: u32,
        name: String,
        props: BlobProperties,
        content_type: ContentType,
    ) -> Result<Decided, FilesError> {
        let snapshot = match self
            .store
            .snapshot_blob(VERSIONS_CONTAINER, &name, Some(&props.etag))
            .await
        {
            Ok(snapshot) => snapshot,
            // Another version for the same request was written over this one meanwhile: one
            // of the two is taken, and it is not this one.
            Err(StoreError::PreconditionFailed) => {
                let current = self.load(id).await?.stage();
                return Err(FilesError::Refused(Refusal::WrongStage {
                    message: format!(
                        "another new version of file {id} arrived at the same time; it is {}",
                        current.describe()
                    ),
                    current,
                }));
            }
            Err(e) => return Err(e.into()),
        };
        let turn = UploaderTurnEvent {
            uploader: uploader.to_string(),
            uploader_id: uploader.id().map(str::to_owned),
            time: self.clock.now(),
            version: Some(VersionInput {
                number,
                size: props.size,
                content_type: content_type.to_string(),
                content_type_declared: content_type.is_declared(),
                blob: BlobRef {
                    container: VERSIONS_CONTAINER.to_owned(),
                    name,
                },
                pinned: snapshot.id,
            }),
            comment: None,
        };
        let event = workflow::uploader_turn_event(&turn)?;
        let done = self
            .uploaders_turn(id, uploader, event, "new version")
            .await?;
        tracing::info!(file = %id, version = number, size = props.size, "new version received");
        Ok(done)
    }

    /// Records the uploader's answer to a change request (a new version, or the file taken
    /// back), refused when the file no longer waits for it.
    pub(super) async fn uploaders_turn(
        &self,
        id: FileId,
        uploader: &Principal,
        event: RaiseEvent,
        what: &str,
    ) -> Result<Decided, FilesError> {
        match self.engine.raise_event(&id.to_string(), event).await {
            Ok(raised) => {
                if matches!(raised, RaiseOutcome::Recorded(_)) {
                    tracing::info!(file = %id, uploader = %uploader, "uploader's turn: {what}");
                }
                decided(raised)
            }
            Err(EngineError::Refused(refusal)) => Err(FilesError::Refused(
                Refusal::NotTheUploader(refusal.message),
            )),
            Err(
                EngineError::InstanceNotFound(_)
                | EngineError::UnexpectedCustomStatus { .. }
                | EngineError::NotRunning { .. },
            ) => {
                let current = self.load(id).await?.stage();
                Err(not_waiting(id, current))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Where version `number` of file `id` is written.
fn version_blob(id: FileId, number: u32) -> String {
    format!("{id}-v{number}")
}

fn not_waiting(id: FileId, current: Stage) -> FilesError {
    FilesError::Refused(Refusal::WrongStage {
        message: format!(
            "file {id} is {}: no change was requested, so it takes no new version",
            current.describe()
        ),
        current,
    })
}
