//! `revoke/`: `POST /api/files/{id}/revoke` — a reviewer takes an approved file's approval
//! back ([`crate::files::Files::revoke`]). Body: `{"comment": "…"}`, the reason, required.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::{comment_text, json_object_body, parse_id, AppState, FileStatus};
use crate::domain::Refusal;
use crate::error::ApiError;

/// A revocation's body is its reason.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Revocation {
    #[serde(default)]
    comment: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/files/{id}/revoke",
    operation_id = "revoke",
    tag = "review",
    params(("id" = uuid::Uuid, Path, description = "The file id")),
    request_body(content = super::schema::RevocationBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Revoked: every download link stops giving bytes", body = FileStatus),
        (status = 200, description = "The same reviewer revoked it already: nothing changed", body = FileStatus),
        (status = 400, description = "InvalidId, InvalidBody, ReasonRequired, InvalidQuery, InvalidHeader", body = super::schema::ErrorBody),
        (status = 401, description = "Unauthorized", body = super::schema::ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 403, description = "NotAReviewer", body = super::schema::ErrorBody),
        (status = 404, description = "NotFound", body = super::schema::ErrorBody),
        (status = 409, description = "WrongStage (with currentStage): only an approved file can be revoked", body = super::schema::ErrorBody),
        (status = 503, description = "StorageUnavailable", body = super::schema::ErrorBody, headers(("Retry-After" = String))),
    ),
    security(("functionKey" = [], "bearer" = []), ("functionKey" = [], "easyAuth" = []), ("bearer" = []), ("easyAuth" = []))
)]
pub async fn revoke(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id(path)?;
    let reviewer = state.access.revoker(&headers)?;
    let revocation: Revocation = json_object_body(body, "a revocation", r#"{"comment": "why"}"#)?;
    let comment = comment_text(revocation.comment)?.ok_or_else(|| {
        ApiError::Refused(Refusal::ReasonRequired(
            "a revocation needs a comment that says why".into(),
        ))
    })?;
    let done = state.files.revoke(id, &reviewer, comment).await?;
    Ok(super::decided_response(&done))
}
