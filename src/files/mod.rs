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

//!
//! One file per use case, on the model of the `functions/` edge: [`upload`] (through the app),
//! [`upload_url`] (straight to storage, and its completion), [`start`], [`decide`],
//! [`withdraw`], [`list`] (by stage, and the inbox), [`history`], [`preview`], [`download`] and
//! [`sweep`]. What they share — finding a file's record and loading the file — is in [`lookup`].

pub mod actions;
mod audit;
mod decide;
mod download;
mod error;
mod history;
mod links;
mod list;
mod lookup;
mod notes;
pub mod preview;
pub mod record;
mod related;
mod revoke;
mod scan_result;
mod start;
mod sweep;
mod upload;
mod upload_url;
mod versions;
mod view;
mod withdraw;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

pub use decide::Decided;
pub use error::FilesError;
pub use links::{Followed, LinkUse};
pub use record::{DirectUpload, FileRecord, FILES_TABLE, OPEN_UPLOADS};
pub use related::{Related, RelatedFile};
pub use scan_result::ScanResultOutcome;
pub use start::{Started, TriggerFacts};
pub use sweep::SweepReport;
pub use upload::NewUpload;
pub use upload_url::{NewDirectUpload, UploadGrant};
pub use versions::VersionGrant;
pub use view::{DownloadGrant, FilePage, FileView};

use crate::clock::Clock;
use crate::engine::{Engine, Executed, HeldBy};
use crate::store::{
    Storage, FILES_CONTAINER, QUARANTINE_CONTAINER, UPLOADS_CONTAINER, VERSIONS_CONTAINER,
};
use crate::workflow::ScanRules;

/// How files are handled: limits and timings fixed at start-up.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The largest upload accepted, in bytes.
    pub max_upload_bytes: u64,
    /// How long a download link stays valid.
    pub download_ttl: Duration,
    /// How long the storage link a followed download link redirects to stays valid: long
    /// enough to start the transfer (a transfer under way outlives it), short enough that a
    /// revocation stops the next one within minutes.
    pub fetch_ttl: Duration,
    /// Downloads of one file its links allow in all; `None`, no limit.
    pub max_downloads: Option<u64>,
    /// A link asked for by a known person works for them alone.
    pub bind_download_links: bool,
    /// A rejection or a change request needs a comment.
    pub require_reason: bool,
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
    /// Scan every file before review (a scanner is configured).
    pub scan: Option<ScanRules>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_upload_bytes: 100 * 1024 * 1024,
            download_ttl: Duration::hours(1),
            fetch_ttl: Duration::minutes(5),
            max_downloads: None,
            bind_download_links: false,
            require_reason: true,
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
            scan: None,
            upload_url_ttl: Duration::minutes(15),
            max_direct_upload_bytes: 1 << 40,
        }
    }
}

/// The application layer's handle. Cheap to share behind an `Arc`.
pub struct Files {
    store: Arc<dyn Storage>,
    engine: Engine,
    clock: Arc<dyn Clock>,
    policy: Policy,
    /// The key download links are signed with, read (or made) once.
    link_key: tokio::sync::OnceCell<links::LinkKey>,
}

/// `ttl` from `now`, in whole seconds: a SAS's `se` field, and the API's times, carry no
/// fractions.
pub(crate) fn whole_seconds_after(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    now + ttl - Duration::nanoseconds(i64::from(now.timestamp_subsec_nanos()))
}

impl Files {
    /// The size an upload URL's sender declares: not empty, and within the deployment's limit
    /// for uploads straight to storage.
    pub(crate) fn check_declared_size(&self, declared_size: u64) -> Result<(), FilesError> {
        let limit = self.policy.max_direct_upload_bytes;
        if declared_size == 0 {
            return Err(FilesError::Refused(crate::domain::Refusal::EmptyFile));
        }
        if declared_size > limit {
            return Err(FilesError::Refused(
                crate::domain::Refusal::DeclaredTooLarge { limit },
            ));
        }
        Ok(())
    }

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
            link_key: tokio::sync::OnceCell::new(),
        }
    }

    /// Creates the container and tables if missing. Idempotent.
    pub async fn ensure_storage(&self) -> Result<(), FilesError> {
        self.store.ensure_container(FILES_CONTAINER).await?;
        self.store.ensure_container(UPLOADS_CONTAINER).await?;
        self.store.ensure_container(VERSIONS_CONTAINER).await?;
        if self.policy.scan.is_some_and(|rules| rules.quarantine) {
            self.store.ensure_container(QUARANTINE_CONTAINER).await?;
        }
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

    /// How many times file `id` was downloaded through its links (resumes not counted).
    pub async fn downloads(&self, id: crate::domain::FileId) -> Result<u64, FilesError> {
        audit::downloads(self.store.as_ref(), id).await
    }

    /// Runs one message of the workflows' work queue (an activity to run or a timer to fire),
    /// as the host's queue trigger delivered it. An error means "deliver it again later".
    pub async fn run_work(
        &self,
        text: &str,
        inserted: DateTime<Utc>,
        held: HeldBy,
    ) -> Result<Executed, FilesError> {
        Ok(self.engine.execute(text, inserted, held).await?)
    }

    /// The origin that signed upload and download links point at, for the web page's
    /// Content-Security-Policy.
    pub fn signed_url_origin(&self) -> String {
        self.store.signed_url_origin()
    }
}
