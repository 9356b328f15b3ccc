//! The one API error: every failure a client can see, each with its HTTP status and a stable
//! machine-readable `code`, rendered in the Azure REST API guidelines shape
//! `{"error": {"code", "message", …}}`. 5xx bodies are opaque; their details go to the log.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::domain::{Refusal, RefusalKind};
use crate::engine::EngineError;
use crate::files::FilesError;
use crate::store::{BoxError, StoreError};
use crate::telemetry::error_chain;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A refusal from the one list ([`Refusal`]), mapped to its status here and nowhere else.
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("storage is unavailable; retry later")]
    StorageUnavailable(#[source] BoxError),
    #[error("storage is full; nothing was stored")]
    InsufficientStorage(#[source] BoxError),
    #[error("internal error")]
    Internal(#[source] BoxError),
}

impl ApiError {
    pub fn internal(e: impl Into<BoxError>) -> Self {
        ApiError::Internal(e.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Refused(refusal) => match refusal.kind() {
                RefusalKind::Invalid => StatusCode::BAD_REQUEST,
                RefusalKind::Unauthenticated => StatusCode::UNAUTHORIZED,
                RefusalKind::Forbidden => StatusCode::FORBIDDEN,
                RefusalKind::NotFound => StatusCode::NOT_FOUND,
                RefusalKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
                RefusalKind::Conflict => StatusCode::CONFLICT,
                RefusalKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                RefusalKind::Gone => StatusCode::GONE,
            },
            ApiError::StorageUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Refused(refusal) => refusal.code(),
            ApiError::StorageUnavailable(_) => "StorageUnavailable",
            ApiError::InsufficientStorage(_) => "InsufficientStorage",
            ApiError::Internal(_) => "InternalError",
        }
    }
}

/// Seconds a client should wait before retrying after a 503.
pub(crate) const RETRY_AFTER_SECS: &str = "5";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut error = Map::new();
        error.insert("code".into(), json!(self.code()));
        match &self {
            ApiError::StorageUnavailable(source) => {
                tracing::warn!(error = %self, cause = %error_chain(source.as_ref()), "storage unavailable");
                error.insert("message".into(), json!(self.to_string()));
            }
            ApiError::InsufficientStorage(source) => {
                tracing::error!(cause = %error_chain(source.as_ref()), "storage is full");
                error.insert("message".into(), json!(self.to_string()));
            }
            ApiError::Internal(source) => {
                tracing::error!(cause = %error_chain(source.as_ref()), "internal error");
                error.insert("message".into(), json!("internal error"));
            }
            ApiError::Refused(refusal) => {
                error.insert("message".into(), json!(self.to_string()));
                if let Some(current) = refusal.current_stage() {
                    error.insert("currentStage".into(), json!(current.as_str()));
                }
            }
        }
        let body = json!({ "error": Value::Object(error) });
        let mut response = (status, axum::Json(body)).into_response();
        match &self {
            ApiError::StorageUnavailable(_) => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECS),
                );
            }
            ApiError::Refused(Refusal::Unauthorized(_)) => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"file-approver\""),
                );
            }
            _ => {}
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => ApiError::StorageUnavailable(Box::new(e)),
            StoreError::Full(_) => ApiError::InsufficientStorage(Box::new(e)),
            other => ApiError::Internal(Box::new(other)),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        if let EngineError::Storage(StoreError::Full(_)) = e {
            return ApiError::InsufficientStorage(Box::new(e));
        }
        if e.is_transient() {
            ApiError::StorageUnavailable(Box::new(e))
        } else {
            ApiError::Internal(Box::new(e))
        }
    }
}

impl From<FilesError> for ApiError {
    fn from(e: FilesError) -> Self {
        match e {
            FilesError::Refused(refusal) => ApiError::Refused(refusal),
            FilesError::Body(source) => ApiError::Refused(Refusal::InvalidBody(source.to_string())),
            FilesError::Storage(e) => e.into(),
            FilesError::Engine(e) => e.into(),
        }
    }
}
