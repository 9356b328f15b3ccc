//! The File Approver workflow, written against the durable engine: the `FileApproval`
//! orchestration and its analysis activity.
//!
//! ```text
//! Scanning ──▶ AwaitingUploadApproval ──approve──▶ Analyzing ──▶ AwaitingDownloadApproval ──approve──▶ Approved
//!    │ malicious / unscannable (block)   │ reject / deadline     │ fails after retries   │ reject / deadline
//!    ▼                                   ▼                       ▼                       ▼
//! Blocked                        Rejected / Expired            Failed           Rejected / Expired
//! ```
//!
//! `Scanning` happens only with a scanner configured (`scan`); without one a file starts in
//! `AwaitingUploadApproval` and its verdict is `notScanned`.
//!
//! The stage is the instance's custom status (a JSON string, [`stage_status`]: the one place
//! that knows the encoding), so the engine can list instances by stage; decisions and the
//! analysis are read back from history ([`summarize`]). A decision is raised as the event
//! [`decision_event`] builds, which also names its idempotency key.

pub mod analysis;
pub mod archive;
mod file_approval;
mod input;
pub mod notify;
pub mod related;
mod scan;
mod stages;
mod versions;

pub use file_approval::scan_result_event;
pub use file_approval::{
    decision_event, index_key, registry, stage_index_key, stage_status, start_for_file, summarize,
    DecisionEvent, Failure, OnVersion, Summary, ANALYZE_ACTIVITY, ORCHESTRATION, SAME_REVIEWER,
    SELF_APPROVAL, STALE_VERSION,
};
pub use file_approval::{four_eyes_refusal, timeline, Step, NOT_THE_UPLOADER};
pub use file_approval::{revocation_event, RevocationEvent, REVOCATION_EVENT};
pub use input::{ApprovalRules, BlobRef, DirectInput, FileInput, ScanRules, ScanVia};
pub use scan::{
    defender_result, DefenderResult, ScanOutcome, BLOCK_ACTIVITY, DEFENDER_RESULT_TYPE,
    SCAN_ACTIVITY, SCAN_RESULT_EVENT,
};
pub use versions::{
    uploader_turn_event, UploaderTurnEvent, VersionInput, VersionSummary, UPLOADER_TURN_EVENT,
};
