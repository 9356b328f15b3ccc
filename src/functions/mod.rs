//! The HTTP / invocation edge: one module per Azure Functions folder. Each handler parses its
//! input into domain types, makes one call on [`Files`], and maps the answer to a status code;
//! none holds storage or workflow details.
//!
//! | folder                 | route                                            | module                  |
//! |------------------------|--------------------------------------------------|-------------------------|
//! | `upload/`              | `POST /api/files`                                | [`upload`]              |
//! | `grant_upload_url/`    | `POST /api/files/uploads`                        | [`grant_upload_url`]    |
//! | `complete/`            | `POST /api/files/{id}/complete`                  | [`complete`]            |
//! | `status/`              | `GET /api/files`, `GET /api/files/{id}`          | [`status`]              |
//! | `approve/`             | `POST /api/files/{id}/approvals/{stage}`         | [`approve`]             |
//! | `download/`            | `GET /api/files/{id}/download`                   | [`download`]            |
//! | `preview/`             | `GET /api/files/{id}/preview`                    | [`preview`]             |
//! | `history/`             | `GET /api/files/{id}/history`                    | [`history`]             |
//! | `withdraw/`            | `POST /api/files/{id}/withdraw`                  | [`withdraw`]            |
//! | `openapi/`             | `GET /api/openapi.json`                          | [`openapi`]             |
//! | `ui/`                  | `GET /api/ui/…` (the reviewers' web page)        | [`ui`]                  |
//! | `orchestrator/`        | blob trigger → `POST /orchestrator`              | [`orchestrator`]        |
//! | `start_direct_upload/` | Event Grid trigger → `POST /start_direct_upload` | [`start_direct_upload`] |
//! | `scan_result/` | Event Grid trigger (Defender for Storage's results) → `POST /scan_result` | [`scan_result`] |
//! | `work/`                | queue trigger → `POST /work`                     | [`work`]                |
//! | `sweep/`               | timer trigger → `POST /sweep`                    | [`sweep`]               |
//! | (embedded only)        | `GET /api/blobs/{id}?…&sig=…`                    | [`signed_links`]        |
//! | (embedded only)        | `PUT /api/uploads/{id}?…&sig=…`                  | [`signed_links`]        |

pub mod approve;
pub mod auth;
pub mod complete;
pub mod download;
pub mod fetch;
pub mod grant_upload_url;
pub mod history;
pub mod invocation;
pub mod me;
pub mod notes;
pub mod openapi;
pub mod orchestrator;
pub mod preview;
pub mod related;
pub mod revoke;
pub mod scan_result;
pub mod schema;
pub mod signed_links;
pub mod start_direct_upload;
pub mod status;
pub mod sweep;
pub mod ui;
pub mod upload;
pub mod versions;
pub mod withdraw;
pub mod work;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::domain::Refusal;
use crate::domain::{ApprovalStage, FileId, Principal, ScanReport, Stage};
use crate::engine::RuntimeStatus;
use crate::error::ApiError;
use crate::files::{FileView, Files};
use crate::workflow::{DecisionEvent, VersionSummary};

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    pub files: Arc<Files>,
    /// Who is calling: reviewers and uploaders by token or Easy Auth sign-in.
    pub access: Arc<auth::Access>,
    /// The storage time one request may spend ([`crate::store::budget`]).
    pub storage_budget: Duration,
}

