//! `approve/`: `POST /api/files/{id}/approvals/{stage}` — a reviewer's decision, recorded
//! durably as an event of the file's workflow ([`crate::files::Files::decide`]).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{AppState, FileStatus};
use crate::domain::Refusal;
use crate::domain::{ApprovalStage, Decision, FileId};
use crate::error::ApiError;

/// Decisions are tiny; anything bigger is not one.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

#[utoipa::path(
    post,
    path = "/api/files/{id}/approvals/{stage}",
    operation_id = "decide",
    tag = "review",
    params(
        ("id" = uuid::Uuid, Path, description = "The file id"),
        ("stage" = super::schema::ApprovalStageName, Path, description = "Which decision"),
    ),
    request_body(content = Option<super::schema::DecisionBody>, content_type = "application/json"),
    responses(
        (status = 202, description = "Recorded", body = FileStatus),
        (status = 200, description = "The same decision by the same reviewer again: nothing changed", body = FileStatus),
        (status = 400, description = "InvalidId, InvalidStage, InvalidBody, InvalidQuery, InvalidHeader", body = super::schema::ErrorBody),
        (status = 401, description = "Unauthorized", body = super::schema::ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 403, description = "NotAReviewer, SelfApproval, SameReviewer", body = super::schema::ErrorBody),
        (status = 404, description = "NotFound", body = super::schema::ErrorBody),
        (status = 409, description = "WrongStage (with currentStage)", body = super::schema::ErrorBody),
        (status = 503, description = "StorageUnavailable", body = super::schema::ErrorBody, headers(("Retry-After" = String))),
    ),
    security(("functionKey" = [], "bearer" = []), ("functionKey" = [], "easyAuth" = []), ("functionKey" = []), ())
)]
pub async fn approve(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path((raw_id, raw_stage)) =
        path.map_err(|e| ApiError::Refused(Refusal::InvalidId(e.body_text())))?;
    let id =
        FileId::parse(&raw_id).map_err(|e| ApiError::Refused(Refusal::InvalidId(e.to_string())))?;
    let stage = ApprovalStage::parse(&raw_stage)
        .map_err(|e| ApiError::Refused(Refusal::InvalidStage(e.to_string())))?;
    let reviewer = state.access.reviewer(&headers).inspect_err(|e| {
        tracing::info!(file = %id, %stage, reason = %e, "refused a credential");
    })?;
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::Refused(Refusal::InvalidBody(format!(
            "a decision body is at most {MAX_BODY_BYTES} bytes"
        ))),
        _ => ApiError::Refused(Refusal::InvalidBody(e.body_text())),
    })?;
    let decision = Decision::parse(&body)
        .map_err(|e| ApiError::Refused(Refusal::InvalidBody(e.to_string())))?;

    let decided = state.files.decide(id, stage, &reviewer, decision).await?;
    // A repeat of a decision already recorded changes nothing: 200 instead of 202.
    Ok(super::decided_response(&decided))
}
