//! `withdraw/`: `POST /api/files/{id}/withdraw` — the uploader takes a file back while it
//! awaits a decision ([`crate::files::Files::withdraw`]). Body: nothing, or
//! `{"comment": "…"}`.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::{parse_id, AppState, FileStatus};
use crate::domain::optional_json_object;
use crate::domain::Refusal;
use crate::error::ApiError;

/// A withdrawal's body is a comment at most.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Withdrawal {
    #[serde(default)]
    comment: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/files/{id}/withdraw",
    operation_id = "withdraw",
    tag = "review",
    params(("id" = uuid::Uuid, Path, description = "The file id")),
    request_body(content = Option<super::schema::WithdrawalBody>, content_type = "application/json"),
    responses(
        (status = 202, description = "Withdrawn", body = FileStatus),
        (status = 400, description = "InvalidId, InvalidBody, InvalidQuery, InvalidHeader", body = super::schema::ErrorBody),
        (status = 401, description = "Unauthorized", body = super::schema::ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 403, description = "NotTheUploader, NotAnUploader", body = super::schema::ErrorBody),
        (status = 404, description = "NotFound", body = super::schema::ErrorBody),
        (status = 409, description = "WrongStage (with currentStage)", body = super::schema::ErrorBody),
        (status = 503, description = "StorageUnavailable", body = super::schema::ErrorBody, headers(("Retry-After" = String))),
    ),
    security(("functionKey" = [], "bearer" = []), ("functionKey" = [], "easyAuth" = []), ("bearer" = []), ("easyAuth" = []))
)]
pub async fn withdraw(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id(path)?;
    let requester = state.access.named_uploader(&headers, "withdrawing")?;
    let body = body.map_err(|e| ApiError::Refused(Refusal::InvalidBody(e.body_text())))?;
    let withdrawal: Option<Withdrawal> = optional_json_object(&body)
        .map_err(|e| ApiError::Refused(Refusal::InvalidBody(format!("a withdrawal: {e}"))))?;
    let comment = super::comment_text(withdrawal.and_then(|w| w.comment))?;
    let done = state.files.withdraw(id, &requester, comment).await?;
    Ok(super::decided_response(&done))
}
