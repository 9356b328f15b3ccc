//! An uploader withdraws a file still under review.

use super::decide::decided;
use super::Decided;
use super::{Files, FilesError};
use crate::domain::{ApprovalStage, FileId, Principal, Refusal, Stage};
use crate::engine::{EngineError, RaiseOutcome};
use crate::workflow::{self, DecisionEvent};

impl Files {
    /// The uploader takes a file back while it awaits a decision: it ends `Withdrawn`.
    /// Refused (`NotTheUploader`) for anyone else, and for files uploaded anonymously.
    pub async fn withdraw(
        &self,
        id: FileId,
        requester: &Principal,
        comment: Option<String>,
    ) -> Result<Decided, FilesError> {
        let view = self.load(id).await?;
        let stage = match view.stage() {
            Stage::AwaitingUploadApproval => ApprovalStage::Upload,
            Stage::AwaitingDownloadApproval => ApprovalStage::Download,
            // The uploader's own turn: taking the file back is the other answer to it.
            Stage::ChangesRequested => {
                let turn = workflow::UploaderTurnEvent {
                    uploader: requester.to_string(),
                    uploader_id: requester.id().map(str::to_owned),
                    time: self.clock.now(),
                    version: None,
                    comment,
                };
                let event = workflow::uploader_turn_event(&turn)?;
                return self.uploaders_turn(id, requester, event, "withdrawn").await;
            }
            other => {
                return Err(FilesError::Refused(Refusal::WrongStage {
                    message: format!(
                        "file {id} is {}; it can be withdrawn only while it awaits a decision or changes",
                        other.describe()
                    ),
                    current: other,
                }))
            }
        };
        let event = DecisionEvent {
            stage,
            approved: false,
            reviewer: requester.to_string(),
            reviewer_id: requester.id().map(str::to_owned),
            comment,
            decided_time: self.clock.now(),
            withdrawal: true,
            changes_requested: false,
            version: 1,
        };
        match self
            .engine
            .raise_event(
                &id.to_string(),
                workflow::decision_event(&event, workflow::OnVersion::Stated(1))?,
            )
            .await
        {
            Ok(raised) => {
                if matches!(raised, RaiseOutcome::Recorded(_)) {
                    tracing::info!(file = %id, %stage, requester = %requester, "file withdrawn");
                }
                decided(raised)
            }
            Err(EngineError::Refused(refusal)) => Err(FilesError::Refused(
                Refusal::NotTheUploader(refusal.message),
            )),
            // Decided (or analysed) meanwhile: say where it stands now.
            Err(EngineError::UnexpectedCustomStatus { .. } | EngineError::NotRunning { .. }) => {
                let current = self.load(id).await?.stage();
                Err(FilesError::Refused(Refusal::WrongStage {
                    message: format!(
                        "file {id} is {}; it can be withdrawn only while it awaits a decision",
                        current.describe()
                    ),
                    current,
                }))
            }
            Err(e) => Err(e.into()),
        }
    }
}
