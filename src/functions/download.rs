//! `download/`: `GET /api/files/{id}/download` — the analysis and a one-hour read-only link,
//! once both approvals are in ([`crate::files::Files::download`]).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use super::{api_time, parse_id, public_url, AppState, DecisionView, FileStatus};
use crate::error::ApiError;

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Download {
    pub id: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    #[schema(value_type = Option<super::schema::AnalysisDoc>)]
    pub metadata: Option<Value>,
    pub approvals: Vec<DecisionView>,
    pub download_url: String,
    pub expires_at: String,
}

#[utoipa::path(
    get,
    path = "/api/files/{id}/download",
    operation_id = "download",
    tag = "download",
    params(("id" = uuid::Uuid, Path, description = "The file id")),
    responses(
        (status = 200, description = "The analysis and a read-only link valid for an hour", body = Download,
            headers(("Cache-Control" = String, description = "no-store: the link is a credential"))),
        (status = 400, description = "InvalidId, InvalidQuery", body = super::schema::ErrorBody),
        (status = 404, description = "NotFound", body = super::schema::ErrorBody),
        (status = 409, description = "NotApproved (with currentStage)", body = super::schema::ErrorBody),
        (status = 503, description = "StorageUnavailable", body = super::schema::ErrorBody, headers(("Retry-After" = String))),
    )
)]
pub async fn download(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(path)?;
    // Who asked goes into the file's audit; the function key alone names nobody.
    let requester = state.access.caller(&headers);
    let grant = state.files.download(id, requester.as_ref()).await?;
    let status = FileStatus::from(&grant.view);
    let body = Download {
        id: status.id,
        name: status.name,
        content_type: status.content_type,
        size: status.size,
        metadata: status.analysis,
        approvals: status.approvals,
        download_url: public_url(&headers, &grant.url),
        expires_at: api_time(grant.expires_at),
    };
    // The link is a bearer credential for an hour: keep it out of shared caches.
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}
