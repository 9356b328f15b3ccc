//! The File Approver workflow, written against the durable engine: the `FileApproval`
//! orchestration, its analysis activity, and the file record it starts from.
//!
//! ```text
//! AwaitingUploadApproval ──approve──▶ Analyzing ──▶ AwaitingDownloadApproval ──approve──▶ Approved
//!          │ reject / deadline              │ fails after retries     │ reject / deadline
//!          ▼                                ▼                         ▼
//!   Rejected / Expired                    Failed               Rejected / Expired
//! ```
//!
//! The stage is the instance's custom status (a JSON string), so the engine can list instances
//! by stage; decisions and the analysis are read back from history ([`summarize`]).

pub mod analysis;
mod file_approval;
pub mod record;

pub use file_approval::{
    event_name, registry, start_for_file, summarize, DecisionEvent, FileInput, Summary,
    ANALYZE_ACTIVITY, ORCHESTRATION,
};

/// The blob container holding every uploaded file (blob name = file id).
pub const FILES_CONTAINER: &str = "files";
