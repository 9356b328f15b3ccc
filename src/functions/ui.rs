//! `ui/`: `GET /api/ui/` — the reviewers' web page (inbox, a file's analysis, preview, history
//! and decisions, upload with progress, download), built into the binary and served by the
//! handler itself, so it deploys with the function app. It uses only the public HTTP API.
//! Four files, no framework, nothing fetched from elsewhere: `ui/index.html`, `ui/app.js`,
//! `ui/app.css` and `ui/favicon.svg` beside this module.

use axum::extract::{Path, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::domain::Refusal;
use crate::error::ApiError;

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");
const ICON: &str = include_str!("ui/favicon.svg");

/// How the page signs people in: a typed token, the platform's sign-in, or nobody (no tokens
/// and no Easy Auth configured: decisions are anonymous).
fn sign_in_mode(state: &AppState) -> &'static str {
    let access = &state.access;
    if access.easy_auth.is_some() {
        "easyAuth"
    } else if !access.reviewers.is_empty() || !access.uploaders.is_empty() {
        "token"
    } else {
        "open"
    }
}

/// No inline script or style anywhere; scripts may talk to the app and to where upload URLs
/// point (the storage account, for files sent straight to it), nothing else.
fn content_security_policy(state: &AppState) -> String {
    let storage = state.files.signed_url_origin();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; \
         connect-src 'self' {storage}; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

fn asset(state: &AppState, content_type: &'static str, body: String) -> Response {
    let csp = HeaderValue::from_str(&content_security_policy(state))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_SECURITY_POLICY, csp),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            // A new binary brings new assets: revalidate rather than run a stale script.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                HeaderName::from_static("x-frame-options"),
                HeaderValue::from_static("DENY"),
            ),
        ],
        body,
    )
        .into_response()
}

/// The page itself (`/api/ui` and `/api/ui/`).
pub async fn index(State(state): State<AppState>) -> Response {
    let html = INDEX.replace("{{SIGN_IN}}", sign_in_mode(&state));
    asset(&state, "text/html; charset=utf-8", html)
}

/// The page's script and style sheet; anything else is 404.
pub async fn file(State(state): State<AppState>, Path(path): Path<String>) -> Response {
    match path.as_str() {
        "" | "index.html" => index(State(state)).await,
        "app.js" => asset(&state, "text/javascript; charset=utf-8", SCRIPT.to_owned()),
        "app.css" => asset(&state, "text/css; charset=utf-8", STYLE.to_owned()),
        "favicon.svg" => asset(&state, "image/svg+xml", ICON.to_owned()),
        _ => {
            ApiError::Refused(Refusal::NotFound(format!("no page asset {path:?}"))).into_response()
        }
    }
}

/// What the page weighs, uncompressed: stated in the README and kept small by a test.
pub fn weight_bytes() -> usize {
    INDEX.len() + SCRIPT.len() + STYLE.len() + ICON.len()
}
