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
use super::{comment_text, json_object_body, parse_id, AppState};
use crate::domain::Refusal;
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
    let note: NoteBody = json_object_body(body, "a note", r#"{"note": "…"}"#)?;
    let text = comment_text(Some(note.note))?
        .ok_or_else(|| ApiError::Refused(Refusal::InvalidBody("the note is empty".into())))?;
    let step = state.files.add_note(id, &reviewer, text).await?;
    Ok((StatusCode::CREATED, Json(StepView::from(&step))).into_response())
}
