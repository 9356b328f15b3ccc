use crate::domain::Refusal;
use crate::engine::EngineError;
use crate::store::{BoxError, StoreError};

/// What a file operation can fail with: a refusal the client sees as it is, or a failure of
/// what the application stands on.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The upload's body stream failed; the source is the stream's own error, which the caller
    /// that built the stream knows how to explain.
    #[error("the upload's body failed")]
    Body(#[source] BoxError),
    #[error("storage failed")]
    Storage(#[from] StoreError),
    #[error("the workflow engine failed")]
    Engine(#[from] EngineError),
}
