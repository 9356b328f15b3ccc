//! The one API error: every failure a client can see, each with its HTTP status and a stable
//! machine-readable `code`, rendered in the Azure REST API guidelines shape
//! `{"error": {"code", "message", …}}`. 5xx bodies are opaque; their details go to the log.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::domain::Stage;
use crate::engine::EngineError;
use crate::files::FilesError;
use crate::store::{BoxError, StoreError};
use crate::telemetry::error_chain;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidId(String),
    #[error("{0}")]
    InvalidName(String),
    #[error("the file is empty")]
    EmptyFile,
    #[error("{0}")]
    InvalidStage(String),
    #[error("{0}")]
    InvalidBody(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{0}")]
    InvalidMultipart(String),
    #[error("{0}")]
    InvalidHeader(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotAReviewer(String),
    #[error("{0}")]
    NotAnUploader(String),
    #[error("{0}")]
    SelfApproval(String),
    #[error("{0}")]
    SameReviewer(String),
    #[error("{0}")]
    NotTheUploader(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    NoPreview(String),
    #[error("{method} is not allowed here")]
    MethodNotAllowed { method: String },
    #[error("{message}")]
    WrongStage { message: String, current: Stage },
    #[error("{message}")]
    NotApproved { message: String, current: Stage },
    #[error("the upload is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// 400, not 413: the request is small; what it declares is out of range (as a schema
    /// violation is), and a client should not retry it smaller.
    #[error("the declared size is over the limit of {limit} bytes")]
    DeclaredTooLarge { limit: u64 },
    #[error("{0}")]
    UploadIncomplete(String),
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
        use ApiError::*;
        match self {
            InvalidId(_)
            | InvalidName(_)
            | EmptyFile
            | DeclaredTooLarge { .. }
            | InvalidStage(_)
            | InvalidBody(_)
            | InvalidQuery(_)
            | InvalidMultipart(_)
            | InvalidHeader(_) => StatusCode::BAD_REQUEST,
            Unauthorized(_) => StatusCode::UNAUTHORIZED,
            NotAReviewer(_) | NotAnUploader(_) | SelfApproval(_) | SameReviewer(_)
            | NotTheUploader(_) => StatusCode::FORBIDDEN,
            NotFound(_) | NoPreview(_) => StatusCode::NOT_FOUND,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            WrongStage { .. } | NotApproved { .. } | UploadIncomplete(_) => StatusCode::CONFLICT,
            TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            StorageUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code clients switch on.
    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            InvalidId(_) => "InvalidId",
            InvalidName(_) => "InvalidName",
            EmptyFile => "EmptyFile",
            InvalidStage(_) => "InvalidStage",
            InvalidBody(_) => "InvalidBody",
            InvalidQuery(_) => "InvalidQuery",
            InvalidMultipart(_) => "InvalidMultipart",
            InvalidHeader(_) => "InvalidHeader",
            Unauthorized(_) => "Unauthorized",
            NotAReviewer(_) => "NotAReviewer",
            NotAnUploader(_) => "NotAnUploader",
            SelfApproval(_) => "SelfApproval",
            SameReviewer(_) => "SameReviewer",
            NotTheUploader(_) => "NotTheUploader",
            NotFound(_) => "NotFound",
            NoPreview(_) => "NoPreview",
            MethodNotAllowed { .. } => "MethodNotAllowed",
            WrongStage { .. } => "WrongStage",
            NotApproved { .. } => "NotApproved",
            TooLarge { .. } => "TooLarge",
            DeclaredTooLarge { .. } => "DeclaredTooLarge",
            UploadIncomplete(_) => "UploadIncomplete",
            StorageUnavailable(_) => "StorageUnavailable",
            InsufficientStorage(_) => "InsufficientStorage",
            Internal(_) => "InternalError",
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
            ApiError::WrongStage { current, .. } | ApiError::NotApproved { current, .. } => {
                error.insert("message".into(), json!(self.to_string()));
                error.insert("currentStage".into(), json!(current.as_str()));
            }
            _ => {
                error.insert("message".into(), json!(self.to_string()));
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
            ApiError::Unauthorized(_) => {
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
            FilesError::NotFound(id) => ApiError::NotFound(format!("no file {id}")),
            FilesError::WrongStage { message, current } => {
                ApiError::WrongStage { message, current }
            }
            FilesError::NotApproved { message, current } => {
                ApiError::NotApproved { message, current }
            }
            FilesError::TooLarge { limit } => ApiError::TooLarge { limit },
            FilesError::DeclaredTooLarge { limit } => ApiError::DeclaredTooLarge { limit },
            FilesError::SelfApproval(message) => ApiError::SelfApproval(message),
            FilesError::SameReviewer(message) => ApiError::SameReviewer(message),
            FilesError::NotTheUploader(message) => ApiError::NotTheUploader(message),
            FilesError::EmptyFile => ApiError::EmptyFile,
            FilesError::NoPreview(message) => ApiError::NoPreview(message),
            e @ FilesError::UploadIncomplete(_) => ApiError::UploadIncomplete(e.to_string()),
            FilesError::Body(source) => ApiError::InvalidBody(source.to_string()),
            FilesError::BadContinuation => {
                ApiError::InvalidQuery("continuationToken is malformed".into())
            }
            FilesError::Storage(e) => e.into(),
            FilesError::Engine(e) => e.into(),
        }
    }
}
