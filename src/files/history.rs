//! A file's history as people read it.

use super::audit;
use super::{FileView, Files, FilesError};
use crate::domain::{FileId, Refusal};
use crate::workflow::{self};

impl Files {
    /// Every step of a file's life, oldest first: its workflow's history, the download links
    /// handed out (who asked, when) and every time one was followed; for a reviewer
    /// (`reviewer`), the reviewers' private notes too.
    pub async fn history(
        &self,
        id: FileId,
        reviewer: bool,
    ) -> Result<Vec<workflow::Step>, FilesError> {
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
                FileView::Workflow { .. } => Err(FilesError::Refused(Refusal::no_file(id))),
            };
        };
        let mut steps = workflow::timeline(&status)?;
        steps.extend(audit::steps(self.store.as_ref(), id, reviewer).await?);
        // Stable: steps of the same instant keep the workflow's order.
        steps.sort_by_key(|s| s.time);
        Ok(steps)
    }
}
