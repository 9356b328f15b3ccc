//! What a file's workflow starts from: the file's facts and the rules it is reviewed under,
//! fixed when it starts (so a later settings change cannot make a running instance replay
//! differently).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{ApprovalStage, Principal, UnscannablePolicy};
use crate::store::{BlobAt, FILES_CONTAINER, UPLOADS_CONTAINER};

/// The orchestration's input: everything it needs about the file, fixed when it starts (so a
/// later settings change cannot make a running instance replay differently).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileInput {
    pub id: String,
    pub name: String,
    pub content_type: String,
    /// False when the uploader said nothing about the type: `content_type` is then only what
    /// the bytes are stored as, and the analysis has no claim to check them against.
    #[serde(default = "declared", skip_serializing_if = "is_declared")]
    pub content_type_declared: bool,
    pub size: u64,
    pub created_time: DateTime<Utc>,
    /// Each approval must come within this many seconds, else the file ends `Expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_timeout_secs: Option<u64>,
    /// Set for a file uploaded straight to storage through an upload URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<DirectInput>,
    /// Who uploaded, when the upload said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploader: Option<Principal>,
    /// The approval rules the file was started under.
    #[serde(default)]
    pub rules: ApprovalRules,
    /// Send notifications (a webhook was configured when the file started).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub notify: bool,
    /// Remind this many seconds before a stage's deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminder_before_secs: Option<u64>,
    /// Delete the bytes of a file that ends refused (rejected, expired, withdrawn, failed) this
    /// many seconds after its end; `None` keeps them (files started before this rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_secs: Option<u64>,
    /// Scan the bytes before anyone reviews them; `None` when no scanner was configured
    /// (files started before the gate, too): the verdict is then `notScanned`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<ScanRules>,
    /// The snapshot of the bytes taken when the workflow started: what is scanned, previewed,
    /// analysed and downloaded, whatever is written to the blob afterwards. `None` for files
    /// started before pinning, which read the blob itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
    /// Where the bytes under review were written, when not the upload's own blob (a new
    /// version's, `versions/{id}-v{n}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<BlobRef>,
    /// The version under review: 1 for the upload, then one more for each new version.
    #[serde(default = "first_version", skip_serializing_if = "is_first_version")]
    pub version: u32,
}

/// A blob, by container and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobRef {
    pub container: String,
    pub name: String,
}

fn first_version() -> u32 {
    1
}

fn is_first_version(v: &u32) -> bool {
    *v == 1
}

/// Who scans: the app itself, streaming the bytes to a scanner (ClamAV), or Microsoft Defender
/// for Storage, whose verdict arrives as an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum ScanVia {
    #[default]
    App,
    Defender,
}

/// How a file is scanned: fixed when its workflow starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanRules {
    #[serde(default, skip_serializing_if = "is_app")]
    pub via: ScanVia,
    /// Without a verdict this long after the scan began, the file is unscannable.
    pub timeout_secs: u64,
    /// What an unscannable file does: stop, or go on to review with a warning.
    pub unscannable: UnscannablePolicy,
    /// A blocked file's bytes are moved to quarantine instead of deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quarantine: bool,
}

/// Who may approve, and how many must: fixed when a file's workflow starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRules {
    /// Nobody approves a file they uploaded; nobody who approved the upload approves the
    /// download.
    pub four_eyes: bool,
    /// Distinct approvals the upload stage needs (any rejection ends the workflow).
    pub upload_quorum: u32,
    /// Distinct approvals the download stage needs.
    pub download_quorum: u32,
}

impl Default for ApprovalRules {
    fn default() -> Self {
        ApprovalRules {
            four_eyes: true,
            upload_quorum: 1,
            download_quorum: 1,
        }
    }
}

impl ApprovalRules {
    pub fn quorum(&self, stage: ApprovalStage) -> u32 {
        match stage {
            ApprovalStage::Upload => self.upload_quorum,
            ApprovalStage::Download => self.download_quorum,
        }
        .max(1)
    }
}

/// What a file uploaded through an upload URL adds to the workflow's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectInput {
    /// The size the uploader declared: a blob of another size fails the file before review.
    pub declared_size: u64,
    /// From this time on nobody can change the bytes (the upload URL's expiry, plus a margin
    /// for the storage service's clock): the analysis waits for it, so what is analysed, and
    /// then approved, is what is downloaded.
    pub sealed_time: DateTime<Utc>,
}

fn is_app(via: &ScanVia) -> bool {
    *via == ScanVia::App
}

impl FileInput {
    /// The type the uploader declared, to check the bytes against; `None` when they said
    /// nothing.
    pub fn declared_content_type(&self) -> Option<&str> {
        self.content_type_declared
            .then_some(self.content_type.as_str())
    }

    /// The container holding the bytes under review.
    pub fn container(&self) -> &str {
        match (&self.blob, self.direct) {
            (Some(blob), _) => &blob.container,
            (None, Some(_)) => UPLOADS_CONTAINER,
            (None, None) => FILES_CONTAINER,
        }
    }

    /// The name of the blob holding the bytes under review.
    pub fn blob_name(&self) -> &str {
        match &self.blob {
            Some(blob) => &blob.name,
            None => &self.id,
        }
    }

    /// The bytes the workflow looks at: the pinned snapshot, or the blob itself for a file
    /// started before pinning.
    pub fn bytes(&self) -> BlobAt<'_> {
        BlobAt {
            container: self.container(),
            name: self.blob_name(),
            snapshot: self.pinned.as_deref(),
        }
    }
}

pub(super) fn declared() -> bool {
    true
}

pub(super) fn is_declared(declared: &bool) -> bool {
    *declared
}
