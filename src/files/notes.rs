//! Reviewers' private notes: kept in the file's audit, shown in the history to reviewers only.

use super::audit;
use super::{Files, FilesError, FILES_TABLE};
use crate::domain::{FileId, Principal};
use crate::workflow::Step;

impl Files {
    /// Adds reviewer `reviewer`'s private note to file `id`, at any stage. It is never part of
    /// what uploaders see: not in the status, not in their history, not in a notification.
    pub async fn add_note(
        &self,
        id: FileId,
        reviewer: &Principal,
        text: String,
    ) -> Result<Step, FilesError> {
        // A file that does not exist takes no note (404).
        self.load(id).await?;
        let note = audit::Note {
            time: self.clock.now(),
            reviewer: reviewer.clone(),
            text,
        };
        self.store
            .insert_entity(FILES_TABLE, &note.to_entity(id))
            .await?;
        tracing::info!(file = %id, reviewer = %reviewer, "private note added");
        Ok(Step {
            step: "note",
            time: note.time,
            actor: Some(note.reviewer),
            stage: None,
            outcome: None,
            comment: Some(note.text),
        })
    }
}
