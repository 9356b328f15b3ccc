//! `related/`: `GET /api/files/{id}/related` — for reviewers, earlier files with the same
//! bytes and how each ended (paged), and the uploader's recent files
//! ([`crate::files::Files::related`]).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;

use super::{api_time, parse_id, AppState, PrincipalView};
use crate::domain::{Refusal, Stage};
use crate::error::ApiError;
use crate::files::RelatedFile;

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Related {
    pub id: String,
    /// Other files whose bytes were the same as this file's current version, newest first.
    pub same_bytes: Vec<RelatedView>,
    /// Where `sameBytes` goes on (pass it back as `continuationToken`), if it does.
    pub continuation_token: Option<String>,
    /// The uploader's most recent other files (first page only).
    pub by_uploader: Vec<RelatedView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RelatedView {
    pub id: String,
    pub name: String,
    pub version: u32,
    pub uploaded_time: String,
    #[schema(value_type = super::schema::StageName)]
    pub stage: Stage,
    /// The last refusal or change request on it: who, when, why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<PrincipalView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<&RelatedFile> for RelatedView {
    fn from(f: &RelatedFile) -> Self {
        RelatedView {
            id: f.id.to_string(),
            name: f.name.clone(),
            version: f.version,
            uploaded_time: api_time(f.uploaded_time),
            stage: f.stage,
            decided_by: f.decided_by.as_ref().map(PrincipalView::from),
            decided_time: f.decided_time.map(api_time),
            reason: f.reason.clone(),
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/files/{id}/related",
    operation_id = "getRelated",
    tag = "review",
    params(
        ("id" = uuid::Uuid, Path, description = "The file id"),
        ("continuationToken" = Option<String>, Query, pattern = "^([0-9a-f]{2}){1,512}$", description = "From the previous page of sameBytes"),
    ),
    responses(
        (status = 200, description = "Related files", body = Related),
        (status = 400, description = "InvalidId, InvalidQuery", body = super::schema::ErrorBody),
        (status = 401, description = "Unauthorized", body = super::schema::ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 403, description = "NotAReviewer", body = super::schema::ErrorBody),
        (status = 404, description = "NotFound", body = super::schema::ErrorBody),
        (status = 503, description = "StorageUnavailable", body = super::schema::ErrorBody, headers(("Retry-After" = String))),
    ),
    security(("functionKey" = [], "bearer" = []), ("functionKey" = [], "easyAuth" = []), ("bearer" = []), ("easyAuth" = []))
)]
pub async fn related(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Related>, ApiError> {
    let id = parse_id(path)?;
    state.access.reviewer(&headers)?;
    let mut continuation = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if key == "continuationToken" {
            if value.is_empty() || value.len() > 1024 {
                return Err(ApiError::Refused(Refusal::InvalidQuery(
                    "continuationToken is malformed".into(),
                )));
            }
            continuation = Some(value.into_owned());
        }
    }
    let found = state.files.related(id, continuation).await?;
    Ok(Json(Related {
        id: id.to_string(),
        same_bytes: found.same_bytes.iter().map(RelatedView::from).collect(),
        continuation_token: found.continuation,
        by_uploader: found.by_uploader.iter().map(RelatedView::from).collect(),
    }))
}