/// Every route of the function folders (the embedded store's signed-link route is merged in by
/// the caller when that store is in use).
pub fn router(state: AppState) -> Router {
    let budget = middleware::from_fn_with_state(state.storage_budget, with_storage_budget);
    Router::new()
        .route("/api/files", post(upload::upload).get(status::list))
        .route(
            "/api/files/uploads",
            post(grant_upload_url::create)
                .layer(DefaultBodyLimit::max(grant_upload_url::MAX_BODY_BYTES)),
        )
        .route("/api/files/{id}", get(status::get_one))
        .route("/api/files/{id}/complete", post(complete::complete))
        .route(
            "/api/files/{id}/approvals/{stage}",
            post(approve::approve).layer(DefaultBodyLimit::max(approve::MAX_BODY_BYTES)),
        )
        .route("/api/files/{id}/download", get(download::download))
        .route("/api/files/{id}/content", get(fetch::fetch))
        .route("/api/files/{id}/versions", post(versions::new_version))
        .route(
            "/api/files/{id}/versions/uploads",
            post(versions::new_version_upload)
                .layer(DefaultBodyLimit::max(versions::MAX_DECLARATION_BYTES)),
        )
        .route(
            "/api/files/{id}/versions/{version}/complete",
            post(versions::complete_version),
        )
        .route("/api/files/{id}/related", get(related::related))
        .route("/api/me", get(me::me))
        .route(
            "/api/files/{id}/notes",
            post(notes::add_note).layer(DefaultBodyLimit::max(notes::MAX_BODY_BYTES)),
        )
        .route(
            "/api/files/{id}/revoke",
            post(revoke::revoke).layer(DefaultBodyLimit::max(revoke::MAX_BODY_BYTES)),
        )
        .route("/api/openapi.json", get(openapi::openapi_json))
        .route("/api/files/{id}/history", get(history::history))
        .route("/api/files/{id}/preview", get(preview::preview))
        .route("/api/ui", get(ui::index))
        .route("/api/ui/", get(ui::index))
        .route("/api/ui/{*path}", get(ui::file))
        .route(
            "/api/files/{id}/withdraw",
            post(withdraw::withdraw).layer(DefaultBodyLimit::max(withdraw::MAX_BODY_BYTES)),
        )
        .route("/orchestrator", post(orchestrator::invoke))
        .route("/start_direct_upload", post(start_direct_upload::invoke))
        .route("/scan_result", post(scan_result::invoke))
        // Every route above answers 503 within the budget when storage stalls. The work and the
        // sweep below run inside the host's invocations, on the backends' own timeouts.
        .route_layer(budget)
        .route_layer(middleware::from_fn(known_query_only))
        .route("/work", post(work::invoke))
        .route("/sweep", post(sweep::invoke))
        // The host's readiness and health probe: answer at once, touch nothing.
        .route("/", get(|| async { StatusCode::OK }))
        .fallback(|| async { ApiError::Refused(Refusal::NotFound("no such route".into())) })
        .method_not_allowed_fallback(|method: Method| async move {
            ApiError::Refused(Refusal::MethodNotAllowed {
                method: method.to_string(),
            })
        })
        .with_state(state)
}

/// Ends every JSON body with a newline, so `curl` output and line-oriented tools read it
/// whole. JSON bodies here are small (a page of 100 statuses at most); anything else passes
/// through untouched, streamed.
pub async fn newline_terminated_json(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match http_body_util::BodyExt::collect(body).await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return ApiError::internal(e).into_response(),
    };
    if bytes.ends_with(b"\n") {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    }
    let mut terminated = Vec::with_capacity(bytes.len() + 1);
    terminated.extend_from_slice(&bytes);
    terminated.push(b'\n');
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(terminated))
}

/// The query parameters each API route takes, besides the host's `code` (the function key).
pub(crate) fn query_parameters(method: &Method, path: &str) -> &'static [&'static str] {
    match (method, path) {
        (&Method::POST, "/api/files") => &["name"],
        (&Method::GET, "/api/files") => &[
            "stage",
            "top",
            "continuationToken",
            "awaiting",
            "uploadedBy",
        ],
        (&Method::GET | &Method::HEAD, p) if p.ends_with("/content") => &["se", "sig", "bound"],
        (&Method::GET, p) if p.ends_with("/related") => &["continuationToken"],
        (&Method::GET, p) if p.ends_with("/preview") => &["version"],
        _ => &[],
    }
}

