//! `download/`: `GET /api/files/{id}/download` — the analysis and a one-hour read-only link,
//! once both approvals are in.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Duration;
use serde::Serialize;
use serde_json::Value;

use super::{api_time, load_file, parse_id, DecisionView, FileStatus, FileView};
use crate::domain::Stage;
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::SignedUrlRequest;
use crate::workflow::FILES_CONTAINER;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Download {
    pub id: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub metadata: Option<Value>,
    pub approvals: Vec<DecisionView>,
    pub download_url: String,
    pub expires_at: String,
}

pub async fn download(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id(path)?;
    let view = load_file(&state, id).await?;
    let stage = view.stage();
    if stage != Stage::Approved {
        return Err(ApiError::NotApproved {
            message: format!(
                "file {id} is {}; download needs both approvals",
                stage.describe()
            ),
            current: stage,
        });
    }
    let status = FileStatus::from(&view);
    let FileView::Workflow { summary, .. } = view else {
        return Err(ApiError::internal("an approved file without a workflow"));
    };
    let ttl = Duration::seconds(i64::try_from(state.settings.download_ttl_secs).unwrap_or(3600));
    // Whole seconds: the SAS `se` field and the response both carry second precision.
    let now = state.clock.now();
    let expires_at = now + ttl - Duration::nanoseconds(i64::from(now.timestamp_subsec_nanos()));
    let id_text = id.to_string();
    let url = state.store.signed_read_url(&SignedUrlRequest {
        container: FILES_CONTAINER,
        name: &id_text,
        expires_at,
        download_name: &summary.file.name,
    })?;
    let body = Download {
        id: status.id,
        name: status.name,
        content_type: status.content_type,
        size: status.size,
        metadata: status.analysis,
        approvals: status.approvals,
        download_url: url,
        expires_at: api_time(expires_at),
    };
    // The link is a bearer credential for an hour: keep it out of shared caches.
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}
