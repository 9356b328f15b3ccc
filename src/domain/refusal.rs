//! Every refusal a client can meet, in one list: a stable code clients switch on, the kind of
//! refusal (which the HTTP edge maps to a status, in one place: `error.rs`), and a message in
//! words. The application layer and the edge both refuse with these; neither keeps a list of
//! its own, so a new refusal is one variant here, its code, and its kind.

use super::{FileId, Stage};

/// A request refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
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
    /// A bad declaration, not a large request: the request is small; what it declares is out
    /// of range (as a schema violation is), and a client should not retry it smaller.
    #[error("the declared size is over the limit of {limit} bytes")]
    DeclaredTooLarge { limit: u64 },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotAReviewer(String),
    #[error("{0}")]
    NotAnUploader(String),
    /// The reviewer uploaded the file, so cannot approve it (four eyes).
    #[error("{0}")]
    SelfApproval(String),
    /// The reviewer approved the upload, so cannot approve the download (four eyes).
    #[error("{0}")]
    SameReviewer(String),
    /// Somebody other than the uploader asked to withdraw the file.
    #[error("{0}")]
    NotTheUploader(String),
    #[error("{0}")]
    NotFound(String),
    /// The file is not text or a small raster image: there is nothing safe to show.
    #[error("{0}")]
    NoPreview(String),
    #[error("{method} is not allowed here")]
    MethodNotAllowed { method: String },
    /// A decision the workflow is not waiting for; the message says why.
    #[error("{message}")]
    WrongStage { message: String, current: Stage },
    /// A download before both approvals.
    #[error("{message}")]
    NotApproved { message: String, current: Stage },
    /// The uploader says an upload URL's upload is done, but its bytes are not there.
    #[error("{0}")]
    UploadIncomplete(String),
    #[error("the upload is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// A revocation (or refusal) without the comment that says why.
    #[error("{0}")]
    ReasonRequired(String),
    /// A download link that is not one of ours for this file: malformed, tampered with, or
    /// another file's.
    #[error("{0}")]
    LinkInvalid(String),
    /// A download link bound to somebody else.
    #[error("{0}")]
    LinkNotYours(String),
    /// A genuine download link whose hour is up.
    #[error("{0}")]
    LinkExpired(String),
    /// A genuine download link to a file that is no longer approved (revoked, or its bytes gone).
    #[error("{message}")]
    FileRevoked { message: String, current: Stage },
    /// The file was downloaded as many times as the deployment allows.
    #[error("{0}")]
    DownloadLimitReached(String),
}

/// What sort of refusal it is: the edge turns each into one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The request is malformed or out of range (400).
    Invalid,
    /// Nobody known is calling (401).
    Unauthenticated,
    /// The caller may not do this (403).
    Forbidden,
    /// No such thing (404).
    NotFound,
    /// The route does not take this method (405).
    MethodNotAllowed,
    /// Not now: the file is in another stage (409).
    Conflict,
    /// The body is larger than allowed (413).
    TooLarge,
    /// It was here and is gone for good: a download link past its life (410).
    Gone,
}

impl Refusal {
    /// No file with this id.
    pub fn no_file(id: FileId) -> Self {
        Refusal::NotFound(format!("no file {id}"))
    }

    /// The stable code clients switch on.
    pub fn code(&self) -> &'static str {
        use Refusal::*;
        match self {
            InvalidId(_) => "InvalidId",
            InvalidName(_) => "InvalidName",
            EmptyFile => "EmptyFile",
            InvalidStage(_) => "InvalidStage",
            InvalidBody(_) => "InvalidBody",
            InvalidQuery(_) => "InvalidQuery",
            InvalidMultipart(_) => "InvalidMultipart",
            InvalidHeader(_) => "InvalidHeader",
            DeclaredTooLarge { .. } => "DeclaredTooLarge",
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
            UploadIncomplete(_) => "UploadIncomplete",
            TooLarge { .. } => "TooLarge",
            ReasonRequired(_) => "ReasonRequired",
            LinkInvalid(_) => "LinkInvalid",
            LinkNotYours(_) => "LinkNotYours",
            LinkExpired(_) => "LinkExpired",
            FileRevoked { .. } => "FileRevoked",
            DownloadLimitReached(_) => "DownloadLimitReached",
        }
    }

    pub fn kind(&self) -> RefusalKind {
        use Refusal::*;
        match self {
            InvalidId(_)
            | InvalidName(_)
            | EmptyFile
            | InvalidStage(_)
            | InvalidBody(_)
            | InvalidQuery(_)
            | InvalidMultipart(_)
            | InvalidHeader(_)
            | DeclaredTooLarge { .. }
            | ReasonRequired(_) => RefusalKind::Invalid,
            Unauthorized(_) => RefusalKind::Unauthenticated,
            NotAReviewer(_) | NotAnUploader(_) | SelfApproval(_) | SameReviewer(_)
            | NotTheUploader(_) | LinkInvalid(_) | LinkNotYours(_) => RefusalKind::Forbidden,
            NotFound(_) | NoPreview(_) => RefusalKind::NotFound,
            MethodNotAllowed { .. } => RefusalKind::MethodNotAllowed,
            WrongStage { .. } | NotApproved { .. } | UploadIncomplete(_) => RefusalKind::Conflict,
            TooLarge { .. } => RefusalKind::TooLarge,
            LinkExpired(_) | FileRevoked { .. } | DownloadLimitReached(_) => RefusalKind::Gone,
        }
    }

    /// The file's stage, for the refusals that depend on it.
    pub fn current_stage(&self) -> Option<Stage> {
        match self {
            Refusal::WrongStage { current, .. }
            | Refusal::NotApproved { current, .. }
            | Refusal::FileRevoked { current, .. } => Some(*current),
            _ => None,
        }
    }
}
