//! `versions/`: `POST /api/files/{id}/versions` — the uploader sends a new version after a
//! reviewer asked for changes ([`crate::files::Files::new_version`]): the bytes as
//! `POST /api/files` takes them (raw with `Content-Type`, or a multipart form's file part),
//! streamed, never held whole.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::upload::{body_error, parse};
use super::{parse_id, AppState, FileStatus};
use crate::domain::Refusal;
use crate::error::ApiError;
use crate::files::FilesError;

#[utoipa::path(
    post,
    path = "/api/files/{id}/versions",
    operation_id = "newVersion",
    tag = "files",
    params(("id" = uuid::Uuid, Path, description = "The file id")),
    request_body(
        description = "The new version's bytes (raw, with Content-Type), or multipart/form-data with one file part",
        content(
            (super::schema::BinaryBody = "application/octet-stream"),
            (super::schema::MultipartUpload = "multipart/form-data")
        )
    ),
    responses(
        (status = 202, description = "Taken: it is scanned and analysed, and its review starts again from the upload stage", body = FileStatus),
        (status = 400, description = "InvalidId, EmptyFile, InvalidBody, InvalidMultipart, InvalidHeader", body = super::schema::ErrorBody),
        (status = 401, description = "Unauthorized: a new version needs the uploader's identity", body = super::schema::ErrorBody,
            headers(("WWW-Authenticate" = String))),
        (status = 403, description = "NotTheUploader, NotAnUploader", body = super::schema::ErrorBody),
        (status = 404, description = "NotFound", body = super::schema::ErrorBody),
        (status = 409, description = "WrongStage (with currentStage): no change was requested", body = super::schema::ErrorBody),
        (status = 413, description = "TooLarge", body = super::schema::ErrorBody),
        (status = 503, description = "StorageUnavailable", body = super::schema::ErrorBody, headers(("Retry-After" = String))),
        (status = 507, description = "InsufficientStorage", body = super::schema::ErrorBody),
    ),
    security(("functionKey" = [], "bearer" = []), ("functionKey" = [], "easyAuth" = []), ("bearer" = []), ("easyAuth" = []))
)]
pub async fn new_version(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = parse_id(path)?;
    // Who sends it is settled before a byte is read.
    let uploader = state.access.uploader(&headers)?.ok_or_else(|| {
        ApiError::Refused(Refusal::Unauthorized(
            "a new version needs the uploader's identity: Authorization: Bearer <token> or a sign-in"
                .into(),
        ))
    })?;
    let limit = state.files.policy().max_upload_bytes;
    let upload = parse(limit, raw_query.as_deref(), &headers, body).await?;
    let done = state
        .files
        .new_version(id, &uploader, upload.content_type, upload.body)
        .await
        .map_err(|e| match e {
            FilesError::Body(source) => body_error(source),
            other => other.into(),
        })?;
    Ok((StatusCode::ACCEPTED, Json(FileStatus::from(&done.view))).into_response())
}
