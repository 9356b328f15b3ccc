//! `history/`: `GET /api/files/{id}/history` — every step of a file's life with who, when and
//! what came of it ([`crate::files::Files::history`]), oldest first.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;

use super::{api_time, parse_id, AppState, PrincipalView};
use crate::error::ApiError;
use crate::workflow::Step;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct History {
    pub id: String,
    pub steps: Vec<StepView>,
}

/// One step as clients see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StepView {
    pub step: &'static str,
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<PrincipalView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl From<&Step> for StepView {
    fn from(s: &Step) -> Self {
        StepView {
            step: s.step,
            time: api_time(s.time),
            actor: s.actor.as_ref().map(PrincipalView::from),
            stage: s.stage.map(|stage| stage.as_str()),
            outcome: s.outcome.clone(),
            comment: s.comment.clone(),
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/files/{id}/history",
    operation_id = "getHistory",
    tag = "review",
    params(("id" = uuid::Uuid, Path, description = "The file id")),
    responses(
        (status = 200, description = "Every step, oldest first", body = History),
        (status = 400, description = "InvalidId, InvalidQuery", body = super::schema::ErrorBody),
        (status = 404, description = "NotFound", body = super::schema::ErrorBody),
        (status = 503, description = "StorageUnavailable", body = super::schema::ErrorBody, headers(("Retry-After" = String))),
    )
)]
pub async fn history(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Json<History>, ApiError> {
    let id = parse_id(path)?;
    // Reviewers' private notes go to reviewers only: whoever the request does not show to be
    // one (an uploader, a caller known by the function key alone) never receives them.
    let reviewer = state.access.reviewer(&headers).is_ok();
    let steps = state.files.history(id, reviewer).await?;
    Ok(Json(History {
        id: id.to_string(),
        steps: steps.iter().map(StepView::from).collect(),
    }))
}
