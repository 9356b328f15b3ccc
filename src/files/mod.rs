//! The application layer: one owner for a file's life. [`Files`] commits an upload, starts its
//! workflow, loads it, records a reviewer's decision, lists files by stage, produces the
//! download, and sweeps what failed uploads left behind. It is written against the engine, the
//! workflow and the storage trait, and knows nothing of HTTP: the function modules parse a
//! request into domain types, call one method here, and map the answer.
//!
//! A file's life in storage:
//!
//! 1. upload: the [`FileRecord`] (partition `open-uploads`), then the blob `files/{id}`, whose
//!    commit is the upload's commit;
//! 2. start: the blob trigger (or, in local mode, the upload itself) starts the `FileApproval`
//!    workflow from the record, then removes the record (the workflow's input holds it now);
//! 3. decisions, analysis and the download go through the workflow ([`crate::workflow`]);
//! 4. the sweep ([`Files::sweep_uploads`]) reads only the open-uploads partition: a record
//!    whose blob exists gets its workflow started (a lost trigger, a start that failed), one
//!    whose upload never committed is removed once it is older than
//!    [`Policy::abandon_uploads_after`].

mod audit;
mod error;
pub mod preview;
pub mod record;
mod view;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use futures::Stream;

pub use error::FilesError;
pub use record::{DirectUpload, FileRecord, FILES_TABLE, OPEN_UPLOADS};
pub use view::{DownloadGrant, FilePage, FileView};

use crate::clock::Clock;
use crate::domain::{ApprovalStage, ContentType, Decision, FileId, FileName, Principal, Stage};
use crate::engine::{Engine, EngineError, ListQuery, RaiseOutcome, StartOutcome};
use crate::store::{
    BodyTooLarge, BoxError, ByteStream, PutBlobOptions, SignedUrlRequest, SignedWriteRequest,
    Storage, StoreError, TableQuery, FILES_CONTAINER, UPLOADS_CONTAINER,
};
use crate::workflow::{self, ApprovalRules, DecisionEvent, DirectInput, FileInput};

/// How files are handled: limits and timings fixed at start-up.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The largest upload accepted, in bytes.
    pub max_upload_bytes: u64,
    /// How long a download link stays valid.
    pub download_ttl: Duration,
    /// Each approval must come within this many seconds, else the file ends `Expired`.
    pub approval_timeout_secs: Option<u64>,
    /// Start a file's workflow as soon as its upload commits (local mode, where no blob
    /// trigger exists). Under the host the blob trigger starts it.
    pub start_on_upload: bool,
    /// The sweep leaves a committed upload without a workflow alone for this long: its blob
    /// trigger is on the way. Zero in local mode (no trigger will come).
    pub start_grace: Duration,
    /// An upload whose blob is still missing after this long is taken for dead: its record
    /// and marker are removed. (An upload URL's upload: this long after the URL expired.)
    pub abandon_uploads_after: Duration,
    /// How long an upload URL stays valid.
    pub upload_url_ttl: Duration,
    /// The largest file an upload URL may declare, in bytes.
    pub max_direct_upload_bytes: u64,
    /// Nobody approves their own upload; the download's approvers are not the upload's.
    pub four_eyes: bool,
    /// Distinct approvals each stage needs.
    pub upload_quorum: u32,
    pub download_quorum: u32,
    /// Workflows send notifications (a webhook is configured).
    pub notify: bool,
    /// Remind this many seconds before a stage's deadline.
    pub reminder_before_secs: Option<u64>,
    /// Delete a refused file's bytes this many seconds after it ends.
    pub retention_secs: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_upload_bytes: 100 * 1024 * 1024,
            download_ttl: Duration::hours(1),
            approval_timeout_secs: None,
            start_on_upload: true,
            start_grace: Duration::zero(),
            abandon_uploads_after: Duration::hours(1),
            four_eyes: true,
            upload_quorum: 1,
            download_quorum: 1,
            notify: false,
            reminder_before_secs: None,
            retention_secs: 0,
            upload_url_ttl: Duration::minutes(15),
            max_direct_upload_bytes: 1 << 40,
        }
    }
}

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

/// What [`Files::decide`] did.
#[derive(Debug)]
pub struct Decided {
    pub view: FileView,
    /// False for a repeat of a decision already recorded.
    pub recorded: bool,
}

/// What one sweep of the open uploads did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Committed uploads whose workflow the sweep started (or found started).
    pub started: usize,
    /// Uploads that never committed, removed with their records.
    pub abandoned: usize,
    /// Markers the sweep could not settle this time (logged; retried on the next pass).
    pub failures: usize,
}

