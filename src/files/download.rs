//! The download: the analysis and a read-only link, once both stages are approved.

use chrono::Duration;

use super::audit;
use super::DownloadGrant;
use super::{Files, FilesError, FILES_TABLE};
use crate::domain::{FileId, Principal, Refusal, Stage};
use crate::store::SignedUrlRequest;

impl Files {
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
            return Err(FilesError::Refused(Refusal::NotApproved {
                message: format!(
                    "file {id} is {}; download needs both approvals",
                    stage.describe()
                ),
                current: stage,
            }));
        }
        // Whole seconds: the SAS `se` field and the response both carry second precision.
        let now = self.clock.now();
        let expires_at = now + self.policy.download_ttl
            - Duration::nanoseconds(i64::from(now.timestamp_subsec_nanos()));
        let id_text = id.to_string();
        let url = self
            .store
            .signed_read_url(&SignedUrlRequest {
                snapshot: view.snapshot(),
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
}
