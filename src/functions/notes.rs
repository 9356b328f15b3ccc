//! `notes/`: `POST /api/files/{id}/notes` — a reviewer's private note on a file, at any stage
//! ([`crate::files::Files::add_note`]). Body: `{"note": "…"}`. Reviewers see notes in the
//! history; uploaders never do.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::history::StepView;
use super::{parse_id, AppState};
use crate::domain::{from_json_object, Decision, Refusal};
use crate::error::ApiError;

/// A note's body is its text.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    note: String,
}

#[utoipa::path(
    post,
    path = "/api/files/{id}/notes",
    operation_id = "addNote",
    tag = "review",
    params(("id" = uuid::Uuid, Path, description = "The file id")),
    request_body(content = super::schema::NoteBodyDoc, content_type = "application/json"),
    responses(
        (status = 201, description = "Kept: the history step reviewers will see", body = StepView),
        (status = 400, description = "InvalidId, InvalidBody, InvalidQuery, InvalidHeader", body = super::schema::ErrorBody),
        (status = 401, description = "Unauthorized", body = super::schema::ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 403, description = "NotAReviewer", body = super::schema::ErrorBody),
        (status = 404, description = "NotFound", body = super::schema::ErrorBody),
        (status = 503, description = "StorageUnavailable", body = super::schema::ErrorBody, headers(("Retry-After" = String))),
    ),
    security(("functionKey" = [], "bearer" = []), ("functionKey" = [], "easyAuth" = []), ("bearer" = []), ("easyAuth" = []))
)]
pub async fn add_note(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id(path)?;
    let reviewer = state.access.reviewer(&headers)?;
    let body = body.map_err(|e| ApiError::Refused(Refusal::InvalidBody(e.body_text())))?;
    let note: NoteBody = from_json_object(&body).map_err(|e| {
        ApiError::Refused(Refusal::InvalidBody(format!(
            "a note is a JSON object {{\"note\": \"…\"}}: {e}"
        )))
    })?;
    let text = Decision::comment(Some(note.note))
        .map_err(|e| ApiError::Refused(Refusal::InvalidBody(e.to_string())))?
        .ok_or_else(|| ApiError::Refused(Refusal::InvalidBody("the note is empty".into())))?;
    let step = state.files.add_note(id, &reviewer, text).await?;
    Ok((StatusCode::CREATED, Json(StepView::from(&step))).into_response())
}
