use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a file's workflow stands (API.md, "Workflow stages").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stage {
    Uploaded,
    Scanning,
    AwaitingUploadApproval,
    Analyzing,
    AwaitingDownloadApproval,
    /// A reviewer asked for changes: the uploader's turn to send a new version.
    ChangesRequested,
    Approved,
    Rejected,
    Expired,
    Failed,
    Withdrawn,
    Blocked,
    Revoked,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StageError {
    #[error("{0:?} is not a stage; expected one of Uploaded, Scanning, AwaitingUploadApproval, Analyzing, AwaitingDownloadApproval, ChangesRequested, Approved, Rejected, Expired, Failed, Withdrawn, Blocked, Revoked")]
    UnknownStage(String),
    #[error("{0:?} is not an approval stage; expected \"upload\" or \"download\"")]
    UnknownApprovalStage(String),
}

impl Stage {
    pub const ALL: [Stage; 13] = [
        Stage::Uploaded,
        Stage::Scanning,
        Stage::AwaitingUploadApproval,
        Stage::Analyzing,
        Stage::AwaitingDownloadApproval,
        Stage::ChangesRequested,
        Stage::Approved,
        Stage::Rejected,
        Stage::Expired,
        Stage::Failed,
        Stage::Withdrawn,
        Stage::Blocked,
        Stage::Revoked,
    ];

    pub fn parse(raw: &str) -> Result<Self, StageError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(raw))
            .ok_or_else(|| StageError::UnknownStage(raw.chars().take(64).collect()))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Uploaded => "Uploaded",
            Stage::Scanning => "Scanning",
            Stage::AwaitingUploadApproval => "AwaitingUploadApproval",
            Stage::Analyzing => "Analyzing",
            Stage::AwaitingDownloadApproval => "AwaitingDownloadApproval",
            Stage::ChangesRequested => "ChangesRequested",
            Stage::Approved => "Approved",
            Stage::Rejected => "Rejected",
            Stage::Expired => "Expired",
            Stage::Failed => "Failed",
            Stage::Withdrawn => "Withdrawn",
            Stage::Blocked => "Blocked",
            Stage::Revoked => "Revoked",
        }
    }

    /// A stage after the review: the file never goes back to review. (An approved file may
    /// still be revoked.)
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Stage::Approved
                | Stage::Rejected
                | Stage::Expired
                | Stage::Failed
                | Stage::Withdrawn
                | Stage::Blocked
                | Stage::Revoked
        )
    }

    /// The app itself is working on the file (its workflow starting, its scan or analysis
    /// running): nobody needs to act, and the stage changes without anyone's word.
    pub fn is_in_progress(self) -> bool {
        matches!(self, Stage::Uploaded | Stage::Scanning | Stage::Analyzing)
    }

    /// A human phrase for error messages ("is awaiting upload approval").
    pub fn describe(self) -> &'static str {
        match self {
            Stage::Uploaded => "uploaded but its workflow has not started yet",
            Stage::Scanning => "being scanned for malware",
            Stage::AwaitingUploadApproval => "awaiting upload approval",
            Stage::Analyzing => "being analyzed",
            Stage::AwaitingDownloadApproval => "awaiting download approval",
            Stage::ChangesRequested => "waiting for its uploader's new version",
            Stage::Approved => "approved",
            Stage::Rejected => "rejected",
            Stage::Expired => "expired",
            Stage::Failed => "failed",
            Stage::Withdrawn => "withdrawn by its uploader",
            Stage::Blocked => "blocked by the malware scan",
            Stage::Revoked => "revoked after its approval",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The two decisions a file needs, named as in the URL (`/approvals/upload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalStage {
    Upload,
    Download,
}

impl ApprovalStage {
    pub fn parse(raw: &str) -> Result<Self, StageError> {
        match raw {
            "upload" => Ok(ApprovalStage::Upload),
            "download" => Ok(ApprovalStage::Download),
            other => Err(StageError::UnknownApprovalStage(
                other.chars().take(64).collect(),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStage::Upload => "upload",
            ApprovalStage::Download => "download",
        }
    }

    /// The workflow stage in which this decision is awaited.
    pub fn awaited_in(self) -> Stage {
        match self {
            ApprovalStage::Upload => Stage::AwaitingUploadApproval,
            ApprovalStage::Download => Stage::AwaitingDownloadApproval,
        }
    }
}

impl fmt::Display for ApprovalStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_parses_from_its_own_name() {
        for stage in Stage::ALL {
            assert_eq!(Stage::parse(stage.as_str()), Ok(stage));
        }
        assert_eq!(Stage::parse("approved"), Ok(Stage::Approved));
        assert!(Stage::parse("Done").is_err());
    }

    #[test]
    fn approval_stages_are_lowercase_url_words() {
        assert_eq!(ApprovalStage::parse("upload"), Ok(ApprovalStage::Upload));
        assert_eq!(
            ApprovalStage::parse("download"),
            Ok(ApprovalStage::Download)
        );
        assert!(ApprovalStage::parse("Upload").is_err());
        assert!(ApprovalStage::parse("publish").is_err());
    }
}