/// Refuses a request that names a query parameter its route does not take (a typo such as
/// `?stgae=` would otherwise be silently ignored): 400 `InvalidQuery`.
async fn known_query_only(request: Request, next: Next) -> Response {
    if let Some(query) = request.uri().query() {
        let path = request.uri().path();
        if path.starts_with("/api/") {
            let known = query_parameters(request.method(), path);
            let unknown = url::form_urlencoded::parse(query.as_bytes())
                .map(|(key, _)| key)
                .find(|key| key != "code" && !known.contains(&key.as_ref()));
            if let Some(key) = unknown {
                let shown: String = key.chars().take(40).collect();
                let expected = if known.is_empty() {
                    "this route takes no query parameters".to_owned()
                } else {
                    format!("this route takes {}", known.join(", "))
                };
                return ApiError::Refused(Refusal::InvalidQuery(format!(
                    "unknown query parameter {shown:?}: {expected}"
                )))
                .into_response();
            }
        }
    }
    next.run(request).await
}

async fn with_storage_budget(
    State(budget): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    crate::store::budget::with_budget(budget, next.run(request)).await
}

/// Times in responses are whole seconds in UTC, as Durable Functions' status API writes them.
pub fn api_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A request body that must be one JSON object of type `T`; `shape` shows it in the refusal
/// (`400 InvalidBody`), as in `{"comment": "why"}`.
pub(crate) fn json_object_body<T: serde::de::DeserializeOwned>(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
    what: &str,
    shape: &str,
) -> Result<T, ApiError> {
    let body = body.map_err(|e| ApiError::Refused(Refusal::InvalidBody(e.body_text())))?;
    crate::domain::from_json_object(&body).map_err(|e| {
        ApiError::Refused(Refusal::InvalidBody(format!(
            "{what} is a JSON object {shape}: {e}"
        )))
    })
}

/// What a decision, withdrawal or revocation came to: `202` when it was recorded now, `200` for
/// a repeat that changed nothing; the file as it stands either way.
pub(crate) fn decided_response(done: &crate::files::Decided) -> Response {
    let code = if done.recorded {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    (code, axum::Json(FileStatus::from(&done.view))).into_response()
}

/// A comment, reason or note as people write them ([`crate::domain::Decision::comment`]):
/// blank is none; too long or with control characters is `400 InvalidBody`.
pub(crate) fn comment_text(raw: Option<String>) -> Result<Option<String>, ApiError> {
    crate::domain::Decision::comment(raw)
        .map_err(|e| ApiError::Refused(Refusal::InvalidBody(e.to_string())))
}

pub fn parse_id(path: Result<Path<String>, PathRejection>) -> Result<FileId, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::Refused(Refusal::InvalidId(e.body_text())))?;
    FileId::parse(&raw).map_err(|e| ApiError::Refused(Refusal::InvalidId(e.to_string())))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Links {
    pub status: String,
    pub approve_upload: String,
    pub approve_download: String,
    pub download: String,
}

impl Links {
    fn new(id: &str) -> Self {
        Links {
            status: format!("/api/files/{id}"),
            approve_upload: format!("/api/files/{id}/approvals/upload"),
            approve_download: format!("/api/files/{id}/approvals/download"),
            download: format!("/api/files/{id}/download"),
        }
    }
}

/// The resource of API.md ("FileStatus").
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileStatus {
    pub id: String,
    pub name: String,
    /// As declared at upload; `application/octet-stream` when nothing was declared.
    pub content_type: String,
    /// `false` when the upload said nothing about the file's type (no `Content-Type`, or curl's
    /// default `application/x-www-form-urlencoded` on a raw upload): the analysis then has
    /// no claim to check, so `contentTypeMatches` is true. Absent when declared.
    #[serde(skip_serializing_if = "is_true")]
    pub content_type_declared: bool,
    pub size: u64,
    #[schema(value_type = schema::StageName)]
    pub stage: Stage,
    #[schema(value_type = schema::RuntimeStatusName)]
    pub runtime_status: RuntimeStatus,
    pub created_time: String,
    pub last_updated_time: String,
    /// Who uploaded, when the upload said (`null` for an anonymous upload).
    pub uploader: Option<PrincipalView>,
    pub approvals: Vec<DecisionView>,
    /// When the stage now awaiting a decision ends `Expired` (with an approval timeout set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// The approval rules the file's workflow runs under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<RulesView>,
    /// What the malware scanner saw; `null` while the file waits for its scan.
    pub scan: Option<ScanView>,
    #[schema(value_type = Option<schema::AnalysisDoc>)]
    pub analysis: Option<Value>,
    /// Present when the file failed: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureView>,
    /// The version under review: 1 for the upload, one more for each new version sent after
    /// a change request.
    pub version: u32,
    /// Every version, oldest first, once there is more than one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<VersionView>,
    /// How often an approved (or revoked) file was downloaded through its links, and the
    /// limit, if the deployment sets one. Only in the answer for one file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downloads: Option<DownloadsView>,
    /// What the caller may do with the file now. Only in the answer for one file.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<schema::ActionName>>)]
    pub allowed_actions: Option<Vec<&'static str>>,
    /// What the file's stage offers that the caller may not do, and why. Only in the answer
    /// for one file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withheld_actions: Option<Vec<WithheldView>>,
    pub links: Links,
}

