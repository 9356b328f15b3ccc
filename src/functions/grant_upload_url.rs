//! `grant_upload_url/`: `POST /api/files/uploads` — opens an upload straight to storage for a file of any
//! size. The body declares the file (`name`, `size`, `contentType`); the answer carries a
//! create/write-only `uploadUrl` for that one blob, valid until `expiresAt`, and how to use it.
//! The bytes never pass through the app (on Azure they go to Blob Storage; locally to the
//! embedded store's upload route).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::signed_links::UploadListener;
use super::{api_time, AppState};
use crate::domain::Refusal;
use crate::domain::{from_json_object, ContentType, FileId, FileName};
use crate::error::ApiError;
use crate::files::{Files, NewDirectUpload};

/// The embedded store's upload route, told of the blob it is taking: the declared size caps
/// the body (a larger one is refused before it commits), and the commit starts the workflow,
/// as Event Grid's `BlobCreated` does under the host.
pub struct StartOnCommit(pub Arc<Files>);

#[async_trait::async_trait]
impl UploadListener for StartOnCommit {
    async fn max_bytes(&self, name: &str) -> Option<u64> {
        let id = FileId::parse(name).ok()?;
        self.0.declared_size(id).await
    }

    async fn committed(&self, name: &str) {
        let Ok(id) = FileId::parse(name) else {
            return;
        };
        if let Err(e) = self.0.complete(id).await {
            tracing::warn!(file = %id, error = %e, "an upload through its URL committed but its workflow did not start; the sweep will start it");
        }
    }
}

/// The largest declaration body read: a name and two short fields.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Declaration {
    name: String,
    #[serde(deserialize_with = "whole_number")]
    size: u64,
    #[serde(default)]
    content_type: Option<String>,
}

/// A size as JSON may write a whole number: `231` or `231.0` (JSON Schema counts both as an
/// integer); a fraction or a negative number is refused.
pub(super) fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let number = serde_json::Number::deserialize(d)?;
    if let Some(n) = number.as_u64() {
        return Ok(n);
    }
    match number.as_f64() {
        // Below 2^53 every whole f64 is exact.
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 9_007_199_254_740_992.0 => Ok(f as u64),
        _ => Err(serde::de::Error::custom(format!(
            "size {number} is not a whole number of bytes"
        ))),
    }
}

/// The answer: where and how to send the bytes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadTicket {
    pub id: String,
    pub name: String,
    pub content_type: String,
    pub declared_size: u64,
    pub upload_url: String,
    pub expires_at: String,
    /// The request that sends the whole file in one go (`curl -T`); the Azure SDKs and AzCopy
    /// take `uploadUrl` as it is and send blocks for large files.
    pub upload: UploadRequest,
    pub links: TicketLinks,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadRequest {
    pub method: &'static str,
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub headers: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketLinks {
    pub status: String,
    /// Tells the app the upload is done (where no storage event does it).
    pub complete: String,
}

#[utoipa::path(
    post,
    path = "/api/files/uploads",
    operation_id = "openUpload",
    tag = "files",
    request_body(content = super::schema::DeclarationBody, content_type = "application/json"),
    responses(
        (status = 201, description = "An upload URL for the file's bytes", body = UploadTicket,
            headers(("Location" = String, description = "The file's status"))),
        (status = 400, description = "InvalidBody, InvalidName, EmptyFile, DeclaredTooLarge, InvalidQuery, InvalidHeader", body = super::schema::ErrorBody),
        (status = 401, description = "Unauthorized", body = super::schema::ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 403, description = "NotAnUploader", body = super::schema::ErrorBody),
        (status = 503, description = "StorageUnavailable", body = super::schema::ErrorBody, headers(("Retry-After" = String))),
        (status = 507, description = "InsufficientStorage", body = super::schema::ErrorBody),
    ),
    security(("functionKey" = []), ("functionKey" = [], "bearer" = []), ("functionKey" = [], "easyAuth" = []), ())
)]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let uploader = state.access.uploader(&headers)?;
    let declaration: Declaration = from_json_object(&body).map_err(|e| {
        ApiError::Refused(Refusal::InvalidBody(format!("the upload declaration: {e}")))
    })?;
    let name = FileName::parse(&declaration.name)
        .map_err(|e| ApiError::Refused(Refusal::InvalidName(e.to_string())))?;
    let content_type = ContentType::parse(declaration.content_type.as_deref())
        .map_err(|e| ApiError::Refused(Refusal::InvalidBody(e.to_string())))?;
    let grant = state
        .files
        .create_upload(NewDirectUpload {
            name,
            content_type,
            declared_size: declaration.size,
            uploader,
        })
        .await?;
    let id = grant.record.id.to_string();
    let mut headers = serde_json::Map::new();
    headers.insert("x-ms-blob-type".into(), "BlockBlob".into());
    headers.insert(
        "Content-Type".into(),
        grant.record.content_type.as_str().into(),
    );
    let ticket = UploadTicket {
        name: grant.record.name.to_string(),
        content_type: grant.record.content_type.to_string(),
        declared_size: declaration.size,
        upload_url: grant.upload_url,
        expires_at: api_time(grant.expires_at),
        upload: UploadRequest {
            method: "PUT",
            headers,
        },
        links: TicketLinks {
            status: format!("/api/files/{id}"),
            complete: format!("/api/files/{id}/complete"),
        },
        id,
    };
    let location = HeaderValue::from_str(&ticket.links.status).map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(ticket),
    )
        .into_response())
}
