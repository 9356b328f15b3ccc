//! `status/`: `GET /api/files/{id}` and `GET /api/files?stage=…&top=…&continuationToken=…`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;

use super::{load_file, parse_id, FileStatus, FileView};
use crate::domain::Stage;
use crate::engine::ListQuery;
use crate::error::ApiError;
use crate::startup::AppState;

pub async fn get_one(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<FileStatus>, ApiError> {
    let id = parse_id(path)?;
    let view = load_file(&state, id).await?;
    Ok(Json(FileStatus::from(&view)))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileList {
    pub files: Vec<FileStatus>,
    pub continuation_token: Option<String>,
}

const DEFAULT_TOP: u32 = 20;
/// Concurrent history reads per listing page.
const LIST_READS_IN_FLIGHT: usize = 8;
const MAX_TOP: u32 = 100;

struct ListParams {
    stage: Option<Stage>,
    top: u32,
    continuation: Option<String>,
}

fn parse_list_query(raw: Option<&str>) -> Result<ListParams, ApiError> {
    let mut params = ListParams {
        stage: None,
        top: DEFAULT_TOP,
        continuation: None,
    };
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "stage" => {
                params.stage =
                    Some(Stage::parse(&value).map_err(|e| ApiError::InvalidStage(e.to_string()))?)
            }
            "top" => {
                params.top = value
                    .parse::<u32>()
                    .ok()
                    .filter(|t| (1..=MAX_TOP).contains(t))
                    .ok_or_else(|| {
                        ApiError::InvalidQuery(format!(
                            "top must be a whole number from 1 to {MAX_TOP}"
                        ))
                    })?
            }
            "continuationToken" => {
                if value.is_empty() || value.len() > 2048 {
                    return Err(ApiError::InvalidQuery(
                        "continuationToken is malformed".into(),
                    ));
                }
                params.continuation = Some(value.into_owned())
            }
            // The host forwards the function key as `code`; other unknown parameters are
            // ignored, as Azure's own APIs do.
            _ => {}
        }
    }
    Ok(params)
}

/// Lists files, newest instances first as the engine pages them. `Uploaded` files (workflow
/// not started yet) are not workflow instances and so are not listed by stage filter
/// `Uploaded`: they exist only for the moment between a blob's commit and its trigger.
pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<FileList>, ApiError> {
    let params = parse_list_query(raw.as_deref())?;
    let page = state
        .engine
        .list(ListQuery {
            runtime_status: None,
            custom_status: params.stage.map(|s| json!(s.as_str())),
            top: Some(params.top),
            continuation: params.continuation,
        })
        .await
        .map_err(|e| match e {
            crate::engine::EngineError::Storage(crate::store::StoreError::Invalid(_)) => {
                ApiError::InvalidQuery("continuationToken is malformed".into())
            }
            other => other.into(),
        })?;
    // The listing carries no history; decisions and analysis come from each instance's, read
    // a few at a time so a page costs about one round trip per batch of files, in page order.
    let histories: Vec<_> = futures::stream::iter(page.instances)
        .map(|instance| {
            let engine = state.engine.clone();
            async move { engine.status(&instance.instance_id, true).await }
        })
        .buffered(LIST_READS_IN_FLIGHT)
        .collect()
        .await;
    let mut files = Vec::with_capacity(histories.len());
    for full in histories {
        // `None`: purged between the two reads.
        if let Some(full) = full? {
            files.push(FileStatus::from(&FileView::from_instance(&full)?));
        }
    }
    Ok(Json(FileList {
        files,
        continuation_token: page.continuation,
    }))
}
