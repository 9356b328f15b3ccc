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
    let uploader = uploader_of(&state, &headers)?;
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

/// A new version's declared size, for an upload URL.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VersionDeclaration {
    #[serde(deserialize_with = "super::grant_upload_url::whole_number")]
    size: u64,
}

/// Where a new version too large for one request goes, and how to say it is there.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionTicket {
    pub id: String,
    pub version: u32,
    pub declared_size: u64,
    /// Create/write only, for this version's blob: a single `PUT` with
    /// `x-ms-blob-type: BlockBlob`, or Put Block + Put Block List.
    pub upload_url: String,
    pub expires_at: String,
    pub links: VersionTicketLinks,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionTicketLinks {
    /// `POST` here once the bytes are in: the version is taken then.
    pub complete: String,
}

/// A declaration's body is small.
pub const MAX_DECLARATION_BYTES: usize = 4 * 1024;

#[utoipa::path(
    post,
    path = "/api/files/{id}/versions/uploads",
    operation_id = "newVersionUpload",
    tag = "files",
    params(("id" = uuid::Uuid, Path, description = "The file id")),
    request_body(content = super::schema::VersionDeclarationBody, content_type = "application/json"),
    responses(
        (status = 201, description = "An upload URL for the new version", body = VersionTicket),
        (status = 400, description = "InvalidId, InvalidBody, EmptyFile, DeclaredTooLarge, InvalidHeader", body = super::schema::ErrorBody),
        (status = 401, description = "Unauthorized", body = super::schema::ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 403, description = "NotTheUploader, NotAnUploader", body = super::schema::ErrorBody),
        (status = 404, description = "NotFound", body = super::schema::ErrorBody),
        (status = 409, description = "WrongStage (with currentStage): no change was requested", body = super::schema::ErrorBody),
        (status = 503, description = "StorageUnavailable", body = super::schema::ErrorBody, headers(("Retry-After" = String))),
    ),
    security(("functionKey" = [], "bearer" = []), ("functionKey" = [], "easyAuth" = []), ("bearer" = []), ("easyAuth" = []))
)]
pub async fn new_version_upload(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id(path)?;
    let uploader = uploader_of(&state, &headers)?;
    let declaration: VersionDeclaration =
        super::json_object_body(body, "a new version's declaration", r#"{"size": bytes}"#)?;
    let grant = state
        .files
        .version_upload(id, &uploader, declaration.size)
        .await?;
    let ticket = VersionTicket {
        id: id.to_string(),
        version: grant.number,
        declared_size: declaration.size,
        upload_url: grant.upload_url,
        expires_at: super::api_time(grant.expires_at),
        links: VersionTicketLinks {
            complete: format!("/api/files/{id}/versions/{}/complete", grant.number),
        },
    };
    Ok((StatusCode::CREATED, Json(ticket)).into_response())
}

#[utoipa::path(
    post,
    path = "/api/files/{id}/versions/{version}/complete",
    operation_id = "completeVersion",
    tag = "files",
    params(
        ("id" = uuid::Uuid, Path, description = "The file id"),
        ("version" = u32, Path, minimum = 2, description = "The version the upload URL was for"),
    ),
    responses(
        (status = 202, description = "Taken: it is scanned and analysed, and its review starts again", body = FileStatus),
        (status = 400, description = "InvalidId, InvalidStage (not a version number), EmptyFile", body = super::schema::ErrorBody),
        (status = 401, description = "Unauthorized", body = super::schema::ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 403, description = "NotTheUploader, NotAnUploader", body = super::schema::ErrorBody),
        (status = 404, description = "NotFound", body = super::schema::ErrorBody),
        (status = 409, description = "WrongStage, UploadIncomplete (the bytes have not arrived)", body = super::schema::ErrorBody),
        (status = 503, description = "StorageUnavailable", body = super::schema::ErrorBody, headers(("Retry-After" = String))),
    ),
    security(("functionKey" = [], "bearer" = []), ("functionKey" = [], "easyAuth" = []), ("bearer" = []), ("easyAuth" = []))
)]
pub async fn complete_version(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path((raw_id, raw_version)) =
        path.map_err(|e| ApiError::Refused(Refusal::InvalidId(e.body_text())))?;
    let id = crate::domain::FileId::parse(&raw_id)
        .map_err(|e| ApiError::Refused(Refusal::InvalidId(e.to_string())))?;
    let number = raw_version
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= 2)
        .ok_or_else(|| {
            ApiError::Refused(Refusal::InvalidStage(format!(
                "{:?} is not a new version's number (2 or more)",
                raw_version.chars().take(20).collect::<String>()
            )))
        })?;
    let uploader = uploader_of(&state, &headers)?;
    let done = state.files.complete_version(id, &uploader, number).await?;
    Ok((StatusCode::ACCEPTED, Json(FileStatus::from(&done.view))).into_response())
}

/// The uploader's identity, which a new version needs.
fn uploader_of(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<crate::domain::Principal, ApiError> {
    state.access.named_uploader(headers, "a new version")
}
