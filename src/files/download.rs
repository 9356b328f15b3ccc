//! The download: the analysis and a read-only link, once both stages are approved.

use super::audit;
use super::DownloadGrant;
use super::{Files, FilesError, FILES_TABLE};
use crate::domain::{FileId, Principal, Refusal, Stage};

impl Files {
    /// The analysis and a read-only link valid for [`super::Policy::download_ttl`], once both
    /// approvals are in. The link is the app's own (path and query; the edge makes it
    /// absolute), checked each time it is followed ([`Files::follow_link`]).
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
        let now = self.clock.now();
        let expires_at = super::whole_seconds_after(now, self.policy.download_ttl);
        // An app link, checked at each use (see `links`), not a storage link.
        let bound_to = requester.filter(|_| self.policy.bind_download_links);
        let url = self.mint_link(id, expires_at, bound_to).await?;
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
