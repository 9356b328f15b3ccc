//! A reviewer's decision on a stage, checked inside the workflow's turn.

use super::{FileView, Files, FilesError};
use crate::domain::{ApprovalStage, Decision, FileId, Principal, Refusal, Stage, Verdict};
use crate::engine::{EngineError, RaiseOutcome};
use crate::workflow::{self, DecisionEvent, OnVersion};

/// What [`Files::decide`] did.
#[derive(Debug)]
pub struct Decided {
    pub view: FileView,
    /// False for a repeat of a decision already recorded.
    pub recorded: bool,
}

impl Files {
    /// Records a reviewer's decision for `stage`. Refused with [`FilesError::Refused(Refusal::WrongStage)`]
    /// (saying why) when the workflow is not waiting for it; a repeat of the same decision by
    /// the same reviewer is answered with `recorded: false` and changes nothing.
    ///
    /// A rejection or a change request needs a comment that says why (`ReasonRequired`) unless
    /// the deployment turned that off. The decision is on the version the caller names
    /// (refused as `WrongStage` once another is under review), else on the version under review
    /// when the turn records it: no read of the file before the turn.
    pub async fn decide(
        &self,
        id: FileId,
        stage: ApprovalStage,
        reviewer: &Principal,
        decision: Decision,
    ) -> Result<Decided, FilesError> {
        if self.policy.require_reason
            && decision.verdict != Verdict::Approve
            && decision.comment.is_none()
        {
            return Err(FilesError::Refused(Refusal::ReasonRequired(format!(
                "a {} needs a comment that says why",
                match decision.verdict {
                    Verdict::RequestChanges => "change request",
                    _ => "rejection",
                }
            ))));
        }
        let event = DecisionEvent {
            stage,
            approved: decision.verdict == Verdict::Approve,
            reviewer: reviewer.to_string(),
            reviewer_id: reviewer.id().map(str::to_owned),
            comment: decision.comment,
            decided_time: self.clock.now(),
            withdrawal: false,
            changes_requested: decision.verdict == Verdict::RequestChanges,
            // Replaced by the version `decision_event` is told to put it on.
            version: 1,
        };
        let on = OnVersion::from(decision.version);
        let verdict = decision.verdict.as_str();
        let outcome = self
            .engine
            .raise_event(&id.to_string(), workflow::decision_event(&event, on)?)
            .await;
        match outcome {
            Ok(raised) => {
                if matches!(raised, RaiseOutcome::Recorded(_)) {
                    tracing::info!(file = %id, %stage, %reviewer, outcome = verdict, "decision recorded");
                }
                decided(raised)
            }
            Err(EngineError::Refused(refusal)) => {
                tracing::info!(file = %id, %stage, %reviewer, outcome = verdict, rule = refusal.code, "decision refused: four eyes");
                Err(match refusal.code {
                    workflow::SELF_APPROVAL => {
                        FilesError::Refused(Refusal::SelfApproval(refusal.message))
                    }
                    workflow::SAME_REVIEWER => {
                        FilesError::Refused(Refusal::SameReviewer(refusal.message))
                    }
                    workflow::STALE_VERSION => {
                        let current = self.load(id).await?.stage();
                        FilesError::Refused(Refusal::WrongStage {
                            message: refusal.message,
                            current,
                        })
                    }
                    _ => FilesError::Engine(EngineError::Refused(refusal)),
                })
            }
            Err(
                EngineError::InstanceNotFound(_)
                | EngineError::UnexpectedCustomStatus { .. }
                | EngineError::NotRunning { .. },
            ) => {
                // A committed upload whose workflow has not started is a real file in the
                // wrong stage; anything else is not found.
                let view = self.load(id).await?;
                let refusal = wrong_stage(id, stage, &view, &event);
                tracing::info!(file = %id, %stage, %reviewer, outcome = verdict, current = %view.stage(), "decision refused: wrong stage");
                Err(refusal)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The refusal of a decision the workflow is not waiting for, saying why.
pub(super) fn wrong_stage(
    id: FileId,
    stage: ApprovalStage,
    view: &FileView,
    event: &DecisionEvent,
) -> FilesError {
    let current = view.stage();
    let earlier = view.approvals().iter().find(|d| d.stage == stage);
    let message = match earlier {
        Some(d) if d.approved != event.approved || d.reviewer != event.reviewer => format!(
            "the {stage} stage of file {id} was already decided: {} by {}",
            if d.approved {
                "approved"
            } else if d.changes_requested {
                "changes requested"
            } else {
                "rejected"
            },
            d.reviewer
        ),
        _ if stage == ApprovalStage::Download && current == Stage::Analyzing => format!(
            "file {id} is still being analyzed; download approval opens once the analysis is done"
        ),
        _ => format!(
            "file {id} is {}, not awaiting {stage} approval",
            current.describe()
        ),
    };
    FilesError::Refused(Refusal::WrongStage { message, current })
}

/// What a raised decision (or withdrawal) came to: recorded now, or a repeat of one already
/// recorded (which changed nothing).
pub(super) fn decided(raised: RaiseOutcome) -> Result<Decided, FilesError> {
    let (status, recorded) = match raised {
        RaiseOutcome::Recorded(status) => (status, true),
        RaiseOutcome::Duplicate(status) => (status, false),
    };
    Ok(Decided {
        view: FileView::from_instance(&status)?,
        recorded,
    })
}
