//! What the application layer answers with: a file as it stands, a page of files, a download.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{FileRecord, FilesError};
use crate::domain::Stage;
use crate::engine::{InstanceStatus, RuntimeStatus};
use crate::workflow::{summarize, DecisionEvent, Summary};

/// A file as clients see it: a running (or finished) workflow, or a committed upload whose
/// workflow has not started yet.
#[derive(Debug, Clone, PartialEq)]
pub enum FileView {
    Workflow {
        summary: Box<Summary>,
        runtime_status: RuntimeStatus,
        created_time: DateTime<Utc>,
        last_updated_time: DateTime<Utc>,
    },
    Uploaded {
        record: FileRecord,
        /// The committed blob's size.
        size: u64,
    },
}

impl FileView {
    pub fn from_instance(status: &InstanceStatus) -> Result<Self, FilesError> {
        Ok(FileView::Workflow {
            summary: Box::new(summarize(status)?),
            runtime_status: status.runtime_status,
            created_time: status.created_time,
            last_updated_time: status.last_updated_time,
        })
    }

    pub fn stage(&self) -> Stage {
        match self {
            FileView::Workflow { summary, .. } => summary.stage,
            FileView::Uploaded { .. } => Stage::Uploaded,
        }
    }

    /// The size of the bytes under review, in bytes.
    pub fn size(&self) -> u64 {
        match self {
            FileView::Workflow { summary, .. } => summary.file.size,
            FileView::Uploaded { size, .. } => *size,
        }
    }

    /// The display name.
    pub fn name(&self) -> &str {
        match self {
            FileView::Workflow { summary, .. } => &summary.file.name,
            FileView::Uploaded { record, .. } => record.name.as_str(),
        }
    }

    /// The container holding the bytes under review (the current version's).
    pub fn container(&self) -> &str {
        match self {
            FileView::Workflow { summary, .. } => summary.file.container(),
            FileView::Uploaded { record, .. } => record.container(),
        }
    }

    /// The name of the blob holding the bytes under review: the file id, or a new version's.
    pub fn blob_name(&self) -> String {
        match self {
            FileView::Workflow { summary, .. } => summary.file.blob_name().to_owned(),
            FileView::Uploaded { record, .. } => record.id.to_string(),
        }
    }

    /// The snapshot the workflow pinned its bytes to; `None` before the workflow starts (and
    /// for files started before pinning).
    pub fn snapshot(&self) -> Option<&str> {
        match self {
            FileView::Workflow { summary, .. } => summary.file.pinned.as_deref(),
            FileView::Uploaded { .. } => None,
        }
    }

    /// The decisions so far, oldest first.
    pub fn approvals(&self) -> &[DecisionEvent] {
        match self {
            FileView::Workflow { summary, .. } => &summary.approvals,
            FileView::Uploaded { .. } => &[],
        }
    }

    /// The analysis, once it ran.
    pub fn analysis(&self) -> Option<&Value> {
        match self {
            FileView::Workflow { summary, .. } => summary.analysis.as_ref(),
            FileView::Uploaded { .. } => None,
        }
    }
}

/// One page of [`super::Files::list`].
#[derive(Debug, Clone)]
pub struct FilePage {
    pub files: Vec<FileView>,
    /// Present when more may follow.
    pub continuation: Option<String>,
}

/// A download handed out: the file, and a read-only link to its bytes.
#[derive(Debug, Clone)]
pub struct DownloadGrant {
    pub view: FileView,
    pub url: String,
    pub expires_at: DateTime<Utc>,
}
