//! `preview/`: `GET /api/files/{id}/preview` — for reviewers, the first part of a text file or
//! a small raster image ([`crate::files::Files::preview`]), served so that no browser can run
//! it: the type comes from the bytes, `nosniff`, a sandboxing Content-Security-Policy, and
//! text is `text/plain` whatever it holds.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::{parse_id, AppState};
use crate::domain::Refusal;
use crate::error::ApiError;

/// Says a text preview is only the file's first part.
pub const TRUNCATED_HEADER: &str = "x-preview-truncated";

#[utoipa::path(
    get,
    path = "/api/files/{id}/preview",
    operation_id = "getPreview",
    tag = "review",
    params(
        ("id" = uuid::Uuid, Path, description = "The file id"),
        ("version" = Option<u32>, Query, minimum = 1, description = "An earlier version's preview (what changed), while its bytes are kept; absent: the version under review"),
    ),
    responses(
        (status = 200, description = "The first 64 KiB of a text file (text/plain; charset=utf-8), or a PNG, JPEG, GIF or WebP image of at most 4 MiB, whole",
            content(
                (String = "text/plain"),
                (super::schema::BinaryBody = "image/png"),
                (super::schema::BinaryBody = "image/jpeg"),
                (super::schema::BinaryBody = "image/gif"),
                (super::schema::BinaryBody = "image/webp"),
            ),
            headers(
                ("X-Preview-Truncated" = String, description = "true when the text goes on past what is shown"),
                ("Content-Security-Policy" = String, description = "sandbox: nothing in the preview runs"),
                ("Cache-Control" = String, description = "private, no-store"),
            )),
        (status = 400, description = "InvalidId, InvalidQuery, InvalidHeader", body = super::schema::ErrorBody),
        (status = 401, description = "Unauthorized", body = super::schema::ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 403, description = "NotAReviewer", body = super::schema::ErrorBody),
        (status = 404, description = "NotFound, NoPreview (not text or a small raster image, or no bytes any more)", body = super::schema::ErrorBody),
        (status = 409, description = "WrongStage: with a scanner configured, the file waits for its malware scan, or the scan blocked it", body = super::schema::ErrorBody),
        (status = 503, description = "StorageUnavailable", body = super::schema::ErrorBody, headers(("Retry-After" = String))),
    ),
    security(("functionKey" = [], "bearer" = []), ("functionKey" = [], "easyAuth" = []), ("bearer" = []), ("easyAuth" = []))
)]
pub async fn preview(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(path)?;
    let version = version_of(raw.as_deref())?;
    let reviewer = state.access.reviewer(&headers)?;
    let shown = state.files.preview(id, version).await?;
    tracing::info!(file = %id, %reviewer, media_type = shown.media_type, bytes = shown.bytes.len(), "preview shown");
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(shown.media_type),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; sandbox"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("inline; filename=\"preview\""),
            ),
            (
                header::HeaderName::from_static(TRUNCATED_HEADER),
                HeaderValue::from_static(if shown.truncated { "true" } else { "false" }),
            ),
        ],
        shown.bytes,
    )
        .into_response())
}

/// `version=N` (a whole number from 1), if given.
fn version_of(raw: Option<&str>) -> Result<Option<u32>, ApiError> {
    let mut version = None;
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if key == "version" {
            version = Some(
                value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| {
                        ApiError::Refused(Refusal::InvalidQuery(
                            "version is a whole number from 1".into(),
                        ))
                    })?,
            );
        }
    }
    Ok(version)
}
