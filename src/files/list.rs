//! Listings: files by stage, and a reviewer's inbox.

use super::FilePage;
use super::{FileView, Files, FilesError};
use crate::domain::{Principal, Stage};
use crate::engine::ListQuery;
use crate::workflow::{self};

impl Files {
    /// One page of files from the status index: at `stage`, oldest first (a reviewer's
    /// queue); without a stage, every file, stage by stage in the workflow's order and oldest
    /// first within each. `Uploaded` files (no workflow yet) are not listed: they exist only
    /// for the moment between a blob's commit and its trigger. Each page is one index query
    /// and one read per file.
    pub async fn list(
        &self,
        stage: Option<Stage>,
        top: u32,
        continuation: Option<String>,
    ) -> Result<FilePage, FilesError> {
        let key = match stage {
            Some(stage) => match workflow::stage_index_key(stage) {
                Some(key) => Some(key.to_owned()),
                None => {
                    return Ok(FilePage {
                        files: Vec::new(),
                        continuation: None,
                    })
                }
            },
            None => None,
        };
        self.list_index(key, None, top, continuation, |view| {
            stage.is_none_or(|s| view.stage() == s)
        })
        .await
    }

    /// Pages through the status index from `key` (through `through`), keeping the files
    /// `keep` wants, reading at most a few index pages per call so a page's cost stays bounded.
    /// Tokens are the hex of the index position to continue after: every even-length hex
    /// string is one, so any such token is valid.
    pub(super) async fn list_index(
        &self,
        key: Option<String>,
        through: Option<String>,
        top: u32,
        continuation: Option<String>,
        keep: impl Fn(&FileView) -> bool,
    ) -> Result<FilePage, FilesError> {
        /// Index pages one call reads at most, when the keys hold files that are not kept (a
        /// page of `AwaitingDownloadApproval` among files still `Analyzing`).
        const MAX_INDEX_PAGES: usize = 4;
        let mut position = super::related::position_of(continuation)?;
        let mut files = Vec::new();
        for _ in 0..MAX_INDEX_PAGES {
            let wanted = top.saturating_sub(u32::try_from(files.len()).unwrap_or(u32::MAX));
            let page = self
                .engine
                .list(ListQuery {
                    key: key.clone(),
                    through_key: through.clone(),
                    top: wanted.max(1),
                    continuation: position.take(),
                })
                .await?;
            for status in &page.instances {
                let view = FileView::from_instance(status)?;
                if keep(&view) {
                    files.push(view);
                }
            }
            position = page.continuation;
            if position.is_none() || files.len() >= top as usize {
                break;
            }
        }
        Ok(FilePage {
            files,
            continuation: super::related::token_of(position),
        })
    }

    /// A reviewer's inbox: the files `reviewer` may decide now — awaiting a decision, not
    /// uploaded by them, not decided by them in this stage, and (four eyes) not a download whose
    /// upload they approved. Upload approvals first, then download approvals, each oldest first
    /// by when the file reached its stage. Costs what a listing page does: at most a few index
    /// pages of `top` files are read per call, so a page may hold fewer than `top` files (even
    /// none) with a continuation to follow.
    pub async fn inbox(
        &self,
        reviewer: &Principal,
        stage: Option<Stage>,
        top: u32,
        continuation: Option<String>,
    ) -> Result<FilePage, FilesError> {
        // The two awaiting stages are consecutive keys of the index, upload before download.
        let key = workflow::stage_index_key(Stage::AwaitingUploadApproval).map(str::to_owned);
        let through = workflow::stage_index_key(Stage::AwaitingDownloadApproval).map(str::to_owned);
        self.list_index(key, through, top, continuation, |view| {
            may_decide(view, reviewer) && stage.is_none_or(|s| view.stage() == s)
        })
        .await
    }
}

/// Whether `reviewer` may decide `view` now (see [`Files::inbox`]): the approval the page
/// would offer them ([`super::actions`]).
pub(super) fn may_decide(view: &FileView, reviewer: &Principal) -> bool {
    super::actions::may_approve(view, reviewer)
}
