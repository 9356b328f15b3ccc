//! `status/`: `GET /api/files/{id}` and `GET /api/files?stage=…&top=…&continuationToken=…`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::{parse_id, AppState, DownloadsView, FileStatus};
use crate::domain::Refusal;
use crate::domain::Stage;
use crate::error::ApiError;

#[utoipa::path(
    get,
    path = "/api/files/{id}",
    operation_id = "getFile",
    tag = "files",
    params(("id" = uuid::Uuid, Path, description = "The file id")),
    responses(
        (status = 200, description = "The file as it stands, with what the caller may do now (`allowedActions`, `withheldActions`: who the caller is comes from the same credential the actions need; an unknown one is nobody in particular, never refused here). While the app itself is working on it (stage `Uploaded` or `Analyzing`), `Retry-After` says how many seconds a client that waits for the next stage should wait before asking again", body = FileStatus, headers(("Retry-After" = String, description = "Seconds until the next look is worth it; only while the stage is Uploaded or Analyzing"))),
        (status = 400, description = "InvalidId, InvalidQuery", body = super::schema::ErrorBody),
        (status = 404, description = "NotFound", body = super::schema::ErrorBody),
        (status = 503, description = "StorageUnavailable", body = super::schema::ErrorBody, headers(("Retry-After" = String))),
    ),
    security(("functionKey" = []), ("functionKey" = [], "bearer" = []), ("functionKey" = [], "easyAuth" = []), ())
)]
pub async fn get_one(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(path)?;
    let view = state.files.load(id).await?;
    let mut status = FileStatus::from(&view).with_actions(&view, &state.access.rights(&headers));
    if matches!(view.stage(), Stage::Approved | Stage::Revoked) {
        status.downloads = Some(DownloadsView {
            count: state.files.downloads(id).await?,
            limit: state.files.policy().max_downloads,
        });
    }
    let mut response = Json(status).into_response();
    // A polling hint, as Durable Functions' status endpoints give one: the stage will change
    // by itself soon. While a person has to act, no hint: how long that takes is theirs.
    if view.stage().is_in_progress() {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(POLL_AFTER_SECS),
        );
    }
    Ok(response)
}

/// The polling hint while the app works on a file: an analysis of a small file takes well under
/// this; a large one takes longer, and a client asking every two seconds costs little.
const POLL_AFTER_SECS: &str = "2";

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileList {
    pub files: Vec<FileStatus>,
    pub continuation_token: Option<String>,
}

const DEFAULT_TOP: u32 = 20;
const MAX_TOP: u32 = 100;

struct ListParams {
    stage: Option<Stage>,
    /// `awaiting=me`: the caller's inbox.
    awaiting_me: bool,
    /// `uploadedBy=me`: the caller's own uploads.
    uploaded_by_me: bool,
    top: u32,
    continuation: Option<String>,
}

fn parse_list_query(raw: Option<&str>) -> Result<ListParams, ApiError> {
    let mut params = ListParams {
        stage: None,
        awaiting_me: false,
        uploaded_by_me: false,
        top: DEFAULT_TOP,
        continuation: None,
    };
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "stage" => {
                params.stage = Some(
                    Stage::parse(&value)
                        .map_err(|e| ApiError::Refused(Refusal::InvalidStage(e.to_string())))?,
                )
            }
            "awaiting" => {
                if value != "me" {
                    return Err(ApiError::Refused(Refusal::InvalidQuery(
                        "awaiting takes one value: me (what the caller may decide now)".into(),
                    )));
                }
                params.awaiting_me = true;
            }
            "uploadedBy" => {
                if value != "me" {
                    return Err(ApiError::Refused(Refusal::InvalidQuery(
                        "uploadedBy takes one value: me (the caller's own uploads)".into(),
                    )));
                }
                params.uploaded_by_me = true;
            }
            "top" => {
                params.top = value
                    .parse::<u32>()
                    .ok()
                    .filter(|t| (1..=MAX_TOP).contains(t))
                    .ok_or_else(|| {
                        ApiError::Refused(Refusal::InvalidQuery(format!(
                            "top must be a whole number from 1 to {MAX_TOP}"
                        )))
                    })?
            }
            "continuationToken" => {
                if value.is_empty() || value.len() > 1024 {
                    return Err(ApiError::Refused(Refusal::InvalidQuery(
                        "continuationToken is malformed".into(),
                    )));
                }
                params.continuation = Some(value.into_owned())
            }
            // The host's `code` (the function key); any other name was refused by the
            // router's `known_query_only` before this handler ran.
            _ => {}
        }
    }
    Ok(params)
}

/// Lists files, newest instances first as the engine pages them ([`crate::files::Files::list`]).
#[utoipa::path(
    get,
    path = "/api/files",
    operation_id = "listFiles",
    tag = "files",
    params(
        ("stage" = Option<super::schema::StageName>, Query, description = "Only files in this stage"),
        ("awaiting" = Option<super::schema::Awaiting>, Query, description = "`me`: the calling reviewer's inbox"),
        ("uploadedBy" = Option<super::schema::Awaiting>, Query, description = "`me`: the caller's own uploads, newest first (with `stage`, those in it; with `awaiting=me`, those the caller may decide)"),
        ("top" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size (default 20)"),
        ("continuationToken" = Option<String>, Query, pattern = "^([0-9a-f]{2}){1,512}$", description = "From the previous page: the hex of the position to continue after (any such value is a position)"),
    ),
    responses(
        (status = 200, description = "A page of files", body = FileList),
        (status = 400, description = "InvalidStage, InvalidQuery", body = super::schema::ErrorBody),
        (status = 401, description = "Unauthorized (awaiting=me needs a reviewer, uploadedBy=me a credential)", body = super::schema::ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 403, description = "NotAReviewer", body = super::schema::ErrorBody),
        (status = 503, description = "StorageUnavailable", body = super::schema::ErrorBody, headers(("Retry-After" = String))),
    ),
    security(("functionKey" = []), ("functionKey" = [], "bearer" = []), ("functionKey" = [], "easyAuth" = []), ())
)]
pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<FileList>, ApiError> {
    let params = parse_list_query(raw.as_deref())?;
    let page = if params.uploaded_by_me {
        // Whose uploads comes from the credential; without one there is nobody to ask about.
        let Some(uploader) = state.access.caller(&headers) else {
            return Err(ApiError::Refused(Refusal::Unauthorized(
                "uploadedBy=me needs a credential that names you (a token or a sign-in)".into(),
            )));
        };
        // With awaiting=me too: the caller's own files they may decide (none under four eyes).
        let reviewer = match params.awaiting_me {
            true => Some(state.access.reviewer(&headers)?),
            false => None,
        };
        state
            .files
            .uploads(
                &uploader,
                params.stage,
                reviewer.as_ref(),
                params.top,
                params.continuation,
            )
            .await?
    } else if params.awaiting_me {
        // An inbox is a reviewer's: who they are decides what is in it.
        let reviewer = state.access.reviewer(&headers)?;
        state
            .files
            .inbox(&reviewer, params.stage, params.top, params.continuation)
            .await?
    } else {
        state
            .files
            .list(params.stage, params.top, params.continuation)
            .await?
    };
    Ok(Json(FileList {
        files: page.files.iter().map(FileStatus::from).collect(),
        continuation_token: page.continuation,
    }))
}
