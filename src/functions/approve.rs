//! `approve/`: `POST /api/files/{id}/approvals/{stage}` — a reviewer's decision, recorded
//! durably as an event of the file's workflow.
//!
//! The decision is raised with the stage it expects (`AwaitingUploadApproval` or
//! `AwaitingDownloadApproval`); the engine checks that expectation inside the same
//! ETag-guarded turn that records the event, so two reviewers racing cannot both win and a
//! decision can never land in the wrong stage.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{load_file, FileStatus, FileView};
use crate::domain::{ApprovalStage, Decision, FileId, Reviewer, Stage};
use crate::engine::{EngineError, RaiseEvent, RaiseOutcome};
use crate::error::ApiError;
use crate::startup::AppState;
use crate::workflow::{event_name, DecisionEvent};

/// Decisions are tiny; anything bigger is not one.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub async fn approve(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path((raw_id, raw_stage)) = path.map_err(|e| ApiError::InvalidId(e.body_text()))?;
    let id = FileId::parse(&raw_id).map_err(|e| ApiError::InvalidId(e.to_string()))?;
    let stage =
        ApprovalStage::parse(&raw_stage).map_err(|e| ApiError::InvalidStage(e.to_string()))?;
    let reviewer = authenticate(&state, &headers)?;
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::InvalidBody(format!("a decision body is at most {MAX_BODY_BYTES} bytes"))
        }
        _ => ApiError::InvalidBody(e.body_text()),
    })?;
    let decision = Decision::parse(&body).map_err(|e| ApiError::InvalidBody(e.to_string()))?;

    let event = DecisionEvent {
        stage,
        approved: decision.approved,
        reviewer: reviewer.to_string(),
        comment: decision.comment,
        decided_time: state.clock.now(),
    };
    // The same reviewer repeating the same decision raises the same event id, which the engine
    // records once: the repeat is answered 200 instead of 202.
    let event_id = format!(
        "{stage}:{}:{}",
        reviewer,
        if event.approved { "approve" } else { "reject" }
    );
    let payload = serde_json::to_value(&event).map_err(ApiError::internal)?;
    let outcome = state
        .engine
        .raise_event(
            &id.to_string(),
            RaiseEvent {
                name: event_name(stage).to_owned(),
                event_id,
                payload,
                expect_custom_status: Some(json!(stage.awaited_in().as_str())),
            },
        )
        .await;
    match outcome {
        Ok(RaiseOutcome::Recorded(status)) => respond(StatusCode::ACCEPTED, &status),
        Ok(RaiseOutcome::Duplicate(status)) => respond(StatusCode::OK, &status),
        Err(EngineError::InstanceNotFound(_)) => {
            // A committed upload whose blob trigger has not arrived yet is a real file.
            match load_file(&state, id).await {
                Ok(view) => Err(wrong_stage(id, stage, &view, &event)),
                Err(e) => Err(e),
            }
        }
        Err(EngineError::UnexpectedCustomStatus { .. }) | Err(EngineError::NotRunning { .. }) => {
            let view = load_file(&state, id).await?;
            Err(wrong_stage(id, stage, &view, &event))
        }
        Err(e) => Err(e.into()),
    }
}

fn respond(code: StatusCode, status: &crate::engine::InstanceStatus) -> Result<Response, ApiError> {
    let view = FileView::from_instance(status)?;
    Ok((code, Json(FileStatus::from(&view))).into_response())
}

/// The 409 for a decision the workflow is not waiting for, saying why.
fn wrong_stage(
    id: FileId,
    stage: ApprovalStage,
    view: &FileView,
    event: &DecisionEvent,
) -> ApiError {
    let current = view.stage();
    let earlier = match view {
        FileView::Workflow { summary, .. } => summary.approvals.iter().find(|d| d.stage == stage),
        FileView::Uploaded(_) => None,
    };
    let message = match earlier {
        Some(d) if d.approved != event.approved || d.reviewer != event.reviewer => format!(
            "the {stage} stage of file {id} was already decided: {} by {}",
            if d.approved { "approved" } else { "rejected" },
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
    ApiError::WrongStage { message, current }
}

/// The reviewer behind `Authorization: Bearer <token>`, or `anonymous` when no reviewers are
/// configured.
fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Reviewer, ApiError> {
    let reviewers = &state.settings.reviewers;
    if reviewers.is_empty() {
        return Ok(Reviewer::anonymous());
    }
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::Unauthorized("an Authorization: Bearer <token> header is required".into())
    })?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized("the Authorization header must be Bearer <token>".into())
        })?;
    reviewers
        .authenticate(token)
        .ok_or_else(|| ApiError::Unauthorized("the token belongs to no reviewer".into()))
}
