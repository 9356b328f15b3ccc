use crate::domain::{FileId, Stage};
use crate::engine::EngineError;
use crate::store::{BoxError, StoreError};

/// What a file operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("no file {0}")]
    NotFound(FileId),
    /// A decision the workflow is not waiting for; the message says why.
    #[error("{message}")]
    WrongStage { message: String, current: Stage },
    /// The reviewer uploaded the file, so cannot approve it (four eyes).
    #[error("{0}")]
    SelfApproval(String),
    /// The reviewer approved the upload, so cannot approve the download (four eyes).
    #[error("{0}")]
    SameReviewer(String),
    /// Somebody other than the uploader asked to withdraw the file.
    #[error("{0}")]
    NotTheUploader(String),
    /// A download before both approvals.
    #[error("{message}")]
    NotApproved { message: String, current: Stage },
    #[error("the upload is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// An upload URL asked for a file over the limit: a bad declaration, not a large request.
    #[error("the declared size is over the limit of {limit} bytes")]
    DeclaredTooLarge { limit: u64 },
    #[error("the file is empty")]
    EmptyFile,
    /// The file is not text or a small raster image: there is nothing safe to show.
    #[error("{0}")]
    NoPreview(String),
    /// The uploader says an upload URL's upload is done, but its blob is not there.
    #[error("file {0} has not arrived through its upload URL yet")]
    UploadIncomplete(FileId),
    /// The upload's body stream failed; the source is the stream's own error, which the caller
    /// that built the stream knows how to explain.
    #[error("the upload's body failed")]
    Body(#[source] BoxError),
    /// A listing's continuation token that the store could not use.
    #[error("the continuation token is malformed")]
    BadContinuation,
    #[error("storage failed")]
    Storage(#[from] StoreError),
    #[error("the workflow engine failed")]
    Engine(#[from] EngineError),
}