/// An action the file's stage offers that the caller may not take (docs/API.md, "What the
/// caller may do").
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WithheldView {
    #[schema(value_type = schema::ActionName)]
    pub action: &'static str,
    /// The error code the API would refuse it with (`AlreadyDecided`: a repeat that would
    /// change nothing).
    pub code: &'static str,
    pub message: String,
}

impl FileStatus {
    /// Adds what `caller` may do and what is withheld from them (the answer for one file).
    pub fn with_actions(mut self, view: &FileView, caller: &crate::files::actions::Caller) -> Self {
        let (allowed, withheld) = crate::files::actions::actions(view, caller);
        self.allowed_actions = Some(allowed.iter().map(|a| a.as_str()).collect());
        self.withheld_actions = Some(
            withheld
                .into_iter()
                .map(|w| WithheldView {
                    action: w.action.as_str(),
                    code: w.code,
                    message: w.message,
                })
                .collect(),
        );
        self
    }
}

fn is_true(b: &bool) -> bool {
    *b
}

/// One version of a file (docs/API.md, "Versions").
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionView {
    pub number: u32,
    pub size: u64,
    pub content_type: String,
    pub uploaded_time: String,
    /// The SHA-256 of its bytes, once analysed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Its analysis's line and word counts, for text (what changed between versions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub word_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detected_content_type: Option<String>,
}

impl From<&VersionSummary> for VersionView {
    fn from(v: &VersionSummary) -> Self {
        let field = |name: &str| v.analysis.as_ref().and_then(|a| a.get(name));
        VersionView {
            number: v.number,
            size: v.size,
            content_type: v.content_type.clone(),
            uploaded_time: api_time(v.uploaded_time),
            sha256: field("sha256").and_then(Value::as_str).map(str::to_owned),
            line_count: field("lineCount").and_then(Value::as_u64),
            word_count: field("wordCount").and_then(Value::as_u64),
            detected_content_type: field("detectedContentType")
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }
}

/// Downloads through a file's links (docs/API.md, "Download links").
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DownloadsView {
    /// Downloads started from the first byte (resumes are in the history, not here).
    pub count: u64,
    /// `FILE_APPROVER_MAX_DOWNLOADS`; absent: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// `path` (of this app) as an absolute URL, on the origin the request came to: its `Host`,
/// and `https` where the platform's front end says so (`X-Forwarded-Proto`). Relative when
/// the request names no host.
pub fn public_url(headers: &axum::http::HeaderMap, path: &str) -> String {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(host) = text("host").filter(|h| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    }) else {
        return path.to_owned();
    };
    let scheme = match text("x-forwarded-proto").and_then(|p| p.split(',').next()) {
        Some(p) if p.trim().eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}{path}")
}

/// What the malware scanner saw (docs/API.md, "Scanning").
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanView {
    #[schema(value_type = schema::ScanVerdictName)]
    pub verdict: &'static str,
    /// The scanner, with its engine and signature versions when it tells them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scanner: Option<ScannerView>,
    /// The threats found (signature names); empty unless `malicious`.
    pub threats: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scanned_time: Option<String>,
    /// Why there is no verdict (`unscannable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScannerView {
    /// `clamav`.
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signatures: Option<String>,
}

impl From<&ScanReport> for ScanView {
    fn from(r: &ScanReport) -> Self {
        ScanView {
            verdict: r.verdict.as_str(),
            scanner: r.scanner.as_ref().map(|s| ScannerView {
                name: s.name.clone(),
                engine: s.engine.clone(),
                signatures: s.signatures.clone(),
            }),
            threats: r.threats.clone(),
            scanned_time: r.scanned_time.map(api_time),
            reason: r.reason.clone(),
        }
    }
}

/// A person as shown to clients.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PrincipalView {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl From<&Principal> for PrincipalView {
    fn from(p: &Principal) -> Self {
        PrincipalView {
            name: p.as_str().to_owned(),
            id: p.id().map(str::to_owned),
        }
    }
}