/// The application layer's handle. Cheap to share behind an `Arc`.
pub struct Files {
    store: Arc<dyn Storage>,
    engine: Engine,
    clock: Arc<dyn Clock>,
    policy: Policy,
}

impl Files {
    pub fn new(
        store: Arc<dyn Storage>,
        engine: Engine,
        clock: Arc<dyn Clock>,
        policy: Policy,
    ) -> Self {
        Files {
            store,
            engine,
            clock,
            policy,
        }
    }

    /// Creates the container and tables if missing. Idempotent.
    pub async fn ensure_storage(&self) -> Result<(), FilesError> {
        self.store.ensure_container(FILES_CONTAINER).await?;
        self.store.ensure_container(UPLOADS_CONTAINER).await?;
        self.store.ensure_table(FILES_TABLE).await?;
        self.engine.ensure_storage().await?;
        Ok(())
    }

    pub fn store(&self) -> &Arc<dyn Storage> {
        &self.store
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    // -----------------------------------------------------------------------------------------
    // Upload and start
    // -----------------------------------------------------------------------------------------

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

    /// Opens an upload straight to storage: the record (with the declared size and the URL's
    /// expiry), then a create/write-only URL for blob `uploads/{id}`. Nothing else is written:
    /// the blob's creation starts the workflow ([`Files::start`], from the embedded store's
    /// commit, the Event Grid trigger or [`Files::complete`]); an upload that never arrives is
    /// removed by the sweep once its URL has expired.
    pub async fn create_upload(&self, upload: NewDirectUpload) -> Result<UploadGrant, FilesError> {
        let limit = self.policy.max_direct_upload_bytes;
        if upload.declared_size == 0 {
            return Err(FilesError::EmptyFile);
        }
        if upload.declared_size > limit {
            return Err(FilesError::DeclaredTooLarge { limit });
        }
        let now = self.clock.now();
        // Whole seconds, as the SAS `se` field carries them.
        let expires_at = now + self.policy.upload_url_ttl
            - Duration::nanoseconds(i64::from(now.timestamp_subsec_nanos()));
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
            _ => return Err(FilesError::NotFound(id)),
        };
        let props = match self
            .store
            .blob_properties(UPLOADS_CONTAINER, &id.to_string())
            .await
        {
            Ok(props) => props,
            Err(StoreError::NotFound) => return Err(FilesError::UploadIncomplete(id)),
            Err(e) => return Err(e.into()),
        };
        let facts = TriggerFacts {
            record: Some(record),
            blob_size: Some(props.size),
            blob_created: None,
        };
        Ok(self.start(id, facts).await?.view)
    }

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
        let size = match facts.blob_size {
            Some(size) => size,
            None => {
                self.store
                    .blob_properties(record.container(), &id.to_string())
                    .await?
                    .size
            }
        };
        let input = FileInput {
            id: id.to_string(),
            name: record.name.to_string(),
            content_type: record.content_type.to_string(),
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

    /// Once the workflow exists the record is only a to-do note: failing to remove it costs
    /// one more look by the sweep, never a wrong answer.
    async fn forget_record(&self, id: FileId) {
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

    async fn record(&self, id: FileId) -> Result<Option<FileRecord>, FilesError> {
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

    /// A blob that arrived without a record (dropped into the container by other means) gets a
    /// record from its properties; its display name is its id.
    async fn record_from_blob(
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

    // -----------------------------------------------------------------------------------------
    // Reading
    // -----------------------------------------------------------------------------------------

    /// A file: its workflow (one partition read), else a committed upload whose workflow has
    /// not started. An upload still streaming in (record, no blob) is not a file yet.
    pub async fn load(&self, id: FileId) -> Result<FileView, FilesError> {
        if let Some(status) = self.engine.status(&id.to_string(), true).await? {
            return FileView::from_instance(&status);
        }
        let Some(record) = self.record(id).await? else {
            return Err(FilesError::NotFound(id));
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
            Err(StoreError::NotFound) => Err(FilesError::NotFound(id)),
            Err(e) => Err(e.into()),
        }
    }

    /// One page of files from the status index: at `stage`, oldest first (a reviewer's
    /// queue); without a stage, every file, stage by stage in the workflow's order and oldest
    /// first within each. `Uploaded` files (no workflow yet) are not listed: they exist only
    /// for the moment between a blob's commit and its trigger. Each page is one index query
    /// and one read per file.
    pub async fn list(
        &self,
        stage: Option<Stage>,
        top: u32,
        continuation: Option<String>,
    ) -> Result<FilePage, FilesError> {
        let key = match stage {
            Some(stage) => match workflow::stage_index_key(stage) {
                Some(key) => Some(key.to_owned()),
                None => {
                    return Ok(FilePage {
                        files: Vec::new(),
                        continuation: None,
                    })
                }
            },
            None => None,
        };
        self.list_index(key, None, top, continuation, |view| {
            stage.is_none_or(|s| view.stage() == s)
        })
        .await
    }

    /// Pages through the status index from `key` (through `through`), keeping the files
    /// `keep` wants, reading at most a few index pages per call so a page's cost stays bounded.
    /// Tokens are the hex of the index position to continue after: every even-length hex
    /// string is one, so any such token is valid.
    async fn list_index(
        &self,
        key: Option<String>,
        through: Option<String>,
        top: u32,
        continuation: Option<String>,
        keep: impl Fn(&FileView) -> bool,
    ) -> Result<FilePage, FilesError> {
        /// Index pages one call reads at most, when the keys hold files that are not kept (a
        /// page of `AwaitingDownloadApproval` among files still `Analyzing`).
        const MAX_INDEX_PAGES: usize = 4;
        let mut position = match continuation {
            None => None,
            Some(token) => Some(
                hex::decode(&token)
                    .ok()
                    .filter(|bytes| !bytes.is_empty())
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                    .ok_or(FilesError::BadContinuation)?,
            ),
        };
        let mut files = Vec::new();
        for _ in 0..MAX_INDEX_PAGES {
            let wanted = top.saturating_sub(u32::try_from(files.len()).unwrap_or(u32::MAX));
            let page = self
                .engine
                .list(ListQuery {
                    key: key.clone(),
                    through_key: through.clone(),
                    top: wanted.max(1),
                    continuation: position.take(),
                })
                .await?;
            for status in &page.instances {
                let view = FileView::from_instance(status)?;
                if keep(&view) {
                    files.push(view);
                }
            }
            position = page.continuation;
            if position.is_none() || files.len() >= top as usize {
                break;
            }
        }
        Ok(FilePage {
            files,
            continuation: position.map(|p| hex::encode(p.as_bytes())),
        })
    }

    /// A reviewer's inbox: the files `reviewer` may decide now — awaiting a decision, not
    /// uploaded by them, not decided by them in this stage, and (four eyes) not a download whose
    /// upload they approved. Upload approvals first, then download approvals, each oldest first
    /// by when the file reached its stage. Costs what a listing page does: at most a few index
    /// pages of `top` files are read per call, so a page may hold fewer than `top` files (even
    /// none) with a continuation to follow.
    pub async fn inbox(
        &self,
        reviewer: &Principal,
        stage: Option<Stage>,
        top: u32,
        continuation: Option<String>,
    ) -> Result<FilePage, FilesError> {
        // The two awaiting stages are consecutive keys of the index, upload before download.
        let key = workflow::stage_index_key(Stage::AwaitingUploadApproval).map(str::to_owned);
        let through = workflow::stage_index_key(Stage::AwaitingDownloadApproval).map(str::to_owned);
        self.list_index(key, through, top, continuation, |view| {
            may_decide(view, reviewer) && stage.is_none_or(|s| view.stage() == s)
        })
        .await
    }

    // -----------------------------------------------------------------------------------------
    // Decisions and the download
    // -----------------------------------------------------------------------------------------

    /// Records a reviewer's decision for `stage`. Refused with [`FilesError::WrongStage`]
    /// (saying why) when the workflow is not waiting for it; a repeat of the same decision by
    /// the same reviewer is answered with `recorded: false` and changes nothing.
    pub async fn decide(
        &self,
        id: FileId,
        stage: ApprovalStage,
        reviewer: &Principal,
        decision: Decision,
    ) -> Result<Decided, FilesError> {
        let event = DecisionEvent {
            stage,
            approved: decision.approved,
            reviewer: reviewer.to_string(),
            reviewer_id: reviewer.id().map(str::to_owned),
            comment: decision.comment,
            decided_time: self.clock.now(),
            withdrawal: false,
        };
        let verdict = if event.approved {
            "approved"
        } else {
            "rejected"
        };
        let outcome = self
            .engine
            .raise_event(&id.to_string(), workflow::decision_event(&event)?)
            .await;
        match outcome {
            Ok(raised) => {
                if matches!(raised, RaiseOutcome::Recorded(_)) {
                    tracing::info!(file = %id, %stage, %reviewer, outcome = verdict, "decision recorded");
                }
                decided(raised)
            }
            Err(EngineError::Refused(refusal)) => {
                tracing::info!(file = %id, %stage, %reviewer, outcome = verdict, rule = refusal.code, "decision refused: four eyes");
                Err(match refusal.code {
                    workflow::SELF_APPROVAL => FilesError::SelfApproval(refusal.message),
                    workflow::SAME_REVIEWER => FilesError::SameReviewer(refusal.message),
                    _ => FilesError::Engine(EngineError::Refused(refusal)),
                })
            }
            Err(
                EngineError::InstanceNotFound(_)
                | EngineError::UnexpectedCustomStatus { .. }
                | EngineError::NotRunning { .. },
            ) => {
                // A committed upload whose workflow has not started is a real file in the
                // wrong stage; anything else is not found.
                let view = self.load(id).await?;
                let refusal = wrong_stage(id, stage, &view, &event);
                tracing::info!(file = %id, %stage, %reviewer, outcome = verdict, current = %view.stage(), "decision refused: wrong stage");
                Err(refusal)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The analysis and a read-only link valid for [`Policy::download_ttl`], once both
    /// approvals are in.
    pub async fn download(
        &self,
        id: FileId,
        requester: Option<&Principal>,
    ) -> Result<DownloadGrant, FilesError> {
        let view = self.load(id).await?;
        let stage = view.stage();
        if stage != Stage::Approved {
            return Err(FilesError::NotApproved {
                message: format!(
                    "file {id} is {}; download needs both approvals",
                    stage.describe()
                ),
                current: stage,
            });
        }
        // Whole seconds: the SAS `se` field and the response both carry second precision.
        let now = self.clock.now();
        let expires_at = now + self.policy.download_ttl
            - Duration::nanoseconds(i64::from(now.timestamp_subsec_nanos()));
        let id_text = id.to_string();
        let url = self
            .store
            .signed_read_url(&SignedUrlRequest {
                container: view.container(),
                name: &id_text,
                expires_at,
                download_name: view.name(),
            })
            .await?;
        // The audit keeps who asked for a link and when, before the link is handed out.
        let row = audit::LinkIssued {
            issued_time: now,
            expires_at,
            requester: requester.cloned(),
        };
        self.store
            .insert_entity(FILES_TABLE, &row.to_entity(id))
            .await?;
        tracing::info!(file = %id, expires_at = %expires_at, requester = requester.map_or("", Principal::as_str), "download link issued");
        Ok(DownloadGrant {
            view,
            url,
            expires_at,
        })
    }

    /// The first part of a text file, or a small raster image, for a reviewer to look at
    /// before deciding ([`preview`]): the bytes, not the declared type, say which. The bytes
    /// of an upload URL's file may still change until its URL expires; what is approved for
    /// download is what the analysis read after that.
    pub async fn preview(&self, id: FileId) -> Result<preview::Preview, FilesError> {
        let view = self.load(id).await?;
        let name = id.to_string();
        let head_len = preview::MAX_TEXT_BYTES as u64 + 4;
        let head = match self
            .store
            .get_blob(view.container(), &name, Some(0..head_len))
            .await
        {
            Ok(read) => read,
            // Not arrived yet, or already deleted (withdrawn, retention).
            Err(StoreError::NotFound) => {
                return Err(FilesError::NoPreview(format!(
                    "file {id} has no bytes to show"
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let size = head.properties.size;
        let prefix = collect(head.body).await?;
        let complete = prefix.len() as u64 >= size;
        match preview::kind(&prefix, complete) {
            Some(preview::Kind::Image(media_type)) if size <= preview::MAX_IMAGE_BYTES => {
                let bytes = if complete {
                    prefix
                } else {
                    let whole = self
                        .store
                        .get_blob(view.container(), &name, Some(0..size))
                        .await?;
                    collect(whole.body).await?
                };
                Ok(preview::Preview {
                    media_type,
                    bytes,
                    truncated: false,
                })
            }
            Some(preview::Kind::Image(_)) => Err(FilesError::NoPreview(format!(
                "the image is larger than {} MiB; read its analysis",
                preview::MAX_IMAGE_BYTES / (1024 * 1024)
            ))),
            Some(preview::Kind::Text { valid }) => {
                let text = std::str::from_utf8(&prefix[..valid]).unwrap_or_default();
                // Cut at a character boundary at or below the cap.
                let mut end = text.len().min(preview::MAX_TEXT_BYTES);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                Ok(preview::Preview {
                    media_type: "text/plain; charset=utf-8",
                    truncated: (end as u64) < size,
                    bytes: prefix.slice(..end),
                })
            }
            None => Err(FilesError::NoPreview(
                "only text and PNG, JPEG, GIF or WebP images have a preview".into(),
            )),
        }
    }

    /// The uploader takes a file back while it awaits a decision: it ends `Withdrawn`.
    /// Refused (`NotTheUploader`) for anyone else, and for files uploaded anonymously.
    pub async fn withdraw(
        &self,
        id: FileId,
        requester: &Principal,
        comment: Option<String>,
    ) -> Result<Decided, FilesError> {
        let view = self.load(id).await?;
        let stage = match view.stage() {
            Stage::AwaitingUploadApproval => ApprovalStage::Upload,
            Stage::AwaitingDownloadApproval => ApprovalStage::Download,
            other => {
                return Err(FilesError::WrongStage {
                    message: format!(
                        "file {id} is {}; it can be withdrawn only while it awaits a decision",
                        other.describe()
                    ),
                    current: other,
                })
            }
        };
        let event = DecisionEvent {
            stage,
            approved: false,
            reviewer: requester.to_string(),
            reviewer_id: requester.id().map(str::to_owned),
            comment,
            decided_time: self.clock.now(),
            withdrawal: true,
        };
        match self
            .engine
            .raise_event(&id.to_string(), workflow::decision_event(&event)?)
            .await
        {
            Ok(raised) => {
                if matches!(raised, RaiseOutcome::Recorded(_)) {
                    tracing::info!(file = %id, %stage, requester = %requester, "file withdrawn");
                }
                decided(raised)
            }
            Err(EngineError::Refused(refusal)) => Err(FilesError::NotTheUploader(refusal.message)),
            // Decided (or analysed) meanwhile: say where it stands now.
            Err(EngineError::UnexpectedCustomStatus { .. } | EngineError::NotRunning { .. }) => {
                let current = self.load(id).await?.stage();
                Err(FilesError::WrongStage {
                    message: format!(
                        "file {id} is {}; it can be withdrawn only while it awaits a decision",
                        current.describe()
                    ),
                    current,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Every step of a file's life, oldest first: its workflow's history, and the download
    /// links handed out (who asked, when).
    pub async fn history(&self, id: FileId) -> Result<Vec<workflow::Step>, FilesError> {
        let Some(status) = self.engine.status(&id.to_string(), true).await? else {
            // An upload whose workflow has not started has one step so far.
            return match self.load(id).await? {
                FileView::Uploaded { record, .. } => Ok(vec![workflow::Step {
                    step: "uploaded",
                    time: record.created_time,
                    actor: record.uploader,
                    stage: None,
                    outcome: None,
                    comment: None,
                }]),
                FileView::Workflow { .. } => Err(FilesError::NotFound(id)),
            };
        };
        let mut steps = workflow::timeline(&status)?;
        steps.extend(audit::links_issued(self.store.as_ref(), id).await?);
        // Stable: steps of the same instant keep the workflow's order.
        steps.sort_by_key(|s| s.time);
        Ok(steps)
    }

    // -----------------------------------------------------------------------------------------
    // Housekeeping
    // -----------------------------------------------------------------------------------------

    /// Settles the open uploads old enough to need it (module docs): one query of the
    /// open-uploads partition, then a blob check for each record past the grace.
    pub async fn sweep_uploads(&self) -> Result<SweepReport, FilesError> {
        let now = self.clock.now();
        let settle_before = now - self.policy.start_grace;
        let abandon_before = now - self.policy.abandon_uploads_after;
        let mut report = SweepReport::default();
        let mut continuation = None;
        loop {
            let page = self
                .store
                .query(
                    FILES_TABLE,
                    &TableQuery {
                        continuation,
                        ..TableQuery::partition(OPEN_UPLOADS.to_owned())
                    },
                )
                .await?;
            for stored in &page.entities {
                let record = match FileRecord::from_entity(&stored.entity) {
                    Ok(record) => record,
                    Err(e) => {
                        tracing::error!(error = %e, "unreadable open-upload record");
                        report.failures += 1;
                        continue;
                    }
                };
                if record.created_time > settle_before {
                    continue;
                }
                match self.settle(&record, abandon_before).await {
                    Ok(Some(true)) => report.started += 1,
                    Ok(Some(false)) => report.abandoned += 1,
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(file = %record.id, error = %e, "could not settle an open upload; the next sweep will");
                        report.failures += 1;
                    }
                }
            }
            continuation = page.continuation;
            if continuation.is_none() {
                break;
            }
        }
        if report != SweepReport::default() {
            tracing::info!(?report, "swept open uploads");
        }
        Ok(report)
    }

    /// `Some(true)`: started; `Some(false)`: removed as abandoned; `None`: still in flight.
    async fn settle(
        &self,
        record: &FileRecord,
        abandon_before: DateTime<Utc>,
    ) -> Result<Option<bool>, FilesError> {
        let id = record.id;
        // An upload URL's upload may still arrive until the URL expires.
        let since = match record.direct {
            Some(direct) => direct.url_expires_at,
            None => record.created_time,
        };
        match self
            .store
            .blob_properties(record.container(), &id.to_string())
            .await
        {
            Ok(props) => {
                let facts = TriggerFacts {
                    record: Some(record.clone()),
                    blob_size: Some(props.size),
                    blob_created: None,
                };
                self.start(id, facts).await?;
                Ok(Some(true))
            }
            Err(StoreError::NotFound) if since < abandon_before => {
                // Its bytes, if any, are gone with it: the embedded store removes a failed
                // write's file at once (and a crashed one's at open); Azure discards
                // uncommitted blocks itself after 7 days.
                self.forget_record(id).await;
                tracing::info!(file = %id, since = %record.created_time, "removed an upload that never finished");
                Ok(Some(false))
            }
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// The refusal of a decision the workflow is not waiting for, saying why.
fn wrong_stage(
    id: FileId,
    stage: ApprovalStage,
    view: &FileView,
    event: &DecisionEvent,
) -> FilesError {
    let current = view.stage();
    let earlier = view.approvals().iter().find(|d| d.stage == stage);
    let message = match earlier {
        Some(d) if d.approved != event.approved || d.reviewer != event.reviewer => format!(
            "the {stage} stage of file {id} was already decided: {} by {}",
            if d.approved { "approved" } else { "rejected" },
            d.reviewer
        ),
        _ if stage == ApprovalStage::Download && current == Stage::Analyzing => format!(
            "file {id} is still being analyzed; download approval opens once the analysis is done"
        ),
        _ => format!(
            "file {id} is {}, not awaiting {stage} approval",
            current.describe()
        ),
    };
    FilesError::WrongStage { message, current }
}

fn upload_error(e: StoreError, limit: u64) -> FilesError {
    match e {
        StoreError::Body(source) => {
            if source.downcast_ref::<BodyTooLarge>().is_some() {
                FilesError::TooLarge { limit }
            } else if source.downcast_ref::<EmptyBody>().is_some() {
                FilesError::EmptyFile
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
struct NonEmpty {
    inner: ByteStream,
    seen: bool,
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

/// Whether `reviewer` may decide `view` now (see [`Files::inbox`]).
fn may_decide(view: &FileView, reviewer: &Principal) -> bool {
    let FileView::Workflow { summary, .. } = view else {
        return false;
    };
    let stage = match summary.stage {
        Stage::AwaitingUploadApproval => ApprovalStage::Upload,
        Stage::AwaitingDownloadApproval => ApprovalStage::Download,
        _ => return false,
    };
    let decided_here = summary
        .approvals
        .iter()
        .any(|d| d.stage == stage && d.principal().same_person(reviewer));
    !decided_here
        && workflow::four_eyes_refusal(&summary.file, &summary.approvals, stage, reviewer).is_none()
}

/// What a raised decision (or withdrawal) came to: recorded now, or a repeat of one already
/// recorded (which changed nothing).
fn decided(raised: RaiseOutcome) -> Result<Decided, FilesError> {
    let (status, recorded) = match raised {
        RaiseOutcome::Recorded(status) => (status, true),
        RaiseOutcome::Duplicate(status) => (status, false),
    };
    Ok(Decided {
        view: FileView::from_instance(&status)?,
        recorded,
    })
}

/// A short blob read, whole. A stream that breaks while storage answers is storage being
/// unavailable: the reader may try again.
async fn collect(mut body: ByteStream) -> Result<bytes::Bytes, FilesError> {
    use futures::TryStreamExt;
    let mut all = bytes::BytesMut::new();
    while let Some(chunk) = body.try_next().await.map_err(StoreError::Unavailable)? {
        all.extend_from_slice(&chunk);
    }
    Ok(all.freeze())
}
