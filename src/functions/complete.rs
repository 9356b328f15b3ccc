//! `complete/`: `POST /api/files/{id}/complete` — the uploader's word that the bytes sent
//! through an upload URL have all arrived. It starts the file's workflow where no storage event
//! does (local mode against Azure Storage); under the host Event Grid's `BlobCreated` does the
//! same, and the embedded store starts it on its own commit. Repeating it changes nothing.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Json;

use super::{parse_id, AppState, FileStatus};
use crate::error::ApiError;

#[utoipa::path(
    post,
    path = "/api/files/{id}/complete",
    operation_id = "completeUpload",
    tag = "files",
    params(("id" = uuid::Uuid, Path, description = "The file id")),
    responses(
        (status = 200, description = "Its workflow started (or was running already)", body = super::FileStatus),
        (status = 400, description = "InvalidId, InvalidQuery", body = super::schema::ErrorBody),
        (status = 404, description = "NotFound", body = super::schema::ErrorBody),
        (status = 409, description = "UploadIncomplete: the bytes have not arrived", body = super::schema::ErrorBody),
        (status = 503, description = "StorageUnavailable", body = super::schema::ErrorBody, headers(("Retry-After" = String))),
    )
)]
pub async fn complete(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<FileStatus>, ApiError> {
    let id = parse_id(path)?;
    let view = state.files.complete(id).await?;
    Ok(Json(FileStatus::from(&view)))
}