/// The approval rules as shown to clients.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RulesView {
    pub four_eyes: bool,
    pub upload_quorum: u32,
    pub download_quorum: u32,
}

/// Why a file failed: a stable code and a message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FailureView {
    pub code: &'static str,
    pub message: String,
}

/// One decision as shown to clients.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionView {
    pub stage: &'static str,
    pub approved: bool,
    /// `approve`, `reject` or `requestChanges` (`approved` is false for the last two).
    pub decision: &'static str,
    pub reviewer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reviewer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub decided_time: String,
}

impl From<&DecisionEvent> for DecisionView {
    fn from(d: &DecisionEvent) -> Self {
        DecisionView {
            stage: d.stage.as_str(),
            approved: d.approved,
            decision: if d.approved {
                "approve"
            } else if d.changes_requested {
                "requestChanges"
            } else {
                "reject"
            },
            reviewer: d.reviewer.clone(),
            reviewer_id: d.reviewer_id.clone(),
            comment: d.comment.clone(),
            decided_time: api_time(d.decided_time),
        }
    }
}

impl From<&FileView> for FileStatus {
    fn from(view: &FileView) -> Self {
        match view {
            FileView::Workflow {
                summary,
                runtime_status,
                created_time,
                last_updated_time,
            } => FileStatus {
                version: summary.file.version,
                versions: if summary.versions.len() > 1 {
                    summary.versions.iter().map(VersionView::from).collect()
                } else {
                    Vec::new()
                },
                downloads: None,
                allowed_actions: None,
                withheld_actions: None,
                links: Links::new(&summary.file.id),
                id: summary.file.id.clone(),
                name: summary.file.name.clone(),
                content_type: summary.file.content_type.clone(),
                content_type_declared: summary.file.content_type_declared,
                size: summary.file.size,
                stage: summary.stage,
                runtime_status: *runtime_status,
                // The file's own creation (upload) time, not the instance's.
                created_time: api_time(summary.file.created_time.min(*created_time)),
                last_updated_time: api_time(*last_updated_time),
                uploader: summary.file.uploader.as_ref().map(PrincipalView::from),
                approvals: summary.approvals.iter().map(DecisionView::from).collect(),
                deadline: summary.deadline.map(api_time),
                rules: Some(RulesView {
                    four_eyes: summary.file.rules.four_eyes,
                    upload_quorum: summary.file.rules.quorum(ApprovalStage::Upload),
                    download_quorum: summary.file.rules.quorum(ApprovalStage::Download),
                }),
                scan: summary.scan.as_ref().map(ScanView::from),
                analysis: summary.analysis.clone(),
                failure: summary.failure.as_ref().map(|f| FailureView {
                    code: f.code,
                    message: f.message.clone(),
                }),
            },
            FileView::Uploaded { record, size } => FileStatus {
                version: 1,
                versions: Vec::new(),
                downloads: None,
                allowed_actions: None,
                withheld_actions: None,
                links: Links::new(&record.id.to_string()),
                id: record.id.to_string(),
                name: record.name.to_string(),
                content_type: record.content_type.to_string(),
                content_type_declared: record.content_type.is_declared(),
                size: *size,
                stage: Stage::Uploaded,
                runtime_status: RuntimeStatus::Pending,
                created_time: api_time(record.created_time),
                last_updated_time: api_time(record.created_time),
                uploader: record.uploader.as_ref().map(PrincipalView::from),
                approvals: Vec::new(),
                deadline: None,
                rules: None,
                scan: None,
                analysis: None,
                failure: None,
            },
        }
    }
}
