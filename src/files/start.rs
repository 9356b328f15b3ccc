//! Starting a file's workflow once its bytes are committed: from the blob trigger, the Event Grid
//! start, local mode's upload, or the sweep.

use chrono::{DateTime, Duration, Utc};

use super::{FileRecord, FileView, Files, FilesError, FILES_TABLE};
use crate::domain::{ContentType, FileId, FileName};
use crate::engine::StartOutcome;
use crate::store::{BlobAt, ETag, StoreError, FILES_CONTAINER};
use crate::workflow::{self, ApprovalRules, DirectInput, FileInput};

/// The margin past an upload URL's expiry after which the bytes are taken as sealed: the
/// storage service checks the expiry on its own clock, which may run a little behind ours.
const SEAL_MARGIN_SECS: i64 = 60;

/// What the host's blob trigger knows when it fires: the record from its table input (if it
/// was readable) and the blob's properties from its metadata.
#[derive(Debug, Clone, Default)]
pub struct TriggerFacts {
    pub record: Option<FileRecord>,
    pub blob_size: Option<u64>,
    pub blob_created: Option<DateTime<Utc>>,
    /// The version `blob_size` was read from, when the caller knows it (the host's trigger
    /// does not): the bytes are then pinned without reading their properties again.
    pub blob_etag: Option<ETag>,
}

/// What [`Files::start`] did.
#[derive(Debug)]
pub struct Started {
    /// The file after the call (a new workflow's first state, or what was already there).
    pub view: FileView,
    /// False when the workflow existed already (a repeated trigger).
    pub newly: bool,
    /// True when the blob had no record (written into the container by other means) and one
    /// was made from its properties.
    pub record_created: bool,
}

impl Files {
    /// Starts a file's workflow from its record: what the blob trigger does, what local mode
    /// does right after an upload, and what the sweep does for a start that was lost.
    /// Idempotent (triggers are delivered at least once). A blob without a record still gets
    /// one, named by its id, and a workflow.
    pub async fn start(&self, id: FileId, facts: TriggerFacts) -> Result<Started, FilesError> {
        let (record, record_created) = match facts.record {
            Some(record) => (record, false),
            None => match self.record(id).await? {
                Some(record) => (record, false),
                None => (self.record_from_blob(id, facts.blob_created).await?, true),
            },
        };
        let known = facts.blob_etag.zip(facts.blob_size);
        let (pinned, size) = self.pin(record.container(), id, known).await?;
        let input = FileInput {
            id: id.to_string(),
            name: record.name.to_string(),
            content_type: record.content_type.to_string(),
            content_type_declared: record.content_type.is_declared(),
            size,
            created_time: record.created_time,
            approval_timeout_secs: self.policy.approval_timeout_secs,
            direct: record.direct.map(|direct| DirectInput {
                declared_size: direct.declared_size,
                sealed_time: direct.url_expires_at + Duration::seconds(SEAL_MARGIN_SECS),
            }),
            uploader: record.uploader.clone(),
            rules: ApprovalRules {
                four_eyes: self.policy.four_eyes,
                upload_quorum: self.policy.upload_quorum,
                download_quorum: self.policy.download_quorum,
            },
            notify: self.policy.notify,
            reminder_before_secs: self.policy.reminder_before_secs,
            retention_secs: Some(self.policy.retention_secs),
            scan: self.policy.scan,
            pinned: Some(pinned),
            blob: None,
            version: 1,
        };
        let outcome = workflow::start_for_file(&self.engine, &input).await?;
        self.forget_record(id).await;
        match outcome {
            StartOutcome::Started(status) => {
                tracing::info!(file = %id, "workflow started");
                Ok(Started {
                    view: FileView::from_instance(&status)?,
                    newly: true,
                    record_created,
                })
            }
            StartOutcome::AlreadyExists => Ok(Started {
                view: self.load(id).await?,
                newly: false,
                record_created,
            }),
        }
    }

    /// Pins the bytes the workflow will look at: a snapshot of the blob, taken before the
    /// workflow exists, so that nothing written afterwards (an upload URL used again) reaches
    /// the scan, the review, the analysis or the download. Returns the snapshot and its size.
    /// With the version and size the caller read, one request; otherwise two.
    ///
    /// A repeated trigger takes a snapshot that its start then ignores (the workflow exists):
    /// it shares its blocks with the first one, costs next to nothing, and is deleted with the
    /// blob.
    async fn pin(
        &self,
        container: &str,
        id: FileId,
        known: Option<(ETag, u64)>,
    ) -> Result<(String, u64), FilesError> {
        let name = id.to_string();
        if let Some((etag, size)) = known {
            match self
                .store
                .snapshot_blob(container, &name, Some(&etag))
                .await
            {
                Ok(snapshot) => return Ok((snapshot.id, size)),
                // Replaced since it was read: pin whatever is there now, and size that.
                Err(StoreError::PreconditionFailed) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let snapshot = self.store.snapshot_blob(container, &name, None).await?;
        let pinned = BlobAt {
            container,
            name: &name,
            snapshot: Some(&snapshot.id),
        };
        let size = self.store.properties_at(pinned).await?.size;
        Ok((snapshot.id, size))
    }

    /// A blob that arrived without a record (dropped into the container by other means) gets a
    /// record from its properties; its display name is its id.
    pub(super) async fn record_from_blob(
        &self,
        id: FileId,
        created: Option<DateTime<Utc>>,
    ) -> Result<FileRecord, FilesError> {
        let props = self
            .store
            .blob_properties(FILES_CONTAINER, &id.to_string())
            .await?;
        let record = FileRecord {
            id,
            name: FileName::parse(&id.to_string())
                .map_err(|e| FilesError::Storage(StoreError::internal(e)))?,
            content_type: ContentType::parse(Some(&props.content_type))
                .unwrap_or_else(|_| ContentType::octet_stream()),
            created_time: created.unwrap_or(props.last_modified),
            direct: None,
            uploader: None,
        };
        match self
            .store
            .insert_entity(FILES_TABLE, &record.to_entity())
            .await
        {
            Ok(_) => Ok(record),
            // Another delivery of the same trigger got there first: use its record.
            Err(StoreError::AlreadyExists) => self.record(id).await?.ok_or_else(|| {
                FilesError::Storage(StoreError::internal(
                    "a record vanished while being created",
                ))
            }),
            Err(e) => Err(e.into()),
        }
    }
}
