//! The HTTP / invocation edge: one module per Azure Functions folder. Handlers parse and
//! validate input into domain types, call the workflow and the engine, and map every outcome to
//! a status code; they hold no storage details beyond the `Storage` trait.
//!
//! | folder          | route                                         | module           |
//! |-----------------|-----------------------------------------------|------------------|
//! | `upload/`       | `POST /api/files`                             | [`upload`]       |
//! | `status/`       | `GET /api/files`, `GET /api/files/{id}`       | [`status`]       |
//! | `approve/`      | `POST /api/files/{id}/approvals/{stage}`      | [`approve`]      |
//! | `download/`     | `GET /api/files/{id}/download`                | [`download`]     |
//! | `orchestrator/` | blob trigger → `POST /orchestrator`           | [`orchestrator`] |
//! | `recover/`      | timer trigger → `POST /recover`               | [`recover`]      |
//! | (embedded only) | `GET /api/blobs/{id}?…&sig=…`                 | [`blobs`]        |

pub mod approve;
pub mod blobs;
pub mod download;
pub mod invocation;
pub mod orchestrator;
pub mod recover;
pub mod status;
pub mod upload;

use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::domain::{FileId, Stage};
use crate::engine::RuntimeStatus;
use crate::error::ApiError;
use crate::startup::AppState;
use crate::workflow::record::{self, FileRecord, UploadState};
use crate::workflow::{summarize, DecisionEvent, Summary};

/// Times in responses are whole seconds in UTC, as Durable Functions' status API writes them.
pub fn api_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn parse_id(path: Result<Path<String>, PathRejection>) -> Result<FileId, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::InvalidId(e.body_text()))?;
    FileId::parse(&raw).map_err(|e| ApiError::InvalidId(e.to_string()))
}

/// A file as clients see it: either a running (or finished) workflow, or a committed upload
/// whose workflow has not started yet.
pub enum FileView {
    Workflow {
        summary: Summary,
        runtime_status: RuntimeStatus,
        created_time: DateTime<Utc>,
        last_updated_time: DateTime<Utc>,
    },
    Uploaded(FileRecord),
}

impl FileView {
    pub fn stage(&self) -> Stage {
        match self {
            FileView::Workflow { summary, .. } => summary.stage,
            FileView::Uploaded(_) => Stage::Uploaded,
        }
    }

    pub fn from_instance(status: &crate::engine::InstanceStatus) -> Result<Self, ApiError> {
        Ok(FileView::Workflow {
            summary: summarize(status)?,
            runtime_status: status.runtime_status,
            created_time: status.created_time,
            last_updated_time: status.last_updated_time,
        })
    }
}

/// Loads a file: its workflow instance (one partition read), else its record.
pub async fn load_file(state: &AppState, id: FileId) -> Result<FileView, ApiError> {
    if let Some(status) = state.engine.status(&id.to_string(), true).await? {
        return FileView::from_instance(&status);
    }
    match record::get(state.store.as_ref(), id).await? {
        Some((rec, _)) => match committed_upload(state, rec).await? {
            Some(rec) => Ok(FileView::Uploaded(rec)),
            None => Err(not_found(id)),
        },
        None => Err(not_found(id)),
    }
}

/// The record of a committed upload, or `None` for an upload still in flight (or one that
/// died before its blob was committed: not a file). The blob's commit is the upload's commit,
/// so a record still `Uploading` whose blob exists is an uploaded file whose record lags.
pub async fn committed_upload(
    state: &AppState,
    mut rec: FileRecord,
) -> Result<Option<FileRecord>, ApiError> {
    if rec.state == UploadState::Uploaded {
        return Ok(Some(rec));
    }
    match state
        .store
        .blob_properties(crate::workflow::FILES_CONTAINER, &rec.id.to_string())
        .await
    {
        Ok(props) => {
            rec.size = Some(props.size);
            rec.state = UploadState::Uploaded;
            Ok(Some(rec))
        }
        Err(crate::store::StoreError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub fn not_found(id: FileId) -> ApiError {
    ApiError::NotFound(format!("no file {id}"))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Links {
    pub status: String,
    pub approve_upload: String,
    pub approve_download: String,
    pub download: String,
}

impl Links {
    fn new(id: &str) -> Self {
        Links {
            status: format!("/api/files/{id}"),
            approve_upload: format!("/api/files/{id}/approvals/upload"),
            approve_download: format!("/api/files/{id}/approvals/download"),
            download: format!("/api/files/{id}/download"),
        }
    }
}

/// The resource of API.md ("FileStatus").
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileStatus {
    pub id: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub stage: Stage,
    pub runtime_status: RuntimeStatus,
    pub created_time: String,
    pub last_updated_time: String,
    pub approvals: Vec<DecisionView>,
    pub analysis: Option<Value>,
    pub links: Links,
}

/// One decision as shown to clients.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionView {
    pub stage: &'static str,
    pub approved: bool,
    pub reviewer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub decided_time: String,
}

impl From<&DecisionEvent> for DecisionView {
    fn from(d: &DecisionEvent) -> Self {
        DecisionView {
            stage: d.stage.as_str(),
            approved: d.approved,
            reviewer: d.reviewer.clone(),
            comment: d.comment.clone(),
            decided_time: api_time(d.decided_time),
        }
    }
}

impl From<&FileView> for FileStatus {
    fn from(view: &FileView) -> Self {
        match view {
            FileView::Workflow {
                summary,
                runtime_status,
                created_time,
                last_updated_time,
            } => FileStatus {
                links: Links::new(&summary.file.id),
                id: summary.file.id.clone(),
                name: summary.file.name.clone(),
                content_type: summary.file.content_type.clone(),
                size: summary.file.size,
                stage: summary.stage,
                runtime_status: *runtime_status,
                // The file's own creation (upload) time, not the instance's.
                created_time: api_time(summary.file.created_time.min(*created_time)),
                last_updated_time: api_time(*last_updated_time),
                approvals: summary.approvals.iter().map(DecisionView::from).collect(),
                analysis: summary.analysis.clone(),
            },
            FileView::Uploaded(rec) => FileStatus {
                links: Links::new(&rec.id.to_string()),
                id: rec.id.to_string(),
                name: rec.name.to_string(),
                content_type: rec.content_type.clone(),
                size: rec.size.unwrap_or(0),
                stage: Stage::Uploaded,
                runtime_status: RuntimeStatus::Pending,
                created_time: api_time(rec.created_time),
                last_updated_time: api_time(rec.created_time),
                approvals: Vec::new(),
                analysis: None,
            },
        }
    }
}
